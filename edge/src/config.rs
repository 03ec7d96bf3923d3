//! The edge's config file (`conf/edge.yaml`). Every key has a default that runs; times are in
//! seconds.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    /// TLS listener (HTTP/2 and HTTP/1.1 by ALPN; HTTP/3 on the same UDP port), served when
    /// `tls` names a certificate and key.
    pub tls_listen: SocketAddr,
    /// The TLS certificate chain and key for `tls_listen`.
    pub tls: TlsConfig,
    /// HTTP/3 on `tls_listen`'s UDP port.
    pub http3: Http3Config,
    /// Prometheus endpoint.
    pub metrics_listen: SocketAddr,
    /// Worker threads of the proxy.
    pub threads: usize,
    /// Largest request header block accepted (bytes); larger ones get 431.
    pub max_header_bytes: usize,
    /// Most player connections open at once (all listeners together); more are closed as soon
    /// as they are accepted.
    pub max_connections: usize,
    /// Seconds an idle player connection is kept open between requests.
    pub keepalive_timeout: u64,
    /// Seconds a stopping edge (SIGTERM) keeps serving the requests it has before it exits.
    pub shutdown_grace: u64,
    /// Upstream origins, tried in order (primary first).
    pub origins: Vec<String>,
    /// A parent edge (the region's shield) to fetch from before the origins, so that the edges
    /// of a region cost the origin one request per object between them. When it is down the
    /// origins serve directly.
    pub shield: Option<String>,
    /// The cache.
    pub cache: CacheConfig,
    /// Connections to the origins.
    pub upstream: UpstreamConfig,
    /// Signed playback URLs.
    pub signing: SigningConfig,
    /// The watch page.
    pub web: WebConfig,
}

/// `web:`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Serve the watch page at `/` and `/watch/{stream}`, and its files under `/assets/`.
    pub enabled: bool,
    /// The page's directory: `index.html`, `watch.js`, `watch.css`, and hls.js under
    /// `node_modules` (`npm ci` there). Relative paths are from the working directory.
    pub root: PathBuf,
    /// The chat relay's base URL as players' browsers reach it (`http://` or `https://`);
    /// empty hides the chat panel.
    pub chat_url: String,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            root: PathBuf::from("web"),
            chat_url: String::new(),
        }
    }
}

/// `tls:`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain (leaf first).
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
}

/// `http3:`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http3Config {
    /// Serve HTTP/3 on `tls_listen`'s UDP port when TLS is on, and advertise it with Alt-Svc.
    pub enabled: bool,
    /// Most QUIC connections open at once; one more is refused in its handshake.
    pub max_connections: usize,
    /// Requests open at once on one connection (QUIC bidirectional streams).
    pub max_streams: u32,
    /// Seconds a connection without any traffic is kept.
    pub idle_timeout: f64,
    /// Seconds a player may take to send a request's headers once its stream is open.
    pub header_timeout: f64,
    /// Bytes the edge may have in flight unacknowledged on one connection.
    pub send_window: u64,
    /// Seconds players may keep using the Alt-Svc advertisement.
    pub alt_svc_max_age: u64,
}

impl Default for Http3Config {
    fn default() -> Self {
        Self {
            enabled: true,
            max_connections: 16_000,
            max_streams: 100,
            idle_timeout: 30.0,
            header_timeout: 10.0,
            send_window: 4 << 20,
            alt_svc_max_age: 86_400,
        }
    }
}

/// `signing:`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigningConfig {
    /// The HMAC-SHA256 key shared with the origin (at least 16 bytes). When set, every request
    /// under `/live/` needs `?exp=<unix>&sig=<hmac>` signed for its stream, or gets a 403.
    pub key: Option<String>,
}

/// `cache:`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Bytes of media and playlists the cache may hold.
    pub bytes: u64,
    /// Largest object cached; a larger one is passed through once and not kept.
    pub max_object_bytes: u64,
    /// Longest any object is served from the cache before the origin is asked again,
    /// whatever its max-age.
    pub max_ttl: f64,
    /// How long past the edge's freshness media (parts, segments, init) that the origin still
    /// calls valid is served when every origin fails: the rest of the origin's own lifetime
    /// plus its `stale-if-error`, at most this. Playlists are never served stale.
    pub stale_if_error: f64,
    /// How long the first request for an object may hold the others back while it fetches:
    /// longer than the origin may legitimately hold a blocking request (3 target durations).
    pub lock_timeout: f64,
    /// Longest a 404 ("not there yet") or a 503 (blocking timeout) is cached, so that a herd
    /// asking too early costs one origin request per this interval, not one each.
    pub negative_ttl: f64,
    /// Freshness given to a media playlist without directives when the origin says `max-age=0`
    /// (it means "half a part target", which HTTP cannot say in whole seconds). Requests within
    /// this interval share one fetch; it is never served staler than this.
    pub playlist_fresh: f64,
    /// Bytes of gzip-compressed playlists kept beside the cache (identity and compressed
    /// copies together), so that each playlist version is compressed once for all the players
    /// that accept gzip, not once per player. 0 compresses every answer on its own.
    pub playlist_gzip_bytes: u64,
}

