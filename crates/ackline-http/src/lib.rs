//! # ackline-http: the lease API as a broker
//!
//! [`HttpBroker`] implements [`ackline_broker::Broker`], [`Consumer`](ackline_broker::Consumer)
//! and [`DeadLetters`] over an `ackline-server`'s HTTP API, so the
//! worker runtime runs remote workers unchanged (`ackline work --queue http://HOST:PORT`).
//!
//! The client is hyper-util's pooled HTTP/1 client: the server already builds hyper, so the
//! client adds almost nothing to compile, where reqwest would add its own stack (url, cookie,
//! redirect and TLS layers) that a loopback or LAN lease API does not use. Plain `http://`
//! only; put a TLS-terminating proxy in front when workers cross an untrusted network.
//!
//! The bodies are [`ackline_wire`]'s, the types the server reads and writes.
//!
//! How each verb maps (see `docs/server.md`):
//! - `publish` → `POST /v1/queues/{q}/messages` (200 once durable);
//! - `consumer` → `POST /v1/queues/{q}/sessions` (a server-side session);
//! - `receive` → `POST .../sessions/{id}/receive` (long-poll); a session the server no
//!   longer knows (expired, server restarted) is reopened transparently;
//! - `settle` → `POST .../sessions/{id}/settle`; `close` → `DELETE .../sessions/{id}`;
//! - dead letters → `/v1/queues/{q}/dlq...`; `stats` → `GET /v1/queues/{q}/stats`.
//!
//! Errors: connection failures (nothing was sent) are retried a few times with backoff, then
//! [`BrokerError::Unavailable`]; 429, and 503 with code `full`, are [`BrokerError::Full`] with
//! the server's `Retry-After`; other 503s and timeouts are `Unavailable`; 400/413 are
//! `Invalid`; 401/403 and 500 are `Fatal` (a configuration or server fault).
//!
//! Invariant: a request is retried only when it was never sent (a connect error), so a
//! retry never settles or publishes twice behind the caller's back.

mod client;
mod consumer;

use std::sync::Arc;

use ackline_broker::{
    Broker, BrokerError, BrokerStats, ConsumerOptions, DeadLetter, DeadLetters, DlqSelector,
    Message,
};
use ackline_wire as wire;

pub use client::Client;
pub use consumer::HttpConsumer;

const NAME: &str = "http";

/// A queue on an `ackline-server`.
#[derive(Debug, Clone)]
pub struct HttpBroker {
    client: Arc<Client>,
    queue: String,
}

impl HttpBroker {
    /// A broker for `url` (`http://HOST:PORT`, optionally `/QUEUE` or `?queue=QUEUE`; the
    /// queue defaults to `logs`, the server's default) with an optional bearer token. Nothing
    /// is sent until the first operation.
    pub fn connect(url: &str, token: Option<String>) -> Result<HttpBroker, BrokerError> {
        let (client, queue) = Client::new(url, token)?;
        Ok(HttpBroker {
            client: Arc::new(client),
            queue,
        })
    }

    /// The same server, another queue.
    pub fn with_queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    /// The queue this broker uses.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    fn qpath(&self, rest: &str) -> String {
        format!("/v1/queues/{}{rest}", self.queue)
    }
}

impl Broker for HttpBroker {
    type Consumer = HttpConsumer;

    fn name(&self) -> &'static str {
        NAME
    }

    async fn publish(&self, batch: Vec<Message>) -> Result<(), BrokerError> {
        let body = wire::PublishRequest {
            messages: batch.into_iter().map(wire::NewMessage::from).collect(),
        };
        self.client
            .post::<wire::Published>(&self.qpath("/messages"), &body, None)
            .await?;
        Ok(())
    }

    async fn consumer(&self, opts: ConsumerOptions) -> Result<HttpConsumer, BrokerError> {
        HttpConsumer::open(self.client.clone(), self.queue.clone(), opts).await
    }

    async fn stats(&self) -> Result<BrokerStats, BrokerError> {
        let s: wire::Stats = self.client.get(&self.qpath("/stats")).await?;
        Ok(s.into())
    }
}

impl DeadLetters for HttpBroker {
    async fn dlq_list(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, BrokerError> {
        let mut path = self.qpath(&format!("/dlq?limit={limit}"));
        if let Some(a) = after {
            path.push_str(&format!("&after={a}"));
        }
        let r: wire::DeadLetterList = self.client.get(&path).await?;
        r.entries.into_iter().map(dead_letter).collect()
    }

    async fn dlq_get(&self, key: u64) -> Result<Option<DeadLetter>, BrokerError> {
        match self
            .client
            .get::<wire::DeadLetter>(&self.qpath(&format!("/dlq/{key}")))
            .await
        {
            Ok(d) => dead_letter(d).map(Some),
            Err(client::Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn dlq_replay(&self, sel: DlqSelector) -> Result<usize, BrokerError> {
        let r: wire::Replayed = self
            .client
            .post(&self.qpath("/dlq/replay"), &wire::Selector::from(sel), None)
            .await?;
        Ok(r.replayed)
    }

    async fn dlq_purge(&self, sel: DlqSelector) -> Result<usize, BrokerError> {
        let r: wire::Purged = self
            .client
            .post(&self.qpath("/dlq/purge"), &wire::Selector::from(sel), None)
            .await?;
        Ok(r.purged)
    }
}

/// A dead letter as the server sent it; a payload that does not decode is the server's fault.
fn dead_letter(d: wire::DeadLetter) -> Result<DeadLetter, BrokerError> {
    d.into_broker().map_err(bad_payload)
}

/// A payload from the server that does not decode (`Fatal`: the server broke the contract).
fn bad_payload(e: wire::PayloadError) -> BrokerError {
    BrokerError::Fatal {
        backend: NAME,
        reason: format!("server sent a bad payload: {e}"),
    }
}
