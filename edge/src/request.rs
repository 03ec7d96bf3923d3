//! What a player's request asks for, read before any cache or upstream work: the kind of
//! object (which picks its cache policy and its metrics label) and the cache key.
//!
//! The key is the path plus, for playlists, the LL-HLS directives `_HLS_msn`, `_HLS_part` and
//! `_HLS_skip` in a fixed order with canonical values; every other query parameter (a
//! signature, a player's cache-buster) is not part of it, so that a million players asking for
//! the same part share one entry and one upstream fetch. Pure code over untrusted bytes: every
//! input gets a key or a [`RequestError`], never a panic, and nothing grows with the input.

use std::fmt::Write as _;

/// Longest path accepted (bytes).
pub const MAX_PATH: usize = 1024;
/// Longest query string accepted (bytes).
pub const MAX_QUERY: usize = 2048;

/// What kind of object a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// `master.m3u8`.
    Multivariant,
    /// A media playlist asked with `_HLS_msn` (the origin holds it until the part exists).
    BlockingPlaylist,
    /// A media playlist without directives.
    Playlist,
    /// `{msn}.{part}.m4s`: a part, maybe only hinted so far.
    Part,
    /// `{msn}.m4s`.
    Segment,
    /// `init*.mp4`.
    Init,
    /// `/api/...`: passed through, never cached.
    Api,
    /// Anything else under `/live/` or elsewhere: proxied with the origin's own cache policy.
    Other,
    /// A file of the watch page, answered by the edge itself.
    Page,
}

impl ObjectKind {
    /// The label used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Multivariant => "multivariant",
            ObjectKind::BlockingPlaylist => "blocking_playlist",
            ObjectKind::Playlist => "playlist",
            ObjectKind::Part => "part",
            ObjectKind::Segment => "segment",
            ObjectKind::Init => "init",
            ObjectKind::Api => "api",
            ObjectKind::Other => "other",
            ObjectKind::Page => "page",
        }
    }

    /// Every kind, for metrics set-up.
    pub const ALL: [ObjectKind; 9] = [
        ObjectKind::Multivariant,
        ObjectKind::BlockingPlaylist,
        ObjectKind::Playlist,
        ObjectKind::Part,
        ObjectKind::Segment,
        ObjectKind::Init,
        ObjectKind::Api,
        ObjectKind::Other,
        ObjectKind::Page,
    ];

    /// Whether this kind is a playlist (its URIs carry a player's signature on).
    pub fn is_playlist(self) -> bool {
        matches!(
            self,
            ObjectKind::Multivariant | ObjectKind::Playlist | ObjectKind::BlockingPlaylist
        )
    }

    /// Whether the origin may hold a request of this kind until the object exists: a
    /// blocking playlist, or media (the next part is hinted before it exists; the segment
    /// being written is answered when complete).
    pub fn held(self) -> bool {
        matches!(
            self,
            ObjectKind::BlockingPlaylist | ObjectKind::Part | ObjectKind::Segment
        )
    }

    /// Whether the edge caches (and coalesces) this kind.
    pub fn cacheable(self) -> bool {
        !matches!(self, ObjectKind::Api | ObjectKind::Page)
    }
}

/// Why a request was refused before any cache or upstream work (answered 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The path is longer than [`MAX_PATH`] or the query longer than [`MAX_QUERY`].
    #[error("request target too long")]
    TooLong,
    /// The path is not absolute, or has `.`/`..` segments, empty segments, a backslash, a
    /// percent escape or a control character: it could alias another object.
    #[error("path not in canonical form")]
    Path,
    /// An LL-HLS directive has a value that is not what the spec allows.
    #[error("bad value for {0}")]
    Directive(&'static str),
    /// An LL-HLS directive appears twice.
    #[error("{0} given twice")]
    Repeated(&'static str),
    /// `_HLS_part` without `_HLS_msn`.
    #[error("_HLS_part without _HLS_msn")]
    PartWithoutMsn,
}

/// A request read for the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRequest {
    /// What it asks for.
    pub kind: ObjectKind,
    /// The cache key: the path plus the normalized directives.
    pub key: String,
}

