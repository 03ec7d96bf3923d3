//! Fuzzes `corral_edge::request::read`, which turns the untrusted path and query of every
//! player request into a cache key before any cache or upstream work.
//!
//! The input, read as lossy UTF-8, is split at its first '?' into path and query. Checked:
//! nothing panics; a key starts with the path and stays within a bounded size; and a key is a
//! fixed point: read back as a request, it gives the same kind and the same key (so two
//! spellings of one request can never make two cache entries that differ from the canonical
//! one).

#![no_main]

use corral_edge::request::read;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let (path, query) = match input.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (&*input, None),
    };
    let Ok(request) = read(path, query) else {
        return;
    };
    assert!(request.key.starts_with(path));
    assert!(request.key.len() <= path.len() + 80, "{}", request.key);
    let (key_path, key_query) = match request.key.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (request.key.as_str(), None),
    };
    let again = read(key_path, key_query).expect("a key reads back");
    assert_eq!(again, request, "the key is canonical");
});
