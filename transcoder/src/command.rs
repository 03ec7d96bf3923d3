//! Builds the one ffmpeg command line that turns a source into every rendition of the ladder.
//!
//! The command decodes (or generates) the source once, splits it, and runs one encoder per
//! video rung plus one AAC encoder. Each rendition is a fragmented MP4 written to its own pipe
//! (`pipe:3`, `pipe:4`, ...) with one fragment per frame (`frag_every_frame`), so the packager
//! sees every sample as soon as it is encoded and cuts parts itself. Keyframes are forced on the
//! segment grid (the first frame of each cell of `D` seconds of media time, no scene-cut
//! keyframes), which aligns segment boundaries across renditions. `-output_ts_offset` with
//! `frag_discont` keeps real, mutually consistent decode times in every output, so audio priming
//! does not shift audio against video.
//!
//! A source published over RTMP keeps its own timestamps (`-copyts`): media time is the
//! publisher's clock, so two origins fed the same publish (or one joining it late) cut the same
//! segments and parts with the same decode times, and a player can move between them.

use std::path::{Path, PathBuf};

use crate::config::{Bitrate, Encoder, TranscoderConfig};

/// Media time, in seconds, at which every output's timeline starts.
///
/// A positive offset lets AAC priming (audio that starts 1024 samples early) keep a valid,
/// non-negative decode time.
pub const MEDIA_TIME_OFFSET_SECS: u64 = 10;

/// The first output file descriptor; 0-2 are stdin, stdout and stderr.
const FIRST_OUTPUT_FD: i32 = 3;

/// The font used for the test pattern's clock when none is configured and it exists.
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf";

/// A generated test pattern: colour bars with a burnt-in wall clock, and a tone.
#[derive(Debug, Clone, PartialEq)]
pub struct TestPattern {
    /// Width of the generated picture.
    pub width: u32,
    /// Height of the generated picture.
    pub height: u32,
    /// Seconds to run before the source ends; `None` runs until stopped.
    pub duration: Option<f64>,
    /// Frequency of the tone in Hz.
    pub tone_hz: u32,
    /// TrueType font for the clock; `None` lets fontconfig choose.
    pub font: Option<PathBuf>,
}

/// Container of a source piped into ffmpeg's stdin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// FLV, as RTMP carries it.
    Flv,
    /// MPEG transport stream, as SRT carries it.
    MpegTs,
}

/// Where the media comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// ffmpeg generates a test pattern itself (`lavfi`), paced in real time.
    TestPattern(TestPattern),
    /// Media is written to ffmpeg's stdin.
    Pipe(InputFormat),
    /// A still card with a line of text and silence, generated as fast as possible: what
    /// viewers see while a broadcaster reconnects.
    Slate(SlateCard),
}

/// The still card of [`Source::Slate`].
#[derive(Debug, Clone, PartialEq)]
pub struct SlateCard {
    /// Width of the card.
    pub width: u32,
    /// Height of the card.
    pub height: u32,
    /// The line of text in the middle.
    pub text: String,
    /// Seconds of card to produce.
    pub duration: f64,
    /// TrueType font; `None` lets fontconfig choose.
    pub font: Option<PathBuf>,
}

/// What one output carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenditionKind {
    /// Video; the size is `None` when the source's video is passed through unchanged.
    Video {
        /// Output size, when the transcoder sets it.
        size: Option<(u32, u32)>,
    },
    /// AAC audio.
    Audio {
        /// Output sample rate.
        sample_rate: u32,
        /// Output channels.
        channels: u16,
    },
}

/// One rendition the command produces, and the pipe it is written to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenditionSpec {
    /// Name in URLs.
    pub name: String,
    /// Video or audio.
    pub kind: RenditionKind,
    /// The nominal bit rate the encoder aims at; `None` when passed through.
    pub bitrate: Option<Bitrate>,
    /// The child's file descriptor the rendition is written to.
    pub output_fd: i32,
}

/// Everything needed to start the transcoder for one stream.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscodeJob {
    /// The stream's name, for logs and metrics.
    pub stream: String,
    /// The source.
    pub source: Source,
    /// Encoder and ladder.
    pub config: TranscoderConfig,
    /// Segment duration in seconds: keyframes are forced at every multiple of it.
    pub segment_duration: f64,
    /// When true, a test pattern is generated as fast as possible instead of in real time
    /// (for measuring the real-time factor).
    pub unpaced: bool,
}

