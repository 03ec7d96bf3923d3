//! The edge's Prometheus metrics (on `metrics_listen`, prefix `corral_edge_`).

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Everything the edge counts.
#[derive(Clone)]
pub struct EdgeMetrics {
    /// Player requests answered, by object kind, cache outcome and status.
    pub requests: IntCounterVec,
    /// Player requests answered, by protocol (`h1`, `h2`, `h3`), with their body bytes.
    pub protocol_requests: IntCounterVec,
    /// Body bytes sent to players, by protocol.
    pub protocol_bytes_out: IntCounterVec,
    /// Time from request to the end of the response, by object kind.
    pub request_seconds: prometheus::HistogramVec,
    /// Requests sent upstream, by object kind and origin status (the herd measure: one per
    /// object per edge).
    pub upstream_requests: IntCounterVec,
    /// Time from sending a request upstream to its response headers, by object kind (for a
    /// blocking playlist or a hinted part, this includes the origin's hold).
    pub upstream_seconds: prometheus::HistogramVec,
    /// Body bytes sent to players, by object kind.
    pub bytes_out: IntCounterVec,
    /// Objects evicted to stay within `cache.bytes`.
    pub cache_evictions: IntCounter,
    /// Upstream connection failures that moved a request to the next origin, by origin.
    pub upstream_failovers: IntCounterVec,
    /// Whether each origin passes its health check (1) or not (0).
    pub origin_up: IntGaugeVec,
    /// Requests refused before any cache or upstream work, by reason.
    pub refused: IntCounterVec,
    /// Time a coalesced request waited for its leader.
    pub lock_wait_seconds: Histogram,
    /// Complete objects in the cache.
    pub cache_objects: IntGauge,
    /// Their weight in bytes.
    pub cache_bytes: IntGauge,
    /// Objects being fetched from upstream now.
    pub cache_filling: IntGauge,
    /// Fills that failed (upstream error or too large).
    pub cache_failed_fills: IntGauge,
    /// Misses that found their object arrived after their lookup and did not fetch it again.
    pub cache_late_lookups: IntCounter,
    /// Player connections open now, by protocol (`tcp`, `h3`).
    pub connections_open: IntGaugeVec,
    /// Player connections closed at once because the limit were open, by protocol.
    pub connections_refused: IntCounterVec,
    /// Playlists answered gzip-compressed from the shared copies, by whether the copy was
    /// made for the answer (`compressed`) or another answer's (`reused`).
    pub playlist_gzip: IntCounterVec,
}

impl EdgeMetrics {
    /// Creates and registers the metrics.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let buckets = vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        let m = Self {
            requests: IntCounterVec::new(
                Opts::new("edge_requests_total", "Player requests answered"),
                &["kind", "cache", "status"],
            )?,
            protocol_requests: IntCounterVec::new(
                Opts::new(
                    "edge_protocol_requests_total",
                    "Player requests answered, by protocol",
                ),
                &["protocol"],
            )?,
            protocol_bytes_out: IntCounterVec::new(
                Opts::new(
                    "edge_protocol_bytes_out_total",
                    "Body bytes sent to players, by protocol",
                ),
                &["protocol"],
            )?,
            request_seconds: prometheus::HistogramVec::new(
                HistogramOpts::new("edge_request_seconds", "Request to end of response")
                    .buckets(buckets.clone()),
                &["kind"],
            )?,
            upstream_requests: IntCounterVec::new(
                Opts::new("edge_upstream_requests_total", "Requests sent to an origin"),
                &["kind", "status"],
            )?,
            upstream_seconds: prometheus::HistogramVec::new(
                HistogramOpts::new(
                    "edge_upstream_seconds",
                    "Request sent upstream to its response headers",
                )
                .buckets(buckets.clone()),
                &["kind"],
            )?,
            bytes_out: IntCounterVec::new(
                Opts::new("edge_bytes_out_total", "Body bytes sent to players"),
                &["kind"],
            )?,
            cache_evictions: IntCounter::new(
                "edge_cache_evictions_total",
                "Objects evicted to stay within cache.bytes",
            )?,
            upstream_failovers: IntCounterVec::new(
                Opts::new(
                    "edge_upstream_failovers_total",
                    "Origins that could not be reached, so the next was tried",
                ),
                &["origin"],
            )?,
            origin_up: IntGaugeVec::new(
                Opts::new(
                    "edge_origin_up",
                    "Whether the origin passes its health check",
                ),
                &["origin"],
            )?,
            refused: IntCounterVec::new(
                Opts::new("edge_refused_total", "Requests refused before any work"),
                &["reason"],
            )?,
            playlist_gzip: IntCounterVec::new(
                Opts::new(
                    "edge_playlist_gzip_total",
                    "Playlists answered gzip-compressed, by whether the copy was made for the answer or reused",
                ),
                &["outcome"],
            )?,
            lock_wait_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "edge_lock_wait_seconds",
                    "Time a coalesced request waited for its leader",
                )
                .buckets(buckets),
            )?,
            cache_objects: IntGauge::new("edge_cache_objects", "Complete objects cached")?,
            cache_bytes: IntGauge::new("edge_cache_bytes", "Bytes of cached objects")?,
            cache_filling: IntGauge::new("edge_cache_filling", "Objects being fetched now")?,
            cache_failed_fills: IntGauge::new(
                "edge_cache_failed_fills",
                "Upstream fetches that failed or were too large to keep",
            )?,
            cache_late_lookups: IntCounter::new(
                "edge_cache_late_lookups_total",
                "Misses whose object arrived between their lookup and their lock, served from \
                 the cache instead of fetched again",
            )?,
            connections_open: IntGaugeVec::new(
                Opts::new("edge_connections_open", "Player connections open now"),
                &["protocol"],
            )?,
            connections_refused: IntCounterVec::new(
                Opts::new(
                    "edge_connections_refused_total",
                    "Player connections closed at once because the limit were open",
                ),
                &["protocol"],
            )?,
        };
        registry.register(Box::new(m.connections_open.clone()))?;
        registry.register(Box::new(m.connections_refused.clone()))?;
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.protocol_requests.clone()))?;
        registry.register(Box::new(m.protocol_bytes_out.clone()))?;
        registry.register(Box::new(m.request_seconds.clone()))?;
        registry.register(Box::new(m.upstream_requests.clone()))?;
        registry.register(Box::new(m.upstream_failovers.clone()))?;
        registry.register(Box::new(m.upstream_seconds.clone()))?;
        registry.register(Box::new(m.bytes_out.clone()))?;
        registry.register(Box::new(m.cache_evictions.clone()))?;
        registry.register(Box::new(m.origin_up.clone()))?;
        registry.register(Box::new(m.refused.clone()))?;
        registry.register(Box::new(m.lock_wait_seconds.clone()))?;
        registry.register(Box::new(m.playlist_gzip.clone()))?;
        registry.register(Box::new(m.cache_objects.clone()))?;
        registry.register(Box::new(m.cache_bytes.clone()))?;
        registry.register(Box::new(m.cache_filling.clone()))?;
        registry.register(Box::new(m.cache_failed_fills.clone()))?;
        registry.register(Box::new(m.cache_late_lookups.clone()))?;
        Ok(m)
    }
}
