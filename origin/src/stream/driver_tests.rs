//! The driver fed with synthetic transcoder events and a clock that only moves when told.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use corral_transcoder::command::{RenditionKind, RenditionSpec};
use corral_transcoder::config::Bitrate;
use corral_transcoder::fmp4::{Fmp4Event, Fmp4Reader, Fragment, InitSegment, Sample, TrackRun};
use corral_transcoder::supervisor::{RunOutcome, SupervisorEvent};
use parking_lot::Mutex;

use super::*;
use crate::packager::params::LlhlsParams;
use crate::packager::playlist::Form;

const VIDEO: &[u8] = include_bytes!("../../../transcoder/tests/fixtures/video.mp4");
const AUDIO: &[u8] = include_bytes!("../../../transcoder/tests/fixtures/audio.mp4");

struct FakeClock(Mutex<SystemTime>);

impl Clock for FakeClock {
    fn now(&self) -> SystemTime {
        *self.0.lock()
    }
}

impl FakeClock {
    fn advance(&self, secs: f64) {
        *self.0.lock() += Duration::from_secs_f64(secs);
    }
}

/// 1_800_000_001 s: MSN floor(t / 2) = 900_000_000 at the anchor.
fn start_time() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_001)
}

fn init_of(data: &[u8]) -> (Arc<InitSegment>, Sample) {
    let mut r = Fmp4Reader::default();
    r.push(data);
    let mut init = None;
    let mut sample = None;
    while let Ok(Some(e)) = r.next_event() {
        match e {
            Fmp4Event::Init(i) => init = Some(i),
            Fmp4Event::Fragment(f) if sample.is_none() => {
                sample = Some(f.tracks[0].samples[0].clone())
            }
            Fmp4Event::Fragment(_) => {}
        }
    }
    (init.expect("init"), sample.expect("a sample"))
}

struct Harness {
    driver: StreamDriver,
    stream: Arc<Stream>,
    clock: Arc<FakeClock>,
    video: (Arc<InitSegment>, Sample),
    audio: (Arc<InitSegment>, Sample),
    run: u64,
}

impl Harness {
    fn new() -> Self {
        Self::fed(Feed::Generated)
    }

    fn fed(feed: Feed) -> Self {
        let specs = vec![
            RenditionSpec {
                name: "v".into(),
                kind: RenditionKind::Video {
                    size: Some((64, 64)),
                },
                bitrate: Some(Bitrate(500_000)),
                output_fd: 3,
            },
            RenditionSpec {
                name: "a".into(),
                kind: RenditionKind::Audio {
                    sample_rate: 48_000,
                    channels: 2,
                },
                bitrate: Some(Bitrate(64_000)),
                output_fd: 4,
            },
        ];
        let stream = Stream::new("s", "testsrc", LlhlsParams::default(), 30, &specs);
        let clock = Arc::new(FakeClock(Mutex::new(start_time())));
        let metrics =
            OriginMetrics::register(&prometheus::Registry::new()).expect("fresh registry");
        let driver = StreamDriver::new(stream.clone(), clock.clone(), metrics, false, feed);
        Self {
            driver,
            stream,
            clock,
            video: init_of(VIDEO),
            audio: init_of(AUDIO),
            run: 0,
        }
    }

    fn start_run(&mut self) {
        self.run += 1;
        let run = self.run;
        self.driver.handle(SupervisorEvent::Started { run });
        self.driver.handle(SupervisorEvent::Init {
            run,
            rendition: 0,
            init: self.video.0.clone(),
        });
        self.driver.handle(SupervisorEvent::Init {
            run,
            rendition: 1,
            init: self.audio.0.clone(),
        });
    }

    /// Feeds `secs` seconds of 30 fps video (keyframe every 2 s) and AAC audio from media time
    /// 10 s (the transcoder's offset), advancing the clock in step.
    fn feed(&mut self, secs: f64) {
        self.feed_from(0, secs);
    }

    /// Like [`Harness::feed`], from `from` seconds into the media (a run of a publish whose
    /// timestamps are kept starts where the publish is).
    fn feed_from(&mut self, from: u64, secs: f64) {
        let video_ts = self.video.0.tracks[0].timescale as u64;
        let frames = (secs * 30.0).round() as u64;
        let mut audio_t = (10 + from) * 48_000 - 1024;
        for i in 0..frames {
            self.push_video((10 + from) * video_ts + i * video_ts / 30, i % 60 == 0);
            let video_end = from as f64 + (i + 1) as f64 / 30.0;
            while ((audio_t + 1024) as f64 / 48_000.0) - 10.0 <= video_end {
                self.push_audio(audio_t);
                audio_t += 1024;
            }
        }
    }

