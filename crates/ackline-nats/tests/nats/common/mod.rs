//! Test support: the NATS server on this machine, private servers the tests start and kill,
//! unique queue names, and cleanup guards.
//!
//! When the server is unreachable: under `CI=true` the test fails with a clear message;
//! otherwise it prints `skipped: NATS not reachable at ...: <reason>` and returns.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ackline_nats::{NatsBroker, NatsOptions, NatsUrl};

#[path = "../../../../ackline-worker/tests/shared/crash_worker.rs"]
pub mod worker;

/// The URL tests use: `ACKLINE_NATS_URL`, or the local default.
pub fn url() -> String {
    std::env::var(ackline_nats::ENV_URL)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned())
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// `Some(url)` when the NATS server accepts TCP connections; `None` (after printing why) when
/// it does not and this is not CI. Panics under `CI=true`.
pub fn reachable() -> Option<String> {
    let u = url();
    let parsed = NatsUrl::parse(&u).expect("test URL");
    let res = parsed
        .endpoint()
        .to_socket_addrs()
        .map_err(|e| e.to_string())
        .and_then(|mut a| a.next().ok_or_else(|| "no address".to_owned()))
        .and_then(|a| {
            TcpStream::connect_timeout(&a, Duration::from_secs(3)).map_err(|e| e.to_string())
        });
    match res {
        Ok(_) => Some(u),
        Err(reason) => {
            if ci() {
                panic!(
                    "NATS not reachable at {parsed} (CI=true, so this fails): {reason}; start it \
                     with `nats-server -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server`"
                );
            }
            println!("skipped: NATS not reachable at {parsed}: {reason}");
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
        "ackline-test-{prefix}-{}-{}-{nanos:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Test options.
pub fn options(max_attempts: u32, max_bytes: Option<u64>) -> NatsOptions {
    NatsOptions {
        max_attempts,
        max_bytes,
        publish_timeout: Duration::from_secs(15),
        ..NatsOptions::default()
    }
}

/// Deletes queues (their two streams) when dropped, even while a test unwinds: on its own
/// thread with its own runtime, so it works inside or outside an async context.
#[derive(Default)]
pub struct Cleanup {
    queues: Mutex<Vec<(String, String, NatsOptions)>>,
}

impl Cleanup {
    pub fn add(&self, url: &str, queue: &str, opts: &NatsOptions) {
        self.queues
            .lock()
            .unwrap()
            .push((url.to_owned(), queue.to_owned(), opts.clone()));
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let queues = std::mem::take(&mut *self.queues.lock().unwrap_or_else(|e| e.into_inner()));
        if queues.is_empty() {
            return;
        }
        let t = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                for (url, q, o) in queues {
                    let Ok(u) = NatsUrl::parse(&url) else {
                        continue;
                    };
                    match NatsBroker::connect_existing(u, &q, o).await {
                        Ok(b) => {
                            if let Err(e) = b.delete().await {
                                eprintln!("cleanup of {q} failed: {e}");
                            }
                        }
                        Err(e) => eprintln!("cleanup of {q}: {e}"),
                    }
                }
            });
        });
        let _ = t.join();
    }
}

/// The nats-server binary, if installed.
pub fn nats_server() -> Option<PathBuf> {
    [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// The nats-server binary, or (outside CI, printing why) `None`. Panics under `CI=true`.
pub fn server_binary() -> Option<PathBuf> {
    match nats_server() {
        Some(p) => Some(p),
        None if ci() => panic!("nats-server is not installed (CI=true, so this fails)"),
        None => {
            println!("skipped: nats-server is not installed");
            None
        }
    }
}

/// A free TCP port on 127.0.0.1 (bound and released: a small race, fine for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A private nats-server with JetStream, its store in a directory the test owns, killed with
/// SIGKILL when dropped.
pub struct PrivateServer {
    bin: PathBuf,
    pub dir: PathBuf,
    pub port: u16,
    extra: Vec<String>,
    child: Option<Child>,
}

impl PrivateServer {
    /// Starts `nats-server -js -sd <dir>/store -a 127.0.0.1 -p <free port> <extra>` and waits
    /// (at most 20 s) until it accepts connections.
    pub fn start(bin: PathBuf, dir: &Path, extra: &[&str]) -> PrivateServer {
        let mut s = PrivateServer {
            bin,
            dir: dir.to_owned(),
            port: free_port(),
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            child: None,
        };
        s.launch();
        s
    }

    fn launch(&mut self) {
        let store = self.dir.join("store");
        let log = self.dir.join("server.log");
        let child = Command::new(&self.bin)
            .args(["-js", "-sd"])
            .arg(&store)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-l"])
            .arg(&log)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!(
                    "nats-server exited at start ({status}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < until, "nats-server did not start in 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `nats://127.0.0.1:<port>` (or with the scheme and user part given).
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and store (after SIGKILL).
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// SIGTERM (the server shuts down cleanly, writing its state), waits for it to exit, and
    /// starts it again on the same port and store.
    pub fn restart_clean(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
        self.launch();
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits (polling, bounded) until `f` holds; panics with `what` otherwise.
pub async fn wait_until<F, Fut>(what: &str, patience: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + patience;
    while !f().await {
        assert!(Instant::now() < until, "{what}: not within {patience:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
