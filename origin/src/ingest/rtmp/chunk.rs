//! The RTMP chunk stream, sans-IO: [`ChunkDecoder`] reassembles the peer's messages from
//! interleaved chunks and handles the protocol control messages (chunk size, abort,
//! acknowledgements, bandwidth); [`ChunkEncoder`] cuts the server's messages into chunks.
//!
//! Everything here faces untrusted input, so every limit is checked before memory is taken:
//! a message may not exceed the configured maximum (`ingest.rtmp.max_message_bytes`), partly
//! received messages together may not hold more than that plus [`PENDING_SLACK`], at most
//! [`MAX_CHUNK_STREAMS`] chunk streams keep state, and the peer's chunk size must be at least
//! [`MIN_PEER_CHUNK_SIZE`] (tiny chunks make a server spend a header parse per byte).
//! A message's buffer grows with what has arrived, never ahead of it by more than double, so a
//! peer announcing large messages it never sends holds little memory.

use std::collections::HashMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::message::{self, Message, type_id};

/// The chunk size both sides start with.
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// The smallest chunk size a peer may set.
pub const MIN_PEER_CHUNK_SIZE: u32 = 64;
/// The largest chunk size that means anything: a chunk cannot exceed a message, whose length is
/// 24 bits. Larger sizes behave as this one.
pub const MAX_CHUNK_SIZE: u32 = 0xff_ffff;
/// Chunk streams that may keep state at once; publishers use a handful.
pub const MAX_CHUNK_STREAMS: usize = 64;
/// Room for small messages (audio, commands) that arrive interleaved with a message of the
/// maximum size.
pub const PENDING_SLACK: usize = 1 << 20;

/// A 24-bit timestamp field with this value means a 32-bit extended timestamp follows.
const EXTENDED_TIMESTAMP: u32 = 0xff_ffff;
/// The lowest and highest chunk stream IDs a basic header can carry.
const MIN_CSID: u32 = 2;
const MAX_CSID: u32 = 65_599;
/// A new message's buffer starts at most this large and doubles as chunks arrive.
const INITIAL_BUFFER: usize = 4096;

/// Why the chunk stream cannot be read any further; the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// A message header announced more than the configured maximum.
    #[error(
        "a {length}-byte message on chunk stream {csid} exceeds the limit of {max} bytes (ingest.rtmp.max_message_bytes)"
    )]
    MessageTooLarge {
        /// The chunk stream.
        csid: u32,
        /// The announced length.
        length: u32,
        /// The limit.
        max: usize,
    },
    /// Partly received messages together would exceed what a connection may hold.
    #[error(
        "partly received messages would hold {total} bytes, over the limit of {max} for one connection"
    )]
    TooMuchPending {
        /// Bytes the pending messages would announce.
        total: usize,
        /// The limit.
        max: usize,
    },
    /// A Set Chunk Size with the reserved top bit set.
    #[error("chunk size {0:#010x} is invalid: the top bit is reserved")]
    InvalidChunkSize(u32),
    /// A Set Chunk Size below [`MIN_PEER_CHUNK_SIZE`].
    #[error(
        "chunk size {0} is refused: below {MIN_PEER_CHUNK_SIZE} bytes it only costs the server CPU"
    )]
    ChunkSizeTooSmall(u32),
    /// Every chunk stream slot holds a partly received message and another one started.
    #[error(
        "more than {MAX_CHUNK_STREAMS} chunk streams have partly received messages at the same time"
    )]
    TooManyChunkStreams,
    /// A chunk whose header leans on an earlier one that never came.
    #[error("a format {fmt} chunk arrived on chunk stream {csid}, which has had no full header")]
    NoPreviousHeader {
        /// The chunk stream.
        csid: u32,
        /// The chunk's header format (2 or 3).
        fmt: u8,
    },
    /// A protocol control message too short for its type.
    #[error("protocol control message of type {type_id} is too short ({len} bytes)")]
    MalformedControl {
        /// The message type.
        type_id: u8,
        /// Its length.
        len: usize,
    },
}

