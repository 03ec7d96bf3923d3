//! Fuzzes `corral_origin::ingest::mpegts::TsMonitor`, which reads the untrusted MPEG transport
//! stream of every SRT publisher on its way to the transcoder, and the starvation guard
//! `TsFreezer` built on it, which can insert and drop video packets.
//!
//! Input layout: the first byte chooses how the rest is cut into `push` calls (0: one push;
//! otherwise pieces of 1 to that many bytes), so packets are also seen split across reads.
//!
//! Checked: nothing panics; the counts stay consistent (no more keyframes than video frames, no
//! more packets than whole 188-byte packets fed); and the same bytes in one piece give the same
//! counts as in many. The freezer, fed the same pieces with a starvation check after each at a
//! clock that the pieces' lengths move on, writes only whole packets; without those checks it
//! passes every whole packet unchanged.

#![no_main]

use std::time::{Duration, Instant};

use corral_origin::ingest::mpegts::{PACKET_LEN, TsMonitor};
use corral_origin::ingest::starvation::{Tick, TsFreezer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else {
        return;
    };
    let mut pieces = TsMonitor::default();
    let mut freezer = TsFreezer::default();
    let mut passed = TsFreezer::default();
    let (mut frozen_out, mut passed_out) = (Vec::new(), Vec::new());
    let t0 = Instant::now();
    let mut clock = Duration::ZERO;
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
        clock += Duration::from_millis(piece.len() as u64 % 500);
        freezer.push(piece, t0 + clock, &mut frozen_out);
        if let Tick::Starved(frame) | Tick::Frozen(frame) = freezer.tick(t0 + clock) {
            assert_eq!(frame.len() % PACKET_LEN, 0, "a freeze frame of whole packets");
            frozen_out.extend_from_slice(&frame);
        }
        passed.push(piece, t0, &mut passed_out);
        rest = tail;
    }
    let stats = pieces.stats();
    assert!(stats.keyframes <= stats.video_frames);
    assert!(stats.packets as usize <= stream.len() / PACKET_LEN);
    let mut whole = TsMonitor::default();
    whole.push(stream);
    assert_eq!(whole.stats(), stats, "splitting the input changes nothing");
    assert_eq!(frozen_out.len() % PACKET_LEN, 0, "only whole packets go out");
    let whole_packets = stream.len() / PACKET_LEN * PACKET_LEN;
    assert_eq!(passed_out, stream[..whole_packets], "no starvation check, no change");
});
