//! Redundant origins: one broadcaster publishing the same stream to a primary origin and to a
//! standby that follows the primary's epochs (`redundancy.follow`). Both publish the same
//! playlists for the same media (MSNs, part URIs and durations, program date-times, init
//! segment names) and parts with the same decode times, so an edge moves its players from the
//! primary to the standby when the primary dies, and the players see no seam.

use corral_e2e::edge::{Edge, live_playlist_of, origin_requests, viewer_step};
use corral_e2e::{Origin, Publisher, SERIAL, free_port, published_origin_config};
use corral_loadtest::playlist::{MediaPlaylist, Segment};

const PLAYLIST: &str = "/live/studio/180p/index.m3u8";

/// The origin's epoch of the stream: its anchor and base MSN.
async fn epoch(origin: &Origin) -> (serde_json::Value, serde_json::Value) {
    let r = origin.get("/api/streams/studio/epoch", &[]).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    (v["anchor_unix_ns"].clone(), v["base_msn"].clone())
}

/// The decode time (`tfdt`) of the first track fragment of a part.
fn decode_time(part: &[u8]) -> u64 {
    let at = part
        .windows(4)
        .position(|w| w == b"tfdt")
        .expect("a tfdt box");
    let version = part[at + 4];
    let value = &part[at + 8..];
    if version == 1 {
        u64::from_be_bytes(value[..8].try_into().expect("8 bytes"))
    } else {
        u64::from(u32::from_be_bytes(value[..4].try_into().expect("4 bytes")))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_fed_the_same_publish_serves_the_same_playlists_and_takes_over_seamlessly() {
    let _serial = SERIAL.lock().await;
    let (rtmp_primary, rtmp_standby) = (free_port(), free_port());
    let mut primary = Origin::start(&published_origin_config(rtmp_primary, None));
    let standby = Origin::start(&published_origin_config(rtmp_standby, Some(primary.http)));
    let _publisher = Publisher::start_to_each(
        &[
            &format!("rtmp://127.0.0.1:{rtmp_primary}/live/studio-key"),
            &format!("rtmp://127.0.0.1:{rtmp_standby}/live/studio-key"),
        ],
        None,
    );

    // The standby took the primary's epoch of this publish.
    let a = primary.playlist_with(PLAYLIST, 3).await;
    let b = standby.playlist_with(PLAYLIST, 3).await;
    assert_eq!(epoch(&primary).await, epoch(&standby).await);
    assert!(standby.log().contains("following the primary's epoch"));

    // Every complete segment both list is the same: MSN, date, duration, URI, parts, init.
    let complete = |p: &MediaPlaylist| -> Vec<Segment> {
        p.segments
            .iter()
            .filter(|s| s.duration.is_some())
            .cloned()
            .collect()
    };
    let (sa, sb) = (complete(&a), complete(&b));
    let common: Vec<u64> = sa
        .iter()
        .map(|s| s.msn)
        .filter(|m| sb.iter().any(|s| s.msn == *m))
        .collect();
    assert!(common.len() >= 2, "{a:#?}\n{b:#?}");
    for msn in &common {
        let x = sa.iter().find(|s| s.msn == *msn).expect("listed");
        let y = sb.iter().find(|s| s.msn == *msn).expect("listed");
        assert_eq!(x, y, "segment {msn} differs between the origins");
    }
    // A part has the same decode time on both (the same place on the players' timeline).
    let part = &sa
        .iter()
        .find(|s| s.msn == common[common.len() - 1])
        .expect("listed")
        .parts[2]
        .uri;
    let path = format!("/live/studio/180p/{part}");
    let (pa, pb) = (primary.get(&path, &[]).await, standby.get(&path, &[]).await);
    assert_eq!((pa.status.as_u16(), pb.status.as_u16()), (200, 200));
    assert_eq!(decode_time(&pa.body), decode_time(&pb.body), "{path}");

    // Players follow the stream through an edge in front of both; the primary dies.
    let edge = Edge::start(
        &[&primary.http.to_string(), &standby.http.to_string()],
        "upstream: { health_interval: 0.2 }\n",
    );
    let mut playlist = live_playlist_of(&edge, PLAYLIST).await;
    for _ in 0..3 {
        playlist = viewer_step(&edge, PLAYLIST, &playlist).await.0;
    }
    let before = playlist.clone();
    primary.kill();
    for _ in 0..9 {
        playlist = viewer_step(&edge, PLAYLIST, &playlist).await.0;
    }
    assert!(origin_requests(&standby, "blocking_playlist").await >= 9.0);
    // The standby's playlist carries on the primary's: the segments the viewer saw before
    // are listed the same, and no discontinuity came after them.
    let last_before = before.segments.last().expect("segments").msn;
    // (Parts are listed for the last few segments only, so they are left out here.)
    let listed = |s: &Segment| Segment {
        parts: Vec::new(),
        ..s.clone()
    };
    for s in before.segments.iter().filter(|s| s.duration.is_some()) {
        if let Some(now) = playlist.segments.iter().find(|n| n.msn == s.msn) {
            assert_eq!(
                listed(now),
                listed(s),
                "segment {} changed with the origin",
                s.msn
            );
        }
    }
    assert!(
        playlist
            .segments
            .iter()
            .filter(|s| s.msn >= last_before)
            .all(|s| !s.discontinuity && !s.gap),
        "a seam after the failover: {playlist:#?}"
    );
    let msns: Vec<u64> = playlist.segments.iter().map(|s| s.msn).collect();
    assert!(msns.windows(2).all(|w| w[1] == w[0] + 1), "{msns:?}");
    assert!(
        msns.last() > Some(&last_before),
        "the stream went on: {msns:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cue_placed_on_the_primary_is_in_the_standbys_playlists_too() {
    let _serial = SERIAL.lock().await;
    let (rtmp_primary, rtmp_standby) = (free_port(), free_port());
    let primary = Origin::start_with_http(
        "  admin_token: test-admin-token\n",
        &published_origin_config(rtmp_primary, None),
    );
    let standby = Origin::start(&published_origin_config(rtmp_standby, Some(primary.http)));
    let _publisher = Publisher::start_to_each(
        &[
            &format!("rtmp://127.0.0.1:{rtmp_primary}/live/studio-key"),
            &format!("rtmp://127.0.0.1:{rtmp_standby}/live/studio-key"),
        ],
        None,
    );
    primary.playlist_with(PLAYLIST, 2).await;
    standby.playlist_with(PLAYLIST, 2).await;

    let (status, cue) = corral_e2e::curl_json(
        "POST",
        &format!("http://{}/api/streams/studio/cues", primary.http),
        Some("test-admin-token"),
        Some(serde_json::json!({
            "kind": "ad", "duration": 6, "asset": "/vod/ads/20261206T070142Z/master.m3u8"
        })),
    )
    .await;
    assert_eq!(status, 201, "{cue}");
    let tag = cue["daterange"]
        .as_str()
        .expect("the date range")
        .to_string();

    // Within a couple of seconds the standby lists the very same tag in each rendition, so a
    // player an edge moves there keeps its ad break.
    for rendition in ["180p", "audio"] {
        let path = format!("/live/studio/{rendition}/index.m3u8");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let body =
                String::from_utf8(standby.get(&path, &[]).await.body.to_vec()).expect("utf-8");
            if body.lines().any(|l| l == tag) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{rendition}: the standby never listed {tag}\n{body}\n{}",
                standby.log()
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    assert!(standby.log().contains("cues copied from the primary"));
}
