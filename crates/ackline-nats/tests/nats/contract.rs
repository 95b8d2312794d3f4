//! The backend contract suite on the NATS server of this machine (or `ACKLINE_NATS_URL`).
//! Each test gets fresh streams, deleted afterwards even when the test fails.

use ackline_broker::contract::{ContractOptions, Factory};
use ackline_nats::NatsBroker;

use crate::common;

struct Nats {
    url: String,
    cleanup: common::Cleanup,
}

impl Factory for Nats {
    type B = NatsBroker;
    async fn make(&self, opts: ContractOptions) -> NatsBroker {
        let q = common::unique_queue("contract");
        let o = common::options(opts.max_attempts, opts.max_bytes);
        self.cleanup.add(&self.url, &q, &o);
        match NatsBroker::connect(&self.url, &q, o).await {
            Ok(b) => b,
            Err(e) => panic!("NATS at {}: {e}", common::url()),
        }
    }
}

/// The factory, or (outside CI, NATS unreachable) `None`: the test then returns.
fn factory() -> Option<Nats> {
    Some(Nats {
        url: common::reachable()?,
        cleanup: common::Cleanup::default(),
    })
}

// `return` in the factory expression ends the test early when NATS is unreachable (outside
// CI; under CI=true `reachable` panics instead).
ackline_broker::contract_tests!({
    let Some(f) = factory() else { return };
    f
});
