//! SRT ingest against real callers: ffmpeg's libsrt caller and srt-live-transmit publish to the
//! listener, whose hub feeds are read back and decoded with ffprobe.
//!
//! Needs `ffmpeg`, `ffprobe` and `srt-live-transmit` on the PATH (scripts/install-deps.sh).
//! Every child process is killed by its PID when its handle drops (`kill_on_drop`). Nothing
//! sleeps to synchronise: each wait is for an event (a feed, an exit) or a polled condition with
//! a deadline. Timings go to stderr (`--nocapture` shows them).

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use corral_origin::ingest::hub::{IngestHub, IngestMetrics, IngestStream, Protocol, PublishFeed};
use corral_origin::ingest::media::MediaChunk;
use corral_origin::ingest::srt::serve;
use prometheus::Registry;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const STUDIO_KEY: &str = "studio-key";
const SECURE_KEY: &str = "secure-key";
const OTHER_KEY: &str = "other-key";
const PASSPHRASE: &str = "correct-horse-battery-staple";

/// A running listener with its hub.
struct Harness {
    hub: Arc<IngestHub>,
    feeds: HashMap<String, mpsc::Receiver<PublishFeed>>,
    port: u16,
    stopping: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Harness {
    async fn start(media_timeout: Duration) -> Harness {
        let metrics = IngestMetrics::register(&Registry::new()).expect("fresh registry");
        let stream = |name: &str, key: &str, passphrase: Option<&str>| IngestStream {
            name: name.into(),
            key: key.into(),
            passphrase: passphrase.map(str::to_string),
            max_bitrate: 20_000_000,
            takeover: false,
        };
        let streams = vec![
            stream("studio", STUDIO_KEY, None),
            stream("secure", SECURE_KEY, Some(PASSPHRASE)),
            stream("other", OTHER_KEY, None),
        ];
        let stopping = CancellationToken::new();
        let (hub, feeds) = IngestHub::new(streams, 8, metrics, stopping.clone());
        // A port the OS just handed out and took back; tests run in parallel, so on the rare
        // clash try another.
        let mut attempts = 0;
        loop {
            let port = free_udp_port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            match serve(
                addr,
                hub.clone(),
                120,
                Duration::from_secs(3),
                media_timeout,
            )
            .await
            {
                Ok(task) => {
                    return Harness {
                        hub,
                        feeds,
                        port,
                        stopping,
                        task,
                    };
                }
                Err(err) if attempts < 5 => {
                    attempts += 1;
                    eprintln!("port {port} busy ({err}); trying another");
                }
                Err(err) => panic!("cannot start the SRT listener: {err}"),
            }
        }
    }

    fn url(&self, query: &str) -> String {
        format!(
            "srt://127.0.0.1:{}?mode=caller&pkt_size=1316&{query}",
            self.port
        )
    }

    fn refused(&self, reason: &str) -> u64 {
        self.hub
            .metrics()
            .refused
            .with_label_values(&["srt", reason])
            .get()
    }

    fn errors(&self, kind: &str) -> u64 {
        self.hub
            .metrics()
            .errors
            .with_label_values(&["srt", kind])
            .get()
    }

    fn connections(&self) -> i64 {
        self.hub
            .metrics()
            .connections
            .with_label_values(&["srt"])
            .get()
    }

    fn feeds(&mut self, stream: &str) -> &mut mpsc::Receiver<PublishFeed> {
        self.feeds.get_mut(stream).expect("a configured stream")
    }

    /// The next publish of `stream`, within `limit`.
    async fn next_feed(&mut self, stream: &str, limit: Duration) -> PublishFeed {
        tokio::time::timeout(limit, self.feeds(stream).recv())
            .await
            .unwrap_or_else(|_| panic!("no publish of {stream} within {limit:?}"))
            .expect("the hub is alive")
    }

    /// Asserts `stream` has had no publish at all.
    fn assert_no_publish(&mut self, stream: &str) {
        assert!(
            self.feeds(stream).try_recv().is_err(),
            "nothing may reach {stream}"
        );
    }

    /// Stops the listener and checks its thread ends promptly.
    async fn stop(self) {
        self.stopping.cancel();
        tokio::time::timeout(Duration::from_secs(2), self.task)
            .await
            .expect("the listener thread stops within 2 s")
            .expect("the listener task");
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free UDP port")
        .port()
}

/// Polls `condition` every 10 ms until it holds; panics after `limit`. Returns the time taken.
async fn wait_until(limit: Duration, what: &str, condition: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

/// ffmpeg encoding a test pattern and tone, paced in real time, to `output` as MPEG-TS.
fn ffmpeg(seconds: u32, output: &str) -> Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30"])
        .args(["-f", "lavfi", "-i", "sine"])
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
        ])
        .args(["-g", "30", "-c:a", "aac", "-f", "mpegts", output])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg runs (scripts/install-deps.sh installs it)")
}

