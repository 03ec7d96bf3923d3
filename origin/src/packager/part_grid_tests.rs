//! The part grid across renditions: video and audio cut from the same stream timing give parts
//! that cover the same media time under the same (MSN, part index), and none is longer than the
//! advertised `PART-TARGET`, whatever the frame rate, sample rate and part duration.

use corral_transcoder::fmp4::Sample;
use proptest::prelude::*;

use super::params::{LlhlsParams, MediaTiming};
use super::segmenter::tests::sample;
use super::segmenter::{BoundaryPolicy, Segmenter, SegmenterConfig, SegmenterOutput};

/// Media time 10 s, where the transcoder puts the grid's origin.
const ORIGIN_SECS: u64 = 10;

/// A part as seconds of media time.
#[derive(Debug, Clone, Copy)]
struct Span {
    segment: u64,
    index: u32,
    start: f64,
    end: f64,
}

fn segmenter(params: &LlhlsParams, timescale: u32, video: bool) -> Segmenter {
    Segmenter::new(SegmenterConfig {
        track_id: 1,
        timescale,
        grid_origin: ORIGIN_SECS * u64::from(timescale),
        segment_duration: params.segment_duration,
        part_target: params.part_target,
        parts_per_segment: params.parts_per_segment,
        video,
        policy: BoundaryPolicy::Grid,
    })
}

fn spans(seg: &mut Segmenter, samples: Vec<Sample>, timescale: u32) -> Vec<Span> {
    let ts = f64::from(timescale);
    samples
        .into_iter()
        .flat_map(|s| seg.push(s))
        .filter_map(|o| match o {
            SegmenterOutput::Part(p) => Some(Span {
                segment: p.segment,
                index: p.index,
                start: p.start as f64 / ts,
                end: (p.start + p.duration) as f64 / ts,
            }),
            SegmenterOutput::SegmentEnd { .. } => None,
        })
        .collect()
}

/// Video as the transcoder writes it: frames on the 1/fps grid of media time (rounded to the
/// track's ticks), a keyframe at the first frame of every segment.
fn video_samples(params: &LlhlsParams, fps: u32, timescale: u32, seconds: u64) -> Vec<Sample> {
    let frames = seconds * u64::from(fps);
    let per_gop = (params.segment_duration * f64::from(fps)).round() as u64;
    let tick = |frame: u64| {
        (ORIGIN_SECS * u64::from(timescale))
            + (frame as f64 * f64::from(timescale) / f64::from(fps)).round() as u64
    };
    (0..frames)
        .map(|i| {
            let duration = (tick(i + 1) - tick(i)) as u32;
            sample(tick(i), duration, i % per_gop == 0)
        })
        .collect()
}

/// AAC as the transcoder writes it: 1024-sample frames, the first one priming before the origin.
/// With `ms_rounded`, each frame's time is the millisecond a publisher's FLV timestamps carried
/// (ffmpeg keeps them with `-copyts`), so frames are 1016 to 1032 ticks apart at 48 kHz.
fn audio_samples(sample_rate: u32, seconds: u64, shift: u64, ms_rounded: bool) -> Vec<Sample> {
    let start = ORIGIN_SECS * u64::from(sample_rate) - 1024 + shift;
    let frames = seconds * u64::from(sample_rate) / 1024;
    let rate = f64::from(sample_rate);
    let at = |i: u64| {
        let exact = start + i * 1024;
        if ms_rounded {
            ((exact as f64 / rate * 1000.0).round() / 1000.0 * rate).round() as u64
        } else {
            exact
        }
    };
    (0..frames)
        .map(|i| sample(at(i), (at(i + 1) - at(i)) as u32, true))
        .collect()
}

