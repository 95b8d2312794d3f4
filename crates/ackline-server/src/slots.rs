//! Connection slots: one listener's table of open connections, so that idle or slow clients
//! cannot keep new ones out.
//!
//! Invariants:
//! - At most `max` connections hold a slot at once, and at most `per_client` of them come
//!   from one IP address; a connection over the per-client cap is refused at once (the caller
//!   closes it), never queued.
//! - When the table is full, a new connection asks the connection idle the longest (no
//!   request or frame in progress, see [`Slot::busy`], for at least [`MIN_IDLE`]) to close
//!   ("shedding"), then waits for a free slot; while it waits, it asks again every [`SHED_RETRY`] (a busy connection asked
//!   to close finishes what it is doing first). If every connection is busy it waits, as it
//!   would in the listen backlog. A connection is asked at most once.
//! - A slot is released when its [`Slot`] is dropped (the connection's task ended), whatever
//!   way it ended; the counts ([`Slots::len`], per-client) can never leak.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// How often a connection waiting for a full table asks another idle connection to close.
pub const SHED_RETRY: Duration = Duration::from_millis(100);

/// How long a connection must have been idle before it may be shed: a new connection gets
/// this long to send its first request (its bytes may still be in flight, or unread by a
/// busy server), so a flood of new connections cannot shed each other before any is served.
pub const MIN_IDLE: Duration = Duration::from_millis(250);

#[derive(Debug)]
struct Entry {
    ip: IpAddr,
    busy: usize,
    idle_since: Instant,
    served: bool,
    asked: bool,
    shed: Arc<Notify>,
}

#[derive(Debug, Default)]
struct Table {
    next: u64,
    conns: HashMap<u64, Entry>,
    per_ip: HashMap<IpAddr, usize>,
}

/// One listener's connection table.
#[derive(Debug)]
pub struct Slots {
    permits: Arc<Semaphore>,
    max: usize,
    per_client: usize,
    table: Mutex<Table>,
    shed: AtomicU64,
    refused: AtomicU64,
}

/// Why a connection got no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its address already holds `per_client` connections.
    PerClient,
    /// The table was closed (shutdown).
    Closed,
}

