//! What a publisher sends, as the protocol handlers hand it over: FLV-style tags from RTMP, or
//! MPEG-TS bytes from SRT.

use bytes::Bytes;

/// The kind of an FLV tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagKind {
    /// Audio (FLV tag type 8).
    Audio,
    /// Video (FLV tag type 9).
    Video,
    /// Script data such as `onMetaData` (FLV tag type 18).
    Script,
}

impl TagKind {
    /// The FLV tag type byte.
    pub fn tag_type(self) -> u8 {
        match self {
            TagKind::Audio => 8,
            TagKind::Video => 9,
            TagKind::Script => 18,
        }
    }
}

/// One RTMP audio, video or data message, which is an FLV tag body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlvTag {
    /// Audio, video or script.
    pub kind: TagKind,
    /// Timestamp in milliseconds (RTMP's 32-bit clock).
    pub timestamp: u32,
    /// The tag body: for video, the FLV video tag header then the payload.
    pub data: Bytes,
}

impl FlvTag {
    /// Whether this is a video keyframe (FLV frame type 1).
    pub fn is_keyframe(&self) -> bool {
        self.kind == TagKind::Video
            && self
                .data
                .first()
                .is_some_and(|b| b >> 4 == 1 && b & 0x80 == 0)
    }

    /// Whether this is a codec configuration record (AVC sequence header or AAC audio specific
    /// config), which a decoder needs before any frame.
    pub fn is_sequence_header(&self) -> bool {
        match self.kind {
            // AVC (codec 7) packet type 0.
            TagKind::Video => self.data.len() >= 2 && self.data[0] & 0x0f == 7 && self.data[1] == 0,
            // AAC (sound format 10) packet type 0.
            TagKind::Audio => self.data.len() >= 2 && self.data[0] >> 4 == 10 && self.data[1] == 0,
            TagKind::Script => false,
        }
    }

    /// Whether the video uses the Enhanced RTMP extended header (HEVC, AV1, VP9 as FourCC).
    pub fn is_enhanced_video(&self) -> bool {
        self.kind == TagKind::Video && self.data.first().is_some_and(|b| b & 0x80 != 0)
    }

    /// The video codec ID of a legacy (non-enhanced) video tag: 7 is AVC/H.264.
    pub fn video_codec(&self) -> Option<u8> {
        (self.kind == TagKind::Video && !self.is_enhanced_video())
            .then(|| self.data.first().map(|b| b & 0x0f))
            .flatten()
    }
}

/// A piece of published media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaChunk {
    /// An FLV tag from an RTMP publisher.
    Flv(FlvTag),
    /// MPEG transport stream bytes from an SRT publisher (whole 188-byte packets).
    Ts(Bytes),
}

impl MediaChunk {
    /// Bytes of media carried.
    pub fn len(&self) -> usize {
        match self {
            MediaChunk::Flv(t) => t.data.len(),
            MediaChunk::Ts(b) => b.len(),
        }
    }

    /// Whether it carries nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether dropping it under pressure hurts least: a video frame that others do not need
    /// to start decoding (not a keyframe, not a configuration record).
    pub fn is_droppable(&self) -> bool {
        match self {
            MediaChunk::Flv(t) => {
                t.kind == TagKind::Video && !t.is_keyframe() && !t.is_sequence_header()
            }
            MediaChunk::Ts(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(first: u8, second: u8) -> FlvTag {
        FlvTag {
            kind: TagKind::Video,
            timestamp: 0,
            data: Bytes::from(vec![first, second, 0, 0, 0]),
        }
    }

    #[test]
    fn flv_video_headers_are_read() {
        assert!(video(0x17, 0x01).is_keyframe());
        assert!(!video(0x27, 0x01).is_keyframe());
        assert!(video(0x17, 0x00).is_sequence_header());
        assert_eq!(video(0x17, 0x01).video_codec(), Some(7));
        assert!(video(0x90, 0x00).is_enhanced_video(), "IsExHeader bit");
        assert_eq!(video(0x90, 0x00).video_codec(), None);
        let aac = FlvTag {
            kind: TagKind::Audio,
            timestamp: 0,
            data: Bytes::from_static(&[0xaf, 0x00, 0x12, 0x10]),
        };
        assert!(aac.is_sequence_header());
        assert!(!MediaChunk::Flv(video(0x17, 0x01)).is_droppable());
        assert!(MediaChunk::Flv(video(0x27, 0x01)).is_droppable());
        assert!(!MediaChunk::Flv(aac).is_droppable());
    }
}
