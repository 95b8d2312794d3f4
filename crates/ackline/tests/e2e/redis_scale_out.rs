//! Scale-out on Redis Streams with real processes: `ackline serve --broker redis://...` takes
//! lines over HTTP and relays them to a stream of a private `redis-server` (AOF,
//! `appendfsync always`); `ackline work --broker redis://... --store sqlite:... --strict`
//! stores them. The worker is SIGKILLed once it has stored some lines and restarted: every
//! valid line is stored exactly once (the killed worker's deliveries are claimed after the
//! lease), and the malformed line is in the dead-letter stream, as `ackline dlq list --broker
//! redis://...` shows. A second server without persistence is refused by `work` (exit 1, the
//! risk named) unless `--allow-volatile`.
//!
//! Each test starts its own `redis-server` on a free port in a temp dir ([`Daemon`]: killed at
//! the end, and by a watchdog when the test process is gone); the scenario is
//! [`scale_out_survives_a_killed_worker`], shared with NATS. When the binary is missing the
//! test prints why and returns, except under `CI=true`, where it fails. No sleeps synchronise
//! anything: every wait polls its condition.

#![allow(clippy::unwrap_used)] // tests: a panic is a failed assertion

use std::process::Command;
use std::time::Duration;

use crate::brokers::{
    Daemon, answers, available, cmd, scale_out_survives_a_killed_worker, spawn_until_noted,
};
use crate::common::{free_port, run_with_deadline};

/// The `redis-server` binary: `ACKLINE_REDIS_SERVER`, else `redis-server` on the PATH.
fn binary() -> String {
    std::env::var("ACKLINE_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
}

fn redis_available() -> bool {
    available(
        &binary(),
        "install redis-server or set ACKLINE_REDIS_SERVER",
    )
}

/// A private redis-server.
struct Redis {
    port: u16,
    _server: Daemon,
}

impl Redis {
    fn start(aof: bool) -> Redis {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(binary());
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(dir.path().join("redis.log"))
            .args(["--save", "", "--daemonize", "no"]);
        if aof {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let server = Daemon::start(cmd, dir, || answers(port, false, b"PING\r\n", b"+PONG"));
        Redis {
            port,
            _server: server,
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

#[test]
fn redis_scale_out_survives_a_killed_worker_and_dead_letters_malformed_lines() {
    if !redis_available() {
        return;
    }
    let redis = Redis::start(true);
    scale_out_survives_a_killed_worker(&redis.url(), "ackline-test.redis");
}

#[test]
fn work_refuses_a_volatile_redis_unless_allowed() {
    if !redis_available() {
        return;
    }
    let redis = Redis::start(false);
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("records.db").display());
    let args = |extra: &[&str]| {
        let mut c = cmd(dir.path());
        c.args([
            "work",
            "--broker",
            &redis.url(),
            "--queue",
            "volatile",
            "--store",
            &db,
        ])
        .args(extra);
        c
    };
    let o = run_with_deadline(args(&[]), Duration::from_secs(60));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("appendonly no") && err.contains("--allow-volatile"),
        "{err}"
    );

    // With --allow-volatile it starts (and says what is at risk), then stops on SIGTERM.
    let c = args(&["--allow-volatile"]);
    let (mut p, seen) = spawn_until_noted(c, "ackline work: redis://");
    assert!(
        seen.iter()
            .any(|l| l.contains("at risk") && l.contains("appendonly no")),
        "{seen:#?}"
    );
    p.signal("TERM");
    assert_eq!(p.wait_exit(Duration::from_secs(30)).code(), Some(0));
}