/// Cuts `seconds` of video and audio with `params`; checks both and returns the worst distance
/// between the boundaries of the same part in the two renditions, in seconds.
fn cut_both(
    params: &LlhlsParams,
    fps: u32,
    video_timescale: u32,
    sample_rate: u32,
    shift: u64,
    ms_rounded: bool,
) -> f64 {
    let seconds = 3 * params.segment_duration.ceil() as u64 + 1;
    let mut v = segmenter(params, video_timescale, true);
    let video = spans(
        &mut v,
        video_samples(params, fps, video_timescale, seconds + 1),
        video_timescale,
    );
    let mut a = segmenter(params, sample_rate, false);
    let audio = spans(
        &mut a,
        audio_samples(sample_rate, seconds + 1, shift, ms_rounded),
        sample_rate,
    );
    for p in video.iter().chain(&audio) {
        assert!(
            p.end - p.start <= params.part_target + 1e-9,
            "{p:?} is longer than PART-TARGET {}",
            params.part_target
        );
    }
    // Every full segment has the grid's number of parts in both renditions.
    let full: Vec<u64> = (1..seconds / params.segment_duration.ceil() as u64).collect();
    for k in &full {
        let count = |spans: &[Span]| spans.iter().filter(|p| p.segment == *k).count() as u64;
        assert_eq!(count(&video), params.parts_per_segment, "video segment {k}");
        assert_eq!(count(&audio), params.parts_per_segment, "audio segment {k}");
    }
    let mut worst = 0.0_f64;
    for vp in video.iter().filter(|p| full.contains(&p.segment)) {
        let ap = audio
            .iter()
            .find(|a| (a.segment, a.index) == (vp.segment, vp.index))
            .expect("the same part in the audio");
        worst = worst
            .max((vp.start - ap.start).abs())
            .max((vp.end - ap.end).abs());
    }
    worst
}

#[test]
fn the_local_ladder_cuts_audio_on_the_video_parts() {
    // 30 fps and 48 kHz, 2 s segments of six parts: video parts are ten frames exactly, audio
    // parts 15 or 16 AAC frames, none a leftover sliver at the segment's end.
    let params = LlhlsParams::default();
    let worst = cut_both(&params, 30, 15_360, 48_000, 0, false);
    assert!(worst <= 512.0 / 48_000.0 + 1e-9, "{worst}");
}

#[test]
fn audio_with_a_publishers_millisecond_timestamps_has_no_sliver_parts() {
    // A published stream's AAC frames are 21 or 22 ms apart: a frame a few ticks earlier than
    // the one before predicted still starts the next cell (it used to be cut as a part of one
    // frame, a 21 ms sliver, three times a segment).
    let params = LlhlsParams::default();
    for shift in (0..1024).step_by(8) {
        let worst = cut_both(&params, 30, 15_360, 48_000, shift, true);
        assert!(worst <= 1024.0 / 48_000.0 + 0.001, "shift {shift}: {worst}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_rendition_cuts_the_same_parts(
        fps in prop::sample::select(vec![24u32, 25, 30, 48, 50, 60]),
        sample_rate in prop::sample::select(vec![44_100u32, 48_000]),
        gop_seconds in prop::sample::select(vec![1.0f64, 2.0, 4.0]),
        wanted in 0.2f64..0.5,
        video_timescale_per_frame in prop::sample::select(vec![0u32, 512, 1000]),
        shift in 0u64..1024,
        ms_rounded in any::<bool>(),
    ) {
        // The video track's timescale as ffmpeg picks it: a multiple of the frame rate, or 90 kHz.
        let video_timescale = if video_timescale_per_frame == 0 {
            90_000
        } else {
            fps * video_timescale_per_frame
        };
        let params = LlhlsParams::new(
            gop_seconds,
            wanted,
            MediaTiming { fps, audio_sample_rate: sample_rate },
        );
        let audio_frame = 1024.0 / f64::from(sample_rate);
        let cell_frames = params.part_duration() * f64::from(fps);
        let whole_frames = (cell_frames - cell_frames.round()).abs() < 1e-6;
        // Audio sits within half a frame of each cell boundary; video on it when a cell is whole
        // frames, else up to a frame after it.
        let bound = if whole_frames {
            audio_frame
        } else {
            1.0 / f64::from(fps) + audio_frame / 2.0
        } + if ms_rounded { 0.001 } else { 0.0 };
        let worst = cut_both(&params, fps, video_timescale, sample_rate, shift, ms_rounded);
        prop_assert!(worst <= bound + 1e-6, "{worst} s apart (bound {bound}), {params:?}");
        prop_assert!(params.part_target < wanted * 1.25 + audio_frame, "{params:?}");
    }
}
