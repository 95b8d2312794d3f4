//! The delivery contract, rule by rule, on the embedded engine.

use std::time::Duration;

use ackline_queue::{
    DlqFilter, DlqSelector, NewMessage, OpenError, PublishError, QueueError, QueueOptions,
    SettleError, Tag,
};

use crate::common::{Env, LEASE, msgs};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn publish_receive_ack_and_second_settlement_is_an_error() {
    let env = Env::new();
    let (_db, q) = env.open(QueueOptions::default());
    let published = q.publish(msgs(0..3)).unwrap();
    assert_eq!(
        published.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
        ["m-0", "m-1", "m-2"]
    );
    let c = q.consumer();
    let ds = c.try_receive(10, LEASE).unwrap();
    assert_eq!(ds.len(), 3);
    assert_eq!(
        ds.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["m-0", "m-1", "m-2"],
        "first deliveries in publish order"
    );
    let d = &ds[1];
    assert_eq!(d.payload, b"payload 1");
    assert_eq!(d.headers, vec![("n".to_string(), "1".to_string())]);
    assert_eq!(d.tag.attempt, 1);
    assert_eq!(d.enqueued_at, env.clock_now());
    assert_eq!(d.lease_until, env.clock_now() + LEASE.as_millis() as u64);
    for d in &ds {
        c.ack(d.tag).unwrap().wait().unwrap();
    }
    assert!(matches!(
        c.ack(ds[0].tag),
        Err(SettleError::AlreadySettled { .. })
    ));
    assert!(matches!(
        c.nack(ds[2].tag, ms(0), "late"),
        Err(SettleError::AlreadySettled { .. })
    ));
    let st = q.stats();
    assert_eq!((st.pending, st.acked, st.delivered), (0, 3, 3));
    assert!(c.try_receive(10, LEASE).unwrap().is_empty());
}

impl Env {
    fn clock_now(&self) -> u64 {
        use ackline_queue::Clock;
        self.clock.now_ms()
    }
}

#[test]
fn assigned_ids_are_unique() {
    let env = Env::new();
    let (_db, q) = env.open(QueueOptions::default());
    let p = q
        .publish((0..100).map(|i| NewMessage::new(vec![i as u8])).collect())
        .unwrap();
    let mut ids: Vec<_> = p.into_iter().map(|p| p.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 100);
}

#[test]
fn nack_redelivers_no_earlier_than_its_delay() {
    let env = Env::new();
    let (_db, q) = env.open(QueueOptions::default());
    q.publish(msgs(0..1)).unwrap();
    let c = q.consumer();
    let d = c.try_receive(1, LEASE).unwrap().remove(0);
    c.nack(d.tag, ms(10_000), "db timeout")
        .unwrap()
        .wait()
        .unwrap();
    assert!(c.try_receive(1, LEASE).unwrap().is_empty());
    env.clock.advance(ms(9_999));
    assert!(c.try_receive(1, LEASE).unwrap().is_empty(), "too early");
    assert_eq!(q.stats().delayed, 1);
    env.clock.advance(ms(1));
    let again = c.try_receive(1, LEASE).unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id.as_str(), again[0].tag.attempt), ("m-0", 2));
    assert_eq!(q.stats().redelivered, 1);
}

#[test]
fn reject_dead_letters_with_reason_and_the_message() {
    let env = Env::new();
    let (_db, q) = env.open(QueueOptions::default());
    q.publish(msgs(0..2)).unwrap();
    let c = q.consumer();
    let ds = c.try_receive(2, LEASE).unwrap();
    c.reject(ds[1].tag, "parse error at byte 3")
        .unwrap()
        .wait()
        .unwrap();
    let st = q.stats();
    assert_eq!((st.pending, st.dead_letters, st.leased), (1, 1, 1));
    let list = q.dead_letters().list(None, 10).unwrap();
    assert_eq!(list.len(), 1);
    let dl = &list[0];
    assert_eq!(dl.id, "m-1");
    assert_eq!(dl.payload, b"payload 1");
    assert_eq!(dl.reason, "parse error at byte 3");
    assert_eq!(dl.attempts, 1);
    assert_eq!(dl.last_failure, env.clock_now());
    assert_eq!(q.dead_letters().get(dl.key).unwrap().unwrap(), *dl);
    assert_eq!(q.dead_letters().find("m-1").unwrap(), vec![dl.clone()]);
    assert!(q.dead_letters().find("m-0").unwrap().is_empty());
    assert!(matches!(
        c.ack(ds[1].tag),
        Err(SettleError::AlreadySettled { .. })
    ));
}

