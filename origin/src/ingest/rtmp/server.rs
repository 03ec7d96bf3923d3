//! The RTMP listener: the thin async glue around the sans-IO [`Handshake`] and [`Session`].
//!
//! It owns sockets, timeouts, the hub's connection permits and admission, and the metrics and
//! log line of every close; every protocol decision is made in the sans-IO modules. Memory per
//! connection is one read buffer plus what the chunk decoder may hold (bounded by the maximum
//! message size).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout_at};

use super::handshake::{Handshake, HandshakeStatus};
use super::session::{PublishRejection, Session, SessionError, SessionEvent};
use crate::ingest::hub::{ConnectionPermit, IngestHub, Protocol, PublishSession, Refusal};
use crate::ingest::media::MediaChunk;

/// Bytes read from the socket at a time; also what the chunk decoder may be handed at once.
const READ_BUFFER: usize = 16 << 10;
/// How long a last answer (a refusal's `onStatus`) may take to leave before the socket closes.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause after a failed accept (out of file descriptors...), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts RTMP publishers on `listener` until the hub's `stopping` token is cancelled, then
/// waits for open connections to close (they watch the same token).
///
/// `max_message_bytes` bounds one RTMP message (`ingest.rtmp.max_message_bytes`); everything
/// from accept to an admitted publish must finish within `handshake_timeout`; a publisher silent
/// for `media_timeout` is dropped.
///
/// ```no_run
/// # async fn run(hub: std::sync::Arc<corral_origin::ingest::hub::IngestHub>) -> std::io::Result<()> {
/// use std::time::Duration;
///
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:1935").await?;
/// corral_origin::ingest::rtmp::serve(
///     listener,
///     hub,
///     8 << 20,
///     Duration::from_secs(5),
///     Duration::from_secs(2),
/// )
/// .await;
/// # Ok(())
/// # }
/// ```
pub async fn serve(
    listener: TcpListener,
    hub: Arc<IngestHub>,
    max_message_bytes: usize,
    handshake_timeout: Duration,
    media_timeout: Duration,
) {
    let limits = Limits {
        max_message_bytes,
        handshake_timeout,
        media_timeout,
    };
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = hub.stopping().cancelled() => break,
            // Reaps finished connections so the set does not grow with every one ever served.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    // The hub counts and logs a refusal; dropping the socket closes it.
                    let Some(permit) = hub.connection(Protocol::Rtmp, peer) else {
                        continue;
                    };
                    connections.spawn(connection(socket, peer, hub.clone(), permit, limits));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "RTMP accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    max_message_bytes: usize,
    handshake_timeout: Duration,
    media_timeout: Duration,
}

/// Where a connection is, which decides its timeout and what a close means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Handshake,
    /// Handshake done, no publish admitted yet.
    Setup,
    Publishing,
    /// The client unpublished; waiting for it to hang up.
    Finished,
}

