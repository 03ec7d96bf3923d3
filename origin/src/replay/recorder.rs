//! Tells which segments make up each broadcast (a *session*) and what the archive must store,
//! from what the renditions' publication logs show.
//!
//! Pure code: [`Recorder::observe`] takes a snapshot of every rendition's log and answers with
//! [`Action`]s. A session begins with the first complete segment of a log session
//! ([`MediaLog::session`]) and ends when every rendition's log has ended it (or moved on to
//! the next one). Each complete segment is recorded once, in MSN order per rendition, with the
//! init segment it needs stored before it.

use std::collections::BTreeSet;
use std::time::SystemTime;

use bytes::Bytes;

use crate::packager::log::MediaLog;

/// One segment of a session.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Media sequence number.
    pub msn: u64,
    /// Program date-time of its first sample.
    pub program_date_time: SystemTime,
    /// Seconds.
    pub duration: f64,
    /// Whether a discontinuity precedes it within the session.
    pub discontinuity: bool,
    /// ID of its init segment.
    pub init: u64,
    /// Whether it is a gap (nothing stored).
    pub gap: bool,
}

/// One complete segment of a log, as the recorder needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct SeenSegment {
    /// What the log says of it (its `discontinuity` is the log's, before the session's
    /// first segment is told apart).
    pub record: Record,
    /// The log session it belongs to (0: between sessions).
    pub session: u64,
    /// Its parts' bytes, in order (none for a gap).
    pub chunks: Vec<Bytes>,
}

/// What the recorder reads of one rendition's log.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogView {
    /// The log's current session.
    pub session: u64,
    /// Whether the log ended (its current session is over).
    pub ended: bool,
    /// Complete segments after the last one already recorded, oldest first.
    pub segments: Vec<SeenSegment>,
    /// The init segments those segments use: ID and bytes.
    pub inits: Vec<(u64, Bytes)>,
}

impl LogView {
    /// Reads the complete segments of `log` with an MSN above `after`.
    pub fn of(log: &MediaLog, after: Option<u64>) -> LogView {
        let segments: Vec<SeenSegment> = log
            .segments()
            .filter(|s| s.complete && after.is_none_or(|a| s.msn > a))
            .map(|s| SeenSegment {
                record: Record {
                    msn: s.msn,
                    program_date_time: s.program_date_time,
                    duration: s.duration,
                    discontinuity: s.discontinuity,
                    init: s.init,
                    gap: s.gap,
                },
                session: s.session,
                chunks: s.chunks().cloned().collect(),
            })
            .collect();
        let ids: BTreeSet<u64> = segments.iter().map(|s| s.record.init).collect();
        let inits = ids
            .into_iter()
            .filter_map(|id| log.init(id).map(|i| (id, i.bytes.clone())))
            .collect();
        LogView {
            session: log.session(),
            ended: log.ended(),
            segments,
            inits,
        }
    }
}

/// What to do about what the logs show, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A session begins; `id` names it in URLs (`/vod/{stream}/{id}/`).
    Begin {
        /// The session's ID, from its first segment's date: `20261206T070142Z`.
        id: String,
        /// Its first segment's program date-time.
        started: SystemTime,
    },
    /// Store an init segment of a rendition.
    PutInit {
        /// Rendition index.
        rendition: usize,
        /// Init ID.
        id: u64,
        /// `ftyp` + `moov`.
        bytes: Bytes,
    },
    /// Record a segment (and store it, unless it is a gap).
    Segment {
        /// Rendition index.
        rendition: usize,
        /// What the playlists list.
        record: Record,
        /// Its bytes (empty for a gap).
        chunks: Vec<Bytes>,
    },
    /// The session ended: every rendition's log ended it.
    End,
}

/// The current session's progress.
#[derive(Debug)]
struct Open {
    log_session: u64,
    /// Init IDs already stored, per rendition.
    inits: Vec<BTreeSet<u64>>,
    /// Whether a rendition has recorded a segment yet (its first one has no discontinuity).
    started: Vec<bool>,
}

/// Follows the logs of one stream's renditions; see the module documentation.
#[derive(Debug)]
pub struct Recorder {
    /// The last MSN looked at, per rendition.
    through: Vec<Option<u64>>,
    open: Option<Open>,
    /// The newest log session begun.
    newest: u64,
}

/// A session's ID from its start: the UTC date and time, `YYYYMMDDTHHMMSSZ`.
pub fn session_id(started: SystemTime) -> String {
    humantime::format_rfc3339_seconds(started)
        .to_string()
        .replace(['-', ':'], "")
}

impl Recorder {
    /// A recorder for `renditions` renditions.
    pub fn new(renditions: usize) -> Self {
        Self {
            through: vec![None; renditions],
            open: None,
            newest: 0,
        }
    }

    /// The last MSN looked at in rendition `index`: read the log after it.
    pub fn through(&self, index: usize) -> Option<u64> {
        self.through[index]
    }

    /// Whether a session is being recorded.
    pub fn recording(&self) -> bool {
        self.open.is_some()
    }

    /// What the logs' new segments mean; `views` holds one view per rendition.
    pub fn observe(&mut self, views: &[LogView]) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut next: Vec<usize> = vec![0; views.len()];
        loop {
            if let Some(open) = &mut self.open {
                let log_session = open.log_session;
                for (index, view) in views.iter().enumerate() {
                    while let Some(seen) = view.segments.get(next[index]) {
                        if seen.session > log_session {
                            break;
                        }
                        next[index] += 1;
                        self.through[index] = Some(seen.record.msn);
                        if seen.session < log_session {
                            continue;
                        }
                        let init = seen.record.init;
                        if !open.inits[index].contains(&init)
                            && let Some((_, bytes)) = view.inits.iter().find(|(id, _)| *id == init)
                        {
                            open.inits[index].insert(init);
                            actions.push(Action::PutInit {
                                rendition: index,
                                id: init,
                                bytes: bytes.clone(),
                            });
                        }
                        // The session's first segment follows nothing in it.
                        let mut record = seen.record.clone();
                        record.discontinuity &= open.started[index];
                        open.started[index] = true;
                        actions.push(Action::Segment {
                            rendition: index,
                            record,
                            chunks: seen.chunks.clone(),
                        });
                    }
                }
                let over = views.iter().enumerate().all(|(index, v)| {
                    let moved_on = v.session > log_session
                        || v.segments[next[index]..]
                            .iter()
                            .any(|s| s.session > log_session);
                    (v.session == log_session && v.ended) || moved_on
                });
                if !over {
                    return actions;
                }
                actions.push(Action::End);
                self.open = None;
            }
            // The next session begins with the first complete segment of a newer log session.
            let newest = self.newest;
            let first = views
                .iter()
                .enumerate()
                .filter_map(|(index, v)| {
                    v.segments[next[index]..]
                        .iter()
                        .find(|s| s.session > newest)
                })
                .min_by_key(|s| (s.session, s.record.msn));
            let Some(first) = first else {
                // Skip what belongs to no session (gaps between broadcasts, old ones).
                for (index, v) in views.iter().enumerate() {
                    if let Some(last) = v.segments.last() {
                        self.through[index] = Some(last.record.msn);
                    }
                }
                return actions;
            };
            let log_session = first.session;
            actions.push(Action::Begin {
                id: session_id(first.record.program_date_time),
                started: first.record.program_date_time,
            });
            self.newest = log_session;
            self.open = Some(Open {
                log_session,
                inits: vec![BTreeSet::new(); views.len()],
                started: vec![false; views.len()],
            });
        }
    }
}
