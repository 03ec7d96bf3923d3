//! What the chat load counts and how the counts of several worker processes add up: delivery
//! latencies, deliveries per message, connection failures and closes, and the loss accounting
//! at the end. Pure: the worker fills a [`WorkerSummary`], the parent merges them.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub use crate::latency::{Latency, LatencyQuantiles};

use super::wire::Stamp;

/// Distinct connection error messages kept; the rest count under `other`.
const MAX_ERROR_KINDS: usize = 20;
/// Close code for a connection that ended without a close frame (RFC 6455, 1006 "abnormal").
pub const CLOSE_ABNORMAL: u16 = 1006;

/// What one worker process counted over its receiving connections.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerSummary {
    /// Connections open when the connect ramp ended (and sending began).
    pub held_at_start: u64,
    /// Connections open when the worker was told to stop.
    pub held: u64,
    /// Connections that could not be opened.
    pub connect_failures: u64,
    /// Those failures by error message.
    pub connect_errors: BTreeMap<String, u64>,
    /// Messages of this run received, over all connections.
    pub deliveries: u64,
    /// When the last of them came, unix nanoseconds (0 before any).
    pub last_delivery_unix_ns: u64,
    /// Receivers that got each message, by message number.
    pub received: BTreeMap<u64, u64>,
    /// Send-to-receive latency of each delivery.
    pub latency_us: Latency,
    /// Connections that ended, by close code (1006 without a close frame).
    pub closes_by_code: BTreeMap<u16, u64>,
    /// Receivers that came back after their connection ended (to the next node, with their
    /// last offset).
    #[serde(default)]
    pub reconnects: u64,
    /// Deliveries that came in a reconnect's recovery frame rather than live (left out of
    /// the latency, which for them is the time the receiver was away).
    #[serde(default)]
    pub recovered_deliveries: u64,
    /// Messages a receiver got a second time (an offset it had), not counted again.
    #[serde(default)]
    pub duplicates: u64,
    /// Reconnects whose recovery was incomplete: the relay had not kept all they missed.
    #[serde(default)]
    pub incomplete_recoveries: u64,
    /// The longest a receiver was away: from its connection ending to its recovery, ms.
    #[serde(default)]
    pub longest_away_ms: u64,
}

impl WorkerSummary {
    /// Counts message `stamp` received live at `received_unix_ns`.
    pub fn record_delivery(&mut self, stamp: &Stamp, received_unix_ns: u64) {
        self.count_received(stamp, received_unix_ns);
        self.latency_us.record(stamp.latency_us(received_unix_ns));
    }

    /// Counts message `stamp` received in a recovery frame at `received_unix_ns`.
    pub fn record_recovered(&mut self, stamp: &Stamp, received_unix_ns: u64) {
        self.count_received(stamp, received_unix_ns);
        self.recovered_deliveries += 1;
    }

    fn count_received(&mut self, stamp: &Stamp, received_unix_ns: u64) {
        self.deliveries += 1;
        self.last_delivery_unix_ns = self.last_delivery_unix_ns.max(received_unix_ns);
        *self.received.entry(stamp.seq).or_default() += 1;
    }

    /// Counts a receiver back after `away_ms`, its recovery complete or not.
    pub fn record_reconnect(&mut self, away_ms: u64, complete: bool) {
        self.reconnects += 1;
        self.longest_away_ms = self.longest_away_ms.max(away_ms);
        if !complete {
            self.incomplete_recoveries += 1;
        }
    }

    /// Counts a connection that could not be opened, for `error`.
    pub fn record_connect_failure(&mut self, error: &str) {
        self.connect_failures += 1;
        count_kind(&mut self.connect_errors, error, 1);
    }

