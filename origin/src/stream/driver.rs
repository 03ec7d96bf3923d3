//! Drives a stream from its transcoder's events: cuts samples into parts with one
//! [`Segmenter`] per rendition, numbers segments from the wall clock, publishes into the
//! renditions' logs, and moves the stream through its lifecycle.
//!
//! Each run of the transcoder is an *epoch*. When its first fragment arrives the driver anchors
//! the run's media timeline to the wall clock (`anchor` = the wall time of media time
//! [`MEDIA_TIME_OFFSET_SECS`], see [`Anchor`]) and picks its first media sequence number,
//! `floor(anchor / segment_duration)`, never below the last one published plus one. Segment `k`
//! of the run is then MSN `base + k` in every rendition, with a program date-time of
//! `anchor + k × segment_duration`. The log turns any hole left by a restart into gaps and puts
//! a discontinuity and the new init segment before the run's first segment.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use corral_transcoder::command::{MEDIA_TIME_OFFSET_SECS, RenditionKind};
use corral_transcoder::fmp4::{Fragment, InitSegment, MediaKind};
use corral_transcoder::supervisor::{RunOutcome, SupervisorEvent};
use tokio::sync::mpsc;

use super::{Lifecycle, Stream};
use crate::clock::Clock;
use crate::metrics::OriginMetrics;
use crate::packager::log::{InitEntry, PartEntry};
use crate::packager::segmenter::{
    BoundaryPolicy, Segmenter, SegmenterConfig, SegmenterOutput, SegmenterStats,
};

/// The current transcoder run's mapping from media time to wall-clock time and MSNs.
#[derive(Debug, Clone, Copy)]
struct Epoch {
    /// MSN of grid segment 0.
    base_msn: u64,
    /// Wall-clock time of grid boundary 0.
    anchor: SystemTime,
}

/// Per-rendition state of the current run.
struct Track {
    segmenter: Segmenter,
    timescale: u32,
    track_id: u32,
    grid_origin: u64,
    /// The init segment, waiting for the epoch to give it an ID.
    pending_init: Option<Arc<InitSegment>>,
    reported: SegmenterStats,
}

/// How a run's media timeline is tied to the wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// The source is paced by ffmpeg's own clock from the moment it starts (the test pattern):
    /// media time 0 is when the run started, so program date-times and the publish lag measure
    /// from when each frame was generated.
    RunStart,
    /// The source arrives from outside: media time 0 is when its first fragment arrived.
    FirstFragment,
}

/// Turns supervisor events into publications; see the module documentation.
pub struct StreamDriver {
    stream: Arc<Stream>,
    clock: Arc<dyn Clock>,
    metrics: OriginMetrics,
    policy: BoundaryPolicy,
    anchor: Anchor,
    run: u64,
    run_started: Option<SystemTime>,
    epoch: Option<Epoch>,
    tracks: Vec<Option<Track>>,
}

impl StreamDriver {
    /// A driver for `stream`. `passthrough` marks video that keeps the source's keyframes.
    pub fn new(
        stream: Arc<Stream>,
        clock: Arc<dyn Clock>,
        metrics: OriginMetrics,
        passthrough: bool,
        anchor: Anchor,
    ) -> Self {
        let n = stream.renditions().len();
        Self {
            stream,
            clock,
            metrics,
            policy: if passthrough {
                BoundaryPolicy::Keyframe
            } else {
                BoundaryPolicy::Grid
            },
            anchor,
            run: 0,
            run_started: None,
            epoch: None,
            tracks: (0..n).map(|_| None).collect(),
        }
    }

    /// Handles events until the supervisor's channel closes.
    pub async fn run(mut self, mut events: mpsc::Receiver<SupervisorEvent>) {
        while let Some(event) = events.recv().await {
            self.handle(event);
        }
    }

    /// Handles one event.
    pub fn handle(&mut self, event: SupervisorEvent) {
        match event {
            SupervisorEvent::Started { run } => {
                self.run = run;
                self.run_started = Some(self.clock.now());
                self.epoch = None;
                self.tracks.iter_mut().for_each(|t| *t = None);
            }
            SupervisorEvent::Init {
                run,
                rendition,
                init,
            } if run == self.run => self.on_init(rendition, init),
            SupervisorEvent::Fragment {
                run,
                rendition,
                fragment,
            } if run == self.run => {
                self.on_fragment(rendition, fragment);
            }
            SupervisorEvent::Progress { progress, .. } => self.stream.update_status(|s| {
                s.transcoder_speed = progress.speed;
                s.transcoder_fps = Some(progress.fps);
            }),
            SupervisorEvent::Ended { run, outcome } if run == self.run => self.on_ended(outcome),
            _ => {}
        }
    }

