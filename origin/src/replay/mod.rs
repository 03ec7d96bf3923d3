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
pub mod store;
pub mod watchers;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::stream::Stream;
use catalog::{Catalog, EventKind, Metadata};
use recorder::{Action, LogView, Record, Recorder};
use render::{Header, Kind, Listed};
use store::Archive;

/// How a recorded segment's archive write stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Being written.
    Pending,
    /// In the archive.
    Stored,
    /// Not archived: every attempt failed, or the write was refused.
    Failed,
    /// A gap: nothing to store.
    Gap,
}

/// Where a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    /// Being broadcast.
    Live,
    /// Over; its VOD is being written.
    Ended,
    /// Its VOD is in the archive.
    Archived,
    /// Its VOD could not be written.
    Failed,
}

/// One broadcast of a stream.
pub struct Session {
    /// Its ID in URLs.
    pub id: String,
    /// Its first segment's program date-time.
    pub started: SystemTime,
    inner: Mutex<SessionInner>,
    pending: AtomicUsize,
    settled: Notify,
    /// When its playlists so far were last written.
    checkpointed: Mutex<std::time::Instant>,
}

struct SessionInner {
    ended: Option<SystemTime>,
    state: SessionState,
    /// Per rendition: records and how their writes stand, in MSN order.
    tracks: Vec<Vec<(Record, Stored)>>,
    /// Segments that could not be archived, all renditions.
    missing: usize,
}

impl Session {
    fn new(id: String, started: SystemTime, renditions: usize) -> Arc<Session> {
        Arc::new(Session {
            id,
            started,
            inner: Mutex::new(SessionInner {
                ended: None,
                state: SessionState::Live,
                tracks: vec![Vec::new(); renditions],
                missing: 0,
            }),
            pending: AtomicUsize::new(0),
            settled: Notify::new(),
            checkpointed: Mutex::new(std::time::Instant::now()),
        })
    }

    /// The session's state.
    pub fn state(&self) -> SessionState {
        self.inner.lock().state
    }

    /// When it ended.
    pub fn ended(&self) -> Option<SystemTime> {
        self.inner.lock().ended
    }

    /// Segments (all renditions) whose media is not archived.
    pub fn missing(&self) -> usize {
        self.inner.lock().missing
    }

    fn add_pending(&self) {
        self.pending.fetch_add(1, Ordering::AcqRel);
    }

    fn settle_one(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.settled.notify_waiters();
        }
    }

    fn mark(&self, rendition: usize, msn: u64, stored: bool) {
        let mut inner = self.inner.lock();
        let track = &mut inner.tracks[rendition];
        if let Ok(i) = track.binary_search_by_key(&msn, |(r, _)| r.msn) {
            track[i].1 = if stored {
                Stored::Stored
            } else {
                Stored::Failed
            };
        }
        if !stored {
            inner.missing += 1;
        }
    }

    /// How the write of segment `msn` of `rendition` stands, if the session has it.
    pub fn stored(&self, rendition: usize, msn: u64) -> Option<Stored> {
        let inner = self.inner.lock();
        let track = inner.tracks.get(rendition)?;
        track
            .binary_search_by_key(&msn, |(r, _)| r.msn)
            .ok()
            .map(|i| track[i].1)
    }

    /// Whether the session holds segment `msn` of some rendition's timeline: between its
    /// first and last MSN.
    fn spans(&self, msn: u64) -> bool {
        let inner = self.inner.lock();
        inner.tracks.iter().any(|t| {
            matches!((t.first(), t.last()), (Some(a), Some(b)) if a.0.msn <= msn && msn <= b.0.msn)
        })
    }

    /// Waits until no write is pending, or `limit` passes; says whether all settled.
    async fn settled(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.settled.notified();
            if self.pending.load(Ordering::Acquire) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.pending.load(Ordering::Acquire) == 0;
            }
        }
    }
}

/// Each rendition's playlist of a whole session: a VOD (`Kind::Vod`) once it ended, or its
/// checkpoint so far (`Kind::Event`); with its duration and the segments listed as gaps
/// because their media is not archived (yet, for a checkpoint).
fn session_playlists(
    sr: &StreamReplay,
    session: &Session,
    kind: Kind,
) -> (Vec<String>, f64, usize) {
    let target = sr.stream.params().target_duration();
    let tags = sr.stream.dateranges(Some(session.started), session.ended());
    let inner = session.inner.lock();
    let mut missing = 0;
    let playlists = inner
        .tracks
        .iter()
        .map(|track| {
            let listed: Vec<Listed<'_>> = track
                .iter()
                .map(|(record, stored)| {
                    let lost = match kind {
                        Kind::Vod => matches!(stored, Stored::Failed | Stored::Pending),
                        _ => *stored == Stored::Failed,
                    };
                    missing += usize::from(lost);
                    Listed {
                        record,
                        missing: lost,
                    }
                })
                .collect();
            let header = Header {
                target_duration: target,
                tags: tags.clone(),
                ..Header::default()
            };
            render::segment_playlist(kind, &header, &listed)
        })
        .collect();
    let duration = inner
        .tracks
        .first()
        .map_or(0.0, |t| t.iter().map(|(r, _)| r.duration).sum());
    (playlists, duration, missing)
}

