//! Renders media playlists (full and delta updates) and the multivariant playlist.
//!
//! Media playlist layout, per segment: `EXT-X-DISCONTINUITY`, `EXT-X-MAP` (when the init
//! changes), `EXT-X-PROGRAM-DATE-TIME`, then the segment's `EXT-X-PART`s, then `EXTINF` and the
//! URI, so that every tag applying to a parent precedes its first part (rule 31). The playlist
//! ends with the `EXT-X-PRELOAD-HINT` for the next part, one `EXT-X-RENDITION-REPORT` per other
//! rendition and, once the stream ended, `EXT-X-ENDLIST` (and no hint).

use std::fmt::Write;
use std::time::SystemTime;

use super::bitrate::Bitrate;
use super::log::{MediaLog, SegmentEntry};
use super::params::LlhlsParams;

/// The version every playlist uses: `EXT-X-MAP` in a media playlist needs 6.
pub const VERSION: u32 = 6;
/// The version a delta update (`EXT-X-SKIP`) needs.
pub const DELTA_VERSION: u32 = 9;

/// Formats seconds with at most five decimals, rounding down, for values that must not grow
/// (part durations against `PART-TARGET`).
pub fn seconds_floor(secs: f64) -> String {
    units_text(floor_units(secs))
}

/// `secs` in units of 10 µs, rounded down (a float a hair under a whole unit counts as it).
fn floor_units(secs: f64) -> u64 {
    ((secs * 100_000.0) + 1e-6).floor().max(0.0) as u64
}

/// Prints a segment's part durations so that they add up to its `EXTINF`: each is the
/// distance between its start and its end from the segment's start, each rounded to the
/// five decimals playlists carry (never above `PART-TARGET`). Rounded one by one, six parts of
/// 1/3 s read 0.33333 and end 20 µs before the next segment, which hls.js places at the sum of
/// the `EXTINF`s: it then finds no part to load at the boundary and stalls for seconds.
pub struct PartDurations {
    /// Units of 10 µs printed so far in the segment.
    printed: u64,
    /// Seconds of parts so far.
    elapsed: f64,
    /// `PART-TARGET` in units of 10 µs, rounded down.
    limit: u64,
}

impl PartDurations {
    /// For a segment's first part, with `PART-TARGET` `part_target` seconds.
    pub fn new(part_target: f64) -> Self {
        Self {
            printed: 0,
            elapsed: 0.0,
            limit: floor_units(part_target),
        }
    }

    /// The printed duration of a complete segment's last part: what is left of `extinf`
    /// units.
    pub fn last(&mut self, extinf: u64) -> String {
        self.up_to(extinf)
    }

    /// The printed duration of the next part, which lasts `secs`.
    pub fn next(&mut self, secs: f64) -> String {
        self.elapsed += secs;
        self.up_to((self.elapsed * 100_000.0).round().max(0.0) as u64)
    }

    /// The part from what is printed so far to `end` units into the segment.
    fn up_to(&mut self, end: u64) -> String {
        let units = end.saturating_sub(self.printed).min(self.limit);
        self.printed += units;
        units_text(units)
    }
}

/// A segment's `EXTINF` in units of 10 µs: its duration rounded, less one unit. Browsers keep
/// media times in whole microseconds, rounding each frame down, so a segment's buffered end
/// reads up to a microsecond before its true end; hls.js, loading parts at the live edge,
/// looks the next fragment up at that buffered end, and where the playlist puts the next
/// segment's start exactly at the true end it finds the segment it has just loaded and waits
/// (about 4.7 s, until that segment leaves the part list). Listed 10 µs short, every segment
/// starts where the buffer's end finds it.
fn extinf_units(secs: f64) -> u64 {
    ((secs * 100_000.0).round().max(1.0) as u64) - 1
}

/// Formats seconds with at most five decimals, rounding up, for limits (`PART-TARGET`).
pub fn seconds_ceil(secs: f64) -> String {
    units_text(((secs * 100_000.0) - 1e-6).ceil().max(0.0) as u64)
}

/// Formats seconds with at most five decimals, rounding to nearest.
pub fn seconds(secs: f64) -> String {
    units_text((secs * 100_000.0).round().max(0.0) as u64)
}

/// Formats a count of 10 µs units as decimal seconds, trimming zeros but keeping one decimal.
fn units_text(units: u64) -> String {
    let whole = units / 100_000;
    let frac = units % 100_000;
    let mut s = format!("{whole}.{frac:05}");
    while s.ends_with('0') && !s.ends_with(".0") {
        s.pop();
    }
    s
}

/// `PART-TARGET` as advertised: the configured target rounded up to 10 µs.
pub fn part_target(params: &LlhlsParams) -> String {
    seconds_ceil(params.part_target)
}

/// `PART-HOLD-BACK`: three advertised part targets, rounded up to the millisecond so that a
/// client comparing in floating point never finds it below `3 × PART-TARGET`.
fn part_hold_back(params: &LlhlsParams) -> String {
    let target = ((params.part_target * 100_000.0) - 1e-6).ceil().max(0.0) as u64;
    units_text((3 * target).div_ceil(100) * 100)
}

