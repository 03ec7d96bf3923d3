//! `loadtest`: load an edge, an origin or a chat relay the way viewers and chatters do, and
//! report what they would feel. One subcommand per mode: `viewers`, `herd`, `chat`, `hits`,
//! and `report` to read (and merge) the JSON reports they write.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use corral_loadtest::chat::receiver::{self, WorkerPlan};
use corral_loadtest::chat::{self, ChatPlan, ChatReport};
use corral_loadtest::config::LoadtestConfig;
use corral_loadtest::herd::{self, HerdPlan, HerdReport};
use corral_loadtest::hits::{self, HitsPlan, HitsReport, Protocol};
use corral_loadtest::swarm::report::ViewersReport;
use corral_loadtest::swarm::{self, SwarmPlan};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// Load tests of a Corral edge, origin or chat relay.
#[derive(Debug, Parser)]
#[command(name = "loadtest", version)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Simulated LL-HLS players watching a stream (blocking reloads, parts, delta updates,
    /// rendition switches, a playout buffer that can stall).
    Viewers(ViewersArgs),
    /// Bursts of players asking at once for an object that does not exist yet, each round on
    /// the next part: what reached the origin, and how long the waiters waited.
    Herd(HerdArgs),
    /// WebSocket chatters in one room: receivers and senders; delivery latency and losses.
    Chat(ChatArgs),
    /// Cache-hit throughput of one URL over HTTP/1.1, HTTP/2 or HTTP/3.
    Hits(HitsArgs),
    /// Prints JSON reports written with --json; several viewers reports (from several load
    /// machines) are merged into one.
    Report(ReportArgs),
    /// A process of `viewers` (started by it).
    #[command(hide = true)]
    ViewersWorker,
    /// A process of `chat` (started by it).
    #[command(hide = true)]
    ChatWorker(ChatWorkerArgs),
}

/// Where a report goes.
#[derive(Debug, Args)]
struct Output {
    /// What to print on stdout.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Also write the JSON report to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// A summary for people.
    Text,
    /// The whole report as JSON.
    Json,
}

#[derive(Debug, Args)]
struct ViewersArgs {
    /// The multivariant playlist (http://EDGE/live/STREAM/master.m3u8); default: the config's.
    url: Option<String>,
    /// The YAML config file (see conf/loadtest.yaml); flags override it.
    #[arg(long, value_name = "YAML")]
    config: Option<PathBuf>,
    /// Players.
    #[arg(short = 'n', long)]
    players: Option<usize>,
    /// How long to watch once every player has started (20s, 5m, or seconds).
    #[arg(long, value_parser = duration)]
    duration: Option<Duration>,
    /// Players start evenly over this long.
    #[arg(long, value_parser = duration)]
    ramp_up: Option<Duration>,
    /// `auto` (by measured throughput) or a rendition's name (720p).
    #[arg(long)]
    rendition: Option<String>,
    /// Choose renditions by this bandwidth over time, repeated: RATE:TIME,... (5M:10s,800k:5s).
    #[arg(long, value_name = "TRACE")]
    bandwidth_trace: Option<String>,
    /// Load video only (no audio rendition).
    #[arg(long)]
    no_audio: bool,
    /// Never ask for delta updates.
    #[arg(long)]
    no_delta: bool,
    /// Join this many seconds behind the live end (default: the playlist's PART-HOLD-BACK).
    #[arg(long, value_name = "SECONDS")]
    hold_back: Option<f64>,
    /// Give up on one request after this long.
    #[arg(long, value_parser = duration)]
    timeout: Option<Duration>,
    /// Local addresses to connect from, one per player in turn (127.0.0.1,127.0.0.2).
    #[arg(long, value_delimiter = ',', value_name = "IP,...")]
    source_addrs: Vec<IpAddr>,
    /// Worker processes (the open-file limit is per process); default one per 2,500 players.
    #[arg(long)]
    workers: Option<usize>,
    /// The origin's metrics URL: report the origin requests per viewer request.
    #[arg(long, value_name = "URL")]
    origin_metrics: Option<String>,
    /// The edge's metrics URL: report its request counts too.
    #[arg(long, value_name = "URL")]
    edge_metrics: Option<String>,
    #[command(flatten)]
    output: Output,
}

