//! Cues: ad breaks (HLS interstitials with SCTE-35 splice points) and news flashes, as
//! `EXT-X-DATERANGE` tags. Pure code.
//!
//! An ad break is `CLASS="com.apple.hls.interstitial"` with `X-ASSET-URI` (the ad, a VOD
//! playlist), `DURATION`, `X-RESTRICT="SKIP,JUMP"`, and `SCTE35-OUT`/`SCTE35-IN`: SCTE-35
//! `splice_insert` sections (immediate splice; the date range carries the time) taking the
//! program out of the network for the break and back in. A news flash is
//! `CLASS="com.corral.flash"` with its text in `X-TEXT` and its level in `X-LEVEL`.

use std::fmt::Write;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::playlist::program_date_time;

/// What a cue does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum CueKind {
    /// An ad break: players play `asset` (a VOD playlist) for the break.
    Ad {
        /// The ad's playlist URI.
        asset: String,
    },
    /// A news flash or disclaimer: players and the chat show `text`.
    Flash {
        /// What to show.
        text: String,
        /// `info`, `warning` or `critical`.
        level: String,
    },
}

/// One cue of a stream (as `GET /api/streams/{name}/cues` lists it, and a standby reads it
/// back).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cue {
    /// `ID` of the date range, unique in the stream.
    pub id: String,
    /// The SCTE-35 `splice_event_id`.
    pub event_id: u32,
    /// What it does.
    #[serde(flatten)]
    pub kind: CueKind,
    /// `START-DATE`: a segment boundary's program date-time, the same in every rendition.
    #[serde(serialize_with = "rfc3339", deserialize_with = "from_rfc3339")]
    pub start: SystemTime,
    /// Seconds.
    pub duration: f64,
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&program_date_time(*t))
}

fn from_rfc3339<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_rfc3339(&text).map_err(serde::de::Error::custom)
}

/// Makes `text` fit an HLS quoted string: no `"`, no line breaks.
pub fn quoted(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' => '\u{201D}',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

impl Cue {
    /// When it ends.
    pub fn end(&self) -> SystemTime {
        self.start + std::time::Duration::from_secs_f64(self.duration)
    }

    /// The `EXT-X-DATERANGE` line, without its newline.
    pub fn daterange(&self) -> String {
        let mut tag = format!(
            "#EXT-X-DATERANGE:ID=\"{}\",START-DATE=\"{}\",DURATION={:.3}",
            self.id,
            program_date_time(self.start),
            self.duration
        );
        match &self.kind {
            CueKind::Ad { asset } => {
                let _ = write!(
                    tag,
                    ",CLASS=\"com.apple.hls.interstitial\",X-ASSET-URI=\"{}\",X-RESTRICT=\"SKIP,JUMP\",X-PLAYOUT-LIMIT={:.3},SCTE35-OUT=0x{},SCTE35-IN=0x{}",
                    quoted(asset),
                    self.duration,
                    hex(&splice_insert(self.event_id, true, Some(self.duration))),
                    hex(&splice_insert(self.event_id, false, None)),
                );
            }
            CueKind::Flash { text, level } => {
                let _ = write!(
                    tag,
                    ",CLASS=\"com.corral.flash\",X-TEXT=\"{}\",X-LEVEL=\"{}\"",
                    quoted(text),
                    quoted(level)
                );
            }
        }
        tag
    }
}

/// The date ranges of `cues` that still matter to a playlist whose first segment starts at
/// `from`: those that end after it.
pub fn dateranges(
    cues: &[Cue],
    from: Option<SystemTime>,
    until: Option<SystemTime>,
) -> Vec<String> {
    cues.iter()
        .filter(|c| from.is_none_or(|f| c.end() > f))
        .filter(|c| until.is_none_or(|u| c.start <= u))
        .map(Cue::daterange)
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02X}");
            s
        })
}

