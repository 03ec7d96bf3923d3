//! The `transcoder:` section of the origin's config: which encoder, which ladder, how the
//! child process is supervised.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};
use yaml_config::{Invalid, check_name, check_range};

/// A bit rate in bits per second, written in config as `5000k`, `5M` or a plain number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bitrate(pub u64);

impl Bitrate {
    /// Kilobits per second, as ffmpeg's `-b:v 5000k` takes it.
    pub fn kbps(self) -> u64 {
        self.0 / 1000
    }
}

impl fmt::Display for Bitrate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(1_000_000) {
            write!(f, "{}M", self.0 / 1_000_000)
        } else if self.0.is_multiple_of(1000) {
            write!(f, "{}k", self.0 / 1000)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl FromStr for Bitrate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (digits, scale) = match s.as_bytes().last() {
            Some(b'k' | b'K') => (&s[..s.len() - 1], 1_000),
            Some(b'm' | b'M') => (&s[..s.len() - 1], 1_000_000),
            _ => (s, 1),
        };
        let value: f64 = digits
            .parse()
            .map_err(|_| format!("a bit rate such as 2800k or 5M, got {s:?}"))?;
        if !value.is_finite() || value <= 0.0 || value * f64::from(scale) > 1e12 {
            return Err(format!("a positive bit rate below 1000G, got {s:?}"));
        }
        Ok(Bitrate((value * f64::from(scale)).round() as u64))
    }
}

impl<'de> Deserialize<'de> for Bitrate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) if n > 0 => Ok(Bitrate(n)),
            Raw::Number(_) => Err(serde::de::Error::custom("a positive bit rate")),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Which encoder produces the video renditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Encoder {
    /// libx264 on the CPU.
    #[default]
    X264,
    /// h264_nvenc on an NVIDIA GPU, scaling with scale_cuda.
    Nvenc,
    /// No video transcoding: the source's video is passed through as one rendition.
    Copy,
}

impl fmt::Display for Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encoder::X264 => "x264",
            Encoder::Nvenc => "nvenc",
            Encoder::Copy => "copy",
        })
    }
}

/// One video rung of the ladder.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoRung {
    /// The rendition's name in URLs, e.g. `720p`.
    pub name: String,
    /// Output width in pixels (even).
    pub width: u32,
    /// Output height in pixels (even).
    pub height: u32,
    /// Target bit rate; also the VBV maximum, so segments stay near it.
    pub bitrate: Bitrate,
}

impl VideoRung {
    fn new(name: &str, width: u32, height: u32, kbps: u64) -> Self {
        Self {
            name: name.to_string(),
            width,
            height,
            bitrate: Bitrate(kbps * 1000),
        }
    }
}

/// The audio rendition (AAC-LC), encoded once and shared by every video rendition.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AudioRung {
    /// The rendition's name in URLs.
    pub name: String,
    /// AAC bit rate.
    pub bitrate: Bitrate,
    /// Output sample rate in Hz.
    pub sample_rate: u32,
    /// Output channel count.
    pub channels: u16,
}

impl Default for AudioRung {
    fn default() -> Self {
        Self {
            name: "audio".to_string(),
            bitrate: Bitrate(128_000),
            sample_rate: 48_000,
            channels: 2,
        }
    }
}

/// How a dead child is restarted.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestartPolicy {
    /// Seconds to wait before the first restart.
    pub initial_backoff: f64,
    /// The wait doubles after each failed run, up to this many seconds.
    pub max_backoff: f64,
    /// A run that lasted this many seconds resets the wait to `initial_backoff`.
    pub healthy_after: f64,
    /// Seconds without an output fragment, once the child has produced one, before it is
    /// killed as stalled (hung) and restarted: a few part targets (every rendition writes a
    /// fragment per part).
    pub stall_timeout: f64,
    /// Seconds a new child may take to produce its first fragment before it is killed as
    /// stalled.
    pub start_timeout: f64,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            initial_backoff: 0.5,
            max_backoff: 10.0,
            healthy_after: 30.0,
            stall_timeout: 2.0,
            start_timeout: 10.0,
        }
    }
}

/// The `transcoder:` config section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TranscoderConfig {
    /// The ffmpeg executable, a path or a name looked up in `PATH`.
    pub ffmpeg: PathBuf,
    /// `x264` (default), `nvenc` or `copy`.
    pub encoder: Encoder,
    /// x264 preset; `veryfast` is the usual live trade-off.
    pub x264_preset: String,
    /// NVENC preset, `p1` (fastest) to `p7`.
    pub nvenc_preset: String,
    /// Output frame rate of every video rendition.
    pub fps: u32,
    /// Video rungs, highest first.
    pub ladder: Vec<VideoRung>,
    /// The audio rendition.
    pub audio: AudioRung,
    /// ffmpeg's `-loglevel` for what it writes to our log.
    pub log_level: String,
    /// Restart and stall policy.
    pub restart: RestartPolicy,
}

impl Default for TranscoderConfig {
    fn default() -> Self {
        Self {
            ffmpeg: PathBuf::from("ffmpeg"),
            encoder: Encoder::X264,
            x264_preset: "veryfast".to_string(),
            nvenc_preset: "p4".to_string(),
            fps: 30,
            ladder: vec![
                VideoRung::new("1080p", 1920, 1080, 5000),
                VideoRung::new("720p", 1280, 720, 2800),
                VideoRung::new("480p", 854, 480, 1400),
                VideoRung::new("360p", 640, 360, 800),
            ],
            audio: AudioRung::default(),
            log_level: "warning".to_string(),
            restart: RestartPolicy::default(),
        }
    }
}

