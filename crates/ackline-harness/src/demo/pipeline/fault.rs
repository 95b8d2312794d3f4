//! Faults the pipeline demo injects, as ordinary wrappers around the real parts.
//!
//! - [`SwitchableStore`]: a store that reports `Unavailable` while its switch is on (an
//!   outage), and otherwise passes every call through unchanged.
//! - [`DemoFaults`]: a processing step that fails transiently on lines marked `flaky-retry`
//!   (first attempt only) and `poison-retry` (every attempt), then defers to the parser.
//!
//! Invariant: with the switch off and no marked lines, both wrappers behave exactly as the
//! wrapped part; they never store, ack or drop anything themselves.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ackline_broker::Delivery;
use ackline_parse::Record;
use ackline_store::{Store, StoreError, WriteReport};
use ackline_worker::{Process, ProcessError};

/// Marks a line that fails once, then succeeds.
pub const FLAKY_MARK: &[u8] = b"flaky-retry";
/// Marks a line that fails every time (until `max attempts exceeded`).
pub const POISON_MARK: &[u8] = b"poison-retry";

/// A store with an outage switch.
#[derive(Debug)]
pub struct SwitchableStore<S> {
    inner: S,
    down: Arc<AtomicBool>,
}

impl<S: Store> SwitchableStore<S> {
    /// Wraps `inner`; the returned flag turns the outage on (true) and off.
    pub fn new(inner: S) -> (Self, Arc<AtomicBool>) {
        let down = Arc::new(AtomicBool::new(false));
        (
            SwitchableStore {
                inner,
                down: down.clone(),
            },
            down,
        )
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable {
                store: self.inner.kind(),
                reason: "simulated outage (demo)".to_string(),
            })
        } else {
            Ok(())
        }
    }
}

impl<S: Store> Store for SwitchableStore<S> {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn write_batch(&self, batch: &[Record]) -> Result<WriteReport, StoreError> {
        self.check()?;
        self.inner.write_batch(batch).await
    }

    async fn probe(&self) -> Result<(), StoreError> {
        self.check()?;
        self.inner.probe().await
    }
}

/// Transient failures on marked lines, then the wrapped step.
#[derive(Debug)]
pub struct DemoFaults<P> {
    inner: P,
}

impl<P: Process> DemoFaults<P> {
    /// Wraps `inner`.
    pub fn new(inner: P) -> Self {
        DemoFaults { inner }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

impl<P: Process> Process for DemoFaults<P> {
    fn process(&self, d: &Delivery) -> Result<Record, ProcessError> {
        if contains(&d.payload, POISON_MARK) {
            return Err(ProcessError::Transient(
                "simulated failure that never clears (demo)".into(),
            ));
        }
        if d.attempt == 1 && contains(&d.payload, FLAKY_MARK) {
            return Err(ProcessError::Transient(
                "simulated transient failure (demo)".into(),
            ));
        }
        self.inner.process(d)
    }
}
