//! Guest sign-in (`guests:` in the config): `POST /v1/guests {"name"}` answers
//! `{"token", "user": {"id", "name"}, "expires"}`, a viewer token for a display name of the
//! caller's choosing under a fresh random `guest-…` id. For pages without an identity
//! provider, such as the edge's watch page on a local stack; minting is bounded per second.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::protocol::User;
use crate::server::{AppState, now_ms, refuse};

/// Longest guest display name, in characters.
pub const MAX_NAME_CHARS: usize = 32;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GuestRequest {
    name: String,
}

/// The display name `name` asks for, trimmed; `None` when empty, too long or holding control
/// characters.
pub fn display_name(name: &str) -> Option<String> {
    let name = name.trim();
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && !name.chars().any(char::is_control);
    ok.then(|| name.to_string())
}

/// A fresh guest user id: 64 random bits.
fn guest_id() -> Option<String> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).ok()?;
    Some(format!("guest-{:016x}", u64::from_be_bytes(bytes)))
}

pub(crate) async fn sign_in(
    State(state): State<Arc<AppState>>,
    Json(req): Json<GuestRequest>,
) -> Response {
    let guests = &state.config.guests;
    if !guests.enabled {
        return refuse(StatusCode::NOT_FOUND, "not_found", "guest sign-in is off");
    }
    let Some(name) = display_name(&req.name) else {
        state
            .metrics
            .refused
            .with_label_values(&["bad_request"])
            .inc();
        return refuse(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "a name of 1 to 32 characters, without control characters",
        );
    };
    if state.guest_limit.check().is_err() {
        state
            .metrics
            .refused
            .with_label_values(&["rate_limited"])
            .inc();
        tracing::info!("guest sign-in refused: over guests.per_second");
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many sign-ins; try again in a moment",
        );
    }
    let Some(id) = guest_id() else {
        tracing::error!("no randomness for a guest id");
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "cannot sign in now",
        );
    };
    let user = User { id, name };
    let expires = now_ms() / 1000 + guests.ttl;
    let token = state.auth.mint(&user, expires);
    state.metrics.guests.inc();
    Json(serde_json::json!({"token": token, "user": user, "expires": expires})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(display_name("  Ann "), Some("Ann".to_string()));
        assert_eq!(display_name(&"é".repeat(32)), Some("é".repeat(32)));
        assert_eq!(display_name(&"é".repeat(33)), None);
        assert_eq!(display_name("   "), None);
        assert_eq!(display_name("a\u{0}b"), None);
        let (a, b) = (guest_id().expect("random"), guest_id().expect("random"));
        assert!(a.starts_with("guest-") && a.len() == 22 && a != b);
    }
}
