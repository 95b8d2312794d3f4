//! Syslog ingest over real sockets: the machine's `logger` (util-linux) over TCP (newline and
//! octet-counting framing) and UDP, and hand-written frames: many in one packet, truncated
//! by a disconnect, stalled mid-frame, oversized, binary. After each test the server is
//! stopped and the queue reopened to check exactly what was queued, with its `input` header.
//!
//! A private rsyslogd (Debian's `rsyslog`) forwards lines it takes from `logger` on its own
//! unix socket to the server over TCP with octet-counted framing, through a disk-assisted
//! action queue: the relay most sites put in front of a log pipeline.
//!
//! Without `logger` (or `rsyslogd`) a test prints why it is skipped, unless `CI=true`, where it
//! fails. Nothing sleeps to synchronise: every wait polls a condition against a deadline.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ackline_queue::{Db, QueueOptions};
use ackline_server::{Server, ServerConfig};

struct Running {
    http: SocketAddr,
    tcp: SocketAddr,
    udp: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(dir: &Path) -> Running {
        let mut cfg = ServerConfig::new(dir);
        cfg.listen = "127.0.0.1:0".parse().unwrap();
        cfg.syslog_tcp = Some("127.0.0.1:0".parse().unwrap());
        cfg.syslog_udp = Some("127.0.0.1:0".parse().unwrap());
        cfg.limits.syslog_max_frame = 1024;
        cfg.limits.syslog_frame_timeout = Duration::from_millis(500);
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let s = Server::bind(cfg).await.unwrap();
                addr_tx
                    .send((
                        s.local_addr(),
                        s.syslog_tcp_addr().unwrap(),
                        s.syslog_udp_addr().unwrap(),
                    ))
                    .unwrap();
                s.run(async move {
                    let _ = stop_rx.await;
                })
                .await
                .unwrap();
            });
        });
        let (http, tcp, udp) = addr_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        Running {
            http,
            tcp,
            udp,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The value of the metric line starting with `prefix` (0 when absent).
    fn metric(&self, prefix: &str) -> f64 {
        let mut s = TcpStream::connect(self.http).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    fn wait_metric(&self, prefix: &str, want: f64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.metric(prefix);
            if v == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{prefix} is {v}, expected {want}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server (graceful) and returns every queued message as (input, payload).
    fn stop(mut self, dir: &Path) -> Vec<(String, Vec<u8>)> {
        let _ = self.stop.take().unwrap().send(());
        self.thread.take().unwrap().join().unwrap();
        let db = Db::open(dir).unwrap();
        let q = db.queue("logs", QueueOptions::default()).unwrap();
        let c = q.consumer();
        let mut out = Vec::new();
        loop {
            let batch = c
                .receive(1000, Duration::from_secs(60), Duration::ZERO)
                .unwrap();
            if batch.is_empty() {
                break;
            }
            for d in batch {
                let input = d
                    .headers
                    .iter()
                    .find(|(k, _)| k == "input")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                out.push((input, d.payload.to_vec()));
            }
        }
        out
    }
}

const FRAMES: &str = "ackline_syslog_frames_total{transport=\"tcp\"}";
const UDP_FRAMES: &str = "ackline_syslog_frames_total{transport=\"udp\"}";

fn err_metric(transport: &str, kind: &str) -> String {
    format!("ackline_syslog_errors_total{{transport=\"{transport}\",kind=\"{kind}\"}}")
}

#[test]
fn hand_written_frames() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let r = Running::start(dir.path());

    // Many octet-counted frames in one packet, then a frame cut by a disconnect.
    let mut s = TcpStream::connect(r.tcp).unwrap();
    let local = s.local_addr().unwrap();
    let mut packet = Vec::new();
    for i in 0..50 {
        let m = format!("<13>1 2024-05-01T10:00:00Z h app - - - octet {i}");
        packet.extend_from_slice(format!("{} {m}", m.len()).as_bytes());
    }
    packet.extend_from_slice(b"40 <13>cut short");
    s.write_all(&packet).unwrap();
    r.wait_metric(FRAMES, 50.0);
    drop(s);
    r.wait_metric(&err_metric("tcp", "truncated"), 1.0);

    // Newline framing: many lines in one packet, an oversized one (skipped), a binary one.
    let mut s = TcpStream::connect(r.tcp).unwrap();
    let mut packet = Vec::new();
    for i in 0..20 {
        packet.extend_from_slice(format!("<14>May  1 10:00:00 h app: line {i}\r\n").as_bytes());
    }
    packet.extend_from_slice(&[b'x'; 3000]);
    packet.extend_from_slice(b"\n<14>bin\0ary\n<14>after\n");
    s.write_all(&packet).unwrap();
    r.wait_metric(FRAMES, 71.0);
    r.wait_metric(&err_metric("tcp", "oversized"), 1.0);
    r.wait_metric(&err_metric("tcp", "binary"), 1.0);

    // A stalled frame: dropped after the frame timeout, and the connection closed.
    let mut s = TcpStream::connect(r.tcp).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"<14>no newline yet").unwrap();
    let mut b = [0u8; 1];
    assert_eq!(s.read(&mut b).unwrap_or(0), 0, "the server closes it");
    r.wait_metric(&err_metric("tcp", "truncated"), 2.0);

    // An oversized octet count and a binary connection: refused, connection closed.
    for bad in [&b"99999 <13>x"[..], &b"\x16\x03\x01\x02\x00"[..]] {
        let mut s = TcpStream::connect(r.tcp).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(bad).unwrap();
        let mut b = [0u8; 1];
        assert_eq!(s.read(&mut b).unwrap_or(0), 0);
    }
    r.wait_metric(&err_metric("tcp", "oversized"), 2.0);
    r.wait_metric(&err_metric("tcp", "binary"), 2.0);

    // UDP: one datagram, one message; oversized and binary refused; empty ignored.
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    let upeer = u.local_addr().unwrap();
    for i in 0..10 {
        u.send_to(format!("<13>udp {i}\n").as_bytes(), r.udp)
            .unwrap();
    }
    u.send_to(&[b'y'; 2000], r.udp).unwrap();
    u.send_to(b"<13>\0", r.udp).unwrap();
    u.send_to(b"", r.udp).unwrap();
    r.wait_metric(UDP_FRAMES, 10.0);
    r.wait_metric(&err_metric("udp", "oversized"), 1.0);
    r.wait_metric(&err_metric("udp", "binary"), 1.0);

    let msgs = r.stop(dir.path());
    assert_eq!(msgs.len(), 81);
    let first: Vec<&(String, Vec<u8>)> = msgs
        .iter()
        .filter(|(i, _)| *i == format!("syslog+tcp://{local}"))
        .collect();
    assert_eq!(first.len(), 50);
    assert!(first[7].1.ends_with(b"octet 7"));
    assert!(msgs.iter().any(|(_, p)| p == b"<14>after"));
    assert!(msgs.iter().any(|(_, p)| p.ends_with(b"line 19")));
    let udp: Vec<_> = msgs
        .iter()
        .filter(|(i, _)| *i == format!("syslog+udp://{upeer}"))
        .collect();
    assert_eq!(udp.len(), 10);
    assert!(udp.iter().any(|(_, p)| p == b"<13>udp 3"));
    assert!(!msgs.iter().any(|(_, p)| p.contains(&0) || p.len() > 1024));
    eprintln!("hand-written syslog frames: {:?}", t0.elapsed());
}