#[test]
fn lease_expiry_redelivers_and_fences_the_stale_delivery() {
    let env = Env::new();
    let (_db, q) = env.open(QueueOptions::default());
    q.publish(msgs(0..1)).unwrap();
    let slow = q.consumer();
    let fast = q.consumer();
    let first = slow.try_receive(1, ms(1_000)).unwrap().remove(0);
    env.clock.advance(ms(999));
    assert!(
        fast.try_receive(1, LEASE).unwrap().is_empty(),
        "lease still held"
    );
    env.clock.advance(ms(1));
    let second = fast.try_receive(1, LEASE).unwrap().remove(0);
    assert_eq!((second.id.as_str(), second.tag.attempt), ("m-0", 2));
    let err = slow.ack(first.tag).unwrap_err();
    assert!(
        matches!(
            err,
            SettleError::Stale {
                seq,
                attempt: 1,
                current: 2
            } if seq == first.tag.seq
        ),
        "{err}"
    );
    assert!(slow.extend(first.tag, LEASE).is_err());
    fast.ack(second.tag).unwrap().wait().unwrap();
    assert_eq!(q.stats().lease_expired, 1);
}

#[test]
fn a_late_ack_before_redelivery_is_accepted() {
    // The lease ran out but nobody got the message since: this delivery is still current.
    let env = Env::new();
    let (_db, q) = env.open(QueueOptions::default());
    q.publish(msgs(0..1)).unwrap();
    let c = q.consumer();
    let d = c.try_receive(1, ms(100)).unwrap().remove(0);
    env.clock.advance(ms(500));
    assert_eq!(q.stats().ready, 1, "expired lease made it ready");
    c.ack(d.tag).unwrap().wait().unwrap();
    assert_eq!(q.stats().pending, 0);
    assert!(c.try_receive(1, LEASE).unwrap().is_empty());
}

#[test]
fn extend_keeps_the_lease() {
    let env = Env::new();
    let (_db, q) = env.open(QueueOptions::default());
    q.publish(msgs(0..1)).unwrap();
    let c = q.consumer();
    let other = q.consumer();
    let d = c.try_receive(1, ms(1_000)).unwrap().remove(0);
    env.clock.advance(ms(900));
    c.extend(d.tag, ms(1_000)).unwrap();
    env.clock.advance(ms(900));
    assert!(other.try_receive(1, LEASE).unwrap().is_empty(), "extended");
    assert_eq!(q.stats().leased, 1);
    env.clock.advance(ms(100));
    assert_eq!(other.try_receive(1, LEASE).unwrap()[0].tag.attempt, 2);
}

#[test]
fn max_attempts_dead_letters_with_the_last_error() {
    let env = Env::new();
    let opts = QueueOptions {
        max_attempts: 3,
        ..Default::default()
    };
    let (_db, q) = env.open(opts);
    q.publish(msgs(0..1)).unwrap();
    let c = q.consumer();
    for attempt in 1..=2 {
        let d = c.try_receive(1, LEASE).unwrap().remove(0);
        assert_eq!(d.tag.attempt, attempt);
        c.nack(d.tag, ms(0), &format!("failure {attempt}")).unwrap();
    }
    let d = c.try_receive(1, LEASE).unwrap().remove(0);
    assert_eq!(d.tag.attempt, 3);
    c.nack(d.tag, ms(0), "failure 3").unwrap().wait().unwrap();
    assert!(c.try_receive(1, LEASE).unwrap().is_empty());
    let dl = q.dead_letters().list(None, 10).unwrap().remove(0);
    assert_eq!(dl.reason, "max attempts exceeded");
    assert_eq!(dl.last_error, "failure 3");
    assert_eq!(dl.attempts, 3);
}

