//! Test support: a private `redis-server` per test, unique key names, and helpers.
//!
//! The Redis on this machine runs without persistence, which the backend refuses, so each test
//! starts its own: `redis-server --port <free> --dir <temp dir> --appendonly yes
//! --appendfsync always --save ""`, bound to 127.0.0.1. It is killed when its [`Server`] is
//! dropped (also while a test unwinds), and a watchdog shell kills it when the test process is
//! gone (SIGKILL, abort) or after [`LIFETIME`], whichever comes first: no server outlives its run.
//!
//! When the `redis-server` binary is missing: under `CI=true` the test fails with a clear
//! message; otherwise it prints `skipped: ...` and returns.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ackline_redis::RedisOptions;

/// The longest a test's server may live.
pub const LIFETIME: Duration = Duration::from_secs(900);

/// The `redis-server` binary: `ACKLINE_REDIS_SERVER`, else `redis-server` on the PATH.
fn binary() -> String {
    std::env::var("ACKLINE_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
}

/// Whether `redis-server` can be run; panics under `CI=true` when it cannot, prints why and
/// returns false otherwise.
pub fn available() -> bool {
    let found = Command::new(binary())
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "no runnable `{}` (CI=true, so this fails): install Debian's redis-server package \
             (.ci/run does) or set ACKLINE_REDIS_SERVER",
            binary()
        );
    }
    println!(
        "skipped: no runnable `{}` (install redis-server or set ACKLINE_REDIS_SERVER)",
        binary()
    );
    false
}

/// What a server is started with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// `--appendonly yes --appendfsync always`.
    AofAlways,
    /// `--appendonly yes --appendfsync everysec`.
    AofEverySec,
    /// `--appendonly no --save ""`.
    None,
}

/// A private redis-server.
pub struct Server {
    pub port: u16,
    pub dir: tempfile::TempDir,
    persistence: Persistence,
    extra: Vec<String>,
    child: Option<Child>,
    watchdog: Option<Child>,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("its address").port()
}

impl Server {
    /// Starts a server (`None` when the binary is missing outside CI).
    pub fn start(p: Persistence) -> Option<Server> {
        Self::start_with(p, &[])
    }

    /// As [`Server::start`], with extra `--option value` arguments.
    pub fn start_with(p: Persistence, extra: &[&str]) -> Option<Server> {
        if !available() {
            return None;
        }
        let mut s = Server {
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            persistence: p,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
            watchdog: None,
        };
        s.launch();
        Some(s)
    }

    fn launch(&mut self) {
        let dir = self.dir.path();
        let mut cmd = Command::new(binary());
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .args(["--save", "", "--daemonize", "no"]);
        match self.persistence {
            Persistence::AofAlways => cmd.args(["--appendonly", "yes", "--appendfsync", "always"]),
            Persistence::AofEverySec => {
                cmd.args(["--appendonly", "yes", "--appendfsync", "everysec"])
            }
            Persistence::None => cmd.args(["--appendonly", "no"]),
        };
        cmd.args(&self.extra);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn redis-server");
        // Kills the server when this test process is gone or after LIFETIME.
        let watchdog = ackline_broker::watchdog::watch(child.id(), LIFETIME);
        self.child = Some(child);
        self.watchdog = Some(watchdog);
        self.wait_ready();
    }

    /// Waits (at most 20 s) until the server answers PING (not LOADING).
    fn wait_ready(&mut self) {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!(
                    "redis-server exited ({status}) on port {}: {}",
                    self.port,
                    self.log()
                );
            }
            if ping(self.port) {
                return;
            }
            assert!(
                Instant::now() < until,
                "redis-server on port {} not ready: {}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// SIGKILLs the server and waits for it to be gone.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }

    /// Starts the server again on the same port and directory (it replays its AOF).
    pub fn restart(&mut self) {
        self.kill9();
        self.launch();
    }

    /// A plain client connection (as an operator's tool would use).
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("client")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Whether a server answers `PING` on `port` (not `LOADING`).
fn ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    // NOAUTH: a server with a password is up as well.
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH"))
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

/// Test options: short polls and timeouts.
pub fn options(max_attempts: u32, max_bytes: Option<u64>) -> RedisOptions {
    RedisOptions {
        max_attempts,
        max_bytes,
        poll_interval: Duration::from_millis(100),
        command_timeout: Duration::from_secs(15),
        publish_timeout: Duration::from_secs(15),
        connect_timeout: Duration::from_secs(5),
        ..RedisOptions::default()
    }
}

/// Unix time in ms.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A path inside `dir`.
pub fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
