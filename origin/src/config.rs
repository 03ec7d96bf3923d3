//! The origin's config file (`conf/origin.yaml`, `conf/local.yaml`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use corral_transcoder::config::{Bitrate, TranscoderConfig};
use serde::Deserialize;
use yaml_config::{Invalid, Validate, check_name, check_range};

use crate::packager::params::{LlhlsParams, MediaTiming};

/// The whole file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OriginConfig {
    /// Log filter, e.g. `info` or `corral_origin=debug,info`; `RUST_LOG` overrides it.
    pub log_level: String,
    /// The HTTP server for players and edges.
    pub http: HttpConfig,
    /// The Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// LL-HLS timing.
    pub llhls: LlhlsConfig,
    /// Encoder and ladder.
    pub transcoder: TranscoderConfig,
    /// Where broadcasters publish (RTMP and SRT).
    pub ingest: IngestConfig,
    /// A primary origin this one stands by for.
    pub redundancy: RedundancyConfig,
    /// Where every broadcast is archived (for the DVR window and the VOD after the end).
    pub archive: ArchiveConfig,
    /// The DVR playlist.
    pub dvr: DvrConfig,
    /// The chat relay beside this origin.
    pub chat: ChatConfig,
    /// The streams this origin produces.
    pub streams: Vec<StreamConfig>,
}

impl Default for OriginConfig {
    fn default() -> Self {
        Self {
            log_level: "info".to_string(),
            http: HttpConfig::default(),
            metrics: MetricsConfig::default(),
            llhls: LlhlsConfig::default(),
            transcoder: TranscoderConfig::default(),
            ingest: IngestConfig::default(),
            redundancy: RedundancyConfig::default(),
            archive: ArchiveConfig::default(),
            dvr: DvrConfig::default(),
            chat: ChatConfig::default(),
            streams: vec![StreamConfig::default()],
        }
    }
}

/// `http:`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address for playlists, media and the API.
    pub listen: SocketAddr,
    /// Connections served at once; more are closed on accept.
    pub max_connections: usize,
    /// Requests held waiting for media at once (blocking reloads, hinted parts); more get 503.
    pub max_blocked_requests: usize,
    /// Seconds a client may take to send its request headers.
    pub header_read_timeout: f64,
    /// `Access-Control-Allow-Origin` sent to players.
    pub cors_allow_origin: String,
    /// Minting signed playback URLs for the edges.
    pub signing: SigningConfig,
    /// What SIGTERM means for the players behind this origin.
    pub on_stop: OnStop,
    /// The bearer token of the admin API (stream metadata, cues, deleting past broadcasts);
    /// null turns the admin API off.
    pub admin_token: Option<String>,
}

/// `http.on_stop:` what stopping the origin (SIGTERM) does to the requests it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnStop {
    /// The only origin of its streams: they end, and held requests get the final playlist
    /// with `EXT-X-ENDLIST`.
    #[default]
    End,
    /// One of several origins behind edges: `/healthz` answers 503 at once, and every request
    /// (held ones too) is closed unanswered, so the edges retry it on the next origin; no
    /// playlist ever says the stream ended.
    HandOver,
}

/// `http.signing:`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigningConfig {
    /// The HMAC-SHA256 key the edges check signatures with (at least 16 bytes); null turns
    /// minting off.
    pub key: Option<String>,
    /// Seconds a minted URL stays valid unless the request asks for less (`?ttl=`).
    pub ttl: u64,
    /// The bearer token a backend must present to mint (`Authorization: Bearer ...`); required
    /// with a key, since the API is reachable through the edges.
    pub mint_token: Option<String>,
}

impl Default for SigningConfig {
    fn default() -> Self {
        Self {
            key: None,
            ttl: 6 * 3600,
            mint_token: None,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8081)),
            max_connections: 10_000,
            max_blocked_requests: 10_000,
            header_read_timeout: 10.0,
            cors_allow_origin: "*".to_string(),
            signing: SigningConfig::default(),
            on_stop: OnStop::End,
            admin_token: None,
        }
    }
}

