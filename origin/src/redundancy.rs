//! Redundant origins: a standby fed the same publish as its primary follows the primary's
//! epochs, so that both publish the same playlists (media sequence numbers, part indexes, URIs,
//! program date-times, decode times) and an edge can move players from one to the other
//! between two requests without the players noticing.
//!
//! Both origins keep the publisher's RTMP timestamps (see `corral_transcoder::command`), so they
//! cut the same segments and parts at the same media times, whenever each joined the publish.
//! What each would decide on its own is the epoch: the wall time of media time 0 (the anchor,
//! which dates every part) and the MSN of grid segment 0. Two origins see the same publish a
//! few milliseconds apart, so their own anchors differ by that much. The primary shows its
//! epoch at `GET /api/streams/{name}/epoch`; when a publish starts on the standby (which
//! names its primary in `redundancy.follow`), the standby polls it for up to
//! `redundancy.wait`, holding its first parts back meanwhile, and takes the primary's epoch
//! when the primary's anchor is within `redundancy.tolerance` of its own (the same publish,
//! seen from two places). Otherwise (the primary is down, or on another publish) it anchors
//! itself, as a lone origin does.
//!
//! The operator's cues (ad breaks, news flashes) are placed on the primary; a standby copies
//! them from `GET /api/streams/{name}/cues` every [`CUE_POLL`], so its playlists carry the same
//! date ranges and a player moved to it keeps its ad breaks.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use serde::{Deserialize, Serialize};

/// The largest epoch answer read from a peer.
const MAX_ANSWER: usize = 4096;

/// The largest cue list read from a peer.
const MAX_CUES_ANSWER: usize = 4 << 20;

/// How often a standby copies its primary's cues.
pub const CUE_POLL: Duration = Duration::from_secs(1);

/// How often the standby asks for the primary's epoch while it waits.
const POLL: Duration = Duration::from_millis(100);

/// A stream's current epoch, as `GET /api/streams/{name}/epoch` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochInfo {
    /// The transcoder run it belongs to (this origin's own count).
    pub run: u64,
    /// Wall-clock time of media time 0, nanoseconds since the UNIX epoch.
    pub anchor_unix_ns: u64,
    /// MSN of grid segment 0.
    pub base_msn: u64,
    /// Whether the run transcodes a publish (not the slate, not a generated source): only
    /// those are followed.
    pub published: bool,
}

impl EpochInfo {
    /// The anchor as a time.
    pub fn anchor(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.anchor_unix_ns)
    }

    /// `anchor` as nanoseconds since the UNIX epoch (0 before it, saturating in 2554).
    pub fn nanos(anchor: SystemTime) -> u64 {
        anchor
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

/// Where a run's epoch comes from, as the stream's controller tells the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// The origin anchors the run itself.
    Own,
    /// A publish started: hold its parts back until the primary's epoch is known (or is known
    /// to be unavailable).
    Waiting,
    /// The primary's epoch of the same publish, to take when it matches.
    Primary(EpochInfo),
}

/// Why an epoch of the primary was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// It is not a publish's epoch (the primary plays its slate).
    #[error("the primary's epoch is not a publish's")]
    NotPublished,
    /// Its anchor is too far from ours: another publish.
    #[error("the primary's anchor is {0:?} from ours")]
    TooFar(Duration),
    /// Its MSNs would go back over MSNs this origin already published.
    #[error("the primary's MSNs would repeat ours")]
    Behind,
}

/// The epoch to take: the primary's when it is the same publish and keeps this origin's MSNs
/// moving forward (`first_segment` is the grid index of the run's first media, `after_last` the
/// lowest MSN this origin may still use), else `None` and why.
pub fn adopt(
    own_anchor: SystemTime,
    primary: &EpochInfo,
    tolerance: Duration,
    first_segment: u64,
    after_last: u64,
) -> Result<(SystemTime, u64), Mismatch> {
    if !primary.published {
        return Err(Mismatch::NotPublished);
    }
    let theirs = primary.anchor();
    let apart = match theirs.duration_since(own_anchor) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    if apart > tolerance {
        return Err(Mismatch::TooFar(apart));
    }
    if primary.base_msn.saturating_add(first_segment) < after_last {
        return Err(Mismatch::Behind);
    }
    Ok((theirs, primary.base_msn))
}

/// Asks `peer` (HOST:PORT) for the epoch of `stream`, within `timeout`; `None` when it has
/// none, cannot be reached or answers nonsense.
pub async fn fetch_epoch(peer: &str, stream: &str, timeout: Duration) -> Option<EpochInfo> {
    fetch_json(
        peer,
        &format!("/api/streams/{stream}/epoch"),
        MAX_ANSWER,
        timeout,
    )
    .await
}

