//! A live stream from the built-in test source, checked the way clients see it: the
//! multivariant playlist, media playlists advancing part by part, blocking reloads, ffprobe
//! decoding what is served, the cache policy, and bad input.

use std::time::Instant;

use corral_e2e::{Origin, SERIAL, Scratch, TEST_LADDER, attribute, ffprobe};
use corral_loadtest::playlist::MediaPlaylist;

/// `PART-TARGET` of the test streams: 1/3 s cells, the longest part 16 AAC frames at 48 kHz
/// (and a millisecond for a publisher's rounded timestamps).
const PART_TARGET: f64 = 0.34234;

fn config() -> String {
    format!(
        "{TEST_LADDER}\nstreams:\n  - name: demo\n    source: testsrc\n    testsrc: {{ width: 640, height: 360 }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_stream_from_the_test_source_as_clients_see_it() {
    let _serial = SERIAL.lock().await;
    let origin = Origin::start(&config());
    multivariant_playlist_lists_every_rendition(&origin).await;
    playlists_advance_one_part_per_part_target_and_block_until_it_exists(&origin).await;
    every_rendition_cuts_the_same_parts(&origin).await;
    bandwidth_is_what_the_renditions_send(&origin).await;
    ffprobe_decodes_what_is_served(&origin).await;
    a_hinted_part_is_held_until_complete_and_then_sent_whole(&origin).await;
    responses_carry_the_cache_policy_and_gzip(&origin).await;
    the_api_and_metrics_describe_the_stream(&origin).await;
    bad_input_gets_the_right_4xx_and_harms_nothing(&origin).await;
}

async fn multivariant_playlist_lists_every_rendition(origin: &Origin) {
    let master = origin.get("/live/demo/master.m3u8", &[]).await;
    assert_eq!(master.status, 200);
    let text = String::from_utf8(master.body.to_vec()).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    let media = lines
        .iter()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA:"))
        .expect("an audio group");
    assert_eq!(attribute(media, "TYPE").as_deref(), Some("AUDIO"));
    assert_eq!(attribute(media, "URI").as_deref(), Some("audio/index.m3u8"));
    let mut variants = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some(list) = line.strip_prefix("#EXT-X-STREAM-INF:") {
            variants.push((list.to_string(), lines[i + 1].to_string()));
        }
    }
    let expect = [
        ("360p/index.m3u8", Some("640x360")),
        ("180p/index.m3u8", Some("320x180")),
        ("audio/index.m3u8", None),
    ];
    assert_eq!(variants.len(), expect.len(), "{text}");
    for ((list, uri), (want_uri, resolution)) in variants.iter().zip(expect) {
        assert_eq!(uri, want_uri);
        let rate = |name: &str| -> u64 {
            attribute(list, name)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} in {list}"))
        };
        // What they are is checked against the segments later.
        let (bandwidth, average) = (rate("BANDWIDTH"), rate("AVERAGE-BANDWIDTH"));
        assert!(average > 0 && average <= bandwidth, "{list}");
        let codecs = attribute(list, "CODECS").expect("CODECS");
        assert!(codecs.contains("mp4a.40.2"), "{codecs}");
        assert_eq!(attribute(list, "RESOLUTION").as_deref(), resolution);
        if resolution.is_some() {
            assert!(codecs.starts_with("avc1.64"), "H.264 High: {codecs}");
            assert_eq!(attribute(list, "AUDIO"), attribute(media, "GROUP-ID"));
        }
        let playlist = origin.playlist(&format!("/live/demo/{uri}")).await;
        assert!(playlist.can_block_reload);
    }
}

fn assert_parts_within_target(p: &MediaPlaylist) {
    assert_eq!(p.part_target, Some(PART_TARGET));
    for s in &p.segments {
        for part in &s.parts {
            assert!(
                part.duration <= PART_TARGET,
                "part {} of {} s is longer than PART-TARGET",
                part.uri,
                part.duration
            );
        }
    }
}

