//! Fuzzes `corral_transcoder::fmp4::Fmp4Reader`, the push parser of the fragmented-MP4 bytes
//! ffmpeg writes, and the `write_fragment` / `Fragment::parse` round trip of what it reads.
//!
//! Input layout: the first byte chooses how the rest is cut into `push` calls (0: one push;
//! otherwise pieces of pseudo-random sizes between 1 and that byte), so that every box header
//! and payload is also seen split across reads. The remaining bytes are the stream.
//!
//! Checked: nothing panics; every event is drained until `Ok(None)` or a fatal (unframed) error;
//! `finish` returns; and the first track of every fragment, written back with `write_fragment`
//! and parsed again, yields the same samples.

#![no_main]

use std::sync::Arc;

use corral_transcoder::fmp4::{Fmp4Event, Fmp4Reader, Fragment, InitSegment, write_fragment};
use libfuzzer_sys::fuzz_target;

/// Box size limit for the reader: far above the seed streams (a few KiB each), small enough that
/// a corrupt size field does not make every run reserve the default 32 MiB.
const MAX_BOX_LEN: usize = 1024 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else {
        return;
    };
    let mut reader = Fmp4Reader::new(MAX_BOX_LEN);
    let mut init: Option<Arc<InitSegment>> = None;
    let mut rest = stream;
    let mut state = u32::from(split) | 0x100;
    while !rest.is_empty() {
        let len = if split == 0 {
            rest.len()
        } else {
            // A small xorshift keeps the piece sizes varied but reproducible.
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            1 + (state % u32::from(split)) as usize
        };
        let (piece, tail) = rest.split_at(len.min(rest.len()));
        rest = tail;
        reader.push(piece);
        if !drain(&mut reader, &mut init) {
            break;
        }
    }
    let _ = reader.finish();
});

/// Reads events until the reader needs more bytes; returns false once the framing is lost.
fn drain(reader: &mut Fmp4Reader, init: &mut Option<Arc<InitSegment>>) -> bool {
    loop {
        match reader.next_event() {
            Ok(None) => return true,
            Ok(Some(Fmp4Event::Init(segment))) => *init = Some(segment),
            Ok(Some(Fmp4Event::Fragment(fragment))) => {
                let init = init
                    .as_ref()
                    .expect("the reader emits no fragment before an init segment");
                round_trip(&fragment, init);
            }
            Err(_) if reader.is_failed() => return false,
            Err(_) => {}
        }
    }
}

/// Writes the fragment's first track back as `moof` + `mdat` and checks it parses to the same
/// samples.
fn round_trip(fragment: &Fragment, init: &InitSegment) {
    let run = &fragment.tracks[0];
    let bytes = write_fragment(fragment.sequence, run.track_id, &run.samples);
    let moof_len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let parsed = match Fragment::parse(&bytes, moof_len, 8, init) {
        Ok(parsed) => parsed,
        Err(e) => panic!("write_fragment output does not parse back: {e}"),
    };
    assert_eq!(parsed.sequence, fragment.sequence);
    assert_eq!(parsed.tracks.len(), 1);
    let back = &parsed.tracks[0];
    assert_eq!(back.track_id, run.track_id);
    assert_eq!(back.decode_time, run.decode_time);
    assert_eq!(
        back.samples, run.samples,
        "samples changed in a write/parse round trip"
    );
}
