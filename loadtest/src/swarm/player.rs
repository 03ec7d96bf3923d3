//! One simulated LL-HLS player, as a state machine without sockets or timers: it says which
//! requests to send ([`Player::poll`]) and is told what came back ([`Player::on_outcome`]),
//! with the time, so its behaviour is tested with scripted answers.
//!
//! It behaves as a low-latency player does: it loads the multivariant playlist, picks a video
//! variant (and its audio rendition), joins each media playlist an independent part behind
//! the live end, then keeps one blocking reload outstanding for the part after the last listed
//! one (as a delta update when the server offers them) and loads each part as soon as it is
//! listed or hinted. Media loaded fills a [`Playout`] buffer that drains in real time; the
//! lesser of audio and video is what can play. It switches rendition by its [`Selection`],
//! joining the new rendition through its rendition report. Failures are retried after an
//! exponential back-off with jitter, so players never retry in lock-step.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::Uri;

use super::abr::{Selection, Throughput, choose};
use super::playout::Playout;
use super::tally::{Kind, Observation, error_kind};
use super::track::{Fetch, Purpose, Slot, Track, hinted, text, with_query};
use crate::backoff::Backoff;
use crate::client::resolve;
use crate::master::Multivariant;
use crate::playlist::MediaPlaylist;

/// The first retry's back-off; each failure in a row doubles it, up to [`BACKOFF_MAX`].
const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// The longest back-off.
const BACKOFF_MAX: Duration = Duration::from_secs(4);

/// What every player of a run does.
#[derive(Debug, Clone)]
pub struct PlayerPlan {
    /// The multivariant playlist.
    pub master: Uri,
    /// How the rendition is chosen.
    pub selection: Selection,
    /// Whether to load the variant's audio rendition too.
    pub audio: bool,
    /// Whether to ask for delta updates (`_HLS_skip=YES`) when the server offers them.
    pub delta: bool,
    /// Media seconds behind the live end to join at; by default the playlist's
    /// `PART-HOLD-BACK`.
    pub hold_back: Option<f64>,
}

/// A request to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Names the answer given back to [`Player::on_outcome`].
    pub id: u64,
    /// What to GET.
    pub url: Uri,
    /// What it is for.
    pub kind: Kind,
}

impl Request {
    /// Whether to accept a gzip body (playlists; media is not compressed).
    pub fn gzip(&self) -> bool {
        matches!(
            self.kind,
            Kind::Master | Kind::Playlist | Kind::BlockingPlaylist
        )
    }
}

/// What came back.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// An answer, fully read.
    Answer {
        /// Status code.
        status: u16,
        /// The body as sent.
        body: Bytes,
        /// Whether the body is gzip-encoded.
        gzip: bool,
        /// From sending to the last byte.
        elapsed: Duration,
        /// From the headers to the last byte: the transfer itself, without the time a
        /// blocking request or a hinted part was held (throughput is measured on this).
        transfer: Duration,
    },
    /// No answer: the error's message.
    Failed(String),
}

/// One simulated player.
pub struct Player {
    plan: PlayerPlan,
    started: Instant,
    backoff: Backoff,
    master: Option<Multivariant>,
    master_slot: Slot,
    master_failures: u32,
    /// Video variants' URLs and peak bandwidths, lowest first.
    ladder: Vec<(Uri, u64)>,
    current: usize,
    tracks: Vec<Track>,
    next_id: u64,
    in_flight: HashMap<u64, Purpose>,
    playout: Playout,
    throughput: Throughput,
    observations: Vec<Observation>,
    fatal: Option<String>,
}

impl Player {
    /// A player starting at `now`; `seed` varies its jitter from other players'.
    pub fn new(plan: PlayerPlan, now: Instant, seed: u64) -> Self {
        Self {
            plan,
            started: now,
            backoff: Backoff::new(BACKOFF_BASE, BACKOFF_MAX, seed),
            master: None,
            master_slot: Slot::Idle,
            master_failures: 0,
            ladder: Vec::new(),
            current: 0,
            tracks: Vec::new(),
            next_id: 0,
            in_flight: HashMap::new(),
            // Start and resume thresholds are set once a playlist says its part target.
            playout: Playout::new(now, f64::INFINITY, f64::INFINITY),
            throughput: Throughput::default(),
            observations: Vec::new(),
            fatal: None,
        }
    }

