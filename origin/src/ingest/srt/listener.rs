//! The SRT listener: one dedicated thread owns the listening socket and an epoll set of every
//! accepted publisher, accepts callers, reads their MPEG-TS messages and pushes them into their
//! [`PublishSession`]s.
//!
//! libsrt runs the protocol on its own threads; this thread only ever waits on libsrt's epoll,
//! with a short timeout so that it notices the origin stopping, and never on a Rust channel or
//! lock held elsewhere (a session's push never blocks). The phases of a publisher, in order:
//!
//! 1. handshake: the listen callback ([`super::access`]) refuses bad stream ids and unknown keys
//!    and makes libsrt check the stream's passphrase;
//! 2. accept: a connection slot from the hub, then admission (one publisher per stream, which
//!    can only be checked now, after the handshake);
//! 3. media: each message must be whole 188-byte TS packets; it is pushed to the stream;
//! 4. close: on disconnect, bad payload, no media for the media timeout, a push the session
//!    refuses (over the bit rate, or ended), the stream ending the publish, or the origin
//!    stopping.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::access::Gate;
use super::ffi::{
    Epoll, Event, Interest, Listener, ReceiveStats, Received, Socket, SocketId, Srt, SrtError,
};
use super::streamid;
use crate::ingest::hub::{ConnectionPermit, Ended, IngestHub, Protocol, PublishSession};
use crate::ingest::media::MediaChunk;

/// How long one wait on the epoll lasts: the latency of noticing shutdown, timeouts, and a
/// publish ended by its stream.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Bytes read per message; the largest SRT live payload is 1456.
const MESSAGE_BUFFER: usize = 1500;
/// Messages read from one publisher per wake-up, so that a busy one cannot starve the others;
/// what is left stays ready for the next wait.
const MAX_BATCH: usize = 64;
/// Callers libsrt may hold connected before this thread accepts them.
const BACKLOG: u16 = 64;
/// Ready sockets taken per wait.
const EVENTS: usize = 64;
/// The payload size asked of libsrt: seven TS packets, the SRT default for MPEG-TS.
const PAYLOAD_SIZE: usize = 1316;
/// An MPEG-TS packet.
const TS_PACKET: usize = 188;
/// The first byte of every MPEG-TS packet.
const TS_SYNC: u8 = 0x47;

/// Listens for SRT publishers on `addr` and feeds `hub` until `hub.stopping()` is cancelled.
///
/// Binding and listening happen before this returns, so a busy port is reported at start-up;
/// the returned task completes once the listener thread has closed every connection.
/// `latency_ms` is the receive latency (how long lost packets may be retransmitted);
/// `handshake_timeout` bounds how long a caller let through access control may take to connect;
/// `media_timeout` closes a publisher that sends nothing for that long.
pub async fn serve(
    addr: SocketAddr,
    hub: Arc<IngestHub>,
    latency_ms: u32,
    handshake_timeout: Duration,
    media_timeout: Duration,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let srt = Srt::acquire()?;
    let socket = srt.socket()?;
    // Accepted sockets inherit these from the listener.
    socket.set_live_mode()?;
    socket.set_blocking(false)?;
    socket.set_receive_latency(Duration::from_millis(u64::from(latency_ms)))?;
    socket.set_payload_size(PAYLOAD_SIZE)?;
    // Enforced encryption is what makes libsrt refuse a caller whose passphrase does not match
    // the one the listen callback sets, or that encrypts when the stream does not.
    socket.set_enforced_encryption(true)?;
    socket.bind(addr)?;
    let gate = Arc::new(Gate::new(hub.clone(), handshake_timeout));
    let hook_gate = gate.clone();
    let listener = socket.listen(BACKLOG, move |request| hook_gate.check(request))?;
    let epoll = srt.epoll()?;
    epoll.add(listener.id(), Interest::READ)?;
    let local = listener.local_addr()?;
    tracing::info!(%local, latency_ms, "SRT ingest listening");

    let ingest = Ingest {
        connections: HashMap::new(),
        listener,
        epoll,
        gate,
        hub,
        media_timeout,
    };
    // The thread drops `done` when it ends, however it ends; the task waits for that.
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("srt-ingest".into())
        .spawn(move || {
            let _done = done;
            ingest.run();
        })?;
    Ok(tokio::spawn(async move {
        let _ = finished.await;
    }))
}

