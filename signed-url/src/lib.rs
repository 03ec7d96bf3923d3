//! Expiring signatures on playback URLs, shared by the origin (which mints them) and the edge
//! (which checks them before any cache or upstream work).
//!
//! A signed URL carries `exp=<unix seconds>&sig=<hex HMAC-SHA256>` in its query. The MAC covers
//! the URL's *scope* and the expiry, as `"{scope}\n{exp}"`, with a key the origin and the edges
//! share. The scope is the path up to its second segment, `/live/{stream}/`, so one signature
//! admits a player to the whole stream: its multivariant playlist, every media playlist, part
//! and segment, which the edge hands on to the URIs in the playlists it serves. Comparison is
//! constant-time. Pure code over untrusted input: every query gets a verdict, never a panic.
//!
//! ```
//! let key = signed_url::Key::new(b"a key of at least sixteen bytes").expect("long enough");
//! let query = key.sign("/live/demo/master.m3u8", 2_000_000_000).expect("a stream path");
//! assert!(key.verify("/live/demo/720p/12.3.m4s", Some(&query), 1_900_000_000).is_ok());
//! ```

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The shortest key accepted, in bytes.
pub const MIN_KEY_LEN: usize = 16;

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No `exp` or no `sig` in the query.
    #[error("missing signature")]
    Missing,
    /// `exp` or `sig` is malformed, or given twice.
    #[error("malformed signature")]
    Malformed,
    /// `exp` is in the past.
    #[error("expired signature")]
    Expired,
    /// The path has no scope (`/a/b/...`) to be signed for.
    #[error("path cannot be signed")]
    Unscoped,
    /// The MAC does not match.
    #[error("forged signature")]
    Forged,
}

impl Denied {
    /// A short label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Denied::Missing => "missing",
            Denied::Malformed => "malformed",
            Denied::Expired => "expired",
            Denied::Unscoped => "unscoped",
            Denied::Forged => "forged",
        }
    }
}

/// A shared signing key.
#[derive(Clone)]
pub struct Key(Vec<u8>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// A key from its bytes; `None` when shorter than [`MIN_KEY_LEN`].
    pub fn new(bytes: &[u8]) -> Option<Key> {
        (bytes.len() >= MIN_KEY_LEN).then(|| Key(bytes.to_vec()))
    }

    fn mac(&self, scope: &str, exp: u64) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC takes keys of any length");
        mac.update(scope.as_bytes());
        mac.update(b"\n");
        mac.update(exp.to_string().as_bytes());
        mac
    }

    /// The query (`exp=..&sig=..`) that admits requests in `path`'s scope until `exp` (unix
    /// seconds); `None` when the path has no scope.
    pub fn sign(&self, path: &str, exp: u64) -> Option<String> {
        let scope = scope(path)?;
        let sig = self.mac(scope, exp).finalize().into_bytes();
        Some(format!("exp={exp}&sig={}", hex(&sig)))
    }

    /// Checks the signature in `query` for `path` at time `now` (unix seconds).
    pub fn verify(&self, path: &str, query: Option<&str>, now: u64) -> Result<(), Denied> {
        let (exp, sig) = signature(query.unwrap_or(""))?;
        if exp < now {
            return Err(Denied::Expired);
        }
        let scope = scope(path).ok_or(Denied::Unscoped)?;
        self.mac(scope, exp)
            .verify_slice(&sig)
            .map_err(|_| Denied::Forged)
    }
}

/// The part of `path` a signature covers: `/{a}/{b}/`.
pub fn scope(path: &str) -> Option<&str> {
    let rest = path.strip_prefix('/')?;
    let first = rest.find('/')?;
    let second = rest[first + 1..].find('/')? + first + 1;
    if first == 0 || second == first + 1 {
        return None;
    }
    Some(&path[..second + 2])
}

