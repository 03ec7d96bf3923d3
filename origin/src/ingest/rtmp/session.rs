//! The server side of an RTMP publish, sans-IO: from the first chunk after the handshake to the
//! end of the publish.
//!
//! [`Session`] answers `connect`, `releaseStream`, `FCPublish` and `createStream` itself, asks
//! its caller to decide on `publish` ([`SessionEvent::Publish`]), and turns audio, video and
//! `onMetaData` into [`FlvTag`]s. It knows nothing of keys, streams or sockets: the caller
//! admits or refuses the key and moves the bytes.
//!
//! Only the `live` application is served (`rtmp://HOST/live/<key>`). Messages a publisher has no
//! reason to send (aggregates, shared objects, AMF3 values, data other than `onMetaData`) are
//! ignored; audio, video and metadata before the publish is accepted are dropped.

use bytes::{Bytes, BytesMut};

use super::amf0::{Amf0Error, Amf0Reader, Amf0Value};
use super::chunk::{ChunkDecoder, ChunkEncoder, ChunkError, Inbound};
use super::command::{self, Command};
use super::message::{Message, type_id, user_control};
use crate::ingest::media::{FlvTag, TagKind};

/// The one application served.
pub const APP: &str = "live";
/// The chunk size the server sends with.
pub const SERVER_CHUNK_SIZE: u32 = 4096;
/// The Window Acknowledgement Size and peer bandwidth announced at `connect`.
pub const WINDOW_SIZE: u32 = 2_500_000;
/// The message stream ID `createStream` hands out.
pub const STREAM_ID: u32 = 1;
/// Largest command message read. Real commands are a few hundred bytes; decoded AMF0 takes
/// several times its encoded size, so commands get a much smaller limit than media.
pub const MAX_COMMAND_BYTES: usize = 64 << 10;

/// The AMF0 marker of a string, checked before a data message's name is read so that a huge
/// array in its place is never decoded.
const STRING_MARKER: u8 = 0x02;

/// What the caller must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// The client asks to publish under `key` (the publish name without any `?query`).
    /// Answer with [`Session::accept_publish`] or [`Session::reject_publish`] before polling
    /// again.
    Publish {
        /// The stream key. A secret: do not log it.
        key: String,
    },
    /// Audio, video or `onMetaData` of the accepted publish.
    Media(FlvTag),
    /// The client stopped publishing (`FCUnpublish`, `deleteStream` or `closeStream`).
    Unpublish,
}

/// How a publish is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishRejection {
    /// The key is unknown or its stream already has a publisher (`NetStream.Publish.BadName`).
    BadName,
    /// Refused for another reason, such as the origin stopping (`NetStream.Publish.Denied`).
    Denied,
}

/// Why a session ended in error; the connection must be closed (after sending any output
/// left, which may tell the client why).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The chunk stream is broken or over a limit.
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    /// A command could not be decoded.
    #[error("malformed AMF0 in a {context} message: {source}")]
    Amf {
        /// What kind of message it was in.
        context: &'static str,
        /// The decoding error.
        source: Amf0Error,
    },
    /// A command lacks what it must carry.
    #[error("malformed `{name}` command: {reason}")]
    MalformedCommand {
        /// The command (cut short).
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A command message over [`MAX_COMMAND_BYTES`].
    #[error("a {0}-byte command message is over the {MAX_COMMAND_BYTES}-byte limit for commands")]
    CommandTooLarge(usize),
    /// Commands in an order no client uses (`publish` before `connect`, `connect` twice...).
    #[error("`{command}` is not allowed {when}")]
    OutOfOrder {
        /// The command (cut short).
        command: String,
        /// The state it came in.
        when: &'static str,
    },
    /// The client connected to an application other than `live`.
    #[error("application '{0}' is refused: publish to rtmp://HOST/live/<key>")]
    UnknownApp(String),
    /// Video with the Enhanced RTMP extended header (HEVC, AV1, VP9 by FourCC).
    #[error("enhanced RTMP (HEVC/AV1/VP9) is not supported: H.264 (AVC) video is required")]
    EnhancedRtmp,
}

impl SessionError {
    /// A short label for the errors metric.
    pub fn kind(&self) -> &'static str {
        match self {
            SessionError::Chunk(e) => e.kind(),
            SessionError::Amf { .. } | SessionError::MalformedCommand { .. } => "amf",
            SessionError::CommandTooLarge(_) => "too_large",
            SessionError::OutOfOrder { .. } => "protocol",
            SessionError::UnknownApp(_) => "unknown_app",
            SessionError::EnhancedRtmp => "enhanced_rtmp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingConnect,
    Connected,
    /// `publish` arrived; the caller has not answered yet.
    PublishRequested,
    Publishing,
    /// Refused or failed: nothing more is read.
    Closed,
}

/// One RTMP connection after its handshake.
///
/// Feed received bytes with [`receive`](Self::receive), call [`poll_event`](Self::poll_event)
/// until it returns `None`, and send what [`take_output`](Self::take_output) returns.
///
/// ```
/// use corral_origin::ingest::rtmp::session::Session;
///
/// let mut session = Session::new(8 << 20);
/// session.receive(&[]);
/// assert_eq!(session.poll_event().unwrap(), None);
/// assert!(session.take_output().is_empty());
/// ```
#[derive(Debug)]
pub struct Session {
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    out: BytesMut,
    phase: Phase,
    /// The message stream the publish came on; its `onStatus` answers go there.
    publish_stream: u32,
}

impl Session {
    /// A session refusing messages over `max_message_bytes`.
    pub fn new(max_message_bytes: usize) -> Self {
        Self {
            decoder: ChunkDecoder::new(max_message_bytes),
            encoder: ChunkEncoder::new(),
            out: BytesMut::new(),
            phase: Phase::AwaitingConnect,
            publish_stream: STREAM_ID,
        }
    }

