//! Ingest: broadcasters publish over RTMP and SRT; each accepted publish feeds its stream's
//! transcoder without touching the disk.
//!
//! - [`hub`] maps keys to streams, admits one publisher per stream, limits connections, and
//!   carries each publisher's media to its stream through a queue that never blocks the
//!   publisher.
//! - [`metrics`] counts what ingest sees; the hub's queue (`queue`) never blocks a publisher.
//! - [`media`] is what publishers send: FLV tags (RTMP) or MPEG-TS bytes (SRT).
//! - [`flv`] writes RTMP media as the FLV stream ffmpeg reads; [`mpegts`] watches SRT's
//!   transport stream for frames, keyframes and losses; [`starvation`] keeps the video
//!   renditions moving on a frozen picture when a starved publisher's video stops.
//! - [`timing`] estimates when a publisher's clock started, to date its publish.
//! - [`rtmp`] terminates RTMP (handshake, chunk stream, AMF0 commands, publish) as sans-IO
//!   protocol code plus a thin TCP server.
//! - [`srt`] terminates SRT in listener mode through the system libsrt, keyed by `streamid`.

pub mod flv;
pub mod hub;
pub mod media;
pub mod metrics;
pub mod mpegts;
mod queue;
pub mod rtmp;
pub mod srt;
pub mod starvation;
pub mod timing;
