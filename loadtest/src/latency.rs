//! Latency histograms that cross process boundaries: every load mode records microseconds in
//! an HdrHistogram, and worker processes send theirs to the parent as (value, count) pairs so
//! that merged quantiles are those of one histogram of everything.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The longest latency told apart, microseconds (an hour); longer ones count as this.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Latencies in microseconds, in an HdrHistogram (three significant digits). Crosses the pipe
/// from a worker as (value, count) pairs, one per recorded bucket, so merging loses nothing the
/// histogram itself kept.
///
/// ```
/// use corral_loadtest::latency::Latency;
/// let mut a = Latency::default();
/// a.record(1_000);
/// let pairs: Vec<(u64, u64)> = a.clone().into();
/// let mut b = Latency::from(pairs);
/// b.merge(&a);
/// assert_eq!(b.quantiles().count, 2);
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(into = "Vec<(u64, u64)>", from = "Vec<(u64, u64)>")]
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Self(Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("constant bounds are valid"))
    }
}

impl From<Latency> for Vec<(u64, u64)> {
    fn from(latency: Latency) -> Self {
        latency
            .0
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect()
    }
}

impl From<Vec<(u64, u64)>> for Latency {
    fn from(pairs: Vec<(u64, u64)>) -> Self {
        let mut latency = Latency::default();
        for (value, count) in pairs {
            latency.0.saturating_record_n(value.max(1), count);
        }
        latency
    }
}

/// Latency quantiles, microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyQuantiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
}

impl Latency {
    /// Records one latency; 0 counts as 1 µs, over an hour as an hour.
    pub fn record(&mut self, us: u64) {
        self.0.saturating_record(us.max(1));
    }

    /// Records one duration, in microseconds.
    pub fn record_duration(&mut self, d: std::time::Duration) {
        self.record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// The sum of every sample, microseconds (from the histogram's mean, so to its precision).
    pub fn sum_us(&self) -> f64 {
        self.0.mean() * self.0.len() as f64
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Latency) {
        for v in other.0.iter_recorded() {
            self.0
                .saturating_record_n(v.value_iterated_to(), v.count_at_value());
        }
    }

    /// The quantiles (all 0 without samples).
    pub fn quantiles(&self) -> LatencyQuantiles {
        LatencyQuantiles {
            count: self.0.len(),
            p50: self.0.value_at_quantile(0.5),
            p90: self.0.value_at_quantile(0.9),
            p99: self.0.value_at_quantile(0.99),
            max: self.0.max(),
        }
    }
}
