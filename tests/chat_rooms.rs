//! What one chat-relay node does the same on SQLite and on Redis, tested on both with a real
//! WebSocket client: channels with follows and subscriptions, slow and followers-only modes,
//! recovery after a reconnect.

use std::time::Duration;

use corral_e2e::chat::{ADMIN, ChatClient, ChatRelay, Read, Redis, token};
use serde_json::json;

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
    // The room's frame comes once a connection has joined: Bob hears what Alice sends next.
    bob.expect("room").await;
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
