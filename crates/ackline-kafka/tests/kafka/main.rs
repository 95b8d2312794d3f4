//! The Kafka backend against private tansu servers (a Kafka-API broker; `common`), in one test
//! binary:
//! - `contract`: the backend contract suite;
//! - `flow`: how far a consumer reads ahead of its worker (the read-ahead bound);
//! - `group`: a dropped consumer, and a consumer joining while another holds deliveries;
//! - `kill`: a worker process SIGKILLed mid-run (the real runtime, the SQLite store);
//! - `restart`: the broker itself SIGKILLed and restarted on its storage (tansu's SQLite
//!   engine), frozen past the group's session timeout, and gone for good;
//! - `tls`: `kafkas://` through a TLS proxy in front of tansu, with and without the CA;
//! - `coordinator`: a coordinator that never answers a JoinGroup, or answers late (a proxy);
//! - `wire`: what ackline leaves in Kafka (keys, headers, copies, committed offsets), read
//!   with a plain librdkafka consumer.

mod common;
mod contract;
mod coordinator;
mod flow;
mod group;
mod kill;
mod restart;
mod tls;
#[path = "../../../ackline-broker/tests/shared/tls_proxy.rs"]
mod tls_proxy;
mod wire;
#[path = "../../../ackline-worker/tests/shared/crash_worker.rs"]
mod worker;
