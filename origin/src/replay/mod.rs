//! Replay: every broadcast archived as it is published, a DVR window to pause and seek back
//! in, and a VOD of each broadcast once it ends.
//!
//! ```text
//! renditions' logs ──changes──► recorder task (one per stream) ──puts──► store::Archive (object store)
//!        │                              │ records (per session)                │
//!        ▼                              ▼                                      ▼
//!   /live/…/{msn}.m4s ◄── memory, else archive      /live/…/dvr.m3u8     /vod/{stream}/{session}/…
//! ```
//!
//! A *session* is one broadcast: from the first segment after the stream was idle or ended to
//! the end of the stream. Its ID is its start in UTC (`20261206T070142Z`). The recorder
//! records each complete segment of every rendition and hands it to the archive in the
//! background; when the session ends, and every write has landed or failed for good, the VOD
//! playlists are written next to the media (`{stream}/{session}/master.m3u8`,
//! `{rendition}/index.m3u8`, and `session.json`), with any segment that could not be stored
//! listed as a gap. The DVR playlist lists the session's last `dvr.window` seconds; segments
//! that have left the live log's memory are read back from the archive.

pub mod catalog;
pub mod recorder;
pub mod render;
pub mod session;
pub mod store;
mod vod;
pub mod watchers;

pub use session::{InFlight, Session, SessionState, SessionSummary, Stored, parse_session_id};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::stream::Stream;
use catalog::{Catalog, Metadata};
use recorder::{Action, LogView, Recorder};
use render::{Header, Kind, Listed};
use store::Archive;

/// Replay of one stream.
pub struct StreamReplay {
    stream: Arc<Stream>,
    recorder: Mutex<Recorder>,
    /// The session being recorded, or the last one this process recorded.
    current: Mutex<Option<Arc<Session>>>,
}

impl StreamReplay {
    /// The current (or last) session.
    pub fn current(&self) -> Option<Arc<Session>> {
        self.current.lock().clone()
    }
}

/// Settings of replay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplaySettings {
    /// Seconds the DVR playlist covers; 0 for the whole session.
    pub dvr_window: f64,
    /// How long a finished session waits for its writes before its VOD is written.
    pub finalize_timeout: Duration,
    /// How often a live session's playlists so far are written to the archive, so that a
    /// broadcast cut short by a crash can still be finished as a VOD by the next start.
    pub checkpoint_every: Duration,
}

/// Replay of every stream; see the module documentation.
pub struct Replay {
    archive: Arc<Archive>,
    streams: BTreeMap<String, Arc<StreamReplay>>,
    settings: ReplaySettings,
    catalog: Arc<Catalog>,
    /// When this run started: sessions begun before it and never finished are an earlier
    /// run's.
    started: SystemTime,
    /// VODs being written, so that stopping can wait for them.
    finalizing: InFlight,
}

impl Replay {
    /// Replay of `streams` into `archive`, telling `catalog` of finished broadcasts.
    pub fn new(
        archive: Arc<Archive>,
        streams: &[Arc<Stream>],
        settings: ReplaySettings,
        catalog: Arc<Catalog>,
    ) -> Arc<Replay> {
        Arc::new(Replay {
            archive,
            streams: streams
                .iter()
                .map(|s| {
                    (
                        s.name().to_string(),
                        Arc::new(StreamReplay {
                            stream: s.clone(),
                            recorder: Mutex::new(Recorder::new(s.renditions().len())),
                            current: Mutex::new(None),
                        }),
                    )
                })
                .collect(),
            settings,
            catalog,
            started: SystemTime::now(),
            finalizing: InFlight::default(),
        })
    }

    /// The archive.
    pub fn archive(&self) -> &Arc<Archive> {
        &self.archive
    }

    /// The settings.
    pub fn settings(&self) -> ReplaySettings {
        self.settings
    }

    /// The replay of stream `name`.
    pub fn stream(&self, name: &str) -> Option<&Arc<StreamReplay>> {
        self.streams.get(name)
    }

    /// Starts one recorder task per stream; they stop with `stop`.
    pub fn start(self: &Arc<Self>, stop: CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
        self.streams
            .values()
            .map(|s| tokio::spawn(self.clone().record(s.clone(), stop.clone())))
            .collect()
    }

    async fn record(self: Arc<Self>, sr: Arc<StreamReplay>, stop: CancellationToken) {
        let mut changes: Vec<_> = sr
            .stream
            .renditions()
            .iter()
            .map(|r| r.subscribe())
            .collect();
        loop {
            self.observe(&sr);
            let any =
                futures_util::future::select_all(changes.iter_mut().map(|c| Box::pin(c.changed())));
            tokio::select! {
                (changed, _, _) = any => if changed.is_err() { return },
                _ = stop.cancelled() => {
                    // What was published last (the final segments) is recorded too.
                    self.observe(&sr);
                    return;
                }
            }
        }
    }

    /// Records what the stream's logs have published since the last look.
    fn observe(self: &Arc<Self>, sr: &Arc<StreamReplay>) {
        let actions = {
            let mut recorder = sr.recorder.lock();
            let views: Vec<LogView> = sr
                .stream
                .renditions()
                .iter()
                .enumerate()
                .map(|(i, r)| r.with_log(|log| LogView::of(log, recorder.through(i))))
                .collect();
            recorder.observe(&views)
        };
        for action in actions {
            self.apply(sr, action);
        }
    }

