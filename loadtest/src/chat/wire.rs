//! What the chat load's frames say: the stamp each sent message's text carries, the `send`
//! frame, and the few server frames the load counts (`msg`, `ack`, `error`). Pure: no sockets.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;

/// What a sent message's text carries: when it was sent, by which sender, its number in the
/// run, and the run, so every receiver computes its delivery latency on the same clock and
/// counts only this run's messages (a room's history may hold an earlier run's).
///
/// ```
/// use corral_loadtest::chat::wire::Stamp;
/// let stamp = Stamp { sent_unix_ns: 1_700_000_000_000_000_000, sender: 3, seq: 41, run: 9 };
/// assert_eq!(stamp.text(), "t=1700000000000000000 s=3 n=41 r=9");
/// assert_eq!(Stamp::parse(&stamp.text()), Some(stamp));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Wall-clock send time, unix nanoseconds.
    pub sent_unix_ns: u64,
    /// The sender's index.
    pub sender: usize,
    /// The message's number in the run (across all senders, from 0).
    pub seq: u64,
    /// The run's id.
    pub run: u32,
}

impl Stamp {
    /// The message text: `t=<unix ns> s=<sender> n=<seq> r=<run>`.
    pub fn text(&self) -> String {
        format!(
            "t={} s={} n={} r={}",
            self.sent_unix_ns, self.sender, self.seq, self.run
        )
    }

    /// Reads a stamp from a message text; `None` for a text that is not one (another client's
    /// message in the same room). Fields may come in any order, unknown ones are skipped.
    pub fn parse(text: &str) -> Option<Stamp> {
        let (mut t, mut s, mut n, mut r) = (None, None, None, None);
        for field in text.split_ascii_whitespace() {
            match field.split_once('=') {
                Some(("t", v)) => t = v.parse().ok(),
                Some(("s", v)) => s = v.parse().ok(),
                Some(("n", v)) => n = v.parse().ok(),
                Some(("r", v)) => r = v.parse().ok(),
                _ => {}
            }
        }
        Some(Stamp {
            sent_unix_ns: t?,
            sender: s?,
            seq: n?,
            run: r?,
        })
    }

    /// Microseconds from sending to `received_unix_ns`; 0 if the clock stepped back.
    pub fn latency_us(&self, received_unix_ns: u64) -> u64 {
        received_unix_ns.saturating_sub(self.sent_unix_ns) / 1000
    }
}

/// `t` as unix nanoseconds (0 before 1970).
pub fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The client's `send` frame for `stamp`; its nonce is the message's number, so the `ack`
/// says which message was accepted.
pub fn send_frame(stamp: &Stamp) -> String {
    serde_json::json!({
        "op": "send",
        "text": stamp.text(),
        "nonce": stamp.seq.to_string(),
    })
    .to_string()
}

/// A server frame, as far as the load cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerFrame {
    /// A message was delivered: its offset in the room, and its stamp when it is a load's.
    Msg {
        /// Its position in the room.
        offset: u64,
        /// What its text says, when it is a stamp.
        stamp: Option<Stamp>,
    },
    /// What a reconnecting client missed, sent first after it joins with `since`.
    Recovery {
        /// Whether `messages` is everything since the client's offset (false: more was
        /// missed than the relay recovers, and the client has a gap).
        recovered: bool,
        /// The messages, in order: offset and stamp.
        messages: Vec<(u64, Option<Stamp>)>,
    },
    /// Message number `seq` was accepted.
    Ack(u64),
    /// An operation was refused with this code (`rate_limited`, ...).
    Refused(String),
    /// Anything else: `viewers`, `reactions`, another client's message, an unreadable frame.
    Other,
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(borrow)]
    op: Cow<'a, str>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    nonce: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    code: Option<Cow<'a, str>>,
    #[serde(default)]
    offset: Option<u64>,
    #[serde(default)]
    recovered: Option<bool>,
    #[serde(default)]
    messages: Vec<Recovered>,
}

#[derive(Deserialize)]
struct Recovered {
    offset: u64,
    #[serde(default)]
    text: String,
}

