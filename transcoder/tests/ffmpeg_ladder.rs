//! Runs the real ffmpeg command the transcoder builds and checks what comes out of the pipes.

use std::collections::BTreeMap;
use std::time::Duration;

use corral_transcoder::command::{MEDIA_TIME_OFFSET_SECS, Source, TestPattern, TranscodeJob};
use corral_transcoder::config::{Bitrate, Encoder, TranscoderConfig, VideoRung};
use corral_transcoder::fmp4::MediaKind;
use corral_transcoder::metrics::TranscoderMetrics;
use corral_transcoder::supervisor::{RunOutcome, Supervisor, SupervisorEvent, preflight};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn small_job(duration: Option<f64>, unpaced: bool) -> TranscodeJob {
    let config = TranscoderConfig {
        ladder: vec![
            VideoRung {
                name: "180p".into(),
                width: 320,
                height: 180,
                bitrate: Bitrate(400_000),
            },
            VideoRung {
                name: "90p".into(),
                width: 160,
                height: 90,
                bitrate: Bitrate(150_000),
            },
        ],
        x264_preset: "ultrafast".into(),
        ..TranscoderConfig::default()
    };
    TranscodeJob {
        stream: "test".into(),
        source: Source::TestPattern(TestPattern {
            width: 320,
            height: 180,
            duration,
            tone_hz: 1000,
            font: None,
        }),
        config,
        segment_duration: 1.0,
        unpaced,
    }
}

fn metrics() -> TranscoderMetrics {
    TranscoderMetrics::register(&prometheus::Registry::new()).expect("fresh registry")
}

/// The tests take turns: one kills its ffmpeg child by command line (`pkill -f`), which must
/// not find another test's.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ladder_comes_out_as_aligned_cmaf_renditions() {
    let _serial = SERIAL.lock().await;
    let (tx, mut rx) = mpsc::channel(1024);
    let stop = CancellationToken::new();
    let supervisor = Supervisor::new(small_job(Some(3.5), true), metrics(), tx, stop.clone());
    let renditions = supervisor.command().renditions.clone();
    let task = tokio::spawn(supervisor.run());

    let mut inits = BTreeMap::new();
    let mut keyframes: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    let mut samples: BTreeMap<usize, usize> = BTreeMap::new();
    let mut first_time: BTreeMap<usize, f64> = BTreeMap::new();
    let mut outcome = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        match event {
            SupervisorEvent::Init {
                rendition, init, ..
            } => {
                inits.insert(rendition, init);
            }
            SupervisorEvent::Fragment {
                rendition,
                fragment,
                ..
            } => {
                let init = &inits[&rendition];
                let run = &fragment.tracks[0];
                let scale = f64::from(init.tracks[0].timescale);
                assert_eq!(run.samples.len(), 1, "one fragment per frame");
                first_time
                    .entry(rendition)
                    .or_insert(run.decode_time as f64 / scale);
                *samples.entry(rendition).or_default() += 1;
                if run.is_keyframe() {
                    keyframes
                        .entry(rendition)
                        .or_default()
                        .push(run.decode_time as f64 / scale);
                }
            }
            SupervisorEvent::Ended { outcome: o, .. } => {
                outcome = Some(o);
                break;
            }
            _ => {}
        }
    }
    task.await
        .expect("supervisor ends after its source finished");
    assert_eq!(outcome, Some(RunOutcome::Finished));

    assert_eq!(inits.len(), 3);
    for (i, spec) in renditions.iter().enumerate() {
        let track = &inits[&i].tracks[0];
        match spec.name.as_str() {
            "180p" => assert_eq!(
                track.media,
                MediaKind::Video {
                    width: 320,
                    height: 180
                }
            ),
            "90p" => assert_eq!(
                track.media,
                MediaKind::Video {
                    width: 160,
                    height: 90
                }
            ),
            "audio" => {
                assert_eq!(
                    track.media,
                    MediaKind::Audio {
                        sample_rate: 48_000,
                        channels: 2
                    }
                );
                assert_eq!(track.codec.as_deref(), Some("mp4a.40.2"));
            }
            other => panic!("unexpected rendition {other}"),
        }
    }
    let offset = MEDIA_TIME_OFFSET_SECS as f64;
    // Keyframes exactly on the 1 s grid, the same in both video renditions.
    let expected: Vec<f64> = (0..4).map(|k| offset + f64::from(k)).collect();
    assert_eq!(keyframes[&0], expected, "180p keyframes");
    assert_eq!(keyframes[&1], expected, "90p keyframes");
    assert_eq!(samples[&0], 105, "3.5 s at 30 fps");
    assert_eq!(samples[&1], 105);
    // Audio keeps its priming: it starts 1024 samples before the video.
    let audio_start = first_time[&2];
    assert!(
        (audio_start - (offset - 1024.0 / 48_000.0)).abs() < 1e-6,
        "audio starts at {audio_start}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_child_is_restarted_with_back_off() {
    let _serial = SERIAL.lock().await;
    let (tx, mut rx) = mpsc::channel(1024);
    let stop = CancellationToken::new();
    let m = metrics();
    let task =
        tokio::spawn(Supervisor::new(small_job(None, false), m.clone(), tx, stop.clone()).run());
    let mut killed = false;
    let mut failed = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        match event {
            SupervisorEvent::Fragment { run: 1, .. } if !killed => {
                killed = true;
                let status = std::process::Command::new("pkill")
                    .args(["-KILL", "-f", "testsrc2=size=320x180"])
                    .status()
                    .expect("pkill runs");
                assert!(status.success(), "an ffmpeg child was found and killed");
            }
            SupervisorEvent::Ended { run: 1, outcome } => failed = Some(outcome),
            SupervisorEvent::Started { run: 2 } => break,
            _ => {}
        }
    }
    match failed {
        Some(RunOutcome::Failed { reason, restart_in }) => {
            assert!(reason.contains("ffmpeg exited"), "{reason}");
            assert_eq!(restart_in, Duration::from_millis(500));
        }
        other => panic!("run 1 should have failed, got {other:?}"),
    }
    assert_eq!(m.restarts.with_label_values(&["test"]).get(), 1);
    stop.cancel();
    let mut last = None;
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
        if let SupervisorEvent::Ended { outcome, .. } = event {
            last = Some(outcome);
        }
    }
    assert_eq!(last, Some(RunOutcome::Stopped));
    task.await.expect("supervisor returns after stop");
}

#[tokio::test]
async fn an_unusable_encoder_is_reported_in_one_line_at_start() {
    let _serial = SERIAL.lock().await;
    let config = TranscoderConfig {
        encoder: Encoder::Nvenc,
        ..TranscoderConfig::default()
    };
    let result = preflight(&config).await;
    if std::path::Path::new("/dev/nvidiactl").exists() {
        if let Err(e) = result {
            assert!(e.starts_with("encoder nvenc is not usable"), "{e}");
        }
    } else {
        let e = result.expect_err("no NVIDIA device on this machine");
        assert!(
            e.starts_with("encoder nvenc is not usable on this machine: "),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }
    let missing = TranscoderConfig {
        ffmpeg: "/nonexistent/ffmpeg".into(),
        ..TranscoderConfig::default()
    };
    let e = preflight(&missing).await.expect_err("no such binary");
    assert!(
        e.contains("ffmpeg not found at '/nonexistent/ffmpeg'"),
        "{e}"
    );
    preflight(&TranscoderConfig::default())
        .await
        .expect("x264 works here");
}
