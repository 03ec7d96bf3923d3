//! The edge's request path as pingora's [`ProxyHttp`] phases, in the order a request meets
//! them:
//!
//! 1. `request_filter`: method and target checks ([`crate::request`]) and, when signing is on,
//!    the signature ([`crate::signing`]); refused requests are answered 400/403/405 before any
//!    cache or upstream work. The watch page's own paths are answered here from memory
//!    ([`crate::web`]).
//! 2. `request_cache_filter`: every cacheable request enables the cache and the cache lock,
//!    whatever its kind: blocking playlists and hinted parts coalesce like everything else.
//!    No predictor: one uncacheable answer never turns coalescing off for a key. The lock is
//!    [`crate::storage::FillAwareLock`]: a miss whose object landed between its lookup and its
//!    lock reads the object instead of fetching it a second time.
//! 3. `cache_key_callback`: the normalized key of [`crate::request`].
//! 4. On a miss, `upstream_peer` picks the origin ([`crate::upstream`]: the first healthy one)
//!    with a time limit for its answer by kind (`answer_timeout` for what it has or refuses at
//!    once, `hold_timeout` and `segment_timeout` for what it may hold until it exists), and
//!    `upstream_request_filter` sends the normalized target, so what is cached is exactly what
//!    was asked. A failed try
//!    goes to the next origin as long as no origin has answered yet: `fail_to_connect` and
//!    `error_while_proxy` mark the origin down when it is broken (refused, reset, silent on
//!    something it has), and `upstream_response_filter` turns a 5xx (marked down) or a 404 (not
//!    marked: that origin may just lack the stream) into another try while an origin is left.
//! 5. `response_cache_filter`: the origin's Cache-Control decides, with the edge's rules on top
//!    (404/503 kept at most `negative_ttl`, directive-less playlists at `max-age=0` kept
//!    `playlist_fresh`, no playlist ever served stale).
//! 6. `response_filter`: `Age` on every answer, `X-Cache` saying how it was served. The cache
//!    holds one identity copy of each object, fetched without `Accept-Encoding`; a playlist
//!    for a player that accepts gzip is gathered whole by `response_body_filter` and answered
//!    with its compressed copy from [`crate::gzip`], made once per playlist version. With
//!    signing on, `response_body_filter` instead hands the player's signature on to every URI
//!    of a playlist, and pingora's compression module gzips that player's own copy.
//! 7. `logging`: metrics.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use pingora::cache::cache_control::{CacheControl, InterpretCacheControl};
use pingora::cache::lock::CacheKeyLockImpl;
use pingora::cache::{
    CacheKey, CacheMeta, CacheMetaDefaults, CacheOptionOverrides, CachePhase, NoCacheReason,
    RespCacheable,
};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::modules::http::compression::ResponseCompressionBuilder;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};

use crate::config::EdgeConfig;
use crate::gzip::{self, GzipCache};
use crate::metrics::EdgeMetrics;
use crate::request::{self, CacheRequest, ObjectKind};
use crate::signing;
use crate::storage::{FillAwareLock, MediaCache};
use crate::upstream::Origins;
use crate::web::{self, WebPage};

/// gzip level of the compression module, for what is compressed per answer (a signed player's
/// own playlist, the watch page's files): fast, they are a few kilobytes.
const COMPRESSION_LEVEL: u32 = 4;

/// gzip level of the shared playlist copies: made once per playlist version for every player,
/// so the smaller output is worth the time.
const GZIP_LEVEL: u32 = 6;

/// No freshness from defaults: an answer without Cache-Control or Expires is not cached.
const NO_DEFAULTS: CacheMetaDefaults = CacheMetaDefaults::new(|_| None, 0, 0);

/// A shield answered a request from an upstream this recently is a way to the media, whatever
/// its health checks say.
const UPSTREAM_RECENT: Duration = Duration::from_secs(2);