/// The LL-HLS directives of a playlist request.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Directives {
    msn: Option<u64>,
    part: Option<u64>,
    /// `YES` (false) or `v2` (true).
    skip: Option<bool>,
    /// `start` of a replay playlist (`EXT-X-START`), in milliseconds.
    start: Option<i64>,
}

/// Reads `path` and `query` (without the `?`) into a kind and a cache key.
pub fn read(path: &str, query: Option<&str>) -> Result<CacheRequest, RequestError> {
    if path.len() > MAX_PATH || query.is_some_and(|q| q.len() > MAX_QUERY) {
        return Err(RequestError::TooLong);
    }
    check_path(path)?;
    let kind = kind_of(path);
    let mut key = String::with_capacity(path.len() + 48);
    key.push_str(path);
    if matches!(kind, ObjectKind::Playlist | ObjectKind::Multivariant) {
        let d = directives(query.unwrap_or(""))?;
        if d.part.is_some() && d.msn.is_none() {
            return Err(RequestError::PartWithoutMsn);
        }
        let mut sep = '?';
        let mut add = |name: &str, value: &dyn std::fmt::Display| {
            let _ = write!(key, "{sep}{name}={value}");
            sep = '&';
        };
        if let Some(msn) = d.msn {
            add("_HLS_msn", &msn);
        }
        if let Some(part) = d.part {
            add("_HLS_part", &part);
        }
        if let Some(v2) = d.skip {
            add("_HLS_skip", if v2 { &"v2" } else { &"YES" });
        }
        if let Some(millis) = d.start {
            let sign = if millis < 0 { "-" } else { "" };
            let abs = millis.abs();
            add(
                "start",
                &format_args!("{sign}{}.{:03}", abs / 1000, abs % 1000),
            );
        }
        let kind = if d.msn.is_some() && kind == ObjectKind::Playlist {
            ObjectKind::BlockingPlaylist
        } else {
            kind
        };
        return Ok(CacheRequest { kind, key });
    }
    Ok(CacheRequest { kind, key })
}

fn check_path(path: &str) -> Result<(), RequestError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(RequestError::Path);
    };
    if rest.is_empty() {
        return Ok(());
    }
    for segment in rest.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(RequestError::Path);
        }
        if segment
            .bytes()
            .any(|b| b == b'\\' || b == b'%' || !(0x21..0x7f).contains(&b))
        {
            return Err(RequestError::Path);
        }
    }
    Ok(())
}

fn kind_of(path: &str) -> ObjectKind {
    if path.starts_with("/api/") || path == "/api" {
        return ObjectKind::Api;
    }
    let name = path.rsplit('/').next().unwrap_or("");
    if name == "master.m3u8" {
        return ObjectKind::Multivariant;
    }
    if name.ends_with(".m3u8") {
        return ObjectKind::Playlist;
    }
    if name.starts_with("init") && name.ends_with(".mp4") {
        return ObjectKind::Init;
    }
    if let Some(stem) = name.strip_suffix(".m4s") {
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        return match stem.split_once('.') {
            Some((msn, part)) if digits(msn) && digits(part) => ObjectKind::Part,
            None if digits(stem) => ObjectKind::Segment,
            _ => ObjectKind::Other,
        };
    }
    ObjectKind::Other
}

fn directives(query: &str) -> Result<Directives, RequestError> {
    let mut d = Directives::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "_HLS_msn" => set(&mut d.msn, "_HLS_msn", number(value, "_HLS_msn")?)?,
            "_HLS_part" => set(&mut d.part, "_HLS_part", number(value, "_HLS_part")?)?,
            "_HLS_skip" => {
                let v2 = match value {
                    "YES" => false,
                    "v2" => true,
                    _ => return Err(RequestError::Directive("_HLS_skip")),
                };
                set(&mut d.skip, "_HLS_skip", v2)?
            }
            "start" => set(&mut d.start, "start", offset(value)?)?,
            _ => {}
        }
    }
    Ok(d)
}

