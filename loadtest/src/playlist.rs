//! A client's view of an LL-HLS media playlist, parsed with `quick-m3u8` (an independent
//! parser: nothing here is shared with the origin's writer).

use std::time::{Duration, SystemTime};

use quick_m3u8::config::ParsingOptionsBuilder;
use quick_m3u8::tag::{KnownTag, hls};
use quick_m3u8::{HlsLine, Reader};

/// One part as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// The part's URI, relative to the playlist.
    pub uri: String,
    /// `DURATION` in seconds.
    pub duration: f64,
    /// `INDEPENDENT=YES`.
    pub independent: bool,
}

/// One segment (complete, or the trailing one that only has parts so far).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Segment {
    /// Media sequence number.
    pub msn: u64,
    /// `EXT-X-PROGRAM-DATE-TIME`, if given.
    pub program_date_time: Option<SystemTime>,
    /// `EXTINF` duration; `None` for the trailing segment still in progress.
    pub duration: Option<f64>,
    /// The segment URI, once complete.
    pub uri: Option<String>,
    /// Listed parts.
    pub parts: Vec<Part>,
    /// `EXT-X-GAP`.
    pub gap: bool,
    /// Preceded by `EXT-X-DISCONTINUITY`.
    pub discontinuity: bool,
    /// The `EXT-X-MAP` URI in effect.
    pub map: Option<String>,
}

/// A parsed media playlist.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MediaPlaylist {
    /// `EXT-X-VERSION`.
    pub version: Option<u64>,
    /// `EXT-X-TARGETDURATION`.
    pub target_duration: u64,
    /// `EXT-X-PART-INF:PART-TARGET`.
    pub part_target: Option<f64>,
    /// `CAN-BLOCK-RELOAD=YES`.
    pub can_block_reload: bool,
    /// `PART-HOLD-BACK`.
    pub part_hold_back: Option<f64>,
    /// `CAN-SKIP-UNTIL`.
    pub can_skip_until: Option<f64>,
    /// `EXT-X-MEDIA-SEQUENCE`.
    pub media_sequence: u64,
    /// `EXT-X-DISCONTINUITY-SEQUENCE`.
    pub discontinuity_sequence: u64,
    /// `EXT-X-SKIP:SKIPPED-SEGMENTS`.
    pub skipped_segments: u64,
    /// Segments in order, the trailing incomplete one included.
    pub segments: Vec<Segment>,
    /// `EXT-X-PRELOAD-HINT` of type PART.
    pub preload_hint: Option<String>,
    /// `EXT-X-RENDITION-REPORT` URIs with LAST-MSN and LAST-PART.
    pub rendition_reports: Vec<(String, u64, Option<u64>)>,
    /// `EXT-X-ENDLIST`.
    pub ended: bool,
}

/// Why a playlist could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("playlist line {line}: {reason}")]
pub struct PlaylistError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub reason: String,
}

/// A delta update skipped segments that the player's last playlist does not hold (it must
/// reload the whole playlist).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "delta update skips {skipped} segments from {first}, the last playlist held {held} of them"
)]
pub struct DeltaError {
    /// The first skipped MSN.
    pub first: u64,
    /// Segments skipped.
    pub skipped: u64,
    /// How many of them the last playlist held.
    pub held: u64,
}

/// Reads `text` a line at a time with every tag parsed, handing `each` the line's number
/// (from 1) and what it holds; the first line that cannot be read, or the first error `each`
/// returns, ends the reading. Returns the number of lines read.
pub(crate) fn for_each_line<'a>(
    text: &'a str,
    mut each: impl FnMut(usize, HlsLine<'a>) -> Result<(), PlaylistError>,
) -> Result<usize, PlaylistError> {
    let mut reader = Reader::from_str(
        text,
        ParsingOptionsBuilder::new()
            .with_parsing_for_all_tags()
            .build(),
    );
    let mut line = 0;
    loop {
        line += 1;
        let item = reader.read_line().map_err(|e| PlaylistError {
            line,
            reason: format!("{e:?}"),
        })?;
        let Some(item) = item else {
            return Ok(line);
        };
        each(line, item)?;
    }
}

fn to_system_time(dt: quick_m3u8::date::DateTime) -> Option<SystemTime> {
    let text = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:06.3}Z",
        dt.date_fullyear, dt.date_month, dt.date_mday, dt.time_hour, dt.time_minute, dt.time_second
    );
    let utc = humantime::parse_rfc3339(&text).ok()?;
    let hours = i64::from(dt.timezone_offset.time_hour);
    let minutes = i64::from(dt.timezone_offset.time_minute) * if hours < 0 { -1 } else { 1 };
    let offset = hours * 3600 + minutes * 60;
    Some(if offset >= 0 {
        utc - Duration::from_secs(offset as u64)
    } else {
        utc + Duration::from_secs((-offset) as u64)
    })
}