    /// One 30 fps video frame at `t` (the video track's ticks), the clock moving a frame on.
    fn push_video(&mut self, t: u64, keyframe: bool) {
        let video_ts = self.video.0.tracks[0].timescale as u64;
        let mut s = self.video.1.clone();
        s.decode_time = t;
        s.duration = (video_ts / 30) as u32;
        s.flags = if keyframe {
            corral_transcoder::fmp4::SYNC_SAMPLE_FLAGS
        } else {
            corral_transcoder::fmp4::NON_SYNC_SAMPLE_FLAGS
        };
        self.clock.advance(1.0 / 30.0);
        self.driver.handle(SupervisorEvent::Fragment {
            run: self.run,
            rendition: 0,
            fragment: frag(self.video.0.tracks[0].track_id, s),
        });
    }

    /// One AAC frame at `t` (48 kHz ticks).
    fn push_audio(&mut self, t: u64) {
        let mut a = self.audio.1.clone();
        a.decode_time = t;
        a.duration = 1024;
        self.driver.handle(SupervisorEvent::Fragment {
            run: self.run,
            rendition: 1,
            fragment: frag(self.audio.0.tracks[0].track_id, a),
        });
    }

    /// A publish starts, as the controller says it: its runs share one media clock when
    /// `shared_clock` (RTMP's kept timestamps).
    fn begin_publish(&mut self, shared_clock: bool) {
        self.driver.control(Control::Publish { shared_clock });
        self.driver.control(Control::State(Lifecycle::Starting));
    }

    fn end_run(&mut self, outcome: RunOutcome) {
        let run = self.run;
        self.driver.handle(SupervisorEvent::Ended { run, outcome });
    }

    fn playlist(&self, index: usize) -> String {
        String::from_utf8(self.stream.media_playlist(index, Form::Full).body.to_vec())
            .expect("utf-8")
    }
}

fn frag(track_id: u32, sample: Sample) -> Fragment {
    Fragment {
        sequence: 1,
        tracks: vec![TrackRun {
            track_id,
            decode_time: sample.decode_time,
            samples: vec![sample],
        }],
    }
}

#[test]
fn msns_come_from_the_wall_clock_and_match_across_renditions() {
    let mut h = Harness::new();
    h.start_run();
    h.feed(4.0);
    for index in 0..2 {
        h.stream.renditions()[index].with_log(|log| {
            let complete: Vec<u64> = log
                .segments()
                .filter(|s| s.complete)
                .map(|s| s.msn)
                .collect();
            assert_eq!(complete, [900_000_000, 900_000_001], "rendition {index}");
        });
    }
    assert_eq!(h.stream.status().state, Lifecycle::Live);
    let text = h.playlist(0);
    assert!(
        text.contains("#EXT-X-MAP:URI=\"init-900000000.mp4\""),
        "{text}"
    );
    assert!(text.contains("#EXT-X-RENDITION-REPORT:URI=\"../a/index.m3u8\""));
    assert!(
        text.contains("#EXT-X-PROGRAM-DATE-TIME:2027-01-15T08:00:01.000Z"),
        "{text}"
    );
    let master = String::from_utf8(
        h.stream
            .master_playlist()
            .expect("both inits known")
            .to_vec(),
    )
    .expect("utf-8");
    assert!(master.contains("RESOLUTION=64x64"), "{master}");
    assert!(master.contains("mp4a.40.2"));
}

#[test]
fn a_transcoder_restart_brings_a_discontinuity_gaps_and_a_new_init() {
    let mut h = Harness::new();
    h.start_run();
    h.feed(4.0);
    h.end_run(RunOutcome::Failed {
        reason: "killed".into(),
        restart_in: Duration::from_millis(500),
    });
    assert_eq!(h.stream.status().state, Lifecycle::Restarting);
    assert_eq!(h.stream.status().restarts, 1);
    h.clock.advance(4.5);
    h.start_run();
    h.feed(2.0);
    h.stream.renditions()[0].with_log(|log| {
        let segments: Vec<(u64, bool, bool)> = log
            .segments()
            .map(|s| (s.msn, s.gap, s.discontinuity))
            .collect();
        // 4 s of media, a 4.5 s outage, then the new run anchored at floor(t / 2).
        assert_eq!(
            segments,
            [
                (900_000_000, false, false),
                (900_000_001, false, false),
                (900_000_002, true, false),
                (900_000_003, true, false),
                (900_000_004, false, true),
            ]
        );
    });
    let text = h.playlist(0);
    assert!(
        text.contains("#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init-900000004.mp4\""),
        "{text}"
    );
    assert_eq!(h.stream.status().state, Lifecycle::Live);
}

