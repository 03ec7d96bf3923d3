//! The chat relay with a real WebSocket client (tokio-tungstenite) and curl for REST:
//! messages, acks, history, emotes, moderation, reactions, viewers, a restart, bad input,
//! channels, room modes, recovery after a reconnect, slow readers. What a single node does
//! the same on SQLite and on Redis is tested on both.

use std::time::Duration;

use corral_e2e::chat::{ADMIN, ChatClient, ChatRelay, Read, Redis, SECRET, token, token_with};
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

/// A relay on SQLite, or one node on a fresh Redis (kept alive beside it), with `extra` config.
fn relay_on(redis: bool, extra: &str) -> (ChatRelay, Option<Redis>) {
    if redis {
        let server = Redis::start();
        let relay = ChatRelay::start(&format!(
            "redis_url: {}\npresence_interval: 0.2\n{extra}",
            server.url
        ));
        (relay, Some(server))
    } else {
        (ChatRelay::start(extra), None)
    }
}

async fn channels_follows_and_subscriptions(redis: bool) {
    let (relay, _redis) = relay_on(redis, "viewers_interval: 0.2\n");
    let alice = token("u-alice", "Alice");
    let (status, demo) = relay.http("GET", "/v1/channels/demo", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        (&demo["name"], &demo["title"], &demo["followers"]),
        (&json!("demo"), &json!("Corral demo"), &json!(0))
    );
    assert_eq!(
        relay.http("GET", "/v1/channels/nobody", None, None).await.0,
        404
    );
    assert_eq!(
        relay
            .http("GET", "/v1/channels/demo/relationship", None, None)
            .await
            .0,
        401,
        "a relationship needs a viewer token"
    );
    let (status, rel) = relay
        .http("GET", "/v1/channels/demo/relationship", Some(&alice), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (&rel["following"], &rel["subscription"]),
        (&json!(false), &json!(null))
    );

    // Follow (twice: the first date stays), then subscribe and change tier.
    let (_, rel) = relay
        .http("POST", "/v1/channels/demo/follow", Some(&alice), None)
        .await;
    assert_eq!(rel["following"], true);
    let followed_at = rel["followed_at"].as_u64().expect("a date");
    let (_, again) = relay
        .http("POST", "/v1/channels/demo/follow", Some(&alice), None)
        .await;
    assert_eq!(again["followed_at"].as_u64(), Some(followed_at));
    relay
        .http(
            "POST",
            "/v1/channels/demo/follow",
            Some(&token("u-bob", "Bob")),
            None,
        )
        .await;
    let (_, sub) = relay
        .http(
            "POST",
            "/v1/channels/demo/subscription",
            Some(&alice),
            Some(json!({"tier": 2})),
        )
        .await;
    assert_eq!(sub["subscription"]["tier"], 2);
    let since = sub["subscription"]["since"].as_u64().expect("a date");
    let (_, sub) = relay
        .http(
            "POST",
            "/v1/channels/demo/subscription",
            Some(&alice),
            Some(json!({"tier": 3})),
        )
        .await;
    assert_eq!(
        (
            sub["subscription"]["tier"].as_u64(),
            sub["subscription"]["since"].as_u64()
        ),
        (Some(3), Some(since))
    );
    let (status, _) = relay
        .http(
            "POST",
            "/v1/channels/demo/subscription",
            Some(&alice),
            Some(json!({"tier": 4})),
        )
        .await;
    assert_eq!(status, 400);

    // The channel counts its followers and the room's viewers.
    let _viewer = relay.connect("demo", None).await;
    let _other = relay.connect("demo", Some(&alice)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let demo = loop {
        let (_, demo) = relay.http("GET", "/v1/channels/demo", None, None).await;
        if demo["viewers"] == 2 || std::time::Instant::now() > deadline {
            break demo;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (&demo["followers"], &demo["viewers"]),
        (&json!(2), &json!(2))
    );

    // Unsubscribe and unfollow; a moderator changes the channel's title.
    let (_, rel) = relay
        .http(
            "DELETE",
            "/v1/channels/demo/subscription",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(rel["subscription"], json!(null));
    let (_, rel) = relay
        .http("DELETE", "/v1/channels/demo/follow", Some(&alice), None)
        .await;
    assert_eq!(rel["following"], false);
    let update = json!({"description": "Finals tonight", "title": "Final: A vs B"});
    assert_eq!(
        relay
            .http(
                "PUT",
                "/v1/channels/demo",
                Some(&alice),
                Some(update.clone())
            )
            .await
            .0,
        403
    );
    assert_eq!(
        relay
            .http("PUT", "/v1/channels/demo", Some(ADMIN), Some(update))
            .await
            .0,
        204
    );
    let (_, demo) = relay.http("GET", "/v1/channels/demo", None, None).await;
    assert_eq!(
        (&demo["title"], &demo["description"], &demo["followers"]),
        (&json!("Final: A vs B"), &json!("Finals tonight"), &json!(1))
    );
}

#[tokio::test]
async fn channels_follows_and_subscriptions_round_trip() {
    channels_follows_and_subscriptions(false).await;
}

#[tokio::test]
async fn channels_follows_and_subscriptions_round_trip_on_redis() {
    channels_follows_and_subscriptions(true).await;
}

async fn slow_and_followers_only_modes(redis: bool) {
    let (relay, _redis) = relay_on(redis, "");
    let mut alice = relay
        .connect("demo", Some(&token("u-alice", "Alice")))
        .await;
    let mut bob = relay.connect("demo", Some(&token("u-bob", "Bob"))).await;
    let joined = alice.expect("room").await;
    assert_eq!(
        (&joined["slow_mode"], &joined["followers_only"]),
        (&json!(0), &json!(null))
    );
    bob.expect("room").await;

    // Only moderators set modes, within bounds; everyone in the room is told.
    let slow = json!({"slow_mode": 2});
    let bob_token = token("u-bob", "Bob");
    assert_eq!(
        relay
            .http(
                "PUT",
                "/v1/rooms/demo/modes",
                Some(&bob_token),
                Some(slow.clone())
            )
            .await
            .0,
        403
    );
    assert_eq!(
        relay
            .http(
                "PUT",
                "/v1/rooms/demo/modes",
                Some(ADMIN),
                Some(json!({"slow_mode": 99999}))
            )
            .await
            .0,
        400
    );
    let (status, _) = relay
        .http("PUT", "/v1/rooms/demo/modes", Some(ADMIN), Some(slow))
        .await;
    assert_eq!(status, 200);
    assert_eq!(bob.expect("room").await["slow_mode"], 2);

    // Slow mode: a second message within 2 s is refused with the wait; after it, accepted.
    alice.send(json!({"op": "send", "text": "one"})).await;
    let first = std::time::Instant::now();
    alice.expect("ack").await;
    alice.send(json!({"op": "send", "text": "two"})).await;
    let refused = alice.expect("error").await;
    assert_eq!(refused["code"], "slow_mode");
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("in 2 s") || m.contains("in 1 s")),
        "{refused}"
    );
    let accepted = loop {
        alice.send(json!({"op": "send", "text": "two"})).await;
        match alice.read(Duration::from_secs(5)).await {
            Read::Frame(f) if f["op"] == "ack" => break std::time::Instant::now(),
            Read::Frame(f) if f["op"] == "error" => {
                assert_eq!(f["code"], "slow_mode");
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
            Read::Frame(_) => {}
            other => panic!("{other:?}"),
        }
    };
    assert!(accepted - first >= Duration::from_millis(1900));
    // Bob has his own wait: his first message goes through.
    bob.send(json!({"op": "send", "text": "bob here"})).await;
    bob.expect("ack").await;

    // Followers-only: Bob does not follow and is refused until he does.
    relay
        .http(
            "PUT",
            "/v1/rooms/demo/modes",
            Some(ADMIN),
            Some(json!({"followers_only": 0})),
        )
        .await;
    let modes = bob.expect("room").await;
    assert_eq!(
        (&modes["followers_only"], &modes["slow_mode"]),
        (&json!(0), &json!(0))
    );
    bob.send(json!({"op": "send", "text": "let me in"})).await;
    assert_eq!(bob.expect("error").await["code"], "followers_only");
    relay
        .http("POST", "/v1/channels/demo/follow", Some(&bob_token), None)
        .await;
    bob.send(json!({"op": "send", "text": "following now"}))
        .await;
    bob.expect("ack").await;
    // A follow of 10 minutes is asked for: a new follower waits.
    relay
        .http(
            "PUT",
            "/v1/rooms/demo/modes",
            Some(ADMIN),
            Some(json!({"followers_only": 10})),
        )
        .await;
    bob.expect("room").await;
    bob.send(json!({"op": "send", "text": "still here"})).await;
    let refused = bob.expect("error").await;
    assert_eq!(refused["code"], "followers_only");
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("10 minutes"))
    );
    let (_, modes) = relay.http("GET", "/v1/rooms/demo/modes", None, None).await;
    assert_eq!(modes, json!({"slow_mode": 0, "followers_only": 10}));
}

