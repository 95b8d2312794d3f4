//! Retry delays: exponential backoff with full jitter.
//!
//! For attempt `n` (1 for the first delivery that failed), the ceiling is
//! `min(cap, base * factor^(n-1))` and the delay is drawn uniformly from `[0, ceiling]`
//! ("full jitter"), which spreads the retries of a burst of failures instead of having them
//! all come back at once.
//!
//! Invariant: a delay never exceeds `cap`, and the ceiling never decreases with `n`.

use std::time::Duration;

use rand::Rng;

/// Backoff parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// The first ceiling.
    pub base: Duration,
    /// Growth per attempt (at least 1).
    pub factor: f64,
    /// The largest delay.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(500),
            factor: 2.0,
            cap: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The ceiling for attempt `n` (1-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(1024) as i32;
        let secs = self.base.as_secs_f64() * self.factor.max(1.0).powi(exp);
        if !secs.is_finite() || secs >= self.cap.as_secs_f64() {
            self.cap
        } else {
            Duration::from_secs_f64(secs)
        }
    }

    /// A delay for attempt `n`, drawn with `rng`.
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(attempt);
        let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rng.random_range(0..=ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn ceilings_grow_exponentially_up_to_the_cap() {
        let p = RetryPolicy {
            base: Duration::from_millis(100),
            factor: 2.0,
            cap: Duration::from_secs(1),
        };
        let c: Vec<u128> = (1..=6).map(|n| p.ceiling(n).as_millis()).collect();
        assert_eq!(c, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.ceiling(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn delays_are_jittered_within_the_ceiling() {
        let p = RetryPolicy::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let ds: Vec<Duration> = (0..200).map(|_| p.delay(3, &mut rng)).collect();
        assert!(ds.iter().all(|d| *d <= p.ceiling(3)));
        let distinct: std::collections::BTreeSet<_> = ds.iter().collect();
        assert!(
            distinct.len() > 100,
            "full jitter spreads delays, got {}",
            distinct.len()
        );
        let mean = ds.iter().map(Duration::as_secs_f64).sum::<f64>() / ds.len() as f64;
        let half = p.ceiling(3).as_secs_f64() / 2.0;
        assert!(
            (mean - half).abs() < half * 0.25,
            "mean {mean} far from {half}"
        );
    }
}
