//! The ingest hub: which key publishes to which stream, one publisher per stream, a limit on
//! connections, and the queue that carries a publisher's media to its stream.
//!
//! A protocol handler (RTMP or SRT) takes a [`ConnectionPermit`] when it accepts a connection,
//! asks [`IngestHub::admit`] when the publisher names its key, and then pushes media into the
//! [`PublishSession`] it got. The session never blocks the handler: when the stream cannot keep
//! up, its queue drops non-key video first (degrade, never stop), and it ends the publish when the
//! publisher sends far more than the stream's maximum bit rate. The stream's controller receives
//! the other end, a [`PublishFeed`], and may end the publish at any time (takeover, lost media).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::media::MediaChunk;
pub use super::metrics::IngestMetrics;
use super::queue::{MediaQueue, RateWindow};

/// How far above its maximum bit rate a publisher may go, over the window, before it is cut off.
const RATE_TOLERANCE: f64 = 2.0;

/// The protocol a publisher uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// RTMP over TCP.
    Rtmp,
    /// SRT over UDP.
    Srt,
}

impl Protocol {
    /// Lower-case name, for labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Rtmp => "rtmp",
            Protocol::Srt => "srt",
        }
    }
}

/// Why a publish was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No stream has this key.
    #[error("no stream has this key")]
    UnknownKey,
    /// The stream already has a publisher and does not allow takeover.
    #[error("stream {0} already has a publisher")]
    AlreadyLive(String),
    /// The origin is stopping.
    #[error("the origin is stopping")]
    ShuttingDown,
}

impl Refusal {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::UnknownKey => "unknown_key",
            Refusal::AlreadyLive(_) => "already_live",
            Refusal::ShuttingDown => "shutting_down",
        }
    }
}

/// Why a publish ended, from the handler's point of view.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ended {
    /// The stream's controller ended it (another publisher took over, media timed out, the
    /// origin is stopping, or the stream refused the media).
    #[error("the publish was ended: {0}")]
    ByStream(String),
    /// The publisher sent far more than the stream's maximum bit rate.
    #[error("{bps} bit/s is far above the stream's maximum of {max} bit/s")]
    OverBitrate {
        /// Measured bit rate.
        bps: u64,
        /// The maximum.
        max: u64,
    },
}

/// Counters of one publish, readable while it runs.
#[derive(Debug, Default)]
pub struct PublishStats {
    /// Media bytes received.
    pub bytes: AtomicU64,
    /// Video frames received (FLV video tags; for MPEG-TS the controller counts).
    pub video_frames: AtomicU64,
    /// Video keyframes received.
    pub keyframes: AtomicU64,
    /// Chunks dropped because the stream could not keep up.
    pub dropped: AtomicU64,
}

/// A stream that accepts publishers.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestStream {
    /// The stream's name.
    pub name: String,
    /// Its key.
    pub key: String,
    /// SRT passphrase, if the stream requires encryption.
    pub passphrase: Option<String>,
    /// Maximum sustained incoming bit rate.
    pub max_bitrate: u64,
    /// Whether a new publisher replaces the current one.
    pub takeover: bool,
}

struct Target {
    stream: IngestStream,
    current: Mutex<Option<(u64, CancellationToken)>>,
    feeds: mpsc::Sender<PublishFeed>,
}

/// Keys, admission and limits; see the module documentation.
pub struct IngestHub {
    targets: HashMap<String, Arc<Target>>,
    connections: Arc<Semaphore>,
    max_connections: usize,
    metrics: IngestMetrics,
    next_id: AtomicU64,
    stopping: CancellationToken,
}

/// Held for the life of an ingest connection; the limit on connections counts these.
pub struct ConnectionPermit {
    _permit: OwnedSemaphorePermit,
    gauge: prometheus::IntGauge,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

impl IngestHub {
    /// A hub for `streams`, allowing `max_connections` ingest connections at once. Each stream's
    /// publishes are delivered on the matching receiver of the returned map.
    pub fn new(
        streams: Vec<IngestStream>,
        max_connections: usize,
        metrics: IngestMetrics,
        stopping: CancellationToken,
    ) -> (Arc<IngestHub>, HashMap<String, mpsc::Receiver<PublishFeed>>) {
        let mut targets = HashMap::new();
        let mut receivers = HashMap::new();
        for stream in streams {
            let (tx, rx) = mpsc::channel(4);
            receivers.insert(stream.name.clone(), rx);
            targets.insert(
                stream.key.clone(),
                Arc::new(Target {
                    stream,
                    current: Mutex::new(None),
                    feeds: tx,
                }),
            );
        }
        let hub = IngestHub {
            targets,
            connections: Arc::new(Semaphore::new(max_connections)),
            max_connections,
            metrics,
            next_id: AtomicU64::new(1),
            stopping,
        };
        (Arc::new(hub), receivers)
    }

