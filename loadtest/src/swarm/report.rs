//! The viewer swarm's report: one JSON document (with the raw histograms, so that the reports
//! of several machines merge into one with `loadtest report`) and its text rendering.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context;
use http::Uri;
use serde::{Deserialize, Serialize};

use super::SwarmPlan;
use super::tally::{Kind, KindSummary, SwarmTally, per_second};
use crate::client::HttpClient;
use crate::latency::LatencyQuantiles;

/// Request counters read from the servers' own metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    /// Requests the origin answered (`corral_origin_http_requests_total`).
    pub origin: Option<f64>,
    /// Requests the edge answered (`corral_edge_requests_total`).
    pub edge: Option<f64>,
    /// Requests the edge sent upstream (`corral_edge_upstream_requests_total`).
    pub edge_upstream: Option<f64>,
}

/// How many requests reached the origin for the viewers' requests.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Amplification {
    /// Requests the swarm's players made.
    pub viewer_requests: u64,
    /// Requests the origin answered meanwhile (every client of it: other edges too).
    pub origin_requests: Option<f64>,
    /// Requests the edge answered meanwhile.
    pub edge_requests: Option<f64>,
    /// Requests the edge sent upstream meanwhile.
    pub edge_upstream_requests: Option<f64>,
    /// Origin requests per viewer request.
    pub origin_per_viewer_request: Option<f64>,
}

impl Amplification {
    /// Reads the counters, `None` when neither URL is given.
    pub async fn read(
        origin: Option<&Uri>,
        edge: Option<&Uri>,
    ) -> anyhow::Result<Option<Counters>> {
        if origin.is_none() && edge.is_none() {
            return Ok(None);
        }
        let client = HttpClient::new(Duration::from_secs(10));
        let mut counters = Counters::default();
        if let Some(url) = origin {
            let text = scrape(&client, url).await?;
            counters.origin = Some(crate::metric_sum(
                &text,
                "corral_origin_http_requests_total",
            ));
        }
        if let Some(url) = edge {
            let text = scrape(&client, url).await?;
            counters.edge = Some(crate::metric_sum(&text, "corral_edge_requests_total"));
            counters.edge_upstream = Some(crate::metric_sum(
                &text,
                "corral_edge_upstream_requests_total",
            ));
        }
        Ok(Some(counters))
    }
}

async fn scrape(client: &HttpClient, url: &Uri) -> anyhow::Result<String> {
    let r = client.get(url, &[]).await?;
    anyhow::ensure!(r.status.is_success(), "{url}: {}", r.status);
    Ok(String::from_utf8_lossy(&r.body).into_owned())
}

impl Counters {
    /// What changed since `before`, over `viewer_requests`.
    pub fn since(&self, before: &Counters, viewer_requests: u64) -> Amplification {
        let delta = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a - b);
        let origin = delta(self.origin, before.origin);
        Amplification {
            viewer_requests,
            origin_requests: origin,
            edge_requests: delta(self.edge, before.edge),
            edge_upstream_requests: delta(self.edge_upstream, before.edge_upstream),
            origin_per_viewer_request: origin
                .filter(|_| viewer_requests > 0)
                .map(|o| o / viewer_requests as f64),
        }
    }
}

/// The whole run, as written to JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ViewersReport {
    /// `viewers`: tells this report from the other modes'.
    pub scenario: String,
    /// The multivariant playlist.
    pub url: String,
    /// Players asked for.
    pub players: usize,
    /// Worker processes.
    pub workers: usize,
    /// How renditions were chosen.
    pub selection: String,
    /// Seconds of ramp-up asked for.
    pub ramp_up_s: f64,
    /// Seconds of watching asked for, after the ramp-up.
    pub duration_s: f64,
    /// Seconds the run lasted.
    pub seconds: f64,
    /// Requests answered, every kind.
    pub requests: u64,
    /// Requests per second.
    pub requests_per_s: f64,
    /// Body bytes received.
    pub bytes: u64,
    /// Body bytes per second.
    pub bytes_per_s: f64,
    /// Requests by kind.
    pub by_kind: BTreeMap<Kind, KindSummary>,
    /// Players started, and how many began playing.
    pub players_started: u64,
    /// Players that began playing.
    pub players_playing: u64,
    /// From a player's start to its playback's start.
    pub startup_us: LatencyQuantiles,
    /// Stalls: the simulated buffer ran dry.
    pub stalls: u64,
    /// Players that stalled at least once.
    pub players_stalled: u64,
    /// Seconds stalled, all players together.
    pub stall_seconds: f64,
    /// The length of stalls.
    pub stall_us: LatencyQuantiles,
    /// Media end to the last byte of a part fetched at the live edge (by its hint).
    pub part_lag_us: LatencyQuantiles,
    /// Media end to the playlist first listing a part.
    pub playlist_lag_us: LatencyQuantiles,
    /// Rendition switches.
    pub switches: u64,
    /// Delta updates applied.
    pub delta_updates: u64,
    /// Delta updates that needed a whole reload.
    pub delta_misses: u64,
    /// Joins of the live end again after falling out of the window.
    pub resyncs: u64,
    /// Requests retried after a back-off.
    pub retries: u64,
    /// Failures by kind.
    pub errors: BTreeMap<String, u64>,
    /// Failures, every kind.
    pub error_count: u64,
    /// What reached the origin and the edge, when their metrics URLs were given.
    pub amplification: Option<Amplification>,
    /// Whether Ctrl-C cut the run short.
    pub interrupted: bool,
    /// The raw counts and histograms, for merging.
    pub tally: SwarmTally,
}

