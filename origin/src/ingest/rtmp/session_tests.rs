use proptest::prelude::*;

use super::*;
use crate::ingest::rtmp::amf0::{self, Amf0Value};
use crate::ingest::rtmp::chunk::DEFAULT_CHUNK_SIZE;

const MAX: usize = 1 << 20;

/// Reads the server's output independently of the decoder under test: the server writes only
/// format 0 chunks followed by format 3 continuations, on 1-byte chunk stream IDs, one message
/// after another.
fn server_messages(mut b: &[u8], chunk_size: &mut usize) -> Vec<Message> {
    let mut out = Vec::new();
    while !b.is_empty() {
        assert_eq!(b[0] >> 6, 0, "messages start with a format 0 chunk");
        let csid = b[0] & 0x3f;
        let length = usize::from(b[4]) << 16 | usize::from(b[5]) << 8 | usize::from(b[6]);
        let type_id = b[7];
        let stream_id = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        b = &b[12..];
        let mut payload = Vec::new();
        loop {
            let n = (*chunk_size).min(length - payload.len());
            payload.extend_from_slice(&b[..n]);
            b = &b[n..];
            if payload.len() == length {
                break;
            }
            assert_eq!(b[0], 0xc0 | csid, "a format 3 continuation");
            b = &b[1..];
        }
        if type_id == type_id::SET_CHUNK_SIZE {
            *chunk_size =
                u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) as usize;
        }
        out.push(Message {
            csid: u32::from(csid),
            type_id,
            stream_id,
            timestamp: 0,
            payload: Bytes::from(payload),
        });
    }
    out
}

/// What a command answer says: name, transaction, then the rest.
fn values(m: &Message) -> Vec<Amf0Value> {
    assert_eq!(m.type_id, type_id::COMMAND_AMF0);
    amf0::decode_all(&m.payload).expect("our answers are valid AMF0")
}

fn code(m: &Message) -> String {
    let v = values(m);
    let info = v.last().expect("an information object");
    info.get("code")
        .and_then(Amf0Value::as_str)
        .expect("a status code")
        .to_owned()
}

/// A publisher as OBS drives one: it encodes with the chunk encoder at its own chunk size.
struct Publisher {
    encoder: ChunkEncoder,
    session: Session,
    /// The server's chunk size as the publisher has seen it.
    server_chunk_size: usize,
}

impl Publisher {
    fn new() -> Self {
        Self {
            encoder: ChunkEncoder::new(),
            session: Session::new(MAX),
            server_chunk_size: DEFAULT_CHUNK_SIZE as usize,
        }
    }

    /// What the server has sent since last asked.
    fn answers(&mut self) -> Vec<Message> {
        server_messages(&self.session.take_output(), &mut self.server_chunk_size)
    }

    fn send_raw(&mut self, bytes: &[u8]) -> (Vec<SessionEvent>, Vec<Message>) {
        self.session.receive(bytes);
        let mut events = Vec::new();
        while let Some(event) = self.session.poll_event().expect("a valid session") {
            events.push(event);
        }
        (events, self.answers())
    }

    fn send(&mut self, message: &Message) -> (Vec<SessionEvent>, Vec<Message>) {
        let mut out = BytesMut::new();
        self.encoder.encode(message, &mut out);
        self.send_raw(&out)
    }

    fn command(&mut self, stream_id: u32, v: &[Amf0Value]) -> (Vec<SessionEvent>, Vec<Message>) {
        self.send(&Message::command(3, stream_id, v))
    }

    fn try_command(&mut self, v: &[Amf0Value]) -> Result<Option<SessionEvent>, SessionError> {
        let mut out = BytesMut::new();
        self.encoder.encode(&Message::command(3, 0, v), &mut out);
        self.session.receive(&out);
        self.session.poll_event()
    }

    fn connect(&mut self, app: &str) -> (Vec<SessionEvent>, Vec<Message>) {
        self.command(
            0,
            &[
                "connect".into(),
                1.0.into(),
                Amf0Value::object([
                    ("app", app.into()),
                    ("type", "nonprivate".into()),
                    ("flashVer", "FMLE/3.0 (compatible; FMSc/1.0)".into()),
                    ("tcUrl", "rtmp://127.0.0.1:1935/live".into()),
                ]),
            ],
        )
    }

