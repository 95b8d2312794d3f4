//! Test support: a private tansu (a Kafka-API broker) per test, on memory storage or, for the
//! restart tests, on its SQLite engine in the test's directory; unique topic and group names,
//! and options for short tests.
//!
//! The binary: `ACKLINE_TANSU`, else the cache `scripts/kafka-test-broker install` fills
//! (`ACKLINE_TANSU_ROOT`, by default `~/.cache/ackline/tansu`), else `tansu` on the PATH.
//! When none runs: under `CI=true` the test fails with a clear message; otherwise it prints
//! `skipped: ...` and returns. Each server is killed when its [`Server`] is dropped (also while
//! a test unwinds), and a watchdog shell kills it when the test process is gone or after
//! [`LIFETIME`]: no server outlives its run.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ackline_broker::{Consumer, Delivery, Settlement};
use ackline_kafka::{KafkaBroker, KafkaOptions};

/// The longest a test's server may live.
pub const LIFETIME: Duration = Duration::from_secs(900);

fn candidates() -> Vec<PathBuf> {
    if let Ok(p) = std::env::var("ACKLINE_TANSU") {
        return vec![p.into()];
    }
    let root = std::env::var("ACKLINE_TANSU_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/ackline/tansu")
        });
    vec![root.join("bin/tansu"), "tansu".into()]
}

/// The tansu binary that runs, or (outside CI) `None` after printing why.
pub fn binary() -> Option<PathBuf> {
    for c in candidates() {
        let runs = Command::new(&c)
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if runs {
            return Some(c);
        }
    }
    let why = "no runnable tansu (the Kafka-API test broker): run scripts/kafka-test-broker \
               install (.ci/run does) or set ACKLINE_TANSU";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why} (CI=true, so this fails)");
    }
    println!("skipped: {why}");
    None
}

/// A private tansu.
pub struct Server {
    pub port: u16,
    /// The port it tells clients to connect to (its own, or a proxy's in front of it).
    advertised: u16,
    bin: PathBuf,
    /// `None`: `memory://` storage. `Some(dir)`: the SQLite engine on `dir/tansu.db`, which
    /// survives a restart.
    dir: Option<PathBuf>,
    log: tempfile::NamedTempFile,
    child: Option<Child>,
    watchdog: Option<Child>,
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("its address").port()
}

impl Server {
    /// Starts a server on `memory://` storage (`None` when there is no binary, outside CI).
    pub fn start() -> Option<Server> {
        Server::start_in(None, None)
    }

    /// Starts a server on `memory://` storage that tells clients to connect to
    /// `127.0.0.1:advertised` (a proxy in front of it).
    pub fn start_behind(advertised: u16) -> Option<Server> {
        Server::start_in(None, Some(advertised))
    }

    /// Starts a server whose storage is the SQLite file `dir/tansu.db` (tansu's `sqlite://`
    /// engine, WAL): what it confirmed survives [`Server::restart`].
    pub fn start_persistent(dir: &std::path::Path) -> Option<Server> {
        Server::start_in(Some(dir.to_owned()), None)
    }

