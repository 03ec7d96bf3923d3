//! The chat relay: live chat rooms per stream beside the video, over WebSocket, with REST
//! for history and moderation.
//!
//! [`server`] routes HTTP and WebSocket; [`room`] fans each room's frames out over sharded
//! tasks with bounded per-connection queues; [`store`] keeps messages and bans in SQLite;
//! [`auth`] reads viewers' JWTs and the admin token; [`protocol`] is the JSON frames;
//! [`emotes`] finds `:name:` emotes; [`config`] is the YAML file; [`metrics`] what it counts.

#[cfg(feature = "relay")]
pub mod auth;
pub mod config;
pub mod emotes;
#[cfg(feature = "relay")]
pub mod metrics;
pub mod protocol;
#[cfg(feature = "relay")]
pub mod room;
#[cfg(feature = "relay")]
pub mod server;
#[cfg(feature = "relay")]
pub mod store;
