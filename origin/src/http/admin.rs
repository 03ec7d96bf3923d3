//! The admin API (bearer `http.admin_token`): stream metadata, cues and past broadcasts; and
//! the lifecycle events stream (`/api/events`, server-sent events, public).
//!
//! Handlers return `Result<Response, Response>` like the server's: the error side is a
//! finished error response.
#![allow(clippy::result_large_err)]

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::body::Body;
use super::request::Route;
use super::respond::{self, NO_STORE};
use super::server::{HttpState, lookup};
use crate::api;
use crate::packager::cue::CueKind;
use crate::replay::catalog::{EventKind, Metadata, MetadataPatch};

/// Largest admin request body.
const MAX_BODY: usize = 64 << 10;
/// How often an idle event stream gets a comment, so proxies (an edge reads with a 12 s timeout) keep it open.
const KEEPALIVE: Duration = Duration::from_secs(10);

fn error(status: StatusCode, message: &str) -> Response<Body> {
    respond::text(status, message, NO_STORE)
}

/// Checks the bearer token.
fn authorize(state: &HttpState, req: &Request<Incoming>) -> Result<(), Response<Body>> {
    let Some(token) = &state.config.admin_token else {
        return Err(error(
            StatusCode::NOT_FOUND,
            "the admin API is off on this origin (http.admin_token)",
        ));
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if presented.is_some_and(|p| api::same_secret(p, token)) {
        return Ok(());
    }
    tracing::info!(path = %req.uri().path(), "admin request refused: bad or missing token");
    Err(error(
        StatusCode::UNAUTHORIZED,
        "this needs Authorization: Bearer <http.admin_token>",
    ))
}

async fn json<T: for<'de> Deserialize<'de>>(req: Request<Incoming>) -> Result<T, Response<Body>> {
    let body = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the body could not be read (at most {MAX_BODY} bytes): {e}"),
            )
        })?
        .to_bytes();
    serde_json::from_slice(&body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, &format!("bad JSON: {e}")))
}

/// POST, PATCH and DELETE.
pub async fn handle(state: &HttpState, route: Route<'_>, req: Request<Incoming>) -> Response<Body> {
    if let Err(r) = authorize(state, &req) {
        return r;
    }
    let method = req.method().clone();
    let result = match (method, route) {
        (Method::POST, Route::Streams) => create(state, req).await,
        (Method::PATCH, Route::StreamItem { stream }) => patch(state, stream, req).await,
        (Method::DELETE, Route::StreamItem { stream }) => lookup(state, stream).map(|_| {
            set_metadata(state, stream, None);
            tracing::info!(%stream, "stream metadata removed");
            no_content()
        }),
        (Method::DELETE, Route::Session { stream, session }) => {
            delete_session(state, stream, session).await
        }
        (Method::POST, Route::Cues { stream }) => cue(state, stream, req).await,
        _ => Err(respond::method_not_allowed()),
    };
    result.unwrap_or_else(|r| r)
}

fn no_content() -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

fn set_metadata(state: &HttpState, stream: &str, meta: Option<Metadata>) {
    state.catalog.set_metadata(stream, meta.clone());
    // Kept in the archive in the background (a slow store does not hold the request).
    if let Some(replay) = state.replay.clone() {
        let stream = stream.to_string();
        tokio::spawn(async move {
            if !replay.save_metadata(&stream, meta.as_ref()).await {
                tracing::warn!(%stream, "stream metadata not stored in the archive; it lasts until a restart");
            }
        });
    }
}

/// `POST /api/streams` `{"name", "title", "description", "scheduled"}`: announces a stream.
async fn create(
    state: &HttpState,
    req: Request<Incoming>,
) -> Result<Response<Body>, Response<Body>> {
    let patch: MetadataPatch = json(req).await?;
    let Some(name) = patch.name.clone() else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "name: the stream to describe",
        ));
    };
    let stream = lookup(state, &name)?.clone();
    patch
        .validate()
        .map_err(|reason| error(StatusCode::BAD_REQUEST, &reason))?;
    if state.catalog.metadata(&name).is_some() {
        return Err(error(
            StatusCode::CONFLICT,
            "the stream has metadata already: PATCH /api/streams/{name} changes it",
        ));
    }
    let mut meta = Metadata::default();
    patch.apply(&mut meta);
    set_metadata(state, &name, Some(meta));
    tracing::info!(stream = %name, "stream metadata set");
    if matches!(
        stream.state(),
        crate::stream::Lifecycle::Idle | crate::stream::Lifecycle::Ended
    ) {
        state.catalog.emit(
            EventKind::Pending,
            &name,
            None,
            format!("/live/{name}/master.m3u8"),
        );
    }
    let mut r = respond::json(&api::describe(
        &stream,
        &state.catalog,
        state.replay.as_deref(),
    ));
    *r.status_mut() = StatusCode::CREATED;
    Ok(r)
}

