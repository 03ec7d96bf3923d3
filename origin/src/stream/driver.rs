//! Drives a stream from its transcoder's events: cuts samples into parts with one
//! [`Segmenter`] per rendition, numbers segments from the wall clock, publishes into the
//! renditions' logs, and moves the stream through its lifecycle.
//!
//! Each run of the transcoder is an *epoch*. When its first fragment arrives the driver anchors
//! the run's media timeline to the wall clock (`anchor` = the wall time of media time
//! [`MEDIA_TIME_OFFSET_SECS`], see [`Feed`]) and picks its first media sequence number,
//! `floor(anchor / segment_duration)`, never below the last one published plus one. Segment `k`
//! of the run is then MSN `base + k` in every rendition, with a program date-time of
//! `anchor + k × segment_duration`. The log turns any hole left by a restart into gaps and puts
//! a discontinuity and the new init segment before the run's first segment.
//!
//! The grid itself starts at the run's first video frame, to the segment: ffmpeg forces a
//! keyframe every segment counting from the first frame it encodes, and a publisher's kept
//! timestamps can put that frame anywhere (ffmpeg publishing over RTMP: 1/30 s after the first
//! audio). The driver holds a run's audio back until its first video fragment, then places every
//! rendition's grid there, so video segments start on their keyframes with no frame dropped and
//! audio parts stay on the video's. (A run restarted mid-publish gets its own phase: its
//! keyframes follow its own first frame.)
//!
//! A publish whose timestamps the transcoder keeps (RTMP's, see `corral_transcoder::command`)
//! has one media clock across its runs: when ffmpeg fails and is restarted within the publish,
//! the next run resumes the failed run's epoch (its anchor and MSNs) instead of anchoring anew,
//! so its segments get the same MSNs and program date-times as before the failure, and as a
//! standby fed the same publish gives them. The segment the failed run was cutting stays open
//! (players' next requests go to the standby, which has its next parts) and the hole becomes
//! gaps. When the new run's init segment is byte for byte the old one there is no
//! discontinuity; otherwise a new init (named after the run's first MSN) comes behind one.
//!
//! A standby origin may take its epoch from its primary instead ([`crate::redundancy`]): the
//! controller says a publish is starting ([`Follow::Waiting`]) and, later, what the primary
//! has; meanwhile the run's fragments wait, with the time they arrived, so the driver's own
//! anchor is what it would have been.

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
use crate::redundancy::{EpochInfo, Follow, adopt};

/// Fragments a run holds back while it waits for the primary's epoch (at 30 fps, a ladder of
/// four renditions writes about 150 a second): beyond this it anchors itself.
const MAX_WAITING_FRAGMENTS: usize = 4096;

/// The current transcoder run's mapping from media time to wall-clock time and MSNs.
#[derive(Debug, Clone, Copy)]
struct Epoch {
    /// MSN of grid segment 0.
    base_msn: u64,
    /// Wall-clock time of grid boundary 0.
    anchor: SystemTime,
    /// The ID (and URI) of the run's init segment: `base_msn`, or the run's first MSN for a
    /// run that resumed an epoch.
    init_id: u64,
    /// The first MSN the run may publish: a resumed run's media in a segment the log already
    /// closed (as a gap, while the transcoder restarted) is dropped.
    first_msn: u64,
    /// Whether it resumed the previous run's epoch.
    resumed: bool,
}

/// Per-rendition state of the current run.
struct Track {
    segmenter: Segmenter,
    timescale: u32,
    track_id: u32,
    /// Media time 0 of the run's grid, in ticks: the transcoder's offset plus the run's phase.
    grid_origin: u64,
    video: bool,
    /// The init segment, waiting for the epoch to give it an ID.
    pending_init: Option<Arc<InitSegment>>,
    reported: SegmenterStats,
}

/// What feeds a stream, which decides how its runs' timelines are tied to the wall clock and
/// how the stream ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// ffmpeg generates the media (the test pattern), paced by its own clock from the moment it
    /// starts: media time 0 is when the run started, so program date-times and the publish lag
    /// count from when each frame was generated; the end of the source ends the stream.
    Generated,
    /// A broadcaster publishes it: media time 0 is when the publisher's clock started, as the
    /// ingest saw it (RTMP, whose timestamps the transcoder keeps), or else when a run's first
    /// fragment arrived less the media in it; the stream's controller decides when the stream
    /// ends.
    Published,
}

