//! A `loadtest chat` worker process: holds its share of the room's receiving connections,
//! opened at a bounded rate, and counts what they receive. It speaks to the parent in JSON lines on stdout
//! ([`WorkerLine`]: `ready` once its connections are up, `summary` when told to stop) and is
//! told to stop by a `stop` line on stdin, or by stdin's end (the parent died). Nothing else
//! may go to stdout; logs go to stderr. Ctrl-C is left to the parent, which asks for the
//! summary.
//!
//! A receiver whose connection ends comes back the way a chat client does: after a jittered
//! back-off, to the next node of the room's list, with the offset of the last message it
//! has (`since`), and counts what the relay's recovery frame brings as delivered, once.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use super::tally::{CLOSE_ABNORMAL, WorkerSummary};
use super::wire::{ServerFrame, Stamp, read_frame, unix_ns};
use super::{ChatSocket, Reconnect, open_socket, raised, resolve};

/// What one worker holds.
#[derive(Debug, Clone)]
pub struct WorkerPlan {
    /// The room's WebSocket URL on each node (`ws://HOST:PORT/v1/rooms/ROOM/ws`): receivers
    /// are spread over them and move to the next when theirs ends.
    pub urls: Vec<String>,
    /// The run's id: only messages stamped with it count.
    pub run: u32,
    /// The room's last offset before the run: where a receiver that had no message yet
    /// recovers from.
    pub since: u64,
    /// Receiving connections to hold.
    pub connections: usize,
    /// New connections per second.
    pub connect_rate: f64,
    /// Local addresses to connect from, in turn; empty for the system's choice.
    pub source_addrs: Vec<IpAddr>,
    /// The run-wide number of this worker's first connection, so that the workers together
    /// go round the source addresses evenly.
    pub first: usize,
}

/// A line from a worker to the parent.
#[derive(Debug, Clone, Serialize, Deserialize)]
// Externally tagged: an internally tagged enum is buffered before it is read, and the buffer
// cannot read the per-message map's number keys back from JSON's strings.
#[serde(rename_all = "lowercase")]
pub enum WorkerLine {
    /// Every connection has been tried.
    Ready {
        /// Connections open.
        held: u64,
        /// Connections that could not be opened.
        connect_failures: u64,
    },
    /// The counts, when told to stop.
    Summary(Box<WorkerSummary>),
}

/// What the worker's connections share.
struct Receivers {
    urls: Vec<String>,
    servers: Vec<SocketAddr>,
    run: u32,
    since: u64,
    open: AtomicU64,
    tally: Mutex<WorkerSummary>,
    /// Set once the summary is out: every connection closes with a close frame, so the relay
    /// sees clients leaving, not connections failing.
    closing: watch::Receiver<bool>,
}

/// How long the connections have to close once the summary is out.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the worker: opens `plan.connections` receivers, says `ready`, counts deliveries until
/// told to stop, says `summary`.
pub async fn run_worker(plan: &WorkerPlan) -> anyhow::Result<()> {
    let (closing_tx, closing) = watch::channel(false);
    let mut servers = Vec::new();
    for url in &plan.urls {
        servers.push(resolve(url).await?);
    }
    anyhow::ensure!(!servers.is_empty(), "no room URL");
    let receivers = Arc::new(Receivers {
        urls: plan.urls.clone(),
        servers,
        run: plan.run,
        since: plan.since,
        open: AtomicU64::new(0),
        tally: Mutex::new(WorkerSummary::default()),
        closing,
    });
    tokio::spawn(async {
        // The terminal's Ctrl-C reaches the whole process group: the parent handles it.
        while tokio::signal::ctrl_c().await.is_ok() {}
    });
    let (stop_tx, mut stop) = watch::channel(false);
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        // Returns after `stop` or the end, so no blocking read of stdin outlives the worker.
        while let Ok(Some(line)) = lines.next_line().await {
            if line.trim() == "stop" {
                break;
            }
        }
        let _ = stop_tx.send(true);
    });

    let (settled_tx, mut settled) = mpsc::unbounded_channel::<()>();
    let mut ramp = tokio::time::interval(Duration::from_secs_f64(1.0 / plan.connect_rate));
    ramp.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tried = 0;
    for i in 0..plan.connections {
        tokio::select! {
            _ = ramp.tick() => {}
            _ = raised(&mut stop) => break,
        }
        let index = plan.first + i;
        let source = (!plan.source_addrs.is_empty())
            .then(|| plan.source_addrs[index % plan.source_addrs.len()]);
        tokio::spawn(receive(
            receivers.clone(),
            index,
            source,
            settled_tx.clone(),
        ));
        tried += 1;
    }
    for _ in 0..tried {
        tokio::select! {
            _ = settled.recv() => {}
            _ = raised(&mut stop) => break,
        }
    }
    let held = receivers.open.load(Ordering::Relaxed);
    let connect_failures = receivers.tally.lock().connect_failures;
    crate::say_to_parent(&WorkerLine::Ready {
        held,
        connect_failures,
    })?;
    raised(&mut stop).await;
    let mut summary = receivers.tally.lock().clone();
    summary.held_at_start = held;
    summary.held = receivers.open.load(Ordering::Relaxed);
    crate::say_to_parent(&WorkerLine::Summary(Box::new(summary)))?;
    let _ = closing_tx.send(true);
    let deadline = tokio::time::Instant::now() + CLOSE_TIMEOUT;
    while receivers.open.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Where a receiver is in the room: the last offset it has, and since when it has been away
