//! The lifecycle of a stream that broadcasters publish: idle → live → reconnecting → ended.
//!
//! The controller waits for a publish (a [`PublishFeed`] from the ingest hub), runs a
//! transcoder for it and pumps the publisher's media into each run's stdin. When the publisher
//! goes (it disconnects, or sends nothing for `media_timeout`), it lets the transcoder flush,
//! then plays the slate so the playlists keep advancing; a publisher that comes back within the
//! grace period continues the stream after a discontinuity, and one that does not ends it with
//! `EXT-X-ENDLIST`. Another publisher taking over goes straight to its own run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use corral_transcoder::command::{InputFormat, Source, TranscodeJob};
use corral_transcoder::metrics::TranscoderMetrics;
use corral_transcoder::supervisor::Supervisor;
use tokio::io::AsyncWriteExt;
use tokio::process::ChildStdin;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::driver::{Control, DriverInput, forward};
use super::slate::{SlateClip, play};
use super::{IngestStatus, Lifecycle, Stream};
use crate::ingest::flv::FlvRemuxer;
use crate::ingest::hub::{IngestMetrics, Protocol, PublishFeed};
use crate::ingest::media::{MediaChunk, TagKind};
use crate::ingest::mpegts::PACKET_LEN;
use crate::ingest::starvation::{StarvationGuard, Tick, TsFreezer};
use crate::ingest::timing::PublisherClock;
use crate::redundancy::{Follow, await_epoch};

/// How often a publish is checked for starved video.
const STARVATION_CHECK: Duration = Duration::from_millis(100);

/// How long a finished transcoder run may take to flush before it is stopped.
const FLUSH_LIMIT: Duration = Duration::from_secs(3);

/// Timing of the lifecycle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ControllerSettings {
    /// No media for this long: the publisher is gone.
    pub media_timeout: Duration,
    /// How long the slate plays before the stream ends.
    pub reconnect_grace: Duration,
    /// No video keyframe this long after a publish starts: the publish is refused.
    pub keyframe_timeout: Duration,
}

/// Why a publish ended.
enum PublishEnd {
    /// The publisher disconnected or went silent.
    Gone(String),
    /// Another publisher took over.
    Replaced(PublishFeed),
    /// The origin is stopping.
    Stopping,
}

/// Runs the lifecycle of one published stream; see the module documentation.
pub struct PublishController {
    stream: Arc<Stream>,
    template: TranscodeJob,
    feeds: mpsc::Receiver<PublishFeed>,
    driver: mpsc::Sender<DriverInput>,
    slate: watch::Receiver<Option<Arc<SlateClip>>>,
    runs: Arc<AtomicU64>,
    transcoder_metrics: TranscoderMetrics,
    ingest_metrics: IngestMetrics,
    settings: ControllerSettings,
    stop: CancellationToken,
    /// The primary origin (HOST:PORT) whose epochs this standby follows, and how long a
    /// starting publish waits for one.
    follow: Option<(Arc<str>, Duration)>,
}

