//! The fault-injection suite: each fault of DESIGN.md's table injected while players watch.
//!
//! The stack is the redundant one a production region runs: a broadcaster (ffmpeg) publishing
//! to a primary origin and to a standby that follows it, and an edge in front of both. A
//! viewer swarm (`loadtest viewers`, `FAULT_VIEWERS` players, 20 by default) and a probe (one
//! LL-HLS player that records when each part arrives) watch through the edge; the fault comes
//! after a few seconds of watching. Each test writes one row (JSON) to
//! `target/faults/report.jsonl`: the stalls the players saw, the seconds the stream took to
//! recover (the probe's longest wait for a part, less a part's duration), and the requests
//! that failed; `scripts/fault-suite.sh` runs them all with more players and prints the table.

use std::time::{Duration, Instant};

use corral_e2e::edge::Edge;
use corral_e2e::{Origin, Publisher, SERIAL, binary, free_port, published_origin_config};
use corral_loadtest::client::HttpClient;
use corral_loadtest::playlist::MediaPlaylist;
use tokio::sync::watch;

const STREAM: &str = "studio";
const MASTER: &str = "/live/studio/master.m3u8";
const PLAYLIST: &str = "/live/studio/180p/index.m3u8";
const PART_TARGET: f64 = 0.33334;
/// Watching before the fault.
const BEFORE: Duration = Duration::from_secs(6);
/// Watching after the fault (and after the end of a fault that lasts).
const AFTER: Duration = Duration::from_secs(10);

/// The region: a publisher, a primary and a standby origin, an edge in front of both.
struct Stack {
    primary: Origin,
    standby: Origin,
    rtmp: [u16; 2],
    publisher: Option<Publisher>,
    edge: Edge,
}

impl Stack {
    async fn start() -> Stack {
        let rtmp = [free_port(), free_port()];
        let primary = Origin::start_with_http(
            "  on_stop: hand_over\n",
            &published_origin_config(rtmp[0], None),
        );
        let standby = Origin::start_with_http(
            "  on_stop: hand_over\n",
            &published_origin_config(rtmp[1], Some(primary.http)),
        );
        let mut stack = Stack {
            edge: Edge::start(&[&primary.http.to_string(), &standby.http.to_string()], ""),
            primary,
            standby,
            rtmp,
            publisher: None,
        };
        stack.publish();
        for origin in [&stack.primary, &stack.standby] {
            origin.playlist_with(PLAYLIST, 2).await;
        }
        stack
    }

    fn publish(&mut self) {
        let urls = self
            .rtmp
            .map(|p| format!("rtmp://127.0.0.1:{p}/live/studio-key"));
        self.publisher = Some(Publisher::start_to_each(
            &[urls[0].as_str(), urls[1].as_str()],
            None,
        ));
    }
}

