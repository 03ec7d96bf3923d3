//! The LL-HLS packager: pure code that turns samples into parts, segments and playlists.
//!
//! - [`segmenter`] cuts one rendition's samples into parts and segments on the stream's grid.
//! - [`log`] keeps what a rendition has published: segments, parts, discontinuities, gaps.
//! - [`playlist`] renders media and multivariant playlists from those logs.
//! - [`bitrate`] measures what each rendition sends, for the multivariant playlist.
//! - [`cue`] renders ad breaks and news flashes as date ranges (with SCTE-35 splices).
//! - [`blocking`] decides whether a blocking request can be answered yet.
//!
//! Nothing here reads a clock or a socket; the stream runtime feeds it and serves it.

pub mod bitrate;
pub mod blocking;
pub mod cue;
pub mod log;
pub mod params;
pub mod playlist;
pub mod segmenter;

#[cfg(test)]
mod part_grid_tests;
