//! HTTP and WebSocket: `ws://HOST/v1/rooms/{stream}/ws` for viewers, REST for history and
//! moderation, all on one axum router.
//!
//! Handlers return `Result<_, Response>`: the error side is a finished error response, built
//! once per refused request, so boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use futures_util::{SinkExt, StreamExt};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::{Auth, Refused};
use crate::backend::{Backend, Change};
use crate::channels;
use crate::config::ChatRelayConfig;
use crate::emotes;
use crate::guests;
use crate::metrics::ChatMetrics;
use crate::protocol::{self, ClientOp, Modes, ServerFrame, User};
use crate::room::RoomSettings;
use crate::store::Ban;
use crate::valid_name as valid_room;

/// Close code for a reader dropped because its queue filled: reconnect and recover.
pub const CLOSE_RESYNC: u16 = 4008;
/// Bytes read from a connection's socket at a time.
const READ_BUFFER: usize = 4096;
/// Most bytes a connection's write buffer may hold (a frame waiting for the socket).
const WRITE_BUFFER_MAX: usize = 64 * 1024;
/// Error frames a connection may cause before it is closed (1008, policy).
const MAX_ERRORS: u32 = 20;
/// How long a connection that is ending still reads what its client sends (its pongs, its
/// answer to the close frame) before the socket is closed.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// What the handlers share.
pub struct AppState {
    pub(crate) config: ChatRelayConfig,
    pub(crate) auth: Auth,
    pub(crate) backend: Backend,
    pub(crate) metrics: ChatMetrics,
    senders: DefaultKeyedRateLimiter<String>,
    pub(crate) guest_limit: DefaultDirectRateLimiter,
    emotes: HashSet<String>,
}

/// The room settings `config` asks for.
pub fn room_settings(config: &ChatRelayConfig) -> RoomSettings {
    RoomSettings {
        shards: config.fanout_shards,
        send_queue: config.send_queue,
        reaction_window: Duration::from_millis(config.reaction_window_ms),
        viewers_interval: Duration::from_secs_f64(config.viewers_interval),
    }
}

impl AppState {
    /// The state for `config`, keeping state in `backend`.
    pub fn new(config: ChatRelayConfig, backend: Backend, metrics: ChatMetrics) -> Arc<Self> {
        let burst = NonZeroU32::new(config.rate_burst).unwrap_or(NonZeroU32::MIN);
        let period = Duration::from_secs_f64(config.rate_period / f64::from(burst.get()));
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(burst))
            .allow_burst(burst);
        let guests = NonZeroU32::new(config.guests.per_second).unwrap_or(NonZeroU32::MIN);
        let guest_burst = NonZeroU32::new(guests.get().saturating_mul(2)).unwrap_or(guests);
        let guest_quota = Quota::per_second(guests).allow_burst(guest_burst);
        Arc::new(Self {
            guest_limit: RateLimiter::direct(guest_quota),
            auth: Auth::new(&config.jwt_secret, &config.admin_token),
            emotes: config.emotes.iter().cloned().collect(),
            backend,
            metrics,
            senders: RateLimiter::keyed(quota),
            config,
        })
    }
}

/// The router.
pub fn router(state: Arc<AppState>) -> Router {
    let cors = cors(&state.config.cors_origins);
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/v1/guests", post(guests::sign_in))
        .route("/v1/rooms/{stream}/ws", get(websocket))
        .route("/v1/rooms/{stream}/messages", get(history))
        .route("/v1/rooms/{stream}/messages/{id}", delete(delete_message))
        .route("/v1/rooms/{stream}/bans", post(ban))
        .route("/v1/rooms/{stream}/bans/{user}", delete(unban))
        .route("/v1/rooms/{stream}/announcements", post(announce))
        .route("/v1/rooms/{stream}/modes", get(modes).put(set_modes))
        .route(
            "/v1/channels/{channel}",
            get(channels::channel).put(channels::set_channel),
        )
        .route(
            "/v1/channels/{channel}/relationship",
            get(channels::relationship),
        )
        .route(
            "/v1/channels/{channel}/follow",
            post(channels::follow).delete(channels::unfollow),
        )
        .route(
            "/v1/channels/{channel}/subscription",
            post(channels::subscribe).delete(channels::unsubscribe),
        )
        .layer(cors)
        .with_state(state)
}

/// CORS for the REST calls of the pages at `origins` (`*`: any page): bearer tokens in
/// `Authorization`, JSON bodies; preflights are remembered for 10 minutes.
fn cors(origins: &[String]) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(Duration::from_secs(600));
    if origins.iter().any(|o| o == "*") {
        return layer.allow_origin(AllowOrigin::any());
    }
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    layer.allow_origin(AllowOrigin::list(list))
}

