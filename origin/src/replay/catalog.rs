//! The catalog: what is live, what is coming and what can be replayed, for a site's home page
//! and its notifications.
//!
//! - Metadata per stream (title, description, scheduled start), set by the operator with the
//!   admin token, kept in the archive (`{stream}/meta.json`) so it survives restarts.
//! - A thumbnail per live stream, grabbed from its newest segment every 10 s.
//! - The viewers now, as the chat relay counts them (every page open on the stream is in its
//!   room), polled every 5 s.
//! - Past broadcasts, read from the archive's `session.json` files at start and added as each
//!   broadcast is archived.
//! - Lifecycle events (PENDING, LIVE, ENDED, ARCHIVED) for `/api/events` (server-sent
//!   events), the last [`RECENT_EVENTS`] kept so that a client that reconnects with
//!   `Last-Event-ID` misses none.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::SessionSummary;

/// Events kept for clients that reconnect.
pub const RECENT_EVENTS: usize = 256;

/// Longest title, in characters.
pub const MAX_TITLE: usize = 200;
/// Longest description, in characters.
pub const MAX_DESCRIPTION: usize = 2000;

/// What the operator says of a stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// The title viewers see.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// A longer description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// When the broadcast is planned to start (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled: Option<String>,
}

/// A change of metadata: absent fields stay, `null` clears.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataPatch {
    /// The stream, for a `POST /api/streams`.
    #[serde(default)]
    pub name: Option<String>,
    /// New title.
    #[serde(default, with = "patch")]
    pub title: Option<Option<String>>,
    /// New description.
    #[serde(default, with = "patch")]
    pub description: Option<Option<String>>,
    /// New scheduled start.
    #[serde(default, with = "patch")]
    pub scheduled: Option<Option<String>>,
}

/// `Option<Option<T>>` for PATCH bodies: absent is `None`, `null` is `Some(None)`.
mod patch {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

impl MetadataPatch {
    /// Checks sizes and formats; the reason when it is refused.
    pub fn validate(&self) -> Result<(), String> {
        let check = |field: &str, value: &Option<Option<String>>, max: usize| match value {
            Some(Some(v)) if v.chars().count() > max => {
                Err(format!("{field} is longer than {max} characters"))
            }
            Some(Some(v)) if v.chars().any(char::is_control) && field == "title" => {
                Err("title has control characters".to_string())
            }
            _ => Ok(()),
        };
        check("title", &self.title, MAX_TITLE)?;
        check("description", &self.description, MAX_DESCRIPTION)?;
        if let Some(Some(at)) = &self.scheduled
            && humantime::parse_rfc3339_weak(at).is_err()
        {
            return Err(format!(
                "scheduled must be an RFC 3339 date, got {:?}",
                at.chars().take(40).collect::<String>()
            ));
        }
        Ok(())
    }

    /// Applies the change to `meta`.
    pub fn apply(self, meta: &mut Metadata) {
        if let Some(v) = self.title {
            meta.title = v;
        }
        if let Some(v) = self.description {
            meta.description = v;
        }
        if let Some(v) = self.scheduled {
            meta.scheduled = v;
        }
    }
}

/// A lifecycle event's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EventKind {
    /// A broadcast is announced (metadata set) or its publisher is connecting.
    Pending,
    /// A broadcast went live.
    Live,
    /// A broadcast ended.
    Ended,
    /// A broadcast's VOD is ready.
    Archived,
}

impl EventKind {
    /// The SSE event name.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Pending => "PENDING",
            EventKind::Live => "LIVE",
            EventKind::Ended => "ENDED",
            EventKind::Archived => "ARCHIVED",
        }
    }
}

/// One lifecycle event.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Increases by one per event for this origin's lifetime.
    pub id: u64,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// The stream.
    pub stream: String,
    /// The broadcast, once known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The stream's title then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Where to watch: the live or the VOD playlist.
    pub url: String,
    /// When (RFC 3339).
    pub at: String,
}

impl Event {
    /// The event as one server-sent event.
    pub fn sse(&self) -> Bytes {
        let data = serde_json::to_string(self).unwrap_or_default();
        Bytes::from(format!(
            "id: {}\nevent: {}\ndata: {data}\n\n",
            self.id,
            self.kind.name()
        ))
    }
}

/// The catalog; see the module documentation.
pub struct Catalog {
    meta: Mutex<BTreeMap<String, Metadata>>,
    thumbnails: Mutex<BTreeMap<String, (Bytes, SystemTime)>>,
    viewers: Mutex<BTreeMap<String, u64>>,
    past: Mutex<Vec<SessionSummary>>,
    events: broadcast::Sender<Arc<Event>>,
    recent: Mutex<VecDeque<Arc<Event>>>,
    next_id: AtomicU64,
}

impl Default for Catalog {
    fn default() -> Self {
        Self {
            meta: Mutex::new(BTreeMap::new()),
            thumbnails: Mutex::new(BTreeMap::new()),
            viewers: Mutex::new(BTreeMap::new()),
            past: Mutex::new(Vec::new()),
            events: broadcast::channel(RECENT_EVENTS).0,
            recent: Mutex::new(VecDeque::with_capacity(RECENT_EVENTS)),
            next_id: AtomicU64::new(1),
        }
    }
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Arc<Catalog> {
        Arc::new(Catalog::default())
    }

    /// The metadata of `stream`.
    pub fn metadata(&self, stream: &str) -> Option<Metadata> {
        self.meta.lock().get(stream).cloned()
    }

