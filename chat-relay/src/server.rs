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
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use futures_util::{SinkExt, StreamExt};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;

use crate::auth::{Auth, Refused};
use crate::config::ChatRelayConfig;
use crate::emotes;
use crate::metrics::ChatMetrics;
use crate::protocol::{self, ClientOp, ServerFrame, User};
use crate::room::{Hub, RoomSettings};
use crate::store::{Ban, Store};

/// Close code for a reader dropped because its queue filled: reconnect and recover.
pub const CLOSE_RESYNC: u16 = 4008;
/// Error frames a connection may cause before it is closed (1008, policy).
const MAX_ERRORS: u32 = 20;

/// What the handlers share.
pub struct AppState {
    config: ChatRelayConfig,
    auth: Auth,
    store: Arc<Store>,
    hub: Arc<Hub>,
    metrics: ChatMetrics,
    senders: DefaultKeyedRateLimiter<String>,
    emotes: HashSet<String>,
}

impl AppState {
    /// The state for `config`, storing in `store`.
    pub fn new(config: ChatRelayConfig, store: Store, metrics: ChatMetrics) -> Arc<Self> {
        let burst = NonZeroU32::new(config.rate_burst).unwrap_or(NonZeroU32::MIN);
        let period = Duration::from_secs_f64(config.rate_period / f64::from(burst.get()));
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(burst))
            .allow_burst(burst);
        let hub = Hub::new(
            RoomSettings {
                shards: config.fanout_shards,
                send_queue: config.send_queue,
                reaction_window: Duration::from_millis(config.reaction_window_ms),
                viewers_interval: Duration::from_secs_f64(config.viewers_interval),
            },
            metrics.clone(),
        );
        Arc::new(Self {
            auth: Auth::new(&config.jwt_secret, &config.admin_token),
            emotes: config.emotes.iter().cloned().collect(),
            store: Arc::new(store),
            hub,
            metrics,
            senders: RateLimiter::keyed(quota),
            config,
        })
    }
}

/// The router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/v1/rooms/{stream}/ws", get(websocket))
        .route("/v1/rooms/{stream}/messages", get(history))
        .route("/v1/rooms/{stream}/messages/{id}", delete(delete_message))
        .route("/v1/rooms/{stream}/bans", post(ban))
        .route("/v1/rooms/{stream}/bans/{user}", delete(unban))
        .route("/v1/rooms/{stream}/announcements", post(announce))
        .with_state(state)
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

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `{"error": code, "message": ...}` with `status`.
fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({"error": code, "message": message})),
    )
        .into_response()
}

/// A room name is a stream name: letters, digits, `_` and `-`, at most 64.
fn valid_room(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[derive(Debug, Deserialize)]
struct WsQuery {
    token: Option<String>,
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
            state
                .metrics
                .refused
                .with_label_values(&["unauthorized"])
                .inc();
            tracing::info!(room = %stream, reason = %refused, "token refused");
            let code = match refused {
                Refused::Expired => "token_expired",
                Refused::Invalid => "token_invalid",
            };
            return refuse(StatusCode::UNAUTHORIZED, code, &refused.to_string());
        }
    };
    let max = state.config.max_frame_bytes;
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| session(socket, state, stream, user))
}

