//! The load-test kit against a real origin and edge: the viewer swarm (over two worker
//! processes) watches without a stall or an error while the edge keeps the origin's share of
//! the requests small; `loadtest report` merges two runs; the herd mode counts one origin
//! request per object; the k6 scripts are valid JavaScript modules.

use std::path::Path;
use std::process::Output;

use corral_e2e::edge::{Edge, PLAYLIST, live_playlist, origin_config};
use corral_e2e::{Origin, SERIAL, Scratch};

async fn loadtest(args: &[&str]) -> Output {
    let out = tokio::process::Command::new(corral_e2e::binary("loadtest"))
        .args(args)
        .output()
        .await
        .expect("loadtest runs");
    assert!(
        out.status.success(),
        "loadtest {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).expect("a JSON report")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_viewer_swarm_watches_through_the_edge_and_the_herd_costs_one_request() {
    let _serial = SERIAL.lock().await;
    let origin = Origin::start(&origin_config());
    let edge = Edge::start(&[&origin.http.to_string()], "");
    live_playlist(&edge).await;
    let scratch = Scratch::new("loadtest");
    let file = scratch.0.join("viewers.json");
    let master = format!("http://{}/live/demo/master.m3u8", edge.http);
    let origin_metrics = format!("http://{}/metrics", origin.metrics);
    let edge_metrics = format!("http://{}/metrics", edge.metrics);

    let out = loadtest(&[
        "viewers",
        &master,
        "-n",
        "40",
        "--duration",
        "12s",
        "--ramp-up",
        "2s",
        "--workers",
        "2",
        "--source-addrs",
        "127.0.0.1,127.0.0.2",
        "--origin-metrics",
        &origin_metrics,
        "--edge-metrics",
        &edge_metrics,
        "--json",
        file.to_str().expect("a UTF-8 path"),
    ])
    .await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("viewers: 40 players (40 playing)"), "{text}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("the JSON report"))
            .expect("JSON");
    assert_eq!(r["scenario"], "viewers");
    assert_eq!(r["players_started"], 40, "{text}");
    assert_eq!(r["players_playing"], 40, "{text}");
    assert_eq!(r["stalls"], 0, "{text}");
    assert_eq!(r["error_count"], 0, "{text}");
    assert_eq!(r["resyncs"], 0, "{text}");
    // Delta updates once the playlist is long enough to skip some of it.
    assert!(r["delta_updates"].as_u64() > Some(0), "{text}");
    assert_eq!(r["delta_misses"], 0, "{text}");
    // Video and audio, each a part about every third of a second, for about 13 s.
    let parts = r["by_kind"]["part"]["requests"].as_u64().expect("parts");
    assert!(parts > 40 * 2 * 30, "{text}");
    // Part lag: the packager's and the edge's delay, well under a part target at p50.
    let lag = r["part_lag_us"]["p50"].as_u64().expect("part lag");
    assert!(lag > 0 && lag < 1_000_000, "{text}");
    // The edge collapses the players' requests: the origin sees a small share.
    let a = &r["amplification"];
    let per_request = a["origin_per_viewer_request"].as_f64().expect("a ratio");
    assert!(per_request < 0.15, "{text}");
    let edge_answered = a["edge_requests"].as_f64().expect("edge requests");
    let viewer_requests = a["viewer_requests"].as_f64().expect("viewer requests");
    assert!(edge_answered >= viewer_requests, "{text}");

    // Two runs' reports (say from two load machines) merge into one.
    let merged = json(
        &loadtest(&[
            "report",
            file.to_str().expect("a UTF-8 path"),
            file.to_str().expect("a UTF-8 path"),
            "--format",
            "json",
        ])
        .await,
    );
    assert_eq!(merged["players_started"], 80);
    assert_eq!(
        merged["requests"].as_u64(),
        r["requests"].as_u64().map(|n| n * 2)
    );

    // A herd of 200 players on each new object, twice: one origin request per object.
    let herd = json(
        &loadtest(&[
            "herd",
            &format!("http://{}{PLAYLIST}", edge.http),
            "-n",
            "200",
            "--rounds",
            "2",
            "--origin-metrics",
            &origin_metrics,
            "--format",
            "json",
        ])
        .await,
    );
    // The swarm's last blocking requests are answered before the first herd counts.
    assert_eq!(herd["origin_quiet"], true, "{herd}");
    let herds = herd["herds"].as_array().expect("herds");
    assert_eq!(herds.len(), 6, "{herd}");
    for h in herds {
        assert_eq!(h["ok"], 200, "{h}");
        let origin = h["origin_requests"].as_f64().expect("counted");
        if h["object"] == "segment" {
            // A later round may find the same newest segment already cached.
            assert!(origin <= 1.0, "{h}");
        } else {
            assert_eq!(origin, 1.0, "a new part or playlist each round: {h}");
        }
    }
}

#[tokio::test]
async fn bad_plans_are_refused_with_what_was_expected() {
    for (args, expected) in [
        (
            vec!["viewers", "https://127.0.0.1:1/m.m3u8"],
            "expected an http:// URL",
        ),
        (
            vec!["viewers", "http://127.0.0.1:1/m.m3u8", "--workers", "0"],
            "--workers",
        ),
        (
            vec![
                "viewers",
                "http://127.0.0.1:1/m.m3u8",
                "--bandwidth-trace",
                "fast",
            ],
            "expected RATE:TIME",
        ),
        (vec!["report", "/nonexistent.json"], "cannot read"),
    ] {
        let out = tokio::process::Command::new(corral_e2e::binary("loadtest"))
            .args(&args)
            .output()
            .await
            .expect("loadtest runs");
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}

#[test]
fn the_k6_scripts_are_valid_modules() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../loadtest/k6");
    for name in ["viewer.js", "herd.js", "chat.js"] {
        let path = dir.join(name);
        let out = std::process::Command::new("node")
            .arg("--check")
            .arg(&path)
            .output()
            .expect("node runs");
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(&path).expect("the script");
        assert!(text.contains("thresholds"), "{name} has thresholds");
        assert!(text.contains("__ENV."), "{name} reads its parameters");
    }
    // A broken script is caught: node reads them as modules (loadtest/k6/package.json).
    let scratch = corral_e2e::Scratch::new("k6");
    std::fs::write(scratch.0.join("package.json"), r#"{"type":"module"}"#).expect("written");
    let broken = scratch.0.join("broken.js");
    std::fs::write(
        &broken,
        "import http from 'k6/http';\nexport default function ( {\n",
    )
    .expect("written");
    let out = std::process::Command::new("node")
        .arg("--check")
        .arg(&broken)
        .output()
        .expect("node runs");
    assert!(!out.status.success(), "a syntax error fails the check");
}

/// The comparison a user runs before choosing a cache: the same herds and cache hits against
/// the edge, nginx and Varnish in front of one origin, written as a table into a Markdown file
/// in place of the one a previous run wrote, the rest of the file kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_comparison_with_nginx_and_varnish_writes_its_table() {
    let _serial = SERIAL.lock().await;
    let scratch = Scratch::new("compare");
    let file = scratch.0.join("BENCHMARKS.md");
    let begin =
        "<!-- begin: loadtest/compare/compare.sh writes the lines down to the end marker -->";
    let end = "<!-- end: loadtest/compare/compare.sh -->";
    std::fs::write(
        &file,
        format!(
            "# Benchmarks\n\nwritten before\n\n{begin}\nan old table\n{end}\n\nwritten after\n"
        ),
    )
    .expect("written");
    let bin = corral_e2e::binary("loadtest");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../loadtest/compare/compare.sh");
    let out = tokio::process::Command::new("bash")
        .arg(&script)
        .env("BIN", bin.parent().expect("the binaries' folder"))
        .env("HERD_CLIENTS", "50")
        .env("ROUNDS", "1")
        .env("HITS_SECONDS", "1")
        .env("HITS_CONNECTIONS", "8")
        .env("PORT_BASE", "28180")
        .env("COMPARE_OUT", &file)
        .kill_on_drop(true)
        .output()
        .await
        .expect("bash runs");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "compare.sh failed: {log}");

    let text = std::fs::read_to_string(&file).expect("the file");
    assert!(
        text.starts_with("# Benchmarks\n\nwritten before\n"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("written after"), "{text}");
    assert!(!text.contains("an old table"), "{text}");
    assert_eq!(text.matches(begin).count(), 1, "{text}");
    let row = |name: &str| -> Vec<String> {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("| {name} |")))
            .unwrap_or_else(|| panic!("a row for {name}: {text}"));
        line.split('|').map(|c| c.trim().to_string()).collect()
    };
    for object in ["blocking playlist", "hinted part", "segment"] {
        let cells = row(object);
        // Each of the three caches sends the origin one request for a herd of 50.
        assert_eq!(cells[2], "1 / 1 / 1", "{object}: {text}");
        assert_eq!(cells[8], "0", "no failed request on {object}: {text}");
    }
    for object in ["multivariant playlist", "part, 720p"] {
        let cells = row(object);
        let rates: Vec<f64> = cells[2]
            .split(" / ")
            .map(|r| r.replace(',', "").parse().expect("requests/s"))
            .collect();
        assert!(
            rates.len() == 3 && rates.iter().all(|&r| r > 0.0),
            "{object}: {text}"
        );
        assert_eq!(cells[8], "0", "no failed request on {object}: {text}");
    }
    assert!(text.contains("| edge | nginx | Varnish |"), "{text}");
}
