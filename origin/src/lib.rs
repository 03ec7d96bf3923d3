//! The origin: runs a transcoder per stream, packages its output as Low-Latency HLS and serves
//! it over HTTP.
//!
//! Data flows one way:
//!
//! ```text
//! ffmpeg (corral_transcoder::supervisor) ──events──► stream::driver ──parts/segments──► packager::log
//!                                                                                         │
//!                     players, edges ◄── http (playlists, parts, segments, API) ◄─────────┘
//! ```
//!
//! - [`packager`] is pure code: cutting samples into parts and segments, the publication log,
//!   playlist rendering, blocking-request decisions.
//! - [`stream`] holds each stream's logs and lifecycle, and drives them from transcoder events.
//! - [`http`] parses requests strictly, waits on publications, and answers with the cache
//!   policy the edges obey.
//! - [`redundancy`] lets a standby follow its primary's epochs, so both publish the same
//!   playlists for the same publish.
//! - [`replay`] archives every broadcast to an object store, serves the DVR window and, once a
//!   broadcast ends, its VOD.
//! - [`config`] is the typed YAML config; [`metrics`] the Prometheus metrics.

pub mod api;
pub mod app;
pub mod clock;
pub mod config;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod packager;
pub mod redundancy;
pub mod replay;
pub mod stream;