#[test]
fn max_attempts_also_applies_to_expired_leases() {
    let env = Env::new();
    let (_db, q) = env.open(QueueOptions {
        max_attempts: 2,
        ..Default::default()
    });
    q.publish(msgs(0..1)).unwrap();
    let c = q.consumer();
    for _ in 0..2 {
        assert_eq!(c.try_receive(1, ms(10)).unwrap().len(), 1);
        env.clock.advance(ms(10));
    }
    assert!(c.try_receive(1, ms(10)).unwrap().is_empty());
    let dl = q.dead_letters().list(None, 10).unwrap().remove(0);
    assert_eq!(
        (dl.reason.as_str(), dl.attempts),
        ("max attempts exceeded", 2)
    );
    assert!(
        dl.last_error.contains("without a settlement"),
        "{}",
        dl.last_error
    );
}

#[test]
fn dropping_a_consumer_releases_its_deliveries_at_once() {
    let env = Env::new();
    let (_db, q) = env.open(QueueOptions::default());
    q.publish(msgs(0..3)).unwrap();
    let c1 = q.consumer();
    let got = c1.try_receive(2, LEASE).unwrap();
    let c2 = q.consumer();
    assert_eq!(c2.try_receive(10, LEASE).unwrap().len(), 1);
    drop(c1);
    let again = c2.try_receive(10, LEASE).unwrap();
    assert_eq!(
        again
            .iter()
            .map(|d| (d.id.clone(), d.tag.attempt))
            .collect::<Vec<_>>(),
        got.iter()
            .map(|d| (d.id.clone(), d.tag.attempt + 1))
            .collect::<Vec<_>>()
    );
    assert_eq!(q.stats().released, 2);
}

#[test]
fn a_full_queue_refuses_publishes_until_space_frees() {
    let env = Env::new();
    let (_db, q) = env.open(QueueOptions {
        max_bytes: 4096,
        max_message_bytes: 1024,
        ..Default::default()
    });
    let big = |i: usize| NewMessage::new(vec![b'x'; 900]).with_id(format!("b-{i}"));
    q.publish(vec![big(0), big(1), big(2), big(3)]).unwrap();
    let err = q.publish(vec![big(4)]).unwrap_err();
    assert!(matches!(err, PublishError::Full { .. }), "{err}");
    assert!(err.to_string().contains("full"), "{err}");
    assert_eq!(q.stats().pending, 4, "nothing of the refused batch stored");
    let c = q.consumer();
    let d = c.try_receive(1, LEASE).unwrap().remove(0);
    c.ack(d.tag).unwrap().wait().unwrap();
    q.publish(vec![big(4)]).unwrap();
}

