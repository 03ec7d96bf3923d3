//! A live stream at the origin: its renditions' publication logs, its lifecycle, and the
//! waiting and rendering that HTTP requests need.
//!
//! [`driver::StreamDriver`] is the only writer: it turns the transcoder's events into parts and
//! segments. HTTP handlers only read: they render playlists (memoized per log version) and wait
//! for publications through a `watch` channel per rendition, so a held request wakes on the
//! publication event itself, never on a timer.

pub mod controller;
pub mod driver;
pub mod slate;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use corral_transcoder::command::{RenditionKind, RenditionSpec};
use corral_transcoder::fmp4::{MediaKind, TrackInfo};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use tokio::sync::watch;

use crate::packager::bitrate::{self, Bitrate};
use crate::packager::blocking::{BlockingLimits, Verdict};
use crate::packager::cue::{Cue, CueKind, dateranges};
use crate::packager::log::MediaLog;
use crate::packager::params::LlhlsParams;
use crate::packager::playlist::{
    AudioVariant, Form, RenditionReport, VideoVariant, media_playlist, multivariant_playlist,
};
use crate::redundancy::EpochInfo;

/// Part targets without a publication after which a stream that should be advancing counts
/// as stalled (see [`Stream::stalled`]).
pub const STALL_PARTS: f64 = 2.0;

/// Where a stream is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lifecycle {
    /// Waiting for a publisher (streams fed by RTMP or SRT).
    Idle,
    /// The transcoder is starting; nothing published yet.
    Starting,
    /// Parts are being published.
    Live,
    /// The transcoder died and is being restarted; the playlist resumes after a discontinuity.
    Restarting,
    /// The publisher is gone; a slate keeps the playlists advancing until it returns or the
    /// grace period ends.
    Reconnecting,
    /// The source ended; playlists carry `EXT-X-ENDLIST`.
    Ended,
}

/// A stream's state, as `/api/streams` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamStatus {
    /// Lifecycle state.
    pub state: Lifecycle,
    /// When the state was entered.
    #[serde(serialize_with = "rfc3339")]
    pub since: SystemTime,
    /// Transcoder restarts so far.
    pub restarts: u64,
    /// Why the transcoder last failed.
    pub last_error: Option<String>,
    /// The transcoder's last reported speed.
    pub transcoder_speed: Option<f64>,
    /// The transcoder's last reported frames per second.
    pub transcoder_fps: Option<f64>,
    /// The current publisher, for streams that broadcasters publish.
    pub ingest: Option<IngestStatus>,
    /// Publishers that came back within the grace period.
    pub reconnects: u64,
}

/// The publisher of a stream and what it sends.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IngestStatus {
    /// RTMP or SRT.
    pub protocol: crate::ingest::hub::Protocol,
    /// The publisher's address.
    pub peer: String,
    /// When the publish started.
    #[serde(serialize_with = "rfc3339")]
    pub since: SystemTime,
    /// Incoming bit rate over the last second.
    pub bitrate_bps: u64,
    /// Incoming video frames per second over the last second.
    pub fps: f64,
    /// Media bytes received.
    pub bytes: u64,
    /// Video frames received.
    pub video_frames: u64,
    /// Chunks dropped because the stream could not keep up.
    pub dropped: u64,
}

impl IngestStatus {
    /// A publish that just started.
    pub fn new(protocol: crate::ingest::hub::Protocol, peer: String, since: SystemTime) -> Self {
        Self {
            protocol,
            peer,
            since,
            bitrate_bps: 0,
            fps: 0.0,
            bytes: 0,
            video_frames: 0,
            dropped: 0,
        }
    }
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_rfc3339_millis(*t).to_string())
}

/// The last publication on a rendition: its log version and when it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publication {
    /// The log's version after the change.
    pub version: u64,
    /// When the change was made.
    pub at: Instant,
}