/// A SCTE-35 `splice_info_section` with one `splice_insert`: the program leaves the network
/// (`out`, for `duration` seconds, returning by itself) or comes back, at once.
pub fn splice_insert(event_id: u32, out: bool, duration: Option<f64>) -> Vec<u8> {
    let mut command = Vec::with_capacity(20);
    command.extend_from_slice(&event_id.to_be_bytes());
    // splice_event_cancel_indicator 0, 7 reserved bits.
    command.push(0x7F);
    // out_of_network, program_splice (1), duration_flag, splice_immediate (1), 4 reserved.
    let duration_flag = duration.is_some();
    command.push((u8::from(out) << 7) | 0x40 | (u8::from(duration_flag) << 5) | 0x10 | 0x0F);
    if let Some(seconds) = duration {
        let ticks = ((seconds * 90_000.0).round() as u64) & ((1 << 33) - 1);
        // auto_return 1, 6 reserved bits, then 33 bits of duration.
        command.push(0x80 | 0x7E | ((ticks >> 32) as u8 & 1));
        command.extend_from_slice(&(ticks as u32).to_be_bytes());
    }
    // unique_program_id, avail_num, avails_expected.
    command.extend_from_slice(&[0, 1, 0, 0]);

    let mut body = Vec::with_capacity(40);
    body.push(0); // protocol_version
    // encrypted_packet 0, encryption_algorithm 0, pts_adjustment 0 (33 bits).
    body.extend_from_slice(&[0, 0, 0, 0, 0]);
    body.push(0); // cw_index
    // tier 0xFFF, splice_command_length (12 bits): the bytes after splice_command_type.
    let len = command.len() as u16;
    body.push(0xFF);
    body.push(0xF0 | ((len >> 8) as u8 & 0x0F));
    body.push(len as u8);
    body.push(0x05); // splice_insert
    body.extend_from_slice(&command);
    body.extend_from_slice(&[0, 0]); // descriptor_loop_length

    let section_length = body.len() as u16 + 4;
    let mut section = Vec::with_capacity(3 + body.len() + 4);
    section.push(0xFC);
    // section_syntax_indicator 0, private_indicator 0, sap_type 3, section_length.
    section.push(0x30 | ((section_length >> 8) as u8 & 0x0F));
    section.push(section_length as u8);
    section.extend_from_slice(&body);
    let crc = crc32_mpeg2(&section);
    section.extend_from_slice(&crc.to_be_bytes());
    section
}

/// CRC-32/MPEG-2: polynomial 0x04C11DB7, initial value all ones, no reflection, no final xor.
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = u32::MAX;
    for &byte in data {
        crc ^= u32::from(byte) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_crc_is_mpeg2s() {
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_E6E7);
    }

    #[test]
    fn a_splice_insert_section_is_well_formed() {
        let out = splice_insert(7, true, Some(15.0));
        assert_eq!(out[0], 0xFC, "table_id");
        let section_length = (usize::from(out[1] & 0x0F) << 8) | usize::from(out[2]);
        assert_eq!(section_length, out.len() - 3);
        assert_eq!(
            crc32_mpeg2(&out),
            0,
            "a section with its CRC checks to zero"
        );
        let command_length = (usize::from(out[11] & 0x0F) << 8) | usize::from(out[12]);
        assert_eq!(out[13], 0x05, "splice_insert");
        assert_eq!(&out[14..18], &7u32.to_be_bytes(), "event id");
        let flags = out[19];
        assert_eq!(flags & 0x80, 0x80, "out of network");
        assert_eq!(flags & 0x20, 0x20, "with a duration");
        assert_eq!(flags & 0x10, 0x10, "immediate");
        let ticks = (u64::from(out[20] & 1) << 32)
            | u64::from(u32::from_be_bytes([out[21], out[22], out[23], out[24]]));
        assert_eq!(ticks, 15 * 90_000);
        assert_eq!(out[20] & 0x80, 0x80, "auto return");
        assert_eq!(14 + command_length + 2 + 4, out.len(), "command, loop, CRC");
        let back = splice_insert(7, false, None);
        assert_eq!(back[19] & 0xA0, 0, "back in, no duration");
        assert_eq!(crc32_mpeg2(&back), 0);
    }

    #[test]
    fn date_ranges_carry_what_players_need() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_540_502);
        let ad = Cue {
            id: "ad-1".into(),
            event_id: 1,
            kind: CueKind::Ad {
                asset: "/vod/ads/20261206T070142Z/master.m3u8".into(),
            },
            start,
            duration: 15.0,
        };
        let tag = ad.daterange();
        assert!(tag.starts_with("#EXT-X-DATERANGE:ID=\"ad-1\",START-DATE=\"2026-12-06T07:01:42.000Z\",DURATION=15.000,CLASS=\"com.apple.hls.interstitial\",X-ASSET-URI=\"/vod/ads/20261206T070142Z/master.m3u8\""), "{tag}");
        assert!(
            tag.contains(",SCTE35-OUT=0xFC30") && tag.contains(",SCTE35-IN=0xFC30"),
            "{tag}"
        );
        let flash = Cue {
            id: "flash-2".into(),
            event_id: 2,
            kind: CueKind::Flash {
                text: "Goal \"now\"\nreally".into(),
                level: "info".into(),
            },
            start,
            duration: 10.0,
        };
        let tag = flash.daterange();
        assert!(tag.contains("CLASS=\"com.corral.flash\",X-TEXT=\"Goal \u{201D}now\u{201D} really\",X-LEVEL=\"info\""), "{tag}");
        let cues = [ad, flash];
        assert_eq!(
            dateranges(&cues, Some(start + Duration::from_secs(12)), None).len(),
            1,
            "the flash is over"
        );
        assert_eq!(
            dateranges(&cues, Some(start), Some(start - Duration::from_secs(1))).len(),
            0,
            "not yet"
        );
    }
}
