//! The backend contract suite on a private redis-server (AOF, appendfsync always), one server
//! per test, killed at the end of the test even when it fails.

use ackline_broker::contract::{ContractOptions, Factory};
use ackline_redis::RedisBroker;

use crate::common::{self, Persistence, Server};

struct Redis {
    server: Server,
}

impl Factory for Redis {
    type B = RedisBroker;
    async fn make(&self, opts: ContractOptions) -> RedisBroker {
        let q = common::unique_queue("contract");
        let o = common::options(opts.max_attempts, opts.max_bytes);
        match RedisBroker::connect(&self.server.url(), &q, o).await {
            Ok(b) => b,
            Err(e) => panic!("redis-server on port {}: {e}", self.server.port),
        }
    }
}

/// The factory, or (outside CI, no redis-server binary) `None`: the test then returns.
fn factory() -> Option<Redis> {
    Some(Redis {
        server: Server::start(Persistence::AofAlways)?,
    })
}

// `return` in the factory expression ends the test early when redis-server is missing
// (outside CI; under CI=true `available` panics instead).
ackline_broker::contract_tests!({
    let Some(f) = factory() else { return };
    f
});
