//! The inputs' integration tests, one binary (one link, one `common`): each module a former
//! test file.
//!
//! | module | what it proves |
//! | --- | --- |
//! | `file_input` | `FileInput` on the embedded queue: payloads, ids, headers, restarts, rotation, truncation, deletion, globs, long lines, odd bytes, a refusing broker |
//! | `file_identity` | which file is which: inode reuse, files replaced while stopped, copytruncate, version-1 positions, `start_at = end` across restarts |
//! | `stdin_input` | `StdinInput` on the embedded queue |
//!
//! `common` holds the embedded queue on a tempdir, a broker double that fails on command,
//! position stores that fail or check, and deadline-bounded waits.

mod common;
mod file_identity;
mod file_input;
mod stdin_input;
