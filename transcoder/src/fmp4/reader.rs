//! A push-based reader that turns a fragmented-MP4 byte stream into init segments and
//! fragments, whatever the sizes of the reads that deliver it.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::Fmp4Error;
use super::boxes::{BoxHeader, fourcc_str};
use super::fragment::Fragment;
use super::init::InitSegment;

/// The default limit on one box, far above a 4K keyframe, so that a corrupt size field cannot
/// make the reader buffer without bound.
pub const DEFAULT_MAX_BOX_LEN: usize = 32 * 1024 * 1024;

/// What the reader found in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fmp4Event {
    /// A new initialization segment (`ftyp` + `moov`).
    Init(Arc<InitSegment>),
    /// A complete `moof` + `mdat` pair.
    Fragment(Fragment),
}

/// Reads init segments and fragments from a byte stream fed in arbitrary pieces.
///
/// ```
/// use corral_transcoder::fmp4::Fmp4Reader;
/// let mut reader = Fmp4Reader::default();
/// reader.push(&[0, 0, 0, 8]); // half a box header
/// assert!(reader.next_event().expect("no error yet").is_none());
/// ```
///
/// Errors come in two kinds. A fragment whose boxes are well framed but whose content is wrong
/// is consumed and reported; reading can go on. A broken box header (a size of zero, a size
/// smaller than the header, a box over the size limit) loses the framing: the reader reports it
/// and then refuses everything, see [`Fmp4Reader::is_failed`].
#[derive(Debug)]
pub struct Fmp4Reader {
    buf: BytesMut,
    max_box_len: usize,
    init: Option<Arc<InitSegment>>,
    /// The `ftyp` box seen before `moov`, which becomes part of the init segment's bytes.
    file_type: Option<Bytes>,
    /// Length of a `moof` at the front of `buf` that waits for its `mdat`.
    pending_moof: Option<usize>,
    failure: Option<String>,
}

impl Default for Fmp4Reader {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_BOX_LEN)
    }
}

impl Fmp4Reader {
    /// A reader that refuses boxes larger than `max_box_len` bytes.
    pub fn new(max_box_len: usize) -> Self {
        Self {
            buf: BytesMut::with_capacity(64 * 1024),
            max_box_len,
            init: None,
            file_type: None,
            pending_moof: None,
            failure: None,
        }
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        if self.failure.is_none() {
            self.buf.extend_from_slice(data);
        }
    }

    /// Whether the framing was lost; if so nothing more will be read.
    pub fn is_failed(&self) -> bool {
        self.failure.is_some()
    }

    /// The most recent init segment.
    pub fn init(&self) -> Option<&Arc<InitSegment>> {
        self.init.as_ref()
    }

    /// Bytes buffered but not yet part of an event.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Returns the next complete event, `Ok(None)` when more bytes are needed.
    pub fn next_event(&mut self) -> Result<Option<Fmp4Event>, Fmp4Error> {
        loop {
            if let Some(reason) = &self.failure {
                return Err(Fmp4Error::Unframed(reason.clone()));
            }
            let offset = self.pending_moof.unwrap_or(0);
            let header = match BoxHeader::parse(&self.buf[offset..]) {
                Ok(Some(h)) => h,
                Ok(None) => return Ok(None),
                Err(e) => return Err(self.fail(e)),
            };
            if header.total_len > self.max_box_len as u64 {
                let err = Fmp4Error::TooLarge {
                    box_type: fourcc_str(header.box_type),
                    size: header.total_len,
                    limit: self.max_box_len,
                };
                return Err(self.fail(err));
            }
            let total = header.total_len as usize;
            if self.buf.len() < offset + total {
                self.buf.reserve(offset + total - self.buf.len());
                return Ok(None);
            }
            if let Some(moof_len) = self.pending_moof {
                self.pending_moof = None;
                if header.box_type != *b"mdat" {
                    let _dropped = self.buf.split_to(moof_len);
                    return Err(Fmp4Error::invalid(
                        header.box_type,
                        "follows a moof where its mdat was expected; the moof was dropped",
                    ));
                }
                let bytes = self.buf.split_to(moof_len + total).freeze();
                let init = self.init.as_ref().ok_or_else(|| {
                    Fmp4Error::invalid(*b"moof", "arrived before any init segment")
                })?;
                return Fragment::parse(&bytes, moof_len, header.header_len, init)
                    .map(|f| Some(Fmp4Event::Fragment(f)));
            }
            match &header.box_type {
                b"ftyp" => {
                    self.file_type = Some(self.buf.split_to(total).freeze());
                }
                b"moov" => {
                    let moov = self.buf.split_to(total).freeze();
                    let mut bytes = BytesMut::new();
                    if let Some(ftyp) = self.file_type.take() {
                        bytes.extend_from_slice(&ftyp);
                    }
                    bytes.extend_from_slice(&moov);
                    let init = InitSegment::parse(bytes.freeze(), &moov[header.header_len..])?;
                    let init = Arc::new(init);
                    self.init = Some(init.clone());
                    return Ok(Some(Fmp4Event::Init(init)));
                }
                b"moof" => {
                    if self.init.is_none() {
                        let _dropped = self.buf.split_to(total);
                        return Err(Fmp4Error::invalid(
                            *b"moof",
                            "arrived before any init segment; it was dropped",
                        ));
                    }
                    self.pending_moof = Some(total);
                }
                b"mdat" => {
                    let _dropped = self.buf.split_to(total);
                    return Err(Fmp4Error::invalid(
                        *b"mdat",
                        "arrived without a moof before it; it was dropped",
                    ));
                }
                // styp, sidx, prft, emsg, free, skip, mfra and anything unknown carry nothing
                // the packager needs.
                _ => {
                    let _skipped = self.buf.split_to(total);
                }
            }
        }
    }

    /// Called at the end of the stream: reports a box cut short.
    pub fn finish(&self) -> Result<(), Fmp4Error> {
        if self.failure.is_some() || self.buf.is_empty() {
            return Ok(());
        }
        let box_type = if self.buf.len() >= 8 {
            let offset = self.pending_moof.unwrap_or(0);
            let at = if self.buf.len() >= offset + 8 {
                offset
            } else {
                0
            };
            fourcc_str([
                self.buf[at + 4],
                self.buf[at + 5],
                self.buf[at + 6],
                self.buf[at + 7],
            ])
        } else {
            "?".to_string()
        };
        Err(Fmp4Error::Truncated {
            box_type,
            buffered: self.buf.len(),
        })
    }

    fn fail(&mut self, err: Fmp4Error) -> Fmp4Error {
        self.failure = Some(err.to_string());
        self.buf = BytesMut::new();
        self.pending_moof = None;
        err
    }
}
