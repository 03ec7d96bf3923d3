//! The origin's HTTP server: accepts connections (HTTP/1.1 and h2c) within a limit, routes
//! requests, holds blocking ones until the publication they wait for, and answers with the
//! cache policy the edges obey.
//!
//! Handlers return `Result<Response, Response>`: the error side is a finished error response,
//! built once per request, so boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::body::Body;
use super::request::{self, RequestError, Route};
use super::respond::{self, ERROR_CACHE, IMMUTABLE, MASTER_CACHE, NO_STORE};
use crate::api;
use crate::config::HttpConfig;
use crate::metrics::OriginMetrics;
use crate::packager::blocking::{Verdict, part_verdict, playlist_verdict, segment_verdict};
use crate::packager::log::MediaLog;
use crate::packager::playlist::Form;
use crate::replay::Replay;
use crate::replay::catalog::Catalog;
use crate::replay::watchers::ChatLink;
use crate::stream::{Lifecycle, Stream, Waited};

/// How long open connections get to finish when the server stops.
const DRAIN: Duration = Duration::from_secs(2);

/// What the request handlers share.
pub struct HttpState {
    pub(super) streams: BTreeMap<String, Arc<Stream>>,
    metrics: OriginMetrics,
    blocked: Arc<Semaphore>,
    allow_origin: HeaderValue,
    pub(super) config: HttpConfig,
    /// Cancelled when the origin hands its players over to the other origins (`on_stop:
    /// hand_over`): from then on every request is closed unanswered.
    handing_over: CancellationToken,
    /// The archive, DVR and VOD; `None` when `archive.enabled` is off.
    pub(super) replay: Option<Arc<Replay>>,
    /// Titles, thumbnails, viewers, past broadcasts and lifecycle events.
    pub(super) catalog: Arc<Catalog>,
    /// The chat relay, for news flashes.
    pub(super) chat: Option<ChatLink>,
}

/// Marks a response that must not be sent: the request's connection is closed instead, so
/// that an edge retries it on another origin.
#[derive(Debug, Clone, Copy)]
struct Unanswered;

impl std::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("closed unanswered: the origin is handing over to the other origins")
    }
}

impl std::error::Error for Unanswered {}

fn unanswered() -> Response<Body> {
    let mut r = Response::new(Body::empty());
    r.extensions_mut().insert(Unanswered);
    r
}

impl HttpState {
    /// State serving `streams`, and their replays when `replay` is given.
    pub fn new(
        streams: Vec<Arc<Stream>>,
        metrics: OriginMetrics,
        config: HttpConfig,
        replay: Option<Arc<Replay>>,
        catalog: Arc<Catalog>,
        chat: Option<ChatLink>,
    ) -> Arc<Self> {
        let allow_origin = HeaderValue::from_str(&config.cors_allow_origin)
            .unwrap_or(HeaderValue::from_static("*"));
        Arc::new(Self {
            streams: streams
                .into_iter()
                .map(|s| (s.name().to_string(), s))
                .collect(),
            metrics,
            blocked: Arc::new(Semaphore::new(config.max_blocked_requests)),
            allow_origin,
            config,
            handing_over: CancellationToken::new(),
            replay,
            catalog,
            chat,
        })
    }

    /// Hands the players over to the other origins: `/healthz` answers 503, and every request,
    /// held ones included, is closed unanswered from now on.
    pub fn hand_over(&self) {
        self.handing_over.cancel();
    }
}

/// Serves `listener` until `shutdown` is cancelled, then drains open connections.
pub fn serve(
    listener: TcpListener,
    state: Arc<HttpState>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let connections = Arc::new(Semaphore::new(state.config.max_connections));
        let graceful = GracefulShutdown::new();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs_f64(state.config.header_read_timeout));
        builder.http2().timer(TokioTimer::new());
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = shutdown.cancelled() => break,
            };
            let Ok(permit) = connections.clone().try_acquire_owned() else {
                state
                    .metrics
                    .http_refused
                    .with_label_values(&["max_connections"])
                    .inc();
                tracing::warn!(
                    limit = state.config.max_connections,
                    "connection refused: too many open connections"
                );
                continue;
            };
            let _ = stream.set_nodelay(true);
            let service_state = state.clone();
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let state = service_state.clone();
                async move {
                    let response = handle(&state, req).await;
                    if response.extensions().get::<Unanswered>().is_some() {
                        // hyper closes the connection (or resets the HTTP/2 stream).
                        return Err(Unanswered);
                    }
                    Ok(response)
                }
            });
            let connection = graceful.watch(
                builder
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned(),
            );
            let gauge = state.metrics.http_connections.clone();
            gauge.inc();
            tokio::spawn(async move {
                let _ = connection.await;
                gauge.dec();
                drop(permit);
            });
        }
        drop(listener);
        if tokio::time::timeout(DRAIN, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::info!("connections still open after the drain period were closed");
        }
    })
}

