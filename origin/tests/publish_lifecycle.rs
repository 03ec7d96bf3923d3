//! A published stream's lifecycle, driven through the ingest hub with real FLV from ffmpeg:
//! live, publisher lost (the slate keeps the playlists advancing), publisher back (a
//! discontinuity and a new init segment), and the grace period running out (ENDLIST).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use corral_origin::clock::SystemClock;
use corral_origin::ingest::hub::{
    IngestHub, IngestMetrics, IngestStream, Protocol, PublishSession,
};
use corral_origin::ingest::media::{FlvTag, MediaChunk, TagKind};
use corral_origin::ingest::mpegts::{
    PACKET_LEN, PacketKind, TsMonitor, packet_payload, pes_timestamps,
};
use corral_origin::metrics::OriginMetrics;
use corral_origin::packager::params::{LlhlsParams, MediaTiming};
use corral_origin::packager::playlist::Form;
use corral_origin::stream::controller::{ControllerSettings, PublishController};
use corral_origin::stream::driver::{Feed, StreamDriver};
use corral_origin::stream::slate::SlateClip;
use corral_origin::stream::{Lifecycle, Stream};
use corral_transcoder::command::{InputFormat, SlateCard, Source, TranscodeJob};
use corral_transcoder::config::{Bitrate, TranscoderConfig, VideoRung};
use corral_transcoder::metrics::TranscoderMetrics;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Three seconds of 320x180 H.264 + AAC in `format` (`flv`, `mpegts`), from a real ffmpeg.
fn test_media(format: &str) -> Vec<u8> {
    let out = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-t",
            "3",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180:rate=30",
        ])
        .args(["-t", "3", "-f", "lavfi", "-i", "sine=sample_rate=48000"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-g",
            "30",
            "-c:a",
            "aac",
            "-f",
            format,
            "-",
        ])
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// [`test_media`] as FLV tags.
fn flv_tags() -> Vec<FlvTag> {
    let data = test_media("flv");
    let mut tags = Vec::new();
    let mut pos = 13;
    while pos + 11 <= data.len() {
        let kind = match data[pos] {
            8 => TagKind::Audio,
            9 => TagKind::Video,
            _ => TagKind::Script,
        };
        let size = usize::from(data[pos + 1]) << 16
            | usize::from(data[pos + 2]) << 8
            | usize::from(data[pos + 3]);
        let ts = u32::from(data[pos + 4]) << 16
            | u32::from(data[pos + 5]) << 8
            | u32::from(data[pos + 6])
            | u32::from(data[pos + 7]) << 24;
        let body = Bytes::copy_from_slice(&data[pos + 11..pos + 11 + size]);
        tags.push(FlvTag {
            kind,
            timestamp: ts,
            data: body,
        });
        pos += 11 + size + 4;
    }
    tags
}

/// Pushes `tags` at their own pace (their timestamps against the wall clock).
async fn publish(session: &mut PublishSession, tags: &[FlvTag]) {
    let started = Instant::now();
    for tag in tags {
        let due = started + Duration::from_millis(u64::from(tag.timestamp));
        tokio::time::sleep_until(due.into()).await;
        session
            .push(MediaChunk::Flv(tag.clone()))
            .expect("the publish goes on");
    }
}

async fn until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn playlist(stream: &Stream) -> String {
    String::from_utf8(stream.media_playlist(0, Form::Full).body.to_vec()).expect("utf-8")
}

/// A published stream with its hub, driver and controller running.
struct Harness {
    stream: Arc<Stream>,
    hub: Arc<IngestHub>,
    ingest_metrics: IngestMetrics,
    stop: CancellationToken,
    driver_task: tokio::task::JoinHandle<()>,
    controller_task: tokio::task::JoinHandle<()>,
}