/// One LL-HLS player following the stream through the edge, recording when each part
/// arrives; it retries a failed request after 100 ms, as players do.
async fn probe(edge: std::net::SocketAddr, mut stop: watch::Receiver<bool>) -> Vec<Instant> {
    let client = HttpClient::new(Duration::from_secs(10));
    let url =
        |path: &str| -> http::Uri { format!("http://{edge}{path}").parse().expect("valid URI") };
    let mut arrivals = Vec::new();
    let mut playlist: Option<MediaPlaylist> = None;
    while !*stop.borrow() {
        let target = match playlist
            .as_ref()
            .and_then(|p| p.preload_hint.clone())
            .and_then(|h| MediaPlaylist::part_position(&h).map(|pos| (h, pos)))
        {
            Some((hint, (msn, part))) => {
                let part_url = url(&format!("/live/{STREAM}/180p/{hint}"));
                let playlist_url = url(&format!("{PLAYLIST}?_HLS_msn={msn}&_HLS_part={part}"));
                Some((part_url, playlist_url))
            }
            None => None,
        };
        let fetched = tokio::select! {
            r = async {
                match &target {
                    Some((part_url, playlist_url)) => {
                        let (listed, part) =
                            tokio::join!(client.get(playlist_url, &[]), client.get(part_url, &[]));
                        match (listed, part) {
                            (Ok(l), Ok(p)) if l.status == 200 && p.status == 200 => {
                                arrivals.push(Instant::now());
                                Some(l)
                            }
                            _ => None,
                        }
                    }
                    None => client.get(&url(PLAYLIST), &[]).await.ok().filter(|r| r.status == 200),
                }
            } => r,
            _ = stop.changed() => break,
        };
        match fetched.and_then(|r| MediaPlaylist::parse(std::str::from_utf8(&r.body).ok()?).ok()) {
            Some(p) => playlist = Some(p),
            None => {
                // Re-join from a plain reload after a failure, after a short back-off.
                playlist = None;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    arrivals
}

/// One fault's measurements: a row of the table.
#[derive(Debug)]
struct Row {
    fault: String,
    viewers: u64,
    /// Playout stalls the swarm's players saw, and how many players stalled.
    stalls: u64,
    players_stalled: u64,
    stall_seconds: f64,
    /// The probe's longest wait for a part around the fault, less a part's duration.
    recovery_seconds: f64,
    /// Requests the swarm's players made, and how many failed (each retried).
    requests: u64,
    failed_requests: u64,
}

impl Row {
    fn record(&self) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/faults");
        std::fs::create_dir_all(&dir).expect("report folder");
        let line = serde_json::json!({
            "fault": self.fault,
            "viewers": self.viewers,
            "stalls": self.stalls,
            "players_stalled": self.players_stalled,
            "stall_seconds": self.stall_seconds,
            "recovery_seconds": self.recovery_seconds,
            "requests": self.requests,
            "failed_requests": self.failed_requests,
        })
        .to_string()
            + "\n";
        use std::io::Write;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("report.jsonl"))
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .expect("report written");
        eprintln!("{line}");
    }
}

/// Watches the stack with the swarm and the probe, injects the fault `inject` (which may take
/// as long as the fault lasts) after [`BEFORE`], watches [`AFTER`] more, and measures.
async fn watch_through<F>(fault: &str, stack: &mut Stack, inject: F) -> Row
where
    F: AsyncFnOnce(&mut Stack) -> Duration,
{
    let viewers: u64 = std::env::var("FAULT_VIEWERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let (stop_tx, stop_rx) = watch::channel(false);
    let probe = tokio::spawn(probe(stack.edge.http, stop_rx));
    // The swarm watches for the whole run; its duration is set long and it is stopped with
    // Ctrl-C (its partial report) once the window after the fault has passed.
    let swarm = tokio::process::Command::new(binary("loadtest"))
        .args([
            "viewers",
            &format!("http://{}{MASTER}", stack.edge.http),
            "-n",
            &viewers.to_string(),
            "--ramp-up",
            "2s",
            "--duration",
            "600s",
            "--rendition",
            "180p",
            "--format",
            "json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("loadtest starts");
    tokio::time::sleep(BEFORE).await;
    let fault_at = Instant::now();
    let lasted = inject(stack).await;
    tokio::time::sleep(AFTER).await;
    let pid = nix::unistd::Pid::from_raw(swarm.id().expect("running") as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
    let out = swarm.wait_with_output().await.expect("loadtest ends");
    let _ = stop_tx.send(true);
    let arrivals = probe.await.expect("the probe");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the swarm's report: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    // The longest wait for a part from a little before the fault to the end.
    let window_start = fault_at - Duration::from_secs(1);
    let longest = arrivals
        .windows(2)
        .filter(|w| w[1] >= window_start)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or(lasted + AFTER);
    let count = |k: &str| report[k].as_u64().unwrap_or(0);
    Row {
        fault: fault.to_string(),
        viewers,
        stalls: count("stalls"),
        players_stalled: count("players_stalled"),
        stall_seconds: report["stall_seconds"].as_f64().unwrap_or(0.0),
        recovery_seconds: (longest.as_secs_f64() - PART_TARGET).max(0.0),
        requests: count("requests"),
        failed_requests: count("error_count"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_origin_killed() {
    let _serial = SERIAL.lock().await;
    let mut stack = Stack::start().await;
    let row = watch_through("primary origin killed (kill -9)", &mut stack, async |s| {
        s.primary.kill();
        Duration::ZERO
    })
    .await;
    row.record();
    // The edge moves to the standby at the first refused request.
    assert_eq!(row.stalls, 0, "{row:?}");
    assert!(row.recovery_seconds < 1.0, "{row:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_origin_hung() {
    let _serial = SERIAL.lock().await;
    let mut stack = Stack::start().await;
    let row = watch_through("primary origin hung (SIGSTOP)", &mut stack, async |s| {
        s.primary.pause();
        Duration::ZERO
    })
    .await;
    row.record();
    // Held requests wait out hold_timeout (0.7 s) before they go to the standby.
    assert!(row.recovery_seconds < 2.0, "{row:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_killed_on_the_primary() {
    let _serial = SERIAL.lock().await;
    let mut stack = Stack::start().await;
    let row = watch_through("ffmpeg killed on the primary", &mut stack, async |s| {
        for pid in s.primary.children() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        Duration::ZERO
    })
    .await;
    row.record();
    assert!(row.recovery_seconds < 3.0, "{row:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publisher_gone_for_ten_seconds() {
    let _serial = SERIAL.lock().await;
    let mut stack = Stack::start().await;
    let row = watch_through("publisher gone for 10 s", &mut stack, async |s| {
        drop(s.publisher.take());
        tokio::time::sleep(Duration::from_secs(10)).await;
        s.publish();
        Duration::from_secs(10)
    })
    .await;
    row.record();
    // The slate keeps the playlists advancing: the players do not wait for the publisher.
    assert!(row.recovery_seconds < 2.0, "{row:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_crashed_and_restarted() {
    let _serial = SERIAL.lock().await;
    let mut stack = Stack::start().await;
    let row = watch_through("edge crashed and restarted", &mut stack, async |s| {
        s.edge.crash_and_restart();
        Duration::ZERO
    })
    .await;
    row.record();
    assert!(row.recovery_seconds < 3.0, "{row:?}");
}