/// Dead letters keep their records on disk, so they count toward `max_bytes`: a flood of bad
/// messages fills the queue up to its bound and then pushes back (publishes refused `Full`,
/// saying what the dead letters hold) instead of filling the disk; a purge frees the room, a
/// replay needs none, and the count survives a restart.
#[test]
fn dead_letters_count_toward_max_bytes() {
    let env = Env::new();
    let opts = QueueOptions {
        max_bytes: 4096,
        max_message_bytes: 1024,
        ..Default::default()
    };
    let (db, q) = env.open(opts.clone());
    let big = |i: usize| NewMessage::new(vec![b'x'; 900]).with_id(format!("b-{i}"));
    q.publish(vec![big(0), big(1), big(2), big(3)]).unwrap();
    let c = q.consumer();
    for d in c.try_receive(4, LEASE).unwrap() {
        c.reject(d.tag, "bad line").unwrap().wait().unwrap();
    }
    let st = q.stats();
    assert_eq!((st.pending, st.dead_letters), (0, 4));
    assert_eq!(st.pending_bytes, 0);
    assert!(st.dead_letter_bytes >= 4 * 900, "{st:?}");
    let err = q.publish(vec![big(4)]).unwrap_err();
    assert!(
        matches!(err, PublishError::Full { dead_letter_bytes, .. } if dead_letter_bytes == st.dead_letter_bytes),
        "{err}"
    );
    assert!(err.to_string().contains("in dead letters"), "{err}");
    // A replay moves bytes from the dead letters to the queue: allowed while full.
    let dlq = q.dead_letters();
    let first = dlq.list(None, 1).unwrap().remove(0);
    assert_eq!(dlq.replay(&DlqSelector::Keys(vec![first.key])).unwrap(), 1);
    assert_eq!(q.stats().dead_letters, 3);
    assert!(q.publish(vec![big(4)]).is_err(), "still full");
    // The count is rebuilt on reopen, from the log or a checkpoint.
    let held = {
        let st = q.stats();
        (st.pending_bytes, st.dead_letter_bytes)
    };
    drop(c);
    drop(q);
    drop(db);
    let (_db, q) = env.open(opts);
    let st = q.stats();
    assert_eq!((st.pending_bytes, st.dead_letter_bytes), held);
    assert!(
        q.publish(vec![big(4)]).is_err(),
        "still full after the restart"
    );
    // A purge frees the room.
    assert_eq!(q.dead_letters().purge(&DlqSelector::All).unwrap(), 3);
    assert_eq!(q.stats().dead_letter_bytes, 0);
    q.publish(vec![big(4)]).unwrap();
}

#[test]
fn a_borrowed_batch_publishes_as_an_owned_one_and_stays_with_the_caller() {
    let env = Env::new();
    let (_db, q) = env.open(QueueOptions {
        max_message_bytes: 1024,
        ..Default::default()
    });
    let mut kept = msgs(0..3);
    kept.push(NewMessage::new("no id"));
    let (published, commit) = q.publish_nowait_ref(&kept).unwrap();
    commit.wait().unwrap();
    assert_eq!(kept, {
        let mut m = msgs(0..3);
        m.push(NewMessage::new("no id"));
        m
    });
    assert_eq!(
        published[..3]
            .iter()
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>(),
        ["m-0", "m-1", "m-2"]
    );
    assert_eq!(published[3].id.len(), 28, "an id is assigned");
    // Published again (a retry after a refusal): their ids make them duplicates.
    let (again, commit) = q.publish_nowait_ref(&kept[..3]).unwrap();
    commit.wait().unwrap();
    assert!(again.iter().all(|p| p.duplicate));
    assert_eq!(
        again.iter().map(|p| p.seq).collect::<Vec<_>>(),
        published[..3].iter().map(|p| p.seq).collect::<Vec<_>>()
    );
    // Refusals name the index, and nothing of the batch is stored.
    let bad = [
        NewMessage::new("ok").with_id("new"),
        NewMessage::new(vec![0; 2000]),
    ];
    assert!(matches!(
        q.publish_nowait_ref(&bad),
        Err(PublishError::TooLarge { index: 1, .. })
    ));
    let c = q.consumer();
    let ds = c.try_receive(10, LEASE).unwrap();
    assert_eq!(ds.len(), 4);
    assert_eq!(ds[1].payload, b"payload 1");
    assert_eq!(ds[1].headers, vec![("n".to_string(), "1".to_string())]);
    assert_eq!(ds[3].payload, b"no id");
    assert_eq!(ds[3].id, published[3].id);
}

#[test]
fn oversized_and_invalid_messages_are_refused_with_a_reason() {
    let env = Env::new();
    let (_db, q) = env.open(QueueOptions {
        max_message_bytes: 1024,
        ..Default::default()
    });
    let err = q
        .publish(vec![NewMessage::new("ok"), NewMessage::new(vec![0; 2000])])
        .unwrap_err();
    assert!(
        matches!(
            err,
            PublishError::TooLarge {
                index: 1,
                max: 1024,
                ..
            }
        ),
        "{err}"
    );
    let err = q
        .publish(vec![NewMessage::new("x").with_id("")])
        .unwrap_err();
    assert!(
        matches!(err, PublishError::Invalid { index: 0, .. }),
        "{err}"
    );
    assert_eq!(q.stats().pending, 0, "all or nothing");
}

