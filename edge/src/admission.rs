//! The player connection limit: a connection over `max_connections` is closed as soon as it is
//! accepted, with a metric and a (rate-limited) log line, so that a flood of connections cannot
//! take the file descriptors that the connections already open and the origins need.
//!
//! It wraps the proxy as the listeners' application: pingora hands each accepted connection to
//! [`ServerApp::process_new`], which serves it (HTTP/1.1 keep-alive or every HTTP/2 stream) to
//! its end, so one call is one connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use prometheus::{IntCounter, IntGauge};

/// Counts the open connections of the listeners it fronts and turns away those over the limit.
pub struct Admission<A> {
    app: Arc<A>,
    limit: Arc<ConnectionLimit>,
}

/// A bound on open connections, shared by every listener that counts against it.
pub struct ConnectionLimit {
    open: AtomicUsize,
    max: usize,
    gauge: IntGauge,
    refused: IntCounter,
    protocol: &'static str,
    /// The second of the last "refused" log line (one per second at most).
    logged_at: AtomicU64,
}

/// One admitted connection; dropping it frees its place.
pub struct Admitted(Arc<ConnectionLimit>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.gauge.dec();
    }
}

impl ConnectionLimit {
    /// At most `max` connections of `protocol` open at once; `gauge` shows how many are,
    /// `refused` counts the ones turned away.
    pub fn new(
        max: usize,
        protocol: &'static str,
        gauge: IntGauge,
        refused: IntCounter,
    ) -> Arc<Self> {
        Arc::new(Self {
            open: AtomicUsize::new(0),
            max,
            gauge,
            refused,
            protocol,
            logged_at: AtomicU64::new(0),
        })
    }

    /// A place for one more connection, or `None` (counted and logged) when all are taken.
    pub fn admit(self: &Arc<Self>) -> Option<Admitted> {
        let admitted = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok();
        if !admitted {
            self.refused.inc();
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            if self.logged_at.swap(now, Ordering::Relaxed) != now {
                tracing::warn!(
                    max_connections = self.max,
                    protocol = self.protocol,
                    "connection limit reached: new connections are closed"
                );
            }
            return None;
        }
        self.gauge.inc();
        Some(Admitted(self.clone()))
    }
}

impl<A> Admission<A> {
    /// `app` behind `limit`.
    pub fn new(app: Arc<A>, limit: Arc<ConnectionLimit>) -> Self {
        Self { app, limit }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Admission<A> {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // Dropping the stream closes the connection.
        let _admitted = self.limit.admit()?;
        self.app.process_new(session, shutdown).await
    }

    async fn cleanup(&self) {
        self.app.cleanup().await;
    }
}
