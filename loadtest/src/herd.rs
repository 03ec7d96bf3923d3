//! Thundering herds: many players asking for the same new object at the same moment, as
//! happens at every part of a popular live stream. Each herd is `clients` players, each on a
//! connection of its own opened beforehand, all asking at once for one object:
//!
//! 1. the next part, through its preload hint, before it exists;
//! 2. the blocking playlist that will list the part after it;
//! 3. a segment nobody has asked for yet (the newest complete one).
//!
//! The three herds are repeated `rounds` times, each round on the next new part. For each
//! herd it reports how many requests the origin received for that kind of object
//! (from the origin's own metrics, not the cache's), the leader's time (the first answer) and
//! how much later than the leader the others got their answer's headers (the cost of waiting
//! on a shared fetch: how soon a waiter is woken) and their last byte (which adds the time to
//! send every player its copy through one machine's loopback). Players warm their connection
//! up on the stream's multivariant playlist, which every cache under test can hold.
//!
//! The origin's counters count a request when it is answered, so a blocking request that
//! another client (a viewer swarm that just ended, a cache's own refill) left in flight would
//! land in a herd's count. Before the first round the herd waits, up to [`QUIET_WITHIN`], for
//! the origin to answer nothing for two part durations, and says in the report whether it did:
//! on an origin with other viewers, the counts are upper bounds.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http::Uri;
use serde::{Deserialize, Serialize};
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
    /// Rounds of the three herds.
    pub rounds: usize,
    /// The origin's Prometheus endpoint, to count what reached it.
    pub origin_metrics: Option<Uri>,
    /// Time limit of one request.
    pub timeout: Duration,
}

/// One herd's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HerdResult {
    /// The round, from 1.
    pub round: usize,
    /// `hinted_part`, `blocking_playlist` or `segment`.
    pub object: String,
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

/// Every herd of a run, and per object the medians over the rounds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HerdReport {
    /// `herd`: tells this report from the other modes'.
    pub scenario: String,
    /// The media playlist.
    pub url: String,
    /// Players per herd.
    pub clients: usize,
    /// Every herd, in order.
    pub herds: Vec<HerdResult>,
    /// Per object, over the rounds.
    pub summary: Vec<HerdSummary>,
    /// Whether the origin was quiet before the first round (`None` without its metrics);
    /// when it was not, other traffic may be in the origin counts.
    #[serde(default)]
    pub origin_quiet: Option<bool>,
}

/// One object's herds over the rounds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HerdSummary {
    /// `hinted_part`, `blocking_playlist` or `segment`.
    pub object: String,
    /// Rounds run.
    pub rounds: usize,
    /// Origin requests per herd: the largest of the rounds (1 is the goal).
    pub origin_requests_max: Option<f64>,
    /// The median over the rounds of each round's waiter p50, milliseconds.
    pub wake_p50_ms: f64,
    /// The median over the rounds of each round's waiter p99, milliseconds.
    pub wake_p99_ms: f64,
    /// The median of the rounds' last-byte p99 after the leader's, milliseconds.
    pub done_p99_ms: f64,
    /// Failed requests over the rounds.
    pub errors: usize,
}

