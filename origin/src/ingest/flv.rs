//! Writes a publisher's RTMP messages as an FLV byte stream for ffmpeg's stdin.
//!
//! Every transcoder run needs a stream a decoder can start on: the FLV header, the metadata and
//! the codec configuration records (AVC and AAC sequence headers), then media from a keyframe
//! on. [`FlvRemuxer`] remembers the latest metadata and configuration records so that a run
//! started in the middle of a publish (after an ffmpeg crash) gets them again, and holds back
//! video until the next keyframe.

use bytes::{BufMut, Bytes, BytesMut};

use super::media::{FlvTag, TagKind};

/// `FLV`, version 1, audio and video present, 9-byte header, then `PreviousTagSize0`.
const HEADER: [u8; 13] = [b'F', b'L', b'V', 1, 0x05, 0, 0, 0, 9, 0, 0, 0, 0];

/// Encodes one FLV tag with its trailing `PreviousTagSize`.
pub fn encode_tag(tag: &FlvTag) -> Bytes {
    let len = tag.data.len();
    let mut out = BytesMut::with_capacity(11 + len + 4);
    out.put_u8(tag.kind.tag_type());
    out.put_uint(len as u64 & 0xff_ffff, 3);
    out.put_uint(u64::from(tag.timestamp & 0xff_ffff), 3);
    out.put_u8((tag.timestamp >> 24) as u8);
    out.put_uint(0, 3);
    out.put_slice(&tag.data);
    out.put_u32((11 + len) as u32);
    out.freeze()
}

/// Turns a publish's tags into the FLV stream of one transcoder run after another.
#[derive(Debug, Default)]
pub struct FlvRemuxer {
    metadata: Option<FlvTag>,
    video_config: Option<FlvTag>,
    audio_config: Option<FlvTag>,
    /// Whether the current run got its header and configuration.
    started: bool,
    /// Whether the current run has had a keyframe (video before it is held back).
    keyframe_seen: bool,
}

impl FlvRemuxer {
    /// Starts a new transcoder run: the next output begins with a header and the configuration
    /// seen so far.
    pub fn restart(&mut self) {
        self.started = false;
        self.keyframe_seen = false;
    }

    /// Whether the publisher has sent its codec configuration (both records, or the ones its
    /// tracks need once media flows).
    pub fn has_video_config(&self) -> bool {
        self.video_config.is_some()
    }

    /// Converts one tag into bytes for ffmpeg; empty when the tag is held back (video before
    /// the first keyframe of a run) or only remembered (a configuration record repeats).
    pub fn push(&mut self, tag: FlvTag) -> Bytes {
        let mut out = BytesMut::new();
        if !self.started {
            self.started = true;
            out.extend_from_slice(&HEADER);
            for cfg in [&self.metadata, &self.video_config, &self.audio_config]
                .into_iter()
                .flatten()
            {
                let mut cfg = cfg.clone();
                cfg.timestamp = tag.timestamp;
                out.extend_from_slice(&encode_tag(&cfg));
            }
        }
        match tag.kind {
            TagKind::Script => {
                self.metadata = Some(tag.clone());
                out.extend_from_slice(&encode_tag(&tag));
            }
            _ if tag.is_sequence_header() => {
                let slot = if tag.kind == TagKind::Video {
                    &mut self.video_config
                } else {
                    &mut self.audio_config
                };
                *slot = Some(tag.clone());
                out.extend_from_slice(&encode_tag(&tag));
            }
            TagKind::Video => {
                if tag.is_keyframe() {
                    self.keyframe_seen = true;
                }
                if self.keyframe_seen {
                    out.extend_from_slice(&encode_tag(&tag));
                }
            }
            TagKind::Audio => out.extend_from_slice(&encode_tag(&tag)),
        }
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(kind: TagKind, ts: u32, data: &[u8]) -> FlvTag {
        FlvTag {
            kind,
            timestamp: ts,
            data: Bytes::copy_from_slice(data),
        }
    }

    #[test]
    fn a_tag_is_header_body_and_previous_size() {
        let bytes = encode_tag(&tag(TagKind::Video, 0x0102_0304, &[0x17, 1, 0, 0, 0, 9]));
        assert_eq!(&bytes[..11], &[9, 0, 0, 6, 0x02, 0x03, 0x04, 0x01, 0, 0, 0]);
        assert_eq!(&bytes[11..17], &[0x17, 1, 0, 0, 0, 9]);
        assert_eq!(&bytes[17..], &17u32.to_be_bytes());
    }

    #[test]
    fn a_new_run_replays_configuration_and_waits_for_a_keyframe() {
        let mut r = FlvRemuxer::default();
        let meta = tag(TagKind::Script, 0, b"\x02\x00\x0aonMetaData");
        let avc = tag(TagKind::Video, 0, &[0x17, 0, 0, 0, 0, 1]);
        let aac = tag(TagKind::Audio, 0, &[0xaf, 0, 0x12, 0x10]);
        let first = r.push(meta.clone());
        assert_eq!(&first[..13], &HEADER);
        r.push(avc.clone());
        r.push(aac.clone());
        assert!(
            !r.push(tag(TagKind::Video, 40, &[0x17, 1, 0, 0, 0]))
                .is_empty(),
            "keyframe passes"
        );
        assert!(
            !r.push(tag(TagKind::Video, 73, &[0x27, 1, 0, 0, 0]))
                .is_empty(),
            "then inter frames"
        );

        r.restart();
        let inter = r.push(tag(TagKind::Video, 106, &[0x27, 1, 0, 0, 0]));
        let expected: Vec<u8> = HEADER
            .iter()
            .copied()
            .chain([&meta, &avc, &aac].iter().flat_map(|t| {
                let mut t = (*t).clone();
                t.timestamp = 106;
                encode_tag(&t).to_vec()
            }))
            .collect();
        assert_eq!(
            inter.to_vec(),
            expected,
            "header and configuration, but not the inter frame"
        );
        assert!(
            !r.push(tag(TagKind::Audio, 110, &[0xaf, 1, 5])).is_empty(),
            "audio flows at once"
        );
        assert!(
            r.push(tag(TagKind::Video, 139, &[0x27, 1, 0, 0, 0]))
                .is_empty()
        );
        assert!(
            !r.push(tag(TagKind::Video, 172, &[0x17, 1, 0, 0, 0]))
                .is_empty()
        );
    }
}