impl ChunkError {
    /// A short label for the errors metric.
    pub fn kind(&self) -> &'static str {
        match self {
            ChunkError::MessageTooLarge { .. } | ChunkError::TooMuchPending { .. } => "too_large",
            _ => "chunk",
        }
    }
}

/// What the decoder yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A complete message other than a protocol control message (those the decoder handles).
    Message(Message),
    /// The bytes received crossed the peer's acknowledgement window: send
    /// [`Message::acknowledgement`] with this sequence number.
    Acknowledge(u32),
}

/// What a chunk stream remembers from its last header, and the message being reassembled.
#[derive(Debug, Default)]
struct ChunkStream {
    /// Timestamp of the last message started.
    timestamp: u32,
    /// The last timestamp field: the delta of a format 1 or 2 header, the absolute time of a
    /// format 0 one (which is what a following format 3 header adds, as ffmpeg does).
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// Whether the last full header used an extended timestamp, so format 3 chunks carry one.
    extended: bool,
    /// The message being reassembled.
    partial: Option<Vec<u8>>,
    /// For choosing which idle chunk stream to forget when all slots are taken.
    last_used: u64,
}

/// A parsed chunk header.
#[derive(Debug)]
struct Header {
    fmt: u8,
    csid: u32,
    /// The 24-bit timestamp field (format 0, 1, 2).
    timestamp: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// The extended timestamp, when present.
    extended: Option<u32>,
    /// Header bytes in all.
    size: usize,
}

#[derive(Debug, Clone, Copy)]
enum Reading {
    Header,
    /// Inside a chunk's payload: bytes of it still to come.
    Payload {
        csid: u32,
        remaining: usize,
    },
}

/// Reassembles the peer's messages.
///
/// Feed received bytes with [`push`](Self::push), then call [`poll`](Self::poll) until it
/// returns `None`. After an error the connection must be closed.
///
/// ```
/// use corral_origin::ingest::rtmp::chunk::{ChunkDecoder, ChunkEncoder, Inbound};
/// use corral_origin::ingest::rtmp::message::Message;
///
/// let mut out = bytes::BytesMut::new();
/// let sent = Message::user_control(6, 1);
/// ChunkEncoder::new().encode(&sent, &mut out);
/// let mut decoder = ChunkDecoder::new(1 << 20);
/// decoder.push(&out);
/// assert_eq!(decoder.poll().unwrap(), Some(Inbound::Message(sent)));
/// assert_eq!(decoder.poll().unwrap(), None);
/// ```
#[derive(Debug)]
pub struct ChunkDecoder {
    /// Received bytes not consumed yet: at most one incomplete header once polled dry.
    buf: BytesMut,
    chunk_size: u32,
    max_message_bytes: usize,
    streams: HashMap<u32, ChunkStream>,
    /// Announced lengths of the partly received messages, together.
    pending: usize,
    reading: Reading,
    /// Counts headers, to know which chunk stream was used least recently.
    tick: u64,
    received: u64,
    acknowledged: u64,
    /// The peer's Window Acknowledgement Size.
    window: Option<u32>,
}

