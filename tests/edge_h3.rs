//! HTTP/3 at the edge, checked with an independent client (Python's aioquic): the same bytes
//! as HTTP/1.1 from the same cache, one origin request per object for a herd that mixes
//! HTTP/3, HTTP/2 and HTTP/1.1 players, signed URLs, and hostile QUIC traffic that leaves
//! other players unaffected.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use corral_e2e::edge::{Edge, PLAYLIST, live_playlist, origin_config, origin_requests};
use corral_e2e::h3::{self, H3Herd, H3Response};
use corral_e2e::{Origin, SERIAL, metric_sum};
use corral_loadtest::playlist::MediaPlaylist;

/// The blocking playlist and the part for `playlist`'s preload hint.
fn next_objects(playlist: &MediaPlaylist) -> (String, String) {
    let hint = playlist.preload_hint.clone().expect("a hinted part");
    let (msn, part) = MediaPlaylist::part_position(&hint).expect("msn.part.m4s");
    (
        format!("{PLAYLIST}?_HLS_msn={msn}&_HLS_part={part}"),
        format!("/live/demo/360p/{hint}"),
    )
}

fn https(edge: &Edge, path: &str) -> String {
    format!("https://{}{path}", edge.tls.expect("a TLS edge"))
}

/// Runs the h3 client off the test's runtime threads.
async fn h3_get(edge: &Edge, connections: usize, paths: &[String]) -> Vec<H3Response> {
    let ca = edge.ca.clone().expect("a TLS edge");
    let urls: Vec<String> = paths.iter().map(|p| https(edge, p)).collect();
    tokio::task::spawn_blocking(move || h3::get(&ca, connections, &urls))
        .await
        .expect("the h3 client")
}

