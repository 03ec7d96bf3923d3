//! The SRT `streamid` a caller sends in its handshake, read as a publish request: which key it
//! presents, and what else it says about itself.
//!
//! Two forms are accepted:
//!
//! - plain: the whole stream id is the key (`srt://host:9000?streamid=studio-key`);
//! - Haivision's access-control form (`AccessControl.md` in the SRT repository):
//!   `#!::r=studio,m=publish,s=studio-key`, comma-separated `key=value` pairs. The key is the
//!   session id `s`, or the resource name `r` when `s` is absent. `m`, when present, must be
//!   `publish`; `t`, when present, must be `stream`. `u` (user) and `h` (host) are kept for the
//!   logs; keys this server does not know are ignored, as the convention asks.
//!
//! Nothing is trimmed: a space is part of the key. Pure code; the listen callback runs it on a
//! libsrt thread, so it must never panic (checked by proptest here and by the `srt_streamid`
//! fuzz target).

/// The longest stream id accepted, in bytes; SRT itself carries at most 512.
pub const MAX_LEN: usize = 512;

/// The prefix of the access-control form.
const ACCESS_CONTROL_PREFIX: &str = "#!::";

/// A publish request read from a stream id; borrows from the stream id.
///
/// ```
/// use corral_origin::ingest::srt::streamid::parse;
///
/// let id = parse(b"#!::r=studio,m=publish,s=studio-key").expect("a publish request");
/// assert_eq!(id.key, "studio-key");
/// assert_eq!(id.resource, Some("studio"));
/// assert_eq!(parse(b"studio-key").expect("plain").key, "studio-key");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamId<'a> {
    /// The publish key: the whole plain id, or `s` (else `r`) of the access-control form.
    pub key: &'a str,
    /// The resource name `r`, when the access-control form gives one.
    pub resource: Option<&'a str>,
    /// The user name `u`, when given.
    pub user: Option<&'a str>,
    /// The host name `h`, when given.
    pub host: Option<&'a str>,
}

/// Why a stream id is not a publish request this server takes. Values quoted from the stream id
/// are shown with `{:?}` so that a hostile id cannot forge log lines.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamIdError {
    /// No stream id at all.
    #[error("the stream id is empty: set streamid to the stream key")]
    Empty,
    /// Longer than [`MAX_LEN`].
    #[error("the stream id is {len} bytes long; at most {MAX_LEN} are accepted")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// Not UTF-8 text.
    #[error("the stream id is not UTF-8 text")]
    NotUtf8,
    /// Starts with `#!` but not with `#!::` (for example the nested `#!:{...}` form).
    #[error("only the `#!::k=v,...` access-control form is supported, not {0:?}")]
    UnsupportedSyntax(String),
    /// An element of the access-control form without `=` (its position, counted from 1; the
    /// element itself is not quoted, as it may be a key).
    #[error("element {0} of the access-control stream id is not key=value")]
    NotKeyValue(usize),
    /// A known key given twice.
    #[error("{0:?} is given twice in the stream id")]
    Repeated(String),
    /// `m` other than `publish`.
    #[error("mode m={0:?} is not served here: only m=publish is accepted")]
    NotPublish(String),
    /// `t` other than `stream`.
    #[error("type t={0:?} is not served here: only t=stream is accepted")]
    NotStream(String),
    /// The access-control form names no key (`s` and `r` absent, or the chosen one empty).
    #[error("the stream id names no key: put the stream key in s= (or in r=)")]
    NoKey,
}

/// Reads `raw`, the stream id as the caller sent it, into a publish request.
pub fn parse(raw: &[u8]) -> Result<StreamId<'_>, StreamIdError> {
    if raw.is_empty() {
        return Err(StreamIdError::Empty);
    }
    if raw.len() > MAX_LEN {
        return Err(StreamIdError::TooLong { len: raw.len() });
    }
    let text = std::str::from_utf8(raw).map_err(|_| StreamIdError::NotUtf8)?;
    if let Some(pairs) = text.strip_prefix(ACCESS_CONTROL_PREFIX) {
        return parse_access_control(pairs);
    }
    if text.starts_with("#!") {
        // `#!` announces a structured id; reading `#!:{...}` as a plain key would only ever
        // fail later with a less helpful "unknown key".
        let shown = text.get(..text.len().min(8)).unwrap_or("#!");
        return Err(StreamIdError::UnsupportedSyntax(shown.to_string()));
    }
    Ok(StreamId {
        key: text,
        resource: None,
        user: None,
        host: None,
    })
}