    /// connect, createStream and publish, accepted.
    fn publishing() -> Self {
        let mut p = Publisher::new();
        p.connect("live");
        p.command(0, &["createStream".into(), 4.0.into(), Amf0Value::Null]);
        let (events, _) = p.command(
            1,
            &[
                "publish".into(),
                5.0.into(),
                Amf0Value::Null,
                "k".into(),
                "live".into(),
            ],
        );
        assert_eq!(events, vec![SessionEvent::Publish { key: "k".into() }]);
        p.session.accept_publish();
        p.answers();
        p
    }
}

fn media(type_id: u8, timestamp: u32, payload: &[u8]) -> Message {
    Message {
        csid: if type_id == type_id::AUDIO { 4 } else { 6 },
        type_id,
        stream_id: 1,
        timestamp,
        payload: Bytes::copy_from_slice(payload),
    }
}

fn tag(kind: TagKind, timestamp: u32, data: &[u8]) -> SessionEvent {
    SessionEvent::Media(FlvTag {
        kind,
        timestamp,
        data: Bytes::copy_from_slice(data),
    })
}

/// A chunk with a format 1 (`Some(length)`) or format 2 header on a 1-byte chunk stream.
fn delta_chunk(csid: u8, delta: u32, type_id: u8, payload: &[u8], fmt1: bool) -> Vec<u8> {
    let d = delta.to_be_bytes();
    let mut out = vec![if fmt1 { 0x40 } else { 0x80 } | csid, d[1], d[2], d[3]];
    if fmt1 {
        let l = (payload.len() as u32).to_be_bytes();
        out.extend([l[1], l[2], l[3], type_id]);
    }
    out.extend_from_slice(payload);
    out
}

