//! Every server rule of the HLS spec (rfc8216bis) and of Apple's Low-Latency profile that can be
//! checked on a playlist's text, checked on what the writer renders. Test names carry rule
//! numbers: the spec's server rules numbered in order, 1 to 99.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use quick_m3u8::config::ParsingOptionsBuilder;
use quick_m3u8::{HlsLine, Reader};

use super::*;
use crate::packager::log::{InitEntry, MediaLog, PartEntry};

fn params() -> LlhlsParams {
    LlhlsParams {
        segment_duration: 2.0,
        parts_per_segment: 6,
        part_target: 0.33334,
        playlist_segments: 12,
        retained_segments: 4,
    }
}

fn t(secs: f64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs_f64(1_800_000_000.0 + secs)
}

fn part(duration: f64, independent: bool) -> PartEntry {
    PartEntry {
        duration,
        independent,
        bytes: Bytes::from_static(b"p"),
    }
}

/// A live log: `complete` segments from MSN 900 of six 1/3 s parts, then `open` parts.
fn live_log(complete: u64, open: usize) -> MediaLog {
    let p = params();
    let mut log = MediaLog::new(p.segment_duration, p.playlist_segments, p.retained_segments);
    log.start_epoch(InitEntry {
        id: 900,
        bytes: Bytes::from_static(b"init"),
    });
    for msn in 900..900 + complete {
        for i in 0..6 {
            log.publish_part(msn, t((msn - 900) as f64 * 2.0), part(10.0 / 30.0, i == 0))
                .expect("ok");
        }
        log.complete_segment(msn);
    }
    for i in 0..open {
        log.publish_part(
            900 + complete,
            t(complete as f64 * 2.0),
            part(10.0 / 30.0, i == 0),
        )
        .expect("ok");
    }
    log
}

fn reports() -> Vec<RenditionReport> {
    vec![
        RenditionReport {
            name: "360p".into(),
            last_msn: 919,
            last_part: Some(2),
        },
        RenditionReport {
            name: "audio".into(),
            last_msn: 919,
            last_part: Some(3),
        },
    ]
}

fn render(log: &MediaLog, form: Form) -> String {
    media_playlist(log, &params(), &reports(), form, &[])
}

/// Parses an attribute list, asserting attribute names are unique (rule 3).
fn attrs(list: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = list;
    while !rest.is_empty() {
        let (name, after) = rest.split_once('=').expect("NAME=VALUE");
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').expect("closing quote");
            (&quoted[..end], &quoted[end + 1..])
        } else {
            match after.find(',') {
                Some(i) => (&after[..i], &after[i..]),
                None => (after, ""),
            }
        };
        assert!(
            out.insert(name.to_string(), value.to_string()).is_none(),
            "duplicate attribute {name}"
        );
        rest = after.strip_prefix(',').unwrap_or(after);
    }
    out
}

fn tag<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    let prefix = format!("{name}:");
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .collect()
}

fn number(s: &str) -> f64 {
    s.parse().unwrap_or_else(|_| panic!("not a number: {s}"))
}

/// Independent check: every tag parses as a known, complete HLS tag in quick-m3u8.
fn assert_parses(text: &str) {
    let mut reader = Reader::from_str(
        text,
        ParsingOptionsBuilder::new()
            .with_parsing_for_all_tags()
            .build(),
    );
    let mut lines = 0;
    loop {
        match reader.read_line() {
            Ok(Some(HlsLine::UnknownTag(t))) => panic!("tag not understood: {t:?}\n{text}"),
            Ok(Some(_)) => lines += 1,
            Ok(None) => break,
            Err(e) => panic!("unparseable line: {e:?}\n{text}"),
        }
    }
    assert_eq!(lines, text.lines().count());
}

fn all_forms() -> Vec<String> {
    let mut ended = live_log(20, 0);
    ended.end();
    vec![
        render(&live_log(20, 2), Form::Full),
        render(&live_log(20, 2), Form::Delta),
        render(&live_log(3, 0), Form::Full),
        render(&ended, Form::Full),
        render(&with_discontinuity_and_gap(), Form::Full),
    ]
}

