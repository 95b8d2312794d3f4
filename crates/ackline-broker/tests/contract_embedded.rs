//! The backend contract suite on the embedded queue.

use std::sync::Mutex;

use ackline_broker::contract::{ContractOptions, Factory};
use ackline_broker::embedded::EmbeddedBroker;
use ackline_queue::{Db, QueueOptions};

/// Each queue gets its own data directory, kept alive as long as the factory.
struct Embedded {
    dirs: Mutex<Vec<tempfile::TempDir>>,
}

impl Factory for Embedded {
    type B = EmbeddedBroker;
    async fn make(&self, opts: ContractOptions) -> EmbeddedBroker {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(dir.path()).expect("open");
        let mut qo = QueueOptions {
            max_attempts: opts.max_attempts,
            ..Default::default()
        };
        if let Some(b) = opts.max_bytes {
            qo.max_bytes = b;
            qo.max_message_bytes = qo.max_message_bytes.min(b as usize);
        }
        let q = db.queue("contract", qo).expect("queue");
        self.dirs.lock().expect("lock").push(dir);
        EmbeddedBroker::new(q)
    }
}

fn factory() -> Embedded {
    Embedded {
        dirs: Mutex::new(Vec::new()),
    }
}

ackline_broker::contract_tests!(factory());
