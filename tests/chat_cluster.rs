//! Two chat-relay nodes on one real Redis server (Debian's redis-server, started here): a
//! room spans both, moderation on one reaches the other, and a client whose node is killed
//! reconnects to the other with its offset and loses nothing.

use std::time::{Duration, Instant};

use corral_e2e::chat::{ADMIN, ChatRelay, Redis, token};
use serde_json::json;

/// Node config beside `redis`: counts shared quickly so the test need not wait.
fn node(redis: &Redis) -> ChatRelay {
    ChatRelay::start(&format!(
        "redis_url: {}\npresence_interval: 0.2\nviewers_interval: 0.3\nreaction_window_ms: 100\n",
        redis.url
    ))
}

#[tokio::test]
async fn a_room_spans_two_nodes_and_survives_losing_one() {
    let redis = Redis::start();
    let mut a = node(&redis);
    let b = node(&redis);
    let (alice_token, bob_token) = (token("u-alice", "Alice"), token("u-bob", "Bob"));
    let mut alice = b.connect("demo", Some(&alice_token)).await;
    let mut bob = a.connect("demo", Some(&bob_token)).await;
    let mut carol = a.connect("demo", Some(&token("u-carol", "Carol"))).await;
    // The first frame says the connection has joined the room.
    for joined in [&mut alice, &mut bob, &mut carol] {
        joined.expect("room").await;
    }

    // Sent on A, received on B (and on A), acked on A.
    bob.send(json!({"op": "send", "text": "hello from A :GG:", "nonce": "x"}))
        .await;
    let ack = bob.expect("ack").await;
    assert_eq!(bob.expect("msg").await["id"], ack["id"]);
    let on_b = alice.expect("msg").await;
    assert_eq!((&on_b["id"], &on_b["offset"]), (&ack["id"], &ack["offset"]));
    assert_eq!(on_b["emotes"][0]["id"], "GG");
    assert_eq!(carol.expect("msg").await["id"], ack["id"]);
    // Sent on B, received on A; offsets run on across nodes.
    alice.send(json!({"op": "send", "text": "hi from B"})).await;
    let second = alice.expect("ack").await["offset"].as_u64();
    assert_eq!(second, ack["offset"].as_u64().map(|o| o + 1));
    assert_eq!(bob.expect("msg").await["text"], "hi from B");
    // History is the same from either node.
    let (_, page) = a.http("GET", "/v1/rooms/demo/messages", None, None).await;
    let (_, same) = b.http("GET", "/v1/rooms/demo/messages", None, None).await;
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(2));
    assert_eq!(page, same);

    // Viewers and reactions are counted over both nodes.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let count = bob.expect("viewers").await["count"].as_u64();
        if count == Some(3) {
            break;
        }
        assert!(Instant::now() < deadline, "viewers stayed at {count:?}");
    }
    alice.send(json!({"op": "react", "emoji": "🔥"})).await;
    bob.send(json!({"op": "react", "emoji": "🔥"})).await;
    let mut seen = 0;
    while seen < 2 {
        let frame = carol.expect("reactions").await;
        seen += frame["counts"]["🔥"].as_u64().unwrap_or(0);
    }
    assert_eq!(seen, 2, "one count per reaction, from both nodes");

    // A ban made on B reaches Bob on A at once, and holds on A.
    let (status, _) = b
        .http(
            "POST",
            "/v1/rooms/demo/bans",
            Some(ADMIN),
            Some(json!({"user_id": "u-bob", "reason": "spam", "duration": 60})),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(bob.expect("banned").await["reason"], "spam");
    bob.send(json!({"op": "send", "text": "sneaky"})).await;
    assert_eq!(bob.expect("banned").await["reason"], "spam");
    b.http("DELETE", "/v1/rooms/demo/bans/u-bob", Some(ADMIN), None)
        .await;
    // A deletion made on A reaches B.
    let (status, _) = a
        .http(
            "DELETE",
            &format!(
                "/v1/rooms/demo/messages/{}",
                ack["id"].as_str().expect("id")
            ),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(alice.expect("deleted").await["id"], ack["id"]);

    // Node A dies with Carol on it; messages go on on B; Carol comes back on B with her offset
    // and has every one of them, then live ones.
    let seen_by_carol = second.expect("an offset");
    a.kill();
    drop(carol);
    let mut sent = Vec::new();
    for i in 0..5 {
        alice
            .send(json!({"op": "send", "text": format!("while A was down {i}")}))
            .await;
        sent.push(
            alice.expect("ack").await["offset"]
                .as_u64()
                .expect("offset"),
        );
    }
    let mut carol = b
        .reconnect("demo", Some(&token("u-carol", "Carol")), seen_by_carol)
        .await;
    let recovery = carol.expect("recovery").await;
    assert_eq!(recovery["recovered"], true);
    let got: Vec<u64> = recovery["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["offset"].as_u64())
        .collect();
    assert_eq!(got, sent);
    alice
        .send(json!({"op": "send", "text": "live again"}))
        .await;
    let live = alice.expect("ack").await["offset"].as_u64();
    assert_eq!(carol.expect("msg").await["offset"].as_u64(), live);

    // Redis drops the nodes' pub/sub connections: what is sent meanwhile is read back from the
    // stream when they resubscribe, in order, once.
    let mut dave = b.connect("demo", None).await;
    dave.expect("room").await;
    let kill = std::process::Command::new("redis-cli")
        .args(["-u", &redis.url, "CLIENT", "KILL", "TYPE", "pubsub"])
        .output()
        .expect("redis-cli runs");
    assert!(kill.status.success());
    let mut sent = Vec::new();
    for i in 0..3 {
        alice
            .send(json!({"op": "send", "text": format!("during the cut {i}")}))
            .await;
        sent.push(
            alice.expect("ack").await["offset"]
                .as_u64()
                .expect("offset"),
        );
    }
    for reader in [&mut carol, &mut dave] {
        let mut got = Vec::new();
        while got.len() < sent.len() {
            got.push(
                reader.expect("msg").await["offset"]
                    .as_u64()
                    .expect("offset"),
            );
        }
        assert_eq!(got, sent);
    }
    assert!(b.metric("corral_chat_bus_reconnects_total").await >= 1.0);
}

/// The chat load on both nodes: receivers and senders spread over A and B; A is killed
/// while messages flow. Its clients come back on B after a jittered back-off with their last
/// offset, and every acked message reaches every receiver, once.
#[tokio::test]
async fn chatters_on_a_killed_node_come_back_on_the_other_and_lose_nothing() {
    let redis = Redis::start();
    let mut a = ChatRelay::start(&format!(
        "redis_url: {}\nrate_burst: 10000\nrate_period: 1.0\n",
        redis.url
    ));
    let b = ChatRelay::start(&format!(
        "redis_url: {}\nrate_burst: 10000\nrate_period: 1.0\n",
        redis.url
    ));
    let load = tokio::process::Command::new(corral_e2e::binary("loadtest"))
        .args(["chat", &a.ws_url("cluster-load", None)])
        .args(["--node", &b.ws_url("cluster-load", None)])
        .args(["--connections", "40", "--senders", "2", "--rate", "20"])
        .args(["--duration", "6s", "--settle", "3s", "--format", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("loadtest runs");
    // Kill A once messages are flowing through it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while a.metric("corral_chat_messages_total").await < 20.0 {
        assert!(Instant::now() < deadline, "no messages on A\n{}", a.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.kill();
    let out = load.wait_with_output().await.expect("loadtest ends");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert_eq!(report["connections_held_at_start"], 40, "{report}");
    // Half the receivers and one sender were on A.
    assert_eq!(report["receiver_reconnects"], 20, "{report}");
    assert_eq!(report["sender_reconnects"], 1, "{report}");
    assert_eq!(report["incomplete_recoveries"], 0, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    let acked = report["messages_acked"].as_u64().expect("acked");
    assert!(acked >= 60, "{report}");
    assert_eq!(report["deliveries"].as_u64(), Some(acked * 40), "{report}");
    assert!(report["longest_away_ms"].as_u64() < Some(5_000), "{report}");
    assert!(
        b.metric("corral_chat_recoveries_total{recovered=\"true\"}")
            .await
            >= 20.0
    );
}

#[tokio::test]
async fn a_node_started_without_redis_refuses_to_run() {
    // A Redis URL that nothing listens on: a clear error and a non-zero exit, not a node that
    // pretends to serve.
    let port = corral_e2e::free_port();
    let out = std::process::Command::new(corral_e2e::binary("chat-relay"))
        .arg("--config")
        .arg(
            corral_e2e::Scratch::new("chat-noredis").file(
                "c.yaml",
                &format!("listen: 127.0.0.1:0\nmetrics_listen: 127.0.0.1:0\nredis_url: redis://127.0.0.1:{port}/\n"),
            ),
        )
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("redis_url"), "{err}");
}