/// One admitted publisher.
struct Connection {
    // Dropped in order: the socket closes, then the session ends the feed, then the slot frees.
    socket: Socket,
    session: PublishSession,
    _permit: ConnectionPermit,
    peer: SocketAddr,
    last_media: Instant,
}

/// Why a publisher's connection is closed.
enum Close {
    /// The caller closed the connection or it broke.
    Disconnected,
    /// A message that is not whole TS packets.
    NotTs { len: usize },
    /// Receiving failed otherwise.
    Failed(SrtError),
    /// The session refused a push (over the bit rate, or ended).
    Refused(Ended),
    /// No media for the media timeout.
    MediaTimeout,
    /// The stream ended the publish (takeover, lost media, stopping).
    EndedByStream,
}

/// The listener thread's state.
struct Ingest {
    connections: HashMap<SocketId, Connection>,
    listener: Listener,
    epoll: Epoll,
    gate: Arc<Gate>,
    hub: Arc<IngestHub>,
    media_timeout: Duration,
}

impl Ingest {
    /// The thread's loop: wait, accept, read, check timeouts, until the origin stops.
    fn run(mut self) {
        let mut events = [Event::default(); EVENTS];
        let mut buf = [0u8; MESSAGE_BUFFER];
        let mut next_sweep = Instant::now() + POLL_INTERVAL;
        while !self.hub.stopping().is_cancelled() {
            let ready = match self.epoll.wait(&mut events, POLL_INTERVAL) {
                Ok(ready) => ready,
                Err(err) => {
                    // Not expected (the listener is always in the set); pausing keeps a
                    // persistent failure from spinning a core.
                    tracing::error!(%err, "SRT ingest: waiting for sockets failed");
                    std::thread::sleep(POLL_INTERVAL);
                    continue;
                }
            };
            for event in ready {
                if event.socket() == self.listener.id() {
                    self.accept_all();
                } else {
                    self.read(event.socket(), &mut buf);
                }
            }
            let now = Instant::now();
            if now >= next_sweep {
                self.sweep(now);
                next_sweep = now + POLL_INTERVAL;
            }
        }
        tracing::info!(
            publishers = self.connections.len(),
            "SRT ingest stopping: closing every publisher"
        );
    }

