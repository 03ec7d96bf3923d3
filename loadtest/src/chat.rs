//! `loadtest chat`: one chat room under load, measured as its chatters see it.
//!
//! The run, in order: `senders` users connect with signed tokens (`sender`); `connections`
//! read-only receivers connect at a bounded rate, spread over worker processes ([`receiver`])
//! because the open-file limit is per process; then the senders send `rate` messages per second for
//! `duration`, each text stamped with its send time ([`wire::Stamp`]); after a settle time
//! the workers report what each receiver got, and the parent merges the counts ([`tally`])
//! into one [`ChatReport`]: deliveries per second, delivery latency (receive wall time minus
//! send time, one machine's clock), losses, closes by code and, given the relay's PID, its
//! memory per connection and CPU. Ctrl-C cuts the run short and still reports.

pub mod receiver;
mod sender;
pub mod tally;
pub mod wire;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use self::receiver::WorkerLine;
use self::sender::{Link, Sending, schedule, send_messages, sender_url, token};
use self::tally::{LatencyQuantiles, WorkerSummary, lost};
use self::wire::unix_ns;
use crate::backoff::Backoff;

/// Receivers one worker process holds by default: the open-file limit is 20,000 per process.
pub const CONNECTIONS_PER_WORKER: usize = 15_000;
/// How long after the last send deliveries are still counted, by default.
pub const SETTLE: Duration = Duration::from_secs(3);
/// The longest a connection may take to open (TCP and the WebSocket handshake).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages waiting for one sender; more are skipped (and counted) rather than queued.
const SENDER_QUEUE: usize = 1024;
/// The longest a worker may take to report once told to stop.
const SUMMARY_TIMEOUT: Duration = Duration::from_secs(30);

/// The first reconnect's back-off; it doubles with each failed try, up to [`RECONNECT_MAX`].
const RECONNECT_BASE: Duration = Duration::from_millis(100);
/// The longest back-off between reconnect tries.
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// How a chatter (receiver or sender) comes back when its connection ends, as a chat client
/// does: after a jittered back-off, on the next node of the room's list, and again after each
/// failed try.
struct Reconnect {
    backoff: Backoff,
    node: usize,
    nodes: usize,
}

impl Reconnect {
    /// For chatter `index` (its jitter), on `node` of `nodes`.
    fn new(index: usize, node: usize, nodes: usize) -> Self {
        Self {
            backoff: Backoff::new(RECONNECT_BASE, RECONNECT_MAX, index as u64),
            node,
            nodes,
        }
    }

    /// Opens a connection on the next node that takes one (`url_of(node)` at `servers[node]`,
    /// from `source`); `None` once `closing` is raised.
    async fn again(
        &mut self,
        index: usize,
        closing: &mut watch::Receiver<bool>,
        servers: &[SocketAddr],
        source: Option<IpAddr>,
        url_of: impl Fn(usize) -> String,
    ) -> Option<ChatSocket> {
        let mut failures = 0;
        loop {
            failures += 1;
            tokio::select! {
                _ = tokio::time::sleep(self.backoff.after(failures)) => {}
                _ = raised(closing) => return None,
            }
            self.node = (self.node + 1) % self.nodes;
            match open_socket(&url_of(self.node), servers[self.node], source).await {
                Ok(s) => return Some(s),
                Err(e) => tracing::debug!(chatter = index, error = %e, "reconnect failed"),
            }
        }
    }
}

/// One WebSocket on one TCP connection.
pub type ChatSocket = WebSocketStream<TcpStream>;

/// What to run.
#[derive(Debug, Clone)]
pub struct ChatPlan {
    /// The room's WebSocket URL on each relay node (`ws://HOST:PORT/v1/rooms/ROOM/ws`), one
    /// or more: receivers and senders are spread over them in turn, and a client whose node
    /// goes away reconnects to the next with its last offset.
    pub urls: Vec<String>,
    /// Read-only receiving connections.
    pub connections: usize,
    /// Users sending, each on its own connection with its own token.
    pub senders: usize,
    /// Messages per second, all senders together.
    pub rate: f64,
    /// How long to send.
    pub duration: Duration,
    /// The relay's HS256 token secret.
    pub secret: String,
    /// Local addresses to connect from, in turn; empty for the system's choice.
    pub source_addrs: Vec<IpAddr>,
    /// Worker processes holding the receivers.
    pub workers: usize,
    /// New receiving connections per second, all workers together.
    pub connect_rate: f64,
    /// The relay's PID, to measure its memory and CPU.
    pub server_pid: Option<u32>,
    /// How long after the last send deliveries are still counted.
    pub settle: Duration,
}

