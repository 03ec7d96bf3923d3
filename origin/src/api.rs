//! `GET /api/streams`: the streams, their state and renditions, as JSON; and
//! `GET /api/streams/{name}/playback-url`: a signed, expiring URL of a stream for a player.

use serde::Serialize;

use crate::stream::{Stream, StreamStatus};
use corral_transcoder::fmp4::MediaKind;

/// The answer of `/api/streams`.
#[derive(Debug, Serialize)]
pub struct StreamList {
    /// Every configured stream.
    pub streams: Vec<StreamInfo>,
}

/// One stream.
#[derive(Debug, Serialize)]
pub struct StreamInfo {
    /// Name in URLs.
    pub name: String,
    /// What feeds it.
    pub source: String,
    /// Lifecycle and transcoder state.
    #[serde(flatten)]
    pub status: StreamStatus,
    /// Path of the multivariant playlist.
    pub master: String,
    /// Renditions in ladder order, audio last.
    pub renditions: Vec<RenditionInfo>,
}

/// One rendition.
#[derive(Debug, Serialize)]
pub struct RenditionInfo {
    /// Name in URLs.
    pub name: String,
    /// `video` or `audio`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// RFC 6381 codec, once the init segment is known.
    pub codec: Option<String>,
    /// Width in pixels (video).
    pub width: Option<u32>,
    /// Height in pixels (video).
    pub height: Option<u32>,
    /// The encoder's target bit rate.
    pub bitrate: Option<u64>,
    /// Path of the media playlist.
    pub playlist: String,
    /// MSN of the last published part.
    pub last_msn: Option<u64>,
    /// Index of the last published part.
    pub last_part: Option<u32>,
}

/// Describes `stream`.
pub fn describe(stream: &Stream) -> StreamInfo {
    let renditions = stream
        .renditions()
        .iter()
        .map(|r| {
            let track = r.track();
            let (width, height) = match track.as_ref().map(|t| &t.media) {
                Some(MediaKind::Video { width, height }) => (Some(*width), Some(*height)),
                _ => (None, None),
            };
            let last = r.with_log(|log| log.position().last_part);
            RenditionInfo {
                name: r.name().to_string(),
                kind: if r.is_audio() { "audio" } else { "video" },
                codec: track.and_then(|t| t.codec),
                width,
                height,
                bitrate: r.spec().bitrate.map(|b| b.0),
                playlist: format!("/live/{}/{}/index.m3u8", stream.name(), r.name()),
                last_msn: last.map(|(m, _)| m),
                last_part: last.map(|(_, p)| p),
            }
        })
        .collect();
    StreamInfo {
        name: stream.name().to_string(),
        source: stream.source().to_string(),
        status: stream.status(),
        master: format!("/live/{}/master.m3u8", stream.name()),
        renditions,
    }
}

/// The answer of `/api/streams/{name}/playback-url`.
#[derive(Debug, Serialize)]
pub struct PlaybackUrl {
    /// The stream.
    pub stream: String,
    /// The multivariant playlist's path and signed query, to put after an edge's address.
    pub url: String,
    /// When it stops working (unix seconds).
    pub expires: u64,
}

/// A URL of `stream`'s multivariant playlist signed with `key`, valid for `ttl` seconds from
/// `now`.
pub fn mint(
    key: &signed_url::Key,
    stream: &str,
    ttl: u64,
    now: std::time::SystemTime,
) -> PlaybackUrl {
    let unix = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let expires = unix.saturating_add(ttl);
    let path = format!("/live/{stream}/master.m3u8");
    let query = key.sign(&path, expires).expect("a stream path has a scope");
    PlaybackUrl {
        stream: stream.to_string(),
        url: format!("{path}?{query}"),
        expires,
    }
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
