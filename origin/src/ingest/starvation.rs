//! Keeps the video going when a starved broadcaster's video stops but its audio does not.
//!
//! An encoder short of upload bandwidth (OBS's frame dropping, for one) sheds video frames
//! and keeps audio. Without video frames, ffmpeg has nothing to duplicate and every video
//! rendition stops while the audio rendition runs on, so players on a video rendition stall.
//! Degrade, never stop: while video is missing and audio still arrives, the guard hands out
//! the last keyframe again, stamped with the audio's clock, so the transcoder keeps every video
//! rendition advancing on a frozen picture. When video returns, it waits for a real keyframe
//! (later frames would reference pictures the decoder no longer holds).
//!
//! Pure code: the caller passes the time.

use std::time::{Duration, Instant};

use super::media::{FlvTag, TagKind};

/// How long video may be missing, while audio flows, before the picture is frozen. In RTMP
/// audio and video share one TCP stream, so a network stall delays both and never looks like
/// this; only an encoder shedding video does.
pub const STARVED_AFTER: Duration = Duration::from_millis(400);

/// What [`StarvationGuard::tick`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tick {
    /// Nothing to do.
    Idle,
    /// Video just went missing: a freeze frame to send, and the start of an episode.
    Starved(FlvTag),
    /// Video is still missing: another freeze frame to send.
    Frozen(FlvTag),
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct StarvationGuard {
    last_keyframe: Option<FlvTag>,
    last_video: Option<Instant>,
    last_audio: Option<(Instant, u32)>,
    /// While frozen: the timestamp of the last freeze frame; real video waits for a keyframe
    /// after it.
    frozen_at: Option<u32>,
}

impl StarvationGuard {
    /// Whether the picture is frozen.
    pub fn is_frozen(&self) -> bool {
        self.frozen_at.is_some()
    }

    /// Looks at a tag from the publisher: `Some` to pass it on, `None` to drop it (video that
    /// cannot be decoded after a freeze).
    pub fn admit(&mut self, tag: FlvTag, now: Instant) -> Option<FlvTag> {
        match tag.kind {
            TagKind::Audio if !tag.is_sequence_header() => {
                self.last_audio = Some((now, tag.timestamp))
            }
            TagKind::Video if !tag.is_sequence_header() => {
                self.last_video = Some(now);
                if let Some(frozen_at) = self.frozen_at {
                    if !(tag.is_keyframe() && tag.timestamp > frozen_at) {
                        return None;
                    }
                    self.frozen_at = None;
                }
                if tag.is_keyframe() {
                    self.last_keyframe = Some(tag.clone());
                }
            }
            _ => {}
        }
        Some(tag)
    }

    /// Called every so often (a few times per second): a freeze frame to send, if video is
    /// starved while audio flows.
    pub fn tick(&mut self, now: Instant) -> Tick {
        let (Some(keyframe), Some(last_video), Some((audio_at, audio_ts))) =
            (&self.last_keyframe, self.last_video, self.last_audio)
        else {
            return Tick::Idle;
        };
        // Once frozen, the picture stays frozen until a real keyframe is let through, even if
        // inter frames (which cannot be decoded without their references) already came back.
        let video_missing =
            now.duration_since(last_video) >= STARVED_AFTER || self.frozen_at.is_some();
        let audio_flowing = now.duration_since(audio_at) < STARVED_AFTER;
        if !video_missing || !audio_flowing || self.frozen_at.is_some_and(|t| t >= audio_ts) {
            return Tick::Idle;
        }
        let mut frame = keyframe.clone();
        frame.timestamp = audio_ts;
        let first = self.frozen_at.replace(audio_ts).is_none();
        if first {
            Tick::Starved(frame)
        } else {
            Tick::Frozen(frame)
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn video(key: bool, ts: u32) -> FlvTag {
        FlvTag {
            kind: TagKind::Video,
            timestamp: ts,
            data: Bytes::from(vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0]),
        }
    }

    fn audio(ts: u32) -> FlvTag {
        FlvTag {
            kind: TagKind::Audio,
            timestamp: ts,
            data: Bytes::from_static(&[0xaf, 1, 0x21]),
        }
    }

    #[test]
    fn video_that_stops_while_audio_flows_is_frozen_then_resumes_at_a_keyframe() {
        let mut g = StarvationGuard::default();
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        assert!(g.admit(video(true, 0), ms(0)).is_some());
        assert!(g.admit(video(false, 33), ms(33)).is_some());
        // Video stops at 33 ms; audio goes on.
        for t in (100..=1000).step_by(100) {
            g.admit(audio(t as u32), ms(t));
        }
        assert_eq!(g.tick(ms(400)), Tick::Idle, "not yet starved");
        match g.tick(ms(1000)) {
            Tick::Starved(frame) => {
                assert!(frame.is_keyframe());
                assert_eq!(frame.timestamp, 1000, "stamped with the audio's clock");
            }
            other => panic!("expected a freeze frame, got {other:?}"),
        }
        assert_eq!(
            g.tick(ms(1050)),
            Tick::Idle,
            "no new audio: nothing new to stamp"
        );
        g.admit(audio(1100), ms(1100));
        assert!(matches!(g.tick(ms(1100)), Tick::Frozen(f) if f.timestamp == 1100));
        assert!(g.is_frozen());
        // Video returns: inter frames are dropped until a keyframe after the freeze, and the
        // picture stays frozen meanwhile.
        assert!(g.admit(video(false, 1133), ms(1133)).is_none());
        g.admit(audio(1140), ms(1140));
        assert!(matches!(g.tick(ms(1140)), Tick::Frozen(f) if f.timestamp == 1140));
        assert!(
            g.admit(video(true, 1050), ms(1150)).is_none(),
            "a keyframe before the freeze frame"
        );
        assert!(g.admit(video(true, 1166), ms(1166)).is_some());
        assert!(!g.is_frozen());
        assert!(g.admit(video(false, 1200), ms(1200)).is_some());
    }

    #[test]
    fn nothing_is_frozen_when_everything_stops_or_before_any_keyframe() {
        let mut g = StarvationGuard::default();
        let t0 = Instant::now();
        g.admit(audio(0), t0);
        assert_eq!(
            g.tick(t0 + Duration::from_secs(2)),
            Tick::Idle,
            "no keyframe to show yet"
        );
        g.admit(video(true, 10), t0);
        assert_eq!(
            g.tick(t0 + Duration::from_secs(2)),
            Tick::Idle,
            "audio stopped too: that is a lost publisher"
        );
    }
}