/// Labels requests for metrics.
fn kind_of(route: &Result<Route<'_>, RequestError>, path: &str) -> &'static str {
    match route {
        Ok(Route::Master { .. }) => "master",
        Ok(Route::Playlist { directives, .. }) if directives.blocking() => "blocking_playlist",
        Ok(Route::Playlist { .. }) => "playlist",
        Ok(Route::Part { .. }) => "part",
        Ok(Route::Segment { .. }) => "segment",
        Ok(Route::Init { .. }) => "init",
        Ok(Route::Dvr { .. }) => "dvr_playlist",
        Ok(Route::Vod { .. }) => "vod",
        Ok(Route::Events) => "events",
        Ok(
            Route::Streams
            | Route::PlaybackUrl { .. }
            | Route::Epoch { .. }
            | Route::StreamItem { .. }
            | Route::Thumbnail { .. }
            | Route::Session { .. }
            | Route::Cues { .. },
        ) => "api",
        Ok(Route::Health) => "health",
        Err(_) if path.ends_with(".m3u8") => "playlist",
        Err(_) => "other",
    }
}

async fn handle(state: &HttpState, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let route = request::parse(&path, query.as_deref());
    let kind = kind_of(&route, &path);
    if state.handing_over.is_cancelled() {
        let status = if kind == "health" { "503" } else { "closed" };
        state
            .metrics
            .http_requests
            .with_label_values(&[kind, status])
            .inc();
        if kind == "health" {
            return respond::text(StatusCode::SERVICE_UNAVAILABLE, "stopping", NO_STORE);
        }
        return unanswered();
    }
    let method = req.method().clone();
    let mut response = match (&method, route) {
        (_, Err(RequestError::BadRequest(reason))) => {
            tracing::info!(%path, %reason, "bad request");
            respond::text(StatusCode::BAD_REQUEST, &reason, NO_STORE)
        }
        (&Method::OPTIONS, _) => respond::preflight(),
        (_, Err(RequestError::NotFound)) => {
            respond::text(StatusCode::NOT_FOUND, "no such resource", ERROR_CACHE)
        }
        (&Method::GET | &Method::HEAD, Ok(route)) => answer(state, route, &req).await,
        (&Method::POST | &Method::PATCH | &Method::DELETE, Ok(route)) => {
            super::admin::handle(state, route, req).await
        }
        _ => respond::method_not_allowed(),
    };
    respond::add_cors(&mut response, &state.allow_origin);
    if method == Method::HEAD {
        let len = http_body::Body::size_hint(response.body())
            .exact()
            .unwrap_or(0);
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        *response.body_mut() = Body::empty();
    }
    let code = response.status();
    let status = if response.extensions().get::<Unanswered>().is_some() {
        "closed"
    } else {
        code.as_str()
    };
    state
        .metrics
        .http_requests
        .with_label_values(&[kind, status])
        .inc();
    state
        .metrics
        .http_duration
        .with_label_values(&[kind])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Mints a signed URL of the stream's multivariant playlist, for a backend that presents the
/// mint token.
fn playback_url(
    state: &HttpState,
    stream: &str,
    req: &Request<Incoming>,
) -> Result<Response<Body>, Response<Body>> {
    let signing = &state.config.signing;
    let (Some(key), Some(token)) = (&signing.key, &signing.mint_token) else {
        return Err(respond::text(
            StatusCode::NOT_FOUND,
            "signed playback URLs are off (http.signing.key)",
            NO_STORE,
        ));
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !presented.is_some_and(|p| api::same_secret(p, token)) {
        tracing::info!(%stream, "playback URL refused: bad or missing mint token");
        return Err(respond::text(
            StatusCode::UNAUTHORIZED,
            "minting needs Authorization: Bearer <http.signing.mint_token>",
            NO_STORE,
        ));
    }
    lookup(state, stream)?;
    let ttl = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("ttl=")))
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(signing.ttl, |t| t.clamp(1, signing.ttl));
    // `?session=` mints for a finished broadcast instead (the signature covers every VOD of
    // the stream: `/vod/{stream}/`).
    let session = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("session=")));
    let path = match session {
        Some(id) if request::parse(&format!("/vod/{stream}/{id}/master.m3u8"), None).is_ok() => {
            format!("/vod/{stream}/{id}/master.m3u8")
        }
        Some(_) => {
            return Err(respond::text(
                StatusCode::BAD_REQUEST,
                "session must be a session ID such as 20261206T070142Z",
                NO_STORE,
            ));
        }
        None => format!("/live/{stream}/master.m3u8"),
    };
    let key = signed_url::Key::new(key.as_bytes()).expect("the config checked the key length");
    Ok(respond::json(&api::mint(
        &key,
        stream,
        &path,
        ttl,
        SystemTime::now(),
    )))
}

