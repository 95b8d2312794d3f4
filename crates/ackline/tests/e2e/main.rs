//! End-to-end tests of the `ackline` binary, in one test binary (each module was a binary of
//! its own, compiling `common` again): `common` runs the binary with a deadline and holds the
//! shared helpers; `proxy` is the worker runtime's TCP proxy for a store outage.
//!
//! Run one module's tests with `cargo test -p ackline --test e2e <module>::`.

#![allow(clippy::unwrap_used)] // tests: a panic is a failed assertion

mod common;
#[path = "../../../ackline-worker/tests/worker/proxy.rs"]
mod proxy;

mod bench_http;
mod brokers;
mod cli;
mod console;
mod crash;
mod dlq_broker;
mod kafka_scale_out;
mod max_attempts;
mod nats_scale_out;
mod pipeline;
mod redis_scale_out;
mod scale_out;
mod serve_work;
mod signals;
mod store_outage;
mod token_file;
