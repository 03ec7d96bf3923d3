//! The queue that carries a publisher's media to its stream without ever blocking the
//! publisher, and the window that measures the incoming bit rate.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::media::MediaChunk;

/// Bytes of media a publish may have queued before dropping starts (a few seconds of a
/// high-bit-rate stream).
pub(crate) const QUEUE_BUDGET: usize = 16 << 20;
/// The window over which the incoming bit rate is measured.
pub(crate) const RATE_WINDOW: Duration = Duration::from_secs(5);

/// A bounded queue of media that never blocks its producer: over budget it drops non-key
/// video first, then the oldest chunks.
#[derive(Default)]
pub(crate) struct MediaQueue {
    state: Mutex<QueueState>,
    ready: Notify,
}

#[derive(Default)]
struct QueueState {
    items: VecDeque<MediaChunk>,
    bytes: usize,
    closed: bool,
}

impl MediaQueue {
    /// Adds `chunk`; returns how many chunks were dropped to make room.
    pub(crate) fn push(&self, chunk: MediaChunk) -> u64 {
        let mut dropped = 0;
        {
            let mut s = self.state.lock();
            if s.closed {
                return 1;
            }
            s.bytes += chunk.len();
            s.items.push_back(chunk);
            if s.bytes > QUEUE_BUDGET {
                let before = s.items.len();
                let mut freed = 0;
                s.items.retain(|c| {
                    if c.is_droppable() {
                        freed += c.len();
                        false
                    } else {
                        true
                    }
                });
                s.bytes -= freed;
                dropped += (before - s.items.len()) as u64;
                while s.bytes > QUEUE_BUDGET {
                    let Some(old) = s.items.pop_front() else {
                        break;
                    };
                    s.bytes -= old.len();
                    dropped += 1;
                }
            }
        }
        self.ready.notify_one();
        dropped
    }

    pub(crate) async fn pop(&self) -> Option<MediaChunk> {
        loop {
            let notified = self.ready.notified();
            {
                let mut s = self.state.lock();
                if let Some(c) = s.items.pop_front() {
                    s.bytes -= c.len();
                    return Some(c);
                }
                if s.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    pub(crate) fn close(&self) {
        self.state.lock().closed = true;
        self.ready.notify_one();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.lock().closed
    }
}

/// Bytes per second over the last [`RATE_WINDOW`], in one-second buckets.
#[derive(Default)]
pub(crate) struct RateWindow {
    start: Option<Instant>,
    buckets: VecDeque<(u64, u64)>,
}

impl RateWindow {
    /// Adds `bytes` at `now`; returns the bit rate once a whole window has been seen.
    pub(crate) fn add(&mut self, now: Instant, bytes: u64) -> Option<u64> {
        let start = *self.start.get_or_insert(now);
        let second = now.duration_since(start).as_secs();
        match self.buckets.back_mut() {
            Some((s, b)) if *s == second => *b += bytes,
            _ => self.buckets.push_back((second, bytes)),
        }
        let window = RATE_WINDOW.as_secs();
        while self
            .buckets
            .front()
            .is_some_and(|(s, _)| *s + window <= second)
        {
            self.buckets.pop_front();
        }
        (second >= window).then(|| self.buckets.iter().map(|(_, b)| b).sum::<u64>() * 8 / window)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::ingest::media::{FlvTag, TagKind};

    fn video(key: bool, len: usize) -> MediaChunk {
        let mut data = vec![if key { 0x17 } else { 0x27 }, 1];
        data.resize(len, 0);
        MediaChunk::Flv(FlvTag {
            kind: TagKind::Video,
            timestamp: 0,
            data: Bytes::from(data),
        })
    }

    #[test]
    fn a_full_queue_drops_non_key_video_before_anything_else() {
        let q = MediaQueue::default();
        let chunk = QUEUE_BUDGET / 8;
        assert_eq!(q.push(video(true, chunk)), 0);
        for _ in 0..6 {
            assert_eq!(q.push(video(false, chunk)), 0);
        }
        let audio = MediaChunk::Flv(FlvTag {
            kind: TagKind::Audio,
            timestamp: 0,
            data: Bytes::from(vec![0xaf; chunk]),
        });
        let dropped = q.push(audio.clone()) + q.push(audio);
        assert_eq!(
            dropped, 6,
            "the six non-key frames go, the keyframe and audio stay"
        );
        let s = q.state.lock();
        assert_eq!(s.items.len(), 3);
        assert!(s.bytes <= QUEUE_BUDGET);
    }

    #[test]
    fn the_bit_rate_is_measured_over_five_seconds() {
        let mut w = RateWindow::default();
        let t0 = Instant::now();
        assert_eq!(w.add(t0, 125_000), None);
        for s in 1..5 {
            assert_eq!(w.add(t0 + Duration::from_secs(s), 125_000), None);
        }
        assert_eq!(w.add(t0 + Duration::from_secs(5), 125_000), Some(1_000_000));
    }
}