    /// Counts a connection that ended with close `code`.
    pub fn record_close(&mut self, code: u16) {
        *self.closes_by_code.entry(code).or_default() += 1;
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &WorkerSummary) {
        self.held_at_start += other.held_at_start;
        self.held += other.held;
        self.connect_failures += other.connect_failures;
        for (error, n) in &other.connect_errors {
            count_kind(&mut self.connect_errors, error, *n);
        }
        self.deliveries += other.deliveries;
        self.last_delivery_unix_ns = self.last_delivery_unix_ns.max(other.last_delivery_unix_ns);
        for (seq, n) in &other.received {
            *self.received.entry(*seq).or_default() += n;
        }
        self.latency_us.merge(&other.latency_us);
        for (code, n) in &other.closes_by_code {
            *self.closes_by_code.entry(*code).or_default() += n;
        }
        self.reconnects += other.reconnects;
        self.recovered_deliveries += other.recovered_deliveries;
        self.duplicates += other.duplicates;
        self.incomplete_recoveries += other.incomplete_recoveries;
        self.longest_away_ms = self.longest_away_ms.max(other.longest_away_ms);
    }
}

/// Counts `n` of `kind` in `counts`, keeping at most [`MAX_ERROR_KINDS`] distinct kinds.
fn count_kind(counts: &mut BTreeMap<String, u64>, kind: &str, n: u64) {
    let key = if counts.contains_key(kind) || counts.len() < MAX_ERROR_KINDS {
        kind
    } else {
        "other"
    };
    *counts.entry(key.to_string()).or_default() += n;
}

/// Deliveries that never came: every message in `acked` was due at each of the `receivers`
/// connections held when sending began; `received` says how many got each. A receiver that
/// was dropped (say for reading too slowly) counts its missed messages as lost; deliveries of
/// a message that was never acked are not expected, so they cannot hide a loss.
///
/// ```
/// use std::collections::{BTreeMap, BTreeSet};
/// use corral_loadtest::chat::tally::lost;
/// let acked = BTreeSet::from([0, 1]);
/// let received = BTreeMap::from([(0, 3), (1, 2)]);
/// assert_eq!(lost(&acked, 3, &received), 1);
/// ```
pub fn lost(acked: &BTreeSet<u64>, receivers: u64, received: &BTreeMap<u64, u64>) -> u64 {
    acked
        .iter()
        .map(|seq| receivers.saturating_sub(received.get(seq).copied().unwrap_or(0)))
        .sum()
}

