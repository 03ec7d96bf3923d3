//! Runs the ffmpeg child for one stream: spawns it with one pipe per rendition, reads the pipes,
//! restarts it with back-off when it dies or stalls, and stops it when asked.
//!
//! Everything the child produces reaches the caller as [`SupervisorEvent`]s on one channel, in
//! order per rendition. The channel is bounded: a slow consumer slows the pipes, then ffmpeg.

use std::collections::VecDeque;
use std::io;
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use command_fds::{CommandFdExt, FdMapping};
use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::command::{FfmpegCommand, TranscodeJob};
use crate::fmp4::{Fmp4Event, Fmp4Reader, Fragment, InitSegment};
use crate::metrics::TranscoderMetrics;
use crate::progress::{Progress, ProgressParser};

/// How many of ffmpeg's last stderr lines explain a failed run.
const STDERR_TAIL_LINES: usize = 6;
/// How long a stopping child gets after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// What the supervisor reports.
#[derive(Debug)]
pub enum SupervisorEvent {
    /// A child started; `run` counts from 1 and is carried by every later event of that child.
    Started {
        /// The run number.
        run: u64,
    },
    /// A rendition's init segment.
    Init {
        /// The run number.
        run: u64,
        /// Index into the command's renditions.
        rendition: usize,
        /// The init segment.
        init: Arc<InitSegment>,
    },
    /// A rendition's fragment.
    Fragment {
        /// The run number.
        run: u64,
        /// Index into the command's renditions.
        rendition: usize,
        /// The fragment.
        fragment: Fragment,
    },
    /// ffmpeg's periodic progress report.
    Progress {
        /// The run number.
        run: u64,
        /// The report.
        progress: Progress,
    },
    /// The child exited and every pipe was drained.
    Ended {
        /// The run number.
        run: u64,
        /// Why it ended and what happens next.
        outcome: RunOutcome,
    },
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    /// ffmpeg exited cleanly because its source ended; no restart follows.
    Finished,
    /// The child died, stalled or could not start; a new run starts after `restart_in`.
    Failed {
        /// What went wrong, with ffmpeg's last words.
        reason: String,
        /// The back-off before the next run.
        restart_in: Duration,
    },
    /// The supervisor was asked to stop; no restart follows.
    Stopped,
}

/// Receives the stdin of each new run, for piped sources: whoever feeds the source writes the
/// stream's headers again on each new stdin, so a restarted ffmpeg can decode from the start.
pub type StdinSink = mpsc::Sender<(u64, tokio::process::ChildStdin)>;

/// Supervises the ffmpeg child of one stream.
pub struct Supervisor {
    job: TranscodeJob,
    command: FfmpegCommand,
    metrics: TranscoderMetrics,
    events: mpsc::Sender<SupervisorEvent>,
    stop: CancellationToken,
    input: Option<StdinSink>,
    runs: Arc<AtomicU64>,
}