impl MediaPlaylist {
    /// Parses playlist text. Tags the parser does not know are an error: a player would not
    /// understand them either.
    pub fn parse(text: &str) -> Result<MediaPlaylist, PlaylistError> {
        let mut p = MediaPlaylist::default();
        let mut pending = Segment::default();
        let mut map: Option<String> = None;
        for_each_line(text, |line, item| {
            match item {
                HlsLine::KnownTag(KnownTag::Hls(tag)) => match tag {
                    hls::Tag::Version(v) => p.version = Some(v.version()),
                    hls::Tag::Targetduration(t) => p.target_duration = t.target_duration(),
                    hls::Tag::PartInf(t) => p.part_target = Some(t.part_target()),
                    hls::Tag::ServerControl(s) => {
                        p.can_block_reload = s.can_block_reload();
                        p.part_hold_back = s.part_hold_back();
                        p.can_skip_until = s.can_skip_until();
                    }
                    hls::Tag::MediaSequence(m) => p.media_sequence = m.media_sequence(),
                    hls::Tag::DiscontinuitySequence(d) => {
                        p.discontinuity_sequence = d.discontinuity_sequence()
                    }
                    hls::Tag::Skip(s) => p.skipped_segments = s.skipped_segments(),
                    hls::Tag::Map(m) => map = Some(m.uri().to_string()),
                    hls::Tag::ProgramDateTime(d) => {
                        pending.program_date_time = to_system_time(d.program_date_time())
                    }
                    hls::Tag::Discontinuity(_) => pending.discontinuity = true,
                    hls::Tag::Gap(_) => pending.gap = true,
                    hls::Tag::Part(part) => pending.parts.push(Part {
                        uri: part.uri().to_string(),
                        duration: part.duration(),
                        independent: part.independent(),
                    }),
                    hls::Tag::Inf(inf) => pending.duration = Some(inf.duration()),
                    hls::Tag::PreloadHint(h)
                        if matches!(
                            h.hint_type(),
                            hls::EnumeratedString::Known(hls::PreloadHintType::Part)
                        ) =>
                    {
                        p.preload_hint = Some(h.uri().to_string());
                    }
                    hls::Tag::RenditionReport(r) => {
                        p.rendition_reports.push((
                            r.uri().to_string(),
                            r.last_msn(),
                            r.last_part(),
                        ));
                    }
                    hls::Tag::Endlist(_) => p.ended = true,
                    _ => {}
                },
                HlsLine::Uri(uri) => {
                    let msn = p.media_sequence + p.skipped_segments + p.segments.len() as u64;
                    let mut segment = std::mem::take(&mut pending);
                    segment.msn = msn;
                    segment.uri = Some(uri.to_string());
                    segment.map = map.clone();
                    p.segments.push(segment);
                }
                HlsLine::UnknownTag(t) => {
                    return Err(PlaylistError {
                        line,
                        reason: format!("unknown or incomplete tag {t:?}"),
                    });
                }
                _ => {}
            }
            Ok(())
        })?;
        if !pending.parts.is_empty() {
            pending.msn = p.media_sequence + p.skipped_segments + p.segments.len() as u64;
            pending.map = map;
            p.segments.push(pending);
        }
        Ok(p)
    }

    /// The last listed part: its MSN, index and entry.
    pub fn last_part(&self) -> Option<(u64, usize, &Part)> {
        self.segments
            .iter()
            .rev()
            .find_map(|s| s.parts.last().map(|p| (s.msn, s.parts.len() - 1, p)))
    }

    /// The last complete segment's MSN.
    pub fn last_complete(&self) -> Option<u64> {
        self.segments
            .iter()
            .rev()
            .find(|s| s.uri.is_some())
            .map(|s| s.msn)
    }

    /// The MSN and part index of a part URI of the form `{msn}.{part}.m4s`.
    pub fn part_position(uri: &str) -> Option<(u64, u64)> {
        let stem = uri.rsplit('/').next()?.strip_suffix(".m4s")?;
        let (msn, part) = stem.split_once('.')?;
        Some((msn.parse().ok()?, part.parse().ok()?))
    }

    /// The part at `(msn, index)`, if listed.
    pub fn part(&self, (msn, index): (u64, usize)) -> Option<&Part> {
        self.segments
            .iter()
            .find(|s| s.msn == msn)
            .and_then(|s| s.parts.get(index))
    }

