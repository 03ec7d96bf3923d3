//! The edge: a cache tier deployed per region between players and the regional origins.
//!
//! This release holds the edge's typed configuration only; the caching proxy that serves it
//! is not built yet, and the binary says so instead of pretending to serve.

pub mod config;