fn logger_available() -> bool {
    let ok = Command::new("logger")
        .arg("--help")
        .output()
        .is_ok_and(|o| {
            let h = String::from_utf8_lossy(&o.stdout);
            h.contains("--octet-count") && h.contains("--tcp") && h.contains("--udp")
        });
    available(
        ok,
        "util-linux `logger` with --tcp/--udp/--octet-count is not installed",
    )
}

fn logger(args: &[&str], port: u16, msg: &str) {
    let o = Command::new("logger")
        .args(["--server", "127.0.0.1", "--port", &port.to_string()])
        .args(args)
        .args(["--tag", "ackline-test", msg])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "logger {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn real_logger_over_tcp_and_udp() {
    if !logger_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let r = Running::start(dir.path());
    logger(&["--tcp", "--rfc5424"], r.tcp.port(), "newline framed");
    logger(
        &["--tcp", "--octet-count", "--rfc5424"],
        r.tcp.port(),
        "octet counted",
    );
    logger(
        &["--tcp", "--octet-count", "--rfc3164"],
        r.tcp.port(),
        "old style",
    );
    r.wait_metric(FRAMES, 3.0);
    logger(&["--udp", "--rfc5424"], r.udp.port(), "over udp");
    r.wait_metric(UDP_FRAMES, 1.0);
    let msgs = r.stop(dir.path());
    assert_eq!(msgs.len(), 4, "{msgs:?}");
    for (want, transport) in [
        ("newline framed", "tcp"),
        ("octet counted", "tcp"),
        ("old style", "tcp"),
        ("over udp", "udp"),
    ] {
        let (input, p) = msgs
            .iter()
            .find(|(_, p)| String::from_utf8_lossy(p).ends_with(want))
            .unwrap_or_else(|| panic!("{want} not queued: {msgs:?}"));
        assert!(input.starts_with(&format!("syslog+{transport}://127.0.0.1:")));
        assert!(p.starts_with(b"<"), "{}", String::from_utf8_lossy(p));
        assert!(String::from_utf8_lossy(p).contains("ackline-test"));
    }
}

/// Whether a tool needed by a test is here; when not, says why and (outside CI) skips.
fn available(ok: bool, why: &str) -> bool {
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: {why}"
        );
        eprintln!("skipped: {why}");
    }
    ok
}

/// `rsyslogd` on the PATH, or Debian's /usr/sbin/rsyslogd (not on a non-root user's PATH).
fn rsyslogd() -> &'static str {
    let on_path = Command::new("rsyslogd")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    if on_path {
        "rsyslogd"
    } else {
        "/usr/sbin/rsyslogd"
    }
}

