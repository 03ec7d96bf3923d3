//! The LL-HLS timing of a stream: segment and part durations and every value derived from them.
//!
//! Parts are cut on one **part grid** shared by every rendition: each segment is divided into
//! [`LlhlsParams::parts_per_segment`] cells of equal duration, and every rendition closes a part
//! at the sample nearest each cell boundary. So (MSN, part index) names the same interval of
//! media time in the video and the audio renditions, to within one sample, and a player that
//! switches or picks the next part by time never finds a short leftover part to skip.
//!
//! A cell is a whole number of video frames where the segment allows it, but an AAC frame (1024
//! samples) never divides it evenly: some audio parts are one frame longer than the cell.
//! `PART-TARGET` is therefore the longest part that any rendition can cut on the grid, not the
//! cell itself (the spec's MUST: no part is longer than `PART-TARGET`).

use std::time::Duration;

/// The sample durations the part grid must fit: what the transcoder writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaTiming {
    /// Video frames per second of every video rendition.
    pub fps: u32,
    /// Audio sample rate in Hz (an AAC frame is 1024 samples).
    pub audio_sample_rate: u32,
}

impl MediaTiming {
    /// Samples per AAC-LC frame.
    pub const AAC_FRAME: u32 = 1024;

    fn video_frame(&self) -> f64 {
        1.0 / f64::from(self.fps.max(1))
    }

    fn audio_frame(&self) -> f64 {
        f64::from(Self::AAC_FRAME) / f64::from(self.audio_sample_rate.max(1))
    }
}

impl Default for MediaTiming {
    fn default() -> Self {
        Self {
            fps: 30,
            audio_sample_rate: 48_000,
        }
    }
}

/// Timing shared by every rendition of a stream. All durations are in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct LlhlsParams {
    /// Nominal segment duration (the GOP); segment boundaries lie on a grid of this step.
    pub segment_duration: f64,
    /// Cells of the part grid in each segment: parts per full segment in every rendition.
    pub parts_per_segment: u64,
    /// `PART-TARGET`: no part in any rendition is ever longer.
    pub part_target: f64,
    /// Complete segments listed in a media playlist.
    pub playlist_segments: usize,
    /// Segments kept downloadable after they leave the playlist.
    pub retained_segments: usize,
}

/// The part grid for `wanted` seconds per part: how many equal cells a segment is cut into.
///
/// The cell is a whole number of frames when some divisor of the segment's frame count lies
/// within a quarter of `wanted` (the nearest such one, more parts on a tie); otherwise (a frame
/// count with few divisors) it is the nearest whole division of the segment in time.
pub fn part_cells(segment_duration: f64, wanted: f64, fps: u32) -> u64 {
    let by_time = (segment_duration / wanted).round().max(1.0) as u64;
    let frames = (segment_duration * f64::from(fps)).round() as u64;
    if frames == 0 || (segment_duration * f64::from(fps) - frames as f64).abs() > 1e-6 {
        return by_time;
    }
    let wanted_frames = wanted * f64::from(fps);
    (1..=frames)
        .filter(|cells| frames.is_multiple_of(*cells))
        .map(|cells| (cells, (frames / cells) as f64))
        .filter(|(_, per_cell)| (per_cell - wanted_frames).abs() <= 0.25 * wanted_frames)
        .min_by(|a, b| {
            let da = (a.1 - wanted_frames).abs();
            let db = (b.1 - wanted_frames).abs();
            da.total_cmp(&db).then(b.0.cmp(&a.0))
        })
        .map_or(by_time, |(cells, _)| cells)
}

/// What a part may run over its samples' nominal durations: a published stream keeps the
/// publisher's timestamps, which FLV rounds to the millisecond, so sixteen AAC frames can span
/// up to a millisecond more than sixteen times 1024 samples.
pub const TIMESTAMP_SLACK: f64 = 0.001;

/// The longest part cut from samples of `sample` seconds on cells of `cell` seconds: the cell
/// itself when whole samples fill it exactly, else one sample more than fits.
pub fn longest_part(cell: f64, sample: f64) -> f64 {
    let per_cell = cell / sample;
    if (per_cell - per_cell.round()).abs() < 1e-6 {
        cell
    } else {
        per_cell.ceil() * sample
    }
}

impl LlhlsParams {
    /// The timing for segments of `segment_duration` seconds and parts of about `part_target`
    /// seconds, for media with `media`'s sample durations.
    pub fn new(segment_duration: f64, part_target: f64, media: MediaTiming) -> Self {
        let cells = part_cells(segment_duration, part_target, media.fps);
        let cell = segment_duration / cells as f64;
        let longest = longest_part(cell, media.video_frame())
            .max(longest_part(cell, media.audio_frame()))
            + TIMESTAMP_SLACK;
        Self {
            segment_duration,
            parts_per_segment: cells,
            // Rounded up to 10 µs, the precision playlists print, so the printed value still
            // bounds every part.
            part_target: (longest * 100_000.0 - 1e-6).ceil() / 100_000.0,
            playlist_segments: 12,
            retained_segments: 12,
        }
    }

    /// The duration of one cell of the part grid: what a part lasts nominally.
    pub fn part_duration(&self) -> f64 {
        self.segment_duration / self.parts_per_segment.max(1) as f64
    }

    /// `EXT-X-TARGETDURATION`: the segment duration rounded up to whole seconds.
    pub fn target_duration(&self) -> u64 {
        (self.segment_duration - 1e-9).ceil().max(1.0) as u64
    }

