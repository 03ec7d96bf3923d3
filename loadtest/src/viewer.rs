//! An LL-HLS viewer that behaves like a low-latency player: it follows one media playlist with
//! blocking reloads (`_HLS_msn`/`_HLS_part` of the next part), requests the preload-hinted part
//! at the same time, and records what a player would feel:
//!
//! - **playlist lag**: from the wall-clock end of a part's media (program date-time plus the
//!   part's offset) to the arrival of the first playlist listing it;
//! - **part lag**: the same, to the arrival of the part's last byte;
//! - **cadence**: time between arrivals of playlists bringing new parts;
//! - **blocking latency**: how long each blocking request was held.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::Uri;
use parking_lot::Mutex;

use crate::client::{HttpClient, resolve};
use crate::playlist::MediaPlaylist;
use crate::report::Recorder;

/// What a viewer does.
#[derive(Debug, Clone)]
pub struct ViewerPlan {
    /// The media playlist URL.
    pub url: Uri,
    /// How long to watch.
    pub duration: Duration,
    /// Whether to fetch the preload-hinted part along with each blocking reload.
    pub fetch_parts: bool,
    /// Give up on one request after this long.
    pub request_timeout: Duration,
}

/// Watches until the plan's duration passes or the playlist ends.
pub async fn watch(plan: ViewerPlan, recorder: Arc<Mutex<Recorder>>) -> anyhow::Result<()> {
    let client = HttpClient::new(plan.request_timeout);
    let started = Instant::now();
    let gzip = [("accept-encoding", "gzip")];
    let first = client.get(&plan.url, &[]).await?;
    anyhow::ensure!(first.status.is_success(), "{}: {}", plan.url, first.status);
    let mut playlist = MediaPlaylist::parse(std::str::from_utf8(&first.body)?)?;
    let mut seen = playlist.last_part().map(|(m, i, _)| (m, i));
    let mut last_arrival: Option<Instant> = None;
    while started.elapsed() < plan.duration && !playlist.ended {
        let Some(hint) = playlist.preload_hint.clone() else {
            break;
        };
        let Some((msn, part)) = MediaPlaylist::part_position(&hint) else {
            break;
        };
        let base = plan.url.path();
        let blocking: Uri = format!(
            "{}://{}{base}?_HLS_msn={msn}&_HLS_part={part}",
            plan.url.scheme_str().unwrap_or("http"),
            plan.url.authority().map(|a| a.as_str()).unwrap_or("")
        )
        .parse()?;
        let part_uri = resolve(&plan.url, &hint)?;
        let part_fetch = plan.fetch_parts.then(|| {
            let client = client.clone();
            tokio::spawn(async move { client.get(&part_uri, &[]).await })
        });
        let response = client.get(&blocking, &gzip).await;
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                recorder.lock().error(&e.to_string());
                continue;
            }
        };
        recorder
            .lock()
            .blocking(response.status.as_u16(), response.elapsed);
        if !response.status.is_success() {
            // Re-synchronise with a plain reload, as players do.
            let plain = client.get(&plan.url, &[]).await?;
            playlist = MediaPlaylist::parse(std::str::from_utf8(&plain.body)?)?;
            continue;
        }
        let body = if response.content_encoding.as_deref() == Some("gzip") {
            crate::gunzip(&response.body)?
        } else {
            response.body.to_vec()
        };
        let arrival_wall = SystemTime::now();
        playlist = MediaPlaylist::parse(std::str::from_utf8(&body)?)?;
        let mut new_parts = 0;
        for ((m, i), end) in playlist.part_end_times() {
            if seen.is_some_and(|s| (m, i) <= s) {
                continue;
            }
            new_parts += 1;
            recorder
                .lock()
                .playlist_lag(arrival_wall.duration_since(end).unwrap_or_default());
            seen = Some((m, i));
        }
        if new_parts > 0 {
            if let Some(prev) = last_arrival {
                recorder.lock().cadence(response.done.duration_since(prev));
            }
            last_arrival = Some(response.done);
        }
        if let Some(task) = part_fetch {
            match task.await {
                Ok(Ok(fetched)) if fetched.status.is_success() => {
                    let end = playlist
                        .part_end_times()
                        .into_iter()
                        .find(|((m, i), _)| (*m, *i as u64) == (msn, part))
                        .map(|(_, t)| t);
                    let mut r = recorder.lock();
                    r.part(fetched.body.len());
                    if let Some(end) = end {
                        r.part_lag(SystemTime::now().duration_since(end).unwrap_or_default());
                    }
                }
                Ok(Ok(fetched)) => recorder
                    .lock()
                    .error(&format!("part {}: {}", hint, fetched.status)),
                Ok(Err(e)) => recorder.lock().error(&e.to_string()),
                Err(e) => recorder.lock().error(&e.to_string()),
            }
        }
    }
    Ok(())
}