impl Harness {
    async fn start(input: InputFormat) -> Harness {
        let template = TranscodeJob {
            stream: "studio".into(),
            source: Source::Pipe(input),
            config: TranscoderConfig {
                ladder: vec![VideoRung {
                    name: "180p".into(),
                    width: 320,
                    height: 180,
                    bitrate: Bitrate(300_000),
                }],
                x264_preset: "ultrafast".into(),
                ..TranscoderConfig::default()
            },
            segment_duration: 1.0,
            unpaced: false,
        };
        let params = LlhlsParams {
            playlist_segments: 12,
            retained_segments: 4,
            ..LlhlsParams::new(1.0, 1.0 / 3.0, MediaTiming::default())
        };
        let stream = Stream::new(
            "studio",
            "publish",
            params,
            30,
            &template.command().renditions,
        );
        let registry = prometheus::Registry::new();
        let origin_metrics = OriginMetrics::register(&registry).expect("metrics");
        let ingest_metrics = IngestMetrics::register(&registry).expect("metrics");
        let transcoder_metrics = TranscoderMetrics::register(&registry).expect("metrics");
        let stop = CancellationToken::new();
        let ingest = IngestStream {
            name: "studio".into(),
            key: "studio-key".into(),
            passphrase: None,
            max_bitrate: 20_000_000,
            takeover: false,
        };
        let (hub, mut feeds) =
            IngestHub::new(vec![ingest], 8, ingest_metrics.clone(), stop.clone());
        let card = SlateCard {
            width: 320,
            height: 180,
            text: "Reconnecting...".into(),
            duration: 1.0,
            font: None,
        };
        let clip = SlateClip::generate(&template, card)
            .await
            .expect("the slate encodes");
        let (_slate_tx, slate_rx) = watch::channel(Some(Arc::new(clip)));
        let (driver_tx, driver_rx) = mpsc::channel(1024);
        let driver = StreamDriver::new(
            stream.clone(),
            Arc::new(SystemClock),
            origin_metrics,
            false,
            Feed::Published,
        );
        let controller = PublishController::new(
            stream.clone(),
            template,
            feeds.remove("studio").expect("receiver"),
            driver_tx,
            slate_rx,
            transcoder_metrics,
            ingest_metrics.clone(),
            ControllerSettings {
                media_timeout: Duration::from_secs(1),
                reconnect_grace: Duration::from_secs(4),
                keyframe_timeout: Duration::from_secs(5),
            },
            stop.clone(),
        );
        let driver_task = tokio::spawn(driver.run(driver_rx));
        let controller_task = tokio::spawn(controller.run());
        Harness {
            stream,
            hub,
            ingest_metrics,
            stop,
            driver_task,
            controller_task,
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.controller_task.await.expect("controller stops");
        drop(self.hub);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.driver_task).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_publisher_gets_a_slate_then_a_discontinuity_when_back_and_an_end_after_grace() {
    let h = Harness::start(InputFormat::Flv).await;
    let (stream, hub, ingest_metrics) = (h.stream.clone(), h.hub.clone(), h.ingest_metrics.clone());
    until("idle", Duration::from_secs(5), || {
        stream.state() == Lifecycle::Idle
    })
    .await;

    let tags = flv_tags();
    let peer = "127.0.0.1:4000".parse().expect("addr");
    let mut session = hub
        .admit(Protocol::Rtmp, "studio-key", peer)
        .expect("admitted");
    publish(&mut session, &tags).await;
    until("live with a segment", Duration::from_secs(10), || {
        stream.state() == Lifecycle::Live && playlist(&stream).contains("#EXTINF")
    })
    .await;
    assert!(stream.status().ingest.is_some_and(|i| i.bytes > 0));

    // The publisher goes: the slate keeps the playlist advancing after a discontinuity.
    drop(session);
    until("reconnecting on the slate", Duration::from_secs(10), || {
        stream.state() == Lifecycle::Reconnecting
            && playlist(&stream)
                .lines()
                .any(|l| l == "#EXT-X-DISCONTINUITY")
    })
    .await;
    let during = playlist(&stream)
        .lines()
        .filter(|l| l.starts_with("#EXT-X-PART:"))
        .count();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = playlist(&stream)
        .lines()
        .filter(|l| l.starts_with("#EXT-X-PART:"))
        .count();
    assert!(
        later > during || playlist(&stream).matches("#EXTINF").count() > 1,
        "the slate keeps adding parts"
    );
    assert!(!playlist(&stream).contains("#EXT-X-ENDLIST"));

    // It comes back: another discontinuity and a new init segment, then live again.
    let maps_before = playlist(&stream).matches("#EXT-X-MAP").count();
    let mut session = hub
        .admit(Protocol::Rtmp, "studio-key", peer)
        .expect("admitted again");
    publish(&mut session, &tags).await;
    until("live again", Duration::from_secs(10), || {
        stream.state() == Lifecycle::Live
    })
    .await;
    let text = playlist(&stream);
    assert!(
        text.matches("#EXT-X-DISCONTINUITY\n").count() >= 2,
        "{text}"
    );
    assert!(text.matches("#EXT-X-MAP").count() > maps_before, "{text}");
    assert_eq!(stream.status().reconnects, 1);
    assert_eq!(
        ingest_metrics
            .reconnects
            .with_label_values(&["studio"])
            .get(),
        1
    );

    // It goes for good: after the grace period the stream ends.
    drop(session);
    until("ended", Duration::from_secs(15), || {
        stream.state() == Lifecycle::Ended
    })
    .await;
    let text = playlist(&stream);
    assert!(text.ends_with("#EXT-X-ENDLIST\n"), "{text}");
    assert!(!text.contains("PRELOAD-HINT"));

    drop(hub);
    h.stop().await;
}

/// Video is missing from the publish between these times (an encoder shedding frames, a
/// congested link dropping them); audio goes on.
const STARVED: std::ops::Range<Duration> = Duration::from_millis(1000)..Duration::from_millis(2500);

/// Waits for `publisher` (a publish with video missing over [`STARVED`]) to go live and
/// checks that the video rendition keeps getting parts at its cadence through the starved
/// stretch, with one starved episode counted, and no slate or discontinuity.
async fn assert_starved_video_keeps_advancing(
    h: Harness,
    publisher: tokio::task::JoinHandle<PublishSession>,
) {
    let stream = h.stream.clone();
    let video_parts = || {
        stream.renditions()[0].with_log(|log| log.segments().map(|s| s.parts.len()).sum::<usize>())
    };
    until("live", Duration::from_secs(10), || {
        stream.state() == Lifecycle::Live
    })
    .await;
    let mut counts = Vec::new();
    let sampled = Instant::now();
    while sampled.elapsed() < Duration::from_millis(2400) {
        counts.push((sampled.elapsed(), video_parts()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let session = publisher.await.expect("published");
    let mut last_change = counts[0];
    let mut longest_pause = Duration::ZERO;
    for &(at, n) in &counts {
        if n != last_change.1 {
            longest_pause = longest_pause.max(at - last_change.0);
            last_change = (at, n);
        }
    }
    // Without freeze frames the video parts stop for the whole starved stretch (1.5 s) plus
    // the transcoder's own delay; with them, the longest pause is the time to notice the
    // starvation (400 ms) plus that delay, on top of the start-up's.
    assert!(
        longest_pause < Duration::from_millis(1300),
        "video parts paused for {longest_pause:?}: {counts:?}, starved {}, dropped {}",
        h.ingest_metrics
            .starved
            .with_label_values(&["studio"])
            .get(),
        h.ingest_metrics
            .dropped
            .with_label_values(&["studio", "after_freeze"])
            .get()
    );
    assert!(
        counts.last().expect("samples").1 > counts[0].1 + 4,
        "{counts:?}"
    );
    assert_eq!(
        h.ingest_metrics
            .starved
            .with_label_values(&["studio"])
            .get(),
        1,
        "one starved episode"
    );
    assert_eq!(
        stream.state(),
        Lifecycle::Live,
        "no slate, no restart: the stream simply went on"
    );
    let text = playlist(&stream);
    assert!(
        !text.lines().any(|l| l == "#EXT-X-DISCONTINUITY"),
        "no discontinuity either: {:?}\n{text}",
        stream.status()
    );
    drop(session);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starved_rtmp_publisher_whose_video_stops_keeps_every_rendition_advancing() {
    let h = Harness::start(InputFormat::Flv).await;
    let starved: Vec<FlvTag> = flv_tags()
        .into_iter()
        .filter(|t| {
            !(t.kind == TagKind::Video
                && !t.is_sequence_header()
                && STARVED.contains(&Duration::from_millis(u64::from(t.timestamp))))
        })
        .collect();
    let peer = "127.0.0.1:4001".parse().expect("addr");
    let mut session = h
        .hub
        .admit(Protocol::Rtmp, "studio-key", peer)
        .expect("admitted");
    let publisher = tokio::spawn(async move {
        publish(&mut session, &starved).await;
        session
    });
    assert_starved_video_keeps_advancing(h, publisher).await;
}

/// [`test_media`] as MPEG-TS in SRT-sized payloads (seven packets), each with the time it is
/// due (the latest PES timestamp in it, from the first), without the video of [`STARVED`].
fn starved_ts_payloads() -> Vec<(Duration, Bytes)> {
    let data = test_media("mpegts");
    let mut monitor = TsMonitor::default();
    let (mut first, mut latest, mut video_ts) = (None, Duration::ZERO, Duration::ZERO);
    let mut kept = Vec::new();
    for p in data.chunks_exact(PACKET_LEN) {
        let kind = monitor.packet(p);
        let start = matches!(
            kind,
            PacketKind::Video { start: true } | PacketKind::Audio { start: true }
        );
        if start && let Some((pts, dts)) = packet_payload(p).and_then(pes_timestamps) {
            let ts = dts.unwrap_or(pts);
            let first = *first.get_or_insert(ts);
            let at = Duration::from_micros(ts.saturating_sub(first) * 100 / 9);
            latest = latest.max(at);
            if matches!(kind, PacketKind::Video { .. }) {
                video_ts = at;
            }
        }
        if matches!(kind, PacketKind::Video { .. }) && STARVED.contains(&video_ts) {
            continue;
        }
        kept.push((latest, p));
    }
    kept.chunks(7)
        .map(|c| {
            (
                c[c.len() - 1].0,
                c.iter().flat_map(|(_, p)| p.iter().copied()).collect(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starved_srt_publisher_whose_video_stops_keeps_every_rendition_advancing() {
    let h = Harness::start(InputFormat::MpegTs).await;
    let payloads = starved_ts_payloads();
    let peer = "127.0.0.1:4002".parse().expect("addr");
    let mut session = h
        .hub
        .admit(Protocol::Srt, "studio-key", peer)
        .expect("admitted");
    let publisher = tokio::spawn(async move {
        let started = Instant::now();
        for (due, payload) in payloads {
            tokio::time::sleep_until((started + due).into()).await;
            session
                .push(MediaChunk::Ts(payload))
                .expect("the publish goes on");
        }
        session
    });
    assert_starved_video_keeps_advancing(h, publisher).await;
}
