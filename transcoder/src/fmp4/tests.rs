//! Tests of the fMP4 reader and writer against fragments that ffmpeg wrote
//! (`tests/fixtures`, made with `-movflags +cmaf+frag_every_frame+skip_trailer+frag_discont`).

use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;

const VIDEO: &[u8] = include_bytes!("../../tests/fixtures/video.mp4");
const AUDIO: &[u8] = include_bytes!("../../tests/fixtures/audio.mp4");
const BFRAMES: &[u8] = include_bytes!("../../tests/fixtures/bframes.mp4");

/// Reads every event of `data`, fed in pieces of `chunk` bytes.
fn read_all(data: &[u8], chunk: usize) -> (Vec<Fmp4Event>, Vec<Fmp4Error>, Fmp4Reader) {
    let mut reader = Fmp4Reader::default();
    let mut events = Vec::new();
    let mut errors = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        reader.push(piece);
        loop {
            match reader.next_event() {
                Ok(Some(e)) => events.push(e),
                Ok(None) => break,
                Err(e) => {
                    let fatal = reader.is_failed();
                    errors.push(e);
                    if fatal {
                        break;
                    }
                }
            }
        }
    }
    (events, errors, reader)
}

fn init_of(events: &[Fmp4Event]) -> Arc<InitSegment> {
    match events.first() {
        Some(Fmp4Event::Init(init)) => init.clone(),
        other => panic!("first event is not an init segment: {other:?}"),
    }
}

fn fragments(events: &[Fmp4Event]) -> Vec<&Fragment> {
    events
        .iter()
        .filter_map(|e| match e {
            Fmp4Event::Fragment(f) => Some(f),
            Fmp4Event::Init(_) => None,
        })
        .collect()
}

#[test]
fn reads_ffmpeg_video_init_and_one_fragment_per_frame() {
    let (events, errors, reader) = read_all(VIDEO, VIDEO.len());
    assert!(errors.is_empty(), "{errors:?}");
    reader.finish().expect("the stream ends on a box boundary");
    let init = init_of(&events);
    assert_eq!(init.tracks.len(), 1);
    let track = &init.tracks[0];
    assert_eq!(
        track.media,
        MediaKind::Video {
            width: 64,
            height: 64
        }
    );
    let codec = track.codec.as_deref().expect("avc1 codec string");
    assert!(codec.starts_with("avc1.") && codec.len() == 11, "{codec}");
    assert_eq!(&init.bytes[4..8], b"ftyp", "init bytes start with ftyp");

    let frags = fragments(&events);
    assert_eq!(frags.len(), 15, "0.5 s at 30 fps");
    let frame = u64::from(track.timescale) / 30;
    // -output_ts_offset 10 with frag_discont keeps real decode times.
    assert_eq!(
        frags[0].tracks[0].decode_time,
        10 * u64::from(track.timescale)
    );
    for (i, f) in frags.iter().enumerate() {
        let run = &f.tracks[0];
        assert_eq!(run.samples.len(), 1);
        assert_eq!(run.duration(), frame, "fragment {i}");
        assert_eq!(
            run.is_keyframe(),
            i == 0,
            "only the first frame is a keyframe (g=15)"
        );
        if i > 0 {
            let prev = &frags[i - 1].tracks[0];
            assert_eq!(
                run.decode_time,
                prev.decode_time + prev.duration(),
                "contiguous"
            );
        }
        assert!(!run.samples[0].data.is_empty());
    }
}

#[test]
fn reads_ffmpeg_audio_with_codec_rate_and_channels() {
    let (events, errors, _) = read_all(AUDIO, 4096);
    assert!(errors.is_empty(), "{errors:?}");
    let init = init_of(&events);
    let track = &init.tracks[0];
    assert_eq!(track.codec.as_deref(), Some("mp4a.40.2"));
    assert_eq!(
        track.media,
        MediaKind::Audio {
            sample_rate: 48_000,
            channels: 2
        }
    );
    let frags = fragments(&events);
    assert!(frags.len() >= 23, "about 0.5 s of 1024-sample AAC frames");
    assert!(
        frags.iter().all(|f| f.tracks[0].is_keyframe()),
        "every AAC frame is a sync sample"
    );
    let (last, full) = frags.split_last().expect("fragments");
    assert!(
        full.iter().all(|f| f.tracks[0].duration() == 1024),
        "one AAC frame per fragment"
    );
    assert!(
        last.tracks[0].duration() <= 1024,
        "the final frame may be trimmed"
    );
}

