//! Keeps the video going when a starved broadcaster's video stops but its audio does not.
//!
//! An encoder short of upload bandwidth (OBS's frame dropping, for one) sheds video frames
//! and keeps audio; over SRT, a congested link's too-late drops hit the video, which is most
//! of the bytes, far more often than the audio. Without video frames, ffmpeg has nothing to
//! duplicate and every video rendition stops while the audio rendition runs on, so players on
//! a video rendition stall. Degrade, never stop: while video is missing and audio still
//! arrives, the last keyframe is handed out again, stamped with the audio's clock, so the
//! transcoder keeps every video rendition advancing on a frozen picture. When video returns,
//! it waits for a real keyframe (later frames would reference pictures the decoder no longer
//! holds).
//!
//! [`Starvation`] is the timing decision, shared by both protocols; [`flv`] applies it to RTMP's
//! FLV tags and [`ts`] to SRT's transport stream. Pure code: the caller passes the time.

pub mod flv;
pub mod ts;

use std::time::{Duration, Instant};

pub use flv::StarvationGuard;
pub use ts::TsFreezer;

/// How long video may be missing, while audio flows, before the picture is frozen. A network
/// stall delays audio and video alike and never looks like this; only video being shed does.
pub const STARVED_AFTER: Duration = Duration::from_millis(400);

/// Audio counts as flowing while its last frame is younger than this. Longer than
/// [`STARVED_AFTER`]: transport stream muxers carry several audio frames in one PES, a few
/// hundred milliseconds apart (ffmpeg's, at 128 kbit/s, about every 180 ms).
pub const AUDIO_FLOWING_WITHIN: Duration = Duration::from_secs(1);

/// What a guard's `tick` decided; `T` is the freeze frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tick<T> {
    /// Nothing to do.
    Idle,
    /// Video just went missing: a freeze frame to send, and the start of an episode.
    Starved(T),
    /// Video is still missing: another freeze frame to send.
    Frozen(T),
}

impl<T> Tick<T> {
    /// The same decision about another form of the freeze frame.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Tick<U> {
        match self {
            Tick::Idle => Tick::Idle,
            Tick::Starved(t) => Tick::Starved(f(t)),
            Tick::Frozen(t) => Tick::Frozen(f(t)),
        }
    }
}

/// When video is starved, and when it may flow again. Timestamps are the protocol's own media
/// clock (FLV milliseconds, MPEG-TS 90 kHz ticks unwrapped), never decreasing across a wrap.
#[derive(Debug)]
pub struct Starvation {
    /// Timestamp units per second.
    rate: u64,
    last_video: Option<Instant>,
    last_audio: Option<(Instant, u64)>,
    /// While frozen: the timestamp of the last freeze frame; real video waits for a keyframe
    /// after it.
    frozen_at: Option<u64>,
}

impl Starvation {
    /// A clock whose timestamps count `rate` units a second.
    pub fn new(rate: u64) -> Self {
        Self {
            rate,
            last_video: None,
            last_audio: None,
            frozen_at: None,
        }
    }

    /// Whether the picture is frozen.
    pub fn is_frozen(&self) -> bool {
        self.frozen_at.is_some()
    }

    /// An audio frame stamped `ts` arrived.
    pub fn saw_audio(&mut self, now: Instant, ts: u64) {
        self.last_audio = Some((now, ts));
    }

    /// Some video arrived (a frame, or a piece of one).
    pub fn saw_video(&mut self, now: Instant) {
        self.last_video = Some(now);
    }

    /// Whether a video frame stamped `ts` may go on to the decoder. After a freeze only a
    /// keyframe later than the last freeze frame may, and it ends the freeze.
    pub fn admit_frame(&mut self, keyframe: bool, ts: u64) -> bool {
        match self.frozen_at {
            None => true,
            Some(frozen_at) if keyframe && ts > frozen_at => {
                self.frozen_at = None;
                true
            }
            Some(_) => false,
        }
    }

    /// Called every so often (a few times per second) by a guard that holds a keyframe to
    /// repeat: the timestamp for a freeze frame, if video is starved while audio flows. It is
    /// the last audio frame's, moved on by the time since it arrived: audio may arrive a few
    /// frames at a time, and the decoder and the frame-rate filter downstream hold a frame
    /// until the next one comes, so freeze frames must come at every tick, not only after new
    /// audio.
    pub fn tick(&mut self, now: Instant) -> Tick<u64> {
        let (Some(last_video), Some((audio_at, audio_ts))) = (self.last_video, self.last_audio)
        else {
            return Tick::Idle;
        };
        // Once frozen, the picture stays frozen until a real keyframe is let through, even if
        // inter frames (which cannot be decoded without their references) already came back.
        let video_missing =
            now.duration_since(last_video) >= STARVED_AFTER || self.frozen_at.is_some();
        let since_audio = now.duration_since(audio_at);
        if !video_missing || since_audio >= AUDIO_FLOWING_WITHIN {
            return Tick::Idle;
        }
        let ts = audio_ts + (since_audio.as_micros() as u64 * self.rate / 1_000_000);
        if self.frozen_at.is_some_and(|t| t >= ts) {
            return Tick::Idle;
        }
        if self.frozen_at.replace(ts).is_none() {
            Tick::Starved(ts)
        } else {
            Tick::Frozen(ts)
        }
    }
}
