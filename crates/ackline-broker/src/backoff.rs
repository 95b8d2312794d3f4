//! Jittered exponential backoff and a dependency-free random number, shared
//! by the network backends (reconnection, release retries, consumer tokens).
//!
//! Invariants:
//! - [`Backoff::delay`] of retry `n` lies in `[full / 2, full]` where
//!   `full = min(cap, base * 2^min(n, 16))`: it never exceeds the cap, never
//!   overflows, and two clients that failed together spread their retries.
//! - [`random_u64`] differs between calls of one process (a counter is mixed
//!   in) and between processes (std's per-process random hasher keys); it is
//!   not for cryptography.

use std::time::Duration;

/// Exponential backoff with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait before the first retry (before jitter).
    pub base: Duration,
    /// The longest wait (before jitter).
    pub cap: Duration,
}

impl Backoff {
    /// The wait before retry number `n` (0-based): `min(cap, base * 2^n)`,
    /// jittered to 50..100 %.
    #[must_use]
    pub fn delay(&self, n: u32) -> Duration {
        let full = self.base.saturating_mul(1 << n.min(16)).min(self.cap);
        let jitter = 0.5 + (random_u64() % 1000) as f64 / 2000.0;
        full.mul_f64(jitter)
    }
}

/// A random u64 from std's per-process random hasher keys (no extra dependency).
#[must_use]
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
        };
        for n in 0..40 {
            let d = b.delay(n);
            let full = Duration::from_millis(100)
                .saturating_mul(1 << n.min(16))
                .min(Duration::from_secs(2));
            assert!(d >= full / 2 && d <= full, "{n}: {d:?}");
        }
    }

    #[test]
    fn random_numbers_differ_between_calls() {
        let drawn: std::collections::HashSet<u64> = (0..1000).map(|_| random_u64()).collect();
        assert_eq!(drawn.len(), 1000);
    }
}
