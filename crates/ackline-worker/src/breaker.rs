//! The circuit breaker between the workers and the store.
//!
//! When a write finds the store unavailable, the breaker opens: every worker stops taking new
//! deliveries, and one of them probes the store with exponential backoff until a probe
//! succeeds; then the breaker closes and all resume by themselves. Batches that were being
//! written are held (their leases extended) and retried, so an outage burns no attempts and
//! dead-letters nothing.
//!
//! Invariants: while open, at most one probe runs at a time; the probe delay grows from `base`
//! to `cap`; a successful write or probe closes the breaker.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

/// Probe backoff parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// First wait before probing.
    pub base: Duration,
    /// Longest wait between probes.
    pub cap: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy {
            base: Duration::from_millis(200),
            cap: Duration::from_secs(10),
        }
    }
}

#[derive(Debug)]
struct Inner {
    failures: u32,
    probing: bool,
}

/// Shared by the workers of one runtime.
#[derive(Debug)]
pub(crate) struct Breaker {
    policy: BreakerPolicy,
    inner: Mutex<Inner>,
    open_tx: watch::Sender<bool>,
}

impl Breaker {
    pub fn new(policy: BreakerPolicy) -> Self {
        Breaker {
            policy,
            inner: Mutex::new(Inner {
                failures: 0,
                probing: false,
            }),
            open_tx: watch::Sender::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_open(&self) -> bool {
        *self.open_tx.borrow()
    }

    /// A write found the store unavailable.
    pub fn trip(&self) {
        self.open_tx
            .send_if_modified(|open| !std::mem::replace(open, true));
    }

    /// A write or probe succeeded.
    pub fn close(&self) {
        self.lock().failures = 0;
        self.open_tx
            .send_if_modified(|open| std::mem::replace(open, false));
    }

    /// The wait before the next probe.
    pub fn next_delay(&self) -> Duration {
        let n = self.lock().failures.min(30);
        let d = self.policy.base.saturating_mul(1u32 << n.min(20));
        d.min(self.policy.cap)
    }

    /// Claims the right to probe; false if another worker is probing.
    pub fn claim_probe(&self) -> bool {
        let mut i = self.lock();
        !std::mem::replace(&mut i.probing, true)
    }

    /// Ends a probe claimed with `claim_probe`.
    pub fn probe_done(&self, ok: bool) {
        {
            let mut i = self.lock();
            i.probing = false;
            if !ok {
                i.failures = i.failures.saturating_add(1);
            }
        }
        if ok {
            self.close();
        }
    }

    /// Resolves when the breaker is closed.
    pub async fn closed(&self) {
        let mut rx = self.open_tx.subscribe();
        // The sender lives as long as `self`, so this only ends when the breaker closes.
        let _ = rx.wait_for(|open| !*open).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_delays_back_off_to_the_cap_and_reset_on_close() {
        let b = Breaker::new(BreakerPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        });
        b.trip();
        assert!(b.is_open());
        let mut seen = Vec::new();
        for _ in 0..6 {
            assert!(b.claim_probe());
            assert!(!b.claim_probe(), "one probe at a time");
            seen.push(b.next_delay().as_millis());
            b.probe_done(false);
        }
        assert_eq!(seen, [100, 200, 400, 800, 1000, 1000]);
        assert!(b.claim_probe());
        b.probe_done(true);
        assert!(!b.is_open());
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[tokio::test]
    async fn waiters_resume_when_it_closes() {
        let b = std::sync::Arc::new(Breaker::new(BreakerPolicy::default()));
        b.trip();
        let w = {
            let b = b.clone();
            tokio::spawn(async move { b.closed().await })
        };
        tokio::task::yield_now().await;
        assert!(!w.is_finished());
        b.close();
        w.await.unwrap();
    }
}
