//! The circuit breaker between the workers and the store.
//!
//! When a write finds the store unavailable, the breaker opens: every worker stops taking new
//! deliveries, and one of them probes the store with exponential backoff until a probe
//! succeeds; then the breaker closes and all resume by themselves. Batches that were being
//! written are held (their leases extended) and retried, so an outage burns no attempts and
//! dead-letters nothing.
//!
//! An *outage* lasts from the first write that finds the store unavailable to the next write
//! that succeeds. A successful probe closes the breaker (the workers try their writes again)
//! but does not end the outage: a store that answers probes and still refuses writes (a full
//! disk) is one outage, with one warning and a backoff that keeps growing, not a flapping
//! series of them.
//!
//! Invariants: while open, at most one probe runs at a time; the probe delay grows from `base`
//! to `cap` and is reset only by a successful write; a successful write or probe closes the
//! breaker. Every change of the store's state is logged at WARN (unavailable when an outage
//! starts, available when it ends, with its duration), and so is every `warn_every` of an
//! ongoing outage (with the last error), never more often.

use std::time::{Duration, Instant};

use parking_lot::Mutex;
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

/// How often an ongoing outage is logged again.
pub(crate) const WARN_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Outage {
    since: Instant,
    last_warned: Instant,
    last_error: String,
}

#[derive(Debug)]
struct Inner {
    failures: u32,
    probing: bool,
    outage: Option<Outage>,
}

impl Inner {
    /// Records the latest error of an ongoing outage; logs it if `every` passed since the
    /// last warning.
    fn still_failing(&mut self, error: &dyn std::fmt::Display, every: Duration) {
        let now = Instant::now();
        if let Some(o) = &mut self.outage {
            o.last_error = error.to_string();
            if now.duration_since(o.last_warned) >= every {
                o.last_warned = now;
                tracing::warn!(
                    for_s = now.duration_since(o.since).as_secs(),
                    error = %o.last_error,
                    "store still unavailable: workers paused, batches held"
                );
            }
        }
    }
}

/// Shared by the workers of one runtime.
#[derive(Debug)]
pub(crate) struct Breaker {
    policy: BreakerPolicy,
    warn_every: Duration,
    inner: Mutex<Inner>,
    open_tx: watch::Sender<bool>,
}

impl Breaker {
    pub fn new(policy: BreakerPolicy) -> Self {
        Self::with_warn_every(policy, WARN_EVERY)
    }

    /// As `new`, logging an ongoing outage every `warn_every`.
    pub fn with_warn_every(policy: BreakerPolicy, warn_every: Duration) -> Self {
        Breaker {
            policy,
            warn_every,
            inner: Mutex::new(Inner {
                failures: 0,
                probing: false,
                outage: None,
            }),
            open_tx: watch::Sender::new(false),
        }
    }

    pub fn is_open(&self) -> bool {
        *self.open_tx.borrow()
    }

    /// A write found the store unavailable: opens the breaker. True when this starts an
    /// outage (logged at WARN); during one, the error is logged every `warn_every`.
    pub fn trip(&self, error: &dyn std::fmt::Display) -> bool {
        let started = {
            let mut i = self.inner.lock();
            if i.outage.is_none() {
                let now = Instant::now();
                tracing::warn!(
                    error = %error,
                    "store unavailable: pausing the workers, holding their batches (no attempt spent)"
                );
                i.outage = Some(Outage {
                    since: now,
                    last_warned: now,
                    last_error: error.to_string(),
                });
                true
            } else {
                i.still_failing(error, self.warn_every);
                false
            }
        };
        self.open_tx
            .send_if_modified(|open| !std::mem::replace(open, true));
        started
    }

    /// A write succeeded: the outage, if any, is over (logged at WARN with its duration).
    pub fn close(&self) {
        {
            let mut i = self.inner.lock();
            i.failures = 0;
            if let Some(o) = i.outage.take() {
                tracing::warn!(
                    after_ms = u64::try_from(o.since.elapsed().as_millis()).unwrap_or(u64::MAX),
                    "store available again: workers resume"
                );
            }
        }
        self.reopen_writes();
    }