    /// The metrics, for the protocol handlers' own counters.
    pub fn metrics(&self) -> &IngestMetrics {
        &self.metrics
    }

    /// Cancelled when the origin stops; handlers close their connections.
    pub fn stopping(&self) -> &CancellationToken {
        &self.stopping
    }

    /// Takes a connection slot, or `None` (counted and logged) when the limit is reached.
    pub fn connection(&self, protocol: Protocol, peer: SocketAddr) -> Option<ConnectionPermit> {
        match self.connections.clone().try_acquire_owned() {
            Ok(permit) => {
                let gauge = self
                    .metrics
                    .connections
                    .with_label_values(&[protocol.as_str()]);
                gauge.inc();
                Some(ConnectionPermit {
                    _permit: permit,
                    gauge,
                })
            }
            Err(_) => {
                self.metrics
                    .refused
                    .with_label_values(&[protocol.as_str(), "max_connections"])
                    .inc();
                tracing::warn!(protocol = protocol.as_str(), %peer, limit = self.max_connections, "ingest connection refused: too many connections");
                None
            }
        }
    }

    /// The SRT passphrase for `key`, checked before the SRT handshake completes.
    pub fn passphrase(&self, key: &str) -> Result<Option<String>, Refusal> {
        self.targets
            .get(key)
            .map(|t| t.stream.passphrase.clone())
            .ok_or(Refusal::UnknownKey)
    }

    /// Whether a publish with `key` would be admitted now (a known key, and the stream free or
    /// open to takeover), so a protocol can refuse during its handshake. Admission itself
    /// still happens in [`IngestHub::admit`].
    pub fn precheck(&self, key: &str) -> Result<(), Refusal> {
        if self.stopping.is_cancelled() {
            return Err(Refusal::ShuttingDown);
        }
        let target = self.targets.get(key).ok_or(Refusal::UnknownKey)?;
        if !target.stream.takeover && target.current.lock().is_some() {
            return Err(Refusal::AlreadyLive(target.stream.name.clone()));
        }
        Ok(())
    }

    /// Admits a publisher presenting `key`, or says why not (counted and logged).
    pub fn admit(
        &self,
        protocol: Protocol,
        key: &str,
        peer: SocketAddr,
    ) -> Result<PublishSession, Refusal> {
        let result = self.try_admit(protocol, key, peer);
        if let Err(refusal) = &result {
            self.metrics
                .refused
                .with_label_values(&[protocol.as_str(), refusal.label()])
                .inc();
            tracing::warn!(protocol = protocol.as_str(), %peer, reason = %refusal, "publish refused");
        }
        result
    }

    fn try_admit(
        &self,
        protocol: Protocol,
        key: &str,
        peer: SocketAddr,
    ) -> Result<PublishSession, Refusal> {
        if self.stopping.is_cancelled() {
            return Err(Refusal::ShuttingDown);
        }
        let target = self.targets.get(key).ok_or(Refusal::UnknownKey)?.clone();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        {
            let mut current = target.current.lock();
            if let Some((_, old)) = current.as_ref() {
                if !target.stream.takeover {
                    return Err(Refusal::AlreadyLive(target.stream.name.clone()));
                }
                tracing::info!(stream = %target.stream.name, %peer, "a new publisher takes over");
                old.cancel();
            }
            *current = Some((id, token.clone()));
        }
        let queue = Arc::new(MediaQueue::default());
        let stats = Arc::new(PublishStats::default());
        let feed = PublishFeed {
            id,
            protocol,
            peer,
            stream: target.stream.name.clone(),
            queue: queue.clone(),
            stats: stats.clone(),
            token: token.clone(),
        };
        if target.feeds.try_send(feed).is_err() {
            target.current.lock().take();
            return Err(Refusal::ShuttingDown);
        }
        tracing::info!(stream = %target.stream.name, protocol = protocol.as_str(), %peer, id, "publish accepted");
        Ok(PublishSession {
            id,
            target,
            queue,
            stats,
            token,
            rate: RateWindow::default(),
            metrics: self.metrics.clone(),
            protocol,
        })
    }
}

/// The publisher's side of a publish: push media, learn when it ends.
pub struct PublishSession {
    id: u64,
    target: Arc<Target>,
    queue: Arc<MediaQueue>,
    stats: Arc<PublishStats>,
    token: CancellationToken,
    rate: RateWindow,
    metrics: IngestMetrics,
    protocol: Protocol,
}

impl PublishSession {
    /// The stream being published.
    pub fn stream(&self) -> &str {
        &self.target.stream.name
    }

