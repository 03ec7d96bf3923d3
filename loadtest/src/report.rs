//! Collects measurements into histograms and reports quantiles.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Quantiles of one measurement, in milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Quantiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

/// Everything measured during a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Wall-clock end of a part's media to the playlist listing it.
    pub playlist_lag: Quantiles,
    /// Wall-clock end of a part's media to its last byte at the viewer.
    pub part_lag: Quantiles,
    /// Time between playlists that brought new parts.
    pub cadence: Quantiles,
    /// Time a blocking reload was held.
    pub blocking: Quantiles,
    /// Blocking responses by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Parts fetched and their bytes.
    pub parts: u64,
    /// Bytes of parts fetched.
    pub part_bytes: u64,
    /// Errors by message (first 20 distinct).
    pub errors: BTreeMap<String, u64>,
}

/// Accumulates measurements from every viewer.
pub struct Recorder {
    playlist_lag: Histogram<u64>,
    part_lag: Histogram<u64>,
    cadence: Histogram<u64>,
    blocking: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    parts: u64,
    part_bytes: u64,
    errors: BTreeMap<String, u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        let h =
            || Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant bounds are valid");
        Self {
            playlist_lag: h(),
            part_lag: h(),
            cadence: h(),
            blocking: h(),
            statuses: BTreeMap::new(),
            parts: 0,
            part_bytes: 0,
            errors: BTreeMap::new(),
        }
    }
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, 600_000_000)
}

fn quantiles(h: &Histogram<u64>) -> Quantiles {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Quantiles {
        count: h.len(),
        p50_ms: ms(0.5),
        p90_ms: ms(0.9),
        p99_ms: ms(0.99),
        max_ms: h.max() as f64 / 1000.0,
    }
}

impl Recorder {
    /// A playlist listed a new part `lag` after its media ended.
    pub fn playlist_lag(&mut self, lag: Duration) {
        let _ = self.playlist_lag.record(micros(lag));
    }

    /// A part's last byte arrived `lag` after its media ended.
    pub fn part_lag(&mut self, lag: Duration) {
        let _ = self.part_lag.record(micros(lag));
    }

    /// Time since the previous playlist that brought new parts.
    pub fn cadence(&mut self, interval: Duration) {
        let _ = self.cadence.record(micros(interval));
    }

    /// A blocking reload answered `status` after `held`.
    pub fn blocking(&mut self, status: u16, held: Duration) {
        *self.statuses.entry(status).or_default() += 1;
        let _ = self.blocking.record(micros(held));
    }

    /// A part of `bytes` was fetched.
    pub fn part(&mut self, bytes: usize) {
        self.parts += 1;
        self.part_bytes += bytes as u64;
    }

    /// Something failed.
    pub fn error(&mut self, message: &str) {
        if self.errors.len() < 20 || self.errors.contains_key(message) {
            *self.errors.entry(message.to_string()).or_default() += 1;
        }
    }

    /// The quantiles so far.
    pub fn report(&self) -> Report {
        Report {
            playlist_lag: quantiles(&self.playlist_lag),
            part_lag: quantiles(&self.part_lag),
            cadence: quantiles(&self.cadence),
            blocking: quantiles(&self.blocking),
            statuses: self.statuses.clone(),
            parts: self.parts,
            part_bytes: self.part_bytes,
            errors: self.errors.clone(),
        }
    }
}
