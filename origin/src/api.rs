//! `GET /api/streams`: the catalog (the streams, their state, renditions, titles, thumbnails
//! and viewers, and the past broadcasts), as JSON; and `GET /api/streams/{name}/playback-url`:
//! a signed, expiring URL of a stream for a player.

use serde::Serialize;

use crate::replay::catalog::Catalog;
use crate::replay::{Replay, SessionSummary};
use crate::stream::{Lifecycle, Stream, StreamStatus};
use corral_transcoder::fmp4::MediaKind;

/// The answer of `/api/streams`.
#[derive(Debug, Serialize)]
pub struct StreamList {
    /// The configured streams the query selects.
    pub streams: Vec<StreamInfo>,
    /// The past broadcasts it selects (archived VODs).
    pub sessions: Vec<SessionSummary>,
}

/// Where a stream is, as the catalog groups them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Nothing planned, nothing on.
    Idle,
    /// Announced (metadata with a schedule) or its publisher is connecting.
    Pending,
    /// On air (live, on its slate, or its transcoder restarting).
    Live,
    /// Its broadcast ended.
    Ended,
}

/// How to order the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    /// Newest start first (the default).
    #[default]
    Started,
    /// Most viewers first.
    Viewers,
    /// By title (then name), A to Z.
    Title,
    /// By stream name.
    Name,
}

/// `?state=&q=&sort=` of `/api/streams`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogQuery {
    /// Only streams in this phase; `ended` lists past broadcasts.
    pub state: Option<Phase>,
    /// Words the name, title or description must contain (any case).
    pub q: Option<String>,
    /// The order.
    pub sort: Sort,
}

/// Longest `q` accepted, in characters.
pub const MAX_Q: usize = 100;