impl Slots {
    /// A table of `max` slots, at most `per_client` per IP address (both at least 1).
    pub fn new(max: usize, per_client: usize) -> Arc<Slots> {
        let max = max.max(1);
        Arc::new(Slots {
            permits: Arc::new(Semaphore::new(max)),
            max,
            per_client: per_client.max(1),
            table: Mutex::new(Table::default()),
            shed: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// Connections holding a slot now.
    pub fn len(&self) -> usize {
        self.table.lock().conns.len()
    }

    /// Connections with a request or frame in progress now.
    pub fn busy_len(&self) -> usize {
        self.table
            .lock()
            .conns
            .values()
            .filter(|e| e.busy > 0)
            .count()
    }

    /// Whether no connection holds a slot.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Connections asked to close to make room, since start.
    pub fn shed_total(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }

    /// Connections refused for the per-client cap, since start.
    pub fn refused_total(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn over_cap(&self, t: &Table, ip: IpAddr) -> bool {
        t.per_ip.get(&ip).copied().unwrap_or(0) >= self.per_client
    }

    /// A slot for a connection from `ip`: at once if one is free, else after shedding the
    /// connection idle the longest; refused over the per-client cap.
    pub async fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        if self.over_cap(&self.table.lock(), ip) {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::PerClient);
        }
        let permit = loop {
            match self.permits.clone().try_acquire_owned() {
                Ok(p) => break p,
                Err(tokio::sync::TryAcquireError::Closed) => return Err(Refusal::Closed),
                Err(tokio::sync::TryAcquireError::NoPermits) => {}
            }
            self.shed_one();
            tokio::select! {
                p = self.permits.clone().acquire_owned() => match p {
                    Ok(p) => break p,
                    Err(_) => return Err(Refusal::Closed),
                },
                _ = tokio::time::sleep(SHED_RETRY) => {}
            }
        };
        let mut t = self.table.lock();
        if self.over_cap(&t, ip) {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::PerClient);
        }
        t.next += 1;
        let id = t.next;
        let shed = Arc::new(Notify::new());
        t.conns.insert(
            id,
            Entry {
                ip,
                busy: 0,
                idle_since: Instant::now(),
                served: false,
                asked: false,
                shed: shed.clone(),
            },
        );
        *t.per_ip.entry(ip).or_insert(0) += 1;
        Ok(Slot {
            slots: self.clone(),
            id,
            shed,
            _permit: permit,
        })
    }

    /// Asks the connection idle the longest (and not asked yet) to close; false if none has
    /// been idle for [`MIN_IDLE`].
    pub fn shed_one(&self) -> bool {
        let mut t = self.table.lock();
        let now = Instant::now();
        let oldest = t
            .conns
            .iter_mut()
            .filter(|(_, e)| e.busy == 0 && !e.asked && now - e.idle_since >= MIN_IDLE)
            .min_by_key(|(_, e)| e.idle_since);
        match oldest {
            Some((_, e)) => {
                e.asked = true;
                e.shed.notify_one();
                self.shed.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Waits until every slot is free (every connection ended).
    pub async fn drained(&self) {
        let n = u32::try_from(self.max).unwrap_or(u32::MAX);
        if let Ok(p) = self.permits.acquire_many(n).await {
            drop(p);
        }
    }
}

/// A connection's slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    id: u64,
    shed: Arc<Notify>,
    _permit: OwnedSemaphorePermit,
}

impl Slot {
    /// Marks the connection busy (a request or frame in progress) until the guard drops; a
    /// busy connection is never picked for shedding.
    pub fn busy(&self) -> Busy {
        if let Some(e) = self.slots.table.lock().conns.get_mut(&self.id) {
            e.busy += 1;
            e.served = true;
        }
        Busy {
            slots: self.slots.clone(),
            id: self.id,
        }
    }

    /// Whether nothing is in progress on the connection.
    pub fn is_idle(&self) -> bool {
        self.slots
            .table
            .lock()
            .conns
            .get(&self.id)
            .is_none_or(|e| e.busy == 0)
    }

    /// Whether the connection has never had a request or frame in progress (a silent or
    /// slow client: closing it cannot cut a response).
    pub fn never_busy(&self) -> bool {
        self.slots
            .table
            .lock()
            .conns
            .get(&self.id)
            .is_none_or(|e| !e.served)
    }

    /// Completes when the connection is asked to close to make room.
    pub async fn shed(&self) {
        self.shed.notified().await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self.slots.table.lock();
        if let Some(e) = t.conns.remove(&self.id)
            && let Some(n) = t.per_ip.get_mut(&e.ip)
        {
            *n -= 1;
            if *n == 0 {
                t.per_ip.remove(&e.ip);
            }
        }
    }
}

/// A request or frame in progress (see [`Slot::busy`]).
#[derive(Debug)]
pub struct Busy {
    slots: Arc<Slots>,
    id: u64,
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(e) = self.slots.table.lock().conns.get_mut(&self.id) {
            e.busy = e.busy.saturating_sub(1);
            e.idle_since = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 3));

    #[tokio::test]
    async fn per_client_cap_and_release() {
        let s = Slots::new(4, 2);
        let a1 = s.admit(A).await.unwrap();
        let _a2 = s.admit(A).await.unwrap();
        assert_eq!(s.admit(A).await.unwrap_err(), Refusal::PerClient);
        let _b = s.admit(B).await.unwrap();
        assert_eq!((s.len(), s.refused_total()), (3, 1));
        drop(a1);
        let _a3 = s.admit(A).await.unwrap();
        assert_eq!(s.len(), 3);
    }

    #[tokio::test]
    async fn full_table_sheds_the_longest_idle_never_a_busy_one() {
        let s = Slots::new(2, 2);
        let old = s.admit(A).await.unwrap();
        let young = s.admit(B).await.unwrap();
        let _busy = old.busy();
        // Nothing is shed before it has been idle MIN_IDLE.
        assert!(!s.shed_one());
        tokio::time::sleep(MIN_IDLE).await;
        // `old` is busy: `young` is the one asked to close.
        let s2 = s.clone();
        let waiting = tokio::spawn(async move { s2.admit(A).await.map(|_| ()) });
        tokio::time::timeout(Duration::from_secs(5), young.shed())
            .await
            .unwrap();
        assert_eq!(s.shed_total(), 1);
        drop(young);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(!old.is_idle());
    }
}
