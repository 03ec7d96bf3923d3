//! The catalog, lifecycle events, ad breaks and news flashes end to end: an 8 s broadcast
//! archived as the ad, the catalog through the edge (title, thumbnail, viewers from the chat
//! relay), the events a notification client reads, and a browser watching while the operator
//! inserts an ad break and a flash, which every rendition lists at the same date, hls.js plays
//! and the chat shows.

use std::path::Path;
use std::time::{Duration, Instant};

use corral_e2e::edge::{Edge, live_playlist_of};
use corral_e2e::{Origin, SERIAL, web_root};
use corral_loadtest::playlist::MediaPlaylist;

fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

/// Reads server-sent events from the origin's `/api/events` (a raw HTTP/1.1 stream) until
/// `done` holds for the text so far, or `limit` passes; the text.
async fn read_events(
    addr: std::net::SocketAddr,
    limit: Duration,
    done: impl Fn(&str) -> bool,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(b"GET /api/events HTTP/1.1\r\nHost: origin\r\nLast-Event-ID: 0\r\n\r\n")
        .await
        .expect("write");
    let deadline = tokio::time::Instant::now() + limit;
    let mut text = String::new();
    let mut buf = vec![0u8; 8192];
    while !done(&text) {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            _ => break,
        }
    }
    text
}