/// Worker processes for `connections` receivers by default: one per
/// [`CONNECTIONS_PER_WORKER`], at least one.
///
/// ```
/// assert_eq!(corral_loadtest::chat::default_workers(20_000), 2);
/// assert_eq!(corral_loadtest::chat::default_workers(0), 1);
/// ```
pub fn default_workers(connections: usize) -> usize {
    connections.div_ceil(CONNECTIONS_PER_WORKER).max(1)
}

/// The outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatReport {
    /// `chat`: tells this report from the other modes'.
    pub scenario: String,
    /// The room, on its first node.
    pub url: String,
    /// The room on every node.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Receiving connections asked for.
    pub connections: usize,
    /// Worker processes, and how many of them reported.
    pub workers: usize,
    /// Workers whose summary came back.
    pub workers_reported: usize,
    /// Senders asked for.
    pub senders: usize,
    /// Senders connected.
    pub senders_held: usize,
    /// Messages per second asked for.
    pub rate: f64,
    /// Seconds the receivers took to connect.
    pub connect_seconds: f64,
    /// Seconds of sending.
    pub seconds: f64,
    /// Receivers open when sending began.
    pub connections_held_at_start: u64,
    /// Receivers open at the end.
    pub connections_held: u64,
    /// Connections (receivers and senders) that could not be opened.
    pub connect_failures: u64,
    /// Those failures by error message.
    pub connect_errors: BTreeMap<String, u64>,
    /// Messages written.
    pub messages_sent: u64,
    /// Messages not written because their sender was still busy with earlier ones.
    pub messages_skipped: u64,
    /// Messages the relay acked.
    pub messages_acked: u64,
    /// Sends the relay refused, by error code.
    pub refused: BTreeMap<String, u64>,
    /// Messages received, over all receivers.
    pub deliveries: u64,
    /// Acked messages times receivers held when sending began.
    pub expected_deliveries: u64,
    /// Deliveries per second, from the first send to the last delivery (which is later than
    /// the last send by the backlog, when the relay falls behind).
    pub deliveries_per_s: f64,
    /// Expected deliveries that did not come within the settle time.
    pub lost: u64,
    /// Send-to-receive latency, microseconds.
    pub latency_us: LatencyQuantiles,
    /// Connections (receivers and senders) that ended during the run, by close code (1006:
    /// without a close frame).
    pub closes_by_code: BTreeMap<u16, u64>,
    /// Receivers back after their connection ended (on the next node, with their offset).
    #[serde(default)]
    pub receiver_reconnects: u64,
    /// Senders back after their connection ended.
    #[serde(default)]
    pub sender_reconnects: u64,
    /// Deliveries that came in a reconnect's recovery frame (in `deliveries`, not in the
    /// latency).
    #[serde(default)]
    pub recovered_deliveries: u64,
    /// Reconnects whose recovery was incomplete (the relay had not kept all that was missed).
    #[serde(default)]
    pub incomplete_recoveries: u64,
    /// Messages a receiver got twice (dropped by offset).
    #[serde(default)]
    pub duplicates: u64,
    /// The longest a receiver was away: from its connection's end to its recovery, ms.
    #[serde(default)]
    pub longest_away_ms: u64,
    /// Messages written whose ack never came (their sender's connection ended first): a
    /// client shows them as not sent; they are not expected at the receivers.
    #[serde(default)]
    pub messages_unacked: u64,
    /// The relay's resident memory before any connection, KiB.
    pub rss_before_kb: Option<u64>,
    /// ... and with every connection held.
    pub rss_after_kb: Option<u64>,
    /// The growth per receiver held, bytes.
    pub rss_bytes_per_connection: Option<f64>,
    /// The relay's CPU use while sending, percent of one core.
    pub server_cpu_percent: Option<f64>,
    /// This load's own CPU use while sending (the parent and its workers), percent of one
    /// core: on one machine, the relay and its clients share the cores.
    pub loadtest_cpu_percent: Option<f64>,
    /// Whether Ctrl-C cut the run short.
    pub interrupted: bool,
}

