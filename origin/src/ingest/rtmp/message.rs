//! RTMP messages: what the chunk stream carries once reassembled, the message type IDs, and the
//! protocol control and user control messages the server builds.

use bytes::Bytes;

use super::amf0::{self, Amf0Value};

/// Message type IDs (RTMP specification, sections 5.4 and 7.1).
pub mod type_id {
    /// Set Chunk Size: the sender's chunk size from now on.
    pub const SET_CHUNK_SIZE: u8 = 1;
    /// Abort Message: drop the partly received message of a chunk stream.
    pub const ABORT: u8 = 2;
    /// Acknowledgement: bytes received so far.
    pub const ACKNOWLEDGEMENT: u8 = 3;
    /// User Control Message (stream begin, ping...).
    pub const USER_CONTROL: u8 = 4;
    /// Window Acknowledgement Size: how often the receiver must acknowledge.
    pub const WINDOW_ACK_SIZE: u8 = 5;
    /// Set Peer Bandwidth: a limit on the receiver's output.
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    /// Audio data: an FLV audio tag body.
    pub const AUDIO: u8 = 8;
    /// Video data: an FLV video tag body.
    pub const VIDEO: u8 = 9;
    /// Data message in AMF3 (a zero byte, then AMF0 in practice).
    pub const DATA_AMF3: u8 = 15;
    /// Command message in AMF3 (a zero byte, then AMF0 in practice).
    pub const COMMAND_AMF3: u8 = 17;
    /// Data message in AMF0 (`@setDataFrame`, `onMetaData`).
    pub const DATA_AMF0: u8 = 18;
    /// Command message in AMF0 (`connect`, `publish`...).
    pub const COMMAND_AMF0: u8 = 20;
    /// Aggregate message (several FLV tags in one message).
    pub const AGGREGATE: u8 = 22;
}

/// User control event types (RTMP specification, section 7.1.7).
pub mod user_control {
    /// Stream Begin: the stream (by ID) is ready.
    pub const STREAM_BEGIN: u16 = 0;
    /// Set Buffer Length, from a client.
    pub const SET_BUFFER_LENGTH: u16 = 3;
    /// Ping Request: answer with a Ping Response carrying the same timestamp.
    pub const PING_REQUEST: u16 = 6;
    /// Ping Response.
    pub const PING_RESPONSE: u16 = 7;
}

/// The chunk stream the server sends protocol control messages on, as the specification says.
pub const CONTROL_CHUNK_STREAM: u32 = 2;
/// The chunk stream the server sends command answers on.
pub const COMMAND_CHUNK_STREAM: u32 = 3;
/// The chunk stream the server sends `onStatus` for a publish on.
pub const STATUS_CHUNK_STREAM: u32 = 5;

/// One complete RTMP message.
///
/// ```
/// use corral_origin::ingest::rtmp::message::{Message, type_id};
///
/// let m = Message::set_chunk_size(4096);
/// assert_eq!(m.type_id, type_id::SET_CHUNK_SIZE);
/// assert_eq!(&m.payload[..], &[0, 0, 0x10, 0]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The chunk stream it travels on (2..=65599).
    pub csid: u32,
    /// What it is; see [`type_id`].
    pub type_id: u8,
    /// The message stream (0 for the connection, the ID `createStream` handed out for a
    /// publish).
    pub stream_id: u32,
    /// Milliseconds on RTMP's 32-bit clock, absolute.
    pub timestamp: u32,
    /// The body.
    pub payload: Bytes,
}

impl Message {
    fn control(type_id: u8, payload: &[u8]) -> Self {
        Message {
            csid: CONTROL_CHUNK_STREAM,
            type_id,
            stream_id: 0,
            timestamp: 0,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    /// Set Chunk Size: the sender's chunks carry up to `size` bytes from now on.
    pub fn set_chunk_size(size: u32) -> Self {
        Self::control(type_id::SET_CHUNK_SIZE, &size.to_be_bytes())
    }

    /// Acknowledgement of `sequence` bytes received (modulo 2^32).
    pub fn acknowledgement(sequence: u32) -> Self {
        Self::control(type_id::ACKNOWLEDGEMENT, &sequence.to_be_bytes())
    }

    /// Window Acknowledgement Size: the peer acknowledges every `size` bytes it receives.
    pub fn window_ack_size(size: u32) -> Self {
        Self::control(type_id::WINDOW_ACK_SIZE, &size.to_be_bytes())
    }

    /// Set Peer Bandwidth with limit type 2 (dynamic), which is what servers send at connect.
    pub fn set_peer_bandwidth(size: u32) -> Self {
        let b = size.to_be_bytes();
        Self::control(type_id::SET_PEER_BANDWIDTH, &[b[0], b[1], b[2], b[3], 2])
    }

    /// A user control event with its 4-byte argument (a stream ID or a timestamp).
    pub fn user_control(event: u16, value: u32) -> Self {
        let e = event.to_be_bytes();
        let v = value.to_be_bytes();
        Self::control(type_id::USER_CONTROL, &[e[0], e[1], v[0], v[1], v[2], v[3]])
    }

    /// An AMF0 command (`_result`, `onStatus`...) on `csid` and message stream `stream_id`.
    pub fn command(csid: u32, stream_id: u32, values: &[Amf0Value]) -> Self {
        Message {
            csid,
            type_id: type_id::COMMAND_AMF0,
            stream_id,
            timestamp: 0,
            payload: amf0::encode_all(values).freeze(),
        }
    }
}

/// Reads the big-endian `u32` a protocol control message starts with.
pub fn read_u32(payload: &[u8]) -> Option<u32> {
    let bytes: [u8; 4] = payload.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

/// Reads a user control message: the event type and its first 4-byte argument (0 when absent,
/// as for events that carry none).
pub fn read_user_control(payload: &[u8]) -> Option<(u16, u32)> {
    let event: [u8; 2] = payload.get(..2)?.try_into().ok()?;
    let value = payload.get(2..).and_then(read_u32).unwrap_or(0);
    Some((u16::from_be_bytes(event), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_have_the_specified_layout() {
        let m = Message::set_peer_bandwidth(2_500_000);
        assert_eq!(m.csid, 2);
        assert_eq!(m.stream_id, 0);
        assert_eq!(&m.payload[..], &[0x00, 0x26, 0x25, 0xa0, 2]);
        let ping = Message::user_control(user_control::PING_RESPONSE, 77);
        assert_eq!(read_user_control(&ping.payload), Some((7, 77)));
        assert_eq!(read_user_control(&[0, 3]), Some((3, 0)));
        assert_eq!(read_user_control(&[0]), None);
        assert_eq!(read_u32(&[1, 2, 3]), None);
    }
}
