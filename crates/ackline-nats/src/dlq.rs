//! The dead-letter stream `<queue>-dlq`: copies in, list, show, replay, purge.
//!
//! A dead-letter entry is a JetStream message on `ackline.<queue>.dlq` carrying the original
//! payload, its id and headers, and the dead-letter fields ([`crate::wire`]); its key is its
//! sequence in the dead-letter stream, which never changes and is never reused.
//!
//! - **Copy in** (`copy`): published and CONFIRMED before the original is terminated
//!   (`+TERM`); its `Nats-Msg-Id` is `ackline-dlq:<queue>:<source sequence>`, so a copy made
//!   again (the terminate was lost and the message came back) inside the duplicate window is
//!   absorbed by the server.
//! - **List / show**: reads by sequence (`STREAM.MSG.GET` with `next_by_subj`), one request per
//!   entry; the stream is not consumed, so looking changes nothing.
//! - **Replay**: a copy of each selected entry is published to the main stream with attempts
//!   reset (a new stream message starts with delivery count 0) and `Nats-Msg-Id`
//!   `ackline-replay:<dlq>:<key>` (so a replay retried inside the window stores one copy),
//!   CONFIRMED; only then is the entry deleted.
//! - **Purge**: deletes the selected entries by sequence (all of them: one stream purge).
//!
//! Invariants: a replayed entry is deleted only after its copy is confirmed, so an
//! interrupted replay leaves the entry in place (a repeat is safe: same id, stored once); one
//! dead-letter operation at a time per handle.

use ackline_broker::{BrokerError, DeadLetter, DlqSelector};
use async_nats::HeaderMap;
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use bytes::Bytes;

use crate::Inner;
use crate::connection::unavailable;
use crate::publish::{Outgoing, publish_confirmed};
use crate::wire::{
    DeadFields, ENQUEUED_AT, Envelope, ID, MSG_ID, SOURCE_SEQ, encode_id, put, put_headers,
};

/// What a dead-letter copy is made from.
#[derive(Debug, Clone)]
pub(crate) struct Original {
    pub seq: u64,
    pub id: String,
    pub headers: Vec<(String, String)>,
    pub enqueued_at: u64,
    pub payload: Bytes,
}

/// The dead-letter copy of `o` (see the module doc).
pub(crate) fn copy(inner: &Inner, o: &Original, fields: &DeadFields) -> Outgoing {
    let mut h = HeaderMap::new();
    put(
        &mut h,
        MSG_ID,
        &format!("ackline-dlq:{}:{}", inner.queue, o.seq),
    );
    put(&mut h, ID, &encode_id(&o.id));
    put_headers(&mut h, &o.headers);
    put(&mut h, ENQUEUED_AT, &o.enqueued_at.to_string());
    put(&mut h, SOURCE_SEQ, &o.seq.to_string());
    fields.put(&mut h);
    Outgoing {
        subject: inner.dlq_subject.clone(),
        headers: h,
        payload: o.payload.clone(),
    }
}

