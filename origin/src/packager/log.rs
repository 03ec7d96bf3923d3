//! What one rendition has published: its segments and parts, the init segments they use,
//! discontinuities and gaps, and whether the stream ended.
//!
//! The log is the single source of truth for the rendition's playlists and media objects. It
//! guarantees what the playlist rules need: media sequence numbers are contiguous (a hole is
//! filled with `EXT-X-GAP` segments), a discontinuity follows every change of init segment, and
//! its size is bounded (old segments are dropped once they are neither listed nor retained).

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

/// One published part.
#[derive(Debug, Clone, PartialEq)]
pub struct PartEntry {
    /// Duration in seconds.
    pub duration: f64,
    /// Whether the part starts with a sync sample.
    pub independent: bool,
    /// The part's bytes: one `moof` + `mdat`.
    pub bytes: Bytes,
}

/// One segment, complete or still receiving parts.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentEntry {
    /// Media sequence number.
    pub msn: u64,
    /// Wall-clock time of the segment's first sample.
    pub program_date_time: SystemTime,
    /// Discontinuity sequence number.
    pub discontinuity_sequence: u64,
    /// Whether an `EXT-X-DISCONTINUITY` precedes the segment.
    pub discontinuity: bool,
    /// ID of the init segment (`EXT-X-MAP`) that applies.
    pub init: u64,
    /// A placeholder for media that does not exist (`EXT-X-GAP`).
    pub gap: bool,
    /// Parts, in order.
    pub parts: Vec<PartEntry>,
    /// Whether the segment is complete.
    pub complete: bool,
    /// Duration in seconds (the sum of its parts, or a gap's length).
    pub duration: f64,
    /// The broadcast it belongs to: see [`MediaLog::session`].
    pub session: u64,
}

impl SegmentEntry {
    /// The segment's bytes: its parts, concatenated.
    pub fn chunks(&self) -> impl Iterator<Item = &Bytes> {
        self.parts.iter().map(|p| &p.bytes)
    }

    /// Total bytes of the segment.
    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.bytes.len()).sum()
    }

    /// Whether the segment holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An initialization segment and its ID (the MSN of the first segment that uses it).
#[derive(Debug, Clone, PartialEq)]
pub struct InitEntry {
    /// ID, unique for the stream's lifetime.
    pub id: u64,
    /// The `ftyp` + `moov` bytes.
    pub bytes: Bytes,
}

/// Why a publication was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// The rendition has no init segment yet.
    #[error("no init segment was published before media")]
    NoInit,
    /// Media arrived after the stream ended.
    #[error("the stream has ended")]
    Ended,
    /// A part for an older segment, or out of order.
    #[error("part {index} of segment {msn} is out of order (last is {last_msn}.{last_index})")]
    OutOfOrder {
        /// MSN asked.
        msn: u64,
        /// Part index asked.
        index: usize,
        /// Last published MSN.
        last_msn: u64,
        /// Parts it has.
        last_index: usize,
    },
}

/// Where the log stands, for blocking decisions and rendition reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPosition {
    /// The last complete segment.
    pub last_complete: Option<u64>,
    /// The last published part: MSN and index.
    pub last_part: Option<(u64, u32)>,
    /// The last segment (complete or open).
    pub last_segment: Option<u64>,
    /// Whether the stream ended.
    pub ended: bool,
}

/// The publication log of one rendition. See the module documentation.
#[derive(Debug, Clone)]
pub struct MediaLog {
    segments: VecDeque<SegmentEntry>,
    inits: VecDeque<InitEntry>,
    current_init: Option<u64>,
    pending_discontinuity: bool,
    ended: bool,
    session: u64,
    version: u64,
    segment_duration: f64,
    playlist_segments: usize,
    capacity: usize,
}

impl MediaLog {
    /// A log that lists `playlist_segments` complete segments and keeps `retained_segments` more
    /// downloadable; gaps are filled with segments of `segment_duration` seconds.
    pub fn new(segment_duration: f64, playlist_segments: usize, retained_segments: usize) -> Self {
        Self {
            segments: VecDeque::new(),
            inits: VecDeque::new(),
            current_init: None,
            pending_discontinuity: false,
            ended: false,
            session: 0,
            version: 0,
            segment_duration,
            playlist_segments: playlist_segments.max(1),
            capacity: playlist_segments.max(1) + retained_segments + 1,
        }
    }