    fn on_init(&mut self, index: usize, init: Arc<InitSegment>) {
        let Some(rendition) = self.stream.renditions().get(index) else {
            return;
        };
        let Some(info) = init.tracks.first().cloned() else {
            return;
        };
        let video = matches!(info.media, MediaKind::Video { .. });
        let expected_video = matches!(rendition.spec().kind, RenditionKind::Video { .. });
        if video != expected_video {
            tracing::error!(stream = %self.stream.name(), rendition = %rendition.name(), "the transcoder's output has the wrong kind of track; ignored");
            return;
        }
        let grid_origin = MEDIA_TIME_OFFSET_SECS * u64::from(info.timescale);
        let params = self.stream.params();
        let segmenter = Segmenter::new(SegmenterConfig {
            track_id: info.track_id,
            timescale: info.timescale,
            grid_origin,
            segment_duration: params.segment_duration,
            part_target: params.part_target,
            video,
            policy: if video {
                self.policy
            } else {
                BoundaryPolicy::Grid
            },
        });
        self.tracks[index] = Some(Track {
            segmenter,
            timescale: info.timescale,
            track_id: info.track_id,
            grid_origin,
            pending_init: Some(init),
            reported: SegmenterStats::default(),
        });
        self.stream.set_track(index, info);
        if self.epoch.is_some() {
            self.start_epoch_for(index);
        }
    }

    /// Gives rendition `index` its init segment, whose ID is the epoch's base MSN.
    fn start_epoch_for(&mut self, index: usize) {
        let (Some(epoch), Some(track)) = (self.epoch, self.tracks[index].as_mut()) else {
            return;
        };
        if let Some(init) = track.pending_init.take() {
            let entry = InitEntry {
                id: epoch.base_msn,
                bytes: init.bytes.clone(),
            };
            self.stream.renditions()[index].publish(|log| log.start_epoch(entry));
        }
    }

    fn on_fragment(&mut self, index: usize, fragment: Fragment) {
        let Some(track) = self.tracks.get(index).and_then(Option::as_ref) else {
            return;
        };
        let Some(run) = fragment
            .tracks
            .into_iter()
            .find(|r| r.track_id == track.track_id)
        else {
            return;
        };
        if self.epoch.is_none() {
            let end = run.decode_time + run.duration();
            let media = (end as f64 - track.grid_origin as f64) / f64::from(track.timescale);
            self.open_epoch(media);
        }
        for sample in run.samples {
            let outputs = match self.tracks[index].as_mut() {
                Some(t) => t.segmenter.push(sample),
                None => return,
            };
            self.publish(index, outputs);
        }
        self.report_repairs(index);
    }

    /// Anchors a new epoch: media time 0 is the run's start, or now minus `media_secs` (the
    /// media already received).
    fn open_epoch(&mut self, media_secs: f64) {
        let now = self.clock.now();
        let anchor = match (self.anchor, self.run_started) {
            (Anchor::RunStart, Some(started)) => started,
            _ => shift(now, -media_secs),
        };
        let d = self.stream.params().segment_duration;
        let from_clock = (anchor
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
            / d)
            .floor() as u64;
        let after_last = self
            .stream
            .renditions()
            .iter()
            .filter_map(|r| r.with_log(|log| log.position().last_segment))
            .max()
            .map_or(0, |m| m + 1);
        let base_msn = from_clock.max(after_last);
        tracing::info!(stream = %self.stream.name(), run = self.run, base_msn, "transcoder run anchored");
        self.epoch = Some(Epoch { base_msn, anchor });
        for i in 0..self.tracks.len() {
            self.start_epoch_for(i);
        }
    }

