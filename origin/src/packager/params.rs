//! The LL-HLS timing of a stream: segment and part durations and every value derived from them.

use std::time::Duration;

/// Timing shared by every rendition of a stream. All durations are in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct LlhlsParams {
    /// Nominal segment duration (the GOP); segment boundaries lie on a grid of this step.
    pub segment_duration: f64,
    /// `PART-TARGET`: no part is ever longer.
    pub part_target: f64,
    /// Complete segments listed in a media playlist.
    pub playlist_segments: usize,
    /// Segments kept downloadable after they leave the playlist.
    pub retained_segments: usize,
}

impl LlhlsParams {
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

    /// Parts a full segment is cut into, at most.
    pub fn parts_per_segment(&self) -> u64 {
        (self.segment_duration / self.part_target).ceil().max(1.0) as u64
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
    fn default() -> Self {
        Self {
            segment_duration: 2.0,
            part_target: 0.33334,
            playlist_segments: 12,
            retained_segments: 12,
        }
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
        assert_eq!(p.parts_per_segment(), 6);
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
}
