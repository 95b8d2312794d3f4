//! Helpers shared by the integration tests: run the binary with a deadline, child processes
//! killed on drop, condition waits, one-shot HTTP requests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn ackline() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ackline"));
    c.env_remove("ACKLINE_DATA_DIR");
    c
}

/// Runs `cmd` to completion, killing it and failing the test if it takes longer than `limit`.
pub fn run_with_deadline(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting ackline");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        out.read_to_end(&mut v).map(|_| v).unwrap_or_default()
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        err.read_to_end(&mut v).map(|_| v).unwrap_or_default()
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().expect("waiting for ackline") {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = t_err.join().unwrap_or_default();
            panic!(
                "ackline {:?} did not finish within {limit:?}; killed it. stderr:\n{}",
                cmd.get_args().collect::<Vec<_>>(),
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    }
}

pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

/// Kills the child on drop (a failed assertion must not leave processes behind).
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    pub fn signal(&self, sig: &str) {
        let st = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.0.id().to_string())
            .status()
            .unwrap();
        assert!(st.success(), "kill -{sig} failed");
    }

    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.0.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "process did not exit in {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Polls `cond` every 20 ms until it holds or `limit` passes.
pub fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One HTTP/1.1 request; returns (status, body).
pub fn http(
    addr: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    ctype: &str,
    body: &[u8],
) -> (u16, String) {
    http_with(addr, token, method, path, ctype, &[], body)
}

/// [`http`] with extra request headers.
pub fn http_with(
    addr: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    ctype: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut extra = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    for (k, v) in headers {
        extra.push_str(&format!("{k}: {v}\r\n"));
    }
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}\
         Content-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad response: {text}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Spawns `cmd` (stdout piped, stderr inherited) and returns it with the first line it prints
/// on stdout parsed as JSON (`serve --json` prints one once it listens); fails the test if
/// none comes within 60 s.
pub fn spawn_json_line(mut cmd: Command) -> (Proc, serde_json::Value) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let p = Proc(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    let v = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("it printed {line:?}, not a JSON line: {e}"));
    (p, v)
}

/// Whether `host:port` accepts TCP connections; outside CI an unreachable service skips the
/// test (printed), under `CI=true` it fails it.
pub fn reachable(what: &str, endpoint: &str, start: &str) -> bool {
    let res = endpoint
        .to_socket_addrs()
        .map_err(|e| e.to_string())
        .and_then(|mut a| a.next().ok_or_else(|| "no address".to_owned()))
        .and_then(|a| {
            TcpStream::connect_timeout(&a, Duration::from_secs(3)).map_err(|e| e.to_string())
        });
    match res {
        Ok(_) => true,
        Err(reason) => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true");
            assert!(
                !ci,
                "{what} not reachable at {endpoint} (CI=true, so this fails): {reason}; start it with `{start}`"
            );
            println!("skipped: {what} not reachable at {endpoint}: {reason}");
            false
        }
    }
}

/// A port free on loopback a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A name no other test or run uses (prefix, process id, clock nanoseconds).
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}_{}_{nanos:x}", std::process::id())
}

/// The PostgreSQL the tests use (`ACKLINE_TEST_POSTGRES`, default the local `test` database).
pub fn pg_url() -> String {
    std::env::var("ACKLINE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A test's store table in PostgreSQL, read directly through a current-thread runtime (the
/// tests themselves are synchronous), dropped with its schema row at the end.
pub struct Pg {
    rt: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
    table: String,
}

impl Pg {
    pub fn connect(table: &str) -> Pg {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            client
        });
        Pg {
            rt,
            client,
            table: table.to_string(),
        }
    }

    /// (rows, distinct ids); (0, 0) while the table does not exist yet.
    pub fn counts(&self) -> (i64, i64) {
        let q = format!("SELECT COUNT(*), COUNT(DISTINCT id) FROM {}", self.table);
        self.rt
            .block_on(self.client.query_one(q.as_str(), &[]))
            .map(|r| (r.get(0), r.get(1)))
            .unwrap_or((0, 0))
    }

    /// Every stored id.
    pub fn ids(&self) -> std::collections::BTreeSet<String> {
        let q = format!("SELECT id FROM {}", self.table);
        self.rt
            .block_on(self.client.query(q.as_str(), &[]))
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let t = &self.table;
        let _ = self.rt.block_on(self.client.batch_execute(&format!(
            "DROP TABLE IF EXISTS {t}; DELETE FROM ackline_schema_version WHERE table_name = '{t}'"
        )));
    }
}

/// (rows, distinct ids) in the SQLite store at `db`; (0, 0) before it exists.
pub fn sqlite_rows(db: &std::path::Path) -> (i64, i64) {
    let Ok(c) =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return (0, 0);
    };
    c.query_row(
        "SELECT count(*), count(DISTINCT id) FROM ackline_records",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap_or((0, 0))
}
