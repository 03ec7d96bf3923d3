//! The chat relay's config file (`conf/chat-relay.yaml`). Every key has a default that runs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

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
    /// The SQLite file that keeps messages and bans (created when missing).
    pub database: PathBuf,
    /// HS256 secret that viewers' tokens are signed with.
    pub jwt_secret: String,
    /// The bearer token of moderation calls.
    pub admin_token: String,
    /// Longest message, in characters.
    pub max_message_chars: usize,
    /// WebSocket connections this node holds at most; more are refused with 503 before the
    /// upgrade. Keep it under the process's open-file limit (`ulimit -n`), which a connection
    /// beyond would otherwise wait in the accept queue for.
    pub max_connections: usize,
    /// Largest WebSocket frame accepted from a client, in bytes; a larger one closes the
    /// connection (1009).
    pub max_frame_bytes: usize,
    /// Messages a user may send in a burst, and per `rate_period` after it.
    pub rate_burst: u32,
    /// Seconds over which `rate_burst` messages are allowed.
    pub rate_period: f64,
    /// Frames queued for one connection; a reader slower than that is dropped (close 4008,
    /// "resync"), never allowed to grow memory.
    pub send_queue: usize,
    /// Seconds between pings; a connection that has not answered by the next one is closed.
    pub ping_interval: f64,
    /// Seconds one frame may take to reach a connection's socket; a client whose socket stays
    /// full that long (it stopped reading) is disconnected.
    pub write_timeout: f64,
    /// Milliseconds over which reactions are counted into one frame.
    pub reaction_window_ms: u64,
    /// Seconds between viewer counts.
    pub viewers_interval: f64,
    /// Most messages one history page returns.
    pub history_page: usize,
    /// Tasks a room's fan-out is spread over.
    pub fanout_shards: usize,
    /// The global emotes: `:name:` in a message is marked as emote `name`.
    pub emotes: Vec<String>,
    /// Messages a reconnecting client (`?since=<offset>`) is sent from history; one that
    /// missed more is sent `recovered: false` and the newest page.
    pub recovery_max: usize,
    /// With Redis: messages kept in each room's stream (about; trimmed in whole nodes). Older
    /// ones leave history and recovery.
    pub history_max: usize,
    /// With Redis: seconds between this node's viewer counts; a node silent for three of
    /// them no longer counts.
    pub presence_interval: f64,
    /// The channels (one per stream, same name) and what `GET /v1/channels/{name}` shows until
    /// a moderator sets it with `PUT`.
    pub channels: BTreeMap<String, ChannelConfig>,
    /// Web pages allowed to call the REST API from a browser (CORS), as origins
    /// (`scheme://host[:port]`, e.g. the edge serving the watch page), or `*` for any. Empty
    /// allows none; WebSocket connections are not affected.
    pub cors_origins: Vec<String>,
    /// Guest sign-in for pages without an identity provider.
    pub guests: GuestConfig,
}

/// `guests:`: `POST /v1/guests {"name"}` answers a viewer token for a display name of the
/// caller's choosing, under a fresh `guest-…` user id. Off by default: a site with its own
/// sign-in mints tokens itself.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuestConfig {
    /// Answer `POST /v1/guests`.
    pub enabled: bool,
    /// Seconds a guest token is valid.
    pub ttl: u64,
    /// Guest tokens minted per second at most, over all callers (a burst of twice that).
    pub per_second: u32,
}

impl Default for GuestConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            ttl: 43_200,
            per_second: 20,
        }
    }
}

/// A channel as the config describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelConfig {
    /// What the channel is about.
    pub description: String,
    /// The live stream's title.
    pub title: Option<String>,
}

