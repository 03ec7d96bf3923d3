//! The catalog's background work: lifecycle events from each stream's state, a thumbnail of
//! each live stream every [`THUMBNAIL_EVERY`], and viewer counts from the chat relay every
//! [`VIEWERS_EVERY`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::Replay;
use super::catalog::{Catalog, EventKind, THUMBNAIL_EVERY, VIEWERS_EVERY};
use crate::stream::{Lifecycle, Stream};

/// Largest thumbnail accepted from ffmpeg.
const MAX_THUMBNAIL: usize = 1 << 20;
/// How long one thumbnail may take.
const THUMBNAIL_TIMEOUT: Duration = Duration::from_secs(5);

/// The chat relay the origin talks to.
#[derive(Debug, Clone)]
pub struct ChatLink {
    /// Its base URL, `http://HOST:PORT`.
    pub url: String,
    /// Its admin token (announcements).
    pub admin_token: Option<String>,
    /// The HTTP client.
    pub client: reqwest::Client,
}

impl ChatLink {
    /// A link to the relay at `url`.
    pub fn new(url: &str, admin_token: Option<String>) -> ChatLink {
        ChatLink {
            url: url.trim_end_matches('/').to_string(),
            admin_token,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(3))
                .build()
                .unwrap_or_default(),
        }
    }

    /// The viewers of `stream`'s room now.
    pub async fn viewers(&self, stream: &str) -> Result<u64, String> {
        let r = self
            .client
            .get(format!("{}/v1/channels/{stream}", self.url))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("the chat relay answered {}", r.status()));
        }
        let body = r.bytes().await.map_err(|e| e.to_string())?;
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        v["viewers"]
            .as_u64()
            .ok_or_else(|| "no viewer count in the answer".to_string())
    }

    /// Shows `text` in `stream`'s chat as an announcement.
    pub async fn announce(&self, stream: &str, text: &str, level: &str) -> Result<(), String> {
        let Some(token) = &self.admin_token else {
            return Err("chat.admin_token is not set".to_string());
        };
        let body = serde_json::json!({ "text": text, "level": level });
        let r = self
            .client
            .post(format!("{}/v1/rooms/{stream}/announcements", self.url))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if r.status().is_success() {
            Ok(())
        } else {
            Err(format!("the chat relay answered {}", r.status()))
        }
    }
}

/// Starts the catalog's tasks for `streams`; they end with `stop`.
pub fn start(
    catalog: Arc<Catalog>,
    streams: Vec<Arc<Stream>>,
    replay: Option<Arc<Replay>>,
    ffmpeg: PathBuf,
    chat: Option<ChatLink>,
    stop: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for stream in &streams {
        tasks.push(tokio::spawn(lifecycle(
            catalog.clone(),
            stream.clone(),
            replay.clone(),
            stop.clone(),
        )));
    }
    tasks.push(tokio::spawn(thumbnails(
        catalog.clone(),
        streams.clone(),
        replay,
        ffmpeg,
        stop.clone(),
    )));
    if let Some(chat) = chat {
        tasks.push(tokio::spawn(viewers(catalog, streams, chat, stop)));
    }
    tasks
}

/// Turns a stream's state changes into PENDING, LIVE and ENDED, once per broadcast. ENDED
/// names the session (LIVE comes before its first segment, so before it has an ID).
async fn lifecycle(
    catalog: Arc<Catalog>,
    stream: Arc<Stream>,
    replay: Option<Arc<Replay>>,
    stop: CancellationToken,
) {
    let mut states = stream.subscribe_state();
    let live_url = format!("/live/{}/master.m3u8", stream.name());
    let mut announced = (false, false);
    loop {
        let state = *states.borrow_and_update();
        match state {
            Lifecycle::Starting if !announced.0 && !announced.1 => {
                catalog.emit(EventKind::Pending, stream.name(), None, live_url.clone());
                announced.0 = true;
            }
            Lifecycle::Live if !announced.1 => {
                // Live before this task saw it start: it was pending first all the same.
                if !announced.0 {
                    catalog.emit(EventKind::Pending, stream.name(), None, live_url.clone());
                }
                catalog.emit(EventKind::Live, stream.name(), None, live_url.clone());
                announced = (true, true);
            }
            Lifecycle::Ended if announced.1 => {
                let session = replay
                    .as_ref()
                    .and_then(|r| r.stream(stream.name()))
                    .and_then(|r| r.current())
                    .map(|s| s.id.clone());
                catalog.emit(
                    EventKind::Ended,
                    stream.name(),
                    session.as_deref(),
                    live_url.clone(),
                );
                announced = (false, false);
            }
            Lifecycle::Ended | Lifecycle::Idle => announced = (false, false),
            _ => {}
        }
        tokio::select! {
            changed = states.changed() => if changed.is_err() { return },
            _ = stop.cancelled() => return,
        }
    }
}