    /// Accepts every caller waiting.
    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok(Some((socket, peer))) => self.admit(socket, peer),
                Ok(None) => return,
                Err(err) => {
                    tracing::warn!(%err, "SRT ingest: accept failed");
                    return;
                }
            }
        }
    }

    /// Admits an accepted caller, or closes it (by dropping `socket`).
    fn admit(&mut self, socket: Socket, peer: Option<SocketAddr>) {
        self.gate.accepted(socket.id());
        // The hub wants an address; libsrt always gives one for IP callers.
        let peer = peer.unwrap_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
        let Some(permit) = self.hub.connection(Protocol::Srt, peer) else {
            return;
        };
        let raw = match socket.stream_id() {
            Ok(raw) => raw,
            Err(err) => {
                tracing::warn!(%peer, %err, "closing SRT caller: its stream id cannot be read");
                return;
            }
        };
        // The listen callback already checked it; a failure here would be a libsrt surprise.
        let id = match streamid::parse(&raw) {
            Ok(id) => id,
            Err(err) => {
                self.count_refused("bad_stream_id");
                tracing::warn!(%peer, %err, "closing SRT caller: bad stream id after the handshake");
                return;
            }
        };
        // The hub counts and logs a refusal (`publish refused`); dropping the socket closes it.
        let Ok(session) = self.hub.admit(Protocol::Srt, id.key, peer) else {
            return;
        };
        if let Err(err) = self.epoll.add(socket.id(), Interest::READ) {
            tracing::warn!(stream = session.stream(), %peer, %err, "closing SRT publisher: cannot watch its socket");
            return;
        }
        tracing::info!(stream = session.stream(), %peer, socket = %socket.id(), resource = ?id.resource, user = ?id.user, "SRT publisher connected");
        self.connections.insert(
            socket.id(),
            Connection {
                socket,
                session,
                _permit: permit,
                peer,
                last_media: Instant::now(),
            },
        );
    }

    /// Reads what `id` has ready and pushes it to its stream as one chunk.
    fn read(&mut self, id: SocketId, buf: &mut [u8]) {
        let Some(conn) = self.connections.get_mut(&id) else {
            // A socket closed a moment ago can still be reported once.
            let _ = self.epoll.remove(id);
            return;
        };
        let mut batch = BytesMut::new();
        let mut close = None;
        for _ in 0..MAX_BATCH {
            match conn.socket.recv(buf) {
                Ok(Received::Nothing) => break,
                Ok(Received::Message(len)) => {
                    let payload = &buf[..len];
                    if !is_whole_ts(payload) {
                        close = Some(Close::NotTs { len });
                        break;
                    }
                    batch.extend_from_slice(payload);
                }
                Err(err) if err.is_disconnect() => {
                    close = Some(Close::Disconnected);
                    break;
                }
                Err(err) => {
                    close = Some(Close::Failed(err));
                    break;
                }
            }
        }
        if !batch.is_empty() {
            conn.last_media = Instant::now();
            if let Err(ended) = conn.session.push(MediaChunk::Ts(batch.freeze())) {
                close = close.or(Some(Close::Refused(ended)));
            }
        }
        if let Some(why) = close {
            self.close(id, why);
        }
    }

    /// Closes publishers whose stream ended the publish or that went quiet, and gives up stale
    /// handshakes.
    fn sweep(&mut self, now: Instant) {
        self.gate.sweep(now);
        let closing: Vec<(SocketId, Close)> = self
            .connections
            .iter()
            .filter_map(|(id, conn)| {
                if conn.session.is_ended() {
                    Some((*id, Close::EndedByStream))
                } else if now.saturating_duration_since(conn.last_media) >= self.media_timeout {
                    Some((*id, Close::MediaTimeout))
                } else {
                    None
                }
            })
            .collect();
        for (id, why) in closing {
            self.close(id, why);
        }
    }

    /// Closes a publisher's connection and says why.
    fn close(&mut self, id: SocketId, why: Close) {
        let Some(conn) = self.connections.remove(&id) else {
            return;
        };
        let _ = self.epoll.remove(id);
        let stats = conn.socket.stats().unwrap_or_default();
        let stream = conn.session.stream();
        let peer = conn.peer;
        let ReceiveStats {
            packets,
            lost,
            dropped,
            ..
        } = stats;
        match why {
            Close::Disconnected => {
                tracing::info!(stream, %peer, packets, lost, dropped, "SRT publisher disconnected");
            }
            Close::NotTs { len } => {
                self.count_error("not_ts");
                tracing::warn!(stream, %peer, len, "closing SRT publisher: a message is not whole 188-byte MPEG-TS packets starting with 0x47; publish MPEG-TS");
            }
            Close::Failed(err) => {
                self.count_error("receive");
                tracing::warn!(stream, %peer, %err, "closing SRT publisher: receiving failed");
            }
            Close::Refused(ended) => {
                tracing::warn!(stream, %peer, reason = %ended, "closing SRT publisher");
            }
            Close::MediaTimeout => {
                self.count_error("media_timeout");
                tracing::warn!(stream, %peer, timeout = ?self.media_timeout, packets, lost, dropped, "closing SRT publisher: no media within the media timeout");
            }
            Close::EndedByStream => {
                tracing::info!(stream, %peer, "closing SRT publisher: the stream ended the publish");
            }
        }
    }

    fn count_error(&self, kind: &str) {
        self.hub
            .metrics()
            .errors
            .with_label_values(&[Protocol::Srt.as_str(), kind])
            .inc();
    }

    fn count_refused(&self, reason: &str) {
        self.hub
            .metrics()
            .refused
            .with_label_values(&[Protocol::Srt.as_str(), reason])
            .inc();
    }
}

/// Whether `payload` is one or more whole MPEG-TS packets, each starting with the sync byte.
fn is_whole_ts(payload: &[u8]) -> bool {
    !payload.is_empty()
        && payload.len().is_multiple_of(TS_PACKET)
        && payload
            .chunks_exact(TS_PACKET)
            .all(|packet| packet[0] == TS_SYNC)
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn only_whole_ts_packets_are_media() {
        let mut seven = vec![0u8; 7 * TS_PACKET];
        for packet in seven.chunks_exact_mut(TS_PACKET) {
            packet[0] = TS_SYNC;
        }
        assert!(is_whole_ts(&seven));
        assert!(is_whole_ts(&seven[..TS_PACKET]));
        assert!(!is_whole_ts(&[]));
        assert!(!is_whole_ts(&seven[..TS_PACKET + 1]), "a partial packet");
        let mut lost_sync = seven.clone();
        lost_sync[3 * TS_PACKET] = 0;
        assert!(
            !is_whole_ts(&lost_sync),
            "the fourth packet has no sync byte"
        );
        assert!(!is_whole_ts(&[0x47; 100]));
    }
}
