//! Access control for SRT callers, decided during the handshake by libsrt's listen callback:
//! read the stream id, refuse unknown keys, and require the stream's passphrase so that libsrt
//! fails the handshake of a caller without it.
//!
//! The callback runs on a libsrt thread, so everything here is quick and never waits on the
//! listener thread. libsrt checks the passphrase only after the callback has let a caller
//! through and then drops the caller without telling the application, so the [`Gate`] remembers
//! each caller it let through until the listener thread accepts it; [`Gate::sweep`] counts the
//! ones libsrt failed instead. It owns no socket; it must not hold its lock across a libsrt call
//! (libsrt holds its own locks while it calls the callback).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::ffi::{HandshakeRequest, RejectReason, SocketId, socket_state};
use super::streamid::{self, StreamIdError};
use crate::ingest::hub::{IngestHub, Protocol, Refusal};

/// Handshakes let through but not yet accepted, at most: beyond it callers are refused, which
/// bounds the memory a flood of handshakes with a valid key can pin here and in libsrt.
const MAX_PENDING: usize = 256;

/// Why the callback refuses a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Denial {
    /// Sent to the caller.
    pub reject: RejectReason,
    /// The `reason` label of `ingest_refused_total`.
    pub label: &'static str,
    /// For the log line.
    pub why: String,
}

/// What the callback lets through: the stream's passphrase, when it has one.
pub(super) type Admission = Option<String>;

/// Decides on a stream id: the passphrase to require, or why the caller is refused. Pure apart
/// from reading the hub's keys.
pub(super) fn decide(hub: &IngestHub, stream_id: &[u8]) -> Result<Admission, Denial> {
    let id = streamid::parse(stream_id).map_err(|err| Denial {
        reject: match err {
            StreamIdError::NotPublish(_) => RejectReason::BadMode,
            StreamIdError::NotStream(_) => RejectReason::UnsupportedMedia,
            _ => RejectReason::BadRequest,
        },
        label: "bad_stream_id",
        why: err.to_string(),
    })?;
    let deny = |refusal: Refusal| Denial {
        reject: match refusal {
            Refusal::AlreadyLive(_) => RejectReason::Conflict,
            // Forbidden rather than "not found": a caller guessing keys learns nothing.
            _ => RejectReason::Forbidden,
        },
        label: refusal.label(),
        why: match refusal {
            Refusal::UnknownKey => "no stream has this key".to_string(),
            other => other.to_string(),
        },
    };
    // A stream that already has a publisher refuses a second one during the handshake.
    hub.precheck(id.key).map_err(deny)?;
    hub.passphrase(id.key).map_err(deny)
}

/// A caller let through by the callback, not yet accepted.
#[derive(Clone, Copy)]
struct Pending {
    peer: Option<SocketAddr>,
    encrypted: bool,
    since: Instant,
}

/// The listen callback's state, shared with the listener thread.
pub(super) struct Gate {
    hub: Arc<IngestHub>,
    handshake_timeout: Duration,
    pending: Mutex<HashMap<SocketId, Pending>>,
}

