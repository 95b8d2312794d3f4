//! The dead-letter topic `<topic>.dlq` and its operations.
//!
//! The topic has one partition, so an entry's key is its record offset, and is kept until
//! purged (`retention.ms=-1` when created here). Kafka cannot delete one record, so purge is a
//! tombstone index: a marker record (empty payload, header `ackline.purged` = the key) appended
//! to the same topic; listing reads the topic from its start and leaves out marked entries and
//! the markers. Replay republishes the entry to the topic (same id, headers, payload and
//! `enqueued_at`; attempts reset) and then marks it.
//!
//! Invariants:
//! - An entry is written with `acks=all` before the original's offset may be committed
//!   (`consumer`), so a dead-lettered message is never only in memory.
//! - A replay publishes before it marks: a crash between the two leaves the entry listed and
//!   the message queued (at-least-once; the store is idempotent by id), never neither.
//! - Reading stops at the high watermark seen when it began: entries dead-lettered meanwhile
//!   are in the next listing.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use ackline_broker::{BrokerError, DeadLetter, DeadLetters, DlqSelector};
use rdkafka::Message as _;
use rdkafka::consumer::Consumer as _;
use rdkafka::message::Headers as _;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::client::{self, Record, blocking, classify, unavailable};
use crate::{Inner, KafkaBroker, wire};

/// The dead-letter topic's live entries, in key order.
pub(crate) async fn scan(inner: &Arc<Inner>) -> Result<Vec<DeadLetter>, BrokerError> {
    let i = inner.clone();
    blocking(move || {
        let c = client::plain_consumer(&i, &format!("{}.dlq-reader", i.opts.group))?;
        let t = i.opts.request_timeout;
        let (low, high) = c
            .fetch_watermarks(&i.dlq, 0, t)
            .map_err(|e| classify("dead-letter watermarks", &e))?;
        if high <= low {
            return Ok(Vec::new());
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&i.dlq, 0, Offset::Offset(low))
            .map_err(|e| classify("dead-letter assignment", &e))?;
        c.assign(&tpl)
            .map_err(|e| classify("dead-letter assignment", &e))?;
        let deadline = Instant::now() + t;
        let mut entries = Vec::new();
        let mut purged = BTreeSet::new();
        let mut next = low;
        while next < high {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(unavailable(format!(
                    "reading the dead-letter topic: at offset {next} of {high} after {t:?}"
                )));
            }
            let Some(m) = c.poll(left) else { continue };
            let m = m.map_err(|e| classify("reading the dead-letter topic", &e))?;
            next = m.offset() + 1;
            let (meta, headers) = match m.headers() {
                Some(h) => wire::decode(h.iter().map(|h| (h.key, h.value))),
                None => wire::decode(std::iter::empty()),
            };
            if let Some(k) = meta.purged {
                purged.insert(k);
                continue;
            }
            let key = u64::try_from(m.offset()).unwrap_or(0);
            let last_failure = meta.last_failure.unwrap_or(0);
            entries.push(DeadLetter {
                key,
                id: meta.id.unwrap_or_else(|| format!("{}:0:{key}", i.dlq)),
                headers,
                payload: m.payload().unwrap_or_default().to_vec(),
                enqueued_at: meta.enqueued_at.unwrap_or(0),
                attempts: meta.attempts,
                first_failure: meta.first_failure.unwrap_or(last_failure),
                last_failure,
                reason: meta.reason.unwrap_or_default(),
                last_error: meta.error.unwrap_or_default(),
            });
        }
        entries.retain(|e| !purged.contains(&e.key));
        Ok(entries)
    })
    .await
}

fn selected(d: &DeadLetter, sel: &DlqSelector) -> bool {
    match sel {
        DlqSelector::All => true,
        DlqSelector::Keys(k) => k.contains(&d.key),
        DlqSelector::Ids(ids) => ids.contains(&d.id),
        DlqSelector::Matching(t) => {
            d.reason.contains(t.as_str()) || d.last_error.contains(t.as_str())
        }
    }
}

fn marker(inner: &Inner, d: &DeadLetter) -> Record {
    Record {
        topic: inner.dlq.clone(),
        key: d.id.clone(),
        headers: Vec::new(),
        meta: wire::Meta {
            purged: Some(d.key),
            ..wire::Meta::default()
        },
        payload: Vec::new(),
    }
}

impl DeadLetters for KafkaBroker {
    async fn dlq_list(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, BrokerError> {
        Ok(scan(&self.inner)
            .await?
            .into_iter()
            .filter(|d| after.is_none_or(|a| d.key > a))
            .take(limit)
            .collect())
    }

    async fn dlq_get(&self, key: u64) -> Result<Option<DeadLetter>, BrokerError> {
        Ok(scan(&self.inner).await?.into_iter().find(|d| d.key == key))
    }

    async fn dlq_replay(&self, sel: DlqSelector) -> Result<usize, BrokerError> {
        let chosen: Vec<_> = scan(&self.inner)
            .await?
            .into_iter()
            .filter(|d| selected(d, &sel))
            .collect();
        let copies = chosen
            .iter()
            .map(|d| Record {
                topic: self.inner.topic.clone(),
                key: d.id.clone(),
                headers: d.headers.clone(),
                meta: wire::Meta {
                    id: Some(d.id.clone()),
                    enqueued_at: Some(d.enqueued_at),
                    ..wire::Meta::default()
                },
                payload: d.payload.clone(),
            })
            .collect();
        self.inner.producer.send_all(copies).await?;
        let marks = chosen.iter().map(|d| marker(&self.inner, d)).collect();
        self.inner.producer.send_all(marks).await?;
        Ok(chosen.len())
    }

    async fn dlq_purge(&self, sel: DlqSelector) -> Result<usize, BrokerError> {
        let marks: Vec<_> = scan(&self.inner)
            .await?
            .iter()
            .filter(|d| selected(d, &sel))
            .map(|d| marker(&self.inner, d))
            .collect();
        let n = marks.len();
        self.inner.producer.send_all(marks).await?;
        Ok(n)
    }
}
