//! Stock players through the edge, as a site embedding one would use them: hls.js with its
//! defaults plus `lowLatencyMode`, and Shaka Player (the 4.16 line) with its defaults plus
//! `streaming.lowLatencyMode`, each in Debian's chromium (tests/browser/stock.js) on a blank
//! page of the edge's origin, over HTTP/1.1, HTTP/2 and HTTP/3. Nothing of the watch page is
//! involved: what these players do with the playlists and parts is what viewers get.
//!
//! The origin cuts 0.2 s parts, as `make run` does (conf/local.yaml): the closest stock players
//! sit to the live edge, and the hardest for them to keep up with.
//!
//! Each run watches for a minute and must see no stall (the picture standing still for more
//! than 300 ms), no hole in what the player buffered, the top rung played from early on to the
//! end, and its requests over the protocol asked for. Latency is reported (glass-to-glass by
//! program date-time) and only bounded loosely here: BENCHMARKS.md measures it on release
//! builds.

use std::ffi::OsString;
use std::path::PathBuf;

use corral_e2e::edge::{Edge, live_playlist, origin_config};
use corral_e2e::{Origin, SERIAL, browser_script_report};
use serde_json::Value;

/// How long each player watches.
const WATCH_SECONDS: u32 = 60;

/// The second by which the top rung must be playing (and then to the end).
const TOP_BY_SECOND: u64 = 15;

/// Runs tests/browser/stock.js; its JSON report.
async fn watch(player: &str, master: String, cert: Option<PathBuf>) -> Value {
    let mut args: Vec<OsString> = vec![
        player.into(),
        master.into(),
        WATCH_SECONDS.to_string().into(),
    ];
    args.extend(cert.map(OsString::from));
    browser_script_report("stock.js", args).await
}

/// What a viewer must have seen; `protocol` is resource timing's name for the protocol
/// (`http/1.1`, `h2`, `h3`).
fn check(report: &Value, protocol: &str) {
    let player = report["player"].as_str().unwrap_or("?");
    eprintln!("{player} over {protocol}: {report}");
    let fatal: Vec<&Value> = report["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter(|e| {
            e.as_str()
                .is_some_and(|e| e.contains("fatal") || e.contains("page error"))
        })
        .collect();
    assert!(fatal.is_empty(), "{player} over {protocol}: {fatal:?}");
    assert!(
        report["startupMs"].as_u64().is_some(),
        "{player} over {protocol} never played: {report}"
    );
    assert_eq!(
        report["stalls"], 0,
        "{player} over {protocol}: the picture stood still (longest {} ms)",
        report["longestStallMs"]
    );
    // One range from where playback began: a player that fetched a part but never appended it
    // (or skipped one) leaves a hole, which it then jumps or stalls on.
    let buffered = report["bufferedAtEnd"].as_str().unwrap_or("");
    assert!(
        !buffered.is_empty() && !buffered.contains(' '),
        "{player} over {protocol}: holes in the buffer: {buffered}"
    );
    let top = report["topHeight"]
        .as_u64()
        .expect("the renditions offered");
    assert_eq!(top, 360, "the test ladder's top rung is 360p");
    let from = report["topFromS"].as_u64();
    assert!(
        from.is_some_and(|s| s <= TOP_BY_SECOND),
        "{player} over {protocol}: the top rung from second {from:?} (by {TOP_BY_SECOND} s and to the end): {}",
        report["perSecond"]
    );
    // Requests a player abandoned before an answer name no protocol ("unknown").
    let protocols = report["protocols"].as_object().expect("protocols");
    let answered: u64 = protocols
        .iter()
        .filter(|(p, _)| p.as_str() != "unknown")
        .filter_map(|(_, n)| n.as_u64())
        .sum();
    let ours = protocols.get(protocol).and_then(Value::as_u64).unwrap_or(0);
    assert!(
        answered > 0 && ours == answered,
        "{player}: every request over {protocol}: {protocols:?}"
    );
    // hls.js dates the frame on screen from the program date-times; Shaka's own date of the
    // playhead is not (it can even lie ahead of now), so only hls.js's is bounded.
    if player == "hlsjs" {
        let g2g = report["glassToGlass"]["p50"]
            .as_f64()
            .expect("glass-to-glass");
        assert!(
            (0.2..4.0).contains(&g2g),
            "{player} over {protocol}: glass-to-glass p50 {g2g} s"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stock_players_play_without_a_stall_at_the_top_rung() {
    let _serial = SERIAL.lock().await;
    let origin = Origin::start(&format!("{}llhls:\n  part_target: 0.2\n", origin_config()));
    let edge = Edge::start_tls(&[&origin.http.to_string()], "");
    live_playlist(&edge).await;
    let tls = edge.tls.expect("tls");
    let cert = edge.ca.clone().expect("the edge's certificate");
    let path = "/live/demo/master.m3u8";

    let runs = [
        (
            "hlsjs",
            format!("http://{}{path}", edge.http),
            None,
            "http/1.1",
        ),
        ("hlsjs", format!("https://{tls}{path}"), None, "h2"),
        ("hlsjs", format!("https://{tls}{path}"), Some(cert), "h3"),
        ("shaka", format!("https://{tls}{path}"), None, "h2"),
    ];
    let mut reports = Vec::new();
    for (player, url, cert, protocol) in runs {
        reports.push((watch(player, url, cert).await, protocol));
    }
    for (report, protocol) in &reports {
        check(report, protocol);
    }
}