#[test]
fn an_obs_style_publish_goes_through_every_step() {
    let mut p = Publisher::new();

    let (events, answers) = p.connect("live");
    assert!(events.is_empty());
    let kinds: Vec<u8> = answers.iter().map(|m| m.type_id).collect();
    assert_eq!(
        kinds,
        [
            type_id::WINDOW_ACK_SIZE,
            type_id::SET_PEER_BANDWIDTH,
            type_id::SET_CHUNK_SIZE,
            type_id::COMMAND_AMF0,
            type_id::USER_CONTROL
        ]
    );
    assert_eq!(answers[0], Message::window_ack_size(WINDOW_SIZE));
    assert_eq!(answers[1], Message::set_peer_bandwidth(WINDOW_SIZE));
    assert_eq!(answers[2], Message::set_chunk_size(SERVER_CHUNK_SIZE));
    let result = values(&answers[3]);
    assert_eq!(result[0], Amf0Value::from("_result"));
    assert_eq!(result[1], Amf0Value::Number(1.0));
    assert_eq!(code(&answers[3]), command::CONNECT_SUCCESS);
    assert_eq!(
        answers[4],
        Message::user_control(user_control::STREAM_BEGIN, 0)
    );

    // OBS and ffmpeg raise their chunk size too.
    let mut out = BytesMut::new();
    p.encoder.set_chunk_size(4096, &mut out);
    assert_eq!(p.send_raw(&out), (vec![], vec![]));

    for (txn, name) in [(2.0, "releaseStream"), (3.0, "FCPublish")] {
        let (events, answers) = p.command(
            0,
            &[
                name.into(),
                txn.into(),
                Amf0Value::Null,
                "studio-key".into(),
            ],
        );
        assert!(events.is_empty());
        assert_eq!(
            values(&answers[0]),
            vec![
                "_result".into(),
                Amf0Value::Number(txn),
                Amf0Value::Null,
                Amf0Value::Undefined
            ]
        );
    }

    let (_, answers) = p.command(0, &["createStream".into(), 4.0.into(), Amf0Value::Null]);
    assert_eq!(
        values(&answers[0]),
        vec![
            "_result".into(),
            Amf0Value::Number(4.0),
            Amf0Value::Null,
            Amf0Value::Number(1.0)
        ]
    );

    let (events, answers) = p.command(
        1,
        &[
            "publish".into(),
            5.0.into(),
            Amf0Value::Null,
            "studio-key?token=abc".into(),
            "live".into(),
        ],
    );
    assert_eq!(
        events,
        vec![SessionEvent::Publish {
            key: "studio-key".into()
        }]
    );
    assert!(answers.is_empty(), "nothing until the caller decides");
    p.session.accept_publish();
    let answers = p.answers();
    assert_eq!(answers.len(), 1);
    assert_eq!((answers[0].csid, answers[0].stream_id), (5, 1));
    assert_eq!(values(&answers[0])[0], Amf0Value::from("onStatus"));
    assert_eq!(code(&answers[0]), command::PUBLISH_START);
    assert!(p.session.is_publishing());

    // @setDataFrame is stripped: the tag body is what an FLV file carries.
    let meta = Amf0Value::EcmaArray(vec![
        ("width".into(), Amf0Value::Number(1280.0)),
        ("videocodecid".into(), Amf0Value::Number(7.0)),
    ]);
    let set_data_frame = Message {
        csid: 4,
        type_id: type_id::DATA_AMF0,
        stream_id: 1,
        timestamp: 0,
        payload: amf0::encode_all(&["@setDataFrame".into(), "onMetaData".into(), meta.clone()])
            .freeze(),
    };
    let (events, _) = p.send(&set_data_frame);
    let flv_body = amf0::encode_all(&["onMetaData".into(), meta]);
    assert_eq!(events, vec![tag(TagKind::Script, 0, &flv_body)]);

    // Sequence headers at 0 (format 0), then frames with format 1 and 2 deltas.
    let avc_config = [0x17, 0x00, 0, 0, 0, 1, 0x64, 0, 0x1f];
    let aac_config = [0xaf, 0x00, 0x12, 0x10];
    let (events, _) = p.send(&media(type_id::VIDEO, 0, &avc_config));
    assert_eq!(events, vec![tag(TagKind::Video, 0, &avc_config)]);
    let (events, _) = p.send(&media(type_id::AUDIO, 0, &aac_config));
    assert_eq!(events, vec![tag(TagKind::Audio, 0, &aac_config)]);
    let frame = [0x27, 0x01, 0, 0, 0, 0xaa];
    let aac = [0xaf, 0x01, 0x21, 0x10];
    let mut raw = Vec::new();
    raw.extend(delta_chunk(6, 33, 9, &frame, true));
    raw.extend(delta_chunk(4, 23, 8, &aac, true));
    raw.extend(delta_chunk(6, 34, 9, &frame, false));
    raw.extend(delta_chunk(4, 23, 8, &aac, false));
    raw.push(0xc6); // format 3: the same delta (34) again
    raw.extend(frame);
    let (events, _) = p.send_raw(&raw);
    assert_eq!(
        events,
        vec![
            tag(TagKind::Video, 33, &frame),
            tag(TagKind::Audio, 23, &aac),
            tag(TagKind::Video, 67, &frame),
            tag(TagKind::Audio, 46, &aac),
            tag(TagKind::Video, 101, &frame),
        ]
    );

    let (events, _) = p.command(
        1,
        &[
            "FCUnpublish".into(),
            6.0.into(),
            Amf0Value::Null,
            "studio-key".into(),
        ],
    );
    assert_eq!(events, vec![SessionEvent::Unpublish]);
    let (events, _) = p.command(
        0,
        &[
            "deleteStream".into(),
            7.0.into(),
            Amf0Value::Null,
            1.0.into(),
        ],
    );
    assert!(events.is_empty(), "one unpublish per publish");
    assert!(!p.session.is_publishing());
}

#[test]
fn a_refused_publish_gets_an_error_status_and_closes_the_session() {
    let mut p = Publisher::new();
    p.connect("live");
    let (events, _) = p.command(
        1,
        &["publish".into(), 5.0.into(), Amf0Value::Null, "nope".into()],
    );
    assert_eq!(events.len(), 1);
    p.session
        .reject_publish(PublishRejection::BadName, "No stream has this key.");
    let answers = p.answers();
    assert_eq!(code(&answers[0]), command::PUBLISH_BAD_NAME);
    let info = values(&answers[0]).pop().expect("info");
    assert_eq!(info.get("level"), Some(&Amf0Value::from("error")));
    // Whatever follows is not read.
    let (events, answers) = p.send(&media(type_id::VIDEO, 0, &[0x17, 0x01]));
    assert_eq!((events, answers), (vec![], vec![]));

    let mut p = Publisher::new();
    p.connect("live");
    p.command(
        1,
        &["publish".into(), 5.0.into(), Amf0Value::Null, "k".into()],
    );
    p.session
        .reject_publish(PublishRejection::Denied, "Shutting down.");
    let answers = p.answers();
    assert_eq!(code(&answers[0]), command::PUBLISH_DENIED);
}

