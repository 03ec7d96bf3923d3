//! `chat-relay`: live chat beside the video.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use corral_chat_relay::backend::Backend;
use corral_chat_relay::config::ChatRelayConfig;
use corral_chat_relay::metrics::ChatMetrics;
use corral_chat_relay::redis_bus::RedisBus;
use corral_chat_relay::room::Hub;
use corral_chat_relay::server::{self, AppState};
use corral_chat_relay::store::Store;

/// Live chat rooms per stream over WebSocket, with REST for history and moderation.
#[derive(Debug, Parser)]
#[command(name = "chat-relay", version)]
struct Args {
    /// The YAML config file (see conf/chat-relay.yaml).
    #[arg(long, value_name = "YAML")]
    config: Option<PathBuf>,
    /// Check the config and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config: ChatRelayConfig = match yaml_config::load_or_default(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chat-relay: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!("chat-relay: config ok: listen {}", config.listen);
        return ExitCode::SUCCESS;
    }
    corral_telemetry::init_logging(&config.log_level);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("chat-relay: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<()> = runtime.block_on(async {
        let registry = corral_telemetry::new_registry();
        let metrics = ChatMetrics::register(&registry)?;
        let settings = server::room_settings(&config);
        let backend = match &config.redis_url {
            None => {
                let store = Store::open(&config.database)
                    .map_err(|e| anyhow::anyhow!("database {}: {e}", config.database.display()))?;
                Backend::embedded(Hub::new(settings, metrics.clone(), None), store)
            }
            Some(url) => {
                let bus = RedisBus::connect(
                    url,
                    config.history_max,
                    std::time::Duration::from_secs_f64(config.presence_interval),
                    metrics.clone(),
                )
                .await
                .map_err(|e| anyhow::anyhow!("redis_url {url}: {e:#}"))?;
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                let hub = Hub::new(settings, metrics.clone(), Some(tx));
                tokio::spawn(bus.clone().run(hub.clone(), rx));
                tracing::info!(%url, "rooms shared through redis");
                Backend::redis(hub, bus)
            }
        };
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let metrics_task =
            corral_telemetry::serve_metrics(config.metrics_listen, registry, stop_rx).await?;
        let listen = config.listen;
        let state = AppState::new(config, backend, metrics);
        server::serve(listen, state, async {
            wait_for_signal().await;
            tracing::info!("stopping");
        })
        .await?;
        let _ = stop_tx.send(true);
        let _ = metrics_task.await;
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat-relay: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
