//! The benchmarks: [`queue`] (the embedded queue alone; its filler child measures memory and
//! recovery after kill -9), [`pipeline`] (`ackline run --once` end to end beside a bare SQLite
//! insert), [`http`] (split mode on loopback beside the in-process figures).
//!
//! Invariant: each benchmark measures its figure and the figure it is compared with in the
//! same run, on the same machine, and reports that machine ([`measure`]).

pub(crate) mod http;
pub(crate) mod measure;
pub(crate) mod pipeline;
pub(crate) mod queue;
