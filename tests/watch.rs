//! The watch page in a real browser (Debian's chromium, driven by playwright-core): the whole
//! path from the test source through the origin and the edge to hls.js, and the chat beside
//! it. tests/browser/watch.js does what a viewer does and reports what it saw; these tests
//! start the stack, run it once over the edge's HTTP/1.1 listener and once over its HTTPS
//! listener (HTTP/2), and check the report. Screenshots are kept under
//! target/test-artifacts/watch/.

use std::path::{Path, PathBuf};

use corral_e2e::chat::ChatRelay;
use corral_e2e::edge::{Edge, live_playlist, origin_config};
use corral_e2e::{Origin, SERIAL, web_root};
use serde_json::Value;

const ADMIN: &str = "dev-admin-token";

fn artifacts(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/test-artifacts/watch")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The origin, the edge (with TLS) serving the page with the relay's URL, and the relay
/// allowing the page's two origins and guest sign-in.
struct Stack {
    _origin: Origin,
    edge: Edge,
    chat: ChatRelay,
}

async fn stack() -> Stack {
    let origin = Origin::start(&origin_config());
    // Reserve the relay's address first: the edge's config names it.
    let chat_port = corral_e2e::free_port();
    let edge = Edge::start_tls(
        &[&origin.http.to_string()],
        &format!(
            "web:\n  root: {}\n  chat_url: http://127.0.0.1:{chat_port}\n",
            web_root().display()
        ),
    );
    let cors = format!(
        "cors_origins: [\"http://{}\", \"https://{}\"]\n",
        edge.http,
        edge.tls.expect("tls")
    );
    let chat = ChatRelay::start_on(
        chat_port,
        &format!(
            "{cors}guests: {{ enabled: true }}\nviewers_interval: 1.0\nreaction_window_ms: 200\n"
        ),
    );
    live_playlist(&edge).await;
    Stack {
        _origin: origin,
        edge,
        chat,
    }
}

/// Runs the page's end-to-end script against `base`; its JSON report.
async fn drive(base: String, chat: String, out: PathBuf) -> Value {
    corral_e2e::browser_report(vec![
        "e2e".into(),
        base.into(),
        chat.into(),
        ADMIN.into(),
        out.into(),
    ])
    .await
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// What a viewer must have seen.
fn check(report: &Value, protocol: &str) {
    let failures = report["failures"].as_array().expect("failures");
    assert!(failures.is_empty(), "{failures:#?}\n{report:#}");
    assert_eq!(report["listed"], true, "the stream list shows demo");
    assert_eq!(
        report["protocol"], protocol,
        "the page came over {protocol}"
    );
    assert_eq!(
        report["playerOnList"], false,
        "the list page shows no player"
    );
    assert_eq!(
        report["bannerAtStart"], false,
        "no empty announcement banner"
    );

    let startup = num(&report["startupMs"]);
    assert!(startup <= 3000.0, "playback started in {startup} ms");

    let playback = &report["playback"];
    let advanced = num(&playback["advanced"]);
    assert!(
        advanced >= 18.0,
        "currentTime advanced {advanced} s in 20 s: {playback:#}"
    );
    assert_eq!(
        playback["stalls"], 0,
        "no stall while playing: {playback:#}"
    );
    assert_eq!(
        playback["stuckSeconds"], 0,
        "the picture moved every second: {playback:#}"
    );
    let frames = num(&playback["framesDecoded"]);
    assert!(frames >= 18.0 * 25.0, "{frames} frames decoded in 20 s");

    let levels = report["levels"].as_array().expect("levels");
    let switches = report["switches"].as_array().expect("switches");
    assert_eq!(levels.len(), 2, "the test ladder's two renditions");
    assert_eq!(switches.len(), levels.len());
    for s in switches {
        assert_eq!(s["videoHeight"], s["height"], "{s}");
        assert!(num(&s["advanced"]) >= 2.0, "plays after the switch: {s}");
        assert!(
            num(&s["framesDecoded"]) >= 40.0,
            "frames after the switch: {s}"
        );
    }

    let chat = &report["chat"];
    assert_eq!(chat["from"], "alice", "{chat:#}");
    assert_eq!(chat["emote"], 1, "the emote is rendered: {chat:#}");
    assert!(num(&chat["viewers"]) >= 2.0, "{chat:#}");
    assert!(
        num(&chat["reactionsSeen"]) >= 3.0 && num(&chat["burst"]) >= 1.0,
        "{chat:#}"
    );
    assert_eq!(
        num(&chat["followersAfter"]),
        num(&chat["followersBefore"]) + 1.0,
        "the follower count moves at once: {chat:#}"
    );
    assert_eq!(chat["subscribed"], "Subscribed (tier 1)");
    assert_eq!(chat["announcement"], true);
    assert!(chat["banNotice"].as_str().unwrap_or("").contains("banned"));
    assert_eq!(chat["banDisabled"], true, "a banned viewer cannot send");

    let layout = &report["layout"];
    assert_eq!(layout["tv"]["chatBeside"], true, "{layout:#}");
    assert_eq!(layout["phone"]["chatBelow"], true, "{layout:#}");
    for size in ["tv", "phone"] {
        assert_eq!(layout[size]["overflowX"], false, "{size}: {layout:#}");
    }

    // The latency probe: hls.js's latency and now − the PDT of the frame on screen.
    for key in ["latency", "glassToGlass"] {
        let p50 = num(&report[key]["p50"]);
        assert!(p50 > 0.0 && p50 < 5.0, "{key} p50 {p50} s: {report:#}");
    }
    for shot in report["screenshots"].as_array().expect("screenshots") {
        let path = shot.as_str().expect("a path");
        let bytes = std::fs::read(path).expect("the screenshot");
        assert!(bytes.starts_with(b"\x89PNG"), "{path}");
    }
    eprintln!(
        "watch over {protocol}: startup {startup} ms, latency p50 {} s, glass-to-glass p50 {} s, chat delivered in {} ms, screenshots {}",
        report["latency"]["p50"],
        report["glassToGlass"]["p50"],
        chat["deliveredMs"],
        report["screenshots"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_page_plays_and_chats_over_http1() {
    let _serial = SERIAL.lock().await;
    let stack = stack().await;
    let report = drive(
        format!("http://{}", stack.edge.http),
        format!("http://{}", stack.chat.http),
        artifacts("http1"),
    )
    .await;
    check(&report, "http/1.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_page_plays_and_chats_over_https_h2() {
    let _serial = SERIAL.lock().await;
    let stack = stack().await;
    let report = drive(
        format!("https://{}", stack.edge.tls.expect("tls")),
        format!("http://{}", stack.chat.http),
        artifacts("h2"),
    )
    .await;
    check(&report, "h2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_serves_the_page_and_its_files() {
    let origin = Origin::start("");
    let edge = Edge::start(
        &[&origin.http.to_string()],
        &format!(
            "web:\n  root: {}\n  chat_url: \"https://chat.example/\\\"><x>\"\n",
            web_root().display()
        ),
    );
    let page = edge.get("/watch/demo").await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    let html = String::from_utf8_lossy(&page.body);
    assert!(
        html.contains(r#"content="https://chat.example/&quot;&gt;&lt;x&gt;""#),
        "the relay's URL, escaped: {html}"
    );
    assert_eq!(edge.get("/").await.body, page.body);
    for (path, kind) in [
        ("/assets/watch.js", "text/javascript"),
        ("/assets/watch.css", "text/css"),
        ("/assets/hls.min.js", "text/javascript"),
    ] {
        let r = edge.get(path).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.header("content-type")
                .unwrap_or_default()
                .starts_with(kind),
            "{path}"
        );
        let etag = r.header("etag").expect("an etag");
        let again = edge
            .client
            .get(&edge.url(path), &[("if-none-match", etag)])
            .await
            .expect("revalidates");
        assert_eq!(again.status, 304, "{path}");
        assert!(again.body.is_empty());
    }
    // Other paths still go to the origin, and stream names are checked.
    assert_eq!(edge.get("/watch/a/b").await.status, 404);
    assert_eq!(edge.get("/healthz").await.status, 200);
    let counted = edge
        .metric("corral_edge_requests_total{cache=\"pass\",kind=\"page\",status=\"200\"}")
        .await;
    assert!(counted >= 4.0, "page requests are counted: {counted}");
}
