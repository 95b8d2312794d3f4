//! Time as the queue sees it.
//!
//! Every time-dependent decision in the engine (lease deadlines, nack delays, `enqueued_at`,
//! failure timestamps) reads the time through [`Clock`], so tests drive leases and delays with a
//! [`ManualClock`] instead of sleeping.
//!
//! Invariant: times are milliseconds since the Unix epoch, and a clock never goes backwards as
//! observed by the engine ([`SystemClock`] clamps wall-clock steps back to the last value read).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current time in Unix milliseconds.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Milliseconds since the Unix epoch; never smaller than a value returned earlier.
    fn now_ms(&self) -> u64;

    /// The first whole millisecond at which at least `after` will have passed since this call:
    /// a nack delay or a lease is never cut short by rounding (a delay of 800 ms is not served
    /// after 799.3 ms because the current time was read as a whole millisecond).
    fn deadline_ms(&self, after: Duration) -> u64 {
        self.now_ms().saturating_add(ceil_ms(after))
    }
}

/// `d` in milliseconds, rounded up.
fn ceil_ms(d: Duration) -> u64 {
    let ms = d.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// The wall clock, made monotonic.
#[derive(Debug, Default)]
pub struct SystemClock {
    last: AtomicU64,
}

impl SystemClock {
    /// A new wall clock.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        // fetch_max returns the previous maximum; the result is the larger of the two.
        let prev = self.last.fetch_max(wall, Ordering::Relaxed);
        prev.max(wall)
    }

    fn deadline_ms(&self, after: Duration) -> u64 {
        // Rounded up from the exact wall time, not from `now_ms`'s whole milliseconds; after a
        // step back of the wall clock, from the last value read (as `now_ms` would report).
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let exact = ceil_ms(wall.saturating_add(after));
        let clamped = self
            .last
            .load(Ordering::Relaxed)
            .saturating_add(ceil_ms(after));
        exact.max(clamped)
    }
}

/// A clock that moves only when told to: for tests of leases and delays without sleeping.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock reading `start_ms`.
    pub fn new(start_ms: u64) -> Self {
        Self {
            now: Arc::new(AtomicU64::new(start_ms)),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.now.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }

    /// Sets the clock to `ms`, ignoring values in the past.
    pub fn set(&self, ms: u64) {
        self.now.fetch_max(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_round_up_never_down() {
        let c = ManualClock::new(1_000);
        assert_eq!(c.deadline_ms(Duration::from_millis(800)), 1_800);
        assert_eq!(c.deadline_ms(Duration::from_micros(800_001)), 1_801);
        assert_eq!(c.deadline_ms(Duration::ZERO), 1_000);
        let s = SystemClock::new();
        for _ in 0..1_000 {
            let start = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            let due = s.deadline_ms(Duration::from_millis(800));
            assert!(
                Duration::from_millis(due) >= start + Duration::from_millis(800),
                "due {due} ms is before {start:?} + 800 ms"
            );
        }
    }

    #[test]
    fn manual_clock_moves_only_forward() {
        let c = ManualClock::new(1_000);
        c.advance(Duration::from_millis(500));
        assert_eq!(c.now_ms(), 1_500);
        c.set(10);
        assert_eq!(c.now_ms(), 1_500);
        c.set(2_000);
        assert_eq!(c.now_ms(), 2_000);
    }

    #[test]
    fn system_clock_is_monotonic() {
        let c = SystemClock::new();
        let a = c.now_ms();
        let b = c.now_ms();
        assert!(b >= a);
        assert!(a > 1_600_000_000_000, "system clock reads {a}, before 2020");
    }
}