#[derive(Debug, Args)]
struct HerdArgs {
    /// A media playlist through the cache under test (http://EDGE/live/STREAM/720p/index.m3u8).
    url: String,
    /// Players per herd, each on its own connection.
    #[arg(short = 'n', long, default_value_t = 1000)]
    players: usize,
    /// Rounds of the three herds (hinted part, blocking playlist, segment).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The origin's metrics URL, to count the requests that reached it.
    #[arg(long, value_name = "URL")]
    origin_metrics: Option<String>,
    /// Give up on one request after this long.
    #[arg(long, value_parser = duration, default_value = "10s")]
    timeout: Duration,
    #[command(flatten)]
    output: Output,
}

#[derive(Debug, Args)]
struct ChatArgs {
    /// The room's WebSocket URL (ws://HOST:PORT/v1/rooms/ROOM/ws).
    url: String,
    /// The same room on another relay node (repeat or comma-separate): clients are spread
    /// over all the nodes, and reconnect to the next with their last offset when theirs ends.
    #[arg(long = "node", value_delimiter = ',', value_name = "URL")]
    nodes: Vec<String>,
    /// Read-only receiving connections.
    #[arg(short = 'n', long, default_value_t = 32)]
    connections: usize,
    /// Users sending, each on its own connection with its own token.
    #[arg(long, default_value_t = 10)]
    senders: usize,
    /// Messages per second, all senders together.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// How long to send.
    #[arg(long, value_parser = duration, default_value = "30s")]
    duration: Duration,
    /// The relay's HS256 token secret (its `jwt_secret`).
    #[arg(long, default_value = "dev-chat-secret")]
    secret: String,
    /// Local addresses to connect from, in turn (127.0.0.1,127.0.0.2).
    #[arg(long, value_delimiter = ',', value_name = "IP,...")]
    source_addrs: Vec<IpAddr>,
    /// Worker processes holding the receivers; default one per 15,000 receivers.
    #[arg(long)]
    workers: Option<usize>,
    /// New receiving connections per second, all workers together.
    #[arg(long, default_value_t = 1000.0)]
    connect_rate: f64,
    /// How long after the last send deliveries still count; later ones are lost.
    #[arg(long, value_parser = duration, default_value = "3s")]
    settle: Duration,
    /// The relay's PID, to report its memory per connection and its CPU use.
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    #[command(flatten)]
    output: Output,
}