/// `metrics:`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of `GET /metrics`.
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9101)),
        }
    }
}

/// `redundancy:` (see [`crate::redundancy`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedundancyConfig {
    /// The primary origin (HOST:PORT of its HTTP server) whose epochs this standby follows
    /// for published streams; `None` for a primary or a lone origin.
    pub follow: Option<String>,
    /// Seconds a starting publish waits for the primary's epoch, its parts held back.
    pub wait: f64,
    /// Seconds the primary's anchor may be from this origin's own for the same publish.
    pub tolerance: f64,
}

impl Default for RedundancyConfig {
    fn default() -> Self {
        Self {
            follow: None,
            wait: 3.0,
            tolerance: 1.0,
        }
    }
}

impl RedundancyConfig {
    /// `wait` as a duration.
    pub fn wait(&self) -> Duration {
        Duration::from_secs_f64(self.wait)
    }

    /// `tolerance` as a duration.
    pub fn tolerance(&self) -> Duration {
        Duration::from_secs_f64(self.tolerance)
    }
}

/// `archive:` (see [`crate::replay`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveConfig {
    /// Whether broadcasts are archived. Off: no DVR playlist and no VOD.
    pub enabled: bool,
    /// The local directory of the archive, when `s3` is not set.
    pub path: PathBuf,
    /// An S3 (or S3-compatible) bucket instead of the local directory.
    pub s3: Option<S3Config>,
    /// A key prefix for every object (origins sharing a bucket each need their own).
    pub prefix: String,
    /// Bytes that may wait to be written; a write beyond is refused (counted and logged).
    pub queue_bytes: usize,
    /// Writes in flight at once.
    pub concurrency: usize,
    /// Retrying failed writes.
    pub retry: RetryConfig,
    /// Seconds a finished broadcast waits for its media writes before its VOD is written
    /// (what has not landed by then is listed as a gap).
    pub finalize_timeout: f64,
    /// Seconds between checkpoints of a live broadcast's playlists, from which the next start
    /// finishes a broadcast that a crash cut short.
    pub checkpoint_interval: f64,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: PathBuf::from("archive"),
            s3: None,
            prefix: String::new(),
            queue_bytes: 256 << 20,
            concurrency: 8,
            retry: RetryConfig::default(),
            finalize_timeout: 120.0,
            checkpoint_interval: 30.0,
        }
    }
}

/// `archive.s3:`. Credentials come from the environment, as the AWS tools read them
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, ...).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// The bucket.
    pub bucket: String,
    /// An S3-compatible service's URL (MinIO, Ceph, R2); unset for AWS.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The region; unset takes `AWS_REGION` or `us-east-1`.
    #[serde(default)]
    pub region: Option<String>,
    /// Whether a plain `http://` endpoint is allowed.
    #[serde(default)]
    pub allow_http: bool,
}

/// `archive.retry:`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts per object before it counts as failed.
    pub attempts: u32,
    /// Seconds before the second attempt; doubles after each failure.
    pub initial_backoff: f64,
    /// Longest wait between attempts, in seconds.
    pub max_backoff: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts: 6,
            initial_backoff: 0.5,
            max_backoff: 10.0,
        }
    }
}

/// `chat:`: the relay whose rooms show the catalog's viewer counts and the news flashes.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ChatConfig {
    /// The relay's base URL (`http://HOST:8090`); null: no viewer counts, flashes only in the
    /// players.
    pub url: Option<String>,
    /// The relay's admin token, to post announcements.
    pub admin_token: Option<String>,
}

/// `dvr:`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DvrConfig {
    /// Seconds the DVR playlist (`/live/{stream}/dvr.m3u8`) lets players seek back; 0 lists
    /// the whole broadcast (`EXT-X-PLAYLIST-TYPE:EVENT`).
    pub window: f64,
}

impl Default for DvrConfig {
    fn default() -> Self {
        Self { window: 600.0 }
    }
}

