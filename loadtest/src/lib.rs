//! Load and latency tests of a Corral origin, edge or chat relay: the `loadtest` binary's
//! modes, one module each.
//!
//! - [`swarm`] (`loadtest viewers`): simulated LL-HLS players (blocking reloads, hinted parts,
//!   delta updates, rendition switches, a playout buffer that stalls) spread over worker
//!   processes, reporting requests, latency by request kind, stalls and the origin's
//!   amplification.
//! - [`herd`] (`loadtest herd`): many players asking at once for one object that does not
//!   exist yet, round after round; what reached the origin and how long the waiters waited.
//! - [`chat`] (`loadtest chat`): one chat room with many WebSocket receivers and a few
//!   senders; delivery latency, losses, the relay's memory per connection.
//! - [`hits`] (`loadtest hits`): cache-hit throughput and server CPU per request over
//!   HTTP/1.1, HTTP/2 and HTTP/3.
//!
//! [`playlist`] and [`master`] read playlists with an independent parser (`quick-m3u8`), so the
//! origin's writer is never checked against itself; [`latency`] holds the HdrHistograms every
//! mode records into and workers send to their parent.

pub mod backoff;
pub mod chat;
pub mod client;
pub mod config;
pub mod herd;
pub mod hits;
pub mod latency;
pub mod master;
pub mod playlist;
pub mod swarm;

/// Writes `line` to a worker's parent: one JSON document per line on stdout, flushed at once.
pub(crate) fn say_to_parent(line: &impl serde::Serialize) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, line)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

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
