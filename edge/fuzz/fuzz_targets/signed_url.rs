//! Fuzzes the signature check players' queries meet at a signing edge
//! (`signed_url::Key::verify`, reached through `corral_edge`) and the hand-on of a signature to
//! a playlist's URIs (`corral_edge::signing`).
//!
//! Input: the first 8 bytes are "now" (unix seconds), the rest, read as lossy UTF-8, is split
//! at its first '?' into path and query. Checked: nothing panics; a query is admitted only if
//! it carries the signature that `sign` makes for that path and an expiry not past "now"; the
//! hand-on never shrinks a playlist and leaves it unchanged when it has no URI.

#![no_main]

use corral_edge::signing::{hand_on, signature_of};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((now, rest)) = data.split_first_chunk::<8>() else {
        return;
    };
    let now = u64::from_le_bytes(*now);
    let key = signed_url::Key::new(b"fuzzing-key-0123456789").expect("long enough");
    let input = String::from_utf8_lossy(rest);
    let (path, query) = match input.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (&*input, None),
    };
    if key.verify(path, query, now).is_ok() {
        let sig = signature_of(query.unwrap_or("")).expect("an admitted query has a signature");
        let (exp, mac) = sig
            .strip_prefix("exp=")
            .and_then(|s| s.split_once("&sig="))
            .expect("exp=..&sig=..");
        let exp: u64 = exp.parse().expect("an admitted query has a numeric expiry");
        assert!(exp >= now);
        assert_eq!(
            key.sign(path, exp),
            Some(format!("exp={exp}&sig={}", mac.to_ascii_lowercase())),
            "only the signature sign() makes is admitted"
        );
    }
    let out = hand_on(rest, "exp=1&sig=00");
    assert!(out.len() >= rest.len());
    if !rest.windows(5).any(|w| w == b"URI=\"") && rest.split(|&b| b == b'\n').all(|l| l.is_empty() || l.starts_with(b"#") || l.iter().all(u8::is_ascii_whitespace)) {
        assert_eq!(out, rest, "nothing to sign, nothing changed");
    }
});
