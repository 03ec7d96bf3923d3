//! The chat relay: WebSocket rooms per stream beside the video.
//!
//! This release holds the relay's typed configuration only; the relay itself is not built yet,
//! and the binary says so instead of pretending to serve.

pub mod config;
