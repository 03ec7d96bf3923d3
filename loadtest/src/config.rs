//! The loadtest's config file (`conf/loadtest.yaml`).

use serde::Deserialize;
use yaml_config::{Invalid, Validate, check_range};

/// The whole file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoadtestConfig {
    /// Log filter; `RUST_LOG` overrides.
    pub log_level: String,
    /// The media playlist the viewers follow.
    pub url: String,
    /// Concurrent viewers.
    pub viewers: usize,
    /// Seconds to watch.
    pub duration: f64,
    /// Whether viewers fetch the preload-hinted part with each blocking reload.
    pub fetch_parts: bool,
    /// Seconds before one request is abandoned.
    pub request_timeout: f64,
}

impl Default for LoadtestConfig {
    fn default() -> Self {
        Self {
            log_level: "info".to_string(),
            url: "http://127.0.0.1:8081/live/demo/720p/index.m3u8".to_string(),
            viewers: 1,
            duration: 30.0,
            fetch_parts: true,
            request_timeout: 10.0,
        }
    }
}

impl Validate for LoadtestConfig {
    fn validate(&self) -> Result<(), Invalid> {
        match self.url.parse::<http::Uri>() {
            Ok(u)
                if matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some() => {}
            _ => {
                return Err(Invalid::new(
                    "url",
                    "an http:// or https:// URL of a media playlist",
                    &self.url,
                ));
            }
        }
        check_range(
            "viewers",
            self.viewers,
            1,
            5000,
            "a count (one process; spread larger swarms over several)",
        )?;
        check_range("duration", self.duration, 1.0, 86_400.0, "seconds")?;
        check_range(
            "request_timeout",
            self.request_timeout,
            0.1,
            600.0,
            "seconds",
        )?;
        Ok(())
    }
}