impl ChunkDecoder {
    /// A decoder refusing messages over `max_message_bytes`.
    pub fn new(max_message_bytes: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            chunk_size: DEFAULT_CHUNK_SIZE,
            max_message_bytes,
            streams: HashMap::new(),
            pending: 0,
            reading: Reading::Header,
            tick: 0,
            received: 0,
            acknowledged: 0,
            window: None,
        }
    }

    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.received += bytes.len() as u64;
    }

    /// The peer's current chunk size.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Received bytes not consumed yet.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete message or acknowledgement due, or `None` when more input is needed.
    pub fn poll(&mut self) -> Result<Option<Inbound>, ChunkError> {
        loop {
            if let Some(sequence) = self.acknowledgement_due() {
                return Ok(Some(Inbound::Acknowledge(sequence)));
            }
            let (csid, remaining) = match self.reading {
                Reading::Header => {
                    let Some(header) = self.parse_header()? else {
                        return Ok(None);
                    };
                    self.buf.advance(header.size);
                    (header.csid, self.start_chunk(&header)?)
                }
                Reading::Payload { csid, remaining } => (csid, remaining),
            };
            let take = remaining.min(self.buf.len());
            let stream = self
                .streams
                .get_mut(&csid)
                .expect("a chunk stream is only forgotten between chunks");
            let length = stream.length as usize;
            let data = stream
                .partial
                .as_mut()
                .expect("a chunk's payload always belongs to a message being reassembled");
            if data.capacity() - data.len() < take {
                // Grow by doubling, but never past the announced length.
                let target = (data.len() + take).max(data.capacity() * 2).min(length);
                data.reserve_exact(target - data.len());
            }
            data.extend_from_slice(&self.buf[..take]);
            self.buf.advance(take);
            if remaining > take {
                self.reading = Reading::Payload {
                    csid,
                    remaining: remaining - take,
                };
                return Ok(None);
            }
            self.reading = Reading::Header;
            if data.len() < length {
                continue;
            }
            let payload = stream.partial.take().unwrap_or_default();
            self.pending -= length;
            let message = Message {
                csid,
                type_id: stream.type_id,
                stream_id: stream.stream_id,
                timestamp: stream.timestamp,
                payload: Bytes::from(payload),
            };
            if !self.control(&message)? {
                return Ok(Some(Inbound::Message(message)));
            }
        }
    }

    /// Parses the header at the front of the buffer, or `None` if it is not all there yet.
    fn parse_header(&self) -> Result<Option<Header>, ChunkError> {
        let b = &self.buf[..];
        let Some(&first) = b.first() else {
            return Ok(None);
        };
        let fmt = first >> 6;
        let (csid, mut pos) = match first & 0x3f {
            0 => match b.get(1) {
                Some(&b1) => (64 + u32::from(b1), 2),
                None => return Ok(None),
            },
            1 => match (b.get(1), b.get(2)) {
                (Some(&b1), Some(&b2)) => (64 + u32::from(b1) + 256 * u32::from(b2), 3),
                _ => return Ok(None),
            },
            id => (u32::from(id), 1),
        };
        let header_len = match fmt {
            0 => 11,
            1 => 7,
            2 => 3,
            _ => 0,
        };
        let Some(h) = b.get(pos..pos + header_len) else {
            return Ok(None);
        };
        pos += header_len;
        let u24 = |s: &[u8]| u32::from(s[0]) << 16 | u32::from(s[1]) << 8 | u32::from(s[2]);
        let timestamp = if fmt < 3 { u24(&h[0..3]) } else { 0 };
        let (length, type_id) = if fmt < 2 {
            (u24(&h[3..6]), h[6])
        } else {
            (0, 0)
        };
        // The message stream ID is the one little-endian field of RTMP.
        let stream_id = if fmt == 0 {
            u32::from_le_bytes([h[7], h[8], h[9], h[10]])
        } else {
            0
        };
        let has_extended = if fmt < 3 {
            timestamp == EXTENDED_TIMESTAMP
        } else {
            self.streams.get(&csid).is_some_and(|s| s.extended)
        };
        let extended = if has_extended {
            match b.get(pos..pos + 4).and_then(message::read_u32) {
                Some(e) => {
                    pos += 4;
                    Some(e)
                }
                None => return Ok(None),
            }
        } else {
            None
        };
        Ok(Some(Header {
            fmt,
            csid,
            timestamp,
            length,
            type_id,
            stream_id,
            extended,
            size: pos,
        }))
    }

    /// Applies a chunk header to its chunk stream; returns the chunk's payload length.
    fn start_chunk(&mut self, h: &Header) -> Result<usize, ChunkError> {
        if !self.streams.contains_key(&h.csid) {
            // A format 1 header lacks only the message stream ID, which a publisher's media
            // does not depend on; formats 2 and 3 lack the length and cannot be read.
            if h.fmt >= 2 {
                return Err(ChunkError::NoPreviousHeader {
                    csid: h.csid,
                    fmt: h.fmt,
                });
            }
            self.make_room()?;
            self.streams.insert(h.csid, ChunkStream::default());
        }
        self.tick += 1;
        let stream = self
            .streams
            .get_mut(&h.csid)
            .expect("the chunk stream exists or was just inserted");
        stream.last_used = self.tick;
        if h.fmt == 3 && stream.partial.is_some() {
            // A continuation: the header changes nothing.
        } else {
            if let Some(old) = stream.partial.take() {
                // A new header in the middle of a message abandons it, as ffmpeg does.
                drop(old);
                self.pending -= stream.length as usize;
            }
            let field = h.extended.unwrap_or(h.timestamp);
            match h.fmt {
                0 => {
                    stream.timestamp = field;
                    stream.delta = field;
                    stream.stream_id = h.stream_id;
                }
                3 => {
                    if let Some(e) = h.extended {
                        stream.delta = e;
                    }
                    stream.timestamp = stream.timestamp.wrapping_add(stream.delta);
                }
                _ => {
                    stream.delta = field;
                    stream.timestamp = stream.timestamp.wrapping_add(field);
                }
            }
            if h.fmt < 2 {
                stream.length = h.length;
                stream.type_id = h.type_id;
            }
            if h.fmt < 3 {
                stream.extended = h.extended.is_some();
            }
            let length = stream.length as usize;
            if length > self.max_message_bytes {
                return Err(ChunkError::MessageTooLarge {
                    csid: h.csid,
                    length: stream.length,
                    max: self.max_message_bytes,
                });
            }
            let max_pending = self.max_message_bytes.saturating_add(PENDING_SLACK);
            let total = self.pending + length;
            if total > max_pending {
                return Err(ChunkError::TooMuchPending {
                    total,
                    max: max_pending,
                });
            }
            self.pending = total;
            stream.partial = Some(Vec::with_capacity(length.min(INITIAL_BUFFER)));
        }
        let received = stream.partial.as_ref().map_or(0, Vec::len);
        Ok((stream.length as usize - received).min(self.chunk_size as usize))
    }

    /// Makes room for one more chunk stream by forgetting the idle one used least recently.
    fn make_room(&mut self) -> Result<(), ChunkError> {
        if self.streams.len() < MAX_CHUNK_STREAMS {
            return Ok(());
        }
        let idle = self
            .streams
            .iter()
            .filter(|(_, s)| s.partial.is_none())
            .min_by_key(|(_, s)| s.last_used)
            .map(|(&csid, _)| csid);
        match idle {
            Some(csid) => {
                self.streams.remove(&csid);
                Ok(())
            }
            None => Err(ChunkError::TooManyChunkStreams),
        }
    }

    /// Handles a protocol control message; returns whether `message` was one.
    fn control(&mut self, message: &Message) -> Result<bool, ChunkError> {
        let p = &message.payload;
        let malformed = || ChunkError::MalformedControl {
            type_id: message.type_id,
            len: p.len(),
        };
        match message.type_id {
            type_id::SET_CHUNK_SIZE => {
                let size = message::read_u32(p).ok_or_else(malformed)?;
                if size & 0x8000_0000 != 0 {
                    return Err(ChunkError::InvalidChunkSize(size));
                }
                if size < MIN_PEER_CHUNK_SIZE {
                    return Err(ChunkError::ChunkSizeTooSmall(size));
                }
                self.chunk_size = size.min(MAX_CHUNK_SIZE);
            }
            type_id::ABORT => {
                let csid = message::read_u32(p).ok_or_else(malformed)?;
                if let Some(stream) = self.streams.get_mut(&csid)
                    && stream.partial.take().is_some()
                {
                    self.pending -= stream.length as usize;
                }
            }
            // The peer acknowledging our bytes; we send too little to need flow control.
            type_id::ACKNOWLEDGEMENT => {}
            type_id::WINDOW_ACK_SIZE => {
                let size = message::read_u32(p).ok_or_else(malformed)?;
                self.window = (size > 0).then_some(size);
                // The window counts from now, not from the start of the connection.
                self.acknowledged = self.received;
            }
            // A limit on our output, which is a few small answers.
            type_id::SET_PEER_BANDWIDTH => {
                message::read_u32(p).ok_or_else(malformed)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn acknowledgement_due(&mut self) -> Option<u32> {
        let window = u64::from(self.window?);
        if self.received - self.acknowledged < window {
            return None;
        }
        self.acknowledged = self.received;
        // The sequence number is the byte count modulo 2^32.
        Some(self.received as u32)
    }
}

/// Cuts the server's messages into chunks: a format 0 chunk, then format 3 chunks.
///
/// ```
/// use corral_origin::ingest::rtmp::chunk::ChunkEncoder;
/// use corral_origin::ingest::rtmp::message::Message;
///
/// let mut encoder = ChunkEncoder::new();
/// let mut out = bytes::BytesMut::new();
/// encoder.set_chunk_size(4096, &mut out);
/// assert_eq!(encoder.chunk_size(), 4096);
/// assert_eq!(out.len(), 12 + 4, "a format 0 header and the 4-byte size");
/// ```
#[derive(Debug, Clone)]
pub struct ChunkEncoder {
    chunk_size: u32,
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkEncoder {
    /// An encoder at the default chunk size (128).
    pub fn new() -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
        }
    }

    /// The chunk size in use.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Tells the peer about a new chunk size (clamped to 1..=0xFFFFFF) and uses it from the
    /// next message on.
    pub fn set_chunk_size(&mut self, size: u32, out: &mut BytesMut) {
        let size = size.clamp(1, MAX_CHUNK_SIZE);
        self.encode(&Message::set_chunk_size(size), out);
        self.chunk_size = size;
    }

    /// Appends `message` as chunks to `out`.
    ///
    /// The chunk stream ID is clamped to 2..=65599 and the payload to 2^24 - 1 bytes, what the
    /// headers can express; the server's own messages are far inside both.
    pub fn encode(&self, message: &Message, out: &mut BytesMut) {
        let csid = message.csid.clamp(MIN_CSID, MAX_CSID);
        let payload = &message.payload[..message.payload.len().min(0xff_ffff)];
        let extended = message.timestamp >= EXTENDED_TIMESTAMP;
        basic_header(0, csid, out);
        out.put_uint(u64::from(message.timestamp.min(EXTENDED_TIMESTAMP)), 3);
        out.put_uint(payload.len() as u64, 3);
        out.put_u8(message.type_id);
        out.put_u32_le(message.stream_id);
        if extended {
            out.put_u32(message.timestamp);
        }
        for (i, piece) in payload.chunks(self.chunk_size as usize).enumerate() {
            if i > 0 {
                basic_header(3, csid, out);
                // Continuations repeat the extended timestamp (what ffmpeg and librtmp expect).
                if extended {
                    out.put_u32(message.timestamp);
                }
            }
            out.put_slice(piece);
        }
    }
}

fn basic_header(fmt: u8, csid: u32, out: &mut BytesMut) {
    let fmt = fmt << 6;
    match csid {
        0..64 => out.put_u8(fmt | csid as u8),
        64..320 => {
            out.put_u8(fmt);
            out.put_u8((csid - 64) as u8);
        }
        _ => {
            let id = csid - 64;
            out.put_u8(fmt | 1);
            out.put_u8(id as u8);
            out.put_u8((id >> 8) as u8);
        }
    }
}

#[cfg(test)]
#[path = "chunk_tests.rs"]
mod tests;