/// `llhls:`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlhlsConfig {
    /// Seconds per segment (and per GOP: keyframes are forced at each boundary).
    pub segment_duration: f64,
    /// About how long a part lasts, in seconds. Each segment is cut into equal cells of a whole
    /// number of frames near this (2 s at 30 fps and 1/3 s: six parts of ten frames), the same
    /// cells in every rendition; the advertised `PART-TARGET` is the longest part any rendition
    /// cuts on them and a millisecond for rounded timestamps (AAC frames never divide a cell
    /// evenly: 0.34234 s at 48 kHz here).
    pub part_target: f64,
    /// Complete segments listed in each media playlist.
    pub playlist_segments: usize,
    /// Segments kept downloadable after they leave the playlist.
    pub retained_segments: usize,
}

impl Default for LlhlsConfig {
    fn default() -> Self {
        let p = LlhlsParams::default();
        Self {
            segment_duration: p.segment_duration,
            part_target: 1.0 / 3.0,
            playlist_segments: p.playlist_segments,
            retained_segments: p.retained_segments,
        }
    }
}

impl LlhlsConfig {
    /// The packager's parameters for media with `media`'s frame durations.
    pub fn params(&self, media: MediaTiming) -> LlhlsParams {
        LlhlsParams {
            playlist_segments: self.playlist_segments,
            retained_segments: self.retained_segments,
            ..LlhlsParams::new(self.segment_duration, self.part_target, media)
        }
    }
}

/// `ingest.rtmp:`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtmpConfig {
    /// Whether the RTMP listener runs.
    pub enabled: bool,
    /// Address of the RTMP listener; publishers use `rtmp://HOST:PORT/live/<key>`.
    pub listen: SocketAddr,
    /// Largest RTMP message accepted, in bytes (a keyframe must fit).
    pub max_message_bytes: usize,
}

impl Default for RtmpConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([0, 0, 0, 0], 1935)),
            max_message_bytes: 8 << 20,
        }
    }
}

/// `ingest.srt:`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SrtConfig {
    /// Whether the SRT listener runs.
    pub enabled: bool,
    /// UDP address of the SRT listener (listener mode; callers send `streamid=<key>`).
    pub listen: SocketAddr,
    /// SRT receive latency in milliseconds: how long lost packets may be retransmitted.
    pub latency_ms: u32,
}

impl Default for SrtConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([0, 0, 0, 0], 9000)),
            latency_ms: 120,
        }
    }
}

/// `ingest:`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// The RTMP listener.
    pub rtmp: RtmpConfig,
    /// The SRT listener.
    pub srt: SrtConfig,
    /// Ingest connections open at once, authenticated or not; more are closed on accept.
    pub max_connections: usize,
    /// Seconds a connection may take from accept to an accepted publish.
    pub handshake_timeout: f64,
    /// Seconds without media after which a publisher is considered gone.
    pub media_timeout: f64,
    /// Seconds after a publish starts within which a video keyframe must arrive.
    pub keyframe_timeout: f64,
    /// Seconds a stream stays live on a slate after its publisher is lost, waiting for it to
    /// come back; then the stream ends with `EXT-X-ENDLIST`.
    pub reconnect_grace: f64,
    /// Whether a second publisher for a live key replaces the first (otherwise it is refused).
    pub takeover: bool,
    /// Highest incoming bit rate a publisher may sustain (over 5 s); far above it the
    /// connection is closed. A stream may set its own.
    pub max_bitrate: Bitrate,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            rtmp: RtmpConfig::default(),
            srt: SrtConfig::default(),
            max_connections: 256,
            handshake_timeout: 5.0,
            media_timeout: 2.0,
            keyframe_timeout: 10.0,
            reconnect_grace: 30.0,
            takeover: false,
            max_bitrate: Bitrate(20_000_000),
        }
    }
}

/// Where a stream's media comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// ffmpeg's test pattern with a burnt-in clock and a tone.
    #[default]
    Testsrc,
    /// A broadcaster publishes it over RTMP or SRT with the stream's key.
    Publish,
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SourceKind::Testsrc => "testsrc",
            SourceKind::Publish => "publish",
        })
    }
}

