//! The Kafka backend against private tansu servers (a Kafka-API broker; `common`), in one test
//! binary:
//! - `contract`: the backend contract suite;
//! - `wire`: what ackline leaves in Kafka (keys, headers, copies, committed offsets), read
//!   with a plain librdkafka consumer.

mod common;
mod contract;
mod wire;
