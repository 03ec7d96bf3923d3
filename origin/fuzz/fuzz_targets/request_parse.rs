//! Fuzzes `corral_origin::http::request::{parse, directives}`, which turn the untrusted path and
//! query of every HTTP request into a route, and `corral_origin::api::catalog_query`, which
//! reads the catalog's query string.
//!
//! The input, read as lossy UTF-8, is split at its first '?' into path and query. Checked:
//! nothing panics; a playlist route carries exactly the directives `directives` finds in the
//! query; `_HLS_part` never comes without `_HLS_msn`; and every route, written back as the
//! canonical URL the origin serves, parses to the same route.

#![no_main]

use corral_origin::api::catalog_query;
use corral_origin::http::request::{Directives, Route, Start, VodFile, directives, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let (path, query) = match input.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (&*input, None),
    };
    if let Ok(q) = catalog_query(query) {
        assert!(q.q.as_ref().is_none_or(|w| w.chars().count() <= 100), "{q:?}");
    }
    let parsed_directives = directives(query.unwrap_or(""));
    if let Ok(d) = &parsed_directives {
        assert!(
            d.part.is_none() || d.msn.is_some(),
            "_HLS_part without _HLS_msn: {d:?}"
        );
    }
    let Ok(route) = parse(path, query) else {
        return;
    };
    if let Route::Playlist { directives: d, .. } = &route {
        assert_eq!(Ok(d), parsed_directives.as_ref());
    }
    let (url, url_query) = canonical(&route);
    let reparsed = parse(&url, url_query.as_deref());
    assert_eq!(reparsed.as_ref(), Ok(&route), "{url}?{url_query:?}");
});

/// The URL (path and query) the origin serves for `route`.
fn canonical(route: &Route<'_>) -> (String, Option<String>) {
    match route {
        Route::Master { stream } => (format!("/live/{stream}/master.m3u8"), None),
        Route::Playlist {
            stream,
            rendition,
            directives,
        } => (
            format!("/live/{stream}/{rendition}/index.m3u8"),
            Some(directives_query(directives)),
        ),
        Route::Init {
            stream,
            rendition,
            id: None,
        } => (format!("/live/{stream}/{rendition}/init.mp4"), None),
        Route::Init {
            stream,
            rendition,
            id: Some(id),
        } => (format!("/live/{stream}/{rendition}/init-{id}.mp4"), None),
        Route::Segment {
            stream,
            rendition,
            msn,
        } => (format!("/live/{stream}/{rendition}/{msn}.m4s"), None),
        Route::Part {
            stream,
            rendition,
            msn,
            part,
        } => (format!("/live/{stream}/{rendition}/{msn}.{part}.m4s"), None),
        Route::Streams => ("/api/streams".to_string(), None),
        Route::PlaybackUrl { stream } => (format!("/api/streams/{stream}/playback-url"), None),
        Route::Epoch { stream } => (format!("/api/streams/{stream}/epoch"), None),
        Route::Health => ("/healthz".to_string(), None),
        Route::Events => ("/api/events".to_string(), None),
        Route::StreamItem { stream } => (format!("/api/streams/{stream}"), None),
        Route::Thumbnail { stream } => (format!("/api/streams/{stream}/thumbnail.jpg"), None),
        Route::Cues { stream } => (format!("/api/streams/{stream}/cues"), None),
        Route::Session { stream, session } => {
            (format!("/api/streams/{stream}/sessions/{session}"), None)
        }
        Route::Dvr {
            stream,
            rendition,
            start,
        } => {
            let path = match rendition {
                Some(r) => format!("/live/{stream}/{r}/dvr.m3u8"),
                None => format!("/live/{stream}/dvr.m3u8"),
            };
            (path, start.map(Start::query))
        }
        Route::Vod {
            stream,
            session,
            file,
            start,
        } => {
            let path = match file {
                VodFile::Master => format!("/vod/{stream}/{session}/master.m3u8"),
                VodFile::Thumbnail => format!("/vod/{stream}/{session}/thumbnail.jpg"),
                VodFile::Playlist(r) => format!("/vod/{stream}/{session}/{r}/index.m3u8"),
                VodFile::Segment(r, msn) => format!("/vod/{stream}/{session}/{r}/{msn}.m4s"),
                VodFile::Init(r, id) => format!("/vod/{stream}/{session}/{r}/init-{id}.mp4"),
            };
            (path, start.map(Start::query))
        }
    }
}

fn directives_query(d: &Directives) -> String {
    let mut pairs = Vec::new();
    if let Some(msn) = d.msn {
        pairs.push(format!("_HLS_msn={msn}"));
    }
    if let Some(part) = d.part {
        pairs.push(format!("_HLS_part={part}"));
    }
    if d.skip {
        pairs.push("_HLS_skip=YES".to_string());
    }
    pairs.join("&")
}
