//! Watches an MPEG transport stream on its way to the transcoder: finds the video and audio
//! elementary streams from the PAT and PMT, counts frames (PES packets) and video keyframes
//! (an H.264 IDR or HEVC IRAP NAL unit at the start of a PES), and counts continuity errors.
//!
//! It never changes the bytes, which go to ffmpeg as they came; it only tells the stream what
//! arrives (frame rate, keyframes, losses). Pure code over untrusted bytes: no input makes it
//! panic, and its state is a few fixed-size tables.

/// Bytes of a transport stream packet.
pub const PACKET_LEN: usize = 188;
/// Bytes of a video PES searched for a keyframe NAL unit (SPS, PPS and SEI come first).
const KEYFRAME_SCAN_LEN: usize = 2048;

/// The video codec of the stream, from the PMT's stream type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// Stream type 0x1B.
    H264,
    /// Stream type 0x24.
    Hevc,
    /// Any other video stream type.
    Other(u8),
}

/// What the monitor has seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TsStats {
    /// Transport packets read.
    pub packets: u64,
    /// Packets whose first byte was not the 0x47 sync byte (skipped).
    pub sync_errors: u64,
    /// Packets whose continuity counter skipped (lost or reordered packets).
    pub continuity_errors: u64,
    /// Video PES packets started (frames).
    pub video_frames: u64,
    /// Video frames that begin with a keyframe.
    pub keyframes: u64,
    /// Audio PES packets started.
    pub audio_frames: u64,
}

/// What one packet carries, as far as the monitor knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// A piece of the video elementary stream; `start` when a PES (a frame) begins in it.
    Video {
        /// A PES begins in this packet.
        start: bool,
    },
    /// A piece of the audio elementary stream.
    Audio {
        /// A PES begins in this packet.
        start: bool,
    },
    /// Tables, other streams, null packets, or a packet without payload.
    Other,
}

/// Cuts bytes that arrive in arbitrary pieces into whole packets, keeping a partial one for
/// the next piece.
#[derive(Debug, Default)]
pub struct PacketSplitter {
    partial: Vec<u8>,
}

impl PacketSplitter {
    /// Calls `packet` for every whole packet that `data` completes.
    pub fn split(&mut self, mut data: &[u8], mut packet: impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            let take = (PACKET_LEN - self.partial.len()).min(data.len());
            self.partial.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.partial.len() == PACKET_LEN {
                packet(&self.partial);
                self.partial.clear();
            }
        }
        let mut whole = data.chunks_exact(PACKET_LEN);
        for p in &mut whole {
            packet(p);
        }
        self.partial.extend_from_slice(whole.remainder());
    }
}

/// The PID of a packet (at least 4 bytes long).
pub fn packet_pid(p: &[u8]) -> u16 {
    (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2])
}

/// The payload of a whole packet, after its adaptation field; `None` when it has none.
pub fn packet_payload(p: &[u8]) -> Option<&[u8]> {
    match (p[3] >> 4) & 0x03 {
        0x01 => p.get(4..),
        0x03 => p.get(5 + usize::from(*p.get(4)?)..),
        _ => None,
    }
}

/// The timestamps of a PES that starts in `payload`: its PTS and, when given, its DTS (90 kHz,
/// 33 bits).
pub fn pes_timestamps(payload: &[u8]) -> Option<(u64, Option<u64>)> {
    if payload.len() < 14 || payload[..3] != [0, 0, 1] {
        return None;
    }
    let read = |b: &[u8]| {
        (u64::from(b[0] >> 1) & 0x07) << 30
            | u64::from(b[1]) << 22
            | u64::from(b[2] >> 1) << 15
            | u64::from(b[3]) << 7
            | u64::from(b[4] >> 1)
    };
    match payload[7] >> 6 {
        0b10 => Some((read(&payload[9..14]), None)),
        0b11 if payload.len() >= 19 => Some((read(&payload[9..14]), Some(read(&payload[14..19])))),
        _ => None,
    }
}