/// A publish whose timestamps the transcoder keeps: after ffmpeg fails, the next run's media
/// time continues the publish's, and it resumes the epoch: the MSNs and program date-times
/// of the media are those it would have had without the failure (and those a standby fed
/// the same publish gives it).
#[test]
fn a_restarted_run_of_a_publish_with_kept_timestamps_resumes_its_epoch() {
    for shared_clock in [true, false] {
        let mut h = Harness::fed(Feed::Published);
        h.begin_publish(shared_clock);
        h.start_run();
        h.feed(3.0);
        h.end_run(RunOutcome::Failed {
            reason: "killed".into(),
            restart_in: Duration::from_millis(500),
        });
        // The segment the failed run was cutting stays open (a standby has its next parts)
        // unless the next run cannot resume.
        let open =
            h.stream.renditions()[0].with_log(|log| log.segments().last().map(|s| !s.complete));
        assert_eq!(open, Some(shared_clock));
        // The new run joins the publish 8 s in, its first fragment 0.7 s later than the first
        // run's pace (ffmpeg's start-up).
        h.clock.advance(5.7);
        h.start_run();
        h.feed_from(8, 2.0);
        let first = h.stream.renditions()[0].with_log(|log| {
            log.segments()
                .map(|s| (s.msn, s.program_date_time, s.gap, s.init))
                .collect::<Vec<_>>()
        });
        let (msn0, pdt0) = (first[0].0, first[0].1);
        let last = *first.last().expect("segments");
        if shared_clock {
            assert_eq!(
                last.0,
                msn0 + 4,
                "media 8 s in is grid segment 4: {first:?}"
            );
            assert_eq!(last.1, pdt0 + Duration::from_secs(8), "{first:?}");
            assert_eq!(
                last.3, msn0,
                "the same init (the same bytes): no discontinuity"
            );
            assert!(!last.2);
            assert!(
                first[2].2 && first[3].2,
                "the failure's hole is gaps: {first:?}"
            );
            let text = h.playlist(0);
            assert!(!text.contains("#EXT-X-DISCONTINUITY\n"), "{text}");
        } else {
            // Rebased timestamps: the run anchors anew, 0.7 s off the old grid.
            assert_ne!(last.1, pdt0 + Duration::from_secs(8), "{first:?}");
        }
    }
}

#[test]
fn msns_never_repeat_even_when_a_restart_is_immediate() {
    let mut h = Harness::new();
    h.start_run();
    h.feed(3.0);
    h.end_run(RunOutcome::Failed {
        reason: "killed".into(),
        restart_in: Duration::ZERO,
    });
    h.start_run();
    h.feed(2.0);
    h.stream.renditions()[1].with_log(|log| {
        let msns: Vec<u64> = log.segments().map(|s| s.msn).collect();
        let mut sorted = msns.clone();
        sorted.dedup();
        assert_eq!(msns, sorted, "strictly increasing");
        assert!(log.segments().any(|s| s.discontinuity));
    });
}

#[test]
fn a_finished_source_ends_every_playlist() {
    let mut h = Harness::new();
    h.start_run();
    h.feed(3.0);
    h.end_run(RunOutcome::Finished);
    assert_eq!(h.stream.status().state, Lifecycle::Ended);
    for index in 0..2 {
        let text = h.playlist(index);
        assert!(text.ends_with("#EXT-X-ENDLIST\n"), "{text}");
        assert!(!text.contains("PRELOAD-HINT"));
    }
}