/// Segments 900..=905, then the transcoder restarts with a new init at MSN 908 (906 and 907
/// become gaps), and 908 has two parts.
fn with_discontinuity_and_gap() -> MediaLog {
    let mut log = live_log(6, 0);
    log.start_epoch(InitEntry {
        id: 908,
        bytes: Bytes::from_static(b"init2"),
    });
    log.publish_part(908, t(16.5), part(0.3, true)).expect("ok");
    log.publish_part(908, t(16.5), part(0.3, false))
        .expect("ok");
    log
}

#[test]
fn every_line_is_a_known_well_formed_tag_or_uri_rules_1_3_26_42_51() {
    for text in all_forms() {
        assert!(text.starts_with("#EXTM3U\n"), "rule 1");
        assert!(!text.starts_with('\u{feff}'), "rule 3: no BOM");
        assert!(
            text.chars().all(|c| c == '\n' || !c.is_control()),
            "rule 3: no control characters"
        );
        assert!(!text.contains('\r'));
        assert_parses(&text);
        for line in text
            .lines()
            .filter(|l| l.starts_with("#EXT-X-") && l.contains(':'))
        {
            let list = line.split_once(':').map(|(_, v)| v).unwrap_or("");
            if list.contains('=') && !line.starts_with("#EXT-X-PROGRAM-DATE-TIME") {
                attrs(list);
            }
        }
    }
}

#[test]
fn one_version_tag_high_enough_for_map_and_skip_rules_4_6_70() {
    let full = render(&live_log(20, 2), Form::Full);
    assert_eq!(tag(&full, "#EXT-X-VERSION"), ["6"], "EXT-X-MAP needs 6");
    let delta = render(&live_log(20, 2), Form::Delta);
    assert_eq!(tag(&delta, "#EXT-X-VERSION"), ["9"], "EXT-X-SKIP needs 9");
}

#[test]
fn target_duration_bounds_every_segment_rules_11_12() {
    for text in all_forms() {
        let td: u64 = tag(&text, "#EXT-X-TARGETDURATION")[0]
            .parse()
            .expect("integer");
        assert_eq!(td, 2);
        for d in tag(&text, "#EXTINF") {
            let secs = number(d.trim_end_matches(','));
            assert!(secs.round() as u64 <= td, "EXTINF {secs} rounds above {td}");
        }
    }
}

#[test]
fn media_sequence_and_no_playlist_type_rules_14_15() {
    let text = render(&live_log(20, 2), Form::Full);
    assert_eq!(
        tag(&text, "#EXT-X-MEDIA-SEQUENCE"),
        ["908"],
        "12 complete segments listed, ending at 919"
    );
    let first_segment_line = text
        .lines()
        .position(|l| l.starts_with("#EXTINF"))
        .expect("segments");
    let seq_line = text
        .lines()
        .position(|l| l.starts_with("#EXT-X-MEDIA-SEQUENCE"))
        .expect("tag");
    assert!(seq_line < first_segment_line);
    assert!(!text.contains("#EXT-X-PLAYLIST-TYPE"));
}

#[test]
fn the_playlist_keeps_at_least_three_target_durations_rule_16() {
    let text = render(&live_log(20, 2), Form::Full);
    let total: f64 = tag(&text, "#EXTINF")
        .iter()
        .map(|d| number(d.trim_end_matches(',')))
        .sum();
    assert!(total >= 3.0 * 2.0, "{total}");
}

#[test]
fn every_segment_has_a_map_with_a_uri_rules_22_23() {
    let text = render(&with_discontinuity_and_gap(), Form::Full);
    let maps = tag(&text, "#EXT-X-MAP");
    assert_eq!(maps.len(), 2, "one per init segment:\n{text}");
    assert_eq!(attrs(maps[0])["URI"], "init-900.mp4");
    assert_eq!(attrs(maps[1])["URI"], "init-908.mp4");
    let first_map = text
        .lines()
        .position(|l| l.starts_with("#EXT-X-MAP"))
        .expect("map");
    let first_seg = text
        .lines()
        .position(|l| l.starts_with("#EXTINF"))
        .expect("segment");
    assert!(first_map < first_seg);
}

#[test]
fn parts_have_uri_duration_and_independence_within_the_target_rules_25_26_27() {
    let text = render(&live_log(20, 2), Form::Full);
    let target = number(&attrs(tag(&text, "#EXT-X-PART-INF")[0])["PART-TARGET"]);
    assert_eq!(target, 0.33334);
    let parts = tag(&text, "#EXT-X-PART");
    assert!(!parts.is_empty());
    for p in parts {
        let a = attrs(p);
        assert!(a.contains_key("URI"));
        assert!(number(&a["DURATION"]) <= target, "rule 27: {p}");
        let index: u32 = a["URI"]
            .split('.')
            .nth(1)
            .expect("msn.part.m4s")
            .parse()
            .expect("index");
        assert_eq!(
            a.get("INDEPENDENT").map(String::as_str),
            (index == 0).then_some("YES"),
            "{p}"
        );
    }
}

