//! Wires the origin together: streams, transcoders, drivers, the HTTP server and metrics, and
//! stops them in order.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use corral_transcoder::command::{InputFormat, SlateCard, Source, TestPattern, TranscodeJob};
use corral_transcoder::config::Encoder;
use corral_transcoder::metrics::TranscoderMetrics;
use corral_transcoder::supervisor::{RunOutcome, Supervisor, SupervisorEvent};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::clock::SystemClock;
use crate::config::{OnStop, OriginConfig, SourceKind, StreamConfig};
use crate::http::server::{HttpState, serve};
use crate::ingest::hub::{IngestHub, IngestMetrics, IngestStream};
use crate::metrics::OriginMetrics;
use crate::replay::catalog::Catalog;
use crate::replay::store::{Archive, ArchiveMetrics};
use crate::replay::watchers::{self, ChatLink};
use crate::replay::{Replay, ReplaySettings};
use crate::stream::Stream;
use crate::stream::controller::{ControllerSettings, PublishController};
use crate::stream::driver::{Feed, StreamDriver, forward};
use crate::stream::slate::SlateClip;

/// How long held requests get to receive their final playlists after the streams end.
const END_GRACE: Duration = Duration::from_millis(500);

/// How long stopping waits for the VODs of the broadcasts it ended.
const STOP_FINALIZE: Duration = Duration::from_secs(10);

/// The transcoding job of a configured stream.
pub fn job(config: &OriginConfig, stream: &StreamConfig) -> TranscodeJob {
    let top = config.transcoder.ladder.first();
    let source = match stream.source {
        SourceKind::Testsrc => Source::TestPattern(TestPattern {
            width: stream
                .testsrc
                .width
                .or(top.map(|r| r.width))
                .unwrap_or(1280),
            height: stream
                .testsrc
                .height
                .or(top.map(|r| r.height))
                .unwrap_or(720),
            duration: stream.testsrc.duration,
            tone_hz: stream.testsrc.tone_hz.unwrap_or(1000),
            font: stream.testsrc.font.clone(),
        }),
        // The container is the publisher's: FLV over RTMP, MPEG-TS over SRT; the ingest
        // controller sets it for each publish.
        SourceKind::Publish => Source::Pipe(InputFormat::Flv),
    };
    TranscodeJob {
        stream: stream.name.clone(),
        source,
        config: config.transcoder.clone(),
        segment_duration: config.llhls.segment_duration,
        unpaced: false,
    }
}

/// The still card of the slate, sized like the top rung.
fn slate_card(config: &OriginConfig) -> SlateCard {
    let (width, height) = config
        .transcoder
        .ladder
        .first()
        .map_or((1280, 720), |r| (r.width, r.height));
    SlateCard {
        width,
        height,
        text: "Reconnecting...".to_string(),
        duration: config.llhls.segment_duration,
        font: None,
    }
}

/// Everything that must be stopped, in order, when the origin stops.
struct Running {
    supervisors: Vec<tokio::task::JoinHandle<()>>,
    controllers: Vec<tokio::task::JoinHandle<()>>,
    drivers: Vec<tokio::task::JoinHandle<()>>,
}