/// `upstream:`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// Time to connect to an origin before trying the next.
    pub connect_timeout: f64,
    /// Time an origin may take to start answering a request for an object it has or refuses at
    /// once (an init segment, the multivariant or a directive-less playlist) before it is
    /// marked down and the request goes to the next origin.
    pub answer_timeout: f64,
    /// Time an origin may take to start answering a request it holds until the object exists
    /// (a blocking playlist, a part that may be only hinted) before the request goes to the
    /// next origin: longer than the origin takes to publish the next part (about 2 part
    /// targets). The origin is not marked down for it: a player may ask further ahead, and a
    /// standby fed the same publish answers the same, so that costs only a second request.
    /// Once every origin has been tried, the last try waits `read_timeout`.
    pub hold_timeout: f64,
    /// The same for a segment, which the origin holds while it is being written: longer than
    /// a target duration.
    pub segment_timeout: f64,
    /// Time to wait for an origin's answer otherwise (the API, other paths, and the last try
    /// of a held request): longer than the origin's own blocking hold (3 target durations).
    pub read_timeout: f64,
    /// How long an idle upstream connection is kept for reuse.
    pub idle_timeout: f64,
    /// How often each origin's `/healthz` is checked, all origins at once. An origin that
    /// fails two checks in a row (no 200 within `health_timeout`: dead, hung, or reporting a
    /// stalled stream) is skipped until a check passes.
    pub health_interval: f64,
    /// Time a health check may take.
    pub health_timeout: f64,
    /// After a failover, stay on the origin that took over while it is up, rather than go
    /// back to the first one as soon as it is healthy: the origin left behind may come back
    /// (restarted, its broadcaster reconnected) on another publish than the one players are
    /// watching, and moving them there mid-stream would make them jump. The shield, when
    /// there is one, is always preferred while it is up.
    pub sticky: bool,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            log_level: "info".to_string(),
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            tls_listen: SocketAddr::from(([0, 0, 0, 0], 8443)),
            tls: TlsConfig::default(),
            http3: Http3Config::default(),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9102)),
            threads: 2,
            max_header_bytes: 16 << 10,
            max_connections: 16_000,
            keepalive_timeout: 30,
            shutdown_grace: 10,
            origins: vec!["127.0.0.1:8081".to_string()],
            shield: None,
            cache: CacheConfig::default(),
            upstream: UpstreamConfig::default(),
            signing: SigningConfig::default(),
            web: WebConfig::default(),
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            bytes: 1 << 30,
            max_object_bytes: 64 << 20,
            max_ttl: 86_400.0,
            stale_if_error: 3_600.0,
            lock_timeout: 10.0,
            negative_ttl: 1.0,
            playlist_fresh: 0.1,
            playlist_gzip_bytes: 16 << 20,
        }
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            connect_timeout: 1.0,
            answer_timeout: 0.5,
            hold_timeout: 0.7,
            segment_timeout: 3.0,
            read_timeout: 12.0,
            idle_timeout: 60.0,
            health_interval: 0.25,
            health_timeout: 0.5,
            sticky: true,
        }
    }
}

impl EdgeConfig {
    /// Where misses go, in order: the shield (when set), then the origins.
    pub fn upstreams(&self) -> Vec<String> {
        self.shield.iter().chain(&self.origins).cloned().collect()
    }
}

fn check_host_port(key: &str, value: &str) -> Result<(), Invalid> {
    let ok = value.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok_and(|p| p > 0)
    });
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(key, "HOST:PORT", value))
    }
}

