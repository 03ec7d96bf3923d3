//! REST for channels: what a channel is (`GET`, and `PUT` by a moderator) and what a viewer
//! is to it (follow and subscription, with the viewer's own token).
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::backend::Change;
use crate::protocol::User;
use crate::server::{AppState, admin, now_ms, refuse, token_refused, unavailable};
use crate::valid_name as valid_room;

/// The viewer a REST call is made for (`Authorization: Bearer <JWT>`).
fn viewer(state: &AppState, headers: &HeaderMap) -> Result<User, Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this needs a viewer token (Authorization: Bearer)",
        ));
    };
    state
        .auth
        .user(token)
        .map_err(|refused| token_refused(state, &refused))
}

/// The channel's description and title, stored or configured; `None` for no such channel.
pub(crate) async fn channel_info(
    state: &AppState,
    name: &str,
) -> anyhow::Result<Option<(String, Option<String>)>> {
    if !valid_room(name) {
        return Ok(None);
    }
    if let Some(stored) = state.backend.channel(name).await? {
        return Ok(Some(stored));
    }
    Ok(state
        .config
        .channels
        .get(name)
        .map(|c| (c.description.clone(), c.title.clone())))
}

fn no_channel() -> Response {
    refuse(StatusCode::NOT_FOUND, "not_found", "no such channel")
}

pub(crate) async fn channel(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Response {
    let info = match channel_info(&state, &name).await {
        Ok(Some(info)) => info,
        Ok(None) => return no_channel(),
        Err(e) => return unavailable("store", &e),
    };
    let counts = async {
        Ok::<_, anyhow::Error>((
            state.backend.followers(&name).await?,
            state.backend.viewers(&name).await?,
        ))
    };
    match counts.await {
        Ok((followers, viewers)) => Json(serde_json::json!({
            "name": name,
            "description": info.0,
            "title": info.1,
            "followers": followers,
            "viewers": viewers,
        }))
        .into_response(),
        Err(e) => unavailable("store", &e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChannelUpdate {
    description: String,
    #[serde(default)]
    title: Option<String>,
}

pub(crate) async fn set_channel(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(req): Json<ChannelUpdate>,
) -> Response {
    if let Err(r) = admin(&state, &headers) {
        return r;
    }
    if !valid_room(&name)
        || req.description.chars().count() > 1000
        || req.title.as_ref().is_some_and(|t| t.chars().count() > 200)
    {
        return refuse(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "a description of at most 1000 characters and a title of at most 200",
        );
    }
    match state
        .backend
        .set_channel(&name, &req.description, req.title.as_deref())
        .await
    {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => unavailable("store", &e),
    }
}

/// Applies `change` to the caller's relationship with the channel and answers it.
pub(crate) async fn relate(
    state: &AppState,
    name: &str,
    headers: &HeaderMap,
    change: Change,
) -> Response {
    let user = match viewer(state, headers) {
        Ok(u) => u,
        Err(r) => return r,
    };
    match channel_info(state, name).await {
        Ok(Some(_)) => {}
        Ok(None) => return no_channel(),
        Err(e) => return unavailable("store", &e),
    }
    match state.backend.relate(name, &user.id, change, now_ms()).await {
        Ok(relationship) => Json(serde_json::json!({
            "channel": name,
            "user_id": user.id,
            "following": relationship.following,
            "followed_at": relationship.followed_at,
            "subscription": relationship.subscription,
        }))
        .into_response(),
        Err(e) => unavailable("store", &e),
    }
}

pub(crate) async fn relationship(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    relate(&state, &name, &headers, Change::None).await
}

pub(crate) async fn follow(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    relate(&state, &name, &headers, Change::Follow).await
}

pub(crate) async fn unfollow(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    relate(&state, &name, &headers, Change::Unfollow).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubscriptionRequest {
    tier: u8,
}

pub(crate) async fn subscribe(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(req): Json<SubscriptionRequest>,
) -> Response {
    if !(1..=3).contains(&req.tier) {
        return refuse(StatusCode::BAD_REQUEST, "bad_request", "tier is 1, 2 or 3");
    }
    relate(&state, &name, &headers, Change::Subscribe(req.tier)).await
}

pub(crate) async fn unsubscribe(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    relate(&state, &name, &headers, Change::Unsubscribe).await
}
