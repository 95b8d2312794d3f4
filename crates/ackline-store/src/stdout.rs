//! The stdout store: JSON lines (the form documented in `docs/record.md`) on
//! standard output, for piping into other tools and for debugging.
//!
//! **At-least-once, not idempotent.** It cannot read back what it wrote, so a
//! batch written again after a restart or a redelivery is printed again; every
//! record of a batch is reported as inserted and none as duplicate. Use it
//! where the reader tolerates or removes duplicates by `id`.
//!
//! Invariants: one batch is written with a single `write_all` of complete
//! lines under the stdout lock and then flushed, so batches from concurrent
//! writers never interleave within a line. "Durable" here means handed to the
//! operating system (a pipe or terminal cannot be fsynced).

use std::io::Write;
use std::sync::Arc;

use ackline_parse::Record;
use parking_lot::Mutex;

use crate::error::join_error;
use crate::{Store, StoreError, WriteReport};

const KIND: &str = "stdout";

type Sink = Box<dyn Write + Send>;

/// At-least-once JSON-lines writer to standard output (or any writer).
pub struct StdoutStore {
    out: Arc<Mutex<Sink>>,
}

impl std::fmt::Debug for StdoutStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdoutStore").finish_non_exhaustive()
    }
}

impl Default for StdoutStore {
    fn default() -> Self {
        Self::new()
    }
}

impl StdoutStore {
    /// Writes to the process's standard output.
    #[must_use]
    pub fn new() -> Self {
        Self::with_writer(std::io::stdout())
    }

    /// Writes to `out` instead (tests, or a pipe of the caller's).
    pub fn with_writer(out: impl Write + Send + 'static) -> Self {
        Self {
            out: Arc::new(Mutex::new(Box::new(out))),
        }
    }
}

impl Store for StdoutStore {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn write_batch(
        &self,
        batch: &[Record],
    ) -> impl Future<Output = Result<WriteReport, StoreError>> + Send {
        let mut buf = Vec::new();
        let mut encoded = Ok(());
        for (index, r) in batch.iter().enumerate() {
            if let Err(e) = serde_json::to_writer(&mut buf, r) {
                encoded = Err(StoreError::Rejected {
                    index,
                    reason: format!("cannot serialise as JSON: {e}"),
                });
                break;
            }
            buf.push(b'\n');
        }
        let (out, n) = (self.out.clone(), batch.len());
        async move {
            encoded?;
            tokio::task::spawn_blocking(move || {
                let mut out = out.lock();
                out.write_all(&buf)
                    .and_then(|()| out.flush())
                    .map_err(|e| match e.kind() {
                        // The reader went away: nothing later will succeed.
                        std::io::ErrorKind::BrokenPipe => StoreError::fatal(KIND, e.to_string()),
                        _ => StoreError::unavailable(KIND, e.to_string()),
                    })
            })
            .await
            .map_err(|e| join_error(KIND, &e))??;
            Ok(WriteReport {
                inserted: n,
                duplicates: 0,
            })
        }
    }

    fn probe(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        std::future::ready(Ok(()))
    }
}
