//! Parses a request's path and query into a [`Route`], strictly: only the URLs the origin
//! serves are recognized, and anything that looks like a path trick is refused.
//!
//! Pure code over untrusted bytes; it has a fuzz target (`origin/fuzz`) and property tests.

use crate::packager::blocking::PlaylistDemand;

/// Longest path accepted.
pub const MAX_PATH_LEN: usize = 512;
/// Longest query string accepted (signatures and player tokens included).
pub const MAX_QUERY_LEN: usize = 4096;

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/live/{stream}/master.m3u8`
    Master {
        /// Stream name.
        stream: &'a str,
    },
    /// `/live/{stream}/{rendition}/index.m3u8` with its LL-HLS directives.
    Playlist {
        /// Stream name.
        stream: &'a str,
        /// Rendition name.
        rendition: &'a str,
        /// `_HLS_msn`, `_HLS_part`, `_HLS_skip`.
        directives: Directives,
    },
    /// `/live/{stream}/{rendition}/init.mp4` (the current one) or `init-{id}.mp4`.
    Init {
        /// Stream name.
        stream: &'a str,
        /// Rendition name.
        rendition: &'a str,
        /// The init segment's ID; `None` for the current one.
        id: Option<u64>,
    },
    /// `/live/{stream}/{rendition}/{msn}.m4s`
    Segment {
        /// Stream name.
        stream: &'a str,
        /// Rendition name.
        rendition: &'a str,
        /// Media sequence number.
        msn: u64,
    },
    /// `/live/{stream}/{rendition}/{msn}.{part}.m4s`
    Part {
        /// Stream name.
        stream: &'a str,
        /// Rendition name.
        rendition: &'a str,
        /// Media sequence number of the parent segment.
        msn: u64,
        /// Part index.
        part: u64,
    },
    /// `/live/{stream}/dvr.m3u8` (multivariant) or `/live/{stream}/{rendition}/dvr.m3u8`: the
    /// DVR window, `?start=` seconds (`EXT-X-START`).
    Dvr {
        /// Stream name.
        stream: &'a str,
        /// Rendition name; `None` for the multivariant playlist.
        rendition: Option<&'a str>,
        /// Where players start: seconds from the start, or from the end when negative.
        start: Option<Start>,
    },
    /// `/vod/{stream}/{session}/...`: a finished broadcast from the archive.
    Vod {
        /// Stream name.
        stream: &'a str,
        /// Session ID.
        session: &'a str,
        /// What is asked, under the session.
        file: VodFile<'a>,
        /// `?start=` for playlists.
        start: Option<Start>,
    },
    /// `/api/streams`: the catalog (`?state=`, `q=`, `sort=`); POST adds a stream's metadata.
    Streams,
    /// `/api/streams/{stream}`: one stream; PATCH and DELETE change its metadata.
    StreamItem {
        /// Stream name.
        stream: &'a str,
    },
    /// `/api/streams/{stream}/thumbnail.jpg`: the newest picture of a live stream.
    Thumbnail {
        /// Stream name.
        stream: &'a str,
    },
    /// `/api/streams/{stream}/sessions/{session}`: DELETE removes a past broadcast.
    Session {
        /// Stream name.
        stream: &'a str,
        /// Session ID.
        session: &'a str,
    },
    /// `/api/streams/{stream}/cues`: POST inserts an ad break or a news flash; GET lists them.
    Cues {
        /// Stream name.
        stream: &'a str,
    },
    /// `/api/events`: lifecycle events as server-sent events.
    Events,
    /// `/api/streams/{stream}/playback-url`: a signed URL for the stream (`?ttl=` seconds).
    PlaybackUrl {
        /// Stream name.
        stream: &'a str,
    },
    /// `/api/streams/{stream}/epoch`: the current run's epoch, for a standby origin.
    Epoch {
        /// Stream name.
        stream: &'a str,
    },
    /// `/healthz`
    Health,
}

/// An `EXT-X-START` offset asked with `?start=`, in milliseconds (so it compares exactly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start(pub i64);

impl Start {
    /// Seconds.
    pub fn seconds(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    /// The query that asks for it again: `start=-120` or `start=-120.5`.
    pub fn query(self) -> String {
        let whole = self.0 / 1000;
        match self.0 % 1000 {
            0 => format!("start={whole}"),
            _ => format!("start={}", self.seconds()),
        }
    }
}

/// A file of a finished broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VodFile<'a> {
    /// `master.m3u8`
    Master,
    /// `thumbnail.jpg`
    Thumbnail,
    /// `{rendition}/index.m3u8`
    Playlist(&'a str),
    /// `{rendition}/{msn}.m4s`
    Segment(&'a str, u64),
    /// `{rendition}/init-{id}.mp4`
    Init(&'a str, u64),
}

impl VodFile<'_> {
    /// The object's key under the session.
    pub fn key(&self) -> String {
        match self {
            VodFile::Master => "master.m3u8".to_string(),
            VodFile::Thumbnail => "thumbnail.jpg".to_string(),
            VodFile::Playlist(r) => format!("{r}/index.m3u8"),
            VodFile::Segment(r, msn) => format!("{r}/{msn}.m4s"),
            VodFile::Init(r, id) => format!("{r}/init-{id}.mp4"),
        }
    }
}

/// A session ID: `YYYYMMDDTHHMMSSZ`.
fn is_session(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit)
}

/// The `start` parameter of a replay playlist's query, if any: a decimal number of seconds
/// within a day either way, at most three decimals.
pub fn start(query: Option<&str>) -> Result<Option<Start>, RequestError> {
    let Some(query) = query else {
        return Ok(None);
    };
    if query.len() > MAX_QUERY_LEN {
        return Err(RequestError::BadRequest(
            "the query string is longer than 4096 bytes".into(),
        ));
    }
    let mut found = None;
    for pair in query.split('&') {
        let Some(value) = pair.strip_prefix("start=") else {
            continue;
        };
        let bad = || {
            RequestError::BadRequest(format!(
                "start must be seconds between -86400 and 86400 with at most 3 decimals, got {:?}",
                truncate(value)
            ))
        };
        if found.is_some() {
            return Err(RequestError::BadRequest("start is given twice".into()));
        }
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
            return Err(bad());
        }
        let whole: i64 = whole.parse().map_err(|_| bad())?;
        let frac: i64 = format!("{frac:0<3}").parse().map_err(|_| bad())?;
        let millis = whole * 1000 + frac;
        if millis > 86_400_000 {
            return Err(bad());
        }
        found = Some(Start(if negative { -millis } else { millis }));
    }
    Ok(found)
}

/// The LL-HLS delivery directives of a playlist request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Directives {
    /// `_HLS_msn`
    pub msn: Option<u64>,
    /// `_HLS_part`
    pub part: Option<u64>,
    /// `_HLS_skip=YES` or `v2`
    pub skip: bool,
}

impl Directives {
    /// What the request waits for.
    pub fn demand(&self) -> PlaylistDemand {
        match (self.msn, self.part) {
            (Some(msn), Some(part)) => PlaylistDemand::Part(msn, part),
            (Some(msn), None) => PlaylistDemand::Segment(msn),
            _ => PlaylistDemand::Current,
        }
    }

    /// Whether the request blocks (carries `_HLS_msn`).
    pub fn blocking(&self) -> bool {
        self.msn.is_some()
    }
}

/// Why a request was refused before any lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// 400, with the reason.
    BadRequest(String),
    /// 404: no such URL.
    NotFound,
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A decimal integer of at most 20 ASCII digits that fits in `u64`.
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses `path` and, for playlists, `query`.
pub fn parse<'a>(path: &'a str, query: Option<&str>) -> Result<Route<'a>, RequestError> {
    if !path.starts_with('/') || path.len() > MAX_PATH_LEN {
        return Err(RequestError::BadRequest(
            "the path must start with '/' and be at most 512 bytes".into(),
        ));
    }
    if path.contains('%') {
        return Err(RequestError::BadRequest(
            "percent-encoded characters are not allowed in paths".into(),
        ));
    }
    if path.contains('\\') || path.bytes().any(|b| b.is_ascii_control()) {
        return Err(RequestError::BadRequest(
            "backslashes and control characters are not allowed in paths".into(),
        ));
    }
    let segments: Vec<&str> = path[1..].split('/').collect();
    if segments.iter().any(|s| *s == "." || *s == "..") {
        return Err(RequestError::BadRequest(
            "'.' and '..' path segments are not allowed".into(),
        ));
    }
    let route = match segments.as_slice() {
        ["healthz"] => Route::Health,
        ["api", "streams"] => Route::Streams,
        ["api", "events"] => Route::Events,
        ["api", "streams", stream] if is_name(stream) => Route::StreamItem { stream },
        ["api", "streams", stream, "thumbnail.jpg"] if is_name(stream) => {
            Route::Thumbnail { stream }
        }
        ["api", "streams", stream, "cues"] if is_name(stream) => Route::Cues { stream },
        ["api", "streams", stream, "sessions", session]
            if is_name(stream) && is_session(session) =>
        {
            Route::Session { stream, session }
        }
        ["api", "streams", stream, "playback-url"] if is_name(stream) => {
            Route::PlaybackUrl { stream }
        }
        ["api", "streams", stream, "epoch"] if is_name(stream) => Route::Epoch { stream },
        ["live", stream, "master.m3u8"] if is_name(stream) => Route::Master { stream },
        ["live", stream, "dvr.m3u8"] if is_name(stream) => Route::Dvr {
            stream,
            rendition: None,
            start: start(query)?,
        },
        ["live", stream, rendition, "dvr.m3u8"] if is_name(stream) && is_name(rendition) => {
            Route::Dvr {
                stream,
                rendition: Some(rendition),
                start: start(query)?,
            }
        }
        ["vod", stream, session, rest @ ..] if is_name(stream) && is_session(session) => {
            let file = match rest {
                ["master.m3u8"] => VodFile::Master,
                ["thumbnail.jpg"] => VodFile::Thumbnail,
                [rendition, file] if is_name(rendition) => {
                    match media_route(stream, rendition, file, None)? {
                        Route::Playlist { .. } => VodFile::Playlist(rendition),
                        Route::Segment { msn, .. } => VodFile::Segment(rendition, msn),
                        Route::Init { id: Some(id), .. } => VodFile::Init(rendition, id),
                        _ => return Err(RequestError::NotFound),
                    }
                }
                _ => return Err(RequestError::NotFound),
            };
            let start = match file {
                VodFile::Master | VodFile::Playlist(_) => start(query)?,
                _ => None,
            };
            Route::Vod {
                stream,
                session,
                file,
                start,
            }
        }
        ["live", stream, rendition, file] if is_name(stream) && is_name(rendition) => {
            media_route(stream, rendition, file, query)?
        }
        _ => return Err(RequestError::NotFound),
    };
    Ok(route)
}

fn media_route<'a>(
    stream: &'a str,
    rendition: &'a str,
    file: &str,
    query: Option<&str>,
) -> Result<Route<'a>, RequestError> {
    if file == "index.m3u8" {
        return Ok(Route::Playlist {
            stream,
            rendition,
            directives: directives(query.unwrap_or(""))?,
        });
    }
    if file == "init.mp4" {
        return Ok(Route::Init {
            stream,
            rendition,
            id: None,
        });
    }
    if let Some(id) = file
        .strip_prefix("init-")
        .and_then(|f| f.strip_suffix(".mp4"))
    {
        return number(id)
            .map(|id| Route::Init {
                stream,
                rendition,
                id: Some(id),
            })
            .ok_or(RequestError::NotFound);
    }
    let stem = file.strip_suffix(".m4s").ok_or(RequestError::NotFound)?;
    match stem.split_once('.') {
        None => number(stem).map(|msn| Route::Segment {
            stream,
            rendition,
            msn,
        }),
        Some((msn, part)) => match (number(msn), number(part)) {
            (Some(msn), Some(part)) => Some(Route::Part {
                stream,
                rendition,
                msn,
                part,
            }),
            _ => None,
        },
    }
    .ok_or(RequestError::NotFound)
}

/// Parses the LL-HLS directives of a playlist query. Other parameters (tokens, signatures,
/// cache busters) are ignored here; unknown `_HLS_` names are ignored too, as the spec reserves
/// them for future use.
pub fn directives(query: &str) -> Result<Directives, RequestError> {
    if query.len() > MAX_QUERY_LEN {
        return Err(RequestError::BadRequest(
            "the query string is longer than 4096 bytes".into(),
        ));
    }
    let bad = |msg: String| Err(RequestError::BadRequest(msg));
    let mut d = Directives::default();
    let mut seen_skip = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "_HLS_msn" => {
                if d.msn.is_some() {
                    return bad("_HLS_msn is given twice".into());
                }
                match number(value) {
                    Some(n) => d.msn = Some(n),
                    None => {
                        return bad(format!(
                            "_HLS_msn must be a media sequence number, got {:?}",
                            truncate(value)
                        ));
                    }
                }
            }
            "_HLS_part" => {
                if d.part.is_some() {
                    return bad("_HLS_part is given twice".into());
                }
                match number(value) {
                    Some(n) => d.part = Some(n),
                    None => {
                        return bad(format!(
                            "_HLS_part must be a part index, got {:?}",
                            truncate(value)
                        ));
                    }
                }
            }
            "_HLS_skip" => {
                if seen_skip {
                    return bad("_HLS_skip is given twice".into());
                }
                seen_skip = true;
                match value {
                    "YES" | "v2" => d.skip = true,
                    _ => {
                        return bad(format!(
                            "_HLS_skip must be YES or v2, got {:?}",
                            truncate(value)
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    if d.part.is_some() && d.msn.is_none() {
        return bad("_HLS_part requires _HLS_msn".into());
    }
    Ok(d)
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(32) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