#[test]
fn short_parts_only_where_allowed_rule_28() {
    let mut log = live_log(3, 0);
    // A segment cut short by a restart: its last part is short, which is allowed.
    log.publish_part(903, t(6.0), part(0.33333, true))
        .expect("ok");
    log.publish_part(903, t(6.0), part(0.1, false)).expect("ok");
    log.complete_segment(903);
    let text = render(&log, Form::Full);
    let target = 0.33334;
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let Some(list) = line.strip_prefix("#EXT-X-PART:") else {
            continue;
        };
        let a = attrs(list);
        let final_of_parent = !lines[i + 1].starts_with("#EXT-X-PART:");
        if !a.contains_key("INDEPENDENT") && !final_of_parent {
            assert!(number(&a["DURATION"]) >= 0.85 * target, "rule 28: {line}");
        }
    }
}

#[test]
fn parts_precede_their_parent_and_count_from_zero_rule_30() {
    let text = render(&live_log(20, 2), Form::Full);
    let mut expected_index = 0;
    let mut current_msn = None;
    for line in text.lines() {
        if let Some(list) = line.strip_prefix("#EXT-X-PART:") {
            let uri = attrs(list)["URI"].clone();
            let mut it = uri.split('.');
            let msn: u64 = it.next().expect("msn").parse().expect("number");
            let index: u32 = it.next().expect("index").parse().expect("number");
            if current_msn != Some(msn) {
                current_msn = Some(msn);
                expected_index = 0;
            }
            assert_eq!(index, expected_index, "{line}");
            expected_index += 1;
        } else if let Some(uri) = line.strip_suffix(".m4s").filter(|l| !l.starts_with('#')) {
            let msn: u64 = uri.parse().expect("segment msn");
            if let Some(part_msn) = current_msn {
                assert_eq!(part_msn, msn, "the parts before a segment URI are its own");
            }
            current_msn = None;
        }
    }
}

#[test]
fn parent_tags_come_before_the_first_part_rule_31_78() {
    let text = render(&with_discontinuity_and_gap(), Form::Full);
    let lines: Vec<&str> = text.lines().collect();
    let disc = lines
        .iter()
        .position(|l| *l == "#EXT-X-DISCONTINUITY")
        .expect("rule 78");
    let new_map = lines
        .iter()
        .position(|l| l.contains("init-908.mp4"))
        .expect("new MAP");
    let first_new_part = lines
        .iter()
        .position(|l| l.contains("URI=\"908.0.m4s\""))
        .expect("part");
    let pdt = lines[..first_new_part]
        .iter()
        .rposition(|l| l.starts_with("#EXT-X-PROGRAM-DATE-TIME"))
        .expect("pdt");
    assert!(disc < new_map && new_map < first_new_part && pdt > disc && pdt < first_new_part);
}

#[test]
fn parts_are_listed_only_near_the_live_edge_rule_33() {
    let text = render(&live_log(20, 2), Form::Full);
    let msns: std::collections::BTreeSet<u64> = tag(&text, "#EXT-X-PART")
        .iter()
        .map(|p| {
            attrs(p)["URI"]
                .split('.')
                .next()
                .expect("msn")
                .parse()
                .expect("n")
        })
        .collect();
    // 3 x TD = 6 s: the last three complete segments and the open one.
    assert_eq!(msns.into_iter().collect::<Vec<_>>(), [917, 918, 919, 920]);
}

#[test]
fn server_control_values_rules_35_to_38() {
    let text = render(&live_log(20, 2), Form::Full);
    let a = attrs(tag(&text, "#EXT-X-SERVER-CONTROL")[0]);
    let part_target = 0.33334;
    assert_eq!(a["CAN-BLOCK-RELOAD"], "YES", "rule 35");
    assert!(
        number(&a["PART-HOLD-BACK"]) >= 3.0 * part_target,
        "rule 36: {}",
        a["PART-HOLD-BACK"]
    );
    assert!(number(&a["HOLD-BACK"]) >= 3.0 * 2.0, "rule 37");
    assert!(number(&a["CAN-SKIP-UNTIL"]) >= 6.0 * 2.0, "rule 38");
}

