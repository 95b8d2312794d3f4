//! Test support: the RabbitMQ on this machine, unique queue names, and cleanup guards.
//!
//! When RabbitMQ is unreachable: under `CI=true` the test fails with a clear message;
//! otherwise it prints `skipped: RabbitMQ not reachable at ...: <reason>` and returns.

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ackline_rabbitmq::{AmqpUrl, RabbitBroker, RabbitOptions};

#[path = "../../../../ackline-worker/tests/shared/crash_worker.rs"]
pub mod worker;

/// The URL tests use: `ACKLINE_AMQP_URL`, or the local default.
pub fn url() -> String {
    std::env::var(ackline_rabbitmq::ENV_URL)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// `Some(url)` when RabbitMQ accepts TCP connections; `None` (after printing why) when it does
/// not and this is not CI. Panics under `CI=true`.
pub fn reachable() -> Option<String> {
    let u = url();
    let parsed = AmqpUrl::parse(&u).expect("test URL");
    let endpoint = parsed.endpoint();
    let res = endpoint
        .to_socket_addrs()
        .map_err(|e| e.to_string())
        .and_then(|mut a| a.next().ok_or_else(|| "no address".to_owned()))
        .and_then(|a| {
            TcpStream::connect_timeout(&a, Duration::from_secs(3)).map_err(|e| e.to_string())
        });
    match res {
        Ok(_) => Some(u),
        Err(reason) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "RabbitMQ not reachable at {parsed} (CI=true, so this fails): {reason}; \
                     start it with `rabbitmq-server -detached`"
                );
            }
            println!("skipped: RabbitMQ not reachable at {parsed}: {reason}");
            None
        }
    }
}

/// A queue name no other test (or run) uses.
pub fn unique_queue(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "ackline-test.{prefix}.{}.{}.{nanos:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Test options: short delays, few buckets (fewer queues to delete).
pub fn options(max_attempts: u32, max_bytes: Option<u64>) -> RabbitOptions {
    RabbitOptions {
        max_attempts,
        max_bytes,
        delay_base: Duration::from_millis(100),
        delay_buckets: 8,
        publish_timeout: Duration::from_secs(15),
        ..RabbitOptions::default()
    }
}

/// Deletes queues when dropped, even while a test unwinds: on its own thread with its own
/// runtime, so it works inside or outside an async context.
#[derive(Default)]
pub struct Cleanup {
    queues: Mutex<Vec<(String, RabbitOptions)>>,
}

impl Cleanup {
    pub fn add(&self, queue: &str, opts: &RabbitOptions) {
        self.queues
            .lock()
            .unwrap()
            .push((queue.to_owned(), opts.clone()));
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let queues = std::mem::take(&mut *self.queues.lock().unwrap_or_else(|e| e.into_inner()));
        if queues.is_empty() {
            return;
        }
        let url = url();
        let t = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                for (q, o) in queues {
                    match RabbitBroker::connect(&url, &q, o.clone()).await {
                        Ok(b) => {
                            if let Err(e) = b.delete().await {
                                eprintln!("cleanup of {q} failed: {e}");
                            }
                        }
                        // A queue the backend refuses to open (a test declared it with other
                        // arguments): deleted by name.
                        Err(_) => delete_raw(&url, &q, &o).await,
                    }
                }
            });
        });
        let _ = t.join();
    }
}

/// A plain AMQP connection and channel, as another producer or an operator's tool would use:
/// nothing of ackline's.
pub async fn raw_channel(url: &str) -> (lapin::Connection, lapin::Channel) {
    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .expect("plain AMQP connection");
    let ch = conn.create_channel().await.expect("channel");
    (conn, ch)
}

/// Publishes `messages` to `queue` (default exchange) as a plain AMQP producer, persistent,
/// waiting for every publisher confirm.
pub async fn publish_raw(url: &str, queue: &str, messages: Vec<(lapin::BasicProperties, Vec<u8>)>) {
    let (conn, ch) = raw_channel(url).await;
    ch.confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    for (props, payload) in messages {
        let confirm = ch
            .basic_publish(
                "".into(),
                queue.into(),
                lapin::options::BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &payload,
                props.with_delivery_mode(2),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        assert!(
            matches!(confirm, lapin::Confirmation::Ack(None)),
            "not confirmed: {confirm:?}"
        );
    }
    let _ = conn.close(200, "done".into()).await;
}

/// Deletes `queue`, its dead-letter queue and its delay queues with plain AMQP.
async fn delete_raw(url: &str, queue: &str, o: &RabbitOptions) {
    let Ok(conn) = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await
    else {
        eprintln!("cleanup of {queue} failed: no connection");
        return;
    };
    let base = u64::try_from(o.delay_base.as_millis()).unwrap_or(1).max(1);
    let mut names = vec![queue.to_owned(), format!("{queue}.dlq")];
    names.extend((0..o.delay_buckets.min(40)).map(|k| format!("{queue}.delay.{}", base << k)));
    for name in names {
        if let Ok(ch) = conn.create_channel().await {
            let _ = ch
                .queue_delete(
                    name.as_str().into(),
                    lapin::options::QueueDeleteOptions::default(),
                )
                .await;
        }
    }
    let _ = conn.close(200, "cleanup".into()).await;
}
