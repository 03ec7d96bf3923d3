//! The slate: a still "Reconnecting..." card with silence that keeps a stream's playlists
//! advancing while its broadcaster is away.
//!
//! One segment of the card is encoded once, through the stream's own ladder (same renditions,
//! sizes and codecs), when the stream is set up. While a publisher is lost, [`play`] loops that
//! segment in real time as if it were a transcoder run: it emits the same events a supervisor
//! does, so the driver cuts parts and segments from it, with a discontinuity and its own init
//! segment before and after. No ffmpeg starts when a publisher drops, so the slate follows the
//! publisher's last part within one part.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use corral_transcoder::command::{MEDIA_TIME_OFFSET_SECS, SlateCard, Source, TranscodeJob};
use corral_transcoder::fmp4::{Fragment, InitSegment, MediaKind, Sample, TrackRun};
use corral_transcoder::metrics::TranscoderMetrics;
use corral_transcoder::supervisor::{RunOutcome, Supervisor, SupervisorEvent};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::driver::DriverInput;

/// Duration of an AAC frame in samples.
const AAC_FRAME: u32 = 1024;

/// One rendition's slate: its init segment and one segment's worth of samples.
#[derive(Debug, Clone)]
struct SlateTrack {
    init: Arc<InitSegment>,
    samples: Vec<Sample>,
    timescale: u32,
    track_id: u32,
    /// Duration every sample is given, so the loop's timeline is regular.
    sample_duration: u32,
}

/// The encoded card, one track per rendition of the stream.
#[derive(Debug, Clone)]
pub struct SlateClip {
    tracks: Vec<SlateTrack>,
}

impl SlateClip {
    /// Encodes one segment of `card` with the encoder and ladder of `template` (a stream's
    /// transcoding job); video is cut to exactly one segment so that the loop keeps keyframes on
    /// the segment grid.
    pub async fn generate(template: &TranscodeJob, card: SlateCard) -> anyhow::Result<SlateClip> {
        let mut job = template.clone();
        job.source = Source::Slate(SlateCard {
            duration: template.segment_duration,
            ..card
        });
        job.unpaced = true;
        let fps = job.config.fps;
        let frames_per_segment = (template.segment_duration * f64::from(fps))
            .round()
            .max(1.0) as usize;
        let metrics = TranscoderMetrics::register(&prometheus::Registry::new())?;
        let (tx, mut rx) = mpsc::channel(4096);
        let supervisor = Supervisor::new(job, metrics, tx, CancellationToken::new());
        let outputs = supervisor.command().renditions.len();
        let task = tokio::spawn(supervisor.run());
        let mut inits: Vec<Option<Arc<InitSegment>>> = vec![None; outputs];
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); outputs];
        while let Some(event) = rx.recv().await {
            match event {
                SupervisorEvent::Init {
                    rendition, init, ..
                } => inits[rendition] = Some(init),
                SupervisorEvent::Fragment {
                    rendition,
                    fragment,
                    ..
                } => {
                    samples[rendition].extend(fragment.tracks.into_iter().flat_map(|t| t.samples));
                }
                SupervisorEvent::Ended {
                    outcome: RunOutcome::Finished,
                    ..
                } => break,
                SupervisorEvent::Ended { outcome, .. } => {
                    task.abort();
                    anyhow::bail!("encoding the slate failed: {outcome:?}");
                }
                _ => {}
            }
        }
        task.abort();
        let mut tracks = Vec::with_capacity(outputs);
        for (index, (init, mut samples)) in inits.into_iter().zip(samples).enumerate() {
            let init =
                init.with_context(|| format!("the slate's output {index} has no init segment"))?;
            let info = init
                .tracks
                .first()
                .context("the slate's init segment has no track")?
                .clone();
            let video = matches!(info.media, MediaKind::Video { .. });
            let sample_duration = if video {
                (info.timescale / fps).max(1)
            } else {
                AAC_FRAME
            };
            if video {
                samples.truncate(frames_per_segment);
                anyhow::ensure!(
                    samples.first().is_some_and(Sample::is_sync),
                    "the slate's video does not start with a keyframe"
                );
            }
            anyhow::ensure!(
                !samples.is_empty(),
                "the slate's output {index} has no samples"
            );
            tracks.push(SlateTrack {
                init,
                samples,
                timescale: info.timescale,
                track_id: info.track_id,
                sample_duration,
            });
        }
        Ok(SlateClip { tracks })
    }
}