    /// Increases with every change; equal versions mean equal content.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Marks a change made outside the log (a cue added to its playlists): the version moves,
    /// so rendered playlists are rendered again.
    pub fn touch(&mut self) {
        self.version += 1;
    }

    /// Whether the stream ended (`EXT-X-ENDLIST`).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The current broadcast: 0 before the first run, then 1, and one more for every run that
    /// starts after the stream ended. Segments carry it, so the archive can tell one
    /// broadcast's segments from the next one's.
    pub fn session(&self) -> u64 {
        self.session
    }

    /// Starts a new run of the transcoder with `init`: the next segment follows a discontinuity
    /// (unless it is the first segment ever) and uses the new init segment.
    pub fn start_epoch(&mut self, init: InitEntry) {
        if self.ended || self.session == 0 {
            self.session += 1;
        }
        self.pending_discontinuity = !self.segments.is_empty();
        self.current_init = Some(init.id);
        if !self.inits.iter().any(|i| i.id == init.id) {
            self.inits.push_back(init);
        }
        self.ended = false;
        self.version += 1;
    }

    /// Goes on with a run that resumed the previous run's media clock: when its init segment
    /// is the one in use, byte for byte, nothing changes (no discontinuity: the media's
    /// timeline continues, and a hole is gaps); otherwise it starts an epoch.
    pub fn resume_epoch(&mut self, init: InitEntry) {
        if self.current_init().is_some_and(|i| i.bytes == init.bytes) {
            return;
        }
        self.start_epoch(init);
    }

    /// Publishes a part of segment `msn`, opening the segment (at `program_date_time`) if it is
    /// new. A segment still open before it is completed; missing MSNs in between become gaps.
    pub fn publish_part(
        &mut self,
        msn: u64,
        program_date_time: SystemTime,
        part: PartEntry,
    ) -> Result<(), LogError> {
        if self.ended {
            return Err(LogError::Ended);
        }
        let init = self.current_init.ok_or(LogError::NoInit)?;
        let open_here = matches!(self.segments.back(), Some(s) if s.msn == msn && !s.complete);
        if !open_here {
            if let Some(last) = self.segments.back()
                && msn <= last.msn
            {
                return Err(LogError::OutOfOrder {
                    msn,
                    index: 0,
                    last_msn: last.msn,
                    last_index: last.parts.len(),
                });
            }
            self.complete_open();
            self.fill_gaps(msn, program_date_time);
            let discontinuity_sequence =
                self.segments.back().map_or(0, |s| s.discontinuity_sequence)
                    + u64::from(self.pending_discontinuity);
            self.segments.push_back(SegmentEntry {
                msn,
                program_date_time,
                discontinuity_sequence,
                discontinuity: self.pending_discontinuity,
                init,
                gap: false,
                parts: Vec::new(),
                complete: false,
                duration: 0.0,
                session: self.session,
            });
            self.pending_discontinuity = false;
            self.trim();
        }
        let segment = self
            .segments
            .back_mut()
            .expect("a segment was just ensured");
        segment.duration += part.duration;
        segment.parts.push(part);
        self.version += 1;
        Ok(())
    }

    /// Marks segment `msn` complete, if it is the open one.
    pub fn complete_segment(&mut self, msn: u64) {
        if let Some(last) = self.segments.back_mut()
            && last.msn == msn
            && !last.complete
        {
            last.complete = true;
            self.version += 1;
        }
    }

    /// Ends the stream: completes the open segment and adds `EXT-X-ENDLIST`.
    pub fn end(&mut self) {
        self.complete_open();
        // An open segment with no parts cannot exist, but an empty log may end too.
        self.ended = true;
        self.version += 1;
    }

    fn complete_open(&mut self) {
        if let Some(last) = self.segments.back_mut()
            && !last.complete
        {
            last.complete = true;
            self.version += 1;
        }
    }

