//! RTMP ingest against a real publisher: ffmpeg publishes H.264 and AAC to the listener, whose
//! hub feed is read back; broken and hostile clients are cut off while a good publisher flows.
//!
//! Needs `ffmpeg` (5.1 or later, with libx264) on the PATH. Every ffmpeg is killed by its PID
//! when its handle drops (`kill_on_drop`). Nothing sleeps to synchronise: each wait is for an
//! event (a tag, a close, an exit) with a deadline. Timings go to stderr (`--nocapture`).

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use corral_origin::ingest::hub::{IngestHub, IngestMetrics, IngestStream, PublishFeed};
use corral_origin::ingest::media::{FlvTag, MediaChunk, TagKind};
use corral_origin::ingest::rtmp::amf0::{self, Amf0Value};
use corral_origin::ingest::rtmp::chunk::{ChunkDecoder, ChunkEncoder, Inbound};
use corral_origin::ingest::rtmp::message::{Message, type_id};
use corral_origin::ingest::rtmp::serve;
use prometheus::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

const STUDIO_KEY: &str = "studio-key";
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
const MEDIA_TIMEOUT: Duration = Duration::from_secs(2);
/// How long any one expected event may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(10);

/// A running listener with its hub.
struct Harness {
    hub: Arc<IngestHub>,
    feeds: HashMap<String, mpsc::Receiver<PublishFeed>>,
    port: u16,
    stopping: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Harness {
    async fn start() -> Harness {
        let metrics = IngestMetrics::register(&Registry::new()).expect("fresh registry");
        let streams = vec![IngestStream {
            name: "studio".into(),
            key: STUDIO_KEY.into(),
            passphrase: None,
            max_bitrate: 20_000_000,
            takeover: false,
        }];
        let stopping = CancellationToken::new();
        let (hub, feeds) = IngestHub::new(streams, 16, metrics, stopping.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("local address").port();
        let task = tokio::spawn(serve(
            listener,
            hub.clone(),
            8 << 20,
            HANDSHAKE_TIMEOUT,
            MEDIA_TIMEOUT,
        ));
        Harness {
            hub,
            feeds,
            port,
            stopping,
            task,
        }
    }

    fn url(&self, key: &str) -> String {
        format!("rtmp://127.0.0.1:{}/live/{key}", self.port)
    }

    fn errors(&self, kind: &str) -> u64 {
        self.hub
            .metrics()
            .errors
            .with_label_values(&["rtmp", kind])
            .get()
    }

    fn refused(&self, reason: &str) -> u64 {
        self.hub
            .metrics()
            .refused
            .with_label_values(&["rtmp", reason])
            .get()
    }

    async fn feed(&mut self) -> PublishFeed {
        let feeds = self.feeds.get_mut("studio").expect("the studio stream");
        timeout(PATIENCE, feeds.recv())
            .await
            .expect("a publish within the deadline")
            .expect("the hub is alive")
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect")
    }

    async fn stop(self) {
        self.stopping.cancel();
        timeout(PATIENCE, self.task)
            .await
            .expect("serve returns once stopping")
            .expect("serve does not panic");
    }
}

/// ffmpeg publishing `seconds` of 320x180 30 fps H.264 and AAC in real time to `url`.
fn ffmpeg_publish(url: &str, seconds: u32) -> Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30"])
        .args(["-f", "lavfi", "-i", "sine", "-t", &seconds.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
        ])
        .args(["-g", "30", "-c:a", "aac", "-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg on the PATH")
}

/// Waits for ffmpeg to exit; returns whether it succeeded and what it printed.
async fn finish(child: Child, within: Duration) -> (bool, String) {
    let output = timeout(within, child.wait_with_output())
        .await
        .expect("ffmpeg exits within the deadline")
        .expect("ffmpeg's exit status");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The next tag of `feed`, or `None` once the publish is over.
async fn next_tag(feed: &PublishFeed) -> Option<FlvTag> {
    match timeout(PATIENCE, feed.recv())
        .await
        .expect("media keeps flowing")
    {
        Some(MediaChunk::Flv(tag)) => Some(tag),
        Some(MediaChunk::Ts(_)) => panic!("RTMP hands over FLV tags"),
        None => None,
    }
}

fn is_video_frame(tag: &FlvTag) -> bool {
    tag.kind == TagKind::Video && !tag.is_sequence_header() && tag.data.get(1) == Some(&1)
}

/// Checks what ffmpeg published for `seconds` seconds at 30 fps with a keyframe every 30.
fn check_publish(tags: &[FlvTag], seconds: u32) {
    let script: Vec<_> = tags.iter().filter(|t| t.kind == TagKind::Script).collect();
    assert!(!script.is_empty(), "onMetaData arrives");
    assert!(
        script[0].data.starts_with(b"\x02\x00\x0aonMetaData\x08"),
        "the script tag is what an FLV file carries: {:?}",
        &script[0].data[..script[0].data.len().min(16)]
    );
    let video: Vec<_> = tags.iter().filter(|t| t.kind == TagKind::Video).collect();
    let audio: Vec<_> = tags.iter().filter(|t| t.kind == TagKind::Audio).collect();
    assert!(
        video
            .first()
            .is_some_and(|t| t.is_sequence_header() && t.video_codec() == Some(7)),
        "the AVC sequence header comes first"
    );
    assert!(
        audio.first().is_some_and(|t| t.is_sequence_header()),
        "the AAC sequence header comes first"
    );
    let frames: Vec<_> = video.iter().filter(|t| is_video_frame(t)).collect();
    let expected = 30 * seconds as usize;
    assert!(
        (expected - 5..=expected + 5).contains(&frames.len()),
        "about {expected} video frames, got {}",
        frames.len()
    );
    let keyframes = frames.iter().filter(|t| t.is_keyframe()).count();
    assert!(
        (seconds as usize..=seconds as usize + 1).contains(&keyframes),
        "a keyframe every 30 frames, got {keyframes}"
    );
    assert!(
        audio.len() > 30 * seconds as usize,
        "audio flows: {} tags",
        audio.len()
    );
    for track in [&video, &audio] {
        assert!(
            track.windows(2).all(|w| w[0].timestamp <= w[1].timestamp),
            "timestamps never go back"
        );
    }
    let last = frames.last().map_or(0, |t| t.timestamp);
    let span = 1000 * (seconds - 1);
    assert!(last >= span, "video spans the publish: last at {last} ms");
}

/// The client side of the simple handshake; returns after C2 is sent.
async fn handshake(socket: &mut TcpStream) {
    let mut c0c1 = vec![3u8];
    c0c1.extend((0..1536u32).map(|i| (i * 13 % 256) as u8));
    socket.write_all(&c0c1).await.expect("send C0 C1");
    let mut s0s1s2 = vec![0; 1 + 2 * 1536];
    timeout(PATIENCE, socket.read_exact(&mut s0s1s2))
        .await
        .expect("S0 S1 S2 in time")
        .expect("read S0 S1 S2");
    assert_eq!(s0s1s2[0], 3);
    assert_eq!(&s0s1s2[1 + 1536..], &c0c1[1..], "S2 echoes C1");
    socket
        .write_all(&s0s1s2[1..1 + 1536])
        .await
        .expect("send C2");
}

/// Reads until the server closes the connection; returns how long that took.
async fn wait_for_close(socket: &mut TcpStream) -> Duration {
    let start = Instant::now();
    let mut buf = [0; 4096];
    loop {
        match timeout(PATIENCE, socket.read(&mut buf))
            .await
            .expect("the server closes the connection")
        {
            Ok(0) | Err(_) => return start.elapsed(),
            Ok(_) => {}
        }
    }
}

/// A hand-driven publisher, for what ffmpeg cannot send.
struct RawPublisher {
    socket: TcpStream,
    encoder: ChunkEncoder,
    decoder: ChunkDecoder,
}

impl RawPublisher {
    async fn connect(harness: &Harness) -> RawPublisher {
        let mut socket = harness.connect().await;
        handshake(&mut socket).await;
        RawPublisher {
            socket,
            encoder: ChunkEncoder::new(),
            decoder: ChunkDecoder::new(1 << 20),
        }
    }

    async fn send(&mut self, message: &Message) {
        let mut out = BytesMut::new();
        self.encoder.encode(message, &mut out);
        self.socket.write_all(&out).await.expect("send");
    }

    async fn command(&mut self, stream_id: u32, values: &[Amf0Value]) {
        self.send(&Message::command(3, stream_id, values)).await;
    }

    /// Reads the server's messages until a command answer carries status `code`.
    async fn expect_status(&mut self, code: &str) {
        let mut buf = [0; 4096];
        loop {
            while let Some(inbound) = self.decoder.poll().expect("the server's chunks decode") {
                let Inbound::Message(m) = inbound else {
                    continue;
                };
                if m.type_id != type_id::COMMAND_AMF0 {
                    continue;
                }
                let values = amf0::decode_all(&m.payload).expect("the server's AMF0 decodes");
                let got = values
                    .last()
                    .and_then(|v| v.get("code"))
                    .and_then(Amf0Value::as_str);
                if got == Some(code) {
                    return;
                }
            }
            let n = timeout(PATIENCE, self.socket.read(&mut buf))
                .await
                .expect("the server answers")
                .expect("read");
            assert!(n > 0, "the server closed before sending {code}");
            self.decoder.push(&buf[..n]);
        }
    }

    /// connect, createStream and publish with `key`, accepted.
    async fn publish(harness: &Harness, key: &str) -> RawPublisher {
        let mut p = RawPublisher::connect(harness).await;
        let app = Amf0Value::object([
            ("app", "live".into()),
            ("tcUrl", harness.url("").trim_end_matches('/').into()),
        ]);
        p.command(0, &["connect".into(), 1.0.into(), app]).await;
        p.expect_status("NetConnection.Connect.Success").await;
        p.command(0, &["createStream".into(), 2.0.into(), Amf0Value::Null])
            .await;
        p.command(
            1,
            &[
                "publish".into(),
                3.0.into(),
                Amf0Value::Null,
                key.into(),
                "live".into(),
            ],
        )
        .await;
        p.expect_status("NetStream.Publish.Start").await;
        p
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ffmpeg_publishes_h264_and_aac_into_the_feed() {
    let mut harness = Harness::start().await;
    let started = Instant::now();
    let ffmpeg = ffmpeg_publish(&harness.url(STUDIO_KEY), 3);
    let feed = harness.feed().await;
    eprintln!("publish admitted after {:?}", started.elapsed());
    let mut tags = Vec::new();
    while let Some(tag) = next_tag(&feed).await {
        tags.push(tag);
    }
    eprintln!("{} tags in {:?}", tags.len(), started.elapsed());
    let (ok, stderr) = finish(ffmpeg, PATIENCE).await;
    assert!(ok, "ffmpeg publishes without error: {stderr}");
    check_publish(&tags, 3);
    for kind in [
        "handshake",
        "chunk",
        "amf",
        "timeout",
        "too_large",
        "io",
        "protocol",
    ] {
        assert_eq!(harness.errors(kind), 0, "no {kind} errors");
    }
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_key_is_refused_within_a_second() {
    let mut harness = Harness::start().await;
    let started = Instant::now();
    let ffmpeg = ffmpeg_publish(&harness.url("not-a-key?token=1"), 3);
    let (ok, stderr) = finish(ffmpeg, PATIENCE).await;
    let elapsed = started.elapsed();
    eprintln!("refused ffmpeg exited after {elapsed:?}: {}", stderr.trim());
    assert!(!ok, "ffmpeg fails on a refused key");
    assert!(
        elapsed < Duration::from_secs(1),
        "refused within a second, took {elapsed:?}"
    );
    assert_eq!(harness.refused("unknown_key"), 1);
    let feeds = harness.feeds.get_mut("studio").expect("the studio stream");
    assert!(feeds.try_recv().is_err(), "nothing reaches the stream");
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broken_clients_are_cut_off_while_a_publisher_keeps_flowing() {
    let mut harness = Harness::start().await;
    let ffmpeg = ffmpeg_publish(&harness.url(STUDIO_KEY), 5);
    let feed = harness.feed().await;
    let mut tags = Vec::new();
    while tags.iter().filter(|t| is_video_frame(t)).count() < 10 {
        tags.push(next_tag(&feed).await.expect("the publish runs"));
    }

    // Not RTMP at all: refused on the first byte.
    let mut garbage = harness.connect().await;
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut noise = noise;
    noise[0] = 0x47;
    garbage.write_all(&noise).await.expect("send noise");
    let took = wait_for_close(&mut garbage).await;
    eprintln!("random bytes closed after {took:?}");
    assert_eq!(harness.errors("handshake"), 1);

    // Half a handshake, then silence: cut off at the handshake timeout.
    let mut half = harness.connect().await;
    let mut c0c1 = vec![3u8];
    c0c1.extend([0u8; 768]);
    half.write_all(&c0c1).await.expect("send half of C1");
    let took = wait_for_close(&mut half).await;
    eprintln!("half handshake closed after {took:?}");
    assert!(took >= HANDSHAKE_TIMEOUT - Duration::from_millis(100));
    assert_eq!(harness.errors("timeout"), 1);

    // A good handshake, then a chunk size with the top bit set.
    let mut bad_size = harness.connect().await;
    handshake(&mut bad_size).await;
    let mut out = BytesMut::new();
    ChunkEncoder::new().encode(&Message::set_chunk_size(0x8000_0000), &mut out);
    bad_size.write_all(&out).await.expect("send Set Chunk Size");
    wait_for_close(&mut bad_size).await;
    assert_eq!(harness.errors("chunk"), 1);

    // The publisher never noticed: frames reached the hub all the while (the half handshake
    // alone took two seconds), and more came after.
    let during = feed.stats.video_frames.load(Ordering::Relaxed);
    eprintln!("{during} video frames had reached the hub when the broken clients were done");
    assert!(during >= 10 + 45, "media flowed meanwhile: {during} frames");
    let frames_before = tags.iter().filter(|t| is_video_frame(t)).count();
    while let Some(tag) = next_tag(&feed).await {
        tags.push(tag);
    }
    let frames_after = tags.iter().filter(|t| is_video_frame(t)).count() - frames_before;
    assert!(
        frames_after >= 30,
        "media kept flowing: {frames_after} frames"
    );
    let (ok, stderr) = finish(ffmpeg, PATIENCE).await;
    assert!(ok, "ffmpeg publishes without error: {stderr}");
    check_publish(&tags, 5);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enhanced_rtmp_is_refused_and_counted() {
    let mut harness = Harness::start().await;
    let mut p = RawPublisher::publish(&harness, STUDIO_KEY).await;
    let feed = harness.feed().await;
    // IsExHeader | keyframe, packet type 0 (sequence start), FourCC "hvc1".
    let hevc = Message {
        csid: 6,
        type_id: type_id::VIDEO,
        stream_id: 1,
        timestamp: 0,
        payload: bytes::Bytes::from_static(&[0x90, b'h', b'v', b'c', b'1', 1, 2, 3]),
    };
    p.send(&hevc).await;
    wait_for_close(&mut p.socket).await;
    assert_eq!(harness.errors("enhanced_rtmp"), 1);
    assert_eq!(next_tag(&feed).await, None, "no media reached the stream");
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_publisher_times_out_and_other_apps_are_refused() {
    let mut harness = Harness::start().await;
    let mut p = RawPublisher::publish(&harness, STUDIO_KEY).await;
    let feed = harness.feed().await;
    let took = wait_for_close(&mut p.socket).await;
    eprintln!("silent publisher closed after {took:?}");
    assert!(took >= MEDIA_TIMEOUT - Duration::from_millis(100));
    assert_eq!(harness.errors("timeout"), 1);
    assert_eq!(next_tag(&feed).await, None);

    let mut vod = RawPublisher::connect(&harness).await;
    let app = Amf0Value::object([("app", "vod".into())]);
    vod.command(0, &["connect".into(), 1.0.into(), app]).await;
    vod.expect_status("NetConnection.Connect.Rejected").await;
    wait_for_close(&mut vod.socket).await;
    assert_eq!(harness.refused("unknown_app"), 1);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_closes_open_connections() {
    let mut harness = Harness::start().await;
    let mut p = RawPublisher::publish(&harness, STUDIO_KEY).await;
    let feed = harness.feed().await;
    let mut idle = harness.connect().await;
    harness.stopping.cancel();
    wait_for_close(&mut p.socket).await;
    wait_for_close(&mut idle).await;
    assert_eq!(next_tag(&feed).await, None, "the publish ended");
    harness.stop().await;
}