/// Runs the origin until SIGINT or SIGTERM.
pub async fn run(config: OriginConfig, config_path: &Path) -> anyhow::Result<()> {
    corral_transcoder::supervisor::preflight(&config.transcoder)
        .await
        .map_err(|e| anyhow::anyhow!("{}: transcoder.encoder: {e}", config_path.display()))?;

    let registry = corral_telemetry::new_registry();
    let metrics = OriginMetrics::register(&registry)?;
    let transcoder_metrics = TranscoderMetrics::register(&registry)?;
    let ingest_metrics = IngestMetrics::register(&registry)?;
    let archive_metrics = ArchiveMetrics::register(&registry)?;
    let listener = TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("cannot listen on http.listen {}", config.http.listen))?;
    let (metrics_stop, metrics_stop_rx) = watch::channel(false);
    let metrics_task =
        corral_telemetry::serve_metrics(config.metrics.listen, registry, metrics_stop_rx)
            .await
            .with_context(|| {
                format!("cannot listen on metrics.listen {}", config.metrics.listen)
            })?;

    let stop = CancellationToken::new();
    let ingest_stop = CancellationToken::new();
    let published: Vec<IngestStream> = config
        .streams
        .iter()
        .filter_map(|s| {
            let key = s.key.clone()?;
            (s.source == SourceKind::Publish).then(|| IngestStream {
                name: s.name.clone(),
                key,
                passphrase: s.passphrase.clone(),
                max_bitrate: s.max_bitrate.unwrap_or(config.ingest.max_bitrate).0,
                takeover: s.takeover.unwrap_or(config.ingest.takeover),
            })
        })
        .collect();
    let any_published = !published.is_empty();
    let (hub, mut feeds) = IngestHub::new(
        published,
        config.ingest.max_connections,
        ingest_metrics.clone(),
        ingest_stop.clone(),
    );

    // The slate is encoded once, in the background, for every published stream.
    let (slate_tx, slate_rx) = watch::channel(None);
    if let Some(first) = config
        .streams
        .iter()
        .find(|s| s.source == SourceKind::Publish)
    {
        let template = job(&config, first);
        let card = slate_card(&config);
        tokio::spawn(async move {
            match SlateClip::generate(&template, card).await {
                Ok(clip) => {
                    let _ = slate_tx.send(Some(Arc::new(clip)));
                    tracing::info!("slate ready");
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "cannot encode the slate; lost publishers will pause the playlists")
                }
            }
        });
    }

    let mut streams = Vec::new();
    let mut running = Running {
        supervisors: Vec::new(),
        controllers: Vec::new(),
        drivers: Vec::new(),
    };
    for stream_config in &config.streams {
        let job = job(&config, stream_config);
        let (driver_tx, driver_rx) = mpsc::channel(1024);
        let stream = Stream::new(
            &stream_config.name,
            &stream_config.source.to_string(),
            config.llhls_params(),
            config.transcoder.fps,
            &job.command().renditions,
        );
        let passthrough = job.config.encoder == Encoder::Copy;
        match stream_config.source {
            SourceKind::Testsrc => {
                let driver = StreamDriver::new(
                    stream.clone(),
                    Arc::new(SystemClock),
                    metrics.clone(),
                    false,
                    Feed::Generated,
                );
                let (tx, rx) = mpsc::channel(1024);
                let supervisor = Supervisor::new(job, transcoder_metrics.clone(), tx, stop.clone());
                tokio::spawn(forward(rx, driver_tx));
                running.drivers.push(tokio::spawn(driver.run(driver_rx)));
                running.supervisors.push(tokio::spawn(supervisor.run()));
            }
            SourceKind::Publish => {
                let driver = StreamDriver::new(
                    stream.clone(),
                    Arc::new(SystemClock),
                    metrics.clone(),
                    passthrough,
                    Feed::Published,
                )
                .with_tolerance(config.redundancy.tolerance());
                let Some(feed_rx) = feeds.remove(&stream_config.name) else {
                    continue;
                };
                let controller = PublishController::new(
                    stream.clone(),
                    job,
                    feed_rx,
                    driver_tx,
                    slate_rx.clone(),
                    transcoder_metrics.clone(),
                    ingest_metrics.clone(),
                    ControllerSettings {
                        media_timeout: Duration::from_secs_f64(config.ingest.media_timeout),
                        reconnect_grace: Duration::from_secs_f64(config.ingest.reconnect_grace),
                        keyframe_timeout: Duration::from_secs_f64(config.ingest.keyframe_timeout),
                    },
                    stop.clone(),
                );
                let controller = match &config.redundancy.follow {
                    Some(primary) => controller.following(primary, config.redundancy.wait()),
                    None => controller,
                };
                running.drivers.push(tokio::spawn(driver.run(driver_rx)));
                running.controllers.push(tokio::spawn(controller.run()));
            }
        }
        streams.push(stream);
    }
    // A standby copies its primary's cues onto its published streams.
    if let Some(primary) = &config.redundancy.follow {
        let published: Vec<_> = streams
            .iter()
            .filter(|s| s.source() == SourceKind::Publish.to_string())
            .cloned()
            .collect();
        tokio::spawn(crate::redundancy::follow_cues(
            primary.clone(),
            published,
            stop.clone(),
        ));
    }
    let mut ingest_tasks = Vec::new();
    if any_published {
        ingest_tasks.extend(start_ingest(&config, hub.clone()).await?);
    }

    let replay_stop = CancellationToken::new();
    let catalog = Catalog::new();
    let (replay, recorders) = if config.archive.enabled {
        let archive = Archive::open(&config.archive, archive_metrics)
            .map_err(|e| anyhow::anyhow!("{}: {e:#}", config_path.display()))?;
        tracing::info!(archive = %archive.location(), dvr_window_s = config.dvr.window, "archiving every broadcast");
        let replay = Replay::new(
            archive,
            &streams,
            ReplaySettings {
                dvr_window: config.dvr.window,
                finalize_timeout: Duration::from_secs_f64(config.archive.finalize_timeout),
                checkpoint_every: Duration::from_secs_f64(config.archive.checkpoint_interval),
            },
            catalog.clone(),
        );
        // Past broadcasts are read in the background: a slow store must not hold up start-up.
        tokio::spawn({
            let replay = replay.clone();
            async move { replay.load().await }
        });
        let recorders = replay.start(replay_stop.clone());
        (Some(replay), recorders)
    } else {
        (None, Vec::new())
    };

    let http_stop = CancellationToken::new();
    let local = listener.local_addr()?;
    let chat = config
        .chat
        .url
        .as_deref()
        .map(|url| ChatLink::new(url, config.chat.admin_token.clone()));
    let watchers = watchers::start(
        catalog.clone(),
        streams.clone(),
        replay.clone(),
        config.transcoder.ffmpeg.clone(),
        chat.clone(),
        replay_stop.clone(),
    );
    let http_state = HttpState::new(
        streams.clone(),
        metrics,
        config.http.clone(),
        replay.clone(),
        catalog,
        chat,
    );
    let server = serve(listener, http_state.clone(), http_stop.clone());
    for s in &streams {
        tracing::info!(url = %format!("http://{local}/live/{}/master.m3u8", s.name()), "serving");
    }

    wait_for_signal().await;
    if config.http.on_stop == OnStop::HandOver {
        // Before anything ends: no player behind an edge may see a final playlist.
        http_state.hand_over();
        tracing::info!(
            "stopping: handing players over to the other origins (requests are closed unanswered, /healthz says 503)"
        );
    }
    tracing::info!("stopping: ending streams");
    ingest_stop.cancel();
    stop.cancel();
    for task in running.supervisors.into_iter().chain(running.controllers) {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    for task in running.drivers {
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    }
    for task in ingest_tasks {
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    }
    tokio::time::sleep(END_GRACE).await;
    replay_stop.cancel();
    for task in recorders.into_iter().chain(watchers) {
        let _ = task.await;
    }
    if let Some(replay) = &replay {
        // The streams just ended: their VODs are written before the process goes.
        replay.drain(STOP_FINALIZE).await;
    }
    http_stop.cancel();
    let _ = server.await;
    let _ = metrics_stop.send(true);
    let _ = metrics_task.await;
    tracing::info!("stopped");
    Ok(())
}

