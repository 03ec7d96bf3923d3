//! Fuzzes the LL-HLS media playlist writer (`corral_origin::packager::playlist::media_playlist`)
//! over a `MediaLog` driven by the input.
//!
//! The input is read as a script of log operations (new init segment, publish a part, complete a
//! segment, end the stream) with values kept in the ranges the packager produces: part durations
//! within `PART-TARGET`, increasing wall-clock times, MSNs that move forward with occasional gaps
//! (and sometimes backward, which the log must refuse). After every operation the full and the
//! delta playlist are rendered. Checked: nothing panics; both start with `#EXTM3U`; the delta
//! form carries `EXT-X-SKIP` unless the stream ended; `EXT-X-ENDLIST` appears exactly when the
//! stream ended; and no `EXT-X-PART` duration exceeds `PART-TARGET`.

#![no_main]

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use corral_origin::packager::log::{InitEntry, MediaLog, PartEntry};
use corral_origin::packager::params::LlhlsParams;
use corral_origin::packager::playlist::{Form, RenditionReport, media_playlist, part_target};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

/// Operations per input, so that one input cannot run for long.
const MAX_OPS: usize = 512;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = run(&mut u);
});

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let segment_duration = 0.5 + f64::from(u.int_in_range(0u16..=950)?) / 100.0;
    let part_target_secs =
        (segment_duration * f64::from(u.int_in_range(5u8..=100)?) / 100.0).max(0.1);
    let params = LlhlsParams {
        segment_duration,
        parts_per_segment: (segment_duration / part_target_secs).ceil() as u64,
        part_target: part_target_secs,
        playlist_segments: u.int_in_range(1usize..=16)?,
        retained_segments: u.int_in_range(0usize..=8)?,
    };
    let mut log = MediaLog::new(
        params.segment_duration,
        params.playlist_segments,
        params.retained_segments,
    );
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut msn: u64 = u.int_in_range(0u64..=1_000_000)?;
    let mut clock = 0.0_f64;
    let mut next_init = msn;

    for _ in 0..MAX_OPS {
        if u.is_empty() {
            break;
        }
        match u.int_in_range(0u8..=9)? {
            0 => {
                log.start_epoch(InitEntry {
                    id: next_init,
                    bytes: Bytes::from_static(b"init"),
                });
                next_init += 1 + u64::from(u.int_in_range(0u8..=3)?);
            }
            1..=6 => {
                msn = match u.int_in_range(0u8..=15)? {
                    0..=9 => msn,
                    10..=12 => msn + 1,
                    13 => msn + u64::from(u.int_in_range(2u16..=1000)?),
                    14 => msn.saturating_sub(1),
                    _ => msn + 2,
                };
                next_init = next_init.max(msn);
                let duration = part_target_secs * f64::from(u.int_in_range(1u8..=100)?) / 100.0;
                clock += duration + f64::from(u.int_in_range(0u8..=20)?) / 10.0;
                let part = PartEntry {
                    duration,
                    independent: u.arbitrary()?,
                    bytes: Bytes::from_static(b"part"),
                };
                let _ = log.publish_part(msn, start + Duration::from_secs_f64(clock), part);
            }
            7 | 8 => log.complete_segment(msn),
            _ => log.end(),
        }
        check(&log, &params);
    }
    Ok(())
}

fn check(log: &MediaLog, params: &LlhlsParams) {
    let reports: Vec<RenditionReport> = RenditionReport::of("audio", log).into_iter().collect();
    let target = part_target(params);
    let limit = units(&target);
    for form in [Form::Full, Form::Delta] {
        let ranges = ["#EXT-X-DATERANGE:ID=\"ad-1\",START-DATE=\"2026-12-06T07:01:42.000Z\",DURATION=8.000".to_string()];
        let text = media_playlist(log, params, &reports, form, &ranges);
        assert!(text.starts_with("#EXTM3U\n"), "{text}");
        assert_eq!(text.matches("#EXT-X-DATERANGE:").count(), 1, "date ranges are never skipped:\n{text}");
        assert_eq!(
            text.contains("#EXT-X-ENDLIST\n"),
            log.ended(),
            "ENDLIST must appear exactly when the stream ended:\n{text}"
        );
        if form == Form::Delta {
            assert_eq!(text.contains("#EXT-X-SKIP:"), !log.ended(), "{text}");
        }
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("#EXT-X-PART:DURATION=") {
                let duration = rest.split(',').next().unwrap_or_default();
                assert!(
                    units(duration) <= limit,
                    "part of {duration} s over PART-TARGET {target}:\n{text}"
                );
            }
        }
    }
}

/// A decimal number of seconds as written in the playlist, in 10 µs units.
fn units(decimal: &str) -> u64 {
    let (whole, frac) = decimal.split_once('.').unwrap_or((decimal, ""));
    let whole: u64 = whole.parse().expect("whole seconds");
    let frac: u64 = format!("{frac:0<5}")
        .parse()
        .expect("five decimals at most");
    whole * 100_000 + frac
}