impl Supervisor {
    /// A supervisor for `job`, reporting on `events` until `stop` is cancelled.
    pub fn new(
        job: TranscodeJob,
        metrics: TranscoderMetrics,
        events: mpsc::Sender<SupervisorEvent>,
        stop: CancellationToken,
    ) -> Self {
        let command = job.command();
        Self {
            job,
            command,
            metrics,
            events,
            stop,
            input: None,
            runs: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Hands each run's stdin to `sink` (for [`crate::command::Source::Pipe`]).
    pub fn with_input(mut self, sink: StdinSink) -> Self {
        self.input = Some(sink);
        self
    }

    /// Numbers runs from a counter shared with other producers of runs for the same stream,
    /// so that run numbers never repeat across them.
    pub fn with_run_counter(mut self, runs: Arc<AtomicU64>) -> Self {
        self.runs = runs;
        self
    }

    /// The command each run executes.
    pub fn command(&self) -> &FfmpegCommand {
        &self.command
    }

    /// Runs children until the source finishes or `stop` is cancelled.
    pub async fn run(self) {
        let stream = self.job.stream.clone();
        let policy = self.job.config.restart.clone();
        let mut backoff = Duration::from_secs_f64(policy.initial_backoff);
        tracing::info!(%stream, command = %self.command.shell_line(), "transcoder command");
        loop {
            let run = self.runs.fetch_add(1, Ordering::Relaxed) + 1;
            let started = Instant::now();
            let ended = self.run_once(run).await;
            self.metrics.up.with_label_values(&[&stream]).set(0);
            let outcome = match ended {
                Ended::Finished => RunOutcome::Finished,
                Ended::Stopped => RunOutcome::Stopped,
                Ended::Failed(reason) => {
                    if started.elapsed().as_secs_f64() >= policy.healthy_after {
                        backoff = Duration::from_secs_f64(policy.initial_backoff);
                    }
                    let restart_in = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs_f64(policy.max_backoff));
                    RunOutcome::Failed { reason, restart_in }
                }
            };
            match &outcome {
                RunOutcome::Finished => {
                    tracing::info!(%stream, run, "transcoder finished: the source ended")
                }
                RunOutcome::Stopped => tracing::info!(%stream, run, "transcoder stopped"),
                RunOutcome::Failed { reason, restart_in } => tracing::error!(
                    %stream, run, restart_in_ms = restart_in.as_millis() as u64, "transcoder failed: {reason}"
                ),
            }
            let restart_in = match &outcome {
                RunOutcome::Failed { restart_in, .. } => Some(*restart_in),
                _ => None,
            };
            if self
                .events
                .send(SupervisorEvent::Ended { run, outcome })
                .await
                .is_err()
            {
                return;
            }
            let Some(wait) = restart_in else { return };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.stop.cancelled() => return,
            }
            self.metrics.restarts.with_label_values(&[&stream]).inc();
        }
    }

    async fn run_once(&self, run: u64) -> Ended {
        let stream = &self.job.stream;
        let cmd = &self.command;
        let mut child_cmd = tokio::process::Command::new(&cmd.program);
        child_cmd
            .args(&cmd.args)
            .stdin(if cmd.reads_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut mappings = Vec::new();
        let mut outputs = Vec::new();
        for r in &cmd.renditions {
            match pipe_pair() {
                Ok((read, write)) => {
                    mappings.push(FdMapping {
                        parent_fd: write,
                        child_fd: r.output_fd,
                    });
                    outputs.push(read);
                }
                Err(e) => return Ended::Failed(format!("cannot create a pipe: {e}")),
            }
        }
        let progress_read = match pipe_pair() {
            Ok((read, write)) => {
                mappings.push(FdMapping {
                    parent_fd: write,
                    child_fd: cmd.progress_fd,
                });
                read
            }
            Err(e) => return Ended::Failed(format!("cannot create a pipe: {e}")),
        };
        if let Err(e) = child_cmd.fd_mappings(mappings) {
            return Ended::Failed(format!("cannot map output descriptors: {e}"));
        }
        let spawned = child_cmd.spawn();
        // Dropping the command closes our copies of the pipes' write ends: each pipe then ends
        // when the child closes it or dies.
        drop(child_cmd);
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ended::Failed(format!(
                    "ffmpeg not found at '{}': install it (apt-get install ffmpeg) or set transcoder.ffmpeg",
                    cmd.program.display()
                ));
            }
            Err(e) => {
                return Ended::Failed(format!("cannot start '{}': {e}", cmd.program.display()));
            }
        };
        self.metrics.up.with_label_values(&[stream]).set(1);
        if self
            .events
            .send(SupervisorEvent::Started { run })
            .await
            .is_err()
        {
            return Ended::Stopped;
        }