    /// Adds received bytes (the handshake's leftover first).
    pub fn receive(&mut self, bytes: &[u8]) {
        if self.phase != Phase::Closed {
            self.decoder.push(bytes);
        }
    }

    /// The next event, or `None` when more input is needed. After an error, or once a publish
    /// was refused, the session is closed and returns `None`.
    pub fn poll_event(&mut self) -> Result<Option<SessionEvent>, SessionError> {
        while self.phase != Phase::Closed {
            let inbound = match self.decoder.poll() {
                Ok(Some(inbound)) => inbound,
                Ok(None) => return Ok(None),
                Err(e) => return Err(self.fail(e.into())),
            };
            let message = match inbound {
                Inbound::Acknowledge(sequence) => {
                    self.send(&Message::acknowledgement(sequence));
                    continue;
                }
                Inbound::Message(message) => message,
            };
            match self.handle(message) {
                Ok(Some(event)) => return Ok(Some(event)),
                Ok(None) => {}
                Err(e) => return Err(self.fail(e)),
            }
        }
        Ok(None)
    }

    /// Accepts the publish asked for by the last [`SessionEvent::Publish`]: the client is told
    /// `NetStream.Publish.Start` and its media flows.
    pub fn accept_publish(&mut self) {
        if self.phase == Phase::PublishRequested {
            self.phase = Phase::Publishing;
            self.send(&command::on_status(
                self.publish_stream,
                "status",
                command::PUBLISH_START,
                "Publishing.",
            ));
        }
    }

    /// Refuses the publish asked for by the last [`SessionEvent::Publish`] with an error
    /// `onStatus` carrying `description` (no secrets: the client may show it). The session is
    /// closed; send the output, then close the connection.
    pub fn reject_publish(&mut self, rejection: PublishRejection, description: &str) {
        if self.phase == Phase::PublishRequested {
            let code = match rejection {
                PublishRejection::BadName => command::PUBLISH_BAD_NAME,
                PublishRejection::Denied => command::PUBLISH_DENIED,
            };
            self.send(&command::on_status(
                self.publish_stream,
                "error",
                code,
                description,
            ));
            self.phase = Phase::Closed;
        }
    }

    /// Bytes to send to the client; empty when there is nothing.
    pub fn take_output(&mut self) -> Bytes {
        self.out.split().freeze()
    }

    /// Whether a publish is accepted and running.
    pub fn is_publishing(&self) -> bool {
        self.phase == Phase::Publishing
    }

    fn fail(&mut self, error: SessionError) -> SessionError {
        self.phase = Phase::Closed;
        error
    }

    fn send(&mut self, message: &Message) {
        self.encoder.encode(message, &mut self.out);
    }

