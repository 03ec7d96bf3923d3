//! Thundering herds: many players asking for the same new object at the same moment, as
//! happens at every part of a popular live stream. Each herd is `clients` players, each on a
//! connection of its own opened beforehand, all asking at once for one object:
//!
//! 1. the next part, through its preload hint, before it exists;
//! 2. the blocking playlist that will list the part after it;
//! 3. a segment nobody has asked for yet (the newest complete one).
//!
//! For each herd it reports how many requests the origin received for that kind of object
//! (from the origin's own metrics, not the cache's), the leader's time (the first answer) and
//! how much later than the leader the others got their answer's headers (the cost of waiting
//! on a shared fetch: how soon a waiter is woken) and their last byte (which adds the time to
//! send every player its copy through one machine's loopback). Players warm their connection
//! up on the stream's multivariant playlist, which every cache under test can hold.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http::Uri;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::client::{Fetched, HttpClient};
use crate::playlist::MediaPlaylist;

/// What to run.
#[derive(Debug, Clone)]
pub struct HerdPlan {
    /// A media playlist URL (through the cache under test).
    pub playlist: Uri,
    /// Players per herd.
    pub clients: usize,
    /// The origin's Prometheus endpoint, to count what reached it.
    pub origin_metrics: Option<Uri>,
    /// Time limit of one request.
    pub timeout: Duration,
}

/// One herd's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct HerdResult {
    /// `hinted_part`, `blocking_playlist` or `segment`.
    pub object: &'static str,
    /// The URL asked.
    pub url: String,
    /// Players in the herd.
    pub clients: usize,
    /// Players answered 200.
    pub ok: usize,
    /// Requests of this kind the origin received during the herd.
    pub origin_requests: Option<f64>,
    /// From the herd's start to the first answer's headers, milliseconds.
    pub leader_ms: f64,
    /// How much later than the leader's the others' headers arrived, milliseconds (median).
    pub wake_p50_ms: f64,
    /// 99th percentile of the same.
    pub wake_p99_ms: f64,
    /// The last one.
    pub wake_max_ms: f64,
    /// How much later than the leader's the others' last bytes arrived, milliseconds (median).
    pub done_p50_ms: f64,
    /// 99th percentile of the same.
    pub done_p99_ms: f64,
    /// Requests that failed (no answer, or not 200).
    pub errors: usize,
}

/// Runs the three herds.
pub async fn run(plan: &HerdPlan) -> anyhow::Result<Vec<HerdResult>> {
    let probe = HttpClient::new(plan.timeout);
    let players = warm_up(plan).await?;
    let mut results = Vec::new();

    let playlist = fetch_playlist(&probe, &plan.playlist).await?;
    let hint = playlist
        .preload_hint
        .clone()
        .context("the playlist hints no part")?;
    let part_url = resolve(&plan.playlist, &hint)?;
    results.push(herd(plan, &players, "hinted_part", "part", part_url).await?);

    let playlist = fetch_playlist(&probe, &plan.playlist).await?;
    let hint = playlist
        .preload_hint
        .clone()
        .context("the playlist hints no part")?;
    let (msn, part) = MediaPlaylist::part_position(&hint).context("hint is not msn.part.m4s")?;
    let blocking = format!("{}?_HLS_msn={msn}&_HLS_part={part}", plan.playlist.path());
    let blocking_url = resolve(&plan.playlist, &blocking)?;
    results.push(
        herd(
            plan,
            &players,
            "blocking_playlist",
            "blocking_playlist",
            blocking_url,
        )
        .await?,
    );

    let playlist = fetch_playlist(&probe, &plan.playlist).await?;
    let segment = playlist
        .segments
        .iter()
        .rev()
        .find_map(|s| s.uri.clone())
        .context("the playlist lists no complete segment")?;
    let segment_url = resolve(&plan.playlist, &segment)?;
    results.push(herd(plan, &players, "segment", "segment", segment_url).await?);
    Ok(results)
}

/// One client per player, each with its connection open, warmed up on the multivariant
/// playlist next to the media playlist (`../master.m3u8`), which every cache holds.
async fn warm_up(plan: &HerdPlan) -> anyhow::Result<Vec<HttpClient>> {
    let master = resolve(&plan.playlist, "../master.m3u8")?;
    let mut set = JoinSet::new();
    for _ in 0..plan.clients {
        let url = master.clone();
        let timeout = plan.timeout;
        set.spawn(async move {
            let client = HttpClient::new(timeout);
            client.get(&url, &[]).await.map(|_| client)
        });
    }
    let mut players = Vec::with_capacity(plan.clients);
    while let Some(r) = set.join_next().await {
        players.push(r?.context("warming up a player's connection")?);
    }
    Ok(players)
}

