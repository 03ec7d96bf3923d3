//! How a simulated player picks its rendition: a fixed one, by a bandwidth trace (the
//! bandwidth a viewer's network would give, over time), or by the throughput it measures, each
//! the way players do it: the best variant whose peak bandwidth fits within a safety factor.

use std::str::FromStr;
use std::time::Duration;

/// The share of the available bandwidth a player lets a variant's peak use (hls.js uses 0.7
/// to switch up and 0.95 to stay; one factor keeps the trace's switches predictable).
pub const SAFETY: f64 = 0.8;

/// Available bandwidth over time: steps of (bits per second, how long), repeated.
#[derive(Debug, Clone, PartialEq)]
pub struct BandwidthTrace {
    steps: Vec<(u64, Duration)>,
}

/// A trace that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bandwidth trace {text:?}: {reason} (expected RATE:TIME,... such as 5M:10s,800k:5s)")]
pub struct TraceError {
    text: String,
    reason: String,
}

impl FromStr for BandwidthTrace {
    type Err = TraceError;

    /// Reads `RATE:TIME,...`, rates in bits per second with an optional `k`, `M` or `G`, times
    /// as humantime durations.
    ///
    /// ```
    /// # use corral_loadtest::swarm::abr::BandwidthTrace;
    /// # use std::time::Duration;
    /// let t: BandwidthTrace = "5M:10s,800k:5s".parse().unwrap();
    /// assert_eq!(t.at(Duration::from_secs(3)), 5_000_000);
    /// assert_eq!(t.at(Duration::from_secs(12)), 800_000);
    /// assert_eq!(t.at(Duration::from_secs(16)), 5_000_000, "repeats");
    /// ```
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |reason: &str| TraceError {
            text: text.to_string(),
            reason: reason.to_string(),
        };
        let mut steps = Vec::new();
        for step in text.split(',') {
            let (rate, time) = step
                .trim()
                .split_once(':')
                .ok_or_else(|| fail("a step without ':'"))?;
            let (digits, scale) = match rate.chars().last() {
                Some('k' | 'K') => (&rate[..rate.len() - 1], 1e3),
                Some('M' | 'm') => (&rate[..rate.len() - 1], 1e6),
                Some('G' | 'g') => (&rate[..rate.len() - 1], 1e9),
                _ => (rate, 1.0),
            };
            let value: f64 = digits
                .parse()
                .map_err(|_| fail("a rate that is no number"))?;
            if !(value * scale >= 1.0 && value * scale < 1e12) {
                return Err(fail("a rate out of 1 b/s to 1 Tb/s"));
            }
            let duration =
                humantime::parse_duration(time).map_err(|_| fail("a time that is no duration"))?;
            if duration.is_zero() {
                return Err(fail("a step of no time"));
            }
            steps.push(((value * scale) as u64, duration));
        }
        Ok(Self { steps })
    }
}

impl BandwidthTrace {
    /// The bandwidth `elapsed` into the run.
    pub fn at(&self, elapsed: Duration) -> u64 {
        let cycle: Duration = self.steps.iter().map(|(_, d)| *d).sum();
        let mut into = Duration::from_nanos(
            (elapsed.as_nanos() % cycle.as_nanos().max(1)).min(u128::from(u64::MAX)) as u64,
        );
        for (rate, d) in &self.steps {
            if into < *d {
                return *rate;
            }
            into -= *d;
        }
        self.steps.last().map_or(0, |(r, _)| *r)
    }
}

/// How a player chooses.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    /// Always the rendition of this name (`720p`).
    Fixed(String),
    /// By the bandwidth the trace gives.
    Trace(BandwidthTrace),
    /// By the throughput measured on parts (an estimate that follows the last few).
    Measured,
}

/// The index, among `bandwidths` sorted from lowest, of the best whose peak fits within
/// [`SAFETY`] of `available`; the lowest when none fits.
///
/// ```
/// # use corral_loadtest::swarm::abr::choose;
/// let ladder = [900_000, 1_800_000, 3_300_000];
/// assert_eq!(choose(&ladder, 5_000_000), 2);
/// assert_eq!(choose(&ladder, 2_000_000), 0, "1.8 M does not fit in 0.8 × 2 M");
/// assert_eq!(choose(&ladder, 100_000), 0);
/// ```
pub fn choose(bandwidths: &[u64], available: u64) -> usize {
    let budget = available as f64 * SAFETY;
    bandwidths
        .iter()
        .rposition(|b| (*b as f64) <= budget)
        .unwrap_or(0)
}

/// A throughput estimate: an exponentially weighted average of parts' bits per second, so one
/// slow or fast part does not flip the choice (hls.js uses two such averages).
#[derive(Debug, Clone, Copy, Default)]
pub struct Throughput {
    estimate: Option<f64>,
}

impl Throughput {
    /// Weight of the newest sample.
    const WEIGHT: f64 = 0.3;

    /// Counts a download of `bytes` that took `elapsed`.
    pub fn sample(&mut self, bytes: usize, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64().max(1e-4);
        let bps = bytes as f64 * 8.0 / seconds;
        self.estimate = Some(match self.estimate {
            None => bps,
            Some(e) => e + Self::WEIGHT * (bps - e),
        });
    }

    /// The estimate, bits per second.
    pub fn estimate(&self) -> Option<u64> {
        self.estimate.map(|e| e as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_traces_say_what_is_expected() {
        for bad in ["", "5M", "x:1s", "5M:", "5M:0s", "0:1s", "5M:1s,"] {
            let err = bad.parse::<BandwidthTrace>().expect_err(bad);
            assert!(err.to_string().contains("expected RATE:TIME"), "{err}");
        }
    }

    #[test]
    fn throughput_follows_the_parts_without_jumping() {
        let mut t = Throughput::default();
        assert_eq!(t.estimate(), None);
        t.sample(125_000, Duration::from_millis(100));
        assert_eq!(t.estimate(), Some(10_000_000));
        t.sample(12_500, Duration::from_millis(100));
        assert_eq!(t.estimate(), Some(7_300_000));
    }
}