#[derive(Debug, Args)]
struct HitsArgs {
    /// A cached object (http:// for plain HTTP/1.1, https:// otherwise).
    url: String,
    /// The protocol.
    #[arg(long, value_enum, default_value_t = Protocol::H1)]
    protocol: Protocol,
    /// Client connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Requests in flight on each connection (HTTP/2 and HTTP/3).
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// How long to run.
    #[arg(long, value_parser = duration, default_value = "10s")]
    duration: Duration,
    /// The PEM certificate to trust (TLS and QUIC).
    #[arg(long, value_name = "PEM")]
    ca: Option<PathBuf>,
    /// The server's PIDs (comma-separated: a master's workers, say), to report their CPU time
    /// per request together.
    #[arg(long, value_delimiter = ',', value_name = "PID,...")]
    server_pid: Vec<u32>,
    #[command(flatten)]
    output: Output,
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// JSON reports.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// What to print: the summary, or (merged) JSON.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, Args)]
struct ChatWorkerArgs {
    #[arg(required = true)]
    urls: Vec<String>,
    #[arg(long)]
    run: u32,
    #[arg(long, default_value_t = 0)]
    since: u64,
    #[arg(long)]
    connections: usize,
    #[arg(long)]
    connect_rate: f64,
    #[arg(long, value_delimiter = ',')]
    source_addrs: Vec<IpAddr>,
    #[arg(long, default_value_t = 0)]
    worker_first: usize,
}

/// A duration as `20s`, `1m30s`, `500ms` or plain seconds (`2.5`).
fn duration(text: &str) -> Result<Duration, String> {
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds)
            .map_err(|_| format!("{text:?}: expected 0 or more seconds"));
    }
    humantime::parse_duration(text).map_err(|e| format!("{text:?}: {e} (expected 20s, 5m, 500ms)"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_level = match &cli.mode {
        Mode::Viewers(a) => match viewers_config(a) {
            Ok(c) => c.log_level,
            Err(e) => {
                eprintln!("loadtest: {e:#}");
                return ExitCode::from(2);
            }
        },
        _ => "warn".to_string(),
    };
    corral_telemetry::init_logging(&log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadtest: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.mode)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadtest: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(mode: Mode) -> anyhow::Result<()> {
    match mode {
        Mode::Viewers(a) => viewers(a).await,
        Mode::ViewersWorker => swarm::run_worker().await,
        Mode::Herd(a) => {
            let plan = HerdPlan {
                playlist: a.url.parse().with_context(|| format!("URL {:?}", a.url))?,
                clients: a.players,
                rounds: a.rounds,
                origin_metrics: a.origin_metrics.as_deref().map(str::parse).transpose()?,
                timeout: a.timeout,
            };
            let report = herd::run(&plan).await?;
            emit(&a.output, &report, &report.render())
        }
        Mode::Chat(a) => {
            let plan = ChatPlan {
                urls: std::iter::once(a.url).chain(a.nodes).collect(),
                connections: a.connections,
                senders: a.senders,
                rate: a.rate,
                duration: a.duration,
                secret: a.secret,
                source_addrs: a.source_addrs,
                workers: a
                    .workers
                    .unwrap_or_else(|| chat::default_workers(a.connections)),
                connect_rate: a.connect_rate,
                server_pid: a.server_pid,
                settle: a.settle,
            };
            let report = chat::run(&plan).await?;
            let text = report.summary_line() + "\n";
            emit(&a.output, &report, &text)
        }
        Mode::ChatWorker(a) => {
            let plan = WorkerPlan {
                urls: a.urls,
                run: a.run,
                since: a.since,
                connections: a.connections,
                connect_rate: a.connect_rate,
                source_addrs: a.source_addrs,
                first: a.worker_first,
            };
            receiver::run_worker(&plan).await
        }
        Mode::Hits(a) => {
            let plan = HitsPlan {
                url: a.url.parse().with_context(|| format!("URL {:?}", a.url))?,
                protocol: a.protocol,
                connections: a.connections,
                streams: a.streams,
                duration: a.duration,
                ca: a.ca,
                server_pids: a.server_pid,
            };
            let report = hits::run(&plan).await?;
            let text = report.summary_line() + "\n";
            emit(&a.output, &report, &text)
        }
        Mode::Report(a) => report(&a.files, a.format),
    }
}

/// The config file, with the flags over it, checked.
fn viewers_config(a: &ViewersArgs) -> anyhow::Result<LoadtestConfig> {
    let mut c: LoadtestConfig = yaml_config::load_or_default(a.config.as_deref())?;
    if let Some(u) = &a.url {
        c.url.clone_from(u);
    }
    if let Some(n) = a.players {
        c.viewers = n;
    }
    if let Some(d) = a.duration {
        c.duration = d.as_secs_f64();
    }
    if let Some(d) = a.ramp_up {
        c.ramp_up = d.as_secs_f64();
    }
    if let Some(r) = &a.rendition {
        c.rendition.clone_from(r);
    }
    if let Some(t) = a.timeout {
        c.request_timeout = t.as_secs_f64();
    }
    c.audio &= !a.no_audio;
    c.delta &= !a.no_delta;
    yaml_config::Validate::validate(&c)
        .map_err(|e| anyhow::anyhow!("{}: expected {}, got {}", e.key, e.expected, e.got))?;
    Ok(c)
}

async fn viewers(a: ViewersArgs) -> anyhow::Result<()> {
    let c = viewers_config(&a)?;
    let plan = SwarmPlan {
        url: c.url.clone(),
        players: c.viewers,
        duration: Duration::from_secs_f64(c.duration),
        ramp_up: Duration::from_secs_f64(c.ramp_up),
        rendition: c.rendition.clone(),
        bandwidth_trace: a.bandwidth_trace.clone(),
        audio: c.audio,
        delta: c.delta,
        hold_back: a.hold_back,
        request_timeout: Duration::from_secs_f64(c.request_timeout),
        source_addrs: a.source_addrs.clone(),
        workers: a
            .workers
            .unwrap_or_else(|| swarm::default_workers(c.viewers)),
        origin_metrics: a.origin_metrics.clone(),
        edge_metrics: a.edge_metrics.clone(),
    };
    plan.check()?;
    let total = plan.ramp_up + plan.duration;
    // Drawn only on a terminal (indicatif hides itself otherwise).
    let bar = ProgressBar::new(total.as_secs().max(1));
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} s  {msg}")
            .context("the progress bar's template")?
            .progress_chars("=> "),
    );
    let report = swarm::run(&plan, |p, elapsed| {
        bar.set_position(elapsed.as_secs().min(total.as_secs()));
        let rate = p.requests as f64 / elapsed.as_secs_f64().max(0.001);
        bar.set_message(format!(
            "{} players · {} requests ({rate:.0}/s) · {} stalls · {} errors",
            p.players, p.requests, p.stalls, p.errors
        ));
    })
    .await?;
    bar.finish_and_clear();
    emit(&a.output, &report, &report.render())
}

