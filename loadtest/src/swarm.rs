//! `loadtest viewers`: a swarm of simulated LL-HLS players against an edge (or origin).
//!
//! Each player ([`player`]) is a state machine driven here by one task with a connection pool
//! of its own ([`HttpClient`]), bound to one of the given local addresses in turn. Players
//! start evenly over the ramp-up and all stop at its end plus the duration. A run with more
//! players than one process should hold (the open-file limit is per process) is spread over
//! worker processes: this same binary, told its share on stdin ([`WorkerPlan`]), which answer
//! with JSON lines of progress and, when the run ends or the parent says `stop`, their
//! [`SwarmTally`]. The parent merges the tallies, reads the origin's and the edge's request
//! counters before and after when given their metrics URLs, and writes one [`ViewersReport`]
//! ([`report`]). Ctrl-C stops every player and still reports what was measured.

pub mod abr;
pub mod player;
pub mod playout;
pub mod report;
pub mod tally;
mod track;

use std::net::IpAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use http::Uri;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::watch;

use self::abr::Selection;
use self::player::{Outcome, Player, PlayerPlan, Request};
use self::report::{Amplification, ViewersReport};
use self::tally::{Progress, SwarmTally};
use crate::client::HttpClient;

/// Players one worker process holds by default: each may hold four connections (a blocking
/// reload and a part, for video and audio), and the open-file limit is 20,000 per process.
pub const PLAYERS_PER_WORKER: usize = 2_500;
/// How often workers report progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// The longest a worker may take to report once the run is over.
const SUMMARY_TIMEOUT: Duration = Duration::from_secs(30);

/// What to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwarmPlan {
    /// The multivariant playlist URL.
    pub url: String,
    /// Players, all processes together.
    pub players: usize,
    /// How long every player watches once all have started.
    pub duration: Duration,
    /// Players start evenly over this long.
    pub ramp_up: Duration,
    /// `auto` (by measured throughput), a rendition name, or a bandwidth trace.
    pub rendition: String,
    /// A bandwidth trace (`5M:10s,800k:5s`) to choose renditions by, instead of `rendition`.
    pub bandwidth_trace: Option<String>,
    /// Whether players load the audio rendition too.
    pub audio: bool,
    /// Whether players ask for delta updates.
    pub delta: bool,
    /// Media seconds behind the live end to join at (default: PART-HOLD-BACK).
    pub hold_back: Option<f64>,
    /// Give up on one request after this long.
    pub request_timeout: Duration,
    /// Local addresses to connect from, one per player in turn; empty for the system's.
    pub source_addrs: Vec<IpAddr>,
    /// Worker processes (1: everything in this process).
    pub workers: usize,
    /// The origin's metrics URL, for the amplification.
    pub origin_metrics: Option<String>,
    /// The edge's metrics URL, for its own request counts.
    pub edge_metrics: Option<String>,
}

/// Worker processes for `players` by default: one per [`PLAYERS_PER_WORKER`], at least one.
///
/// ```
/// assert_eq!(corral_loadtest::swarm::default_workers(6000), 3);
/// assert_eq!(corral_loadtest::swarm::default_workers(10), 1);
/// ```
pub fn default_workers(players: usize) -> usize {
    players.div_ceil(PLAYERS_PER_WORKER).max(1)
}

