//! # ackline-wire: the HTTP API's JSON bodies, defined once
//!
//! `ackline-server` serves the lease API (publish, sessions, receive, settle) and the admin
//! API (queues, stats, dead letters); `ackline-http` is its client. Both read and write the
//! bodies through the types of this crate, so server and client cannot drift apart, and the
//! server's OpenAPI test (`ackline_server::openapi`), which checks these types against the
//! served document, covers the client too.
//!
//! A crate of its own rather than a module of either side: the server must not build the
//! HTTP client (hyper's client stack) to name a body, nor the client the server (axum, the
//! engine's routes). It depends on `serde`, `base64` and `ackline-broker` (for the
//! conversions from and to the broker traits' values, which both sides already depend on).
//!
//! | module | bodies |
//! | --- | --- |
//! | [`payload`] | how bytes travel in JSON: [`Encoding`], [`encode`], [`decode`] |
//! | [`lease`] | publish, open session, receive, settle |
//! | [`admin`] | queue stats, dead letters and their selectors, replay and purge counts |
//! | [`error`] | the body of every failed request |
//!
//! Invariants:
//! - The JSON form of every type is the API's contract (`openapi.json` in `ackline-server`):
//!   field names, tags (`encoding`, `op`, `result`) and defaults change only with the
//!   document, and the server's OpenAPI test compares them.
//! - Payloads are lossless: valid UTF-8 travels as text with `"encoding": "utf8"`, any other
//!   bytes as standard base64 with `"encoding": "base64"`; headers are an ordered list of
//!   pairs, so order and repeats survive.
//! - Fields a side may leave out have a serde default equal to the documented one, so a
//!   body written by either side reads back the same on the other.

pub mod admin;
pub mod error;
pub mod lease;
pub mod payload;

pub use admin::{DeadLetter, DeadLetterList, Purged, QueueList, Replayed, Selector, Stats};
pub use error::ErrorBody;
pub use lease::{
    Deliveries, Delivery, NewMessage, OpenSession, PublishRequest, Published, ReceiveRequest,
    Session, SettleItem, SettleOp, SettleRequest, SettleResult, SettleResults,
};
pub use payload::{Encoding, PayloadError, decode, encode};

/// A duration in whole milliseconds, as the API writes leases and delays (saturating).
pub fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
