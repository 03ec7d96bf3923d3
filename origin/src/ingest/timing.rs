//! When a publisher's clock started, as seen from the ingest: the wall time of its timestamp 0.
//!
//! An RTMP publisher stamps every frame with its own clock (milliseconds from its publish's
//! start), and the transcoder keeps those timestamps. A frame stamped `t` cannot have reached
//! the origin before its capture, so `arrival − t` bounds the wall time of timestamp 0 from
//! above for every frame; the smallest bound seen (the frame that waited least on its way) is
//! the estimate. Dating a publish from it puts each frame's program date-time at or before the
//! moment the frame reached the origin, and not, as dating from the transcoder's first output
//! would, after ffmpeg's probing of its input (about half a second later).
//!
//! Only the start of a publish matters (its runs anchor there), so the estimate stops moving
//! after [`PublisherClock::SETTLE`]: a publisher that sends faster than real time would
//! otherwise move it back with every frame.

use std::time::{Duration, SystemTime};

/// The estimate of one publish's clock start.
#[derive(Debug, Clone, Default)]
pub struct PublisherClock {
    /// The wall time of the first frame seen, which starts [`PublisherClock::SETTLE`].
    first: Option<SystemTime>,
    /// The current estimate of the wall time of timestamp 0.
    zero: Option<SystemTime>,
}

impl PublisherClock {
    /// How long after a publish's first frame the estimate may still move.
    pub const SETTLE: Duration = Duration::from_secs(5);

    /// The least a new bound must improve on the estimate to replace it (dates are printed to
    /// the millisecond).
    const STEP: Duration = Duration::from_millis(1);

    /// Takes a frame stamped `timestamp_ms` that arrived at `arrived`; returns the estimate when
    /// it moved.
    pub fn observe(&mut self, arrived: SystemTime, timestamp_ms: u32) -> Option<SystemTime> {
        let first = *self.first.get_or_insert(arrived);
        if arrived.duration_since(first).unwrap_or_default() > Self::SETTLE {
            return None;
        }
        let bound = arrived.checked_sub(Duration::from_millis(u64::from(timestamp_ms)))?;
        let moved = match self.zero {
            None => true,
            Some(zero) => zero.duration_since(bound).is_ok_and(|d| d >= Self::STEP),
        };
        if moved {
            self.zero = Some(bound);
            return self.zero;
        }
        None
    }

    /// The current estimate, once a frame has been seen.
    pub fn zero(&self) -> Option<SystemTime> {
        self.zero
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000) + Duration::from_millis(ms)
    }

    #[test]
    fn the_frame_that_waited_least_dates_the_publish() {
        let mut clock = PublisherClock::default();
        // Timestamp 0 was at 1000: the first frames come 40 ms late, one only 10 ms late.
        assert_eq!(clock.observe(at(1040), 0), Some(at(1040)));
        assert_eq!(clock.observe(at(1073), 33), None);
        assert_eq!(clock.observe(at(1076), 66), Some(at(1010)));
        assert_eq!(clock.observe(at(1139), 99), None);
        assert_eq!(clock.zero(), Some(at(1010)));
    }

    #[test]
    fn a_sub_millisecond_improvement_is_not_news() {
        let mut clock = PublisherClock::default();
        clock.observe(at(1000), 0);
        let almost = at(1033) - Duration::from_micros(500);
        assert_eq!(clock.observe(almost, 33), None);
        assert_eq!(clock.zero(), Some(at(1000)));
    }

    #[test]
    fn the_estimate_settles_after_the_start() {
        let mut clock = PublisherClock::default();
        clock.observe(at(1000), 0);
        // A burst far ahead of real time, once the start is over, no longer moves it.
        assert_eq!(clock.observe(at(7000), 60_000), None);
        assert_eq!(clock.zero(), Some(at(1000)));
    }

    proptest! {
        /// Whatever the delays, no frame of the start (140 frames: under 5 s) is dated after it
        /// arrived, and none is dated before its capture.
        #[test]
        fn no_frame_is_dated_after_its_arrival(delays in prop::collection::vec(0u64..400, 1..140)) {
            let mut clock = PublisherClock::default();
            let start = 1000;
            let frames: Vec<(SystemTime, u32)> = delays
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let t = (i as u64) * 33;
                    (at(start + t + d), t as u32)
                })
                .collect();
            for &(arrived, t) in &frames {
                clock.observe(arrived, t);
            }
            let zero = clock.zero().expect("a frame was seen");
            for &(arrived, t) in &frames {
                let dated = zero + Duration::from_millis(u64::from(t));
                prop_assert!(dated <= arrived);
            }
            prop_assert!(zero >= at(start));
        }
    }
}
