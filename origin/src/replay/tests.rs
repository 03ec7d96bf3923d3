//! The recorder against real publication logs.

use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::recorder::{Action, LogView, Recorder, session_id};
use crate::packager::log::{InitEntry, MediaLog, PartEntry};

fn t(secs: f64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs_f64(1_800_000_000.0 + secs)
}

fn part() -> PartEntry {
    PartEntry {
        duration: 1.0,
        independent: true,
        bytes: Bytes::from_static(b"moof"),
    }
}

fn segment(log: &mut MediaLog, msn: u64) {
    log.publish_part(msn, t(msn as f64 * 2.0), part())
        .expect("in order");
    log.publish_part(msn, t(msn as f64 * 2.0 + 1.0), part())
        .expect("in order");
    log.complete_segment(msn);
}

fn epoch(log: &mut MediaLog, id: u64) {
    log.start_epoch(InitEntry {
        id,
        bytes: Bytes::from(format!("init{id}")),
    });
}

fn observe(recorder: &mut Recorder, logs: &[MediaLog]) -> Vec<Action> {
    let views: Vec<LogView> = logs
        .iter()
        .enumerate()
        .map(|(i, l)| LogView::of(l, recorder.through(i)))
        .collect();
    recorder.observe(&views)
}

fn summary(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            Action::Begin { id, .. } => format!("begin {id}"),
            Action::PutInit { rendition, id, .. } => format!("init {rendition}/{id}"),
            Action::Segment {
                rendition, record, ..
            } => format!(
                "seg {rendition}/{}{}{}",
                record.msn,
                if record.gap { " gap" } else { "" },
                if record.discontinuity { " disc" } else { "" }
            ),
            Action::End => "end".to_string(),
        })
        .collect()
}

#[test]
fn each_complete_segment_is_recorded_once_with_its_init_first() {
    let mut logs = vec![MediaLog::new(2.0, 3, 2), MediaLog::new(2.0, 3, 2)];
    let mut recorder = Recorder::new(2);
    assert!(observe(&mut recorder, &logs).is_empty(), "nothing yet");
    for log in &mut logs {
        epoch(log, 10);
        segment(log, 10);
        log.publish_part(11, t(22.0), part()).expect("open");
    }
    let first = summary(&observe(&mut recorder, &logs));
    assert_eq!(
        first,
        [
            &format!("begin {}", session_id(t(20.0))),
            "init 0/10",
            "seg 0/10",
            "init 1/10",
            "seg 1/10"
        ]
    );
    assert!(
        observe(&mut recorder, &logs).is_empty(),
        "the open segment waits"
    );
    for log in &mut logs {
        log.complete_segment(11);
    }
    assert_eq!(
        summary(&observe(&mut recorder, &logs)),
        ["seg 0/11", "seg 1/11"]
    );
}

#[test]
fn a_restart_within_a_broadcast_stays_in_its_session_and_the_end_closes_it() {
    let mut logs = vec![MediaLog::new(2.0, 3, 2)];
    let mut recorder = Recorder::new(1);
    epoch(&mut logs[0], 10);
    segment(&mut logs[0], 10);
    observe(&mut recorder, &logs);
    // The transcoder restarts: new init, a hole of gaps, a discontinuity; same session.
    epoch(&mut logs[0], 13);
    segment(&mut logs[0], 13);
    assert_eq!(
        summary(&observe(&mut recorder, &logs)),
        ["seg 0/11 gap", "seg 0/12 gap", "init 0/13", "seg 0/13 disc"]
    );
    logs[0].end();
    assert_eq!(summary(&observe(&mut recorder, &logs)), ["end"]);
    assert!(!recorder.recording());
    // A new broadcast after the end is a new session; the hole between the two is in neither.
    epoch(&mut logs[0], 20);
    segment(&mut logs[0], 20);
    let next = summary(&observe(&mut recorder, &logs));
    assert_eq!(
        next,
        [
            &format!("begin {}", session_id(t(40.0))),
            "init 0/20",
            "seg 0/20"
        ]
    );
}

#[test]
fn an_end_seen_together_with_the_next_broadcast_closes_the_first_session_first() {
    let mut logs = vec![MediaLog::new(2.0, 3, 2)];
    let mut recorder = Recorder::new(1);
    epoch(&mut logs[0], 10);
    segment(&mut logs[0], 10);
    observe(&mut recorder, &logs);
    segment(&mut logs[0], 11);
    logs[0].end();
    epoch(&mut logs[0], 14);
    segment(&mut logs[0], 14);
    let all = summary(&observe(&mut recorder, &logs));
    assert_eq!(all[0], "seg 0/11");
    assert_eq!(all[1], "end");
    assert!(all[2].starts_with("begin "));
    assert_eq!(&all[3..], ["init 0/14", "seg 0/14"]);
}

#[test]
fn session_ids_are_compact_utc_times() {
    let id = session_id(SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_540_502));
    assert_eq!(id, "20261206T070142Z");
}

#[test]
fn a_session_id_reads_back_as_its_start() {
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_540_502);
    assert_eq!(super::parse_session_id(&session_id(start)), Some(start));
    for bad in [
        "20261206T070142",
        "2026-12-06T07:01",
        "20261306T070142Z",
        "2026120６T07014Z",
    ] {
        assert_eq!(super::parse_session_id(bad), None, "{bad}");
    }
}

#[test]
fn a_checkpoint_becomes_the_vod_it_would_have_been() {
    let checkpoint = "#EXTM3U\n#EXT-X-PLAYLIST-TYPE:EVENT\n#EXT-X-PROGRAM-DATE-TIME:2026-12-06T07:01:42.000Z\n#EXTINF:2.0,\n1.m4s\n#EXT-X-PROGRAM-DATE-TIME:2026-12-06T07:01:44.000Z\n#EXTINF:1.5,\n2.m4s\n";
    let vod = super::vod::finish_checkpoint(checkpoint);
    assert!(vod.contains("#EXT-X-PLAYLIST-TYPE:VOD\n") && !vod.contains("EVENT"));
    assert!(vod.ends_with("2.m4s\n#EXT-X-ENDLIST\n"));
    assert_eq!(
        super::vod::finish_checkpoint(&vod),
        vod,
        "finishing twice changes nothing"
    );
    assert!((super::vod::playlist_duration(&vod) - 3.5).abs() < 1e-9);
    let end = super::vod::playlist_end(&vod).expect("dated");
    assert_eq!(
        humantime::format_rfc3339_millis(end).to_string(),
        "2026-12-06T07:01:45.500Z"
    );
}