    /// Sets the metadata of `stream` (`None` removes it).
    pub fn set_metadata(&self, stream: &str, meta: Option<Metadata>) {
        let mut all = self.meta.lock();
        match meta {
            Some(m) => all.insert(stream.to_string(), m),
            None => all.remove(stream),
        };
    }

    /// The title of `stream`, if set.
    pub fn title(&self, stream: &str) -> Option<String> {
        self.meta.lock().get(stream).and_then(|m| m.title.clone())
    }

    /// The newest thumbnail of `stream` and when it was taken.
    pub fn thumbnail(&self, stream: &str) -> Option<(Bytes, SystemTime)> {
        self.thumbnails.lock().get(stream).cloned()
    }

    /// Keeps `jpeg` as the newest thumbnail of `stream`.
    pub fn set_thumbnail(&self, stream: &str, jpeg: Bytes) {
        self.thumbnails
            .lock()
            .insert(stream.to_string(), (jpeg, SystemTime::now()));
    }

    /// The viewers of `stream` now, if known.
    pub fn viewers(&self, stream: &str) -> Option<u64> {
        self.viewers.lock().get(stream).copied()
    }

    /// Sets the viewers of `stream`.
    pub fn set_viewers(&self, stream: &str, viewers: Option<u64>) {
        let mut all = self.viewers.lock();
        match viewers {
            Some(v) => all.insert(stream.to_string(), v),
            None => all.remove(stream),
        };
    }

    /// Past broadcasts, as archived.
    pub fn past(&self) -> Vec<SessionSummary> {
        self.past.lock().clone()
    }

    /// Adds (or replaces) a past broadcast.
    pub fn add_past(&self, summary: SessionSummary) {
        let mut past = self.past.lock();
        past.retain(|p| !(p.stream == summary.stream && p.session == summary.session));
        past.push(summary);
    }

    /// Removes a past broadcast; whether it was there.
    pub fn remove_past(&self, stream: &str, session: &str) -> bool {
        let mut past = self.past.lock();
        let before = past.len();
        past.retain(|p| !(p.stream == stream && p.session == session));
        past.len() != before
    }

    /// Publishes an event.
    pub fn emit(&self, kind: EventKind, stream: &str, session: Option<&str>, url: String) {
        let event = Arc::new(Event {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            kind,
            stream: stream.to_string(),
            session: session.map(str::to_string),
            title: self.title(stream),
            url,
            at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        });
        tracing::info!(event = kind.name(), %stream, session = session.unwrap_or(""), "lifecycle event");
        {
            let mut recent = self.recent.lock();
            if recent.len() == RECENT_EVENTS {
                recent.pop_front();
            }
            recent.push_back(event.clone());
        }
        let _ = self.events.send(event);
    }

    /// A receiver of new events, and the kept ones after `last_id` (oldest first), taken
    /// together so that none is missed or seen twice.
    pub fn subscribe(
        &self,
        last_id: Option<u64>,
    ) -> (broadcast::Receiver<Arc<Event>>, Vec<Arc<Event>>) {
        let recent = self.recent.lock();
        let rx = self.events.subscribe();
        let missed = match last_id {
            Some(id) => recent.iter().filter(|e| e.id > id).cloned().collect(),
            None => Vec::new(),
        };
        (rx, missed)
    }
}

/// How often the chat relay is asked for viewer counts.
pub const VIEWERS_EVERY: Duration = Duration::from_secs(5);
/// How often a live stream's thumbnail is grabbed.
pub const THUMBNAIL_EVERY: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_changes_what_it_names_and_clears_what_is_null() {
        let mut meta = Metadata {
            title: Some("Final".into()),
            description: Some("d".into()),
            scheduled: None,
        };
        let patch: MetadataPatch =
            serde_json::from_str(r#"{"description": null, "scheduled": "2026-12-06T20:00:00Z"}"#)
                .expect("valid");
        patch.validate().expect("valid");
        patch.apply(&mut meta);
        assert_eq!(meta.title.as_deref(), Some("Final"));
        assert_eq!(meta.description, None);
        assert_eq!(meta.scheduled.as_deref(), Some("2026-12-06T20:00:00Z"));
    }

    #[test]
    fn bad_metadata_is_refused_with_a_reason() {
        let long = format!(r#"{{"title": "{}"}}"#, "x".repeat(201));
        let p: MetadataPatch = serde_json::from_str(&long).expect("json");
        assert!(p.validate().expect_err("long").contains("200"));
        let p: MetadataPatch = serde_json::from_str(r#"{"scheduled": "tomorrow"}"#).expect("json");
        assert!(p.validate().expect_err("date").contains("RFC 3339"));
        assert!(serde_json::from_str::<MetadataPatch>(r#"{"colour": 1}"#).is_err());
    }

    #[test]
    fn a_client_that_reconnects_gets_the_events_it_missed_once() {
        let c = Catalog::new();
        c.emit(EventKind::Pending, "a", None, "/live/a/master.m3u8".into());
        c.emit(EventKind::Live, "a", None, "/live/a/master.m3u8".into());
        let (mut rx, missed) = c.subscribe(Some(1));
        assert_eq!(missed.iter().map(|e| e.id).collect::<Vec<_>>(), [2]);
        c.emit(
            EventKind::Ended,
            "a",
            Some("20261206T070142Z"),
            "/vod/a".into(),
        );
        let next = rx.try_recv().expect("live event");
        assert_eq!((next.id, next.kind), (3, EventKind::Ended));
        let text = String::from_utf8(next.sse().to_vec()).expect("utf-8");
        assert!(text.starts_with("id: 3\nevent: ENDED\ndata: {"), "{text}");
        assert!(text.ends_with("}\n\n"));
    }
}
