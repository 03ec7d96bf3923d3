//! `origin`: transcodes each configured stream and serves it as Low-Latency HLS.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use corral_origin::config::OriginConfig;

/// Transcodes each configured stream into an ABR ladder and serves it as Low-Latency HLS.
#[derive(Debug, Parser)]
#[command(name = "origin", version)]
struct Args {
    /// The YAML config file (see conf/origin.yaml); without it every key takes its default.
    #[arg(long, value_name = "YAML")]
    config: Option<PathBuf>,
    /// Overrides `http.listen`.
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    /// Overrides `metrics.listen`.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Check the config, print a summary and exit.
    #[arg(long)]
    check: bool,
    /// Print each stream's ffmpeg command and exit.
    #[arg(long)]
    print_ffmpeg: bool,
    /// Encode this many seconds of the first stream's test pattern as fast as possible, print
    /// the real-time factor as JSON and exit.
    #[arg(long, value_name = "SECONDS")]
    bench_transcoder: Option<f64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let path = args
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from("(defaults)"));
    let mut config: OriginConfig = match yaml_config::load_or_default(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("origin: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(listen) = args.listen {
        config.http.listen = listen;
    }
    if let Some(listen) = args.metrics_listen {
        config.metrics.listen = listen;
    }
    corral_telemetry::init_logging(&config.log_level);
    // TLS to an S3 archive uses ring, as the rest of the project does.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if args.check {
        let params = config.llhls_params();
        println!(
            "{}: ok: {} stream(s), encoder {}, {} rendition(s), segments {} s, parts {} per segment (PART-TARGET {} s), http {}, metrics {}",
            path.display(),
            config.streams.len(),
            config.transcoder.encoder,
            config.transcoder.ladder.len() + 1,
            config.llhls.segment_duration,
            params.parts_per_segment,
            params.part_target,
            config.http.listen,
            config.metrics.listen
        );
        return ExitCode::SUCCESS;
    }
    if args.print_ffmpeg {
        for stream in &config.streams {
            println!(
                "# {}\n{}",
                stream.name,
                corral_origin::app::job(&config, stream)
                    .command()
                    .shell_line()
            );
        }
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("origin: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        if let Some(seconds) = args.bench_transcoder {
            let bench = corral_origin::app::bench_transcoder(&config, seconds).await?;
            println!("{}", serde_json::to_string(&bench)?);
            return Ok(());
        }
        corral_origin::app::run(config, &path).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("origin: {e:#}");
            ExitCode::FAILURE
        }
    }
}
