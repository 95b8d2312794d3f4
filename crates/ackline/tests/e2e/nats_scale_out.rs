//! Scale-out on NATS JetStream with real processes, against a private `nats-server -js` (a
//! free port, its store in a temp dir; the machine's server is not used): the scale-out
//! scenario of [`crate::brokers`] (`serve --broker nats://` relays 2,000 lines and a malformed
//! one, a `work --broker nats://` SIGKILLed mid-run, every line stored once, the malformed one
//! listed by `dlq list --broker nats://`, `queue stats --broker nats://`, a mistyped queue
//! refused), and what `work` says at start: the durability a PubAck has on this server version.
//!
//! When `nats-server` is missing the test prints why and returns, except under `CI=true`,
//! where it fails.

use std::process::Command;
use std::time::Duration;

use crate::brokers::{
    Daemon, answers, available, cmd, scale_out_survives_a_killed_worker, spawn_until_noted,
};
use crate::common::{free_port, run_with_deadline};

/// The `nats-server` binary: `ACKLINE_NATS_SERVER`, else `nats-server` on the PATH, else
/// Debian's `/usr/sbin/nats-server`.
fn binary() -> String {
    std::env::var("ACKLINE_NATS_SERVER").unwrap_or_else(|_| {
        let sbin = "/usr/sbin/nats-server";
        if std::path::Path::new(sbin).exists() {
            sbin.into()
        } else {
            "nats-server".into()
        }
    })
}

fn nats_available() -> bool {
    available(&binary(), "install nats-server or set ACKLINE_NATS_SERVER")
}

/// A private nats-server with JetStream.
struct Nats {
    port: u16,
    _server: Daemon,
}

impl Nats {
    fn start() -> Nats {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(binary());
        cmd.args(["-js", "-sd"])
            .arg(dir.path().join("store"))
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-l"])
            .arg(dir.path().join("nats.log"));
        let server = Daemon::start(cmd, dir, || {
            answers(
                port,
                true,
                b"CONNECT {\"verbose\":false}\r\nPING\r\n",
                b"PONG",
            )
        });
        Nats {
            port,
            _server: server,
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

#[test]
fn nats_scale_out_survives_a_killed_worker_and_dead_letters_malformed_lines() {
    if !nats_available() {
        return;
    }
    let nats = Nats::start();
    scale_out_survives_a_killed_worker(&nats.url(), "ackline-test-nats");
}

/// `work --broker nats://` notes the server's version and what a PubAck promises on it (on
/// 2.9, written but not fsynced: "at risk"), then stops on SIGTERM with exit 0. A credentials
/// file that is not one is a configuration error (exit 2) before anything is connected.
#[test]
fn work_on_nats_notes_the_durability_of_a_puback() {
    if !nats_available() {
        return;
    }
    let nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("records.db").display());
    let args = || {
        let mut c = cmd(dir.path());
        c.args([
            "work",
            "--broker",
            &nats.url(),
            "--queue",
            "durability",
            "--store",
            &db,
        ]);
        c
    };

    let bogus = dir.path().join("not.creds");
    std::fs::write(&bogus, "not a creds file").unwrap();
    let mut c = args();
    c.env("ACKLINE_BROKER_CREDENTIALS_FILE", &bogus);
    let o = run_with_deadline(c, Duration::from_secs(60));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("broker.credentials_file"), "{err}");

    let c = args();
    let (mut p, seen) = spawn_until_noted(c, "ackline work: nats://");
    let note = seen
        .iter()
        .find(|l| l.contains("connected to nats-server"))
        .unwrap_or_else(|| panic!("no durability note: {seen:#?}"));
    assert!(note.contains("docs/nats.md"), "{note}");
    p.signal("TERM");
    assert_eq!(p.wait_exit(Duration::from_secs(30)).code(), Some(0));
}