/// Plays `clip` as run `run` on the driver's input, in real time, until `stop` is cancelled;
/// then reports the run stopped.
pub async fn play(
    clip: Arc<SlateClip>,
    run: u64,
    driver: mpsc::Sender<DriverInput>,
    stop: CancellationToken,
) {
    let send = |event: SupervisorEvent| {
        let driver = driver.clone();
        async move { driver.send(DriverInput::Event(event)).await.is_ok() }
    };
    if !send(SupervisorEvent::Started { run }).await {
        return;
    }
    for (rendition, track) in clip.tracks.iter().enumerate() {
        if !send(SupervisorEvent::Init {
            run,
            rendition,
            init: track.init.clone(),
        })
        .await
        {
            return;
        }
    }
    // Per track: the next sample's index in the loop and its decode time.
    let mut cursors: Vec<(usize, u64)> = clip
        .tracks
        .iter()
        .map(|t| (0, MEDIA_TIME_OFFSET_SECS * u64::from(t.timescale)))
        .collect();
    let started = tokio::time::Instant::now();
    // The track whose next sample is due first, in seconds of media after the offset.
    let next = |cursors: &[(usize, u64)]| {
        clip.tracks
            .iter()
            .zip(cursors)
            .map(|(t, (_, dts))| {
                *dts as f64 / f64::from(t.timescale) - MEDIA_TIME_OFFSET_SECS as f64
            })
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(&b.1))
    };
    while let Some((rendition, due)) = next(&cursors) {
        // A sample is published when it ends, as a live encoder would emit it.
        let track = &clip.tracks[rendition];
        let end = due + f64::from(track.sample_duration) / f64::from(track.timescale);
        tokio::select! {
            _ = tokio::time::sleep_until(started + Duration::from_secs_f64(end.max(0.0))) => {}
            _ = stop.cancelled() => break,
        }
        let (index, dts) = &mut cursors[rendition];
        let source = &track.samples[*index];
        let sample = Sample {
            decode_time: *dts,
            duration: track.sample_duration,
            flags: source.flags,
            composition_offset: source.composition_offset,
            data: source.data.clone(),
        };
        *dts += u64::from(track.sample_duration);
        *index = (*index + 1) % track.samples.len();
        let fragment = Fragment {
            sequence: 0,
            tracks: vec![TrackRun {
                track_id: track.track_id,
                decode_time: sample.decode_time,
                samples: vec![sample],
            }],
        };
        if !send(SupervisorEvent::Fragment {
            run,
            rendition,
            fragment,
        })
        .await
        {
            return;
        }
    }
    let _ = send(SupervisorEvent::Ended {
        run,
        outcome: RunOutcome::Stopped,
    })
    .await;
}

#[cfg(test)]
mod tests {
    use corral_transcoder::command::{InputFormat, Source};
    use corral_transcoder::config::{Bitrate, TranscoderConfig, VideoRung};

    use super::*;

    fn template() -> TranscodeJob {
        TranscodeJob {
            stream: "studio".into(),
            source: Source::Pipe(InputFormat::Flv),
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
        }
    }

    fn card() -> SlateCard {
        SlateCard {
            width: 320,
            height: 180,
            text: "Reconnecting...".into(),
            duration: 1.0,
            font: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_card_loops_in_real_time_with_keyframes_on_the_grid() {
        let clip = Arc::new(
            SlateClip::generate(&template(), card())
                .await
                .expect("ffmpeg encodes the card"),
        );
        assert_eq!(clip.tracks.len(), 2, "the 180p rendition and audio");
        assert_eq!(
            clip.tracks[0].samples.len(),
            30,
            "one 1 s segment at 30 fps"
        );
        let (tx, mut rx) = mpsc::channel(1024);
        let stop = CancellationToken::new();
        let started = std::time::Instant::now();
        let player = tokio::spawn(play(clip.clone(), 7, tx, stop.clone()));
        let mut keyframes = Vec::new();
        let mut video = 0;
        let mut audio_end = 0u64;
        while let Some(DriverInput::Event(event)) = rx.recv().await {
            match event {
                SupervisorEvent::Fragment {
                    rendition: 0,
                    fragment,
                    ..
                } => {
                    let s = &fragment.tracks[0].samples[0];
                    if s.is_sync() {
                        keyframes.push(s.decode_time);
                    }
                    video += 1;
                    if video == 75 {
                        stop.cancel();
                    }
                }
                SupervisorEvent::Fragment { fragment, .. } => {
                    audio_end = fragment.tracks[0].samples[0].end_time()
                }
                SupervisorEvent::Ended { run, outcome } => {
                    assert_eq!((run, outcome), (7, RunOutcome::Stopped));
                    break;
                }
                _ => {}
            }
        }
        player.await.expect("the player returns");
        let elapsed = started.elapsed().as_secs_f64();
        assert!(
            elapsed >= 2.4,
            "75 frames at 30 fps take 2.5 s of real time, took {elapsed}"
        );
        let ts = u64::from(clip.tracks[0].timescale);
        assert_eq!(
            keyframes,
            [10 * ts, 11 * ts, 12 * ts],
            "a keyframe at every 1 s boundary"
        );
        let audio_secs = audio_end as f64 / 48_000.0 - 10.0;
        assert!(
            (audio_secs - 2.5).abs() < 0.1,
            "audio keeps pace with video: {audio_secs}"
        );
    }
}