    fn start_in(dir: Option<PathBuf>, advertised: Option<u16>) -> Option<Server> {
        if let Ok(filter) = std::env::var("ACKLINE_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
        let bin = binary()?;
        let port = free_port();
        let mut s = Server {
            port,
            advertised: advertised.unwrap_or(port),
            bin,
            dir,
            log: tempfile::NamedTempFile::new().expect("log file"),
            child: None,
            watchdog: None,
        };
        s.launch();
        Some(s)
    }

    /// Spawns tansu on `self.port` and waits until it listens.
    fn launch(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!("tcp://127.0.0.1:{}", self.advertised);
        let mut cmd = Command::new(&self.bin);
        cmd.args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &advertised,
        ]);
        match &self.dir {
            // tansu resolves `sqlite://NAME` against its working directory.
            Some(dir) => {
                cmd.current_dir(dir)
                    .args(["--storage-engine", "sqlite://tansu.db"]);
            }
            None => {
                cmd.args(["--storage-engine", "memory://tansu/"]);
            }
        }
        let child = cmd
            .env(
                "RUST_LOG",
                std::env::var("ACKLINE_TANSU_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(self.log.reopen().expect("log"))
            .stderr(self.log.reopen().expect("log"))
            .spawn()
            .expect("spawn tansu");
        self.watchdog = Some(ackline_broker::watchdog::watch(child.id(), LIFETIME));
        self.child = Some(child);
        self.wait_ready();
    }

    /// SIGKILLs the server (and its watchdog) and waits until it is gone.
    pub fn kill(&mut self) {
        for c in [self.child.take(), self.watchdog.take()]
            .into_iter()
            .flatten()
        {
            let mut c = c;
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freezes the server (SIGSTOP): it holds its connections and answers nothing, a broker
    /// that hangs rather than refuses, until [`Server::thaw`].
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("a running server").id();
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid}");
    }

    /// SIGKILLs the server and starts it again on the same port and storage.
    pub fn restart(&mut self) {
        assert!(
            self.dir.is_some(),
            "a memory:// server has nothing to restart on"
        );
        self.kill();
        self.launch();
    }

    /// Waits (at most 30 s) until the port accepts connections.
    fn wait_ready(&mut self) {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!(
                    "tansu exited ({status}) on port {}: {}",
                    self.port,
                    self.log()
                );
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < until,
                "tansu on port {} not ready: {}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("kafka://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A topic name no other test (or run) uses.
pub fn unique_topic(prefix: &str) -> String {
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

/// Test options: a group of the topic's own, short timeouts.
pub fn options(topic: &str, max_attempts: u32) -> KafkaOptions {
    KafkaOptions {
        max_attempts,
        group: format!("{topic}.group"),
        replication: Some(1),
        session_timeout: Duration::from_secs(6),
        publish_timeout: Duration::from_secs(15),
        revoke_grace: Duration::from_secs(10),
        client_config: client_config(),
        ..KafkaOptions::default()
    }
}

/// Unix time in ms.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// librdkafka settings of the tests' clients (docs/kafka.md, "tansu"):
/// - one record per produce batch: tansu 0.6 takes a partition's high watermark as the last
///   batch's base offset plus one, so the records after the first of a multi-record batch
///   stay invisible to fetches and offset queries until more is produced;
/// - fetches that wait at most 100 ms: with tansu's default wait (`fetch.wait.max.ms`,
///   500 ms), the contract suite's three-consumer test took 11 to 24 s against 3.6 to 9.7 s
///   (measured when the consumer still paused and resumed its assignment at the read-ahead
///   mark: docs/kafka.md, "tansu").
///
/// `ACKLINE_KAFKA_DEBUG=cgrp,fetch,...` adds librdkafka's debug contexts (shown with
/// `ACKLINE_TEST_LOG=debug`).
pub fn client_config() -> Vec<(String, String)> {
    let mut c = vec![
        ("batch.num.messages".to_string(), "1".to_string()),
        ("fetch.wait.max.ms".to_string(), "100".to_string()),
    ];
    if let Ok(d) = std::env::var("ACKLINE_KAFKA_DEBUG") {
        c.push(("debug".into(), d));
    }
    c
}

/// Whether the server keeps the metadata of committed offsets (Kafka does; tansu 0.6 answers
/// an empty string), which the consumers' journal needs to count attempts across crashes.
pub fn keeps_commit_metadata(server: &Server, topic: &str) -> bool {
    use rdkafka::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", format!("127.0.0.1:{}", server.port))
        .set("group.id", format!("{topic}.metadata-probe"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("a plain consumer");
    let mut tpl = TopicPartitionList::new();
    let mut e = tpl.add_partition(topic, 0);
    e.set_offset(Offset::Offset(0)).expect("offset");
    e.set_metadata("probe");
    c.commit(&tpl, CommitMode::Sync).expect("commit");
    let mut q = TopicPartitionList::new();
    q.add_partition(topic, 0);
    let got = c
        .committed_offsets(q, Duration::from_secs(10))
        .expect("committed offsets");
    got.find_partition(topic, 0)
        .is_some_and(|e| e.metadata() == "probe")
}

/// Receives until `n` deliveries came or `patience` ran out (each call waits up to `wait`).
pub async fn recv_n<C: Consumer>(
    c: &C,
    n: usize,
    patience: Duration,
    wait: Duration,
) -> Vec<Delivery> {
    let deadline = Instant::now() + patience;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        out.extend(c.receive(n - out.len(), wait).await.expect("receive"));
    }
    out
}

/// Acks `got` on `c` and checks every ack succeeded.
pub async fn ack_all<C: Consumer>(c: &C, got: &[Delivery]) {
    let acks = got
        .iter()
        .map(|d| (d.tag.clone(), Settlement::Ack))
        .collect();
    let results = c.settle(acks).await.expect("settle");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

/// [`ack_all`], then waits (up to 30 s) until the topic has nothing pending, and closes `c`.
pub async fn ack_all_and_close<C: Consumer>(broker: &KafkaBroker, c: C, got: &[Delivery]) {
    ack_all(&c, got).await;
    let stats = crate::worker::settled(broker, Duration::from_secs(30)).await;
    assert_eq!(stats.pending, 0, "{stats:?}");
    c.close().await;
}