    /// The requests to send now, and when to poll again if nothing comes back before then
    /// (a back-off ending).
    pub fn poll(&mut self, now: Instant) -> (Vec<Request>, Option<Instant>) {
        let mut out = Vec::new();
        if self.fatal.is_some() {
            return (out, None);
        }
        if self.master.is_none() {
            if self.master_slot.ready(now) {
                self.master_slot = Slot::InFlight;
                let url = self.plan.master.clone();
                out.push(self.request(url, Kind::Master, Purpose::Master));
            }
        } else {
            for t in 0..self.tracks.len() {
                self.poll_track(t, now, &mut out);
            }
        }
        let mut wake: Option<Instant> = None;
        let slots = self
            .tracks
            .iter()
            .flat_map(|t| [t.reload, t.part, t.init_slot])
            .chain([self.master_slot]);
        for slot in slots {
            if let Slot::After(t) = slot
                && t > now
            {
                wake = Some(wake.map_or(t, |w| w.min(t)));
            }
        }
        (out, wake)
    }

    fn poll_track(&mut self, t: usize, now: Instant, out: &mut Vec<Request>) {
        let track = &self.tracks[t];
        let id = track.id;
        let Some(playlist) = &track.playlist else {
            if track.reload.ready(now) {
                let url = match track.join {
                    Some((m, i)) => with_query(&track.url, &format!("_HLS_msn={m}&_HLS_part={i}")),
                    None => track.url.clone(),
                };
                let kind = if track.join.is_some() {
                    Kind::BlockingPlaylist
                } else {
                    Kind::Playlist
                };
                self.tracks[t].reload = Slot::InFlight;
                let purpose = Purpose::Playlist {
                    track: id,
                    delta: false,
                    blocking: kind == Kind::BlockingPlaylist,
                };
                out.push(self.request(url, kind, purpose));
            }
            return;
        };
        // The init segment of the part to load next.
        let map = track
            .next
            .and_then(|(m, _)| playlist.segments.iter().find(|s| s.msn == m))
            .or(playlist.segments.last())
            .and_then(|s| s.map.clone());
        let init_request = match &map {
            Some(uri) if track.init.as_ref() != Some(uri) && track.init_slot.ready(now) => {
                Some(uri.clone())
            }
            _ => None,
        };
        // The next part, once listed or hinted.
        let part_request = match track.next {
            Some(pos) if track.part.ready(now) => match playlist.part(pos) {
                Some(part) => Some((pos, part.uri.clone(), false)),
                None if hinted(playlist, pos) => {
                    playlist.preload_hint.clone().map(|uri| (pos, uri, true))
                }
                None => None,
            },
            _ => None,
        };
        // The blocking reload for the part after the last listed one.
        let reload_request = if playlist.ended || !track.reload.ready(now) {
            None
        } else if let Slot::After(_) = track.reload {
            Some((track.url.clone(), Kind::Playlist, false))
        } else {
            playlist.last_part().map(|(m, i, _)| {
                let (m, i) = playlist.next_after((m, i));
                let delta = self.plan.delta && playlist.can_skip_until.is_some();
                let skip = if delta { "&_HLS_skip=YES" } else { "" };
                let query = format!("_HLS_msn={m}&_HLS_part={i}{skip}");
                (
                    with_query(&track.url, &query),
                    Kind::BlockingPlaylist,
                    delta,
                )
            })
        };
        let base = track.url.clone();
        if let Some(uri) = init_request {
            match resolve(&base, &uri) {
                Ok(url) => {
                    self.tracks[t].init = Some(uri.clone());
                    self.tracks[t].init_slot = Slot::InFlight;
                    out.push(self.request(url, Kind::Init, Purpose::Init { track: id, uri }));
                }
                Err(_) => self.fail(format!("init URI {uri:?} does not resolve")),
            }
        }
        if let Some((position, uri, hinted)) = part_request {
            match resolve(&base, &uri) {
                Ok(url) => {
                    self.tracks[t].part = Slot::InFlight;
                    let purpose = Purpose::Part {
                        track: id,
                        position,
                        hinted,
                    };
                    out.push(self.request(url, Kind::Part, purpose));
                }
                Err(_) => self.fail(format!("part URI {uri:?} does not resolve")),
            }
        }
        if let Some((url, kind, delta)) = reload_request {
            self.tracks[t].reload = Slot::InFlight;
            let purpose = Purpose::Playlist {
                track: id,
                delta,
                blocking: kind == Kind::BlockingPlaylist,
            };
            out.push(self.request(url, kind, purpose));
        }
    }

    fn request(&mut self, url: Uri, kind: Kind, purpose: Purpose) -> Request {
        let id = self.next_id;
        self.next_id += 1;
        self.in_flight.insert(id, purpose);
        Request { id, url, kind }
    }