fn rsyslogd_available() -> bool {
    let rsyslogd = Command::new(rsyslogd())
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    let logger = Command::new("logger")
        .arg("--help")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("--socket"));
    available(
        rsyslogd,
        "rsyslogd is not installed (Debian: apt-get install rsyslog)",
    ) && available(logger, "util-linux `logger` with --socket is not installed")
}

/// A private rsyslogd: its own config, pid file, work directory and input socket; it never
/// opens the system's /dev/log (`SysSock.Use="off"`), and its own messages go to a ruleset
/// with no action, so only what arrives on its socket is forwarded.
struct Rsyslogd {
    child: Child,
    socket: PathBuf,
    dir: PathBuf,
}

impl Rsyslogd {
    fn start(dir: &Path, forward_to: SocketAddr) -> Rsyslogd {
        let work = dir.join("work");
        std::fs::create_dir_all(&work).unwrap();
        let socket = dir.join("in.sock");
        // RFC 5424 without a trailing LF (octet counting frames it); the action queue is
        // disk-assisted (in memory, spilling to `work/` when full or at shutdown) and retries
        // a lost connection forever.
        let conf = format!(
            r#"global(workDirectory="{work}")
module(load="imuxsock" SysSock.Use="off")
template(name="ackline5424" type="string"
         string="<%PRI%>1 %TIMESTAMP:::date-rfc3339% %HOSTNAME% %APP-NAME% %PROCID% %MSGID% %STRUCTURED-DATA% %msg:::sp-if-no-1st-sp%%msg:::drop-last-lf%")
input(type="imuxsock" Socket="{socket}" CreatePath="on" RateLimit.Interval="0"
      Ruleset="forward")
ruleset(name="forward") {{
  action(type="omfwd" target="{ip}" port="{port}" protocol="tcp"
         TCP_Framing="octet-counted" template="ackline5424"
         queue.type="LinkedList" queue.filename="forward" queue.saveOnShutdown="on"
         action.resumeRetryCount="-1")
}}
"#,
            work = work.display(),
            socket = socket.display(),
            ip = forward_to.ip(),
            port = forward_to.port(),
        );
        let conf_path = dir.join("rsyslog.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(rsyslogd())
            .arg("-n")
            .arg("-f")
            .arg(&conf_path)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("rsyslogd.out")).unwrap())
            .stderr(std::fs::File::create(dir.join("rsyslogd.err")).unwrap())
            .spawn()
            .unwrap();
        let mut r = Rsyslogd {
            child,
            socket,
            dir: dir.to_path_buf(),
        };
        // Ready once its input socket exists.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !r.socket.exists() {
            if let Some(status) = r.child.try_wait().unwrap() {
                panic!("rsyslogd exited ({status}) before listening: {}", r.log());
            }
            assert!(
                Instant::now() < deadline,
                "rsyslogd made no socket: {}",
                r.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        r
    }

    /// What rsyslogd wrote to stdout and stderr.
    fn log(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!("{}{}", read("rsyslogd.out"), read("rsyslogd.err"))
    }

    /// Sends each line as one message through its socket.
    fn send(&self, lines: &[String]) {
        let mut c = Command::new("logger")
            .arg("--socket")
            .arg(&self.socket)
            .args(["--socket-errors=on", "--tag", "ackline-rsyslog"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = c.stdin.take().unwrap();
        for l in lines {
            writeln!(stdin, "{l}").unwrap();
        }
        drop(stdin);
        let o = c.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "logger: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// SIGTERM, then waits (bounded) for a clean exit.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let st = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(st.success(), "kill -TERM {pid}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "rsyslogd: {status}: {}", self.log());
                return;
            }
            assert!(
                Instant::now() < deadline,
                "rsyslogd ignored SIGTERM: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Rsyslogd {
    fn drop(&mut self) {
        // A failed test still leaves no rsyslogd behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn rsyslog_forwards_over_tcp_with_octet_counting() {
    if !rsyslogd_available() {
        return;
    }
    const N: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let rs_dir = tempfile::tempdir().unwrap();
    let r = Running::start(dir.path());
    let rs = Rsyslogd::start(rs_dir.path(), r.tcp);
    let run = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let lines: Vec<String> = (0..N).map(|i| format!("rsyslog {run} line {i}")).collect();
    rs.send(&lines);
    r.wait_metric(FRAMES, N as f64);
    rs.stop();
    let msgs = r.stop(dir.path());
    assert_eq!(msgs.len(), N, "{:?}", &msgs[..msgs.len().min(3)]);
    let mut seen = std::collections::HashSet::new();
    for (input, p) in &msgs {
        let text = String::from_utf8_lossy(p);
        assert!(input.starts_with("syslog+tcp://127.0.0.1:"), "{input}");
        assert!(text.starts_with("<13>1 "), "{text:?}");
        assert!(text.contains(" ackline-rsyslog "), "{text:?}");
        let line = lines
            .iter()
            .find(|l| text.ends_with(l.as_str()))
            .unwrap_or_else(|| panic!("not a line sent: {text:?}"));
        assert!(seen.insert(line.clone()), "queued twice: {line}");
    }
    assert_eq!(seen.len(), N);
}