/// How a connection ended.
#[derive(Debug)]
enum Outcome {
    /// Closed before sending a byte: port scans and health checks.
    Abandoned,
    /// An ordinary end.
    Done(String),
    /// Refused; counted under `ingest_refused_total`.
    Refused(String),
    /// An error; counted under `ingest_errors_total` with `kind`.
    Failed { kind: &'static str, reason: String },
}

impl Outcome {
    fn failed(kind: &'static str, reason: impl Into<String>) -> Self {
        Outcome::Failed {
            kind,
            reason: reason.into(),
        }
    }
}

struct Connection {
    socket: TcpStream,
    peer: SocketAddr,
    hub: Arc<IngestHub>,
    limits: Limits,
    stage: Stage,
    /// When the handshake and setup must be over: accept time plus the handshake timeout.
    deadline: Instant,
    /// The stream's name once a publish is admitted, for logs.
    stream: Option<String>,
    publish: Option<PublishSession>,
    buf: Vec<u8>,
}

async fn connection(
    socket: TcpStream,
    peer: SocketAddr,
    hub: Arc<IngestHub>,
    _permit: ConnectionPermit,
    limits: Limits,
) {
    // Small control answers must not wait for Nagle's algorithm.
    if let Err(e) = socket.set_nodelay(true) {
        tracing::debug!(%peer, error = %e, "could not set TCP_NODELAY");
    }
    let mut conn = Connection {
        socket,
        peer,
        hub: hub.clone(),
        limits,
        stage: Stage::Handshake,
        deadline: Instant::now() + limits.handshake_timeout,
        stream: None,
        publish: None,
        buf: vec![0; READ_BUFFER],
    };
    let outcome = match conn.run().await {
        Err(outcome) => outcome,
        Ok(never) => match never {},
    };
    // Ends the publish (its feed sees the end) before the log line says the connection closed;
    // the socket itself closes last, when `conn` drops, so a client that sees the close also
    // sees it counted.
    conn.publish = None;
    let stream = conn.stream.as_deref().unwrap_or("-");
    match outcome {
        Outcome::Abandoned => tracing::debug!(%peer, "RTMP connection closed without data"),
        Outcome::Done(reason) => tracing::info!(%peer, stream, "RTMP connection closed: {reason}"),
        Outcome::Refused(reason) => {
            tracing::warn!(%peer, stream, "RTMP connection refused: {reason}");
        }
        Outcome::Failed { kind, reason } => {
            hub.metrics()
                .errors
                .with_label_values(&[Protocol::Rtmp.as_str(), kind])
                .inc();
            tracing::warn!(%peer, stream, kind, "RTMP connection closed on error: {reason}");
        }
    }
}

impl Connection {
    /// Runs the connection until it ends; the error is how.
    async fn run(&mut self) -> Result<Infallible, Outcome> {
        let leftover = self.handshake().await?;
        self.stage = Stage::Setup;
        let mut session = Session::new(self.limits.max_message_bytes);
        session.receive(&leftover);
        loop {
            self.drain(&mut session).await?;
            let n = self.read().await?;
            session.receive(&self.buf[..n]);
        }
    }

    async fn handshake(&mut self) -> Result<Vec<u8>, Outcome> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        // S1's random bytes only need to differ between connections.
        let seed = now.as_nanos() as u64 ^ u64::from(self.peer.port()).rotate_left(40);
        let mut handshake = Handshake::new(now.as_millis() as u32, seed);
        let mut received = 0;
        loop {
            let n = self.read().await?;
            received += n;
            let status = handshake
                .receive(&self.buf[..n])
                .map_err(|e| Outcome::failed("handshake", e.to_string()))?;
            self.write(&handshake.take_output()).await?;
            if let HandshakeStatus::Done { leftover } = status {
                return Ok(leftover);
            }
            if n == 0 {
                return Err(if received == 0 {
                    Outcome::Abandoned
                } else {
                    Outcome::failed(
                        "handshake",
                        "the client closed the connection in the middle of the handshake",
                    )
                });
            }
        }
    }

    /// Acts on every event the received bytes produced, then sends the answers.
    async fn drain(&mut self, session: &mut Session) -> Result<(), Outcome> {
        loop {
            let event = match session.poll_event() {
                Ok(Some(event)) => event,
                Ok(None) => break,
                Err(e) => {
                    self.farewell(session).await;
                    return Err(self.session_error(e));
                }
            };
            match event {
                SessionEvent::Publish { key } => self.admit(session, &key).await?,
                SessionEvent::Media(tag) => {
                    let Some(publish) = self.publish.as_mut() else {
                        continue;
                    };
                    if let Err(ended) = publish.push(MediaChunk::Flv(tag)) {
                        // The hub has counted and logged a bit-rate cut-off already.
                        return Err(Outcome::Done(ended.to_string()));
                    }
                }
                SessionEvent::Unpublish => {
                    if self.publish.take().is_some() {
                        tracing::info!(peer = %self.peer, stream = self.stream.as_deref().unwrap_or("-"), "RTMP publisher unpublished");
                    }
                    self.stage = Stage::Finished;
                }
            }
        }
        let out = session.take_output();
        self.write(&out).await
    }

