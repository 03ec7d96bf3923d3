//! Segment-only playlists of a session: the DVR window of a live broadcast and the VOD of a
//! finished one. Pure code.
//!
//! Layout per segment: `EXT-X-DISCONTINUITY`, `EXT-X-MAP` when the init changes,
//! `EXT-X-PROGRAM-DATE-TIME`, `EXT-X-GAP` for media that is not there, `EXTINF` and the URI
//! (the same names as the live playlist's, relative, so a DVR playlist's segments are the live
//! ones the edges already cache).

use std::fmt::Write;

use crate::packager::playlist::{VERSION, program_date_time, seconds};

use super::recorder::Record;

/// Which playlist to render.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// A live broadcast's sliding window: no `EXT-X-PLAYLIST-TYPE`, since its start moves
    /// (an EVENT playlist may not drop segments).
    Window,
    /// A live broadcast's whole session so far (`dvr.window: 0`): `EXT-X-PLAYLIST-TYPE:EVENT`.
    Event,
    /// A finished broadcast: `EXT-X-PLAYLIST-TYPE:VOD` and `EXT-X-ENDLIST`.
    Vod,
}

/// One segment to list: its record and whether its media is missing (listed as a gap).
#[derive(Debug, Clone, Copy)]
pub struct Listed<'a> {
    /// The record.
    pub record: &'a Record,
    /// Whether to list it as `EXT-X-GAP` although it was recorded with media (its archive
    /// write failed, and no copy is kept elsewhere).
    pub missing: bool,
}

/// What a segment playlist says besides its segments.
#[derive(Debug, Clone, Default)]
pub struct Header {
    /// `EXT-X-TARGETDURATION` at least (a longer segment raises it).
    pub target_duration: u64,
    /// Discontinuities in the session before the first listed segment.
    pub discontinuity_sequence: u64,
    /// `EXT-X-START:TIME-OFFSET`: where a player starts, seconds from the start (positive) or
    /// from the end (negative).
    pub start: Option<f64>,
    /// Whether the broadcast ended (`EXT-X-ENDLIST` in a window or event playlist).
    pub ended: bool,
    /// Extra tags for the playlist's header, each a full line without its newline (date
    /// ranges).
    pub tags: Vec<String>,
}