/// `curl --http2` over TLS, trusting the edge's certificate: (status, body).
fn curl_h2(ca: &std::path::Path, url: &str) -> (u16, Vec<u8>) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--http2", "--max-time", "20", "--cacert"])
        .arg(ca)
        .args(["-w", "\n%{http_code} %{http_version}", url])
        .output()
        .expect("curl runs");
    let split = out
        .stdout
        .iter()
        .rposition(|&b| b == b'\n')
        .expect("status line");
    let tail = String::from_utf8_lossy(&out.stdout[split + 1..]).to_string();
    let (code, version) = tail.split_once(' ').expect("code and version");
    assert_eq!(version, "2", "curl spoke HTTP/2");
    (
        code.parse().expect("a status"),
        out.stdout[..split].to_vec(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http3_answers_are_the_http1_bytes_from_the_same_cache() {
    let _serial = SERIAL.lock().await;
    let origin = Origin::start(&origin_config());
    let edge = Edge::start_tls(&[&origin.http.to_string()], "");
    let playlist = live_playlist(&edge).await;
    let (blocking, part) = next_objects(&playlist);
    let master = "/live/demo/master.m3u8".to_string();
    let paths = [master.clone(), blocking.clone(), part.clone()];
    let before: Vec<f64> = origin_counts(&origin, &["master", "blocking_playlist", "part"]).await;

    // HTTP/3 first: the blocking playlist and the hinted part wait at the edge for the origin.
    let over_h3 = h3_get(&edge, 1, &paths).await;
    assert_eq!(over_h3.len(), 3);
    let by_url: BTreeMap<&str, &H3Response> = over_h3.iter().map(|r| (r.url.as_str(), r)).collect();
    for path in &paths {
        let r = by_url[https(&edge, path).as_str()];
        assert_eq!(r.alpn, "h3");
        assert_eq!(r.status, Some(200), "{path} over h3: {r:?}\n{}", edge.log());
        assert!(r.header("age").is_some(), "{path}: Age over h3");
        assert!(
            matches!(r.header("x-cache"), Some("miss" | "coalesced")),
            "{path}: fetched for this h3 request: {:?}",
            r.header("x-cache")
        );
        assert_eq!(r.header("alt-svc"), None, "no Alt-Svc over h3 itself");

        // The same object over HTTP/1.1: a hit on the copy the h3 request fetched.
        let plain = edge.get(path).await;
        assert_eq!(plain.status, 200);
        assert!(
            plain.body == r.body,
            "{path}: the same bytes over h3 and h1"
        );
        assert_eq!(plain.header("x-cache"), Some("hit"), "{path}: one cache");
        let port = edge.tls.expect("tls").port();
        assert_eq!(
            plain.header("alt-svc"),
            Some(format!("h3=\":{port}\"; ma=86400").as_str()),
            "TCP answers advertise h3"
        );
    }
    let after = origin_counts(&origin, &["master", "blocking_playlist", "part"]).await;
    let asked: Vec<f64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert_eq!(asked, vec![1.0, 1.0, 1.0], "one origin request per object");

    let listed = MediaPlaylist::parse(
        std::str::from_utf8(&by_url[https(&edge, &blocking).as_str()].body).expect("utf-8"),
    )
    .expect("an h3 playlist parses");
    let hint = playlist.preload_hint.expect("hint");
    assert!(
        listed
            .segments
            .iter()
            .flat_map(|s| &s.parts)
            .any(|p| p.uri == hint),
        "the blocking playlist over h3 lists the part it waited for"
    );
    assert!(
        edge.metric(r#"corral_edge_protocol_requests_total{protocol="h3"}"#)
            .await
            >= 3.0
    );
    assert!(
        edge.metric(r#"corral_edge_protocol_bytes_out_total{protocol="h3"}"#)
            .await
            > 0.0
    );
    assert!(
        edge.metric(r#"corral_edge_requests_total{cache="hit",kind="part",status="200"}"#)
            .await
            >= 1.0
    );
}

/// The origin's request counts for `kinds`.
async fn origin_counts(origin: &Origin, kinds: &[&str]) -> Vec<f64> {
    let text = origin.metrics_text().await;
    kinds
        .iter()
        .map(|k| {
            metric_sum(
                &text,
                &format!("corral_origin_http_requests_total{{kind=\"{k}\""),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_herd_of_h3_h2_and_h1_players_costs_the_origin_one_request_per_object() {
    let _serial = SERIAL.lock().await;
    let origin = Origin::start(&origin_config());
    let edge = Arc::new(Edge::start_tls(&[&origin.http.to_string()], ""));
    let playlist = live_playlist(&edge).await;
    let ca = edge.ca.clone().expect("tls");
    let authority = edge.tls.expect("tls").to_string();
    const H3: usize = 100;
    const H1: usize = 100;
    const H2: usize = 10;
    let mut h3_herd = tokio::task::spawn_blocking({
        let ca = ca.clone();
        move || H3Herd::connect(&ca, &authority, H3, &[])
    })
    .await
    .expect("h3 connections");
    assert_eq!((h3_herd.ready, h3_herd.failed), (H3, 0));

    // Wait for a segment to start: the blocking playlist that will list the first part of
    // the next one, and the segment now being written (held by the origin until complete),
    // are then a whole segment away, time enough for every player to ask before they exist.
    let hint = playlist.preload_hint.clone().expect("a hinted part");
    let (msn, _) = MediaPlaylist::part_position(&hint).expect("msn.part.m4s");
    let started = edge
        .get(&format!("{PLAYLIST}?_HLS_msn={}&_HLS_part=0", msn + 1))
        .await;
    assert_eq!(started.status, 200);
    let blocking = format!("{PLAYLIST}?_HLS_msn={}&_HLS_part=0", msn + 2);
    let segment = format!("/live/demo/360p/{}.m4s", msn + 1);
    let before = origin_counts(&origin, &["blocking_playlist", "segment"]).await;

    let paths = [blocking.clone(), segment.clone()];
    h3_herd.send(&paths.iter().map(|p| https(&edge, p)).collect::<Vec<_>>());
    let mut h1 = tokio::task::JoinSet::new();
    for i in 0..H1 {
        let edge = edge.clone();
        let path = paths[i % 2].clone();
        h1.spawn(async move { (path.clone(), edge.get(&path).await) });
    }
    let h2: Vec<_> = (0..H2)
        .map(|i| {
            let (ca, url) = (ca.clone(), https(&edge, &paths[i % 2]));
            let path = paths[i % 2].clone();
            tokio::task::spawn_blocking(move || (path, curl_h2(&ca, &url)))
        })
        .collect();
    let h3_answers = tokio::task::spawn_blocking(move || h3_herd.responses(2 * H3))
        .await
        .expect("h3 answers");

    let waited = h3_answers
        .iter()
        .filter(|r| matches!(r.header("x-cache"), Some("coalesced" | "miss")))
        .count();
    assert!(
        waited >= H3,
        "the h3 players asked before the objects existed and waited on the one fetch ({waited} of {})",
        2 * H3
    );
    let mut bodies: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for r in &h3_answers {
        assert_eq!(r.status, Some(200), "h3 {}: {r:?}", r.url);
        let path = r.url.trim_start_matches(&https(&edge, "")).to_string();
        bodies.entry(path).or_default().push(r.body.clone());
    }
    while let Some(done) = h1.join_next().await {
        let (path, r) = done.expect("an h1 player");
        assert_eq!(r.status, 200, "h1 {path}");
        bodies.entry(path).or_default().push(r.body.to_vec());
    }
    for task in h2 {
        let (path, (status, body)) = task.await.expect("an h2 player");
        assert_eq!(status, 200, "h2 {path}");
        bodies.entry(path).or_default().push(body);
    }
    for (path, copies) in &bodies {
        assert_eq!(
            copies.len(),
            H3 + (H1 + H2) / 2,
            "{path}: every player answered"
        );
        assert!(
            copies.iter().all(|b| b == &copies[0]),
            "{path}: the same bytes over every protocol"
        );
    }
    let after = origin_counts(&origin, &["blocking_playlist", "segment"]).await;
    assert_eq!(
        (after[0] - before[0], after[1] - before[1]),
        (1.0, 1.0),
        "{} players over h3, h2 and h1 cost one origin request per object",
        H3 * 2 + H1 + H2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_urls_are_checked_over_h3_before_any_cache_work() {
    let _serial = SERIAL.lock().await;
    let origin = Origin::start(&origin_config());
    let key = "an-edge-signing-key-for-tests";
    let edge = Edge::start_tls(
        &[&origin.http.to_string()],
        &format!("signing: {{ key: {key} }}\n"),
    );
    let master = "/live/demo/master.m3u8";
    let exp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 600;
    let signed = signed_url::Key::new(key.as_bytes())
        .expect("key")
        .sign(master, exp)
        .expect("a scope");
    let forged = signed.replace("sig=", "sig=00");
    let before = origin_requests(&origin, "master").await;
    let answers = h3_get(
        &edge,
        1,
        &[
            master.to_string(),
            format!("{master}?{forged}"),
            format!("{master}?{signed}"),
        ],
    )
    .await;
    let status: BTreeMap<String, Option<u16>> = answers
        .iter()
        .map(|r| {
            (
                r.url.rsplit('/').next().unwrap_or_default().to_string(),
                r.status,
            )
        })
        .collect();
    assert_eq!(status["master.m3u8"], Some(403), "unsigned");
    assert_eq!(
        status[&format!("master.m3u8?{forged}")],
        Some(403),
        "forged"
    );
    assert_eq!(
        status[&format!("master.m3u8?{signed}")],
        Some(200),
        "signed"
    );
    let admitted = answers
        .iter()
        .find(|r| r.status == Some(200))
        .expect("the signed answer");
    let text = String::from_utf8_lossy(&admitted.body);
    assert!(
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .all(|uri| uri.ends_with(&signed)),
        "the signature is handed on to the playlist's URIs over h3:\n{text}"
    );
    assert_eq!(
        origin_requests(&origin, "master").await - before,
        1.0,
        "refused requests never reach the origin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_quic_traffic_is_bounded_and_other_players_are_unaffected() {
    let _serial = SERIAL.lock().await;
    let origin = Origin::start(&origin_config());
    let mut edge = Edge::start_tls(
        &[&origin.http.to_string()],
        "http3: { max_connections: 40, header_timeout: 1.0 }\n",
    );
    let playlist = live_playlist(&edge).await;
    let segment = format!("/live/demo/360p/{}.m4s", playlist.segments[0].msn);
    assert_eq!(edge.get(&segment).await.status, 200);
    let rss_before = edge.rss_kb();
    let udp = edge.tls.expect("tls");

    // Random datagrams: none of them is a QUIC packet quinn would keep state for.
    let senders: Vec<std::net::UdpSocket> = (0..4)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").expect("a socket"))
        .collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for i in 0..20_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = 1 + (seed % 1400) as usize;
        let datagram: Vec<u8> = (0..len).map(|j| (seed >> (j % 56)) as u8).collect();
        let _ = senders[i % 4].send_to(&datagram, udp);
    }

    // A connection flood over the limit, each admitted connection with 20 request streams that
    // are opened and never finished; they stay open until told to close.
    let ca = edge.ca.clone().expect("tls");
    let mut flood = tokio::task::spawn_blocking({
        let ca = ca.clone();
        move || {
            H3Herd::connect(
                &ca,
                &udp.to_string(),
                60,
                &["--hold", "--half-open", "20", "--timeout", "10"],
            )
        }
    })
    .await
    .expect("the flood");
    assert!(
        flood.ready <= 40 && flood.failed >= 20,
        "{} connections admitted, {} refused, with a limit of 40",
        flood.ready,
        flood.failed
    );
    assert!(
        edge.metric(r#"corral_edge_connections_refused_total{protocol="h3"}"#)
            .await
            >= 20.0
    );
    // The admitted connections still work, past their half-open streams.
    let urls = vec![https(&edge, &segment)];
    let ready = flood.ready;
    flood.send(&urls);
    let (flood, answers) = tokio::task::spawn_blocking(move || {
        let answers = flood.responses(ready);
        (flood, answers)
    })
    .await
    .expect("flood answers");
    assert!(answers.iter().all(|r| r.status == Some(200)));

    // Meanwhile a player on TCP is served as usual.
    for _ in 0..10 {
        let r = edge.get(&segment).await;
        assert_eq!(r.status, 200);
        assert!(r.elapsed < Duration::from_secs(1), "{:?}", r.elapsed);
    }
    assert!(edge.running());
    let grown_kb = edge.rss_kb().saturating_sub(rss_before);
    assert!(
        grown_kb < 64 << 10,
        "{grown_kb} kB more for 40 connections with 800 half-open streams"
    );

    // Once the flood goes, new HTTP/3 players are admitted again.
    tokio::task::spawn_blocking(move || flood.finish())
        .await
        .expect("the flood closes");
    let deadline = Instant::now() + Duration::from_secs(10);
    while edge
        .metric(r#"corral_edge_connections_open{protocol="h3"}"#)
        .await
        >= 40.0
    {
        assert!(
            Instant::now() < deadline,
            "closed connections never freed their places"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = h3_get(&edge, 1, std::slice::from_ref(&segment)).await;
    assert_eq!(after[0].status, Some(200));
    assert!(edge.log().contains("connection limit reached"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_fetches_a_playlist_and_a_part_over_http3() {
    let _serial = SERIAL.lock().await;
    let origin = Origin::start(&origin_config());
    let edge = Edge::start_tls(&[&origin.http.to_string()], "");
    let playlist = live_playlist(&edge).await;
    let part = playlist
        .segments
        .iter()
        .flat_map(|s| &s.parts)
        .last()
        .expect("a listed part")
        .uri
        .clone();
    let paths = [PLAYLIST.to_string(), format!("/live/demo/360p/{part}")];
    let part_bytes = edge.get(&paths[1]).await.body.len();
    let ca = edge.ca.clone().expect("tls");
    let mut args: Vec<std::ffi::OsString> = vec![https(&edge, "").into(), ca.into()];
    args.extend(paths.into_iter().map(Into::into));
    let report = corral_e2e::browser_script_report("h3_fetch.js", args).await;
    assert_eq!(report["navigation"]["protocol"], "h3", "{report}");
    let fetches = report["fetches"].as_array().expect("fetches");
    assert_eq!(fetches.len(), 2);
    for f in fetches {
        assert_eq!(f["status"], 200, "{f}");
        assert_eq!(f["protocol"], "h3", "resource timing says h3: {f}");
    }
    assert_eq!(
        fetches[1]["bytes"].as_u64(),
        Some(part_bytes as u64),
        "the whole part"
    );
    assert!(
        edge.metric(r#"corral_edge_protocol_requests_total{protocol="h3"}"#)
            .await
            >= 3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_edge_finishes_the_http3_requests_it_holds() {
    let _serial = SERIAL.lock().await;
    let origin = Origin::start(&origin_config());
    let mut edge = Edge::start_tls(&[&origin.http.to_string()], "shutdown_grace: 4\n");
    let playlist = live_playlist(&edge).await;
    let ca = edge.ca.clone().expect("tls");
    let authority = edge.tls.expect("tls").to_string();
    let mut client = tokio::task::spawn_blocking(move || H3Herd::connect(&ca, &authority, 1, &[]))
        .await
        .expect("an h3 connection");
    // A blocking playlist for the first part of the next segment: held at the origin.
    let hint = playlist.preload_hint.clone().expect("a hinted part");
    let (msn, _) = MediaPlaylist::part_position(&hint).expect("msn.part.m4s");
    client.send(&[https(
        &edge,
        &format!("{PLAYLIST}?_HLS_msn={}&_HLS_part=0", msn + 1),
    )]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric_sum(
        &origin.metrics_text().await,
        "corral_origin_blocked_requests",
    ) < 1.0
    {
        assert!(
            Instant::now() < deadline,
            "the request never reached the origin"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    edge.terminate();
    let answer = tokio::task::spawn_blocking(move || client.responses(1))
        .await
        .expect("the held answer");
    assert_eq!(
        answer[0].status,
        Some(200),
        "a held request is answered, not reset, when the edge stops: {:?}",
        answer[0]
    );
    let status = tokio::task::spawn_blocking(move || {
        let status = edge.wait_exit(Duration::from_secs(15));
        (status, edge)
    })
    .await
    .expect("the edge stops");
    assert!(
        status.0.is_some_and(|s| s.success()),
        "the edge stopped cleanly: {:?}\n{}",
        status.0,
        status.1.log()
    );
}
