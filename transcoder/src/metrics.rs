//! Prometheus metrics of the transcoder child processes, labelled by stream.

use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// The transcoder's metrics; cheap to clone.
#[derive(Clone)]
pub struct TranscoderMetrics {
    /// ffmpeg's reported speed (media seconds per wall second).
    pub speed: GaugeVec,
    /// ffmpeg's reported frames per second.
    pub fps: GaugeVec,
    /// Frames ffmpeg dropped in the current run.
    pub dropped_frames: IntGaugeVec,
    /// 1 while a child runs, else 0.
    pub up: IntGaugeVec,
    /// Children restarted after they died or stalled.
    pub restarts: IntCounterVec,
    /// Unreadable output, by rendition and error kind.
    pub output_errors: IntCounterVec,
}

impl TranscoderMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            speed: GaugeVec::new(
                Opts::new(
                    "transcoder_speed",
                    "Media seconds transcoded per wall-clock second, as ffmpeg reports it",
                ),
                &["stream"],
            )?,
            fps: GaugeVec::new(
                Opts::new(
                    "transcoder_fps",
                    "Frames encoded per second, as ffmpeg reports it",
                ),
                &["stream"],
            )?,
            dropped_frames: IntGaugeVec::new(
                Opts::new(
                    "transcoder_dropped_frames",
                    "Frames ffmpeg dropped in the current run",
                ),
                &["stream"],
            )?,
            up: IntGaugeVec::new(
                Opts::new(
                    "transcoder_up",
                    "1 while the stream's ffmpeg child is running",
                ),
                &["stream"],
            )?,
            restarts: IntCounterVec::new(
                Opts::new(
                    "transcoder_restarts_total",
                    "ffmpeg children restarted after dying or stalling",
                ),
                &["stream"],
            )?,
            output_errors: IntCounterVec::new(
                Opts::new(
                    "transcoder_output_errors_total",
                    "Unreadable fMP4 output from ffmpeg",
                ),
                &["stream", "rendition", "kind"],
            )?,
        };
        registry.register(Box::new(m.speed.clone()))?;
        registry.register(Box::new(m.fps.clone()))?;
        registry.register(Box::new(m.dropped_frames.clone()))?;
        registry.register(Box::new(m.up.clone()))?;
        registry.register(Box::new(m.restarts.clone()))?;
        registry.register(Box::new(m.output_errors.clone()))?;
        Ok(m)
    }
}