impl CacheConfig {
    /// `lock_timeout` as a duration.
    pub fn lock_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.lock_timeout)
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
        check_range("origins", self.origins.len(), 1, 32, "1 to 32 origins")?;
        for (i, o) in self.origins.iter().enumerate() {
            check_host_port(&format!("origins[{i}]"), o)?;
        }
        if let Some(shield) = &self.shield {
            check_host_port("shield", shield)?;
        }
        check_range("threads", self.threads, 1, 256, "threads")?;
        let chat = &self.web.chat_url;
        let scheme_ok = chat.is_empty()
            || ((chat.starts_with("http://") || chat.starts_with("https://"))
                && chat.len() <= 512
                && !chat.chars().any(|c| c.is_whitespace() || c.is_control()));
        if !scheme_ok {
            return Err(Invalid::new(
                "web.chat_url",
                "empty, or an http:// or https:// URL",
                chat,
            ));
        }
        check_range(
            "max_header_bytes",
            self.max_header_bytes,
            1024,
            1 << 20,
            "bytes",
        )?;
        check_range(
            "max_connections",
            self.max_connections,
            1,
            10_000_000,
            "connections",
        )?;
        check_range("shutdown_grace", self.shutdown_grace, 0, 3600, "seconds")?;
        check_range(
            "keepalive_timeout",
            self.keepalive_timeout,
            1,
            3600,
            "seconds",
        )?;
        let h = &self.http3;
        check_range(
            "http3.max_connections",
            h.max_connections,
            1,
            10_000_000,
            "connections",
        )?;
        check_range("http3.max_streams", h.max_streams, 1, 10_000, "streams")?;
        check_range("http3.idle_timeout", h.idle_timeout, 1.0, 600.0, "seconds")?;
        check_range(
            "http3.header_timeout",
            h.header_timeout,
            0.1,
            60.0,
            "seconds",
        )?;
        check_range(
            "http3.send_window",
            h.send_window,
            64 << 10,
            1 << 30,
            "bytes",
        )?;
        check_range(
            "http3.alt_svc_max_age",
            h.alt_svc_max_age,
            0,
            31_536_000,
            "seconds",
        )?;
        let c = &self.cache;
        check_range("cache.bytes", c.bytes, 1 << 20, 1 << 40, "bytes")?;
        check_range(
            "cache.max_object_bytes",
            c.max_object_bytes,
            1 << 10,
            c.bytes,
            "bytes (at most cache.bytes)",
        )?;
        check_range("cache.max_ttl", c.max_ttl, 1.0, 31_536_000.0, "seconds")?;
        check_range(
            "cache.stale_if_error",
            c.stale_if_error,
            0.0,
            31_536_000.0,
            "seconds",
        )?;
        check_range("cache.lock_timeout", c.lock_timeout, 0.1, 120.0, "seconds")?;
        check_range("cache.negative_ttl", c.negative_ttl, 0.0, 10.0, "seconds")?;
        check_range(
            "cache.playlist_fresh",
            c.playlist_fresh,
            0.0,
            2.0,
            "seconds",
        )?;
        check_range(
            "cache.playlist_gzip_bytes",
            c.playlist_gzip_bytes,
            0,
            1 << 32,
            "bytes",
        )?;
        let u = &self.upstream;
        check_range(
            "upstream.connect_timeout",
            u.connect_timeout,
            0.01,
            30.0,
            "seconds",
        )?;
        check_range(
            "upstream.read_timeout",
            u.read_timeout,
            0.1,
            300.0,
            "seconds",
        )?;
        check_range(
            "upstream.answer_timeout",
            u.answer_timeout,
            0.05,
            u.read_timeout,
            "seconds (at most upstream.read_timeout)",
        )?;
        check_range(
            "upstream.hold_timeout",
            u.hold_timeout,
            0.1,
            u.read_timeout,
            "seconds (at most upstream.read_timeout)",
        )?;
        check_range(
            "upstream.segment_timeout",
            u.segment_timeout,
            0.1,
            u.read_timeout,
            "seconds (at most upstream.read_timeout)",
        )?;
        check_range(
            "upstream.health_interval",
            u.health_interval,
            0.05,
            60.0,
            "seconds",
        )?;
        check_range(
            "upstream.health_timeout",
            u.health_timeout,
            0.05,
            30.0,
            "seconds",
        )?;
        check_range(
            "upstream.idle_timeout",
            u.idle_timeout,
            0.0,
            3600.0,
            "seconds",
        )?;
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(Invalid::new(
                "tls",
                "both tls.cert and tls.key, or neither",
                "only one of them",
            ));
        }
        if let Some(key) = &self.signing.key
            && key.len() < signed_url::MIN_KEY_LEN
        {
            return Err(Invalid::new(
                "signing.key",
                format!("at least {} bytes", signed_url::MIN_KEY_LEN),
                format!("{} bytes", key.len()),
            ));
        }
        if c.lock_timeout > u.read_timeout {
            return Err(Invalid::new(
                "cache.lock_timeout",
                format!(
                    "at most upstream.read_timeout ({} s), or waiters outlive their leader",
                    u.read_timeout
                ),
                c.lock_timeout.to_string(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(text: &str) -> Result<EdgeConfig, yaml_config::ConfigError> {
        yaml_config::from_str::<EdgeConfig>(Path::new("e.yaml"), text)
    }

    #[test]
    fn the_shipped_configs_are_valid_and_match_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/edge.yaml");
        let shipped = yaml_config::load::<EdgeConfig>(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            shipped,
            EdgeConfig::default(),
            "conf/edge.yaml shows the defaults"
        );
    }

    #[test]
    fn the_local_and_regional_configs_are_valid() {
        for name in [
            "edge-local",
            "edge-eu",
            "edge-eu-shield",
            "edge-us",
            "edge-us-shield",
        ] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../conf/{name}.yaml"));
            // Loading validates.
            yaml_config::load::<EdgeConfig>(&path).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn bad_values_name_their_key() {
        let key = |text: &str| parse(text).expect_err("refused").key;
        assert_eq!(key("origins: [nohost]\n").as_deref(), Some("origins[0]"));
        assert_eq!(key("shield: \"http://x:1\"\n").as_deref(), Some("shield"));
        assert_eq!(key("origins: []\n").as_deref(), Some("origins"));
        assert_eq!(
            key("cache: { max_object_bytes: 10 }\n").as_deref(),
            Some("cache.max_object_bytes")
        );
        assert_eq!(
            key("cache: { lock_timeout: 30 }\n").as_deref(),
            Some("cache.lock_timeout")
        );
        assert!(
            parse("cache: { colour: blue }\n").is_err(),
            "unknown keys are refused"
        );
    }
}