/// Turns supervisor events into publications; see the module documentation.
pub struct StreamDriver {
    stream: Arc<Stream>,
    clock: Arc<dyn Clock>,
    metrics: OriginMetrics,
    policy: BoundaryPolicy,
    feed: Feed,
    run: u64,
    run_started: Option<SystemTime>,
    epoch: Option<Epoch>,
    tracks: Vec<Option<Track>>,
    /// When the media of the current publish started arriving, until its first part is out.
    media_started: Option<std::time::Instant>,
    /// Where the next epoch comes from.
    follow: Follow,
    /// How far the primary's anchor may be from ours.
    tolerance: Duration,
    /// A run's fragments held back while `follow` is waiting, with when they arrived.
    waiting: Vec<(usize, Fragment, SystemTime)>,
    /// Whether the current publish's runs share one media clock (the transcoder keeps its
    /// timestamps), so a restarted run may resume the failed one's epoch.
    shared_clock: bool,
    /// The epoch of a publish's run that failed, for the next run of the same publish.
    resume: Option<Epoch>,
    /// The wall time of the current publish's timestamp 0, from the ingest, when its runs keep
    /// the publisher's timestamps.
    publisher_zero: Option<SystemTime>,
    /// Where the run's grid lies past the transcoder's offset, in seconds, once known: the
    /// phase of its first video frame (ffmpeg forces keyframes every segment from the first
    /// frame it encodes, which a publisher's timestamps put anywhere), so that every
    /// rendition's segments and parts start where the video's keyframes are.
    phase: Option<f64>,
    /// A run's audio fragments held back until its first video fragment gives the phase.
    unphased: Vec<(usize, Fragment, SystemTime)>,
}

/// A command from the stream's controller.
#[derive(Debug, Clone, PartialEq)]
pub enum Control {
    /// The stream entered this state (idle, live, reconnecting).
    State(Lifecycle),
    /// A publisher's media started arriving now (to measure ingest-to-playlist delay).
    MediaStarted(std::time::Instant),
    /// The wall time of the publisher's timestamp 0, as the ingest estimates it so far (a
    /// publish whose timestamps the transcoder keeps): its runs are dated from it.
    PublisherClock(SystemTime),
    /// End the stream: every playlist gets `EXT-X-ENDLIST`.
    End,
    /// Where the coming runs' epochs come from (a standby's publish follows its primary).
    Follow(Follow),
    /// A publish starts; its runs share one media clock when `shared_clock` (the transcoder
    /// keeps the publisher's timestamps).
    Publish {
        /// Whether a restarted run's media time continues the failed run's.
        shared_clock: bool,
    },
}

/// What the driver reads, in order: events of the transcoder runs (or slate) and commands of the
/// controller share one channel so that a command never overtakes the media before it.
#[derive(Debug)]
pub enum DriverInput {
    /// A transcoder (or slate) event.
    Event(SupervisorEvent),
    /// A command of the controller.
    Control(Control),
}

impl From<SupervisorEvent> for DriverInput {
    fn from(event: SupervisorEvent) -> Self {
        DriverInput::Event(event)
    }
}

/// Forwards a supervisor's events into a driver's input until either side closes.
pub async fn forward(
    mut events: mpsc::Receiver<SupervisorEvent>,
    driver: mpsc::Sender<DriverInput>,
) {
    while let Some(event) = events.recv().await {
        if driver.send(DriverInput::Event(event)).await.is_err() {
            return;
        }
    }
}

