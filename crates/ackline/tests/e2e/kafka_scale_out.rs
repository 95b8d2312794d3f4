//! Scale-out on Kafka with real processes, against a private tansu (a Kafka-API broker, memory
//! storage, a free port; see `docs/kafka.md`): the scale-out scenario of [`crate::brokers`]
//! (`serve --broker kafka://` relays 2,000 lines and a malformed one, a `work --broker
//! kafka://` SIGKILLed mid-run, every line stored once, the malformed one listed by `dlq list
//! --broker kafka://`, `queue stats --broker kafka://`, a mistyped queue refused), what `work`
//! says at start, and a malformed `kafkas://` URL or a CA for a plaintext connection refused.
//!
//! Every `ackline` here runs with `broker.kafka_settings` = `batch.num.messages=1`,
//! `fetch.wait.max.ms=100`, the settings `ackline-kafka`'s own tests use on tansu: tansu 0.6
//! takes a partition's end as the last record batch's base offset + 1, so the tail of a
//! multi-record batch stays invisible to consumers until more is produced (the last lines
//! would never be stored: without it the scenario timed out with lines missing); Kafka needs
//! neither. The scenario's topics have two partitions (`broker.kafka_partitions`).
//!
//! The tansu binary: `ACKLINE_TANSU`, else the cache of `scripts/kafka-test-broker install`
//! (`ACKLINE_TANSU_ROOT`, by default `~/.cache/ackline/tansu`), else `tansu` on the PATH. When
//! none runs the test prints `skipped: ...` and returns, except under `CI=true`, where it fails.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::brokers::{Daemon, cmd, scale_out_survives_a_killed_worker_with, spawn_until_noted};
use crate::common::{free_port, run_with_deadline};

/// What `ackline` needs against tansu (module doc).
const TANSU_SETTINGS: (&str, &str) = (
    "ACKLINE_BROKER_KAFKA_SETTINGS",
    "batch.num.messages=1,fetch.wait.max.ms=100",
);

/// The tansu that runs, or (outside CI) `None` after printing why.
fn binary() -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = match std::env::var("ACKLINE_TANSU") {
        Ok(p) => vec![p.into()],
        Err(_) => {
            let root = std::env::var("ACKLINE_TANSU_ROOT").map_or_else(
                |_| {
                    PathBuf::from(std::env::var("HOME").unwrap_or_default())
                        .join(".cache/ackline/tansu")
                },
                PathBuf::from,
            );
            vec![root.join("bin/tansu"), "tansu".into()]
        }
    };
    for c in candidates {
        let runs = Command::new(&c)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if runs {
            return Some(c);
        }
    }
    let why = "no runnable tansu (the Kafka-API test broker): run scripts/kafka-test-broker \
               install or set ACKLINE_TANSU";
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(!ci, "{why} (CI=true, so this fails)");
    println!("skipped: {why}");
    None
}

/// A private tansu on a free port, memory storage.
struct Tansu {
    port: u16,
    _server: Daemon,
}

impl Tansu {
    fn start() -> Option<Tansu> {
        let bin = binary()?;
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let mut cmd = Command::new(bin);
        cmd.args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "memory://tansu/",
        ])
        .env("RUST_LOG", "error");
        let dir = tempfile::tempdir().unwrap();
        let server = Daemon::start(cmd, dir, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Some(Tansu {
            port,
            _server: server,
        })
    }

    fn url(&self) -> String {
        format!("kafka://127.0.0.1:{}", self.port)
    }
}

#[test]
fn kafka_scale_out_survives_a_killed_worker_and_dead_letters_malformed_lines() {
    let Some(tansu) = Tansu::start() else {
        return;
    };
    // Topics created with two partitions (`broker.kafka_partitions`; the partition count on
    // the broker is not checked here, only that every line is stored once).
    scale_out_survives_a_killed_worker_with(
        &tansu.url(),
        "ackline-test-kafka",
        &[TANSU_SETTINGS, ("ACKLINE_BROKER_KAFKA_PARTITIONS", "2")],
    );
}

/// `work --broker kafka://` notes the group it joins and what a confirmed publish means, then
/// stops on SIGTERM with exit 0. A malformed URL or setting is a configuration error (exit 2)
/// naming the key before anything is connected; a private CA for a plaintext `kafka://`
/// connection is refused (exit 1) rather than ignored.
#[test]
fn kafka_work_notes_its_group_and_refuses_bad_urls_and_tls_settings() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("records.db").display());
    let args = |broker: &str| {
        let mut c = cmd(dir.path());
        c.args([
            "work", "--broker", broker, "--queue", "notes", "--store", &db,
        ]);
        c
    };
    let o = run_with_deadline(args("kafkas://127.0.0.1"), Duration::from_secs(60));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("broker.url"), "{err}");
    assert!(err.contains("kafkas://"), "{err}");

    let ca = dir.path().join("ca.pem");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let mut c = args("kafka://127.0.0.1:9");
    c.arg("--broker-ca").arg(&ca);
    let o = run_with_deadline(c, Duration::from_secs(60));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("without TLS"), "{err}");

    let mut c = args("kafka://127.0.0.1:9");
    c.env("ACKLINE_BROKER_KAFKA_SETTINGS", "no equals sign");
    let o = run_with_deadline(c, Duration::from_secs(60));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("broker.kafka_settings"), "{err}");

    let Some(tansu) = Tansu::start() else {
        return;
    };
    let mut c = args(&tansu.url());
    c.env(TANSU_SETTINGS.0, TANSU_SETTINGS.1);
    let (mut p, seen) = spawn_until_noted(c, "ackline work: kafka://");
    let note = seen
        .iter()
        .find(|l| l.contains("connected to Kafka"))
        .unwrap_or_else(|| panic!("no connection note: {seen:#?}"));
    assert!(note.contains("group ackline-notes"), "{note}");
    assert!(note.contains("acks=all"), "{note}");
    p.signal("TERM");
    assert_eq!(p.wait_exit(Duration::from_secs(30)).code(), Some(0));
}