    fn reopen_writes(&self) {
        self.open_tx
            .send_if_modified(|open| std::mem::replace(open, false));
    }

    /// How long the current outage has lasted and its last error, if there is one.
    pub fn outage(&self) -> Option<(Duration, String)> {
        self.inner
            .lock()
            .outage
            .as_ref()
            .map(|o| (o.since.elapsed(), o.last_error.clone()))
    }

    /// The wait before the next probe.
    pub fn next_delay(&self) -> Duration {
        let n = self.inner.lock().failures.min(30);
        let d = self.policy.base.saturating_mul(1u32 << n.min(20));
        d.min(self.policy.cap)
    }

    /// Claims the right to probe; false if another worker is probing.
    pub fn claim_probe(&self) -> bool {
        let mut i = self.inner.lock();
        !std::mem::replace(&mut i.probing, true)
    }

    /// Ends a probe claimed with `claim_probe`: `Ok` closes the breaker (the workers try
    /// their writes again; the outage ends only with a successful write), an error counts
    /// toward the backoff. `None`: the probe was abandoned (shutdown).
    pub fn probe_done(&self, result: Option<Result<(), &dyn std::fmt::Display>>) {
        let ok = {
            let mut i = self.inner.lock();
            i.probing = false;
            i.failures = i.failures.saturating_add(1);
            match result {
                Some(Ok(())) => {
                    tracing::info!("store answered a probe: retrying writes");
                    true
                }
                Some(Err(e)) => {
                    i.still_failing(e, self.warn_every);
                    false
                }
                None => false,
            }
        };
        if ok {
            self.reopen_writes();
        }
    }

    /// Resolves when the breaker is closed.
    pub async fn closed(&self) {
        let mut rx = self.open_tx.subscribe();
        // The sender lives as long as `self`, so this only ends when the breaker closes.
        let _ = rx.wait_for(|open| !*open).await;
    }
}

/// A read-only view of a runtime's circuit breaker, for dashboards (`Runtime::breaker`).
#[derive(Debug, Clone)]
pub struct BreakerView(pub(crate) std::sync::Arc<Breaker>);

impl BreakerView {
    /// Whether the breaker is open (writes paused while one worker probes the store).
    pub fn is_open(&self) -> bool {
        self.0.is_open()
    }

    /// How long the current outage has lasted and its last error, if there is one.
    pub fn outage(&self) -> Option<(Duration, String)> {
        self.0.outage()
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
        assert!(b.trip(&"down"), "the first trip starts an outage");
        assert!(b.is_open());
        let mut seen = Vec::new();
        for _ in 0..6 {
            assert!(b.claim_probe());
            assert!(!b.claim_probe(), "one probe at a time");
            seen.push(b.next_delay().as_millis());
            b.probe_done(Some(Err(&"still down")));
        }
        assert_eq!(seen, [100, 200, 400, 800, 1000, 1000]);
        assert!(b.claim_probe());
        b.probe_done(Some(Ok(())));
        assert!(!b.is_open());
        b.close();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn a_store_that_answers_probes_but_fails_writes_is_one_outage() {
        let b = Breaker::new(BreakerPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(10),
        });
        assert!(b.outage().is_none());
        assert!(b.trip(&"disk full"));
        for expected in [100, 200, 400] {
            assert!(b.claim_probe());
            assert_eq!(
                b.next_delay().as_millis(),
                expected,
                "the backoff keeps growing"
            );
            b.probe_done(Some(Ok(())));
            assert!(!b.is_open(), "a good probe lets the writes be tried");
            assert!(b.outage().is_some(), "but does not end the outage");
            assert!(
                !b.trip(&"disk full"),
                "the next failed write is the same outage"
            );
        }
        b.close();
        assert!(b.outage().is_none(), "a successful write ends it");
        assert!(!b.is_open());
        assert!(b.trip(&"down again"), "a new outage");
    }

    #[tokio::test]
    async fn waiters_resume_when_it_closes() {
        let b = std::sync::Arc::new(Breaker::new(BreakerPolicy::default()));
        b.trip(&"down");
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
