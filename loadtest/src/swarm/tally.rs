//! What the viewer swarm counts, and how the counts of many players and several worker
//! processes add up. Pure: players emit [`Observation`]s, a process keeps one [`SwarmTally`]
//! for all its players, and the parent merges the workers' tallies.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::latency::{Latency, LatencyQuantiles};

/// Distinct error kinds kept; the rest count under `other`.
const MAX_ERROR_KINDS: usize = 32;

/// What a request was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The multivariant playlist.
    Master,
    /// A media playlist without blocking directives (joining, switching, re-synchronising).
    Playlist,
    /// A blocking reload (`_HLS_msn`/`_HLS_part`), with or without `_HLS_skip`.
    BlockingPlaylist,
    /// An init segment.
    Init,
    /// A partial segment.
    Part,
}

impl Kind {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Master => "master",
            Kind::Playlist => "playlist",
            Kind::BlockingPlaylist => "blocking_playlist",
            Kind::Init => "init",
            Kind::Part => "part",
        }
    }
}

/// Something one player saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// A request of `kind` was answered `status` with `bytes` of body after `elapsed`.
    Answered {
        /// What it was for.
        kind: Kind,
        /// The status code.
        status: u16,
        /// Body bytes.
        bytes: usize,
        /// From sending to the last byte.
        elapsed: Duration,
    },
    /// Something failed: `kind` says what, as a short stable phrase (`part: 503`,
    /// `blocking_playlist: timeout`).
    Error(String),
    /// A part's last byte arrived this long after its media ended (by program date-time).
    PartLag(Duration),
    /// A playlist listed a new part this long after its media ended.
    PlaylistLag(Duration),
    /// The player switched rendition.
    Switch,
    /// A delta update was applied.
    Delta,
    /// A delta update could not be applied; the player reloaded the whole playlist.
    DeltaMiss,
    /// The player fell out of the playlist's window and joined the live end again.
    Resync,
    /// A failed request will be tried again after a back-off.
    Retry,
}

/// The counts of one request kind.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KindTally {
    /// Requests answered (any status).
    pub requests: u64,
    /// Body bytes received.
    pub bytes: u64,
    /// Answers by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Time to the last byte, every answer.
    pub latency_us: Latency,
}

/// Everything one process (or, merged, a whole run) counted.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SwarmTally {
    /// Players started.
    pub players: u64,
    /// Players that started playing.
    pub players_playing: u64,
    /// Players that stalled at least once.
    pub players_stalled: u64,
    /// Requests by kind.
    pub kinds: BTreeMap<Kind, KindTally>,
    /// Failures by kind.
    pub errors: BTreeMap<String, u64>,
    /// From a player's start to its playback's start.
    pub startup_us: Latency,
    /// The length of every stall.
    pub stall_us: Latency,
    /// Part lag: media end to the part's last byte.
    pub part_lag_us: Latency,
    /// Playlist lag: media end to the playlist listing the part.
    pub playlist_lag_us: Latency,
    /// Rendition switches.
    pub switches: u64,
    /// Delta updates applied.
    pub delta_updates: u64,
    /// Delta updates that needed a whole reload.
    pub delta_misses: u64,
    /// Joins of the live end after falling behind the window.
    pub resyncs: u64,
    /// Requests tried again.
    pub retries: u64,
}

impl SwarmTally {
    /// Counts one observation.
    pub fn observe(&mut self, o: &Observation) {
        match o {
            Observation::Answered {
                kind,
                status,
                bytes,
                elapsed,
            } => {
                let k = self.kinds.entry(*kind).or_default();
                k.requests += 1;
                k.bytes += *bytes as u64;
                *k.statuses.entry(*status).or_default() += 1;
                k.latency_us.record_duration(*elapsed);
            }
            Observation::Error(kind) => count_kind(&mut self.errors, kind, 1),
            Observation::PartLag(d) => self.part_lag_us.record_duration(*d),
            Observation::PlaylistLag(d) => self.playlist_lag_us.record_duration(*d),
            Observation::Switch => self.switches += 1,
            Observation::Delta => self.delta_updates += 1,
            Observation::DeltaMiss => self.delta_misses += 1,
            Observation::Resync => self.resyncs += 1,
            Observation::Retry => self.retries += 1,
        }
    }

