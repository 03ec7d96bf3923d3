//! Client frames as they arrive: any bytes that are UTF-8 (the WebSocket layer refuses the
//! rest) are read as a protocol v1 frame, and a message's text is searched for emotes. Neither
//! may panic; emotes stay within the text and spell their names. The same bytes are read as a
//! node-to-node envelope from Redis, which must decode or be refused, and re-encode to itself.

#![no_main]

use std::collections::HashSet;

use corral_chat_relay::{emotes, envelope};
use corral_chat_relay::protocol::{self, ClientOp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(e) = envelope::decode(text) {
        assert_eq!(envelope::decode(&envelope::encode(&e)), Some(e));
    }
    let known: HashSet<String> = ["Kappa", "GG", "a"].map(String::from).into_iter().collect();
    let body = match protocol::read(text) {
        Ok(ClientOp::Send { text, .. }) => text,
        _ => text.to_string(),
    };
    let chars: Vec<char> = body.chars().collect();
    for e in emotes::parse(&body, &known) {
        assert!(e.start < e.end && e.end <= chars.len());
        let spelled: String = chars[e.start..e.end].iter().collect();
        assert_eq!(spelled, format!(":{}:", e.id));
    }
});