impl SwarmPlan {
    /// Checks the plan, saying what is wrong as the flag's name would.
    pub fn check(&self) -> anyhow::Result<(Uri, PlayerPlan)> {
        let url: Uri = self
            .url
            .parse()
            .with_context(|| format!("URL {:?}: expected http://HOST:PORT/PATH", self.url))?;
        if url.scheme_str() != Some("http") || url.authority().is_none() {
            bail!(
                "URL {}: expected an http:// URL of a multivariant playlist (HTTPS is for `loadtest hits`)",
                self.url
            );
        }
        if !(1..=1_000_000).contains(&self.players) {
            bail!("-n: expected 1 to 1,000,000 players, got {}", self.players);
        }
        if self.workers == 0 || self.workers > self.players {
            bail!(
                "--workers: expected 1 to the number of players, got {}",
                self.workers
            );
        }
        if self.players.div_ceil(self.workers) > 4_500 {
            bail!(
                "--workers {}: {} players per process would pass the open-file limit (about 4,500 players each)",
                self.workers,
                self.players.div_ceil(self.workers)
            );
        }
        if self.duration.is_zero() {
            bail!("--duration: expected more than 0");
        }
        if let Some(h) = self.hold_back
            && !(0.0..=60.0).contains(&h)
        {
            bail!("--hold-back: expected 0 to 60 seconds, got {h}");
        }
        let selection = match (&self.bandwidth_trace, self.rendition.as_str()) {
            (Some(trace), _) => Selection::Trace(trace.parse()?),
            (None, "auto") => Selection::Measured,
            (None, name) => Selection::Fixed(name.to_string()),
        };
        let plan = PlayerPlan {
            master: url.clone(),
            selection,
            audio: self.audio,
            delta: self.delta,
            hold_back: self.hold_back,
        };
        Ok((url, plan))
    }
}

/// Runs `plan` and reports; `on_progress` is called about twice a second with the counters
/// so far and the run's elapsed time.
pub async fn run(
    plan: &SwarmPlan,
    mut on_progress: impl FnMut(&Progress, Duration),
) -> anyhow::Result<ViewersReport> {
    let (_, player_plan) = plan.check()?;
    let origin_metrics = parse_metrics_url(plan.origin_metrics.as_deref(), "--origin-metrics")?;
    let edge_metrics = parse_metrics_url(plan.edge_metrics.as_deref(), "--edge-metrics")?;
    let before = Amplification::read(origin_metrics.as_ref(), edge_metrics.as_ref()).await?;
    let (stop_tx, stop) = watch::channel(false);
    let interrupted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let (stop_tx, interrupted) = (stop_tx.clone(), interrupted.clone());
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupted.store(true, std::sync::atomic::Ordering::Relaxed);
                let _ = stop_tx.send(true);
            }
        });
    }
    let started = Instant::now();
    let tally = if plan.workers == 1 {
        let share = Share {
            first: 0,
            stride: 1,
        };
        let shared = Arc::new(Mutex::new(SwarmTally::default()));
        let work = run_players(plan, &player_plan, share, shared.clone(), stop.clone());
        tokio::pin!(work);
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        loop {
            tokio::select! {
                () = &mut work => break,
                _ = tick.tick() => on_progress(&shared.lock().progress(), started.elapsed()),
            }
        }
        shared.lock().clone()
    } else {
        run_workers(plan, stop, &mut on_progress, started).await?
    };
    let seconds = started.elapsed().as_secs_f64();
    let after = Amplification::read(origin_metrics.as_ref(), edge_metrics.as_ref()).await?;
    let amplification = before
        .zip(after)
        .map(|(b, a)| a.since(&b, tally.requests()));
    let _ = stop_tx.send(true);
    Ok(ViewersReport::new(
        plan,
        tally,
        seconds,
        amplification,
        interrupted.load(std::sync::atomic::Ordering::Relaxed),
    ))
}

fn parse_metrics_url(url: Option<&str>, flag: &str) -> anyhow::Result<Option<Uri>> {
    url.map(|u| {
        u.parse::<Uri>()
            .ok()
            .filter(|u| u.scheme_str() == Some("http"))
            .with_context(|| format!("{flag} {u:?}: expected http://HOST:PORT/metrics"))
    })
    .transpose()
}

/// Which of the run's players a process runs: `first`, `first + stride`, ...
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Share {
    first: usize,
    stride: usize,
}