    /// Inserts `EXT-X-GAP` segments for the MSNs between the last segment and `msn`, spread over
    /// the wall-clock time between them.
    fn fill_gaps(&mut self, msn: u64, next_start: SystemTime) {
        let Some(last) = self.segments.back() else {
            return;
        };
        let missing = msn - last.msn - 1;
        if missing == 0 {
            return;
        }
        let last_end = last.program_date_time + Duration::from_secs_f64(last.duration.max(0.0));
        let hole = next_start
            .duration_since(last_end)
            .unwrap_or_default()
            .as_secs_f64();
        let each = if hole > 0.0 {
            (hole / missing as f64).clamp(0.001, self.segment_duration)
        } else {
            self.segment_duration
        };
        let dsn = last.discontinuity_sequence;
        let gap_init = last.init;
        // A hole between two broadcasts belongs to neither.
        let session = if last.session == self.session {
            self.session
        } else {
            0
        };
        // Gaps beyond what the log keeps would be dropped at once; make only the last ones.
        let first = msn - missing.min(self.capacity as u64);
        for gap_msn in first..msn {
            let offset = (gap_msn - (msn - missing)) as f64 * each;
            self.segments.push_back(SegmentEntry {
                msn: gap_msn,
                program_date_time: last_end + Duration::from_secs_f64(offset),
                discontinuity_sequence: dsn,
                discontinuity: false,
                init: gap_init,
                gap: true,
                parts: Vec::new(),
                complete: true,
                duration: each,
                session,
            });
        }
        self.trim();
    }

    fn trim(&mut self) {
        while self.segments.len() > self.capacity {
            self.segments.pop_front();
        }
        let oldest_init = self.segments.front().map(|s| s.init);
        while self.inits.len() > 1 {
            let front = self.inits[0].id;
            let in_use =
                oldest_init.is_some_and(|o| o <= front) || Some(front) == self.current_init;
            if in_use {
                break;
            }
            self.inits.pop_front();
        }
    }

    /// The segments a media playlist lists: the last `playlist_segments` complete ones and the
    /// open one.
    pub fn listed(&self) -> impl Iterator<Item = &SegmentEntry> {
        let complete = self.segments.iter().filter(|s| s.complete).count();
        let skip = complete.saturating_sub(self.playlist_segments);
        self.segments.iter().skip(skip)
    }

    /// Every segment still downloadable, oldest first.
    pub fn segments(&self) -> impl Iterator<Item = &SegmentEntry> {
        self.segments.iter()
    }

    /// The segment with this MSN, if still kept.
    pub fn segment(&self, msn: u64) -> Option<&SegmentEntry> {
        let first = self.segments.front()?.msn;
        let i = usize::try_from(msn.checked_sub(first)?).ok()?;
        self.segments.get(i).filter(|s| s.msn == msn)
    }

    /// The oldest MSN still downloadable.
    pub fn first_msn(&self) -> Option<u64> {
        self.segments.front().map(|s| s.msn)
    }

    /// The init segment with this ID.
    pub fn init(&self, id: u64) -> Option<&InitEntry> {
        self.inits.iter().find(|i| i.id == id)
    }

    /// The init segment of the current (or last) run.
    pub fn current_init(&self) -> Option<&InitEntry> {
        self.current_init.and_then(|id| self.init(id))
    }

    /// Whether a media playlist can be served: at least one segment is complete.
    pub fn has_playlist(&self) -> bool {
        self.segments.iter().any(|s| s.complete)
    }

    /// The next part expected (`EXT-X-PRELOAD-HINT`), unless the stream ended.
    pub fn next_part(&self) -> Option<(u64, u32)> {
        if self.ended {
            return None;
        }
        let last = self.segments.back()?;
        Some(if last.complete {
            (last.msn + 1, 0)
        } else {
            (last.msn, last.parts.len() as u32)
        })
    }

