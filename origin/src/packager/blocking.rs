//! Decides whether a request can be answered now, must wait for a publication, or is refused:
//! blocking playlist reloads (`_HLS_msn`, `_HLS_part`) and requests for parts and segments that
//! are hinted or about to be published.
//!
//! The rules are those of the HLS spec §6.2.5.2 and §6.2.6: an old MSN is answered at once with
//! the whole playlist; a part index past the end of a complete segment means part 0 of the next
//! one; a request more than two segments, or more than the Advance Part Limit, ahead is a 400; a
//! resource that is neither published nor about to be is a 404; after the end everything is
//! answered at once.

use super::log::{MediaLog, SegmentEntry};

/// What a playlist request waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaylistDemand {
    /// No directive: the current playlist.
    Current,
    /// `_HLS_msn=M`: a playlist containing segment M complete.
    Segment(u64),
    /// `_HLS_msn=M&_HLS_part=N`: a playlist containing part N of segment M.
    Part(u64, u64),
}

/// The answer to "can this be served?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Serve it now.
    Ready,
    /// Hold the request until the log changes, then ask again.
    Wait,
    /// Refuse: 400 for a playlist asked too far ahead.
    TooFar(String),
    /// Refuse: 404 for an object that is not and will not be published.
    Missing(String),
}

/// Limits taken from the stream's timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockingLimits {
    /// The Advance Part Limit: how many parts past the last one may be asked for.
    pub advance_parts: u64,
    /// Parts in a full segment, to count parts across segments.
    pub parts_per_segment: u64,
}

/// Parts from `(from_msn, from_part)` forward to `(msn, part)`, counting full segments in between.
fn parts_ahead(from: (u64, u64), to: (u64, u64), per_segment: u64) -> u64 {
    let (fm, fp) = from;
    let (m, p) = to;
    if m < fm || (m == fm && p <= fp) {
        return 0;
    }
    if m == fm {
        return p - fp;
    }
    let rest_of_segment = per_segment.saturating_sub(fp + 1);
    rest_of_segment
        .saturating_add((m - fm - 1).saturating_mul(per_segment))
        .saturating_add(p)
        .saturating_add(1)
}

/// Rule 57: part N of a complete segment M that has fewer parts is part 0 of M + 1.
fn normalize(log: &MediaLog, msn: u64, part: u64) -> (u64, u64) {
    match log.segment(msn) {
        Some(s) if s.complete && part >= s.parts.len() as u64 => (msn + 1, 0),
        _ => (msn, part),
    }
}

/// Whether a media playlist request can be answered.
pub fn playlist_verdict(log: &MediaLog, demand: PlaylistDemand, limits: BlockingLimits) -> Verdict {
    let pos = log.position();
    if !log.has_playlist() {
        // Before the first segment completes there is no playlist to give, whatever was asked.
        return if pos.ended {
            Verdict::Missing("the stream ended before any media".into())
        } else {
            Verdict::Wait
        };
    }
    if pos.ended {
        return Verdict::Ready;
    }
    let last_complete = pos.last_complete.unwrap_or(0);
    let too_far = |msn: u64| {
        (msn > last_complete.saturating_add(2)).then(|| {
            Verdict::TooFar(format!(
                "_HLS_msn={msn} is more than two segments past the last segment ({last_complete})"
            ))
        })
    };
    match demand {
        PlaylistDemand::Current => Verdict::Ready,
        PlaylistDemand::Segment(msn) => {
            if msn <= last_complete {
                Verdict::Ready
            } else {
                too_far(msn).unwrap_or(Verdict::Wait)
            }
        }
        PlaylistDemand::Part(msn, part) => {
            if let Some(v) = too_far(msn) {
                return v;
            }
            let (msn, part) = normalize(log, msn, part);
            let Some((last_msn, last_part)) = pos.last_part else {
                return Verdict::Wait;
            };
            if msn < last_msn || (msn == last_msn && part <= u64::from(last_part)) {
                return Verdict::Ready;
            }
            let ahead = parts_ahead(
                (last_msn, u64::from(last_part)),
                (msn, part),
                limits.parts_per_segment,
            );
            if ahead > limits.advance_parts {
                Verdict::TooFar(format!(
                    "_HLS_part={part} of segment {msn} is {ahead} parts past the last part ({last_msn}.{last_part}); the limit is {}",
                    limits.advance_parts
                ))
            } else {
                Verdict::Wait
            }
        }
    }
}

