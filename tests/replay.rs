//! Replay end to end: a broadcast archived as it goes (to the origin's local archive
//! directory), seekable two minutes back through the edge's DVR playlist, and playable as a
//! VOD through the edge once it ended, checked with ffprobe and in a browser; an archive that
//! cannot be written, which live viewers must not notice; and a broadcast cut short by an
//! origin crash, finished as a VOD by the next start.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use corral_e2e::edge::{Edge, PLAYLIST, live_playlist_of, viewer_step};
use corral_e2e::{Origin, SERIAL, ffprobe, metric_sum};
use corral_loadtest::playlist::MediaPlaylist;

/// A light ladder (one 180p rung and audio) and the `match` test source, which ends after
/// `seconds` when given.
fn config(seconds: Option<u32>, extra: &str) -> String {
    let duration = seconds.map_or(String::new(), |s| format!(", duration: {s}"));
    format!(
        "transcoder:
  x264_preset: ultrafast
  ladder:
    - {{ name: 180p, width: 320, height: 180, bitrate: 300k }}
  audio: {{ name: audio, bitrate: 64k }}
{extra}streams:
  - name: demo
    source: testsrc
    testsrc: {{ width: 320, height: 180{duration} }}
"
    )
}

fn text(body: &[u8]) -> String {
    String::from_utf8(body.to_vec()).expect("utf-8")
}

fn covered(p: &MediaPlaylist) -> f64 {
    p.segments.iter().filter_map(|s| s.duration).sum()
}

async fn archive_metric(origin: &Origin, sample: &str) -> f64 {
    metric_sum(&origin.metrics_text().await, sample)
}

