//! Tests of the request parser: every URL the origin serves, the refusals, and properties over
//! arbitrary input.

use proptest::prelude::*;

use super::*;

fn bad(path: &str, query: Option<&str>) -> String {
    match parse(path, query) {
        Err(RequestError::BadRequest(reason)) => reason,
        other => panic!("{path}?{query:?} should be a bad request, got {other:?}"),
    }
}

#[test]
fn every_url_the_origin_serves_is_recognized() {
    assert_eq!(
        parse("/live/demo/master.m3u8", None),
        Ok(Route::Master { stream: "demo" })
    );
    assert_eq!(
        parse(
            "/live/demo/720p/index.m3u8",
            Some("_HLS_msn=12&_HLS_part=3&_HLS_skip=YES")
        ),
        Ok(Route::Playlist {
            stream: "demo",
            rendition: "720p",
            directives: Directives {
                msn: Some(12),
                part: Some(3),
                skip: true
            }
        })
    );
    assert_eq!(
        parse("/live/demo/720p/init.mp4", None),
        Ok(Route::Init {
            stream: "demo",
            rendition: "720p",
            id: None
        })
    );
    assert_eq!(
        parse("/live/demo/720p/init-900.mp4", None),
        Ok(Route::Init {
            stream: "demo",
            rendition: "720p",
            id: Some(900)
        })
    );
    assert_eq!(
        parse("/live/demo/audio/901.m4s", None),
        Ok(Route::Segment {
            stream: "demo",
            rendition: "audio",
            msn: 901
        })
    );
    assert_eq!(
        parse("/live/demo/audio/901.4.m4s", None),
        Ok(Route::Part {
            stream: "demo",
            rendition: "audio",
            msn: 901,
            part: 4
        })
    );
    assert_eq!(parse("/api/streams", None), Ok(Route::Streams));
    assert_eq!(parse("/api/events", None), Ok(Route::Events));
    assert_eq!(
        parse("/api/streams/demo", None),
        Ok(Route::StreamItem { stream: "demo" })
    );
    assert_eq!(
        parse("/api/streams/demo/thumbnail.jpg", None),
        Ok(Route::Thumbnail { stream: "demo" })
    );
    assert_eq!(
        parse("/api/streams/demo/cues", None),
        Ok(Route::Cues { stream: "demo" })
    );
    assert_eq!(
        parse("/api/streams/demo/sessions/20261206T070142Z", None),
        Ok(Route::Session {
            stream: "demo",
            session: "20261206T070142Z"
        })
    );
    assert_eq!(
        parse("/api/streams/demo/epoch", None),
        Ok(Route::Epoch { stream: "demo" })
    );
    assert_eq!(
        parse("/api/streams/demo/playback-url", Some("ttl=60")),
        Ok(Route::PlaybackUrl { stream: "demo" })
    );
    assert_eq!(parse("/healthz", None), Ok(Route::Health));
    assert_eq!(
        parse("/live/demo/720p/dvr.m3u8", Some("start=-120")),
        Ok(Route::Dvr {
            stream: "demo",
            rendition: Some("720p"),
            start: Some(Start(-120_000))
        })
    );
    assert_eq!(
        parse("/live/demo/dvr.m3u8", None),
        Ok(Route::Dvr {
            stream: "demo",
            rendition: None,
            start: None
        })
    );
    assert_eq!(
        parse("/vod/demo/20261206T070142Z/720p/901.m4s", None),
        Ok(Route::Vod {
            stream: "demo",
            session: "20261206T070142Z",
            file: VodFile::Segment("720p", 901),
            start: None
        })
    );
    assert_eq!(
        parse("/vod/demo/20261206T070142Z/master.m3u8", Some("start=30.5")),
        Ok(Route::Vod {
            stream: "demo",
            session: "20261206T070142Z",
            file: VodFile::Master,
            start: Some(Start(30_500))
        })
    );
    for path in [
        "/vod/demo/20261206T070142Z/720p/init-3.mp4",
        "/vod/demo/20261206T070142Z/720p/index.m3u8",
        "/vod/demo/20261206T070142Z/thumbnail.jpg",
    ] {
        assert!(matches!(parse(path, None), Ok(Route::Vod { .. })), "{path}");
    }
}

#[test]
fn replay_urls_refuse_what_they_do_not_serve() {
    for path in [
        "/vod/demo/2026-12-06/master.m3u8",
        "/vod/demo/20261206T070142Z/720p/1.2.m4s",
        "/vod/demo/20261206T070142Z/720p/init.mp4",
        "/vod/demo/20261206T070142Z/a/b/c.m4s",
        "/vod/demo/20261206T070142Z",
    ] {
        assert_eq!(parse(path, None), Err(RequestError::NotFound), "{path}");
    }
    for query in [
        "start=abc",
        "start=-1e9",
        "start=1.2345",
        "start=99999999",
        "start=1&start=2",
        "start=",
        "start=-",
    ] {
        assert!(
            matches!(
                parse("/live/demo/dvr.m3u8", Some(query)),
                Err(RequestError::BadRequest(_))
            ),
            "{query}"
        );
    }
    assert_eq!(Start(-120_000).query(), "start=-120");
    assert_eq!(Start(30_500).query(), "start=30.5");
}

