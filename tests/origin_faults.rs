//! Faults at the origin: the transcoder crashing or hanging, the source ending, the origin
//! stopping.

use std::time::{Duration, Instant};

use corral_e2e::{Origin, SERIAL, TEST_LADDER};
use corral_loadtest::playlist::MediaPlaylist;

fn config(duration: Option<u32>) -> String {
    let duration = duration.map_or(String::new(), |d| format!(", duration: {d}"));
    format!(
        "{TEST_LADDER}\nstreams:\n  - name: demo\n    source: testsrc\n    testsrc: {{ width: 640, height: 360{duration} }}\n"
    )
}

/// Follows `path` with blocking reloads until `done` holds, for at most `limit`.
async fn follow(
    origin: &Origin,
    path: &str,
    limit: Duration,
    mut done: impl FnMut(&MediaPlaylist) -> bool,
) -> MediaPlaylist {
    let deadline = Instant::now() + limit;
    let mut playlist = origin.playlist(path).await;
    while !done(&playlist) {
        assert!(
            Instant::now() < deadline,
            "gave up following {path}:\n{playlist:#?}\n{}",
            origin.log()
        );
        let query = match playlist
            .preload_hint
            .as_deref()
            .and_then(MediaPlaylist::part_position)
        {
            Some((msn, part)) => format!("?_HLS_msn={msn}&_HLS_part={part}"),
            None => String::new(),
        };
        let r = origin.get(&format!("{path}{query}"), &[]).await;
        if r.status == 200 {
            playlist =
                MediaPlaylist::parse(std::str::from_utf8(&r.body).expect("utf-8")).expect("valid");
        } else {
            // 503 after a blocking timeout while the transcoder restarts, or 404 for a hinted
            // part that a restart made a gap: reload plainly, as players do.
            playlist = origin.playlist(path).await;
        }
    }
    playlist
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_transcoder_is_restarted_and_the_stream_continues_after_a_discontinuity() {
    // Restarted within about a second, the stream need not be reported stalled.
    transcoder_fault(nix::sys::signal::Signal::SIGKILL, "ffmpeg exited", false).await;
}

/// A hung ffmpeg (alive, writing nothing): the origin's health check reports the stream
/// stalled within a second, so that edges go to another origin, and the supervisor kills and
/// restarts it after `stall_timeout` (2 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_transcoder_is_reported_restarted_and_the_stream_continues_after_a_discontinuity() {
    transcoder_fault(nix::sys::signal::Signal::SIGSTOP, "stalled", true).await;
}

