//! Load and latency tests of a Corral origin or edge.
//!
//! [`viewer`] is an LL-HLS client that behaves like a low-latency player (blocking reloads,
//! preload-hinted parts) and measures what its viewer would feel; [`report`] turns the
//! measurements of many viewers into quantiles; [`herd`] sends many players at one new object
//! at once and measures what reached the origin and how long the waiters waited; [`hits`]
//! measures cache-hit throughput and server CPU per request over HTTP/1.1, HTTP/2 and HTTP/3; [`playlist`] reads media playlists with an
//! independent parser (`quick-m3u8`), so the origin's writer is never checked against itself;
//! [`chat`] loads one chat room with many WebSocket receivers (over several processes) and a
//! few senders, and measures delivery latency, losses and the relay's memory per connection.

pub mod chat;
pub mod client;
pub mod config;
pub mod herd;
pub mod hits;
pub mod playlist;
pub mod report;
pub mod viewer;

/// Decompresses a gzip body.
pub fn gunzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data).read_to_end(&mut out)?;
    Ok(out)
}

/// The sum of every sample in Prometheus text `text` whose line starts with `prefix` (a metric
/// name and the first of its labels, say `name{kind="part"`), 0 when none.
pub fn metric_sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