    fn apply(self: &Arc<Self>, sr: &Arc<StreamReplay>, action: Action) {
        let stream = sr.stream.name();
        match action {
            Action::Begin { id, started } => {
                tracing::info!(%stream, session = %id, archive = %self.archive.location(), "recording a new session");
                let session = Session::new(id, started, sr.stream.renditions().len());
                *sr.current.lock() = Some(session);
            }
            Action::PutInit {
                rendition,
                id,
                bytes,
            } => {
                let Some(session) = sr.current() else { return };
                let name = sr.stream.renditions()[rendition].name();
                let key = format!("{stream}/{}/{name}/init-{id}.mp4", session.id);
                session.pending.start();
                let s = session.clone();
                self.archive
                    .put(key, vec![bytes], move |_| s.pending.finish());
            }
            Action::Segment {
                rendition,
                record,
                chunks,
            } => {
                let Some(session) = sr.current() else { return };
                let msn = record.msn;
                let gap = record.gap;
                session.inner.lock().tracks[rendition]
                    .push((record, if gap { Stored::Gap } else { Stored::Pending }));
                if gap {
                    return;
                }
                let name = sr.stream.renditions()[rendition].name();
                let key = format!("{stream}/{}/{name}/{msn}.m4s", session.id);
                session.pending.start();
                let s = session.clone();
                self.archive.put(key, chunks, move |stored| {
                    s.mark(rendition, msn, stored);
                    s.pending.finish();
                });
                self.checkpoint(sr, &session);
            }
            Action::End => {
                let Some(session) = sr.current() else { return };
                {
                    let mut inner = session.inner.lock();
                    inner.ended = Some(SystemTime::now());
                    inner.state = SessionState::Ended;
                }
                tracing::info!(%stream, session = %session.id, "session ended; writing its VOD once its media is archived");
                self.finalizing.start();
                let this = self.clone();
                let sr = sr.clone();
                tokio::spawn(async move {
                    this.finalize(&sr, &session).await;
                    this.finalizing.finish();
                });
            }
        }
    }

    /// Keeps `jpeg` as the current session's thumbnail (the VOD's poster is the last one).
    pub fn keep_thumbnail(&self, stream: &str, jpeg: Bytes) {
        let Some(session) = self.streams.get(stream).and_then(|s| s.current()) else {
            return;
        };
        if session.state() != SessionState::Live {
            return;
        }
        let key = format!("{stream}/{}/thumbnail.jpg", session.id);
        self.archive.put(key, vec![jpeg], |_| {});
    }

    /// Stores the metadata of `stream` (removes it for `None`); whether it was stored.
    pub async fn save_metadata(&self, stream: &str, meta: Option<&Metadata>) -> bool {
        let key = format!("{stream}/meta.json");
        match meta {
            Some(m) => {
                let json = serde_json::to_vec_pretty(m).unwrap_or_default();
                self.archive.put_now(&key, Bytes::from(json)).await
            }
            None => self.archive.delete_all(&key).await.is_ok(),
        }
    }

    /// Waits until no session is being finalized, or `limit` passes.
    pub async fn drain(&self, limit: Duration) {
        if !self.finalizing.idle_within(limit).await {
            tracing::warn!("stopping before every finished session's VOD was written");
        }
    }

    /// The DVR playlist of rendition `index` of `stream`: the current session's last
    /// `dvr.window` seconds. `None` before the stream's first session.
    pub fn dvr_playlist(&self, stream: &str, index: usize, start: Option<f64>) -> Option<String> {
        let sr = self.streams.get(stream)?;
        let session = sr.current()?;
        let first_in_memory = sr.stream.renditions()[index].with_log(|log| log.first_msn());
        let inner = session.inner.lock();
        let track = &inner.tracks[index];
        let (from, dsn) = render::window(track, self.settings.dvr_window, |(r, _)| r);
        let listed: Vec<Listed<'_>> = track[from..]
            .iter()
            .map(|(record, stored)| Listed {
                record,
                // Gone from memory and not archived: nothing can serve it.
                missing: *stored == Stored::Failed
                    && first_in_memory.is_none_or(|f| record.msn < f),
            })
            .collect();
        let kind = if self.settings.dvr_window <= 0.0 {
            Kind::Event
        } else {
            Kind::Window
        };
        let from = listed.first().map(|l| l.record.program_date_time);
        let header = Header {
            target_duration: sr.stream.params().target_duration(),
            discontinuity_sequence: dsn,
            start,
            ended: inner.state != SessionState::Live,
            tags: sr.stream.dateranges(from, None),
        };
        Some(render::segment_playlist(kind, &header, &listed))
    }

    /// Segment `msn` of rendition `index` of `stream` from the archive, for a request the
    /// live log can no longer answer. `Ok(None)`: no session has it archived.
    pub async fn archived_segment(
        &self,
        stream: &str,
        index: usize,
        msn: u64,
    ) -> Result<Option<Bytes>, object_store::Error> {
        let Some(sr) = self.streams.get(stream) else {
            return Ok(None);
        };
        let Some(session) = sr.current() else {
            return Ok(None);
        };
        if session.stored(index, msn) != Some(Stored::Stored) {
            return Ok(None);
        }
        let name = sr.stream.renditions()[index].name();
        self.archive
            .get(&format!("{stream}/{}/{name}/{msn}.m4s", session.id))
            .await
    }

    /// Init segment `id` of rendition `index` of `stream` from the archive.
    pub async fn archived_init(
        &self,
        stream: &str,
        index: usize,
        id: u64,
    ) -> Result<Option<Bytes>, object_store::Error> {
        let Some(sr) = self.streams.get(stream) else {
            return Ok(None);
        };
        let Some(session) = sr.current() else {
            return Ok(None);
        };
        let name = sr.stream.renditions()[index].name();
        self.archive
            .get(&format!("{stream}/{}/{name}/init-{id}.mp4", session.id))
            .await
    }
}

#[cfg(test)]
mod tests;