/// A ready-to-run command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FfmpegCommand {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// The renditions, in output order.
    pub renditions: Vec<RenditionSpec>,
    /// The descriptor ffmpeg writes `-progress` key=value lines to.
    pub progress_fd: i32,
    /// Whether the source is written to the child's stdin.
    pub reads_stdin: bool,
}

impl FfmpegCommand {
    /// The command as one shell line, for logs and `--print-ffmpeg`.
    pub fn shell_line(&self) -> String {
        let mut line = shell_quote(&self.program.to_string_lossy());
        for arg in &self.args {
            line.push(' ');
            line.push_str(&shell_quote(arg));
        }
        line
    }
}

fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=+,@%".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The renditions a job produces, in output order: video rungs (or one `source` rendition when
/// passing video through), then audio.
pub fn renditions(config: &TranscoderConfig, source: &Source) -> Vec<RenditionSpec> {
    let mut out = Vec::new();
    let mut fd = FIRST_OUTPUT_FD;
    match (config.encoder, source) {
        (Encoder::Copy, Source::TestPattern(TestPattern { width, height, .. }))
        | (Encoder::Copy, Source::Slate(SlateCard { width, height, .. })) => {
            out.push(RenditionSpec {
                name: "source".to_string(),
                kind: RenditionKind::Video {
                    size: Some((*width, *height)),
                },
                bitrate: config.ladder.first().map(|r| r.bitrate),
                output_fd: fd,
            });
            fd += 1;
        }
        (Encoder::Copy, Source::Pipe(_)) => {
            out.push(RenditionSpec {
                name: "source".to_string(),
                kind: RenditionKind::Video { size: None },
                bitrate: None,
                output_fd: fd,
            });
            fd += 1;
        }
        _ => {
            for rung in &config.ladder {
                out.push(RenditionSpec {
                    name: rung.name.clone(),
                    kind: RenditionKind::Video {
                        size: Some((rung.width, rung.height)),
                    },
                    bitrate: Some(rung.bitrate),
                    output_fd: fd,
                });
                fd += 1;
            }
        }
    }
    out.push(RenditionSpec {
        name: config.audio.name.clone(),
        kind: RenditionKind::Audio {
            sample_rate: config.audio.sample_rate,
            channels: config.audio.channels,
        },
        bitrate: Some(config.audio.bitrate),
        output_fd: fd,
    });
    out
}

/// Escapes a value for a filter option inside a filtergraph (`:` `\` `'` `,` `;` `[` `]`).
fn filter_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, ':' | '\\' | '\'' | ',' | ';' | '[' | ']' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The test pattern with the wall clock (UTC, to the millisecond, as each frame is made)
/// burned in: the latency probe. The origin dates a generated stream's segments from the
/// run's start, so the program date-time of a frame is the clock in its picture, less
/// ffmpeg's start-up (about 0.15 s on a 2-core machine), and a player's now − PDT of the
/// frame on screen is its glass-to-glass latency (high by that start-up, never low).
fn test_pattern_video(p: &TestPattern, fps: u32) -> String {
    let font = font_option(&p.font);
    let size = (p.height / 12).max(12);
    format!(
        "testsrc2=size={w}x{h}:rate={fps},drawtext={font}fontsize={size}:fontcolor=white:box=1:boxcolor=black@0.6:boxborderw={b}:x=(w-tw)/2:y=h-th-{m}:text='%{{gmtime\\:%X.%3N}} UTC'",
        w = p.width,
        h = p.height,
        b = size / 4,
        m = size / 2,
    )
}

fn font_option(font: &Option<PathBuf>) -> String {
    match font {
        Some(f) => format!("fontfile={}:", filter_value(&f.to_string_lossy())),
        None if Path::new(DEFAULT_FONT).exists() => {
            format!("fontfile={}:", filter_value(DEFAULT_FONT))
        }
        None => String::new(),
    }
}

fn slate_video(card: &SlateCard, fps: u32) -> String {
    let size = (card.height / 10).max(12);
    format!(
        "color=c=0x1d2330:size={w}x{h}:rate={fps},drawtext={font}fontsize={size}:fontcolor=white:x=(w-tw)/2:y=(h-th)/2:text='{text}'",
        w = card.width,
        h = card.height,
        font = font_option(&card.font),
        // Inside quotes only the quote itself would end the value.
        text = card.text.replace('\'', ""),
    )
}

/// `-force_key_frames`: the first frame of every grid cell of `segment` seconds of media time
/// (the first frame of all, too), whatever time the media starts at (a published source keeps
/// the publisher's timestamps; a frame a millisecond early counts as on the boundary).
fn keyframe_expression(segment: f64) -> String {
    format!(
        "expr:if(isnan(prev_forced_t),1,gte(floor((t+0.001)/{segment}),floor((prev_forced_t+0.001)/{segment})+1))"
    )
}

