//! The origin's Prometheus metrics.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Buckets for latencies that are milliseconds when all is well.
const FAST_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];

/// Every origin metric; cheap to clone.
#[derive(Clone)]
pub struct OriginMetrics {
    /// Parts published, by stream and rendition.
    pub parts_published: IntCounterVec,
    /// Segments completed, by stream and rendition.
    pub segments_published: IntCounterVec,
    /// Wall-clock time from a part's last sample being due to the part being published.
    pub publish_lag: HistogramVec,
    /// Requests waiting for media right now.
    pub blocked_requests: IntGaugeVec,
    /// From the publication that satisfied a waiting request to its response.
    pub blocking_wake: Histogram,
    /// Waiting requests answered 503 after the blocking timeout.
    pub blocking_timeouts: IntCounterVec,
    /// HTTP requests by kind and status.
    pub http_requests: IntCounterVec,
    /// HTTP request duration by kind (for blocking requests this includes the wait).
    pub http_duration: HistogramVec,
    /// Open HTTP connections.
    pub http_connections: IntGauge,
    /// Connections refused because `http.max_connections` was reached.
    pub http_refused: IntCounterVec,
    /// Input the packager repaired or dropped, by kind.
    pub packager_repairs: IntCounterVec,
    /// 1 while the stream is live, by stream.
    pub stream_live: IntGaugeVec,
    /// From a publisher's first media to the first part listed.
    pub ingest_first_part: Histogram,
}

impl OriginMetrics {
    /// Creates and registers the metrics.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            parts_published: IntCounterVec::new(
                Opts::new("origin_parts_published_total", "LL-HLS parts published"),
                &["stream", "rendition"],
            )?,
            segments_published: IntCounterVec::new(
                Opts::new("origin_segments_published_total", "Segments completed"),
                &["stream", "rendition"],
            )?,
            publish_lag: HistogramVec::new(
                HistogramOpts::new(
                    "origin_publish_lag_seconds",
                    "Seconds from the wall-clock time a part's media ends to its publication",
                )
                .buckets(vec![
                    0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0,
                    5.0,
                ]),
                &["stream"],
            )?,
            blocked_requests: IntGaugeVec::new(
                Opts::new(
                    "origin_blocked_requests",
                    "Requests held waiting for a playlist update or a part",
                ),
                &["stream"],
            )?,
            blocking_wake: Histogram::with_opts(
                HistogramOpts::new(
                    "origin_blocking_wake_seconds",
                    "Seconds from the publication that satisfied a held request to its response",
                )
                .buckets(FAST_BUCKETS.to_vec()),
            )?,
            blocking_timeouts: IntCounterVec::new(
                Opts::new(
                    "origin_blocking_timeouts_total",
                    "Held requests answered 503 after three target durations",
                ),
                &["stream"],
            )?,
            http_requests: IntCounterVec::new(
                Opts::new(
                    "origin_http_requests_total",
                    "HTTP requests by kind and status",
                ),
                &["kind", "status"],
            )?,
            http_duration: HistogramVec::new(
                HistogramOpts::new(
                    "origin_http_request_seconds",
                    "HTTP request duration, waiting included",
                )
                .buckets(FAST_BUCKETS.to_vec()),
                &["kind"],
            )?,
            http_connections: IntGauge::new("origin_http_connections", "Open HTTP connections")?,
            http_refused: IntCounterVec::new(
                Opts::new(
                    "origin_http_refused_total",
                    "Connections or requests refused by a limit",
                ),
                &["limit"],
            )?,
            packager_repairs: IntCounterVec::new(
                Opts::new(
                    "origin_packager_repairs_total",
                    "Samples or segments the packager repaired or dropped",
                ),
                &["stream", "rendition", "kind"],
            )?,
            ingest_first_part: Histogram::with_opts(
                HistogramOpts::new(
                    "origin_ingest_first_part_seconds",
                    "Seconds from a publisher's first media to the first part listed",
                )
                .buckets(vec![
                    0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0,
                ]),
            )?,
            stream_live: IntGaugeVec::new(
                Opts::new("origin_stream_live", "1 while the stream is live"),
                &["stream"],
            )?,
        };
        registry.register(Box::new(m.parts_published.clone()))?;
        registry.register(Box::new(m.segments_published.clone()))?;
        registry.register(Box::new(m.publish_lag.clone()))?;
        registry.register(Box::new(m.blocked_requests.clone()))?;
        registry.register(Box::new(m.blocking_wake.clone()))?;
        registry.register(Box::new(m.blocking_timeouts.clone()))?;
        registry.register(Box::new(m.http_requests.clone()))?;
        registry.register(Box::new(m.http_duration.clone()))?;
        registry.register(Box::new(m.http_connections.clone()))?;
        registry.register(Box::new(m.http_refused.clone()))?;
        registry.register(Box::new(m.packager_repairs.clone()))?;
        registry.register(Box::new(m.stream_live.clone()))?;
        registry.register(Box::new(m.ingest_first_part.clone()))?;
        Ok(m)
    }
}