#[test]
fn the_same_server_control_in_every_rendition_rule_40() {
    let a = render(&live_log(20, 2), Form::Full);
    let b = render(&live_log(5, 4), Form::Full);
    assert_eq!(
        tag(&a, "#EXT-X-SERVER-CONTROL"),
        tag(&b, "#EXT-X-SERVER-CONTROL")
    );
    assert_eq!(tag(&a, "#EXT-X-PART-INF"), tag(&b, "#EXT-X-PART-INF"));
}

#[test]
fn a_preload_hint_names_the_next_part_rules_42_49_50() {
    let text = render(&live_log(20, 2), Form::Full);
    let hints = tag(&text, "#EXT-X-PRELOAD-HINT");
    assert_eq!(hints.len(), 1, "rule 46: at most one per type");
    let a = attrs(hints[0]);
    assert_eq!(a["TYPE"], "PART");
    assert_eq!(a["URI"], "920.2.m4s", "the URI the next part will have");
    // After a segment completes, the hint names part 0 of the next segment.
    let text = render(&live_log(20, 0), Form::Full);
    assert_eq!(
        attrs(tag(&text, "#EXT-X-PRELOAD-HINT")[0])["URI"],
        "920.0.m4s"
    );
}

#[test]
fn an_ended_playlist_has_endlist_and_no_hint_rules_48_82() {
    let mut log = live_log(20, 2);
    log.end();
    let text = render(&log, Form::Full);
    assert!(text.ends_with("#EXT-X-ENDLIST\n"));
    assert!(!text.contains("PRELOAD-HINT"), "rule 48");
    assert!(text.contains("920.m4s"), "the open segment was completed");
}

#[test]
fn one_relative_rendition_report_per_other_rendition_rules_51_53() {
    let text = render(&live_log(20, 2), Form::Full);
    let r = tag(&text, "#EXT-X-RENDITION-REPORT");
    assert_eq!(r.len(), 2);
    for (line, name) in r.iter().zip(["360p", "audio"]) {
        let a = attrs(line);
        assert_eq!(a["URI"], format!("../{name}/index.m3u8"));
        assert!(a.contains_key("LAST-MSN") && a.contains_key("LAST-PART"));
    }
}

#[test]
fn a_delta_update_skips_old_segments_and_keeps_the_rest_rules_65_66_68() {
    let log = live_log(20, 2);
    let full = render(&log, Form::Full);
    let delta = render(&log, Form::Delta);
    let skip = attrs(tag(&delta, "#EXT-X-SKIP")[0]);
    let skipped: usize = skip["SKIPPED-SEGMENTS"].parse().expect("count");
    // 12 listed segments of 2 s (908..=919); those ending more than 12 s before the end of the
    // last one are 908..=912.
    assert_eq!(skipped, 5, "{delta}");
    assert_eq!(
        tag(&delta, "#EXT-X-MEDIA-SEQUENCE"),
        tag(&full, "#EXT-X-MEDIA-SEQUENCE")
    );
    assert_eq!(
        tag(&delta, "#EXT-X-DISCONTINUITY-SEQUENCE"),
        tag(&full, "#EXT-X-DISCONTINUITY-SEQUENCE")
    );
    // Everything after the skipped segments is the full playlist's text (its MAP repeated).
    let tail_start = full.find("#EXT-X-PROGRAM-DATE-TIME:").expect("segments");
    let full_segments = &full[tail_start..];
    let kept_start = full_segments
        .match_indices("#EXT-X-PROGRAM-DATE-TIME:")
        .nth(skipped)
        .map(|(i, _)| i)
        .expect("kept segments");
    let delta_tail = &delta[delta.find("#EXT-X-PROGRAM-DATE-TIME:").expect("kept")..];
    assert_eq!(delta_tail, &full_segments[kept_start..], "rule 68");
    // Skipped segments' duration from the end is more than CAN-SKIP-UNTIL.
    let kept: f64 = tag(&delta, "#EXTINF")
        .iter()
        .map(|d| number(d.trim_end_matches(',')))
        .sum();
    assert!(kept >= 12.0);
}