/// Serves `state` on `listen` until `shutdown` resolves.
pub async fn serve(
    listen: SocketAddr,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(%listen, "chat relay listening");
    let limiter = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            // Forget the buckets of users who have not sent for a while (bounded memory).
            limiter.senders.retain_recent();
        }
    });
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `{"error": code, "message": ...}` with `status`.
pub(crate) fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({"error": code, "message": message})),
    )
        .into_response()
}

/// The 401 for a token that was refused, counted.
pub(crate) fn token_refused(state: &AppState, refused: &Refused) -> Response {
    state
        .metrics
        .refused
        .with_label_values(&["unauthorized"])
        .inc();
    let code = match refused {
        Refused::Expired => "token_expired",
        Refused::Invalid => "token_invalid",
    };
    refuse(StatusCode::UNAUTHORIZED, code, &refused.to_string())
}

pub(crate) fn unavailable(what: &str, error: &anyhow::Error) -> Response {
    tracing::error!(error = %error, "{what} unavailable");
    refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        &format!("{what} unavailable"),
    )
}

#[derive(Debug, Deserialize)]
struct WsQuery {
    token: Option<String>,
    /// The last offset the client has: what came after it is sent first.
    since: Option<u64>,
}

async fn websocket(
    State(state): State<Arc<AppState>>,
    Path(stream): Path<String>,
    Query(query): Query<WsQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    if !valid_room(&stream) {
        return refuse(StatusCode::BAD_REQUEST, "bad_room", "no such room name");
    }
    let user = match query.token.as_deref().map(|t| state.auth.user(t)) {
        None => None,
        Some(Ok(user)) => Some(user),
        Some(Err(refused)) => {
            tracing::info!(room = %stream, reason = %refused, "token refused");
            return token_refused(&state, &refused);
        }
    };
    if state.metrics.connections.get() >= state.config.max_connections as i64 {
        state.metrics.refused.with_label_values(&["full"]).inc();
        tracing::warn!(room = %stream, max = state.config.max_connections, "connection refused: node full");
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "full",
            "this node holds all the connections it may: try another",
        );
    }
    let max = state.config.max_frame_bytes;
    // The WebSocket layer's defaults are 128 KiB read and write buffers per connection, read
    // eagerly: 10,000 viewers would hold 2.5 GiB. Chat frames are small.
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(WRITE_BUFFER_MAX.max(2 * max))
        .on_upgrade(move |socket| session(socket, state, stream, user, query.since))
}

type Sink = futures_util::stream::SplitSink<WebSocket, WsMessage>;

/// A connection's sending half, with how long one frame may take to reach the socket
/// (`write_timeout`): a client that stops reading fills its socket buffers and then this, and
/// its connection is dropped rather than held open forever.
struct Out {
    sink: Sink,
    limit: Duration,
}

impl Out {
    /// Sends `message`; false when the connection is gone or stalled past the limit.
    async fn write(&mut self, message: WsMessage) -> bool {
        matches!(
            tokio::time::timeout(self.limit, self.sink.send(message)).await,
            Ok(Ok(()))
        )
    }

    /// Closes with `code`.
    async fn close(&mut self, code: u16, reason: &str) {
        let frame = WsMessage::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }));
        self.write(frame).await;
    }
}

/// The frames a joining client is sent first: the room's modes, then, with `since`, what it
/// missed; and the offset up to which live messages were already covered by them.
async fn greeting(
    state: &AppState,
    room: &crate::room::Room,
    since: Option<u64>,
) -> anyhow::Result<(Vec<String>, u64)> {
    let modes = state.backend.modes(room.name()).await?;
    let mut frames = vec![ServerFrame::Room(&modes).text()];
    let Some(since) = since else {
        return Ok((frames, 0));
    };
    // Every message published from now on reaches this connection's queue, so whatever the
    // history read misses is in the queue; what both have is skipped by offset.
    if !room.ready(Duration::from_secs(5)).await {
        anyhow::bail!("the room is not receiving its frames");
    }
    let (recovered, messages) = state
        .backend
        .recover(
            room.name(),
            since,
            state.config.recovery_max,
            state.config.history_page,
        )
        .await?;
    state
        .metrics
        .recoveries
        .with_label_values(&[if recovered { "true" } else { "false" }])
        .inc();
    let covered = messages.last().map_or(since, |m| m.offset.max(since));
    frames.push(
        ServerFrame::Recovery {
            recovered,
            messages: &messages,
        }
        .text(),
    );
    Ok((frames, covered))
}

