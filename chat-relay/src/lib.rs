//! The chat relay: live chat rooms per stream beside the video, over WebSocket, with REST
//! for history and moderation.
//!
//! [`server`] routes HTTP and WebSocket (`channels` holds the channel REST calls); [`room`] fans each room's frames out over sharded
//! tasks with bounded per-connection queues; [`backend`] is where state lives: [`store`]
//! (SQLite, one node) or [`redis_bus`] (Redis, several nodes, speaking [`envelope`]s);
//! [`auth`] reads viewers' JWTs and the admin token; [`protocol`] is the JSON frames;
//! [`emotes`] finds `:name:` emotes; [`config`] is the YAML file; [`metrics`] what it counts.

#[cfg(feature = "relay")]
pub mod auth;
#[cfg(feature = "relay")]
pub mod backend;
#[cfg(feature = "relay")]
mod channels;
pub mod config;
pub mod emotes;
pub mod envelope;
#[cfg(feature = "relay")]
mod guests;
#[cfg(feature = "relay")]
pub mod metrics;
pub mod protocol;
#[cfg(feature = "relay")]
pub mod redis_bus;
#[cfg(feature = "relay")]
pub mod room;
#[cfg(feature = "relay")]
pub mod server;
#[cfg(feature = "relay")]
pub mod store;

/// A room or channel name is a stream name: letters, digits, `_` and `-`, at most 64.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