impl HerdReport {
    /// The report for people.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut o = format!(
            "herd: {} players per herd on {}
",
            self.clients, self.url
        );
        if self.origin_quiet == Some(false) {
            o.push_str(
                "  the origin was answering other requests: its counts below are upper bounds\n",
            );
        }
        for h in &self.herds {
            let _ = writeln!(
                o,
                "  round {} {:<17} ok {}/{}, origin requests {}, leader {:.1} ms, woken after it p50 {:.2} ms p99 {:.2} ms max {:.2} ms, last byte p99 {:.1} ms",
                h.round,
                h.object,
                h.ok,
                h.clients,
                h.origin_requests.map_or("?".into(), |n| format!("{n:.0}")),
                h.leader_ms,
                h.wake_p50_ms,
                h.wake_p99_ms,
                h.wake_max_ms,
                h.done_p99_ms
            );
        }
        for s in &self.summary {
            let _ = writeln!(
                o,
                "{:<17} over {} rounds: origin requests at most {}, waiters p50 {:.2} ms, p99 {:.2} ms (medians), {} errors",
                s.object,
                s.rounds,
                s.origin_requests_max
                    .map_or("?".into(), |n| format!("{n:.0}")),
                s.wake_p50_ms,
                s.wake_p99_ms,
                s.errors
            );
        }
        o
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Runs `rounds` of the three herds.
pub async fn run(plan: &HerdPlan) -> anyhow::Result<HerdReport> {
    if !(1..=100_000).contains(&plan.clients) {
        bail!(
            "-n: expected 1 to 100,000 players per herd, got {}",
            plan.clients
        );
    }
    if !(1..=1000).contains(&plan.rounds) {
        bail!("--rounds: expected 1 to 1000, got {}", plan.rounds);
    }
    let players = warm_up(plan).await?;
    let origin_quiet = wait_for_quiet_origin(plan).await?;
    let mut herds = Vec::new();
    for round in 1..=plan.rounds {
        herds.extend(run_round(plan, &players, round).await?);
    }
    let summary = ["hinted_part", "blocking_playlist", "segment"]
        .iter()
        .map(|object| {
            let of: Vec<&HerdResult> = herds.iter().filter(|h| h.object == *object).collect();
            HerdSummary {
                object: object.to_string(),
                rounds: of.len(),
                origin_requests_max: of.iter().filter_map(|h| h.origin_requests).reduce(f64::max),
                wake_p50_ms: median(of.iter().map(|h| h.wake_p50_ms).collect()),
                wake_p99_ms: median(of.iter().map(|h| h.wake_p99_ms).collect()),
                done_p99_ms: median(of.iter().map(|h| h.done_p99_ms).collect()),
                errors: of.iter().map(|h| h.errors).sum(),
            }
        })
        .collect();
    Ok(HerdReport {
        scenario: "herd".into(),
        url: plan.playlist.to_string(),
        clients: plan.clients,
        herds,
        summary,
        origin_quiet,
    })
}

/// One round: the three herds, each on a new object.
async fn run_round(
    plan: &HerdPlan,
    players: &[HttpClient],
    round: usize,
) -> anyhow::Result<Vec<HerdResult>> {
    let probe = HttpClient::new(plan.timeout);
    let mut results = Vec::new();

    let playlist = fetch_playlist(&probe, &plan.playlist).await?;
    let hint = playlist
        .preload_hint
        .clone()
        .context("the playlist hints no part")?;
    let part_url = resolve(&plan.playlist, &hint)?;
    results.push(herd(plan, players, round, "hinted_part", "part", part_url).await?);

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
            players,
            round,
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
    results.push(herd(plan, players, round, "segment", "segment", segment_url).await?);
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
    round: usize,
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
        round,
        object: object.to_string(),
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

/// How long the herd waits for the origin to fall quiet before its first round.
pub const QUIET_WITHIN: Duration = Duration::from_secs(10);

/// Polls the origin's request count until it stays the same for two part durations; `None`
/// without `--origin-metrics`, `Some(false)` when it kept changing for [`QUIET_WITHIN`].
async fn wait_for_quiet_origin(plan: &HerdPlan) -> anyhow::Result<Option<bool>> {
    if plan.origin_metrics.is_none() {
        return Ok(None);
    }
    let probe = HttpClient::new(plan.timeout);
    let part = fetch_playlist(&probe, &plan.playlist)
        .await?
        .part_target
        .unwrap_or(1.0);
    let every = Duration::from_secs_f64((part * 2.0).clamp(0.1, 5.0));
    let deadline = Instant::now() + QUIET_WITHIN;
    let mut last = media_count(plan).await?;
    while Instant::now() < deadline {
        tokio::time::sleep(every).await;
        let now = media_count(plan).await?;
        if now == last {
            return Ok(Some(true));
        }
        last = now;
    }
    Ok(Some(false))
}

/// Media requests (not health checks) the origin has answered so far.
async fn media_count(plan: &HerdPlan) -> anyhow::Result<Option<f64>> {
    origin_count_of(
        plan,
        &[
            "master",
            "playlist",
            "blocking_playlist",
            "part",
            "segment",
            "init",
        ],
    )
    .await
}

/// Requests of `kind` the origin has answered so far.
async fn origin_count(plan: &HerdPlan, kind: &str) -> anyhow::Result<Option<f64>> {
    origin_count_of(plan, &[kind]).await
}

/// Requests of these kinds the origin has answered so far, from one scrape.
async fn origin_count_of(plan: &HerdPlan, kinds: &[&str]) -> anyhow::Result<Option<f64>> {
    let Some(url) = &plan.origin_metrics else {
        return Ok(None);
    };
    let r = HttpClient::new(plan.timeout).get(url, &[]).await?;
    let text = std::str::from_utf8(&r.body)?;
    Ok(Some(
        kinds
            .iter()
            .map(|kind| {
                let prefix = format!("corral_origin_http_requests_total{{kind=\"{kind}\"");
                crate::metric_sum(text, &prefix)
            })
            .sum(),
    ))
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