/// srt-live-transmit relaying UDP datagrams on `udp_port` to `srt_url`, without reconnecting.
fn srt_live_transmit(udp_port: u16, srt_url: &str) -> Child {
    Command::new("srt-live-transmit")
        .args(["-a:no", "-q"])
        .arg(format!("udp://127.0.0.1:{udp_port}"))
        .arg(srt_url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("srt-live-transmit runs (scripts/install-deps.sh installs srt-tools)")
}

/// Waits for `child` to exit within `limit`; returns whether it succeeded and its stderr.
async fn exit(child: Child, limit: Duration) -> (bool, String) {
    let output = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the caller did not exit within {limit:?}"))
        .expect("wait for the caller");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Everything `feed` carries until the publish ends; panics after `limit`.
async fn collect(feed: &PublishFeed, limit: Duration) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut ts = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, feed.recv()).await {
            Ok(Some(MediaChunk::Ts(bytes))) => {
                assert_eq!(bytes.len() % 188, 0, "whole TS packets");
                ts.extend_from_slice(&bytes);
            }
            Ok(Some(other)) => panic!("SRT carries TS, not {other:?}"),
            Ok(None) => return ts,
            Err(_) => panic!(
                "the publish did not end within {limit:?} ({} bytes so far)",
                ts.len()
            ),
        }
    }
}

/// What ffprobe makes of a TS recording.
#[derive(Debug)]
struct Probe {
    codecs: Vec<String>,
    duration: f64,
}

