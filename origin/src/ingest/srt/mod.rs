//! SRT ingest in listener mode, through the system libsrt 1.5: broadcasters publish MPEG-TS to
//! `srt://HOST:PORT?streamid=<key>` (or the access-control form
//! `#!::r=<stream>,m=publish,s=<key>`), and each admitted publish feeds its stream through the
//! [`crate::ingest::hub`].
//!
//! This module owns the SRT listening socket, its listener thread and every SRT connection; it
//! uses the hub only through its public API (connection slots, admission, sessions, metrics)
//! and must not reach into it.
//!
//! - [`ffi`] is the only code with `unsafe`: hand-written libsrt bindings behind a small safe
//!   API.
//! - [`streamid`] reads a caller's stream id into its key (pure code, fuzzed).
//! - `access` decides on each caller during its handshake (libsrt's listen callback).
//! - `listener` runs the thread: accept, admit, read TS messages, push them, close.
//!
//! Why libsrt rather than a pure-Rust stack: srt-tokio 0.4's protocol crate has remote-reachable
//! panics in its handshake and packet parsing; libsrt handles the wire, this module only its
//! results.

mod access;
pub mod ffi;
mod listener;
pub mod streamid;

pub use listener::serve;
pub use streamid::{StreamId, StreamIdError};