/// A rendered media playlist, shared by every request for the same log version.
#[derive(Debug)]
pub struct RenderedPlaylist {
    /// The log version it was rendered from.
    pub version: u64,
    /// Full or delta.
    pub form: Form,
    /// The text.
    pub body: Bytes,
    gzip: OnceLock<Bytes>,
}

impl RenderedPlaylist {
    /// The text, gzip-compressed once and then shared.
    pub fn gzipped(&self) -> &Bytes {
        self.gzip.get_or_init(|| gzip(&self.body))
    }
}

/// Compresses `data` with gzip at a fast level (playlists are small and change often).
pub fn gzip(data: &[u8]) -> Bytes {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 3),
        flate2::Compression::fast(),
    );
    encoder
        .write_all(data)
        .expect("writing to a Vec cannot fail");
    Bytes::from(encoder.finish().expect("writing to a Vec cannot fail"))
}

/// One rendition of a stream.
pub struct Rendition {
    name: String,
    spec: RenditionSpec,
    log: RwLock<MediaLog>,
    track: RwLock<Option<TrackInfo>>,
    changes: watch::Sender<Publication>,
    cache: Mutex<Vec<Arc<RenderedPlaylist>>>,
}

impl Rendition {
    /// The rendition's name in URLs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the transcoder was asked to produce.
    pub fn spec(&self) -> &RenditionSpec {
        &self.spec
    }

    /// Reads the publication log.
    pub fn with_log<T>(&self, f: impl FnOnce(&MediaLog) -> T) -> T {
        f(&self.log.read())
    }

    /// The track as the init segment describes it, once known.
    pub fn track(&self) -> Option<TrackInfo> {
        self.track.read().clone()
    }

    /// A receiver told of every publication on this rendition.
    pub fn subscribe(&self) -> watch::Receiver<Publication> {
        self.changes.subscribe()
    }

    /// Whether this is the audio rendition.
    pub fn is_audio(&self) -> bool {
        matches!(self.spec.kind, RenditionKind::Audio { .. })
    }

    fn publish(&self, change: impl FnOnce(&mut MediaLog)) {
        let version = {
            let mut log = self.log.write();
            change(&mut log);
            log.version()
        };
        self.changes.send_replace(Publication {
            version,
            at: Instant::now(),
        });
    }
}

/// The outcome of waiting for a rendition's log to satisfy a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waited {
    /// The last verdict; [`Verdict::Wait`] means the deadline passed.
    pub verdict: Verdict,
    /// When the request had to wait: the publication that ended the wait.
    pub woken_by: Option<Instant>,
}

/// A live stream. See the module documentation.
pub struct Stream {
    name: String,
    source: String,
    params: LlhlsParams,
    limits: BlockingLimits,
    fps: u32,
    renditions: Vec<Rendition>,
    status: Mutex<StreamStatus>,
    /// The multivariant playlist last rendered, with the measurements it was rendered from.
    master: Mutex<Option<(Vec<Option<Bitrate>>, Bytes)>>,
    /// The current transcoder run's epoch, once anchored.
    epoch: Mutex<Option<EpochInfo>>,
    /// Bumped whenever a rendition's track becomes known or changes.
    tracks: watch::Sender<u64>,
    /// The lifecycle state, for those who follow its changes.
    states: watch::Sender<Lifecycle>,
    /// Ad breaks and news flashes, oldest first.
    cues: Mutex<Vec<Cue>>,
}

/// Cues a stream keeps (its playlists list those still in their window).
pub const MAX_CUES: usize = 1000;

/// Why a cue could not be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CueError {
    /// The stream publishes nothing now.
    #[error("the stream is not live")]
    NotLive,
    /// [`MAX_CUES`] reached.
    #[error("the stream has {MAX_CUES} cues already")]
    Full,
    /// It would overlap an ad break already placed.
    #[error("an ad break is already placed until {0}")]
    Overlap(String),
}