/// Reads the `k=v,k=v` part of the access-control form.
fn parse_access_control(pairs: &str) -> Result<StreamId<'_>, StreamIdError> {
    let mut resource = None;
    let mut mode = None;
    let mut session = None;
    let mut user = None;
    let mut host = None;
    let mut kind = None;
    for (index, element) in pairs.split(',').enumerate() {
        let (name, value) = element
            .split_once('=')
            .ok_or(StreamIdError::NotKeyValue(index + 1))?;
        let slot = match name {
            "r" => &mut resource,
            "m" => &mut mode,
            "s" => &mut session,
            "u" => &mut user,
            "h" => &mut host,
            "t" => &mut kind,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            // Two keys would leave it to chance which one the hub sees.
            return Err(StreamIdError::Repeated(name.to_string()));
        }
    }
    if let Some(mode) = mode.filter(|m| *m != "publish") {
        return Err(StreamIdError::NotPublish(mode.to_string()));
    }
    if let Some(kind) = kind.filter(|t| *t != "stream") {
        return Err(StreamIdError::NotStream(kind.to_string()));
    }
    // An empty `s=` does not fall back to `r`: the caller meant to send a key and did not.
    let key = session.or(resource).filter(|k| !k.is_empty());
    let key = key.ok_or(StreamIdError::NoKey)?;
    Ok(StreamId {
        key,
        resource,
        user,
        host,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_plain_stream_id_is_the_key() {
        let id = parse(b"studio-key").expect("plain");
        assert_eq!(
            id,
            StreamId {
                key: "studio-key",
                resource: None,
                user: None,
                host: None
            }
        );
        assert_eq!(parse(b" spaced key ").expect("plain").key, " spaced key ");
        assert_eq!(parse(b"a,b=c").expect("plain").key, "a,b=c");
    }

    #[test]
    fn the_access_control_form_gives_the_key_in_s_or_else_r() {
        let id = parse(b"#!::r=studio,m=publish,s=studio-key,u=alice,h=example.com")
            .expect("access control");
        assert_eq!(
            id,
            StreamId {
                key: "studio-key",
                resource: Some("studio"),
                user: Some("alice"),
                host: Some("example.com")
            }
        );
        assert_eq!(
            parse(b"#!::r=studio-key").expect("r only").key,
            "studio-key"
        );
        assert_eq!(
            parse(b"#!::s=k=with=equals").expect("value keeps '='").key,
            "k=with=equals"
        );
        assert_eq!(
            parse(b"#!::t=stream,s= k ").expect("nothing trimmed").key,
            " k "
        );
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let id = parse(b"#!::x-custom=1,s=studio-key,x-custom=2,zz=").expect("ignored");
        assert_eq!(id.key, "studio-key");
    }

    #[test]
    fn modes_other_than_publish_are_refused() {
        assert_eq!(
            parse(b"#!::s=k,m=request"),
            Err(StreamIdError::NotPublish("request".into()))
        );
        assert_eq!(
            parse(b"#!::s=k,m=bidirectional"),
            Err(StreamIdError::NotPublish("bidirectional".into()))
        );
        assert_eq!(
            parse(b"#!::s=k,m=Publish"),
            Err(StreamIdError::NotPublish("Publish".into())),
            "values are case-sensitive"
        );
        assert_eq!(
            parse(b"#!::s=k,t=file"),
            Err(StreamIdError::NotStream("file".into()))
        );
    }

    #[test]
    fn malformed_stream_ids_are_refused() {
        assert_eq!(parse(b""), Err(StreamIdError::Empty));
        assert_eq!(
            parse(&[b'k'; MAX_LEN + 1]),
            Err(StreamIdError::TooLong { len: MAX_LEN + 1 })
        );
        assert!(parse(&[b'k'; MAX_LEN]).is_ok(), "512 bytes is the limit");
        assert_eq!(parse(b"\xff\xfe"), Err(StreamIdError::NotUtf8));
        assert_eq!(parse(b"#!::"), Err(StreamIdError::NotKeyValue(1)));
        assert_eq!(parse(b"#!::s=k,"), Err(StreamIdError::NotKeyValue(2)));
        assert_eq!(
            parse(b"#!::s=k,publish"),
            Err(StreamIdError::NotKeyValue(2))
        );
        assert_eq!(
            parse(b"#!::s=a,s=b"),
            Err(StreamIdError::Repeated("s".into()))
        );
        assert_eq!(parse(b"#!::m=publish"), Err(StreamIdError::NoKey));
        assert_eq!(parse(b"#!::r=studio,s="), Err(StreamIdError::NoKey));
        assert!(matches!(
            parse(b"#!:{s=k}"),
            Err(StreamIdError::UnsupportedSyntax(_))
        ));
    }

    #[test]
    fn errors_quote_hostile_values_escaped() {
        let err = parse(b"#!::s=k,m=x\nFAKE LOG LINE").expect_err("not publish");
        assert!(!err.to_string().contains('\n'), "{err}");
    }

    /// A key that can travel in both forms: no ',' (the pair separator) and not starting with
    /// `#!`.
    fn key() -> impl Strategy<Value = String> {
        "[^,]{1,200}".prop_filter("not a structured id", |k| !k.starts_with("#!"))
    }

    proptest! {
        #[test]
        fn parse_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..700)) {
            if let Ok(id) = parse(&raw) {
                prop_assert!(!id.key.is_empty());
                prop_assert!(raw.len() <= MAX_LEN);
            }
        }

        #[test]
        fn access_control_like_input_never_panics(
            pairs in proptest::collection::vec("[rmsuhtx]{0,2}=?[a-z,=]{0,6}", 0..8)
        ) {
            let raw = format!("#!::{}", pairs.join(","));
            let _ = parse(raw.as_bytes());
        }

        #[test]
        fn a_plain_key_round_trips(key in key()) {
            prop_assume!(key.len() <= MAX_LEN);
            prop_assert_eq!(parse(key.as_bytes()).map(|id| id.key), Ok(key.as_str()));
        }

        #[test]
        fn an_access_control_key_round_trips(
            key in key(),
            resource in "[a-z0-9_-]{1,20}",
            user in proptest::option::of("[a-z]{1,10}"),
        ) {
            let mut raw = format!("#!::r={resource},m=publish,s={key}");
            if let Some(user) = &user {
                raw.push_str(&format!(",u={user}"));
            }
            prop_assume!(raw.len() <= MAX_LEN);
            let id = parse(raw.as_bytes()).expect("a publish request");
            prop_assert_eq!(id.key, key.as_str());
            prop_assert_eq!(id.resource, Some(resource.as_str()));
            prop_assert_eq!(id.user, user.as_deref());
            let r_only = format!("#!::m=publish,r={key}");
            prop_assert_eq!(parse(r_only.as_bytes()).map(|id| id.key), Ok(key.as_str()));
        }
    }
}