#[test]
fn no_delta_once_ended_rule_69() {
    let mut log = live_log(20, 0);
    log.end();
    let text = render(&log, Form::Delta);
    assert!(!text.contains("#EXT-X-SKIP"));
    assert_eq!(tag(&text, "#EXT-X-VERSION"), ["6"]);
}

#[test]
fn program_date_time_on_every_segment_in_utc_with_milliseconds_rules_71_72_79() {
    for text in all_forms() {
        let segments = text.lines().filter(|l| l.starts_with("#EXTINF")).count();
        let open = usize::from(
            text.contains("#EXT-X-PRELOAD-HINT")
                && !text.lines().rev().take(4).any(|l| l.starts_with("#EXTINF")),
        );
        let pdts = tag(&text, "#EXT-X-PROGRAM-DATE-TIME");
        assert!(
            pdts.len() >= segments && pdts.len() <= segments + open + 1,
            "{text}"
        );
        for p in pdts {
            assert_eq!(p.len(), "2027-01-15T08:00:00.000Z".len(), "{p}");
            assert!(p.ends_with('Z'));
            humantime::parse_rfc3339(p).expect("RFC 3339");
        }
    }
}

#[test]
fn discontinuity_sequence_grows_as_discontinuities_leave_the_window_rule_80() {
    let mut log = with_discontinuity_and_gap();
    let text = render(&log, Form::Full);
    assert_eq!(tag(&text, "#EXT-X-DISCONTINUITY-SEQUENCE"), ["0"]);
    for msn in 908..940 {
        if msn > 908 {
            log.publish_part(msn, t(16.5 + (msn - 908) as f64 * 2.0), part(0.3, true))
                .expect("ok");
        }
        log.complete_segment(msn);
    }
    let text = render(&log, Form::Full);
    assert_eq!(tag(&text, "#EXT-X-DISCONTINUITY-SEQUENCE"), ["1"]);
    assert!(
        !text.contains("#EXT-X-DISCONTINUITY\n"),
        "the discontinuity left the window"
    );
}

#[test]
fn missing_media_is_an_ext_x_gap_segment_without_parts_rule_81() {
    let text = render(&with_discontinuity_and_gap(), Form::Full);
    let lines: Vec<&str> = text.lines().collect();
    for msn in [906, 907] {
        let uri = lines
            .iter()
            .position(|l| *l == format!("{msn}.m4s"))
            .expect("gap segment listed");
        assert_eq!(lines[uri - 2], "#EXT-X-GAP", "{text}");
        assert!(!text.contains(&format!("URI=\"{msn}.0.m4s\"")));
    }
}

#[test]
fn durations_are_printed_without_growing() {
    assert_eq!(seconds_floor(10.0 / 30.0), "0.33333");
    assert_eq!(seconds_ceil(0.333333), "0.33334");
    assert_eq!(seconds(2.0), "2.0");
    assert_eq!(seconds(1.999996), "2.0");
    assert_eq!(seconds_floor(0.2), "0.2");
    assert_eq!(part_hold_back(&params()), "1.001");
}

fn ladder() -> (Vec<VideoVariant>, AudioVariant) {
    let v = |name: &str, w, h, kbps: u64| VideoVariant {
        name: name.into(),
        codec: Some("avc1.64001f".into()),
        resolution: Some((w, h)),
        frame_rate: Some(30.0),
        bitrate: kbps * 1000,
        measured: None,
    };
    (
        vec![v("720p", 1280, 720, 2800), v("360p", 640, 360, 800)],
        AudioVariant {
            name: "audio".into(),
            codec: Some("mp4a.40.2".into()),
            channels: 2,
            bitrate: 128_000,
            measured: None,
        },
    )
}