    /// Counts a player that ended: its start-up time (if it played) and its stalls.
    pub fn player_ended(&mut self, startup: Option<Duration>, stalls: &[Duration]) {
        if let Some(s) = startup {
            self.players_playing += 1;
            self.startup_us.record_duration(s);
        }
        if !stalls.is_empty() {
            self.players_stalled += 1;
        }
        for s in stalls {
            self.stall_us.record_duration(*s);
        }
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &SwarmTally) {
        self.players += other.players;
        self.players_playing += other.players_playing;
        self.players_stalled += other.players_stalled;
        for (kind, t) in &other.kinds {
            let k = self.kinds.entry(*kind).or_default();
            k.requests += t.requests;
            k.bytes += t.bytes;
            for (s, n) in &t.statuses {
                *k.statuses.entry(*s).or_default() += n;
            }
            k.latency_us.merge(&t.latency_us);
        }
        for (e, n) in &other.errors {
            count_kind(&mut self.errors, e, *n);
        }
        self.startup_us.merge(&other.startup_us);
        self.stall_us.merge(&other.stall_us);
        self.part_lag_us.merge(&other.part_lag_us);
        self.playlist_lag_us.merge(&other.playlist_lag_us);
        self.switches += other.switches;
        self.delta_updates += other.delta_updates;
        self.delta_misses += other.delta_misses;
        self.resyncs += other.resyncs;
        self.retries += other.retries;
    }

    /// Requests answered, every kind.
    pub fn requests(&self) -> u64 {
        self.kinds.values().map(|k| k.requests).sum()
    }

    /// Body bytes received, every kind.
    pub fn bytes(&self) -> u64 {
        self.kinds.values().map(|k| k.bytes).sum()
    }

    /// Failures, every kind.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The live counters shown while running.
    pub fn progress(&self) -> Progress {
        Progress {
            players: self.players,
            requests: self.requests(),
            bytes: self.bytes(),
            errors: self.error_count(),
            stalls: self.stall_us.quantiles().count,
        }
    }
}

/// The counters a progress line shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Players started.
    pub players: u64,
    /// Requests answered.
    pub requests: u64,
    /// Body bytes received.
    pub bytes: u64,
    /// Failures.
    pub errors: u64,
    /// Stalls ended (players still running count theirs when they end).
    pub stalls: u64,
}

impl Progress {
    /// Adds another process's counters.
    pub fn add(&mut self, other: &Progress) {
        self.players += other.players;
        self.requests += other.requests;
        self.bytes += other.bytes;
        self.errors += other.errors;
        self.stalls += other.stalls;
    }
}

/// One kind's line in a report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KindSummary {
    /// Requests answered.
    pub requests: u64,
    /// Requests per second.
    pub per_second: f64,
    /// Body bytes.
    pub bytes: u64,
    /// Answers by status.
    pub statuses: BTreeMap<u16, u64>,
    /// Time to the last byte, microseconds.
    pub latency_us: LatencyQuantiles,
}

impl KindTally {
    /// The summary over `seconds`.
    pub fn summary(&self, seconds: f64) -> KindSummary {
        KindSummary {
            requests: self.requests,
            per_second: per_second(self.requests, seconds),
            bytes: self.bytes,
            statuses: self.statuses.clone(),
            latency_us: self.latency_us.quantiles(),
        }
    }
}

/// `n` over `seconds`, 0 for no time.
pub fn per_second(n: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n as f64 / seconds
    } else {
        0.0
    }
}