/// A PTS or DTS (90 kHz, 33 bits) as the five bytes of a PES header, after the 4-bit `prefix`
/// (`0b0010` for a lone PTS, `0b0011` for a PTS followed by a DTS, `0b0001` for that DTS).
pub fn encode_timestamp(ts: u64, prefix: u8) -> [u8; 5] {
    [
        (prefix << 4) | (((ts >> 30) as u8 & 0x07) << 1) | 1,
        (ts >> 22) as u8,
        (((ts >> 15) as u8) << 1) | 1,
        (ts >> 7) as u8,
        ((ts as u8) << 1) | 1,
    ]
}

/// Reads a transport stream fed in arbitrary pieces.
#[derive(Debug, Default)]
pub struct TsMonitor {
    splitter: PacketSplitter,
    pmt_pid: Option<u16>,
    video: Option<(u16, VideoCodec)>,
    audio_pid: Option<u16>,
    last_cc: Vec<(u16, u8)>,
    /// Bytes of the current video PES scanned for a keyframe, and whether one was found.
    scan: Option<(usize, bool, Vec<u8>)>,
    stats: TsStats,
}

impl TsMonitor {
    /// What has been seen so far.
    pub fn stats(&self) -> TsStats {
        self.stats
    }

    /// The video codec, once the PMT was read.
    pub fn video_codec(&self) -> Option<VideoCodec> {
        self.video.map(|(_, c)| c)
    }

    /// Reads `data`, which may split packets anywhere.
    pub fn push(&mut self, data: &[u8]) {
        let mut splitter = std::mem::take(&mut self.splitter);
        splitter.split(data, |p| {
            self.packet(p);
        });
        self.splitter = splitter;
    }

    /// Whether the video PES now being read has shown a keyframe NAL unit so far.
    pub fn video_keyframe(&self) -> bool {
        self.scan.as_ref().is_some_and(|(_, found, _)| *found)
    }

    /// Reads one whole packet ([`PACKET_LEN`] bytes) and says what it carries.
    pub fn packet(&mut self, p: &[u8]) -> PacketKind {
        self.stats.packets += 1;
        if p.len() != PACKET_LEN || p[0] != 0x47 {
            self.stats.sync_errors += 1;
            return PacketKind::Other;
        }
        let start = p[1] & 0x40 != 0;
        let pid = packet_pid(p);
        let control = (p[3] >> 4) & 0x03;
        let cc = p[3] & 0x0f;
        if control & 0x01 != 0 && pid != 0x1fff {
            self.continuity(pid, cc);
        }
        let Some(payload) = packet_payload(p) else {
            return PacketKind::Other;
        };
        if pid == 0 && start {
            self.pat(payload);
        } else if Some(pid) == self.pmt_pid && start {
            self.pmt(payload);
        } else if self.video.is_some_and(|(v, _)| v == pid) {
            self.video_payload(start, payload);
            return PacketKind::Video { start };
        } else if Some(pid) == self.audio_pid {
            if start {
                self.stats.audio_frames += 1;
            }
            return PacketKind::Audio { start };
        }
        PacketKind::Other
    }

    fn continuity(&mut self, pid: u16, cc: u8) {
        if let Some((_, last)) = self.last_cc.iter_mut().find(|(p, _)| *p == pid) {
            let expected = (*last + 1) & 0x0f;
            // A repeated counter is a legal duplicate packet.
            if cc != expected && cc != *last {
                self.stats.continuity_errors += 1;
            }
            *last = cc;
        } else if self.last_cc.len() < 32 {
            // Only a handful of PIDs matter; a table this size cannot be grown by garbage.
            self.last_cc.push((pid, cc));
        }
    }

    /// Skips the pointer field of a PSI section; returns the section.
    fn section(payload: &[u8]) -> Option<&[u8]> {
        let pointer = usize::from(*payload.first()?);
        let section = payload.get(1 + pointer..)?;
        let len = usize::from(u16::from_be_bytes([*section.get(1)?, *section.get(2)?]) & 0x0fff);
        section.get(..(3 + len).min(section.len()))
    }