impl ChatReport {
    /// One line for people.
    pub fn summary_line(&self) -> String {
        let ms = |us: u64| us as f64 / 1000.0;
        format!(
            "chat: {}/{} receivers held ({} failed to connect), {} sent, {} acked, {} deliveries ({:.0}/s), latency p50 {:.1} ms p99 {:.1} ms max {:.1} ms, {} lost{}{}",
            self.connections_held,
            self.connections,
            self.connect_failures,
            self.messages_sent,
            self.messages_acked,
            self.deliveries,
            self.deliveries_per_s,
            ms(self.latency_us.p50),
            ms(self.latency_us.p99),
            ms(self.latency_us.max),
            self.lost,
            if self.receiver_reconnects + self.sender_reconnects > 0 {
                format!(
                    ", {} receivers and {} senders reconnected (longest away {} ms, {} recovered, {} incomplete recoveries, {} unacked)",
                    self.receiver_reconnects,
                    self.sender_reconnects,
                    self.longest_away_ms,
                    self.recovered_deliveries,
                    self.incomplete_recoveries,
                    self.messages_unacked,
                )
            } else {
                String::new()
            },
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            },
        )
    }
}

/// Runs `plan`.
pub async fn run(plan: &ChatPlan) -> anyhow::Result<ChatReport> {
    let per_second = 0.001..=1e6;
    if plan.workers == 0 {
        bail!("--workers: expected at least 1");
    }
    if !per_second.contains(&plan.connect_rate) {
        bail!("--connect-rate: expected 0.001 to 1,000,000 connections per second");
    }
    if plan.rate != 0.0 && !per_second.contains(&plan.rate) {
        bail!(
            "--rate: expected 0 (hold connections only) or 0.001 to 1,000,000 messages per second"
        );
    }
    let Some(first_url) = plan.urls.first() else {
        bail!("expected the room's URL");
    };
    let mut servers = Vec::new();
    for url in &plan.urls {
        servers.push(resolve(url).await?);
    }
    let run = run_id();
    let since = last_offset(first_url).await;
    let mut interrupt = interrupt_on_ctrl_c();
    let rss_before_kb = plan.server_pid.and_then(rss_kb);

    // Phase 1, the senders: first, so that they are in even when the receivers fill the relay.
    let sending = Arc::new(Sending::default());
    let mut sender_sockets = Vec::new();
    let mut sender_failures = WorkerSummary::default();
    let exp =
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() + plan.duration.as_secs() + 3600;
    for i in 0..plan.senders {
        let token = token(&plan.secret, i, exp)?;
        let source =
            (!plan.source_addrs.is_empty()).then(|| plan.source_addrs[i % plan.source_addrs.len()]);
        let link = Link {
            urls: plan.urls.iter().map(|u| sender_url(u, &token)).collect(),
            servers: servers.clone(),
            node: i % plan.urls.len(),
            source,
        };
        match open_socket(&link.urls[link.node], servers[link.node], source).await {
            Ok(s) => sender_sockets.push((link, s)),
            Err(e) => {
                tracing::warn!(sender = i, error = %e, "a sender cannot connect");
                sender_failures.record_connect_failure(&e);
            }
        }
    }

    // Phase 2, the receivers: the workers' ramps, until each says it is ready.
    let ramp_started = Instant::now();
    let mut workers = Vec::new();
    let mut first = 0;
    for index in 0..plan.workers {
        let share =
            plan.connections / plan.workers + usize::from(index < plan.connections % plan.workers);
        workers.push(WorkerProcess::spawn(plan, index, share, first, run, since)?);
        first += share;
    }
    // Every connection has its own timeout, so a ramp ends on its own; this is the backstop.
    let ramp_limit = Duration::from_secs_f64(plan.connections as f64 / plan.connect_rate)
        + CONNECT_TIMEOUT
        + Duration::from_secs(30);
    let ready = unless_interrupted(&mut interrupt, async {
        let mut held = 0;
        for w in &mut workers {
            held += tokio::time::timeout(ramp_limit, w.ready())
                .await
                .with_context(|| {
                    format!("chat worker {} was not ready in {ramp_limit:?}", w.index)
                })??;
        }
        anyhow::Ok(held)
    })
    .await
    .transpose()?;
    let connect_seconds = ramp_started.elapsed().as_secs_f64();
    if let Some(held) = ready {
        eprintln!(
            "chat: {held}/{} receivers and {}/{} senders connected in {connect_seconds:.1} s",
            plan.connections,
            sender_sockets.len(),
            plan.senders
        );
    }
    let rss_after_kb = plan.server_pid.and_then(rss_kb);

    // Phase 3, sending for the duration, then the settle time for the last deliveries.
    let senders_held = sender_sockets.len();
    let mut queues = Vec::new();
    let mut sender_tasks = Vec::new();
    let (closing_tx, closing) = watch::channel(false);
    for (i, (link, socket)) in sender_sockets.into_iter().enumerate() {
        let (tx, rx) = mpsc::channel(SENDER_QUEUE);
        queues.push(tx);
        let sender = send_messages(i, run, link, socket, rx, sending.clone(), closing.clone());
        sender_tasks.push(tokio::spawn(sender));
    }
    let cpu_before = plan.server_pid.and_then(crate::hits::cpu_seconds);
    let own_cpu_before = own_cpu_seconds(&workers);
    let sending_started = Instant::now();
    let sending_started_unix_ns = unix_ns(SystemTime::now());
    unless_interrupted(
        &mut interrupt,
        schedule(plan.rate, plan.duration, &queues, &sending),
    )
    .await;
    let seconds = sending_started.elapsed().as_secs_f64();
    let cpu_after = plan.server_pid.and_then(crate::hits::cpu_seconds);
    let own_cpu_after = own_cpu_seconds(&workers);
    // The senders write what is queued, then only read acks.
    drop(queues);
    unless_interrupted(&mut interrupt, tokio::time::sleep(plan.settle)).await;

    // Phase 4, the counts: every worker's summary, then everybody closes.
    let mut merged = WorkerSummary::default();
    let mut workers_reported = 0;
    for w in &mut workers {
        w.stop().await;
    }
    for w in &mut workers {
        match tokio::time::timeout(SUMMARY_TIMEOUT, w.summary()).await {
            Ok(Ok(summary)) => {
                merged.merge(&summary);
                workers_reported += 1;
            }
            Ok(Err(e)) => tracing::warn!(worker = w.index, error = %e, "no summary"),
            Err(_) => tracing::warn!(worker = w.index, "no summary in time"),
        }
    }
    let _ = closing_tx.send(true);
    for t in sender_tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    for w in &mut workers {
        let _ = tokio::time::timeout(Duration::from_secs(5), w.child.wait()).await;
    }

    merged.merge(&sender_failures);
    for (code, n) in sending.closes.lock().iter() {
        *merged.closes_by_code.entry(*code).or_default() += n;
    }
    let refused: u64 = sending.refused.lock().values().sum();
    let acked = sending.acked.lock();
    let messages_unacked = sending
        .sent
        .load(Ordering::Relaxed)
        .saturating_sub(acked.len() as u64)
        .saturating_sub(refused);
    let cpu = cpu_before.zip(cpu_after).map(|(b, a)| a - b);
    Ok(ChatReport {
        scenario: "chat".into(),
        url: first_url.clone(),
        nodes: plan.urls.clone(),
        connections: plan.connections,
        workers: plan.workers,
        workers_reported,
        senders: plan.senders,
        senders_held,
        rate: plan.rate,
        connect_seconds,
        seconds,
        connections_held_at_start: merged.held_at_start,
        connections_held: merged.held,
        connect_failures: merged.connect_failures,
        connect_errors: merged.connect_errors.clone(),
        messages_sent: sending.sent.load(Ordering::Relaxed),
        messages_skipped: sending.skipped.load(Ordering::Relaxed),
        messages_acked: acked.len() as u64,
        refused: sending.refused.lock().clone(),
        deliveries: merged.deliveries,
        expected_deliveries: acked.len() as u64 * merged.held_at_start,
        deliveries_per_s: merged.deliveries as f64
            / (merged
                .last_delivery_unix_ns
                .saturating_sub(sending_started_unix_ns) as f64
                / 1e9)
                .max(1e-3),
        lost: lost(&acked, merged.held_at_start, &merged.received),
        latency_us: merged.latency_us.quantiles(),
        closes_by_code: merged.closes_by_code.clone(),
        receiver_reconnects: merged.reconnects,
        sender_reconnects: sending.reconnects.load(Ordering::Relaxed),
        recovered_deliveries: merged.recovered_deliveries,
        incomplete_recoveries: merged.incomplete_recoveries,
        duplicates: merged.duplicates,
        longest_away_ms: merged.longest_away_ms,
        messages_unacked,
        rss_before_kb,
        rss_after_kb,
        rss_bytes_per_connection: rss_before_kb
            .zip(rss_after_kb)
            .filter(|_| merged.held_at_start > 0)
            .map(|(b, a)| (a as f64 - b as f64) * 1024.0 / merged.held_at_start as f64),
        server_cpu_percent: cpu.map(|c| c * 100.0 / seconds.max(1e-9)),
        loadtest_cpu_percent: own_cpu_before
            .zip(own_cpu_after)
            .map(|(b, a)| (a - b) * 100.0 / seconds.max(1e-9)),
        interrupted: *interrupt.borrow(),
    })
}