/// Prints `text` or the JSON of `report`, and writes the JSON where asked.
fn emit<R: Serialize>(output: &Output, report: &R, text: &str) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(report)?;
    if let Some(path) = &output.json {
        std::fs::write(path, format!("{json}\n"))
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
    }
    match output.format {
        Format::Text => print!("{text}"),
        Format::Json => println!("{json}"),
    }
    Ok(())
}

/// `loadtest report`: reads each file, merges the viewers reports, prints the rest in turn.
fn report(files: &[PathBuf], format: Format) -> anyhow::Result<()> {
    let mut viewers = Vec::new();
    let mut others = Vec::new();
    for path in files {
        let value = read_json(path)?;
        let scenario = value["scenario"].as_str().unwrap_or("").to_string();
        let text = match scenario.as_str() {
            "viewers" => {
                viewers.push(serde_json::from_value::<ViewersReport>(value)?);
                continue;
            }
            "herd" => serde_json::from_value::<HerdReport>(value.clone())?.render(),
            "chat" => serde_json::from_value::<ChatReport>(value.clone())?.summary_line() + "\n",
            "hits" => serde_json::from_value::<HitsReport>(value.clone())?.summary_line() + "\n",
            other => anyhow::bail!(
                "{}: not a loadtest report (scenario {other:?}; expected viewers, herd, chat or hits)",
                path.display()
            ),
        };
        others.push((value, text));
    }
    let merged = if viewers.is_empty() {
        None
    } else {
        Some(ViewersReport::merge(&viewers)?)
    };
    match format {
        Format::Text => {
            if let Some(m) = &merged {
                print!("{}", m.render());
            }
            for (_, text) in &others {
                print!("{text}");
            }
        }
        Format::Json => {
            let mut all: Vec<serde_json::Value> = others.into_iter().map(|(v, _)| v).collect();
            if let Some(m) = merged {
                all.insert(0, serde_json::to_value(m)?);
            }
            let out = if all.len() == 1 {
                all.remove(0)
            } else {
                serde_json::Value::Array(all)
            };
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
    }
    Ok(())
}

fn read_json(path: &Path) -> anyhow::Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))
}