#[test]
fn the_multivariant_playlist_describes_every_rendition_rules_85_to_90() {
    let (video, audio) = ladder();
    let text = multivariant_playlist(&video, Some(&audio));
    assert_parses(&text);
    let media = attrs(tag(&text, "#EXT-X-MEDIA")[0]);
    assert_eq!(media["TYPE"], "AUDIO");
    assert_eq!(media["DEFAULT"], "YES");
    assert_eq!(
        media["AUTOSELECT"], "YES",
        "rule 88: DEFAULT=YES needs AUTOSELECT=YES"
    );
    assert_eq!(media["CHANNELS"], "2");
    let variants = tag(&text, "#EXT-X-STREAM-INF");
    assert_eq!(
        variants.len(),
        3,
        "two video variants and the audio-only one"
    );
    for (line, (kbps, res)) in variants.iter().zip([
        (2800u64, Some("1280x720")),
        (800, Some("640x360")),
        (0, None),
    ]) {
        let a = attrs(line);
        let bandwidth: u64 = a["BANDWIDTH"].parse().expect("integer");
        let average: u64 = a["AVERAGE-BANDWIDTH"].parse().expect("integer");
        assert!(
            bandwidth >= (kbps + 128) * 1000,
            "rule 87: video plus audio fit in BANDWIDTH"
        );
        assert!(average <= bandwidth);
        assert_eq!(a.get("RESOLUTION").map(String::as_str), res);
        if res.is_some() {
            assert_eq!(
                a["CODECS"], "avc1.64001f,mp4a.40.2",
                "rule 86: every format"
            );
            assert_eq!(a["AUDIO"], media["GROUP-ID"]);
            assert_eq!(a["FRAME-RATE"], "30.000");
        } else {
            assert_eq!(a["CODECS"], "mp4a.40.2", "rule 90: audio-only variant");
        }
    }
    let uris: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        uris,
        ["720p/index.m3u8", "360p/index.m3u8", "audio/index.m3u8"]
    );
    assert_eq!(text.matches("#EXT-X-INDEPENDENT-SEGMENTS").count(), 1);
}

#[test]
fn an_unknown_codec_leaves_codecs_out_rather_than_wrong() {
    let (mut video, audio) = ladder();
    video[0].codec = None;
    let text = multivariant_playlist(&video, Some(&audio));
    let first = attrs(tag(&text, "#EXT-X-STREAM-INF")[0]);
    assert!(!first.contains_key("CODECS"));
}

#[test]
fn measured_renditions_set_bandwidth_to_what_they_send() {
    let (mut video, mut audio) = ladder();
    // The 720p rung measured well below its 2.8 Mb/s target; 360p not measured yet.
    video[0].measured = Some(Bitrate {
        peak: 1_500_000,
        average: 1_200_000,
    });
    audio.measured = Some(Bitrate {
        peak: 140_000,
        average: 131_000,
    });
    let text = multivariant_playlist(&video, Some(&audio));
    let variants = tag(&text, "#EXT-X-STREAM-INF");
    let first = attrs(variants[0]);
    assert_eq!(first["BANDWIDTH"], "1640000", "peaks of video and audio");
    assert_eq!(first["AVERAGE-BANDWIDTH"], "1331000");
    let second = attrs(variants[1]);
    assert_eq!(
        second["BANDWIDTH"],
        (960_000 + 140_000).to_string(),
        "the target with headroom until measured"
    );
    let audio_only = attrs(variants[2]);
    assert_eq!(audio_only["BANDWIDTH"], "140000");
    assert_eq!(audio_only["AVERAGE-BANDWIDTH"], "131000");
}

#[test]
fn a_segments_parts_add_up_to_its_extinf() {
    // Six parts of 1/3 s each rounded down would read 0.33333 and end 20 µs before the next
    // segment, which players place at the sum of the EXTINFs: the last part takes the rest.
    // A segment is listed 10 µs short of its media (a browser's buffered end can read a
    // microsecond early, and hls.js must find the next segment there).
    let text = render(&live_log(4, 2), Form::Full);
    let mut parts = 0u64;
    let mut listed = 0;
    for line in text.lines() {
        if let Some(attributes) = line.strip_prefix("#EXT-X-PART:") {
            let d = number(&attrs(attributes)["DURATION"]);
            assert!(d <= params().part_target, "{line}");
            parts += (d * 100_000.0).round() as u64;
        } else if let Some(extinf) = line.strip_prefix("#EXTINF:") {
            if parts > 0 {
                let d = number(extinf.trim_end_matches(','));
                assert_eq!(parts, (d * 100_000.0).round() as u64, "{text}");
                listed += 1;
            }
            parts = 0;
        }
    }
    assert!(listed >= 1, "{text}");
    assert!(text.contains("#EXTINF:1.99999,"), "{text}");
    assert!(text.contains("DURATION=0.33333,") && text.contains("DURATION=0.33334,"));
    let mut printed = PartDurations::new(0.2);
    let tenths: Vec<String> = (0..5).map(|_| printed.next(0.2)).collect();
    assert_eq!(tenths, ["0.2"; 5]);
}