/// The resident set size in a `/proc/<pid>/status` text, KiB.
///
/// ```
/// use corral_loadtest::chat::tally::vm_rss_kb;
/// assert_eq!(vm_rss_kb("Name:\trelay\nVmRSS:\t   20480 kB\n"), Some(20480));
/// ```
pub fn vm_rss_kb(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(seq: u64) -> Stamp {
        Stamp {
            sent_unix_ns: 1_000_000_000,
            sender: 0,
            seq,
            run: 1,
        }
    }

    #[test]
    fn merged_worker_summaries_equal_one_summary_of_everything() {
        let mut one = WorkerSummary::default();
        let mut a = WorkerSummary {
            held_at_start: 2,
            held: 2,
            ..Default::default()
        };
        let mut b = WorkerSummary {
            held_at_start: 3,
            held: 1,
            ..Default::default()
        };
        for (i, latency_us) in [150, 2_000, 9_000, 40_000, 1_200_000]
            .into_iter()
            .enumerate()
        {
            let seq = i as u64 % 2;
            let at = 1_000_000_000 + latency_us * 1000;
            one.record_delivery(&stamp(seq), at);
            if i % 2 == 0 { &mut a } else { &mut b }.record_delivery(&stamp(seq), at);
        }
        a.record_connect_failure("Connection refused (os error 111)");
        b.record_connect_failure("Connection refused (os error 111)");
        b.record_connect_failure("timed out");
        b.record_close(4008);
        b.record_close(CLOSE_ABNORMAL);
        a.record_close(4008);
        // A receiver of B came back from another node with a message it missed.
        b.record_reconnect(1_500, true);
        b.record_recovered(&stamp(1), 1_000_000_000);
        a.record_reconnect(300, false);
        // Through the pipe and back, as the parent reads them.
        let wire = |s: &WorkerSummary| {
            let text = serde_json::to_string(s).expect("serializes");
            serde_json::from_str::<WorkerSummary>(&text).expect("reads back")
        };
        let mut merged = WorkerSummary::default();
        merged.merge(&wire(&a));
        merged.merge(&wire(&b));
        assert_eq!(merged.held_at_start, 5);
        assert_eq!(merged.held, 3);
        assert_eq!(merged.deliveries, 6);
        assert_eq!(
            (merged.reconnects, merged.recovered_deliveries),
            (2, 1),
            "recovered deliveries count, outside the latency"
        );
        assert_eq!(merged.longest_away_ms, 1_500);
        assert_eq!(merged.incomplete_recoveries, 1);
        assert_eq!(merged.last_delivery_unix_ns, 1_000_000_000 + 1_200_000_000);
        assert_eq!(merged.received, BTreeMap::from([(0, 3), (1, 3)]));
        assert_eq!(merged.latency_us.quantiles(), one.latency_us.quantiles());
        assert_eq!(merged.latency_us.quantiles().count, 5);
        assert_eq!(merged.connect_failures, 3);
        assert_eq!(
            merged.connect_errors,
            BTreeMap::from([
                ("Connection refused (os error 111)".to_string(), 2),
                ("timed out".to_string(), 1)
            ])
        );
        assert_eq!(
            merged.closes_by_code,
            BTreeMap::from([(1006, 1), (4008, 2)])
        );
    }

    #[test]
    fn latency_quantiles_survive_the_pipe_to_three_significant_digits() {
        let mut latency = Latency::default();
        for us in 1..=10_000 {
            latency.record(us);
        }
        let q = latency.quantiles();
        let back = Latency::from(Vec::<(u64, u64)>::from(latency));
        assert_eq!(back.quantiles(), q);
        assert_eq!(q.count, 10_000);
        assert!((4_995..=5_005).contains(&q.p50), "p50 {}", q.p50);
        assert!((9_895..=9_905).contains(&q.p99), "p99 {}", q.p99);
        assert!((9_990..=10_010).contains(&q.max), "max {}", q.max);
        assert_eq!(Latency::default().quantiles().count, 0);
    }

    #[test]
    fn error_kinds_are_bounded() {
        let mut s = WorkerSummary::default();
        for i in 0..30 {
            s.record_connect_failure(&format!("error {i}"));
        }
        assert_eq!(s.connect_errors.len(), MAX_ERROR_KINDS + 1);
        assert_eq!(s.connect_errors["other"], 10);
        assert_eq!(s.connect_failures, 30);
    }

    #[test]
    fn losses_are_the_acked_messages_missing_at_receivers() {
        let acked = BTreeSet::from([0, 1, 2, 3]);
        // Message 4 was delivered but never acked (the run ended first): not expected.
        let received = BTreeMap::from([(0, 10), (1, 10), (2, 7), (4, 10)]);
        assert_eq!(lost(&acked, 10, &received), 3 + 10);
        assert_eq!(lost(&acked, 0, &received), 0);
        assert_eq!(lost(&BTreeSet::new(), 10, &received), 0);
        // More deliveries than receivers (a reconnect) cannot offset another message's loss.
        let received = BTreeMap::from([(0, 12), (1, 8), (2, 10), (3, 10)]);
        assert_eq!(lost(&acked, 10, &received), 2);
    }

    #[test]
    fn the_resident_set_is_read_from_proc_status() {
        let status = "Name:\tchat-relay\nVmPeak:\t  900 kB\nVmRSS:\t   51234 kB\nThreads:\t3\n";
        assert_eq!(vm_rss_kb(status), Some(51_234));
        assert_eq!(vm_rss_kb("Name:\tx\n"), None);
        let own = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status reads");
        assert!(vm_rss_kb(&own).is_some_and(|kb| kb > 0));
    }
}
