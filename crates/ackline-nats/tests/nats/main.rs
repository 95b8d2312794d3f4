//! The NATS JetStream backend's tests, one binary: the contract suite against the server on
//! this machine, a SIGKILLed worker process, restarts of a private server the tests start
//! (reconnection, attempts and messages surviving), TLS with a private CA and credentials,
//! stale settlements, and the stream settings that keep JetStream from dropping anything.
//!
//! Every test makes its own streams (unique names) and deletes them at the end, even when it
//! fails. When the server on 127.0.0.1:4222 is unreachable: under `CI=true` a test fails,
//! otherwise it prints `skipped: ...` and returns (see `common::reachable`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod contract;
mod kill;
#[path = "../../../ackline-broker/tests/shared/pki.rs"]
mod pki;
mod restart;
mod settings;
mod tls;