/// Classifies a failed fetch for the error table: the request kind and a short reason, never
/// a whole message with addresses or URLs in it (those would make every error its own kind).
///
/// ```
/// # use corral_loadtest::swarm::tally::{Kind, error_kind};
/// assert_eq!(error_kind(Kind::Part, "http://h/x: no answer within 10s"), "part: timeout");
/// assert_eq!(error_kind(Kind::Master, "client error (Connect): Connection refused"), "master: connect");
/// assert_eq!(error_kind(Kind::Part, "connection reset by peer"), "part: reset");
/// ```
pub fn error_kind(kind: Kind, message: &str) -> String {
    let m = message.to_ascii_lowercase();
    let reason = if m.contains("no answer within") {
        "timeout"
    } else if m.contains("connect") && !m.contains("reset") {
        "connect"
    } else if m.contains("reset") || m.contains("closed") || m.contains("incomplete") {
        "reset"
    } else {
        "other"
    };
    format!("{}: {reason}", kind.name())
}

/// Counts `n` of `kind`, keeping at most [`MAX_ERROR_KINDS`] distinct kinds.
fn count_kind(counts: &mut BTreeMap<String, u64>, kind: &str, n: u64) {
    let key = if counts.contains_key(kind) || counts.len() < MAX_ERROR_KINDS {
        kind
    } else {
        "other"
    };
    *counts.entry(key.to_string()).or_default() += n;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(kind: Kind, status: u16, ms: u64) -> Observation {
        Observation::Answered {
            kind,
            status,
            bytes: 1000,
            elapsed: Duration::from_millis(ms),
        }
    }

    #[test]
    fn merged_tallies_equal_one_tally_of_everything() {
        let a_obs = [
            answered(Kind::Part, 200, 10),
            answered(Kind::BlockingPlaylist, 503, 1000),
            Observation::Error("blocking_playlist: 503".into()),
            Observation::Switch,
        ];
        let b_obs = [
            answered(Kind::Part, 200, 30),
            Observation::Delta,
            Observation::PartLag(Duration::from_millis(400)),
        ];
        let (mut a, mut b, mut all) = Default::default();
        for o in &a_obs {
            SwarmTally::observe(&mut a, o);
            SwarmTally::observe(&mut all, o);
        }
        for o in &b_obs {
            SwarmTally::observe(&mut b, o);
            SwarmTally::observe(&mut all, o);
        }
        a.player_ended(Some(Duration::from_millis(900)), &[]);
        b.player_ended(None, &[Duration::from_secs(2)]);
        all.player_ended(Some(Duration::from_millis(900)), &[]);
        all.player_ended(None, &[Duration::from_secs(2)]);
        // Through JSON, as from a worker process.
        let b: SwarmTally =
            serde_json::from_str(&serde_json::to_string(&b).expect("serializes")).expect("reads");
        let mut merged = SwarmTally::default();
        merged.merge(&a);
        merged.merge(&b);
        let json = |t: &SwarmTally| serde_json::to_value(t).expect("serializes");
        assert_eq!(json(&merged), json(&all));
        assert_eq!(merged.requests(), 3);
        assert_eq!(merged.kinds[&Kind::Part].latency_us.quantiles().count, 2);
        assert_eq!(merged.kinds[&Kind::BlockingPlaylist].statuses[&503], 1);
        assert_eq!((merged.players_playing, merged.players_stalled), (1, 1));
        assert_eq!((merged.switches, merged.delta_updates), (1, 1));
    }

    #[test]
    fn error_kinds_are_bounded() {
        let mut t = SwarmTally::default();
        for i in 0..100 {
            t.observe(&Observation::Error(format!("kind {i}")));
        }
        assert_eq!(t.errors.len(), MAX_ERROR_KINDS + 1);
        assert_eq!(t.errors["other"], 100 - MAX_ERROR_KINDS as u64);
        assert_eq!(t.error_count(), 100);
    }
}
