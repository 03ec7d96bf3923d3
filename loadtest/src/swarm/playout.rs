//! The simulated playout buffer of one player: media arrives in parts, playback drains it in
//! real time, and a player whose buffer runs dry stalls until it holds enough to go on. Pure:
//! every call takes the time, so stalls are computed exactly (when the buffer ran dry, not when
//! the next part was noticed) and tested without sleeping.

use std::time::{Duration, Instant};

/// Where playback is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Not started: waiting for the start-up buffer.
    Starting,
    /// Playing: at `at` the playhead was at `position` seconds of media.
    Playing { at: Instant, position: f64 },
    /// Stalled since `since`, the playhead at `position`.
    Stalled { since: Instant, position: f64 },
}

/// One player's buffer.
#[derive(Debug, Clone)]
pub struct Playout {
    created: Instant,
    /// Media seconds needed to start playing.
    startup: f64,
    /// Media seconds ahead of the playhead needed to resume after a stall.
    resume: f64,
    state: State,
    /// Media seconds held from where the player joined.
    loaded: f64,
    startup_time: Option<Duration>,
    stalls: Vec<Duration>,
}

impl Playout {
    /// A player created at `now` that starts once it holds `startup` seconds and resumes from
    /// a stall once it holds `resume` seconds ahead.
    pub fn new(now: Instant, startup: f64, resume: f64) -> Self {
        Self {
            created: now,
            startup,
            resume,
            state: State::Starting,
            loaded: 0.0,
            startup_time: None,
            stalls: Vec::new(),
        }
    }

    /// Moves playback to `now`, when the player holds `loaded` seconds of media from where it
    /// joined (for a player with audio and video, the lesser of the two). Call it on every
    /// arrival: what was held before it drains first, so a buffer that ran dry before a late
    /// part came stalls from the moment it ran dry.
    pub fn advance(&mut self, now: Instant, loaded: f64) {
        if let State::Playing { at, position } = self.state {
            let ahead = self.loaded - position;
            if now.saturating_duration_since(at).as_secs_f64() >= ahead {
                self.state = State::Stalled {
                    since: at + Duration::from_secs_f64(ahead.max(0.0)),
                    position: self.loaded,
                };
            }
        }
        self.loaded = self.loaded.max(loaded);
        match self.state {
            State::Starting if self.loaded >= self.startup => {
                self.startup_time = Some(now.saturating_duration_since(self.created));
                self.state = State::Playing {
                    at: now,
                    position: 0.0,
                };
            }
            State::Stalled { since, position } if self.loaded - position >= self.resume => {
                self.stalls.push(now.saturating_duration_since(since));
                self.state = State::Playing { at: now, position };
            }
            _ => {}
        }
    }

    /// Seconds of media buffered ahead of the playhead at `now` (0 when not playing).
    pub fn ahead(&self, now: Instant) -> f64 {
        match self.state {
            State::Playing { at, position } => {
                (self.loaded - position - now.saturating_duration_since(at).as_secs_f64()).max(0.0)
            }
            _ => 0.0,
        }
    }

    /// How long start-up took, once playing.
    pub fn startup_time(&self) -> Option<Duration> {
        self.startup_time
    }

    /// Stalls that ended, with their lengths.
    pub fn stalls(&self) -> &[Duration] {
        &self.stalls
    }

    /// The stall in progress at `now`, if any, and how long it has lasted.
    pub fn stalled_for(&self, now: Instant) -> Option<Duration> {
        match self.state {
            State::Stalled { since, .. } => Some(now.saturating_duration_since(since)),
            _ => None,
        }
    }

    /// Ends the run at `now`: a stall in progress then is counted with its length so far.
    /// Returns every stall.
    pub fn finish(&mut self, now: Instant) -> Vec<Duration> {
        self.advance(now, self.loaded);
        if let Some(open) = self.stalled_for(now) {
            self.stalls.push(open);
            self.state = State::Starting;
        }
        std::mem::take(&mut self.stalls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, s: f64) -> Instant {
        t0 + Duration::from_secs_f64(s)
    }

    #[test]
    fn playback_starts_with_the_startup_buffer_and_drains_in_real_time() {
        let t0 = Instant::now();
        let mut p = Playout::new(t0, 1.0, 0.3);
        p.advance(at(t0, 0.2), 0.6);
        assert_eq!(p.startup_time(), None, "0.6 s is not enough to start");
        p.advance(at(t0, 0.4), 1.0);
        assert_eq!(p.startup_time(), Some(Duration::from_millis(400)));
        assert!((p.ahead(at(t0, 0.9)) - 0.5).abs() < 1e-9);
        // A part every 0.33 s of 0.33 s of media keeps the buffer level: no stall.
        let mut loaded = 1.0;
        for i in 1..=30 {
            loaded += 0.33;
            p.advance(at(t0, 0.4 + 0.33 * f64::from(i)), loaded);
        }
        assert!(p.finish(at(t0, 10.3)).is_empty());
    }

    #[test]
    fn a_dry_buffer_stalls_from_the_moment_it_ran_dry_until_it_can_resume() {
        let t0 = Instant::now();
        let mut p = Playout::new(t0, 1.0, 0.3);
        p.advance(t0, 1.0);
        // The next part comes only at 3 s: the buffer ran dry at 1.0 s.
        p.advance(at(t0, 3.0), 1.2);
        assert_eq!(p.stalled_for(at(t0, 3.0)), Some(Duration::from_secs(2)));
        // 0.25 s ahead is not enough to resume; 0.4 s is.
        p.advance(at(t0, 3.5), 1.25);
        assert!(p.stalled_for(at(t0, 3.5)).is_some());
        p.advance(at(t0, 4.0), 1.4);
        assert_eq!(p.stalls(), [Duration::from_secs(3)]);
        assert!(p.finish(at(t0, 4.1)).len() == 1);
    }

    #[test]
    fn a_stall_still_open_at_the_end_is_counted() {
        let t0 = Instant::now();
        let mut p = Playout::new(t0, 0.5, 0.3);
        p.advance(t0, 0.5);
        p.advance(at(t0, 2.0), 0.5);
        assert_eq!(p.finish(at(t0, 2.0)), [Duration::from_millis(1500)]);
    }

    #[test]
    fn a_player_that_never_starts_has_no_stall_and_no_startup_time() {
        let t0 = Instant::now();
        let mut p = Playout::new(t0, 1.0, 0.3);
        p.advance(at(t0, 5.0), 0.0);
        assert_eq!(p.startup_time(), None);
        assert!(p.finish(at(t0, 5.0)).is_empty());
    }
}