async fn fetch_playlist(client: &HttpClient, url: &Uri) -> anyhow::Result<MediaPlaylist> {
    let r = client.get(url, &[]).await?;
    if r.status != 200 {
        bail!("{url}: {}", r.status);
    }
    Ok(MediaPlaylist::parse(std::str::from_utf8(&r.body)?)?)
}

fn resolve(base: &Uri, reference: &str) -> anyhow::Result<Uri> {
    let authority = base.authority().context("an absolute URL")?;
    let path = if reference.starts_with('/') {
        reference.to_string()
    } else {
        let mut dir = base.path().rsplit_once('/').map_or("", |(d, _)| d);
        let mut rest = reference;
        while let Some(up) = rest.strip_prefix("../") {
            dir = dir.rsplit_once('/').map_or("", |(d, _)| d);
            rest = up;
        }
        format!("{dir}/{rest}")
    };
    Ok(format!("http://{authority}{path}").parse()?)
}

async fn herd(
    plan: &HerdPlan,
    players: &[HttpClient],
    object: &'static str,
    origin_kind: &str,
    url: Uri,
) -> anyhow::Result<HerdResult> {
    let before = origin_count(plan, origin_kind).await?;
    let started = Instant::now();
    let mut set = JoinSet::new();
    for client in players {
        let (client, url) = (client.clone(), url.clone());
        set.spawn(async move { client.get(&url, &[]).await });
    }
    let mut answers: Vec<Fetched> = Vec::with_capacity(players.len());
    while let Some(r) = set.join_next().await {
        if let Ok(f) = r? {
            answers.push(f);
        }
    }
    let after = origin_count(plan, origin_kind).await?;
    let ok = answers.iter().filter(|a| a.status == 200).count();
    let mut heads: Vec<Instant> = answers.iter().map(|a| a.headers_at).collect();
    heads.sort();
    let mut done: Vec<Instant> = answers.iter().map(|a| a.done).collect();
    done.sort();
    let leader = *heads.first().context("no player was answered")?;
    let first_done = *done.first().context("no player was answered")?;
    let wake = Quantiles::after(&heads[1..], leader);
    let finish = Quantiles::after(&done[1..], first_done);
    Ok(HerdResult {
        object,
        url: url.to_string(),
        clients: players.len(),
        ok,
        origin_requests: before.zip(after).map(|(b, a)| a - b),
        leader_ms: (leader - started).as_secs_f64() * 1000.0,
        wake_p50_ms: wake.at(0.5),
        wake_p99_ms: wake.at(0.99),
        wake_max_ms: wake.at(1.0),
        done_p50_ms: finish.at(0.5),
        done_p99_ms: finish.at(0.99),
        errors: players.len() - ok,
    })
}

/// Milliseconds after a reference, sorted.
struct Quantiles(Vec<f64>);

impl Quantiles {
    fn after(times: &[Instant], reference: Instant) -> Self {
        let mut ms: Vec<f64> = times
            .iter()
            .map(|t| t.saturating_duration_since(reference).as_secs_f64() * 1000.0)
            .collect();
        ms.sort_by(f64::total_cmp);
        Quantiles(ms)
    }

    /// The `p` quantile (nearest rank); 0 when empty.
    fn at(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0[((self.0.len() - 1) as f64 * p).round() as usize]
    }
}

/// Requests of `kind` the origin has answered so far.
async fn origin_count(plan: &HerdPlan, kind: &str) -> anyhow::Result<Option<f64>> {
    let Some(url) = &plan.origin_metrics else {
        return Ok(None);
    };
    let r = HttpClient::new(plan.timeout).get(url, &[]).await?;
    let text = std::str::from_utf8(&r.body)?;
    let prefix = format!("corral_origin_http_requests_total{{kind=\"{kind}\"");
    Ok(Some(crate::metric_sum(text, &prefix)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_resolve_against_the_playlist() {
        let base: Uri = "http://127.0.0.1:8080/live/demo/720p/index.m3u8"
            .parse()
            .expect("uri");
        assert_eq!(
            resolve(&base, "12.3.m4s").expect("ok").to_string(),
            "http://127.0.0.1:8080/live/demo/720p/12.3.m4s"
        );
        assert_eq!(
            resolve(&base, "/live/demo/720p/index.m3u8?_HLS_msn=1")
                .expect("ok")
                .to_string(),
            "http://127.0.0.1:8080/live/demo/720p/index.m3u8?_HLS_msn=1"
        );
    }
}
