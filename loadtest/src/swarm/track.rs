//! The player's bookkeeping for one media playlist it follows (a [`Track`]): what it holds,
//! what it has in flight and when it may ask again, and the small helpers its requests need.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::Uri;

use super::tally::Kind;
use crate::playlist::MediaPlaylist;

/// A request's slot: free, in flight, or waiting out a back-off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Slot {
    Idle,
    InFlight,
    /// Try again (for a playlist: a whole reload) at this time.
    After(Instant),
}

impl Slot {
    pub(super) fn ready(self, now: Instant) -> bool {
        match self {
            Slot::Idle => true,
            Slot::InFlight => false,
            Slot::After(t) => t <= now,
        }
    }
}

/// What a request in flight was for.
#[derive(Debug, Clone)]
pub(super) enum Purpose {
    Master,
    Playlist {
        track: u64,
        delta: bool,
        blocking: bool,
    },
    Init {
        track: u64,
        uri: String,
    },
    Part {
        track: u64,
        position: (u64, usize),
        /// Requested before it was listed (the preload hint): the live edge.
        hinted: bool,
    },
}

/// One media playlist being followed.
#[derive(Debug, Clone)]
pub(super) struct Track {
    /// Tells this track's answers from those of a track it replaced.
    pub(super) id: u64,
    pub(super) video: bool,
    pub(super) url: Uri,
    pub(super) playlist: Option<MediaPlaylist>,
    /// Join through a blocking request for this position (a rendition report's).
    pub(super) join: Option<(u64, usize)>,
    /// The next part to load.
    pub(super) next: Option<(u64, usize)>,
    /// Media time (seconds since the epoch, by program date-time) where loading began.
    pub(super) start: Option<f64>,
    /// Media time where what is loaded ends.
    pub(super) end: Option<f64>,
    /// The init segment loaded or in flight.
    pub(super) init: Option<String>,
    pub(super) init_slot: Slot,
    pub(super) reload: Slot,
    pub(super) part: Slot,
    pub(super) failures: u32,
    /// The last part a playlist listed, for playlist lag.
    pub(super) seen: Option<(u64, usize)>,
    /// When this track was switched to, until its first part.
    pub(super) switched_at: Option<Instant>,
    /// Hinted parts that arrived before a playlist listed them (so their media's end is not
    /// known yet), with the arrival's wall time.
    pub(super) unlisted: Vec<((u64, usize), SystemTime)>,
}

impl Track {
    pub(super) fn new(id: u64, video: bool, url: Uri) -> Self {
        Self {
            id,
            video,
            url,
            playlist: None,
            join: None,
            next: None,
            start: None,
            end: None,
            init: None,
            init_slot: Slot::Idle,
            reload: Slot::Idle,
            part: Slot::Idle,
            failures: 0,
            seen: None,
            switched_at: None,
            unlisted: Vec::new(),
        }
    }

    pub(super) fn ended(&self) -> bool {
        self.playlist.as_ref().is_some_and(|p| {
            p.ended
                && self
                    .next
                    .is_none_or(|n| p.part(n).is_none() && !hinted(p, n))
        })
    }
}

/// A part that came.
pub(super) struct Fetch {
    pub(super) position: (u64, usize),
    pub(super) hinted: bool,
    pub(super) bytes: usize,
    pub(super) transfer: Duration,
}

/// Whether `position` is the playlist's preload hint.
pub(super) fn hinted(p: &MediaPlaylist, position: (u64, usize)) -> bool {
    p.preload_hint
        .as_deref()
        .and_then(MediaPlaylist::part_position)
        .is_some_and(|(m, i)| (m, i as usize) == position)
}

/// The body as text, gunzipped when it came compressed.
pub(super) fn text(body: Bytes, gzip: bool, kind: Kind) -> Result<String, String> {
    let bytes = if gzip {
        crate::gunzip(&body).map_err(|_| format!("{}: bad gzip", kind.name()))?
    } else {
        body.to_vec()
    };
    String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8", kind.name()))
}

/// `url` with `query` in place of its query.
pub(super) fn with_query(url: &Uri, query: &str) -> Uri {
    let text = format!(
        "{}://{}{}?{query}",
        url.scheme_str().unwrap_or("http"),
        url.authority().map_or("", |a| a.as_str()),
        url.path()
    );
    text.parse().unwrap_or_else(|_| url.clone())
}