        let started = Instant::now();
        let activity = Arc::new(AtomicU64::new(0));
        let broken = Arc::new(Notify::new());
        let is_broken = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for (index, read) in outputs.into_iter().enumerate() {
            let reader = OutputReader {
                run,
                rendition: index,
                name: cmd.renditions[index].name.clone(),
                stream: stream.clone(),
                events: self.events.clone(),
                metrics: self.metrics.clone(),
                activity: activity.clone(),
                started,
                broken: broken.clone(),
                is_broken: is_broken.clone(),
            };
            tasks.push(tokio::spawn(reader.read(read)));
        }
        tasks.push(tokio::spawn(read_progress(
            progress_read,
            run,
            stream.clone(),
            self.events.clone(),
            self.metrics.clone(),
        )));
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(stderr) = child.stderr.take() {
            tasks.push(tokio::spawn(log_stderr(
                stderr,
                stream.clone(),
                stderr_tail.clone(),
            )));
        }
        if let (Some(stdin), Some(sink)) = (child.stdin.take(), self.input.as_ref())
            && sink.send((run, stdin)).await.is_err()
        {
            tracing::warn!(%stream, run, "nobody feeds the transcoder's input");
        }

        let stall = Duration::from_secs_f64(self.job.config.restart.stall_timeout);
        let start_limit = Duration::from_secs_f64(self.job.config.restart.start_timeout);
        let mut watchdog = tokio::time::interval(Duration::from_millis(250));
        let mut ended_by: Option<Ended> = None;
        let status = loop {
            tokio::select! {
                status = child.wait() => break status,
                _ = self.stop.cancelled(), if ended_by.is_none() => {
                    ended_by = Some(Ended::Stopped);
                    terminate(&mut child).await;
                }
                _ = broken.notified(), if ended_by.is_none() => {
                    ended_by = Some(Ended::Failed("its output could not be read".to_string()));
                    let _ = child.start_kill();
                }
                _ = watchdog.tick(), if ended_by.is_none() => {
                    // 0 until the first fragment: a starting child gets start_timeout, a
                    // running one stall_timeout between fragments.
                    let last_ms = activity.load(Ordering::Relaxed);
                    let quiet = started.elapsed().saturating_sub(Duration::from_millis(last_ms));
                    let (limit, what) = if last_ms == 0 {
                        (start_limit, "after it started")
                    } else {
                        (stall, "since its last fragment")
                    };
                    if quiet > limit {
                        ended_by = Some(Ended::Failed(format!(
                            "no output for {:.1} s {what}: the child stalled and was killed",
                            limit.as_secs_f64()
                        )));
                        let _ = child.start_kill();
                    }
                }
            }
        };
        // Pipes end once the child is gone; give the readers a moment to drain what it wrote.
        for task in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        if let Some(ended) = ended_by {
            return ended;
        }
        match status {
            Ok(s) if s.success() => Ended::Finished,
            Ok(s) => {
                let tail: Vec<String> = stderr_tail.lock().iter().cloned().collect();
                let words = if tail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", tail.join(" | "))
                };
                Ended::Failed(format!("ffmpeg exited with {s}{words}"))
            }
            Err(e) => Ended::Failed(format!("cannot wait for ffmpeg: {e}")),
        }
    }
}

enum Ended {
    Finished,
    Stopped,
    Failed(String),
}

fn pipe_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = io::pipe()?;
    Ok((read.into(), write.into()))
}

/// Asks the child to exit (SIGTERM lets ffmpeg flush), then kills it after a grace period.
async fn terminate(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = child.start_kill();
}

struct OutputReader {
    run: u64,
    rendition: usize,
    name: String,
    stream: String,
    events: mpsc::Sender<SupervisorEvent>,
    metrics: TranscoderMetrics,
    activity: Arc<AtomicU64>,
    started: Instant,
    broken: Arc<Notify>,
    is_broken: Arc<AtomicBool>,
}

