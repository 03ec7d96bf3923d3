//! Protocol v1: JSON text frames, tagged by `op`.

use serde::{Deserialize, Serialize};

use crate::emotes::Emote;

/// What a client sends.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum ClientOp {
    /// A chat message; `nonce` comes back in the `ack`.
    Send {
        /// The text.
        text: String,
        /// The client's id for this message.
        #[serde(default)]
        nonce: Option<String>,
    },
    /// A reaction, counted into the room's next `reactions` frame.
    React {
        /// The emoji.
        emoji: String,
    },
    /// The last offset the client has shown (for delivery status).
    Seen {
        /// The offset.
        offset: u64,
    },
}

/// A user, as frames show them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The user id (the token's `sub`).
    pub id: String,
    /// The display name.
    pub name: String,
}

/// A chat message, as stored and sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Its id (unique across rooms).
    pub id: String,
    /// Its position in the room, from 1.
    pub offset: u64,
    /// Who sent it.
    pub user: User,
    /// The text.
    pub text: String,
    /// The emotes in the text.
    pub emotes: Vec<Emote>,
    /// When the relay accepted it (unix milliseconds).
    pub sent_at: u64,
}

/// A room's modes, as `PUT /v1/rooms/{stream}/modes` sets them and `room` frames show them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Modes {
    /// Seconds a user waits between two messages; 0 is off.
    #[serde(default)]
    pub slow_mode: u32,
    /// Only users who have followed the channel for at least this many minutes may send;
    /// `null` is off, 0 is any follower.
    #[serde(default)]
    pub followers_only: Option<u32>,
}

/// A user's subscription to a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// 1, 2 or 3.
    pub tier: u8,
    /// Since when (unix milliseconds).
    pub since: u64,
}

/// What a user is to a channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relationship {
    /// Whether the user follows it.
    pub following: bool,
    /// Since when (unix milliseconds).
    pub followed_at: Option<u64>,
    /// The subscription, if any.
    pub subscription: Option<Subscription>,
}

/// What the relay sends.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum ServerFrame<'a> {
    /// The sender's message was accepted.
    Ack {
        /// The client's nonce.
        nonce: Option<&'a str>,
        /// The message id.
        id: &'a str,
        /// Its offset.
        offset: u64,
    },
    /// A message in the room.
    Msg(&'a Message),
    /// Reactions counted over the last window.
    Reactions {
        /// Count per emoji.
        counts: &'a std::collections::BTreeMap<String, u64>,
        /// The window, milliseconds.
        window_ms: u64,
    },
    /// What a reconnecting client missed (`?since=<offset>`), oldest first; or, when the gap
    /// was too long, `recovered: false` and the newest page.
    Recovery {
        /// Whether `messages` is everything after the client's offset.
        recovered: bool,
        /// The messages.
        messages: &'a [Message],
    },
    /// The room's modes: on join, and when a moderator changes them.
    Room(&'a Modes),
    /// Viewers in the room now.
    Viewers {
        /// How many.
        count: u64,
    },
    /// A message was removed by a moderator.
    Deleted {
        /// Its id.
        id: &'a str,
    },
    /// A moderator's announcement.
    Announcement {
        /// The text.
        text: &'a str,
        /// `info`, `warning` or `critical`.
        level: &'a str,
    },
    /// To a banned user.
    Banned {
        /// Why.
        reason: &'a str,
        /// Until when (unix seconds), or null for good.
        until: Option<u64>,
    },
    /// A refused operation.
    Error {
        /// A stable code: `bad_frame`, `unknown_op`, `unauthorized`, `too_long`, `empty`,
        /// `rate_limited`, `slow_mode`, `followers_only`, `unavailable`.
        code: &'a str,
        /// For people.
        message: &'a str,
    },
}

impl ServerFrame<'_> {
    /// The frame's JSON text.
    pub fn text(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{\"op\":\"error\"}".to_string())
    }
}

/// Reads a client frame: `Err(code)` with `bad_frame` for anything but a JSON object with a
/// known `op`, `unknown_op` for an object whose `op` is not one.
pub fn read(text: &str) -> Result<ClientOp, &'static str> {
    match serde_json::from_str::<ClientOp>(text) {
        Ok(op) => Ok(op),
        Err(_) => {
            let known = ["send", "react", "seen"];
            match serde_json::from_str::<serde_json::Value>(text) {
                Ok(v)
                    if v.get("op")
                        .and_then(|o| o.as_str())
                        .is_some_and(|o| !known.contains(&o)) =>
                {
                    Err("unknown_op")
                }
                _ => Err("bad_frame"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn frames_read_as_the_protocol_says() {
        assert_eq!(
            read(r#"{"op":"send","text":"hi","nonce":"n1"}"#),
            Ok(ClientOp::Send {
                text: "hi".into(),
                nonce: Some("n1".into())
            })
        );
        assert_eq!(
            read(r#"{"op":"react","emoji":"🔥"}"#),
            Ok(ClientOp::React {
                emoji: "🔥".into()
            })
        );
        assert_eq!(
            read(r#"{"op":"seen","offset":3}"#),
            Ok(ClientOp::Seen { offset: 3 })
        );
        assert_eq!(read(r#"{"op":"dance"}"#), Err("unknown_op"));
        assert_eq!(read("not json"), Err("bad_frame"));
        assert_eq!(read(r#"{"op":"send"}"#), Err("bad_frame"));
        assert_eq!(read(r#"{"op":"send","text":1}"#), Err("bad_frame"));
    }

    proptest! {
        #[test]
        fn any_text_reads_or_is_refused_without_panicking(text in ".{0,200}") {
            let _ = read(&text);
        }
    }
}
