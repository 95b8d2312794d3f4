//! The backend contract suite on RabbitMQ (the server on this machine, or `ACKLINE_AMQP_URL`).
//! Each test gets fresh queues, deleted afterwards even when the test fails.

use ackline_broker::contract::{ContractOptions, Factory};
use ackline_rabbitmq::RabbitBroker;

use crate::common;

struct Rabbit {
    url: String,
    cleanup: common::Cleanup,
}

impl Factory for Rabbit {
    type B = RabbitBroker;
    async fn make(&self, opts: ContractOptions) -> RabbitBroker {
        let q = common::unique_queue("contract");
        let o = common::options(opts.max_attempts, opts.max_bytes);
        self.cleanup.add(&q, &o);
        match RabbitBroker::connect(&self.url, &q, o).await {
            Ok(b) => b,
            Err(e) => panic!("RabbitMQ at {}: {e}", common::url()),
        }
    }
}

/// The factory, or (outside CI, RabbitMQ unreachable) `None`: the test then returns.
fn factory() -> Option<Rabbit> {
    Some(Rabbit {
        url: common::reachable()?,
        cleanup: common::Cleanup::default(),
    })
}

// `return` in the factory expression ends the test early when RabbitMQ is unreachable
// (outside CI; under CI=true `reachable` panics instead).
ackline_broker::contract_tests!({
    let Some(f) = factory() else { return };
    f
});