/// Starts the RTMP and SRT listeners that are enabled; a port that cannot be bound stops the
/// origin at start-up.
async fn start_ingest(
    config: &OriginConfig,
    hub: Arc<IngestHub>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let ingest = &config.ingest;
    let handshake_timeout = Duration::from_secs_f64(ingest.handshake_timeout);
    let media_timeout = Duration::from_secs_f64(ingest.media_timeout);
    let mut tasks = Vec::new();
    if ingest.rtmp.enabled {
        let listener = TcpListener::bind(ingest.rtmp.listen)
            .await
            .with_context(|| {
                format!("cannot listen on ingest.rtmp.listen {}", ingest.rtmp.listen)
            })?;
        tracing::info!(addr = %ingest.rtmp.listen, "RTMP ingest listening");
        tasks.push(tokio::spawn(crate::ingest::rtmp::serve(
            listener,
            hub.clone(),
            ingest.rtmp.max_message_bytes,
            handshake_timeout,
            media_timeout,
        )));
    }
    if ingest.srt.enabled {
        let task = crate::ingest::srt::serve(
            ingest.srt.listen,
            hub,
            ingest.srt.latency_ms,
            handshake_timeout,
            media_timeout,
        )
        .await
        .with_context(|| format!("cannot listen on ingest.srt.listen {}", ingest.srt.listen))?;
        tracing::info!(addr = %ingest.srt.listen, "SRT ingest listening");
        tasks.push(task);
    }
    Ok(tasks)
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// What `--bench-transcoder` measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TranscoderBench {
    /// Seconds of media produced.
    pub content_seconds: f64,
    /// Wall-clock seconds taken.
    pub wall_seconds: f64,
    /// CPU seconds (user + system) of the ffmpeg child.
    pub cpu_seconds: f64,
    /// Media seconds per wall second: above 1 runs faster than real time.
    pub realtime_factor: f64,
    /// CPU cores the transcoder keeps busy in real time: CPU seconds per media second.
    pub cores_at_realtime: f64,
    /// Video frames produced per rendition.
    pub frames: Vec<(String, u64)>,
}

