//! Cuts one rendition's samples into parts and segments.
//!
//! The segmenter owns the boundaries, not ffmpeg: ffmpeg hands over one sample per fragment and
//! the segmenter groups them.
//!
//! - **Segments** start on a fixed grid, `origin + k × segment_duration`, at the first sample at
//!   or after the boundary (video: at a keyframe; the transcoder forces keyframes exactly there,
//!   so every video rendition cuts at the same instant; audio: at the frame nearest the
//!   boundary). A segment's number is its grid index `k`, so segment `k` covers the same time in
//!   every rendition.
//! - **Parts** close on the stream's part grid: each segment's grid cell is cut into
//!   `parts_per_segment` equal cells, and a part closes before the first sample of the next cell
//!   (video: the first frame at or after the cell boundary, as keyframes are forced; audio: the
//!   frame nearest it). So part `n` of segment `k` covers the same media time in every
//!   rendition, and no rendition has a short leftover part at a segment's end. As a safeguard a
//!   part also closes before a sample that would make it longer than the part target (on the
//!   decode timeline), so no part is ever longer than `PART-TARGET`. A part is published the
//!   moment its last sample arrives: the segmenter predicts that the next sample (same duration
//!   as the last) would start the next cell, overflow the part or cross a segment boundary.
//! - A sample longer than the part target on its own has its duration clamped, and a sample
//!   whose decode time goes backwards is dropped; both are counted.
//!
//! Pure code: no clocks, no I/O.

use bytes::Bytes;
use corral_transcoder::fmp4::{Sample, write_fragment};

/// How segment boundaries are decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundaryPolicy {
    /// Keyframes are known to sit on the grid (transcoded video, and audio where every frame is
    /// a sync sample): a segment closes as soon as its last sample before the boundary arrives.
    Grid,
    /// Keyframes come from the source and may be late (passed-through video): a segment closes
    /// only when the keyframe after the boundary arrives.
    Keyframe,
}

/// Construction parameters of a [`Segmenter`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmenterConfig {
    /// The track ID written into each part's `tfhd`.
    pub track_id: u32,
    /// Ticks per second of the track.
    pub timescale: u32,
    /// Media time (ticks) of grid boundary 0.
    pub grid_origin: u64,
    /// Segment duration in seconds.
    pub segment_duration: f64,
    /// Part target in seconds: the hard limit on a part's duration.
    pub part_target: f64,
    /// Cells of the part grid per segment.
    pub parts_per_segment: u64,
    /// Whether segments must start on a sync sample (video).
    pub video: bool,
    /// How boundaries are decided.
    pub policy: BoundaryPolicy,
}

/// A finished part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutPart {
    /// The segment's grid number.
    pub segment: u64,
    /// Index within the segment, from 0.
    pub index: u32,
    /// Decode time of the first sample, in ticks.
    pub start: u64,
    /// Duration in ticks, from the first sample's decode time to the end of the last.
    pub duration: u64,
    /// Whether the part starts with a sync sample.
    pub independent: bool,
    /// One `moof` + `mdat`.
    pub bytes: Bytes,
}

/// What the segmenter produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmenterOutput {
    /// A part is complete.
    Part(CutPart),
    /// The segment is complete: no more parts will join it.
    SegmentEnd {
        /// The segment's grid number.
        segment: u64,
    },
}

/// Counters of input the segmenter had to repair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SegmenterStats {
    /// Samples longer than the part target, shortened to it.
    pub clamped_samples: u64,
    /// Samples dropped because their decode time went backwards.
    pub backward_samples: u64,
    /// Video samples dropped because no segment could start before a keyframe.
    pub leading_samples: u64,
    /// Segments that did not start at their grid boundary (a late or missing keyframe).
    pub off_grid_segments: u64,
}

#[derive(Debug, Clone, Copy)]
struct OpenSegment {
    number: u64,
    /// The grid cell the segment started in: its part boundaries lie in this cell.
    grid: u64,
    next_boundary: u64,
    /// Set when a boundary passed without a keyframe (only with [`BoundaryPolicy::Keyframe`]).
    awaiting_keyframe: bool,
}

/// Cuts one rendition's samples; see the module documentation.
#[derive(Debug)]
pub struct Segmenter {
    config: SegmenterConfig,
    part_limit: u64,
    segment_ticks: f64,
    /// A video frame this close before a boundary counts as on it (ticks), as the transcoder's
    /// forced keyframes do.
    frame_slack: u64,
    /// Slack when placing a first sample on the grid: a little before a boundary still counts
    /// as the boundary (AAC priming starts audio 21 ms early).
    grid_slack: u64,
    open: Option<OpenSegment>,
    next_number: Option<u64>,
    part: Vec<Sample>,
    part_index: u32,
    /// The part-grid cell of the open part.
    cell: u64,
    last_end: Option<u64>,
    sequence: u32,
    stats: SegmenterStats,
}

