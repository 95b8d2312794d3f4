//! `ackline run --listen ADDR`: the web console ([`ackline_console`]) of the all-in-one
//! pipeline: its queue, its workers and their leases, the store and its circuit breaker,
//! the latency histograms of the worker runtime, and the records of a SQLite store.
//!
//! Invariants:
//! - Off unless asked for (`console.listen`); the address is bound before the workers start,
//!   so a taken port is an error at start (exit 1). Beyond loopback the configuration
//!   requires tokens (checked by [`crate::config::load`]).
//! - Sign-in uses `server.tokens` (constant-time compare, [`ackline_server::auth::find`]):
//!   `admin` is admin, `read` a viewer, any other token refused; none configured (loopback
//!   only): anyone is admin.
//! - Records are searched read-only, as `ackline query` does, and only in a SQLite store.
//! - The books count since this run opened the queue: first publishes plus what the queue
//!   held at open = stored (acked after the commit) + dead letters + pending + purged.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ackline_broker::embedded::EmbeddedBroker;
use ackline_broker::{DeadLetter, DeadLetters, DlqSelector};
use ackline_console::{
    Books, HistogramView, Host, HostError, Overview, QueueView, RecordQuery, RecordRow, Role,
    SessionView, StoreView,
};
use ackline_server::{Scope, Token};
use ackline_store::{Query, SqliteStore, StoreOptions, StoreUrl};
use ackline_worker::BreakerView;
use ackline_worker::Stats;
use anyhow::Context;
use chrono::{DateTime, FixedOffset};
use tokio::sync::watch;

use crate::output::Out;

/// What the console of `run` shows and acts on.
#[derive(Debug)]
pub struct RunHost {
    /// The queue's name.
    pub queue: String,
    /// The queue.
    pub broker: Arc<EmbeddedBroker>,
    /// The workers' counters and histograms.
    pub stats: Arc<Stats>,
    /// The workers' circuit breaker over the store.
    pub breaker: BreakerView,
    /// How many workers.
    pub workers: usize,
    /// The store, redacted.
    pub store_name: String,
    /// The store's URL and options (records are searched when it is SQLite).
    pub store_url: String,
    /// The store's options.
    pub store_options: StoreOptions,
    /// Tokens (`server.tokens`).
    pub tokens: Vec<Token>,
    /// What the queue held when this run opened it: (pending, dead letters).
    pub at_open: (u64, u64),
}

/// Binds `addr`, then serves the console over `host` on a task of its own until `stop`.
pub async fn spawn(
    addr: SocketAddr,
    host: RunHost,
    mut stop: watch::Receiver<bool>,
    out: Out,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the console on {addr}"))?;
    let bound = listener
        .local_addr()
        .with_context(|| format!("reading the console's address ({addr})"))?;
    out.note(&format!("ackline: console on http://{bound}/ui/"));
    let router = ackline_console::router(Arc::new(host), ackline_console::ConsoleConfig::default());
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = ackline_server::serve_router(listener, router, shutdown).await {
            tracing::warn!(error = %e, "the console stopped");
        }
    });
    Ok(())
}

fn histogram(name: &str, h: ackline_worker::HistogramSnapshot) -> HistogramView {
    HistogramView {
        name: name.into(),
        bounds: h.bounds.to_vec(),
        buckets: h.buckets,
    }
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A time of the records page: RFC 3339, a date, or Unix ms.
fn time(field: &str, s: &str) -> Result<DateTime<FixedOffset>, HostError> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i64>() {
        return DateTime::from_timestamp_millis(n)
            .map(|t| t.fixed_offset())
            .ok_or_else(|| HostError::Bad(format!("{field}: {n} ms is out of range")));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t);
    }
    Err(HostError::Bad(format!(
        "{field}: expected an RFC 3339 time or Unix ms, got {s:?}"
    )))
}

impl RunHost {
    fn check_queue(&self, queue: &str) -> Result<(), HostError> {
        if queue == self.queue {
            Ok(())
        } else {
            Err(HostError::NoQueue(queue.into()))
        }
    }
}

impl Host for RunHost {
    fn authenticate(&self, token: &str) -> Option<Role> {
        if self.tokens.is_empty() {
            return Some(Role::Admin);
        }
        let t = ackline_server::auth::find(&self.tokens, token)?;
        if t.grants(Scope::Admin) {
            Some(Role::Admin)
        } else if t.grants(Scope::Read) {
            Some(Role::Viewer)
        } else {
            None
        }
    }