/// Renders a segment playlist of `segments`.
pub fn segment_playlist(kind: Kind, header: &Header, segments: &[Listed<'_>]) -> String {
    let mut out = String::with_capacity(128 + segments.len() * 120);
    out.push_str("#EXTM3U\n");
    let _ = writeln!(out, "#EXT-X-VERSION:{VERSION}");
    let longest = segments
        .iter()
        .map(|s| s.record.duration.round() as u64)
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "#EXT-X-TARGETDURATION:{}",
        header.target_duration.max(longest).max(1)
    );
    match kind {
        Kind::Window => {}
        Kind::Event => out.push_str("#EXT-X-PLAYLIST-TYPE:EVENT\n"),
        Kind::Vod => out.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n"),
    }
    let _ = writeln!(
        out,
        "#EXT-X-MEDIA-SEQUENCE:{}",
        segments.first().map_or(0, |s| s.record.msn)
    );
    let _ = writeln!(
        out,
        "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
        header.discontinuity_sequence
    );
    out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    if let Some(offset) = header.start {
        let _ = writeln!(out, "#EXT-X-START:TIME-OFFSET={offset:.3},PRECISE=YES");
    }
    for tag in &header.tags {
        out.push_str(tag);
        out.push('\n');
    }
    let mut previous_init = None;
    for (i, s) in segments.iter().enumerate() {
        let r = s.record;
        if r.discontinuity && i > 0 {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if previous_init != Some(r.init) {
            let _ = writeln!(out, "#EXT-X-MAP:URI=\"init-{}.mp4\"", r.init);
            previous_init = Some(r.init);
        }
        let _ = writeln!(
            out,
            "#EXT-X-PROGRAM-DATE-TIME:{}",
            program_date_time(r.program_date_time)
        );
        if r.gap || s.missing {
            out.push_str("#EXT-X-GAP\n");
        }
        let _ = writeln!(out, "#EXTINF:{},\n{}.m4s", seconds(r.duration), r.msn);
    }
    if kind == Kind::Vod || header.ended {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

/// Where the last `window` seconds of `items` start (all of them for a window of 0), and how
/// many discontinuities come before that: `(index, count)`. Only the window is walked for the
/// start; the count reads one flag per earlier item.
pub fn window<T>(items: &[T], window: f64, record: impl Fn(&T) -> &Record) -> (usize, u64) {
    let mut from = items.len();
    if window <= 0.0 {
        from = 0;
    } else {
        let mut total = 0.0;
        while from > 0 && total < window - 1e-6 {
            from -= 1;
            total += record(&items[from]).duration;
        }
    }
    let before = if from == 0 {
        0
    } else {
        items[1..=from]
            .iter()
            .filter(|i| record(i).discontinuity)
            .count() as u64
    };
    (from, before)
}

/// The multivariant playlist of a replay: the live one with each variant's `index.m3u8`
/// replaced by `file` (`dvr.m3u8`), and `query` added to each URI.
pub fn replay_master(live: &str, file: &str, query: Option<&str>) -> String {
    let target = match query {
        Some(q) => format!("/{file}?{q}"),
        None => format!("/{file}"),
    };
    live.replace("/index.m3u8", &target)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    fn record(msn: u64, discontinuity: bool) -> Record {
        let init = if msn >= 3 { 3 } else { 1 };
        Record {
            msn,
            program_date_time: SystemTime::UNIX_EPOCH + Duration::from_secs(2 * msn),
            duration: 2.0,
            discontinuity,
            init,
            gap: false,
        }
    }

    #[test]
    fn a_window_keeps_the_last_seconds_and_counts_discontinuities_before_it() {
        let records: Vec<Record> = (1..=10).map(|m| record(m, m == 3 || m == 8)).collect();
        let (from, dsn) = window(&records, 6.0, |r| r);
        let listed: Vec<u64> = records[from..].iter().map(|r| r.msn).collect();
        assert_eq!(listed, [8, 9, 10]);
        assert_eq!(dsn, 2, "3 and 8 come before the first listed segment");
        assert_eq!(window(&records, 0.0, |r| r), (0, 0));
        assert_eq!(
            window(&records, 600.0, |r| r),
            (0, 0),
            "shorter than the window"
        );
    }

    #[test]
    fn a_vod_lists_every_segment_and_ends() {
        let records: Vec<Record> = (1..=4).map(|m| record(m, m == 3)).collect();
        let listed: Vec<Listed<'_>> = records
            .iter()
            .map(|r| Listed {
                record: r,
                missing: r.msn == 2,
            })
            .collect();
        let header = Header {
            target_duration: 2,
            start: Some(-120.0),
            ..Header::default()
        };
        let text = segment_playlist(Kind::Vod, &header, &listed);
        assert!(text.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"));
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:1\n"));
        assert!(text.contains("#EXT-X-START:TIME-OFFSET=-120.000,PRECISE=YES\n"));
        assert!(text.contains("#EXT-X-GAP\n#EXTINF:2.0,\n2.m4s\n"));
        assert!(text.contains("#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init-3.mp4\"\n"));
        assert_eq!(text.matches("#EXT-X-MAP").count(), 2);
        assert!(text.ends_with("4.m4s\n#EXT-X-ENDLIST\n"));
        let window = segment_playlist(Kind::Window, &header, &listed);
        assert!(!window.contains("PLAYLIST-TYPE") && !window.contains("ENDLIST"));
    }

    #[test]
    fn a_replay_master_points_at_the_replay_playlists() {
        let live = "#EXTM3U\n#EXT-X-MEDIA:URI=\"audio/index.m3u8\"\n#EXT-X-STREAM-INF:BANDWIDTH=1\n720p/index.m3u8\n";
        let dvr = replay_master(live, "dvr.m3u8", Some("start=-120"));
        assert!(dvr.contains("URI=\"audio/dvr.m3u8?start=-120\""));
        assert!(dvr.contains("\n720p/dvr.m3u8?start=-120\n"));
    }
}