pub(super) fn lookup<'a>(
    state: &'a HttpState,
    stream: &str,
) -> Result<&'a Arc<Stream>, Response<Body>> {
    state.streams.get(stream).ok_or_else(|| {
        respond::text(
            StatusCode::NOT_FOUND,
            &format!("no stream named {stream:?}"),
            ERROR_CACHE,
        )
    })
}

/// `/healthz`: 200 `ok`, or 503 naming the streams that have stopped advancing (see
/// [`Stream::stalled`]), so that edges send their players to another origin meanwhile.
fn health(state: &HttpState) -> Response<Body> {
    let now = Instant::now();
    let stalled: Vec<String> = state
        .streams
        .values()
        .filter_map(|s| {
            s.stalled(now)
                .map(|d| format!("{} ({:.1} s without a part)", s.name(), d.as_secs_f64()))
        })
        .collect();
    if stalled.is_empty() {
        respond::text(StatusCode::OK, "ok", NO_STORE)
    } else {
        respond::text(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("stalled: {}", stalled.join(", ")),
            NO_STORE,
        )
    }
}

pub(super) fn lookup_rendition(stream: &Stream, rendition: &str) -> Result<usize, Response<Body>> {
    stream.rendition(rendition).map(|(i, _)| i).ok_or_else(|| {
        respond::text(
            StatusCode::NOT_FOUND,
            &format!(
                "stream {:?} has no rendition named {rendition:?}",
                stream.name()
            ),
            ERROR_CACHE,
        )
    })
}

async fn answer(state: &HttpState, route: Route<'_>, req: &Request<Incoming>) -> Response<Body> {
    let result = match route {
        Route::Health => Ok(health(state)),
        Route::Streams => match api::catalog_query(req.uri().query()) {
            Ok(query) => {
                let streams: Vec<&Stream> = state.streams.values().map(|s| &**s).collect();
                Ok(respond::json(&api::catalog(
                    &streams,
                    &state.catalog,
                    state.replay.as_deref(),
                    &query,
                )))
            }
            Err(reason) => Err(respond::text(StatusCode::BAD_REQUEST, &reason, NO_STORE)),
        },
        Route::StreamItem { stream } => lookup(state, stream)
            .map(|s| respond::json(&api::describe(s, &state.catalog, state.replay.as_deref()))),
        Route::Thumbnail { stream } => lookup(state, stream).and_then(|_| {
            state
                .catalog
                .thumbnail(stream)
                .map(|(jpeg, _)| respond::image(jpeg, THUMBNAIL_CACHE))
                .ok_or_else(|| {
                    respond::text(
                        StatusCode::NOT_FOUND,
                        "no thumbnail: the stream is not on air, or none was taken yet",
                        ERROR_CACHE,
                    )
                })
        }),
        Route::Session { stream, session } => state
            .catalog
            .past()
            .into_iter()
            .find(|p| p.stream == stream && p.session == session)
            .map(|p| respond::json(&p))
            .ok_or_else(|| {
                respond::text(StatusCode::NOT_FOUND, "no such past broadcast", ERROR_CACHE)
            }),
        Route::Cues { stream } => lookup(state, stream).map(|s| respond::json(&s.cues())),
        Route::Events => Ok(super::admin::events(state, req)),
        Route::PlaybackUrl { stream } => playback_url(state, stream, req),
        Route::Epoch { stream } => lookup(state, stream).and_then(|s| {
            s.epoch().map(|e| respond::json(&e)).ok_or_else(|| {
                respond::text(
                    StatusCode::NOT_FOUND,
                    &format!("stream {stream:?} has no transcoder run anchored"),
                    NO_STORE,
                )
            })
        }),
        Route::Master { stream } => master(state, stream, req).await,
        Route::Playlist {
            stream,
            rendition,
            directives,
        } => media_playlist(state, stream, rendition, directives, req).await,
        Route::Part {
            stream,
            rendition,
            msn,
            part,
        } => media_object(state, stream, rendition, msn, Some(part)).await,
        Route::Segment {
            stream,
            rendition,
            msn,
        } => media_object(state, stream, rendition, msn, None).await,
        Route::Init {
            stream,
            rendition,
            id,
        } => init(state, stream, rendition, id).await,
        Route::Dvr {
            stream,
            rendition,
            start,
        } => super::replay::dvr(state, stream, rendition, start, req).await,
        Route::Vod {
            stream,
            session,
            file,
            start,
        } => super::replay::vod(state, stream, session, file, start, req).await,
    };
    result.unwrap_or_else(|response| response)
}