impl StreamDriver {
    /// A driver for `stream`. `passthrough` marks video that keeps the source's keyframes.
    pub fn new(
        stream: Arc<Stream>,
        clock: Arc<dyn Clock>,
        metrics: OriginMetrics,
        passthrough: bool,
        feed: Feed,
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
            feed,
            run: 0,
            run_started: None,
            epoch: None,
            tracks: (0..n).map(|_| None).collect(),
            media_started: None,
            follow: Follow::Own,
            tolerance: Duration::from_secs(1),
            waiting: Vec::new(),
            shared_clock: false,
            resume: None,
            publisher_zero: None,
            phase: None,
            unphased: Vec::new(),
        }
    }

    /// How far a primary's anchor may be from this origin's own for the same publish.
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// Handles events until the supervisor's channel closes.
    pub async fn run(mut self, mut inputs: mpsc::Receiver<DriverInput>) {
        while let Some(input) = inputs.recv().await {
            match input {
                DriverInput::Event(event) => self.handle(event),
                DriverInput::Control(control) => self.control(control),
            }
        }
    }

    /// Handles one event.
    pub fn handle(&mut self, event: SupervisorEvent) {
        match event {
            SupervisorEvent::Started { run } => {
                self.run = run;
                self.run_started = Some(self.clock.now());
                self.epoch = None;
                self.stream.set_epoch(None);
                self.waiting.clear();
                self.phase = None;
                self.unphased.clear();
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
        let grid_origin = grid_origin(info.timescale, self.phase.unwrap_or(0.0));
        let params = self.stream.params();
        let segmenter = Segmenter::new(SegmenterConfig {
            track_id: info.track_id,
            timescale: info.timescale,
            grid_origin,
            segment_duration: params.segment_duration,
            part_target: params.part_target,
            parts_per_segment: params.parts_per_segment,
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
            video,
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
                id: epoch.init_id,
                bytes: init.bytes.clone(),
            };
            if epoch.resumed {
                self.stream.renditions()[index].publish(|log| log.resume_epoch(entry));
            } else {
                self.stream.renditions()[index].publish(|log| log.start_epoch(entry));
            }
        }
    }

    fn on_fragment(&mut self, index: usize, fragment: Fragment) {
        let arrived = self.clock.now();
        self.on_fragment_at(index, fragment, arrived);
    }

    /// `fragment`, which arrived at `arrived` (earlier, for one held back).
    fn on_fragment_at(&mut self, index: usize, fragment: Fragment, arrived: SystemTime) {
        if self.phase.is_none() && !self.find_phase(index, &fragment) {
            self.unphased.push((index, fragment, arrived));
            return;
        }
        if self.epoch.is_none() && self.follow == Follow::Waiting {
            if self.waiting.len() < MAX_WAITING_FRAGMENTS {
                self.waiting.push((index, fragment, arrived));
                return;
            }
            tracing::warn!(stream = %self.stream.name(), "the primary's epoch took too long; anchoring this run itself");
            self.follow = Follow::Own;
            self.release_waiting();
        }
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
            let ts = f64::from(track.timescale);
            let end = run.decode_time + run.duration();
            let media = (end as f64 - track.grid_origin as f64) / ts;
            let start = (run.decode_time as f64 - track.grid_origin as f64) / ts;
            let first_segment = (start.max(0.0) / self.stream.params().segment_duration) as u64;
            self.open_epoch(media, arrived, first_segment);
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

    /// Anchors a new epoch: media time 0 is the run's start, or `arrived` minus `media_secs`
    /// (the media received by then) unless the publisher's clock dates it earlier, or the
    /// primary's anchor for the same publish. The run's first media falls in grid segment
    /// `first_segment`, whose MSN must come after the last one published.
    fn open_epoch(&mut self, media_secs: f64, arrived: SystemTime, first_segment: u64) {
        let own = match (self.feed, self.run_started) {
            (Feed::Generated, Some(started)) => started,
            _ => self.published_anchor(shift(arrived, -media_secs)),
        };
        let d = self.stream.params().segment_duration;
        let from_clock = (own
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
        let mut anchor = own;
        let mut base_msn = from_clock.max(after_last.saturating_sub(first_segment));
        let mut init_id = None;
        if let Some(prev) = self.resume.take() {
            (anchor, base_msn) = (prev.anchor, prev.base_msn);
            init_id = Some((base_msn + first_segment).max(after_last));
            tracing::info!(stream = %self.stream.name(), run = self.run, "the restarted run resumes the publish's epoch");
        } else if let Follow::Primary(primary) = self.follow {
            match adopt(own, &primary, self.tolerance, first_segment, after_last) {
                Ok((a, b)) => {
                    (anchor, base_msn) = (a, b);
                    tracing::info!(stream = %self.stream.name(), run = self.run, "following the primary's epoch");
                }
                Err(why) => {
                    tracing::warn!(stream = %self.stream.name(), run = self.run, %why, "not following the primary: anchoring this run itself");
                }
            }
        }
        // On a whole millisecond, as playlists print dates: a player placing one rendition's
        // playlist on another's by their dates then never puts a segment after its media (an
        // audio segment's date rounded up past its first sample left hls.js looking, at the
        // live edge, for the segment it had just loaded, for seconds).
        let anchor = whole_millis(anchor);
        tracing::info!(stream = %self.stream.name(), run = self.run, base_msn, "transcoder run anchored");
        self.epoch = Some(Epoch {
            base_msn,
            anchor,
            init_id: init_id.unwrap_or(base_msn),
            first_msn: after_last,
            resumed: init_id.is_some(),
        });
        // A publish's run, not the slate (which plays while the stream is reconnecting).
        let published =
            self.feed == Feed::Published && self.stream.state() != Lifecycle::Reconnecting;
        self.stream.set_epoch(Some(EpochInfo {
            run: self.run,
            anchor_unix_ns: EpochInfo::nanos(anchor),
            base_msn,
            published,
        }));
        for i in 0..self.tracks.len() {
            self.start_epoch_for(i);
        }
    }

    /// Where a published run's grid starts on the wall clock: `by_output` (when its first
    /// output arrived, less the media in it), or earlier by the publisher's own clock when the
    /// run keeps the publisher's timestamps. The transcoder probes its input for about 0.5 s
    /// before its first output, so `by_output` alone dates every frame after it reached the
    /// origin (program date-times ahead of the wall clock, and a player's glass-to-glass by
    /// them too low by as much).
    fn published_anchor(&self, by_output: SystemTime) -> SystemTime {
        let zero = match self.publisher_zero {
            Some(zero) if self.shared_clock && self.stream.state() != Lifecycle::Reconnecting => {
                zero
            }
            _ => return by_output,
        };
        // Grid boundary 0 is the transcoder's offset plus the phase: the publisher's timestamp
        // `phase` (the transcoder adds its offset to the kept timestamps).
        let by_ingest = shift(zero, self.phase.unwrap_or(0.0));
        match by_output.duration_since(by_ingest) {
            Ok(earlier) => {
                tracing::info!(stream = %self.stream.name(), run = self.run, earlier_ms = earlier.as_millis() as u64, "run dated by the publisher's clock");
                by_ingest
            }
            Err(_) => by_output,
        }
    }

    /// Whether the run's phase is known once `fragment` of rendition `index` is seen: the first
    /// video fragment sets it (as does a run without video, or one whose video is too long
    /// coming); until then audio is held back.
    fn find_phase(&mut self, index: usize, fragment: &Fragment) -> bool {
        let Some(track) = self.tracks.get(index).and_then(Option::as_ref) else {
            return true;
        };
        let has_video = self
            .stream
            .renditions()
            .iter()
            .any(|r| matches!(r.spec().kind, RenditionKind::Video { .. }));
        let first = fragment
            .tracks
            .iter()
            .find(|r| r.track_id == track.track_id)
            .map(|r| r.decode_time);
        let phase = match first {
            Some(t) if track.video => {
                let offset = grid_origin(track.timescale, 0.0);
                let media = (t as f64 - offset as f64) / f64::from(track.timescale);
                grid_phase(media, self.stream.params().segment_duration)
            }
            _ if !has_video => 0.0,
            _ if self.unphased.len() >= MAX_WAITING_FRAGMENTS => {
                tracing::warn!(stream = %self.stream.name(), "no video from the transcoder; audio cut on the unshifted grid");
                0.0
            }
            _ => return false,
        };
        self.set_phase(phase);
        true
    }

    /// Puts every rendition's grid `phase` seconds past the transcoder's offset, and handles
    /// the audio held back for it.
    fn set_phase(&mut self, phase: f64) {
        self.phase = Some(phase);
        for track in self.tracks.iter_mut().flatten() {
            let origin = grid_origin(track.timescale, phase);
            track.grid_origin = origin;
            track.segmenter.set_grid_origin(origin);
        }
        if phase > 0.0 {
            tracing::debug!(stream = %self.stream.name(), phase, "the run's grid follows its first video frame");
        }
        for (index, fragment, arrived) in std::mem::take(&mut self.unphased) {
            self.on_fragment_at(index, fragment, arrived);
        }
    }

    /// Handles the fragments held back for the primary's epoch, in order.
    fn release_waiting(&mut self) {
        for (index, fragment, arrived) in std::mem::take(&mut self.waiting) {
            self.on_fragment_at(index, fragment, arrived);
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
                    SegmenterOutput::Part(part)
                        if epoch.base_msn + part.segment < epoch.first_msn => {}
                    SegmenterOutput::SegmentEnd { segment }
                        if epoch.base_msn + segment < epoch.first_msn => {}
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

    /// The first part of a run is out: the stream is live, unless the controller says it is
    /// reconnecting (the slate is playing).
    fn go_live(&mut self) {
        if let Some(at) = self.media_started.take() {
            let delay = at.elapsed();
            self.metrics.ingest_first_part.observe(delay.as_secs_f64());
            tracing::info!(stream = %self.stream.name(), delay_ms = delay.as_millis() as u64, "first part listed after media arrived");
        }
        if matches!(
            self.stream.state(),
            Lifecycle::Starting | Lifecycle::Restarting
        ) {
            self.set_state(Lifecycle::Live);
        }
    }

    /// Handles a command of the stream's controller.
    pub fn control(&mut self, control: Control) {
        match control {
            Control::State(state) => self.set_state(state),
            Control::MediaStarted(at) => self.media_started = Some(at),
            Control::PublisherClock(zero) => self.publisher_zero = Some(zero),
            Control::End => self.end_stream(),
            Control::Follow(follow) => {
                self.follow = follow;
                if follow != Follow::Waiting {
                    self.release_waiting();
                }
            }
            Control::Publish { shared_clock } => {
                self.shared_clock = shared_clock;
                self.resume = None;
                self.publisher_zero = None;
            }
        }
    }

    fn set_state(&self, state: Lifecycle) {
        if self.stream.state() == state {
            return;
        }
        self.stream.update_status(|s| {
            s.state = state;
            s.since = self.clock.now();
        });
        let live = matches!(state, Lifecycle::Live | Lifecycle::Reconnecting);
        self.metrics
            .stream_live
            .with_label_values(&[self.stream.name()])
            .set(i64::from(live));
        tracing::info!(stream = %self.stream.name(), state = ?state, "stream state");
    }

    fn end_stream(&mut self) {
        for r in self.stream.renditions() {
            r.publish(|log| log.end());
        }
        self.set_state(Lifecycle::Ended);
    }

    fn on_ended(&mut self, outcome: RunOutcome) {
        // A publish's run (not the slate's) that failed: the next run of the same publish
        // continues its media clock.
        let publishing = self.feed == Feed::Published
            && !matches!(
                self.stream.state(),
                Lifecycle::Reconnecting | Lifecycle::Idle
            );
        let resumable =
            matches!(outcome, RunOutcome::Failed { .. }) && self.shared_clock && publishing;
        if resumable {
            // The part it was cutting is left out, and its segment left open: what this run
            // would still have published is what a standby fed the same publish publishes,
            // so the players' next requests go there rather than skip to the next segment.
            // The next run's first part closes the segment.
            self.resume = self.epoch;
        } else {
            for index in 0..self.tracks.len() {
                let outputs = match self.tracks[index].as_mut() {
                    Some(t) => t.segmenter.finish(),
                    None => continue,
                };
                self.publish(index, outputs);
            }
        }
        self.epoch = None;
        self.stream.set_epoch(None);
        let now = self.clock.now();
        match outcome {
            RunOutcome::Finished | RunOutcome::Stopped if self.feed == Feed::Generated => {
                self.end_stream()
            }
            // A publish's run ends when the publisher leaves; the controller decides what next.
            RunOutcome::Finished | RunOutcome::Stopped => {}
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

/// `t` less its fraction of a millisecond.
fn whole_millis(t: SystemTime) -> SystemTime {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    UNIX_EPOCH + Duration::from_millis(since.as_millis() as u64)
}

/// `t` moved by `secs` seconds, forwards or backwards.
fn shift(t: SystemTime, secs: f64) -> SystemTime {
    if secs >= 0.0 {
        t + Duration::from_secs_f64(secs)
    } else {
        t - Duration::from_secs_f64(-secs)
    }
}

/// Media time 0 of a run's grid in ticks of `timescale`: the transcoder's offset, `phase`
/// seconds on.
fn grid_origin(timescale: u32, phase: f64) -> u64 {
    MEDIA_TIME_OFFSET_SECS * u64::from(timescale) + (phase * f64::from(timescale)).round() as u64
}

/// Where media time `media` (seconds) lies in its segment of `segment` seconds: the phase of a
/// run whose first frame is there. Within a millisecond of a boundary counts as on it, as the
/// forced keyframes do.
fn grid_phase(media: f64, segment: f64) -> f64 {
    let phase = media.rem_euclid(segment);
    if phase < 0.001 || segment - phase < 0.001 {
        0.0
    } else {
        phase
    }
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;
