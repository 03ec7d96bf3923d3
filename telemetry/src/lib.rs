//! Logging and metrics, set up the same way in every component.
//!
//! - [`init_logging`] installs a `tracing` subscriber writing one line per event to stderr; the
//!   `RUST_LOG` environment variable overrides the level given in the config.
//! - [`serve_metrics`] serves a Prometheus [`Registry`] as text on `GET /metrics` of the
//!   component's admin address (origin :9101, edge :9102, chat :9103).
//!
//! Metric names are prefixed `corral_` by the registry each component creates with
//! [`new_registry`].

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Installs the global log subscriber. `level` is a `tracing` filter such as `info` or
/// `corral_origin=debug,info`; `RUST_LOG`, when set, wins.
pub fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // Colours only for a person at a terminal; log files and CI output stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _already_set = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .with_target(true)
        .try_init();
}

/// A registry whose metric names all start with `corral_`.
pub fn new_registry() -> Registry {
    Registry::new_custom(Some("corral".to_string()), None)
        .expect("a constant, valid prefix is accepted")
}

/// Renders the registry in the Prometheus text format.
pub fn render(registry: &Registry) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 * 1024);
    let encoder = TextEncoder::new();
    if let Err(e) = encoder.encode(&registry.gather(), &mut out) {
        tracing::error!(error = %e, "could not encode metrics");
    }
    out
}

/// Binds `addr` and serves `GET /metrics` (and `GET /healthz`) until `shutdown` turns true.
///
/// Binding happens before this returns, so a port already in use is reported at start-up.
pub async fn serve_metrics(
    addr: SocketAddr,
    registry: Registry,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics listening");
    Ok(tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = shutdown.changed() => break,
            };
            let (stream, _) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors (or a like failure) lasts a while: wait before
                    // trying again instead of spinning on the error and flooding the log.
                    tracing::warn!(error = %e, "metrics accept failed; retrying in 100 ms");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let registry = registry.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let registry = registry.clone();
                    async move { Ok::<_, Infallible>(respond(&req, &registry)) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }))
}

fn respond(req: &Request<Incoming>, registry: &Registry) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match req.uri().path() {
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            render(registry),
        ),
        "/healthz" => (StatusCode::OK, "text/plain", b"ok\n".to_vec()),
        _ => (StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
    };
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("cache-control", "no-store")
        .body(Full::new(Bytes::from(body)))
        .expect("static headers are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_prefixes_names_with_corral() {
        let registry = new_registry();
        let counter = prometheus::IntCounter::new("things_total", "things").expect("valid");
        registry
            .register(Box::new(counter.clone()))
            .expect("unique");
        counter.inc();
        let text = String::from_utf8(render(&registry)).expect("utf-8");
        assert!(text.contains("corral_things_total 1"), "{text}");
    }
}