    fn pat(&mut self, payload: &[u8]) {
        let Some(s) = Self::section(payload) else {
            return;
        };
        if s.first() != Some(&0x00) || s.len() < 12 {
            return;
        }
        // Entries run from byte 8 to the CRC (last 4 bytes), 4 bytes each.
        let entries = &s[8..s.len() - 4];
        for e in entries.chunks_exact(4) {
            let program = u16::from_be_bytes([e[0], e[1]]);
            if program != 0 {
                self.pmt_pid = Some((u16::from(e[2] & 0x1f) << 8) | u16::from(e[3]));
                return;
            }
        }
    }

    fn pmt(&mut self, payload: &[u8]) {
        let Some(s) = Self::section(payload) else {
            return;
        };
        if s.first() != Some(&0x02) || s.len() < 16 {
            return;
        }
        let info_len = usize::from(u16::from_be_bytes([s[10], s[11]]) & 0x0fff);
        let Some(mut es) = s.get(12 + info_len..s.len() - 4) else {
            return;
        };
        while es.len() >= 5 {
            let stream_type = es[0];
            let pid = (u16::from(es[1] & 0x1f) << 8) | u16::from(es[2]);
            let es_info = usize::from(u16::from_be_bytes([es[3], es[4]]) & 0x0fff);
            match stream_type {
                0x1b if self.video.is_none() => self.video = Some((pid, VideoCodec::H264)),
                0x24 if self.video.is_none() => self.video = Some((pid, VideoCodec::Hevc)),
                0x01 | 0x02 | 0x10 | 0x42 | 0xd1 | 0xea if self.video.is_none() => {
                    self.video = Some((pid, VideoCodec::Other(stream_type)));
                }
                0x03 | 0x04 | 0x0f | 0x11 | 0x81 if self.audio_pid.is_none() => {
                    self.audio_pid = Some(pid)
                }
                _ => {}
            }
            es = es.get(5 + es_info..).unwrap_or(&[]);
        }
    }

    fn video_payload(&mut self, start: bool, payload: &[u8]) {
        if start {
            self.stats.video_frames += 1;
            // Skip the PES header: 00 00 01, stream id, length (2), flags (2), header length.
            if payload.len() < 9 || payload[..3] != [0, 0, 1] {
                self.scan = None;
                return;
            }
            let header = 9 + usize::from(payload[8]);
            let es = payload.get(header..).unwrap_or(&[]);
            self.scan = Some((
                0,
                false,
                Vec::with_capacity(KEYFRAME_SCAN_LEN.min(es.len() + 256)),
            ));
            self.scan_es(es);
        } else {
            self.scan_es(payload);
        }
    }

    /// Looks for a keyframe NAL unit in the first bytes of the current video PES.
    fn scan_es(&mut self, es: &[u8]) {
        let codec = self.video.map(|(_, c)| c);
        let Some((scanned, found, window)) = self.scan.as_mut() else {
            return;
        };
        if *found || *scanned >= KEYFRAME_SCAN_LEN {
            return;
        }
        let take = es.len().min(KEYFRAME_SCAN_LEN - *scanned);
        // Keep the last bytes of earlier pieces so a start code split across packets is seen.
        window.extend_from_slice(&es[..take]);
        *scanned += take;
        let key = window.windows(4).any(|w| {
            w[..3] == [0, 0, 1]
                && match codec {
                    Some(VideoCodec::H264) => w[3] & 0x1f == 5,
                    Some(VideoCodec::Hevc) => (16..=21).contains(&((w[3] >> 1) & 0x3f)),
                    _ => false,
                }
        });
        if key {
            *found = true;
            self.stats.keyframes += 1;
        }
        let keep = window.len().saturating_sub(3);
        window.drain(..keep);
    }
}

/// Builds transport streams for tests: one program, H.264 on PID 0x100 (which carries the
/// PCR) and AAC on 0x101.
#[cfg(test)]
pub(crate) mod synth {
    use std::collections::HashMap;