/// A receiver that is set once Ctrl-C comes.
fn interrupt_on_ctrl_c() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("chat: interrupted, collecting what was counted");
            let _ = tx.send(true);
        }
    });
    rx
}

/// Returns once `flag` is set, at once if it already is; never if it was left unset.
async fn raised(flag: &mut watch::Receiver<bool>) {
    if flag.wait_for(|set| *set).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// `f`'s output, or `None` when Ctrl-C came first (at once when it already has).
async fn unless_interrupted<F: Future>(
    interrupt: &mut watch::Receiver<bool>,
    f: F,
) -> Option<F::Output> {
    tokio::select! {
        out = f => Some(out),
        _ = raised(interrupt) => None,
    }
}

/// A run id, to tell this run's messages from others' in the room's history.
fn run_id() -> u32 {
    // This process's id and the clock's nanoseconds: two runs in one room differ in either.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::process::id().rotate_left(16) ^ nanos
}

/// The room's last offset now (from its history, `GET .../messages?limit=1` beside the
/// WebSocket URL); 0 for an empty room or when the history cannot be read (said on stderr).
async fn last_offset(ws_url: &str) -> u64 {
    let history = ws_url
        .strip_prefix("ws://")
        .and_then(|rest| {
            rest.strip_suffix("/ws")
                .or_else(|| rest.split_once("/ws?").map(|(a, _)| a))
        })
        .map(|room| format!("http://{room}/messages?limit=1"));
    let read = async {
        let uri: http::Uri = history.context("not a room URL")?.parse()?;
        let r = crate::client::HttpClient::new(CONNECT_TIMEOUT)
            .get(&uri, &[])
            .await?;
        anyhow::ensure!(r.status == 200, "{uri}: {}", r.status);
        let page: serde_json::Value = serde_json::from_slice(&r.body)?;
        anyhow::Ok(page["messages"][0]["offset"].as_u64().unwrap_or(0))
    };
    read.await.unwrap_or_else(|e| {
        eprintln!("chat: the room's history cannot be read ({e:#}): receivers that reconnect before their first message recover from offset 0");
        0
    })
}

/// The address of the room URL's host (`ws://` only).
async fn resolve(url: &str) -> anyhow::Result<SocketAddr> {
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("chat {url}: not a URL"))?;
    if uri.scheme_str() != Some("ws") {
        bail!("chat {url}: expected a ws://HOST:PORT/v1/rooms/ROOM/ws URL");
    }
    let host = uri.host().context("the URL has no host")?;
    let port = uri.port_u16().unwrap_or(80);
    tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("chat {url}: cannot resolve {host}"))?
        .next()
        .with_context(|| format!("chat {url}: {host} has no address"))
}

