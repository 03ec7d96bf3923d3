//! The edge in front of a real origin: herds of players asking at once for a blocking
//! playlist, a hinted part that does not exist yet, and an object asked for too early cost the
//! origin one request each, and every player gets the same answer as soon as the first does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_e2e::edge::{
    Edge, PLAYLIST, live_playlist, origin_config, origin_requests, viewer_step,
};
use corral_e2e::{Origin, SERIAL, metric_sum};
use corral_loadtest::client::Fetched;
use corral_loadtest::playlist::MediaPlaylist;
use tokio::task::JoinSet;

const HERD: usize = 1000;

/// `HERD` concurrent GETs through the edge, the i-th for `paths[i % paths.len()]`; the answers
/// in the same order.
async fn herd(edge: &Arc<Edge>, paths: &[String]) -> Vec<Fetched> {
    let mut set = JoinSet::new();
    for i in 0..HERD {
        let edge = edge.clone();
        let path = paths[i % paths.len()].clone();
        set.spawn(async move { (i, edge.get(&path).await) });
    }
    let mut out: Vec<Option<Fetched>> = (0..HERD).map(|_| None).collect();
    while let Some(r) = set.join_next().await {
        let (i, fetched) = r.expect("a viewer task");
        out[i] = Some(fetched);
    }
    out.into_iter()
        .map(|f| f.expect("every viewer answered"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herds_of_players_cost_the_origin_one_request_per_object() {
    let _serial = SERIAL.lock().await;
    let origin = Origin::start(&origin_config());
    let edge = Arc::new(Edge::start(&[&origin.http.to_string()], ""));
    let playlist = live_playlist(&edge).await;

    // The next part: hinted, not yet published. Half the herd blocks on the playlist that will
    // list it (parameters in different orders, with a signature-like extra), half asks for
    // the part itself.
    let hint = playlist.preload_hint.clone().expect("a hinted part");
    let (msn, part) = MediaPlaylist::part_position(&hint).expect("msn.part.m4s");
    let part_path = format!("/live/demo/360p/{hint}");
    let playlists = [
        format!("{PLAYLIST}?_HLS_msn={msn}&_HLS_part={part}"),
        format!("{PLAYLIST}?_HLS_part={part}&_HLS_msn={msn}&sig=viewer-token"),
    ];
    let before_playlists = origin_requests(&origin, "blocking_playlist").await;
    let before_parts = origin_requests(&origin, "part").await;
    let asked = Instant::now();
    let paths = [
        playlists[0].clone(),
        part_path.clone(),
        playlists[1].clone(),
        part_path,
    ];
    let answers = herd(&edge, &paths).await;
    let after_playlists = origin_requests(&origin, "blocking_playlist").await;
    let after_parts = origin_requests(&origin, "part").await;
    assert_eq!(
        after_playlists - before_playlists,
        1.0,
        "{} players blocked on one playlist through the edge",
        HERD / 2
    );
    assert_eq!(
        after_parts - before_parts,
        1.0,
        "{} players asked for one hinted part",
        HERD / 2
    );

    // Everyone got the same bytes, and got them as soon as the first player did: the waiters
    // were woken by the fill, not by a timer.
    for kind in [".m3u8", ".m4s"] {
        let group: Vec<&Fetched> = answers
            .iter()
            .enumerate()
            .filter(|(i, _)| paths[i % paths.len()].contains(kind))
            .map(|(_, a)| a)
            .collect();
        for a in &group {
            assert_eq!(
                a.status,
                200,
                "{kind}: {}",
                String::from_utf8_lossy(&a.body)
            );
            assert!(
                a.body == group[0].body,
                "{kind}: every player gets the same bytes"
            );
            assert!(a.header("age").is_some(), "{kind}: Age is set");
        }
        let first = group.iter().map(|a| a.done).min().expect("answers");
        let last = group.iter().map(|a| a.done).max().expect("answers");
        assert!(
            last - first < Duration::from_millis(250),
            "{kind}: the last player finished {:?} after the first (asked {:?} before)",
            last - first,
            first - asked
        );
    }
    let listed = MediaPlaylist::parse(std::str::from_utf8(&answers[0].body).expect("utf-8"))
        .expect("a playlist");
    assert!(
        listed
            .segments
            .iter()
            .flat_map(|s| &s.parts)
            .any(|p| p.uri == hint),
        "the blocking playlist lists the part it waited for"
    );
    assert!(edge.metric("corral_edge_lock_wait_seconds_count").await >= 1.0);
    assert_eq!(
        edge.metric("corral_edge_upstream_seconds_count{kind=\"part\"}")
            .await,
        1.0
    );
    assert!(
        edge.metric("corral_edge_bytes_out_total{kind=\"part\"}")
            .await
            > 0.0
    );

    // A complete segment that nobody has asked for yet.
    let fresh = edge.get(PLAYLIST).await;
    let fresh =
        MediaPlaylist::parse(std::str::from_utf8(&fresh.body).expect("utf-8")).expect("a playlist");
    let newest = fresh
        .segments
        .iter()
        .rev()
        .find_map(|s| s.uri.clone())
        .expect("a complete segment");
    let before = origin_requests(&origin, "segment").await;
    let answers = herd(&edge, &[format!("/live/demo/360p/{newest}")]).await;
    assert!(
        answers
            .iter()
            .all(|a| a.status == 200 && a.body == answers[0].body)
    );
    assert_eq!(
        origin_requests(&origin, "segment").await - before,
        1.0,
        "{HERD} players asked for one uncached segment"
    );

    // A part asked for far too early (not even hinted): the origin says 404, and the edge keeps
    // that answer for a moment so the herd behind it costs one request too.
    let early = format!("/live/demo/360p/{}.0.m4s", msn + 5);
    // (The origin says max-age=1: a herd that takes longer on a loaded machine costs one more
    // request per second it lasts, never one per player.)
    let before = origin_requests(&origin, "part").await;
    let started = Instant::now();
    let answers = herd(&edge, std::slice::from_ref(&early)).await;
    let lasted = started.elapsed();
    assert!(answers.iter().all(|a| a.status == 404));
    let asked = origin_requests(&origin, "part").await - before;
    assert!(
        asked >= 1.0 && asked <= 1.0 + lasted.as_secs_f64().floor(),
        "{asked} origin requests for a herd of {HERD} over {lasted:?}"
    );

    // Once an object is cached, players are answered by the edge alone.
    let segment = format!("/live/demo/360p/{}.m4s", playlist.segments[0].msn);
    let first = edge.get(&segment).await;
    assert_eq!(first.status, 200);
    let before = origin_requests(&origin, "segment").await;
    let again = edge.get(&segment).await;
    assert!(again.body == first.body);
    assert_eq!(again.header("x-cache"), Some("hit"));
    assert_eq!(origin_requests(&origin, "segment").await, before);

    // One cached copy serves players that accept gzip and players that do not.
    let master = "/live/demo/master.m3u8";
    let before = origin_requests(&origin, "master").await;
    let gzip = edge
        .client
        .get(&edge.url(master), &[("accept-encoding", "gzip")])
        .await
        .expect("answered");
    let plain = edge.get(master).await;
    assert_eq!(gzip.content_encoding.as_deref(), Some("gzip"));
    assert_eq!(plain.content_encoding, None);
    assert!(plain.body.starts_with(b"#EXTM3U"));
    assert_eq!(origin_requests(&origin, "master").await - before, 1.0);

    // A herd that accepts gzip, on the next blocking playlist: every player gets the same
    // compressed copy of the cached playlist, compressed once for all of them.
    let now = live_playlist(&edge).await;
    let hint = now.preload_hint.clone().expect("a hinted part");
    let (msn, part) = MediaPlaylist::part_position(&hint).expect("msn.part.m4s");
    let blocking = format!("{PLAYLIST}?_HLS_msn={msn}&_HLS_part={part}");
    let compressed = "corral_edge_playlist_gzip_total{outcome=\"compressed\"}";
    let reused = "corral_edge_playlist_gzip_total{outcome=\"reused\"}";
    let (made_before, reused_before) = (edge.metric(compressed).await, edge.metric(reused).await);
    let mut set = JoinSet::new();
    for _ in 0..50 {
        let edge = edge.clone();
        let url = edge.url(&blocking);
        set.spawn(async move {
            edge.client
                .get(&url, &[("accept-encoding", "gzip")])
                .await
                .expect("answered")
        });
    }
    let answers = set.join_all().await;
    let identity = edge.get(&blocking).await;
    assert_eq!(identity.status, 200);
    assert_eq!(identity.content_encoding, None);
    for a in &answers {
        assert_eq!(
            (a.status, a.content_encoding.as_deref()),
            (http::StatusCode::OK, Some("gzip"))
        );
        assert_eq!(a.header("vary"), Some("Accept-Encoding"));
        let text = corral_loadtest::gunzip(&a.body).expect("valid gzip");
        assert!(
            text[..] == identity.body[..],
            "the cached playlist, compressed"
        );
    }
    assert_eq!(edge.metric(compressed).await - made_before, 1.0);
    assert_eq!(edge.metric(reused).await - reused_before, 49.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_at_the_edge_without_reaching_the_origin() {
    let _serial = SERIAL.lock().await;
    let origin = Origin::start(&origin_config());
    let edge = Edge::start(&[&origin.http.to_string()], "");
    let before = metric_sum(
        &origin.metrics_text().await,
        "corral_origin_http_requests_total",
    );
    for path in [
        format!("{PLAYLIST}?_HLS_msn=abc"),
        format!("{PLAYLIST}?_HLS_part=1"),
        format!("{PLAYLIST}?_HLS_msn=1&_HLS_msn=2"),
        "/live/demo/../secret".to_string(),
        "/live/demo/%2e%2e/x".to_string(),
        "/live//demo".to_string(),
    ] {
        let r = edge.get(&path).await;
        assert_eq!(r.status, 400, "{path}");
        assert_eq!(r.cache_control.as_deref(), Some("no-store"));
    }
    let after = metric_sum(
        &origin.metrics_text().await,
        "corral_origin_http_requests_total",
    );
    assert_eq!(after, before, "nothing refused reached the origin");
    assert_eq!(
        edge.metric("corral_edge_refused_total{reason=\"path not in canonical form\"}")
            .await,
        3.0
    );
}

/// Waits until the origin holds a blocking request (the herd's leader has reached it).
async fn edge_wait_for_upstream(origin: &Origin) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric_sum(
        &origin.metrics_text().await,
        "corral_origin_blocked_requests",
    ) < 1.0
    {
        assert!(
            Instant::now() < deadline,
            "the herd's leader never reached the origin"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How the primary origin goes away in a failover test.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Gone {
    /// SIGKILL, as a crash: its connections reset, no goodbye.
    Crashed,
    /// SIGTERM with `http.on_stop: hand_over`: /healthz turns 503 and every request is closed
    /// unanswered.
    HandedOver,
    /// SIGSTOP, as a hang: its port still takes connections, nothing is answered.
    Hung,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_primary_origin_dies_viewers_go_on_from_the_next_one() {
    failover(Gone::Crashed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_stopped_with_hand_over_passes_its_viewers_to_the_next_one_without_ending() {
    failover(Gone::HandedOver).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_primary_origin_hangs_viewers_go_on_from_the_next_one_and_stay_when_it_is_back() {
    failover(Gone::Hung).await;
}

async fn failover(gone: Gone) {
    let _serial = SERIAL.lock().await;
    let mut primary = Origin::start_with_http("  on_stop: hand_over\n", &origin_config());
    let standby = Origin::start(&origin_config());
    let (p, s) = (primary.http.to_string(), standby.http.to_string());
    // Both transcoders past their start before the edge looks: a standby's ffmpeg starting
    // beside the primary's on a 2-core machine can hold the primary's parts back long enough
    // for its health check to call it stalled, and the edge would rightly move to the standby
    // before the test begins.
    primary.playlist_with(PLAYLIST, 1).await;
    standby.playlist_with(PLAYLIST, 1).await;
    let edge = Edge::start(&[&p, &s], "upstream: { health_interval: 0.2 }\n");
    let mut playlist = live_playlist(&edge).await;
    for _ in 0..3 {
        let (next, retries) = viewer_step(&edge, PLAYLIST, &playlist).await;
        assert_eq!(retries, 0, "no failure while the primary is up");
        playlist = next;
    }
    let standby_before = origin_requests(&standby, "blocking_playlist").await;
    assert_eq!(
        standby_before,
        0.0,
        "the standby is idle while the primary serves\n{}",
        edge.log()
    );

    // A herd is held at the primary on the first part of the next segment (up to a segment
    // away) when the primary goes. The leader's fetch goes to the standby, once; the waiters
    // stay waiting on it and get its answer.
    let edge = Arc::new(edge);
    let next_segment = playlist.segments.last().expect("segments").msn + 1;
    let held = format!("{PLAYLIST}?_HLS_msn={next_segment}&_HLS_part=0");
    let herd_task = {
        let edge = edge.clone();
        tokio::spawn(async move { herd(&edge, &[held]).await })
    };
    edge_wait_for_upstream(&primary).await;
    let gone_at = Instant::now();
    match gone {
        Gone::Crashed => primary.kill(),
        Gone::HandedOver => primary.terminate(),
        Gone::Hung => primary.pause(),
    }
    let answers = herd_task.await.expect("the herd");
    // The held part is at most a segment (2 s) away; a hung primary costs the hold_timeout
    // on top (0.7 s, or a retry there), not the 12 s read_timeout.
    let waited = gone_at.elapsed();
    assert!(
        waited < Duration::from_secs(5),
        "the herd was answered {waited:?} after the primary went"
    );
    let statuses: std::collections::BTreeMap<u16, usize> =
        answers.iter().fold(Default::default(), |mut m, a| {
            *m.entry(a.status.as_u16()).or_default() += 1;
            m
        });
    assert_eq!(
        statuses.get(&200).copied(),
        Some(HERD),
        "the held herd is answered from the standby: {statuses:?}\n{}",
        edge.log()
    );
    assert_eq!(
        origin_requests(&standby, "blocking_playlist").await,
        1.0,
        "the failed leader handed its fetch to the standby once, not once per waiter"
    );
    let start_msn = playlist.segments.last().expect("segments").msn;
    let mut total_retries = 0;
    for _ in 0..9 {
        let (next, retries) = viewer_step(&edge, PLAYLIST, &playlist).await;
        total_retries += retries;
        playlist = next;
    }
    assert!(
        total_retries <= 1,
        "{total_retries} retries: at most the request in flight"
    );
    assert!(
        playlist.segments.last().expect("segments").msn > start_msn,
        "the stream went on past the failure"
    );
    assert!(
        answers
            .iter()
            .all(|a| !a.body.ends_with(b"#EXT-X-ENDLIST\n"))
            && !playlist.ended,
        "no viewer was told the stream ended"
    );
    if gone == Gone::HandedOver {
        assert!(primary.stop().success(), "the primary stopped cleanly");
        assert!(primary.log().contains("handing players over"));
    }
    let primary_up = format!("corral_edge_origin_up{{origin=\"{p}\"}}");
    assert!(origin_requests(&standby, "blocking_playlist").await >= 9.0);
    assert_eq!(edge.metric(&primary_up).await, 0.0);
    assert_eq!(
        edge.metric(&format!("corral_edge_origin_up{{origin=\"{s}\"}}"))
            .await,
        1.0
    );
    if gone == Gone::Hung {
        // Back from its hang, the primary catches up with its stream, passes its health check
        // (which fails while its stream has not advanced) and serves again.
        primary.resume();
        let deadline = Instant::now() + Duration::from_secs(20);
        while edge.metric(&primary_up).await != 1.0 {
            assert!(
                Instant::now() < deadline,
                "the primary never came back\n{}",
                primary.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Back and healthy, it is not moved to: its stream restarted after the hang (here the
        // two origins run test sources of their own, numbered apart, as a primary back on
        // another publish would be), and the standby that took over keeps serving while it is
        // up (`upstream.sticky`).
        let (primary_before, standby_before) = (
            origin_requests(&primary, "blocking_playlist").await,
            origin_requests(&standby, "blocking_playlist").await,
        );
        let mut playlist = live_playlist(&edge).await;
        for _ in 0..4 {
            let hint = playlist.preload_hint.clone().expect("a hinted part");
            let (msn, part) = MediaPlaylist::part_position(&hint).expect("msn.part.m4s");
            let r = edge
                .get(&format!("{PLAYLIST}?_HLS_msn={msn}&_HLS_part={part}"))
                .await;
            assert_eq!(r.status, 200);
            playlist = MediaPlaylist::parse(std::str::from_utf8(&r.body).expect("utf-8"))
                .expect("a playlist");
        }
        assert_eq!(
            origin_requests(&primary, "blocking_playlist").await,
            primary_before,
            "viewers were moved back to the primary\n{}",
            edge.log()
        );
        assert!(origin_requests(&standby, "blocking_playlist").await >= standby_before + 4.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_origin_is_gone_media_still_valid_is_served_stale_and_playlists_are_not() {
    let _serial = SERIAL.lock().await;
    let mut origin = Origin::start(&origin_config());
    // The edge asks again after a second, while the origin said media is good for a day.
    let edge = Edge::start(
        &[&origin.http.to_string()],
        "cache: { max_ttl: 1.0, stale_if_error: 60.0 }\n",
    );
    let playlist = live_playlist(&edge).await;
    let segment = playlist
        .segments
        .iter()
        .rev()
        .find_map(|s| s.uri.clone())
        .expect("a complete segment");
    let path = format!("/live/demo/360p/{segment}");
    let fresh = edge.get(&path).await;
    assert_eq!(fresh.status, 200);
    origin.kill();

    // Past max_ttl the edge asks again, finds no origin, and answers with the bytes it has.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = edge.get(&path).await;
        assert_eq!(r.status, 200, "media is answered while the origin is gone");
        assert_eq!(r.body, fresh.body, "the same bytes");
        if r.header("x-cache") == Some("stale") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never served stale\n{}",
            edge.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stale = r#"corral_edge_requests_total{cache="stale",kind="segment",status="200"}"#;
    assert!(edge.metric(stale).await >= 1.0, "counted as stale");

    // A playlist is never older than its TTL: with no origin there is none to give.
    let r = edge.get(PLAYLIST).await;
    assert!(
        r.status.is_server_error(),
        "a playlist is not served stale: {}",
        r.status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edges_of_a_region_behind_a_shield_cost_the_origin_one_request_per_object() {
    let _serial = SERIAL.lock().await;
    let origin = Origin::start(&origin_config());
    let o = origin.http.to_string();
    let shield = Edge::start(&[&o], "");
    // A held request that the shield has not begun to answer within `hold_timeout` goes on to
    // the origin, by design (a second request, not a lost one). The shield answering 2,000
    // players at once on a loaded 2-core machine can take longer than the default 0.7 s; the
    // longer hold keeps this test on what it measures, that the shield coalesces the region.
    let via_shield = format!(
        "shield: {}\nupstream: {{ hold_timeout: 3.0 }}\n",
        shield.http
    );
    let edges = [
        Arc::new(Edge::start(&[&o], &via_shield)),
        Arc::new(Edge::start(&[&o], &via_shield)),
    ];
    let playlist = live_playlist(&edges[0]).await;
    let hint = playlist.preload_hint.clone().expect("a hinted part");
    let (msn, part) = MediaPlaylist::part_position(&hint).expect("msn.part.m4s");
    let paths = [
        format!("{PLAYLIST}?_HLS_msn={msn}&_HLS_part={part}"),
        format!("/live/demo/360p/{hint}"),
    ];
    let before = (
        origin_requests(&origin, "blocking_playlist").await,
        origin_requests(&origin, "part").await,
    );
    let (a, b) = tokio::join!(herd(&edges[0], &paths), herd(&edges[1], &paths));
    assert!(a.iter().chain(&b).all(|r| r.status == 200));
    let after = (
        origin_requests(&origin, "blocking_playlist").await,
        origin_requests(&origin, "part").await,
    );
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (1.0, 1.0),
        "two edges of {} players each: one origin request per object for the region",
        HERD
    );
    for edge in &edges {
        assert_eq!(
            edge.metric("corral_edge_upstream_requests_total{kind=\"part\",status=\"200\"}")
                .await,
            1.0,
            "each edge asked its shield once"
        );
    }
}

/// A shield that cannot reach any upstream says so to the edges below it (which then go
/// around it), while still answering its own load balancer's `/healthz`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shield_with_no_upstream_up_is_gone_around_by_the_edges_below_it() {
    let _serial = SERIAL.lock().await;
    // Nothing listens on port 9 of the loopback.
    let shield = Edge::start(&["127.0.0.1:9"], "");
    let below = Edge::start(&["127.0.0.1:9"], &format!("shield: {}\n", shield.http));
    let up = format!("corral_edge_origin_up{{origin=\"{}\"}}", shield.http);
    let deadline = Instant::now() + Duration::from_secs(10);
    while shield.get("/healthz?upstream").await.status != 503 || below.metric(&up).await != 0.0 {
        assert!(
            Instant::now() < deadline,
            "the shield never said it had no upstream\n{}",
            below.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        shield.get("/healthz").await.status,
        200,
        "the process itself is fine"
    );
}

const SIGNING_KEY: &str = "test-signing-key-0123456789";
const MINT_TOKEN: &str = "test-mint-token-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_playback_urls_are_minted_by_the_origin_and_checked_at_the_edge() {
    let _serial = SERIAL.lock().await;
    let origin = Origin::start_with_http(
        &format!("  signing: {{ key: {SIGNING_KEY}, mint_token: {MINT_TOKEN} }}\n"),
        &origin_config(),
    );
    let edge = Edge::start(
        &[&origin.http.to_string()],
        &format!("signing: {{ key: {SIGNING_KEY} }}\n"),
    );
    let mint = "/api/streams/demo/playback-url?ttl=600";
    assert_eq!(origin.get(mint, &[]).await.status, 401, "no token, no URL");
    let bearer = format!("Bearer {MINT_TOKEN}");
    let minted = origin.get(mint, &[("authorization", &bearer)]).await;
    assert_eq!(minted.status, 200);
    let minted: serde_json::Value = serde_json::from_slice(&minted.body).expect("json");
    let url = minted["url"].as_str().expect("a url").to_string();
    let (_, signature) = url.split_once('?').expect("a signed query");

    // Refused before any cache or origin work: no signature, a forged one, an expired one, and
    // a signature for another stream.
    let key = signed_url::Key::new(SIGNING_KEY.as_bytes()).expect("key");
    let expired = key.sign("/live/demo/master.m3u8", 1).expect("scoped");
    let other = key
        .sign("/live/other/master.m3u8", u64::MAX / 4)
        .expect("scoped");
    let forged = format!("{}0", &signature[..signature.len() - 1]);
    let forged = if forged == signature {
        format!("{}1", &signature[..signature.len() - 1])
    } else {
        forged
    };
    let before = metric_sum(
        &origin.metrics_text().await,
        "corral_origin_http_requests_total{kind=\"master\"",
    );
    for (query, reason) in [
        (String::new(), "missing"),
        (forged, "forged"),
        (expired, "expired"),
        (other, "forged"),
    ] {
        let r = edge.get(&format!("/live/demo/master.m3u8?{query}")).await;
        assert_eq!(r.status, 403, "{reason}");
        assert!(
            String::from_utf8_lossy(&r.body).contains(reason),
            "{reason}"
        );
    }
    let after = metric_sum(
        &origin.metrics_text().await,
        "corral_origin_http_requests_total{kind=\"master\"",
    );
    assert_eq!(after, before, "refused requests never reach the origin");

    // Finished broadcasts are signed too: a VOD URL is minted with `session=` and admitted
    // (no such broadcast here: the origin's 404), an unsigned one is refused.
    let vod = "/vod/demo/20261206T070142Z/master.m3u8";
    assert_eq!(edge.get(vod).await.status, 403, "unsigned VOD");
    let minted = origin
        .get(
            &format!("{mint}&session=20261206T070142Z"),
            &[("authorization", &bearer)],
        )
        .await;
    let minted: serde_json::Value = serde_json::from_slice(&minted.body).expect("json");
    let vod_url = minted["url"].as_str().expect("a url");
    assert!(vod_url.starts_with(&format!("{vod}?")), "{vod_url}");
    assert_eq!(
        edge.get(vod_url).await.status,
        404,
        "admitted; nothing archived"
    );
    let bad = origin
        .get(
            &format!("{mint}&session=yesterday"),
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(bad.status, 400);

    // The signed URL plays: every URI in what the edge serves carries the signature on, so a
    // player that resolves them as they are goes on being admitted.
    let master = edge.get(&url).await;
    assert_eq!(
        master.status,
        200,
        "{}",
        String::from_utf8_lossy(&master.body)
    );
    let text = String::from_utf8(master.body.to_vec()).expect("utf-8");
    let variant = text
        .lines()
        .find(|l| l.starts_with("360p/"))
        .unwrap_or_else(|| panic!("the 360p variant in\n{text}"));
    assert!(variant.ends_with(signature), "{variant}");
    let media_path = format!("/live/demo/{variant}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let playlist = loop {
        let r = edge.get(&media_path).await;
        assert_ne!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
        if r.status == 200 {
            let p = MediaPlaylist::parse(std::str::from_utf8(&r.body).expect("utf-8"))
                .expect("a playlist");
            if p.preload_hint.is_some() {
                break p;
            }
        }
        assert!(Instant::now() < deadline, "never live");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let hint = playlist.preload_hint.clone().expect("hint");
    assert!(hint.ends_with(signature), "{hint}");
    for segment in &playlist.segments {
        for part in &segment.parts {
            assert!(part.uri.ends_with(signature), "{}", part.uri);
        }
    }
    let part = playlist.segments[0].parts[0].uri.clone();
    assert_eq!(
        edge.get(&format!("/live/demo/360p/{part}")).await.status,
        200
    );
    // A blocking reload as a player makes it: the directives beside the signature.
    let (msn, p) =
        MediaPlaylist::part_position(hint.split('?').next().expect("uri")).expect("msn.part");
    let blocking = edge
        .get(&format!("{media_path}&_HLS_msn={msn}&_HLS_part={p}"))
        .await;
    assert_eq!(blocking.status, 200);
    assert!(
        edge.metric("corral_edge_refused_total{reason=\"forged signature\"}")
            .await
            >= 2.0
    );
}

/// `curl` over TLS with the given protocol flag: (the HTTP version it used, the body).
fn curl_tls(url: &str, protocol: &str) -> (String, Vec<u8>) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--insecure", protocol, "--max-time", "10"])
        .args(["-w", "\n%{http_version}", url])
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let split = out
        .stdout
        .iter()
        .rposition(|&b| b == b'\n')
        .expect("version line");
    let version = String::from_utf8_lossy(&out.stdout[split + 1..]).to_string();
    (version, out.stdout[..split].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_listener_speaks_http2_and_http1_by_alpn_from_the_same_cache() {
    let _serial = SERIAL.lock().await;
    let origin = Origin::start(&origin_config());
    let scratch = corral_e2e::Scratch::new("tls");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("a self-signed certificate");
    let cert_path = scratch.file("edge.crt", &cert.cert.pem());
    let key_path = scratch.file("edge.key", &cert.signing_key.serialize_pem());
    let tls_port = corral_e2e::free_port();
    let edge = Edge::start(
        &[&origin.http.to_string()],
        &format!(
            "tls_listen: 127.0.0.1:{tls_port}\ntls: {{ cert: {}, key: {} }}\n",
            cert_path.display(),
            key_path.display()
        ),
    );
    let playlist = live_playlist(&edge).await;
    let segment = format!("/live/demo/360p/{}.m4s", playlist.segments[0].msn);
    let plain = edge.get(&segment).await;
    assert_eq!(plain.status, 200);
    let before = origin_requests(&origin, "segment").await;
    let url = format!("https://127.0.0.1:{tls_port}{segment}");
    let (h2, h2_body) = curl_tls(&url, "--http2");
    let (h1, h1_body) = curl_tls(&url, "--http1.1");
    assert_eq!(
        (h2.as_str(), h1.as_str()),
        ("2", "1.1"),
        "ALPN picks the protocol"
    );
    assert!(
        h2_body == plain.body && h1_body == plain.body,
        "the same bytes on every listener"
    );
    assert_eq!(
        origin_requests(&origin, "segment").await,
        before,
        "one cache behind both listeners"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_get_a_4xx_or_a_closed_connection_and_players_are_unaffected() {
    use std::io::{Read, Write};
    let _serial = SERIAL.lock().await;
    let origin = Origin::start(&origin_config());
    let mut edge = Edge::start(&[&origin.http.to_string()], "keepalive_timeout: 2\n");
    let playlist = live_playlist(&edge).await;
    let segment = format!("/live/demo/360p/{}.m4s", playlist.segments[0].msn);
    assert_eq!(edge.get(&segment).await.status, 200);
    let rss_before = edge.rss_kb();

    // 10,000 idle connections that never send a byte, and slowloris clients that send their
    // headers a few bytes at a time.
    let idle: Vec<std::net::TcpStream> = (0..10_000)
        .filter_map(|_| std::net::TcpStream::connect(edge.http).ok())
        .collect();
    assert!(
        idle.len() >= 9_900,
        "only {} idle connections opened",
        idle.len()
    );
    let mut slow: Vec<std::net::TcpStream> = (0..100)
        .filter_map(|_| std::net::TcpStream::connect(edge.http).ok())
        .collect();
    for s in &mut slow {
        let _ = s.write_all(b"GET /live/demo/master.m3u8 HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    }

    // A 64 KiB header: refused.
    let mut big = std::net::TcpStream::connect(edge.http).expect("connect");
    big.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let header = "a".repeat(64 << 10);
    let _ = big.write_all(
        format!("GET {segment} HTTP/1.1\r\nHost: x\r\nX-Big: {header}\r\n\r\n").as_bytes(),
    );
    let mut answer = Vec::new();
    let _ = big.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty()
            || answer.starts_with("HTTP/1.1 431")
            || answer.starts_with("HTTP/1.1 400"),
        "{}",
        &answer[..answer.len().min(200)]
    );

    // Garbage instead of HTTP: a 400 or a closed connection.
    let mut junk = std::net::TcpStream::connect(edge.http).expect("connect");
    junk.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = junk.write_all(b"\x16\x03\x01\x00\xff garbage \r\n\r\n\x00\x01\x02");
    let mut answer = Vec::new();
    let _ = junk.read_to_end(&mut answer);
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 400"),
        "{answer:?}"
    );

    // Meanwhile a player is served as usual, from a fresh connection each time.
    for _ in 0..20 {
        let fresh = corral_loadtest::client::HttpClient::new(Duration::from_secs(5));
        let r = fresh.get(&edge.url(&segment), &[]).await.expect("served");
        assert_eq!(r.status, 200);
        assert!(r.elapsed < Duration::from_secs(1), "{:?}", r.elapsed);
    }
    for s in &mut slow {
        let _ = s.write_all(b"zz");
    }
    assert!(edge.running());
    let rss_during = edge.rss_kb();
    let per_connection_kb = rss_during.saturating_sub(rss_before) / idle.len() as u64;
    assert!(
        per_connection_kb < 64,
        "an idle connection costs {per_connection_kb} kB: memory must stay bounded"
    );
    drop(idle);
    drop(slow);
    // The edge answers /healthz itself.
    assert_eq!(edge.get("/healthz").await.status, 200);
}

/// Sends `GET /healthz` on `s` and reads the answer: `Some(status line)`, or `None` when the
/// edge closed the connection without one.
fn healthz(s: &mut std::net::TcpStream) -> Option<String> {
    use std::io::{Read, Write};
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
    while !answer.ends_with(b"ok\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    answer.lines().next().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_closed_and_the_open_ones_keep_being_served() {
    let _serial = SERIAL.lock().await;
    // /healthz is the edge's own answer: no origin is needed.
    let edge = Edge::start(&["127.0.0.1:9"], "max_connections: 20\n");
    let mut open: Vec<std::net::TcpStream> = (0..20)
        .map(|_| std::net::TcpStream::connect(edge.http).expect("connect"))
        .collect();
    for s in &mut open {
        assert_eq!(healthz(s).as_deref(), Some("HTTP/1.1 200 OK"));
    }
    assert_eq!(
        edge.metric(r#"corral_edge_connections_open{protocol="tcp"}"#)
            .await,
        20.0
    );

    // The 21st is closed without an answer, and counted.
    let mut over = std::net::TcpStream::connect(edge.http).expect("the kernel accepts it");
    assert_eq!(healthz(&mut over), None, "over the limit: closed");
    assert_eq!(
        edge.metric(r#"corral_edge_connections_refused_total{protocol="tcp"}"#)
            .await,
        1.0
    );
    assert!(edge.log().contains("connection limit reached"));

    // The open ones are served as before; once one closes, a new one is served.
    assert_eq!(healthz(&mut open[0]).as_deref(), Some("HTTP/1.1 200 OK"));
    drop(open.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut fresh = std::net::TcpStream::connect(edge.http).expect("connect");
        if healthz(&mut fresh).is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a closed connection never freed its place"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
