//! The starvation guard for SRT: the transport stream passes through unchanged until the
//! publisher's video starves while its audio flows (see the parent module); then the last
//! keyframe's PES is sent again, restamped with the audio's clock, and real video resumes at
//! the next keyframe.
//!
//! Inserting and dropping packets on the video PID must not look like loss to ffmpeg, which
//! discards a PES whose continuity counter skips: the guard renumbers the video PID's counters
//! by an offset that grows by each packet inserted and shrinks by each packet dropped, so a
//! real loss on the way in still shows as a skip on the way out. Inserted packets carry no PCR
//! (the program clock must not step back). Bounded: one keyframe of at most
//! [`MAX_KEYFRAME_BYTES`] is kept, and while frozen at most one frame is held back.

use std::time::Instant;

use super::{Starvation, Tick};
use crate::ingest::mpegts::{
    PACKET_LEN, PacketKind, PacketSplitter, TsMonitor, TsStats, VideoCodec, encode_timestamp,
    packet_payload, pes_timestamps,
};

/// The largest keyframe kept for repeating. x264 at 20 Mbit/s makes keyframes of a few
/// hundred kilobytes; a larger PES is not kept (and no freeze frame is made from it).
pub const MAX_KEYFRAME_BYTES: usize = 2 << 20;

/// PTS and DTS are 33-bit counters of a 90 kHz clock.
const TS_CLOCK_WRAP: u64 = 1 << 33;

type Packet = [u8; PACKET_LEN];

/// One video PES as it arrives.
#[derive(Debug, Default)]
struct Frame {
    packets: Vec<Packet>,
    /// Its decode time (unwrapped), when the header carried one.
    ts: Option<u64>,
    /// Larger than [`MAX_KEYFRAME_BYTES`]: its packets are no longer kept.
    oversized: bool,
    /// The monitor found a keyframe NAL unit in it.
    keyframe: bool,
}