impl ViewersReport {
    /// The report of a run of `plan` that counted `tally` over `seconds`.
    pub fn new(
        plan: &SwarmPlan,
        tally: SwarmTally,
        seconds: f64,
        amplification: Option<Amplification>,
        interrupted: bool,
    ) -> Self {
        let selection = match &plan.bandwidth_trace {
            Some(t) => format!("trace {t}"),
            None => plan.rendition.clone(),
        };
        Self::from_tally(
            Header {
                url: plan.url.clone(),
                players: plan.players,
                workers: plan.workers,
                selection,
                ramp_up_s: plan.ramp_up.as_secs_f64(),
                duration_s: plan.duration.as_secs_f64(),
            },
            tally,
            seconds,
            amplification,
            interrupted,
        )
    }

    fn from_tally(
        h: Header,
        tally: SwarmTally,
        seconds: f64,
        amplification: Option<Amplification>,
        interrupted: bool,
    ) -> Self {
        let stall = tally.stall_us.quantiles();
        Self {
            scenario: "viewers".into(),
            url: h.url,
            players: h.players,
            workers: h.workers,
            selection: h.selection,
            ramp_up_s: h.ramp_up_s,
            duration_s: h.duration_s,
            seconds,
            requests: tally.requests(),
            requests_per_s: per_second(tally.requests(), seconds),
            bytes: tally.bytes(),
            bytes_per_s: per_second(tally.bytes(), seconds),
            by_kind: tally
                .kinds
                .iter()
                .map(|(k, t)| (*k, t.summary(seconds)))
                .collect(),
            players_started: tally.players,
            players_playing: tally.players_playing,
            startup_us: tally.startup_us.quantiles(),
            stalls: stall.count,
            players_stalled: tally.players_stalled,
            stall_seconds: tally.stall_us.sum_us() / 1e6,
            stall_us: stall,
            part_lag_us: tally.part_lag_us.quantiles(),
            playlist_lag_us: tally.playlist_lag_us.quantiles(),
            switches: tally.switches,
            delta_updates: tally.delta_updates,
            delta_misses: tally.delta_misses,
            resyncs: tally.resyncs,
            retries: tally.retries,
            errors: tally.errors.clone(),
            error_count: tally.error_count(),
            amplification,
            interrupted,
            tally,
        }
    }

    /// Several runs as one (say, one per load machine against the same edges at the same
    /// time): players and counts add up, histograms merge, the run lasted as long as the
    /// longest, and the origin's count is the largest any run saw (they overlapped).
    pub fn merge(reports: &[ViewersReport]) -> anyhow::Result<ViewersReport> {
        let first = reports.first().context("no report to merge")?;
        let mut tally = SwarmTally::default();
        let mut seconds: f64 = 0.0;
        let mut amplification: Option<Amplification> = None;
        for r in reports {
            tally.merge(&r.tally);
            seconds = seconds.max(r.seconds);
            if let Some(a) = r.amplification {
                let m = amplification.get_or_insert(Amplification {
                    viewer_requests: 0,
                    origin_requests: None,
                    edge_requests: None,
                    edge_upstream_requests: None,
                    origin_per_viewer_request: None,
                });
                m.viewer_requests += a.viewer_requests;
                m.origin_requests = max_of(m.origin_requests, a.origin_requests);
                m.edge_requests = sum_of(m.edge_requests, a.edge_requests);
                m.edge_upstream_requests =
                    sum_of(m.edge_upstream_requests, a.edge_upstream_requests);
            }
        }
        if let Some(m) = &mut amplification {
            m.origin_per_viewer_request = m
                .origin_requests
                .filter(|_| m.viewer_requests > 0)
                .map(|o| o / m.viewer_requests as f64);
        }
        let header = Header {
            url: first.url.clone(),
            players: reports.iter().map(|r| r.players).sum(),
            workers: reports.iter().map(|r| r.workers).sum(),
            selection: first.selection.clone(),
            ramp_up_s: first.ramp_up_s,
            duration_s: first.duration_s,
        };
        let interrupted = reports.iter().any(|r| r.interrupted);
        Ok(Self::from_tally(
            header,
            tally,
            seconds,
            amplification,
            interrupted,
        ))
    }