    /// The position of the part that follows `(msn, index)`: the next index, or the next
    /// segment's first part once segment `msn` is complete and `index` was its last.
    ///
    /// ```
    /// # use corral_loadtest::playlist::MediaPlaylist;
    /// let p = MediaPlaylist::parse("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:4\n\
    /// #EXT-X-PART:DURATION=0.5,URI=\"4.0.m4s\"\n#EXT-X-PART:DURATION=0.5,URI=\"4.1.m4s\"\n\
    /// #EXTINF:1.0,\n4.m4s\n#EXT-X-PART:DURATION=0.5,URI=\"5.0.m4s\"\n").unwrap();
    /// assert_eq!(p.next_after((4, 0)), (4, 1));
    /// assert_eq!(p.next_after((4, 1)), (5, 0));
    /// assert_eq!(p.next_after((5, 0)), (5, 1));
    /// ```
    pub fn next_after(&self, (msn, index): (u64, usize)) -> (u64, usize) {
        match self.segments.iter().find(|s| s.msn == msn) {
            Some(s) if s.uri.is_some() && index + 1 >= s.parts.len() => (msn + 1, 0),
            _ => (msn, index + 1),
        }
    }

    /// Where a low-latency player joins: the independent part at or before the point
    /// `hold_back` seconds of parts from the live end (the player then loads every part from
    /// there on); `None` without parts.
    pub fn live_start(&self, hold_back: f64) -> Option<(u64, usize)> {
        let positions: Vec<((u64, usize), &Part)> = self
            .segments
            .iter()
            .flat_map(|s| s.parts.iter().enumerate().map(|(i, p)| ((s.msn, i), p)))
            .collect();
        let mut behind = 0.0;
        let mut at = positions.len().checked_sub(1)?;
        while at > 0 && behind + positions[at].1.duration < hold_back {
            behind += positions[at].1.duration;
            at -= 1;
        }
        while at > 0 && !(positions[at].1.independent || positions[at].0.1 == 0) {
            at -= 1;
        }
        Some(positions[at].0)
    }

    /// Completes a delta update (`EXT-X-SKIP`) with the segments it skipped, taken from
    /// `previous`, the last whole playlist the player holds. A playlist without a skip is
    /// returned as it is.
    pub fn apply_delta(mut self, previous: &MediaPlaylist) -> Result<MediaPlaylist, DeltaError> {
        if self.skipped_segments == 0 {
            return Ok(self);
        }
        let first = self.media_sequence;
        let skipped = first..first + self.skipped_segments;
        let kept: Vec<Segment> = previous
            .segments
            .iter()
            .filter(|s| skipped.contains(&s.msn) && s.uri.is_some())
            .cloned()
            .collect();
        if kept.len() as u64 != self.skipped_segments {
            return Err(DeltaError {
                first,
                skipped: self.skipped_segments,
                held: kept.len() as u64,
            });
        }
        let mut segments = kept;
        segments.append(&mut self.segments);
        self.segments = segments;
        self.skipped_segments = 0;
        Ok(self)
    }

    /// Wall-clock time at which the part at `(msn, index)` ends: its segment's program
    /// date-time plus the listed parts up to it; `None` when not listed with a date.
    pub fn part_end(&self, (msn, index): (u64, usize)) -> Option<SystemTime> {
        let s = self.segments.iter().find(|s| s.msn == msn)?;
        let start = s.program_date_time?;
        let offset: f64 = s.parts.get(..=index)?.iter().map(|p| p.duration).sum();
        Some(start + Duration::from_secs_f64(offset))
    }

