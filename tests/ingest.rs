//! Broadcasters publishing to the origin binary with real publishers: ffmpeg over RTMP and
//! over SRT, good and wrong keys, two streams at once, a publisher lost and coming back, and
//! bad input that must only ever close the offending connection.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use corral_e2e::{Origin, Publisher, SERIAL, Scratch, ffprobe, free_port, free_udp_port, metric};
use corral_loadtest::playlist::MediaPlaylist;

/// `PART-TARGET` of the test streams: 1/3 s cells, the longest part 16 AAC frames at 48 kHz
/// (and a millisecond for a publisher's rounded timestamps).
const PART_TARGET: f64 = 0.34234;

struct Ports {
    rtmp: u16,
    srt: u16,
}

fn start(grace: u32) -> (Origin, Ports) {
    let ports = Ports {
        rtmp: free_port(),
        srt: free_udp_port(),
    };
    let config = format!(
        "transcoder:
  x264_preset: ultrafast
  ladder:
    - {{ name: 180p, width: 320, height: 180, bitrate: 300k }}
  audio: {{ name: audio, bitrate: 64k }}
llhls:
  segment_duration: 1.0
  playlist_segments: 8
ingest:
  rtmp: {{ listen: 127.0.0.1:{rtmp} }}
  srt: {{ listen: 127.0.0.1:{srt} }}
  handshake_timeout: 2
  media_timeout: 1
  keyframe_timeout: 3
  reconnect_grace: {grace}
streams:
  - {{ name: studio, source: publish, key: studio-key }}
  - {{ name: field, source: publish, key: field-key-1 }}
  - {{ name: hot, source: publish, key: hot-key-01, max_bitrate: 200k }}
",
        rtmp = ports.rtmp,
        srt = ports.srt,
    );
    (Origin::start(&config), ports)
}

fn rtmp_url(ports: &Ports, key: &str) -> String {
    format!("rtmp://127.0.0.1:{}/live/{key}", ports.rtmp)
}

fn srt_url(ports: &Ports, key: &str) -> String {
    format!("srt://127.0.0.1:{}?streamid={key}&pkt_size=1316", ports.srt)
}

