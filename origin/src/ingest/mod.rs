//! Ingest: broadcasters publish over RTMP and SRT; each accepted publish feeds its stream's
//! transcoder without touching the disk.
//!
//! - [`rtmp`] terminates RTMP (handshake, chunk stream, AMF0 commands, publish) as sans-IO
//!   protocol code plus a thin TCP server.
//! - [`srt`] terminates SRT in listener mode through the system libsrt, keyed by `streamid`.

pub mod rtmp;
pub mod srt;