impl Segmenter {
    /// A segmenter for one track.
    pub fn new(config: SegmenterConfig) -> Self {
        let ts = f64::from(config.timescale);
        let segment_ticks = config.segment_duration * ts;
        Self {
            part_limit: ((config.part_target * ts).floor() as u64).max(1),
            segment_ticks,
            frame_slack: u64::from(config.timescale / 1000),
            grid_slack: ((config.segment_duration / 4.0).min(0.4) * ts) as u64,
            config,
            open: None,
            next_number: None,
            part: Vec::new(),
            part_index: 0,
            cell: 0,
            last_end: None,
            sequence: 0,
            stats: SegmenterStats::default(),
        }
    }

    /// Moves the grid to `grid_origin` (ticks) before the first sample: a run whose keyframes
    /// are forced from a first frame that does not sit on the offset grid.
    pub fn set_grid_origin(&mut self, grid_origin: u64) {
        debug_assert!(
            self.open.is_none() && self.last_end.is_none(),
            "samples already cut"
        );
        self.config.grid_origin = grid_origin;
    }

    /// What had to be repaired so far.
    pub fn stats(&self) -> SegmenterStats {
        self.stats
    }

    /// The longest part this segmenter will cut, in ticks.
    pub fn part_limit(&self) -> u64 {
        self.part_limit
    }

    fn boundary(&self, k: u64) -> u64 {
        self.config.grid_origin + (k as f64 * self.segment_ticks).round() as u64
    }

    /// Boundary `cell` of the part grid inside segment grid cell `grid` (cell 0 is the
    /// segment's own boundary).
    fn cell_boundary(&self, grid: u64, cell: u64) -> u64 {
        let cells = self.config.parts_per_segment.max(1);
        let step = self.segment_ticks / cells as f64;
        self.boundary(grid) + (cell as f64 * step).round() as u64
    }

    /// Whether a sample starting at `t` and lasting `duration` ticks lies past `boundary`: video
    /// from the first frame at (or a millisecond before) it, audio from the frame nearest it.
    fn past(&self, t: u64, duration: u64, boundary: u64) -> bool {
        if self.config.video {
            t + self.frame_slack >= boundary
        } else {
            t + duration / 2 >= boundary
        }
    }

    /// The part-grid cell, within `open`, of a sample starting at `t`.
    fn cell_of(&self, open: OpenSegment, t: u64, duration: u64) -> u64 {
        let last = self.config.parts_per_segment.max(1) - 1;
        let mut cell = 0;
        while cell < last && self.past(t, duration, self.cell_boundary(open.grid, cell + 1)) {
            cell += 1;
        }
        cell
    }

    /// The grid cell a sample starting at `t` belongs to.
    fn grid_index(&self, t: u64) -> u64 {
        let rel = (t + self.grid_slack).saturating_sub(self.config.grid_origin);
        (rel as f64 / self.segment_ticks).floor() as u64
    }

    fn part_start(&self) -> Option<u64> {
        self.part.first().map(|s| s.decode_time)
    }

