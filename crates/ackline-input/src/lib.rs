//! # ackline-input: lines in, messages out
//!
//! The inputs of the all-in-one pipeline. Each reads newline-delimited text and publishes one
//! [`Message`](ackline_broker::Message) per line to any [`Broker`](ackline_broker::Broker); it
//! knows nothing of parsing or stores.
//!
//! - [`FileInput`] follows files named by paths or glob patterns, `tail -F` style, with a
//!   persisted read position per file ([`positions`]).
//! - [`StdinInput`] reads standard input (or any `AsyncRead`) to its end.
//!
//! ## Messages
//! - payload: the line's bytes without its `\n` and without a `\r` just before it. Nothing else
//!   is changed: invalid UTF-8 and NUL bytes are published as they are.
//! - header `input`: the input's name (the file's path, or `stdin`); then the headers of the
//!   file's [`FileGroup`] (its parse settings, which the input carries without reading), and
//!   `mtime` (the file's modification time, Unix ms) when the group asks for it.
//! - empty lines are published as empty messages: lossless means every line in is a message
//!   out, so the count of lines read and of records stored can be reconciled, and a blank line
//!   can matter (a separator in a multi-line dump). Dropping them is a processing decision.
//! - a line longer than `max_line_bytes` (default 8 MiB) is published in parts of at most
//!   `max_line_bytes`, each with headers `part` = `i/n` (1-based) and `line_offset` (the byte
//!   offset of the line's start), so no line is dropped and the line can be reassembled. Parts
//!   were chosen over a reject file because a reject file is a second place nobody watches:
//!   parts keep the data in the pipeline, in order, visible in the store.
//!
//! ## Ids
//! - File lines: `file:<dev>:<inode>:<fingerprint>:<generation>:<offset>`
//!   ([`file_message_id`]): the file's device and inode numbers, the checksum of its first
//!   line ([`fingerprint`]; filesystems reuse inode numbers, first lines differ), its
//!   generation (incremented each time it is truncated in place, and for a new file that
//!   reuses the inode of a retired or saved one), and the byte offset of the message's first
//!   byte (a part's own offset for a part of a long line). The same bytes of the same file
//!   always get the same id, so lines published again after a crash are deduplicated by the
//!   store. Files saved by positions version 1 keep the version 1 form
//!   `file:<dev>:<inode>:<generation>:<offset>` until truncated or finished.
//! - Stdin lines: `stdin:<run id>:<line number>` ([`stdin_message_id`]), random run id.
//!
//! ## Invariants
//! - **A committed position is never ahead of what is durably published**: a file's position
//!   moves past a line only after `Broker::publish` returned `Ok` for it, and is then committed
//!   atomically (write, fsync, rename, fsync of the directory).
//! - **Ids are deterministic per (file identity, fingerprint, generation, offset)**, and a
//!   generation and fingerprint are committed before any line is published under them.
//! - **Nothing is dropped**: `Unavailable`/`Full` are retried with backoff for as long as it
//!   takes (the position does not move); `Fatal` stops the input with an error naming the
//!   input and offset; `Invalid` (the queue refuses one message) stops it the same way without
//!   moving the position past the message.

mod config;
mod counters;
mod error;
mod file;
pub mod fingerprint;
pub mod positions;
mod publish;
mod reader;
mod stdin;

pub use config::{
    BatchConfig, DEFAULT_GROUP, DEFAULT_MAX_LINE_BYTES, FileGroup, FileInputConfig, RetryConfig,
    StartAt, StdinConfig,
};
pub use counters::{CountersSnapshot, InputCounters};
pub use error::{At, InputError};
pub use file::{
    FileInput, POSITION_COMMIT_INTERVAL, PUBLISH_WINDOW, check_path_pattern, file_message_id,
    glob_matches,
};
pub use fingerprint::Fingerprint;
pub use positions::{JsonPositionStore, PositionStore, Positions};
pub use stdin::{StdinInput, stdin_message_id};