#[tokio::test]
async fn slow_mode_and_followers_only_mode_hold_senders_back() {
    slow_and_followers_only_modes(false).await;
}

#[tokio::test]
async fn slow_mode_and_followers_only_mode_hold_senders_back_on_redis() {
    slow_and_followers_only_modes(true).await;
}

/// Sends `n` messages as `client`, waiting for each ack; the last offset.
async fn send_many(client: &mut ChatClient, prefix: &str, n: usize) -> u64 {
    let mut last = 0;
    for i in 0..n {
        client
            .send(json!({"op": "send", "text": format!("{prefix}{i}")}))
            .await;
        last = client.expect("ack").await["offset"]
            .as_u64()
            .expect("an offset");
    }
    last
}

fn offsets(frame: &serde_json::Value) -> Vec<u64> {
    frame["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["offset"].as_u64().expect("an offset"))
        .collect()
}

async fn recovery_after_reconnect(redis: bool) {
    let (relay, _redis) = relay_on(redis, "recovery_max: 5\nhistory_page: 4\n");
    let (alice_token, bob_token) = (token("u-alice", "Alice"), token("u-bob", "Bob"));
    let mut alice = relay.connect("demo", Some(&alice_token)).await;
    let mut bob = relay.connect("demo", Some(&bob_token)).await;
    send_many(&mut alice, "a", 2).await;
    bob.expect("msg").await;
    let seen = bob.expect("msg").await["offset"].as_u64().expect("offset");
    drop(bob);

    // Three sent while Bob was away: he gets exactly those, then live ones, no duplicates.
    send_many(&mut alice, "b", 3).await;
    let mut bob = relay.reconnect("demo", Some(&bob_token), seen).await;
    let recovery = bob.expect("recovery").await;
    assert_eq!(recovery["recovered"], true);
    assert_eq!(offsets(&recovery), [3, 4, 5]);
    let live = send_many(&mut alice, "c", 1).await;
    assert_eq!(bob.expect("msg").await["offset"].as_u64(), Some(live));
    drop(bob);

    // Too many missed (more than recovery_max): recovered false and the newest page.
    let top = send_many(&mut alice, "d", 7).await;
    let mut bob = relay.reconnect("demo", Some(&bob_token), live).await;
    let recovery = bob.expect("recovery").await;
    assert_eq!(recovery["recovered"], false);
    assert_eq!(offsets(&recovery), [top - 3, top - 2, top - 1, top]);

    // An offset the room never reached (its history was lost): afresh as well.
    let mut lost = relay.reconnect("demo", None, top + 100).await;
    let recovery = lost.expect("recovery").await;
    assert_eq!(recovery["recovered"], false);
    assert_eq!(offsets(&recovery).last(), Some(&top));
    // Nothing missed: an empty, complete recovery.
    let mut current = relay.reconnect("demo", None, top).await;
    let recovery = current.expect("recovery").await;
    assert_eq!(
        (recovery["recovered"].as_bool(), offsets(&recovery).len()),
        (Some(true), 0)
    );
    assert!(
        relay
            .metric("corral_chat_recoveries_total{recovered=\"false\"}")
            .await
            >= 2.0
    );
}

#[tokio::test]
async fn a_reconnecting_client_recovers_what_it_missed() {
    recovery_after_reconnect(false).await;
}

#[tokio::test]
async fn a_reconnecting_client_recovers_what_it_missed_on_redis() {
    recovery_after_reconnect(true).await;
}

#[tokio::test]
async fn a_reader_that_stops_reading_is_dropped_and_others_get_everything() {
    let relay = ChatRelay::start(
        "send_queue: 4\nrate_burst: 10000\nrate_period: 1.0\nmax_message_chars: 8000\nmax_frame_bytes: 16384\n",
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
        .args(["--chat", &relay.ws_url("bench", None)])
        .args(["--connections", "50", "--senders", "2", "--rate", "20"])
        .args(["--duration", "2", "--settle", "2"])
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