/// `EXT-X-PROGRAM-DATE-TIME` value: RFC 3339 with milliseconds, in UTC.
pub fn program_date_time(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Where another rendition stands, for `EXT-X-RENDITION-REPORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenditionReport {
    /// The other rendition's name (its directory next to ours).
    pub name: String,
    /// `LAST-MSN`: the MSN of its last part (or last segment).
    pub last_msn: u64,
    /// `LAST-PART`: the index of its last part.
    pub last_part: Option<u32>,
}

impl RenditionReport {
    /// The report of a rendition from its log, if it has published anything.
    pub fn of(name: &str, log: &MediaLog) -> Option<RenditionReport> {
        let pos = log.position();
        match (pos.last_part, pos.last_complete) {
            (Some((msn, part)), _) => Some(RenditionReport {
                name: name.to_string(),
                last_msn: msn,
                last_part: Some(part),
            }),
            (None, Some(msn)) => Some(RenditionReport {
                name: name.to_string(),
                last_msn: msn,
                last_part: None,
            }),
            (None, None) => None,
        }
    }
}

/// Which form of the media playlist to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// The whole playlist.
    Full,
    /// A delta update (`_HLS_skip=YES`): old segments replaced by `EXT-X-SKIP`.
    Delta,
}

/// Renders a rendition's media playlist.
pub fn media_playlist(
    log: &MediaLog,
    params: &LlhlsParams,
    reports: &[RenditionReport],
    form: Form,
    dateranges: &[String],
) -> String {
    let listed: Vec<&SegmentEntry> = log.listed().collect();
    let td = params.target_duration();
    // Rule 69: no delta once the stream has ended.
    let delta = form == Form::Delta && !log.ended();
    let mut out = String::with_capacity(4096);
    out.push_str("#EXTM3U\n");
    let _ = writeln!(
        out,
        "#EXT-X-VERSION:{}",
        if delta { DELTA_VERSION } else { VERSION }
    );
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{td}");
    let _ = writeln!(
        out,
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={},PART-HOLD-BACK={},HOLD-BACK={}",
        seconds(params.can_skip_until()),
        part_hold_back(params),
        seconds(params.hold_back()),
    );
    let _ = writeln!(out, "#EXT-X-PART-INF:PART-TARGET={}", part_target(params));
    let first = listed.first();
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", first.map_or(0, |s| s.msn));
    let _ = writeln!(
        out,
        "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
        first.map_or(0, |s| s.discontinuity_sequence)
    );
    // Date ranges are never skipped (no CAN-SKIP-DATERANGES): every form lists them.
    for tag in dateranges {
        out.push_str(tag);
        out.push('\n');
    }

    // Segments: the ones whose parts are listed are the open one and the last few complete ones.
    let complete = listed.iter().filter(|s| s.complete).count();
    let parts_from = complete.saturating_sub(params.part_listed_segments());
    let skipped = if delta {
        skippable(&listed, params.can_skip_until())
    } else {
        0
    };
    if delta {
        let _ = writeln!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
    }
    let mut previous_init: Option<u64> = None;
    let mut complete_before = listed.iter().take(skipped).filter(|s| s.complete).count();
    for (i, segment) in listed.iter().enumerate().skip(skipped) {
        if segment.discontinuity && i > 0 {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if previous_init != Some(segment.init) {
            let _ = writeln!(out, "#EXT-X-MAP:URI=\"init-{}.mp4\"", segment.init);
            previous_init = Some(segment.init);
        }
        let _ = writeln!(
            out,
            "#EXT-X-PROGRAM-DATE-TIME:{}",
            program_date_time(segment.program_date_time)
        );
        let with_parts = !segment.complete || complete_before >= parts_from;
        if segment.complete {
            complete_before += 1;
        }
        if with_parts && !segment.gap {
            let mut printed = PartDurations::new(params.part_target);
            let last = segment.parts.len().saturating_sub(1);
            for (index, part) in segment.parts.iter().enumerate() {
                let text = if segment.complete && index == last {
                    printed.last(extinf_units(segment.duration))
                } else {
                    printed.next(part.duration)
                };
                let _ = write!(
                    out,
                    "#EXT-X-PART:DURATION={},URI=\"{}.{}.m4s\"",
                    text, segment.msn, index
                );
                out.push_str(if part.independent {
                    ",INDEPENDENT=YES\n"
                } else {
                    "\n"
                });
            }
        }
        if segment.complete {
            if segment.gap {
                out.push_str("#EXT-X-GAP\n");
            }
            let _ = writeln!(
                out,
                "#EXTINF:{},\n{}.m4s",
                units_text(extinf_units(segment.duration)),
                segment.msn
            );
        }
    }
    if let Some((msn, part)) = log.next_part() {
        let _ = writeln!(
            out,
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{msn}.{part}.m4s\""
        );
    }
    for report in reports {
        let _ = write!(
            out,
            "#EXT-X-RENDITION-REPORT:URI=\"../{}/index.m3u8\",LAST-MSN={}",
            report.name, report.last_msn
        );
        if let Some(part) = report.last_part {
            let _ = write!(out, ",LAST-PART={part}");
        }
        out.push('\n');
    }
    if log.ended() {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

/// How many leading segments lie wholly before the skip boundary: their end is more than
/// `skip_until` seconds before the end of the last complete segment.
fn skippable(listed: &[&SegmentEntry], skip_until: f64) -> usize {
    let complete: Vec<&&SegmentEntry> = listed.iter().filter(|s| s.complete).collect();
    let total: f64 = complete.iter().map(|s| s.duration).sum();
    let mut elapsed = 0.0;
    let mut count = 0;
    for s in complete {
        elapsed += s.duration;
        if total - elapsed > skip_until + 1e-6 {
            count += 1;
        } else {
            break;
        }
    }
    count
}

/// One video variant of the multivariant playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoVariant {
    /// Rendition name (its directory).
    pub name: String,
    /// RFC 6381 codec of the video, if known.
    pub codec: Option<String>,
    /// Width and height.
    pub resolution: Option<(u32, u32)>,
    /// Frames per second.
    pub frame_rate: Option<f64>,
    /// Video bit rate the encoder aims at, bits per second.
    pub bitrate: u64,
    /// What the rendition sends, once measured.
    pub measured: Option<Bitrate>,
}

/// The audio rendition of the multivariant playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioVariant {
    /// Rendition name (its directory).
    pub name: String,
    /// RFC 6381 codec, if known.
    pub codec: Option<String>,
    /// Channel count.
    pub channels: u16,
    /// Bit rate, bits per second.
    pub bitrate: u64,
    /// What the rendition sends, once measured.
    pub measured: Option<Bitrate>,
}

/// Headroom of `BANDWIDTH` (peak) over the encoders' target, for container overhead and VBV
/// peaks, until a rendition is measured.
const PEAK_FACTOR: f64 = 1.2;
/// Headroom of `AVERAGE-BANDWIDTH` over the encoders' target, for container overhead, until a
/// rendition is measured.
const AVERAGE_FACTOR: f64 = 1.05;

/// (peak, average) bits per second of a rendition: what it was measured to send, or else its
/// encoder's target with headroom.
fn rates(target: u64, measured: Option<Bitrate>) -> (u64, u64) {
    match measured {
        Some(b) => (b.peak, b.average),
        None => (
            (target as f64 * PEAK_FACTOR).round() as u64,
            (target as f64 * AVERAGE_FACTOR).round() as u64,
        ),
    }
}

/// Renders the multivariant playlist: one audio group, one variant per video rendition (each
/// with the audio group), and an audio-only variant last. A variant's `BANDWIDTH` is the sum of
/// its renditions' peak segment rates and `AVERAGE-BANDWIDTH` of their mean rates, measured
/// where known (see [`super::bitrate`]).
pub fn multivariant_playlist(video: &[VideoVariant], audio: Option<&AudioVariant>) -> String {
    let mut out = String::with_capacity(1024);
    out.push_str("#EXTM3U\n");
    let _ = writeln!(out, "#EXT-X-VERSION:{VERSION}");
    out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    if let Some(a) = audio {
        let _ = writeln!(
            out,
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"{}\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"{}\",URI=\"{}/index.m3u8\"",
            a.name, a.channels, a.name
        );
    }
    let (audio_peak, audio_average) = audio.map_or((0, 0), |a| rates(a.bitrate, a.measured));
    for v in video {
        let (peak, average) = rates(v.bitrate, v.measured);
        let _ = write!(
            out,
            "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={}",
            peak + audio_peak,
            average + audio_average
        );
        let codecs: Vec<&str> = [v.codec.as_deref(), audio.and_then(|a| a.codec.as_deref())]
            .into_iter()
            .flatten()
            .collect();
        let all_known = v.codec.is_some() && audio.is_none_or(|a| a.codec.is_some());
        if all_known {
            let _ = write!(out, ",CODECS=\"{}\"", codecs.join(","));
        }
        if let Some((w, h)) = v.resolution {
            let _ = write!(out, ",RESOLUTION={w}x{h}");
        }
        if let Some(fps) = v.frame_rate {
            let _ = write!(out, ",FRAME-RATE={fps:.3}");
        }
        if audio.is_some() {
            out.push_str(",AUDIO=\"audio\"");
        }
        let _ = writeln!(out, "\n{}/index.m3u8", v.name);
    }
    if let Some(a) = audio {
        let _ = write!(
            out,
            "#EXT-X-STREAM-INF:BANDWIDTH={audio_peak},AVERAGE-BANDWIDTH={audio_average}"
        );
        if let Some(codec) = &a.codec {
            let _ = write!(out, ",CODECS=\"{codec}\"");
        }
        let _ = writeln!(out, "\n{}/index.m3u8", a.name);
    }
    out
}

#[cfg(test)]
#[path = "playlist_tests.rs"]
mod tests;
