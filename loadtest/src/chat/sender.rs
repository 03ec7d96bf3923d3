//! The senders of `loadtest chat`: users with signed tokens, one connection each, that write the
//! run's messages (handed out in turn at the run's rate, each stamped with the time it is
//! written) and count what the relay says back: acks, refusals, closes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use super::tally::CLOSE_ABNORMAL;
use super::wire::{ServerFrame, Stamp, read_frame, send_frame, unix_ns};
use super::{ChatSocket, Reconnect, raised};

/// What the senders share.
#[derive(Default)]
pub(super) struct Sending {
    pub(super) sent: AtomicU64,
    pub(super) skipped: AtomicU64,
    pub(super) acked: Mutex<BTreeSet<u64>>,
    pub(super) refused: Mutex<BTreeMap<String, u64>>,
    pub(super) closes: Mutex<BTreeMap<u16, u64>>,
    pub(super) reconnects: AtomicU64,
}

/// Hands message numbers to the senders in turn, `rate` per second for `duration`. A late
/// tick is caught up at once, so the average rate holds even with ticks finer than the
/// timer's millisecond.
pub(super) async fn schedule(
    rate: f64,
    duration: Duration,
    queues: &[mpsc::Sender<u64>],
    sending: &Sending,
) {
    if queues.is_empty() || rate == 0.0 {
        tokio::time::sleep(duration).await;
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let end = tokio::time::sleep(duration);
    tokio::pin!(end);
    let mut seq = 0u64;
    loop {
        tokio::select! {
            _ = &mut end => return,
            _ = tick.tick() => {}
        }
        let queue = &queues[(seq % queues.len() as u64) as usize];
        if queue.try_send(seq).is_err() {
            sending.skipped.fetch_add(1, Ordering::Relaxed);
        }
        seq += 1;
    }
}

/// Where a sender connects: the room's URL on each node with its token, their addresses,
/// the node it starts on, and the local address to connect from.
pub(super) struct Link {
    pub(super) urls: Vec<String>,
    pub(super) servers: Vec<SocketAddr>,
    pub(super) node: usize,
    pub(super) source: Option<IpAddr>,
}

/// One sender: writes each queued message stamped with the time it is written, and reads its
/// acks (and the room's frames, which it must keep reading not to be dropped as slow), until
/// `closing`. When its connection ends it comes back on the next node after a jittered
/// back-off, as a chat client does; what was written and not acked is left unacked (a client
/// shows it as not sent), never counted as lost.
pub(super) async fn send_messages(
    index: usize,
    run: u32,
    link: Link,
    socket: ChatSocket,
    mut queue: mpsc::Receiver<u64>,
    sending: Arc<Sending>,
    mut closing: watch::Receiver<bool>,
) {
    let mut socket = socket;
    let mut queue_open = true;
    let mut reconnect = Reconnect::new(index, link.node, link.urls.len());
    loop {
        let session = Session {
            index,
            run,
            sending: &sending,
        };
        let Some(code) = session
            .run(socket, &mut queue, &mut queue_open, &mut closing)
            .await
        else {
            return;
        };
        tracing::warn!(sender = index, code, "a sender's connection closed");
        *sending.closes.lock().entry(code).or_default() += 1;
        let url_of = |node: usize| link.urls[node].clone();
        let again = reconnect.again(index, &mut closing, &link.servers, link.source, url_of);
        let Some(s) = again.await else { return };
        socket = s;
        sending.reconnects.fetch_add(1, Ordering::Relaxed);
    }
}

/// One connection of a sender.
struct Session<'a> {
    index: usize,
    run: u32,
    sending: &'a Sending,
}

impl Session<'_> {
    /// Writes what is queued and reads what comes until the connection ends (its close code)
    /// or `closing` (`None`, after a close frame).
    async fn run(
        &self,
        socket: ChatSocket,
        queue: &mut mpsc::Receiver<u64>,
        queue_open: &mut bool,
        closing: &mut watch::Receiver<bool>,
    ) -> Option<u16> {
        let (index, run, sending) = (self.index, self.run, self.sending);
        let (mut sink, mut frames) = socket.split();
        loop {
            tokio::select! {
                seq = queue.recv(), if *queue_open => match seq {
                    Some(seq) => {
                        let stamp = Stamp { sent_unix_ns: unix_ns(SystemTime::now()), sender: index, seq, run };
                        if sink.send(Message::text(send_frame(&stamp))).await.is_err() {
                            return Some(CLOSE_ABNORMAL);
                        }
                        sending.sent.fetch_add(1, Ordering::Relaxed);
                    }
                    None => *queue_open = false,
                },
                frame = frames.next() => match frame {
                    Some(Ok(Message::Text(text))) => match read_frame(&text) {
                        ServerFrame::Ack(seq) => {
                            sending.acked.lock().insert(seq);
                        }
                        ServerFrame::Refused(code) => {
                            *sending.refused.lock().entry(code).or_default() += 1;
                        }
                        _ => {}
                    },
                    Some(Ok(Message::Close(frame))) => return Some(frame.map_or(1005, |f| u16::from(f.code))),
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return Some(CLOSE_ABNORMAL),
                },
                _ = raised(closing) => {
                    let _ = sink.send(Message::Close(None)).await;
                    return None;
                }
            }
        }
    }
}

/// An HS256 token for sender `index`, valid until `exp` (unix seconds).
pub(super) fn token(secret: &str, index: usize, exp: u64) -> anyhow::Result<String> {
    let claims = serde_json::json!({
        "sub": format!("loadtest-{index}"),
        "name": format!("loadtest {index}"),
        "exp": exp,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .context("signing a sender's token")
}

/// `url` with `token` in its query.
pub(super) fn sender_url(url: &str, token: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}token={token}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_tokens_carry_the_claims_the_relay_reads() {
        let secret = "dev-chat-secret";
        let t = token(secret, 4, 4_000_000_000).expect("signs");
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(
            &t,
            &jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
            &validation,
        )
        .expect("the relay's validation accepts it");
        assert_eq!(data.claims["sub"], "loadtest-4");
        assert_eq!(
            sender_url("ws://h:1/v1/rooms/r/ws", "abc"),
            "ws://h:1/v1/rooms/r/ws?token=abc"
        );
        assert_eq!(
            sender_url("ws://h:1/ws?x=1", "abc"),
            "ws://h:1/ws?x=1&token=abc"
        );
    }
}
