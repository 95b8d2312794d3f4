//! Issue 15, point 4: logs the real daemons write *during the test*.
//!
//! Each test starts a private instance (temporary directory, free port) of
//! Redis, NATS, PostgreSQL and MariaDB, makes it log (errors included: an
//! unknown table, an unknown role, a division by zero, a failed login, a
//! restart), stops it, and parses every line it wrote: the format, and the
//! timestamp, severity, pid and message an independent split of the line
//! gives (`common/mod.rs`). RabbitMQ is too slow to start privately: its
//! test provokes a failed AMQP login on the machine's broker
//! (127.0.0.1:5672) and parses the machine's log file.
//!
//! At least 98% of the lines of every log must get their timestamp from the
//! line. The one exception is MariaDB, which prints a `Version: ...` line
//! without a timestamp after every start: the test checks that these are
//! the only such lines and prints the share (they are continuation lines,
//! see multi-line joining in `docs/formats.md`).
//!
//! A daemon that is not installed (or, for RabbitMQ, not running, or its log
//! not readable at `ACKLINE_RABBITMQ_LOG`, default
//! `/var/log/rabbitmq/rabbit@localhost.log`) fails the test under `CI=true`
//! and skips it with a printed reason otherwise.
//! Instances are killed and their directories removed on every path out of
//! a test (drop guards).

// Test helpers may unwrap: a panic there is a failed test with its message.
#![allow(clippy::unwrap_used)]

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ackline_parse::{Format, LineContext, Parser, ParserConfig, TimestampSource};
use chrono::{DateTime, Utc};

mod common;
use common::*;

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// `None` (after saying why) when `what` is unavailable outside CI; a
/// failure under `CI=true`.
fn skip(test: &str, what: &str) -> Option<std::convert::Infallible> {
    assert!(
        !ci(),
        "{test}: {what}, and CI=true: this test must not be skipped in CI"
    );
    eprintln!("SKIPPED {test}: {what}");
    None
}