    /// Publishes what one sample completed, as one change of the log: a segment's last part and
    /// the segment's end become visible together, so no reader sees a hint for a part that
    /// will never exist.
    fn publish(&mut self, index: usize, outputs: Vec<SegmenterOutput>) {
        if outputs.is_empty() {
            return;
        }
        let (Some(epoch), Some(track)) = (self.epoch, self.tracks[index].as_ref()) else {
            return;
        };
        let rendition = &self.stream.renditions()[index];
        let labels = [self.stream.name(), rendition.name()];
        let ts = f64::from(track.timescale);
        let grid_origin = track.grid_origin as f64;
        let mut published = Vec::new();
        let mut segments = 0;
        let mut refused = Vec::new();
        rendition.publish(|log| {
            for output in outputs {
                match output {
                    SegmenterOutput::Part(part) => {
                        let msn = epoch.base_msn + part.segment;
                        let start = (part.start as f64 - grid_origin) / ts;
                        let duration = part.duration as f64 / ts;
                        // A segment's first part dates the segment; later parts' dates are unused.
                        let pdt = shift(epoch.anchor, start);
                        let entry = PartEntry {
                            duration,
                            independent: part.independent,
                            bytes: part.bytes,
                        };
                        match log.publish_part(msn, pdt, entry) {
                            Ok(()) => published.push(shift(epoch.anchor, start + duration)),
                            Err(e) => refused.push((msn, e)),
                        }
                    }
                    SegmenterOutput::SegmentEnd { segment } => {
                        log.complete_segment(epoch.base_msn + segment);
                        segments += 1;
                    }
                }
            }
        });
        let now = self.clock.now();
        for due in &published {
            let lag = now.duration_since(*due).unwrap_or_default();
            self.metrics
                .publish_lag
                .with_label_values(&[labels[0]])
                .observe(lag.as_secs_f64());
        }
        self.metrics
            .parts_published
            .with_label_values(&labels)
            .inc_by(published.len() as u64);
        self.metrics
            .segments_published
            .with_label_values(&labels)
            .inc_by(segments);
        for (msn, e) in refused {
            self.metrics
                .packager_repairs
                .with_label_values(&[labels[0], labels[1], "refused_part"])
                .inc();
            tracing::warn!(stream = %labels[0], rendition = %labels[1], msn, error = %e, "part not published");
        }
        if !published.is_empty() {
            self.go_live();
        }
    }

    fn report_repairs(&mut self, index: usize) {
        let Some(track) = self.tracks[index].as_mut() else {
            return;
        };
        let now = track.segmenter.stats();
        let before = std::mem::replace(&mut track.reported, now);
        let name = self.stream.renditions()[index].name();
        for (kind, delta) in [
            (
                "clamped_sample",
                now.clamped_samples - before.clamped_samples,
            ),
            (
                "backward_sample",
                now.backward_samples - before.backward_samples,
            ),
            (
                "leading_sample",
                now.leading_samples - before.leading_samples,
            ),
            (
                "off_grid_segment",
                now.off_grid_segments - before.off_grid_segments,
            ),
        ] {
            if delta > 0 {
                self.metrics
                    .packager_repairs
                    .with_label_values(&[self.stream.name(), name, kind])
                    .inc_by(delta);
                tracing::warn!(stream = %self.stream.name(), rendition = %name, kind, count = delta, "packager repaired its input");
            }
        }
    }

    fn go_live(&self) {
        if self.stream.state() != Lifecycle::Live {
            self.stream.update_status(|s| {
                s.state = Lifecycle::Live;
                s.since = self.clock.now();
            });
            self.metrics
                .stream_live
                .with_label_values(&[self.stream.name()])
                .set(1);
            tracing::info!(stream = %self.stream.name(), "stream is live");
        }
    }

    fn on_ended(&mut self, outcome: RunOutcome) {
        for index in 0..self.tracks.len() {
            let outputs = match self.tracks[index].as_mut() {
                Some(t) => t.segmenter.finish(),
                None => continue,
            };
            self.publish(index, outputs);
        }
        self.epoch = None;
        let now = self.clock.now();
        match outcome {
            RunOutcome::Finished | RunOutcome::Stopped => {
                for r in self.stream.renditions() {
                    r.publish(|log| log.end());
                }
                self.stream.update_status(|s| {
                    s.state = Lifecycle::Ended;
                    s.since = now;
                });
                self.metrics
                    .stream_live
                    .with_label_values(&[self.stream.name()])
                    .set(0);
                tracing::info!(stream = %self.stream.name(), "stream ended");
            }
            RunOutcome::Failed { reason, .. } => {
                self.stream.update_status(|s| {
                    s.state = Lifecycle::Restarting;
                    s.since = now;
                    s.restarts += 1;
                    s.last_error = Some(reason);
                });
                self.metrics
                    .stream_live
                    .with_label_values(&[self.stream.name()])
                    .set(0);
            }
        }
    }
}

/// `t` moved by `secs` seconds, forwards or backwards.
fn shift(t: SystemTime, secs: f64) -> SystemTime {
    if secs >= 0.0 {
        t + Duration::from_secs_f64(secs)
    } else {
        t - Duration::from_secs_f64(-secs)
    }
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;