#[test]
fn events_of_an_old_run_are_ignored() {
    let mut h = Harness::new();
    h.start_run();
    h.feed(1.0);
    let stale = Fragment {
        sequence: 9,
        tracks: vec![TrackRun {
            track_id: 1,
            decode_time: 0,
            samples: vec![Sample {
                decode_time: 0,
                duration: 512,
                flags: 0,
                composition_offset: 0,
                data: Bytes::new(),
            }],
        }],
    };
    let before = h.stream.renditions()[0].with_log(|l| l.version());
    h.driver.handle(SupervisorEvent::Fragment {
        run: 0,
        rendition: 0,
        fragment: stale,
    });
    assert_eq!(h.stream.renditions()[0].with_log(|l| l.version()), before);
}

fn primary_epoch(anchor: SystemTime, base_msn: u64) -> EpochInfo {
    EpochInfo {
        run: 7,
        anchor_unix_ns: EpochInfo::nanos(anchor),
        base_msn,
        published: true,
    }
}

#[test]
fn a_standby_holds_its_first_parts_until_it_takes_the_primarys_epoch() {
    let mut h = Harness::fed(Feed::Published);
    h.driver.control(Control::State(Lifecycle::Starting));
    h.driver.control(Control::Follow(Follow::Waiting));
    h.start_run();
    h.feed(4.0);
    assert_eq!(h.stream.epoch(), None, "nothing anchored while it waits");
    assert_eq!(
        h.stream.renditions()[0].with_log(|log| log.segments().count()),
        0,
        "no part published while it waits"
    );
    // The primary saw the same publish 40 ms later, and numbers it from the same MSN.
    let theirs = start_time() + Duration::from_millis(40);
    h.driver
        .control(Control::Follow(Follow::Primary(primary_epoch(
            theirs,
            900_000_000,
        ))));
    let epoch = h.stream.epoch().expect("anchored");
    assert_eq!((epoch.anchor(), epoch.base_msn), (theirs, 900_000_000));
    assert!(epoch.published, "a publish's epoch, followable in turn");
    let text = h.playlist(0);
    assert!(
        text.contains("#EXT-X-PROGRAM-DATE-TIME:2027-01-15T08:00:01.040Z"),
        "dated by the primary's anchor: {text}"
    );
    assert!(
        text.contains("#EXT-X-MAP:URI=\"init-900000000.mp4\""),
        "{text}"
    );
    // Every part held back was published, in order.
    let parts: usize = h.stream.renditions()[0]
        .with_log(|log| log.segments().map(|s| s.parts.len()).sum::<usize>());
    assert!(parts >= 11, "{parts} parts for 4 s of media: {text}");
}

#[test]
fn dates_to_the_millisecond_never_put_a_rendition_after_its_media() {
    // Media that reached the origin 0.9 ms past a whole millisecond. Players print-read dates
    // to the millisecond and place the audio playlist on the video's by them: the audio
    // segment's date, less the video's, as printed, must not exceed the time between their
    // first samples, or a player looks for the next audio segment past where its media starts.
    let mut h = Harness::fed(Feed::Published);
    h.clock.advance(0.0009);
    h.driver.control(Control::State(Lifecycle::Starting));
    h.start_run();
    h.feed(12.0);
    let dates = |index: usize| -> Vec<(u64, SystemTime)> {
        h.stream.renditions()[index].with_log(|log| {
            log.segments()
                .map(|s| (s.msn, s.program_date_time))
                .collect()
        })
    };
    let millis = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_millis()
    };
    let (video, audio) = (dates(0), dates(1));
    assert!(video.len() >= 5, "{video:?}");
    for ((msn, v), (audio_msn, a)) in video.iter().zip(&audio) {
        assert_eq!(msn, audio_msn);
        let printed = millis(*a) as f64 - millis(*v) as f64;
        let exact = a
            .duration_since(*v)
            .map_or_else(|e| -e.duration().as_secs_f64(), |d| d.as_secs_f64())
            * 1000.0;
        assert!(
            printed <= exact + 1e-6,
            "segment {msn}: audio dated {printed} ms after video, its media starts {exact:.3} ms after"
        );
    }
}

#[test]
fn a_standby_anchors_itself_when_the_primary_is_on_another_publish_or_has_none() {
    for primary in [
        Follow::Own,
        Follow::Primary(primary_epoch(start_time() + Duration::from_secs(3), 1)),
    ] {
        let mut h = Harness::fed(Feed::Published);
        h.driver.control(Control::State(Lifecycle::Starting));
        h.driver.control(Control::Follow(Follow::Waiting));
        h.start_run();
        h.feed(0.5);
        h.driver.control(Control::Follow(primary));
        let epoch = h.stream.epoch().expect("anchored");
        assert_eq!(
            (epoch.anchor(), epoch.base_msn),
            (start_time(), 900_000_000),
            "its own anchor, from when the media arrived, not when it stopped waiting"
        );
    }
}