    /// Resolves when the publish is ended from the stream's side; the handler then closes the
    /// connection.
    pub async fn ended(&self) {
        self.token.cancelled().await;
    }

    /// Whether the publish was ended from the stream's side.
    pub fn is_ended(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Hands over one chunk of media. Never blocks; fails once the publish has ended.
    pub fn push(&mut self, chunk: MediaChunk) -> Result<(), Ended> {
        if self.token.is_cancelled() {
            return Err(Ended::ByStream("ended by the stream".into()));
        }
        let len = chunk.len() as u64;
        let name = &self.target.stream.name;
        self.stats.bytes.fetch_add(len, Ordering::Relaxed);
        self.metrics
            .bytes
            .with_label_values(&[name, self.protocol.as_str()])
            .inc_by(len);
        if let MediaChunk::Flv(tag) = &chunk
            && tag.kind == super::media::TagKind::Video
            && !tag.is_sequence_header()
        {
            self.stats.video_frames.fetch_add(1, Ordering::Relaxed);
            self.metrics.frames.with_label_values(&[name]).inc();
            if tag.is_keyframe() {
                self.stats.keyframes.fetch_add(1, Ordering::Relaxed);
            }
        }
        let now = Instant::now();
        let bps = self.rate.add(now, len);
        if let Some(bps) = bps {
            self.metrics
                .bitrate
                .with_label_values(&[name])
                .set(bps as i64);
            let max = self.target.stream.max_bitrate;
            if bps as f64 > max as f64 * RATE_TOLERANCE {
                self.token.cancel();
                self.metrics
                    .errors
                    .with_label_values(&[self.protocol.as_str(), "over_bitrate"])
                    .inc();
                tracing::warn!(stream = %name, protocol = self.protocol.as_str(), bps, max, "publish ended: the incoming bit rate is far above the stream's maximum");
                return Err(Ended::OverBitrate { bps, max });
            }
        }
        let dropped = self.queue.push(chunk);
        if dropped > 0 {
            self.stats.dropped.fetch_add(dropped, Ordering::Relaxed);
            self.metrics
                .dropped
                .with_label_values(&[name, "queue_full"])
                .inc_by(dropped);
        }
        Ok(())
    }
}

impl Drop for PublishSession {
    fn drop(&mut self) {
        self.queue.close();
        let mut current = self.target.current.lock();
        if current.as_ref().is_some_and(|(id, _)| *id == self.id) {
            current.take();
        }
    }
}

/// The stream's side of a publish.
pub struct PublishFeed {
    /// Unique for the process's lifetime.
    pub id: u64,
    /// RTMP or SRT.
    pub protocol: Protocol,
    /// The publisher's address.
    pub peer: SocketAddr,
    /// The stream's name.
    pub stream: String,
    queue: Arc<MediaQueue>,
    /// Counters of the publish.
    pub stats: Arc<PublishStats>,
    token: CancellationToken,
}

impl PublishFeed {
    /// The next chunk; `None` once the publisher is gone and everything was read.
    pub async fn recv(&self) -> Option<MediaChunk> {
        self.queue.pop().await
    }

    /// Ends the publish: the handler closes the publisher's connection.
    pub fn end(&self) {
        self.token.cancel();
    }

    /// Whether the publish was ended from either side.
    pub fn is_ended(&self) -> bool {
        self.token.is_cancelled() || self.queue.is_closed()
    }
}

impl Drop for PublishFeed {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use std::time::Duration;

    use prometheus::Registry;

