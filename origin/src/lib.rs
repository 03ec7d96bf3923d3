//! The origin.
pub mod packager;