#[test]
fn a_publish_whose_video_starts_a_frame_late_keeps_every_frame_and_one_grid() {
    // A publisher's first video frame lands a frame after its first audio (FLV timestamps 0 and
    // 21 ms; the transcoder's 30 fps filter puts that frame at 1/30 s). ffmpeg forces its
    // keyframes every 2 s from that frame, so the run's grid follows it: every video segment
    // starts on its keyframe with no frame dropped, and audio is cut on the same grid.
    let mut h = Harness::fed(Feed::Published);
    h.driver.control(Control::State(Lifecycle::Starting));
    h.start_run();
    let video_ts = h.video.0.tracks[0].timescale as u64;
    let mut audio_t = 10 * 48_000 - 1024;
    for i in 0..(6 * 30) {
        let frame = i + 1;
        // Audio up to the frame's start goes first, as it can from its own pipe.
        while (audio_t as f64 / 48_000.0) < 10.0 + frame as f64 / 30.0 {
            h.push_audio(audio_t);
            audio_t += 1024;
        }
        h.push_video(10 * video_ts + frame * video_ts / 30, i % 60 == 0);
    }
    let complete = |index: usize| {
        h.stream.renditions()[index].with_log(|log| {
            log.segments()
                .filter(|s| s.complete)
                .map(|s| (s.msn, s.duration, s.parts.len()))
                .collect::<Vec<_>>()
        })
    };
    let video = complete(0);
    assert!(video.len() >= 2, "{video:?}");
    for (msn, duration, parts) in &video {
        assert!((duration - 2.0).abs() < 1e-6, "segment {msn}: {video:?}");
        assert_eq!(*parts, 6, "segment {msn}: {video:?}");
    }
    let audio = complete(1);
    for (msn, duration, parts) in audio.iter().skip(1) {
        assert!((duration - 2.0).abs() < 0.011, "segment {msn}: {audio:?}");
        assert_eq!(*parts, 6, "segment {msn}: {audio:?}");
    }
    assert_eq!(video[0].0, audio[0].0, "the same first MSN");
}

#[test]
fn a_publish_is_dated_by_the_publishers_clock_not_the_transcoders_first_output() {
    // The publisher's timestamp 0 reached the origin at the start; ffmpeg probed its input for
    // 0.6 s before its first fragment came out. The publish's dates count from the publisher's
    // clock (every frame dated before it reached the origin), not from that first output.
    // Rebased timestamps (SRT) keep the output's anchor: their media time is ffmpeg's own.
    for shared_clock in [true, false] {
        let mut h = Harness::fed(Feed::Published);
        h.begin_publish(shared_clock);
        h.driver.control(Control::PublisherClock(start_time()));
        h.clock.advance(0.6);
        h.start_run();
        h.feed(3.0);
        let anchor = h.stream.epoch().expect("anchored").anchor();
        let expected = if shared_clock {
            start_time()
        } else {
            start_time() + Duration::from_millis(600)
        };
        assert_eq!(anchor, expected, "shared clock {shared_clock}");
    }
}

#[test]
fn the_slate_and_the_next_publish_do_not_reuse_a_publishers_clock() {
    let mut h = Harness::fed(Feed::Published);
    h.begin_publish(true);
    h.driver.control(Control::PublisherClock(start_time()));
    h.start_run();
    h.feed(2.0);
    h.end_run(RunOutcome::Finished);
    // The slate plays while the publisher is away: its own media, anchored where it comes out.
    h.driver.control(Control::State(Lifecycle::Reconnecting));
    h.clock.advance(1.0);
    let slate_start = h.clock.now();
    h.start_run();
    h.feed(2.0);
    assert_eq!(
        h.stream.epoch().expect("the slate's epoch").anchor(),
        whole_millis(slate_start)
    );
    h.end_run(RunOutcome::Finished);
    // The next publish has not said when its clock started yet: its first output dates it.
    h.begin_publish(true);
    h.clock.advance(1.0);
    let next_start = h.clock.now();
    h.start_run();
    h.feed(2.0);
    assert_eq!(
        h.stream.epoch().expect("anchored").anchor(),
        whole_millis(next_start)
    );
}
