//! The starvation guard for RTMP: repeats the last keyframe FLV tag, restamped, while the
//! publisher's video is starved (see the parent module).

use std::time::Instant;

use super::{Starvation, Tick};
use crate::ingest::media::{FlvTag, TagKind};

/// See the module documentation.
#[derive(Debug)]
pub struct StarvationGuard {
    clock: Starvation,
    last_keyframe: Option<FlvTag>,
}

impl Default for StarvationGuard {
    fn default() -> Self {
        Self {
            // FLV timestamps are milliseconds.
            clock: Starvation::new(1000),
            last_keyframe: None,
        }
    }
}

impl StarvationGuard {
    /// Whether the picture is frozen.
    pub fn is_frozen(&self) -> bool {
        self.clock.is_frozen()
    }

    /// Looks at a tag from the publisher: `Some` to pass it on, `None` to drop it (video that
    /// cannot be decoded after a freeze).
    pub fn admit(&mut self, tag: FlvTag, now: Instant) -> Option<FlvTag> {
        match tag.kind {
            TagKind::Audio if !tag.is_sequence_header() => {
                self.clock.saw_audio(now, u64::from(tag.timestamp))
            }
            TagKind::Video if !tag.is_sequence_header() => {
                self.clock.saw_video(now);
                if !self
                    .clock
                    .admit_frame(tag.is_keyframe(), u64::from(tag.timestamp))
                {
                    return None;
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
    pub fn tick(&mut self, now: Instant) -> Tick<FlvTag> {
        let Some(keyframe) = &self.last_keyframe else {
            return Tick::Idle;
        };
        self.clock.tick(now).map(|ts| {
            let mut frame = keyframe.clone();
            // FLV timestamps are 32-bit milliseconds, and wrap after 49 days as ffmpeg expects.
            frame.timestamp = ts as u32;
            frame
        })
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use std::time::Duration;

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
        // No new audio yet: the freeze frame follows the audio's clock on from its last
        // frame, so the decoder and frame-rate filter downstream keep getting frames.
        assert!(matches!(g.tick(ms(1050)), Tick::Frozen(f) if f.timestamp == 1050));
        assert_eq!(g.tick(ms(1050)), Tick::Idle, "no time passed: nothing new");
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
