//! Several publisher and consumer threads at once: every message acked exactly once.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ackline_queue::{NewMessage, QueueOptions};

use crate::common::{Env, LEASE};

#[test]
fn concurrent_publishers_and_consumers_ack_every_message_once() {
    const PRODUCERS: usize = 4;
    const PER_PRODUCER: usize = 1500;
    let env = Env::new();
    let (_db, q) = env.open(QueueOptions::default());
    let acked = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicBool::new(false));
    let consumers: Vec<_> = (0..4)
        .map(|_| {
            let (q, acked, done) = (q.clone(), acked.clone(), done.clone());
            std::thread::spawn(move || {
                let c = q.consumer();
                loop {
                    let ds = c.receive(64, LEASE, Duration::from_millis(20)).unwrap();
                    if ds.is_empty() && done.load(Ordering::SeqCst) && q.stats().pending == 0 {
                        return;
                    }
                    let (results, commit) = c.settle(
                        &ds.iter()
                            .map(|d| (d.tag, ackline_queue::Settlement::Ack))
                            .collect::<Vec<_>>(),
                    );
                    commit.wait().unwrap();
                    let mut a = acked.lock().unwrap();
                    for (d, r) in ds.iter().zip(results) {
                        r.unwrap();
                        a.push(d.id.clone());
                    }
                }
            })
        })
        .collect();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let q = q.clone();
            std::thread::spawn(move || {
                for chunk in (0..PER_PRODUCER).collect::<Vec<_>>().chunks(25) {
                    q.publish(
                        chunk
                            .iter()
                            .map(|i| NewMessage::new(vec![7; 256]).with_id(format!("p{p}-{i}")))
                            .collect(),
                    )
                    .unwrap();
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    for c in consumers {
        c.join().unwrap();
    }
    let acked = acked.lock().unwrap();
    let unique: BTreeSet<_> = acked.iter().collect();
    assert_eq!(unique.len(), acked.len(), "a message was acked twice");
    assert_eq!(acked.len(), PRODUCERS * PER_PRODUCER);
    let st = q.stats();
    assert_eq!(
        (st.pending, st.acked, st.redelivered),
        (0, (PRODUCERS * PER_PRODUCER) as u64, 0)
    );
}