async fn playlists_advance_one_part_per_part_target_and_block_until_it_exists(origin: &Origin) {
    for rendition in ["360p", "180p", "audio"] {
        let path = format!("/live/demo/{rendition}/index.m3u8");
        let mut playlist = origin.playlist(&path).await;
        assert_parts_within_target(&playlist);
        let mut arrivals = Vec::new();
        for _ in 0..12 {
            let hint = playlist
                .preload_hint
                .clone()
                .expect("a live playlist hints its next part");
            let (msn, part) = MediaPlaylist::part_position(&hint).expect("msn.part.m4s");
            let asked = Instant::now();
            let r = origin
                .get(&format!("{path}?_HLS_msn={msn}&_HLS_part={part}"), &[])
                .await;
            let held = asked.elapsed();
            assert_eq!(r.status, 200);
            playlist =
                MediaPlaylist::parse(std::str::from_utf8(&r.body).expect("utf-8")).expect("valid");
            assert_parts_within_target(&playlist);
            let listed = playlist
                .segments
                .iter()
                .any(|s| s.msn == msn && s.parts.len() as u64 > part)
                || playlist
                    .segments
                    .iter()
                    .any(|s| s.msn > msn && !s.parts.is_empty());
            assert!(listed, "the answer to {msn}.{part} contains it");
            // The next part is at most one part target away when we ask for it.
            assert!(
                held.as_secs_f64() < PART_TARGET + 0.2,
                "{rendition}: held {held:?} for the next part"
            );
            arrivals.push(Instant::now());
        }
        let span = arrivals
            .last()
            .expect("arrivals")
            .duration_since(arrivals[0])
            .as_secs_f64();
        let cadence = span / (arrivals.len() - 1) as f64;
        assert!(
            (0.25..0.42).contains(&cadence),
            "{rendition}: one part every {cadence:.3} s"
        );
    }
    // Waking is driven by publication, not a timer: every held request was answered within
    // 50 ms of the part it waited for.
    let text = origin.metrics_text().await;
    let bucket = |le: &str| -> f64 {
        text.lines()
            .find(|l| {
                l.starts_with(&format!(
                    "corral_origin_blocking_wake_seconds_bucket{{le=\"{le}\"}}"
                ))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .expect("bucket")
    };
    assert!(bucket("+Inf") >= 30.0, "held requests were counted");
    assert!(
        bucket("0.05") / bucket("+Inf") >= 0.95,
        "wake-ups within 50 ms: {} of {}",
        bucket("0.05"),
        bucket("+Inf")
    );
}

/// The part grid: each complete segment has the same parts in the video and the audio
/// renditions, part `n` lasting the same to within one AAC frame (no audio sliver at the end).
async fn every_rendition_cuts_the_same_parts(origin: &Origin) {
    let aac_frame = 1024.0 / 48_000.0;
    // Five complete segments: those still listed with parts are past the first one, whose first
    // audio cell also holds AAC's priming frame.
    let video = origin.playlist_with("/live/demo/360p/index.m3u8", 5).await;
    let audio = origin.playlist_with("/live/demo/audio/index.m3u8", 5).await;
    let mut compared = 0;
    for v in video
        .segments
        .iter()
        .filter(|s| s.duration.is_some() && !s.parts.is_empty())
    {
        let Some(a) = audio
            .segments
            .iter()
            .find(|a| a.msn == v.msn && a.duration.is_some() && !a.parts.is_empty())
        else {
            continue;
        };
        assert_eq!(
            v.parts.len(),
            a.parts.len(),
            "segment {}: video parts {:?}, audio parts {:?}",
            v.msn,
            v.parts.iter().map(|p| p.duration).collect::<Vec<_>>(),
            a.parts.iter().map(|p| p.duration).collect::<Vec<_>>()
        );
        let (mut video_end, mut audio_end) = (0.0, 0.0);
        for (pv, pa) in v.parts.iter().zip(&a.parts) {
            video_end += pv.duration;
            audio_end += pa.duration;
            assert!(
                (video_end - audio_end).abs() <= aac_frame + 1e-3,
                "segment {}: {} ends at {video_end}, {} at {audio_end}",
                v.msn,
                pv.uri,
                pa.uri
            );
        }
        compared += 1;
    }
    assert!(
        compared >= 2,
        "complete segments with parts in both: {compared}"
    );
}

/// The peak and mean bit rates of the complete segments `path` lists (bits per second), and
/// their MSNs.
async fn segment_rates(origin: &Origin, path: &str) -> (f64, f64, Vec<u64>) {
    let playlist = origin.playlist_with(path, 5).await;
    let dir = path.rsplit_once('/').expect("a directory").0;
    let (mut peak, mut bits, mut seconds, mut msns) = (0.0f64, 0.0, 0.0, Vec::new());
    for s in playlist.segments.iter().filter(|s| !s.gap) {
        let (Some(duration), Some(uri)) = (s.duration, &s.uri) else {
            continue;
        };
        let body = origin.get(&format!("{dir}/{uri}"), &[]).await.body;
        let rate = body.len() as f64 * 8.0 / duration;
        peak = peak.max(rate);
        bits += body.len() as f64 * 8.0;
        seconds += duration;
        msns.push(s.msn);
    }
    (peak, bits / seconds, msns)
}

/// `BANDWIDTH` and `AVERAGE-BANDWIDTH` are what the listed segments carry (video plus audio), not
/// the encoders' targets.
async fn bandwidth_is_what_the_renditions_send(origin: &Origin) {
    // The playlists may move on between the requests: measure again until they hold still.
    for _ in 0..10 {
        let (video_peak, video_mean, video_msns) =
            segment_rates(origin, "/live/demo/360p/index.m3u8").await;
        let (audio_peak, audio_mean, audio_msns) =
            segment_rates(origin, "/live/demo/audio/index.m3u8").await;
        let master = origin.get("/live/demo/master.m3u8", &[]).await;
        let (_, _, again) = segment_rates(origin, "/live/demo/360p/index.m3u8").await;
        if video_msns != audio_msns || video_msns != again {
            continue;
        }
        let text = String::from_utf8(master.body.to_vec()).expect("utf-8");
        let list = text
            .lines()
            .filter_map(|l| l.strip_prefix("#EXT-X-STREAM-INF:"))
            .find(|l| l.contains("640x360"))
            .expect("the 360p variant");
        let value = |name: &str| -> f64 {
            attribute(list, name)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} in {list}"))
        };
        let (bandwidth, average) = (value("BANDWIDTH"), value("AVERAGE-BANDWIDTH"));
        // EXTINF is rounded to 10 µs: a 0.1 % tolerance covers it.
        let near = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 2.0;
        assert!(
            near(bandwidth, video_peak + audio_peak),
            "BANDWIDTH {bandwidth}: the peaks sent are {video_peak} + {audio_peak}\n{text}"
        );
        assert!(
            near(average, video_mean + audio_mean),
            "AVERAGE-BANDWIDTH {average}: the means sent are {video_mean} + {audio_mean}\n{text}"
        );
        return;
    }
    panic!("the playlists never held still for three requests");
}

async fn ffprobe_decodes_what_is_served(origin: &Origin) {
    let scratch = Scratch::new("ffprobe");
    for (rendition, codec) in [("360p", "h264"), ("audio", "aac")] {
        let playlist = origin
            .playlist(&format!("/live/demo/{rendition}/index.m3u8"))
            .await;
        let segment = playlist
            .segments
            .iter()
            .rev()
            .find(|s| s.uri.is_some())
            .expect("a complete segment");
        let map = segment.map.clone().expect("EXT-X-MAP");
        let mut bytes = origin
            .get(&format!("/live/demo/{rendition}/{map}"), &[])
            .await
            .body
            .to_vec();
        let seg = origin
            .get(
                &format!(
                    "/live/demo/{rendition}/{}",
                    segment.uri.as_deref().expect("uri")
                ),
                &[],
            )
            .await;
        assert_eq!(seg.status, 200);
        bytes.extend_from_slice(&seg.body);
        let file = scratch.0.join(format!("{rendition}.mp4"));
        std::fs::write(&file, &bytes).expect("write");
        let probe = ffprobe(&file, &["-count_frames", "-show_streams"]);
        let stream = &probe["streams"][0];
        assert_eq!(stream["codec_name"], codec, "{probe}");
        if rendition == "360p" {
            assert_eq!(stream["width"], 640);
            assert_eq!(stream["height"], 360);
            assert_eq!(stream["nb_read_frames"], "60", "2 s at 30 fps");
        } else {
            assert_eq!(stream["sample_rate"], "48000");
            assert_eq!(stream["channels"], 2);
        }
        // A part decodes on its own after the init segment, and is no longer than PART-TARGET.
        let part = &segment.parts[1];
        let mut bytes = origin
            .get(&format!("/live/demo/{rendition}/{map}"), &[])
            .await
            .body
            .to_vec();
        bytes.extend_from_slice(
            &origin
                .get(&format!("/live/demo/{rendition}/{}", part.uri), &[])
                .await
                .body,
        );
        let file = scratch.0.join(format!("{rendition}-part.mp4"));
        std::fs::write(&file, &bytes).expect("write");
        let probe = ffprobe(&file, &["-show_packets"]);
        let total: f64 = probe["packets"]
            .as_array()
            .expect("packets")
            .iter()
            .map(|p| {
                p["duration_time"]
                    .as_str()
                    .and_then(|d| d.parse::<f64>().ok())
                    .unwrap_or(0.0)
            })
            .sum();
        assert!(
            total > 0.2 && total <= PART_TARGET,
            "{rendition} part {} holds {total} s",
            part.uri
        );
    }
    // ffprobe as an HLS client: the multivariant playlist leads to every rendition.
    let master = origin.url("/live/demo/master.m3u8").to_string();
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-of", "json", "-show_streams", &master])
        .output()
        .expect("ffprobe runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let probe: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let sizes: Vec<(i64, i64)> = probe["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .filter(|s| s["codec_type"] == "video")
        .map(|s| {
            (
                s["width"].as_i64().unwrap_or(0),
                s["height"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert!(
        sizes.contains(&(640, 360)) && sizes.contains(&(320, 180)),
        "{sizes:?}"
    );
}

async fn a_hinted_part_is_held_until_complete_and_then_sent_whole(origin: &Origin) {
    for rendition in ["360p", "audio"] {
        let playlist = origin
            .playlist(&format!("/live/demo/{rendition}/index.m3u8"))
            .await;
        let hint = playlist.preload_hint.clone().expect("a preload hint");
        let asked = Instant::now();
        let part = origin
            .get(&format!("/live/demo/{rendition}/{hint}"), &[])
            .await;
        let held = asked.elapsed().as_secs_f64();
        assert_eq!(
            part.status, 200,
            "rule 43: a hinted part can be requested before it exists"
        );
        assert!(
            held < PART_TARGET + 0.2,
            "{rendition}: answered {held:.3} s later"
        );
        assert_eq!(&part.body[4..8], b"moof", "a whole CMAF fragment");
        let moof =
            u32::from_be_bytes([part.body[0], part.body[1], part.body[2], part.body[3]]) as usize;
        let mdat =
            u32::from_be_bytes(part.body[moof..moof + 4].try_into().expect("4 bytes")) as usize;
        assert_eq!(
            moof + mdat,
            part.body.len(),
            "rule 44: the whole part, nothing more"
        );
        // The published playlist then lists exactly that URI.
        let (msn, index) = MediaPlaylist::part_position(&hint).expect("msn.part");
        let listed = origin
            .playlist(&format!(
                "/live/demo/{rendition}/index.m3u8?_HLS_msn={msn}&_HLS_part={index}"
            ))
            .await;
        assert!(
            listed
                .segments
                .iter()
                .any(|s| s.parts.iter().any(|p| p.uri == hint)),
            "rule 42: {hint} was published"
        );
        let expected = if rendition == "audio" {
            "audio/mp4"
        } else {
            "video/mp4"
        };
        assert_eq!(part.content_type.as_deref(), Some(expected));
    }
}

async fn responses_carry_the_cache_policy_and_gzip(origin: &Origin) {
    let cc = |f: &corral_loadtest::client::Fetched| f.cache_control.clone().unwrap_or_default();
    let master = origin.get("/live/demo/master.m3u8", &[]).await;
    assert_eq!(cc(&master), "public, max-age=2");
    assert_eq!(
        master.content_type.as_deref(),
        Some("application/vnd.apple.mpegurl"),
        "rule 2"
    );
    let plain = origin.get("/live/demo/360p/index.m3u8", &[]).await;
    assert!(
        cc(&plain).starts_with("public, max-age=0"),
        "{}",
        cc(&plain)
    );
    let p = MediaPlaylist::parse(std::str::from_utf8(&plain.body).expect("utf-8")).expect("valid");
    let (msn, index, part) = p.last_part().expect("parts");
    let blocking = origin
        .get(
            &format!("/live/demo/360p/index.m3u8?_HLS_msn={msn}&_HLS_part={index}"),
            &[],
        )
        .await;
    assert_eq!(cc(&blocking), "public, max-age=12", "6 x target duration");
    let part = origin
        .get(&format!("/live/demo/360p/{}", part.uri), &[])
        .await;
    assert_eq!(cc(&part), "public, max-age=86400, immutable");
    let missing = origin.get("/live/demo/360p/5.0.m4s", &[]).await;
    assert_eq!(missing.status, 404);
    assert_eq!(cc(&missing), "public, max-age=1");
    let zipped = origin
        .get("/live/demo/360p/index.m3u8", &[("accept-encoding", "gzip")])
        .await;
    assert_eq!(zipped.content_encoding.as_deref(), Some("gzip"));
    let text = corral_loadtest::gunzip(&zipped.body).expect("valid gzip");
    assert!(text.starts_with(b"#EXTM3U\n"));
    assert!(
        zipped.body.len() < text.len() / 2,
        "playlists compress well"
    );
}

async fn the_api_and_metrics_describe_the_stream(origin: &Origin) {
    let api = origin.get("/api/streams", &[]).await;
    assert_eq!(api.cache_control.as_deref(), Some("no-store"));
    let json: serde_json::Value = serde_json::from_slice(&api.body).expect("json");
    let stream = &json["streams"][0];
    assert_eq!(stream["name"], "demo");
    assert_eq!(stream["state"], "live");
    let names: Vec<&str> = stream["renditions"]
        .as_array()
        .expect("renditions")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["360p", "180p", "audio"]);
    assert_eq!(stream["renditions"][0]["width"], 640);
    let text = origin.metrics_text().await;
    for name in [
        "corral_origin_parts_published_total{rendition=\"360p\",stream=\"demo\"}",
        "corral_origin_publish_lag_seconds_bucket",
        "corral_origin_blocked_requests{stream=\"demo\"}",
        "corral_transcoder_speed{stream=\"demo\"}",
        "corral_origin_http_requests_total{kind=\"part\",status=\"200\"}",
    ] {
        assert!(text.contains(name), "metrics lack {name}");
    }
}

async fn bad_input_gets_the_right_4xx_and_harms_nothing(origin: &Origin) {
    let cases = [
        (
            "/live/demo/360p/index.m3u8?_HLS_part=2",
            400,
            "_HLS_part alone",
        ),
        (
            "/live/demo/360p/index.m3u8?_HLS_msn=abc",
            400,
            "not a number",
        ),
        (
            "/live/demo/360p/index.m3u8?_HLS_msn=99999999999999",
            400,
            "far ahead",
        ),
        (
            "/live/demo/360p/index.m3u8?_HLS_msn=999999999999999999999999",
            400,
            "beyond 64 bits",
        ),
        (
            "/live/demo/360p/index.m3u8?_HLS_skip=maybe",
            400,
            "bad skip",
        ),
        ("/live/nosuch/master.m3u8", 404, "unknown stream"),
        ("/live/demo/4k/index.m3u8", 404, "unknown rendition"),
        ("/live/demo/../../etc/passwd", 400, "dot segments"),
        ("/live/demo%2F360p/index.m3u8", 400, "encoded slash"),
        (
            "/live/demo/360p/..%2F..%2Fmaster.m3u8",
            400,
            "encoded traversal",
        ),
    ];
    for (path, status, what) in cases {
        let r = origin.get(path, &[]).await;
        assert_eq!(
            r.status,
            status,
            "{what}: {path} -> {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    assert_eq!(origin.get("/healthz", &[]).await.status, 200);
    let playlist = origin.playlist("/live/demo/360p/index.m3u8").await;
    assert!(playlist.preload_hint.is_some(), "the stream is unaffected");
    assert!(!origin.log().contains("panicked"), "{}", origin.log());
}
