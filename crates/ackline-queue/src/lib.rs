//! # ackline-queue: the embedded durable queue
//!
//! A queue engine that knows nothing of logs, HTTP or brokers: named queues in one data
//! directory, each an append-only log of checksummed records in segment files, with an
//! in-memory index, periodic checkpoints and its own dead-letter queue.
//!
//! The delivery contract it keeps:
//! - [`Queue::publish`] returns only when the batch is durable (fsync, group-committed across
//!   concurrent publishers; see [`Fsync`] for the relaxed modes and what they risk).
//! - [`Consumer::receive`] leases deliveries; each carries a [`Tag`] (position, attempt). The
//!   attempt is 1 on the first delivery, +1 on each redelivery, and survives restarts.
//! - Each delivery is settled once: [`Consumer::ack`], [`Consumer::nack`] (redeliver after a
//!   delay), [`Consumer::reject`] (dead-letter now); [`Consumer::extend`] renews the lease
//!   (not a settlement).
//!   A settlement quoting a delivery that is no longer current is refused
//!   ([`SettleError::Stale`]); a second settlement is [`SettleError::AlreadySettled`].
//! - A lease that runs out, or a consumer that is dropped, makes the delivery deliverable
//!   again; past `max_attempts` deliveries the message moves to the dead-letter queue
//!   ([`Queue::dead_letters`]: list, replay, purge).
//! - After a crash at any point: every confirmed publish is pending, acked or dead-lettered;
//!   a torn tail is truncated and reported; damage elsewhere is reported, its bytes kept in the
//!   queue's `quarantine/`, and the messages it held dead-lettered with reason `corrupt`.
//! - A message id already pending or dead-lettered is not enqueued again.
//! - [`Db::open_read_only`] inspects a data directory without changing a file.
//! - An I/O error is final: the operation it hit gets [`QueueError::Io`] (with the operation,
//!   the file and the operating system's error), every later write [`QueueError::Poisoned`].
//!
//! ```
//! use std::time::Duration;
//! use ackline_queue::{Db, NewMessage, QueueOptions};
//!
//! let dir = tempfile::tempdir()?;
//! let db = Db::open(dir.path())?;
//! let q = db.queue("logs", QueueOptions::default())?;
//! q.publish(vec![NewMessage::new("hello").with_id("m-1")])?;
//! let c = q.consumer();
//! let d = c.receive(10, Duration::from_secs(30), Duration::from_secs(1))?;
//! assert_eq!((d[0].id.as_str(), d[0].tag.attempt), ("m-1", 1));
//! c.ack(d[0].tag)?.wait()?;
//! assert_eq!(q.stats().pending, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The on-disk format, the recovery procedure and a failure-case table are in
//! `docs/queue-format.md`.
//!
//! Cargo feature `sim` (off by default): the module `sim`, a simulated filesystem that keeps
//! written apart from durable data, for crash-consistency tests.

mod checkpoint;
mod clock;
mod db;
mod error;
pub mod fs;
mod log;
mod options;
mod queue;
mod record;
mod recovery;
#[cfg(feature = "sim")]
pub mod sim;
mod state;

pub use clock::{Clock, ManualClock, SystemClock};
pub use db::{Db, DbOptions, valid_queue_name};
pub use error::{IoError, OpenError, PublishError, QueueError, SettleError};
pub use options::{Fsync, QueueOptions};
pub use queue::{
    Commit, Consumer, DeadLetter, DeadLetterQueue, Delivery, DlqFilter, DlqSelector, NewMessage,
    Outgoing, Published, Queue, QueueStats, REASON_CORRUPT, REASON_MAX_ATTEMPTS, Settlement, Tag,
};
pub use recovery::{Damage, RecoveryReport};