fn movflags_output(args: &mut Vec<String>, fd: i32) {
    args.extend(
        [
            "-f",
            "mp4",
            "-movflags",
            "+cmaf+frag_every_frame+skip_trailer+frag_discont",
            "-output_ts_offset",
            &MEDIA_TIME_OFFSET_SECS.to_string(),
            &format!("pipe:{fd}"),
        ]
        .map(String::from),
    );
}

impl TranscodeJob {
    /// Builds the command line.
    pub fn command(&self) -> FfmpegCommand {
        let c = &self.config;
        let renditions = renditions(c, &self.source);
        let progress_fd = renditions.last().map_or(FIRST_OUTPUT_FD, |r| r.output_fd) + 1;
        let mut args: Vec<String> = [
            "-hide_banner",
            "-nostdin",
            "-nostats",
            "-loglevel",
            &c.log_level,
            "-progress",
            &format!("pipe:{progress_fd}"),
            "-stats_period",
            "1",
        ]
        .map(String::from)
        .to_vec();

        // Inputs: the video input is always #0, the audio input #0 (piped) or #1 (generated).
        let audio_input = match &self.source {
            Source::TestPattern(p) => {
                for input in [
                    test_pattern_video(p, c.fps),
                    format!(
                        "sine=frequency={}:sample_rate={}:beep_factor=4",
                        p.tone_hz, c.audio.sample_rate
                    ),
                ] {
                    if !self.unpaced {
                        args.push("-re".into());
                    }
                    if let Some(d) = p.duration {
                        args.extend(["-t".to_string(), format!("{d}")]);
                    }
                    args.extend([
                        "-f".to_string(),
                        "lavfi".to_string(),
                        "-i".to_string(),
                        input,
                    ]);
                }
                "1:a"
            }
            Source::Slate(card) => {
                let layout = if c.audio.channels == 1 {
                    "mono"
                } else {
                    "stereo"
                };
                for input in [
                    slate_video(card, c.fps),
                    format!("anullsrc=r={}:cl={layout}", c.audio.sample_rate),
                ] {
                    args.extend([
                        "-t".to_string(),
                        format!("{}", card.duration),
                        "-f".to_string(),
                        "lavfi".to_string(),
                        "-i".to_string(),
                        input,
                    ]);
                }
                "1:a"
            }
            Source::Pipe(format) => {
                if c.encoder == Encoder::Nvenc {
                    args.extend(
                        ["-hwaccel", "cuda", "-hwaccel_output_format", "cuda"].map(String::from),
                    );
                }
                // Frame-threaded decoding holds (threads - 1) frames back; a published source
                // is decoded as it arrives instead (and a freeze frame is shown at once).
                args.extend(
                    ["-flags", "low_delay", "-analyzeduration", "500000"].map(String::from),
                );
                // RTMP timestamps are the publisher's clock from its publish's start: kept,
                // they place every frame at the same media time on every origin fed the same
                // publish. (MPEG-TS from SRT is rebased: its starvation freezer's frames stall
                // ffmpeg's demuxer when its timestamps are kept.)
                if *format == InputFormat::Flv {
                    args.push("-copyts".into());
                }
                args.extend(
                    [
                        "-f",
                        match format {
                            InputFormat::Flv => "flv",
                            InputFormat::MpegTs => "mpegts",
                        },
                        "-i",
                        "pipe:0",
                    ]
                    .map(String::from),
                );
                "0:a"
            }
        };

        let video: Vec<&RenditionSpec> = renditions
            .iter()
            .filter(|r| matches!(r.kind, RenditionKind::Video { .. }))
            .collect();
        let gop = ((f64::from(c.fps) * self.segment_duration).round() as u32).max(1);
        let force_keys = keyframe_expression(self.segment_duration);
        let passthrough = c.encoder == Encoder::Copy && matches!(self.source, Source::Pipe(_));

        if !passthrough {
            args.push("-filter_complex".into());
            args.push(self.filter_graph(&video));
        }
        for (i, r) in video.iter().enumerate() {
            if passthrough {
                args.extend(["-map", "0:v:0", "-c:v", "copy"].map(String::from));
            } else {
                args.extend(["-map".to_string(), format!("[v{i}]")]);
                let rate = r.bitrate.map_or(0, Bitrate::kbps);
                let rate = format!("{rate}k");
                match c.encoder {
                    Encoder::Nvenc => args.extend(
                        [
                            "-c:v",
                            "h264_nvenc",
                            "-preset",
                            &c.nvenc_preset,
                            "-tune",
                            "ll",
                            "-profile:v",
                            "high",
                            "-rc",
                            "cbr",
                            "-b:v",
                            &rate,
                            "-maxrate",
                            &rate,
                            "-bufsize",
                            &rate,
                            "-bf",
                            "0",
                            "-g",
                            &gop.to_string(),
                            "-forced-idr",
                            "1",
                            "-no-scenecut",
                            "1",
                            "-zerolatency",
                            "1",
                            "-delay",
                            "0",
                            "-r",
                            &c.fps.to_string(),
                        ]
                        .map(String::from),
                    ),
                    Encoder::X264 | Encoder::Copy => args.extend(
                        [
                            "-c:v",
                            "libx264",
                            "-preset",
                            &c.x264_preset,
                            "-tune",
                            "zerolatency",
                            "-profile:v",
                            "high",
                            "-pix_fmt",
                            "yuv420p",
                            "-b:v",
                            &rate,
                            "-maxrate",
                            &rate,
                            "-bufsize",
                            &rate,
                            "-bf",
                            "0",
                            "-g",
                            &gop.to_string(),
                            "-keyint_min",
                            &gop.to_string(),
                            "-sc_threshold",
                            "0",
                        ]
                        .map(String::from),
                    ),
                }
                args.extend(["-force_key_frames".to_string(), force_keys.clone()]);
            }
            args.push("-an".into());
            movflags_output(&mut args, r.output_fd);
        }

        if let Some(audio) = renditions
            .iter()
            .find(|r| matches!(r.kind, RenditionKind::Audio { .. }))
        {
            args.extend(
                [
                    "-map",
                    audio_input,
                    "-vn",
                    "-c:a",
                    "aac",
                    "-b:a",
                    &format!("{}k", c.audio.bitrate.kbps()),
                    "-ar",
                    &c.audio.sample_rate.to_string(),
                    "-ac",
                    &c.audio.channels.to_string(),
                ]
                .map(String::from),
            );
            movflags_output(&mut args, audio.output_fd);
        }

        FfmpegCommand {
            program: c.ffmpeg.clone(),
            args,
            renditions,
            progress_fd,
            reads_stdin: matches!(self.source, Source::Pipe(_)),
        }
    }