/// Reads a text frame from the relay.
///
/// ```
/// use corral_loadtest::chat::wire::{ServerFrame, read_frame};
/// assert_eq!(read_frame(r#"{"op":"ack","nonce":"7","id":"x","offset":7}"#), ServerFrame::Ack(7));
/// assert_eq!(read_frame(r#"{"op":"viewers","count":3}"#), ServerFrame::Other);
/// ```
pub fn read_frame(text: &str) -> ServerFrame {
    let Ok(frame) = serde_json::from_str::<Frame<'_>>(text) else {
        return ServerFrame::Other;
    };
    match frame.op.as_ref() {
        "msg" => match frame.offset {
            Some(offset) => ServerFrame::Msg {
                offset,
                stamp: frame.text.as_deref().and_then(Stamp::parse),
            },
            None => ServerFrame::Other,
        },
        "recovery" => ServerFrame::Recovery {
            recovered: frame.recovered.unwrap_or(false),
            messages: frame
                .messages
                .iter()
                .map(|m| (m.offset, Stamp::parse(&m.text)))
                .collect(),
        },
        "ack" => frame
            .nonce
            .as_deref()
            .and_then(|n| n.parse().ok())
            .map_or(ServerFrame::Other, ServerFrame::Ack),
        "error" => ServerFrame::Refused(frame.code.as_deref().unwrap_or("unknown").to_string()),
        _ => ServerFrame::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(sent_unix_ns: u64, sender: usize, seq: u64) -> Stamp {
        Stamp {
            sent_unix_ns,
            sender,
            seq,
            run: 5,
        }
    }

    #[test]
    fn stamps_read_back_in_any_order_and_others_texts_are_not_stamps() {
        let s = stamp(1_712_000_000_123_456_789, 7, 12_345);
        assert_eq!(Stamp::parse(&s.text()), Some(s));
        assert_eq!(Stamp::parse("n=2  s=1 x=y r=5 t=99"), Some(stamp(99, 1, 2)));
        assert_eq!(Stamp::parse("hello chat"), None);
        assert_eq!(Stamp::parse("t=1 s=2 r=5"), None);
        assert_eq!(Stamp::parse("t=1 s=2 n=3"), None, "no run");
        assert_eq!(Stamp::parse("t=abc s=1 n=2 r=5"), None);
        assert_eq!(Stamp::parse("t=-5 s=1 n=2 r=5"), None);
    }

    #[test]
    fn latency_is_receive_time_minus_send_time_in_microseconds() {
        let s = stamp(5_000_000, 0, 0);
        assert_eq!(s.latency_us(7_500_999), 2_500);
        assert_eq!(s.latency_us(1_000), 0, "a clock step back is not negative");
    }

    #[test]
    fn the_relays_frames_are_read_as_the_protocol_says() {
        let s = stamp(10, 1, 2);
        let msg = format!(
            r#"{{"op":"msg","id":"m1","offset":3,"user":{{"id":"u","name":"U"}},"text":"{}","emotes":[],"sent_at":1}}"#,
            s.text()
        );
        assert_eq!(
            read_frame(&msg),
            ServerFrame::Msg {
                offset: 3,
                stamp: Some(s)
            }
        );
        assert_eq!(
            read_frame(r#"{"op":"msg","id":"m","offset":1,"text":"hi all"}"#),
            ServerFrame::Msg {
                offset: 1,
                stamp: None
            }
        );
        let recovery = format!(
            r#"{{"op":"recovery","recovered":true,"messages":[{{"id":"a","offset":4,"text":"hi"}},{{"id":"b","offset":5,"text":"{}"}}]}}"#,
            s.text()
        );
        assert_eq!(
            read_frame(&recovery),
            ServerFrame::Recovery {
                recovered: true,
                messages: vec![(4, None), (5, Some(s))]
            }
        );
        assert_eq!(
            read_frame(r#"{"op":"recovery","recovered":false,"messages":[]}"#),
            ServerFrame::Recovery {
                recovered: false,
                messages: vec![]
            }
        );
        assert_eq!(
            read_frame(r#"{"op":"ack","nonce":"42","id":"m","offset":1}"#),
            ServerFrame::Ack(42)
        );
        assert_eq!(
            read_frame(r#"{"op":"error","code":"rate_limited","message":"wait"}"#),
            ServerFrame::Refused("rate_limited".into())
        );
        assert_eq!(read_frame("not json"), ServerFrame::Other);
        let sent: serde_json::Value =
            serde_json::from_str(&send_frame(&s)).expect("the send frame is JSON");
        assert_eq!(sent["op"], "send");
        assert_eq!(sent["nonce"], "2");
        assert_eq!(sent["text"], s.text());
    }
}
