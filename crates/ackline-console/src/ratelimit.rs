//! The replay rate limit: a token bucket of messages per second, shared by every session of
//! a console.
//!
//! Invariants: a request takes its whole count or nothing (a replay is never cut in half by
//! the limit); the bucket never holds more than its burst; time comes from the caller, so
//! tests do not sleep.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Messages per second, with a burst.
#[derive(Debug)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    /// `rate` messages per second (at least 1), at most `burst` at once (at least 1).
    pub fn new(rate: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Bucket {
            rate: f64::from(rate.max(1)),
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes `n` at `now`: `Ok`, or how long until `n` would be there.
    pub fn take(&self, n: usize, now: Instant) -> Result<(), Duration> {
        let mut st = self.state.lock();
        let (tokens, at) = *st;
        let tokens =
            (tokens + now.saturating_duration_since(at).as_secs_f64() * self.rate).min(self.burst);
        let want = n as f64;
        if want <= tokens {
            *st = (tokens - want, now);
            Ok(())
        } else {
            *st = (tokens, now);
            let missing = want.min(self.burst) - tokens;
            Err(Duration::from_secs_f64((missing / self.rate).max(0.001)))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn takes_whole_requests_and_refills_at_the_rate() {
        let b = Bucket::new(10, 20);
        let t0 = Instant::now();
        assert!(b.take(15, t0).is_ok());
        let wait = b.take(10, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 0.01, "{wait:?}");
        assert!(b.take(10, t0 + Duration::from_millis(500)).is_ok());
        // Never more than the burst, however long it waited.
        assert!(b.take(21, t0 + Duration::from_secs(3600)).is_err());
        assert!(b.take(20, t0 + Duration::from_secs(3600)).is_ok());
    }
}