    /// The report for people.
    pub fn render(&self) -> String {
        let ms = |us: u64| us as f64 / 1000.0;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "viewers: {} players ({} playing) on {} for {:.1} s{}, {} worker process{}",
            self.players_started,
            self.players_playing,
            self.url,
            self.seconds,
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            },
            self.workers,
            if self.workers == 1 { "" } else { "es" },
        );
        let _ = writeln!(
            o,
            "requests: {} ({:.0}/s), {} ({}/s)",
            self.requests,
            self.requests_per_s,
            bytes(self.bytes as f64),
            bytes(self.bytes_per_s)
        );
        let _ = writeln!(
            o,
            "  {:<18} {:>9} {:>8} {:>10} {:>9} {:>9} {:>9} {:>9}  statuses",
            "kind", "requests", "per s", "bytes", "p50 ms", "p90 ms", "p99 ms", "max ms"
        );
        for (kind, k) in &self.by_kind {
            let statuses: Vec<String> =
                k.statuses.iter().map(|(s, n)| format!("{s}×{n}")).collect();
            let _ = writeln!(
                o,
                "  {:<18} {:>9} {:>8.1} {:>10} {:>9.1} {:>9.1} {:>9.1} {:>9.1}  {}",
                kind.name(),
                k.requests,
                k.per_second,
                bytes(k.bytes as f64),
                ms(k.latency_us.p50),
                ms(k.latency_us.p90),
                ms(k.latency_us.p99),
                ms(k.latency_us.max),
                statuses.join(" ")
            );
        }
        let _ = writeln!(
            o,
            "startup: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            ms(self.startup_us.p50),
            ms(self.startup_us.p99),
            ms(self.startup_us.max)
        );
        let _ = writeln!(
            o,
            "stalls: {} in {} of {} players, {:.1} s in all (p50 {:.0} ms, max {:.0} ms)",
            self.stalls,
            self.players_stalled,
            self.players_started,
            self.stall_seconds,
            ms(self.stall_us.p50),
            ms(self.stall_us.max)
        );
        let _ = writeln!(
            o,
            "part lag (media end to the hinted part's last byte): p50 {:.0} ms, p99 {:.0} ms; playlist lag: p50 {:.0} ms, p99 {:.0} ms",
            ms(self.part_lag_us.p50),
            ms(self.part_lag_us.p99),
            ms(self.playlist_lag_us.p50),
            ms(self.playlist_lag_us.p99)
        );
        let _ = writeln!(
            o,
            "switches: {}, delta updates: {} ({} missed), resyncs: {}, retries: {}",
            self.switches, self.delta_updates, self.delta_misses, self.resyncs, self.retries
        );
        if self.errors.is_empty() {
            let _ = writeln!(o, "errors: none");
        } else {
            let list: Vec<String> = self
                .errors
                .iter()
                .map(|(e, n)| format!("{e} ×{n}"))
                .collect();
            let _ = writeln!(o, "errors: {} ({})", self.error_count, list.join(", "));
        }
        if let Some(a) = &self.amplification {
            let n = |v: Option<f64>| v.map_or("?".to_string(), |v| format!("{v:.0}"));
            let _ = writeln!(
                o,
                "amplification: {} origin requests for {} viewer requests ({}); the edge answered {} and sent {} upstream",
                n(a.origin_requests),
                a.viewer_requests,
                a.origin_per_viewer_request
                    .map_or("?".to_string(), |r| format!("{r:.5} per viewer request")),
                n(a.edge_requests),
                n(a.edge_upstream_requests)
            );
        }
        o
    }
}

/// The plan's part of a report.
struct Header {
    url: String,
    players: usize,
    workers: usize,
    selection: String,
    ramp_up_s: f64,
    duration_s: f64,
}

fn max_of(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn sum_of(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    }
}

/// Bytes for people: `1.2 MB`.
fn bytes(n: f64) -> String {
    match n {
        n if n >= 1e9 => format!("{:.2} GB", n / 1e9),
        n if n >= 1e6 => format!("{:.1} MB", n / 1e6),
        n if n >= 1e3 => format!("{:.1} kB", n / 1e3),
        n => format!("{n:.0} B"),
    }
}