    /// Wall-clock time at which each listed part's media ends, by (MSN, index), from the
    /// segments' program date-times.
    pub fn part_end_times(&self) -> Vec<((u64, usize), SystemTime)> {
        let mut out = Vec::new();
        for s in &self.segments {
            let Some(start) = s.program_date_time else {
                continue;
            };
            let mut offset = 0.0;
            for (i, part) in s.parts.iter().enumerate() {
                offset += part.duration;
                out.push(((s.msn, i), start + Duration::from_secs_f64(offset)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: &str = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:2\n\
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=12.0,PART-HOLD-BACK=1.001,HOLD-BACK=6.0\n\
#EXT-X-PART-INF:PART-TARGET=0.33334\n#EXT-X-MEDIA-SEQUENCE:10\n#EXT-X-DISCONTINUITY-SEQUENCE:0\n\
#EXT-X-MAP:URI=\"init-10.mp4\"\n#EXT-X-PROGRAM-DATE-TIME:2026-11-22T05:45:07.751Z\n\
#EXT-X-PART:DURATION=0.33333,URI=\"10.0.m4s\",INDEPENDENT=YES\n#EXT-X-PART:DURATION=0.33333,URI=\"10.1.m4s\"\n\
#EXTINF:2.0,\n10.m4s\n#EXT-X-PROGRAM-DATE-TIME:2026-11-22T05:45:09.751Z\n\
#EXT-X-PART:DURATION=0.33333,URI=\"11.0.m4s\",INDEPENDENT=YES\n\
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"11.1.m4s\"\n\
#EXT-X-RENDITION-REPORT:URI=\"../360p/index.m3u8\",LAST-MSN=11,LAST-PART=0\n";

    #[test]
    fn reads_an_ll_hls_playlist() {
        let p = MediaPlaylist::parse(LIVE).expect("valid");
        assert_eq!(p.target_duration, 2);
        assert_eq!(p.part_target, Some(0.33334));
        assert!(p.can_block_reload);
        assert_eq!(p.part_hold_back, Some(1.001));
        assert_eq!(p.segments.len(), 2);
        assert_eq!(p.segments[0].uri.as_deref(), Some("10.m4s"));
        assert_eq!(p.segments[1].msn, 11);
        assert_eq!(p.segments[1].uri, None, "still in progress");
        assert_eq!(p.last_part().map(|(m, i, _)| (m, i)), Some((11, 0)));
        assert_eq!(p.last_complete(), Some(10));
        assert_eq!(p.preload_hint.as_deref(), Some("11.1.m4s"));
        assert_eq!(
            p.rendition_reports,
            vec![("../360p/index.m3u8".to_string(), 11, Some(0))]
        );
        assert_eq!(MediaPlaylist::part_position("11.1.m4s"), Some((11, 1)));
        let ends = p.part_end_times();
        assert_eq!(ends.len(), 3);
        let start = humantime::parse_rfc3339("2026-11-22T05:45:07.751Z").expect("date");
        assert_eq!(
            ends[1].1.duration_since(start).expect("after").as_millis(),
            666
        );
        assert_eq!(p.part_end((10, 1)), Some(ends[1].1));
        assert_eq!(p.part_end((11, 0)), Some(ends[2].1));
        assert_eq!(p.part_end((11, 1)), None, "hinted, not listed");
    }

    /// The playlist after `LIVE`, as a delta update: segment 10 skipped, 11 complete, 12 begun.
    const DELTA: &str = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:2\n\
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=12.0,PART-HOLD-BACK=1.001\n\
#EXT-X-PART-INF:PART-TARGET=0.33334\n#EXT-X-MEDIA-SEQUENCE:10\n#EXT-X-SKIP:SKIPPED-SEGMENTS=1\n\
#EXT-X-PROGRAM-DATE-TIME:2026-11-22T05:45:09.751Z\n\
#EXT-X-PART:DURATION=0.33333,URI=\"11.0.m4s\",INDEPENDENT=YES\n#EXT-X-PART:DURATION=0.33333,URI=\"11.1.m4s\"\n\
#EXTINF:0.66666,\n11.m4s\n#EXT-X-PART:DURATION=0.33333,URI=\"12.0.m4s\",INDEPENDENT=YES\n\
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"12.1.m4s\"\n";

    #[test]
    fn a_delta_update_takes_the_skipped_segments_from_the_last_playlist() {
        let previous = MediaPlaylist::parse(LIVE).expect("valid");
        let delta = MediaPlaylist::parse(DELTA).expect("valid");
        assert_eq!(delta.skipped_segments, 1);
        assert_eq!(delta.segments[0].msn, 11, "numbered after the skip");
        let whole = delta.apply_delta(&previous).expect("10 is held");
        assert_eq!(
            whole.segments.iter().map(|s| s.msn).collect::<Vec<_>>(),
            [10, 11, 12]
        );
        assert_eq!(whole.segments[0].uri.as_deref(), Some("10.m4s"));
        assert_eq!(whole.skipped_segments, 0);
        assert_eq!(whole.next_after((11, 1)), (12, 0));
        assert_eq!(whole.part((12, 0)).map(|p| p.independent), Some(true));

        let stranger = MediaPlaylist::parse(DELTA).expect("valid");
        let err = MediaPlaylist::parse(DELTA)
            .expect("valid")
            .apply_delta(&stranger)
            .expect_err("a delta does not hold what it skipped");
        assert_eq!((err.first, err.skipped, err.held), (10, 1, 0));
    }

    #[test]
    fn players_join_on_an_independent_part_behind_the_live_end() {
        let p = MediaPlaylist::parse(LIVE).expect("valid");
        // 11.0 alone is 0.33 s behind: too little for 1.0 s, and 10.1 is not independent.
        assert_eq!(p.live_start(1.0), Some((10, 0)));
        assert_eq!(p.live_start(0.2), Some((11, 0)));
        assert_eq!(p.live_start(100.0), Some((10, 0)), "as far back as listed");
        assert_eq!(MediaPlaylist::default().live_start(1.0), None);
    }

    #[test]
    fn an_incomplete_tag_is_an_error() {
        let err = MediaPlaylist::parse("#EXTM3U\n#EXT-X-PART:DURATION=0.3\n").expect_err("no URI");
        assert_eq!(err.line, 2);
    }
}