/// Runs this process's share of the players to the end of the run (or `stop`).
async fn run_players(
    plan: &SwarmPlan,
    player_plan: &PlayerPlan,
    share: Share,
    tally: Arc<Mutex<SwarmTally>>,
    stop: watch::Receiver<bool>,
) {
    let start = tokio::time::Instant::now();
    let deadline = start + plan.ramp_up + plan.duration;
    let mut tasks = tokio::task::JoinSet::new();
    let mut index = share.first;
    while index < plan.players {
        let at = start + plan.ramp_up.mul_f64(index as f64 / plan.players as f64);
        let mut stop_wait = stop.clone();
        tokio::select! {
            () = tokio::time::sleep_until(at) => {}
            _ = stop_wait.wait_for(|s| *s) => break,
        }
        let source = (!plan.source_addrs.is_empty())
            .then(|| plan.source_addrs[index % plan.source_addrs.len()]);
        let client = HttpClient::with_source(plan.request_timeout, source);
        tasks.spawn(watch_stream(
            player_plan.clone(),
            index as u64,
            client,
            tally.clone(),
            stop.clone(),
            deadline,
        ));
        index += share.stride;
    }
    while tasks.join_next().await.is_some() {}
}

/// One player's task: sends what the player asks, gives it the answers, until the deadline.
async fn watch_stream(
    plan: PlayerPlan,
    index: u64,
    client: HttpClient,
    tally: Arc<Mutex<SwarmTally>>,
    mut stop: watch::Receiver<bool>,
    deadline: tokio::time::Instant,
) {
    tally.lock().players += 1;
    let mut player = Player::new(plan, Instant::now(), index);
    let mut in_flight = FuturesUnordered::new();
    loop {
        let (requests, wake) = player.poll(Instant::now());
        for r in requests {
            in_flight.push(fetch(client.clone(), r));
        }
        let observations = player.take_observations();
        if !observations.is_empty() {
            let mut t = tally.lock();
            for o in &observations {
                t.observe(o);
            }
        }
        if let Some(reason) = player.fatal() {
            let mut t = tally.lock();
            t.observe(&tally::Observation::Error(format!("player: {reason}")));
            break;
        }
        if player.ended() && in_flight.is_empty() {
            break;
        }
        let wake = wake.map_or(deadline, |w| {
            deadline.min(tokio::time::Instant::from_std(w))
        });
        tokio::select! {
            Some((id, outcome)) = in_flight.next() => {
                player.on_outcome(id, outcome, Instant::now(), SystemTime::now());
            }
            () = tokio::time::sleep_until(wake) => {
                if tokio::time::Instant::now() >= deadline {
                    break;
                }
            }
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    let (startup, stalls) = player.finish(Instant::now());
    tally.lock().player_ended(startup, &stalls);
}

async fn fetch(client: HttpClient, request: Request) -> (u64, Outcome) {
    let headers: &[(&str, &str)] = if request.gzip() {
        &[("accept-encoding", "gzip")]
    } else {
        &[]
    };
    let outcome = match client.get(&request.url, headers).await {
        Ok(f) => Outcome::Answer {
            status: f.status.as_u16(),
            gzip: f.content_encoding.as_deref() == Some("gzip"),
            transfer: f.done.saturating_duration_since(f.headers_at),
            body: f.body,
            elapsed: f.elapsed,
        },
        Err(e) => Outcome::Failed(format!("{e:#}")),
    };
    (request.id, outcome)
}

/// What a worker is told on its stdin's first line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerPlan {
    plan: SwarmPlan,
    share: Share,
}

/// A line from a worker to the parent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum WorkerLine {
    Progress(Progress),
    Tally(Box<SwarmTally>),
}