impl Frame {
    /// A whole keyframe worth repeating.
    fn is_repeatable(&self) -> bool {
        self.keyframe && !self.oversized && !self.packets.is_empty() && self.ts.is_some()
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct TsFreezer {
    monitor: TsMonitor,
    splitter: PacketSplitter,
    clock: Starvation,
    unwrap: Unwrapper,
    /// The video PES being read (kept while it may be a keyframe).
    current: Frame,
    /// The current frame is held back, not yet written: video after a freeze, until it is
    /// known to be a keyframe.
    holding: bool,
    last_keyframe: Option<Frame>,
    /// Added to the video PID's continuity counters on the way out.
    cc_offset: u8,
    /// The last continuity counter written on the video PID.
    last_cc_out: Option<u8>,
    /// Video frames dropped after a freeze, waiting for a keyframe.
    dropped_frames: u64,
}

impl Default for TsFreezer {
    fn default() -> Self {
        Self {
            monitor: TsMonitor::default(),
            splitter: PacketSplitter::default(),
            clock: Starvation::new(90_000),
            unwrap: Unwrapper::default(),
            current: Frame::default(),
            holding: false,
            last_keyframe: None,
            cc_offset: 0,
            last_cc_out: None,
            dropped_frames: 0,
        }
    }
}

impl TsFreezer {
    /// What the monitor has counted (packets, frames, keyframes, losses).
    pub fn stats(&self) -> TsStats {
        self.monitor.stats()
    }

    /// The video codec, once the PMT was read.
    pub fn video_codec(&self) -> Option<VideoCodec> {
        self.monitor.video_codec()
    }

    /// Whether the picture is frozen.
    pub fn is_frozen(&self) -> bool {
        self.clock.is_frozen()
    }

    /// Video frames dropped so far because they followed a freeze and were not keyframes.
    pub fn dropped_frames(&self) -> u64 {
        self.dropped_frames
    }

    /// Reads `data` (packets split anywhere) and appends what goes on to the transcoder to
    /// `out`: whole packets, unchanged unless a freeze is under way.
    pub fn push(&mut self, data: &[u8], now: Instant, out: &mut Vec<u8>) {
        let mut splitter = std::mem::take(&mut self.splitter);
        splitter.split(data, |p| self.packet(p, now, out));
        self.splitter = splitter;
    }

    fn packet(&mut self, p: &[u8], now: Instant, out: &mut Vec<u8>) {
        let kind = self.monitor.packet(p);
        let Ok(packet) = Packet::try_from(p) else {
            return;
        };
        match kind {
            PacketKind::Audio { start: true } => {
                if let Some((pts, _)) = packet_payload(p).and_then(pes_timestamps) {
                    let ts = self.unwrap.extend(pts);
                    self.clock.saw_audio(now, ts);
                }
                out.extend_from_slice(p);
            }
            PacketKind::Video { start } => self.video_packet(packet, start, now, out),
            _ => out.extend_from_slice(p),
        }
    }

    fn video_packet(&mut self, packet: Packet, start: bool, now: Instant, out: &mut Vec<u8>) {
        self.clock.saw_video(now);
        if start {
            self.frame_ended();
            let ts = packet_payload(&packet)
                .and_then(pes_timestamps)
                .map(|(pts, dts)| self.unwrap.extend(dts.unwrap_or(pts)));
            self.current = Frame {
                ts,
                ..Frame::default()
            };
            self.holding = self.clock.is_frozen();
        }
        // The monitor has read this packet: its flag describes the current frame so far.
        self.current.keyframe |= self.monitor.video_keyframe();
        if self.holding {
            self.current.packets.push(packet);
            // A keyframe after the freeze ends it: the held packets go out, and the rest of
            // the frame passes as it comes.
            if self.current.keyframe
                && let Some(ts) = self.current.ts
                && self.clock.admit_frame(true, ts)
            {
                self.holding = false;
                for held in self.current.packets.clone() {
                    self.write_video(held, out);
                }
                return;
            }
            if self.current.packets.len() * PACKET_LEN > MAX_KEYFRAME_BYTES {
                // Too long to be a keyframe we can wait for: drop what is held now.
                self.drop_held();
            }
            return;
        }
        if !self.current.oversized {
            if self.current.packets.len() * PACKET_LEN >= MAX_KEYFRAME_BYTES {
                self.current.oversized = true;
                self.current.packets = Vec::new();
            } else {
                self.current.packets.push(packet);
            }
        }
        self.write_video(packet, out);
    }

    /// The current video frame is complete (the next one starts): keep it if it was a
    /// keyframe, drop it if it was held back and was not.
    fn frame_ended(&mut self) {
        let frame = std::mem::take(&mut self.current);
        if self.holding {
            self.holding = false;
            self.current = frame;
            self.drop_held();
            return;
        }
        if frame.is_repeatable() {
            self.last_keyframe = Some(frame);
        }
    }

    fn drop_held(&mut self) {
        let packets = std::mem::take(&mut self.current.packets);
        if !packets.is_empty() {
            self.dropped_frames += 1;
        }
        let with_payload = packets.iter().filter(|p| has_payload(&p[..])).count();
        self.cc_offset = self.cc_offset.wrapping_sub(with_payload as u8) & 0x0f;
        self.current.oversized = true;
    }

    /// Writes a video packet with its continuity counter renumbered.
    fn write_video(&mut self, mut packet: Packet, out: &mut Vec<u8>) {
        if has_payload(&packet) {
            let cc = (packet[3].wrapping_add(self.cc_offset)) & 0x0f;
            packet[3] = (packet[3] & 0xf0) | cc;
            self.last_cc_out = Some(cc);
        }
        out.extend_from_slice(&packet);
    }

    /// Called every so often (a few times per second): the packets of a freeze frame to send,
    /// if video is starved while audio flows.
    pub fn tick(&mut self, now: Instant) -> Tick<Vec<u8>> {
        let Some(keyframe) = &self.last_keyframe else {
            return Tick::Idle;
        };
        let Some(last_cc) = self.last_cc_out else {
            return Tick::Idle;
        };
        let packets = keyframe.packets.clone();
        let tick = self.clock.tick(now);
        tick.map(|ts| {
            let mut out = Vec::with_capacity(packets.len() * PACKET_LEN);
            let mut cc = last_cc;
            for (i, mut p) in packets.into_iter().enumerate() {
                strip_pcr(&mut p);
                if i == 0 {
                    restamp(&mut p, ts % TS_CLOCK_WRAP);
                }
                if has_payload(&p) {
                    cc = (cc + 1) & 0x0f;
                    p[3] = (p[3] & 0xf0) | cc;
                    self.cc_offset = (self.cc_offset + 1) & 0x0f;
                }
                out.extend_from_slice(&p);
            }
            self.last_cc_out = Some(cc);
            out
        })
    }
}

fn has_payload(p: &[u8]) -> bool {
    (p[3] >> 4) & 0x01 != 0
}

/// Turns an adaptation field's PCR (and every other flag) into stuffing, keeping its length.
fn strip_pcr(p: &mut Packet) {
    if (p[3] >> 4) & 0x02 == 0 {
        return;
    }
    let len = usize::from(p[4]);
    if len == 0 || 5 + len > PACKET_LEN {
        return;
    }
    p[5] = 0;
    p[6..5 + len].fill(0xff);
}

/// Rewrites the PTS (and the DTS, when present) of the PES starting in `p` to `ts`.
fn restamp(p: &mut Packet, ts: u64) {
    let Some(offset) = packet_payload(p).map(|payload| PACKET_LEN - payload.len()) else {
        return;
    };
    let pes = &mut p[offset..];
    if pes.len() < 14 || pes[..3] != [0, 0, 1] {
        return;
    }
    match pes[7] >> 6 {
        0b10 => pes[9..14].copy_from_slice(&encode_timestamp(ts, 0b0010)),
        0b11 if pes.len() >= 19 => {
            pes[9..14].copy_from_slice(&encode_timestamp(ts, 0b0011));
            pes[14..19].copy_from_slice(&encode_timestamp(ts, 0b0001));
        }
        _ => {}
    }
}

/// Extends 33-bit timestamps into a count that keeps growing across the counter's wrap (every
/// 26.5 hours), judging each value against the last one seen.
#[derive(Debug, Default)]
struct Unwrapper {
    last: Option<u64>,
}

impl Unwrapper {
    fn extend(&mut self, raw: u64) -> u64 {
        let raw = raw % TS_CLOCK_WRAP;
        let value = match self.last {
            None => raw + TS_CLOCK_WRAP,
            Some(last) => {
                let delta = (raw + TS_CLOCK_WRAP - last % TS_CLOCK_WRAP) % TS_CLOCK_WRAP;
                if delta < TS_CLOCK_WRAP / 2 {
                    last + delta
                } else {
                    // A little earlier than the last value (audio and video interleave, B-frames).
                    last.saturating_sub(TS_CLOCK_WRAP - delta)
                }
            }
        };
        self.last = Some(value);
        value
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;
    use crate::ingest::mpegts::packet_pid;
    use crate::ingest::mpegts::synth::{TsWriter, VIDEO};

    /// Feeds one frame's packets (made by `write`) at `at`; returns what came out.
    fn feed(f: &mut TsFreezer, at: Instant, write: impl FnOnce(&mut TsWriter)) -> Vec<u8> {
        let mut w = TsWriter::new();
        w.out.clear();
        write(&mut w);
        let mut out = Vec::new();
        f.push(&w.out, at, &mut out);
        out
    }

    /// The video packets of `data`.
    fn video_packets(data: &[u8]) -> Vec<&[u8]> {
        data.chunks(PACKET_LEN)
            .filter(|p| packet_pid(p) == VIDEO)
            .collect()
    }

    fn has_pcr(p: &[u8]) -> bool {
        (p[3] >> 4) & 0x02 != 0 && p[4] > 0 && p[5] & 0x10 != 0
    }

    /// A stream of 30 fps video (an IDR every 30 frames, each 3 packets) and audio every
    /// 21 ms, at its own pace from `t0`, as one continuous TsWriter would write it.
    struct Publisher {
        w: TsWriter,
        t0: Instant,
        frame: u64,
    }

    impl Publisher {
        fn new() -> Self {
            Publisher {
                w: TsWriter::new(),
                t0: Instant::now(),
                frame: 0,
            }
        }

        fn pts(&self) -> u64 {
            90_000 + 3000 * self.frame
        }

        fn at(&self) -> Instant {
            self.t0 + Duration::from_micros(self.frame * 33_333)
        }

        /// The next 33 ms: a video frame unless `video` is false, and an audio frame.
        fn step(&mut self, f: &mut TsFreezer, video: bool, idr: bool, out: &mut Vec<u8>) {
            self.w.out.clear();
            let pts = self.pts();
            if video {
                self.w.video(pts + 3000, Some(pts), idr, 450);
            }
            self.w.audio(pts);
            f.push(&self.w.out, self.at(), out);
            self.frame += 1;
        }
    }

    #[test]
    fn without_starvation_the_stream_passes_unchanged() {
        let mut p = Publisher::new();
        let mut f = TsFreezer::default();
        let mut out = p.w.out.clone();
        let mut input = p.w.out.clone();
        f.push(&p.w.out.clone(), p.t0, &mut Vec::new());
        for i in 0..90 {
            p.step(&mut f, true, i % 30 == 0, &mut out);
            input.extend_from_slice(&p.w.out);
            assert_eq!(f.tick(p.at()), Tick::Idle);
        }
        assert_eq!(out.len(), input.len());
        assert_eq!(out, input);
        assert_eq!(f.stats().keyframes, 3);
    }

    #[test]
    fn starved_video_is_frozen_on_the_last_keyframe_then_resumes_at_a_real_one() {
        let mut p = Publisher::new();
        let mut f = TsFreezer::default();
        let mut out = p.w.out.clone();
        f.push(&p.w.out.clone(), p.t0, &mut Vec::new());
        // A second of video and audio: the keyframe at frame 0 is kept.
        for i in 0..30 {
            p.step(&mut f, true, i == 0, &mut out);
        }
        // Video stops; audio goes on. Not starved before 400 ms.
        let mut freezes = 0;
        for i in 0..30 {
            p.step(&mut f, false, false, &mut out);
            let tick = f.tick(p.at());
            if i < 11 {
                assert_eq!(tick, Tick::Idle, "frame {i}: not yet starved");
            }
            let frame = match tick {
                Tick::Idle => continue,
                Tick::Starved(frame) => {
                    assert_eq!(freezes, 0, "one episode");
                    frame
                }
                Tick::Frozen(frame) => frame,
            };
            freezes += 1;
            let packets = video_packets(&frame);
            assert_eq!(
                packets.len(),
                frame.len() / PACKET_LEN,
                "only video packets"
            );
            assert!(
                packets.iter().all(|p| !has_pcr(p)),
                "no PCR in a freeze frame"
            );
            let (pts, dts) = packet_payload(packets[0])
                .and_then(pes_timestamps)
                .expect("a PES header");
            // The last audio frame came 33 ms ago: the freeze frame is stamped with the
            // audio's clock moved on by that, now.
            let now = p.pts();
            assert!(now - 1 <= pts && pts <= now, "stamped {pts}, now {now}");
            assert_eq!(dts, Some(pts));
            out.extend_from_slice(&frame);
        }
        assert!(
            freezes >= 15,
            "a freeze frame per new audio frame: {freezes}"
        );
        assert!(f.is_frozen());
        // Video comes back mid-GOP: not decodable, so dropped, and the picture stays frozen.
        for _ in 0..5 {
            let before = out.len();
            p.step(&mut f, true, false, &mut out);
            assert!(
                video_packets(&out[before..]).is_empty(),
                "inter frames are held back"
            );
            if let Tick::Frozen(frame) = f.tick(p.at()) {
                freezes += 1;
                out.extend_from_slice(&frame);
            }
        }
        assert_eq!(f.dropped_frames(), 4, "the fifth is still being held");
        // A keyframe: the freeze ends and video flows again.
        p.step(&mut f, true, true, &mut out);
        assert!(!f.is_frozen());
        let before = out.len();
        p.step(&mut f, true, false, &mut out);
        assert_eq!(video_packets(&out[before..]).len(), 3);
        assert_eq!(f.dropped_frames(), 5);

        // What went out reads as one unbroken stream: every inserted and dropped packet was
        // renumbered, so ffmpeg sees no loss.
        let mut check = TsMonitor::default();
        check.push(&out);
        assert_eq!(check.stats().continuity_errors, 0);
        assert_eq!(
            check.stats().keyframes as usize,
            2 + freezes,
            "the first keyframe, the freeze frames and the one that ended the freeze"
        );
    }

    #[test]
    fn a_real_loss_still_shows_after_a_freeze() {
        let mut p = Publisher::new();
        let mut f = TsFreezer::default();
        let mut out = p.w.out.clone();
        f.push(&p.w.out.clone(), p.t0, &mut Vec::new());
        for i in 0..15 {
            p.step(&mut f, true, i == 0, &mut out);
        }
        for _ in 0..20 {
            p.step(&mut f, false, false, &mut out);
            if let Tick::Starved(frame) | Tick::Frozen(frame) = f.tick(p.at()) {
                out.extend_from_slice(&frame);
            }
        }
        p.step(&mut f, true, true, &mut out);
        // The next frame loses its middle packet on the way in.
        p.w.out.clear();
        let pts = p.pts();
        p.w.video(pts + 3000, Some(pts), false, 450);
        let mut lossy = p.w.out.clone();
        lossy.drain(PACKET_LEN..2 * PACKET_LEN);
        f.push(&lossy, p.at(), &mut out);
        let mut check = TsMonitor::default();
        check.push(&out);
        assert_eq!(check.stats().continuity_errors, 1);
    }

    #[test]
    fn nothing_is_frozen_before_a_keyframe_or_when_audio_stops_too() {
        let mut f = TsFreezer::default();
        let t0 = Instant::now();
        let mut out = feed(&mut f, t0, |w| {
            w.video(93_000, Some(90_000), false, 300);
            w.audio(90_000);
        });
        assert_eq!(f.tick(t0 + Duration::from_millis(300)), Tick::Idle);
        out.extend(feed(&mut f, t0 + Duration::from_millis(350), |w| {
            w.audio(120_000)
        }));
        assert_eq!(
            f.tick(t0 + Duration::from_millis(500)),
            Tick::Idle,
            "no keyframe to show yet"
        );
        let mut f = TsFreezer::default();
        feed(&mut f, t0, |w| {
            w.video(93_000, Some(90_000), true, 300);
            w.audio(90_000);
        });
        feed(&mut f, t0, |w| w.video(96_000, Some(93_000), false, 300));
        assert_eq!(
            f.tick(t0 + Duration::from_secs(2)),
            Tick::Idle,
            "audio stopped too: that is a lost publisher"
        );
    }

    #[test]
    fn timestamps_unwrap_across_the_33_bit_wrap() {
        let mut u = Unwrapper::default();
        let a = u.extend(TS_CLOCK_WRAP - 3000);
        let b = u.extend(1000);
        assert_eq!(b - a, 4000);
        let c = u.extend(TS_CLOCK_WRAP - 500);
        assert_eq!(b - c, 1500, "a little earlier, before the wrap");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_and_ticks_give_whole_packets(
            data in proptest::collection::vec(any::<u8>(), 0..6000),
            piece in 1usize..400,
            ticks in proptest::collection::vec(0u64..2000, 0..8),
        ) {
            let mut f = TsFreezer::default();
            let t0 = Instant::now();
            let mut out = Vec::new();
            let mut whole = 0;
            for (i, chunk) in data.chunks(piece).enumerate() {
                let at = t0 + Duration::from_millis(ticks.get(i).copied().unwrap_or(0));
                f.push(chunk, at, &mut out);
                whole += chunk.len();
                if let Tick::Starved(frame) | Tick::Frozen(frame) = f.tick(at) {
                    prop_assert_eq!(frame.len() % PACKET_LEN, 0);
                }
            }
            prop_assert_eq!(out.len() % PACKET_LEN, 0);
            prop_assert!(out.len() <= whole);
        }

        #[test]
        fn without_ticks_any_bytes_pass_unchanged(
            data in proptest::collection::vec(any::<u8>(), 0..6000),
            piece in 1usize..400,
        ) {
            let mut f = TsFreezer::default();
            let t0 = Instant::now();
            let mut out = Vec::new();
            for chunk in data.chunks(piece) {
                f.push(chunk, t0, &mut out);
            }
            let whole = data.len() / PACKET_LEN * PACKET_LEN;
            prop_assert_eq!(&out[..], &data[..whole]);
        }
    }
}