/// Closes with `code`.
async fn close(
    sink: &mut futures_util::stream::SplitSink<WebSocket, WsMessage>,
    code: u16,
    reason: &str,
) {
    let _ = sink
        .send(WsMessage::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

async fn session(socket: WebSocket, state: Arc<AppState>, room: String, user: Option<User>) {
    state.metrics.connections.inc();
    let mut membership = state.hub.join(&room, user.as_ref().map(|u| u.id.clone()));
    let (mut sink, mut incoming) = socket.split();
    let mut ping = tokio::time::interval(Duration::from_secs_f64(state.config.ping_interval));
    ping.tick().await;
    let mut awaiting_pong = false;
    let mut errors = 0u32;
    loop {
        tokio::select! {
            frame = membership.rx.recv() => match frame {
                Some(text) => {
                    if sink.send(WsMessage::Text(text.as_ref().into())).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            _ = membership.kicked.notified() => {
                tracing::info!(%room, "slow reader dropped");
                close(&mut sink, CLOSE_RESYNC, "resync: too slow").await;
                break;
            }
            _ = ping.tick() => {
                if awaiting_pong {
                    close(&mut sink, 1011, "ping timeout").await;
                    break;
                }
                awaiting_pong = true;
                if sink.send(WsMessage::Ping(Vec::new().into())).await.is_err() {
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
                        close(&mut sink, code, what).await;
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
                    if sink.send(WsMessage::Text(reply.into())).await.is_err() {
                        break;
                    }
                }
                if errors > MAX_ERRORS {
                    close(&mut sink, 1008, "too many refused frames").await;
                    break;
                }
            }
        }
    }
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
            let store = state.store.clone();
            let (room_name, user_id) = (room.name().to_string(), user.id.clone());
            let ban =
                tokio::task::spawn_blocking(move || store.banned(&room_name, &user_id, now / 1000))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .flatten();
            if let Some(ban) = ban {
                state.metrics.refused.with_label_values(&["banned"]).inc();
                return vec![
                    ServerFrame::Banned {
                        reason: &ban.reason,
                        until: ban.until,
                    }
                    .text(),
                ];
            }
            if state.senders.check_key(&user.id).is_err() {
                return refused("rate_limited", "too many messages: wait a moment");
            }
            let started = Instant::now();
            let emotes = emotes::parse(text, &state.emotes);
            let _order = room.order.lock().await;
            let store = state.store.clone();
            let (room_name, who, body) = (room.name().to_string(), user.clone(), text.to_string());
            let stored = tokio::task::spawn_blocking(move || {
                store.append(&room_name, &who, &body, emotes, now)
            })
            .await;
            let message = match stored {
                Ok(Ok(m)) => m,
                other => {
                    tracing::error!(room = %room.name(), error = ?other.err(), "cannot store a message");
                    return refused("unavailable", "the message could not be stored");
                }
            };
            room.publish(&ServerFrame::Msg(&message)).await;
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
    let store = state.store.clone();
    let page = tokio::task::spawn_blocking(move || store.page(&stream, q.before, limit)).await;
    match page {
        Ok(Ok(messages)) => {
            let next = (messages.len() == limit)
                .then(|| messages.last().map(|m| m.offset))
                .flatten();
            Json(serde_json::json!({"messages": messages, "next": next})).into_response()
        }
        _ => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "history unavailable",
        ),
    }
}

fn admin(state: &AppState, headers: &HeaderMap) -> Result<(), Response> {
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
    let store = state.store.clone();
    let (room, message) = (stream.clone(), id.clone());
    match tokio::task::spawn_blocking(move || store.delete(&room, &message)).await {
        Ok(Ok(true)) => {
            state
                .hub
                .room(&stream)
                .publish(&ServerFrame::Deleted { id: &id })
                .await;
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(Ok(false)) => refuse(StatusCode::NOT_FOUND, "not_found", "no such message"),
        _ => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "store unavailable",
        ),
    }
}

#[derive(Debug, Deserialize)]
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
    if !valid_room(&stream) || req.user_id.is_empty() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "a room and a user_id",
        );
    }
    let ban = Ban {
        reason: req
            .reason
            .unwrap_or_else(|| "banned by a moderator".to_string()),
        until: req.duration.map(|d| now_ms() / 1000 + d),
    };
    let store = state.store.clone();
    let (room, user, stored) = (stream.clone(), req.user_id.clone(), ban.clone());
    match tokio::task::spawn_blocking(move || store.ban(&room, &user, &stored)).await {
        Ok(Ok(())) => {
            let frame = ServerFrame::Banned {
                reason: &ban.reason,
                until: ban.until,
            };
            state.hub.room(&stream).to_user(&req.user_id, &frame).await;
            StatusCode::NO_CONTENT.into_response()
        }
        _ => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "store unavailable",
        ),
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
    let store = state.store.clone();
    match tokio::task::spawn_blocking(move || store.unban(&stream, &user)).await {
        Ok(Ok(true)) => StatusCode::NO_CONTENT.into_response(),
        Ok(Ok(false)) => refuse(StatusCode::NOT_FOUND, "not_found", "no such ban"),
        _ => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "store unavailable",
        ),
    }
}

#[derive(Debug, Deserialize)]
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
    state.hub.room(&stream).publish(&frame).await;
    StatusCode::NO_CONTENT.into_response()
}
