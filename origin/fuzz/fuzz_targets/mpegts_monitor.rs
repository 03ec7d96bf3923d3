//! Fuzzes `corral_origin::ingest::mpegts::TsMonitor`, which reads the untrusted MPEG transport
//! stream of every SRT publisher on its way to the transcoder.
//!
//! Input layout: the first byte chooses how the rest is cut into `push` calls (0: one push;
//! otherwise pieces of 1 to that many bytes), so packets are also seen split across reads.
//!
//! Checked: nothing panics; the counts stay consistent (no more keyframes than video frames, no
//! more packets than whole 188-byte packets fed); and the same bytes in one piece give the same
//! counts as in many.

#![no_main]

use corral_origin::ingest::mpegts::{PACKET_LEN, TsMonitor};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else {
        return;
    };
    let mut pieces = TsMonitor::default();
    let mut rest = stream;
    let mut state = u32::from(split) | 0x100;
    while !rest.is_empty() {
        let len = if split == 0 {
            rest.len()
        } else {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            1 + (state % u32::from(split)) as usize
        };
        let (piece, tail) = rest.split_at(len.min(rest.len()));
        pieces.push(piece);
        rest = tail;
    }
    let stats = pieces.stats();
    assert!(stats.keyframes <= stats.video_frames);
    assert!(stats.packets as usize <= stream.len() / PACKET_LEN);
    let mut whole = TsMonitor::default();
    whole.push(stream);
    assert_eq!(whole.stats(), stats, "splitting the input changes nothing");
});