/// Downloads `uris` (relative to `base`) through the edge into one file, for ffprobe.
async fn fetch_into(edge: &Edge, base: &str, uris: &[&str], file: &Path) {
    let mut bytes = Vec::new();
    for uri in uris {
        let r = edge.get(&format!("{base}{uri}")).await;
        assert_eq!(r.status, 200, "GET {base}{uri}: {}", text(&r.body));
        bytes.extend_from_slice(&r.body);
    }
    std::fs::write(file, bytes).expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_seeks_back_two_minutes_while_live_and_plays_as_a_vod_after_it_ends() {
    let _serial = SERIAL.lock().await;
    let origin = Origin::start(&config(Some(140), ""));
    let edge = Edge::start(
        &[&origin.http.to_string()],
        &format!("web:\n  root: {}\n", corral_e2e::web_root().display()),
    );
    live_playlist_of(&edge, "/live/demo/180p/index.m3u8").await;

    // While live: the DVR playlist grows to two minutes; the live one stays short.
    let dvr_path = "/live/demo/180p/dvr.m3u8";
    let deadline = Instant::now() + Duration::from_secs(160);
    let dvr = loop {
        let r = edge.get(dvr_path).await;
        assert_eq!(r.status, 200, "{}", text(&r.body));
        let p = MediaPlaylist::parse(&text(&r.body)).expect("a playlist");
        if covered(&p) >= 124.0 {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "the DVR playlist covers only {} s\n{}",
            covered(&p),
            origin.log()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    assert!(!dvr.ended, "the broadcast is live");
    assert!(dvr.segments.iter().all(|s| !s.gap), "nothing is missing");
    let live = edge.get("/live/demo/180p/index.m3u8").await;
    let live = MediaPlaylist::parse(&text(&live.body)).expect("live");
    assert!(
        covered(&live) <= 30.0,
        "the LL playlist stays short: {} s",
        covered(&live)
    );

    // Two minutes back: a segment the live log no longer keeps, read back from the archive.
    let two_minutes_ago = SystemTime::now() - Duration::from_secs(120);
    let back = dvr
        .segments
        .iter()
        .find(|s| s.program_date_time.is_some_and(|t| t >= two_minutes_ago))
        .expect("a segment two minutes back");
    let first_live = live.segments.first().expect("listed").msn;
    assert!(
        back.msn + 24 < first_live,
        "segment {} is older than the live log's memory (from {first_live})",
        back.msn
    );
    let reads_before =
        archive_metric(&origin, "corral_origin_archive_reads_total{result=\"ok\"").await;
    let sample = origin.dir().join("two-minutes-back.mp4");
    let map = back.map.clone().expect("EXT-X-MAP");
    let uri = back.uri.clone().expect("a URI");
    fetch_into(&edge, "/live/demo/180p/", &[&map, &uri], &sample).await;
    let reads_after =
        archive_metric(&origin, "corral_origin_archive_reads_total{result=\"ok\"").await;
    assert!(
        reads_after >= reads_before + 1.0,
        "the origin read it from the archive ({reads_before} → {reads_after})"
    );
    let probe = ffprobe(
        &sample,
        &[
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames,width",
        ],
    );
    let stream = &probe["streams"][0];
    assert_eq!(stream["width"], 320, "{probe}");
    let frames: u64 = stream["nb_read_frames"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(frames >= 55, "a whole 2 s segment decodes: {frames} frames");

    // EXT-X-START opens a link two minutes behind live; the DVR master points at the DVR
    // playlists with it.
    let start = edge.get(&format!("{dvr_path}?start=-120")).await;
    assert!(
        text(&start.body).contains("#EXT-X-START:TIME-OFFSET=-120.000,PRECISE=YES\n"),
        "{}",
        text(&start.body)
    );
    let master = text(&edge.get("/live/demo/dvr.m3u8?start=-120").await.body);
    assert!(master.contains("\n180p/dvr.m3u8?start=-120\n"), "{master}");
    assert!(
        master.contains("URI=\"audio/dvr.m3u8?start=-120\""),
        "{master}"
    );

    // The end: the VOD is written once every segment is archived.
    let deadline = Instant::now() + Duration::from_secs(60);
    while archive_metric(
        &origin,
        "corral_origin_archive_sessions_total{result=\"archived\"",
    )
    .await
        < 1.0
    {
        assert!(
            Instant::now() < deadline,
            "no session archived\n{}",
            origin.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        archive_metric(
            &origin,
            "corral_origin_archive_writes_total{result=\"failed\""
        )
        .await,
        0.0
    );
    let sessions: Vec<String> = std::fs::read_dir(origin.dir().join("archive/demo"))
        .expect("the stream's archive")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let session = &sessions[0];
    let vod = format!("/vod/demo/{session}/");

    // Through the edge: final playlists with long cache lifetimes, every segment there.
    for rendition in ["180p", "audio"] {
        let r = edge.get(&format!("{vod}{rendition}/index.m3u8")).await;
        assert_eq!(r.status, 200, "{}", text(&r.body));
        assert!(
            r.cache_control
                .as_deref()
                .is_some_and(|c| c.contains("max-age=86400")),
            "{:?}",
            r.cache_control
        );
        let body = text(&r.body);
        assert!(body.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"), "{body}");
        let p = MediaPlaylist::parse(&body).expect("a playlist");
        assert!(p.ended, "ENDLIST");
        assert!(p.segments.iter().all(|s| !s.gap), "no gap: {body}");
        let total = covered(&p);
        assert!((136.0..=144.0).contains(&total), "{rendition}: {total} s");
    }
    let segment = edge
        .get(&format!("{vod}180p/{}.m4s", dvr.segments[3].msn))
        .await;
    assert_eq!(segment.status, 200);
    assert!(
        segment
            .cache_control
            .as_deref()
            .is_some_and(|c| c.contains("immutable")),
        "{:?}",
        segment.cache_control
    );

    // ffprobe plays the VOD through the edge.
    let url = format!("http://{}{vod}master.m3u8", edge.http);
    let probe = ffprobe(
        Path::new(&url),
        &["-show_entries", "format=duration:stream=codec_type,width"],
    );
    let duration: f64 = probe["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0.0);
    assert!((134.0..=146.0).contains(&duration), "{probe}");
    let kinds: Vec<&str> = probe["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .filter_map(|s| s["codec_type"].as_str())
        .collect();
    assert!(
        kinds.contains(&"video") && kinds.contains(&"audio"),
        "{probe}"
    );

    // And a browser plays it, from the start and after seeking to its middle.
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts/replay");
    let report = corral_e2e::browser_report(vec![
        "replay".into(),
        format!("http://{}", edge.http).into(),
        format!("/watch/demo/{session}").into(),
        out.into(),
    ])
    .await;
    assert_eq!(report["failures"], serde_json::json!([]), "{report:#}");
    let seconds = report["duration"].as_f64().unwrap_or(0.0);
    assert!((134.0..=146.0).contains(&seconds), "{report:#}");
    assert_eq!(report["videoWidth"], 320, "{report:#}");
}

/// Makes a directory unwritable even for root, and writable again on drop: the immutable
/// attribute where the file system has it (ext4, xfs, btrfs), else a read-only bind mount of
/// the directory onto itself.
struct ReadOnly {
    dir: PathBuf,
    mounted: bool,
}

impl ReadOnly {
    fn new(dir: PathBuf) -> ReadOnly {
        std::fs::create_dir_all(&dir).expect("dir");
        let run = |program: &str, args: &[&str]| {
            std::process::Command::new(program)
                .args(args)
                .arg(&dir)
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if run("chattr", &["+i"]) {
            return ReadOnly {
                dir,
                mounted: false,
            };
        }
        let d = dir.to_string_lossy().into_owned();
        let bound = run("mount", &["--bind", &d]);
        assert!(
            bound && run("mount", &["-o", "remount,bind,ro"]),
            "cannot make {} read-only (chattr +i, or a read-only bind mount as root)",
            dir.display()
        );
        ReadOnly { dir, mounted: true }
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let (program, args): (&str, &[&str]) = if self.mounted {
            ("umount", &[])
        } else {
            ("chattr", &["-i"])
        };
        let _ = std::process::Command::new(program)
            .args(args)
            .arg(&self.dir)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_that_cannot_be_written_does_not_disturb_live_viewers() {
    let _serial = SERIAL.lock().await;
    let scratch = corral_e2e::Scratch::new("readonly-archive");
    let dir = scratch.0.join("archive");
    let _readonly = ReadOnly::new(dir.clone());
    let origin = Origin::start(&config(
        None,
        &format!(
            "archive:\n  path: {}\n  retry: {{ attempts: 2, initial_backoff: 0.1 }}\n",
            dir.display()
        ),
    ));
    let edge = Edge::start(&[&origin.http.to_string()], "");
    let path = PLAYLIST.replace("360p", "180p");
    let mut playlist = live_playlist_of(&edge, &path).await;

    // A viewer follows the live edge part by part for 10 s without a failed request.
    let until = Instant::now() + Duration::from_secs(10);
    let first = playlist.segments.last().expect("a segment").msn;
    while Instant::now() < until {
        let (next, retries) = viewer_step(&edge, &path, &playlist).await;
        assert_eq!(retries, 0, "every request answered at once");
        playlist = next;
    }
    let last = playlist.segments.last().expect("a segment").msn;
    assert!(
        last >= first + 4,
        "the stream advanced from {first} to {last}"
    );

    // The failures are counted and logged, and the health check is unaffected.
    let failed = archive_metric(
        &origin,
        "corral_origin_archive_writes_total{result=\"failed\"",
    )
    .await;
    let retried = archive_metric(
        &origin,
        "corral_origin_archive_writes_total{result=\"retried\"",
    )
    .await;
    assert!(
        failed >= 1.0 && retried >= 1.0,
        "failed {failed}, retried {retried}"
    );
    let log = origin.log();
    assert!(log.contains("archive write failed for good"), "{log}");
    assert_eq!(origin.get("/healthz", &[]).await.status, 200);
    assert!(
        std::fs::read_dir(&dir).expect("dir").next().is_none(),
        "nothing was written"
    );
    // The DVR playlist still lists what the live log keeps in memory.
    let dvr = edge.get("/live/demo/180p/dvr.m3u8").await;
    let dvr = MediaPlaylist::parse(&text(&dvr.body)).expect("a DVR playlist");
    assert!(dvr.segments.len() >= 4, "{dvr:?}");
    assert!(dvr.segments.iter().all(|s| !s.gap), "memory still has them");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_cut_short_by_an_origin_crash_is_finished_as_a_vod_by_the_next_start() {
    let _serial = SERIAL.lock().await;
    let mut origin = Origin::start(&config(None, "archive: { checkpoint_interval: 2 }\n"));
    // Its playlists so far are checkpointed while it is live.
    let stream_dir = origin.dir().join("archive/demo");
    let deadline = Instant::now() + Duration::from_secs(60);
    let session = loop {
        let checkpointed = std::fs::read_dir(&stream_dir).ok().and_then(|dir| {
            dir.filter_map(Result::ok).find_map(|e| {
                let text = std::fs::read_to_string(e.path().join("180p/index.m3u8")).ok()?;
                let p = MediaPlaylist::parse(&text).ok()?;
                (covered(&p) >= 8.0).then(|| e.file_name().to_string_lossy().into_owned())
            })
        });
        if let Some(id) = checkpointed {
            break id;
        }
        assert!(Instant::now() < deadline, "no checkpoint\n{}", origin.log());
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // The origin dies without ending the broadcast, then starts again.
    origin.kill();
    assert!(!stream_dir.join(&session).join("session.json").exists());
    origin.restart();

    let deadline = Instant::now() + Duration::from_secs(30);
    let past = loop {
        let list: serde_json::Value =
            serde_json::from_slice(&origin.get("/api/streams?state=ended", &[]).await.body)
                .expect("JSON");
        let found = list["sessions"]
            .as_array()
            .and_then(|s| s.iter().find(|p| p["session"] == session.as_str()).cloned());
        if let Some(p) = found {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "not recovered: {list:#}\n{}",
            origin.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(past["state"], "recovered", "{past:#}");
    assert!(past["duration"].as_f64().unwrap_or(0.0) >= 8.0, "{past:#}");
    let vod = format!("/vod/demo/{session}/");
    for rendition in ["180p", "audio"] {
        let body = text(
            &origin
                .get(&format!("{vod}{rendition}/index.m3u8"), &[])
                .await
                .body,
        );
        assert!(body.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"), "{body}");
        assert!(body.ends_with("#EXT-X-ENDLIST\n"), "{body}");
    }
    let url = format!("http://{}{vod}master.m3u8", origin.http);
    let probe = ffprobe(Path::new(&url), &["-show_entries", "format=duration"]);
    let duration: f64 = probe["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0.0);
    assert!(duration >= 7.5, "{probe}");
}
