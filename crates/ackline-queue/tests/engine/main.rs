//! The queue engine's integration tests, one binary with a module per concern:
//! - `contract`: every rule of the delivery contract, with an injected clock (no sleeps);
//! - `model`: random operation sequences (with restarts) checked against an in-memory model;
//! - `power_loss`: a simulated power loss at every step of a workload;
//! - `corruption`: torn tails at every byte offset and flipped bytes in the middle;
//! - `damage`: flipped bytes in real segment and checkpoint files, failing reads, relaxed
//!   fsync modes, read-only inspection, forged tags and repeated ids;
//! - `crash_damage`: a real child process killed with SIGKILL at observed progress, a random
//!   byte of a random segment flipped between runs, and the books checked;
//! - `concurrency`: several publisher and consumer threads, every message acked exactly once.
//!
//! Crash tests with real processes killed by SIGKILL live in the `ackline` crate's tests,
//! because they need a binary to kill.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

mod common;
mod concurrency;
mod contract;
mod corruption;
mod crash_damage;
mod damage;
mod model;
mod power_loss;