#[test]
fn only_the_live_application_is_served() {
    for app in ["live", "live/", "/live", "live?token=1"] {
        let (_, answers) = Publisher::new().connect(app);
        assert_eq!(code(&answers[3]), command::CONNECT_SUCCESS, "{app}");
    }
    let mut p = Publisher::new();
    let err = p
        .try_command(&[
            "connect".into(),
            1.0.into(),
            Amf0Value::object([("app", "vod".into()), ("tcUrl", "rtmp://h/live".into())]),
        ])
        .expect_err("refused");
    assert_eq!(err, SessionError::UnknownApp("vod".into()));
    assert_eq!(err.kind(), "unknown_app");
    let answers = p.answers();
    assert_eq!(values(&answers[0])[0], Amf0Value::from("_error"));
    assert_eq!(code(&answers[0]), command::CONNECT_REJECTED);

    // Without `app`, the path of `tcUrl` names the application.
    let mut p = Publisher::new();
    let ok = p.try_command(&[
        "connect".into(),
        1.0.into(),
        Amf0Value::object([("tcUrl", "rtmp://h:1935/live".into())]),
    ]);
    assert_eq!(ok, Ok(None));
    let mut p = Publisher::new();
    let err = p.try_command(&["connect".into(), 1.0.into(), Amf0Value::Null]);
    assert_eq!(err, Err(SessionError::UnknownApp(String::new())));
}

#[test]
fn commands_out_of_order_are_refused() {
    let mut p = Publisher::new();
    let err = p
        .try_command(&["publish".into(), 1.0.into(), Amf0Value::Null, "k".into()])
        .expect_err("before connect");
    assert_eq!(err.kind(), "protocol");
    assert_eq!(p.session.poll_event(), Ok(None), "closed after an error");

    let mut p = Publisher::publishing();
    let err = p
        .try_command(&["publish".into(), 9.0.into(), Amf0Value::Null, "k".into()])
        .expect_err("second publish");
    assert!(matches!(err, SessionError::OutOfOrder { .. }), "{err}");

    let mut p = Publisher::new();
    p.connect("live");
    let err = p
        .try_command(&["publish".into(), 1.0.into(), Amf0Value::Null])
        .expect_err("no name");
    assert!(
        matches!(err, SessionError::MalformedCommand { .. }),
        "{err}"
    );
}

#[test]
fn a_new_publish_may_follow_an_unpublish() {
    let mut p = Publisher::publishing();
    let (events, _) = p.command(
        1,
        &[
            "deleteStream".into(),
            0.0.into(),
            Amf0Value::Null,
            1.0.into(),
        ],
    );
    assert_eq!(events, vec![SessionEvent::Unpublish]);
    let (events, _) = p.command(
        1,
        &["publish".into(), 9.0.into(), Amf0Value::Null, "k2".into()],
    );
    assert_eq!(events, vec![SessionEvent::Publish { key: "k2".into() }]);
}

#[test]
fn media_before_the_publish_is_accepted_is_dropped() {
    let mut p = Publisher::new();
    p.connect("live");
    let (events, _) = p.send(&media(type_id::VIDEO, 0, &[0x17, 0x00, 1]));
    assert!(events.is_empty());
    let (events, _) = p.command(
        1,
        &["publish".into(), 5.0.into(), Amf0Value::Null, "k".into()],
    );
    assert_eq!(events.len(), 1);
    let (events, _) = p.send(&media(type_id::AUDIO, 0, &[0xaf, 0x00]));
    assert!(events.is_empty(), "not accepted yet");
    p.session.accept_publish();
    let (events, _) = p.send(&media(type_id::AUDIO, 5, &[0xaf, 0x01]));
    assert_eq!(events, vec![tag(TagKind::Audio, 5, &[0xaf, 0x01])]);
    let (events, _) = p.send(&media(type_id::AUDIO, 6, &[]));
    assert!(events.is_empty(), "empty tags are dropped");
}