async fn session(
    socket: WebSocket,
    state: Arc<AppState>,
    room: String,
    user: Option<User>,
    since: Option<u64>,
) {
    state.metrics.connections.inc();
    let mut membership = state
        .backend
        .hub()
        .join(&room, user.as_ref().map(|u| u.id.clone()));
    let (sink, mut incoming) = socket.split();
    let mut out = Out {
        sink,
        limit: Duration::from_secs_f64(state.config.write_timeout),
    };
    let covered = match greeting(&state, membership.room(), since).await {
        Ok((frames, covered)) => {
            for frame in frames {
                if !out.write(WsMessage::Text(frame.into())).await {
                    state.metrics.connections.dec();
                    return;
                }
            }
            covered
        }
        Err(e) => {
            tracing::warn!(%room, error = %e, "cannot greet a connection");
            out.close(1013, "try again later").await;
            state.metrics.connections.dec();
            return;
        }
    };
    let mut ping = tokio::time::interval(Duration::from_secs_f64(state.config.ping_interval));
    ping.tick().await;
    let mut awaiting_pong = false;
    let mut errors = 0u32;
    loop {
        tokio::select! {
            // A kick first: the room drops a slow reader's queue as it kicks it, and the frames
            // still queued, then the queue's end, must not win over the close that says why.
            biased;
            _ = membership.kicked.notified() => {
                tracing::info!(%room, "slow reader dropped");
                out.close(CLOSE_RESYNC, "resync: too slow").await;
                break;
            }
            frame = membership.rx.recv() => match frame {
                Some(frame) if frame.offset != 0 && frame.offset <= covered => {}
                Some(frame) => {
                    if !out.write(WsMessage::Text(frame.text.as_ref().into())).await {
                        break;
                    }
                }
                None => break,
            },
            _ = ping.tick() => {
                if awaiting_pong {
                    out.close(1011, "ping timeout").await;
                    break;
                }
                awaiting_pong = true;
                if !out.write(WsMessage::Ping(Vec::new().into())).await {
                    break;
                }
            }
            read = incoming.next() => {
                let replies = match read {
                    None | Some(Ok(WsMessage::Close(_))) => break,
                    Some(Err(e)) => {
                        // Oversized frames and invalid UTF-8 end here.
                        let text = e.to_string();
                        let (code, what) = if text.contains("utf-8") || text.contains("UTF-8") {
                            (1007, "invalid_utf8")
                        } else if text.contains("too long") || text.contains("Space limit") || text.contains("capacity") {
                            (1009, "too_big")
                        } else {
                            (1002, "protocol")
                        };
                        state.metrics.refused.with_label_values(&[what]).inc();
                        tracing::info!(%room, error = %text, "closing a connection that sent a bad frame");
                        out.close(code, what).await;
                        break;
                    }
                    Some(Ok(WsMessage::Pong(_))) => {
                        awaiting_pong = false;
                        continue;
                    }
                    Some(Ok(WsMessage::Ping(_))) => continue,
                    Some(Ok(WsMessage::Binary(_))) => vec![error("bad_frame", "frames are JSON text")],
                    Some(Ok(WsMessage::Text(text))) => {
                        handle(&state, membership.room(), user.as_ref(), text.as_str()).await
                    }
                };
                for reply in replies {
                    if reply.contains("\"op\":\"error\"") {
                        errors += 1;
                    }
                    if !out.write(WsMessage::Text(reply.into())).await {
                        break;
                    }
                }
                if errors > MAX_ERRORS {
                    out.close(1008, "too many refused frames").await;
                    break;
                }
            }
        }
    }
    // The connection has left the room. What the client still sends is read and dropped until
    // it closes too, for at most CLOSE_LINGER: a socket closed with unread data is reset, and a
    // reset throws away what the client has not read yet, the close frame (say a slow
    // reader's 4008) among it.
    drop(membership);
    let _ = tokio::time::timeout(CLOSE_LINGER, async {
        while let Some(Ok(message)) = incoming.next().await {
            if matches!(message, WsMessage::Close(_)) {
                break;
            }
        }
    })
    .await;
    state.metrics.connections.dec();
}

fn error(code: &str, message: &str) -> String {
    ServerFrame::Error { code, message }.text()
}