impl PublishController {
    /// A controller for `stream`, whose transcoder is `template` with its source replaced by
    /// each publish's container.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        stream: Arc<Stream>,
        template: TranscodeJob,
        feeds: mpsc::Receiver<PublishFeed>,
        driver: mpsc::Sender<DriverInput>,
        slate: watch::Receiver<Option<Arc<SlateClip>>>,
        transcoder_metrics: TranscoderMetrics,
        ingest_metrics: IngestMetrics,
        settings: ControllerSettings,
        stop: CancellationToken,
    ) -> Self {
        Self {
            stream,
            template,
            feeds,
            driver,
            slate,
            runs: Arc::new(AtomicU64::new(0)),
            transcoder_metrics,
            ingest_metrics,
            settings,
            stop,
            follow: None,
        }
    }

    /// Makes this a standby's controller: each publish's run takes the epoch of `primary`
    /// (HOST:PORT) when it has the same publish, waiting up to `wait` for it.
    pub fn following(mut self, primary: &str, wait: Duration) -> Self {
        self.follow = Some((primary.into(), wait));
        self
    }

    async fn control(&self, control: Control) {
        let _ = self.driver.send(DriverInput::Control(control)).await;
    }

    /// Runs until the origin stops.
    pub async fn run(mut self) {
        self.control(Control::State(Lifecycle::Idle)).await;
        let mut next: Option<PublishFeed> = None;
        loop {
            let feed = match next.take() {
                Some(feed) => feed,
                None => tokio::select! {
                    feed = self.feeds.recv() => match feed {
                        Some(feed) => feed,
                        None => return,
                    },
                    _ = self.stop.cancelled() => return,
                },
            };
            match self.publish(feed).await {
                PublishEnd::Replaced(feed) => next = Some(feed),
                PublishEnd::Stopping => {
                    self.control(Control::End).await;
                    return;
                }
                PublishEnd::Gone(reason) => {
                    tracing::info!(stream = %self.stream.name(), %reason, grace_s = self.settings.reconnect_grace.as_secs_f64(), "publisher gone; playing the slate");
                    match self.reconnect().await {
                        Some(Some(feed)) => {
                            self.ingest_metrics
                                .reconnects
                                .with_label_values(&[self.stream.name()])
                                .inc();
                            self.stream.update_status(|s| s.reconnects += 1);
                            next = Some(feed);
                        }
                        Some(None) => {
                            tracing::info!(stream = %self.stream.name(), "no publisher came back within the grace period; the stream ends");
                            self.control(Control::End).await;
                        }
                        None => {
                            self.control(Control::End).await;
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Transcodes one publish until it ends.
    async fn publish(&mut self, feed: PublishFeed) -> PublishEnd {
        let format = match feed.protocol {
            Protocol::Rtmp => InputFormat::Flv,
            Protocol::Srt => InputFormat::MpegTs,
        };
        let mut job = self.template.clone();
        job.source = Source::Pipe(format);
        // RTMP's timestamps are kept through the transcoder (see `corral_transcoder::command`):
        // a restarted run's media time continues the failed run's.
        self.control(Control::Publish {
            shared_clock: format == InputFormat::Flv,
        })
        .await;
        // A standby holds the run's first parts until it knows the primary's epoch; the
        // command goes ahead of the run's events on the driver's channel.
        let follower = match self.follow.clone() {
            Some((primary, wait)) => {
                self.control(Control::Follow(Follow::Waiting)).await;
                let driver = self.driver.clone();
                let name = self.stream.name().to_string();
                Some(tokio::spawn(async move {
                    let follow = match await_epoch(&primary, &name, wait).await {
                        Some(epoch) => Follow::Primary(epoch),
                        None => {
                            tracing::warn!(stream = %name, %primary, "the primary has no epoch for this publish; anchoring it here");
                            Follow::Own
                        }
                    };
                    let _ = driver
                        .send(DriverInput::Control(Control::Follow(follow)))
                        .await;
                }))
            }
            None => None,
        };
        let (stdin_tx, stdin_rx) = mpsc::channel(4);
        let (events_tx, events_rx) = mpsc::channel(1024);
        let run_stop = self.stop.child_token();
        let supervisor = Supervisor::new(
            job,
            self.transcoder_metrics.clone(),
            events_tx,
            run_stop.clone(),
        )
        .with_input(stdin_tx)
        .with_run_counter(self.runs.clone());
        let mut transcoder = tokio::spawn(supervisor.run());
        let forwarder = tokio::spawn(forward(events_rx, self.driver.clone()));
        self.stream.update_status(|s| {
            s.ingest = Some(IngestStatus::new(
                feed.protocol,
                feed.peer.to_string(),
                SystemTime::now(),
            ));
        });
        self.control(Control::State(Lifecycle::Starting)).await;

        let mut pump = Pump::new(
            feed,
            stdin_rx,
            self.settings,
            self.stream.clone(),
            self.ingest_metrics.clone(),
        );
        let end = tokio::select! {
            reason = pump.run(&self.driver) => PublishEnd::Gone(reason),
            feed = self.feeds.recv() => match feed {
                Some(feed) => {
                    tracing::info!(stream = %self.stream.name(), "publisher replaced");
                    PublishEnd::Replaced(feed)
                }
                None => PublishEnd::Stopping,
            },
            _ = self.stop.cancelled() => PublishEnd::Stopping,
        };
        // Closing the pump ends the publish (the handler closes its connection) and closes
        // ffmpeg's stdin, so the run flushes what it has and finishes.
        drop(pump);
        if tokio::time::timeout(FLUSH_LIMIT, &mut transcoder)
            .await
            .is_err()
        {
            run_stop.cancel();
            let _ = transcoder.await;
        }
        let _ = forwarder.await;
        if let Some(follower) = follower {
            follower.abort();
        }
        self.stream.update_status(|s| s.ingest = None);
        end
    }

    /// Plays the slate until a publisher comes back (`Some(Some(feed))`), the grace period ends
    /// (`Some(None)`) or the origin stops (`None`).
    async fn reconnect(&mut self) -> Option<Option<PublishFeed>> {
        self.control(Control::State(Lifecycle::Reconnecting)).await;
        // The slate is this origin's own.
        if self.follow.is_some() {
            self.control(Control::Follow(Follow::Own)).await;
        }
        let clip = self.slate.borrow().clone();
        let player_stop = CancellationToken::new();
        let player = match clip {
            Some(clip) => {
                let run = self.runs.fetch_add(1, Ordering::Relaxed) + 1;
                Some(tokio::spawn(play(
                    clip,
                    run,
                    self.driver.clone(),
                    player_stop.clone(),
                )))
            }
            None => {
                tracing::warn!(stream = %self.stream.name(), "no slate is ready; the playlists pause until the publisher returns");
                None
            }
        };
        let result = tokio::select! {
            feed = self.feeds.recv() => feed.map(Some),
            _ = tokio::time::sleep(self.settings.reconnect_grace) => Some(None),
            _ = self.stop.cancelled() => None,
        };
        player_stop.cancel();
        if let Some(player) = player {
            let _ = player.await;
        }
        result
    }
}

/// Moves one publish's media into the current transcoder run.
struct Pump {
    feed: PublishFeed,
    stdins: mpsc::Receiver<(u64, ChildStdin)>,
    writer: Option<ChildStdin>,
    flv: FlvRemuxer,
    ts: TsFreezer,
    settings: ControllerSettings,
    stream: Arc<Stream>,
    metrics: IngestMetrics,
    started: Instant,
    media_seen: bool,
    keyframe_seen: bool,
    /// When the publisher's clock started, to date the publish (RTMP's timestamps).
    publisher_clock: PublisherClock,
    starvation: StarvationGuard,
}

impl Pump {
    fn new(
        feed: PublishFeed,
        stdins: mpsc::Receiver<(u64, ChildStdin)>,
        settings: ControllerSettings,
        stream: Arc<Stream>,
        metrics: IngestMetrics,
    ) -> Self {
        Self {
            feed,
            stdins,
            writer: None,
            flv: FlvRemuxer::default(),
            ts: TsFreezer::default(),
            settings,
            stream,
            metrics,
            started: Instant::now(),
            media_seen: false,
            keyframe_seen: false,
            publisher_clock: PublisherClock::default(),
            starvation: StarvationGuard::default(),
        }
    }

    /// Pumps until the publish ends; returns why.
    async fn run(&mut self, driver: &mpsc::Sender<DriverInput>) -> String {
        let mut status_tick = tokio::time::interval(Duration::from_secs(1));
        let mut starvation_tick = tokio::time::interval(STARVATION_CHECK);
        let mut last = (Instant::now(), 0u64, 0u64);
        loop {
            tokio::select! {
                stdin = self.stdins.recv() => {
                    self.writer = stdin.map(|(_, w)| w);
                    self.flv.restart();
                }
                _ = status_tick.tick() => last = self.report(last),
                _ = starvation_tick.tick() => {
                    let bytes = self.freeze_frame();
                    self.write(&bytes).await;
                }
                chunk = tokio::time::timeout(self.settings.media_timeout, self.feed.recv()) => {
                    let chunk = match chunk {
                        Err(_) => return format!("no media for {:.1} s", self.settings.media_timeout.as_secs_f64()),
                        Ok(None) => return "the publisher disconnected".to_string(),
                        Ok(Some(chunk)) => chunk,
                    };
                    if !self.media_seen {
                        self.media_seen = true;
                        let _ = driver.send(DriverInput::Control(Control::MediaStarted(Instant::now()))).await;
                    }
                    if let MediaChunk::Flv(tag) = &chunk
                        && tag.kind != TagKind::Script
                        && !tag.is_sequence_header()
                        && let Some(zero) = self.publisher_clock.observe(SystemTime::now(), tag.timestamp)
                    {
                        let _ = driver.send(DriverInput::Control(Control::PublisherClock(zero))).await;
                    }
                    let bytes = match self.accept(chunk) {
                        Ok(bytes) => bytes,
                        Err(reason) => return reason,
                    };
                    if !self.keyframe_seen && self.started.elapsed() > self.settings.keyframe_timeout {
                        self.metrics.errors.with_label_values(&[self.feed.protocol.as_str(), "no_keyframe"]).inc();
                        tracing::warn!(stream = %self.stream.name(), peer = %self.feed.peer, "publish ended: no video keyframe within {:.0} s", self.settings.keyframe_timeout.as_secs_f64());
                        return "no video keyframe".to_string();
                    }
                    self.write(&bytes).await;
                }
            }
        }
    }

    /// Checks one chunk and turns it into bytes for ffmpeg.
    fn accept(&mut self, chunk: MediaChunk) -> Result<Bytes, String> {
        match chunk {
            MediaChunk::Flv(tag) => {
                if tag.is_enhanced_video() {
                    self.metrics
                        .errors
                        .with_label_values(&["rtmp", "enhanced_rtmp"])
                        .inc();
                    tracing::warn!(stream = %self.stream.name(), peer = %self.feed.peer, "publish ended: enhanced RTMP video (HEVC, AV1, VP9) is not supported; publish H.264");
                    return Err("enhanced RTMP video".to_string());
                }
                if tag.is_keyframe() {
                    self.keyframe_seen = true;
                }
                match self.starvation.admit(tag, Instant::now()) {
                    Some(tag) => Ok(self.flv.push(tag)),
                    None => {
                        self.metrics
                            .dropped
                            .with_label_values(&[self.stream.name(), "after_freeze"])
                            .inc();
                        Ok(Bytes::new())
                    }
                }
            }
            MediaChunk::Ts(bytes) => {
                let (before, dropped_before) = (self.ts.stats(), self.ts.dropped_frames());
                let mut out = Vec::with_capacity(bytes.len() + PACKET_LEN);
                self.ts.push(&bytes, Instant::now(), &mut out);
                let after = self.ts.stats();
                let dropped = self.ts.dropped_frames() - dropped_before;
                if dropped > 0 {
                    self.metrics
                        .dropped
                        .with_label_values(&[self.stream.name(), "after_freeze"])
                        .inc_by(dropped);
                }
                if after.keyframes > 0 {
                    self.keyframe_seen = true;
                }
                let frames = after.video_frames - before.video_frames;
                if frames > 0 {
                    self.feed
                        .stats
                        .video_frames
                        .fetch_add(frames, Ordering::Relaxed);
                    self.metrics
                        .frames
                        .with_label_values(&[self.stream.name()])
                        .inc_by(frames);
                }
                let lost = after.continuity_errors - before.continuity_errors;
                if lost > 0 {
                    self.metrics
                        .dropped
                        .with_label_values(&[self.stream.name(), "ts_continuity"])
                        .inc_by(lost);
                }
                Ok(Bytes::from(out))
            }
        }
    }

    /// Writes to the current run's stdin; a broken pipe means ffmpeg died, and its supervisor
    /// hands over the next run's stdin.
    async fn write(&mut self, bytes: &[u8]) {
        if let Some(w) = self.writer.as_mut()
            && !bytes.is_empty()
            && w.write_all(bytes).await.is_err()
        {
            self.writer = None;
        }
    }

    /// A freeze frame, as bytes for ffmpeg, when the publisher's video starves while its
    /// audio flows; empty otherwise.
    fn freeze_frame(&mut self) -> Bytes {
        let now = Instant::now();
        let tick = match self.feed.protocol {
            Protocol::Rtmp => self.starvation.tick(now).map(|tag| self.flv.push(tag)),
            Protocol::Srt => self.ts.tick(now).map(Bytes::from),
        };
        match tick {
            Tick::Idle => Bytes::new(),
            Tick::Starved(bytes) => {
                self.metrics
                    .starved
                    .with_label_values(&[self.stream.name()])
                    .inc();
                tracing::warn!(stream = %self.stream.name(), peer = %self.feed.peer, "the publisher's video stopped while its audio goes on: holding the last keyframe until video returns");
                bytes
            }
            Tick::Frozen(bytes) => bytes,
        }
    }

    /// Publishes the publish's rates to the stream's status; returns the new reference point.
    fn report(&self, (at, bytes, frames): (Instant, u64, u64)) -> (Instant, u64, u64) {
        let now = Instant::now();
        let stats = &self.feed.stats;
        let b = stats.bytes.load(Ordering::Relaxed);
        let f = stats.video_frames.load(Ordering::Relaxed);
        let secs = now.duration_since(at).as_secs_f64().max(1e-3);
        let dropped = stats.dropped.load(Ordering::Relaxed);
        self.stream.update_status(|s| {
            if let Some(ingest) = s.ingest.as_mut() {
                ingest.bitrate_bps = ((b - bytes) as f64 * 8.0 / secs) as u64;
                ingest.fps = (f - frames) as f64 / secs;
                ingest.bytes = b;
                ingest.video_frames = f;
                ingest.dropped = dropped;
            }
        });
        (now, b, f)
    }
}
