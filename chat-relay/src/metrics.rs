//! The relay's Prometheus metrics (on `metrics_listen`, prefix `corral_chat_`).

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Everything the relay counts.
#[derive(Clone)]
pub struct ChatMetrics {
    /// WebSocket connections open.
    pub connections: IntGauge,
    /// Rooms with state on this node.
    pub rooms: IntGauge,
    /// Messages accepted.
    pub messages: IntCounter,
    /// Frames put in connections' queues.
    pub deliveries: IntCounter,
    /// Connections dropped for reading too slowly.
    pub slow_readers: IntCounter,
    /// Client operations refused, by error code.
    pub refused: IntCounterVec,
    /// Time to store a message and hand it to the room's fan-out.
    pub publish_seconds: Histogram,
    /// Reconnects clients made with `?since=`, by whether everything missed was recovered.
    pub recoveries: IntCounterVec,
    /// Times the Redis pub/sub connection was lost and made again.
    pub bus_reconnects: IntCounter,
    /// Messages read back from a room's Redis stream because pub/sub missed them.
    pub gap_fills: IntCounter,
    /// Guest tokens minted (`POST /v1/guests`).
    pub guests: IntCounter,
}

impl ChatMetrics {
    /// Creates and registers the metrics.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            connections: IntGauge::new("chat_connections", "WebSocket connections open")?,
            rooms: IntGauge::new("chat_rooms", "Rooms with state on this node")?,
            messages: IntCounter::new("chat_messages_total", "Messages accepted")?,
            deliveries: IntCounter::new("chat_deliveries_total", "Frames queued to connections")?,
            slow_readers: IntCounter::new(
                "chat_slow_readers_total",
                "Connections dropped for reading too slowly",
            )?,
            refused: IntCounterVec::new(
                Opts::new("chat_refused_total", "Client operations refused"),
                &["code"],
            )?,
            publish_seconds: Histogram::with_opts(
                HistogramOpts::new("chat_publish_seconds", "Store and hand to the fan-out")
                    .buckets(vec![
                        0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5,
                    ]),
            )?,
            recoveries: IntCounterVec::new(
                Opts::new(
                    "chat_recoveries_total",
                    "Reconnects with an offset, by whether all was recovered",
                ),
                &["recovered"],
            )?,
            bus_reconnects: IntCounter::new(
                "chat_bus_reconnects_total",
                "Redis pub/sub connections lost and made again",
            )?,
            gap_fills: IntCounter::new(
                "chat_gap_fills_total",
                "Messages read back from Redis streams because pub/sub missed them",
            )?,
            guests: IntCounter::new("chat_guests_total", "Guest tokens minted")?,
        };
        registry.register(Box::new(m.guests.clone()))?;
        registry.register(Box::new(m.recoveries.clone()))?;
        registry.register(Box::new(m.bus_reconnects.clone()))?;
        registry.register(Box::new(m.gap_fills.clone()))?;
        registry.register(Box::new(m.connections.clone()))?;
        registry.register(Box::new(m.rooms.clone()))?;
        registry.register(Box::new(m.messages.clone()))?;
        registry.register(Box::new(m.deliveries.clone()))?;
        registry.register(Box::new(m.slow_readers.clone()))?;
        registry.register(Box::new(m.refused.clone()))?;
        registry.register(Box::new(m.publish_seconds.clone()))?;
        Ok(m)
    }
}