/// One client frame; the frames to send back to this client alone.
async fn handle(
    state: &Arc<AppState>,
    room: &Arc<crate::room::Room>,
    user: Option<&User>,
    text: &str,
) -> Vec<String> {
    let refused = |code: &'static str, message: &str| {
        state.metrics.refused.with_label_values(&[code]).inc();
        vec![error(code, message)]
    };
    let op = match protocol::read(text) {
        Ok(op) => op,
        Err(code) => return refused(code, "not a frame of protocol v1"),
    };
    match op {
        ClientOp::Seen { .. } => Vec::new(),
        ClientOp::React { emoji } => {
            if user.is_none() {
                return refused("unauthorized", "reacting needs a token");
            }
            if emoji.is_empty() || emoji.chars().count() > 8 {
                return refused("bad_frame", "an emoji is 1 to 8 characters");
            }
            room.react(&emoji);
            Vec::new()
        }
        ClientOp::Send { text, nonce } => {
            let Some(user) = user else {
                return refused("unauthorized", "sending needs a token");
            };
            let text = text.trim();
            if text.is_empty() {
                return refused("empty", "an empty message");
            }
            if text.chars().count() > state.config.max_message_chars {
                let max = state.config.max_message_chars;
                return refused(
                    "too_long",
                    &format!("messages are at most {max} characters"),
                );
            }
            let now = now_ms();
            match admit(state, room.name(), user, now).await {
                Ok(None) => {}
                Ok(Some(refusal)) => return vec![refusal],
                Err(e) => {
                    tracing::error!(room = %room.name(), error = %e, "cannot check a sender");
                    return refused("unavailable", "the message could not be checked");
                }
            }
            let started = Instant::now();
            let emotes = emotes::parse(text, &state.emotes);
            let message = match state.backend.append(room, user, text, emotes, now).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(room = %room.name(), error = %e, "cannot store a message");
                    return refused("unavailable", "the message could not be stored");
                }
            };
            state.metrics.messages.inc();
            state
                .metrics
                .publish_seconds
                .observe(started.elapsed().as_secs_f64());
            vec![
                ServerFrame::Ack {
                    nonce: nonce.as_deref(),
                    id: &message.id,
                    offset: message.offset,
                }
                .text(),
            ]
        }
    }
}

/// Whether `user` may send to the room now: `None`, or the frame that says why not (a ban,
/// followers-only, the rate limit, slow mode; checked in that order, and slow mode last as it
/// counts the message as sent).
async fn admit(
    state: &AppState,
    room: &str,
    user: &User,
    now: u64,
) -> anyhow::Result<Option<String>> {
    let refused = |code: &'static str, message: &str| {
        state.metrics.refused.with_label_values(&[code]).inc();
        Some(error(code, message))
    };
    if let Some(ban) = state.backend.banned(room, &user.id, now / 1000).await? {
        state.metrics.refused.with_label_values(&["banned"]).inc();
        return Ok(Some(
            ServerFrame::Banned {
                reason: &ban.reason,
                until: ban.until,
            }
            .text(),
        ));
    }
    let modes = state.backend.modes(room).await?;
    if let Some(minutes) = modes.followers_only {
        let relation = state
            .backend
            .relate(room, &user.id, Change::None, now)
            .await?;
        let long_enough = relation
            .followed_at
            .is_some_and(|at| at + u64::from(minutes) * 60_000 <= now);
        if !long_enough {
            let wait = if minutes == 0 {
                "this room is in followers-only mode: follow the channel to chat".to_string()
            } else {
                format!(
                    "this room is in followers-only mode: followers of {minutes} minutes or more can chat"
                )
            };
            return Ok(refused("followers_only", &wait));
        }
    }
    if state.senders.check_key(&user.id).is_err() {
        return Ok(refused("rate_limited", "too many messages: wait a moment"));
    }
    if modes.slow_mode > 0
        && let Some(left) = state
            .backend
            .slow_mode(room, &user.id, modes.slow_mode, now)
            .await?
    {
        let seconds = left.div_ceil(1000);
        return Ok(refused(
            "slow_mode",
            &format!("this room is in slow mode: you can send again in {seconds} s"),
        ));
    }
    Ok(None)
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    before: Option<u64>,
    limit: Option<usize>,
}

async fn history(
    State(state): State<Arc<AppState>>,
    Path(stream): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    if !valid_room(&stream) {
        return refuse(StatusCode::BAD_REQUEST, "bad_room", "no such room name");
    }
    let limit = q.limit.unwrap_or(50).clamp(1, state.config.history_page);
    match state.backend.page(&stream, q.before, limit).await {
        Ok(messages) => {
            let next = (messages.len() == limit)
                .then(|| messages.last().map(|m| m.offset))
                .flatten();
            Json(serde_json::json!({"messages": messages, "next": next})).into_response()
        }
        Err(e) => unavailable("history", &e),
    }
}