impl OutputReader {
    async fn read(self, fd: OwnedFd) {
        let mut pipe = match tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(stream = %self.stream, rendition = %self.name, error = %e, "cannot read output pipe");
                self.fail();
                return;
            }
        };
        let mut reader = Fmp4Reader::default();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match pipe.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(stream = %self.stream, rendition = %self.name, error = %e, "output pipe read failed");
                    break;
                }
            };
            reader.push(&buf[..n]);
            loop {
                match reader.next_event() {
                    Ok(Some(event)) => {
                        let event = match event {
                            Fmp4Event::Init(init) => SupervisorEvent::Init {
                                run: self.run,
                                rendition: self.rendition,
                                init,
                            },
                            Fmp4Event::Fragment(fragment) => {
                                self.activity.store(
                                    self.started.elapsed().as_millis() as u64,
                                    Ordering::Relaxed,
                                );
                                SupervisorEvent::Fragment {
                                    run: self.run,
                                    rendition: self.rendition,
                                    fragment,
                                }
                            }
                        };
                        if self.events.send(event).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        self.metrics
                            .output_errors
                            .with_label_values(&[&self.stream, &self.name, e.kind()])
                            .inc();
                        tracing::warn!(stream = %self.stream, rendition = %self.name, error = %e, "bad fMP4 from ffmpeg");
                        if reader.is_failed() {
                            self.fail();
                            return;
                        }
                    }
                }
            }
        }
        if let Err(e) = reader.finish() {
            // A child that was killed mid-fragment leaves a partial box; that is expected.
            tracing::debug!(stream = %self.stream, rendition = %self.name, error = %e, "output ended mid-box");
        }
    }

    fn fail(&self) {
        if !self.is_broken.swap(true, Ordering::Relaxed) {
            self.broken.notify_one();
        }
    }
}

async fn read_progress(
    fd: OwnedFd,
    run: u64,
    stream: String,
    events: mpsc::Sender<SupervisorEvent>,
    metrics: TranscoderMetrics,
) {
    let Ok(pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        return;
    };
    let mut lines = BufReader::new(pipe).lines();
    let mut parser = ProgressParser::default();
    while let Ok(Some(line)) = lines.next_line().await {
        let Some(progress) = parser.push_line(&line) else {
            continue;
        };
        if let Some(speed) = progress.speed {
            metrics.speed.with_label_values(&[&stream]).set(speed);
        }
        metrics.fps.with_label_values(&[&stream]).set(progress.fps);
        metrics
            .dropped_frames
            .with_label_values(&[&stream])
            .set(progress.drop_frames as i64);
        if events
            .send(SupervisorEvent::Progress { run, progress })
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn log_stderr(
    stderr: tokio::process::ChildStderr,
    stream: String,
    tail: Arc<Mutex<VecDeque<String>>>,
) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = line.trim().to_string();
        if line.is_empty() {
            continue;
        }
        tracing::warn!(target: "ffmpeg", %stream, "{line}");
        let mut tail = tail.lock();
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

/// Checks that `encoder` can encode on this machine by encoding one small frame, so that an
/// unusable encoder is reported at start-up in one line instead of as endless restarts.
pub async fn preflight(config: &crate::config::TranscoderConfig) -> Result<(), String> {
    use crate::config::Encoder;
    let mut args: Vec<&str> = vec![
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-f",
        "lavfi",
        "-i",
        "color=size=256x144:rate=30",
        "-frames:v",
        "1",
    ];
    match config.encoder {
        Encoder::Nvenc => args.extend([
            "-vf",
            "format=nv12,hwupload_cuda,scale_cuda=128:72",
            "-c:v",
            "h264_nvenc",
        ]),
        Encoder::X264 | Encoder::Copy => args.extend(["-c:v", "libx264"]),
    }
    args.extend(["-f", "null", "-"]);
    let out = tokio::process::Command::new(&config.ffmpeg)
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => format!(
                "ffmpeg not found at '{}': install it (apt-get install ffmpeg) or set transcoder.ffmpeg",
                config.ffmpeg.display()
            ),
            _ => format!("cannot run '{}': {e}", config.ffmpeg.display()),
        })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    // ffmpeg prefixes lines with "[Component @ 0x55d0...] "; the address means nothing to a user.
    let reason: Vec<&str> = stderr
        .lines()
        .map(|l| match (l.starts_with('['), l.find("] ")) {
            (true, Some(i)) => l[i + 2..].trim(),
            _ => l.trim(),
        })
        .filter(|l| !l.is_empty())
        .take(3)
        .collect();
    Err(format!(
        "encoder {} is not usable on this machine: {}",
        config.encoder,
        reason.join(" | ")
    ))
}