    async fn admit(&mut self, session: &mut Session, key: &str) -> Result<(), Outcome> {
        match self.hub.admit(Protocol::Rtmp, key, self.peer) {
            Ok(publish) => {
                self.stream = Some(publish.stream().to_owned());
                self.publish = Some(publish);
                self.stage = Stage::Publishing;
                session.accept_publish();
                Ok(())
            }
            Err(refusal) => {
                // The hub has logged and counted the refusal.
                let rejection = match refusal {
                    Refusal::UnknownKey | Refusal::AlreadyLive(_) => PublishRejection::BadName,
                    Refusal::ShuttingDown => PublishRejection::Denied,
                };
                let description = match refusal {
                    Refusal::UnknownKey => "No stream has this key.",
                    Refusal::AlreadyLive(_) => "This stream already has a publisher.",
                    Refusal::ShuttingDown => "The server is shutting down.",
                };
                session.reject_publish(rejection, description);
                self.farewell(session).await;
                Err(Outcome::Done(format!("publish refused: {refusal}")))
            }
        }
    }

    fn session_error(&self, error: SessionError) -> Outcome {
        if let SessionError::UnknownApp(_) = error {
            self.hub
                .metrics()
                .refused
                .with_label_values(&[Protocol::Rtmp.as_str(), "unknown_app"])
                .inc();
            return Outcome::Refused(error.to_string());
        }
        Outcome::failed(error.kind(), error.to_string())
    }

    /// When the current stage's wait ends: the setup deadline, or the media timeout from now.
    fn limit(&self) -> Instant {
        match self.stage {
            Stage::Handshake | Stage::Setup => self.deadline,
            Stage::Publishing | Stage::Finished => Instant::now() + self.limits.media_timeout,
        }
    }

    /// Reads into `buf`; 0 means the peer closed during the handshake (later stages turn a
    /// close into an outcome here).
    async fn read(&mut self) -> Result<usize, Outcome> {
        let limit = self.limit();
        let Connection {
            socket,
            buf,
            hub,
            publish,
            ..
        } = self;
        let ended = async {
            match publish {
                Some(p) => p.ended().await,
                None => std::future::pending().await,
            }
        };
        let read = tokio::select! {
            () = hub.stopping().cancelled() => {
                return Err(Outcome::Done("the origin is stopping".into()));
            }
            () = ended => {
                return Err(Outcome::Done(
                    "the stream ended the publish (takeover, lost media or shutdown)".into(),
                ));
            }
            read = timeout_at(limit, socket.read(buf)) => read,
        };
        match (read, self.stage) {
            (Ok(Ok(0)), Stage::Handshake) => Ok(0),
            (Ok(Ok(0)), Stage::Setup) => Err(Outcome::Done(
                "the client closed the connection before publishing".into(),
            )),
            (Ok(Ok(0)), Stage::Publishing) => {
                Err(Outcome::Done("the publisher closed the connection".into()))
            }
            (Ok(Ok(0)), Stage::Finished) => Err(Outcome::Done(
                "the publisher unpublished and closed the connection".into(),
            )),
            (Ok(Ok(n)), _) => Ok(n),
            (Ok(Err(e)), _) => Err(Outcome::failed("io", format!("read failed: {e}"))),
            (Err(_), Stage::Handshake | Stage::Setup) => Err(Outcome::failed(
                "timeout",
                format!(
                    "no accepted publish within {:?} of connecting",
                    self.limits.handshake_timeout
                ),
            )),
            (Err(_), Stage::Publishing) => Err(Outcome::failed(
                "timeout",
                format!("no data for {:?}", self.limits.media_timeout),
            )),
            (Err(_), Stage::Finished) => {
                Err(Outcome::Done("closed after the publish ended".into()))
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), Outcome> {
        if bytes.is_empty() {
            return Ok(());
        }
        match timeout_at(self.limit(), self.socket.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Outcome::failed("io", format!("write failed: {e}"))),
            Err(_) => Err(Outcome::failed(
                "timeout",
                "the client stopped reading what the server sends",
            )),
        }
    }

    /// Sends the session's last words (an error status), if the client takes them promptly.
    /// The socket closes when the connection is dropped, after its close has been counted.
    async fn farewell(&mut self, session: &mut Session) {
        let out = session.take_output();
        // Best effort: the connection closes whether or not this arrives.
        let _ = tokio::time::timeout(FAREWELL_TIMEOUT, self.socket.write_all(&out)).await;
    }
}
