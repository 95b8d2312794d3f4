//! Integration tests of the worker runtime and the relay, in one test binary (each module was
//! a binary of its own): `runtime` (the runtime on the embedded queue with a store the tests
//! control), `postgres_outage` (PostgreSQL behind `proxy`, a TCP proxy the tests control,
//! also used by `crates/ackline/tests/e2e`), `forward` (the store-and-forward relay).

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

mod forward;
mod postgres_outage;
mod proxy;
mod runtime;