impl Default for ChatRelayConfig {
    fn default() -> Self {
        Self {
            log_level: "info".to_string(),
            listen: SocketAddr::from(([0, 0, 0, 0], 8090)),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9103)),
            redis_url: None,
            database: PathBuf::from("chat-relay.sqlite"),
            jwt_secret: "dev-chat-secret".to_string(),
            admin_token: "dev-admin-token".to_string(),
            max_message_chars: 500,
            max_connections: 50_000,
            max_frame_bytes: 8192,
            rate_burst: 20,
            rate_period: 30.0,
            send_queue: 256,
            ping_interval: 20.0,
            write_timeout: 10.0,
            reaction_window_ms: 500,
            viewers_interval: 30.0,
            history_page: 100,
            fanout_shards: 16,
            emotes: ["Kappa", "PogChamp", "LUL", "GG", "HeyGuys"]
                .map(String::from)
                .to_vec(),
            recovery_max: 200,
            history_max: 1000,
            presence_interval: 5.0,
            channels: BTreeMap::from([(
                "demo".to_string(),
                ChannelConfig {
                    description: "The built-in test stream".to_string(),
                    title: Some("Corral demo".to_string()),
                },
            )]),
            cors_origins: Vec::new(),
            guests: GuestConfig::default(),
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
        if self.jwt_secret.len() < 8 {
            return Err(Invalid::new(
                "jwt_secret",
                "a secret of at least 8 bytes",
                "a shorter one",
            ));
        }
        if self.admin_token.len() < 8 {
            return Err(Invalid::new(
                "admin_token",
                "a token of at least 8 bytes",
                "a shorter one",
            ));
        }
        check_range(
            "max_message_chars",
            self.max_message_chars,
            1,
            10_000,
            "characters",
        )?;
        check_range(
            "max_connections",
            self.max_connections,
            1,
            10_000_000,
            "connections",
        )?;
        check_range(
            "max_frame_bytes",
            self.max_frame_bytes,
            256,
            1 << 20,
            "bytes",
        )?;
        check_range("rate_burst", self.rate_burst, 1, 10_000, "messages")?;
        check_range("rate_period", self.rate_period, 0.1, 3600.0, "seconds")?;
        check_range("send_queue", self.send_queue, 1, 100_000, "frames")?;
        check_range("ping_interval", self.ping_interval, 0.1, 600.0, "seconds")?;
        check_range("write_timeout", self.write_timeout, 0.1, 600.0, "seconds")?;
        check_range(
            "reaction_window_ms",
            self.reaction_window_ms,
            10,
            60_000,
            "milliseconds",
        )?;
        check_range(
            "viewers_interval",
            self.viewers_interval,
            0.1,
            3600.0,
            "seconds",
        )?;
        check_range("history_page", self.history_page, 1, 1000, "messages")?;
        check_range("fanout_shards", self.fanout_shards, 1, 1024, "tasks")?;
        check_range("recovery_max", self.recovery_max, 1, 10_000, "messages")?;
        check_range("history_max", self.history_max, 10, 1_000_000, "messages")?;
        check_range(
            "presence_interval",
            self.presence_interval,
            0.1,
            600.0,
            "seconds",
        )?;
        check_range("guests.ttl", self.guests.ttl, 60, 30 * 86_400, "seconds")?;
        check_range(
            "guests.per_second",
            self.guests.per_second,
            1,
            100_000,
            "tokens per second",
        )?;
        if let Some(bad) = self.cors_origins.iter().find(|o| !cors_origin_ok(o)) {
            return Err(Invalid::new(
                "cors_origins",
                "origins as scheme://host[:port] (no path), or *",
                bad,
            ));
        }
        if let Some(bad) = self.channels.keys().find(|c| !crate::valid_name(c)) {
            return Err(Invalid::new(
                "channels",
                "names of letters, digits, _ and -, at most 64",
                bad,
            ));
        }
        if let Some(bad) = self
            .emotes
            .iter()
            .find(|e| e.is_empty() || !e.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            return Err(Invalid::new(
                "emotes",
                "names of letters, digits and _",
                bad,
            ));
        }
        Ok(())
    }
}

/// Whether `origin` is `*` or `http(s)://host[:port]` with nothing after it.
fn cors_origin_ok(origin: &str) -> bool {
    if origin == "*" {
        return true;
    }
    let Some(rest) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn the_shipped_config_shows_the_defaults_and_redis_urls_are_checked() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/chat-relay.yaml");
        let shipped = yaml_config::load::<ChatRelayConfig>(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(shipped, ChatRelayConfig::default());
        let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/chat-relay-local.yaml");
        let local = yaml_config::load::<ChatRelayConfig>(&local).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(local.database, PathBuf::from("target/chat-relay.sqlite"));
        assert!(local.listen.ip().is_loopback());
        let err =
            yaml_config::from_str::<ChatRelayConfig>(Path::new("c.yaml"), "redis_url: http://x\n")
                .expect_err("bad");
        assert_eq!(err.key.as_deref(), Some("redis_url"));
        let err =
            yaml_config::from_str::<ChatRelayConfig>(Path::new("c.yaml"), "emotes: [\"a b\"]\n")
                .expect_err("bad");
        assert_eq!(err.key.as_deref(), Some("emotes"));
        for bad in [
            "cors_origins: [\"http://x/page\"]\n",
            "cors_origins: [\"x.example\"]\n",
        ] {
            let err = yaml_config::from_str::<ChatRelayConfig>(Path::new("c.yaml"), bad)
                .expect_err("bad");
            assert_eq!(err.key.as_deref(), Some("cors_origins"), "{bad}");
        }
        assert!(local.guests.enabled, "make run's page chats as a guest");
        assert!(
            local
                .cors_origins
                .contains(&"http://127.0.0.1:8080".to_string())
        );
    }
}