/// (from its connection's end to the recovery frame of its next one).
#[derive(Default)]
struct Position {
    last: Option<u64>,
    away_since: Option<Instant>,
}

/// One receiver (run-wide number `index`): opens on its node, says it has settled, counts
/// deliveries, and comes back on the next node whenever its connection ends, until the run
/// closes.
async fn receive(
    receivers: Arc<Receivers>,
    index: usize,
    source: Option<IpAddr>,
    settled: mpsc::UnboundedSender<()>,
) {
    let node = index % receivers.urls.len();
    let first = open_socket(&receivers.urls[node], receivers.servers[node], source).await;
    let mut socket = match first {
        Ok(s) => s,
        Err(e) => {
            receivers.tally.lock().record_connect_failure(&e);
            let _ = settled.send(());
            return;
        }
    };
    receivers.open.fetch_add(1, Ordering::Relaxed);
    let _ = settled.send(());
    let mut closing = receivers.closing.clone();
    let mut position = Position::default();
    let mut reconnect = Reconnect::new(index, node, receivers.urls.len());
    loop {
        let ended = tokio::select! {
            code = count_deliveries(&mut socket, &receivers, &mut position) => Some(code),
            _ = raised(&mut closing) => {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.close(None)).await;
                None
            }
        };
        receivers.open.fetch_sub(1, Ordering::Relaxed);
        let Some(code) = ended else { return };
        receivers.tally.lock().record_close(code);
        position.away_since = Some(Instant::now());
        let since = position.last.unwrap_or(receivers.since);
        let url_of = |node: usize| with_since(&receivers.urls[node], since);
        let again = reconnect.again(index, &mut closing, &receivers.servers, source, url_of);
        let Some(s) = again.await else { return };
        socket = s;
        receivers.open.fetch_add(1, Ordering::Relaxed);
    }
}

/// `url` asking for what came after offset `since`.
fn with_since(url: &str, since: u64) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}since={since}")
}

/// Reads until the connection ends (pings are answered while reading); the close code.
async fn count_deliveries(
    socket: &mut ChatSocket,
    receivers: &Receivers,
    position: &mut Position,
) -> u16 {
    while let Some(frame) = socket.next().await {
        match frame {
            Ok(Message::Text(text)) => {
                let now = unix_ns(SystemTime::now());
                match read_frame(&text) {
                    ServerFrame::Msg { offset, stamp } => {
                        let mut tally = receivers.tally.lock();
                        if let Some(stamp) = position.take(offset, stamp, receivers.run, &mut tally)
                        {
                            tally.record_delivery(&stamp, now);
                        }
                    }
                    ServerFrame::Recovery {
                        recovered,
                        messages,
                    } => {
                        let mut tally = receivers.tally.lock();
                        for (offset, stamp) in messages {
                            if let Some(stamp) =
                                position.take(offset, stamp, receivers.run, &mut tally)
                            {
                                tally.record_recovered(&stamp, now);
                            }
                        }
                        if let Some(away) = position.away_since.take() {
                            tally.record_reconnect(away.elapsed().as_millis() as u64, recovered);
                        }
                    }
                    _ => {}
                }
            }
            Ok(Message::Close(frame)) => return frame.map_or(1005, |f| u16::from(f.code)),
            Ok(_) => {}
            Err(_) => return CLOSE_ABNORMAL,
        }
    }
    CLOSE_ABNORMAL
}

impl Position {
    /// Takes the message at `offset`: its stamp when it is new and of this `run`; a message
    /// at an offset already had is a duplicate, counted and dropped.
    fn take(
        &mut self,
        offset: u64,
        stamp: Option<Stamp>,
        run: u32,
        tally: &mut WorkerSummary,
    ) -> Option<Stamp> {
        if self.last.is_some_and(|last| offset <= last) {
            tally.duplicates += 1;
            return None;
        }
        self.last = Some(offset);
        stamp.filter(|s| s.run == run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receiver_counts_each_offset_once_and_only_its_runs_messages() {
        let stamp = |seq, run| Stamp {
            sent_unix_ns: 1,
            sender: 0,
            seq,
            run,
        };
        let mut tally = WorkerSummary::default();
        let mut p = Position::default();
        assert_eq!(
            p.take(3, Some(stamp(0, 7)), 7, &mut tally),
            Some(stamp(0, 7))
        );
        assert_eq!(
            p.take(4, Some(stamp(1, 8)), 7, &mut tally),
            None,
            "another run"
        );
        assert_eq!(p.take(5, None, 7, &mut tally), None, "not a stamp");
        // A recovery that overlaps what was had live.
        assert_eq!(p.take(4, Some(stamp(1, 7)), 7, &mut tally), None);
        assert_eq!(p.take(5, None, 7, &mut tally), None);
        assert_eq!(
            p.take(6, Some(stamp(2, 7)), 7, &mut tally),
            Some(stamp(2, 7))
        );
        assert_eq!(tally.duplicates, 2);
        assert_eq!(p.last, Some(6));
        assert_eq!(
            with_since("ws://h:1/v1/rooms/r/ws", 6),
            "ws://h:1/v1/rooms/r/ws?since=6"
        );
    }
}
