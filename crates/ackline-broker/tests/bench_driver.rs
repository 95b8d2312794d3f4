//! The benchmark driver the backends' examples share: a producer that gives up ends the run
//! at once with its error and how far it got (`bench::drive_counted`), instead of leaving the
//! consumer to wait for messages that will never come until the run's time limit; and a
//! variant that fails costs only its own slot of its round (`bench::rounds`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ackline_broker::bench::{Args, BATCH, Outcome, Progress, drive_counted, rounds};
use ackline_broker::embedded::EmbeddedBroker;
use ackline_broker::{Broker, BrokerError, BrokerStats, ConsumerOptions, Message};
use ackline_queue::{Db, QueueOptions};

/// The embedded queue, whose publishes fail once `batches` of them went through.
struct GivesUp {
    inner: EmbeddedBroker,
    batches: usize,
    done: AtomicUsize,
}

impl Broker for GivesUp {
    type Consumer = <EmbeddedBroker as Broker>::Consumer;

    fn name(&self) -> &'static str {
        "gives-up"
    }

    async fn publish(&self, batch: Vec<Message>) -> Result<(), BrokerError> {
        if self.done.fetch_add(1, Ordering::SeqCst) >= self.batches {
            return Err(BrokerError::Unavailable {
                backend: "gives-up",
                reason: "delivery reports timed out".into(),
            });
        }
        self.inner.publish(batch).await
    }

    async fn consumer(&self, opts: ConsumerOptions) -> Result<Self::Consumer, BrokerError> {
        self.inner.consumer(opts).await
    }

    async fn stats(&self) -> Result<BrokerStats, BrokerError> {
        self.inner.stats().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_that_gives_up_ends_the_run_with_its_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path()).expect("open");
    let queue = db.queue("bench", QueueOptions::default()).expect("queue");
    let broker = Arc::new(GivesUp {
        inner: EmbeddedBroker::new(queue),
        batches: 2,
        done: AtomicUsize::new(0),
    });
    let progress = Arc::new(Progress::default());
    let started = Instant::now();
    // Bounded only so that a regression fails instead of hanging the suite.
    let run = tokio::time::timeout(
        Duration::from_secs(60),
        drive_counted(broker, 10 * BATCH, progress.clone()),
    )
    .await
    .expect("the run ended by itself, not at the time limit");
    let err = run
        .expect_err("the run fails: the producer gave up")
        .to_string();
    assert!(err.contains("publish failed"), "{err}");
    assert!(err.contains("delivery reports timed out"), "{err}");
    assert!(
        err.contains(&format!("{} published", 2 * BATCH)),
        "says how far it got: {err}"
    );
    assert_eq!(progress.published.load(Ordering::SeqCst), 2 * BATCH);
    assert!(progress.received.load(Ordering::SeqCst) <= 2 * BATCH);
    println!("ended after {:?}: {err}", started.elapsed());
}

#[tokio::test]
async fn a_failed_variant_costs_only_its_slot_of_its_round() {
    let args = Args {
        n: 10,
        rounds: 2,
        only: Vec::new(),
    };
    let all = rounds(
        &args,
        &["a", "b"],
        &["a", "b"],
        async |i, round| {
            if (i, round) == (1, 1) {
                Err("not done within the limit".into())
            } else {
                Ok(Outcome::new(10, 1.0, vec![1_000; 10]))
            }
        },
        |_| None,
    )
    .await
    .expect("rounds go on past a failed variant");
    assert_eq!(all.len(), 2, "both rounds ran");
    assert!(all[0][0].is_some(), "round 1, variant a");
    assert!(all[0][1].is_none(), "round 1, variant b failed");
    assert!(
        all[1][0].is_some() && all[1][1].is_some(),
        "round 2 complete"
    );
}
