//! The RabbitMQ backend's integration tests, one binary (one link, one `common`): each module
//! a former test file. They use the RabbitMQ on this machine (or `ACKLINE_AMQP_URL`); outside
//! CI an unreachable RabbitMQ skips them, under `CI=true` it fails them.
//!
//! | module | what it proves |
//! | --- | --- |
//! | `contract` | the backend contract suite, each test on fresh queues |
//! | `kill` | a worker process killed with SIGKILL mid-batch loses nothing (the child is this binary, `kill::child_worker`) |
//! | `connection_loss` | `rabbitmqctl close_connection` mid-run: reconnection without loss or duplicates |
//! | `idle` | an idle consumer gives its deliveries to one that asks |
//! | `tls` | `amqps` through a TLS-terminating proxy with a per-run CA |
//! | `foreign` | messages from other AMQP producers |
//! | `queue_arguments` | the queue arguments that keep RabbitMQ from dropping anything |
//!
//! `common` holds the URL, unique queue names, cleanup guards, and (`common::worker`) the
//! worker the crash tests run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod connection_loss;
mod contract;
mod foreign;
mod idle;
mod kill;
mod queue_arguments;
mod tls;
#[path = "../../../ackline-broker/tests/shared/tls_proxy.rs"]
mod tls_proxy;
