//! The chat relay's config file (`conf/chat-relay.yaml`).

use std::net::SocketAddr;

use serde::Deserialize;
use yaml_config::{Invalid, Validate, check_range};

/// The whole file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChatRelayConfig {
    /// Log filter; `RUST_LOG` overrides.
    pub log_level: String,
    /// WebSocket and REST listener.
    pub listen: SocketAddr,
    /// Prometheus endpoint.
    pub metrics_listen: SocketAddr,
    /// Redis URL for several relay nodes; unset runs a single node.
    pub redis_url: Option<String>,
    /// Longest chat message accepted, in bytes.
    pub max_message_bytes: usize,
}

impl Default for ChatRelayConfig {
    fn default() -> Self {
        Self {
            log_level: "info".to_string(),
            listen: SocketAddr::from(([0, 0, 0, 0], 8090)),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9103)),
            redis_url: None,
            max_message_bytes: 500,
        }
    }
}

impl Validate for ChatRelayConfig {
    fn validate(&self) -> Result<(), Invalid> {
        if let Some(url) = &self.redis_url
            && !url.starts_with("redis://")
        {
            return Err(Invalid::new("redis_url", "a redis:// URL", url));
        }
        check_range(
            "max_message_bytes",
            self.max_message_bytes,
            1,
            65_536,
            "bytes",
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn the_shipped_config_is_valid_and_redis_urls_are_checked() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/chat-relay.yaml");
        yaml_config::load::<ChatRelayConfig>(&path).unwrap_or_else(|e| panic!("{e}"));
        let err =
            yaml_config::from_str::<ChatRelayConfig>(Path::new("c.yaml"), "redis_url: http://x\n")
                .expect_err("bad");
        assert_eq!(err.key.as_deref(), Some("redis_url"));
    }
}