#[test]
fn reads_negative_composition_offsets_of_b_frames() {
    let (events, errors, _) = read_all(BFRAMES, 1000);
    assert!(errors.is_empty(), "{errors:?}");
    let frags = fragments(&events);
    assert_eq!(frags.len(), 15);
    let offsets: Vec<i32> = frags
        .iter()
        .map(|f| f.tracks[0].samples[0].composition_offset)
        .collect();
    assert!(
        offsets.iter().any(|&o| o != offsets[0]),
        "B-frames reorder: {offsets:?}"
    );
}

#[test]
fn boxes_split_across_reads_give_the_same_events() {
    let (whole, _, _) = read_all(VIDEO, VIDEO.len());
    for chunk in [1, 3, 7, 100, 1500] {
        let (split, errors, _) = read_all(VIDEO, chunk);
        assert!(errors.is_empty(), "chunk {chunk}: {errors:?}");
        assert_eq!(split, whole, "chunk size {chunk}");
    }
}

#[test]
fn a_truncated_stream_is_reported_at_the_end() {
    let cut = &VIDEO[..VIDEO.len() - 10];
    let (events, errors, reader) = read_all(cut, 512);
    assert!(errors.is_empty());
    assert_eq!(
        fragments(&events).len(),
        14,
        "the last fragment is incomplete"
    );
    let err = reader.finish().expect_err("cut inside the last box");
    assert!(matches!(err, Fmp4Error::Truncated { .. }), "{err}");
}

#[test]
fn garbage_loses_framing_once_and_then_refuses_everything() {
    let mut reader = Fmp4Reader::default();
    reader.push(&[0, 0, 0, 3, b'j', b'u', b'n', b'k', 1, 2, 3]);
    let err = reader.next_event().expect_err("size below header");
    assert!(err.to_string().contains("junk"), "{err}");
    assert!(reader.is_failed());
    reader.push(VIDEO);
    assert!(matches!(reader.next_event(), Err(Fmp4Error::Unframed(_))));
    assert_eq!(reader.buffered(), 0, "nothing is buffered after failure");
}

#[test]
fn a_box_over_the_limit_is_refused_before_it_is_buffered() {
    let mut reader = Fmp4Reader::new(1024);
    let mut data = vec![0, 0, 0, 1, b'm', b'd', b'a', b't'];
    data.extend_from_slice(&(1u64 << 40).to_be_bytes());
    reader.push(&data);
    let err = reader.next_event().expect_err("too large");
    assert!(
        matches!(err, Fmp4Error::TooLarge { size, .. } if size == 1 << 40),
        "{err}"
    );
}

#[test]
fn a_fragment_before_the_init_segment_is_dropped_and_reading_goes_on() {
    let (events, _, _) = read_all(VIDEO, VIDEO.len());
    let frag_start = 28 + 746;
    let mut data = VIDEO[frag_start..].to_vec();
    data.extend_from_slice(VIDEO);
    let (events2, errors, reader) = read_all(&data, 256);
    assert!(!reader.is_failed());
    assert!(
        errors
            .iter()
            .all(|e| matches!(e, Fmp4Error::Invalid { .. })),
        "{errors:?}"
    );
    assert_eq!(fragments(&events2).len(), fragments(&events).len());
}

#[test]
fn a_sample_pointing_outside_its_mdat_is_an_error_not_a_panic() {
    let (events, _, _) = read_all(VIDEO, VIDEO.len());
    let init = init_of(&events);
    let frag = fragments(&events)[1];
    let bytes = write_fragment(1, 1, &frag.tracks[0].samples);
    // Shrink the mdat: the trun now points past its end.
    let moof_len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let mut broken = bytes[..bytes.len() - 4].to_vec();
    let mdat_len = (broken.len() - moof_len) as u32;
    broken[moof_len..moof_len + 4].copy_from_slice(&mdat_len.to_be_bytes());
    let err = Fragment::parse(&Bytes::from(broken), moof_len, 8, &init).expect_err("overrun");
    assert!(err.to_string().contains("outside the mdat"), "{err}");
}