pub(super) fn gzip_ok(req: &Request<Incoming>) -> bool {
    respond::accepts_gzip(req.headers().get(header::ACCEPT_ENCODING))
}

async fn master(
    state: &HttpState,
    name: &str,
    req: &Request<Incoming>,
) -> Result<Response<Body>, Response<Body>> {
    let stream = lookup(state, name)?;
    idle_check(stream)?;
    let deadline = tokio::time::Instant::now() + stream.params().blocking_timeout();
    match stream.wait_master(deadline).await {
        Some(body) => {
            let gzipped = gzip_ok(req).then(|| crate::stream::gzip(&body));
            Ok(respond::playlist_bytes(&body, gzipped, MASTER_CACHE))
        }
        None => Err(unavailable("the stream's renditions are not ready yet")),
    }
}

/// A stream that has never had a publisher has no playlists to wait for: 404 at once.
pub(super) fn idle_check(stream: &Stream) -> Result<(), Response<Body>> {
    let never_published = stream.state() == Lifecycle::Idle
        && stream
            .renditions()
            .iter()
            .all(|r| r.with_log(|log| !log.has_playlist()));
    if never_published {
        return Err(respond::text(
            StatusCode::NOT_FOUND,
            &format!("stream {:?} has no publisher", stream.name()),
            ERROR_CACHE,
        ));
    }
    Ok(())
}