const X264_PRESETS: &[&str] = &[
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
];
const NVENC_PRESETS: &[&str] = &["p1", "p2", "p3", "p4", "p5", "p6", "p7"];
const FFMPEG_LOG_LEVELS: &[&str] = &[
    "quiet", "panic", "fatal", "error", "warning", "info", "verbose", "debug",
];

impl TranscoderConfig {
    /// Checks every value; `prefix` is the section's key, e.g. `transcoder`.
    pub fn validate(&self, prefix: &str) -> Result<(), Invalid> {
        let key = |k: &str| format!("{prefix}.{k}");
        if !X264_PRESETS.contains(&self.x264_preset.as_str()) {
            return Err(Invalid::new(
                key("x264_preset"),
                X264_PRESETS.join(", "),
                &self.x264_preset,
            ));
        }
        if !NVENC_PRESETS.contains(&self.nvenc_preset.as_str()) {
            return Err(Invalid::new(
                key("nvenc_preset"),
                NVENC_PRESETS.join(", "),
                &self.nvenc_preset,
            ));
        }
        if !FFMPEG_LOG_LEVELS.contains(&self.log_level.as_str()) {
            return Err(Invalid::new(
                key("log_level"),
                FFMPEG_LOG_LEVELS.join(", "),
                &self.log_level,
            ));
        }
        check_range(&key("fps"), self.fps, 1, 120, "frames per second")?;
        if self.encoder != Encoder::Copy && self.ladder.is_empty() {
            return Err(Invalid::new(
                key("ladder"),
                "at least one video rung",
                "an empty list",
            ));
        }
        if self.ladder.len() > 8 {
            return Err(Invalid::new(
                key("ladder"),
                "at most 8 rungs",
                self.ladder.len(),
            ));
        }
        let mut names = vec![self.audio.name.as_str()];
        for (i, rung) in self.ladder.iter().enumerate() {
            let k = |f: &str| format!("{prefix}.ladder[{i}].{f}");
            check_name(&k("name"), &rung.name)?;
            if names.contains(&rung.name.as_str()) {
                return Err(Invalid::new(
                    k("name"),
                    "a name no other rendition uses",
                    &rung.name,
                ));
            }
            names.push(&rung.name);
            check_range(&k("width"), rung.width, 16, 7680, "pixels")?;
            check_range(&k("height"), rung.height, 16, 4320, "pixels")?;
            if rung.width % 2 != 0 || rung.height % 2 != 0 {
                return Err(Invalid::new(
                    k("width"),
                    "even width and height (4:2:0 video)",
                    format!("{}x{}", rung.width, rung.height),
                ));
            }
            check_range(
                &k("bitrate"),
                rung.bitrate,
                Bitrate(50_000),
                Bitrate(100_000_000),
                "a bit rate",
            )?;
        }
        check_name(&key("audio.name"), &self.audio.name)?;
        check_range(
            &key("audio.bitrate"),
            self.audio.bitrate,
            Bitrate(16_000),
            Bitrate(512_000),
            "a bit rate",
        )?;
        if ![44_100, 48_000].contains(&self.audio.sample_rate) {
            return Err(Invalid::new(
                key("audio.sample_rate"),
                "44100 or 48000",
                self.audio.sample_rate,
            ));
        }
        check_range(
            &key("audio.channels"),
            self.audio.channels,
            1,
            2,
            "channels",
        )?;
        let r = &self.restart;
        check_range(
            &key("restart.initial_backoff"),
            r.initial_backoff,
            0.05,
            60.0,
            "seconds",
        )?;
        check_range(
            &key("restart.max_backoff"),
            r.max_backoff,
            r.initial_backoff,
            600.0,
            "seconds",
        )?;
        check_range(
            &key("restart.healthy_after"),
            r.healthy_after,
            1.0,
            3600.0,
            "seconds",
        )?;
        check_range(
            &key("restart.stall_timeout"),
            r.stall_timeout,
            0.2,
            600.0,
            "seconds",
        )?;
        check_range(
            &key("restart.start_timeout"),
            r.start_timeout,
            1.0,
            600.0,
            "seconds",
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitrates_read_as_engineers_write_them() {
        assert_eq!("2800k".parse::<Bitrate>(), Ok(Bitrate(2_800_000)));
        assert_eq!("5M".parse::<Bitrate>(), Ok(Bitrate(5_000_000)));
        assert_eq!("1.5M".parse::<Bitrate>(), Ok(Bitrate(1_500_000)));
        assert_eq!("640000".parse::<Bitrate>(), Ok(Bitrate(640_000)));
        assert!("fast".parse::<Bitrate>().is_err());
        assert!("-5k".parse::<Bitrate>().is_err());
        assert_eq!(Bitrate(2_800_000).to_string(), "2800k");
        assert_eq!(Bitrate(5_000_000).to_string(), "5M");
    }

    #[test]
    fn the_default_ladder_is_the_classic_four_rungs_and_is_valid() {
        let c = TranscoderConfig::default();
        let names: Vec<_> = c.ladder.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["1080p", "720p", "480p", "360p"]);
        c.validate("transcoder").expect("defaults are valid");
    }

    #[test]
    fn odd_sizes_and_duplicate_names_are_refused() {
        let mut c = TranscoderConfig::default();
        c.ladder[1].width = 1279;
        assert_eq!(c.validate("t").expect_err("odd").key, "t.ladder[1].width");
        let mut c = TranscoderConfig::default();
        c.ladder[2].name = "audio".into();
        assert_eq!(c.validate("t").expect_err("dup").key, "t.ladder[2].name");
    }
}