fn set<T>(slot: &mut Option<T>, name: &'static str, value: T) -> Result<(), RequestError> {
    if slot.replace(value).is_some() {
        return Err(RequestError::Repeated(name));
    }
    Ok(())
}

/// A replay playlist's `start`: seconds within a day either way, at most three decimals,
/// kept as milliseconds so `-120` and `-120.000` share a key.
fn offset(value: &str) -> Result<i64, RequestError> {
    let bad = RequestError::Directive("start");
    let (negative, digits) = match value.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, value),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty()
        || whole.len() > 5
        || frac.len() > 3
        || !whole
            .bytes()
            .chain(frac.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return Err(bad);
    }
    let whole: i64 = whole.parse().map_err(|_| bad.clone())?;
    let frac: i64 = format!("{frac:0<3}").parse().map_err(|_| bad.clone())?;
    let millis = whole * 1000 + frac;
    if millis > 86_400_000 {
        return Err(bad);
    }
    Ok(if negative { -millis } else { millis })
}

/// A decimal integer as the spec writes it (no sign, no spaces, at most 19 digits). Leading
/// zeros are accepted and dropped, so `_HLS_msn=007` and `_HLS_msn=7` share a key.
fn number(value: &str, name: &'static str) -> Result<u64, RequestError> {
    if value.is_empty() || value.len() > 19 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RequestError::Directive(name));
    }
    value.parse().map_err(|_| RequestError::Directive(name))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key(path: &str, query: &str) -> String {
        read(path, Some(query)).expect("accepted").key
    }

    #[test]
    fn a_replay_playlists_start_is_part_of_its_key() {
        let p = "/live/d/720p/dvr.m3u8";
        assert_eq!(
            key(p, "start=-120&sig=x"),
            "/live/d/720p/dvr.m3u8?start=-120.000"
        );
        assert_eq!(key(p, "start=-120.000"), key(p, "start=-120"));
        assert_eq!(key(p, "start=-0.5"), "/live/d/720p/dvr.m3u8?start=-0.500");
        assert_ne!(key(p, "start=-60"), key(p, "start=-120"));
        assert_eq!(
            key("/live/d/dvr.m3u8", "start=30"),
            "/live/d/dvr.m3u8?start=30.000"
        );
        for bad in [
            "start=x",
            "start=1e3",
            "start=99999999",
            "start=1&start=2",
            "start=1.2345",
        ] {
            assert!(read(p, Some(bad)).is_err(), "{bad}");
        }
        // Media keys never carry it.
        assert_eq!(
            key("/vod/d/20261206T070142Z/720p/5.m4s", "start=3"),
            "/vod/d/20261206T070142Z/720p/5.m4s"
        );
    }

    #[test]
    fn directives_are_ordered_and_other_parameters_dropped() {
        let p = "/live/demo/720p/index.m3u8";
        let expected = format!("{p}?_HLS_msn=12&_HLS_part=3&_HLS_skip=YES");
        assert_eq!(key(p, "_HLS_msn=12&_HLS_part=3&_HLS_skip=YES"), expected);
        assert_eq!(key(p, "_HLS_skip=YES&_HLS_part=3&_HLS_msn=12"), expected);
        assert_eq!(
            key(
                p,
                "exp=1700000000&sig=abcd&_HLS_part=03&_HLS_msn=012&_HLS_skip=YES&x"
            ),
            expected
        );
        assert_eq!(key(p, "sig=abcd"), p);
        assert_eq!(key(p, ""), p);
        assert_eq!(key(p, "_HLS_skip=v2"), format!("{p}?_HLS_skip=v2"));
    }

    #[test]
    fn kinds_follow_the_url_layout() {
        let kind = |path: &str, query: &str| read(path, Some(query)).expect("accepted").kind;
        assert_eq!(kind("/live/d/master.m3u8", ""), ObjectKind::Multivariant);
        assert_eq!(kind("/live/d/720p/index.m3u8", ""), ObjectKind::Playlist);
        assert_eq!(
            kind("/live/d/720p/index.m3u8", "_HLS_msn=4"),
            ObjectKind::BlockingPlaylist
        );
        assert_eq!(kind("/live/d/720p/17.2.m4s", ""), ObjectKind::Part);
        assert_eq!(kind("/live/d/720p/17.m4s", ""), ObjectKind::Segment);
        assert_eq!(kind("/live/d/720p/init-17.mp4", ""), ObjectKind::Init);
        assert_eq!(kind("/live/d/720p/init.mp4", ""), ObjectKind::Init);
        assert_eq!(kind("/api/streams", ""), ObjectKind::Api);
        assert_eq!(kind("/live/d/720p/x.m4s", ""), ObjectKind::Other);
        assert!(!ObjectKind::Api.cacheable());
        assert!(ObjectKind::Part.cacheable());
    }

    #[test]
    fn media_keys_ignore_the_query() {
        assert_eq!(
            key("/live/d/720p/17.2.m4s", "_HLS_msn=3&sig=1"),
            "/live/d/720p/17.2.m4s"
        );
    }

    #[test]
    fn bad_requests_are_refused() {
        let p = "/live/d/720p/index.m3u8";
        let err = |path: &str, query: &str| read(path, Some(query)).expect_err("refused");
        assert_eq!(err(p, "_HLS_msn=-1"), RequestError::Directive("_HLS_msn"));
        assert_eq!(err(p, "_HLS_msn=1e3"), RequestError::Directive("_HLS_msn"));
        assert_eq!(err(p, "_HLS_msn="), RequestError::Directive("_HLS_msn"));
        assert_eq!(
            err(p, "_HLS_msn=99999999999999999999"),
            RequestError::Directive("_HLS_msn")
        );
        assert_eq!(
            err(p, "_HLS_msn=1&_HLS_msn=2"),
            RequestError::Repeated("_HLS_msn")
        );
        assert_eq!(err(p, "_HLS_part=1"), RequestError::PartWithoutMsn);
        assert_eq!(
            err(p, "_HLS_skip=yes"),
            RequestError::Directive("_HLS_skip")
        );
        for path in [
            "live/d/x.m4s",
            "/live/../d/x.m4s",
            "/live/./x",
            "/live//x",
            "/live/%2e%2e/x",
            "/live/a\\b",
            "/live/a b",
        ] {
            assert_eq!(err(path, ""), RequestError::Path, "{path:?}");
        }
        assert_eq!(
            err(&format!("/{}", "a".repeat(MAX_PATH)), ""),
            RequestError::TooLong
        );
        assert_eq!(
            read(p, Some(&"a".repeat(MAX_QUERY + 1))),
            Err(RequestError::TooLong)
        );
    }

    proptest! {
        #[test]
        fn any_input_gets_a_key_or_an_error(path in ".{0,200}", query in ".{0,200}") {
            if let Ok(r) = read(&path, Some(&query)) {
                prop_assert!(r.key.starts_with(&path));
                prop_assert!(r.key.len() <= path.len() + 80);
            }
        }

        #[test]
        fn the_order_of_parameters_never_changes_the_key(
            msn in 0u64..1_000_000, part in 0u64..20, junk in "[a-z]{1,8}=[a-z0-9]{0,8}", skip: bool,
        ) {
            let p = "/live/d/720p/index.m3u8";
            let mut params = vec![format!("_HLS_msn={msn}"), format!("_HLS_part={part}"), junk];
            if skip {
                params.push("_HLS_skip=YES".to_string());
            }
            let forward = key(p, &params.join("&"));
            params.reverse();
            prop_assert_eq!(&forward, &key(p, &params.join("&")));
            prop_assert_eq!(read(p, Some(&params.join("&"))).expect("ok").kind, ObjectKind::BlockingPlaylist);
        }
    }
}
