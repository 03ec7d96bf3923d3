//! The chat relay with a real WebSocket client (tokio-tungstenite) and curl for REST:
//! messages, acks, history, emotes, moderation, reactions, viewers, a restart, bad input,
//! slow readers, a full node, the load generator, guest sign-in and CORS. Channels, room
//! modes and recovery, on SQLite and on Redis, are in chat_rooms.rs.

use std::time::Duration;

use corral_e2e::chat::{ADMIN, ChatRelay, Read, SECRET, token, token_with};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn messages_are_acked_delivered_with_emotes_and_paged_from_history() {
    let relay = ChatRelay::start("");
    let mut alice = relay
        .connect("demo", Some(&token("u-alice", "Alice")))
        .await;
    let mut bob = relay.connect("demo", Some(&token("u-bob", "Bob"))).await;
    let mut lurker = relay.connect("demo", None).await;
    let mut elsewhere = relay
        .connect("other", Some(&token("u-carol", "Carol")))
        .await;

    alice
        .send(json!({"op": "send", "text": "hello :Kappa: GG :GG:", "nonce": "n1"}))
        .await;
    let ack = alice.expect("ack").await;
    assert_eq!(
        (ack["nonce"].as_str(), ack["offset"].as_u64()),
        (Some("n1"), Some(1))
    );
    for reader in [&mut alice, &mut bob, &mut lurker] {
        let msg = reader.expect("msg").await;
        assert_eq!(msg["id"], ack["id"]);
        assert_eq!(msg["user"], json!({"id": "u-alice", "name": "Alice"}));
        assert_eq!(msg["text"], "hello :Kappa: GG :GG:");
        assert_eq!(
            msg["emotes"],
            json!([{"id": "Kappa", "start": 6, "end": 13}, {"id": "GG", "start": 17, "end": 21}])
        );
        assert!(
            msg["sent_at"]
                .as_u64()
                .is_some_and(|t| t > 1_700_000_000_000)
        );
    }

    // Without a token a viewer reads but cannot send; over 500 characters is refused.
    lurker.send(json!({"op": "send", "text": "hi"})).await;
    assert_eq!(lurker.expect("error").await["code"], "unauthorized");
    bob.send(json!({"op": "send", "text": "x".repeat(501)}))
        .await;
    assert_eq!(bob.expect("error").await["code"], "too_long");
    bob.send(json!({"op": "send", "text": "é".repeat(500), "nonce": "long"}))
        .await;
    assert_eq!(
        bob.expect("ack").await["nonce"],
        "long",
        "500 characters are fine"
    );

    for i in 0..5 {
        alice
            .send(json!({"op": "send", "text": format!("m{i}"), "nonce": format!("k{i}")}))
            .await;
        alice.expect("ack").await;
    }
    // Another room saw none of it: its first frame is its own message.
    elsewhere
        .send(json!({"op": "send", "text": "in other"}))
        .await;
    assert_eq!(elsewhere.expect("msg").await["text"], "in other");

    // History: newest first, by pages with a cursor.
    let (status, page) = relay
        .http("GET", "/v1/rooms/demo/messages?limit=3", None, None)
        .await;
    assert_eq!(status, 200);
    let texts = |p: &serde_json::Value| -> Vec<String> {
        p["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .map(|m| m["text"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(texts(&page), ["m4", "m3", "m2"]);
    let next = page["next"].as_u64().expect("a cursor");
    let (_, page2) = relay
        .http(
            "GET",
            &format!("/v1/rooms/demo/messages?limit=3&before={next}"),
            None,
            None,
        )
        .await;
    assert_eq!(texts(&page2)[..2], ["m1".to_string(), "m0".to_string()]);
    assert_eq!(page2["messages"][2]["user"]["name"], "Bob");
    assert!(relay.metric("corral_chat_messages_total").await >= 8.0);
}

#[tokio::test]
async fn moderators_ban_delete_and_announce() {
    let relay = ChatRelay::start("");
    let mut alice = relay
        .connect("demo", Some(&token("u-alice", "Alice")))
        .await;
    let mut bob = relay.connect("demo", Some(&token("u-bob", "Bob"))).await;

    alice.send(json!({"op": "send", "text": "first"})).await;
    let first = alice.expect("ack").await;
    bob.expect("msg").await;

    // Moderation needs the admin token.
    let ban = json!({"user_id": "u-bob", "reason": "spam", "duration": 600});
    let (status, _) = relay
        .http(
            "POST",
            "/v1/rooms/demo/bans",
            Some("wrong-token"),
            Some(ban.clone()),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = relay
        .http("POST", "/v1/rooms/demo/bans", Some(ADMIN), Some(ban))
        .await;
    assert_eq!(status, 204);
    let banned = bob.expect("banned").await;
    assert_eq!(banned["reason"], "spam");
    assert!(banned["until"].as_u64().is_some());

    // Bob is told again when he tries; nobody sees his message (Alice's own next message is
    // the next thing she receives, and the room keeps its order).
    bob.send(json!({"op": "send", "text": "buy followers"}))
        .await;
    assert_eq!(bob.expect("banned").await["reason"], "spam");
    alice
        .send(json!({"op": "send", "text": "after the ban"}))
        .await;
    let next = alice.expect("msg").await;
    assert_eq!(next["text"], "first");
    assert_eq!(alice.expect("msg").await["text"], "after the ban");

    // Lifting the ban lets him talk again.
    let (status, _) = relay
        .http("DELETE", "/v1/rooms/demo/bans/u-bob", Some(ADMIN), None)
        .await;
    assert_eq!(status, 204);
    bob.send(json!({"op": "send", "text": "sorry"})).await;
    bob.expect("ack").await;

    // A deleted message is gone for everyone and from history.
    let id = first["id"].as_str().expect("an id");
    let (status, _) = relay
        .http(
            "DELETE",
            &format!("/v1/rooms/demo/messages/{id}"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(alice.expect("deleted").await["id"], id);
    assert_eq!(bob.expect("deleted").await["id"], id);
    let (_, page) = relay
        .http("GET", "/v1/rooms/demo/messages", None, None)
        .await;
    assert!(
        page["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .all(|m| m["id"] != id)
    );
    let (status, _) = relay
        .http(
            "DELETE",
            &format!("/v1/rooms/demo/messages/{id}"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 404);

    // Announcements reach the whole room.
    let (status, _) = relay
        .http(
            "POST",
            "/v1/rooms/demo/announcements",
            Some(ADMIN),
            Some(json!({"text": "Kick-off in 5", "level": "warning"})),
        )
        .await;
    assert_eq!(status, 204);
    for c in [&mut alice, &mut bob] {
        let a = c.expect("announcement").await;
        assert_eq!(
            (a["text"].as_str(), a["level"].as_str()),
            (Some("Kick-off in 5"), Some("warning"))
        );
    }
}

#[tokio::test]
async fn reactions_are_counted_per_window_and_viewers_are_counted() {
    let relay = ChatRelay::start("reaction_window_ms: 200\nviewers_interval: 0.5\n");
    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(
            relay
                .connect("demo", Some(&token(&format!("u{i}"), "V")))
                .await,
        );
    }
    for c in &mut clients {
        for _ in 0..5 {
            c.send(json!({"op": "react", "emoji": "🔥"})).await;
        }
        c.send(json!({"op": "react", "emoji": "👏"})).await;
    }
    // 18 reactions arrive as a few aggregated frames, never one frame per reaction.
    let watcher = &mut clients[0];
    let (mut fire, mut clap, mut frames) = (0, 0, 0);
    while fire < 15 || clap < 3 {
        let r = watcher.expect("reactions").await;
        assert_eq!(r["window_ms"], 200);
        fire += r["counts"]["🔥"].as_u64().unwrap_or(0);
        clap += r["counts"]["👏"].as_u64().unwrap_or(0);
        frames += 1;
    }
    assert_eq!((fire, clap), (15, 3));
    assert!(frames <= 4, "{frames} frames for 18 reactions");
    assert_eq!(watcher.expect("viewers").await["count"], 3);
}

#[tokio::test]
async fn a_restarted_relay_has_lost_nothing() {
    let mut relay = ChatRelay::start("");
    let mut alice = relay
        .connect("demo", Some(&token("u-alice", "Alice")))
        .await;
    for i in 0..3 {
        alice
            .send(json!({"op": "send", "text": format!("before {i}")}))
            .await;
        alice.expect("ack").await;
    }
    drop(alice);
    relay.restart();
    let (_, page) = relay
        .http("GET", "/v1/rooms/demo/messages", None, None)
        .await;
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(3));
    let mut alice = relay
        .connect("demo", Some(&token("u-alice", "Alice")))
        .await;
    alice.send(json!({"op": "send", "text": "after"})).await;
    assert_eq!(
        alice.expect("ack").await["offset"],
        4,
        "offsets go on from the stored ones"
    );
}

#[tokio::test]
async fn bad_input_gets_an_error_or_a_close_and_others_are_unaffected() {
    let relay = ChatRelay::start("rate_burst: 5\nrate_period: 30\n");
    let mut alice = relay
        .connect("demo", Some(&token("u-alice", "Alice")))
        .await;

    // Forged and expired tokens are refused before the upgrade.
    for bad in [
        token_with("not-the-secret", "u-x", "X", 3600),
        token_with(SECRET, "u-x", "X", -10),
    ] {
        let refused = tokio_tungstenite::connect_async(relay.ws_url("demo", Some(&bad))).await;
        match refused {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
            other => panic!("a bad token was let in: {:?}", other.map(|_| ())),
        }
    }

    let mut mallory = relay.connect("demo", Some(&token("u-mallory", "M"))).await;
    mallory
        .ws
        .send(Message::Text("not json".into()))
        .await
        .expect("sent");
    assert_eq!(mallory.expect("error").await["code"], "bad_frame");
    mallory.send(json!({"op": "dance"})).await;
    assert_eq!(mallory.expect("error").await["code"], "unknown_op");
    mallory
        .ws
        .send(Message::Binary(vec![0xff, 0xfe].into()))
        .await
        .expect("sent");
    assert_eq!(mallory.expect("error").await["code"], "bad_frame");

    // A flood beyond the rate limit: the first 5 are accepted, the rest refused.
    for i in 0..8 {
        mallory
            .send(json!({"op": "send", "text": format!("flood {i}")}))
            .await;
    }
    let mut codes = Vec::new();
    while codes.len() < 8 {
        match mallory.read(Duration::from_secs(5)).await {
            Read::Frame(f) if f["op"] == "ack" => codes.push("ack".to_string()),
            Read::Frame(f) if f["op"] == "error" => {
                codes.push(f["code"].as_str().unwrap_or_default().to_string())
            }
            Read::Frame(_) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(codes.iter().filter(|c| *c == "ack").count(), 5, "{codes:?}");
    assert_eq!(
        codes.iter().filter(|c| *c == "rate_limited").count(),
        3,
        "{codes:?}"
    );

    // A 1 MiB frame closes that connection with 1009.
    mallory
        .ws
        .send(Message::Text("x".repeat(1 << 20).into()))
        .await
        .expect("sent");
    let closed = loop {
        match mallory.read(Duration::from_secs(5)).await {
            Read::Frame(_) => continue,
            other => break other,
        }
    };
    assert!(
        matches!(closed, Read::Closed(Some(1009)) | Read::Closed(None)),
        "{closed:?}"
    );

    // Meanwhile Alice talks as usual.
    alice
        .send(json!({"op": "send", "text": "still here", "nonce": "a"}))
        .await;
    assert_eq!(alice.expect("ack").await["nonce"], "a");
    let mut relay = relay;
    assert!(relay.running());
    assert!(
        relay
            .metric(r#"corral_chat_refused_total{code="rate_limited"}"#)
            .await
            >= 3.0
    );
}

#[tokio::test]
async fn a_reader_that_stops_reading_is_dropped_and_others_get_everything() {
    let relay = ChatRelay::start(
        // A long write_timeout: the stuck socket must still be open when the test reads it,
        // however slowly a loaded machine gets there.
        "send_queue: 4\nrate_burst: 10000\nrate_period: 1.0\nmax_message_chars: 8000\nmax_frame_bytes: 16384\nwrite_timeout: 120\n",
    );
    let url = relay.ws_url("demo", None);
    // A reader with a tiny receive buffer that reads nothing: the relay's socket buffer fills
    // (up to the kernel's 4 MiB), then its queue.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let stream = socket.connect(relay.http).await.expect("connects");
    let (mut stuck, _) = tokio_tungstenite::client_async(url.as_str(), stream)
        .await
        .expect("upgrade");
    let mut reader = relay.connect("demo", None).await;
    let mut sender = relay
        .connect("demo", Some(&token("u-flood", "Flood")))
        .await;
    let text = "x".repeat(8000);
    let mut sent = 0;
    while relay.metric("corral_chat_slow_readers_total").await < 1.0 {
        assert!(sent < 3000, "the stuck reader was never dropped");
        // Paced by the acks and the reading client, so only the stuck reader falls behind.
        for _ in 0..25 {
            sender.send(json!({"op": "send", "text": text})).await;
            let offset = sender.expect("ack").await["offset"].clone();
            assert_eq!(
                reader.expect("msg").await["offset"],
                offset,
                "in order, none lost"
            );
            sent += 1;
        }
    }
    // When it reads again it finds what fit in its buffers, then the resync close.
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(10), stuck.next()).await {
            Ok(Some(Ok(Message::Close(c)))) => break c.map(|c| u16::from(c.code)),
            Ok(Some(Ok(_))) => continue,
            other => panic!("no close: {other:?}"),
        }
    };
    assert_eq!(code, Some(4008));
}

#[tokio::test]
async fn a_full_node_refuses_new_connections_until_one_leaves() {
    let relay = ChatRelay::start("max_connections: 2\n");
    let mut first = relay.connect("demo", None).await;
    let mut second = relay.connect("other", None).await;
    first.expect("room").await;
    second.expect("room").await;
    match tokio_tungstenite::connect_async(relay.ws_url("demo", None)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 503),
        other => panic!("a third connection: {other:?}"),
    }
    assert!(
        relay
            .metric("corral_chat_refused_total{code=\"full\"}")
            .await
            >= 1.0
    );
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok((mut ws, _)) = tokio_tungstenite::connect_async(relay.ws_url("demo", None)).await
        {
            let _ = ws.close(None).await;
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the freed place was never given"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_chat_load_generator_counts_every_delivery() {
    let relay = ChatRelay::start("rate_burst: 10000\nrate_period: 1.0\n");
    let out = tokio::process::Command::new(corral_e2e::binary("loadtest"))
        .args(["chat", &relay.ws_url("bench", None)])
        .args(["--connections", "50", "--senders", "2", "--rate", "20"])
        .args(["--duration", "2s", "--settle", "2s", "--format", "json"])
        .output()
        .await
        .expect("loadtest runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert_eq!(report["connections_held"], 50);
    let acked = report["messages_acked"].as_u64().expect("acked");
    assert!(acked >= 20, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["deliveries"].as_u64(), Some(acked * 50), "{report}");
    assert!(report["latency_us"]["p99"].as_u64().is_some_and(|p| p > 0));
}

/// The response headers curl gets for a CORS preflight from `origin` (lower-cased).
fn preflight(relay: &ChatRelay, origin: &str) -> String {
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-D", "-", "-X", "OPTIONS"])
        .args(["-H", &format!("Origin: {origin}")])
        .args(["-H", "Access-Control-Request-Method: POST"])
        .args(["-H", "Access-Control-Request-Headers: authorization"])
        .arg(format!("http://{}/v1/channels/demo/follow", relay.http))
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout).to_lowercase()
}

#[tokio::test]
async fn guests_sign_in_and_listed_pages_may_call_from_a_browser() {
    let page = "http://127.0.0.1:8080";
    let relay = ChatRelay::start(&format!(
        "guests: {{ enabled: true, per_second: 1 }}\ncors_origins: [\"{page}\"]\n"
    ));
    let (status, guest) = relay
        .http("POST", "/v1/guests", None, Some(json!({"name": "  Ann  "})))
        .await;
    assert_eq!(status, 200, "{guest}");
    assert_eq!(guest["user"]["name"], "Ann");
    let id = guest["user"]["id"].as_str().expect("an id");
    assert!(id.starts_with("guest-"), "{id}");
    let token = guest["token"].as_str().expect("a token");
    let mut ann = relay.connect("demo", Some(token)).await;
    ann.expect("room").await;
    ann.send(json!({"op": "send", "text": "hi", "nonce": "g"}))
        .await;
    let msg = ann.expect("msg").await;
    assert_eq!(msg["user"], json!({"id": id, "name": "Ann"}));
    let (status, rel) = relay
        .http("POST", "/v1/channels/demo/follow", Some(token), None)
        .await;
    assert_eq!((status, rel["user_id"].as_str()), (200, Some(id)));

    // A bad name, and more sign-ins than `per_second` allows (a burst of two).
    for name in ["", &"x".repeat(33), "a\u{7}b"] {
        let (status, body) = relay
            .http("POST", "/v1/guests", None, Some(json!({ "name": name })))
            .await;
        assert_eq!((status, body["error"].as_str()), (400, Some("bad_request")));
    }
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(
            relay
                .http("POST", "/v1/guests", None, Some(json!({"name": "Flood"})))
                .await
                .0,
        );
    }
    assert!(codes.contains(&429), "minting is bounded: {codes:?}");
    assert!(relay.metric("corral_chat_guests_total").await >= 2.0);

    // The listed page may call with a bearer token; another page is not told it may.
    let allowed = preflight(&relay, page);
    assert!(
        allowed.contains(&format!("access-control-allow-origin: {page}"))
            && allowed.contains("access-control-allow-headers: authorization"),
        "{allowed}"
    );
    let other = preflight(&relay, "http://evil.example");
    assert!(!other.contains("access-control-allow-origin"), "{other}");

    // Off by default.
    let closed = ChatRelay::start("");
    let (status, _) = closed
        .http("POST", "/v1/guests", None, Some(json!({"name": "Ann"})))
        .await;
    assert_eq!(status, 404);
}