    /// Feeds one sample; returns the parts and segment ends it completed.
    pub fn push(&mut self, mut sample: Sample) -> Vec<SegmenterOutput> {
        let mut out = Vec::new();
        if let Some(last_end) = self.last_end
            && sample.decode_time < last_end
        {
            self.stats.backward_samples += 1;
            return out;
        }
        if u64::from(sample.duration) > self.part_limit {
            sample.duration = self.part_limit as u32;
            self.stats.clamped_samples += 1;
        }
        let sync = !self.config.video || sample.is_sync();
        let dts = sample.decode_time;
        let duration = u64::from(sample.duration);

        if let Some(open) = self.open {
            let crossed = dts + duration / 2 >= open.next_boundary;
            if (crossed || open.awaiting_keyframe) && sync {
                self.close_part(&mut out);
                self.end_segment(&mut out);
            } else if crossed
                && !open.awaiting_keyframe
                && let Some(o) = self.open.as_mut()
            {
                o.awaiting_keyframe = true;
            }
        }
        if self.open.is_none() {
            if !sync {
                self.stats.leading_samples += 1;
                return out;
            }
            let grid = self.grid_index(dts);
            let number = self.next_number.unwrap_or(grid);
            if self.next_number.is_some()
                && (number != grid || dts > self.boundary(grid) + duration / 2)
            {
                self.stats.off_grid_segments += 1;
            }
            self.open = Some(OpenSegment {
                number,
                grid,
                next_boundary: self.boundary(grid + 1),
                awaiting_keyframe: false,
            });
            self.part_index = 0;
            self.cell = 0;
        }
        // A part closed because the next sample was predicted to start the next cell leaves
        // `cell` there: a sample that comes a few ticks earlier than predicted (timestamps
        // rounded to milliseconds by a publisher) still starts that cell, rather than a sliver
        // part of its own in the cell before.
        let cell = self
            .open
            .map_or(0, |o| self.cell_of(o, dts, duration))
            .max(if self.part.is_empty() { self.cell } else { 0 });
        if let Some(start) = self.part_start()
            && (cell > self.cell || dts + duration - start > self.part_limit)
        {
            self.close_part(&mut out);
        }
        if self.part.is_empty() {
            self.cell = cell;
        }
        self.last_end = Some(dts + duration);
        self.part.push(sample);

        // Predict: would the next sample, as long as this one, cross the boundary, start the
        // next cell or overflow?
        let end = dts + duration;
        let predicted = self.open.map_or(0, |o| self.cell_of(o, end, duration));
        let next_cell = self.open.is_some() && predicted > self.cell;
        let at_boundary = match self.open {
            Some(o) if !o.awaiting_keyframe && self.config.video => end >= o.next_boundary,
            Some(o) if !o.awaiting_keyframe => end + duration / 2 >= o.next_boundary,
            _ => false,
        };
        let start = self.part_start().unwrap_or(dts);
        if at_boundary {
            self.close_part(&mut out);
            if self.config.policy == BoundaryPolicy::Grid {
                self.end_segment(&mut out);
            }
        } else if next_cell {
            self.close_part(&mut out);
            self.cell = predicted;
        } else if end + duration - start > self.part_limit + self.frame_slack {
            // (A next sample predicted to overflow by no more than a millisecond may be a
            // millisecond shorter, with a publisher's rounded timestamps: it is checked when it
            // comes rather than leaving a one-frame part.)
            self.close_part(&mut out);
        }
        out
    }

    /// Ends the input (the transcoder stopped): publishes what is pending and ends the segment.
    pub fn finish(&mut self) -> Vec<SegmenterOutput> {
        let mut out = Vec::new();
        self.close_part(&mut out);
        self.end_segment(&mut out);
        self.next_number = None;
        self.last_end = None;
        out
    }

    fn close_part(&mut self, out: &mut Vec<SegmenterOutput>) {
        let (Some(open), Some(first), Some(last)) =
            (self.open, self.part.first(), self.part.last())
        else {
            return;
        };
        let start = first.decode_time;
        let duration = last.end_time() - start;
        let independent = first.is_sync();
        self.sequence = self.sequence.wrapping_add(1);
        let bytes = write_fragment(self.sequence, self.config.track_id, &self.part);
        out.push(SegmenterOutput::Part(CutPart {
            segment: open.number,
            index: self.part_index,
            start,
            duration,
            independent,
            bytes,
        }));
        self.part.clear();
        self.part_index += 1;
    }

