//! What a rendition actually sends, for the multivariant playlist's `BANDWIDTH` and
//! `AVERAGE-BANDWIDTH`.
//!
//! The encoders' targets are only what they aim at: an easy picture takes far fewer bits, and a
//! player that judges a rung by `BANDWIDTH` against its own throughput estimate (one taken from
//! LL-HLS parts it asked for before they existed runs close to the stream's own rate) would
//! step down from a rung it can plainly afford. So once a rendition has a few complete segments
//! the playlist carries their measured rates over the segments its media playlist lists: the
//! peak segment rate (the spec's definition of `BANDWIDTH`) and the mean.

use super::log::SegmentEntry;

/// Complete segments needed before a measurement replaces the encoders' targets.
pub const MIN_SEGMENTS: usize = 3;

/// A rendition's measured bit rates, bits per second, container included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bitrate {
    /// The highest rate of any one segment.
    pub peak: u64,
    /// All bytes over all the time of the segments measured.
    pub average: u64,
}

/// The rates of the complete, non-gap `segments` of at least half of `nominal` seconds (a
/// segment cut short by a restart would overstate its keyframe's share), or `None` with fewer
/// than [`MIN_SEGMENTS`] of them.
pub fn measure<'a>(
    segments: impl IntoIterator<Item = &'a SegmentEntry>,
    nominal: f64,
) -> Option<Bitrate> {
    let (mut count, mut bytes, mut seconds, mut peak) = (0usize, 0u64, 0.0f64, 0.0f64);
    for s in segments {
        if !s.complete || s.gap || s.duration < nominal / 2.0 {
            continue;
        }
        let size: u64 = s.chunks().map(|c| c.len() as u64).sum();
        count += 1;
        bytes += size;
        seconds += s.duration;
        peak = peak.max(size as f64 * 8.0 / s.duration);
    }
    (count >= MIN_SEGMENTS && seconds > 0.0).then(|| Bitrate {
        peak: peak.ceil() as u64,
        average: (bytes as f64 * 8.0 / seconds).ceil() as u64,
    })
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use bytes::Bytes;

    use super::*;
    use crate::packager::log::PartEntry;

    fn segment(msn: u64, part_bytes: &[usize], duration: f64, complete: bool) -> SegmentEntry {
        SegmentEntry {
            msn,
            program_date_time: SystemTime::UNIX_EPOCH,
            discontinuity_sequence: 0,
            discontinuity: false,
            init: 0,
            gap: false,
            parts: part_bytes
                .iter()
                .map(|n| PartEntry {
                    duration: duration / part_bytes.len() as f64,
                    independent: false,
                    bytes: Bytes::from(vec![0u8; *n]),
                })
                .collect(),
            complete,
            duration,
            session: 0,
        }
    }

    #[test]
    fn peak_and_average_of_complete_segments() {
        // 2 s segments of 250, 500 and 125 kB: 1, 2 and 0.5 Mb/s.
        let segments = [
            segment(1, &[125_000, 125_000], 2.0, true),
            segment(2, &[250_000, 250_000], 2.0, true),
            segment(3, &[125_000], 2.0, true),
            // Still growing, and a gap: neither counts.
            segment(4, &[900_000], 1.0, false),
            SegmentEntry {
                gap: true,
                ..segment(5, &[], 2.0, true)
            },
        ];
        let b = measure(&segments, 2.0).expect("three segments");
        assert_eq!(b.peak, 2_000_000);
        assert_eq!(b.average, 1_166_667);
    }

    #[test]
    fn too_few_or_too_short_segments_measure_nothing() {
        let two = [
            segment(1, &[1000], 2.0, true),
            segment(2, &[1000], 2.0, true),
        ];
        assert_eq!(measure(&two, 2.0), None);
        let short = [
            segment(1, &[1000], 2.0, true),
            segment(2, &[1000], 2.0, true),
            segment(3, &[1000], 0.4, true),
        ];
        assert_eq!(
            measure(&short, 2.0),
            None,
            "a 0.4 s segment is not a sample"
        );
    }
}
