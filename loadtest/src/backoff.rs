//! Retry back-off for every client of the load: exponential, capped, with jitter, so that
//! clients that failed together (an edge restarted, a chat node died) do not come back in
//! lock-step.

use std::time::Duration;

/// A client's back-off: the wait before try `failures + 1` after `failures` in a row.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    rng: u64,
}

impl Backoff {
    /// Waits from `base` doubling up to `max`; `seed` sets this client's jitter apart from
    /// others'.
    pub fn new(base: Duration, max: Duration, seed: u64) -> Self {
        Self {
            base,
            max,
            rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    /// The wait after `failures` in a row (1 for the first): `base · 2^(failures-1)`, capped
    /// at `max`, then a random share of it between a half and all of it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use corral_loadtest::backoff::Backoff;
    /// let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2), 7);
    /// let first = b.after(1);
    /// assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
    /// assert!(b.after(30) <= Duration::from_secs(2));
    /// ```
    pub fn after(&mut self, failures: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1 << failures.saturating_sub(1).min(16))
            .min(self.max);
        // xorshift64: enough to spread clients; not for anything secret.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let share = 0.5 + (self.rng % 1000) as f64 / 2000.0;
        ceiling.mul_f64(share)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_and_clients_spread() {
        let (base, max) = (Duration::from_millis(100), Duration::from_secs(1));
        for failures in 1..20u32 {
            let ceiling = (base * 2u32.pow(failures.min(16) - 1)).min(max);
            let mut b = Backoff::new(base, max, u64::from(failures));
            let wait = b.after(failures);
            assert!(
                wait >= ceiling / 2 && wait <= ceiling,
                "{failures}: {wait:?}"
            );
        }
        // A hundred clients failing at once come back spread over the window, not together.
        let waits: std::collections::BTreeSet<Duration> = (0..100)
            .map(|seed| Backoff::new(base, max, seed).after(3))
            .collect();
        assert!(waits.len() > 50, "{waits:?}");
    }
}