/// Per-request state.
pub struct RequestCtx {
    started: Instant,
    request: Option<CacheRequest>,
    /// How many origins this request has tried and failed, and which (bit per origin).
    attempt: usize,
    tried: u64,
    /// The origin of the current try (its name and place in the list), and when it was asked.
    origin: Option<String>,
    origin_index: Option<usize>,
    asked: Option<Instant>,
    /// An origin has answered this request (a retry would be too late).
    answered: bool,
    /// Every origin has been tried and a held request timed out: this try waits
    /// `read_timeout`.
    patient: bool,
    /// The player's signature, to hand on to the URIs of a playlist answered with 200.
    hand_on: Option<String>,
    /// The playlist answered with its shared gzip copy: the identity body is gathered whole
    /// first. Never with `hand_on`.
    gzip: GzipState,
    /// The playlist body not yet sent on: a partial line (`hand_on`) or all of it (`gzip`).
    playlist: Vec<u8>,
    /// Playlist bytes received so far, and how many the response said it has.
    received: usize,
    expected: Option<usize>,
}

/// The `Content-Length` of an answer, when it has a valid one.
fn content_length(resp: &ResponseHeader) -> Option<usize> {
    resp.headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
}

/// Why a try at an origin failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TryFailure {
    /// Refused, reset, a 5xx, or silent on something it has: marked down.
    Broken,
    /// A held request it did not answer in time (it may be legitimately far ahead).
    Slow,
    /// A 404: this origin may lack the stream (restarted, or not fed it).
    NotThere,
}

/// Where a playlist answered with the shared gzip copy stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GzipState {
    /// Not such an answer.
    Off,
    /// Gathering the identity body.
    Gathering,
    /// The compressed body went out.
    Sent,
}

/// See the module documentation.
pub struct Edge {
    origins: Arc<Origins>,
    storage: &'static MediaCache,
    lock: &'static CacheKeyLockImpl,
    lock_timeout: Duration,
    max_object_bytes: usize,
    negative_ttl: Duration,
    playlist_fresh: Duration,
    max_ttl: Duration,
    stale_if_error: Duration,
    connect_timeout: Duration,
    answer_timeout: Duration,
    hold_timeout: Duration,
    segment_timeout: Duration,
    read_timeout: Duration,
    idle_timeout: Duration,
    metrics: EdgeMetrics,
    signing: Option<signed_url::Key>,
    max_header_bytes: usize,
    keepalive_timeout: u64,
    /// `Alt-Svc` for answers over TCP when HTTP/3 is served.
    alt_svc: Option<String>,
    /// The watch page, when served.
    web: Option<WebPage>,
    /// Compressed playlists, when `cache.playlist_gzip_bytes` is not 0.
    gzip: Option<GzipCache>,
}

impl Edge {
    /// The edge for `config`, caching in `storage` (which lives as long as the process).
    pub fn new(
        config: &EdgeConfig,
        origins: Arc<Origins>,
        storage: &'static MediaCache,
        metrics: EdgeMetrics,
    ) -> Self {
        let lock_timeout = config.cache.lock_timeout();
        let lock: &'static CacheKeyLockImpl =
            Box::leak(Box::new(FillAwareLock::new(lock_timeout, storage)));
        let secs = Duration::from_secs_f64;
        Self {
            origins,
            storage,
            lock,
            lock_timeout,
            max_object_bytes: config.cache.max_object_bytes as usize,
            negative_ttl: secs(config.cache.negative_ttl),
            playlist_fresh: secs(config.cache.playlist_fresh),
            max_ttl: secs(config.cache.max_ttl),
            stale_if_error: secs(config.cache.stale_if_error),
            connect_timeout: secs(config.upstream.connect_timeout),
            answer_timeout: secs(config.upstream.answer_timeout),
            hold_timeout: secs(config.upstream.hold_timeout),
            segment_timeout: secs(config.upstream.segment_timeout),
            read_timeout: secs(config.upstream.read_timeout),
            idle_timeout: secs(config.upstream.idle_timeout),
            metrics,
            max_header_bytes: config.max_header_bytes,
            keepalive_timeout: config.keepalive_timeout,
            alt_svc: (config.http3.enabled
                && config.tls.cert.is_some()
                && config.tls.key.is_some())
            .then(|| {
                format!(
                    "h3=\":{}\"; ma={}",
                    config.tls_listen.port(),
                    config.http3.alt_svc_max_age
                )
            }),
            web: WebPage::load(&config.web),
            gzip: (config.cache.playlist_gzip_bytes > 0)
                .then(|| GzipCache::new(config.cache.playlist_gzip_bytes, GZIP_LEVEL)),
            signing: config
                .signing
                .key
                .as_deref()
                .and_then(|k| signed_url::Key::new(k.as_bytes())),
        }
    }

