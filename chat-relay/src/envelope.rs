//! The frames relay nodes broadcast to each other on a room's Redis pub/sub channel. Pure,
//! so the fuzz target reads it without the rest of the relay.

/// A broadcast on a room's pub/sub channel, as [`encode`] writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Envelope<'a> {
    /// A message frame and its offset.
    Msg(u64, &'a str),
    /// Another frame for the whole room.
    Frame(&'a str),
    /// A frame for one user's connections.
    ToUser(&'a str, &'a str),
    /// One node's reaction counts (JSON object) of one window.
    Reactions(&'a str),
}

/// The payload for `envelope`: `m|<offset>|<frame>`, `f||<frame>`, `u|<user length>|<user>
/// <frame>`, `r||<counts>`.
pub fn encode(envelope: &Envelope<'_>) -> String {
    match envelope {
        Envelope::Msg(offset, frame) => format!("m|{offset}|{frame}"),
        Envelope::Frame(frame) => format!("f||{frame}"),
        Envelope::ToUser(user, frame) => format!("u|{}|{user}{frame}", user.len()),
        Envelope::Reactions(counts) => format!("r||{counts}"),
    }
}

/// Reads a payload; `None` for anything [`encode`] does not write.
pub fn decode(payload: &str) -> Option<Envelope<'_>> {
    let (kind, rest) = payload.split_once('|')?;
    let (number, body) = rest.split_once('|')?;
    match kind {
        "m" => Some(Envelope::Msg(number.parse().ok()?, body)),
        "f" if number.is_empty() => Some(Envelope::Frame(body)),
        "u" => {
            let len: usize = number.parse().ok()?;
            let user = body.get(..len)?;
            Some(Envelope::ToUser(user, body.get(len..)?))
        }
        "r" if number.is_empty() => Some(Envelope::Reactions(body)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn envelopes_read_back_as_written() {
        for e in [
            Envelope::Msg(42, r#"{"op":"msg"}"#),
            Envelope::Frame(r#"{"op":"viewers","count":1}"#),
            Envelope::ToUser("u|odd|id", r#"{"op":"banned"}"#),
            Envelope::Reactions(r#"{"🔥":3}"#),
        ] {
            assert_eq!(decode(&encode(&e)), Some(e));
        }
        assert_eq!(decode("m|x|{}"), None);
        assert_eq!(decode("u|99|short"), None);
        assert_eq!(decode("z||{}"), None);
        assert_eq!(decode("nothing"), None);
    }

    proptest! {
        #[test]
        fn any_payload_decodes_or_is_refused_without_panicking(p in ".{0,64}") {
            let _ = decode(&p);
        }
    }
}