/// `streams[].testsrc:`.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TestsrcConfig {
    /// Picture width; defaults to the top rung's.
    pub width: Option<u32>,
    /// Picture height; defaults to the top rung's.
    pub height: Option<u32>,
    /// Seconds before the source ends (then the stream ends with `EXT-X-ENDLIST`); unset runs
    /// until the origin stops.
    pub duration: Option<f64>,
    /// Tone frequency in Hz (default 1000).
    pub tone_hz: Option<u32>,
    /// TrueType font for the clock; defaults to DejaVu Sans Mono when installed.
    pub font: Option<PathBuf>,
}

/// `streams[]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// The stream's name in URLs: `/live/<name>/master.m3u8`.
    pub name: String,
    /// `testsrc`.
    #[serde(default)]
    pub source: SourceKind,
    /// Test pattern settings, for `source: testsrc`.
    #[serde(default)]
    pub testsrc: TestsrcConfig,
    /// The stream key publishers present, for `source: publish`: the last path element of the
    /// RTMP URL (`rtmp://HOST:1935/live/<key>`) or the SRT `streamid`.
    #[serde(default)]
    pub key: Option<String>,
    /// SRT passphrase (10 to 79 characters); callers must encrypt with it. Unset: no encryption.
    #[serde(default)]
    pub passphrase: Option<String>,
    /// Overrides `ingest.max_bitrate` for this stream.
    #[serde(default)]
    pub max_bitrate: Option<Bitrate>,
    /// Overrides `ingest.takeover` for this stream.
    #[serde(default)]
    pub takeover: Option<bool>,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            name: "demo".to_string(),
            source: SourceKind::Testsrc,
            testsrc: TestsrcConfig::default(),
            key: None,
            passphrase: None,
            max_bitrate: None,
            takeover: None,
        }
    }
}

impl OriginConfig {
    /// The packager's parameters: the LL-HLS timing fitted to the transcoder's frame rate and
    /// audio sample rate.
    pub fn llhls_params(&self) -> LlhlsParams {
        self.llhls.params(MediaTiming {
            fps: self.transcoder.fps,
            audio_sample_rate: self.transcoder.audio.sample_rate,
        })
    }
}