    /// Records a failed try (marking the origin down when it is `Broken`); returns whether
    /// the request may try again: while an origin is left, and once more, patiently, after a
    /// held request timed out everywhere.
    fn origin_failed(&self, ctx: &mut RequestCtx, e: &Error, failure: TryFailure) -> bool {
        let origin = ctx.origin.take().unwrap_or_default();
        self.metrics
            .upstream_failovers
            .with_label_values(&[origin.as_str()])
            .inc();
        if failure == TryFailure::Broken && self.origins.mark_down(&origin) {
            tracing::warn!(%origin, error = %e, "origin failed a request: marked down until its health check passes");
        }
        ctx.attempt += 1;
        if ctx.attempt < self.origins.len() {
            return true;
        }
        if failure == TryFailure::Slow && !ctx.patient {
            ctx.patient = true;
            return true;
        }
        false
    }

    /// Why a try failed, from its error and what was asked.
    fn classify(ctx: &RequestCtx, e: &Error) -> TryFailure {
        match e.etype() {
            ErrorType::ReadTimedout if Self::kind(ctx).held() => TryFailure::Slow,
            ErrorType::HTTPStatus(404) => TryFailure::NotThere,
            _ => TryFailure::Broken,
        }
    }

    /// How long the origin may take to start answering this try.
    fn answer_limit(&self, ctx: &RequestCtx) -> Duration {
        let kind = Self::kind(ctx);
        match kind {
            _ if ctx.patient => self.read_timeout,
            ObjectKind::Segment => self.segment_timeout,
            ObjectKind::BlockingPlaylist | ObjectKind::Part => self.hold_timeout,
            ObjectKind::Init | ObjectKind::Multivariant | ObjectKind::Playlist => {
                self.answer_timeout
            }
            ObjectKind::Api | ObjectKind::Other | ObjectKind::Page => self.read_timeout,
        }
    }

    fn kind(ctx: &RequestCtx) -> ObjectKind {
        ctx.request.as_ref().map_or(ObjectKind::Other, |r| r.kind)
    }

    /// Makes a playlist's answer its shared gzip copy ([`crate::gzip`]) when the player accepts
    /// gzip and the identity body's length is known: the copy goes out once the whole body is
    /// there, and a fill's reader may not say when it ends.
    fn answer_with_shared_gzip(
        &self,
        session: &Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if self.gzip.is_none()
            || resp.status != 200
            || !Self::kind(ctx).is_playlist()
            || resp.headers.contains_key(http::header::CONTENT_ENCODING)
        {
            return Ok(());
        }
        let req = session.req_header();
        let accepts = req
            .headers
            .get(http::header::ACCEPT_ENCODING)
            .is_some_and(|v| gzip::accepts_gzip(v.as_bytes()));
        if !accepts || content_length(resp).is_none() {
            return Ok(());
        }
        ctx.gzip = GzipState::Gathering;
        Self::body_rewritten(session, resp, ctx)?;
        // Byte ranges of the identity body mean nothing in the compressed one.
        resp.remove_header(&http::header::ACCEPT_RANGES);
        resp.insert_header(http::header::CONTENT_ENCODING, "gzip")?;
        let varies = resp.headers.get_all(http::header::VARY).iter().any(|v| {
            v.as_bytes()
                .split(|&b| b == b',')
                .any(|name| name.trim_ascii().eq_ignore_ascii_case(b"accept-encoding"))
        });
        if !varies {
            resp.append_header(http::header::VARY, "Accept-Encoding")?;
        }
        // Another representation of the same playlist: a strong validator becomes weak.
        if let Some(etag) = resp.headers.get(http::header::ETAG)
            && etag.as_bytes().starts_with(b"\"")
        {
            let weak = [b"W/", etag.as_bytes()].concat();
            resp.insert_header(http::header::ETAG, weak)?;
        }
        Ok(())
    }