/// Reads an entry. One ackline did not write (published on the subject by hand) keeps what
/// it has: its id is `nats:<dlq>:<seq>` when it carries none.
fn decode(inner: &Inner, m: &StreamMessage) -> DeadLetter {
    let env = Envelope::decode(Some(&m.headers));
    let f = DeadFields::decode(Some(&m.headers));
    let published = u64::try_from(m.time.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    DeadLetter {
        key: m.sequence,
        id: env
            .id
            .unwrap_or_else(|| format!("nats:{}:{}", inner.dlq, m.sequence)),
        headers: env.headers,
        payload: m.payload.to_vec(),
        enqueued_at: env.enqueued_at.unwrap_or(published),
        attempts: f.attempts,
        first_failure: if f.first_failure == 0 {
            published
        } else {
            f.first_failure
        },
        last_failure: if f.last_failure == 0 {
            published
        } else {
            f.last_failure
        },
        reason: f.reason,
        last_error: f.last_error,
    }
}

/// The entry at `seq` or the next one after it; `None` past the last.
async fn next_from(inner: &Inner, seq: u64) -> Result<Option<StreamMessage>, BrokerError> {
    let stream = inner
        .js
        .get_stream_no_info(&inner.dlq)
        .await
        .map_err(|e| unavailable(&inner.url, format!("opening the dead-letter stream: {e}")))?;
    match stream
        .raw_message_builder()
        .sequence(seq.max(1))
        .next_by_subject(inner.dlq_subject.clone())
        .send()
        .await
    {
        Ok(m) => Ok(Some(m)),
        Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => Ok(None),
        Err(e) => Err(unavailable(
            &inner.url,
            format!("reading the dead-letter stream: {e}"),
        )),
    }
}

/// Entries with keys after `after`, at most `limit`.
pub(crate) async fn list(
    inner: &Inner,
    after: Option<u64>,
    limit: usize,
) -> Result<Vec<DeadLetter>, BrokerError> {
    let mut out = Vec::new();
    let mut seq = after.map_or(1, |a| a.saturating_add(1));
    while out.len() < limit {
        let Some(m) = next_from(inner, seq).await? else {
            break;
        };
        seq = m.sequence + 1;
        out.push(decode(inner, &m));
    }
    Ok(out)
}

/// The entry with this key.
pub(crate) async fn get(inner: &Inner, key: u64) -> Result<Option<DeadLetter>, BrokerError> {
    if key == 0 {
        return Ok(None);
    }
    Ok(next_from(inner, key)
        .await?
        .filter(|m| m.sequence == key)
        .map(|m| decode(inner, &m)))
}

/// Whether `sel` selects `d`.
pub(crate) fn selects(sel: &DlqSelector, d: &DeadLetter) -> bool {
    match sel {
        DlqSelector::All => true,
        DlqSelector::Keys(k) => k.contains(&d.key),
        DlqSelector::Ids(ids) => ids.contains(&d.id),
        DlqSelector::Matching(text) => d.reason.contains(text) || d.last_error.contains(text),
    }
}

/// Every selected entry, as raw messages.
async fn selected(inner: &Inner, sel: &DlqSelector) -> Result<Vec<StreamMessage>, BrokerError> {
    let mut out = Vec::new();
    let mut seq = 1;
    while let Some(m) = next_from(inner, seq).await? {
        seq = m.sequence + 1;
        if selects(sel, &decode(inner, &m)) {
            out.push(m);
        }
    }
    Ok(out)
}

async fn delete(inner: &Inner, seqs: &[u64]) -> Result<usize, BrokerError> {
    let stream = inner
        .js
        .get_stream_no_info(&inner.dlq)
        .await
        .map_err(|e| unavailable(&inner.url, format!("opening the dead-letter stream: {e}")))?;
    let mut n = 0;
    for &seq in seqs {
        match stream.delete_message(seq).await {
            Ok(true) => n += 1,
            // Already gone (another operator's purge): not counted.
            Ok(false) => {}
            Err(e) if e.to_string().contains("no message found") => {}
            Err(e) => {
                return Err(unavailable(
                    &inner.url,
                    format!(
                        "deleting dead-letter entry {seq}: {e} ({n} of {} removed; a repeat is \
                         safe, ids are idempotent)",
                        seqs.len()
                    ),
                ));
            }
        }
    }
    Ok(n)
}

/// Replays the selected entries (see the module doc); returns how many.
pub(crate) async fn replay(inner: &Inner, sel: &DlqSelector) -> Result<usize, BrokerError> {
    let _one_at_a_time = inner.dlq_lock.lock().await;
    let entries = selected(inner, sel).await?;
    let mut done = 0;
    for chunk in entries.chunks(500) {
        let copies: Vec<Outgoing> = chunk
            .iter()
            .map(|m| {
                let d = decode(inner, m);
                let mut h = HeaderMap::new();
                put(
                    &mut h,
                    MSG_ID,
                    &format!("ackline-replay:{}:{}", inner.dlq, m.sequence),
                );
                put(&mut h, ID, &encode_id(&d.id));
                put_headers(&mut h, &d.headers);
                put(&mut h, ENQUEUED_AT, &d.enqueued_at.to_string());
                Outgoing {
                    subject: inner.subject.clone(),
                    headers: h,
                    payload: m.payload.clone(),
                }
            })
            .collect();
        publish_confirmed(inner, &copies).await?;
        let seqs: Vec<u64> = chunk.iter().map(|m| m.sequence).collect();
        done += delete(inner, &seqs).await?;
    }
    Ok(done)
}

/// Removes the selected entries; returns how many.
pub(crate) async fn purge(inner: &Inner, sel: &DlqSelector) -> Result<usize, BrokerError> {
    let _one_at_a_time = inner.dlq_lock.lock().await;
    if matches!(sel, DlqSelector::All) {
        let stream =
            inner.js.get_stream_no_info(&inner.dlq).await.map_err(|e| {
                unavailable(&inner.url, format!("opening the dead-letter stream: {e}"))
            })?;
        let r = stream
            .purge()
            .await
            .map_err(|e| unavailable(&inner.url, format!("purging the dead-letter stream: {e}")))?;
        return Ok(usize::try_from(r.purged).unwrap_or(usize::MAX));
    }
    let seqs: Vec<u64> = selected(inner, sel)
        .await?
        .iter()
        .map(|m| m.sequence)
        .collect();
    delete(inner, &seqs).await
}