/// Runs as a worker: reads its [`WorkerPlan`] from stdin, runs its players, prints progress
/// and then its tally as JSON lines on stdout. A `stop` line on stdin, or stdin's end (the
/// parent died), ends the run early. Ctrl-C is left to the parent.
pub async fn run_worker() -> anyhow::Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let first = lines.next_line().await?.context(
        "a viewers worker reads its plan from stdin; it is started by `loadtest viewers`",
    )?;
    let WorkerPlan { plan, share } = serde_json::from_str(&first).context("the worker's plan")?;
    let (_, player_plan) = plan.check()?;
    tokio::spawn(async { while tokio::signal::ctrl_c().await.is_ok() {} });
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.trim() == "stop" {
                break;
            }
        }
        let _ = stop_tx.send(true);
    });
    let tally = Arc::new(Mutex::new(SwarmTally::default()));
    let work = run_players(&plan, &player_plan, share, tally.clone(), stop);
    tokio::pin!(work);
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    loop {
        tokio::select! {
            () = &mut work => break,
            _ = tick.tick() => crate::say_to_parent(&WorkerLine::Progress(tally.lock().progress()))?,
        }
    }
    let done = tally.lock().clone();
    crate::say_to_parent(&WorkerLine::Tally(Box::new(done)))
}

/// Starts the workers, relays their progress, and merges their tallies.
async fn run_workers(
    plan: &SwarmPlan,
    mut stop: watch::Receiver<bool>,
    on_progress: &mut impl FnMut(&Progress, Duration),
    started: Instant,
) -> anyhow::Result<SwarmTally> {
    let exe = std::env::current_exe().context("cannot find this program to start workers")?;
    let (line_tx, mut line_rx) = tokio::sync::mpsc::unbounded_channel::<(usize, WorkerLine)>();
    let mut stdins = Vec::new();
    let mut children = Vec::new();
    for index in 0..plan.workers {
        let mut child = tokio::process::Command::new(&exe)
            .arg("viewers-worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start viewers worker {index}"))?;
        let mut stdin = child.stdin.take().context("the worker's stdin is piped")?;
        let share = Share {
            first: index,
            stride: plan.workers,
        };
        let mut first = serde_json::to_vec(&WorkerPlan {
            plan: plan.clone(),
            share,
        })?;
        first.push(b'\n');
        stdin.write_all(&first).await?;
        stdins.push(stdin);
        let stdout = child
            .stdout
            .take()
            .context("the worker's stdout is piped")?;
        let tx = line_tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<WorkerLine>(&line) {
                    Ok(l) => {
                        if tx.send((index, l)).is_err() {
                            break;
                        }
                    }
                    Err(e) => tracing::warn!(worker = index, "unreadable worker line: {e}"),
                }
            }
        });
        children.push(child);
    }
    drop(line_tx);
    let mut progress = vec![Progress::default(); plan.workers];
    let mut tallies: Vec<Option<SwarmTally>> = vec![None; plan.workers];
    let mut stopping = false;
    let end = tokio::time::Instant::now() + plan.ramp_up + plan.duration + SUMMARY_TIMEOUT;
    while tallies.iter().any(Option::is_none) {
        tokio::select! {
            line = line_rx.recv() => match line {
                Some((i, WorkerLine::Progress(p))) => {
                    progress[i] = p;
                    let mut all = Progress::default();
                    for p in &progress {
                        all.add(p);
                    }
                    on_progress(&all, started.elapsed());
                }
                Some((i, WorkerLine::Tally(t))) => tallies[i] = Some(*t),
                None => break,
            },
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                for s in &mut stdins {
                    let _ = s.write_all(b"stop\n").await;
                }
            }
            () = tokio::time::sleep_until(end) => break,
        }
    }
    let mut merged = SwarmTally::default();
    let mut missing = 0;
    for t in &tallies {
        match t {
            Some(t) => merged.merge(t),
            None => missing += 1,
        }
    }
    if missing > 0 {
        merged.observe(&tally::Observation::Error(format!(
            "worker: {missing} of {} did not report (their errors are above)",
            plan.workers
        )));
    }
    // Dropping a child kills it if it is still running (it did not report in time); tokio
    // reaps the rest.
    drop(children);
    Ok(merged)
}