/// Whether part `part` of segment `msn` can be served.
pub fn part_verdict(log: &MediaLog, msn: u64, part: u64, limits: BlockingLimits) -> Verdict {
    if let Some(segment) = log.segment(msn) {
        if usize::try_from(part).is_ok_and(|p| p < segment.parts.len()) {
            return Verdict::Ready;
        }
        if segment.gap {
            return Verdict::Missing(format!("segment {msn} is a gap"));
        }
        if segment.complete {
            return Verdict::Missing(format!(
                "segment {msn} ended with {} parts; part {part} was never published",
                segment.parts.len()
            ));
        }
    }
    upcoming(log, (msn, part), limits)
}

/// Whether full segment `msn` can be served.
pub fn segment_verdict(log: &MediaLog, msn: u64, limits: BlockingLimits) -> Verdict {
    match log.segment(msn) {
        Some(SegmentEntry { gap: true, .. }) => Verdict::Missing(format!("segment {msn} is a gap")),
        Some(s) if s.complete => Verdict::Ready,
        Some(_) => Verdict::Wait,
        None => upcoming(log, (msn, 0), limits),
    }
}

/// An object not in the log: is it about to be published (wait) or not (404)?
fn upcoming(log: &MediaLog, at: (u64, u64), limits: BlockingLimits) -> Verdict {
    let Some(next) = log.next_part() else {
        return Verdict::Missing(if log.ended() {
            "the stream has ended".to_string()
        } else {
            "nothing is published yet".to_string()
        });
    };
    if log.first_msn().is_some_and(|first| at.0 < first) {
        return Verdict::Missing(format!("segment {} is no longer available", at.0));
    }
    let next = (next.0, u64::from(next.1));
    if at < next {
        return Verdict::Missing(format!("{}.{} was never published", at.0, at.1));
    }
    // The hinted part is `next`; allow up to the Advance Part Limit past it.
    if parts_ahead(next, at, limits.parts_per_segment) <= limits.advance_parts {
        Verdict::Wait
    } else {
        Verdict::Missing(format!("{}.{} is neither published nor hinted", at.0, at.1))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use bytes::Bytes;

    use super::*;
    use crate::packager::log::{InitEntry, PartEntry};

    const LIMITS: BlockingLimits = BlockingLimits {
        advance_parts: 9,
        parts_per_segment: 6,
    };

    fn t(secs: f64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs_f64(1_800_000_000.0 + secs)
    }

    /// Segments 100..=101 complete (6 parts each), then `open_parts` parts of 102.
    fn log(open_parts: usize) -> MediaLog {
        let mut log = MediaLog::new(2.0, 6, 6);
        log.start_epoch(InitEntry {
            id: 100,
            bytes: Bytes::from_static(b"i"),
        });
        let p = || PartEntry {
            duration: 1.0 / 3.0,
            independent: true,
            bytes: Bytes::from_static(b"p"),
        };
        for msn in 100..102 {
            for _ in 0..6 {
                log.publish_part(msn, t(0.0), p()).expect("ok");
            }
            log.complete_segment(msn);
        }
        for _ in 0..open_parts {
            log.publish_part(102, t(4.0), p()).expect("ok");
        }
        log
    }

    #[test]
    fn already_available_parts_and_segments_answer_at_once() {
        let l = log(2);
        assert_eq!(
            playlist_verdict(&l, PlaylistDemand::Part(102, 1), LIMITS),
            Verdict::Ready
        );
        assert_eq!(
            playlist_verdict(&l, PlaylistDemand::Part(101, 3), LIMITS),
            Verdict::Ready
        );
        assert_eq!(
            playlist_verdict(&l, PlaylistDemand::Segment(101), LIMITS),
            Verdict::Ready
        );
        assert_eq!(
            playlist_verdict(&l, PlaylistDemand::Current, LIMITS),
            Verdict::Ready
        );
        assert_eq!(part_verdict(&l, 102, 1, LIMITS), Verdict::Ready);
        assert_eq!(segment_verdict(&l, 101, LIMITS), Verdict::Ready);
    }

    #[test]
    fn an_old_msn_is_answered_with_the_whole_playlist_not_refused() {
        let l = log(2);
        assert_eq!(
            playlist_verdict(&l, PlaylistDemand::Segment(3), LIMITS),
            Verdict::Ready,
            "rule 58"
        );
        assert_eq!(
            playlist_verdict(&l, PlaylistDemand::Part(3, 0), LIMITS),
            Verdict::Ready
        );
    }

    #[test]
    fn future_parts_and_segments_wait() {
        let l = log(2);
        assert_eq!(
            playlist_verdict(&l, PlaylistDemand::Part(102, 2), LIMITS),
            Verdict::Wait
        );
        assert_eq!(
            playlist_verdict(&l, PlaylistDemand::Segment(102), LIMITS),
            Verdict::Wait
        );
        assert_eq!(
            playlist_verdict(&l, PlaylistDemand::Part(103, 0), LIMITS),
            Verdict::Wait
        );
        assert_eq!(
            part_verdict(&l, 102, 2, LIMITS),
            Verdict::Wait,
            "the hinted part"
        );
        assert_eq!(
            segment_verdict(&l, 102, LIMITS),
            Verdict::Wait,
            "the open segment"
        );
    }

    #[test]
    fn too_far_ahead_is_a_bad_request() {
        let l = log(2);
        assert!(
            matches!(
                playlist_verdict(&l, PlaylistDemand::Segment(104), LIMITS),
                Verdict::TooFar(_)
            ),
            "rule 61: > last + 2"
        );
        assert_eq!(
            playlist_verdict(&l, PlaylistDemand::Segment(103), LIMITS),
            Verdict::Wait
        );
        assert!(matches!(
            playlist_verdict(&l, PlaylistDemand::Part(u64::MAX, 0), LIMITS),
            Verdict::TooFar(_)
        ));
        // Last part is 102.1: 102.10 is 9 parts ahead (allowed), 103.5 is 10 (refused).
        assert_eq!(
            playlist_verdict(&l, PlaylistDemand::Part(103, 4), LIMITS),
            Verdict::Wait
        );
        assert!(matches!(
            playlist_verdict(&l, PlaylistDemand::Part(103, 5), LIMITS),
            Verdict::TooFar(_)
        ));
        assert!(matches!(
            playlist_verdict(&l, PlaylistDemand::Part(102, u64::MAX), LIMITS),
            Verdict::TooFar(_)
        ));
    }

    #[test]
    fn a_part_index_past_a_complete_segment_means_the_next_segment() {
        let l = log(0);
        // Segment 101 has parts 0..=5; part 9 of it is part 0 of 102 (rule 57), not yet there.
        assert_eq!(
            playlist_verdict(&l, PlaylistDemand::Part(101, 9), LIMITS),
            Verdict::Wait
        );
        let l = log(1);
        assert_eq!(
            playlist_verdict(&l, PlaylistDemand::Part(101, 9), LIMITS),
            Verdict::Ready
        );
        assert_eq!(
            playlist_verdict(&l, PlaylistDemand::Part(101, 1000), LIMITS),
            Verdict::Ready
        );
    }

    #[test]
    fn objects_that_will_never_exist_are_missing() {
        let l = log(2);
        assert!(
            matches!(part_verdict(&l, 101, 6, LIMITS), Verdict::Missing(_)),
            "past a complete segment"
        );
        assert!(
            matches!(part_verdict(&l, 90, 0, LIMITS), Verdict::Missing(_)),
            "older than the log"
        );
        assert!(
            matches!(part_verdict(&l, 110, 0, LIMITS), Verdict::Missing(_)),
            "not hinted"
        );
        assert!(matches!(
            segment_verdict(&l, 110, LIMITS),
            Verdict::Missing(_)
        ));
    }

    #[test]
    fn after_the_end_playlists_answer_at_once_and_nothing_new_is_awaited() {
        let mut l = log(2);
        l.end();
        assert_eq!(
            playlist_verdict(&l, PlaylistDemand::Part(150, 0), LIMITS),
            Verdict::Ready,
            "rule 59"
        );
        assert!(matches!(
            part_verdict(&l, 102, 2, LIMITS),
            Verdict::Missing(_)
        ));
    }

    #[test]
    fn before_the_first_segment_completes_everything_waits() {
        let mut l = MediaLog::new(2.0, 6, 6);
        assert_eq!(
            playlist_verdict(&l, PlaylistDemand::Current, LIMITS),
            Verdict::Wait
        );
        l.start_epoch(InitEntry {
            id: 5,
            bytes: Bytes::from_static(b"i"),
        });
        l.publish_part(
            5,
            t(0.0),
            PartEntry {
                duration: 0.3,
                independent: true,
                bytes: Bytes::new(),
            },
        )
        .expect("ok");
        assert_eq!(
            playlist_verdict(&l, PlaylistDemand::Part(5, 0), LIMITS),
            Verdict::Wait
        );
    }

    #[test]
    fn counting_parts_across_segments() {
        assert_eq!(parts_ahead((102, 1), (102, 4), 6), 3);
        assert_eq!(parts_ahead((102, 5), (103, 0), 6), 1);
        assert_eq!(parts_ahead((102, 1), (104, 0), 6), 11);
        assert_eq!(parts_ahead((102, 1), (101, 9), 6), 0);
        assert_eq!(parts_ahead((0, 0), (u64::MAX, u64::MAX), 6), u64::MAX);
    }
}