pub(super) fn unavailable(reason: &str) -> Response<Body> {
    let mut r = respond::text(StatusCode::SERVICE_UNAVAILABLE, reason, ERROR_CACHE);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// Holds the request until `check` passes, within the stream's blocking timeout and the
/// server's limit on waiting requests.
async fn wait(
    state: &HttpState,
    stream: &Stream,
    index: usize,
    mut check: impl FnMut(&MediaLog) -> Verdict,
) -> Result<Waited, Response<Body>> {
    let first = stream.renditions()[index].with_log(&mut check);
    if first != Verdict::Wait {
        return Ok(Waited {
            verdict: first,
            woken_by: None,
        });
    }
    let Ok(permit) = state.blocked.clone().try_acquire_owned() else {
        state
            .metrics
            .http_refused
            .with_label_values(&["max_blocked_requests"])
            .inc();
        return Err(unavailable("too many requests are waiting for media"));
    };
    let gauge = state
        .metrics
        .blocked_requests
        .with_label_values(&[stream.name()]);
    // Decrements even when the client goes away and this future is dropped.
    struct Held {
        gauge: prometheus::IntGauge,
        _permit: tokio::sync::OwnedSemaphorePermit,
    }
    impl Drop for Held {
        fn drop(&mut self) {
            self.gauge.dec();
        }
    }
    gauge.inc();
    let _held = Held {
        gauge,
        _permit: permit,
    };
    let deadline = tokio::time::Instant::now() + stream.params().blocking_timeout();
    let waited = tokio::select! {
        waited = stream.wait_until(index, deadline, check) => waited,
        _ = state.handing_over.cancelled() => return Err(unanswered()),
    };
    match waited.woken_by {
        Some(at) => state
            .metrics
            .blocking_wake
            .observe(at.elapsed().as_secs_f64()),
        None if waited.verdict == Verdict::Wait => {
            state
                .metrics
                .blocking_timeouts
                .with_label_values(&[stream.name()])
                .inc();
        }
        None => {}
    }
    Ok(waited)
}

async fn media_playlist(
    state: &HttpState,
    name: &str,
    rendition: &str,
    directives: request::Directives,
    req: &Request<Incoming>,
) -> Result<Response<Body>, Response<Body>> {
    let stream = lookup(state, name)?;
    let index = lookup_rendition(stream, rendition)?;
    idle_check(stream)?;
    let demand = directives.demand();
    let limits = stream.limits();
    let waited = wait(state, stream, index, |log| {
        playlist_verdict(log, demand, limits)
    })
    .await?;
    match waited.verdict {
        Verdict::Ready => {
            let form = if directives.skip {
                Form::Delta
            } else {
                Form::Full
            };
            let rendered = stream.media_playlist(index, form);
            let params = stream.params();
            let cache = if directives.blocking() {
                format!("public, max-age={}", params.blocking_playlist_max_age())
            } else {
                match params.playlist_max_age() {
                    0 => "public, max-age=0, stale-while-revalidate=1".to_string(),
                    n => format!("public, max-age={n}"),
                }
            };
            Ok(respond::playlist(&rendered, gzip_ok(req), &cache))
        }
        Verdict::TooFar(reason) => {
            tracing::info!(stream = %name, %rendition, %reason, "blocking request too far ahead");
            Err(respond::text(StatusCode::BAD_REQUEST, &reason, NO_STORE))
        }
        Verdict::Missing(reason) => Err(respond::text(StatusCode::NOT_FOUND, &reason, ERROR_CACHE)),
        Verdict::Wait => Err(unavailable(
            "the playlist did not reach the requested part within three target durations",
        )),
    }
}

async fn media_object(
    state: &HttpState,
    name: &str,
    rendition: &str,
    msn: u64,
    part: Option<u64>,
) -> Result<Response<Body>, Response<Body>> {
    let stream = lookup(state, name)?;
    let index = lookup_rendition(stream, rendition)?;
    let limits = stream.limits();
    let waited = wait(state, stream, index, |log| match part {
        Some(p) => part_verdict(log, msn, p, limits),
        None => segment_verdict(log, msn, limits),
    })
    .await?;
    let r = &stream.renditions()[index];
    match waited.verdict {
        Verdict::Ready => {
            let chunks = r.with_log(|log| {
                let segment = log.segment(msn)?;
                match part {
                    Some(p) => segment
                        .parts
                        .get(usize::try_from(p).ok()?)
                        .map(|x| vec![x.bytes.clone()]),
                    None => Some(segment.chunks().cloned().collect()),
                }
            });
            match chunks {
                Some(chunks) => Ok(respond::media(chunks, r.is_audio(), IMMUTABLE)),
                // Trimmed between the verdict and now: only the archive may have it.
                None => {
                    super::replay::from_archive(
                        state,
                        stream,
                        index,
                        msn,
                        part,
                        "no longer available",
                    )
                    .await
                }
            }
        }
        Verdict::Missing(reason) => {
            super::replay::from_archive(state, stream, index, msn, part, &reason).await
        }
        Verdict::TooFar(reason) => Err(respond::text(StatusCode::NOT_FOUND, &reason, ERROR_CACHE)),
        Verdict::Wait => Err(unavailable(
            "the part was not published within three target durations",
        )),
    }
}

/// Cache policy of a live stream's thumbnail: a new one comes every 10 s.
const THUMBNAIL_CACHE: &str = "public, max-age=5";

async fn init(
    state: &HttpState,
    name: &str,
    rendition: &str,
    id: Option<u64>,
) -> Result<Response<Body>, Response<Body>> {
    let stream = lookup(state, name)?;
    let index = lookup_rendition(stream, rendition)?;
    let r = &stream.renditions()[index];
    let found = r.with_log(|log| match id {
        Some(id) => log.init(id).map(|i| i.bytes.clone()),
        None => log.current_init().map(|i| i.bytes.clone()),
    });
    match (found, id) {
        (Some(bytes), Some(_)) => Ok(respond::media(vec![bytes], r.is_audio(), IMMUTABLE)),
        // The current init changes when the transcoder restarts: cache it briefly.
        (Some(bytes), None) => Ok(respond::media(vec![bytes], r.is_audio(), MASTER_CACHE)),
        // A DVR player far behind: the archive has every init of the broadcast.
        (None, Some(id)) if state.replay.is_some() => {
            let replay = state.replay.as_ref().expect("checked");
            match replay.archived_init(name, index, id).await {
                Ok(Some(bytes)) => Ok(respond::media(vec![bytes], r.is_audio(), IMMUTABLE)),
                Ok(None) => Err(respond::text(
                    StatusCode::NOT_FOUND,
                    "no such init segment",
                    ERROR_CACHE,
                )),
                Err(e) => {
                    tracing::warn!(stream = %name, id, error = %e, "cannot read an archived init segment");
                    Err(unavailable("the archive cannot be read right now"))
                }
            }
        }
        (None, _) => Err(respond::text(
            StatusCode::NOT_FOUND,
            "no such init segment",
            ERROR_CACHE,
        )),
    }
}
