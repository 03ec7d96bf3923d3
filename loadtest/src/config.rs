//! The viewer swarm's config file (`conf/loadtest.yaml`); `loadtest viewers` flags override it.

use serde::Deserialize;
use yaml_config::{Invalid, Validate, check_range};

/// The whole file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoadtestConfig {
    /// Log filter; `RUST_LOG` overrides.
    pub log_level: String,
    /// The multivariant playlist the players watch.
    pub url: String,
    /// Players, all worker processes together.
    pub viewers: usize,
    /// Seconds to watch once every player has started.
    pub duration: f64,
    /// Seconds over which the players start, evenly.
    pub ramp_up: f64,
    /// `auto` (by measured throughput) or a rendition's name.
    pub rendition: String,
    /// Whether players load the audio rendition too.
    pub audio: bool,
    /// Whether players ask for delta updates when the server offers them.
    pub delta: bool,
    /// Seconds before one request is abandoned.
    pub request_timeout: f64,
}

impl Default for LoadtestConfig {
    fn default() -> Self {
        Self {
            log_level: "warn".to_string(),
            url: "http://127.0.0.1:8080/live/demo/master.m3u8".to_string(),
            viewers: 1,
            duration: 30.0,
            ramp_up: 0.0,
            rendition: "auto".to_string(),
            audio: true,
            delta: true,
            request_timeout: 10.0,
        }
    }
}

impl Validate for LoadtestConfig {
    fn validate(&self) -> Result<(), Invalid> {
        match self.url.parse::<http::Uri>() {
            Ok(u) if u.scheme_str() == Some("http") && u.authority().is_some() => {}
            _ => {
                return Err(Invalid::new(
                    "url",
                    "an http:// URL of a multivariant playlist",
                    &self.url,
                ));
            }
        }
        check_range(
            "viewers",
            self.viewers,
            1,
            1_000_000,
            "a count (spread over worker processes)",
        )?;
        check_range("duration", self.duration, 0.1, 86_400.0, "seconds")?;
        check_range("ramp_up", self.ramp_up, 0.0, 3_600.0, "seconds")?;
        if self.rendition.is_empty() || self.rendition.contains('/') {
            return Err(Invalid::new(
                "rendition",
                "auto or a rendition's name (720p)",
                &self.rendition,
            ));
        }
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
