//! Puts the edge's services together on one pingora server: the proxy listener, a background
//! service for metrics (and the cache gauges behind them), and the origins' health check.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{BackgroundService, background_service};
use pingora::services::listening::Service;
use prometheus::Registry;

use crate::admission::{Admission, ConnectionLimit};
use crate::config::EdgeConfig;
use crate::http3::Http3;
use crate::metrics::EdgeMetrics;
use crate::proxy::Edge;
use crate::storage::MediaCache;
use crate::upstream::{Origins, healthy, resolve};

/// How often the cache gauges are refreshed.
const GAUGE_INTERVAL: Duration = Duration::from_secs(1);

/// Builds the server for `config`; `run_forever` on it serves until SIGTERM (graceful: open
/// requests finish) or SIGINT.
pub fn build(config: &EdgeConfig) -> anyhow::Result<Server> {
    let conf = ServerConf {
        threads: config.threads,
        grace_period_seconds: Some(config.shutdown_grace),
        graceful_shutdown_timeout_seconds: Some(5),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let registry = corral_telemetry::new_registry();
    let metrics = EdgeMetrics::register(&registry)?;
    let storage: &'static MediaCache = Box::leak(Box::new(MediaCache::new(
        config.cache.bytes,
        config.cache.max_object_bytes as usize,
        Duration::from_secs_f64(config.cache.max_ttl + config.cache.stale_if_error),
    )));

    let mut origins = Origins::new(&config.upstreams());
    if config.upstream.sticky {
        origins = origins.sticky(config.shield.is_some());
    }
    let origins = Arc::new(origins);
    let edge = Edge::new(config, origins.clone(), storage, metrics.clone());
    let proxy = Arc::new(pingora::proxy::http_proxy(&server.configuration, edge));
    let limit = ConnectionLimit::new(
        config.max_connections,
        "tcp",
        metrics.connections_open.with_label_values(&["tcp"]),
        metrics.connections_refused.with_label_values(&["tcp"]),
    );
    let app = proxy.clone();
    let mut proxy = Service::new("players".to_string(), Admission::new(proxy, limit.clone()));
    proxy.add_listener(ListenerConfig::tcp(config.listen.to_string()).l4_buffer(player_buffers()));
    if let (Some(cert), Some(key)) = (&config.tls.cert, &config.tls.key) {
        let (cert, key) = (cert.display().to_string(), key.display().to_string());
        let mut tls = TlsSettings::intermediate(&cert, &key)
            .map_err(|e| anyhow::anyhow!("tls: cannot use {cert} and {key}: {e}"))?;
        tls.enable_h2();
        proxy.add_listener(
            ListenerConfig::tcp(config.tls_listen.to_string())
                .tls(tls)
                .l4_buffer(player_buffers()),
        );
        tracing::info!(listen = %config.tls_listen, "TLS listening (HTTP/2, HTTP/1.1)");
    }
    server.add_service(proxy);
    if let (Some(cert), Some(key), true) = (&config.tls.cert, &config.tls.key, config.http3.enabled)
    {
        let limit = ConnectionLimit::new(
            config.http3.max_connections,
            "h3",
            metrics.connections_open.with_label_values(&["h3"]),
            metrics.connections_refused.with_label_values(&["h3"]),
        );
        let h3 = Http3::bind(config, cert, key, app, limit)?;
        server.add_service(background_service("http3", h3));
    }

    let admin = Admin {
        listen: config.metrics_listen,
        registry,
        metrics: metrics.clone(),
        storage,
    };
    server.add_service(background_service("metrics", admin));
    let health = HealthCheck {
        origins,
        interval: Duration::from_secs_f64(config.upstream.health_interval),
        timeout: Duration::from_secs_f64(config.upstream.health_timeout),
        metrics,
    };
    server.add_service(background_service("origin health", health));
    tracing::info!(listen = %config.listen, upstreams = ?config.upstreams(), "edge listening");
    Ok(server)
}

/// Socket buffers of a player connection. Players send small GET requests, so a small read
/// buffer (pingora's default is 64 KiB) keeps tens of thousands of idle connections cheap;
/// a larger request header block is still read whole, up to `max_header_bytes`.
fn player_buffers() -> L4BufferSettings {
    L4BufferSettings::new(READ_BUFFER, WRITE_BUFFER)
}

/// Read buffer of a player connection.
const READ_BUFFER: usize = 4 << 10;
/// Write buffer of a player connection (one TCP segment, as pingora's default).
const WRITE_BUFFER: usize = 1460;

/// The metrics endpoint and the cache gauges.
struct Admin {
    listen: std::net::SocketAddr,
    registry: Registry,
    metrics: EdgeMetrics,
    storage: &'static MediaCache,
}

#[async_trait]
impl BackgroundService for Admin {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let served =
            corral_telemetry::serve_metrics(self.listen, self.registry.clone(), stop_rx).await;
        if let Err(e) = served {
            tracing::error!(listen = %self.listen, error = %e, "cannot listen on metrics_listen");
            std::process::exit(2);
        }
        let mut tick = tokio::time::interval(GAUGE_INTERVAL);
        loop {
            tokio::select! {
                _ = tick.tick() => self.refresh_gauges(),
                _ = shutdown.changed() => break,
            }
        }
        let _ = stop_tx.send(true);
    }
}

impl Admin {
    fn refresh_gauges(&self) {
        let s = self.storage.stats();
        let set = |g: &prometheus::IntGauge, v: u64| g.set(i64::try_from(v).unwrap_or(i64::MAX));
        set(&self.metrics.cache_objects, s.objects);
        set(&self.metrics.cache_bytes, s.bytes);
        set(&self.metrics.cache_filling, s.filling);
        set(&self.metrics.cache_failed_fills, s.failed_fills);
        for (counter, total) in [
            (&self.metrics.cache_evictions, s.evictions),
            (&self.metrics.cache_late_lookups, s.late_lookups),
        ] {
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }
}

/// Checks every origin's `/healthz` each interval, all at once (a hung origin must not delay
/// the news about the others), and marks each up or down.
struct HealthCheck {
    origins: Arc<Origins>,
    interval: Duration,
    timeout: Duration,
    metrics: EdgeMetrics,
}

#[async_trait]
impl BackgroundService for HealthCheck {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.check_all().await,
                _ = shutdown.changed() => break,
            }
        }
    }
}

impl HealthCheck {
    async fn check_all(&self) {
        futures_util::future::join_all(self.origins.addrs().map(|o| self.check(o))).await;
    }

    async fn check(&self, origin: &str) {
        let addr = resolve(origin, self.timeout).await;
        if let Some(addr) = addr {
            self.origins.set_resolved(origin, addr);
        }
        let up = match addr {
            Some(addr) => healthy(origin, addr, self.timeout).await,
            None => false,
        };
        let changed = if up {
            self.origins.mark_up(origin)
        } else {
            self.origins.check_failed(origin)
        };
        if changed {
            tracing::warn!(%origin, up, "origin health changed");
        }
        self.metrics
            .origin_up
            .with_label_values(&[origin])
            .set(i64::from(self.origins.is_up(origin)));
    }
}