#[test]
fn written_fragments_read_back_with_identical_samples() {
    for fixture in [VIDEO, AUDIO, BFRAMES] {
        let (events, _, _) = read_all(fixture, fixture.len());
        let init = init_of(&events);
        let track_id = init.tracks[0].track_id;
        let samples: Vec<Sample> = fragments(&events)
            .iter()
            .flat_map(|f| f.tracks[0].samples.clone())
            .collect();
        for group in samples.chunks(4) {
            let bytes = write_fragment(9, track_id, group);
            let moof_len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
            let parsed = Fragment::parse(&bytes, moof_len, 8, &init).expect("our own output");
            assert_eq!(parsed.sequence, 9);
            assert_eq!(parsed.tracks[0].samples, group);
        }
    }
}

/// Found by the fmp4_reader fuzz target: a `tfdt` of `u64::MAX` made the decode-time sum
/// overflow (a panic with overflow checks, wrapped times without).
#[test]
fn a_decode_time_at_the_end_of_u64_is_refused_not_overflowed() {
    const FRAGMENT: &str = "000000646d6f6f66000000106d66686400000000000000010000004c7472616600000010746668640002000000000001000000147466647401000000ffffffffffffffff000000207472756e00000701000000010000006c000000010000000102000000000000096d64617400";
    let fragment: Vec<u8> = (0..FRAGMENT.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&FRAGMENT[i..i + 2], 16).expect("hex"))
        .collect();
    let mut data = VIDEO[..28 + 746].to_vec();
    data.extend_from_slice(&fragment);
    let (events, errors, reader) = read_all(&data, data.len());
    assert_eq!(events.len(), 1, "only the init segment");
    assert!(!reader.is_failed(), "the framing is intact");
    assert!(
        matches!(&errors[..], [Fmp4Error::Invalid { box_type, .. }] if box_type == "tfdt"),
        "{errors:?}"
    );
}

fn arb_sample() -> impl Strategy<Value = (u32, bool, i32, Vec<u8>)> {
    (
        1u32..100_000,
        any::<bool>(),
        -5000i32..5000,
        proptest::collection::vec(any::<u8>(), 0..64),
    )
}

proptest! {
    #[test]
    fn arbitrary_bytes_in_arbitrary_pieces_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..2048),
        chunk in 1usize..300,
    ) {
        let mut prefixed = VIDEO[..28 + 746].to_vec();
        prefixed.extend_from_slice(&data);
        let _ = read_all(&prefixed, chunk);
        let _ = read_all(&data, chunk);
    }

    #[test]
    fn corrupting_one_byte_of_a_real_stream_never_panics(index in 0usize..8139, value: u8) {
        let mut data = VIDEO.to_vec();
        let i = index % data.len();
        data[i] = value;
        let (_, _, reader) = read_all(&data, 700);
        let _ = reader.finish();
    }

    #[test]
    fn any_samples_survive_a_write_and_read(
        raw in proptest::collection::vec(arb_sample(), 1..20),
        start in 0u64..(1 << 40),
    ) {
        let (events, _, _) = read_all(VIDEO, VIDEO.len());
        let init = init_of(&events);
        let mut t = start;
        let samples: Vec<Sample> = raw
            .into_iter()
            .map(|(duration, sync, cto, data)| {
                let s = Sample {
                    decode_time: t,
                    duration,
                    flags: if sync { SYNC_SAMPLE_FLAGS } else { NON_SYNC_SAMPLE_FLAGS },
                    composition_offset: cto,
                    data: Bytes::from(data),
                };
                t += u64::from(duration);
                s
            })
            .collect();
        let bytes = write_fragment(1, init.tracks[0].track_id, &samples);
        let moof_len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        let parsed = Fragment::parse(&bytes, moof_len, 8, &init).expect("our own output");
        prop_assert_eq!(&parsed.tracks[0].samples, &samples);
    }
}