#[test]
fn enhanced_rtmp_video_is_refused_with_a_status() {
    let mut p = Publisher::publishing();
    let mut out = BytesMut::new();
    // IsExHeader | keyframe, packet type 0 (sequence start), FourCC "hvc1".
    p.encoder.encode(
        &media(type_id::VIDEO, 0, &[0x90, b'h', b'v', b'c', b'1', 1]),
        &mut out,
    );
    p.session.receive(&out);
    let err = p.session.poll_event().expect_err("refused");
    assert_eq!(err, SessionError::EnhancedRtmp);
    assert_eq!(err.kind(), "enhanced_rtmp");
    assert!(err.to_string().contains("H.264"));
    let answers = p.answers();
    let info = values(&answers[0]).pop().expect("info");
    assert_eq!(info.get("level"), Some(&Amf0Value::from("error")));
}

#[test]
fn data_messages_other_than_metadata_are_ignored() {
    let mut p = Publisher::publishing();
    let data = |values: &[Amf0Value]| Message {
        csid: 4,
        type_id: type_id::DATA_AMF0,
        stream_id: 1,
        timestamp: 0,
        payload: amf0::encode_all(values).freeze(),
    };
    for body in [
        data(&["onTextData".into(), Amf0Value::Null]),
        data(&["@setDataFrame".into(), "onCuePoint".into()]),
        data(&[Amf0Value::Number(1.0)]),
        // A huge strict array where the name should be is never decoded.
        data(&[Amf0Value::StrictArray(vec![Amf0Value::Null; 10_000])]),
    ] {
        assert_eq!(p.send(&body), (vec![], vec![]));
    }
    let bare = data(&["onMetaData".into(), Amf0Value::EcmaArray(vec![])]);
    let (events, _) = p.send(&bare);
    assert_eq!(events, vec![tag(TagKind::Script, 0, &bare.payload)]);
}

#[test]
fn pings_are_answered_and_acknowledgements_sent() {
    let mut p = Publisher::new();
    p.connect("live");
    let (_, answers) = p.send(&Message::user_control(user_control::PING_REQUEST, 4242));
    assert_eq!(
        answers,
        vec![Message::user_control(user_control::PING_RESPONSE, 4242)]
    );
    let (_, answers) = p.send(&Message::window_ack_size(1000));
    assert!(answers.is_empty());
    let mut acks = Vec::new();
    // 213 bytes each (a 12-byte header, 128 bytes, a continuation byte, 72 bytes).
    for _ in 0..7 {
        let (_, answers) = p.send(&media(type_id::AUDIO, 0, &[0xaf; 200]));
        acks.extend(answers);
    }
    assert_eq!(
        acks.len(),
        1,
        "1491 bytes against a 1000-byte window: {acks:?}"
    );
    assert_eq!(acks[0].type_id, type_id::ACKNOWLEDGEMENT);
}

#[test]
fn oversized_commands_are_refused() {
    let mut p = Publisher::new();
    let err = p
        .try_command(&[
            "connect".into(),
            "x".repeat(MAX_COMMAND_BYTES).as_str().into(),
        ])
        .expect_err("too large");
    assert_eq!(err.kind(), "too_large");
}

#[test]
fn amf3_commands_with_amf0_bodies_are_understood() {
    let mut p = Publisher::new();
    let mut body = vec![0u8];
    body.extend_from_slice(&amf0::encode_all(&[
        "connect".into(),
        1.0.into(),
        Amf0Value::object([("app", "live".into())]),
    ]));
    let (_, answers) = p.send(&Message {
        csid: 3,
        type_id: type_id::COMMAND_AMF3,
        stream_id: 0,
        timestamp: 0,
        payload: Bytes::from(body),
    });
    assert_eq!(code(&answers[3]), command::CONNECT_SUCCESS);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(
        connected in any::<bool>(),
        input in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut p = if connected { Publisher::publishing() } else { Publisher::new() };
        p.session.receive(&input);
        for _ in 0..10_000 {
            match p.session.poll_event() {
                Ok(Some(SessionEvent::Publish { .. })) => p.session.accept_publish(),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let _ = p.session.take_output();
    }
}