/// GETs `path` from `peer` (HOST:PORT) and reads its JSON answer (at most `limit` bytes)
/// within `timeout`; `None` when it cannot.
async fn fetch_json<T: for<'de> Deserialize<'de>>(
    peer: &str,
    path: &str,
    limit: usize,
    timeout: Duration,
) -> Option<T> {
    let ask = async {
        let tcp = tokio::net::TcpStream::connect(peer).await.ok()?;
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .ok()?;
        tokio::spawn(conn);
        let req = http::Request::get(path)
            .header(http::header::HOST, peer)
            .header(http::header::USER_AGENT, "corral-origin")
            .body(Empty::<Bytes>::new())
            .ok()?;
        let resp = send.send_request(req).await.ok()?;
        if resp.status() != http::StatusCode::OK {
            return None;
        }
        let body = Limited::new(resp.into_body(), limit)
            .collect()
            .await
            .ok()?
            .to_bytes();
        serde_json::from_slice(&body).ok()
    };
    tokio::time::timeout(timeout, ask).await.ok().flatten()
}

/// Copies the cues of `streams` from the primary `peer` every [`CUE_POLL`] until `stop`.
pub async fn follow_cues(
    peer: String,
    streams: Vec<std::sync::Arc<crate::stream::Stream>>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(CUE_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        for stream in &streams {
            let path = format!("/api/streams/{}/cues", stream.name());
            let Some(cues) = fetch_json::<Vec<crate::packager::cue::Cue>>(
                &peer,
                &path,
                MAX_CUES_ANSWER,
                CUE_POLL,
            )
            .await
            else {
                continue;
            };
            let added = stream.adopt_cues(cues);
            if added > 0 {
                tracing::info!(stream = %stream.name(), %peer, added, "cues copied from the primary");
            }
        }
    }
}

/// Polls `peer` for a publish's epoch of `stream` for up to `wait`; the first one seen, or
/// `None`.
pub async fn await_epoch(peer: &str, stream: &str, wait: Duration) -> Option<EpochInfo> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return None;
        }
        if let Some(epoch) = fetch_epoch(peer, stream, left.min(Duration::from_millis(500))).await
            && epoch.published
        {
            return Some(epoch);
        }
        tokio::time::sleep(POLL.min(left)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + ms)
    }

    fn primary(ms: u64, base_msn: u64) -> EpochInfo {
        EpochInfo {
            run: 1,
            anchor_unix_ns: EpochInfo::nanos(at(ms)),
            base_msn,
            published: true,
        }
    }

    #[test]
    fn the_same_publish_seen_a_little_apart_takes_the_primarys_epoch() {
        let tolerance = Duration::from_secs(1);
        for own in [at(0), at(37), at(980)] {
            assert_eq!(
                adopt(own, &primary(20, 850_000_000), tolerance, 0, 0),
                Ok((at(20), 850_000_000))
            );
        }
        // Joining the publish late: media (and its grid index) starts far in.
        assert_eq!(
            adopt(
                at(5),
                &primary(0, 850_000_000),
                tolerance,
                1800,
                850_001_700
            ),
            Ok((at(0), 850_000_000))
        );
    }

    #[test]
    fn another_publish_a_slate_or_going_back_is_not_followed() {
        let tolerance = Duration::from_secs(1);
        assert_eq!(
            adopt(at(0), &primary(1500, 1), tolerance, 0, 0),
            Err(Mismatch::TooFar(Duration::from_millis(1500)))
        );
        assert_eq!(
            adopt(at(3000), &primary(0, 1), tolerance, 0, 0),
            Err(Mismatch::TooFar(Duration::from_millis(3000)))
        );
        let slate = EpochInfo {
            published: false,
            ..primary(0, 1)
        };
        assert_eq!(
            adopt(at(0), &slate, tolerance, 0, 0),
            Err(Mismatch::NotPublished)
        );
        assert_eq!(
            adopt(at(0), &primary(0, 100), tolerance, 5, 106),
            Err(Mismatch::Behind)
        );
    }

    #[test]
    fn the_epoch_travels_as_json() {
        let e = primary(123, 42);
        let text = serde_json::to_string(&e).expect("serializes");
        assert_eq!(serde_json::from_str::<EpochInfo>(&text).expect("reads"), e);
        assert_eq!(e.anchor(), at(123));
    }

    #[tokio::test]
    async fn a_peer_that_is_down_or_talks_nonsense_has_no_epoch() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = closed.local_addr().expect("addr").to_string();
        drop(closed);
        assert_eq!(
            fetch_epoch(&addr, "demo", Duration::from_secs(1)).await,
            None
        );

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nnot json!")
                    .await;
            }
        });
        assert_eq!(
            fetch_epoch(&addr, "demo", Duration::from_secs(1)).await,
            None
        );
        let started = std::time::Instant::now();
        assert_eq!(
            await_epoch(&addr, "demo", Duration::from_millis(300)).await,
            None
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "waits no longer than asked"
        );
    }
}