#[test]
fn unknown_tags_are_refused() {
    let env = Env::new();
    let (_db, q) = env.open(QueueOptions::default());
    let c = q.consumer();
    assert!(matches!(
        c.ack(Tag {
            seq: 99,
            attempt: 1
        }),
        Err(SettleError::Unknown { .. })
    ));
    q.publish(msgs(0..1)).unwrap();
    assert!(
        matches!(
            c.ack(Tag { seq: 0, attempt: 1 }),
            Err(SettleError::Unknown { .. })
        ),
        "never delivered"
    );
}

#[test]
fn state_survives_a_restart_attempts_delays_and_dead_letters_included() {
    let env = Env::new();
    {
        let (db, q) = env.open(QueueOptions::default());
        q.publish(msgs(0..4)).unwrap();
        let c = q.consumer();
        let ds = c.try_receive(4, LEASE).unwrap();
        c.ack(ds[0].tag).unwrap().wait().unwrap();
        c.nack(ds[1].tag, ms(60_000), "later")
            .unwrap()
            .wait()
            .unwrap();
        c.reject(ds[2].tag, "poison").unwrap().wait().unwrap();
        // ds[3] stays leased: the process "stops" with it in flight.
        std::mem::forget(c); // no release on drop: as if the process died
        db.close();
    }
    let (_db, q) = env.open(QueueOptions::default());
    let st = q.stats();
    assert_eq!(
        (st.pending, st.delayed, st.dead_letters, st.ready),
        (2, 1, 1, 1)
    );
    let c = q.consumer();
    let d = c.try_receive(10, LEASE).unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(
        (d[0].id.as_str(), d[0].tag.attempt),
        ("m-3", 2),
        "attempt kept"
    );
    env.clock.advance(ms(60_000));
    let d = c.try_receive(10, LEASE).unwrap();
    assert_eq!(
        (d[0].id.as_str(), d[0].tag.attempt),
        ("m-1", 2),
        "delay kept"
    );
    assert_eq!(q.dead_letters().list(None, 10).unwrap()[0].reason, "poison");
}

#[test]
fn replay_resets_attempts_keeps_the_id_and_leaves_the_dead_letter_queue() {
    let env = Env::new();
    let (_db, q) = env.open(QueueOptions::default());
    q.publish(msgs(0..3)).unwrap();
    let c = q.consumer();
    for d in c.try_receive(3, LEASE).unwrap() {
        let reason = if d.id == "m-2" {
            "bad schema"
        } else {
            "store said no"
        };
        c.reject(d.tag, reason).unwrap();
    }
    q.sync().unwrap();
    assert_eq!(q.stats().dead_letters, 3);
    let n = q
        .dead_letters()
        .replay(&DlqSelector::Ids(vec!["m-1".to_string()]))
        .unwrap();
    assert_eq!(n, 1);
    let d = c.try_receive(10, LEASE).unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(
        (d[0].id.as_str(), d[0].tag.attempt, d[0].payload.as_slice()),
        ("m-1", 1, &b"payload 1"[..])
    );
    let filter = DlqSelector::Filter(DlqFilter {
        reason_contains: Some("schema".into()),
        ..Default::default()
    });
    assert_eq!(q.dead_letters().purge(&filter).unwrap(), 1);
    assert_eq!(q.dead_letters().list(None, 10).unwrap().len(), 1);
    assert_eq!(q.dead_letters().replay(&DlqSelector::All).unwrap(), 1);
    assert_eq!(q.stats().dead_letters, 0);
    assert_eq!(q.dead_letters().replay(&DlqSelector::All).unwrap(), 0);
}

