//! Model-based property test: random sequences of publish / receive / ack / nack / reject /
//! extend / advance time / drop consumer / restart, each checked against a small in-memory
//! model of the contract. Time comes from a manual clock, so leases and delays are exercised
//! without sleeping. Settlements are waited on, so a restart must preserve everything.

use std::collections::BTreeMap;
use std::time::Duration;

use ackline_queue::{Consumer, Db, Delivery, Queue, QueueOptions, SettleError, Tag};
use proptest::prelude::*;

use crate::common::{Env, msgs};

const MAX_ATTEMPTS: u32 = 3;

#[derive(Debug, Clone)]
enum Op {
    Publish(usize),
    Receive {
        consumer: usize,
        max: usize,
        lease: u64,
    },
    Ack(usize),
    Nack(usize, u64),
    Reject(usize),
    Extend(usize, u64),
    Advance(u64),
    DropConsumer(usize),
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1usize..5).prop_map(Op::Publish),
        4 => (0usize..2, 1usize..5, 1u64..300).prop_map(|(consumer, max, lease)| Op::Receive { consumer, max, lease }),
        3 => any::<usize>().prop_map(Op::Ack),
        2 => (any::<usize>(), 0u64..300).prop_map(|(i, d)| Op::Nack(i, d)),
        1 => any::<usize>().prop_map(Op::Reject),
        1 => (any::<usize>(), 1u64..300).prop_map(|(i, d)| Op::Extend(i, d)),
        2 => (1u64..400).prop_map(Op::Advance),
        1 => (0usize..2).prop_map(Op::DropConsumer),
        1 => Just(Op::Restart),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum S {
    Ready,
    Leased { deadline: u64, consumer: usize },
    Delayed { due: u64 },
    Acked,
    Dead,
}

#[derive(Debug)]
struct M {
    attempts: u32,
    s: S,
}

struct Model {
    msgs: BTreeMap<u64, M>,
}

impl Model {
    /// Applies due timers as the engine's tick does.
    fn tick(&mut self, now: u64) {
        for m in self.msgs.values_mut() {
            match m.s {
                S::Leased { deadline, .. } if deadline <= now => {
                    m.s = if m.attempts >= MAX_ATTEMPTS {
                        S::Dead
                    } else {
                        S::Ready
                    };
                }
                S::Delayed { due } if due <= now => m.s = S::Ready,
                _ => {}
            }
        }
    }

    /// What the engine must answer to a settlement quoting `tag`.
    fn check(&self, tag: Tag) -> Result<(), &'static str> {
        let m = &self.msgs[&tag.seq];
        match m.s {
            S::Acked | S::Dead => Err("already settled"),
            _ if m.attempts != tag.attempt => Err("stale"),
            S::Delayed { .. } => Err("already settled"),
            _ => Ok(()),
        }
    }
}

fn kind(e: &SettleError) -> &'static str {
    match e {
        SettleError::Stale { .. } => "stale",
        SettleError::AlreadySettled { .. } => "already settled",
        SettleError::Unknown { .. } => "unknown",
        SettleError::Queue(_) => "queue",
    }
}

struct World {
    env: Env,
    db: Option<Db>,
    q: Option<Queue>,
    consumers: Vec<Option<Consumer>>,
}

