use proptest::prelude::*;

use super::*;

const MAX: usize = 1 << 20;

fn basic(fmt: u8, csid: u32) -> Vec<u8> {
    let mut out = BytesMut::new();
    basic_header(fmt, csid, &mut out);
    out.to_vec()
}

fn u24(v: u32) -> [u8; 3] {
    let b = v.to_be_bytes();
    [b[1], b[2], b[3]]
}

/// A format 0 header; an extended timestamp follows when `timestamp` needs one.
fn h0(csid: u32, timestamp: u32, length: u32, type_id: u8, stream_id: u32) -> Vec<u8> {
    let mut out = basic(0, csid);
    out.extend(u24(timestamp.min(EXTENDED_TIMESTAMP)));
    out.extend(u24(length));
    out.push(type_id);
    out.extend(stream_id.to_le_bytes());
    if timestamp >= EXTENDED_TIMESTAMP {
        out.extend(timestamp.to_be_bytes());
    }
    out
}

fn h1(csid: u32, delta: u32, length: u32, type_id: u8) -> Vec<u8> {
    let mut out = basic(1, csid);
    out.extend(u24(delta));
    out.extend(u24(length));
    out.push(type_id);
    out
}

fn h2(csid: u32, delta: u32) -> Vec<u8> {
    let mut out = basic(2, csid);
    out.extend(u24(delta));
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn drain(decoder: &mut ChunkDecoder) -> Result<Vec<Inbound>, ChunkError> {
    let mut out = Vec::new();
    while let Some(item) = decoder.poll()? {
        out.push(item);
    }
    Ok(out)
}

fn decode(input: &[u8]) -> Result<Vec<Inbound>, ChunkError> {
    let mut decoder = ChunkDecoder::new(MAX);
    decoder.push(input);
    drain(&mut decoder)
}

fn msg(csid: u32, type_id: u8, stream_id: u32, timestamp: u32, payload: &[u8]) -> Inbound {
    Inbound::Message(Message {
        csid,
        type_id,
        stream_id,
        timestamp,
        payload: Bytes::copy_from_slice(payload),
    })
}

fn set_chunk_size(size: u32) -> Vec<u8> {
    cat(&[&h0(2, 0, 4, 1, 0), &size.to_be_bytes()])
}

/// Every header format, a multi-chunk message, extended timestamps, interleaving, 2- and
/// 3-byte chunk stream IDs and a chunk size change: the input the split tests cut up.
fn varied_stream() -> (Vec<u8>, Vec<Inbound>) {
    let big: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    let audio = [0xaf, 0x01, 0x21];
    let input = cat(&[
        // Video on csid 6: fmt 0, 300 bytes in 128-byte chunks, with audio (csid 4) between.
        &h0(6, 1000, 300, 9, 1),
        &big[..128],
        &h0(4, 1000, 3, 8, 1),
        &audio,
        &basic(3, 6),
        &big[128..256],
        &basic(3, 6),
        &big[256..],
        // fmt 1: new length and type, delta 33.
        &h1(4, 33, 2, 8),
        &[1, 2],
        // fmt 2: same length and type, delta 20.
        &h2(4, 20),
        &[3, 4],
        // fmt 3 starting a message: the previous delta again.
        &basic(3, 4),
        &[5, 6],
        // Extended timestamp on a 2-byte csid, spread over two chunks.
        &h0(64, 0x0123_4567, 130, 9, 1),
        &big[..128],
        &basic(3, 64),
        &0x0123_4567u32.to_be_bytes(),
        &big[128..130],
        // A 3-byte csid, after the chunk size grows.
        &set_chunk_size(4096),
        &h0(65_599, 5, 300, 18, 1),
        &big,
    ]);
    let expected = vec![
        msg(4, 8, 1, 1000, &audio),
        msg(6, 9, 1, 1000, &big),
        msg(4, 8, 1, 1033, &[1, 2]),
        msg(4, 8, 1, 1053, &[3, 4]),
        msg(4, 8, 1, 1073, &[5, 6]),
        msg(64, 9, 1, 0x0123_4567, &big[..130]),
        msg(65_599, 18, 1, 5, &big),
    ];
    (input, expected)
}

#[test]
fn all_header_formats_and_chunk_stream_id_forms_decode() {
    let (input, expected) = varied_stream();
    assert_eq!(decode(&input), Ok(expected));
}

#[test]
fn input_split_at_every_byte_decodes_the_same() {
    let (input, expected) = varied_stream();
    for split in 0..=input.len() {
        let mut decoder = ChunkDecoder::new(MAX);
        decoder.push(&input[..split]);
        let mut got = drain(&mut decoder).expect("first part");
        decoder.push(&input[split..]);
        got.extend(drain(&mut decoder).expect("second part"));
        assert_eq!(got, expected, "split at {split}");
        assert_eq!(decoder.buffered(), 0);
    }
    let mut decoder = ChunkDecoder::new(MAX);
    let mut got = Vec::new();
    for b in &input {
        decoder.push(std::slice::from_ref(b));
        got.extend(drain(&mut decoder).expect("byte by byte"));
    }
    assert_eq!(got, expected);
}

#[test]
fn chunk_stream_ids_use_the_shortest_form() {
    assert_eq!(basic(0, 2), [0x02]);
    assert_eq!(basic(3, 63), [0xff]);
    assert_eq!(basic(0, 64), [0x00, 0x00]);
    assert_eq!(basic(0, 319), [0x00, 0xff]);
    assert_eq!(basic(1, 320), [0x41, 0x00, 0x01]);
    assert_eq!(basic(0, 65_599), [0x01, 0xff, 0xff]);
}

#[test]
fn continuation_chunks_carry_no_extended_timestamp_unless_the_header_had_one() {
    // Timestamp just below the extended range: no extra 4 bytes in the continuation.
    let payload = [7u8; 129];
    let input = cat(&[
        &h0(5, 0xff_fffe, 129, 9, 1),
        &payload[..128],
        &basic(3, 5),
        &payload[128..],
    ]);
    assert_eq!(decode(&input), Ok(vec![msg(5, 9, 1, 0xff_fffe, &payload)]));
}

#[test]
fn a_format_3_message_after_an_extended_header_reads_its_delta_from_the_extension() {
    let input = cat(&[
        &h1(5, 0, 1, 9),
        &[1],
        // fmt 1 with an extended delta of 0x0100_0000.
        &basic(1, 5),
        &u24(EXTENDED_TIMESTAMP),
        &u24(1),
        &[9],
        &0x0100_0000u32.to_be_bytes(),
        &[2],
        // fmt 3 new message: its extended field is the delta again.
        &basic(3, 5),
        &0x0100_0000u32.to_be_bytes(),
        &[3],
    ]);
    assert_eq!(
        decode(&input),
        Ok(vec![
            msg(5, 9, 0, 0, &[1]),
            msg(5, 9, 0, 0x0100_0000, &[2]),
            msg(5, 9, 0, 0x0200_0000, &[3]),
        ])
    );
}

#[test]
fn timestamps_wrap_at_32_bits() {
    let input = cat(&[&h0(4, 0xffff_fff0, 1, 8, 1), &[1], &h2(4, 0x20), &[2]]);
    assert_eq!(
        decode(&input),
        Ok(vec![
            msg(4, 8, 1, 0xffff_fff0, &[1]),
            msg(4, 8, 1, 0x10, &[2])
        ])
    );
}

#[test]
fn empty_messages_complete_at_once() {
    let input = cat(&[&h0(3, 0, 0, 20, 0), &h0(3, 5, 1, 20, 0), &[1]]);
    assert_eq!(
        decode(&input),
        Ok(vec![msg(3, 20, 0, 0, &[]), msg(3, 20, 0, 5, &[1])])
    );
}

#[test]
fn abort_drops_the_partial_message() {
    let input = cat(&[
        &h0(6, 0, 200, 9, 1),
        &[0; 128],
        &h0(2, 0, 4, 2, 0),
        &6u32.to_be_bytes(),
        &h0(6, 40, 2, 9, 1),
        &[1, 2],
    ]);
    let mut decoder = ChunkDecoder::new(MAX);
    decoder.push(&input);
    assert_eq!(drain(&mut decoder), Ok(vec![msg(6, 9, 1, 40, &[1, 2])]));
    assert_eq!(
        decoder.pending, 0,
        "the aborted message's budget is released"
    );
}

#[test]
fn a_new_header_in_the_middle_of_a_message_abandons_it() {
    let input = cat(&[&h0(6, 0, 200, 9, 1), &[0; 128], &h2(6, 10), &[]]);
    let mut decoder = ChunkDecoder::new(MAX);
    decoder.push(&input);
    assert_eq!(drain(&mut decoder), Ok(vec![]));
    assert_eq!(decoder.pending, 200, "only the new message is pending");
}

#[test]
fn messages_over_the_limit_are_refused_before_any_payload() {
    let mut decoder = ChunkDecoder::new(1000);
    decoder.push(&h0(4, 0, 1001, 9, 1));
    assert_eq!(
        drain(&mut decoder),
        Err(ChunkError::MessageTooLarge {
            csid: 4,
            length: 1001,
            max: 1000
        })
    );
    let mut decoder = ChunkDecoder::new(1000);
    let mut input = BytesMut::new();
    let largest = Message {
        csid: 4,
        type_id: 9,
        stream_id: 1,
        timestamp: 0,
        payload: Bytes::from(vec![0; 1000]),
    };
    ChunkEncoder::new().encode(&largest, &mut input);
    decoder.push(&input);
    assert_eq!(
        drain(&mut decoder).map(|m| m.len()),
        Ok(1),
        "exactly the limit"
    );
}

#[test]
fn partial_messages_together_are_limited() {
    let mut decoder = ChunkDecoder::new(100_000);
    let mut input = Vec::new();
    // Each announces 100 kB and sends one chunk: past the limit plus slack by the 12th.
    for csid in 3..3 + MAX_CHUNK_STREAMS as u32 {
        input.extend(h0(csid, 0, 100_000, 9, 1));
        input.extend([0; 128]);
    }
    decoder.push(&input);
    let err = drain(&mut decoder).expect_err("over the pending budget");
    assert!(matches!(err, ChunkError::TooMuchPending { .. }), "{err}");
    assert_eq!(err.kind(), "too_large");
}

#[test]
fn the_peer_chunk_size_is_validated() {
    assert_eq!(
        decode(&set_chunk_size(0x8000_0000)),
        Err(ChunkError::InvalidChunkSize(0x8000_0000))
    );
    assert_eq!(
        decode(&set_chunk_size(1)),
        Err(ChunkError::ChunkSizeTooSmall(1))
    );
    assert_eq!(
        decode(&set_chunk_size(63)),
        Err(ChunkError::ChunkSizeTooSmall(63))
    );
    assert_eq!(
        decode(&set_chunk_size(0)).map_err(|e| e.kind()),
        Err("chunk")
    );
    for (size, effective) in [
        (64, 64),
        (0x0100_0000, MAX_CHUNK_SIZE),
        (0x7fff_ffff, MAX_CHUNK_SIZE),
    ] {
        let mut decoder = ChunkDecoder::new(MAX);
        decoder.push(&set_chunk_size(size));
        assert_eq!(drain(&mut decoder), Ok(vec![]));
        assert_eq!(decoder.chunk_size(), effective);
    }
    assert_eq!(
        decode(&cat(&[&h0(2, 0, 3, 1, 0), &[0, 0, 1]])),
        Err(ChunkError::MalformedControl { type_id: 1, len: 3 })
    );
}

#[test]
fn at_most_64_chunk_streams_hold_partial_messages() {
    let mut input = Vec::new();
    for csid in 3..3 + MAX_CHUNK_STREAMS as u32 {
        input.extend(h0(csid, 0, 129, 9, 1));
        input.extend([0; 128]);
    }
    let mut decoder = ChunkDecoder::new(MAX);
    decoder.push(&input);
    assert_eq!(drain(&mut decoder), Ok(vec![]));
    decoder.push(&h0(500, 0, 1, 9, 1));
    assert_eq!(drain(&mut decoder), Err(ChunkError::TooManyChunkStreams));
}

#[test]
fn idle_chunk_streams_are_forgotten_to_make_room() {
    let mut input = Vec::new();
    for csid in 3..300 {
        input.extend(h0(csid, 0, 1, 8, 1));
        input.push(csid as u8);
    }
    let mut decoder = ChunkDecoder::new(MAX);
    decoder.push(&input);
    assert_eq!(drain(&mut decoder).map(|m| m.len()), Ok(297));
    assert_eq!(decoder.streams.len(), MAX_CHUNK_STREAMS);
    // The most recent one is still known, so a format 2 header on it works.
    decoder.push(&cat(&[&h2(299, 1), &[0]]));
    assert_eq!(drain(&mut decoder), Ok(vec![msg(299, 8, 1, 1, &[0])]));
}

#[test]
fn headers_that_need_an_earlier_one_are_refused_without_it() {
    assert_eq!(
        decode(&cat(&[&h2(7, 1), &[0]])),
        Err(ChunkError::NoPreviousHeader { csid: 7, fmt: 2 })
    );
    assert_eq!(
        decode(&basic(3, 7)),
        Err(ChunkError::NoPreviousHeader { csid: 7, fmt: 3 })
    );
    assert_eq!(
        decode(&cat(&[&h1(7, 10, 1, 8), &[0]])),
        Ok(vec![msg(7, 8, 0, 10, &[0])]),
        "a format 1 header is read with message stream 0"
    );
}

#[test]
fn an_acknowledgement_is_due_when_the_peer_window_is_crossed() {
    let mut decoder = ChunkDecoder::new(MAX);
    decoder.push(&cat(&[&h0(2, 0, 4, 5, 0), &1000u32.to_be_bytes()]));
    assert_eq!(drain(&mut decoder), Ok(vec![]));
    let audio = cat(&[&h0(4, 0, 100, 8, 1), &[0; 100]]);
    let mut acks = Vec::new();
    for _ in 0..20 {
        decoder.push(&audio);
        for item in drain(&mut decoder).expect("audio") {
            if let Inbound::Acknowledge(n) = item {
                acks.push(n);
            }
        }
    }
    // 16 bytes of window message, then 112 bytes per message: acks at 1024, 2032, 3040...
    let expected: Vec<u32> = (1..=2).map(|k| 16 + 112 * (9 * k)).collect();
    assert_eq!(acks, expected);
    // Acknowledgements from the peer and Set Peer Bandwidth are consumed quietly.
    let input = cat(&[
        &h0(2, 0, 4, 3, 0),
        &[0, 0, 0, 1],
        &h0(2, 0, 5, 6, 0),
        &[0, 0, 0x10, 0, 2],
    ]);
    let mut decoder = ChunkDecoder::new(MAX);
    decoder.push(&input);
    assert_eq!(drain(&mut decoder), Ok(vec![]));
}

#[test]
fn the_encoder_writes_format_0_then_format_3_chunks() {
    let message = Message {
        csid: 3,
        type_id: 20,
        stream_id: 1,
        timestamp: 0x0200_0000,
        payload: Bytes::from(vec![9; 200]),
    };
    let mut out = BytesMut::new();
    ChunkEncoder::new().encode(&message, &mut out);
    let expected = cat(&[
        &[0x03, 0xff, 0xff, 0xff, 0, 0, 200, 20, 1, 0, 0, 0],
        &0x0200_0000u32.to_be_bytes(),
        &[9; 128],
        &[0xc3],
        &0x0200_0000u32.to_be_bytes(),
        &[9; 72],
    ]);
    assert_eq!(out.to_vec(), expected);
    assert_eq!(decode(&out), Ok(vec![Inbound::Message(message)]));
}

fn message_strategy() -> impl Strategy<Value = Message> {
    (
        MIN_CSID..=MAX_CSID,
        prop_oneof![Just(8u8), Just(9), Just(18), Just(20)],
        any::<u32>(),
        prop_oneof![0u32..0x0100_0000, any::<u32>()],
        prop::collection::vec(any::<u8>(), 0..3000),
    )
        .prop_map(|(csid, type_id, stream_id, timestamp, payload)| Message {
            csid,
            type_id,
            stream_id,
            timestamp,
            payload: Bytes::from(payload),
        })
}

proptest! {
    #[test]
    fn encoded_messages_decode_back_at_any_chunk_size(
        size in prop_oneof![MIN_PEER_CHUNK_SIZE..5000, Just(MAX_CHUNK_SIZE)],
        messages in prop::collection::vec(message_strategy(), 1..12),
        pieces in prop::collection::vec(1usize..700, 1..50),
    ) {
        let mut encoder = ChunkEncoder::new();
        let mut out = BytesMut::new();
        encoder.set_chunk_size(size, &mut out);
        for m in &messages {
            encoder.encode(m, &mut out);
        }
        let mut decoder = ChunkDecoder::new(MAX);
        let mut got = Vec::new();
        let mut rest = &out[..];
        for n in pieces.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (now, later) = rest.split_at((*n).min(rest.len()));
            decoder.push(now);
            got.extend(drain(&mut decoder).expect("our own output decodes"));
            rest = later;
        }
        let expected: Vec<Inbound> = messages.into_iter().map(Inbound::Message).collect();
        prop_assert_eq!(got, expected);
        prop_assert_eq!(decoder.chunk_size(), size);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(
        input in prop::collection::vec(any::<u8>(), 0..4096),
        cut in 0usize..4096,
    ) {
        let mut decoder = ChunkDecoder::new(4096);
        let (a, b) = input.split_at(cut.min(input.len()));
        for part in [a, b] {
            decoder.push(part);
            if drain(&mut decoder).is_err() {
                break;
            }
            prop_assert!(decoder.buffered() <= MAX_HEADER_LEN);
        }
        prop_assert!(decoder.pending <= 4096 + PENDING_SLACK);
    }
}

/// The longest chunk header: 3-byte basic header, 11-byte message header, extended timestamp.
const MAX_HEADER_LEN: usize = 3 + 11 + 4;
