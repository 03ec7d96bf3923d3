//! `edge`: the cache tier in front of the origins.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use corral_edge::config::EdgeConfig;

/// The cache tier between players and the regional origins.
#[derive(Debug, Parser)]
#[command(name = "edge", version)]
struct Args {
    /// The YAML config file (see conf/edge.yaml).
    #[arg(long, value_name = "YAML")]
    config: Option<PathBuf>,
    /// Overrides `listen`.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Overrides `origins` with one origin.
    #[arg(long, value_name = "HOST:PORT")]
    origin: Option<String>,
    /// Check the config and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut config: EdgeConfig = match yaml_config::load_or_default(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("edge: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(origin) = args.origin {
        config.origins = vec![origin];
    }
    if let Err(e) = yaml_config::Validate::validate(&config) {
        eprintln!("edge: {}: expected {}, got {}", e.key, e.expected, e.got);
        return ExitCode::from(2);
    }
    if args.check {
        println!(
            "edge: config ok: listen {}, origins {}",
            config.listen,
            config.origins.join(", ")
        );
        return ExitCode::SUCCESS;
    }
    corral_telemetry::init_logging(&config.log_level);
    match corral_edge::server::build(&config) {
        Ok(server) => server.run_forever(),
        Err(e) => {
            eprintln!("edge: {e:#}");
            ExitCode::FAILURE
        }
    }
}