impl Gate {
    /// A gate for `hub`'s keys; a caller let through but not accepted within
    /// `handshake_timeout` is given up.
    pub(super) fn new(hub: Arc<IngestHub>, handshake_timeout: Duration) -> Gate {
        Gate {
            hub,
            handshake_timeout,
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// The listen callback: lets the caller's handshake go on, or refuses it (counted and
    /// logged). Runs on a libsrt thread.
    pub(super) fn check(&self, request: &HandshakeRequest<'_>) -> Result<(), RejectReason> {
        let passphrase = match decide(&self.hub, request.stream_id) {
            Ok(passphrase) => passphrase,
            Err(denial) => return Err(self.deny(request.peer, denial)),
        };
        if let Some(passphrase) = &passphrase
            && let Err(err) = request.socket.set_passphrase(passphrase)
        {
            tracing::error!(%err, "the stream's SRT passphrase is refused by libsrt: it must be 10 to 79 characters");
            return Err(self.deny(
                request.peer,
                Denial {
                    reject: RejectReason::InternalError,
                    label: "server_error",
                    why: "the stream's passphrase is not usable".to_string(),
                },
            ));
        }
        {
            let mut pending = self.pending.lock();
            if pending.len() < MAX_PENDING {
                pending.insert(
                    request.socket.id(),
                    Pending {
                        peer: request.peer,
                        encrypted: passphrase.is_some(),
                        since: Instant::now(),
                    },
                );
                return Ok(());
            }
        }
        Err(self.deny(
            request.peer,
            Denial {
                reject: RejectReason::Overload,
                label: "overload",
                why: format!("{MAX_PENDING} handshakes are already in progress"),
            },
        ))
    }

    /// Counts and logs a refusal; returns the reason to send.
    fn deny(&self, peer: Option<SocketAddr>, denial: Denial) -> RejectReason {
        self.hub
            .metrics()
            .refused
            .with_label_values(&[Protocol::Srt.as_str(), denial.label])
            .inc();
        tracing::warn!(
            protocol = "srt",
            peer = ?peer,
            reason = denial.label,
            code = denial.reject.code(),
            "SRT caller refused during the handshake: {}",
            denial.why
        );
        denial.reject
    }

    /// The listener thread accepted `socket`: its handshake succeeded.
    pub(super) fn accepted(&self, socket: SocketId) {
        self.pending.lock().remove(&socket);
    }

    /// Counts the callers let through that libsrt then failed (in practice, a passphrase that
    /// does not match: libsrt drops those without telling the application) or that never
    /// completed within the handshake timeout.
    pub(super) fn sweep(&self, now: Instant) {
        let ids: Vec<SocketId> = self.pending.lock().keys().copied().collect();
        // Ask libsrt without holding the lock (see the module documentation).
        let finished: Vec<SocketId> = ids
            .into_iter()
            .filter(|id| socket_state(*id).is_finished())
            .collect();
        let mut given_up = Vec::new();
        {
            let mut pending = self.pending.lock();
            for id in finished {
                if let Some(p) = pending.remove(&id) {
                    given_up.push((p, "handshake_failed"));
                }
            }
            pending.retain(|_, p| {
                if now.saturating_duration_since(p.since) < self.handshake_timeout {
                    return true;
                }
                given_up.push((*p, "handshake_timeout"));
                false
            });
        }
        for (p, label) in given_up {
            self.hub
                .metrics()
                .refused
                .with_label_values(&[Protocol::Srt.as_str(), label])
                .inc();
            // libsrt logs the exact cause (target `libsrt`, at debug level); what the stream's
            // settings suggest is said here.
            let likely = if p.encrypted {
                "the caller most likely sent no passphrase or a wrong one"
            } else {
                "the caller most likely encrypts (has a passphrase) and this stream does not"
            };
            tracing::warn!(protocol = "srt", peer = ?p.peer, reason = label, "SRT handshake failed after access control: {likely}");
        }
    }

    /// Handshakes let through and not yet accepted.
    #[cfg(test)]
    fn pending(&self) -> usize {
        self.pending.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use prometheus::Registry;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::ingest::hub::{IngestMetrics, IngestStream};

    fn hub() -> Arc<IngestHub> {
        let metrics = IngestMetrics::register(&Registry::new()).expect("fresh registry");
        let streams = vec![
            IngestStream {
                name: "studio".into(),
                key: "studio-key".into(),
                passphrase: None,
                max_bitrate: 1_000_000,
                takeover: false,
            },
            IngestStream {
                name: "secure".into(),
                key: "secure-key".into(),
                passphrase: Some("correct horse battery".into()),
                max_bitrate: 1_000_000,
                takeover: false,
            },
        ];
        IngestHub::new(streams, 4, metrics, CancellationToken::new()).0
    }

    #[test]
    fn known_keys_pass_with_their_passphrase() {
        let hub = hub();
        assert_eq!(decide(&hub, b"studio-key"), Ok(None));
        assert_eq!(
            decide(&hub, b"#!::r=secure,m=publish,s=secure-key"),
            Ok(Some("correct horse battery".to_string()))
        );
    }

    #[test]
    fn unknown_keys_and_bad_ids_are_denied_with_their_reason() {
        let hub = hub();
        let unknown = decide(&hub, b"nope").expect_err("unknown");
        assert_eq!(
            (unknown.reject, unknown.label),
            (RejectReason::Forbidden, "unknown_key")
        );
        let mode = decide(&hub, b"#!::s=studio-key,m=request").expect_err("mode");
        assert_eq!(
            (mode.reject, mode.label),
            (RejectReason::BadMode, "bad_stream_id")
        );
        let empty = decide(&hub, b"").expect_err("empty");
        assert_eq!(empty.reject, RejectReason::BadRequest);
        let file = decide(&hub, b"#!::s=studio-key,t=file").expect_err("file");
        assert_eq!(file.reject, RejectReason::UnsupportedMedia);
    }

    #[test]
    fn a_sweep_gives_up_handshakes_libsrt_no_longer_knows() {
        let hub = hub();
        let gate = Gate::new(hub.clone(), Duration::from_secs(5));
        // Ids libsrt never handed out: it reports them as gone, as it does once it has dropped a
        // caller whose passphrase did not match.
        for (id, encrypted) in [(-2, true), (-3, false)] {
            gate.pending.lock().insert(
                SocketId::for_tests(id),
                Pending {
                    peer: None,
                    encrypted,
                    since: Instant::now(),
                },
            );
        }
        gate.accepted(SocketId::for_tests(-3));
        gate.sweep(Instant::now());
        assert_eq!(gate.pending(), 0);
        let failed = hub
            .metrics()
            .refused
            .with_label_values(&["srt", "handshake_failed"])
            .get();
        assert_eq!(failed, 1, "the accepted one is not counted");
    }
}