impl Validate for OriginConfig {
    fn validate(&self) -> Result<(), Invalid> {
        let r = &self.redundancy;
        check_range("redundancy.wait", r.wait, 0.1, 30.0, "seconds")?;
        check_range("redundancy.tolerance", r.tolerance, 0.01, 10.0, "seconds")?;
        if let Some(peer) = &r.follow
            && !peer.contains(':')
        {
            return Err(Invalid::new(
                "redundancy.follow",
                "HOST:PORT of the primary origin's HTTP server",
                peer,
            ));
        }
        check_range(
            "http.max_connections",
            self.http.max_connections,
            1,
            1_000_000,
            "a count",
        )?;
        check_range(
            "http.max_blocked_requests",
            self.http.max_blocked_requests,
            1,
            1_000_000,
            "a count",
        )?;
        check_range(
            "http.header_read_timeout",
            self.http.header_read_timeout,
            0.5,
            300.0,
            "seconds",
        )?;
        let signing = &self.http.signing;
        if let Some(key) = &signing.key {
            if key.len() < signed_url::MIN_KEY_LEN {
                return Err(Invalid::new(
                    "http.signing.key",
                    format!("at least {} bytes", signed_url::MIN_KEY_LEN),
                    format!("{} bytes", key.len()),
                ));
            }
            if signing.mint_token.as_deref().is_none_or(|t| t.len() < 16) {
                return Err(Invalid::new(
                    "http.signing.mint_token",
                    "a token of at least 16 bytes when http.signing.key is set",
                    "none or a shorter one",
                ));
            }
        }
        check_range("http.signing.ttl", signing.ttl, 1, 30 * 86_400, "seconds")?;
        if self
            .http
            .admin_token
            .as_deref()
            .is_some_and(|t| t.len() < 12)
        {
            return Err(Invalid::new(
                "http.admin_token",
                "a token of at least 12 bytes",
                "a shorter one",
            ));
        }
        if let Some(url) = &self.chat.url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(Invalid::new("chat.url", "an http:// or https:// URL", url));
        }
        let a = &self.archive;
        check_range(
            "archive.queue_bytes",
            a.queue_bytes,
            1 << 20,
            64 << 30,
            "bytes",
        )?;
        check_range("archive.concurrency", a.concurrency, 1, 1024, "a count")?;
        check_range(
            "archive.retry.attempts",
            a.retry.attempts,
            1,
            100,
            "a count",
        )?;
        check_range(
            "archive.retry.initial_backoff",
            a.retry.initial_backoff,
            0.01,
            60.0,
            "seconds",
        )?;
        check_range(
            "archive.retry.max_backoff",
            a.retry.max_backoff,
            a.retry.initial_backoff,
            600.0,
            "seconds (at least archive.retry.initial_backoff)",
        )?;
        check_range(
            "archive.finalize_timeout",
            a.finalize_timeout,
            1.0,
            3600.0,
            "seconds",
        )?;
        check_range(
            "archive.checkpoint_interval",
            a.checkpoint_interval,
            2.0,
            3600.0,
            "seconds",
        )?;
        if a.prefix.contains(['\\', '%']) || a.prefix.split('/').any(|p| p == "..") {
            return Err(Invalid::new(
                "archive.prefix",
                "a key prefix of plain path elements",
                &a.prefix,
            ));
        }
        if let Some(s3) = &a.s3
            && s3.bucket.is_empty()
        {
            return Err(Invalid::new("archive.s3.bucket", "a bucket name", "\"\""));
        }
        if self.dvr.window != 0.0 {
            check_range(
                "dvr.window",
                self.dvr.window,
                30.0,
                86_400.0,
                "seconds (or 0)",
            )?;
        }
        if self.http.cors_allow_origin.is_empty()
            || self.http.cors_allow_origin.contains(['\r', '\n'])
        {
            return Err(Invalid::new(
                "http.cors_allow_origin",
                "an origin such as * or https://example.com",
                format!("{:?}", self.http.cors_allow_origin),
            ));
        }
        let l = &self.llhls;
        check_range(
            "llhls.segment_duration",
            l.segment_duration,
            1.0,
            10.0,
            "seconds",
        )?;
        check_range("llhls.part_target", l.part_target, 0.1, 2.0, "seconds")?;
        let fps = f64::from(self.transcoder.fps);
        if l.part_target < 1.0 / fps {
            return Err(Invalid::new(
                "llhls.part_target",
                format!(
                    "at least one frame at {} fps ({:.4} s)",
                    self.transcoder.fps,
                    1.0 / fps
                ),
                l.part_target,
            ));
        }
        let gop = l.segment_duration * fps;
        if (gop - gop.round()).abs() > 1e-6 {
            return Err(Invalid::new(
                "llhls.segment_duration",
                format!(
                    "a whole number of frames at {} fps (keyframes start every segment)",
                    self.transcoder.fps
                ),
                l.segment_duration,
            ));
        }
        if l.part_target * 2.0 > l.segment_duration {
            return Err(Invalid::new(
                "llhls.part_target",
                "at most half of llhls.segment_duration",
                l.part_target,
            ));
        }
        let params = self.llhls_params();
        let min_segments =
            ((3 * params.target_duration()) as f64 / l.segment_duration).ceil() as usize + 1;
        check_range(
            "llhls.playlist_segments",
            l.playlist_segments,
            min_segments,
            1000,
            "a count (the playlist must hold three target durations)",
        )?;
        check_range(
            "llhls.retained_segments",
            l.retained_segments,
            0,
            1000,
            "a count",
        )?;
        self.transcoder.validate("transcoder")?;
        let ing = &self.ingest;
        check_range(
            "ingest.max_connections",
            ing.max_connections,
            1,
            100_000,
            "a count",
        )?;
        check_range(
            "ingest.handshake_timeout",
            ing.handshake_timeout,
            0.5,
            120.0,
            "seconds",
        )?;
        check_range(
            "ingest.media_timeout",
            ing.media_timeout,
            0.5,
            60.0,
            "seconds",
        )?;
        check_range(
            "ingest.reconnect_grace",
            ing.reconnect_grace,
            0.0,
            3600.0,
            "seconds",
        )?;
        check_range(
            "ingest.max_bitrate",
            ing.max_bitrate,
            Bitrate(100_000),
            Bitrate(1_000_000_000),
            "a bit rate",
        )?;
        check_range(
            "ingest.rtmp.max_message_bytes",
            ing.rtmp.max_message_bytes,
            64 << 10,
            64 << 20,
            "bytes",
        )?;
        check_range(
            "ingest.srt.latency_ms",
            ing.srt.latency_ms,
            20,
            8000,
            "milliseconds",
        )?;
        if self.streams.len() > 64 {
            return Err(Invalid::new(
                "streams",
                "at most 64 streams",
                self.streams.len(),
            ));
        }
        for (i, s) in self.streams.iter().enumerate() {
            let key = |k: &str| format!("streams[{i}].{k}");
            check_name(&key("name"), &s.name)?;
            if self.streams[..i].iter().any(|o| o.name == s.name) {
                return Err(Invalid::new(
                    key("name"),
                    "a name no other stream uses",
                    &s.name,
                ));
            }
            let t = &s.testsrc;
            for (k, v, max) in [
                ("testsrc.width", t.width, 7680),
                ("testsrc.height", t.height, 4320),
            ] {
                if let Some(v) = v {
                    check_range(&key(k), v, 16, max, "pixels")?;
                    if v % 2 != 0 {
                        return Err(Invalid::new(key(k), "an even number of pixels", v));
                    }
                }
            }
            if let Some(d) = t.duration {
                check_range(&key("testsrc.duration"), d, 1.0, 1e7, "seconds")?;
            }
            if let Some(hz) = t.tone_hz {
                check_range(&key("testsrc.tone_hz"), hz, 20, 20_000, "Hz")?;
            }
            if let Some(font) = &t.font
                && !font.is_file()
            {
                return Err(Invalid::new(
                    key("testsrc.font"),
                    "an existing font file",
                    font.display(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(text: &str) -> Result<OriginConfig, yaml_config::ConfigError> {
        yaml_config::from_str(Path::new("origin.yaml"), text)
    }

    #[test]
    fn the_defaults_are_valid_and_serve_one_test_stream() {
        let c = parse("").expect("defaults");
        assert_eq!(c.streams.len(), 1);
        assert_eq!(c.streams[0].name, "demo");
        assert_eq!(c.http.listen.port(), 8081);
        assert_eq!(c.metrics.listen.port(), 9101);
    }

    #[test]
    fn shipped_configs_are_valid() {
        for file in ["origin.yaml", "local.yaml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../conf")
                .join(file);
            yaml_config::load::<OriginConfig>(&path).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn a_part_target_shorter_than_a_frame_is_refused() {
        let err =
            parse("llhls:\n  part_target: 0.1\ntranscoder:\n  fps: 5\n").expect_err("too short");
        assert_eq!(err.key.as_deref(), Some("llhls.part_target"));
        assert!(err.to_string().contains("one frame at 5 fps"), "{err}");
    }

    #[test]
    fn a_playlist_shorter_than_three_target_durations_is_refused() {
        let err = parse("llhls:\n  playlist_segments: 2\n").expect_err("rule 16");
        assert_eq!(err.key.as_deref(), Some("llhls.playlist_segments"));
    }

    #[test]
    fn duplicate_or_unsafe_stream_names_are_refused() {
        let err = parse("streams:\n  - name: a\n  - name: a\n").expect_err("dup");
        assert_eq!(err.key.as_deref(), Some("streams[1].name"));
        let err = parse("streams:\n  - name: ../etc\n").expect_err("unsafe");
        assert_eq!(err.key.as_deref(), Some("streams[0].name"));
    }

    #[test]
    fn an_unknown_encoder_names_the_choices() {
        let err = parse("transcoder:\n  encoder: vaapi\n").expect_err("unknown");
        assert_eq!(err.key.as_deref(), Some("transcoder.encoder"));
        assert!(err.to_string().contains("x264"), "{err}");
    }
}