    fn end_segment(&mut self, out: &mut Vec<SegmenterOutput>) {
        if let Some(open) = self.open.take() {
            out.push(SegmenterOutput::SegmentEnd {
                segment: open.number,
            });
            self.next_number = Some(open.number + 1);
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use corral_transcoder::fmp4::{NON_SYNC_SAMPLE_FLAGS, SYNC_SAMPLE_FLAGS};

    const ORIGIN: u64 = 10 * 15_360;

    fn video(policy: BoundaryPolicy) -> Segmenter {
        Segmenter::new(SegmenterConfig {
            track_id: 1,
            timescale: 15_360,
            grid_origin: ORIGIN,
            segment_duration: 2.0,
            part_target: 0.33334,
            parts_per_segment: 6,
            video: true,
            policy,
        })
    }

    fn audio() -> Segmenter {
        Segmenter::new(SegmenterConfig {
            track_id: 1,
            timescale: 48_000,
            grid_origin: 10 * 48_000,
            segment_duration: 2.0,
            part_target: 0.34134,
            parts_per_segment: 6,
            video: false,
            policy: BoundaryPolicy::Grid,
        })
    }

    /// A one-byte sample at `t` (also used by the cross-rendition tests of the part grid).
    pub(in crate::packager) fn sample(t: u64, duration: u32, sync: bool) -> Sample {
        Sample {
            decode_time: t,
            duration,
            flags: if sync {
                SYNC_SAMPLE_FLAGS
            } else {
                NON_SYNC_SAMPLE_FLAGS
            },
            composition_offset: 0,
            data: Bytes::from_static(b"x"),
        }
    }

    /// 30 fps frames with a keyframe every `gop` frames, starting at `first` frame.
    fn frames(first: u64, count: u64, gop: u64) -> Vec<Sample> {
        (first..first + count)
            .map(|i| sample(ORIGIN + i * 512, 512, i % gop == 0))
            .collect()
    }

    fn run(seg: &mut Segmenter, samples: Vec<Sample>) -> Vec<SegmenterOutput> {
        samples.into_iter().flat_map(|s| seg.push(s)).collect()
    }

    fn parts(out: &[SegmenterOutput]) -> Vec<&CutPart> {
        out.iter()
            .filter_map(|o| match o {
                SegmenterOutput::Part(p) => Some(p),
                SegmenterOutput::SegmentEnd { .. } => None,
            })
            .collect()
    }

    fn ends(out: &[SegmenterOutput]) -> Vec<u64> {
        out.iter()
            .filter_map(|o| match o {
                SegmenterOutput::SegmentEnd { segment } => Some(*segment),
                SegmenterOutput::Part(_) => None,
            })
            .collect()
    }

    #[test]
    fn video_cuts_six_full_parts_per_two_second_segment() {
        let mut seg = video(BoundaryPolicy::Grid);
        let out = run(&mut seg, frames(0, 120, 60));
        let p = parts(&out);
        assert_eq!(p.len(), 12);
        assert!(
            p.iter().all(|p| p.duration == 5120),
            "10 frames = 1/3 s each"
        );
        assert_eq!(
            p.iter().map(|p| (p.segment, p.index)).collect::<Vec<_>>(),
            [
                (0, 0),
                (0, 1),
                (0, 2),
                (0, 3),
                (0, 4),
                (0, 5),
                (1, 0),
                (1, 1),
                (1, 2),
                (1, 3),
                (1, 4),
                (1, 5)
            ]
        );
        assert_eq!(
            ends(&out),
            [0, 1],
            "each segment ends the moment its last frame arrives"
        );
        let independent: Vec<bool> = p.iter().map(|p| p.independent).collect();
        assert_eq!(
            independent,
            [
                true, false, false, false, false, false, true, false, false, false, false, false
            ]
        );
        assert_eq!(seg.stats(), SegmenterStats::default());
    }

    #[test]
    fn a_part_is_published_with_its_last_sample_not_the_next_one() {
        let mut seg = video(BoundaryPolicy::Grid);
        let out = run(&mut seg, frames(0, 10, 60));
        assert_eq!(
            parts(&out).len(),
            1,
            "frame 10 completes part 0 without waiting for frame 11"
        );
        let out = run(&mut seg, frames(10, 50, 60));
        assert_eq!(
            ends(&out),
            [0],
            "frame 60 (the keyframe) is not needed to end segment 0"
        );
    }

    #[test]
    fn no_part_is_ever_longer_than_the_target_whatever_the_frame_rate() {
        for (timescale, frame) in [
            (30_000u32, 1001u32),
            (90_000, 3750),
            (15_360, 256),
            (12_800, 512),
        ] {
            let mut seg = Segmenter::new(SegmenterConfig {
                track_id: 1,
                timescale,
                grid_origin: 0,
                segment_duration: 2.0,
                part_target: 0.33334,
                parts_per_segment: 6,
                video: true,
                policy: BoundaryPolicy::Grid,
            });
            let mut out = Vec::new();
            let per_gop = (2.0 * f64::from(timescale) / f64::from(frame)).ceil() as u64;
            let mut next_key = 0u64;
            for i in 0..(per_gop * 4) {
                let t = i * u64::from(frame);
                let key = t >= next_key;
                if key {
                    next_key += 2 * u64::from(timescale);
                }
                out.extend(seg.push(sample(t, frame, key)));
            }
            for p in parts(&out) {
                let secs = p.duration as f64 / f64::from(timescale);
                assert!(secs <= 0.33334, "{timescale}/{frame}: part of {secs} s");
            }
            let last_end = per_gop * 4 * u64::from(frame);
            let boundaries = last_end / (2 * u64::from(timescale));
            assert_eq!(ends(&out).len() as u64, boundaries, "{timescale}/{frame}");
        }
    }

    #[test]
    fn audio_segments_start_at_the_frame_nearest_each_boundary() {
        let mut seg = audio();
        // AAC priming: the first frame starts 1024 samples before the origin.
        let start = 10 * 48_000 - 1024;
        let samples: Vec<Sample> = (0..300)
            .map(|i| sample(start + i * 1024, 1024, true))
            .collect();
        let out = run(&mut seg, samples);
        let p = parts(&out);
        assert!(p.iter().all(|p| p.duration <= 16_384), "within 0.34134 s");
        assert!(p.iter().all(|p| p.independent));
        assert_eq!(p[0].segment, 0, "priming still belongs to segment 0");
        for k in 1..3u64 {
            let first = p.iter().find(|p| p.segment == k).expect("segment k");
            let boundary = 10 * 48_000 + k * 96_000;
            let off = first.start.abs_diff(boundary);
            assert!(
                off <= 512,
                "segment {k} starts {off} ticks from its boundary"
            );
        }
        // After segment 0 (whose first cell also holds the priming frame, one more than a part
        // may hold, split off on its own), every segment has the grid's six parts, each of
        // 15 or 16 frames: none is a sliver.
        for k in 1..3u64 {
            let durations: Vec<u64> = p
                .iter()
                .filter(|p| p.segment == k)
                .map(|p| p.duration)
                .collect();
            assert_eq!(durations.len(), 6, "segment {k}: {durations:?}");
            assert!(
                durations.iter().all(|d| [15_360, 16_384].contains(d)),
                "segment {k}: {durations:?}"
            );
        }
        for w in p.windows(2).filter(|w| w[0].segment > 0) {
            if w[0].segment == w[1].segment {
                assert!(
                    w[0].duration as f64 >= 0.85 * 16_000.0,
                    "{:?}",
                    w[0].duration
                );
            }
        }
    }

    #[test]
    fn renditions_starting_late_still_number_segments_by_the_grid() {
        let mut seg = video(BoundaryPolicy::Grid);
        let out = run(&mut seg, frames(60, 60, 60));
        assert_eq!(parts(&out)[0].segment, 1);
        assert_eq!(ends(&out), [1]);
    }

    #[test]
    fn video_before_the_first_keyframe_is_dropped() {
        let mut seg = video(BoundaryPolicy::Grid);
        let out = run(&mut seg, frames(55, 15, 60));
        assert_eq!(seg.stats().leading_samples, 5);
        assert_eq!(parts(&out)[0].segment, 1);
        assert!(parts(&out)[0].independent);
    }

    #[test]
    fn a_late_keyframe_in_passed_through_video_extends_the_segment() {
        let mut seg = video(BoundaryPolicy::Keyframe);
        // Keyframes every 75 frames (2.5 s) against a 2 s grid.
        let out = run(&mut seg, frames(0, 160, 75));
        assert_eq!(ends(&out), [0, 1], "cut at frames 75 and 150");
        let p = parts(&out);
        let seg1 = p.iter().find(|p| p.segment == 1).expect("segment 1");
        assert_eq!(seg1.start, ORIGIN + 75 * 512);
        assert!(p.iter().all(|p| p.duration <= 5120));
        assert!(seg.stats().off_grid_segments >= 1);
    }

    #[test]
    fn oversized_and_backward_samples_are_repaired_and_counted() {
        let mut seg = video(BoundaryPolicy::Grid);
        let mut out = run(
            &mut seg,
            vec![
                sample(ORIGIN, 512, true),
                sample(ORIGIN + 512, 20_000, false),
            ],
        );
        out.extend(seg.push(sample(ORIGIN + 100, 512, false)));
        out.extend(seg.finish());
        assert_eq!(seg.stats().clamped_samples, 1);
        assert_eq!(seg.stats().backward_samples, 1);
        assert!(parts(&out).iter().all(|p| p.duration <= 5120));
    }

    #[test]
    fn finish_publishes_the_partial_part_and_ends_the_segment() {
        let mut seg = video(BoundaryPolicy::Grid);
        let mut out = run(&mut seg, frames(0, 14, 60));
        out.extend(seg.finish());
        let p = parts(&out);
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].duration, 4 * 512);
        assert_eq!(ends(&out), [0]);
        assert!(seg.finish().is_empty(), "nothing left");
    }

    #[test]
    fn parts_are_fragments_that_hold_exactly_their_samples() {
        let mut seg = video(BoundaryPolicy::Grid);
        let out = run(&mut seg, frames(0, 10, 60));
        let p = parts(&out)[0];
        assert_eq!(&p.bytes[4..8], b"moof");
        let payload_len = p.bytes.len();
        assert!(payload_len > 10, "10 samples of 1 byte plus boxes");
    }
}