impl World {
    fn opts() -> QueueOptions {
        QueueOptions {
            max_attempts: MAX_ATTEMPTS,
            segment_bytes: 4096,
            checkpoint_bytes: 4096,
            ..Default::default()
        }
    }
    fn q(&self) -> &Queue {
        self.q.as_ref().unwrap()
    }
    fn consumer(&mut self, i: usize) -> &Consumer {
        if self.consumers[i].is_none() {
            self.consumers[i] = Some(self.q().consumer());
        }
        self.consumers[i].as_ref().unwrap()
    }
    fn restart(&mut self) {
        for c in &mut self.consumers {
            // Forget rather than drop: a crashed process releases nothing.
            if let Some(c) = c.take() {
                std::mem::forget(c);
            }
        }
        self.q = None;
        self.db.take().unwrap().close();
        let (db, q) = self.env.open(Self::opts());
        self.db = Some(db);
        self.q = Some(q);
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    use ackline_queue::Clock;
    let env = Env::new();
    let (db, q) = env.open(World::opts());
    let mut w = World {
        env,
        db: Some(db),
        q: Some(q),
        consumers: vec![None, None],
    };
    let mut model = Model {
        msgs: BTreeMap::new(),
    };
    let mut tags: Vec<Tag> = Vec::new();
    let mut published = 0usize;
    for op in ops {
        let now = w.env.clock.now_ms();
        match op {
            Op::Publish(n) => {
                let ps = w.q().publish(msgs(published..published + n)).unwrap();
                published += n;
                for p in ps {
                    model.msgs.insert(
                        p.seq,
                        M {
                            attempts: 0,
                            s: S::Ready,
                        },
                    );
                }
            }
            Op::Receive {
                consumer,
                max,
                lease,
            } => {
                let ds: Vec<Delivery> = w
                    .consumer(consumer)
                    .try_receive(max, Duration::from_millis(lease))
                    .unwrap();
                let available: Vec<u64> = model
                    .msgs
                    .iter()
                    .filter(|(_, m)| m.s == S::Ready && m.attempts < MAX_ATTEMPTS)
                    .map(|(&s, _)| s)
                    .collect();
                prop_assert_eq!(ds.len(), max.min(available.len()), "delivered count");
                let mut last_first = None;
                for d in &ds {
                    let m = model.msgs.get_mut(&d.tag.seq).unwrap();
                    prop_assert!(
                        available.contains(&d.tag.seq),
                        "delivered a message that was not ready: {:?}",
                        d.tag
                    );
                    prop_assert_eq!(d.tag.attempt, m.attempts + 1);
                    prop_assert_eq!(&d.id, &format!("m-{}", d.tag.seq));
                    if d.tag.attempt == 1 {
                        prop_assert!(
                            last_first.is_none_or(|l| l < d.tag.seq),
                            "first deliveries out of order"
                        );
                        last_first = Some(d.tag.seq);
                    }
                    m.attempts += 1;
                    m.s = S::Leased {
                        deadline: now + lease,
                        consumer,
                    };
                    tags.push(d.tag);
                }
                if ds.len() < max {
                    // The engine went through every ready message: exhausted ones are dead.
                    for m in model.msgs.values_mut() {
                        if m.s == S::Ready && m.attempts >= MAX_ATTEMPTS {
                            m.s = S::Dead;
                        }
                    }
                }
            }
            Op::Ack(i) | Op::Nack(i, _) | Op::Reject(i) | Op::Extend(i, _) if !tags.is_empty() => {
                let tag = tags[i % tags.len()];
                let expect = model.check(tag);
                let c = w.consumer(0);
                let got = match &op {
                    Op::Ack(_) => c.ack(tag).map(|cm| cm.wait().unwrap()),
                    Op::Nack(_, d) => c
                        .nack(tag, Duration::from_millis(*d), "nacked")
                        .map(|cm| cm.wait().unwrap()),
                    Op::Reject(_) => c.reject(tag, "rejected").map(|cm| cm.wait().unwrap()),
                    Op::Extend(_, d) => c.extend(tag, Duration::from_millis(*d)),
                    _ => unreachable!(),
                };
                prop_assert_eq!(
                    got.as_ref().map_err(kind).err(),
                    expect.err(),
                    "settling {:?} with {:?}",
                    tag,
                    op
                );
                if got.is_ok() {
                    let m = model.msgs.get_mut(&tag.seq).unwrap();
                    m.s = match op {
                        Op::Ack(_) => S::Acked,
                        Op::Nack(_, d) if m.attempts >= MAX_ATTEMPTS => {
                            let _ = d;
                            S::Dead
                        }
                        Op::Nack(_, d) => S::Delayed { due: now + d },
                        Op::Reject(_) => S::Dead,
                        Op::Extend(_, d) => {
                            // Extending a held lease keeps its holder; an expired one is taken
                            // back by the consumer that extends it.
                            let consumer = match m.s {
                                S::Leased { consumer, .. } => consumer,
                                _ => 0,
                            };
                            S::Leased {
                                deadline: now + d,
                                consumer,
                            }
                        }
                        _ => unreachable!(),
                    };
                }
            }
            Op::Ack(_) | Op::Nack(..) | Op::Reject(_) | Op::Extend(..) => {}
            Op::Advance(ms) => w.env.clock.advance(Duration::from_millis(ms)),
            Op::DropConsumer(i) => {
                w.consumers[i] = None;
                for m in model.msgs.values_mut() {
                    if matches!(m.s, S::Leased { consumer, .. } if consumer == i) {
                        m.s = S::Ready;
                    }
                }
            }
            Op::Restart => {
                w.restart();
                for m in model.msgs.values_mut() {
                    if matches!(m.s, S::Leased { .. }) {
                        m.s = S::Ready;
                    }
                }
            }
        }
        // The engine applies timers when asked for stats; so does the model.
        let now = w.env.clock.now_ms();
        model.tick(now);
        let st = w.q().stats();
        let count = |model: &Model, f: fn(&S) -> bool| {
            model.msgs.values().filter(|m| f(&m.s)).count() as u64
        };
        let dead = count(&model, |s| *s == S::Dead);
        // Exhausted ready messages may already be dead in the engine (met on the way).
        let limbo: Vec<u64> = model
            .msgs
            .iter()
            .filter(|(_, m)| m.s == S::Ready && m.attempts >= MAX_ATTEMPTS)
            .map(|(&s, _)| s)
            .collect();
        let engine_dead: Vec<u64> = w
            .q()
            .dead_letters()
            .list(None, usize::MAX)
            .unwrap()
            .iter()
            .map(|d| d.key)
            .collect();
        for s in &limbo {
            if engine_dead.contains(s) {
                model.msgs.get_mut(s).unwrap().s = S::Dead;
            }
        }
        let dead_now = count(&model, |s| *s == S::Dead);
        prop_assert!(dead_now >= dead);
        prop_assert_eq!(st.dead_letters, dead_now, "dead letters");
        prop_assert_eq!(
            st.pending,
            count(&model, |s| matches!(
                s,
                S::Ready | S::Leased { .. } | S::Delayed { .. }
            )),
            "pending"
        );
        prop_assert_eq!(
            st.leased,
            count(&model, |s| matches!(s, S::Leased { .. })),
            "leased"
        );
        prop_assert_eq!(
            st.delayed,
            count(&model, |s| matches!(s, S::Delayed { .. })),
            "delayed"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, max_shrink_iters: 2000, ..ProptestConfig::default() })]
    #[test]
    fn engine_matches_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        run(ops)?;
    }
}