    /// Takes the answer (or failure) to request `id`, at `now` (`wall` the same moment by the
    /// wall clock, for lags against program date-times).
    pub fn on_outcome(&mut self, id: u64, outcome: Outcome, now: Instant, wall: SystemTime) {
        let Some(purpose) = self.in_flight.remove(&id) else {
            return;
        };
        let kind = match &purpose {
            Purpose::Master => Kind::Master,
            Purpose::Playlist { blocking: true, .. } => Kind::BlockingPlaylist,
            Purpose::Playlist { .. } => Kind::Playlist,
            Purpose::Init { .. } => Kind::Init,
            Purpose::Part { .. } => Kind::Part,
        };
        let answer = match outcome {
            Outcome::Answer {
                status,
                body,
                gzip,
                elapsed,
                transfer,
            } => {
                self.observations.push(Observation::Answered {
                    kind,
                    status,
                    bytes: body.len(),
                    elapsed,
                });
                if status == 200 {
                    Ok((body, gzip, transfer))
                } else {
                    Err(format!("{}: {status}", kind.name()))
                }
            }
            Outcome::Failed(message) => Err(error_kind(kind, &message)),
        };
        match purpose {
            Purpose::Master => match answer.and_then(|(b, z, _)| text(b, z, kind)) {
                Ok(text) => self.on_master(&text, now),
                Err(e) => self.retry_master(e, now),
            },
            Purpose::Playlist { track, delta, .. } => {
                let Some(t) = self.track_index(track) else {
                    return;
                };
                match answer.and_then(|(b, z, _)| text(b, z, kind)) {
                    Ok(text) => self.on_playlist(t, kind, &text, delta, now, wall),
                    Err(e) => self.retry_reload(t, e, now),
                }
            }
            Purpose::Init { track, uri } => {
                let Some(t) = self.track_index(track) else {
                    return;
                };
                match answer {
                    Ok(_) => self.tracks[t].init_slot = Slot::Idle,
                    Err(e) => {
                        let slot = self.retry(e, 1, now);
                        let track = &mut self.tracks[t];
                        if track.init.as_ref() == Some(&uri) {
                            track.init = None;
                        }
                        track.init_slot = slot;
                    }
                }
            }
            Purpose::Part {
                track,
                position,
                hinted,
            } => {
                let Some(t) = self.track_index(track) else {
                    return;
                };
                match answer {
                    Ok((body, _, transfer)) => {
                        let fetch = Fetch {
                            position,
                            hinted,
                            bytes: body.len(),
                            transfer,
                        };
                        self.on_part(t, fetch, now, wall)
                    }
                    Err(e) => {
                        self.tracks[t].failures += 1;
                        self.tracks[t].part = self.retry(e, self.tracks[t].failures, now);
                    }
                }
            }
        }
    }

    fn on_master(&mut self, text: &str, now: Instant) {
        let master = match Multivariant::parse(text) {
            Ok(m) => m,
            Err(_) => return self.retry_master("master: parse".into(), now),
        };
        let video = master.video_variants();
        let mut ladder = Vec::new();
        for v in &video {
            match resolve(&self.plan.master, &v.uri) {
                Ok(u) => ladder.push((u, v.bandwidth)),
                Err(_) => return self.fail(format!("variant URI {:?} does not resolve", v.uri)),
            }
        }
        let bandwidths: Vec<u64> = ladder.iter().map(|(_, b)| *b).collect();
        self.current = match &self.plan.selection {
            Selection::Fixed(name) => match video.iter().position(|v| v.name() == name) {
                Some(i) => i,
                None => {
                    let names: Vec<&str> = video.iter().map(|v| v.name()).collect();
                    return self.fail(format!(
                        "no rendition {name:?} in the multivariant playlist (it has {})",
                        names.join(", ")
                    ));
                }
            },
            Selection::Trace(trace) => choose(&bandwidths, trace.at(Duration::ZERO)),
            Selection::Measured => 0,
        };
        let audio = self
            .plan
            .audio
            .then(|| master.audio_for(video[self.current]))
            .flatten()
            .and_then(|a| resolve(&self.plan.master, &a.uri).ok());
        self.ladder = ladder;
        let id = self.next_track_id();
        self.tracks
            .push(Track::new(id, true, self.ladder[self.current].0.clone()));
        if let Some(url) = audio {
            let id = self.next_track_id();
            self.tracks.push(Track::new(id, false, url));
        }
        self.master = Some(master);
        self.master_slot = Slot::Idle;
    }

