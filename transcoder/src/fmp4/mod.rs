//! Fragmented MP4 (CMAF) reading and writing.
//!
//! ffmpeg writes one fragmented MP4 stream per rendition; [`Fmp4Reader`] turns each byte stream
//! into an [`InitSegment`] and a sequence of [`Fragment`]s whose [`Sample`]s carry decode time,
//! duration and keyframe flag. [`write_fragment`] writes samples back as one `moof` + `mdat`,
//! which is how the packager cuts parts on boundaries of its own choosing.
//!
//! Everything here is pure code over bytes: no I/O, no clocks, and no input can make it panic
//! or buffer without bound.

mod boxes;
mod cursor;
mod fragment;
mod init;
mod reader;
mod writer;

#[cfg(test)]
mod tests;

pub use boxes::{BoxHeader, FourCc, fourcc_str};
pub use fragment::{
    Fragment, MAX_DECODE_TIME, NON_SYNC_SAMPLE_FLAGS, SAMPLE_IS_NON_SYNC, SYNC_SAMPLE_FLAGS,
    Sample, TrackRun,
};
pub use init::{InitSegment, MediaKind, TrackDefaults, TrackInfo};
pub use reader::{DEFAULT_MAX_BOX_LEN, Fmp4Event, Fmp4Reader};
pub use writer::write_fragment;

/// Why a piece of the stream could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fmp4Error {
    /// A box is malformed.
    #[error("fMP4 box '{box_type}' is invalid: {reason}")]
    Invalid {
        /// The box type.
        box_type: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A box uses a feature this reader does not handle.
    #[error("fMP4 box '{box_type}' is not supported: {reason}")]
    Unsupported {
        /// The box type.
        box_type: String,
        /// Which feature.
        reason: String,
    },
    /// A box is larger than the reader's limit.
    #[error("fMP4 box '{box_type}' declares {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// The box type.
        box_type: String,
        /// Its declared size.
        size: u64,
        /// The limit.
        limit: usize,
    },
    /// The stream ended in the middle of a box.
    #[error("fMP4 stream ended inside box '{box_type}' with {buffered} bytes buffered")]
    Truncated {
        /// The box that was cut short.
        box_type: String,
        /// Bytes held when the stream ended.
        buffered: usize,
    },
    /// An earlier framing error makes the rest of the stream unreadable.
    #[error("fMP4 stream lost its box framing earlier ({0}); nothing more can be read")]
    Unframed(String),
}

impl Fmp4Error {
    pub(crate) fn invalid(box_type: FourCc, reason: impl Into<String>) -> Self {
        Fmp4Error::Invalid {
            box_type: fourcc_str(box_type),
            reason: reason.into(),
        }
    }

    pub(crate) fn unsupported(box_type: FourCc, reason: impl Into<String>) -> Self {
        Fmp4Error::Unsupported {
            box_type: fourcc_str(box_type),
            reason: reason.into(),
        }
    }

    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Fmp4Error::Invalid { .. } => "invalid",
            Fmp4Error::Unsupported { .. } => "unsupported",
            Fmp4Error::TooLarge { .. } => "too_large",
            Fmp4Error::Truncated { .. } => "truncated",
            Fmp4Error::Unframed(_) => "unframed",
        }
    }
}