    fn filter_graph(&self, video: &[&RenditionSpec]) -> String {
        let c = &self.config;
        let n = video.len();
        let cuda = c.encoder == Encoder::Nvenc;
        let mut head = String::from("[0:v]");
        match (&self.source, cuda) {
            (Source::TestPattern(_) | Source::Slate(_), true) => {
                head.push_str("format=nv12,hwupload_cuda,");
            }
            (_, false) => head.push_str(&format!("fps={},", c.fps)),
            (Source::Pipe(_), true) => {}
        }
        let labels: String = (0..n).map(|i| format!("[s{i}]")).collect();
        let mut graph = format!("{head}split={n}{labels}");
        for (i, r) in video.iter().enumerate() {
            let scale = match r.kind {
                RenditionKind::Video { size: Some((w, h)) } if cuda => {
                    format!("scale_cuda={w}:{h}")
                }
                RenditionKind::Video { size: Some((w, h)) } => {
                    format!("scale={w}:{h}:flags=bicubic,setsar=1")
                }
                _ => "null".to_string(),
            };
            graph.push_str(&format!(";[s{i}]{scale}[v{i}]"));
        }
        graph
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::VideoRung;

    fn job(encoder: Encoder, source: Source) -> TranscodeJob {
        let config = TranscoderConfig {
            encoder,
            ladder: vec![
                VideoRung {
                    name: "720p".into(),
                    width: 1280,
                    height: 720,
                    bitrate: Bitrate(2_800_000),
                },
                VideoRung {
                    name: "360p".into(),
                    width: 640,
                    height: 360,
                    bitrate: Bitrate(800_000),
                },
            ],
            ..TranscoderConfig::default()
        };
        TranscodeJob {
            stream: "demo".into(),
            source,
            config,
            segment_duration: 2.0,
            unpaced: false,
        }
    }

    fn pattern() -> Source {
        Source::TestPattern(TestPattern {
            width: 1280,
            height: 720,
            duration: Some(5.0),
            tone_hz: 1000,
            font: Some(PathBuf::from("/f.ttf")),
        })
    }

    fn window<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
        args.iter()
            .enumerate()
            .filter(|(_, a)| *a == flag)
            .filter_map(|(i, _)| args.get(i + 1).map(String::as_str))
            .collect()
    }