/// Opens a WebSocket to `url` at `server`, from `source` when given; the error as a short
/// message, to be counted by kind.
async fn open_socket(
    url: &str,
    server: SocketAddr,
    source: Option<IpAddr>,
) -> Result<ChatSocket, String> {
    let open = async {
        let socket = if server.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|e| format!("socket: {e}"))?;
        if let Some(ip) = source {
            socket
                .bind(SocketAddr::new(ip, 0))
                .map_err(|e| format!("bind {ip}: {e}"))?;
        }
        let tcp = socket
            .connect(server)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
        // Small buffers: thousands of connections in one process, each reading small frames.
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(4096);
        let (socket, _) = tokio_tungstenite::client_async_with_config(url, tcp, Some(config))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        Ok(socket)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, open)
        .await
        .unwrap_or_else(|_| Err(format!("timed out after {CONNECT_TIMEOUT:?}")))
}

/// CPU seconds of this process and its live workers so far.
fn own_cpu_seconds(workers: &[WorkerProcess]) -> Option<f64> {
    let mut total = crate::hits::cpu_seconds(std::process::id())?;
    for w in workers {
        total += w.child.id().and_then(crate::hits::cpu_seconds)?;
    }
    Some(total)
}

/// The resident memory of process `pid`, KiB.
fn rss_kb(pid: u32) -> Option<u64> {
    tally::vm_rss_kb(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// A worker process, as the parent sees it: this same binary run as `loadtest chat-worker`.
struct WorkerProcess {
    index: usize,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
}

impl WorkerProcess {
    /// Starts worker `index` on `share` receivers, the first of them number `first`.
    fn spawn(
        plan: &ChatPlan,
        index: usize,
        share: usize,
        first: usize,
        run: u32,
        since: u64,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find this program to start workers")?;
        let mut command = tokio::process::Command::new(exe);
        command
            .arg("chat-worker")
            .args(&plan.urls)
            .arg("--run")
            .arg(run.to_string())
            .arg("--since")
            .arg(since.to_string())
            .arg("--connections")
            .arg(share.to_string())
            .arg("--connect-rate")
            .arg((plan.connect_rate / plan.workers as f64).to_string())
            .arg("--worker-first")
            .arg(first.to_string());
        if !plan.source_addrs.is_empty() {
            let addrs: Vec<String> = plan.source_addrs.iter().map(IpAddr::to_string).collect();
            command.arg("--source-addrs").arg(addrs.join(","));
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start chat worker {index}"))?;
        let stdin = child.stdin.take().context("the worker's stdin is piped")?;
        let stdout = child
            .stdout
            .take()
            .context("the worker's stdout is piped")?;
        Ok(Self {
            index,
            child,
            stdin: Some(stdin),
            lines: BufReader::new(stdout).lines(),
        })
    }

    async fn next(&mut self) -> anyhow::Result<WorkerLine> {
        let line = self.lines.next_line().await?.with_context(|| {
            format!(
                "chat worker {} ended without reporting (its errors are above)",
                self.index
            )
        })?;
        serde_json::from_str(&line).with_context(|| {
            let start: String = line.chars().take(200).collect();
            format!("chat worker {} said {start:?}...", self.index)
        })
    }

    /// Waits for `ready`; the receivers held.
    async fn ready(&mut self) -> anyhow::Result<u64> {
        match self.next().await? {
            WorkerLine::Ready { held, .. } => Ok(held),
            WorkerLine::Summary(_) => {
                bail!("chat worker {} stopped before it was ready", self.index)
            }
        }
    }

    /// Tells the worker to stop counting.
    async fn stop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"stop\n").await;
        }
    }

    /// Waits for the summary (after a `ready` that may not have been read).
    async fn summary(&mut self) -> anyhow::Result<WorkerSummary> {
        loop {
            if let WorkerLine::Summary(summary) = self.next().await? {
                return Ok(*summary);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_ws_urls_are_taken() {
        assert!(resolve("ws://127.0.0.1:8090/v1/rooms/r/ws").await.is_ok());
        assert!(resolve("wss://127.0.0.1:8090/v1/rooms/r/ws").await.is_err());
        assert!(resolve("http://127.0.0.1:8090/").await.is_err());
    }
}