/// Encodes `seconds` of the first stream's test pattern as fast as possible and measures it.
pub async fn bench_transcoder(
    config: &OriginConfig,
    seconds: f64,
) -> anyhow::Result<TranscoderBench> {
    let stream = config.streams.first().context("no stream is configured")?;
    let mut job = job(config, stream);
    job.unpaced = true;
    if let Source::TestPattern(p) = &mut job.source {
        p.duration = Some(seconds);
    }
    let registry = prometheus::Registry::new();
    let (tx, mut rx) = mpsc::channel(4096);
    let supervisor = Supervisor::new(
        job,
        TranscoderMetrics::register(&registry)?,
        tx,
        CancellationToken::new(),
    );
    let names: Vec<String> = supervisor
        .command()
        .renditions
        .iter()
        .map(|r| r.name.clone())
        .collect();
    let mut frames = vec![0u64; names.len()];
    let cpu_before = children_cpu();
    let started = Instant::now();
    let task = tokio::spawn(supervisor.run());
    let mut outcome = None;
    while let Some(event) = rx.recv().await {
        match event {
            SupervisorEvent::Fragment {
                rendition,
                fragment,
                ..
            } => {
                frames[rendition] += fragment
                    .tracks
                    .iter()
                    .map(|t| t.samples.len() as u64)
                    .sum::<u64>();
            }
            SupervisorEvent::Ended { outcome: o, .. } => {
                outcome = Some(o);
                break;
            }
            _ => {}
        }
    }
    let wall = started.elapsed().as_secs_f64();
    task.abort();
    match outcome {
        Some(RunOutcome::Finished) => {}
        other => anyhow::bail!("the transcoder did not finish cleanly: {other:?}"),
    }
    let cpu = children_cpu() - cpu_before;
    Ok(TranscoderBench {
        content_seconds: seconds,
        wall_seconds: wall,
        cpu_seconds: cpu,
        realtime_factor: seconds / wall,
        cores_at_realtime: cpu / seconds,
        frames: names.into_iter().zip(frames).collect(),
    })
}

fn children_cpu() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    match getrusage(UsageWho::RUSAGE_CHILDREN) {
        Ok(u) => {
            let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
            t(u.user_time()) + t(u.system_time())
        }
        Err(_) => 0.0,
    }
}
