//! The backend contract suite over HTTP: each test gets its own in-process server on an
//! ephemeral 127.0.0.1 port with its own data directory, whose queue options carry the test's
//! `max_attempts` and `max_bytes`.

use std::sync::Mutex;

use ackline_broker::contract::{ContractOptions, Factory};
use ackline_http::HttpBroker;
use ackline_queue::QueueOptions;
use ackline_server::{Server, ServerConfig};

struct Http {
    /// Data directories and shutdown senders, kept as long as the factory.
    keep: Mutex<Vec<(tempfile::TempDir, tokio::sync::oneshot::Sender<()>)>>,
}

impl Factory for Http {
    type B = HttpBroker;
    async fn make(&self, opts: ContractOptions) -> HttpBroker {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut qo = QueueOptions {
            max_attempts: opts.max_attempts,
            ..Default::default()
        };
        if let Some(b) = opts.max_bytes {
            qo.max_bytes = b;
            qo.max_message_bytes = qo.max_message_bytes.min(b as usize);
        }
        let cfg = ServerConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            default_queue: "contract".into(),
            queue_options: qo,
            ..ServerConfig::new(dir.path())
        };
        let server = Server::bind(cfg).await.expect("bind");
        let addr = server.local_addr();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        self.keep.lock().expect("lock").push((dir, tx));
        HttpBroker::connect(&format!("http://{addr}/contract"), None).expect("connect")
    }
}

fn factory() -> Http {
    Http {
        keep: Mutex::new(Vec::new()),
    }
}

ackline_broker::contract_tests!(factory());
