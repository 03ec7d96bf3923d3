//! SRT ingest.