    fn handle(&mut self, message: Message) -> Result<Option<SessionEvent>, SessionError> {
        match message.type_id {
            type_id::COMMAND_AMF0 => self.command(&message.payload, message.stream_id),
            // AMF3 command and data messages start with a format byte; publishers that use
            // them put AMF0 after it.
            type_id::COMMAND_AMF3 => self.command(
                message.payload.get(1..).unwrap_or_default(),
                message.stream_id,
            ),
            type_id::DATA_AMF0 => Ok(self.data(message.payload, message.timestamp)),
            type_id::DATA_AMF3 if !message.payload.is_empty() => {
                Ok(self.data(message.payload.slice(1..), message.timestamp))
            }
            type_id::AUDIO => Ok(self.media(TagKind::Audio, message)),
            type_id::VIDEO => {
                if message.payload.first().is_some_and(|b| b & 0x80 != 0) {
                    // Say why before the connection closes; OBS and ffmpeg log the description.
                    self.send(&command::on_status(
                        self.publish_stream,
                        "error",
                        command::PUBLISH_DENIED,
                        "Enhanced RTMP (HEVC/AV1/VP9) is not supported: H.264 is required.",
                    ));
                    return Err(SessionError::EnhancedRtmp);
                }
                Ok(self.media(TagKind::Video, message))
            }
            type_id::USER_CONTROL => {
                if let Some((user_control::PING_REQUEST, time)) =
                    super::message::read_user_control(&message.payload)
                {
                    self.send(&Message::user_control(user_control::PING_RESPONSE, time));
                }
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    fn command(
        &mut self,
        payload: &[u8],
        stream_id: u32,
    ) -> Result<Option<SessionEvent>, SessionError> {
        if payload.len() > MAX_COMMAND_BYTES {
            return Err(SessionError::CommandTooLarge(payload.len()));
        }
        let cmd = Command::decode(payload)?;
        let out_of_order = |when| SessionError::OutOfOrder {
            command: cmd.short_name(),
            when,
        };
        match cmd.name.as_str() {
            "connect" if self.phase == Phase::AwaitingConnect => self.connect(&cmd),
            "connect" => Err(out_of_order("twice on one connection")),
            _ if self.phase == Phase::AwaitingConnect => Err(out_of_order("before `connect`")),
            "releaseStream" | "FCPublish" => {
                // Answered only when the client asks for an answer (transaction ID not 0).
                if cmd.transaction != 0.0 {
                    self.send(&command::result(cmd.transaction, Amf0Value::Undefined));
                }
                Ok(None)
            }
            "createStream" => {
                self.send(&command::result(
                    cmd.transaction,
                    Amf0Value::Number(f64::from(STREAM_ID)),
                ));
                Ok(None)
            }
            "publish" if matches!(self.phase, Phase::PublishRequested | Phase::Publishing) => {
                Err(out_of_order("while publishing"))
            }
            "publish" => {
                let Some(name) = cmd.args.first().and_then(Amf0Value::as_str) else {
                    return Err(SessionError::MalformedCommand {
                        name: cmd.short_name(),
                        reason: "no publishing name (stream key) after the null command object",
                    });
                };
                // `key?token=...` is common in publisher setups; the query is not the key.
                let key = name.split('?').next().unwrap_or_default().to_owned();
                self.publish_stream = stream_id;
                self.phase = Phase::PublishRequested;
                Ok(Some(SessionEvent::Publish { key }))
            }
            "FCUnpublish" | "deleteStream" | "closeStream"
                if matches!(self.phase, Phase::PublishRequested | Phase::Publishing) =>
            {
                self.phase = Phase::Connected;
                Ok(Some(SessionEvent::Unpublish))
            }
            _ => Ok(None),
        }
    }

    fn connect(&mut self, cmd: &Command) -> Result<Option<SessionEvent>, SessionError> {
        let app = app_name(&cmd.object);
        if app != APP {
            self.send(&command::connect_rejected(
                cmd.transaction,
                "Unknown application: publish to rtmp://HOST/live/<key>.",
            ));
            return Err(SessionError::UnknownApp(app.chars().take(64).collect()));
        }
        self.send(&Message::window_ack_size(WINDOW_SIZE));
        self.send(&Message::set_peer_bandwidth(WINDOW_SIZE));
        self.encoder
            .set_chunk_size(SERVER_CHUNK_SIZE, &mut self.out);
        self.send(&command::connect_result(cmd.transaction));
        self.send(&Message::user_control(user_control::STREAM_BEGIN, 0));
        self.phase = Phase::Connected;
        Ok(None)
    }

    fn data(&mut self, payload: Bytes, timestamp: u32) -> Option<SessionEvent> {
        if self.phase != Phase::Publishing {
            return None;
        }
        let first = leading_string(&payload)?;
        // An FLV file carries `onMetaData` and its array; `@setDataFrame` only tells an RTMP
        // server to keep the data, so it is stripped.
        let body = match first.0.as_str() {
            "@setDataFrame" => {
                let body = payload.slice(first.1..);
                (leading_string(&body)?.0 == "onMetaData").then_some(body)?
            }
            "onMetaData" => payload,
            _ => return None,
        };
        Some(SessionEvent::Media(FlvTag {
            kind: TagKind::Script,
            timestamp,
            data: body,
        }))
    }

    fn media(&mut self, kind: TagKind, message: Message) -> Option<SessionEvent> {
        // Empty tags carry nothing a decoder could use (some encoders send them as keepalives).
        if self.phase != Phase::Publishing || message.payload.is_empty() {
            return None;
        }
        Some(SessionEvent::Media(FlvTag {
            kind,
            timestamp: message.timestamp,
            data: message.payload,
        }))
    }
}

/// The AMF0 string at the start of `body` and the bytes it takes, if it starts with one.
fn leading_string(body: &[u8]) -> Option<(String, usize)> {
    if body.first() != Some(&STRING_MARKER) {
        return None;
    }
    let mut reader = Amf0Reader::new(body);
    let value = reader.read().ok()?;
    Some((value.as_str()?.to_owned(), reader.position()))
}

/// The application from `connect`'s `app`, or else from the path of its `tcUrl`, without any
/// query or surrounding slashes.
fn app_name(object: &Amf0Value) -> String {
    let app = object
        .get("app")
        .and_then(Amf0Value::as_str)
        .filter(|a| !a.is_empty());
    let from_url = || {
        let url = object.get("tcUrl").and_then(Amf0Value::as_str)?;
        let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
        after_scheme.split_once('/').map(|(_, path)| path)
    };
    let raw = app.or_else(from_url).unwrap_or_default();
    raw.split('?')
        .next()
        .unwrap_or_default()
        .trim_matches('/')
        .to_owned()
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