/// `PATCH /api/streams/{name}`: changes what is given; `null` clears.
async fn patch(
    state: &HttpState,
    name: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, Response<Body>> {
    let stream = lookup(state, name)?.clone();
    let patch: MetadataPatch = json(req).await?;
    patch
        .validate()
        .map_err(|reason| error(StatusCode::BAD_REQUEST, &reason))?;
    let mut meta = state.catalog.metadata(name).unwrap_or_default();
    patch.apply(&mut meta);
    set_metadata(state, name, Some(meta));
    tracing::info!(stream = %name, "stream metadata changed");
    Ok(respond::json(&api::describe(
        &stream,
        &state.catalog,
        state.replay.as_deref(),
    )))
}

async fn delete_session(
    state: &HttpState,
    stream: &str,
    session: &str,
) -> Result<Response<Body>, Response<Body>> {
    lookup(state, stream)?;
    let Some(replay) = &state.replay else {
        return Err(error(
            StatusCode::NOT_FOUND,
            "replay is off (archive.enabled)",
        ));
    };
    match replay.delete_session(stream, session).await {
        Ok(true) => {
            tracing::info!(%stream, %session, "past broadcast deleted");
            Ok(no_content())
        }
        Ok(false) => Err(error(
            StatusCode::NOT_FOUND,
            "no such past broadcast (a live one cannot be deleted)",
        )),
        Err(e) => {
            tracing::warn!(%stream, %session, error = %e, "cannot delete a past broadcast");
            Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the archive cannot be changed right now",
            ))
        }
    }
}

/// A cue's request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CueRequest {
    /// `ad` (the default) or `flash`.
    #[serde(default)]
    kind: Option<String>,
    /// Seconds.
    duration: f64,
    /// The ad's VOD playlist (ads).
    #[serde(default)]
    asset: Option<String>,
    /// What to show (flashes).
    #[serde(default)]
    text: Option<String>,
    /// `info`, `warning` or `critical` (flashes).
    #[serde(default)]
    level: Option<String>,
}

/// Longest flash text, in characters (the chat relay's limit for announcements).
const MAX_FLASH: usize = 1000;

/// `POST /api/streams/{name}/cues`: an ad break or a news flash in every rendition.
async fn cue(
    state: &HttpState,
    name: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, Response<Body>> {
    let stream = lookup(state, name)?.clone();
    let c: CueRequest = json(req).await?;
    let bad = |m: &str| error(StatusCode::BAD_REQUEST, m);
    if !(1.0..=600.0).contains(&c.duration) {
        return Err(bad("duration: seconds from 1 to 600"));
    }
    let kind = match c.kind.as_deref().unwrap_or("ad") {
        "ad" => {
            let asset = c
                .asset
                .ok_or_else(|| bad("asset: the ad's VOD playlist URL"))?;
            let ok = (asset.starts_with('/')
                || asset.starts_with("https://")
                || asset.starts_with("http://"))
                && asset.len() <= 1024
                && !asset.contains(['"', ' ', '\r', '\n']);
            if !ok {
                return Err(bad(
                    "asset: an absolute path or http(s) URL without quotes or spaces",
                ));
            }
            CueKind::Ad { asset }
        }
        "flash" => {
            let text = c.text.ok_or_else(|| bad("text: what to show"))?;
            if text.trim().is_empty() || text.chars().count() > MAX_FLASH {
                return Err(bad("text: 1 to 1000 characters"));
            }
            let level = c.level.unwrap_or_else(|| "info".to_string());
            if !matches!(level.as_str(), "info" | "warning" | "critical") {
                return Err(bad("level: info, warning or critical"));
            }
            CueKind::Flash { text, level }
        }
        other => {
            return Err(bad(&format!(
                "kind must be ad or flash, got {:?}",
                other.chars().take(20).collect::<String>()
            )));
        }
    };
    let cue = stream
        .add_cue(kind, c.duration)
        .map_err(|e| error(StatusCode::CONFLICT, &e.to_string()))?;
    tracing::info!(stream = %name, id = %cue.id, start = %crate::packager::playlist::program_date_time(cue.start), duration = cue.duration, "cue placed");
    let mut announced = None;
    if let CueKind::Flash { text, level } = &cue.kind {
        announced = Some(match &state.chat {
            Some(chat) => match chat.announce(name, text, level).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(stream = %name, error = %e, "the flash could not be posted to the chat");
                    false
                }
            },
            None => false,
        });
    }
    let mut body = serde_json::to_value(&cue).unwrap_or_default();
    body["daterange"] = cue.daterange().into();
    if let Some(a) = announced {
        body["chat"] = a.into();
    }
    let mut r = respond::json(&body);
    *r.status_mut() = StatusCode::CREATED;
    Ok(r)
}

/// `GET /api/events`: lifecycle events as server-sent events; `Last-Event-ID` (or
/// `?last_event_id=`) replays the ones kept since.
pub fn events(state: &HttpState, req: &Request<Incoming>) -> Response<Body> {
    let last = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            req.uri()
                .query()
                .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("last_event_id=")))
                .map(str::to_string)
        })
        .and_then(|v| v.trim().parse::<u64>().ok());
    let (mut rx, missed) = state.catalog.subscribe(last);
    let (tx, body) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        // Tells the browser how long to wait before reconnecting.
        if tx
            .send(Bytes::from_static(b"retry: 2000\n\n"))
            .await
            .is_err()
        {
            return;
        }
        for event in missed {
            if tx.send(event.sse()).await.is_err() {
                return;
            }
        }
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.tick().await;
        loop {
            let chunk = tokio::select! {
                event = rx.recv() => match event {
                    Ok(e) => e.sse(),
                    // Too slow to keep up: it reconnects with Last-Event-ID.
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return,
                },
                _ = keepalive.tick() => Bytes::from_static(b": keep-alive\n\n"),
                _ = tx.closed() => return,
            };
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
    });
    let mut r = Response::new(Body::streaming(body));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_STORE));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}
