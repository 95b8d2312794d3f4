//! The processing faults the pipeline demo injects, as an ordinary wrapper around the real
//! step: [`DemoFaults`] fails transiently on lines marked `flaky-retry` (first attempt only)
//! and `poison-retry` (every attempt), then defers to the parser. (The demo's store outage is
//! [`ackline_store::test_support::FaultyStore`].)
//!
//! Invariant: on lines without a mark it behaves exactly as the wrapped step; it never
//! stores, acks or drops anything itself.

use ackline_broker::Delivery;
use ackline_parse::Record;
use ackline_worker::{Process, ProcessError};

/// Marks a line that fails once, then succeeds.
pub const FLAKY_MARK: &[u8] = b"flaky-retry";
/// Marks a line that fails every time (until `max attempts exceeded`).
pub const POISON_MARK: &[u8] = b"poison-retry";

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
        if d.attempt() == 1 && contains(&d.payload, FLAKY_MARK) {
            return Err(ProcessError::Transient(
                "simulated transient failure (demo)".into(),
            ));
        }
        self.inner.process(d)
    }
}