    fn on_playlist(
        &mut self,
        t: usize,
        kind: Kind,
        text: &str,
        delta: bool,
        now: Instant,
        wall: SystemTime,
    ) {
        let parsed = match MediaPlaylist::parse(text) {
            Ok(p) => p,
            Err(_) => return self.retry_reload(t, format!("{}: parse", kind.name()), now),
        };
        let playlist = match (&self.tracks[t].playlist, delta) {
            (Some(previous), true) if parsed.skipped_segments > 0 => {
                match parsed.apply_delta(previous) {
                    Ok(whole) => {
                        self.observations.push(Observation::Delta);
                        whole
                    }
                    Err(_) => {
                        self.observations.push(Observation::DeltaMiss);
                        self.tracks[t].reload = Slot::After(now);
                        return;
                    }
                }
            }
            (_, _) if parsed.skipped_segments > 0 => {
                self.observations.push(Observation::DeltaMiss);
                self.tracks[t].reload = Slot::After(now);
                return;
            }
            _ => parsed,
        };
        let part_target = playlist.part_target.unwrap_or(1.0);
        let hold_back = self
            .plan
            .hold_back
            .or(playlist.part_hold_back)
            .unwrap_or(3.0 * part_target);
        if self.playout.startup_time().is_none() && self.tracks.iter().all(|t| t.end.is_none()) {
            // The player starts once it holds what it joined behind the live end (less one
            // part, which may be short), and resumes after a stall with one part ahead.
            self.playout = Playout::new(
                self.started,
                (hold_back - part_target).max(part_target),
                part_target,
            );
        }
        // Playlist lag of the parts listed for the first time.
        let track = &mut self.tracks[t];
        let mut new_parts = 0;
        // The first playlist of a track only says where it is.
        let following = track.seen.is_some();
        for (pos, end) in playlist.part_end_times() {
            if track.seen.is_some_and(|s| pos <= s) {
                continue;
            }
            if following {
                let lag = wall.duration_since(end).unwrap_or_default();
                self.observations.push(Observation::PlaylistLag(lag));
            }
            new_parts += 1;
            track.seen = Some(pos);
        }
        // Part lag of hinted parts that came before this playlist listed them.
        if !track.unlisted.is_empty() {
            track
                .unlisted
                .retain(|(pos, arrived)| match playlist.part_end(*pos) {
                    Some(end) => {
                        let lag = arrived.duration_since(end).unwrap_or_default();
                        self.observations.push(Observation::PartLag(lag));
                        false
                    }
                    None => true,
                });
        }
        // Where to load from: joining, continuing, or joining again after falling behind.
        let first = playlist.segments.first().map(|s| s.msn);
        let live_start = playlist.live_start(hold_back);
        let last = playlist.last_part().map(|(m, i, _)| (m, i));
        match track.next {
            None => track.next = live_start,
            Some((m, _)) if first.is_some_and(|f| m < f) => {
                self.observations.push(Observation::Resync);
                track.next = live_start;
            }
            // A position this rendition skips (its segment ended with fewer parts): go on
            // from the next part it lists.
            Some(pos)
                if playlist.part(pos).is_none()
                    && !hinted(&playlist, pos)
                    && last.is_some_and(|l| pos < l) =>
            {
                let listed_next = playlist
                    .part_end_times()
                    .into_iter()
                    .map(|(p, _)| p)
                    .find(|p| *p > pos);
                // Asked past a segment's last part before the segment was closed: the next
                // segment's first part follows on; anything else skipped media.
                let follows_on = pos.1 > 0
                    && listed_next.is_some()
                    && listed_next == Some(playlist.next_after((pos.0, pos.1 - 1)));
                if !follows_on {
                    self.observations.push(Observation::Resync);
                }
                track.next = listed_next.or(live_start);
            }
            Some(_) => {}
        }
        track.join = None;
        track.failures = 0;
        // A playlist that brought nothing new (a server that does not hold blocking
        // requests) is reloaded after half a part, not at once.
        track.reload = if new_parts == 0 && track.playlist.is_some() {
            Slot::After(now + Duration::from_secs_f64(part_target / 2.0))
        } else {
            Slot::Idle
        };
        track.playlist = Some(playlist);
    }

