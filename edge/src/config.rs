//! The edge's config file (`conf/edge.yaml`).

use std::net::SocketAddr;

use serde::Deserialize;
use yaml_config::{Invalid, Validate, check_range};

/// The whole file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    /// Log filter; `RUST_LOG` overrides.
    pub log_level: String,
    /// Plain HTTP/1.1 listener for players.
    pub listen: SocketAddr,
    /// TLS listener (HTTP/2 and HTTP/1.1 by ALPN; HTTP/3 on the same UDP port).
    pub tls_listen: SocketAddr,
    /// Prometheus endpoint.
    pub metrics_listen: SocketAddr,
    /// Upstream origins, tried in order (primary first).
    pub origins: Vec<String>,
    /// Bytes of media and playlists the cache may hold.
    pub cache_bytes: u64,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            log_level: "info".to_string(),
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            tls_listen: SocketAddr::from(([0, 0, 0, 0], 8443)),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9102)),
            origins: vec!["127.0.0.1:8081".to_string()],
            cache_bytes: 1 << 30,
        }
    }
}

impl Validate for EdgeConfig {
    fn validate(&self) -> Result<(), Invalid> {
        if self.origins.is_empty() {
            return Err(Invalid::new(
                "origins",
                "at least one origin as HOST:PORT",
                "an empty list",
            ));
        }
        for (i, o) in self.origins.iter().enumerate() {
            let ok = o.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
            if !ok {
                return Err(Invalid::new(format!("origins[{i}]"), "HOST:PORT", o));
            }
        }
        check_range("cache_bytes", self.cache_bytes, 1 << 20, 1 << 40, "bytes")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn the_shipped_config_is_valid_and_origins_are_checked() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/edge.yaml");
        yaml_config::load::<EdgeConfig>(&path).unwrap_or_else(|e| panic!("{e}"));
        let err = yaml_config::from_str::<EdgeConfig>(Path::new("e.yaml"), "origins: [nohost]\n")
            .expect_err("bad");
        assert_eq!(err.key.as_deref(), Some("origins[0]"));
    }
}