    fn requires_token(&self) -> bool {
        !self.tokens.is_empty()
    }

    async fn overview(&self) -> Result<Overview, HostError> {
        let s = self.broker.queue().stats();
        let (pending0, dead0) = self.at_open;
        let outage = self.breaker.outage();
        Ok(Overview {
            mode: "run".into(),
            relay: None,
            queues: vec![QueueView {
                name: self.queue.clone(),
                ready: s.ready,
                leased: s.leased,
                delayed: s.delayed,
                dead_letters: s.dead_letters,
                published: s.published,
                redelivered: s.redelivered,
                acked: s.acked,
                nacked: s.nacked,
                dead_lettered: s.dead_lettered,
                lease_expired: s.lease_expired,
                replayed: s.replayed,
                purged: s.purged,
            }],
            sessions: vec![SessionView {
                queue: self.queue.clone(),
                name: format!("{} worker(s) in this process", self.workers),
                leases: s.leased,
                idle_ms: 0,
            }],
            store: StoreView {
                name: self.store_name.clone(),
                state: if outage.is_some() { "outage" } else { "up" }.into(),
                outage_ms: outage.as_ref().map(|(d, _)| ms(*d)),
                error: outage.map(|(_, e)| e),
                breaker: if self.breaker.is_open() {
                    "open"
                } else {
                    "closed"
                }
                .into(),
            },
            latency: vec![
                histogram("end_to_end", self.stats.end_to_end_latency()),
                histogram("store_batch", self.stats.store_batch_latency()),
            ],
            books: Books {
                published: s.published.saturating_sub(s.replayed) + pending0 + dead0,
                stored: s.acked,
                dead_lettered: s.dead_letters,
                pending: s.pending,
                purged: s.purged,
                settled_as: "stored".into(),
            },
        })
    }

    async fn dlq_list(
        &self,
        queue: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, HostError> {
        self.check_queue(queue)?;
        Ok(self.broker.dlq_list(after, limit).await?)
    }

    async fn dlq_get(&self, queue: &str, key: u64) -> Result<Option<DeadLetter>, HostError> {
        self.check_queue(queue)?;
        Ok(self.broker.dlq_get(key).await?)
    }

    async fn dlq_replay(&self, queue: &str, sel: DlqSelector) -> Result<usize, HostError> {
        self.check_queue(queue)?;
        Ok(self.broker.dlq_replay(sel).await?)
    }

    async fn dlq_purge(&self, queue: &str, sel: DlqSelector) -> Result<usize, HostError> {
        self.check_queue(queue)?;
        Ok(self.broker.dlq_purge(sel).await?)
    }

    async fn records(&self, q: RecordQuery) -> Result<Vec<RecordRow>, HostError> {
        let path: PathBuf = match StoreUrl::parse(&self.store_url) {
            Ok(StoreUrl::Sqlite(p)) => p,
            _ => {
                return Err(HostError::NotHere(format!(
                    "records are searched in a SQLite store; this run stores to {}",
                    self.store_name
                )));
            }
        };
        let severity_at_most = match q.severity.as_deref() {
            None => None,
            Some(s) => Some(
                ackline_parse::Severity::from_text(s.trim().as_bytes()).ok_or_else(|| {
                    HostError::Bad(format!(
                        "severity {s:?}: expected emerg, alert, crit, err, warning, notice, info or debug"
                    ))
                })?,
            ),
        };
        let query = Query {
            since: q.since.as_deref().map(|s| time("since", s)).transpose()?,
            until: q.until.as_deref().map(|s| time("until", s)).transpose()?,
            severity_at_most,
            host: q.host,
            app: q.app,
            text: q.text,
            limit: q.limit,
            after: None,
        };
        if !path.is_file() {
            return Ok(Vec::new());
        }
        let store = SqliteStore::open(&path, &self.store_options)
            .await
            .map_err(|e| HostError::Failed(format!("opening the store: {e}")))?;
        let records = store
            .query(&query)
            .await
            .map_err(|e| HostError::Failed(format!("querying the store: {e}")))?;
        Ok(records
            .into_iter()
            .map(|r| RecordRow {
                id: r.id,
                timestamp: r.timestamp.to_rfc3339(),
                severity: r.severity.map(|s| s.to_string()),
                host: r.host,
                app: r.app,
                message: r.message,
            })
            .collect())
    }
}
