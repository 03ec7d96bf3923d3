//! Fuzzes the RTMP server side (`corral_origin::ingest::rtmp::{handshake, session}`), which reads
//! every byte an untrusted publisher sends.
//!
//! The first input byte chooses how the rest is cut into reads (0: one read; n: pieces of
//! 1..=n bytes, lengths drawn from a generator seeded by the input), as a socket would deliver
//! them. The reads go through the handshake, then its leftover and the following reads into a
//! session; a publish is accepted unless its key is "reject". Checked: nothing panics; the
//! handshake answers exactly S0+S1+S2; everything the session sends decodes as a valid chunk
//! stream; media only comes out of an accepted publish, and script tags are `onMetaData`.

#![no_main]

use corral_origin::ingest::media::TagKind;
use corral_origin::ingest::rtmp::chunk::ChunkDecoder;
use corral_origin::ingest::rtmp::handshake::{HANDSHAKE_SIZE, Handshake, HandshakeStatus};
use corral_origin::ingest::rtmp::{PublishRejection, Session, SessionEvent};
use libfuzzer_sys::fuzz_target;

/// Small, so that the limits are reached by inputs of fuzzing size.
const MAX_MESSAGE_BYTES: usize = 64 << 10;
/// Events handled per read, so that one input cannot run for long.
const MAX_EVENTS: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let mut handshake = Handshake::new(0, 1);
    let mut handshake_out = 0;
    let mut session: Option<Session> = None;
    let mut client = ChunkDecoder::new(usize::MAX >> 1);
    let mut publishing = false;
    for read in Reads::new(selector, stream) {
        let Some(s) = session.as_mut() else {
            let status = match handshake.receive(read) {
                Ok(status) => status,
                Err(_) => return,
            };
            handshake_out += handshake.take_output().len();
            if let HandshakeStatus::Done { leftover } = status {
                assert_eq!(handshake_out, 1 + 2 * HANDSHAKE_SIZE, "S0 S1 S2, once");
                let mut s = Session::new(MAX_MESSAGE_BYTES);
                s.receive(&leftover);
                session = Some(s);
            }
            continue;
        };
        s.receive(read);
        for _ in 0..MAX_EVENTS {
            match s.poll_event() {
                Ok(Some(SessionEvent::Publish { key })) => {
                    assert!(!key.contains('?'), "the query is not part of the key");
                    if key == "reject" {
                        s.reject_publish(PublishRejection::BadName, "rejected");
                    } else {
                        s.accept_publish();
                        publishing = s.is_publishing();
                        assert!(publishing);
                    }
                }
                Ok(Some(SessionEvent::Media(tag))) => {
                    assert!(publishing, "media only flows from an accepted publish");
                    assert!(!tag.data.is_empty());
                    if tag.kind == TagKind::Script {
                        assert!(tag.data.starts_with(b"\x02\x00\x0aonMetaData"));
                    }
                    if tag.kind == TagKind::Video {
                        assert!(!tag.is_enhanced_video(), "enhanced RTMP is refused");
                    }
                }
                Ok(Some(SessionEvent::Unpublish)) => publishing = false,
                Ok(None) | Err(_) => break,
            }
        }
        // What the server sends must be a valid chunk stream for any client.
        client.push(&s.take_output());
        while let Some(_answer) = client.poll().expect("the server's output decodes") {}
    }
});

/// Cuts `data` into reads as the selector says.
struct Reads<'a> {
    rest: &'a [u8],
    max: usize,
    state: u64,
}

impl<'a> Reads<'a> {
    fn new(selector: u8, data: &'a [u8]) -> Self {
        Self {
            rest: data,
            max: if selector == 0 {
                usize::MAX
            } else {
                usize::from(selector)
            },
            state: 0x9e37_79b9_7f4a_7c15 ^ u64::from(selector) ^ (data.len() as u64) << 8,
        }
    }
}

impl<'a> Iterator for Reads<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let len = if self.max == usize::MAX {
            self.rest.len()
        } else {
            1 + (self.state as usize) % self.max
        };
        let (read, rest) = self.rest.split_at(len.min(self.rest.len()));
        self.rest = rest;
        Some(read)
    }
}
