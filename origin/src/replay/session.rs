//! One broadcast (a *session*) as the archive records it: its segments per rendition and how
//! each one's archive write stands, its state, and the summary written when it is finished.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::Notify;

use super::recorder::Record;

/// Work in flight (archive writes, VODs being written) and a wait for none to be left.
#[derive(Default)]
pub struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

impl InFlight {
    /// One more piece of work started.
    pub fn start(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    /// One piece of work finished.
    pub fn finish(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// Pieces of work in flight.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Waits until none is in flight, or `limit` passes; says whether none is.
    pub async fn idle_within(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.idle.notified();
            if self.count() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.count() == 0;
            }
        }
    }
}

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
    pub(super) inner: Mutex<SessionInner>,
    /// Its archive writes not yet landed or failed for good.
    pub(super) pending: InFlight,
    /// When its playlists so far were last written.
    pub(super) checkpointed: Mutex<std::time::Instant>,
}

pub(super) struct SessionInner {
    pub(super) ended: Option<SystemTime>,
    pub(super) state: SessionState,
    /// Per rendition: records and how their writes stand, in MSN order.
    pub(super) tracks: Vec<Vec<(Record, Stored)>>,
}

impl Session {
    pub(super) fn new(id: String, started: SystemTime, renditions: usize) -> Arc<Session> {
        Arc::new(Session {
            id,
            started,
            inner: Mutex::new(SessionInner {
                ended: None,
                state: SessionState::Live,
                tracks: vec![Vec::new(); renditions],
            }),
            pending: InFlight::default(),
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

    pub(super) fn mark(&self, rendition: usize, msn: u64, stored: bool) {
        let mut inner = self.inner.lock();
        let track = &mut inner.tracks[rendition];
        if let Ok(i) = track.binary_search_by_key(&msn, |(r, _)| r.msn) {
            track[i].1 = if stored {
                Stored::Stored
            } else {
                Stored::Failed
            };
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