    /// `PART-HOLD-BACK`: three part targets (the spec's SHOULD; its MUST is two).
    pub fn part_hold_back(&self) -> f64 {
        3.0 * self.part_target
    }

    /// `HOLD-BACK`: three target durations.
    pub fn hold_back(&self) -> f64 {
        3.0 * self.target_duration() as f64
    }

    /// `CAN-SKIP-UNTIL`: six target durations, the spec's minimum.
    pub fn can_skip_until(&self) -> f64 {
        6.0 * self.target_duration() as f64
    }

    /// How long a blocking request may wait before it is answered 503: three target durations.
    pub fn blocking_timeout(&self) -> Duration {
        Duration::from_secs(3 * self.target_duration())
    }

    /// How many parts ahead of the last one a blocking request may ask for before it is refused
    /// (the spec's Advance Part Limit).
    pub fn advance_part_limit(&self) -> u64 {
        if self.part_target < 1.0 {
            (3.0 / self.part_target).ceil() as u64
        } else {
            3
        }
    }

    /// Complete segments whose parts are still listed: those within three target durations of
    /// the end of the playlist.
    pub fn part_listed_segments(&self) -> usize {
        ((3 * self.target_duration()) as f64 / self.segment_duration).ceil() as usize
    }

    /// The `max-age` of a blocking playlist response: six target durations.
    pub fn blocking_playlist_max_age(&self) -> u64 {
        6 * self.target_duration()
    }

    /// The `max-age` of a playlist requested without directives: half a part target, rounded.
    pub fn playlist_max_age(&self) -> u64 {
        (self.part_target / 2.0).round() as u64
    }
}

impl Default for LlhlsParams {
    /// Two-second segments in six parts of 1/3 s (ten frames at 30 fps); `PART-TARGET` is the
    /// longest audio part at 48 kHz, 16 AAC frames, and a millisecond of timestamp rounding.
    fn default() -> Self {
        Self::new(2.0, 1.0 / 3.0, MediaTiming::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_values_follow_the_spec_minimums() {
        let p = LlhlsParams::default();
        assert_eq!(p.target_duration(), 2);
        assert!(
            p.part_hold_back() >= 3.0 * p.part_target,
            "rule 36 (SHOULD 3x)"
        );
        assert!(p.hold_back() >= 3.0 * p.target_duration() as f64, "rule 37");
        assert!(
            p.can_skip_until() >= 6.0 * p.target_duration() as f64,
            "rule 38"
        );
        assert_eq!(
            p.blocking_timeout(),
            Duration::from_secs(6),
            "rule 62: 3 x TD"
        );
        assert_eq!(p.advance_part_limit(), 9, "rule 61: 3 / PART-TARGET");
        assert_eq!(p.parts_per_segment, 6);
        assert_eq!(p.part_target, 0.34234, "16 AAC frames at 48 kHz and 1 ms");
        assert_eq!(
            p.part_listed_segments(),
            3,
            "rule 33: parts within 3 x TD of the end"
        );
        assert_eq!(p.blocking_playlist_max_age(), 12);
        assert_eq!(p.playlist_max_age(), 0);
        let p = LlhlsParams {
            segment_duration: 2.5,
            part_target: 1.2,
            ..LlhlsParams::default()
        };
        assert_eq!(p.target_duration(), 3);
        assert_eq!(p.advance_part_limit(), 3);
    }

    #[test]
    fn the_part_grid_is_whole_frames_where_the_segment_allows() {
        // (segment, wanted part, fps) -> cells
        for (segment, wanted, fps, cells) in [
            (2.0, 1.0 / 3.0, 30, 6),
            (2.0, 0.2, 30, 10),
            (2.0, 0.2, 50, 10),
            (2.0, 0.2, 25, 10),
            (2.0, 1.0 / 3.0, 25, 5),
            (2.0, 1.0 / 3.0, 60, 6),
            (1.0, 0.2, 30, 5),
            (2.0, 1.0 / 3.0, 24, 6),
            // 46 frames: no divisor near 7.7 frames, so six cells of 7.67 frames.
            (2.0, 1.0 / 3.0, 23, 6),
        ] {
            assert_eq!(
                part_cells(segment, wanted, fps),
                cells,
                "{segment} s at {fps} fps, parts of {wanted}"
            );
        }
    }

    #[test]
    fn part_target_bounds_the_longest_part_of_every_rendition() {
        assert_eq!(longest_part(1.0 / 3.0, 1.0 / 30.0), 1.0 / 3.0);
        assert!(
            (longest_part(1.0 / 3.0, 1024.0 / 48_000.0) - 16.0 * 1024.0 / 48_000.0).abs() < 1e-12
        );
        let p = LlhlsParams::new(2.0, 0.2, MediaTiming::default());
        assert_eq!(p.parts_per_segment, 10);
        assert_eq!(p.part_target, 0.21434, "10 AAC frames at 48 kHz and 1 ms");
        assert!((p.part_duration() - 0.2).abs() < 1e-12);
        let p = LlhlsParams::new(
            2.0,
            0.2,
            MediaTiming {
                fps: 30,
                audio_sample_rate: 44_100,
            },
        );
        assert_eq!(p.part_target, 0.20998, "9 AAC frames at 44.1 kHz and 1 ms");
        // 23 fps: cells of 7.67 frames, so a video part can be 8 frames.
        let p = LlhlsParams::new(
            2.0,
            1.0 / 3.0,
            MediaTiming {
                fps: 23,
                audio_sample_rate: 48_000,
            },
        );
        assert!(p.part_target >= 8.0 / 23.0, "{}", p.part_target);
    }
}