#[test]
fn dead_letter_listing_pages_by_key() {
    let env = Env::new();
    let (_db, q) = env.open(QueueOptions::default());
    q.publish(msgs(0..5)).unwrap();
    let c = q.consumer();
    for d in c.try_receive(5, LEASE).unwrap() {
        c.reject(d.tag, "no").unwrap();
    }
    let p1 = q.dead_letters().list(None, 2).unwrap();
    let p2 = q.dead_letters().list(Some(p1[1].key), 2).unwrap();
    let p3 = q.dead_letters().list(Some(p2[1].key), 2).unwrap();
    let ids: Vec<_> = p1
        .iter()
        .chain(&p2)
        .chain(&p3)
        .map(|d| d.id.as_str())
        .collect();
    assert_eq!(ids, ["m-0", "m-1", "m-2", "m-3", "m-4"]);
}

#[test]
fn disk_is_reclaimed_once_messages_are_settled() {
    let env = Env::new();
    let opts = QueueOptions {
        segment_bytes: 16 << 10,
        checkpoint_bytes: 32 << 10,
        ..Default::default()
    };
    let (_db, q) = env.open(opts);
    let c = q.consumer();
    for round in 0..60 {
        q.publish(
            (0..20)
                .map(|i| NewMessage::new(vec![round as u8; 200 + i]))
                .collect(),
        )
        .unwrap();
        for d in c.try_receive(100, LEASE).unwrap() {
            c.ack(d.tag).unwrap();
        }
    }
    q.sync().unwrap();
    // Wait (bounded) for the checkpoint thread to catch up with the last threshold.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let qdir = env.dir.path().join("queues/q");
    let count = || {
        std::fs::read_dir(&qdir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".seg")
            })
            .count()
    };
    while count() > 6 && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    // 60 rounds wrote ~260 KiB, i.e. ~16 segments; settled ones must be gone.
    assert!(count() <= 6, "{} segment files remain", count());
}

#[test]
fn a_second_open_of_the_directory_is_refused() {
    let env = Env::new();
    let _db = env.db();
    let err = ackline_queue::Db::open(env.dir.path()).unwrap_err();
    assert!(matches!(err, OpenError::Locked { .. }), "{err}");
}

#[test]
fn a_failed_fsync_poisons_the_queue() {
    let sim = ackline_queue::sim::SimFs::new();
    let env = Env::with_fs(std::sync::Arc::new(sim.clone()));
    let (_db, q) = env.open(QueueOptions::default());
    q.publish(msgs(0..1)).unwrap();
    sim.fail_syncs(true);
    let err = q.publish(msgs(1..2)).unwrap_err();
    assert!(err.to_string().contains("fsync"), "{err}");
    // The publish whose fsync failed gets the failure itself, typed: operation, file and the
    // operating system's error.
    let PublishError::Queue(QueueError::Io { cause: first, .. }) = err else {
        panic!("expected QueueError::Io, got {err}");
    };
    assert_eq!(first.op, "fsync of");
    assert!(
        first.path.extension().is_some_and(|e| e == "seg"),
        "{first}"
    );
    assert!(
        first.cause.to_string().contains("simulated fsync failure"),
        "{first}"
    );
    sim.fail_syncs(false);
    // Never retried: the queue stays refused even though fsync would work again.
    let err = q.publish(msgs(2..3)).unwrap_err();
    assert!(
        matches!(&err, PublishError::Queue(QueueError::Poisoned { cause, .. }) if std::sync::Arc::ptr_eq(cause, &first)),
        "later writes are refused with the original cause: {err}"
    );
    let c = q.consumer();
    assert!(c.try_receive(1, LEASE).is_err());
}

#[test]
fn blocking_receive_wakes_on_publish() {
    let env = Env::new();
    let (_db, q) = env.open(QueueOptions::default());
    let c = q.consumer();
    let q2 = q.clone();
    let t = std::thread::spawn(move || c.receive(1, LEASE, Duration::from_secs(30)).unwrap());
    q2.publish(msgs(0..1)).unwrap();
    let got = t.join().unwrap();
    assert_eq!(
        got.len(),
        1,
        "woken by the publish, not by the 30 s timeout"
    );
}