/// Every [`THUMBNAIL_EVERY`], a JPEG of each live stream's newest segment.
async fn thumbnails(
    catalog: Arc<Catalog>,
    streams: Vec<Arc<Stream>>,
    replay: Option<Arc<Replay>>,
    ffmpeg: PathBuf,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(THUMBNAIL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        for stream in &streams {
            if !matches!(stream.state(), Lifecycle::Live | Lifecycle::Reconnecting) {
                continue;
            }
            let Some(media) = newest_picture(stream) else {
                continue;
            };
            match grab(&ffmpeg, media).await {
                Ok(jpeg) => {
                    catalog.set_thumbnail(stream.name(), jpeg.clone());
                    if let Some(replay) = &replay {
                        replay.keep_thumbnail(stream.name(), jpeg);
                    }
                }
                Err(e) => {
                    tracing::warn!(stream = %stream.name(), error = %e, "cannot grab a thumbnail")
                }
            }
        }
    }
}

/// The init segment and newest complete segment of the stream's smallest video rendition.
fn newest_picture(stream: &Stream) -> Option<Vec<Bytes>> {
    let rendition = stream.renditions().iter().rev().find(|r| !r.is_audio())?;
    rendition.with_log(|log| {
        let segment = log.segments().filter(|s| s.complete && !s.gap).last()?;
        let init = log.init(segment.init)?;
        let mut chunks = vec![init.bytes.clone()];
        chunks.extend(segment.chunks().cloned());
        Some(chunks)
    })
}

/// Decodes the first frame of `media` (an init segment and a segment) into a 320-pixel-wide
/// JPEG with ffmpeg.
pub async fn grab(ffmpeg: &Path, media: Vec<Bytes>) -> Result<Bytes, String> {
    let mut child = tokio::process::Command::new(ffmpeg)
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "mp4",
            "-i",
            "pipe:0",
            "-frames:v",
            "1",
            "-vf",
            "scale=320:-2",
            "-q:v",
            "5",
            "-f",
            "image2pipe",
            "-c:v",
            "mjpeg",
            "pipe:1",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", ffmpeg.display()))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    let work = async {
        let feed = async move {
            for chunk in media {
                if stdin.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            drop(stdin);
        };
        let mut jpeg = Vec::new();
        let mut errors = Vec::new();
        let read = async {
            let mut limited = (&mut stdout).take(MAX_THUMBNAIL as u64 + 1);
            limited.read_to_end(&mut jpeg).await
        };
        let (_, read, _) = tokio::join!(feed, read, stderr.read_to_end(&mut errors));
        read.map_err(|e| e.to_string())?;
        let status = child.wait().await.map_err(|e| e.to_string())?;
        if !status.success() || jpeg.is_empty() || jpeg.len() > MAX_THUMBNAIL {
            return Err(format!(
                "ffmpeg ({status}): {}",
                String::from_utf8_lossy(&errors).trim()
            ));
        }
        Ok(Bytes::from(jpeg))
    };
    tokio::time::timeout(THUMBNAIL_TIMEOUT, work)
        .await
        .map_err(|_| "ffmpeg took too long".to_string())?
}

/// Every [`VIEWERS_EVERY`], each live stream's viewers from the chat relay.
async fn viewers(
    catalog: Arc<Catalog>,
    streams: Vec<Arc<Stream>>,
    chat: ChatLink,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(VIEWERS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        for stream in &streams {
            if !matches!(
                stream.state(),
                Lifecycle::Live | Lifecycle::Reconnecting | Lifecycle::Restarting
            ) {
                catalog.set_viewers(stream.name(), None);
                continue;
            }
            match chat.viewers(stream.name()).await {
                Ok(n) => {
                    failing = false;
                    catalog.set_viewers(stream.name(), Some(n));
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(url = %chat.url, error = %e, "cannot read viewer counts from the chat relay");
                    }
                    failing = true;
                }
            }
        }
    }
}
