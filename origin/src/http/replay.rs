//! The replay routes: the DVR window (`/live/{stream}/dvr.m3u8`), a finished broadcast from the
//! archive (`/vod/{stream}/{session}/...`), and the archive's copy of a segment the live log no
//! longer keeps (a DVR player far behind).
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::body::Body;
use super::request::{Start, VodFile};
use super::respond::{self, ERROR_CACHE, IMMUTABLE, MASTER_CACHE};
use super::server::{HttpState, gzip_ok, idle_check, lookup, lookup_rendition, unavailable};
use crate::replay::Replay;
use crate::replay::render::replay_master;
use crate::stream::Stream;

/// A segment the live log no longer has (a DVR player seeking back), from the archive.
pub(super) async fn from_archive(
    state: &HttpState,
    stream: &Stream,
    index: usize,
    msn: u64,
    part: Option<u64>,
    reason: &str,
) -> Result<Response<Body>, Response<Body>> {
    let not_found = || respond::text(StatusCode::NOT_FOUND, reason, ERROR_CACHE);
    let (Some(replay), None) = (&state.replay, part) else {
        return Err(not_found());
    };
    match replay.archived_segment(stream.name(), index, msn).await {
        Ok(Some(bytes)) => Ok(respond::media(
            vec![bytes],
            stream.renditions()[index].is_audio(),
            IMMUTABLE,
        )),
        Ok(None) => Err(not_found()),
        Err(e) => {
            tracing::warn!(stream = %stream.name(), msn, error = %e, "cannot read an archived segment");
            Err(unavailable("the archive cannot be read right now"))
        }
    }
}

fn replay_of(state: &HttpState) -> Result<&Arc<Replay>, Response<Body>> {
    state.replay.as_ref().ok_or_else(|| {
        respond::text(
            StatusCode::NOT_FOUND,
            "replay is off on this origin (archive.enabled)",
            ERROR_CACHE,
        )
    })
}

/// Cache policy of a DVR playlist: it changes once a segment.
const DVR_CACHE: &str = "public, max-age=1";
/// Cache policy of a finished broadcast's playlists: they never change.
const VOD_PLAYLIST_CACHE: &str = "public, max-age=86400";

pub(super) async fn dvr(
    state: &HttpState,
    name: &str,
    rendition: Option<&str>,
    start: Option<Start>,
    req: &Request<Incoming>,
) -> Result<Response<Body>, Response<Body>> {
    let replay = replay_of(state)?;
    let stream = lookup(state, name)?;
    idle_check(stream)?;
    let Some(rendition) = rendition else {
        let deadline = tokio::time::Instant::now() + stream.params().blocking_timeout();
        let Some(live) = stream.wait_master(deadline).await else {
            return Err(unavailable("the stream's renditions are not ready yet"));
        };
        let text = replay_master(
            &String::from_utf8_lossy(&live),
            "dvr.m3u8",
            start.map(Start::query).as_deref(),
        );
        let body = Bytes::from(text);
        let gzipped = gzip_ok(req).then(|| crate::stream::gzip(&body));
        return Ok(respond::playlist_bytes(&body, gzipped, MASTER_CACHE));
    };
    let index = lookup_rendition(stream, rendition)?;
    match replay.dvr_playlist(name, index, start.map(Start::seconds)) {
        Some(text) => {
            let body = Bytes::from(text);
            let gzipped = gzip_ok(req).then(|| crate::stream::gzip(&body));
            Ok(respond::playlist_bytes(&body, gzipped, DVR_CACHE))
        }
        None => Err(respond::text(
            StatusCode::NOT_FOUND,
            "the stream has no broadcast recorded yet",
            ERROR_CACHE,
        )),
    }
}

pub(super) async fn vod(
    state: &HttpState,
    name: &str,
    session: &str,
    file: VodFile<'_>,
    start: Option<Start>,
    req: &Request<Incoming>,
) -> Result<Response<Body>, Response<Body>> {
    let replay = replay_of(state)?;
    let found = match replay.vod_object(name, session, &file.key()).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            return Err(respond::text(
                StatusCode::NOT_FOUND,
                &format!(
                    "no finished broadcast {session} of {name:?} has {}",
                    file.key()
                ),
                ERROR_CACHE,
            ));
        }
        Err(e) => {
            tracing::warn!(stream = %name, %session, file = %file.key(), error = %e, "cannot read from the archive");
            return Err(unavailable("the archive cannot be read right now"));
        }
    };
    let audio = |r: &str| {
        state
            .streams
            .get(name)
            .and_then(|s| s.rendition(r))
            .is_some_and(|(_, r)| r.is_audio())
    };
    let playlist = |text: String| {
        let body = Bytes::from(text);
        let gzipped = gzip_ok(req).then(|| crate::stream::gzip(&body));
        respond::playlist_bytes(&body, gzipped, VOD_PLAYLIST_CACHE)
    };
    Ok(match file {
        VodFile::Master => {
            let text = String::from_utf8_lossy(&found);
            playlist(match start {
                Some(s) => replay_master(&text, "index.m3u8", Some(&s.query())),
                None => text.into_owned(),
            })
        }
        VodFile::Playlist(_) => {
            let mut text = String::from_utf8_lossy(&found).into_owned();
            if let Some(s) = start {
                let tag = format!(
                    "#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-START:TIME-OFFSET={:.3},PRECISE=YES\n",
                    s.seconds()
                );
                text = text.replacen("#EXT-X-INDEPENDENT-SEGMENTS\n", &tag, 1);
            }
            playlist(text)
        }
        VodFile::Thumbnail => respond::image(found, VOD_PLAYLIST_CACHE),
        VodFile::Segment(r, _) | VodFile::Init(r, _) => {
            respond::media(vec![found], audio(r), IMMUTABLE)
        }
    })
}