/// `exp` and `sig` from a query, each exactly once.
fn signature(query: &str) -> Result<(u64, [u8; 32]), Denied> {
    let (mut exp, mut sig) = (None, None);
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match name {
            "exp" => &mut exp,
            "sig" => &mut sig,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(Denied::Malformed);
        }
    }
    let (Some(exp), Some(sig)) = (exp, sig) else {
        return Err(Denied::Missing);
    };
    if exp.is_empty() || exp.len() > 19 || !exp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Denied::Malformed);
    }
    let exp = exp.parse().map_err(|_| Denied::Malformed)?;
    Ok((exp, unhex(sig).ok_or(Denied::Malformed)?))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key() -> Key {
        Key::new(b"corral-local-development-key").expect("long enough")
    }

    #[test]
    fn a_signature_admits_its_whole_stream_until_it_expires() {
        let k = key();
        let q = k.sign("/live/demo/master.m3u8", 1000).expect("scoped");
        for path in [
            "/live/demo/master.m3u8",
            "/live/demo/720p/index.m3u8",
            "/live/demo/720p/17.2.m4s",
        ] {
            assert_eq!(k.verify(path, Some(&q), 999), Ok(()), "{path}");
            assert_eq!(
                k.verify(path, Some(&q), 1000),
                Ok(()),
                "valid through its second"
            );
            assert_eq!(k.verify(path, Some(&q), 1001), Err(Denied::Expired));
        }
        let with_directives = format!("_HLS_msn=5&{q}&_HLS_part=1");
        assert_eq!(
            k.verify("/live/demo/720p/index.m3u8", Some(&with_directives), 999),
            Ok(())
        );
    }

    #[test]
    fn other_streams_other_keys_and_tampering_are_refused() {
        let k = key();
        let q = k.sign("/live/demo/master.m3u8", 1000).expect("scoped");
        assert_eq!(
            k.verify("/live/other/master.m3u8", Some(&q), 0),
            Err(Denied::Forged)
        );
        let other = Key::new(b"another key, also long").expect("long enough");
        assert_eq!(
            other.verify("/live/demo/master.m3u8", Some(&q), 0),
            Err(Denied::Forged)
        );
        let later = q.replace("exp=1000", "exp=9000");
        assert_eq!(
            k.verify("/live/demo/master.m3u8", Some(&later), 0),
            Err(Denied::Forged)
        );
        let flipped = if q.ends_with('0') {
            format!("{}1", &q[..q.len() - 1])
        } else {
            format!("{}0", &q[..q.len() - 1])
        };
        assert_eq!(
            k.verify("/live/demo/master.m3u8", Some(&flipped), 0),
            Err(Denied::Forged)
        );
    }

    #[test]
    fn malformed_and_missing_signatures_say_so() {
        let k = key();
        let p = "/live/demo/master.m3u8";
        assert_eq!(k.verify(p, None, 0), Err(Denied::Missing));
        assert_eq!(k.verify(p, Some("exp=5"), 0), Err(Denied::Missing));
        assert_eq!(k.verify(p, Some("exp=x&sig=00"), 0), Err(Denied::Malformed));
        assert_eq!(k.verify(p, Some("exp=5&sig=zz"), 0), Err(Denied::Malformed));
        assert_eq!(
            k.verify(p, Some("exp=5&exp=6&sig=00"), 0),
            Err(Denied::Malformed)
        );
        let q = k.sign(p, 10).expect("scoped");
        assert_eq!(k.verify("/healthz", Some(&q), 0), Err(Denied::Unscoped));
        assert!(Key::new(b"short").is_none());
        assert_eq!(format!("{k:?}"), "Key(..)", "keys never reach logs");
    }

    #[test]
    fn scopes_are_the_first_two_segments() {
        assert_eq!(scope("/live/demo/720p/1.m4s"), Some("/live/demo/"));
        assert_eq!(scope("/live/demo/master.m3u8"), Some("/live/demo/"));
        assert_eq!(scope("/live/demo"), None);
        assert_eq!(scope("//demo/x"), None);
        assert_eq!(scope("/live//x"), None);
        assert_eq!(scope("live/demo/x"), None);
    }

    proptest! {
        #[test]
        fn any_query_gets_a_verdict(path in "/[a-z]{1,5}/[a-z]{1,5}/.{0,20}", query in ".{0,200}", now: u64) {
            let _ = key().verify(&path, Some(&query), now);
        }

        #[test]
        fn what_is_signed_verifies(stream in "[a-z0-9_-]{1,16}", exp in 1u64..u64::MAX / 2, now in 0u64..u64::MAX / 2) {
            let k = key();
            let path = format!("/live/{stream}/master.m3u8");
            let q = k.sign(&path, exp).expect("scoped");
            let verdict = k.verify(&path, Some(&q), now);
            prop_assert_eq!(verdict.is_ok(), now <= exp);
        }
    }
}
