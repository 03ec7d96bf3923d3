//! RTMP ingest: terminates RTMP publishers (OBS, ffmpeg) at `rtmp://HOST:1935/live/<key>` and
//! hands their media to the [ingest hub](crate::ingest::hub).
//!
//! The protocol is sans-IO code, tested without sockets, layered as the wire is:
//! [`handshake`] (C0/C1/C2), [`chunk`] (chunk stream reassembly and protocol control messages,
//! over [`message`]), [`amf0`] and [`command`] (command encoding), and [`session`] (the
//! connect/publish conversation, yielding FLV tags). [`server`] is the thin TCP glue: sockets,
//! timeouts, the hub's permits and admission, metrics and logs.
//!
//! This module owns RTMP only: what a key maps to, how many publishers are allowed and where the
//! media goes are the hub's business, and it must not reach past the hub into streams.

pub mod amf0;
pub mod chunk;
pub mod command;
pub mod handshake;
pub mod message;
pub mod server;
pub mod session;

pub use server::serve;
pub use session::{PublishRejection, Session, SessionError, SessionEvent};
