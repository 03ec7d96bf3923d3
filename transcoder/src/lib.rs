//! The transcoder: turns one live source into an ABR ladder of CMAF renditions.
//!
//! Data flows one way through it:
//!
//! 1. [`command`] builds a single ffmpeg command line from the ladder: one decode (or a test
//!    pattern), one encoder per rendition with keyframes forced on the segment grid, and one
//!    fragmented-MP4 output per rendition written to its own pipe.
//! 2. [`supervisor`] runs that child process, reads the pipes, restarts the child with back-off
//!    when it dies, exports its progress as metrics and sends its stderr to the log.
//! 3. [`fmp4`] turns each pipe's bytes into an init segment and a stream of samples with decode
//!    time, duration and keyframe flag, and writes samples back as fragments for the packager.
//!
//! The crate knows nothing of playlists or HTTP: those belong to the origin.

pub mod command;
pub mod config;
pub mod fmp4;
pub mod metrics;
pub mod progress;
pub mod supervisor;