/// The first of `candidates` that exists (an absolute path, or a name on
/// `PATH` or in /usr/sbin).
fn find(candidates: &[&str]) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    for c in candidates {
        let c = Path::new(c);
        if c.is_absolute() {
            if c.exists() {
                return Some(c.to_path_buf());
            }
            continue;
        }
        for dir in path.split(':').chain(["/usr/sbin", "/usr/bin"]) {
            let p = Path::new(dir).join(c);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `ready` every 20 ms until it holds; panics after `limit`.
fn wait_until(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn connectable(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A daemon process, killed (if still running) when dropped.
struct Daemon(Child);

impl Daemon {
    fn spawn(cmd: &mut Command) -> Daemon {
        Daemon(
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}")),
        )
    }

    /// Sends SIGTERM and waits for the process to exit.
    fn terminate(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        wait_until("daemon exit after SIGTERM", Duration::from_secs(30), || {
            self.0.try_wait().unwrap().is_some()
        });
    }

    fn wait_exit(mut self) {
        wait_until("daemon exit", Duration::from_secs(30), || {
            self.0.try_wait().unwrap().is_some()
        });
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs `cmd`, panicking with its output unless it succeeds.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `cmd`, expecting it to fail (a provoked error); returns stderr.
fn run_failing(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(!out.status.success(), "{cmd:?} was expected to fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A unique word for this run, to find the provoked lines.
fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("ackline_{}_{nanos}", std::process::id())
}

/// Parses every line of `text` in auto mode. Lines for which
/// `continuation` holds must fall back to raw with the ingest time; every
/// other line must be `format` and agree with `split`. Returns the share of
/// lines timestamped from the line.
fn check_log(
    label: &str,
    text: &str,
    format: Format,
    split: fn(&str) -> Want,
    continuation: fn(&str) -> bool,
) -> f64 {
    let parser = Parser::new(ParserConfig::default());
    let ctx = LineContext {
        id: "live".to_owned(),
        input: Arc::from(label),
        // Far from every line's time, so an ingest-time stamp cannot pass.
        ingest_time: DateTime::parse_from_rfc3339("2040-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc),
        file_mtime: None,
    };
    let (mut total, mut stamped) = (0usize, 0usize);
    for line in text.lines() {
        total += 1;
        let rec = parser.parse(line.as_bytes(), &ctx).unwrap();
        if continuation(line) {
            assert_eq!(
                rec.timestamp_source,
                TimestampSource::Ingest,
                "{label}: {line}"
            );
            continue;
        }
        assert_eq!(rec.format, format, "{label}: {line}");
        assert_eq!(got(&rec), split(line), "{label}: {line}");
        stamped += usize::from(rec.timestamp_source != TimestampSource::Ingest);
    }
    assert!(total > 0, "{label}: the daemon wrote nothing");
    #[allow(clippy::cast_precision_loss)]
    let share = stamped as f64 / total as f64;
    eprintln!(
        "{label}: {stamped}/{total} lines timestamped from the line ({:.1}%)",
        share * 100.0
    );
    share
}

fn never(_: &str) -> bool {
    false
}

/// RESP command over a fresh connection; returns the first reply line.
fn redis_cmd(port: u16, args: &[&str]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(buf.get(..n).unwrap_or_default()).into_owned()
}

#[test]
fn redis_private_instance() {
    let Some(bin) = find(&["redis-server"]) else {
        skip("redis_private_instance", "redis-server is not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("redis.log");
    let port = free_port();
    let start = || {
        let d = Daemon::spawn(
            Command::new(&bin)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .arg("--dir")
                .arg(dir.path())
                .arg("--logfile")
                .arg(&log)
                .args(["--save", "", "--appendonly", "no", "--loglevel", "verbose"])
                .args(["--enable-debug-command", "yes"]),
        );
        wait_until("redis PING", Duration::from_secs(30), || {
            connectable(port) && redis_cmd(port, &["PING"]).starts_with("+PONG")
        });
        d
    };
    let word = unique();
    let d = start();
    // An error reply is not logged; DEBUG LOG writes a warning line.
    assert!(redis_cmd(port, &["NO_SUCH_COMMAND"]).starts_with("-ERR"));
    assert!(redis_cmd(port, &["DEBUG", "LOG", &word]).starts_with("+OK"));
    d.terminate(); // restart: SIGTERM, logged by the signal handler
    let d = start();
    let _ = redis_cmd(port, &["SHUTDOWN", "NOSAVE"]);
    d.wait_exit();
    let text = read(&log);
    assert!(text.contains(&format!("DEBUG LOG: {word}")), "{text}");
    assert!(text.contains(":signal-handler ("), "{text}");
    let share = check_log("redis (live)", &text, Format::Redis, split_redis, never);
    assert!(share >= 0.98, "{share}");
}

#[test]
fn nats_private_instance() {
    let Some(bin) = find(&["nats-server"]) else {
        skip("nats_private_instance", "nats-server is not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("nats.log");
    let port = free_port();
    let start = || {
        let d = Daemon::spawn(
            Command::new(&bin)
                .args(["-a", "127.0.0.1", "-p", &port.to_string()])
                .arg("-l")
                .arg(&log)
                .args(["--user", "ackline", "--pass", "right", "-D"]),
        );
        wait_until("nats port", Duration::from_secs(30), || connectable(port));
        d
    };
    let d = start();
    // A failed login: the server logs an authentication error. The port answering is not
    // yet the server greeting (a loaded machine has reset such a first connection), so
    // connect until a connection opens with the server's INFO.
    let mut buf = [0u8; 4096];
    let mut greeted = None;
    wait_until(
        "nats to greet a client with INFO",
        Duration::from_secs(30),
        || {
            let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) else {
                return false;
            };
            let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
            match c.read(&mut buf) {
                Ok(n) if buf.get(..n).is_some_and(|b| b.starts_with(b"INFO")) => {
                    greeted = Some(c);
                    true
                }
                _ => false,
            }
        },
    );
    let mut s = greeted.expect("greeted");
    s.write_all(b"CONNECT {\"user\":\"ackline\",\"pass\":\"wrong\",\"verbose\":false}\r\nPING\r\n")
        .unwrap();
    let n = s.read(&mut buf).unwrap_or(0);
    assert!(String::from_utf8_lossy(buf.get(..n).unwrap_or_default()).contains("-ERR"));
    wait_until(
        "nats to log the failed login",
        Duration::from_secs(30),
        || read(&log).contains("authentication error"),
    );
    d.terminate(); // restart
    let d = start();
    d.terminate();
    let text = read(&log);
    assert!(text.contains("[ERR]"), "{text}");
    let share = check_log("nats (live)", &text, Format::Nats, split_nats, never);
    assert!(share >= 0.98, "{share}");
}

/// The newest `/usr/lib/postgresql/*/bin/<tool>`.
fn pg_tool(tool: &str) -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin").join(tool)))
        .filter(|p| p.is_file())
        .collect();
    versions.sort();
    versions.pop().or_else(|| find(&[tool]))
}

/// `cmd` as the `postgres` user when running as root (initdb refuses root).
fn as_pg(root: bool, tool: &Path) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(tool);
        c
    } else {
        Command::new(tool)
    }
}

#[test]
fn postgresql_private_cluster() {
    let (Some(initdb), Some(pg_ctl), Some(psql)) =
        (pg_tool("initdb"), pg_tool("pg_ctl"), find(&["psql"]))
    else {
        skip(
            "postgresql_private_cluster",
            "PostgreSQL (initdb, pg_ctl, psql) is not installed",
        );
        return;
    };
    let root = is_root();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    if root {
        run(Command::new("chown").arg("postgres").arg(d));
    }
    let data = d.join("data");
    run(as_pg(root, &initdb).arg("-D").arg(&data).args([
        "-A",
        "trust",
        "-U",
        "postgres",
        "--no-sync",
    ]));
    let port = free_port().to_string();
    let opts = format!(
        "-p {port} -k {dir} -c listen_addresses='' -c logging_collector=on \
         -c log_destination=stderr,csvlog,jsonlog -c log_directory={dir}/log -c log_filename=pg",
        dir = d.display()
    );
    let pg_ctl_cmd = |action: &str| {
        let mut c = as_pg(root, &pg_ctl);
        c.arg("-D").arg(&data).args(["-w", "-o", &opts]);
        c.arg("-l").arg(d.join("pg_ctl.log")).arg(action);
        c
    };
    // Stops the cluster on every path out of the test.
    struct Stop<'a>(Command, &'a Path);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            if self.1.join("postmaster.pid").exists() {
                let _ = self.0.output();
            }
        }
    }
    let mut stop_cmd = as_pg(root, &pg_ctl);
    stop_cmd
        .arg("-D")
        .arg(&data)
        .args(["-m", "immediate", "stop"]);
    let _stop = Stop(stop_cmd, &data);
    run(&mut pg_ctl_cmd("start"));
    let word = unique();
    let psql_as = |user: &str, sql: &str| {
        let mut c = Command::new(&psql);
        c.arg("-h")
            .arg(d)
            .args(["-p", &port, "-U", user, "-d", "postgres", "-X", "-c", sql]);
        c
    };
    run(&mut psql_as("postgres", "select 1"));
    let err = run_failing(&mut psql_as("postgres", &format!("select * from {word}")));
    assert!(err.contains("does not exist"), "{err}");
    let err = run_failing(&mut psql_as(&word, "select 1"));
    assert!(
        err.contains(&format!("role \"{word}\" does not exist")),
        "{err}"
    );
    run(&mut pg_ctl_cmd("restart"));
    run_failing(&mut psql_as("postgres", "select 1/0"));
    run(&mut pg_ctl_cmd("stop"));

    let stderr = read(&d.join("log/pg"));
    assert!(stderr.contains(&word), "{stderr}");
    assert!(stderr.contains("division by zero"), "{stderr}");
    let share = check_log(
        "postgresql stderr (live)",
        &stderr,
        Format::Postgresql,
        split_postgres,
        never,
    );
    assert!(share >= 0.98, "{share}");
    let csv = read(&d.join("log/pg.csv"));
    let share = check_log(
        "postgresql csvlog (live)",
        &csv,
        Format::PostgresqlCsv,
        split_postgres_csv,
        never,
    );
    assert!(share >= 0.98, "{share}");
    let json = read(&d.join("log/pg.json"));
    let share = check_log(
        "postgresql jsonlog (live)",
        &json,
        Format::PostgresqlJson,
        split_postgres_json,
        never,
    );
    assert!(share >= 0.98, "{share}");
}

#[test]
fn mariadb_private_instance() {
    let (Some(install), Some(server), Some(client)) = (
        find(&["mariadb-install-db", "mysql_install_db"]),
        find(&["mariadbd", "mysqld"]),
        find(&["mariadb", "mysql"]),
    ) else {
        skip(
            "mariadb_private_instance",
            "MariaDB (mariadb-install-db, mariadbd, mariadb) is not installed",
        );
        return;
    };
    let root = is_root();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut user = Vec::new();
    if root {
        run(Command::new("chown").arg("mysql").arg(d));
        user.push("--user=mysql".to_owned());
    }
    let data = d.join("data");
    run(Command::new(&install)
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .args(&user)
        .arg("--auth-root-authentication-method=normal"));
    let sock = d.join("sock");
    let err_log = d.join("error.log");
    let port = free_port();
    let start = || {
        let daemon = Daemon::spawn(
            Command::new(&server)
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .arg(format!("--socket={}", sock.display()))
                .arg(format!("--port={port}"))
                .arg("--bind-address=127.0.0.1")
                .arg(format!("--log-error={}", err_log.display()))
                .arg(format!("--pid-file={}", d.join("pid").display()))
                .arg("--innodb-buffer-pool-size=16M")
                .args(&user),
        );
        wait_until("mariadb ready", Duration::from_secs(60), || {
            read(&err_log).matches("ready for connections").count() > 0 && connectable(port)
        });
        daemon
    };
    let client_as = |user: &str, sql: &str| {
        let mut c = Command::new(&client);
        c.arg("-S").arg(&sock).args(["-u", user, "-e", sql]);
        c
    };
    let word = unique();
    let daemon = start();
    let err = run_failing(client_as(&word, "select 1").arg("-pwrong"));
    assert!(err.contains("Access denied"), "{err}");
    run_failing(&mut client_as("root", &format!("select * from {word}.t")));
    run(&mut client_as("root", "shutdown"));
    daemon.wait_exit();
    let daemon = start(); // a restart appends to the same log
    run(&mut client_as("root", "shutdown"));
    daemon.wait_exit();

    let text = read(&err_log);
    assert!(
        text.contains(&format!("Access denied for user '{word}'")),
        "{text}"
    );
    assert_eq!(text.matches("ready for connections").count(), 2, "{text}");
    let version = |line: &str| line.starts_with("Version: ");
    let share = check_log(
        "mariadb (live)",
        &text,
        Format::Mysql,
        split_mariadb,
        version,
    );
    // Only the `Version:` line of each start lacks a timestamp.
    let without = text.lines().filter(|l| version(l)).count();
    assert_eq!(without, 2, "{text}");
    #[allow(clippy::cast_precision_loss)]
    let expected = 1.0 - without as f64 / text.lines().count() as f64;
    assert!((share - expected).abs() < 1e-9, "{share} {expected}");
}

/// AMQP 0-9-1 up to `Connection.StartOk` with PLAIN credentials the broker
/// refuses; returns once the broker has answered or closed.
fn amqp_failed_login(user: &str) {
    let mut s = TcpStream::connect(("127.0.0.1", 5672)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"AMQP\x00\x00\x09\x01").unwrap();
    let mut buf = vec![0u8; 8192];
    let _ = s.read(&mut buf).unwrap(); // Connection.Start
    let mut args = Vec::new();
    args.extend_from_slice(&0u32.to_be_bytes()); // client-properties: empty table
    args.push(5);
    args.extend_from_slice(b"PLAIN");
    let response = format!("\0{user}\0wrong-password");
    args.extend_from_slice(&u32::try_from(response.len()).unwrap().to_be_bytes());
    args.extend_from_slice(response.as_bytes());
    args.push(5);
    args.extend_from_slice(b"en_US");
    let mut payload = vec![0, 10, 0, 11]; // class connection, method start-ok
    payload.extend_from_slice(&args);
    let mut frame = vec![1u8, 0, 0];
    frame.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(&payload);
    frame.push(0xCE);
    s.write_all(&frame).unwrap();
    let _ = s.read(&mut buf);
}

#[test]
fn rabbitmq_machine_broker() {
    // The broker's log file: `ACKLINE_RABBITMQ_LOG`, else Debian's default for node
    // `rabbit@localhost`.
    let path = std::env::var("ACKLINE_RABBITMQ_LOG")
        .unwrap_or_else(|_| "/var/log/rabbitmq/rabbit@localhost.log".to_owned());
    let log = Path::new(&path);
    if !log.is_file() || std::fs::File::open(log).is_err() || !connectable(5672) {
        skip(
            "rabbitmq_machine_broker",
            &format!(
                "no RabbitMQ on 127.0.0.1:5672 with a readable log at {path} (set ACKLINE_RABBITMQ_LOG)"
            ),
        );
        return;
    }
    let word = unique();
    amqp_failed_login(&word);
    wait_until(
        "rabbitmq to log the refused login",
        Duration::from_secs(30),
        || read(log).contains(&word),
    );
    let text = read(log);
    let refused = text.lines().find(|l| l.contains(&word)).unwrap();
    assert_eq!(
        split_rabbitmq(refused).severity,
        Some(ackline_parse::Severity::Error),
        "{refused}"
    );
    let share = check_log(
        "rabbitmq (machine)",
        &text,
        Format::RabbitMq,
        split_rabbitmq,
        never,
    );
    assert!(share >= 0.98, "{share}");
}
