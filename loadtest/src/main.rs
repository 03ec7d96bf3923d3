//! `loadtest`: LL-HLS viewers against an origin or edge, reporting latency quantiles as JSON;
//! or thundering herds, cache-hit throughput, or a loaded chat room (`--chat`).

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use corral_loadtest::chat::receiver::{self, WorkerPlan};
use corral_loadtest::chat::{self, ChatPlan};
use corral_loadtest::config::LoadtestConfig;
use corral_loadtest::herd::{self, HerdPlan};
use corral_loadtest::hits::{self, HitsPlan, Protocol};
use corral_loadtest::report::Recorder;
use corral_loadtest::viewer::{ViewerPlan, watch};
use parking_lot::Mutex;

/// Runs LL-HLS viewers (blocking reloads plus preload-hinted parts) against a media playlist
/// and prints latency quantiles as JSON.
#[derive(Debug, Parser)]
#[command(name = "loadtest", version)]
struct Args {
    /// The YAML config file (see conf/loadtest.yaml); flags override it.
    #[arg(long, value_name = "YAML")]
    config: Option<PathBuf>,
    /// Media playlist URL.
    #[arg(long)]
    url: Option<String>,
    /// Concurrent viewers.
    #[arg(long)]
    viewers: Option<usize>,
    /// Seconds to watch.
    #[arg(long)]
    duration: Option<f64>,
    /// Instead of watching, run thundering herds of this many players at once on the next
    /// hinted part, the next blocking playlist and an unrequested segment of `--url`.
    #[arg(long, value_name = "PLAYERS")]
    herd: Option<usize>,
    /// With `--herd`: the origin's metrics URL, to count the requests that reached it.
    #[arg(long, value_name = "URL")]
    origin_metrics: Option<String>,
    /// Instead of watching, measure cache-hit throughput: GET `--url` (a cached object) over
    /// and over with this protocol for `--duration` seconds.
    #[arg(long, value_name = "PROTOCOL")]
    hits: Option<Protocol>,
    /// With `--hits`: client connections; with `--chat`: read-only receiving connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// With `--hits`: requests in flight on each connection (HTTP/2 and HTTP/3).
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// With `--hits`: the PEM certificate to trust (TLS and QUIC).
    #[arg(long, value_name = "PEM")]
    ca: Option<PathBuf>,
    /// With `--hits`: the server's PID, to report its CPU time per request; with `--chat`: the
    /// relay's, to report its memory per connection and its CPU use.
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// Instead of watching, load a chat room (ws://HOST:PORT/v1/rooms/ROOM/ws): `--connections`
    /// receivers and `--senders` senders, `--rate` messages per second for `--duration`
    /// seconds; reports deliveries, delivery latency and losses as JSON.
    #[arg(long, value_name = "WS_ROOM_URL")]
    chat: Option<String>,
    /// With `--chat`: users sending, each on its own connection with its own token.
    #[arg(long, default_value_t = 10)]
    senders: usize,
    /// With `--chat`: messages per second, all senders together.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// With `--chat`: the relay's HS256 token secret (its `jwt_secret`).
    #[arg(long, default_value = "dev-chat-secret")]
    secret: String,
    /// With `--chat`: local addresses to connect from, in turn (say 127.0.0.1,127.0.0.2), when
    /// one address has too few ephemeral ports.
    #[arg(long, value_delimiter = ',', value_name = "IP,...")]
    source_addrs: Vec<IpAddr>,
    /// With `--chat`: worker processes holding the receivers (the open-file limit is per
    /// process); default one per 15,000 receivers.
    #[arg(long)]
    workers: Option<usize>,
    /// With `--chat`: new receiving connections per second, all workers together (the listen
    /// backlog is bounded: somaxconn).
    #[arg(long, default_value_t = 1000.0)]
    connect_rate: f64,
    /// With `--chat`: seconds after the last send that deliveries still count; later ones are
    /// lost.
    #[arg(long, default_value_t = chat::SETTLE.as_secs_f64())]
    settle: f64,
    /// Run as one of `--chat`'s worker processes (it starts them itself).
    #[arg(long, hide = true, value_name = "WS_ROOM_URL")]
    chat_worker: Option<String>,
    /// For a `--chat-worker`: the run-wide number of its first connection.
    #[arg(long, hide = true, default_value_t = 0)]
    worker_first: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut config: LoadtestConfig = match yaml_config::load_or_default(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("loadtest: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(u) = args.url {
        config.url = u;
    }
    if let Some(v) = args.viewers {
        config.viewers = v;
    }
    if let Some(d) = args.duration {
        config.duration = d;
    }
    if let Err(e) = yaml_config::Validate::validate(&config) {
        eprintln!(
            "loadtest: {}: expected {}, got {}",
            e.key, e.expected, e.got
        );
        return ExitCode::from(2);
    }
    corral_telemetry::init_logging(&config.log_level);
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
    let result: anyhow::Result<()> = runtime.block_on(async {
        if let Some(url) = args.chat_worker {
            let plan = WorkerPlan {
                url,
                connections: args.connections,
                connect_rate: args.connect_rate,
                source_addrs: args.source_addrs,
                first: args.worker_first,
            };
            return receiver::run_worker(&plan).await;
        }
        if let Some(url) = args.chat {
            let plan = ChatPlan {
                url,
                connections: args.connections,
                senders: args.senders,
                rate: args.rate,
                duration: Duration::from_secs_f64(config.duration),
                secret: args.secret,
                source_addrs: args.source_addrs,
                workers: args
                    .workers
                    .unwrap_or_else(|| chat::default_workers(args.connections)),
                connect_rate: args.connect_rate,
                server_pid: args.server_pid,
                settle: Duration::try_from_secs_f64(args.settle).map_err(|_| {
                    anyhow::anyhow!("--settle: expected seconds, 0 or more, got {}", args.settle)
                })?,
            };
            let report = chat::run(&plan).await?;
            eprintln!("{}", report.summary_line());
            println!("{}", serde_json::to_string_pretty(&report)?);
            return Ok(());
        }
        if let Some(clients) = args.herd {
            let plan = HerdPlan {
                playlist: config.url.parse()?,
                clients,
                origin_metrics: args.origin_metrics.as_deref().map(str::parse).transpose()?,
                timeout: Duration::from_secs_f64(config.request_timeout),
            };
            let results = herd::run(&plan).await?;
            println!("{}", serde_json::to_string_pretty(&results)?);
            return Ok(());
        }
        if let Some(protocol) = args.hits {
            let plan = HitsPlan {
                url: config.url.parse()?,
                protocol,
                connections: args.connections,
                streams: args.streams,
                duration: Duration::from_secs_f64(config.duration),
                ca: args.ca.clone(),
                server_pid: args.server_pid,
            };
            let report = hits::run(&plan).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            return Ok(());
        }
        let plan = ViewerPlan {
            url: config.url.parse()?,
            duration: Duration::from_secs_f64(config.duration),
            fetch_parts: config.fetch_parts,
            request_timeout: Duration::from_secs_f64(config.request_timeout),
        };
        let recorder = Arc::new(Mutex::new(Recorder::default()));
        let viewers: Vec<_> = (0..config.viewers)
            .map(|_| tokio::spawn(watch(plan.clone(), recorder.clone())))
            .collect();
        for v in viewers {
            if let Err(e) = v.await? {
                recorder.lock().error(&e.to_string());
            }
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&recorder.lock().report())?
        );
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadtest: {e:#}");
            ExitCode::FAILURE
        }
    }
}