    /// Where the log stands.
    pub fn position(&self) -> LogPosition {
        let last_complete = self
            .segments
            .iter()
            .rev()
            .find(|s| s.complete)
            .map(|s| s.msn);
        let last_part = self
            .segments
            .iter()
            .rev()
            .find(|s| !s.parts.is_empty())
            .map(|s| (s.msn, s.parts.len() as u32 - 1));
        LogPosition {
            last_complete,
            last_part,
            last_segment: self.segments.back().map(|s| s.msn),
            ended: self.ended,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: f64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs_f64(1_800_000_000.0 + secs)
    }

    fn part(duration: f64) -> PartEntry {
        PartEntry {
            duration,
            independent: true,
            bytes: Bytes::from_static(b"moof"),
        }
    }

    fn log_with(segments: u64) -> MediaLog {
        let mut log = MediaLog::new(2.0, 3, 2);
        log.start_epoch(InitEntry {
            id: 100,
            bytes: Bytes::from_static(b"init"),
        });
        for msn in 100..100 + segments {
            for _ in 0..6 {
                log.publish_part(msn, t((msn - 100) as f64 * 2.0), part(1.0 / 3.0))
                    .expect("in order");
            }
            log.complete_segment(msn);
        }
        log
    }

    #[test]
    fn parts_build_segments_and_positions_follow() {
        let mut log = log_with(2);
        assert_eq!(
            log.position(),
            LogPosition {
                last_complete: Some(101),
                last_part: Some((101, 5)),
                last_segment: Some(101),
                ended: false
            }
        );
        assert_eq!(log.next_part(), Some((102, 0)));
        log.publish_part(102, t(4.0), part(0.3))
            .expect("next segment");
        assert_eq!(log.next_part(), Some((102, 1)));
        assert_eq!(log.position().last_part, Some((102, 0)));
        let seg = log.segment(101).expect("kept");
        assert!((seg.duration - 2.0).abs() < 1e-9);
        assert_eq!(seg.len(), 6 * 4);
    }

    #[test]
    fn the_playlist_lists_a_window_and_keeps_more_downloadable() {
        let log = log_with(8);
        let listed: Vec<u64> = log.listed().map(|s| s.msn).collect();
        assert_eq!(listed, [105, 106, 107]);
        assert_eq!(log.first_msn(), Some(102), "3 listed + 2 retained + 1");
        assert!(log.segment(101).is_none(), "dropped");
        assert!(
            log.segment(102).is_some(),
            "still downloadable after leaving the playlist"
        );
    }

    #[test]
    fn a_new_epoch_brings_a_discontinuity_and_a_new_init() {
        let mut log = log_with(2);
        log.start_epoch(InitEntry {
            id: 102,
            bytes: Bytes::from_static(b"init2"),
        });
        log.publish_part(102, t(5.0), part(0.3)).expect("new epoch");
        let seg = log.segment(102).expect("published");
        assert!(seg.discontinuity);
        assert_eq!(seg.discontinuity_sequence, 1);
        assert_eq!(seg.init, 102);
        assert!(!log.segment(101).expect("kept").discontinuity);
        assert!(log.init(100).is_some() && log.init(102).is_some());
    }

    #[test]
    fn a_hole_in_media_sequence_numbers_is_filled_with_gaps() {
        let mut log = log_with(2);
        log.start_epoch(InitEntry {
            id: 105,
            bytes: Bytes::from_static(b"init2"),
        });
        // The last segment ended at t=4; the new run starts at t=10 with MSN 105.
        log.publish_part(105, t(10.0), part(0.3))
            .expect("after a hole");
        let gaps: Vec<(u64, bool, f64)> = log
            .segments()
            .filter(|s| s.msn >= 102)
            .map(|s| (s.msn, s.gap, s.duration))
            .collect();
        assert_eq!(gaps[0], (102, true, 2.0));
        assert_eq!(gaps[1], (103, true, 2.0));
        assert_eq!(gaps[2], (104, true, 2.0));
        assert_eq!((gaps[3].0, gaps[3].1), (105, false));
        assert!(log.segment(105).expect("new").discontinuity);
    }

    #[test]
    fn out_of_order_parts_are_refused_and_the_end_is_final() {
        let mut log = log_with(2);
        assert!(matches!(
            log.publish_part(100, t(0.0), part(0.3)),
            Err(LogError::OutOfOrder { .. })
        ));
        log.end();
        assert!(log.ended());
        assert_eq!(log.next_part(), None, "no preload hint after the end");
        assert_eq!(
            log.publish_part(102, t(4.0), part(0.3)),
            Err(LogError::Ended)
        );
    }

    #[test]
    fn media_before_an_init_segment_is_refused() {
        let mut log = MediaLog::new(2.0, 3, 2);
        assert_eq!(
            log.publish_part(1, t(0.0), part(0.3)),
            Err(LogError::NoInit)
        );
        assert!(!log.has_playlist());
    }

    #[test]
    fn old_init_segments_are_dropped_with_the_last_segment_using_them() {
        let mut log = log_with(1);
        for (i, id) in [101u64, 102, 103, 104, 105, 106, 107].iter().enumerate() {
            log.start_epoch(InitEntry {
                id: *id,
                bytes: Bytes::from_static(b"i"),
            });
            log.publish_part(*id, t(2.0 * (i + 1) as f64), part(0.3))
                .expect("next epoch");
            log.complete_segment(*id);
        }
        assert!(log.init(100).is_none());
        assert!(log.init(107).is_some());
        let oldest = log.segments().next().expect("some").init;
        assert!(
            log.init(oldest).is_some(),
            "every kept segment's init is kept"
        );
    }
}