impl Stream {
    /// A stream named `name` whose renditions are `specs`.
    pub fn new(
        name: &str,
        source: &str,
        params: LlhlsParams,
        fps: u32,
        specs: &[RenditionSpec],
    ) -> Arc<Stream> {
        let limits = BlockingLimits {
            advance_parts: params.advance_part_limit(),
            parts_per_segment: params.parts_per_segment,
        };
        let renditions = specs
            .iter()
            .map(|spec| Rendition {
                name: spec.name.clone(),
                spec: spec.clone(),
                log: RwLock::new(MediaLog::new(
                    params.segment_duration,
                    params.playlist_segments,
                    params.retained_segments,
                )),
                track: RwLock::new(None),
                changes: watch::channel(Publication {
                    version: 0,
                    at: Instant::now(),
                })
                .0,
                cache: Mutex::new(Vec::new()),
            })
            .collect();
        Arc::new(Stream {
            name: name.to_string(),
            source: source.to_string(),
            params,
            limits,
            fps,
            renditions,
            status: Mutex::new(StreamStatus {
                state: Lifecycle::Starting,
                since: SystemTime::now(),
                restarts: 0,
                last_error: None,
                transcoder_speed: None,
                transcoder_fps: None,
                ingest: None,
                reconnects: 0,
            }),
            master: Mutex::new(None),
            epoch: Mutex::new(None),
            tracks: watch::channel(0).0,
            states: watch::channel(Lifecycle::Starting).0,
            cues: Mutex::new(Vec::new()),
        })
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long the stream has gone without publishing while it should be publishing (live,
    /// its transcoder restarting, or on its slate), when that is over [`STALL_PARTS`] part
    /// targets. The health check reports it, so that edges take their players to another
    /// origin: a working origin advances its live streams whatever its publishers do.
    pub fn stalled(&self, now: Instant) -> Option<Duration> {
        let state = self.state();
        if !matches!(
            state,
            Lifecycle::Live | Lifecycle::Restarting | Lifecycle::Reconnecting
        ) {
            return None;
        }
        let last = self
            .renditions
            .iter()
            .map(|r| r.changes.borrow().at)
            .max()?;
        let quiet = now.saturating_duration_since(last);
        let limit = Duration::from_secs_f64(self.params.part_target * STALL_PARTS);
        (quiet > limit).then_some(quiet)
    }

    /// What feeds the stream, e.g. `testsrc`.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// LL-HLS timing.
    pub fn params(&self) -> &LlhlsParams {
        &self.params
    }

    /// Limits for blocking requests.
    pub fn limits(&self) -> BlockingLimits {
        self.limits
    }

    /// The renditions, in ladder order with audio last.
    pub fn renditions(&self) -> &[Rendition] {
        &self.renditions
    }

    /// The rendition named `name`, with its index.
    pub fn rendition(&self, name: &str) -> Option<(usize, &Rendition)> {
        self.renditions
            .iter()
            .enumerate()
            .find(|(_, r)| r.name == name)
    }

    /// The current status.
    pub fn status(&self) -> StreamStatus {
        self.status.lock().clone()
    }

    /// The current lifecycle state alone.
    pub fn state(&self) -> Lifecycle {
        self.status.lock().state
    }

    /// Changes the status.
    pub fn update_status(&self, f: impl FnOnce(&mut StreamStatus)) {
        let state = {
            let mut status = self.status.lock();
            f(&mut status);
            status.state
        };
        self.states
            .send_if_modified(|s| std::mem::replace(s, state) != state);
    }

    /// A receiver of the lifecycle state, told of every change.
    pub fn subscribe_state(&self) -> watch::Receiver<Lifecycle> {
        self.states.subscribe()
    }

    /// The multivariant playlist, once every rendition's init segment is known, with each
    /// rendition's measured bit rates once it has a few complete segments.
    pub fn master_playlist(&self) -> Option<Bytes> {
        let measured: Vec<Option<Bitrate>> = self
            .renditions
            .iter()
            .map(|r| r.with_log(|log| bitrate::measure(log.listed(), self.params.segment_duration)))
            .collect();
        if let Some((from, body)) = self.master.lock().as_ref()
            && *from == measured
        {
            return Some(body.clone());
        }
        let mut video = Vec::new();
        let mut audio = None;
        for (r, measured) in self.renditions.iter().zip(measured.iter().copied()) {
            let track = r.track()?;
            let bitrate = r.spec.bitrate.map_or(0, |b| b.0);
            match (&r.spec.kind, &track.media) {
                (RenditionKind::Audio { channels, .. }, _) => {
                    audio = Some(AudioVariant {
                        name: r.name.clone(),
                        codec: track.codec.clone(),
                        channels: *channels,
                        bitrate,
                        measured,
                    });
                }
                (RenditionKind::Video { .. }, media) => {
                    let resolution = match media {
                        MediaKind::Video { width, height } => Some((*width, *height)),
                        _ => None,
                    };
                    video.push(VideoVariant {
                        name: r.name.clone(),
                        codec: track.codec.clone(),
                        resolution,
                        frame_rate: Some(f64::from(self.fps)),
                        bitrate,
                        measured,
                    });
                }
            }
        }
        let body = Bytes::from(multivariant_playlist(&video, audio.as_ref()));
        *self.master.lock() = Some((measured, body.clone()));
        Some(body)
    }

    /// The stream's cues, oldest first.
    pub fn cues(&self) -> Vec<Cue> {
        self.cues.lock().clone()
    }

    /// Places a cue at the start of the segment after the next one (the same program
    /// date-time in every rendition, far enough ahead that players see it before they play
    /// there), and adds it to every rendition's playlists.
    pub fn add_cue(&self, kind: CueKind, duration: f64) -> Result<Cue, CueError> {
        if !matches!(self.state(), Lifecycle::Live | Lifecycle::Reconnecting) {
            return Err(CueError::NotLive);
        }
        // The newest segment of any rendition; the boundary is dated by a video rendition,
        // whose segments start on the grid (an audio segment starts with its first whole
        // audio frame, a few milliseconds later).
        let newest = self
            .renditions
            .iter()
            .filter_map(|r| r.with_log(|log| log.segments().last().map(|s| s.msn)))
            .max()
            .ok_or(CueError::NotLive)?;
        let dated = self
            .renditions
            .iter()
            .find(|r| !r.is_audio())
            .or(self.renditions.first())
            .and_then(|r| {
                r.with_log(|log| log.segments().last().map(|s| (s.msn, s.program_date_time)))
            })
            .ok_or(CueError::NotLive)?;
        let at = newest + 2;
        let ahead = (at.saturating_sub(dated.0)) as f64 * self.params.segment_duration;
        let start = dated.1 + Duration::from_secs_f64(ahead);
        let cue = {
            let mut cues = self.cues.lock();
            if cues.len() >= MAX_CUES {
                return Err(CueError::Full);
            }
            let is_ad = matches!(kind, CueKind::Ad { .. });
            if is_ad
                && let Some(busy) = cues
                    .iter()
                    .filter(|c| matches!(c.kind, CueKind::Ad { .. }) && c.end() > start)
                    .map(Cue::end)
                    .max()
            {
                return Err(CueError::Overlap(
                    crate::packager::playlist::program_date_time(busy),
                ));
            }
            let event_id = cues.len() as u32 + 1;
            let prefix = if is_ad { "ad" } else { "flash" };
            let cue = Cue {
                id: format!("{prefix}-{at}-{event_id}"),
                event_id,
                kind,
                start,
                duration,
            };
            cues.push(cue.clone());
            cue
        };
        self.cues_changed();
        Ok(cue)
    }

    /// Adds the cues of `cues` this stream does not have yet (by ID), as placed by another
    /// origin (a standby's primary); how many were added.
    pub fn adopt_cues(&self, cues: Vec<Cue>) -> usize {
        let added = {
            let mut mine = self.cues.lock();
            let before = mine.len();
            for cue in cues {
                if mine.len() >= MAX_CUES {
                    break;
                }
                if !mine.iter().any(|c| c.id == cue.id) {
                    mine.push(cue);
                }
            }
            mine.sort_by_key(|c| c.start);
            mine.len() - before
        };
        if added > 0 {
            self.cues_changed();
        }
        added
    }

    /// Every rendition's playlists are rendered again, with the cues as they are now.
    fn cues_changed(&self) {
        for r in &self.renditions {
            r.publish(MediaLog::touch);
        }
    }

    /// The date ranges a playlist starting at `from` (and, for a finished broadcast, ending at
    /// `until`) lists.
    pub fn dateranges(&self, from: Option<SystemTime>, until: Option<SystemTime>) -> Vec<String> {
        dateranges(&self.cues.lock(), from, until)
    }

    /// The current run's epoch (what a standby follows), once anchored.
    pub fn epoch(&self) -> Option<EpochInfo> {
        *self.epoch.lock()
    }

    fn set_epoch(&self, epoch: Option<EpochInfo>) {
        *self.epoch.lock() = epoch;
    }

    fn set_track(&self, index: usize, track: TrackInfo) {
        let r = &self.renditions[index];
        let changed = r.track.read().as_ref() != Some(&track);
        if changed {
            *r.track.write() = Some(track);
            *self.master.lock() = None;
            self.tracks.send_modify(|n| *n += 1);
        }
    }

    /// Waits for the multivariant playlist until `deadline`.
    pub async fn wait_master(&self, deadline: tokio::time::Instant) -> Option<Bytes> {
        let mut changes = self.tracks.subscribe();
        loop {
            if let Some(master) = self.master_playlist() {
                return Some(master);
            }
            tokio::select! {
                changed = changes.changed() => changed.ok()?,
                _ = tokio::time::sleep_until(deadline) => return None,
            }
        }
    }

    /// Renders (or reuses) rendition `index`'s media playlist for its current version.
    pub fn media_playlist(&self, index: usize, form: Form) -> Arc<RenderedPlaylist> {
        let r = &self.renditions[index];
        let version = r.log.read().version();
        if let Some(hit) = r
            .cache
            .lock()
            .iter()
            .find(|c| c.version == version && c.form == form)
        {
            return hit.clone();
        }
        // Reports first, one lock at a time: never hold two logs' locks together.
        let reports: Vec<RenditionReport> = self
            .renditions
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != index)
            .filter_map(|(_, other)| RenditionReport::of(&other.name, &other.log.read()))
            .collect();
        let (version, text) = {
            let log = r.log.read();
            let from = log.listed().next().map(|s| s.program_date_time);
            let tags = self.dateranges(from, None);
            (
                log.version(),
                media_playlist(&log, &self.params, &reports, form, &tags),
            )
        };
        let rendered = Arc::new(RenderedPlaylist {
            version,
            form,
            body: Bytes::from(text),
            gzip: OnceLock::new(),
        });
        let mut cache = r.cache.lock();
        cache.retain(|c| c.version == version && c.form != form);
        cache.push(rendered.clone());
        rendered
    }

    /// Waits until `check` on rendition `index`'s log says something other than
    /// [`Verdict::Wait`], or `deadline` passes.
    pub async fn wait_until(
        &self,
        index: usize,
        deadline: tokio::time::Instant,
        mut check: impl FnMut(&MediaLog) -> Verdict,
    ) -> Waited {
        let r = &self.renditions[index];
        // Subscribe before the first check so no publication can slip between them.
        let mut changes = r.changes.subscribe();
        let mut waited = false;
        loop {
            let verdict = check(&r.log.read());
            if verdict != Verdict::Wait {
                let woken_by = waited.then(|| changes.borrow().at);
                return Waited { verdict, woken_by };
            }
            waited = true;
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return Waited { verdict: Verdict::Wait, woken_by: None };
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    return Waited { verdict: Verdict::Wait, woken_by: None };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use corral_transcoder::config::Bitrate;

    use super::*;
    use crate::packager::blocking::{PlaylistDemand, playlist_verdict};
    use crate::packager::log::{InitEntry, PartEntry};

    fn stream() -> Arc<Stream> {
        let spec = RenditionSpec {
            name: "v".into(),
            kind: RenditionKind::Video {
                size: Some((64, 64)),
            },
            bitrate: Some(Bitrate(100_000)),
            output_fd: 3,
        };
        Stream::new("s", "testsrc", LlhlsParams::default(), 30, &[spec])
    }

    fn publish_segment(stream: &Stream, msn: u64) {
        stream.renditions()[0].publish(|log| {
            if msn == 10 {
                log.start_epoch(InitEntry {
                    id: 10,
                    bytes: Bytes::from_static(b"i"),
                });
            }
            for _ in 0..6 {
                let part = PartEntry {
                    duration: 0.3,
                    independent: true,
                    bytes: Bytes::from_static(b"p"),
                };
                log.publish_part(msn, SystemTime::UNIX_EPOCH, part)
                    .expect("in order");
            }
            log.complete_segment(msn);
        });
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_request_times_out_with_wait_after_its_deadline() {
        let s = stream();
        publish_segment(&s, 10);
        let limits = s.limits();
        let started = tokio::time::Instant::now();
        let deadline = started + s.params().blocking_timeout();
        let waited = s
            .wait_until(0, deadline, |log| {
                playlist_verdict(log, PlaylistDemand::Segment(11), limits)
            })
            .await;
        assert_eq!(
            waited,
            Waited {
                verdict: Verdict::Wait,
                woken_by: None
            }
        );
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(6),
            "three target durations"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_request_wakes_on_the_publication_it_waits_for() {
        let s = stream();
        publish_segment(&s, 10);
        let limits = s.limits();
        let publisher = {
            let s = s.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(700)).await;
                publish_segment(&s, 11);
            })
        };
        let started = tokio::time::Instant::now();
        let deadline = started + s.params().blocking_timeout();
        let waited = s
            .wait_until(0, deadline, |log| {
                playlist_verdict(log, PlaylistDemand::Segment(11), limits)
            })
            .await;
        assert_eq!(waited.verdict, Verdict::Ready);
        assert!(waited.woken_by.is_some(), "it had to wait");
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(700),
            "woken by the publication, not a timer"
        );
        publisher.await.expect("published");
        let text = String::from_utf8(s.media_playlist(0, Form::Full).body.to_vec()).expect("utf-8");
        assert!(text.contains("11.m4s"));
    }
    #[test]
    fn a_stream_that_should_advance_and_does_not_is_stalled() {
        let s = stream();
        let part_target = Duration::from_secs_f64(s.params().part_target);
        let now = Instant::now();
        publish_segment(&s, 10);
        let later = |parts: f64| now + part_target.mul_f64(parts);
        // Starting (nothing published yet) and idle streams are not expected to advance.
        assert_eq!(s.stalled(later(10.0)), None);
        for state in [
            Lifecycle::Live,
            Lifecycle::Restarting,
            Lifecycle::Reconnecting,
        ] {
            s.update_status(|st| st.state = state);
            assert_eq!(s.stalled(later(1.0)), None, "{state:?}: a part target late");
            let stalled = s.stalled(later(STALL_PARTS + 1.0)).expect("stalled");
            assert!(stalled > part_target.mul_f64(STALL_PARTS), "{state:?}");
        }
        for state in [Lifecycle::Idle, Lifecycle::Ended, Lifecycle::Starting] {
            s.update_status(|st| st.state = state);
            assert_eq!(s.stalled(later(100.0)), None, "{state:?}");
        }
        // A publication makes a live stream current again.
        s.update_status(|st| st.state = Lifecycle::Live);
        publish_segment(&s, 11);
        assert_eq!(s.stalled(Instant::now()), None);
    }
}
