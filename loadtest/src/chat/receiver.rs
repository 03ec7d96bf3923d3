//! A `loadtest chat` worker process: holds its share of the room's receiving connections,
//! opened at a bounded rate, and counts what they receive. It speaks to the parent in JSON lines on stdout
//! ([`WorkerLine`]: `ready` once its connections are up, `summary` when told to stop) and is
//! told to stop by a `stop` line on stdin, or by stdin's end (the parent died). Nothing else
//! may go to stdout; logs go to stderr. Ctrl-C is left to the parent, which asks for the
//! summary.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use super::tally::{CLOSE_ABNORMAL, WorkerSummary};
use super::wire::{ServerFrame, read_frame, unix_ns};
use super::{ChatSocket, open_socket, raised, resolve};

/// What one worker holds.
#[derive(Debug, Clone)]
pub struct WorkerPlan {
    /// The room's WebSocket URL (`ws://HOST:PORT/v1/rooms/ROOM/ws`).
    pub url: String,
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
    Summary(WorkerSummary),
}

/// What the worker's connections share.
struct Receivers {
    url: String,
    server: SocketAddr,
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
    let receivers = Arc::new(Receivers {
        url: plan.url.clone(),
        server: resolve(&plan.url).await?,
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
        let source = (!plan.source_addrs.is_empty())
            .then(|| plan.source_addrs[(plan.first + i) % plan.source_addrs.len()]);
        tokio::spawn(receive(receivers.clone(), source, settled_tx.clone()));
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
    crate::say_to_parent(&WorkerLine::Summary(summary))?;
    let _ = closing_tx.send(true);
    let deadline = tokio::time::Instant::now() + CLOSE_TIMEOUT;
    while receivers.open.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// One receiving connection: opens, says it has settled, counts deliveries until it closes.
async fn receive(
    receivers: Arc<Receivers>,
    source: Option<IpAddr>,
    settled: mpsc::UnboundedSender<()>,
) {
    let socket = open_socket(&receivers.url, receivers.server, source).await;
    let socket = match socket {
        Ok(s) => {
            receivers.open.fetch_add(1, Ordering::Relaxed);
            s
        }
        Err(e) => {
            receivers.tally.lock().record_connect_failure(&e);
            let _ = settled.send(());
            return;
        }
    };
    let _ = settled.send(());
    let mut closing = receivers.closing.clone();
    let mut socket = socket;
    tokio::select! {
        code = count_deliveries(&mut socket, &receivers) => {
            receivers.tally.lock().record_close(code);
        }
        _ = raised(&mut closing) => {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.close(None)).await;
        }
    }
    receivers.open.fetch_sub(1, Ordering::Relaxed);
}

/// Reads until the connection ends (pings are answered while reading); the close code.
async fn count_deliveries(socket: &mut ChatSocket, receivers: &Receivers) -> u16 {
    while let Some(frame) = socket.next().await {
        match frame {
            Ok(Message::Text(text)) => {
                let now = unix_ns(SystemTime::now());
                if let ServerFrame::Msg(stamp) = read_frame(&text) {
                    receivers.tally.lock().record_delivery(&stamp, now);
                }
            }
            Ok(Message::Close(frame)) => return frame.map_or(1005, |f| u16::from(f.code)),
            Ok(_) => {}
            Err(_) => return CLOSE_ABNORMAL,
        }
    }
    CLOSE_ABNORMAL
}