/// Parses the catalog's query string; the reason when it is refused.
pub fn catalog_query(query: Option<&str>) -> Result<CatalogQuery, String> {
    let mut out = CatalogQuery::default();
    let Some(query) = query else { return Ok(out) };
    if query.len() > 1024 {
        return Err("the query string is longer than 1024 bytes".into());
    }
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_encoding::percent_decode_str(&raw.replace('+', " "))
            .decode_utf8()
            .map_err(|_| format!("{key} is not UTF-8"))?
            .into_owned();
        match key {
            "state" => {
                out.state = Some(match value.as_str() {
                    "live" => Phase::Live,
                    "ended" => Phase::Ended,
                    "pending" => Phase::Pending,
                    "idle" => Phase::Idle,
                    _ => {
                        return Err(format!(
                            "state must be live, ended, pending or idle, got {:?}",
                            value.chars().take(20).collect::<String>()
                        ));
                    }
                })
            }
            "q" => {
                let q = value.trim();
                if q.chars().count() > MAX_Q || q.chars().any(char::is_control) {
                    return Err(format!("q must be at most {MAX_Q} printable characters"));
                }
                out.q = (!q.is_empty()).then(|| q.to_lowercase());
            }
            "sort" => {
                out.sort = match value.as_str() {
                    "started" | "" => Sort::Started,
                    "viewers" => Sort::Viewers,
                    "title" => Sort::Title,
                    "name" => Sort::Name,
                    _ => {
                        return Err(format!(
                            "sort must be started, viewers, title or name, got {:?}",
                            value.chars().take(20).collect::<String>()
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

fn matches(q: &Option<String>, fields: &[Option<&str>]) -> bool {
    q.as_ref().is_none_or(|q| {
        fields
            .iter()
            .flatten()
            .any(|f| f.to_lowercase().contains(q.as_str()))
    })
}

/// The catalog `query` selects.
pub fn catalog(
    streams: &[&Stream],
    catalog: &Catalog,
    replay: Option<&Replay>,
    query: &CatalogQuery,
) -> StreamList {
    let mut listed: Vec<StreamInfo> = streams
        .iter()
        .map(|s| describe(s, catalog, replay))
        .filter(|i| query.state.is_none_or(|p| p == i.phase))
        .filter(|i| {
            matches(
                &query.q,
                &[Some(&i.name), i.title.as_deref(), i.description.as_deref()],
            )
        })
        .collect();
    let mut sessions: Vec<SessionSummary> = if matches!(query.state, None | Some(Phase::Ended)) {
        catalog
            .past()
            .into_iter()
            .filter(|p| {
                matches(
                    &query.q,
                    &[
                        Some(&p.stream),
                        p.title.as_deref(),
                        p.description.as_deref(),
                    ],
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    let title_key =
        |t: &Option<String>, n: &str| (t.clone().unwrap_or_default().to_lowercase(), n.to_string());
    match query.sort {
        Sort::Started => {
            listed.sort_by(|a, b| b.started.cmp(&a.started).then(a.name.cmp(&b.name)));
        }
        Sort::Viewers => {
            listed.sort_by(|a, b| b.viewers.cmp(&a.viewers).then(a.name.cmp(&b.name)));
        }
        Sort::Title => listed.sort_by_key(|i| title_key(&i.title, &i.name)),
        Sort::Name => listed.sort_by(|a, b| a.name.cmp(&b.name)),
    }
    match query.sort {
        Sort::Title => sessions.sort_by_key(|p| title_key(&p.title, &p.stream)),
        Sort::Name => {
            sessions.sort_by(|a, b| a.stream.cmp(&b.stream).then(b.started.cmp(&a.started)))
        }
        _ => sessions.sort_by(|a, b| b.started.cmp(&a.started)),
    }
    StreamList {
        streams: listed,
        sessions,
    }
}

/// One stream.
#[derive(Debug, Serialize)]
pub struct StreamInfo {
    /// Name in URLs.
    pub name: String,
    /// What feeds it.
    pub source: String,
    /// Lifecycle and transcoder state.
    #[serde(flatten)]
    pub status: StreamStatus,
    /// Path of the multivariant playlist.
    pub master: String,
    /// Renditions in ladder order, audio last.
    pub renditions: Vec<RenditionInfo>,
    /// Where it is, as the catalog groups streams.
    pub phase: Phase,
    /// The title the operator set.
    pub title: Option<String>,
    /// The description the operator set.
    pub description: Option<String>,
    /// When the operator plans it to start.
    pub scheduled: Option<String>,
    /// Its newest picture, while it is on air.
    pub thumbnail: Option<String>,
    /// The current (or last) broadcast's ID.
    pub session: Option<String>,
    /// When that broadcast started (RFC 3339).
    pub started: Option<String>,
    /// When it ended.
    pub ended: Option<String>,
    /// Viewers now, as the chat relay counts them.
    pub viewers: Option<u64>,
    /// Its DVR playlist (pause and seek back), when archiving is on.
    pub dvr: Option<String>,
}

/// One rendition.
#[derive(Debug, Serialize)]
pub struct RenditionInfo {
    /// Name in URLs.
    pub name: String,
    /// `video` or `audio`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// RFC 6381 codec, once the init segment is known.
    pub codec: Option<String>,
    /// Width in pixels (video).
    pub width: Option<u32>,
    /// Height in pixels (video).
    pub height: Option<u32>,
    /// The encoder's target bit rate.
    pub bitrate: Option<u64>,
    /// Path of the media playlist.
    pub playlist: String,
    /// MSN of the last published part.
    pub last_msn: Option<u64>,
    /// Index of the last published part.
    pub last_part: Option<u32>,
}

/// Describes `stream`.
pub fn describe(stream: &Stream, catalog: &Catalog, replay: Option<&Replay>) -> StreamInfo {
    let renditions = stream
        .renditions()
        .iter()
        .map(|r| {
            let track = r.track();
            let (width, height) = match track.as_ref().map(|t| &t.media) {
                Some(MediaKind::Video { width, height }) => (Some(*width), Some(*height)),
                _ => (None, None),
            };
            let last = r.with_log(|log| log.position().last_part);
            RenditionInfo {
                name: r.name().to_string(),
                kind: if r.is_audio() { "audio" } else { "video" },
                codec: track.and_then(|t| t.codec),
                width,
                height,
                bitrate: r.spec().bitrate.map(|b| b.0),
                playlist: format!("/live/{}/{}/index.m3u8", stream.name(), r.name()),
                last_msn: last.map(|(m, _)| m),
                last_part: last.map(|(_, p)| p),
            }
        })
        .collect();
    let status = stream.status();
    let meta = catalog.metadata(stream.name()).unwrap_or_default();
    let phase = match status.state {
        Lifecycle::Live | Lifecycle::Reconnecting | Lifecycle::Restarting => Phase::Live,
        Lifecycle::Starting => Phase::Pending,
        Lifecycle::Ended => Phase::Ended,
        Lifecycle::Idle if meta.title.is_some() || meta.scheduled.is_some() => Phase::Pending,
        Lifecycle::Idle => Phase::Idle,
    };
    let session = replay
        .and_then(|r| r.stream(stream.name()))
        .and_then(|r| r.current());
    let time = |t: std::time::SystemTime| humantime::format_rfc3339_millis(t).to_string();
    let on_air = phase == Phase::Live;
    StreamInfo {
        name: stream.name().to_string(),
        source: stream.source().to_string(),
        master: format!("/live/{}/master.m3u8", stream.name()),
        renditions,
        phase,
        title: meta.title,
        description: meta.description,
        scheduled: meta.scheduled,
        thumbnail: (on_air && catalog.thumbnail(stream.name()).is_some())
            .then(|| format!("/api/streams/{}/thumbnail.jpg", stream.name())),
        session: session.as_ref().map(|s| s.id.clone()),
        started: session
            .as_ref()
            .map(|s| time(s.started))
            .or_else(|| on_air.then(|| time(status.since))),
        ended: session.as_ref().and_then(|s| s.ended()).map(time),
        viewers: catalog.viewers(stream.name()).filter(|_| on_air),
        dvr: replay.map(|_| format!("/live/{}/dvr.m3u8", stream.name())),
        status,
    }
}

/// The answer of `/api/streams/{name}/playback-url`.
#[derive(Debug, Serialize)]
pub struct PlaybackUrl {
    /// The stream.
    pub stream: String,
    /// The multivariant playlist's path and signed query, to put after an edge's address.
    pub url: String,
    /// When it stops working (unix seconds).
    pub expires: u64,
}

/// `path` (a multivariant playlist of `stream`, live or VOD) signed with `key`, valid for `ttl`
/// seconds from `now`.
pub fn mint(
    key: &signed_url::Key,
    stream: &str,
    path: &str,
    ttl: u64,
    now: std::time::SystemTime,
) -> PlaybackUrl {
    let unix = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let expires = unix.saturating_add(ttl);
    let query = key.sign(path, expires).expect("a stream path has a scope");
    PlaybackUrl {
        stream: stream.to_string(),
        url: format!("{path}?{query}"),
        expires,
    }
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::packager::params::LlhlsParams;

    fn stream(name: &str, state: Lifecycle) -> std::sync::Arc<Stream> {
        let s = Stream::new(name, "testsrc", LlhlsParams::default(), 30, &[]);
        s.update_status(|st| st.state = state);
        s
    }

    #[test]
    fn the_catalog_filters_by_state_and_words_and_sorts() {
        let a = stream("alpha", Lifecycle::Live);
        let b = stream("bravo", Lifecycle::Live);
        let c = stream("charlie", Lifecycle::Idle);
        let d = stream("delta", Lifecycle::Ended);
        let cat = Catalog::new();
        let meta = |title: &str| crate::replay::catalog::Metadata {
            title: Some(title.into()),
            ..Default::default()
        };
        cat.set_metadata("alpha", Some(meta("Zebra Cup final")));
        cat.set_metadata("bravo", Some(meta("Cup semi-final")));
        cat.set_metadata("charlie", Some(meta("Next week")));
        cat.set_viewers("alpha", Some(10));
        cat.set_viewers("bravo", Some(30));
        let all = [&*a, &*b, &*c, &*d];
        let names = |q: &str| -> Vec<String> {
            let query = catalog_query(Some(q)).expect("valid");
            catalog(&all, &cat, None, &query)
                .streams
                .into_iter()
                .map(|s| s.name)
                .collect()
        };
        assert_eq!(names("state=live&sort=viewers"), ["bravo", "alpha"]);
        assert_eq!(names("state=live&sort=title"), ["bravo", "alpha"]);
        assert_eq!(names("q=CUP&sort=name"), ["alpha", "bravo"]);
        assert_eq!(names("q=cup+final"), ["alpha"]);
        assert_eq!(names("q=semi%2Dfinal"), ["bravo"]);
        assert_eq!(names("state=pending"), ["charlie"], "titled, not on air");
        assert_eq!(names("state=ended"), ["delta"]);
        assert_eq!(names("state=idle"), Vec::<String>::new());
        let live = catalog(
            &all,
            &cat,
            None,
            &catalog_query(Some("state=live")).expect("ok"),
        );
        assert_eq!(
            live.streams[0].viewers.unwrap_or(0) + live.streams[1].viewers.unwrap_or(0),
            40
        );
    }

    #[test]
    fn bad_catalog_queries_say_why() {
        assert!(
            catalog_query(Some("state=gone"))
                .expect_err("state")
                .contains("state")
        );
        assert!(
            catalog_query(Some("sort=size"))
                .expect_err("sort")
                .contains("sort")
        );
        assert!(catalog_query(Some(&format!("q={}", "x".repeat(101)))).is_err());
        assert!(
            catalog_query(Some("q=%FF"))
                .expect_err("utf-8")
                .contains("UTF-8")
        );
        assert!(
            catalog_query(Some("q=a%0Ab")).is_err(),
            "control characters"
        );
        assert_eq!(
            catalog_query(Some("other=1&q=")),
            Ok(CatalogQuery::default())
        );
    }

    proptest! {
        #[test]
        fn any_query_string_gets_a_query_or_a_reason(q in ".{0,1200}") {
            let _ = catalog_query(Some(&q));
        }

        #[test]
        fn plain_words_are_found_whatever_their_case(word in "[A-Za-z0-9]{1,30}") {
            let q = catalog_query(Some(&format!("q={word}"))).expect("valid");
            prop_assert_eq!(q.q, Some(word.to_lowercase()));
        }
    }
}
