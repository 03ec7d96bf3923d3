//! Parses the key=value blocks ffmpeg writes with `-progress`.
//!
//! A block is a run of lines such as `frame=120`, `fps=30.00`, `speed=1.01x`, ending with
//! `progress=continue` (or `progress=end` when ffmpeg finishes).

/// One progress report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// Frames encoded so far (first video output).
    pub frame: u64,
    /// Frames encoded per second, averaged by ffmpeg.
    pub fps: f64,
    /// Media time produced divided by wall time; `None` while ffmpeg prints `N/A`.
    pub speed: Option<f64>,
    /// Media time written, in microseconds.
    pub out_time_us: Option<i64>,
    /// Frames ffmpeg dropped to keep the output rate.
    pub drop_frames: u64,
    /// Frames ffmpeg duplicated to keep the output rate.
    pub dup_frames: u64,
    /// Whether this is ffmpeg's final report.
    pub end: bool,
}

/// Accumulates lines until a block is complete.
#[derive(Debug, Default)]
pub struct ProgressParser {
    current: Progress,
}

impl ProgressParser {
    /// Feeds one line; returns the report when the line completes a block.
    pub fn push_line(&mut self, line: &str) -> Option<Progress> {
        let (key, value) = line.trim().split_once('=')?;
        let value = value.trim();
        match key {
            "frame" => self.current.frame = value.parse().unwrap_or(self.current.frame),
            "fps" => self.current.fps = value.parse().unwrap_or(self.current.fps),
            "speed" => {
                self.current.speed = value.trim_end_matches('x').trim().parse().ok();
            }
            "out_time_us" => self.current.out_time_us = value.parse().ok(),
            "drop_frames" => self.current.drop_frames = value.parse().unwrap_or(0),
            "dup_frames" => self.current.dup_frames = value.parse().unwrap_or(0),
            "progress" => {
                let mut done = std::mem::take(&mut self.current);
                done.end = value == "end";
                return Some(done);
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_ends_at_the_progress_line() {
        let mut p = ProgressParser::default();
        let block = "frame=120\nfps=29.97\nstream_0_0_q=23.0\nbitrate=N/A\ntotal_size=1234\n\
                     out_time_us=4000000\nout_time=00:00:04.000000\ndup_frames=1\ndrop_frames=2\n\
                     speed=1.01x\nprogress=continue\n";
        let reports: Vec<_> = block.lines().filter_map(|l| p.push_line(l)).collect();
        assert_eq!(
            reports,
            [Progress {
                frame: 120,
                fps: 29.97,
                speed: Some(1.01),
                out_time_us: Some(4_000_000),
                drop_frames: 2,
                dup_frames: 1,
                end: false
            }]
        );
    }

    #[test]
    fn unknown_speed_and_garbage_lines_do_not_break_parsing() {
        let mut p = ProgressParser::default();
        assert_eq!(p.push_line("speed=N/A"), None);
        assert_eq!(p.push_line("no equals sign"), None);
        assert_eq!(p.push_line("fps=abc"), None);
        let r = p.push_line("progress=end").expect("block ends");
        assert!(r.end);
        assert_eq!(r.speed, None);
        assert_eq!(r.fps, 0.0);
    }
}