/// What `session.json` says of a finished broadcast.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SessionSummary {
    /// The stream.
    pub stream: String,
    /// The session's ID.
    pub session: String,
    /// The stream's title when it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Its description then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `archived` or `incomplete`.
    pub state: String,
    /// Its start (RFC 3339).
    pub started: String,
    /// Its end (RFC 3339).
    pub ended: String,
    /// Seconds of media.
    pub duration: f64,
    /// The renditions' names.
    pub renditions: Vec<String>,
    /// Segments listed as gaps because they could not be archived (all renditions).
    pub missing_segments: usize,
    /// The VOD's multivariant playlist.
    pub master: String,
    /// Its thumbnail, if one was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<String>,
}

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
    /// Finalizations in flight, so that stopping can wait for them.
    finalizing: Arc<AtomicUsize>,
    finalized: Arc<Notify>,
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
            finalizing: Arc::new(AtomicUsize::new(0)),
            finalized: Arc::new(Notify::new()),
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
                session.add_pending();
                let s = session.clone();
                self.archive.put(key, vec![bytes], move |stored| {
                    if !stored {
                        s.inner.lock().missing += 1;
                    }
                    s.settle_one();
                });
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
                session.add_pending();
                let s = session.clone();
                self.archive.put(key, chunks, move |stored| {
                    s.mark(rendition, msn, stored);
                    s.settle_one();
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
                self.finalizing.fetch_add(1, Ordering::AcqRel);
                let this = self.clone();
                let sr = sr.clone();
                tokio::spawn(async move {
                    this.finalize(&sr, &session).await;
                    if this.finalizing.fetch_sub(1, Ordering::AcqRel) == 1 {
                        this.finalized.notify_waiters();
                    }
                });
            }
        }
    }

    /// Writes the live session's playlists so far (EVENT playlists, no end), when
    /// `checkpoint_every` has passed since the last time. Counted as pending writes, so the
    /// VOD written at the end always lands after them.
    fn checkpoint(&self, sr: &StreamReplay, session: &Arc<Session>) {
        {
            let mut last = session.checkpointed.lock();
            if last.elapsed() < self.settings.checkpoint_every
                || session.state() != SessionState::Live
            {
                return;
            }
            *last = std::time::Instant::now();
        }
        let stream = sr.stream.name();
        let (playlists, _, _) = session_playlists(sr, session, Kind::Event);
        let mut objects: Vec<(String, Bytes)> = sr
            .stream
            .renditions()
            .iter()
            .zip(playlists)
            .map(|(r, text)| {
                (
                    format!("{stream}/{}/{}/index.m3u8", session.id, r.name()),
                    Bytes::from(text),
                )
            })
            .collect();
        if let Some(master) = sr.stream.master_playlist() {
            objects.push((format!("{stream}/{}/master.m3u8", session.id), master));
        }
        for (key, bytes) in objects {
            session.add_pending();
            let s = session.clone();
            self.archive.put(key, vec![bytes], move |_| s.settle_one());
        }
    }

    /// Finishes, as a VOD, a session an earlier run of the origin was recording when it
    /// stopped without ending it (a crash): its last checkpoint becomes the VOD.
    async fn recover(&self, sr: &StreamReplay, id: &str) -> Option<SessionSummary> {
        let stream = sr.stream.name();
        let base = format!("{stream}/{id}");
        let mut names = Vec::new();
        let mut duration = None;
        let mut last_end = None;
        for r in sr.stream.renditions() {
            let key = format!("{base}/{}/index.m3u8", r.name());
            let Ok(Some(bytes)) = self.archive.get(&key).await else {
                continue;
            };
            let vod = finish_checkpoint(&String::from_utf8_lossy(&bytes));
            if duration.is_none() {
                duration = Some(playlist_duration(&vod));
                last_end = playlist_end(&vod);
            }
            if !self.archive.put_now(&key, Bytes::from(vod)).await {
                return None;
            }
            names.push(r.name().to_string());
        }
        let Some(duration) = duration else {
            tracing::warn!(%stream, session = %id, "a session left unfinished by an earlier run has no checkpoint; its media stays in the archive without playlists");
            return None;
        };
        let started = parse_session_id(id)?;
        let meta = self.catalog.metadata(stream).unwrap_or_default();
        let thumbnail = self.archive.get(&format!("{base}/thumbnail.jpg")).await;
        let summary = SessionSummary {
            stream: stream.to_string(),
            session: id.to_string(),
            title: meta.title,
            description: meta.description,
            state: "recovered".to_string(),
            started: humantime::format_rfc3339_millis(started).to_string(),
            ended: humantime::format_rfc3339_millis(last_end.unwrap_or(started)).to_string(),
            duration,
            renditions: names,
            missing_segments: 0,
            master: format!("/vod/{base}/master.m3u8"),
            thumbnail: matches!(thumbnail, Ok(Some(_)))
                .then(|| format!("/vod/{base}/thumbnail.jpg")),
        };
        let json = serde_json::to_vec_pretty(&summary).unwrap_or_default();
        if !self
            .archive
            .put_now(&format!("{base}/session.json"), Bytes::from(json))
            .await
        {
            return None;
        }
        self.archive
            .metrics()
            .sessions
            .with_label_values(&["recovered"])
            .inc();
        tracing::warn!(%stream, session = %id, duration_s = duration, "a session an earlier run left unfinished (a crash) is finished as a VOD from its last checkpoint");
        Some(summary)
    }

    /// Writes a finished session's VOD playlists and summary.
    async fn finalize(&self, sr: &StreamReplay, session: &Session) {
        let stream = sr.stream.name();
        if !session.settled(self.settings.finalize_timeout).await {
            tracing::error!(%stream, session = %session.id, pending = session.pending.load(Ordering::Acquire), "archive writes still pending after archive.finalize_timeout; they are listed as gaps");
        }
        let names: Vec<String> = sr
            .stream
            .renditions()
            .iter()
            .map(|r| r.name().to_string())
            .collect();
        let (playlists, duration, missing) = session_playlists(sr, session, Kind::Vod);
        let base = format!("{stream}/{}", session.id);
        let mut ok = true;
        for (name, text) in names.iter().zip(playlists) {
            ok &= self
                .archive
                .put_now(&format!("{base}/{name}/index.m3u8"), Bytes::from(text))
                .await;
        }
        match sr.stream.master_playlist() {
            Some(master) => {
                ok &= self
                    .archive
                    .put_now(&format!("{base}/master.m3u8"), master)
                    .await;
            }
            None => ok = false,
        }
        let ended = session.ended().unwrap_or_else(SystemTime::now);
        let meta = self.catalog.metadata(stream).unwrap_or_default();
        let thumbnail = self.archive.get(&format!("{base}/thumbnail.jpg")).await;
        let summary = SessionSummary {
            stream: stream.to_string(),
            session: session.id.clone(),
            title: meta.title,
            description: meta.description,
            state: if missing == 0 {
                "archived"
            } else {
                "incomplete"
            }
            .to_string(),
            started: humantime::format_rfc3339_millis(session.started).to_string(),
            ended: humantime::format_rfc3339_millis(ended).to_string(),
            duration,
            renditions: names,
            missing_segments: missing,
            master: format!("/vod/{base}/master.m3u8"),
            thumbnail: matches!(thumbnail, Ok(Some(_)))
                .then(|| format!("/vod/{base}/thumbnail.jpg")),
        };
        let json = serde_json::to_vec_pretty(&summary).unwrap_or_default();
        ok &= self
            .archive
            .put_now(&format!("{base}/session.json"), Bytes::from(json))
            .await;
        let result = match (ok, missing) {
            (false, _) => "failed",
            (true, 0) => "archived",
            (true, _) => "incomplete",
        };
        self.archive
            .metrics()
            .sessions
            .with_label_values(&[result])
            .inc();
        session.inner.lock().state = if ok {
            SessionState::Archived
        } else {
            SessionState::Failed
        };
        if ok {
            tracing::info!(%stream, session = %session.id, duration_s = duration, missing, vod = %summary.master, "session archived");
            let master = summary.master.clone();
            self.catalog.add_past(summary);
            self.catalog
                .emit(EventKind::Archived, stream, Some(&session.id), master);
        } else {
            tracing::error!(%stream, session = %session.id, "the session's VOD playlists could not be written to the archive");
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
        let this = self.archive.clone();
        this.put(key, vec![jpeg], |_| {});
    }

    /// Reads what the archive holds of earlier runs: past broadcasts and streams' metadata.
    pub async fn load(&self) {
        for name in self.streams.keys() {
            match self.archive.get(&format!("{name}/meta.json")).await {
                Ok(Some(bytes)) => match serde_json::from_slice::<Metadata>(&bytes) {
                    Ok(meta) => self.catalog.set_metadata(name, Some(meta)),
                    Err(e) => {
                        tracing::warn!(stream = %name, error = %e, "unreadable meta.json in the archive")
                    }
                },
                Ok(None) => {}
                Err(e) => tracing::warn!(stream = %name, error = %e, "cannot read the archive"),
            }
            let sessions = match self.archive.list_dirs(name).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(stream = %name, error = %e, "cannot list the archive");
                    continue;
                }
            };
            let sr = &self.streams[name];
            for id in sessions {
                match self.archive.get(&format!("{name}/{id}/session.json")).await {
                    Ok(Some(bytes)) => match serde_json::from_slice::<SessionSummary>(&bytes) {
                        Ok(summary) => self.catalog.add_past(summary),
                        Err(e) => {
                            tracing::warn!(stream = %name, session = %id, error = %e, "unreadable session.json")
                        }
                    },
                    // Begun before this run started, never finished: an earlier run crashed.
                    Ok(None)
                        if parse_session_id(&id)
                            .is_some_and(|t| t + Duration::from_secs(1) < self.started) =>
                    {
                        if let Some(summary) = self.recover(sr, &id).await {
                            let master = summary.master.clone();
                            self.catalog.add_past(summary);
                            self.catalog
                                .emit(EventKind::Archived, name, Some(&id), master);
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(stream = %name, session = %id, error = %e, "cannot read the archive")
                    }
                }
            }
        }
        tracing::info!(
            past = self.catalog.past().len(),
            "past broadcasts read from the archive"
        );
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

    /// Deletes a past broadcast from the archive and the catalog; whether it existed.
    pub async fn delete_session(
        &self,
        stream: &str,
        session: &str,
    ) -> Result<bool, object_store::Error> {
        if self
            .streams
            .get(stream)
            .and_then(|s| s.current())
            .is_some_and(|s| {
                s.id == session
                    && s.state() != SessionState::Archived
                    && s.state() != SessionState::Failed
            })
        {
            return Ok(false);
        }
        let removed = self
            .archive
            .delete_all(&format!("{stream}/{session}/"))
            .await?;
        let listed = self.catalog.remove_past(stream, session);
        Ok(removed > 0 || listed)
    }

    /// Waits until no session is being finalized, or `limit` passes.
    pub async fn drain(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.finalized.notified();
            if self.finalizing.load(Ordering::Acquire) == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                tracing::warn!("stopping before every finished session's VOD was written");
                return;
            }
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
        let Some(session) = sr.current().filter(|s| s.spans(msn)) else {
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

    /// An object of a finished broadcast: `file` under `/vod/{stream}/{session}/`.
    pub async fn vod_object(
        &self,
        stream: &str,
        session: &str,
        file: &str,
    ) -> Result<Option<Bytes>, object_store::Error> {
        self.archive
            .get(&format!("{stream}/{session}/{file}"))
            .await
    }
}

/// A session's start from its ID (`20261206T070142Z`).
pub fn parse_session_id(id: &str) -> Option<SystemTime> {
    let b = id.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' || !id.is_ascii() {
        return None;
    }
    let text = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &id[0..4],
        &id[4..6],
        &id[6..8],
        &id[9..11],
        &id[11..13],
        &id[13..15]
    );
    humantime::parse_rfc3339(&text).ok()
}

/// A checkpoint (an EVENT playlist) made into the VOD it would have become.
pub fn finish_checkpoint(text: &str) -> String {
    let mut vod = text.replace("#EXT-X-PLAYLIST-TYPE:EVENT\n", "#EXT-X-PLAYLIST-TYPE:VOD\n");
    if !vod.ends_with("#EXT-X-ENDLIST\n") {
        vod.push_str("#EXT-X-ENDLIST\n");
    }
    vod
}

/// The sum of a playlist's `EXTINF` durations.
fn playlist_duration(text: &str) -> f64 {
    text.lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .filter_map(|d| d.split(',').next()?.parse::<f64>().ok())
        .sum()
}

/// When a playlist's last segment ends: its program date-time plus its duration.
fn playlist_end(text: &str) -> Option<SystemTime> {
    let mut last = None;
    let mut at = None;
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            at = humantime::parse_rfc3339(t).ok();
        } else if let Some(d) = line.strip_prefix("#EXTINF:")
            && let (Some(t), Some(d)) =
                (at, d.split(',').next().and_then(|d| d.parse::<f64>().ok()))
        {
            last = Some(t + Duration::from_secs_f64(d.max(0.0)));
        }
    }
    last
}

#[cfg(test)]
mod tests;