    use super::PACKET_LEN;

    /// The video PID.
    pub const VIDEO: u16 = 0x100;
    /// The audio PID.
    pub const AUDIO: u16 = 0x101;

    /// Appends packets to `out`, numbering each PID's continuity counter.
    pub struct TsWriter {
        cc: HashMap<u16, u8>,
        pub out: Vec<u8>,
    }

    impl TsWriter {
        /// A writer that has written the PAT and the PMT.
        pub fn new() -> Self {
            let mut w = TsWriter {
                cc: HashMap::new(),
                out: Vec::new(),
            };
            let pat = [
                0, 0x00, 0xb0, 13, 0, 1, 0xc1, 0, 0, 0, 1, 0xf0, 0x00, 0, 0, 0, 0,
            ];
            w.packet(0, true, None, &pat);
            let pmt = [
                0, 0x02, 0xb0, 23, 0, 1, 0xc1, 0, 0, 0xe1, 0x00, 0xf0, 0, 0x1b, 0xe1, 0x00, 0xf0,
                0, 0x0f, 0xe1, 0x01, 0xf0, 0, 0, 0, 0, 0,
            ];
            w.packet(0x1000, true, None, &pmt);
            w
        }

        /// One packet; a short payload is padded with adaptation-field stuffing. `pcr` puts
        /// a PCR in the adaptation field.
        pub fn packet(&mut self, pid: u16, start: bool, pcr: Option<u64>, payload: &[u8]) {
            let c = self.cc.entry(pid).or_insert(0);
            let mut adaptation = Vec::new();
            if let Some(pcr) = pcr {
                adaptation.push(0x10);
                adaptation.extend_from_slice(&(pcr << 15 | 0x7e00).to_be_bytes()[2..]);
            }
            let room = PACKET_LEN - 4 - payload.len();
            let with_af = room > 0 || pcr.is_some();
            let mut p = vec![
                0x47,
                (u8::from(start) << 6) | (pid >> 8) as u8,
                pid as u8,
                if with_af { 0x30 } else { 0x10 } | *c,
            ];
            *c = (*c + 1) & 0x0f;
            if with_af {
                let len = room - 1;
                p.push(len as u8);
                if len > 0 {
                    let mut af = adaptation;
                    if af.is_empty() {
                        af.push(0);
                    }
                    af.resize(len, 0xff);
                    p.extend_from_slice(&af);
                }
            }
            p.extend_from_slice(payload);
            assert_eq!(
                p.len(),
                PACKET_LEN,
                "payload too long for its adaptation field"
            );
            self.out.extend_from_slice(&p);
        }

        /// One PES over as many packets as it takes; the first carries `pcr`.
        pub fn pes(
            &mut self,
            pid: u16,
            stream_id: u8,
            pts: u64,
            dts: Option<u64>,
            es: &[u8],
            pcr: Option<u64>,
        ) {
            let mut pes = vec![0, 0, 1, stream_id, 0, 0, 0x80];
            let stamp = super::encode_timestamp;
            match dts {
                None => {
                    pes.extend_from_slice(&[0x80, 5]);
                    pes.extend_from_slice(&stamp(pts, 0b0010));
                }
                Some(dts) => {
                    pes.extend_from_slice(&[0xc0, 10]);
                    pes.extend_from_slice(&stamp(pts, 0b0011));
                    pes.extend_from_slice(&stamp(dts, 0b0001));
                }
            }
            pes.extend_from_slice(es);
            let first_room = PACKET_LEN - 4 - if pcr.is_some() { 8 } else { 0 };
            let (head, mut rest) = pes.split_at(first_room.min(pes.len()));
            self.packet(pid, true, pcr, head);
            while !rest.is_empty() {
                let (piece, tail) = rest.split_at((PACKET_LEN - 4).min(rest.len()));
                self.packet(pid, false, None, piece);
                rest = tail;
            }
        }