    fn on_part(&mut self, t: usize, fetch: Fetch, now: Instant, wall: SystemTime) {
        let track = &mut self.tracks[t];
        let Some(playlist) = &track.playlist else {
            return;
        };
        let listed = playlist.part(fetch.position);
        let duration = listed
            .map(|p| p.duration)
            .or(playlist.part_target)
            .unwrap_or(0.0);
        let end = playlist.part_end(fetch.position);
        if fetch.hinted {
            match end {
                Some(end) => {
                    let lag = wall.duration_since(end).unwrap_or_default();
                    self.observations.push(Observation::PartLag(lag));
                }
                // At most the few parts one reload can lag behind.
                None if track.unlisted.len() < 8 => track.unlisted.push((fetch.position, wall)),
                None => {}
            }
        }
        // Media time: by program date-time where listed, else following on from the last.
        let end = end
            .and_then(|e| e.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|e| e.as_secs_f64())
            .or(track.end.map(|e| e + duration))
            .unwrap_or(duration);
        track.start.get_or_insert(end - duration);
        track.end = Some(end);
        track.next = Some(playlist.next_after(fetch.position));
        track.part = Slot::Idle;
        track.failures = 0;
        track.switched_at = None;
        let video = track.video;
        if video {
            self.throughput.sample(fetch.bytes, fetch.transfer);
        }
        let loaded = self.loaded();
        self.playout.advance(now, loaded);
        if video {
            self.consider_switch(t, now);
        }
    }

    /// Media seconds every track holds from where the latest of them began.
    fn loaded(&self) -> f64 {
        let mut start = f64::NEG_INFINITY;
        let mut end = f64::INFINITY;
        for t in &self.tracks {
            match (t.start, t.end) {
                (Some(s), Some(e)) => {
                    start = start.max(s);
                    end = end.min(e);
                }
                _ => return 0.0,
            }
        }
        (end - start).max(0.0)
    }

    /// Switches the video track `t` when the selection wants another rendition.
    fn consider_switch(&mut self, t: usize, now: Instant) {
        let bandwidths: Vec<u64> = self.ladder.iter().map(|(_, b)| *b).collect();
        let wanted = match &self.plan.selection {
            Selection::Fixed(_) => return,
            Selection::Trace(trace) => choose(&bandwidths, trace.at(now - self.started)),
            Selection::Measured => match self.throughput.estimate() {
                Some(bps) => choose(&bandwidths, bps),
                None => return,
            },
        };
        if wanted == self.current || self.tracks[t].switched_at.is_some() {
            return;
        }
        let old = &self.tracks[t];
        let url = self.ladder[wanted].0.clone();
        let report = old.playlist.as_ref().and_then(|p| {
            p.rendition_reports.iter().find_map(|(uri, msn, part)| {
                let same = resolve(&old.url, uri).ok().is_some_and(|u| u == url);
                same.then_some((*msn, part.unwrap_or(0) as usize))
            })
        });
        let (next, start, end) = (old.next, old.start, old.end);
        let id = self.next_track_id();
        let mut track = Track::new(id, true, url);
        track.next = next;
        track.start = start;
        track.end = end;
        track.join = report;
        track.switched_at = Some(now);
        self.tracks[t] = track;
        self.current = wanted;
        self.observations.push(Observation::Switch);
    }

    fn retry_reload(&mut self, t: usize, error: String, now: Instant) {
        self.tracks[t].failures += 1;
        self.tracks[t].reload = self.retry(error, self.tracks[t].failures, now);
    }

    fn retry_master(&mut self, error: String, now: Instant) {
        self.master_failures += 1;
        self.master_slot = self.retry(error, self.master_failures, now);
    }

    /// Counts a failure, and says when to try again: after the back-off for `failures` in a
    /// row.
    fn retry(&mut self, error: String, failures: u32, now: Instant) -> Slot {
        self.observations.push(Observation::Error(error));
        self.observations.push(Observation::Retry);
        Slot::After(now + self.backoff(failures))
    }

    /// The back-off after `failures` in a row: exponential, capped, jittered.
    fn backoff(&mut self, failures: u32) -> Duration {
        self.backoff.after(failures)
    }

    fn fail(&mut self, reason: String) {
        self.fatal.get_or_insert(reason);
    }

    fn next_track_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn track_index(&self, id: u64) -> Option<usize> {
        self.tracks.iter().position(|t| t.id == id)
    }

    /// Why the player gave up, if it did (a rendition that does not exist, a playlist it
    /// cannot read).
    pub fn fatal(&self) -> Option<&str> {
        self.fatal.as_deref()
    }

    /// Whether every track reached its playlist's end.
    pub fn ended(&self) -> bool {
        !self.tracks.is_empty() && self.tracks.iter().all(Track::ended)
    }

    /// Takes what the player observed since the last call.
    pub fn take_observations(&mut self) -> Vec<Observation> {
        std::mem::take(&mut self.observations)
    }

    /// Stops at `now`: the start-up time (if it played) and every stall.
    pub fn finish(&mut self, now: Instant) -> (Option<Duration>, Vec<Duration>) {
        let stalls = self.playout.finish(now);
        (self.playout.startup_time(), stalls)
    }
}

#[cfg(test)]
#[path = "player_tests.rs"]
mod tests;
