//! A simulated power loss at every step of a workload.
//!
//! The workload runs on a [`SimFs`] that fails every operation after the first `n`; the disk
//! is then taken as a power loss leaves it (unsynced bytes lost, kept, or torn at random) and
//! the queue is recovered from it. For every `n`:
//! - recovery succeeds;
//! - every confirmed publish is pending or dead-lettered, unless its ack was confirmed;
//! - a confirmed ack is never undone (the message is not delivered again);
//! - a message delivered before the loss comes back with a higher attempt number.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ackline_queue::sim::{SimFs, Torn};
use ackline_queue::{Clock, QueueOptions};

use crate::common::{Env, LEASE, msgs};

#[derive(Default, Debug)]
struct Books {
    confirmed: BTreeSet<String>,
    acked: BTreeSet<String>,
    rejected: BTreeSet<String>,
    max_attempt: BTreeMap<String, u32>,
}

fn opts() -> QueueOptions {
    QueueOptions {
        segment_bytes: 4096,
        checkpoint_bytes: 4096,
        ..Default::default()
    }
}

/// Runs until the disk fails; returns what was confirmed.
fn workload(env: &Env, sim: &SimFs, fail_after: u64) -> Books {
    let mut books = Books::default();
    let (_db, q) = env.open(opts());
    sim.fail_after(fail_after);
    let c = q.consumer();
    let mut next = 0;
    for round in 0..12 {
        let batch = msgs(next..next + 3);
        next += 3;
        match q.publish(batch) {
            Ok(ps) => books.confirmed.extend(ps.into_iter().map(|p| p.id)),
            Err(_) => break,
        }
        let Ok(ds) = c.try_receive(3, LEASE) else {
            break;
        };
        for (i, d) in ds.into_iter().enumerate() {
            let e = books.max_attempt.entry(d.id.clone()).or_default();
            *e = (*e).max(d.tag.attempt);
            let r = match (i + round) % 4 {
                0 | 1 => c.ack(d.tag).map(|cm| (cm, Some(&mut books.acked))),
                2 => c
                    .nack(d.tag, Duration::ZERO, "transient")
                    .map(|cm| (cm, None)),
                _ if round % 3 == 0 => c
                    .reject(d.tag, "poison")
                    .map(|cm| (cm, Some(&mut books.rejected))),
                _ => continue, // left leased: in flight at the crash
            };
            match r {
                Ok((commit, set)) => {
                    if commit.wait().is_ok()
                        && let Some(set) = set
                    {
                        set.insert(d.id.clone());
                    }
                }
                Err(_) => break,
            }
        }
        if sim.has_failed() {
            break;
        }
    }
    std::mem::forget(c); // a dead process releases nothing
    books
}

fn check_after(env: &Env, books: &Books, torn: Torn, step: u64) {
    let (_db, q) = env.open(opts());
    env.clock.advance(Duration::from_secs(3600)); // every delay and lease is over
    let c = q.consumer();
    let mut pending = BTreeSet::new();
    loop {
        let ds = c.try_receive(100, LEASE).unwrap();
        if ds.is_empty() {
            break;
        }
        for d in ds {
            if let Some(&before) = books.max_attempt.get(&d.id) {
                assert!(
                    d.tag.attempt > before,
                    "step {step} {torn:?}: {} delivered as attempt {before} before the crash, {} after",
                    d.id,
                    d.tag.attempt
                );
            }
            assert!(
                !books.acked.contains(&d.id),
                "step {step} {torn:?}: {} was acked (confirmed) but came back",
                d.id
            );
            pending.insert(d.id.clone());
            c.ack(d.tag).unwrap();
        }
    }
    let dead: BTreeSet<String> = q
        .dead_letters()
        .list(None, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    for id in &books.confirmed {
        assert!(
            books.acked.contains(id) || pending.contains(id) || dead.contains(id),
            "step {step} {torn:?}: confirmed publish {id} lost; report: {:?}",
            q.recovery_report()
        );
    }
    for id in &books.rejected {
        assert!(
            dead.contains(id),
            "step {step} {torn:?}: confirmed reject of {id} not in the dead-letter queue"
        );
    }
}

#[test]
fn every_step_survives_a_power_loss() {
    let mut step = 0;
    let mut completed = false;
    while !completed {
        for torn in [Torn::None, Torn::Random, Torn::All] {
            let sim = SimFs::new();
            let env = Env::with_fs(Arc::new(sim.clone()));
            let start = env.clock.now_ms();
            let books = workload(&env, &sim, step);
            completed = !sim.has_failed();
            let after = sim.power_loss(torn);
            let env2 = Env {
                fs: Arc::new(after),
                dir: env.dir,
                clock: ackline_queue::ManualClock::new(start),
            };
            check_after(&env2, &books, torn, step);
        }
        step += 1;
        assert!(step < 5_000, "the workload never completed");
    }
    assert!(
        step > 50,
        "only {step} steps: the workload is too small to mean much"
    );
}