        /// A video frame of `len` ES bytes (an access unit delimiter, then an IDR or a non-IDR
        /// slice), with a PCR.
        pub fn video(&mut self, pts: u64, dts: Option<u64>, idr: bool, len: usize) {
            let mut es = vec![
                0,
                0,
                0,
                1,
                0x09,
                0xf0,
                0,
                0,
                0,
                1,
                if idr { 0x65 } else { 0x41 },
                0x88,
            ];
            es.resize(len.max(es.len()), 0x5a);
            self.pes(VIDEO, 0xe0, pts, dts, &es, Some(dts.unwrap_or(pts) * 300));
        }

        /// An audio frame of a few bytes.
        pub fn audio(&mut self, pts: u64) {
            self.pes(
                AUDIO,
                0xc0,
                pts,
                None,
                &[0xff, 0xf1, 0x50, 0x80, 0, 0x1f, 0xfc],
                None,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A transport stream with a PAT, a PMT (H.264 on 0x100, AAC on 0x101), then `frames`
    /// video PES packets of two transport packets each (every `gop`-th an IDR), each followed
    /// by an audio PES of one packet.
    fn stream(frames: usize, gop: usize) -> Vec<u8> {
        let mut ts = synth::TsWriter::new();
        for i in 0..frames {
            let pts = 90_000 + 3000 * i as u64;
            ts.video(pts, None, i % gop == 0, 200);
            ts.audio(pts);
        }
        ts.out
    }

    #[test]
    fn finds_streams_frames_and_keyframes() {
        let mut m = TsMonitor::default();
        m.push(&stream(60, 30));
        assert_eq!(m.video_codec(), Some(VideoCodec::H264));
        let s = m.stats();
        assert_eq!((s.video_frames, s.keyframes, s.audio_frames), (60, 2, 60));
        assert_eq!((s.sync_errors, s.continuity_errors), (0, 0));
    }

    #[test]
    fn packets_split_anywhere_give_the_same_counts() {
        let data = stream(20, 10);
        for piece in [1, 7, 187, 188, 189, 1316] {
            let mut m = TsMonitor::default();
            for chunk in data.chunks(piece) {
                m.push(chunk);
            }
            assert_eq!(m.stats().keyframes, 2, "pieces of {piece}");
            assert_eq!(m.stats().video_frames, 20);
        }
    }

    #[test]
    fn lost_packets_and_bad_sync_are_counted() {
        let mut data = stream(10, 5);
        data.drain(3 * PACKET_LEN..4 * PACKET_LEN);
        data[10 * PACKET_LEN] = 0x00;
        let mut m = TsMonitor::default();
        m.push(&data);
        assert!(m.stats().continuity_errors >= 1);
        assert_eq!(m.stats().sync_errors, 1);
    }

    #[test]
    fn a_stream_without_keyframes_counts_none() {
        let mut m = TsMonitor::default();
        m.push(&stream(30, 1000).split_off(0));
        assert_eq!(m.stats().keyframes, 1, "only frame 0 is an IDR");
        let mut m = TsMonitor::default();
        let data = stream(31, 1000);
        // Drop the first video PES (the only IDR): the stream sends no keyframe.
        let skip = 2 * PACKET_LEN..4 * PACKET_LEN;
        let data: Vec<u8> = data[..skip.start]
            .iter()
            .chain(&data[skip.end..])
            .copied()
            .collect();
        m.push(&data);
        assert_eq!(m.stats().keyframes, 0);
        assert!(m.stats().video_frames >= 30);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4000), piece in 1usize..400) {
            let mut m = TsMonitor::default();
            for chunk in data.chunks(piece) {
                m.push(chunk);
            }
            prop_assert!(m.last_cc.len() <= 32);
        }

        #[test]
        fn corrupted_streams_never_panic(index in 0usize..(188 * 8), value: u8) {
            let mut data = stream(2, 1);
            let i = index % data.len();
            data[i] = value;
            let mut m = TsMonitor::default();
            m.push(&data);
        }
    }
}