    #[test]
    fn x264_ladder_has_one_pipe_per_rendition_and_keyframes_on_the_grid() {
        let cmd = job(Encoder::X264, pattern()).command();
        let names: Vec<_> = cmd.renditions.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["720p", "360p", "audio"]);
        let fds: Vec<_> = cmd.renditions.iter().map(|r| r.output_fd).collect();
        assert_eq!(fds, [3, 4, 5]);
        assert_eq!(cmd.progress_fd, 6);
        let outputs: Vec<_> = cmd.args.iter().filter(|a| a.starts_with("pipe:")).collect();
        assert_eq!(outputs, ["pipe:6", "pipe:3", "pipe:4", "pipe:5"]);
        assert_eq!(window(&cmd.args, "-c:v"), ["libx264", "libx264"]);
        assert_eq!(window(&cmd.args, "-g"), ["60", "60"]);
        assert_eq!(window(&cmd.args, "-sc_threshold"), ["0", "0"]);
        assert_eq!(
            window(&cmd.args, "-force_key_frames"),
            [keyframe_expression(2.0).as_str(); 2]
        );
        assert_eq!(window(&cmd.args, "-tune"), ["zerolatency", "zerolatency"]);
        assert_eq!(window(&cmd.args, "-b:v"), ["2800k", "800k"]);
        assert_eq!(window(&cmd.args, "-c:a"), ["aac"]);
        assert_eq!(
            window(&cmd.args, "-t"),
            ["5", "5"],
            "-t binds to each input"
        );
        assert_eq!(window(&cmd.args, "-re").len(), 2);
        let graph = window(&cmd.args, "-filter_complex")[0];
        assert_eq!(
            graph,
            "[0:v]fps=30,split=2[s0][s1];[s0]scale=1280:720:flags=bicubic,setsar=1[v0];[s1]scale=640:360:flags=bicubic,setsar=1[v1]"
        );
        assert!(!cmd.reads_stdin);
        assert!(
            cmd.args.iter().any(|a| a.contains("gmtime")),
            "burnt-in wall clock"
        );
    }

    #[test]
    fn nvenc_scales_on_the_gpu_and_forces_idr_keyframes() {
        let cmd = job(Encoder::Nvenc, Source::Pipe(InputFormat::Flv)).command();
        assert_eq!(window(&cmd.args, "-hwaccel"), ["cuda"]);
        assert_eq!(window(&cmd.args, "-c:v"), ["h264_nvenc", "h264_nvenc"]);
        assert_eq!(window(&cmd.args, "-forced-idr"), ["1", "1"]);
        let graph = window(&cmd.args, "-filter_complex")[0];
        assert_eq!(
            graph,
            "[0:v]split=2[s0][s1];[s0]scale_cuda=1280:720[v0];[s1]scale_cuda=640:360[v1]"
        );
        assert!(cmd.reads_stdin);
        assert_eq!(window(&cmd.args, "-i"), ["pipe:0"]);
        let pattern_cmd = job(Encoder::Nvenc, pattern()).command();
        assert!(window(&pattern_cmd.args, "-filter_complex")[0].contains("hwupload_cuda"));
    }

    #[test]
    fn copy_passes_the_source_video_through_as_one_rendition() {
        let cmd = job(Encoder::Copy, Source::Pipe(InputFormat::MpegTs)).command();
        let names: Vec<_> = cmd.renditions.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["source", "audio"]);
        assert_eq!(window(&cmd.args, "-c:v"), ["copy"]);
        assert!(window(&cmd.args, "-filter_complex").is_empty());
        assert_eq!(window(&cmd.args, "-map"), ["0:v:0", "0:a"]);
    }

    #[test]
    fn every_output_is_per_frame_cmaf_with_real_decode_times() {
        let cmd = job(Encoder::X264, pattern()).command();
        assert_eq!(
            window(&cmd.args, "-movflags"),
            ["+cmaf+frag_every_frame+skip_trailer+frag_discont"; 3]
        );
        assert_eq!(window(&cmd.args, "-output_ts_offset"), ["10"; 3]);
    }

    #[test]
    fn the_shell_line_quotes_what_a_shell_would_split() {
        let cmd = job(Encoder::X264, pattern()).command();
        let line = cmd.shell_line();
        assert!(line.starts_with("ffmpeg -hide_banner"), "{line}");
        assert!(line.contains("'[0:v]fps=30,split=2"), "{line}");
    }
}