/// The `EXT-X-DATERANGE` line with `id` in `playlist`, if any.
fn daterange<'a>(playlist: &'a str, id: &str) -> Option<&'a str> {
    playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-DATERANGE:") && l.contains(&format!("ID=\"{id}\"")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ad_breaks_and_news_flashes_reach_every_rendition_the_player_and_the_chat() {
    let _serial = SERIAL.lock().await;
    let chat_port = corral_e2e::free_port();
    let chat = corral_e2e::chat::ChatRelay::start_on(chat_port, "viewers_interval: 1.0\n");
    // `demo` is live; `ads` is an 8 s broadcast whose VOD is the ad.
    let origin = Origin::start_with_http(
        "  admin_token: test-admin-token\n",
        &format!(
            "transcoder:
  x264_preset: ultrafast
  ladder:
    - {{ name: 180p, width: 320, height: 180, bitrate: 300k }}
  audio: {{ name: audio, bitrate: 64k }}
chat: {{ url: \"http://127.0.0.1:{chat_port}\", admin_token: dev-admin-token }}
streams:
  - {{ name: demo, source: testsrc, testsrc: {{ width: 320, height: 180 }} }}
  - {{ name: ads, source: testsrc, testsrc: {{ width: 320, height: 180, duration: 8, tone_hz: 440 }} }}
"
        ),
    );
    let edge = Edge::start(
        &[&origin.http.to_string()],
        &format!(
            "web:\n  root: {}\n  chat_url: http://127.0.0.1:{chat_port}\n",
            web_root().display()
        ),
    );
    live_playlist_of(&edge, "/live/demo/180p/index.m3u8").await;
    let api = |method: &'static str, path: &str, auth: bool, body: serde_json::Value| {
        let url = format!("http://{}{path}", origin.http);
        async move {
            corral_e2e::curl_json(method, &url, auth.then_some("test-admin-token"), Some(body))
                .await
        }
    };

    // The lifecycle of `ads`, as a notification client sees it.
    let events = read_events(origin.http, Duration::from_secs(60), |t| {
        t.contains("event: ARCHIVED")
    })
    .await;
    let order: Vec<&str> = events
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| d.contains("\"stream\":\"ads\""))
        .filter_map(|d| d.split("\"type\":\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(order, ["PENDING", "LIVE", "ENDED", "ARCHIVED"], "{events}");
    let ended = events
        .lines()
        .find(|l| l.contains("\"type\":\"ENDED\"") && l.contains("\"stream\":\"ads\""))
        .expect("ENDED");
    assert!(
        ended.contains("\"session\":\""),
        "ENDED names the session: {ended}"
    );
    let catalog: serde_json::Value =
        serde_json::from_slice(&origin.get("/api/streams?state=ended", &[]).await.body)
            .expect("JSON");
    let ad_master = catalog["sessions"][0]["master"]
        .as_str()
        .unwrap_or_else(|| panic!("a past broadcast: {catalog:#}"))
        .to_string();
    assert_eq!(
        catalog["streams"].as_array().map(Vec::len),
        Some(1),
        "ads ended: {catalog:#}"
    );

    // The operator titles the live stream; the catalog finds it, with a thumbnail and viewers.
    let mut viewer = chat.connect("demo", None).await;
    let meta = serde_json::json!({"name": "demo", "title": "Cup final", "description": "Live from the stadium"});
    let (status, created) = api("POST", "/api/streams", true, meta).await;
    assert_eq!(status, 201, "{created}");
    let (status, _) = api(
        "PATCH",
        "/api/streams/demo",
        false,
        serde_json::json!({"title": "x"}),
    )
    .await;
    assert_eq!(status, 401, "the admin API needs the token");
    let (status, _) = api(
        "PATCH",
        "/api/streams/demo",
        true,
        serde_json::json!({"title": "x".repeat(300)}),
    )
    .await;
    assert_eq!(status, 400, "a title too long is refused");
    let deadline = Instant::now() + Duration::from_secs(30);
    let entry = loop {
        let r = edge.get("/api/streams?state=live&q=CUP&sort=viewers").await;
        let list: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
        let entry = list["streams"][0].clone();
        if entry["thumbnail"].is_string() && entry["viewers"].as_u64().is_some_and(|v| v >= 1) {
            break entry;
        }
        assert!(
            Instant::now() < deadline,
            "no thumbnail or viewers: {list:#}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(entry["name"], "demo");
    assert_eq!(entry["title"], "Cup final");
    assert_eq!(entry["phase"], "live");
    assert!(
        entry["started"].is_string() && entry["session"].is_string(),
        "{entry:#}"
    );
    let thumb = edge.get(entry["thumbnail"].as_str().expect("url")).await;
    assert_eq!(thumb.status, 200);
    assert_eq!(&thumb.body[..2], &[0xFF, 0xD8], "a JPEG");
    let none: serde_json::Value =
        serde_json::from_slice(&edge.get("/api/streams?q=nothing-like-it").await.body)
            .expect("JSON");
    assert_eq!(none["streams"], serde_json::json!([]));

    // A browser watches while the operator inserts an ad break (the `ads` VOD) and a flash.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/watch.js");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts/cues");
    let mut browser = std::process::Command::new("node")
        .arg(script)
        .args(["cues", &format!("http://{}", edge.http), "45"])
        .arg(&out)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("node runs");
    let stdout = browser.stdout.take().expect("stdout");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let first = tokio::task::block_in_place(|| lines.next())
        .expect("a line")
        .expect("utf-8");
    assert!(first.contains("playing"), "{first}");

    let (status, ad) = api(
        "POST",
        "/api/streams/demo/cues",
        true,
        serde_json::json!({"kind": "ad", "duration": 8, "asset": ad_master}),
    )
    .await;
    assert_eq!(status, 201, "{ad}");
    let (status, flash) = api(
        "POST",
        "/api/streams/demo/cues",
        true,
        serde_json::json!({"kind": "flash", "duration": 10, "text": "Kick-off moved to 21:00"}),
    )
    .await;
    assert_eq!(status, 201, "{flash}");
    assert_eq!(flash["chat"], true, "posted to the chat: {flash:#}");

    // The chat shows the flash.
    let announcement = viewer.expect("announcement").await;
    assert_eq!(announcement["text"], "Kick-off moved to 21:00");

    // Every rendition lists both, at the same program date-time, which is a segment's start.
    let ad_id = ad["id"].as_str().expect("id");
    let start = ad["start"].as_str().expect("start").to_string();
    for rendition in ["180p", "audio"] {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let body = text(
                &origin
                    .get(&format!("/live/demo/{rendition}/index.m3u8"), &[])
                    .await
                    .body,
            );
            let tag =
                daterange(&body, ad_id).unwrap_or_else(|| panic!("{rendition}: no ad\n{body}"));
            assert!(tag.contains(&format!("START-DATE=\"{start}\"")), "{tag}");
            assert!(
                tag.contains("CLASS=\"com.apple.hls.interstitial\""),
                "{tag}"
            );
            assert!(
                tag.contains(&format!("X-ASSET-URI=\"{ad_master}\"")),
                "{tag}"
            );
            assert!(
                tag.contains("SCTE35-OUT=0xFC") && tag.contains("SCTE35-IN=0xFC"),
                "{tag}"
            );
            let flash_tag = daterange(&body, flash["id"].as_str().expect("id"))
                .unwrap_or_else(|| panic!("{rendition}: no flash\n{body}"));
            assert!(
                flash_tag.contains("X-TEXT=\"Kick-off moved to 21:00\""),
                "{flash_tag}"
            );
            // A segment starts there (audio's first whole frame may be a few ms later).
            let p = MediaPlaylist::parse(&body).expect("a playlist");
            let at = humantime::parse_rfc3339(&start).expect("a date");
            let starts_there = p
                .segments
                .iter()
                .filter_map(|s| s.program_date_time)
                .any(|t| {
                    t.duration_since(at).unwrap_or_else(|e| e.duration())
                        < Duration::from_millis(50)
                });
            if starts_there {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{rendition}: no segment starts at {start}\n{body}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let dvr = text(
            &origin
                .get(&format!("/live/demo/{rendition}/dvr.m3u8"), &[])
                .await
                .body,
        );
        assert!(
            daterange(&dvr, ad_id).is_some(),
            "the DVR playlist has it too\n{dvr}"
        );
    }

    // The browser played the ad and showed the flash, then went on with the stream.
    let rest: Vec<String> = tokio::task::block_in_place(|| lines.map_while(Result::ok).collect());
    let _ = browser.wait();
    let report: serde_json::Value =
        serde_json::from_str(rest.last().expect("a report")).expect("JSON");
    assert_eq!(report["failures"], serde_json::json!([]), "{report:#}");
    let seen: Vec<&str> = report["ads"]
        .as_array()
        .expect("ads")
        .iter()
        .filter_map(|a| a["event"].as_str())
        .collect();
    for event in ["started", "asset-started", "asset-ended", "ended"] {
        assert!(seen.contains(&event), "{event}: {report:#}");
    }
    assert_eq!(report["adBadgeShown"], true, "{report:#}");
    assert_eq!(
        report["flashShown"], "Kick-off moved to 21:00",
        "{report:#}"
    );
    assert_eq!(report["playingAtEnd"], true, "{report:#}");
    let vod_requests = corral_e2e::edge::origin_requests(&origin, "vod").await;
    assert!(
        vod_requests >= 3.0,
        "the ad's playlists and segments came from the archive"
    );
}