    /// The body `response_body_filter` sends differs from the origin's (signatures handed on,
    /// or compressed): the origin's length is kept in `ctx.expected` to know when the body is
    /// whole, and the answer goes out without one (chunked over HTTP/1.1).
    fn body_rewritten(
        session: &Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.expected = content_length(resp);
        resp.remove_header(&http::header::CONTENT_LENGTH);
        if session.req_header().version == pingora::http::Version::HTTP_11 {
            resp.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
        }
        Ok(())
    }

    /// Gathers a playlist's identity body and sends its shared gzip copy once it is whole.
    fn gzip_body(&self, body: &mut Option<Bytes>, end_of_stream: bool, ctx: &mut RequestCtx) {
        if let Some(chunk) = body.take()
            && ctx.gzip == GzipState::Gathering
        {
            ctx.received += chunk.len();
            ctx.playlist.extend_from_slice(&chunk);
        }
        let whole = end_of_stream || ctx.expected.is_some_and(|n| ctx.received >= n);
        if ctx.gzip != GzipState::Gathering || !whole {
            return;
        }
        let Some(cache) = &self.gzip else {
            return;
        };
        let (compressed, outcome) = cache.compress(&ctx.playlist);
        self.metrics
            .playlist_gzip
            .with_label_values(&[outcome.as_str()])
            .inc();
        ctx.playlist = Vec::new();
        ctx.gzip = GzipState::Sent;
        *body = Some(compressed);
    }

    async fn refuse(&self, session: &mut Session, status: u16, reason: &str) -> Result<bool> {
        self.metrics.refused.with_label_values(&[reason]).inc();
        session.set_keepalive(None);
        self.answer(session, status, reason).await
    }

    /// Answers a short text response from the edge itself.
    async fn answer(&self, session: &mut Session, status: u16, text: &str) -> Result<bool> {
        let mut resp = ResponseHeader::build(status, Some(3))?;
        resp.insert_header("content-type", "text/plain")?;
        resp.insert_header("cache-control", "no-store")?;
        let body = Bytes::from(format!("{text}\n"));
        resp.insert_header("content-length", body.len())?;
        session.write_response_header(Box::new(resp), false).await?;
        session.write_response_body(Some(body), true).await?;
        Ok(true)
    }

    /// Answers a file of the watch page (`304` when the player has it already).
    async fn serve_page(&self, session: &mut Session, asset: &web::Asset) -> Result<bool> {
        let req = session.req_header();
        let head = req.method == "HEAD";
        let unchanged = web::not_modified(
            req.headers
                .get("if-none-match")
                .and_then(|v| v.to_str().ok()),
            &asset.etag,
        );
        let status = if unchanged { 304 } else { 200 };
        let mut resp = ResponseHeader::build(status, Some(5))?;
        resp.insert_header("content-type", asset.content_type)?;
        resp.insert_header("cache-control", asset.cache_control)?;
        resp.insert_header("etag", asset.etag.as_str())?;
        resp.insert_header("x-content-type-options", "nosniff")?;
        if unchanged {
            session.write_response_header(Box::new(resp), true).await?;
            return Ok(true);
        }
        resp.insert_header("content-length", asset.body.len())?;
        session.write_response_header(Box::new(resp), head).await?;
        if !head {
            session
                .write_response_body(Some(asset.body.clone()), true)
                .await?;
        }
        Ok(true)
    }

