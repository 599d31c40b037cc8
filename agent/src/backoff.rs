//! The one reconnect back-off (agent sessions, registration, report delivery; the CLI
//! may use it too): doubled each attempt from `initial`, capped at `max`, with "equal
//! jitter" (half the delay fixed, half random) so a fleet that lost its server does
//! not come back in the same second.

use std::time::Duration;

/// Exponential back-off with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff { initial, max }
    }

    /// The un-jittered delay before attempt `attempt` (1-based): `initial` doubled
    /// each time, capped at `max`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The delay before attempt `attempt`: between half the ceiling and the ceiling,
    /// uniformly at random.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_at(attempt, rand::random::<f64>())
    }

    /// [`Backoff::delay`] with the random part given (`unit` in `0.0..=1.0`).
    pub fn delay_at(&self, attempt: u32, unit: f64) -> Duration {
        let ceiling = self.ceiling(attempt);
        let half = ceiling / 2;
        half + (ceiling - half).mul_f64(unit.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let b = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        assert_eq!(b.ceiling(1), Duration::from_millis(200));
        assert_eq!(b.ceiling(2), Duration::from_millis(400));
        assert_eq!(b.ceiling(6), Duration::from_millis(6400));
        assert_eq!(b.ceiling(7), Duration::from_secs(10));
        assert_eq!(b.ceiling(1000), Duration::from_secs(10));
    }

    #[test]
    fn the_jitter_spans_the_upper_half() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        assert_eq!(b.delay_at(4, 0.0), Duration::from_secs(4));
        assert_eq!(b.delay_at(4, 1.0), Duration::from_secs(8));
        assert_eq!(b.delay_at(4, 0.5), Duration::from_secs(6));
        for _ in 0..200 {
            let d = b.delay(4);
            assert!(
                d >= Duration::from_secs(4) && d <= Duration::from_secs(8),
                "{d:?}"
            );
        }
    }

    #[test]
    fn a_fleet_spreads_its_reconnects() {
        // 10,000 agents retrying at the cap spread over its upper half: no second
        // holds more than a small share of them.
        let b = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        let mut per_second = [0u32; 11];
        for _ in 0..10_000 {
            per_second[b.delay(10).as_secs() as usize] += 1;
        }
        let busiest = per_second.iter().max().copied().unwrap_or(0);
        assert!(busiest < 3_000, "reconnects bunched: {per_second:?}");
        assert_eq!(per_second[..5].iter().sum::<u32>(), 0, "{per_second:?}");
    }
}
