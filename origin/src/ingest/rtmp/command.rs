//! NetConnection and NetStream commands: reading a client's command messages and building the
//! server's answers (`_result`, `_error`, `onStatus`).

use super::amf0::{Amf0Reader, Amf0Value};
use super::message::{COMMAND_CHUNK_STREAM, Message, STATUS_CHUNK_STREAM};
use super::session::SessionError;

/// The status code of a successful `connect`.
pub const CONNECT_SUCCESS: &str = "NetConnection.Connect.Success";
/// The status code of a refused `connect`.
pub const CONNECT_REJECTED: &str = "NetConnection.Connect.Rejected";
/// The status code of an accepted `publish`.
pub const PUBLISH_START: &str = "NetStream.Publish.Start";
/// The status code of a `publish` whose name is unknown or already live.
pub const PUBLISH_BAD_NAME: &str = "NetStream.Publish.BadName";
/// The status code of a `publish` refused for another reason.
pub const PUBLISH_DENIED: &str = "NetStream.Publish.Denied";

/// Command names longer than this are cut in error messages, which end up in logs.
const NAME_IN_ERRORS: usize = 64;

/// A command message: name, transaction ID, command object and the arguments after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// `connect`, `publish`...
    pub name: String,
    /// The ID the answer must carry; 0 when no answer is expected.
    pub transaction: f64,
    /// The command object (`null` for all but `connect`).
    pub object: Amf0Value,
    /// The remaining values.
    pub args: Vec<Amf0Value>,
}

impl Command {
    /// Reads a command from an AMF0 body. A missing transaction ID or command object reads as
    /// 0 and `null`: clients are not consistent about them.
    pub fn decode(payload: &[u8]) -> Result<Self, SessionError> {
        let mut reader = Amf0Reader::new(payload);
        let amf = |source| SessionError::Amf {
            context: "command",
            source,
        };
        let name = match reader.read().map_err(amf)? {
            Amf0Value::String(name) => name,
            _ => {
                return Err(SessionError::MalformedCommand {
                    name: String::new(),
                    reason: "the command name is not a string",
                });
            }
        };
        let mut next = || -> Result<Option<Amf0Value>, SessionError> {
            if reader.is_empty() {
                return Ok(None);
            }
            reader.read().map(Some).map_err(amf)
        };
        let transaction = next()?.and_then(|v| v.as_number()).unwrap_or(0.0);
        let object = next()?.unwrap_or(Amf0Value::Null);
        let mut args = Vec::new();
        while let Some(v) = next()? {
            args.push(v);
        }
        Ok(Command {
            name,
            transaction,
            object,
            args,
        })
    }

    /// The name, cut to a length fit for a log line.
    pub fn short_name(&self) -> String {
        self.name.chars().take(NAME_IN_ERRORS).collect()
    }
}

/// `_result` of `connect`.
pub fn connect_result(transaction: f64) -> Message {
    Message::command(
        COMMAND_CHUNK_STREAM,
        0,
        &[
            Amf0Value::from("_result"),
            Amf0Value::Number(transaction),
            Amf0Value::object([
                ("fmsVer", Amf0Value::from("FMS/3,0,1,123")),
                ("capabilities", Amf0Value::Number(31.0)),
            ]),
            Amf0Value::object([
                ("level", Amf0Value::from("status")),
                ("code", Amf0Value::from(CONNECT_SUCCESS)),
                ("description", Amf0Value::from("Connection succeeded.")),
                ("objectEncoding", Amf0Value::Number(0.0)),
            ]),
        ],
    )
}

/// `_error` of a refused `connect`.
pub fn connect_rejected(transaction: f64, description: &str) -> Message {
    Message::command(
        COMMAND_CHUNK_STREAM,
        0,
        &[
            Amf0Value::from("_error"),
            Amf0Value::Number(transaction),
            Amf0Value::Null,
            status("error", CONNECT_REJECTED, description),
        ],
    )
}

/// `_result` with a null command object and one value (ffmpeg reads a stream ID right after
/// the null, so nothing else may come between).
pub fn result(transaction: f64, value: Amf0Value) -> Message {
    Message::command(
        COMMAND_CHUNK_STREAM,
        0,
        &[
            Amf0Value::from("_result"),
            Amf0Value::Number(transaction),
            Amf0Value::Null,
            value,
        ],
    )
}

/// `onStatus` on message stream `stream_id`, with `level` "status" or "error".
pub fn on_status(stream_id: u32, level: &str, code: &str, description: &str) -> Message {
    Message::command(
        STATUS_CHUNK_STREAM,
        stream_id,
        &[
            Amf0Value::from("onStatus"),
            Amf0Value::Number(0.0),
            Amf0Value::Null,
            status(level, code, description),
        ],
    )
}

fn status(level: &str, code: &str, description: &str) -> Amf0Value {
    Amf0Value::object([
        ("level", Amf0Value::from(level)),
        ("code", Amf0Value::from(code)),
        ("description", Amf0Value::from(description)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::rtmp::amf0;

    #[test]
    fn commands_read_with_or_without_optional_parts() {
        let body = amf0::encode_all(&[
            Amf0Value::from("publish"),
            Amf0Value::Number(5.0),
            Amf0Value::Null,
            Amf0Value::from("key"),
            Amf0Value::from("live"),
        ]);
        let cmd = Command::decode(&body).expect("a publish");
        assert_eq!(cmd.name, "publish");
        assert_eq!(cmd.transaction, 5.0);
        assert_eq!(cmd.object, Amf0Value::Null);
        assert_eq!(
            cmd.args,
            vec![Amf0Value::from("key"), Amf0Value::from("live")]
        );

        let bare = Command::decode(&amf0::encode_all(&[Amf0Value::from("deleteStream")]))
            .expect("name only");
        assert_eq!((bare.transaction, bare.object), (0.0, Amf0Value::Null));

        let err =
            Command::decode(&amf0::encode_all(&[Amf0Value::Number(1.0)])).expect_err("not a name");
        assert_eq!(err.kind(), "amf");
        assert_eq!(
            Command::decode(&[0x02, 0x00]).map_err(|e| e.kind()),
            Err("amf")
        );
    }

    #[test]
    fn the_stream_id_of_create_stream_sits_where_ffmpeg_reads_it() {
        let m = result(4.0, Amf0Value::Number(1.0));
        // ffmpeg reads the double at byte 21: "_result" (10) + number (9) + null (1) + marker.
        assert_eq!(&m.payload[21..29], &1.0f64.to_be_bytes());
    }
}
