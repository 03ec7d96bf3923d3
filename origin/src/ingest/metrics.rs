//! Prometheus metrics of the ingest: connections, refusals, bytes, frames, bit rate, drops,
//! reconnects and protocol errors.

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

/// Ingest metrics; cheap to clone.
#[derive(Clone)]
pub struct IngestMetrics {
    /// Open ingest connections by protocol.
    pub connections: IntGaugeVec,
    /// Connections or publishes refused, by protocol and reason.
    pub refused: IntCounterVec,
    /// Media bytes received, by stream and protocol.
    pub bytes: IntCounterVec,
    /// Video frames received, by stream.
    pub frames: IntCounterVec,
    /// Incoming bit rate over the last 5 s, by stream.
    pub bitrate: IntGaugeVec,
    /// Media dropped at ingest, by stream and reason.
    pub dropped: IntCounterVec,
    /// Publishes that came back within the grace period, by stream.
    pub reconnects: IntCounterVec,
    /// Protocol errors that closed a connection, by protocol and kind.
    pub errors: IntCounterVec,
    /// Times a publisher's video stopped while its audio went on (the picture was frozen).
    pub starved: IntCounterVec,
}

impl IngestMetrics {
    /// Creates and registers the metrics.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            connections: IntGaugeVec::new(
                Opts::new("ingest_connections", "Open ingest connections"),
                &["protocol"],
            )?,
            refused: IntCounterVec::new(
                Opts::new(
                    "ingest_refused_total",
                    "Ingest connections or publishes refused",
                ),
                &["protocol", "reason"],
            )?,
            bytes: IntCounterVec::new(
                Opts::new("ingest_bytes_total", "Media bytes received"),
                &["stream", "protocol"],
            )?,
            frames: IntCounterVec::new(
                Opts::new("ingest_video_frames_total", "Video frames received"),
                &["stream"],
            )?,
            bitrate: IntGaugeVec::new(
                Opts::new("ingest_bitrate_bps", "Incoming bit rate over the last 5 s"),
                &["stream"],
            )?,
            dropped: IntCounterVec::new(
                Opts::new(
                    "ingest_dropped_total",
                    "Media dropped at ingest (the transcoder fell behind, or video after a freeze)",
                ),
                &["stream", "kind"],
            )?,
            reconnects: IntCounterVec::new(
                Opts::new(
                    "ingest_reconnects_total",
                    "Publishers that came back within the grace period",
                ),
                &["stream"],
            )?,
            errors: IntCounterVec::new(
                Opts::new(
                    "ingest_errors_total",
                    "Protocol errors that closed an ingest connection",
                ),
                &["protocol", "kind"],
            )?,
            starved: IntCounterVec::new(
                Opts::new(
                    "ingest_video_starved_total",
                    "Times a publisher's video stopped while its audio went on",
                ),
                &["stream"],
            )?,
        };
        registry.register(Box::new(m.connections.clone()))?;
        registry.register(Box::new(m.refused.clone()))?;
        registry.register(Box::new(m.bytes.clone()))?;
        registry.register(Box::new(m.frames.clone()))?;
        registry.register(Box::new(m.bitrate.clone()))?;
        registry.register(Box::new(m.dropped.clone()))?;
        registry.register(Box::new(m.reconnects.clone()))?;
        registry.register(Box::new(m.errors.clone()))?;
        registry.register(Box::new(m.starved.clone()))?;
        Ok(m)
    }
}