fn probe(ts: &[u8]) -> Probe {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "corral-srt-ingest-{}-{}.ts",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, ts).expect("write the recording");
    let output = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name:format=duration",
        ])
        .args(["-of", "json"])
        .arg(&path)
        .output()
        .expect("ffprobe runs");
    let _ = std::fs::remove_file(&path);
    assert!(
        output.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("ffprobe JSON");
    let codecs = json["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .filter_map(|s| s["codec_name"].as_str().map(str::to_string))
        .collect();
    let duration = json["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0.0);
    Probe { codecs, duration }
}

fn assert_h264_and_aac(probe: &Probe) {
    assert!(
        probe.codecs.iter().any(|c| c == "h264") && probe.codecs.iter().any(|c| c == "aac"),
        "{probe:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publishes_h264_and_aac_that_reach_the_stream_whole() {
    let mut h = Harness::start(Duration::from_secs(5)).await;
    let start = Instant::now();
    let caller = ffmpeg(3, &h.url(&format!("streamid={STUDIO_KEY}")));
    let feed = h.next_feed("studio", Duration::from_secs(10)).await;
    let connected = start.elapsed();
    assert_eq!(feed.protocol, Protocol::Srt);
    assert_eq!(feed.stream, "studio");

    // A second publisher on the live stream passes the handshake (the key is good) and is then
    // refused by the hub: one publisher per stream.
    let second = ffmpeg(3, &h.url(&format!("streamid={STUDIO_KEY}")));
    wait_until(
        Duration::from_secs(5),
        "the second publisher is refused",
        || h.refused("already_live") == 1,
    )
    .await;
    drop(second);

    let ts = collect(&feed, Duration::from_secs(15)).await;
    let ended = start.elapsed();
    let (ok, stderr) = exit(caller, Duration::from_secs(5)).await;
    assert!(ok, "ffmpeg failed: {stderr}");
    let probe = probe(&ts);
    eprintln!(
        "ffmpeg → SRT: connected after {connected:?}, publish ended after {ended:?}, {} bytes, {probe:?}",
        ts.len()
    );
    assert_h264_and_aac(&probe);
    assert!(
        (2.5..=3.5).contains(&probe.duration),
        "about 3 s of media: {probe:?}"
    );
    wait_until(
        Duration::from_secs(2),
        "the connection slot is freed",
        || h.connections() == 0,
    )
    .await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_control_stream_id_is_accepted_and_other_modes_refused() {
    let mut h = Harness::start(Duration::from_secs(5)).await;
    // Unencoded on purpose: ffmpeg 5.1 hands `streamid` to libsrt verbatim (a percent-encoded
    // id arrives still encoded), and this id has nothing a decoding ffmpeg would change. Its
    // query parser splits only at '&', which the id does not contain.
    let id = format!("#!::r=studio,m=publish,s={STUDIO_KEY}");
    let caller = ffmpeg(1, &h.url(&format!("streamid={id}")));
    let feed = h.next_feed("studio", Duration::from_secs(10)).await;
    let ts = collect(&feed, Duration::from_secs(10)).await;
    let (ok, stderr) = exit(caller, Duration::from_secs(5)).await;
    assert!(ok, "ffmpeg failed: {stderr}");
    assert_h264_and_aac(&probe(&ts));

    let request = format!("#!::r=studio,m=request,s={STUDIO_KEY}");
    let caller = ffmpeg(1, &h.url(&format!("streamid={request}")));
    let (ok, _) = exit(caller, Duration::from_secs(5)).await;
    assert!(!ok, "m=request is refused");
    assert_eq!(h.refused("bad_stream_id"), 1);
    h.assert_no_publish("studio");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_ended_by_its_stream_disconnects_the_caller() {
    let mut h = Harness::start(Duration::from_secs(5)).await;
    let caller = ffmpeg(10, &h.url(&format!("streamid={STUDIO_KEY}")));
    let feed = h.next_feed("studio", Duration::from_secs(10)).await;
    let first = tokio::time::timeout(Duration::from_secs(5), feed.recv())
        .await
        .expect("media within 5 s");
    assert!(matches!(first, Some(MediaChunk::Ts(_))));
    let start = Instant::now();
    feed.end();
    wait_until(Duration::from_secs(1), "the connection is closed", || {
        h.connections() == 0
    })
    .await;
    let closed = start.elapsed();
    let (ok, _) = exit(caller, Duration::from_secs(5)).await;
    eprintln!(
        "publish ended by the stream: connection closed after {closed:?}, ffmpeg exited after {:?}",
        start.elapsed()
    );
    assert!(
        !ok,
        "ffmpeg sees its connection closed before its 10 s are up"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srt_live_transmit_relays_a_paced_source_and_quiet_publishers_time_out() {
    let media_timeout = Duration::from_secs(1);
    let mut h = Harness::start(media_timeout).await;
    let udp_port = free_udp_port();
    let start = Instant::now();
    let _relay = srt_live_transmit(udp_port, &h.url(&format!("streamid={STUDIO_KEY}")));
    // The relay connects when it starts; ffmpeg then feeds it MPEG-TS over UDP in real time.
    let source = ffmpeg(3, &format!("udp://127.0.0.1:{udp_port}?pkt_size=1316"));
    let feed = h.next_feed("studio", Duration::from_secs(10)).await;
    let connected = start.elapsed();
    // The relay stays connected once ffmpeg is done; with nothing more to relay it goes quiet
    // and the media timeout ends the publish.
    let ts = collect(&feed, Duration::from_secs(15)).await;
    let ended = start.elapsed();
    let (ok, stderr) = exit(source, Duration::from_secs(5)).await;
    assert!(ok, "ffmpeg failed: {stderr}");
    let probe = probe(&ts);
    eprintln!(
        "ffmpeg → UDP → srt-live-transmit → SRT: connected after {connected:?}, ended by the \
         {media_timeout:?} media timeout after {ended:?}, {} bytes, {probe:?}",
        ts.len()
    );
    assert_h264_and_aac(&probe);
    assert!(probe.duration >= 2.0, "most of the 3 s: {probe:?}");
    assert_eq!(h.errors("media_timeout"), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passphrase_stream_takes_only_the_right_passphrase() {
    let mut h = Harness::start(Duration::from_secs(5)).await;
    let start = Instant::now();
    let wrong = ffmpeg(
        1,
        &h.url(&format!(
            "streamid={SECURE_KEY}&passphrase=not-the-passphrase"
        )),
    );
    let missing = ffmpeg(1, &h.url(&format!("streamid={SECURE_KEY}")));
    // And the other way round: a caller that encrypts to a stream without a passphrase.
    let unexpected = ffmpeg(
        1,
        &h.url(&format!("streamid={STUDIO_KEY}&passphrase={PASSPHRASE}")),
    );
    for (caller, what) in [
        (wrong, "wrong"),
        (missing, "missing"),
        (unexpected, "unexpected"),
    ] {
        let (ok, _) = exit(caller, Duration::from_secs(5)).await;
        assert!(!ok, "a {what} passphrase is refused");
    }
    wait_until(
        Duration::from_secs(2),
        "three failed handshakes counted",
        || h.refused("handshake_failed") == 3,
    )
    .await;
    eprintln!(
        "wrong, missing and unexpected passphrases refused and counted after {:?}",
        start.elapsed()
    );
    h.assert_no_publish("secure");
    h.assert_no_publish("studio");
    assert_eq!(h.connections(), 0);

    let right = ffmpeg(
        1,
        &h.url(&format!("streamid={SECURE_KEY}&passphrase={PASSPHRASE}")),
    );
    let feed = h.next_feed("secure", Duration::from_secs(10)).await;
    let ts = collect(&feed, Duration::from_secs(10)).await;
    let (ok, stderr) = exit(right, Duration::from_secs(5)).await;
    assert!(ok, "ffmpeg with the right passphrase failed: {stderr}");
    assert_h264_and_aac(&probe(&ts));
    assert_eq!(h.refused("handshake_failed"), 3);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_refused_within_a_second() {
    let mut h = Harness::start(Duration::from_secs(5)).await;
    // srt-live-transmit connects as soon as it starts, so the time from its spawn to the
    // refusal is the refusal's own latency, not a caller's start-up.
    let start = Instant::now();
    let relay = srt_live_transmit(free_udp_port(), &h.url("streamid=not-a-key"));
    let refused = wait_until(Duration::from_secs(1), "the wrong key is refused", || {
        h.refused("unknown_key") == 1
    })
    .await;
    // It gives up (without reconnecting) but exits with status 0 even when rejected, so only
    // its exit is checked.
    exit(relay, Duration::from_secs(5)).await;
    let relay_exit = start.elapsed();

    // ffmpeg, which opens its output before encoding, is refused as fast once it connects.
    let start = Instant::now();
    let caller = ffmpeg(3, &h.url("streamid=not-a-key"));
    let (ok, stderr) = exit(caller, Duration::from_secs(5)).await;
    assert!(!ok, "ffmpeg reports the refusal");
    eprintln!(
        "wrong key: srt-live-transmit refused {refused:?} after its spawn (exited after \
         {relay_exit:?}); ffmpeg exited {:?} after its spawn: {}",
        start.elapsed(),
        stderr.lines().last().unwrap_or_default()
    );
    assert_eq!(h.refused("unknown_key"), 2);
    for stream in ["studio", "secure", "other"] {
        h.assert_no_publish(stream);
    }
    assert_eq!(h.connections(), 0, "no connection was taken");
    h.stop().await;
}

/// A small deterministic generator for garbage.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Datagrams that look more or less like SRT: random, control packets (handshakes, shutdowns,
/// unknown types) with random bodies, and data packets for random sockets.
fn garbage_datagram(rng: &mut XorShift) -> Vec<u8> {
    let len = (rng.next() % 1500) as usize;
    let mut packet = rng.bytes(len);
    if packet.len() >= 16 {
        match rng.next() % 4 {
            // Control: handshake (0x0000), shutdown (0x0005) or a random type.
            0 => packet[..2].copy_from_slice(&[0x80, 0x00]),
            1 => packet[..2].copy_from_slice(&[0x80, 0x05]),
            2 => packet[0] |= 0x80,
            // Data for socket id 0, where handshakes go.
            _ => {
                packet[0] &= 0x7f;
                packet[12..16].fill(0);
            }
        }
    }
    packet
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_does_not_disturb_a_good_publisher() {
    let mut h = Harness::start(Duration::from_secs(5)).await;
    let start = Instant::now();
    let good = ffmpeg(3, &h.url(&format!("streamid={STUDIO_KEY}")));
    let feed = h.next_feed("studio", Duration::from_secs(10)).await;

    // Random datagrams straight at the SRT port.
    let target = SocketAddr::from(([127, 0, 0, 1], h.port));
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let mut rng = XorShift(0x5eed_1234_abcd_ef01);
    for _ in 0..3000 {
        let _ = udp.send_to(&garbage_datagram(&mut rng), target);
    }

    // A well-behaved SRT caller whose payload is not MPEG-TS: srt-live-transmit relaying random
    // datagrams, on another stream.
    let garbage_port = free_udp_port();
    let _relay = srt_live_transmit(garbage_port, &h.url(&format!("streamid={OTHER_KEY}")));
    let relay_target = SocketAddr::from(([127, 0, 0, 1], garbage_port));
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.errors("not_ts") == 0 {
        assert!(
            Instant::now() < deadline,
            "a non-TS payload closes its publisher within 5 s"
        );
        // Paced, so that the relay (which connects as it starts) has a connection to send on.
        let _ = udp.send_to(&rng.bytes(100), relay_target);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let not_ts = start.elapsed();

    let ts = collect(&feed, Duration::from_secs(15)).await;
    let (ok, stderr) = exit(good, Duration::from_secs(5)).await;
    assert!(ok, "the good publisher failed: {stderr}");
    let probe = probe(&ts);
    eprintln!(
        "3000 garbage datagrams and a non-TS publisher (closed after {not_ts:?}); the good \
         publisher's {} bytes: {probe:?}",
        ts.len()
    );
    assert_h264_and_aac(&probe);
    assert!(
        (2.5..=3.5).contains(&probe.duration),
        "the good publisher lost nothing: {probe:?}"
    );
    assert_eq!(h.errors("not_ts"), 1);
    h.stop().await;
}

#[tokio::test]
async fn a_busy_port_is_reported_at_start_up() {
    let taken = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let addr = taken.local_addr().expect("addr");
    let metrics = IngestMetrics::register(&Registry::new()).expect("fresh registry");
    let (hub, _feeds) = IngestHub::new(Vec::new(), 1, metrics, CancellationToken::new());
    let err = serve(
        addr,
        hub,
        120,
        Duration::from_secs(3),
        Duration::from_secs(5),
    )
    .await
    .expect_err("the port is taken");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
}
