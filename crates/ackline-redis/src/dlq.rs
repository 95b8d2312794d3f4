//! Dead-letter operations on the stream `<q>.dlq`.
//!
//! An entry's key is its stream entry id `<ms>-<seq>` as the number `ms << 22 | seq`
//! (`entry::dlq_key`), so keys order like the entries and map back to them. `list` and `get`
//! are `XRANGE` reads; `replay` moves each selected entry back to `<q>` with attempts reset (the
//! REPLAY script: `XADD` + `XDEL` in one step, an entry already gone is skipped, so two
//! operators replaying at once replay it once); `purge` is `XDEL`.
//!
//! Invariant: selection by id or text scans the stream in pages of [`PAGE`] entries; only the
//! selected entry ids are kept in memory, never the whole dead-letter queue.

use ackline_broker::{BrokerError, DeadLetter, DlqSelector};
use redis::Value;

use crate::Inner;
use crate::connection::NAME;
use crate::entry::{self, Entry, dlq_eid, int};
use crate::scripts::SCRIPTS;

/// Entries read per `XRANGE` while selecting.
const PAGE: usize = 500;
/// Entries moved per REPLAY script call.
const REPLAY_CHUNK: usize = 200;

async fn range(
    inner: &Inner,
    start: &str,
    end: &str,
    count: usize,
) -> Result<Vec<Entry>, BrokerError> {
    let mut cmd = redis::cmd("XRANGE");
    cmd.arg(&inner.dlq)
        .arg(start)
        .arg(end)
        .arg("COUNT")
        .arg(count);
    let v: Value = inner
        .retry("reading the dead-letter stream", |mut c| {
            let cmd = cmd.clone();
            async move { cmd.query_async(&mut c).await }
        })
        .await?;
    entry::entries(v).ok_or_else(|| BrokerError::Unavailable {
        backend: NAME,
        reason: "unexpected reply to XRANGE on the dead-letter stream".into(),
    })
}

pub(crate) async fn list(
    inner: &Inner,
    after: Option<u64>,
    limit: usize,
) -> Result<Vec<DeadLetter>, BrokerError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let start = after.map_or_else(|| "-".to_owned(), |k| format!("({}", dlq_eid(k)));
    Ok(range(inner, &start, "+", limit)
        .await?
        .iter()
        .filter_map(Entry::dead_letter)
        .collect())
}

pub(crate) async fn get(inner: &Inner, key: u64) -> Result<Option<DeadLetter>, BrokerError> {
    let eid = dlq_eid(key);
    Ok(range(inner, &eid, &eid, 1)
        .await?
        .first()
        .and_then(Entry::dead_letter))
}

fn selects(sel: &DlqSelector, d: &DeadLetter) -> bool {
    match sel {
        DlqSelector::All => true,
        DlqSelector::Keys(k) => k.contains(&d.key),
        DlqSelector::Ids(ids) => ids.contains(&d.id),
        DlqSelector::Matching(t) => {
            d.reason.contains(t.as_str()) || d.last_error.contains(t.as_str())
        }
    }
}

/// The entry ids `sel` selects, in order.
async fn select(inner: &Inner, sel: &DlqSelector) -> Result<Vec<String>, BrokerError> {
    if let DlqSelector::Keys(keys) = sel {
        let mut keys = keys.clone();
        keys.sort_unstable();
        keys.dedup();
        return Ok(keys.into_iter().map(dlq_eid).collect());
    }
    let mut out = Vec::new();
    let mut start = "-".to_owned();
    loop {
        let page = range(inner, &start, "+", PAGE).await?;
        let Some(last) = page.last() else { break };
        start = format!("({}", last.eid);
        for e in &page {
            // An entry whose id has no key (impossible in practice) is still selected by
            // id or text, so it can be replayed or purged.
            let d = e.dead_letter().unwrap_or_else(|| DeadLetter {
                key: u64::MAX,
                id: e.id(),
                headers: Vec::new(),
                payload: Vec::new(),
                enqueued_at: 0,
                attempts: 0,
                first_failure: 0,
                last_failure: 0,
                reason: String::new(),
                last_error: String::new(),
            });
            if selects(sel, &d) {
                out.push(e.eid.clone());
            }
        }
        if page.len() < PAGE {
            break;
        }
    }
    Ok(out)
}

pub(crate) async fn replay(inner: &Inner, sel: &DlqSelector) -> Result<usize, BrokerError> {
    let ids = select(inner, sel).await?;
    let mut conn = inner.conn();
    let mut n = 0usize;
    for chunk in ids.chunks(REPLAY_CHUNK) {
        let v: Value = inner
            .retry("replaying dead letters", |mut c| async move {
                let mut inv = SCRIPTS.replay.prepare_invoke();
                inv.key(&inner.queue).key(&inner.dlq);
                for id in chunk {
                    inv.arg(id);
                }
                inv.invoke_async(&mut c).await
            })
            .await?;
        n += int(&v).and_then(|x| usize::try_from(x).ok()).unwrap_or(0);
    }
    // The replays ran on clones of this connection (one multiplexed connection): WAITAOF
    // here covers them.
    inner.wait_aof(&mut conn).await?;
    Ok(n)
}

pub(crate) async fn purge(inner: &Inner, sel: &DlqSelector) -> Result<usize, BrokerError> {
    let ids = select(inner, sel).await?;
    let mut n = 0usize;
    for chunk in ids.chunks(PAGE) {
        let mut cmd = redis::cmd("XDEL");
        cmd.arg(&inner.dlq).arg(chunk);
        let v: Value = inner
            .retry("purging dead letters", |mut c| {
                let cmd = cmd.clone();
                async move { cmd.query_async(&mut c).await }
            })
            .await?;
        n += int(&v).and_then(|x| usize::try_from(x).ok()).unwrap_or(0);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::dlq_key;

    #[test]
    fn selectors() {
        let d = DeadLetter {
            key: dlq_key("5-1").unwrap_or(0),
            id: "m-1".into(),
            headers: vec![],
            payload: vec![],
            enqueued_at: 0,
            attempts: 1,
            first_failure: 0,
            last_failure: 0,
            reason: "bad schema".into(),
            last_error: "store said no".into(),
        };
        assert!(selects(&DlqSelector::All, &d));
        assert!(selects(&DlqSelector::Ids(vec!["m-1".into()]), &d));
        assert!(selects(&DlqSelector::Matching("schema".into()), &d));
        assert!(selects(&DlqSelector::Matching("said".into()), &d));
        assert!(!selects(&DlqSelector::Matching("nope".into()), &d));
        assert!(selects(&DlqSelector::Keys(vec![d.key]), &d));
    }
}
