//! Stores for tests, benchmarks and the demo (feature `test-support`, off by default): one
//! in-memory store and one fault-injecting wrapper, so that every place that needs a store it
//! controls uses the same two instead of writing its own.
//!
//! - [`MemoryStore`]: idempotent by record id, keeps every record in memory, not durable.
//! - [`FaultyStore`]: wraps any store; reports [`StoreError::Unavailable`] while its outage
//!   switch is on, [`StoreError::Rejected`] for a batch holding a refused id, and counts the
//!   calls it sees. Otherwise it passes every call through unchanged.
//!
//! Invariants:
//! - [`MemoryStore`] keeps the [`Store`] contract: a record whose id it holds (or that came
//!   earlier in the batch) is skipped and counted as a duplicate, and
//!   `inserted + duplicates == batch.len()`.
//! - [`FaultyStore`] never stores, drops or changes a record itself: a batch it fails reaches
//!   the wrapped store not at all, a batch it passes reaches it whole.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ackline_parse::Record;
use parking_lot::Mutex;

use crate::{Store, StoreError, WriteReport};

/// The reason [`FaultyStore`] gives for a refused record.
pub const REFUSED_REASON: &str = "value refused by the schema";

/// An idempotent in-memory store (kind `"memory"`): every record by its id, nothing durable.
#[derive(Debug, Default)]
pub struct MemoryStore {
    records: Mutex<HashMap<String, Record>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records held (one per distinct id).
    pub fn len(&self) -> usize {
        self.records.lock().len()
    }

    /// Nothing stored yet.
    pub fn is_empty(&self) -> bool {
        self.records.lock().is_empty()
    }

    /// The record stored under `id`.
    pub fn get(&self, id: &str) -> Option<Record> {
        self.records.lock().get(id).cloned()
    }

    /// Whether a record with `id` is stored.
    pub fn contains(&self, id: &str) -> bool {
        self.records.lock().contains_key(id)
    }

    fn write(&self, batch: &[Record]) -> WriteReport {
        let mut records = self.records.lock();
        let mut report = WriteReport::default();
        for r in batch {
            match records.entry(r.id.clone()) {
                Entry::Vacant(v) => {
                    v.insert(r.clone());
                    report.inserted += 1;
                }
                Entry::Occupied(_) => report.duplicates += 1,
            }
        }
        report
    }
}

impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn write_batch(&self, batch: &[Record]) -> Result<WriteReport, StoreError> {
        Ok(self.write(batch))
    }

    async fn probe(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A store whose failures the caller controls: an outage switch, refused ids, call counts.
#[derive(Debug)]
pub struct FaultyStore<S> {
    inner: S,
    outage_reason: &'static str,
    down: AtomicBool,
    refused: Mutex<HashSet<String>>,
    writes: AtomicU64,
    probes: AtomicU64,
}

impl<S: Store> FaultyStore<S> {
    /// Wraps `inner`, with no fault switched on; during an outage every call fails as
    /// `Unavailable` with `outage_reason`.
    pub fn new(inner: S, outage_reason: &'static str) -> Self {
        FaultyStore {
            inner,
            outage_reason,
            down: AtomicBool::new(false),
            refused: Mutex::new(HashSet::new()),
            writes: AtomicU64::new(0),
            probes: AtomicU64::new(0),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Turns the outage on (`true`) or off.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Refuses every batch that holds a record with `id` (as `Rejected`, naming its index),
    /// until [`FaultyStore::accept_all`].
    pub fn refuse(&self, id: impl Into<String>) {
        self.refused.lock().insert(id.into());
    }

    /// Refuses no id any more.
    pub fn accept_all(&self) {
        self.refused.lock().clear();
    }

    /// `write_batch` calls so far, failed ones included.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// `probe` calls so far, failed ones included.
    pub fn probes(&self) -> u64 {
        self.probes.load(Ordering::SeqCst)
    }

    fn outage(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable {
                store: self.inner.kind(),
                reason: self.outage_reason.to_string(),
            })
        } else {
            Ok(())
        }
    }
}

impl<S: Store> Store for FaultyStore<S> {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn write_batch(&self, batch: &[Record]) -> Result<WriteReport, StoreError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.outage()?;
        let refused = {
            let refused = self.refused.lock();
            batch.iter().position(|r| refused.contains(&r.id))
        };
        if let Some(index) = refused {
            return Err(StoreError::Rejected {
                index,
                reason: REFUSED_REASON.to_string(),
            });
        }
        self.inner.write_batch(batch).await
    }

    async fn probe(&self) -> Result<(), StoreError> {
        self.probes.fetch_add(1, Ordering::SeqCst);
        self.outage()?;
        self.inner.probe().await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

    use std::sync::Arc;

    use ackline_parse::{LineContext, Parser, ParserConfig};

    use super::*;

    fn record(id: &str) -> Record {
        Parser::new(ParserConfig::default())
            .parse(b"plain line", &LineContext::now(id, Arc::from("test")))
            .unwrap()
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn memory_store_skips_ids_it_holds_and_repeats_in_a_batch() {
        let s = MemoryStore::new();
        let r = block_on(s.write_batch(&[record("a"), record("b"), record("a")])).unwrap();
        assert_eq!((r.inserted, r.duplicates), (2, 1));
        let r = block_on(s.write_batch(&[record("b"), record("c")])).unwrap();
        assert_eq!((r.inserted, r.duplicates), (1, 1));
        assert_eq!(s.len(), 3);
        assert!(s.contains("c") && !s.contains("d"));
        assert_eq!(s.get("a").unwrap().id, "a");
    }

    #[test]
    fn faults_fail_whole_batches_and_pass_the_rest_through() {
        let s = FaultyStore::new(MemoryStore::new(), "connection refused");
        s.set_down(true);
        let e = block_on(s.write_batch(&[record("a")])).unwrap_err();
        assert!(
            matches!(&e, StoreError::Unavailable { store: "memory", reason } if reason == "connection refused"),
            "{e:?}"
        );
        assert!(block_on(s.probe()).is_err());
        s.set_down(false);
        s.refuse("b");
        let e = block_on(s.write_batch(&[record("a"), record("b")])).unwrap_err();
        assert!(
            matches!(&e, StoreError::Rejected { index: 1, reason } if reason == REFUSED_REASON),
            "{e:?}"
        );
        assert!(s.inner().is_empty(), "a failed batch reached the store");
        s.accept_all();
        let r = block_on(s.write_batch(&[record("a"), record("b")])).unwrap();
        assert_eq!((r.inserted, s.inner().len()), (2, 2));
        block_on(s.probe()).unwrap();
        assert_eq!((s.writes(), s.probes()), (3, 2));
    }
}