async fn api_stream(origin: &Origin, name: &str) -> serde_json::Value {
    let api: serde_json::Value =
        serde_json::from_slice(&origin.get("/api/streams", &[]).await.body).expect("json");
    api["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
        .expect("the stream")
}

/// Polls the API until `name` is in `state`.
async fn wait_state(origin: &Origin, name: &str, state: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let s = api_stream(origin, name).await;
        if s["state"] == state {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never became {state}: {s}\n{}",
            origin.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Follows a media playlist with blocking reloads for `parts` new parts; returns the last
/// playlist and when each new part arrived.
async fn follow(origin: &Origin, path: &str, parts: usize) -> (MediaPlaylist, Vec<Instant>) {
    let mut playlist = origin.playlist(path).await;
    let mut arrivals = Vec::new();
    while arrivals.len() < parts {
        let hint = playlist
            .preload_hint
            .clone()
            .expect("a live playlist hints its next part");
        let (msn, part) = MediaPlaylist::part_position(&hint).expect("msn.part");
        let r = origin
            .get(&format!("{path}?_HLS_msn={msn}&_HLS_part={part}"), &[])
            .await;
        assert_eq!(
            r.status,
            200,
            "{path}: {}\n{}",
            String::from_utf8_lossy(&r.body),
            origin.log()
        );
        playlist =
            MediaPlaylist::parse(std::str::from_utf8(&r.body).expect("utf-8")).expect("valid");
        for s in &playlist.segments {
            for p in &s.parts {
                assert!(
                    p.duration <= PART_TARGET,
                    "{} is longer than PART-TARGET",
                    p.uri
                );
            }
        }
        arrivals.push(Instant::now());
    }
    (playlist, arrivals)
}

/// Downloads the last complete segment of `rendition` after its init segment and ffprobes it.
async fn probe_last_segment(origin: &Origin, stream: &str, rendition: &str) -> serde_json::Value {
    let playlist = origin
        .playlist(&format!("/live/{stream}/{rendition}/index.m3u8"))
        .await;
    let segment = playlist
        .segments
        .iter()
        .rev()
        .find(|s| s.uri.is_some() && !s.gap)
        .expect("a complete segment");
    let map = segment.map.clone().expect("a map");
    let mut bytes = origin
        .get(&format!("/live/{stream}/{rendition}/{map}"), &[])
        .await
        .body
        .to_vec();
    bytes.extend_from_slice(
        &origin
            .get(
                &format!(
                    "/live/{stream}/{rendition}/{}",
                    segment.uri.as_deref().expect("uri")
                ),
                &[],
            )
            .await
            .body,
    );
    let scratch = Scratch::new("ingest-probe");
    let file = scratch.0.join("segment.mp4");
    std::fs::write(&file, &bytes).expect("write");
    ffprobe(&file, &["-show_streams", "-count_frames"])
}

async fn wait_master(origin: &Origin, stream: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        if origin
            .get(&format!("/live/{stream}/master.m3u8"), &[])
            .await
            .status
            == 200
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{stream} never went live\n{}",
            origin.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_keys_go_live_over_rtmp_and_srt_at_once_and_wrong_keys_are_refused() {
    let _serial = SERIAL.lock().await;
    let (origin, ports) = start(30);
    assert_eq!(
        origin.get("/live/studio/master.m3u8", &[]).await.status,
        404,
        "idle: nothing to play"
    );

    for url in [rtmp_url(&ports, "wrong-key"), srt_url(&ports, "wrong-key")] {
        let mut wrong = Publisher::start(&url, None, &[]);
        let status = wrong
            .wait_exit(Duration::from_secs(5))
            .expect("a wrong key is refused");
        assert!(!status.success(), "{url}");
        // ffmpeg itself needs a few hundred milliseconds to start and connect.
        assert!(
            wrong.started.elapsed() < Duration::from_millis(2500),
            "{url}: refused after {:?}",
            wrong.started.elapsed()
        );
    }
    let metrics = origin.metrics_text().await;
    for protocol in ["rtmp", "srt"] {
        let sample = format!(
            "corral_ingest_refused_total{{protocol=\"{protocol}\",reason=\"unknown_key\"}}"
        );
        assert!(metric(&metrics, &sample) >= 1.0, "{sample}\n{metrics}");
    }
    assert!(
        origin.log().contains("publish refused"),
        "a log line per refusal"
    );
    assert_eq!(
        api_stream(&origin, "studio").await["state"],
        "idle",
        "nothing was created"
    );

    let _rtmp = Publisher::start(&rtmp_url(&ports, "studio-key"), None, &[]);
    let _srt = Publisher::start(&srt_url(&ports, "field-key-1"), None, &[]);
    wait_master(&origin, "studio", Duration::from_secs(20)).await;
    wait_master(&origin, "field", Duration::from_secs(20)).await;
    for (stream, protocol) in [("studio", "rtmp"), ("field", "srt")] {
        let (_, arrivals) = follow(&origin, &format!("/live/{stream}/180p/index.m3u8"), 9).await;
        let cadence = arrivals
            .last()
            .expect("arrivals")
            .duration_since(arrivals[0])
            .as_secs_f64()
            / 8.0;
        assert!(
            (0.2..0.5).contains(&cadence),
            "{stream}: a part every {cadence:.3} s"
        );
        let probe = probe_last_segment(&origin, stream, "180p").await;
        assert_eq!(
            probe["streams"][0]["codec_name"], "h264",
            "{stream}: {probe}"
        );
        assert_eq!(probe["streams"][0]["width"], 320);
        let audio = probe_last_segment(&origin, stream, "audio").await;
        assert_eq!(audio["streams"][0]["codec_name"], "aac");
        // After the run's first segment (which holds AAC's priming frame), every segment is
        // whole: 1 s of video in three parts of ten frames, none lost to a keyframe the grid
        // did not expect where the publisher's first frame is not on a boundary, and audio in
        // three parts on the same cells, none a sliver (each boundary within half an AAC frame
        // of the video's, so a segment within a frame of 1 s).
        let video = origin
            .playlist_with(&format!("/live/{stream}/180p/index.m3u8"), 3)
            .await;
        let audio = origin
            .playlist(&format!("/live/{stream}/audio/index.m3u8"))
            .await;
        for (rendition, playlist, within) in [("180p", &video, 0.001), ("audio", &audio, 0.0224)] {
            let whole: Vec<_> = playlist
                .segments
                .iter()
                .filter(|s| s.uri.is_some() && !s.gap)
                .skip(1)
                .collect();
            assert!(!whole.is_empty(), "{stream} {rendition}: {playlist:?}");
            for s in whole {
                let d = s.duration.expect("a complete segment");
                assert!(
                    (d - 1.0).abs() <= within,
                    "{stream} {rendition} segment {}: {d} s",
                    s.msn
                );
                let parts: Vec<f64> = s.parts.iter().map(|p| p.duration).collect();
                assert!(
                    parts.is_empty() || (parts.len() == 3 && parts.iter().all(|p| *p > 0.3)),
                    "{stream} {rendition} segment {}: parts {parts:?}",
                    s.msn
                );
            }
        }
        let s = api_stream(&origin, stream).await;
        assert_eq!(s["state"], "live");
        assert_eq!(s["ingest"]["protocol"], protocol, "{s}");
        assert!(
            s["ingest"]["bytes"].as_u64().is_some_and(|b| b > 10_000),
            "{s}"
        );
    }
    let metrics = origin.metrics_text().await;
    assert!(
        metric(
            &metrics,
            "corral_ingest_bytes_total{protocol=\"srt\",stream=\"field\"}"
        ) > 0.0
    );
    assert!(
        metric(
            &metrics,
            "corral_ingest_bytes_total{protocol=\"rtmp\",stream=\"studio\"}"
        ) > 0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_publisher_keeps_the_playlists_advancing_and_resumes_after_a_discontinuity() {
    let _serial = SERIAL.lock().await;
    let (origin, ports) = start(6);
    let path = "/live/studio/180p/index.m3u8";
    let mut publisher = Publisher::start(&rtmp_url(&ports, "studio-key"), None, &[]);
    wait_master(&origin, "studio", Duration::from_secs(20)).await;
    follow(&origin, path, 4).await;

    publisher.kill();
    // Through the loss, every blocking reload is answered and the parts keep coming.
    let (playlist, arrivals) = follow(&origin, path, 12).await;
    let gaps: Vec<f64> = arrivals
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).as_secs_f64())
        .collect();
    assert!(
        gaps.iter().all(|g| *g < 1.5),
        "no stall while the slate plays: {gaps:?}"
    );
    let into_slate = playlist
        .segments
        .iter()
        .filter(|s| s.discontinuity)
        .map(|s| s.msn)
        .max()
        .expect("the slate follows a discontinuity");
    let during = playlist;
    wait_state(&origin, "studio", "reconnecting", Duration::from_secs(5)).await;

    let _back = Publisher::start(&rtmp_url(&ports, "studio-key"), None, &[]);
    wait_state(&origin, "studio", "live", Duration::from_secs(15)).await;
    let (playlist, _) = follow(&origin, path, 9).await;
    // The playlist window may have moved past the slate's start by now (a slow machine): what
    // matters is a second discontinuity, after the slate's, where the new publish begins.
    assert!(
        playlist
            .segments
            .iter()
            .any(|s| s.discontinuity && s.msn > into_slate),
        "out of the slate after a discontinuity: {playlist:#?}"
    );
    let maps: std::collections::BTreeSet<_> = during
        .segments
        .iter()
        .chain(&playlist.segments)
        .filter_map(|s| s.map.clone())
        .collect();
    assert!(
        maps.len() >= 3,
        "the publish, the slate and the new publish each have their init: {maps:?}"
    );
    let probe = probe_last_segment(&origin, "studio", "180p").await;
    assert_eq!(
        probe["streams"][0]["codec_name"], "h264",
        "playable again: {probe}"
    );
    let s = api_stream(&origin, "studio").await;
    assert_eq!(s["reconnects"], 1, "{s}");
    assert_eq!(
        metric(
            &origin.metrics_text().await,
            "corral_ingest_reconnects_total{stream=\"studio\"}"
        ),
        1.0
    );
    drop(_back);

    // Gone for good: the grace period (6 s) runs out and the stream ends.
    wait_state(&origin, "studio", "ended", Duration::from_secs(15)).await;
    let text = String::from_utf8(origin.get(path, &[]).await.body.to_vec()).expect("utf-8");
    assert!(
        text.contains("#EXT-X-ENDLIST") && !text.contains("PRELOAD-HINT"),
        "{text}"
    );
}

/// Reads until the peer closes (or the limit passes): true if it closed.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

/// Completes a plain RTMP handshake on `stream`.
fn handshake(stream: &mut TcpStream) {
    let mut c0c1 = vec![3u8];
    c0c1.extend(std::iter::repeat_n(0u8, 1536));
    stream.write_all(&c0c1).expect("C0 C1");
    let mut s = vec![0u8; 1 + 1536 + 1536];
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream.read_exact(&mut s).expect("S0 S1 S2");
    stream.write_all(&s[1..1537]).expect("C2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_closes_only_the_offending_connection() {
    let _serial = SERIAL.lock().await;
    let (origin, ports) = start(30);
    let _good = Publisher::start(&rtmp_url(&ports, "studio-key"), None, &[]);
    wait_master(&origin, "studio", Duration::from_secs(20)).await;
    let rtmp = format!("127.0.0.1:{}", ports.rtmp);

    // Random bytes.
    let mut garbage = TcpStream::connect(&rtmp).expect("connect");
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let _ = garbage.write_all(&noise);
    assert!(
        closed_within(&mut garbage, Duration::from_secs(3)),
        "random bytes: closed"
    );

    // A handshake cut in half: closed when the handshake timeout (2 s) passes.
    let mut half = TcpStream::connect(&rtmp).expect("connect");
    half.write_all(&[3u8; 700]).expect("half of C0 C1");
    let asked = Instant::now();
    assert!(
        closed_within(&mut half, Duration::from_secs(5)),
        "half a handshake: closed"
    );
    assert!(
        asked.elapsed() >= Duration::from_millis(1500),
        "only after the handshake timeout"
    );

    // A chunk size of 2^31 right after a good handshake.
    let mut huge = TcpStream::connect(&rtmp).expect("connect");
    handshake(&mut huge);
    let set_chunk_size = [0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0x80, 0, 0, 0];
    huge.write_all(&set_chunk_size).expect("set chunk size");
    assert!(
        closed_within(&mut huge, Duration::from_secs(2)),
        "chunk size 2^31: closed"
    );

    // Random datagrams at the SRT port.
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
    for i in 0..500usize {
        let len = 1 + (i * 37) % 1400;
        let datagram: Vec<u8> = (0..len).map(|j| ((i * 31 + j * 7) % 251) as u8).collect();
        let _ = udp.send_to(&datagram, ("127.0.0.1", ports.srt));
    }

    // An SRT publisher that never sends a keyframe: IDR NAL units are cut out.
    let mut no_idr = Publisher::start(
        &srt_url(&ports, "field-key-1"),
        None,
        &["-bsf:v", "filter_units=remove_types=5"],
    );
    // A publisher far above its stream's maximum bit rate (hot: 200k).
    let mut hot = Publisher::start(
        &rtmp_url(&ports, "hot-key-01"),
        None,
        &[
            "-b:v",
            "3M",
            "-minrate",
            "3M",
            "-maxrate",
            "3M",
            "-bufsize",
            "1M",
            "-x264-params",
            "nal-hrd=cbr",
        ],
    );
    assert!(
        no_idr.wait_exit(Duration::from_secs(10)).is_some(),
        "the keyframe-less publish is closed"
    );
    assert!(
        hot.wait_exit(Duration::from_secs(12)).is_some(),
        "the over-rate publish is closed"
    );
    let metrics = origin.metrics_text().await;
    for (protocol, kind) in [
        ("srt", "no_keyframe"),
        ("rtmp", "over_bitrate"),
        ("rtmp", "chunk"),
    ] {
        let sample =
            format!("corral_ingest_errors_total{{kind=\"{kind}\",protocol=\"{protocol}\"}}");
        assert!(metric(&metrics, &sample) >= 1.0, "{sample}\n{metrics}");
    }

    // Everyone else is unaffected: the good stream still advances, the origin is healthy and
    // its memory bounded.
    follow(&origin, "/live/studio/180p/index.m3u8", 6).await;
    assert_eq!(api_stream(&origin, "studio").await["state"], "live");
    assert_eq!(origin.get("/healthz", &[]).await.status, 200);
    let status = std::fs::read_to_string(format!("/proc/{}/status", origin.pid())).expect("proc");
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    assert!(rss_kb < 400_000, "RSS {rss_kb} kB");
    assert!(!origin.log().contains("panicked"), "{}", origin.log());
}