    /// The edge's rules for keeping an origin answer.
    fn cacheability(&self, kind: ObjectKind, resp: &ResponseHeader) -> RespCacheable {
        let status = resp.status.as_u16();
        let cc = CacheControl::from_resp_headers(resp);
        if cc.as_ref().is_some_and(|c| c.no_store() || c.private()) {
            return RespCacheable::Uncacheable(NoCacheReason::OriginNotCache);
        }
        let now = SystemTime::now();
        let header = resp.clone();
        let origin_ttl = cc.as_ref().and_then(|c| c.fresh_duration());
        match status {
            200 => {}
            // "Not there yet" and "blocking timed out": kept briefly, so the waiters of this
            // fetch share its answer and the next herd is one request per interval.
            400 | 404 | 503 => {
                let ttl = origin_ttl
                    .unwrap_or(self.negative_ttl)
                    .min(self.negative_ttl)
                    .min(self.max_ttl);
                if ttl.is_zero() {
                    return RespCacheable::Uncacheable(NoCacheReason::OriginNotCache);
                }
                return RespCacheable::Cacheable(CacheMeta::new(now + ttl, now, 0, 0, header));
            }
            _ => return RespCacheable::Uncacheable(NoCacheReason::OriginNotCache),
        }
        if kind.is_playlist() {
            // Never stale: no stale-while-revalidate, no stale-if-error, whatever the origin says.
            let ttl = match origin_ttl {
                Some(ttl) if !ttl.is_zero() => ttl,
                Some(_) if kind == ObjectKind::Playlist => self.playlist_fresh,
                _ => return RespCacheable::Uncacheable(NoCacheReason::OriginNotCache),
            };
            let ttl = ttl.min(self.max_ttl);
            return RespCacheable::Cacheable(CacheMeta::new(now + ttl, now, 0, 0, header));
        }
        match pingora::cache::filters::resp_cacheable(cc.as_ref(), header, false, &NO_DEFAULTS) {
            RespCacheable::Cacheable(meta) => RespCacheable::Cacheable(self.capped(meta, now)),
            other => other,
        }
    }

    /// Media fresh for longer than `max_ttl` is fresh for `max_ttl`, and for the rest of the
    /// origin's lifetime (plus its own `stale-if-error`, at most `stale_if_error`) it may be
    /// served stale when every origin fails: the bytes are still the origin's, the edge only
    /// asks again sooner.
    fn capped(&self, meta: CacheMeta, now: SystemTime) -> CacheMeta {
        let fresh = meta.fresh_until().duration_since(now).unwrap_or_default();
        if fresh <= self.max_ttl {
            return meta;
        }
        let rest = fresh - self.max_ttl + Duration::from_secs(meta.stale_if_error_sec().into());
        let stale = rest.min(self.stale_if_error).as_secs();
        CacheMeta::new(
            now + self.max_ttl,
            meta.created(),
            0,
            u32::try_from(stale).unwrap_or(u32::MAX),
            meta.response_header_copy(),
        )
    }
}

#[async_trait]
impl ProxyHttp for Edge {
    type CTX = RequestCtx;