#[test]
fn malformed_directives_are_bad_requests() {
    let p = "/live/demo/720p/index.m3u8";
    assert!(
        bad(p, Some("_HLS_part=3")).contains("requires _HLS_msn"),
        "rule 60"
    );
    assert!(bad(p, Some("_HLS_msn=abc")).contains("_HLS_msn"));
    assert!(bad(p, Some("_HLS_msn=-1")).contains("_HLS_msn"));
    assert!(
        bad(p, Some("_HLS_msn=99999999999999999999999")).contains("_HLS_msn"),
        "does not fit"
    );
    assert!(bad(p, Some("_HLS_msn=1&_HLS_part=x")).contains("_HLS_part"));
    assert!(bad(p, Some("_HLS_msn=1&_HLS_msn=2")).contains("twice"));
    assert!(bad(p, Some("_HLS_skip=NO")).contains("YES or v2"));
    assert!(bad(p, Some(&"a=b&".repeat(2000))).contains("4096"));
}

#[test]
fn other_query_parameters_are_ignored() {
    let route = parse(
        "/live/demo/720p/index.m3u8",
        Some("token=abc&_HLS_msn=5&_HLS_future=1&x"),
    )
    .expect("valid");
    assert_eq!(
        route,
        Route::Playlist {
            stream: "demo",
            rendition: "720p",
            directives: Directives {
                msn: Some(5),
                part: None,
                skip: false
            }
        }
    );
}

#[test]
fn path_tricks_are_bad_requests() {
    assert!(bad("/live/demo/../../etc/passwd", None).contains(".."));
    assert!(bad("/live/demo/720p/./index.m3u8", None).contains("'.'"));
    assert!(bad("/live/demo%2F720p/index.m3u8", None).contains("percent"));
    assert!(bad("/live/demo/720p%2f..%2f..%2fx", None).contains("percent"));
    assert!(bad("/live\\demo/master.m3u8", None).contains("backslash"));
    assert!(bad(&format!("/{}", "a".repeat(600)), None).contains("512"));
    assert!(bad("live/demo/master.m3u8", None).contains("start with"));
}

#[test]
fn unknown_shapes_are_not_found() {
    for path in [
        "/",
        "/live/demo",
        "/live/demo/720p/index.m3u",
        "/live/demo/720p/abc.m4s",
        "/live/demo/720p/1.2.3.m4s",
        "/live/demo/720p/99999999999999999999999.m4s",
        "/live/demo/720p/init-x.mp4",
        "/live/de mo/master.m3u8",
        "/live//720p/index.m3u8",
        "/live/demo/720p/index.m3u8/extra",
    ] {
        assert_eq!(parse(path, None), Err(RequestError::NotFound), "{path}");
    }
}

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,64}"
}

proptest! {
    #[test]
    fn arbitrary_input_never_panics(path in ".{0,700}", query in proptest::option::of(".{0,300}")) {
        let _ = parse(&path, query.as_deref());
    }

    #[test]
    fn arbitrary_bytes_never_panic(path in proptest::collection::vec(any::<u8>(), 0..600)) {
        let path = String::from_utf8_lossy(&path);
        let _ = parse(&path, Some(&path));
    }

    #[test]
    fn generated_part_urls_parse_back(stream in name(), rendition in name(), msn: u64, part: u64) {
        let path = format!("/live/{stream}/{rendition}/{msn}.{part}.m4s");
        prop_assert_eq!(
            parse(&path, None),
            Ok(Route::Part { stream: &stream, rendition: &rendition, msn, part })
        );
    }

    #[test]
    fn generated_start_offsets_parse_back(millis in -86_400_000i64..=86_400_000) {
        let q = Start(millis).query();
        prop_assert_eq!(start(Some(&q)), Ok(Some(Start(millis))));
    }

    #[test]
    fn generated_directives_parse_back(msn: u64, part in proptest::option::of(any::<u64>()), skip: bool) {
        let mut q = format!("_HLS_msn={msn}");
        if let Some(p) = part {
            q.push_str(&format!("&_HLS_part={p}"));
        }
        if skip {
            q.push_str("&_HLS_skip=YES");
        }
        prop_assert_eq!(directives(&q), Ok(Directives { msn: Some(msn), part, skip }));
    }
}