    use super::*;
    use crate::ingest::media::{FlvTag, TagKind};

    fn hub(takeover: bool) -> (Arc<IngestHub>, mpsc::Receiver<PublishFeed>) {
        let metrics = IngestMetrics::register(&Registry::new()).expect("fresh registry");
        let stream = IngestStream {
            name: "studio".into(),
            key: "studio-key".into(),
            passphrase: None,
            max_bitrate: 1_000_000,
            takeover,
        };
        let (hub, mut rx) = IngestHub::new(vec![stream], 2, metrics, CancellationToken::new());
        let feeds = rx.remove("studio").expect("the stream's receiver");
        (hub, feeds)
    }

    fn peer() -> SocketAddr {
        "127.0.0.1:5000".parse().expect("addr")
    }

    fn video(key: bool, len: usize) -> MediaChunk {
        let mut data = vec![if key { 0x17 } else { 0x27 }, 1];
        data.resize(len, 0);
        MediaChunk::Flv(FlvTag {
            kind: TagKind::Video,
            timestamp: 0,
            data: Bytes::from(data),
        })
    }

    #[tokio::test]
    async fn a_known_key_is_admitted_and_its_media_reaches_the_stream() {
        let (hub, mut feeds) = hub(false);
        let mut session = hub
            .admit(Protocol::Rtmp, "studio-key", peer())
            .expect("admitted");
        assert_eq!(session.stream(), "studio");
        let feed = feeds.recv().await.expect("a feed");
        session.push(video(true, 100)).expect("pushed");
        assert_eq!(feed.recv().await, Some(video(true, 100)));
        assert_eq!(feed.stats.keyframes.load(Ordering::Relaxed), 1);
        drop(session);
        assert_eq!(
            feed.recv().await,
            None,
            "the feed ends when the publisher goes"
        );
    }

    #[tokio::test]
    async fn wrong_keys_and_second_publishers_are_refused() {
        let (hub, _feeds) = hub(false);
        assert_eq!(
            hub.admit(Protocol::Srt, "nope", peer()).err(),
            Some(Refusal::UnknownKey)
        );
        let first = hub
            .admit(Protocol::Rtmp, "studio-key", peer())
            .expect("admitted");
        assert!(matches!(
            hub.admit(Protocol::Srt, "studio-key", peer()),
            Err(Refusal::AlreadyLive(_))
        ));
        drop(first);
        hub.admit(Protocol::Srt, "studio-key", peer())
            .expect("free again");
    }

    #[tokio::test]
    async fn with_takeover_the_new_publisher_ends_the_old_one() {
        let (hub, _feeds) = hub(true);
        let mut first = hub
            .admit(Protocol::Rtmp, "studio-key", peer())
            .expect("admitted");
        let _second = hub
            .admit(Protocol::Rtmp, "studio-key", peer())
            .expect("takes over");
        tokio::time::timeout(Duration::from_secs(1), first.ended())
            .await
            .expect("the first is ended");
        assert!(first.push(video(true, 10)).is_err());
    }

    #[tokio::test]
    async fn the_connection_limit_is_enforced() {
        let (hub, _feeds) = hub(false);
        let a = hub.connection(Protocol::Rtmp, peer());
        let b = hub.connection(Protocol::Srt, peer());
        assert!(a.is_some() && b.is_some());
        assert!(hub.connection(Protocol::Rtmp, peer()).is_none());
        drop(a);
        assert!(hub.connection(Protocol::Rtmp, peer()).is_some());
    }

    #[tokio::test]
    async fn a_publisher_far_over_the_maximum_bit_rate_is_ended() {
        let (hub, _feeds) = hub(false);
        let mut session = hub
            .admit(Protocol::Rtmp, "studio-key", peer())
            .expect("admitted");
        // 10 Mbit/s against a 1 Mbit/s maximum: the window fills in 5 s of wall time, so feed
        // the window directly with past timestamps.
        let t0 = Instant::now() - Duration::from_secs(6);
        for s in 0..5 {
            session.rate.add(t0 + Duration::from_secs(s), 1_250_000);
        }
        let err = session
            .push(video(true, 1_250_000))
            .expect_err("over the limit");
        assert!(
            matches!(err, Ended::OverBitrate { max: 1_000_000, .. }),
            "{err}"
        );
    }
}
