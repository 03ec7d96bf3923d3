//! `loadtest`: LL-HLS viewers against an origin or edge, reporting latency quantiles as JSON.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
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
    /// With `--hits`: client connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// With `--hits`: requests in flight on each connection (HTTP/2 and HTTP/3).
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// With `--hits`: the PEM certificate to trust (TLS and QUIC).
    #[arg(long, value_name = "PEM")]
    ca: Option<PathBuf>,
    /// With `--hits`: the server's PID, to report its CPU time per request.
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
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