/// Sends `signal` to the stream's ffmpeg, then checks the stream resumes after a discontinuity,
/// with `why` in the API's `last_error` (and, when `reported`, that `/healthz` said it stalled
/// meanwhile).
async fn transcoder_fault(signal: nix::sys::signal::Signal, why: &str, reported: bool) {
    let _serial = SERIAL.lock().await;
    let origin = Origin::start(&config(None));
    let path = "/live/demo/360p/index.m3u8";
    let before = follow(&origin, path, Duration::from_secs(30), |p| {
        p.last_complete().is_some()
    })
    .await;
    let first_map = before.segments[0].map.clone().expect("map");
    let children = origin.children();
    assert_eq!(children.len(), 1, "one ffmpeg per stream");
    let healthy = origin.get("/healthz", &[]).await;
    assert_eq!(healthy.status, 200, "{:?}", healthy.body);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(children[0] as i32), signal)
        .expect("signal ffmpeg");
    let signalled = Instant::now();
    // The health check notices the stream stopped advancing after 2 part targets (0.67 s).
    let mut seen_stalled = !reported;
    while !seen_stalled {
        let h = origin.get("/healthz", &[]).await;
        if h.status == 503 {
            let text = String::from_utf8_lossy(&h.body);
            assert!(text.starts_with("stalled: demo ("), "{text}");
            seen_stalled = true;
        } else {
            assert!(
                signalled.elapsed() < Duration::from_secs(5),
                "/healthz never reported the stall"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let after = follow(&origin, path, Duration::from_secs(30), |p| {
        p.segments
            .iter()
            .position(|s| s.discontinuity)
            .is_some_and(|i| {
                let resumed = &p.segments[i..];
                resumed.iter().map(|s| s.parts.len()).sum::<usize>() >= 4
            })
    })
    .await;
    let i = after
        .segments
        .iter()
        .position(|s| s.discontinuity)
        .expect("a discontinuity");
    let resumed = &after.segments[i];
    assert_ne!(
        resumed.map,
        Some(first_map),
        "a new EXT-X-MAP follows the discontinuity"
    );
    assert!(resumed.parts.first().is_some_and(|p| p.independent));
    let msns: Vec<u64> = after.segments.iter().map(|s| s.msn).collect();
    assert!(
        msns.windows(2).all(|w| w[1] == w[0] + 1),
        "contiguous MSNs (gaps fill holes): {msns:?}"
    );
    let last_before = before.segments.last().expect("segments").msn;
    assert!(
        resumed.msn > last_before,
        "MSNs never repeat: resumed at {} after {last_before}",
        resumed.msn
    );

    let api: serde_json::Value =
        serde_json::from_slice(&origin.get("/api/streams", &[]).await.body).expect("json");
    assert_eq!(api["streams"][0]["restarts"], 1);
    assert_eq!(api["streams"][0]["state"], "live");
    assert!(
        api["streams"][0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains(why)),
        "{api}"
    );
    // Advancing again, the stream is healthy again.
    assert_eq!(origin.get("/healthz", &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_source_ends_the_stream_with_endlist() {
    let _serial = SERIAL.lock().await;
    let origin = Origin::start(&config(Some(5)));
    let path = "/live/demo/audio/index.m3u8";
    let ended = follow(&origin, path, Duration::from_secs(40), |p| p.ended).await;
    assert!(ended.preload_hint.is_none(), "no preload hint with ENDLIST");
    assert!(
        ended.segments.iter().all(|s| s.uri.is_some()),
        "every segment complete"
    );
    let next = ended.segments.last().expect("segments").msn + 1;
    let asked = Instant::now();
    let r = origin
        .get(&format!("{path}?_HLS_msn={next}&_HLS_part=0"), &[])
        .await;
    assert_eq!(
        r.status, 200,
        "directives are ignored once the stream ended"
    );
    assert!(
        asked.elapsed() < Duration::from_millis(500),
        "answered at once"
    );
    assert!(String::from_utf8_lossy(&r.body).contains("#EXT-X-ENDLIST"));
    let api: serde_json::Value =
        serde_json::from_slice(&origin.get("/api/streams", &[]).await.body).expect("json");
    assert_eq!(api["streams"][0]["state"], "ended");
    assert!(
        origin.children().is_empty(),
        "ffmpeg exited and was not restarted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_origin_ends_held_requests_with_the_final_playlist() {
    let _serial = SERIAL.lock().await;
    let mut origin = Origin::start(&config(None));
    let path = "/live/demo/180p/index.m3u8";
    let live = follow(&origin, path, Duration::from_secs(30), |p| {
        p.last_complete().is_some()
    })
    .await;
    let ahead = live.last_complete().expect("segment") + 2;
    let client = origin.client.clone();
    let url = origin.url(&format!("{path}?_HLS_msn={ahead}"));
    let held = tokio::spawn(async move { client.get(&url, &[]).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = origin.stop();
    assert!(
        status.success(),
        "the origin exits cleanly on SIGTERM: {status}"
    );
    let answer = held
        .await
        .expect("task")
        .expect("the held request was answered");
    assert_eq!(answer.status, 200);
    let text = String::from_utf8_lossy(&answer.body);
    assert!(
        text.contains("#EXT-X-ENDLIST") && !text.contains("PRELOAD-HINT"),
        "{text}"
    );
}