pub(crate) fn admin(state: &AppState, headers: &HeaderMap) -> Result<(), Response> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if state.auth.is_admin(authorization) {
        Ok(())
    } else {
        state
            .metrics
            .refused
            .with_label_values(&["forbidden"])
            .inc();
        Err(refuse(
            StatusCode::FORBIDDEN,
            "forbidden",
            "moderation needs the admin token",
        ))
    }
}

async fn delete_message(
    State(state): State<Arc<AppState>>,
    Path((stream, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admin(&state, &headers) {
        return r;
    }
    match state.backend.delete(&stream, &id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => refuse(StatusCode::NOT_FOUND, "not_found", "no such message"),
        Err(e) => unavailable("store", &e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BanRequest {
    user_id: String,
    #[serde(default)]
    reason: Option<String>,
    /// Seconds; absent for good.
    #[serde(default)]
    duration: Option<u64>,
}

async fn ban(
    State(state): State<Arc<AppState>>,
    Path(stream): Path<String>,
    headers: HeaderMap,
    Json(req): Json<BanRequest>,
) -> Response {
    if let Err(r) = admin(&state, &headers) {
        return r;
    }
    if !valid_room(&stream) || req.user_id.is_empty() || req.user_id.len() > 256 {
        return refuse(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "a room and a user_id",
        );
    }
    let ban = Ban {
        reason: req
            .reason
            .unwrap_or_else(|| "banned by a moderator".to_string())
            .chars()
            .take(500)
            .collect(),
        until: req.duration.map(|d| now_ms() / 1000 + d),
    };
    match state.backend.ban(&stream, &req.user_id, ban).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => unavailable("store", &e),
    }
}

async fn unban(
    State(state): State<Arc<AppState>>,
    Path((stream, user)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admin(&state, &headers) {
        return r;
    }
    match state.backend.unban(&stream, &user).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => refuse(StatusCode::NOT_FOUND, "not_found", "no such ban"),
        Err(e) => unavailable("store", &e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Announcement {
    text: String,
    #[serde(default)]
    level: Option<String>,
}

async fn announce(
    State(state): State<Arc<AppState>>,
    Path(stream): Path<String>,
    headers: HeaderMap,
    Json(req): Json<Announcement>,
) -> Response {
    if let Err(r) = admin(&state, &headers) {
        return r;
    }
    let level = req.level.unwrap_or_else(|| "info".to_string());
    if !valid_room(&stream)
        || req.text.is_empty()
        || req.text.chars().count() > 1000
        || !matches!(level.as_str(), "info" | "warning" | "critical")
    {
        return refuse(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "text of 1 to 1000 characters, level info, warning or critical",
        );
    }
    let frame = ServerFrame::Announcement {
        text: &req.text,
        level: &level,
    };
    match state.backend.broadcast(&stream, &frame).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => unavailable("fan-out", &e),
    }
}

async fn modes(State(state): State<Arc<AppState>>, Path(stream): Path<String>) -> Response {
    if !valid_room(&stream) {
        return refuse(StatusCode::BAD_REQUEST, "bad_room", "no such room name");
    }
    match state.backend.modes(&stream).await {
        Ok(modes) => Json(modes).into_response(),
        Err(e) => unavailable("store", &e),
    }
}

/// Longest slow-mode wait, seconds (Twitch allows 120; an hour is plenty).
const MAX_SLOW_MODE: u32 = 3600;
/// Longest followers-only age, minutes (three months, as Twitch).
const MAX_FOLLOWER_MINUTES: u32 = 129_600;

async fn set_modes(
    State(state): State<Arc<AppState>>,
    Path(stream): Path<String>,
    headers: HeaderMap,
    Json(modes): Json<Modes>,
) -> Response {
    if let Err(r) = admin(&state, &headers) {
        return r;
    }
    if !valid_room(&stream)
        || modes.slow_mode > MAX_SLOW_MODE
        || modes
            .followers_only
            .is_some_and(|m| m > MAX_FOLLOWER_MINUTES)
    {
        return refuse(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "slow_mode of 0 to 3600 seconds, followers_only of null or 0 to 129600 minutes",
        );
    }
    match state.backend.set_modes(&stream, modes).await {
        Ok(()) => Json(modes).into_response(),
        Err(e) => unavailable("store", &e),
    }
}