    fn init_downstream_modules(&self, modules: &mut HttpModules) {
        // The cache holds one identity copy of each object (the origin is never asked for an
        // encoding, so a herd costs one request whatever its players accept); playlists are
        // compressed on the way out for the players that accept it. Media types are not
        // compressible and pass as they are.
        modules.add_module(ResponseCompressionBuilder::enable(COMPRESSION_LEVEL));
    }

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            request: None,
            attempt: 0,
            tried: 0,
            origin: None,
            origin_index: None,
            asked: None,
            answered: false,
            patient: false,
            hand_on: None,
            gzip: GzipState::Off,
            playlist: Vec::new(),
            received: 0,
            expected: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        // Idle connections are not kept forever, whatever the client asked.
        session.set_keepalive(Some(self.keepalive_timeout));
        let req = session.req_header();
        let header_bytes: usize = req
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum::<usize>()
            + req.uri.path_and_query().map_or(0, |p| p.as_str().len());
        if header_bytes > self.max_header_bytes {
            return self.refuse(session, 431, "request headers too large").await;
        }
        if req.uri.path() == "/healthz" {
            // The edge's own health, for load balancers. The edges below a shield ask with
            // `?upstream`: a shield none of whose upstreams is up is no way to the media.
            let for_an_edge = req
                .uri
                .query()
                .is_some_and(|q| q.split('&').any(|p| p == "upstream"));
            if for_an_edge && !self.origins.reachable(UPSTREAM_RECENT) {
                return self.answer(session, 503, "no upstream up").await;
            }
            return self.answer(session, 200, "ok").await;
        }
        let method = req.method.as_str();
        if !matches!(method, "GET" | "HEAD" | "OPTIONS") {
            return self.refuse(session, 405, "method not allowed").await;
        }
        let page = self.web.as_ref().filter(|_| method != "OPTIONS");
        if let Some(asset) = page.and_then(|w| w.get(req.uri.path())) {
            ctx.request = Some(CacheRequest {
                kind: ObjectKind::Page,
                key: req.uri.path().to_string(),
            });
            return self.serve_page(session, asset).await;
        }
        let read = request::read(req.uri.path(), req.uri.query());
        match read {
            Ok(r) => {
                // Live streams and their finished broadcasts alike.
                let path = req.uri.path();
                let signed = r.kind != ObjectKind::Api
                    && (path.starts_with("/live/") || path.starts_with("/vod/"));
                if let Some(key) = &self.signing
                    && signed
                {
                    let now = SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    if let Err(denied) = key.verify(req.uri.path(), req.uri.query(), now) {
                        tracing::info!(uri = %req.uri, reason = denied.as_str(), "signature refused");
                        return self.refuse(session, 403, &denied.to_string()).await;
                    }
                    if r.kind.is_playlist() {
                        ctx.hand_on = req.uri.query().and_then(signing::signature_of);
                    }
                }
                ctx.request = Some(r);
                Ok(false)
            }
            Err(e) => {
                tracing::debug!(uri = %req.uri, error = %e, "request refused");
                self.refuse(session, 400, &e.to_string()).await
            }
        }
    }

    fn request_cache_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        let method = &session.req_header().method;
        let cacheable_method = method == "GET" || method == "HEAD";
        if cacheable_method && Self::kind(ctx).cacheable() {
            let mut overrides = CacheOptionOverrides::default();
            overrides.wait_timeout = Some(self.lock_timeout);
            session
                .cache
                .enable(self.storage, None, None, Some(self.lock), Some(overrides));
            session.cache.set_max_file_size_bytes(self.max_object_bytes);
        }
        Ok(())
    }

    fn cache_key_callback(&self, _session: &Session, ctx: &mut RequestCtx) -> Result<CacheKey> {
        let key = ctx.request.as_ref().map_or("", |r| r.key.as_str());
        Ok(CacheKey::new(key, ""))
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let pick = self.origins.pick(ctx.tried);
        ctx.tried |= 1u64.checked_shl(pick.index as u32).unwrap_or(0);
        ctx.origin = Some(pick.name.to_string());
        ctx.origin_index = Some(pick.index);
        ctx.asked = Some(Instant::now());
        let mut peer = match pick.addr {
            Some(addr) => HttpPeer::new(addr, false, String::new()),
            // Not resolved yet (the health check has not run): let the connector resolve it.
            None => HttpPeer::new(pick.name, false, String::new()),
        };
        peer.options.connection_timeout = Some(self.connect_timeout);
        peer.options.read_timeout = Some(self.answer_limit(ctx));
        peer.options.idle_timeout = Some(self.idle_timeout);
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if self.origin_failed(ctx, &e, TryFailure::Broken) {
            e.set_retry(true);
        }
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        _client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("origin {peer}"));
        // Only a request that no origin has answered yet may go to the next one: after that,
        // bytes may be on their way to players and to the cache.
        let failure = Self::classify(ctx, &e);
        let retry = !ctx.answered
            && session.response_written().is_none()
            && session.req_header().method.is_idempotent()
            && self.origin_failed(ctx, &e, failure);
        e.set_retry(retry);
        e
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(r) = &ctx.request
            && r.kind.cacheable()
            && let Ok(uri) = r.key.parse()
        {
            upstream.set_uri(uri);
            upstream.remove_header("accept-encoding");
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let kind = Self::kind(ctx);
        self.metrics
            .upstream_requests
            .with_label_values(&[kind.as_str(), upstream.status.as_str()])
            .inc();
        if let Some(asked) = ctx.asked {
            self.metrics
                .upstream_seconds
                .with_label_values(&[kind.as_str()])
                .observe(asked.elapsed().as_secs_f64());
        }
        // An origin that cannot serve this (a 5xx, or a 404 from one that may lack the stream)
        // while another origin is left untried: ask that one (error_while_proxy decides).
        let status = upstream.status.as_u16();
        let untried = (ctx.tried.count_ones() as usize) < self.origins.len();
        if kind.cacheable() && (status >= 500 || status == 404) && untried {
            return Err(Error::explain(
                ErrorType::HTTPStatus(status),
                format!("origin answered {status}: trying the next origin"),
            ));
        }
        ctx.answered = true;
        if status < 400
            && let Some(index) = ctx.origin_index
        {
            self.origins.served(index);
        }
        Ok(())
    }

    fn response_cache_filter(
        &self,
        _session: &Session,
        resp: &ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<RespCacheable> {
        Ok(self.cacheability(Self::kind(ctx), resp))
    }

    fn should_serve_stale(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
        error: Option<&Error>,
    ) -> bool {
        // Media that the origin marked stale-if-error is still the right bytes when the origin
        // fails; playlists are never served stale, and nothing is served stale merely to
        // revalidate in the background.
        let media = matches!(
            Self::kind(ctx),
            ObjectKind::Part | ObjectKind::Segment | ObjectKind::Init
        );
        media && error.is_some_and(|e| e.esource() == &ErrorSource::Upstream)
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if resp.status != 200 {
            ctx.hand_on = None;
        }
        if ctx.hand_on.is_some() {
            // The URIs grow by the signature.
            Self::body_rewritten(session, resp, ctx)?;
        } else {
            self.answer_with_shared_gzip(session, resp, ctx)?;
        }
        if resp.headers.get("age").is_none() {
            resp.insert_header("age", "0")?;
        }
        let label = cache_label(session);
        resp.insert_header("x-cache", label)?;
        if let Some(alt_svc) = &self.alt_svc
            && session.req_header().version != pingora::http::Version::HTTP_3
        {
            resp.insert_header("alt-svc", alt_svc.as_str())?;
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        if ctx.gzip != GzipState::Off {
            self.gzip_body(body, end_of_stream, ctx);
            return Ok(None);
        }
        let Some(signature) = &ctx.hand_on else {
            return Ok(None);
        };
        // Line by line as the body arrives (a fill may not announce its end to this filter):
        // whole lines go out rewritten, a partial last line waits for the rest, and the body's
        // known length or its end flushes whatever is left.
        if let Some(chunk) = body.take() {
            ctx.received += chunk.len();
            ctx.playlist.extend_from_slice(&chunk);
        }
        let complete = end_of_stream || ctx.expected.is_some_and(|n| ctx.received >= n);
        let ready = if complete {
            ctx.playlist.len()
        } else {
            ctx.playlist
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1)
        };
        if ready > 0 {
            let lines: Vec<u8> = ctx.playlist.drain(..ready).collect();
            *body = Some(Bytes::from(signing::hand_on(&lines, signature)));
        }
        Ok(None)
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        let kind = Self::kind(ctx).as_str();
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        self.metrics
            .requests
            .with_label_values(&[kind, cache_label(session), &status.to_string()])
            .inc();
        self.metrics
            .request_seconds
            .with_label_values(&[kind])
            .observe(ctx.started.elapsed().as_secs_f64());
        self.metrics
            .bytes_out
            .with_label_values(&[kind])
            .inc_by(session.body_bytes_sent() as u64);
        let protocol = match session.req_header().version {
            pingora::http::Version::HTTP_3 => "h3",
            pingora::http::Version::HTTP_2 => "h2",
            _ => "h1",
        };
        self.metrics
            .protocol_requests
            .with_label_values(&[protocol])
            .inc();
        self.metrics
            .protocol_bytes_out
            .with_label_values(&[protocol])
            .inc_by(session.body_bytes_sent() as u64);
        if let Some(waited) = session.cache.lock_duration() {
            self.metrics.lock_wait_seconds.observe(waited.as_secs_f64());
        }
    }
}

/// How a response was served: `hit`, `coalesced` (it waited for another request's fetch),
/// `miss` (it fetched), `stale`, or `pass` (not cached).
fn cache_label(session: &Session) -> &'static str {
    if !session.cache.enabled() && !matches!(session.cache.phase(), CachePhase::Disabled(_)) {
        return "pass";
    }
    match session.cache.phase() {
        CachePhase::Hit if session.cache.lock_duration().is_some() => "coalesced",
        CachePhase::Hit => "hit",
        CachePhase::Miss if session.cache.lock_duration().is_some() => "coalesced",
        CachePhase::Miss | CachePhase::Expired => "miss",
        CachePhase::Stale | CachePhase::StaleUpdating => "stale",
        CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) => "revalidated",
        _ => "pass",
    }
}
