//! The web console of the server: [`ackline_console`]'s router over this server's queues,
//! sessions, metrics and tokens.
//!
//! Invariants:
//! - Sign-in uses the server's tokens (constant-time compare, [`auth::find`]): `admin` signs
//!   in as admin, `read` as viewer, any other token is refused; with no tokens configured
//!   (loopback only) anyone is admin, as on the API.
//! - Reading never creates a queue: dead-letter routes use existing queues only.
//! - The books count since each queue was opened by this server: published (first publishes:
//!   replays excluded) plus what the queue held at open = acked + dead letters + pending +
//!   purged.

use std::sync::Arc;

use ackline_broker::{DeadLetter, DeadLetters, DlqSelector};
use ackline_console::{Books, Host, HostError, Overview, QueueView, Role, SessionView, StoreView};
use axum::Router;

use crate::auth::{self, Scope};
use crate::state::AppState;

/// The server as the console's host.
#[derive(Debug)]
pub struct ServerHost {
    st: AppState,
}

/// The console's router for this server.
pub fn router(st: AppState) -> Router {
    let cfg = st.cfg.console_config.clone();
    ackline_console::router(Arc::new(ServerHost { st }), cfg)
}

impl ServerHost {
    fn queue(&self, name: &str) -> Result<ackline_broker::embedded::EmbeddedBroker, HostError> {
        self.st
            .queues
            .existing(name)
            .map_err(|_| HostError::NoQueue(name.to_string()))
    }
}

impl Host for ServerHost {
    fn authenticate(&self, token: &str) -> Option<Role> {
        let tokens = &self.st.cfg.tokens;
        if tokens.is_empty() {
            return Some(Role::Admin);
        }
        let t = auth::find(tokens, token)?;
        if t.grants(Scope::Admin) {
            Some(Role::Admin)
        } else if t.grants(Scope::Read) {
            Some(Role::Viewer)
        } else {
            None
        }
    }

    fn requires_token(&self) -> bool {
        !self.st.cfg.tokens.is_empty()
    }

    async fn overview(&self) -> Result<Overview, HostError> {
        let mut queues = Vec::new();
        let mut books = Books {
            settled_as: if self.st.cfg.relay_to.is_some() {
                "relayed".into()
            } else {
                "stored".into()
            },
            ..Books::default()
        };
        for name in self.st.queues.names() {
            let Ok(b) = self.st.queues.existing(&name) else {
                continue;
            };
            let s = b.queue().stats();
            let (pending0, dead0) = self.st.queues.at_open(&name);
            books.published += s.published.saturating_sub(s.replayed) + pending0 + dead0;
            books.stored += s.acked;
            books.dead_lettered += s.dead_letters;
            books.pending += s.pending;
            books.purged += s.purged;
            queues.push(QueueView {
                name,
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
            });
        }
        let sessions = self
            .st
            .sessions
            .list()
            .into_iter()
            .map(|(id, queue, leases, idle)| SessionView {
                queue,
                name: format!("session {}", id.get(..8).unwrap_or(&id)),
                leases: leases as u64,
                idle_ms: u64::try_from(idle.as_millis()).unwrap_or(u64::MAX),
            })
            .collect();
        Ok(Overview {
            mode: "serve".into(),
            relay: self.st.cfg.relay_to.clone(),
            queues,
            sessions,
            store: StoreView {
                name: if self.st.cfg.relay_to.is_some() {
                    "the broker's workers own the store".into()
                } else {
                    "the workers (ackline work) own the store".into()
                },
                state: "unknown".into(),
                outage_ms: None,
                error: None,
                breaker: "unknown".into(),
            },
            latency: vec![self.st.metrics.end_to_end_view()],
            books,
        })
    }

    async fn dlq_list(
        &self,
        queue: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, HostError> {
        Ok(self.queue(queue)?.dlq_list(after, limit).await?)
    }

    async fn dlq_get(&self, queue: &str, key: u64) -> Result<Option<DeadLetter>, HostError> {
        Ok(self.queue(queue)?.dlq_get(key).await?)
    }

    async fn dlq_replay(&self, queue: &str, sel: DlqSelector) -> Result<usize, HostError> {
        Ok(self.queue(queue)?.dlq_replay(sel).await?)
    }

    async fn dlq_purge(&self, queue: &str, sel: DlqSelector) -> Result<usize, HostError> {
        Ok(self.queue(queue)?.dlq_purge(sel).await?)
    }
}
