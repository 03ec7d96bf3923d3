//! Fuzzes `corral_origin::ingest::srt::streamid::parse`, which reads the untrusted SRT stream id
//! of every caller (on a libsrt thread, where a panic would abort the origin).
//!
//! The input is the raw stream id. Checked: nothing panics; an accepted id has a non-empty key
//! that is a slice of the input, and fits SRT's 512 bytes; and the key, sent again in either
//! form (plain, or `#!::m=publish,s=<key>` when it has no ','), gives the same key back.

#![no_main]

use corral_origin::ingest::srt::streamid::{MAX_LEN, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(id) = parse(data) else {
        return;
    };
    assert!(!id.key.is_empty());
    assert!(data.len() <= MAX_LEN);
    let text = std::str::from_utf8(data).expect("an accepted id is UTF-8");
    assert!(text.contains(id.key), "the key comes from the id");

    if !id.key.starts_with("#!") {
        let plain = parse(id.key.as_bytes()).expect("a key is a plain id");
        assert_eq!(plain.key, id.key);
    }
    if !id.key.contains(',') {
        let structured = format!("#!::m=publish,s={}", id.key);
        if structured.len() <= MAX_LEN {
            let again = parse(structured.as_bytes()).expect("the access-control form");
            assert_eq!(again.key, id.key);
        }
    }
});
