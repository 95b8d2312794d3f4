//! `ackline bench http`: split mode's throughput on loopback, beside the in-process figures
//! measured in the same run.
//!
//! Two comparisons, each side on a fresh data directory with the same queue options (the
//! server's defaults: `fsync=always`, so every 2xx and every publish is confirmed only once
//! fsynced):
//!
//! 1. **Ingest.** For each `--batch-sizes` value B: an [`ackline_server::Server`] (bound to
//!    127.0.0.1:0, on its own tokio runtime as it would be in its own process) takes
//!    `POST /v1/logs` (`text/plain`, B lines per request) from `--concurrency` clients, each a
//!    thread with one keep-alive connection that sends a request, reads the whole answer, and
//!    sends the next. Beside it, the **in-process** figure: the same lines, B per call, with
//!    the same header the server adds, published by as many threads straight into the
//!    embedded queue with `Queue::publish` (which returns once the batch is durable, as the
//!    server's 202 does). Per side: lines/s (lines confirmed / time from the first request to
//!    the last answer), requests (calls) per second, and latency per request (per call in
//!    process) p50/p99, measured around the whole round trip. A phase sends `--lines` lines
//!    (rounded up to whole requests) or stops at `--max-phase-secs`, whichever comes first;
//!    the rate is what was confirmed in the time taken, so a time-capped phase is still a
//!    rate. Each phase runs in `--rounds` slices alternating with the other side's (HTTP
//!    first, then in process first, ...), so a change in load on a shared machine falls on
//!    both sides; a side's time is the sum of its slices'.
//! 2. **Remote workers.** `--messages` messages (synthetic syslog lines, ids `bench-<i>`)
//!    are pre-loaded into a queue, then drained by the worker runtime
//!    ([`ackline_worker::Runtime`], parser in auto-detect mode, the same `--workers`,
//!    `--worker-batch` and `--prefetch`) over [`ackline_http::HttpBroker`] (the lease API of an
//!    in-process server), and, in the same run, over
//!    [`ackline_broker::embedded::EmbeddedBroker`] on an identical pre-loaded queue.
//!    Messages/s = messages / time from the runtime's start until the store has taken
//!    every record (counters polled every 2 ms). Each `--stores` value is run over both
//!    brokers, each drain into a fresh store:
//!    - `memory` ([`ackline_store::test_support::MemoryStore`]): idempotent by id, not
//!      durable. With it the drain costs the queue path and the parser only, so the ratio is the lease API's against the embedded
//!      queue's, which is what this comparison is for.
//!    - `ndjson`: the cheapest durable store (one append and one fsync per batch, no
//!      indexes; SQLite caps near 78,000 records/s on the reference machine, see
//!      docs/BENCHMARKS.md, and would hide the difference). It shows what a real store
//!      leaves of the difference; its own rate (the same records parsed beforehand, written
//!      in batches of the same size by one writer) is measured in the same run.
//!
//! Context for reading the figures, in the same report: CPU time of the whole process per line
//! or message during each side (`/proc/self/stat`; on the HTTP side it includes the load
//! generator, the server and the workers alike), and the disk's `fdatasync` latency of a 4 KiB
//! append before and after the run.
//!
//! The load generator's HTTP client is a minimal HTTP/1.1 client on `std::net` (keep-alive,
//! `Content-Length` answers): it costs little CPU, so on a small machine the figure is the
//! server's, and the binary needs no HTTP client dependency of its own.
//!
//! Invariants:
//! - Loopback only, every data directory temporary and removed afterwards; bounded in count
//!   (`--lines`, `--messages`) and in time (`--max-phase-secs`, and `--timeout` per drain,
//!   which is an error).
//! - The books are checked from independent sources, not from the generator's own counts:
//!   every line confirmed (the sum of the 202s' `queued`, or the publishes returned) is
//!   pending in the queue after it is closed and reopened; after a drain, the store holds
//!   exactly one record per expected id (the NDJSON file is read back line by line) and the
//!   reopened queue has nothing pending and nothing dead-lettered. The report is printed
//!   first; unbalanced books then exit 3.
//! - The server and the worker runtime are built from the crates' public APIs only; the
//!   in-process server is stopped gracefully (queue flushed and closed) before its data
//!   directory is reopened for the books.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use ackline_app::exit::{Unbalanced, usage};
use ackline_app::output::Out;
use ackline_broker::Broker;
use ackline_broker::embedded::EmbeddedBroker;
use ackline_http::HttpBroker;
use ackline_parse::{LineContext, Parser, ParserConfig};
use ackline_queue::{Db, NewMessage, QueueOptions};
use ackline_server::{Server, ServerConfig};
use ackline_store::test_support::MemoryStore;
use ackline_store::{NdjsonStore, Store};
use ackline_worker::{ParseProcess, Runtime, WorkerConfig};
use anyhow::{Context, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::bench::measure::{Machine, Pct, machine, pct};
use crate::cli::{BenchHttpArgs, StoreKind};

/// The server's default queue, used on both sides.
const QUEUE: &str = "logs";
/// The header the server adds to every ingested line; the in-process side adds it too.
const INPUT_HEADER: (&str, &str) = ("input", "http");
/// Read and write timeout of a client connection (the server's own request timeout is 60 s).
const IO_TIMEOUT: Duration = Duration::from_secs(90);
/// Distinct request bodies per batch size (cycled), so requests are not all byte-identical.
const TEMPLATES: usize = 8;

impl StoreKind {
    fn name(self) -> &'static str {
        match self {
            StoreKind::Memory => "memory",
            StoreKind::Ndjson => "ndjson",
        }
    }
}

#[derive(Debug, Serialize)]
struct IngestSide {
    /// Lines confirmed: the sum of the 202s' `queued` (HTTP) or of the publishes returned.
    lines: u64,
    requests: u64,
    seconds: f64,
    lines_per_s: f64,
    requests_per_s: f64,
    latency_us: Pct,
    /// Each slice's rate, in the order run (their spread shows the machine's noise).
    slice_lines_per_s: Vec<f64>,
    /// CPU time of the whole process (clients, server or queue, every thread) during the
    /// side's slices, from `/proc/self/stat`; `None` where it cannot be read.
    cpu_seconds: Option<f64>,
    cpu_us_per_line: Option<f64>,
    /// The phase stopped at `--max-phase-secs`, before `--lines`.
    time_capped: bool,
    /// Pending in the queue after it was closed and reopened.
    queue_pending_after: u64,
}

#[derive(Debug, Serialize)]
struct IngestRun {
    batch: usize,
    /// Lines each side sends unless stopped by time: whole requests, in whole slices.
    planned_lines: u64,
    http: IngestSide,
    in_process: IngestSide,
    /// HTTP lines/s over in-process lines/s.
    ratio: f64,
}

#[derive(Debug, Serialize)]
struct Ingest {
    clients: usize,
    lines_per_phase: u64,
    /// Each side's phase runs in this many slices, alternating with the other side's.
    rounds: usize,
    max_phase_secs: f64,
    line_bytes_avg: f64,
    fsync: &'static str,
    runs: Vec<IngestRun>,
}

#[derive(Debug, Serialize)]
struct DrainSide {
    broker: &'static str,
    seconds: f64,
    msgs_per_s: f64,
    received: u64,
    stored: u64,
    duplicates: u64,
    rejected: u64,
    nacked: u64,
    /// Records the store holds (lines of the NDJSON file; records in the memory store).
    store_rows: u64,
    /// Distinct ids among them.
    distinct_ids: u64,
    /// Expected ids (`bench-0` .. `bench-<n-1>`) not in the store.
    missing_ids: u64,
    /// Pending in the queue after it was closed and reopened.
    queue_pending_after: u64,
    dead_letters_after: u64,
    /// CPU time of the whole process (server and workers alike) during the drain.
    cpu_seconds: Option<f64>,
    cpu_us_per_msg: Option<f64>,
}

#[derive(Debug, Serialize)]
struct WorkerRun {
    store: &'static str,
    remote: DrainSide,
    embedded: DrainSide,
    /// Remote msgs/s over embedded msgs/s.
    ratio: f64,
}

#[derive(Debug, Serialize)]
struct Workers {
    messages: u64,
    workers: usize,
    batch: usize,
    prefetch: usize,
    line_bytes_avg: f64,
    runs: Vec<WorkerRun>,
    /// The NDJSON store alone: the same records, parsed beforehand, one writer (measured when
    /// `ndjson` is among the stores).
    bare_ndjson: Option<BareStore>,
}

#[derive(Debug, Serialize)]
struct BareStore {
    seconds: f64,
    records_per_s: f64,
}

#[derive(Debug, Serialize)]
struct Disk {
    /// Before the first phase.
    before: Pct,
    /// After the last.
    after: Pct,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    /// `fdatasync` of a 4 KiB append in the temporary directory, microseconds: the least a
    /// confirmed write waits for on this disk at the time of the run.
    disk_fdatasync_us: Disk,
    ingest: Option<Ingest>,
    workers: Option<Workers>,
    books_balance: bool,
    /// What did not balance (empty when `books_balance`).
    books: Vec<String>,
}

/// `ackline bench http`.
pub fn run(a: &BenchHttpArgs, out: Out) -> anyhow::Result<()> {
    if a.lines > 0 && (a.batch_sizes.is_empty() || a.batch_sizes.contains(&0)) {
        return Err(usage("--batch-sizes must list sizes of at least 1"));
    }
    if a.concurrency == 0
        || a.rounds == 0
        || a.workers == 0
        || a.worker_batch == 0
        || a.prefetch == Some(0)
    {
        return Err(usage(
            "--concurrency, --rounds, --workers, --worker-batch and --prefetch must be at least 1",
        ));
    }
    if a.messages > 0 && a.stores.is_empty() {
        return Err(usage("--stores must name at least one store"));
    }
    if !(a.max_phase_secs.is_finite() && a.max_phase_secs > 0.0) {
        return Err(usage("--max-phase-secs must be a positive number"));
    }
    let tmp = tempfile::Builder::new()
        .prefix("ackline-bench-http-")
        .tempdir()
        .context("creating a temporary directory")?;
    let mut books = Vec::new();
    let before = fsync_probe(tmp.path())?;
    let ingest = if a.lines == 0 {
        None
    } else {
        Some(ingest(a, tmp.path(), out, &mut books)?)
    };
    let workers = if a.messages == 0 {
        None
    } else {
        Some(remote_workers(a, tmp.path(), out, &mut books)?)
    };
    let after = fsync_probe(tmp.path())?;
    let report = Report {
        machine: machine(),
        disk_fdatasync_us: Disk { before, after },
        ingest,
        workers,
        books_balance: books.is_empty(),
        books,
    };
    out.emit(&report, || human(&report))?;
    Unbalanced::check(&report.books, "")
}

/// `fdatasync` latency of 200 appends of 4 KiB in `dir`.
fn fsync_probe(dir: &Path) -> anyhow::Result<Pct> {
    let path = dir.join("fsync-probe");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    let buf = [0u8; 4096];
    let mut v = Vec::with_capacity(200);
    for _ in 0..200 {
        let t = Instant::now();
        f.write_all(&buf)
            .and_then(|()| f.sync_data())
            .with_context(|| format!("writing and syncing {}", path.display()))?;
        v.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
    }
    drop(f);
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    Ok(pct(v))
}

/// Line `i` of the synthetic traffic: an RFC 3164 access line of about 100 bytes.
fn line(i: u64) -> String {
    const HOSTS: [&str; 4] = ["web-1", "web-2", "api-1", "edge-3"];
    const PATHS: [&str; 4] = ["/api/v1/items", "/api/v1/users", "/static/app.js", "/login"];
    format!(
        "<134>Oct 11 22:{:02}:{:02} {} nginx[{}]: 10.0.{}.{} \"GET {}/{} HTTP/1.1\" {} {} rt={}ms",
        (i / 60) % 60,
        i % 60,
        HOSTS[(i % 4) as usize],
        1000 + i % 97,
        (i / 256) % 256,
        i % 256,
        PATHS[((i / 4) % 4) as usize],
        i,
        if i.is_multiple_of(17) { 404 } else { 200 },
        512 + (i * 37) % 9000,
        1 + (i * 13) % 250
    )
}

fn avg_len(n: u64) -> f64 {
    let k = n.clamp(1, 10_000);
    (0..k).map(|i| line(i).len() as f64).sum::<f64>() / k as f64
}

// ---------------------------------------------------------------------------------------------
// The server on its own runtime.

/// An in-process server on its own thread and tokio runtime (as it would be in its own
/// process); stopped gracefully by [`ServerThread::stop`] or on drop.
struct ServerThread {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl ServerThread {
    fn start(data_dir: &Path, max_body_bytes: usize) -> anyhow::Result<ServerThread> {
        let mut cfg = ServerConfig::new(data_dir);
        cfg.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        cfg.default_queue = QUEUE.into();
        cfg.limits.max_body_bytes = cfg.limits.max_body_bytes.max(max_body_bytes);
        // Every bench client connects from 127.0.0.1: one address may use the whole table.
        cfg.limits.max_connections_per_client = cfg.limits.max_connections;
        let (addr_tx, addr_rx) = std::sync::mpsc::channel::<Result<SocketAddr, String>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("bench-server".into())
            .spawn(move || -> anyhow::Result<()> {
                let rt = ackline_app::runtime::builder()
                    .thread_name("bench-server")
                    .build()
                    .context("starting the server's runtime")?;
                rt.block_on(async move {
                    let server = match Server::bind(cfg).await {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = addr_tx.send(Err(e.to_string()));
                            return Err(anyhow::Error::new(e).context("binding the server"));
                        }
                    };
                    let _ = addr_tx.send(Ok(server.local_addr()));
                    server
                        .run(async move {
                            let _ = stop_rx.await;
                        })
                        .await
                        .context("the server failed")
                })
            })
            .context("starting the server thread")?;
        let mut st = ServerThread {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        match addr_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(addr)) => {
                st.addr = addr;
                Ok(st)
            }
            Ok(Err(e)) => Err(anyhow!("starting the server: {e}")),
            Err(_) => match st.stop() {
                Err(e) => Err(e.context("starting the server")),
                Ok(()) => Err(anyhow!("the server did not start within 60 s")),
            },
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server gracefully (its queue flushed and closed) and waits for it.
    fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.thread.take() {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err(anyhow!("the server thread panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client.

/// One keep-alive connection.
struct Conn {
    addr: SocketAddr,
    r: Option<BufReader<TcpStream>>,
}

impl Conn {
    /// A connection, opened now (so connecting is not part of the first request's time).
    fn connect(addr: SocketAddr) -> anyhow::Result<Conn> {
        let mut c = Conn { addr, r: None };
        c.stream()?;
        Ok(c)
    }

    fn stream(&mut self) -> anyhow::Result<&mut BufReader<TcpStream>> {
        if self.r.is_none() {
            let s = TcpStream::connect(self.addr)
                .with_context(|| format!("connecting to {}", self.addr))?;
            s.set_nodelay(true).context("setting TCP_NODELAY")?;
            s.set_read_timeout(Some(IO_TIMEOUT))
                .context("setting a read timeout")?;
            s.set_write_timeout(Some(IO_TIMEOUT))
                .context("setting a write timeout")?;
            self.r = Some(BufReader::with_capacity(16 << 10, s));
        }
        self.r
            .as_mut()
            .ok_or_else(|| anyhow!("no connection to {}", self.addr))
    }

    /// Sends a whole request and reads the answer: its status and body.
    fn round_trip(&mut self, request: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
        let r = self.stream()?;
        r.get_mut()
            .write_all(request)
            .context("sending the request")?;
        let mut line = String::new();
        if r.read_line(&mut line).context("reading the status line")? == 0 {
            bail!("the server closed the connection without answering");
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("not an HTTP status line: {:?}", line.trim_end()))?;
        let mut len = None;
        let mut close = false;
        loop {
            line.clear();
            if r.read_line(&mut line).context("reading the headers")? == 0 {
                bail!("the server closed the connection inside the headers");
            }
            let h = line.trim_end();
            if h.is_empty() {
                break;
            }
            let Some((k, v)) = h.split_once(':') else {
                bail!("not an HTTP header: {h:?}");
            };
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("content-length") {
                len = Some(
                    v.parse::<usize>()
                        .with_context(|| format!("bad Content-Length {v:?}"))?,
                );
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                bail!("answers with Transfer-Encoding ({v}) are not supported by the bench client");
            } else if k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close") {
                close = true;
            }
        }
        let len = len.ok_or_else(|| anyhow!("an answer without Content-Length"))?;
        let mut body = vec![0; len];
        r.read_exact(&mut body)
            .context("reading the answer's body")?;
        if close {
            self.r = None;
        }
        Ok((status, body))
    }
}

/// `POST /v1/logs` with these lines, as bytes on the wire.
fn ingest_request(addr: SocketAddr, lines: impl Iterator<Item = String>) -> Vec<u8> {
    let mut body = Vec::new();
    for l in lines {
        body.extend_from_slice(l.as_bytes());
        body.push(b'\n');
    }
    let mut req = format!(
        "POST /v1/logs HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    req
}

// ---------------------------------------------------------------------------------------------
// Ingest.

/// What one client thread did.
struct ClientRun {
    started: Instant,
    ended: Instant,
    requests: u64,
    lines: u64,
    latency_us: Vec<u32>,
}

/// Runs `clients` threads, each calling `call(client, request_index)` (returning the lines it
/// confirmed) until `requests` calls were claimed in all or `max` passed.
fn drive(
    clients: usize,
    requests: u64,
    max: Duration,
    pb: &indicatif::ProgressBar,
    batch: usize,
    call: &(dyn Fn(&mut Option<Conn>, u64) -> anyhow::Result<u64> + Sync),
    setup: &(dyn Fn() -> anyhow::Result<Option<Conn>> + Sync),
) -> anyhow::Result<(Vec<ClientRun>, bool)> {
    let next = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let capped = AtomicBool::new(false);
    let barrier = Barrier::new(clients);
    let results: Vec<anyhow::Result<ClientRun>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                let (next, failed, capped, barrier) = (&next, &failed, &capped, &barrier);
                s.spawn(move || -> anyhow::Result<ClientRun> {
                    let conn = setup();
                    barrier.wait();
                    let mut conn = conn?;
                    let started = Instant::now();
                    let deadline = started + max;
                    let mut run = ClientRun {
                        started,
                        ended: started,
                        requests: 0,
                        lines: 0,
                        latency_us: Vec::new(),
                    };
                    loop {
                        if failed.load(Ordering::Relaxed) {
                            break;
                        }
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        if k >= requests {
                            break;
                        }
                        let t = Instant::now();
                        if t >= deadline {
                            capped.store(true, Ordering::Relaxed);
                            break;
                        }
                        match call(&mut conn, k) {
                            Ok(n) => {
                                let now = Instant::now();
                                run.latency_us.push(
                                    u32::try_from(now.duration_since(t).as_micros())
                                        .unwrap_or(u32::MAX),
                                );
                                run.requests += 1;
                                run.lines += n;
                                run.ended = now;
                                pb.inc(batch as u64);
                            }
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    }
                    Ok(run)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("a client thread panicked")))
            })
            .collect()
    });
    let runs = results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    Ok((runs, capped.load(Ordering::Relaxed)))
}

/// One side's figures from its slices (each slice timed from its first request to its last
/// answer; the side's time is the sum of its slices').
fn side(
    slices: Vec<Vec<ClientRun>>,
    cpu_seconds: Option<f64>,
    capped: bool,
    queue_pending_after: u64,
) -> IngestSide {
    let mut seconds = 0.0;
    let (mut lines, mut requests) = (0u64, 0u64);
    let mut latency = Vec::new();
    let mut slice_lines_per_s = Vec::new();
    for runs in slices {
        let started = runs.iter().map(|r| r.started).min();
        let ended = runs.iter().map(|r| r.ended).max();
        let slice_secs = match (started, ended) {
            (Some(s), Some(e)) => e.duration_since(s).as_secs_f64(),
            _ => 0.0,
        };
        seconds += slice_secs;
        let slice_lines: u64 = runs.iter().map(|r| r.lines).sum();
        slice_lines_per_s.push(ratio(slice_lines as f64, slice_secs));
        for r in runs {
            lines += r.lines;
            requests += r.requests;
            latency.extend(r.latency_us);
        }
    }
    let rate = |n: u64| {
        if seconds > 0.0 {
            n as f64 / seconds
        } else {
            0.0
        }
    };
    IngestSide {
        lines,
        requests,
        seconds,
        lines_per_s: rate(lines),
        requests_per_s: rate(requests),
        latency_us: pct(latency),
        slice_lines_per_s,
        cpu_seconds,
        cpu_us_per_line: cpu_seconds.map(|c| ratio(c * 1e6, lines as f64)),
        time_capped: capped,
        queue_pending_after,
    }
}

/// CPU time (user + system) of this process so far, all threads, in seconds: fields 14 and
/// 15 of `/proc/self/stat`, in clock ticks of 1/100 s (Linux's `USER_HZ` for `/proc`).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; fields after it start at `state` (3).
    let rest = stat.rsplit_once(')')?.1;
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// `after - before` when both were read.
fn cpu_since(before: Option<f64>) -> Option<f64> {
    Some(cpu_seconds()? - before?)
}

/// Pending and dead-lettered messages of the queue in `dir`, opened afresh (recovered from
/// disk), then closed.
fn reopened_counts(dir: &Path) -> anyhow::Result<(u64, u64)> {
    let db = Db::open(dir).with_context(|| format!("reopening {}", dir.display()))?;
    let q = db
        .queue(QUEUE, QueueOptions::default())
        .with_context(|| format!("reopening queue {QUEUE} in {}", dir.display()))?;
    let s = q.stats();
    drop(q);
    db.close();
    Ok((s.pending, s.dead_letters))
}

fn fresh_dir(base: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let d = base.join(name);
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    Ok(d)
}

fn ingest(
    a: &BenchHttpArgs,
    base: &Path,
    out: Out,
    books: &mut Vec<String>,
) -> anyhow::Result<Ingest> {
    let rounds = a.rounds;
    let slice_max = Duration::from_secs_f64(a.max_phase_secs / rounds as f64);
    let line_bytes_avg = avg_len(a.lines);
    out.note(&format!(
        "ingest: {} lines per phase (at most {} s) in {rounds} alternating slices, {} clients, batch sizes {:?}, lines of ~{:.0} bytes",
        a.lines, a.max_phase_secs, a.concurrency, a.batch_sizes, line_bytes_avg
    ));
    let mut runs = Vec::new();
    for &batch in &a.batch_sizes {
        let per_slice = a.lines.div_ceil(batch as u64).div_ceil(rounds as u64);
        let planned = per_slice * rounds as u64 * batch as u64;
        let lines_of = |t: usize| (0..batch as u64).map(move |j| line(t as u64 * 100_003 + j));

        // The server, with room for the largest body (413 otherwise).
        let http_dir = fresh_dir(base, &format!("ingest-http-{batch}"))?;
        let body_bytes = (0..TEMPLATES)
            .map(|t| lines_of(t).map(|l| l.len() + 1).sum::<usize>())
            .max()
            .unwrap_or(0);
        let mut server = ServerThread::start(&http_dir, body_bytes + 1024)?;
        let addr = server.addr;
        let bodies: Vec<Vec<u8>> = (0..TEMPLATES)
            .map(|t| ingest_request(addr, lines_of(t)))
            .collect();
        let http_call = |conn: &mut Option<Conn>, k: u64| -> anyhow::Result<u64> {
            let conn = conn
                .as_mut()
                .ok_or_else(|| anyhow!("a client without a connection"))?;
            let body = &bodies[(k % TEMPLATES as u64) as usize];
            let (status, answer) = conn
                .round_trip(body)
                .with_context(|| format!("POST /v1/logs to {addr}"))?;
            if status != 202 {
                bail!(
                    "POST /v1/logs answered {status}: {}",
                    String::from_utf8_lossy(&answer)
                );
            }
            #[derive(Deserialize)]
            struct Queued {
                queued: u64,
            }
            let q: Queued =
                serde_json::from_slice(&answer).context("reading the answer of POST /v1/logs")?;
            Ok(q.queued)
        };
        let http_setup = || Conn::connect(addr).map(Some);

        // The embedded queue, in process.
        let emb_dir = fresh_dir(base, &format!("ingest-embedded-{batch}"))?;
        let db = Db::open(&emb_dir).with_context(|| format!("opening {}", emb_dir.display()))?;
        let q = db
            .queue(QUEUE, QueueOptions::default())
            .context("opening the in-process queue")?;
        let templates: Vec<Vec<NewMessage>> = (0..TEMPLATES)
            .map(|t| {
                lines_of(t)
                    .map(|l| NewMessage {
                        id: None,
                        headers: vec![(INPUT_HEADER.0.into(), INPUT_HEADER.1.into())],
                        payload: l.into_bytes(),
                    })
                    .collect()
            })
            .collect();
        let emb_call = |_: &mut Option<Conn>, k: u64| -> anyhow::Result<u64> {
            let msgs = templates[(k % TEMPLATES as u64) as usize].clone();
            let n = msgs.len() as u64;
            q.publish(msgs).context("publishing in process")?;
            Ok(n)
        };
        let emb_setup = || Ok(None);

        // Alternating slices (HTTP first in even rounds, in process first in odd ones), so a
        // change in the machine's load or the disk's latency falls on both sides alike.
        let pb = out.progress(2 * planned, &format!("ingest {batch}"));
        let (mut http_slices, mut emb_slices) = (Vec::new(), Vec::new());
        let (mut http_capped, mut emb_capped) = (false, false);
        let (mut http_cpu, mut emb_cpu) = (Some(0.0), Some(0.0));
        for r in 0..rounds {
            for http_turn in [r.is_multiple_of(2), !r.is_multiple_of(2)] {
                let cpu = cpu_seconds();
                if http_turn {
                    let (runs, capped) = drive(
                        a.concurrency,
                        per_slice,
                        slice_max,
                        &pb,
                        batch,
                        &http_call,
                        &http_setup,
                    )
                    .with_context(|| format!("HTTP ingest, batch {batch}"))?;
                    http_slices.push(runs);
                    http_capped |= capped;
                    http_cpu = http_cpu.zip(cpu_since(cpu)).map(|(a, b)| a + b);
                } else {
                    let (runs, capped) = drive(
                        a.concurrency,
                        per_slice,
                        slice_max,
                        &pb,
                        batch,
                        &emb_call,
                        &emb_setup,
                    )
                    .with_context(|| format!("in-process publish, batch {batch}"))?;
                    emb_slices.push(runs);
                    emb_capped |= capped;
                    emb_cpu = emb_cpu.zip(cpu_since(cpu)).map(|(a, b)| a + b);
                }
            }
        }
        pb.finish_and_clear();
        server.stop().context("stopping the server")?;
        drop(q);
        db.close();
        let http = side(
            http_slices,
            http_cpu,
            http_capped,
            reopened_counts(&http_dir)?.0,
        );
        let in_process = side(
            emb_slices,
            emb_cpu,
            emb_capped,
            reopened_counts(&emb_dir)?.0,
        );
        for d in [&http_dir, &emb_dir] {
            std::fs::remove_dir_all(d).with_context(|| format!("removing {}", d.display()))?;
        }

        for (name, s) in [("HTTP", &http), ("in-process", &in_process)] {
            if s.lines != s.requests * batch as u64 {
                books.push(format!(
                    "ingest batch {batch}, {name}: {} lines confirmed for {} requests of {batch}",
                    s.lines, s.requests
                ));
            }
            if s.queue_pending_after != s.lines {
                books.push(format!(
                    "ingest batch {batch}, {name}: {} lines confirmed but {} pending in the reopened queue",
                    s.lines, s.queue_pending_after
                ));
            }
            if !s.time_capped && s.lines != planned {
                books.push(format!(
                    "ingest batch {batch}, {name}: {} of {planned} lines sent without reaching the time cap",
                    s.lines
                ));
            }
        }
        let ratio = ratio(http.lines_per_s, in_process.lines_per_s);
        out.note(&format!(
            "batch {batch:>5}: HTTP {:>9.0} lines/s, in process {:>9.0} lines/s ({:.0}%)",
            http.lines_per_s,
            in_process.lines_per_s,
            ratio * 100.0
        ));
        runs.push(IngestRun {
            batch,
            planned_lines: planned,
            http,
            in_process,
            ratio,
        });
    }
    Ok(Ingest {
        clients: a.concurrency,
        lines_per_phase: a.lines,
        rounds,
        max_phase_secs: a.max_phase_secs,
        line_bytes_avg,
        fsync: "always",
        runs,
    })
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

// ---------------------------------------------------------------------------------------------
// Remote workers.

fn message_id(i: u64) -> String {
    format!("bench-{i}")
}

/// A fresh data directory with `n` messages pending in [`QUEUE`].
fn preload(dir: &Path, n: u64) -> anyhow::Result<()> {
    let db = Db::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    let q = db
        .queue(QUEUE, QueueOptions::default())
        .context("opening the queue to pre-load")?;
    let mut inflight = std::collections::VecDeque::new();
    let mut i = 0;
    while i < n {
        let k = 1000.min(n - i);
        let batch = (i..i + k)
            .map(|j| NewMessage {
                id: Some(message_id(j)),
                headers: vec![(INPUT_HEADER.0.into(), "bench-http".into())],
                payload: line(j).into_bytes(),
            })
            .collect();
        let (_, c) = q.publish_nowait(batch).context("pre-loading")?;
        inflight.push_back(c);
        if inflight.len() > 8
            && let Some(c) = inflight.pop_front()
        {
            c.wait().context("pre-loading")?;
        }
        i += k;
    }
    for c in inflight {
        c.wait().context("pre-loading")?;
    }
    let pending = q.stats().pending;
    drop(q);
    db.close();
    if pending != n {
        bail!("pre-loaded {n} messages but {pending} are pending");
    }
    Ok(())
}

/// Rows, distinct ids and missing expected ids of the in-memory store (it keeps one row per
/// id, so rows and distinct ids are the same count).
fn memory_books(store: &MemoryStore, n: u64) -> (u64, u64, u64) {
    let rows = store.len() as u64;
    let missing = (0..n).filter(|&i| !store.contains(&message_id(i))).count() as u64;
    (rows, rows, missing)
}

/// Rows, distinct ids and missing expected ids of an NDJSON store file.
fn ndjson_books(path: &Path, n: u64) -> anyhow::Result<(u64, u64, u64)> {
    #[derive(Deserialize)]
    struct IdOnly {
        id: String,
    }
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut rows = 0u64;
    let mut ids = HashSet::new();
    for (k, l) in BufReader::new(f).split(b'\n').enumerate() {
        let l = l.with_context(|| format!("reading {}", path.display()))?;
        if l.is_empty() {
            continue;
        }
        rows += 1;
        let r: IdOnly = serde_json::from_slice(&l)
            .with_context(|| format!("{}: line {} is not a record", path.display(), k + 1))?;
        ids.insert(r.id);
    }
    let missing = (0..n).filter(|&i| !ids.contains(&message_id(i))).count() as u64;
    Ok((rows, ids.len() as u64, missing))
}

/// What a drain measured.
struct Drained {
    seconds: f64,
    cpu_seconds: Option<f64>,
    s: ackline_worker::StatsSnapshot,
    /// Rows, distinct ids, missing ids.
    store: (u64, u64, u64),
}

/// Drains `n` messages from `broker` into a fresh store of `kind` (an NDJSON one at
/// `ndjson_path`, removed afterwards), then reads the store's books.
async fn drain<B: Broker>(
    broker: B,
    kind: StoreKind,
    ndjson_path: PathBuf,
    wcfg: WorkerConfig,
    n: u64,
    timeout: Duration,
    pb: indicatif::ProgressBar,
) -> anyhow::Result<Drained> {
    match kind {
        StoreKind::Memory => {
            let store = Arc::new(MemoryStore::default());
            let (seconds, cpu_seconds, s) =
                drain_into(broker, store.clone(), wcfg, n, timeout, pb).await?;
            Ok(Drained {
                seconds,
                cpu_seconds,
                s,
                store: memory_books(&store, n),
            })
        }
        StoreKind::Ndjson => {
            let path = ndjson_path;
            let store = NdjsonStore::open(&path)
                .await
                .with_context(|| format!("opening the NDJSON store {}", path.display()))?;
            let (seconds, cpu_seconds, s) =
                drain_into(broker, Arc::new(store), wcfg, n, timeout, pb).await?;
            let store = ndjson_books(&path, n)?;
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            Ok(Drained {
                seconds,
                cpu_seconds,
                s,
                store,
            })
        }
    }
}

/// Runs the worker runtime until the store has taken `n` records (or `timeout`); returns the
/// seconds that took, the process's CPU seconds meanwhile, and the runtime's counters after
/// it stopped.
async fn drain_into<B: Broker, S: Store>(
    broker: B,
    store: Arc<S>,
    wcfg: WorkerConfig,
    n: u64,
    timeout: Duration,
    pb: indicatif::ProgressBar,
) -> anyhow::Result<(f64, Option<f64>, ackline_worker::StatsSnapshot)> {
    let process = ParseProcess::new(Parser::new(ParserConfig::default()));
    let runtime = Runtime::new(Arc::new(broker), store, Arc::new(process), wcfg);
    let stats = runtime.stats();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let cpu = cpu_seconds();
    let started = Instant::now();
    let run = runtime.run(stop_rx);
    tokio::pin!(run);
    let mut done_at = None;
    let mut ended = None;
    loop {
        tokio::select! {
            r = &mut run => {
                ended = Some(r);
                break;
            }
            () = tokio::time::sleep(Duration::from_millis(2)) => {
                let s = stats.snapshot();
                pb.set_position(s.stored + s.duplicates);
                if s.stored + s.duplicates + s.rejected + s.store_rejected >= n {
                    done_at = Some((started.elapsed(), cpu_since(cpu)));
                    break;
                }
                if started.elapsed() >= timeout {
                    break;
                }
            }
        }
    }
    let _ = stop_tx.send(true);
    let result = match ended {
        Some(r) => r,
        None => run.await,
    };
    pb.finish_and_clear();
    result.context("the worker runtime failed")?;
    let s = stats.snapshot();
    let Some((elapsed, cpu)) = done_at else {
        bail!(
            "not drained within {} s: {} of {n} stored",
            timeout.as_secs(),
            s.stored + s.duplicates
        );
    };
    Ok((elapsed.as_secs_f64(), cpu, s))
}

fn drain_side(
    broker: &'static str,
    d: &Drained,
    queue_dir: &Path,
    n: u64,
) -> anyhow::Result<DrainSide> {
    let (store_rows, distinct_ids, missing_ids) = d.store;
    let (queue_pending_after, dead_letters_after) = reopened_counts(queue_dir)?;
    Ok(DrainSide {
        broker,
        seconds: d.seconds,
        msgs_per_s: n as f64 / d.seconds.max(f64::MIN_POSITIVE),
        received: d.s.received,
        stored: d.s.stored,
        duplicates: d.s.duplicates,
        rejected: d.s.rejected + d.s.store_rejected,
        nacked: d.s.nacked,
        store_rows,
        distinct_ids,
        missing_ids,
        queue_pending_after,
        dead_letters_after,
        cpu_seconds: d.cpu_seconds,
        cpu_us_per_msg: d.cpu_seconds.map(|c| ratio(c * 1e6, n as f64)),
    })
}

/// One store over both brokers: the lease API first, then the embedded queue.
fn worker_run(
    a: &BenchHttpArgs,
    kind: StoreKind,
    wcfg: &WorkerConfig,
    rt: &tokio::runtime::Runtime,
    base: &Path,
    out: Out,
) -> anyhow::Result<WorkerRun> {
    let n = a.messages;
    let timeout = Duration::from_secs(a.timeout);
    let store = kind.name();

    // Over the lease API, from an in-process server.
    let label = format!("workers-http-{store}");
    let dir = fresh_dir(base, &label)?;
    preload(&dir, n).context("pre-loading the server's queue")?;
    let mut server = ServerThread::start(&dir, 0)?;
    let url = server.url();
    let broker =
        HttpBroker::connect(&url, None).map_err(|e| anyhow!("connecting to {url}: {e}"))?;
    let pb = out.progress(n, &format!("http {store}"));
    let d = rt
        .block_on(drain(
            broker,
            kind,
            base.join(format!("{label}.ndjson")),
            wcfg.clone(),
            n,
            timeout,
            pb,
        ))
        .with_context(|| format!("draining over the lease API into the {store} store"))?;
    server.stop().context("stopping the server")?;
    let remote = drain_side("http (lease API)", &d, &dir, n)?;
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;

    // The embedded queue, in process.
    let label = format!("workers-embedded-{store}");
    let dir = fresh_dir(base, &label)?;
    preload(&dir, n).context("pre-loading the embedded queue")?;
    let db = Db::open(&dir).with_context(|| format!("opening {}", dir.display()))?;
    let q = db
        .queue(QUEUE, QueueOptions::default())
        .context("opening the embedded queue")?;
    let pb = out.progress(n, &format!("embedded {store}"));
    let d = rt
        .block_on(drain(
            EmbeddedBroker::new(q),
            kind,
            base.join(format!("{label}.ndjson")),
            wcfg.clone(),
            n,
            timeout,
            pb,
        ))
        .with_context(|| format!("draining the embedded queue into the {store} store"))?;
    db.close();
    let embedded = drain_side("embedded", &d, &dir, n)?;
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;

    let ratio = ratio(remote.msgs_per_s, embedded.msgs_per_s);
    out.note(&format!(
        "{store} store: lease API {:.0} msgs/s, embedded {:.0} msgs/s ({:.0}%)",
        remote.msgs_per_s,
        embedded.msgs_per_s,
        ratio * 100.0
    ));
    Ok(WorkerRun {
        store,
        remote,
        embedded,
        ratio,
    })
}

/// The NDJSON store alone: `n` records parsed beforehand, written in batches by one writer.
fn bare_ndjson(
    n: u64,
    batch: usize,
    rt: &tokio::runtime::Runtime,
    base: &Path,
) -> anyhow::Result<BareStore> {
    let parser = Parser::new(ParserConfig::default());
    let input: Arc<str> = Arc::from("bench-http");
    let records = (0..n)
        .map(|i| {
            parser
                .parse(
                    line(i).as_bytes(),
                    &LineContext::now(message_id(i), input.clone()),
                )
                .map_err(|e| anyhow!("parsing line {i}: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let path = base.join("bare.ndjson");
    let seconds = rt.block_on(async {
        let store = NdjsonStore::open(&path)
            .await
            .context("opening the bare NDJSON store")?;
        let started = Instant::now();
        for chunk in records.chunks(batch) {
            store.write_batch(chunk).await.context("bare store write")?;
        }
        anyhow::Ok(started.elapsed().as_secs_f64())
    })?;
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    Ok(BareStore {
        seconds,
        records_per_s: n as f64 / seconds.max(f64::MIN_POSITIVE),
    })
}

fn remote_workers(
    a: &BenchHttpArgs,
    base: &Path,
    out: Out,
    books: &mut Vec<String>,
) -> anyhow::Result<Workers> {
    let n = a.messages;
    let prefetch = a.prefetch.unwrap_or(2 * a.worker_batch);
    let wcfg = WorkerConfig {
        workers: a.workers,
        prefetch,
        batch_size: a.worker_batch,
        ..WorkerConfig::default()
    };
    out.note(&format!(
        "remote workers: {n} messages, {} workers, batch {}, prefetch {prefetch}, stores {:?}",
        a.workers,
        a.worker_batch,
        a.stores.iter().map(|k| k.name()).collect::<Vec<_>>()
    ));
    let rt = ackline_app::runtime::build()?;
    let mut runs = Vec::new();
    for &kind in &a.stores {
        let r = worker_run(a, kind, &wcfg, &rt, base, out)?;
        for s in [&r.remote, &r.embedded] {
            let name = format!("workers, {} store, {}", r.store, s.broker);
            if s.store_rows != n || s.distinct_ids != n || s.missing_ids != 0 {
                books.push(format!(
                    "{name}: {n} messages but {} rows, {} distinct ids, {} missing in the store",
                    s.store_rows, s.distinct_ids, s.missing_ids
                ));
            }
            if s.queue_pending_after != 0 || s.dead_letters_after != 0 {
                books.push(format!(
                    "{name}: {} pending and {} dead-lettered in the reopened queue",
                    s.queue_pending_after, s.dead_letters_after
                ));
            }
            if s.stored + s.duplicates != n || s.rejected != 0 {
                books.push(format!(
                    "{name}: the runtime stored {} (+{} duplicates) and rejected {} of {n}",
                    s.stored, s.duplicates, s.rejected
                ));
            }
        }
        runs.push(r);
    }
    let bare = if a.stores.contains(&StoreKind::Ndjson) {
        Some(bare_ndjson(n, a.worker_batch, &rt, base)?)
    } else {
        None
    };
    Ok(Workers {
        messages: n,
        workers: a.workers,
        batch: a.worker_batch,
        prefetch,
        line_bytes_avg: avg_len(n),
        runs,
        bare_ndjson: bare,
    })
}

// ---------------------------------------------------------------------------------------------
// Human output.

fn ms(us: u32) -> String {
    format!("{:.2}", f64::from(us) / 1000.0)
}

fn human(r: &Report) -> String {
    let m = &r.machine;
    let d = &r.disk_fdatasync_us;
    let mut s = format!(
        "machine: {} ({} cores), Linux {}\n\
         disk: fdatasync of a 4 KiB append p50/p99 {}/{} ms before, {}/{} ms after\n",
        m.cpu,
        m.cores,
        m.kernel,
        ms(d.before.p50),
        ms(d.before.p99),
        ms(d.after.p50),
        ms(d.after.p99)
    );
    if let Some(i) = &r.ingest {
        s += &format!(
            "\nHTTP ingest (POST /v1/logs, text/plain, {} keep-alive clients) vs in-process publish ({} threads), fsync={}\n\
             {} lines per phase (at most {} s) in {} slices alternating between the sides, ~{:.0} bytes per line\n",
            i.clients,
            i.clients,
            i.fsync,
            i.lines_per_phase,
            i.max_phase_secs,
            i.rounds,
            i.line_bytes_avg
        );
        s += " batch | side       |   lines/s | slices lines/s min-max | req/s | latency ms p50/p99 | CPU us/line | HTTP/in-process\n";
        for x in &i.runs {
            for (name, d) in [("HTTP", &x.http), ("in-process", &x.in_process)] {
                let lo = d
                    .slice_lines_per_s
                    .iter()
                    .copied()
                    .fold(f64::INFINITY, f64::min);
                let hi = d.slice_lines_per_s.iter().copied().fold(0.0, f64::max);
                let batch = if name == "HTTP" {
                    x.batch.to_string()
                } else {
                    String::new()
                };
                let vs = if name == "HTTP" {
                    String::new()
                } else {
                    format!("{:.0}%", x.ratio * 100.0)
                };
                s += &format!(
                    "{batch:>6} | {name:<10} | {:>8.0}{} | {:>10.0} - {:<10.0} | {:>5.0} | {:>7} / {:<8} | {:>11} | {vs:>6}\n",
                    d.lines_per_s,
                    if d.time_capped { "*" } else { " " },
                    if lo.is_finite() { lo } else { 0.0 },
                    hi,
                    d.requests_per_s,
                    ms(d.latency_us.p50),
                    ms(d.latency_us.p99),
                    d.cpu_us_per_line.map_or("-".into(), |c| format!("{c:.1}")),
                );
            }
        }
        if i.runs
            .iter()
            .any(|x| x.http.time_capped || x.in_process.time_capped)
        {
            s += "  * stopped at the time cap (the rate is what was confirmed in that time)\n";
        }
    }
    if let Some(w) = &r.workers {
        s += &format!(
            "\nworker runtime draining {} pre-loaded messages (~{:.0} bytes): {} workers, batch {}, prefetch {}\n",
            w.messages, w.line_bytes_avg, w.workers, w.batch, w.prefetch
        );
        s += " store  | lease API msgs/s | CPU us/msg | embedded msgs/s | CPU us/msg | lease API/embedded\n";
        let cpu = |d: &DrainSide| d.cpu_us_per_msg.map_or("-".into(), |c| format!("{c:.1}"));
        for x in &w.runs {
            s += &format!(
                " {:<6} | {:>16.0} | {:>10} | {:>15.0} | {:>10} | {:>5.0}%\n",
                x.store,
                x.remote.msgs_per_s,
                cpu(&x.remote),
                x.embedded.msgs_per_s,
                cpu(&x.embedded),
                x.ratio * 100.0
            );
        }
        if let Some(b) = &w.bare_ndjson {
            s += &format!(
                "NDJSON store alone (same records parsed beforehand, batches of {}, one writer): {:.0} records/s\n",
                w.batch, b.records_per_s
            );
        }
    }
    if r.books_balance {
        s += "\nbooks: balanced (every confirmed line pending in the reopened queue; every drained message stored once, nothing pending or dead-lettered)\n";
    } else {
        s += "\nbooks: DO NOT BALANCE\n";
        for b in &r.books {
            s += &format!("  {b}\n");
        }
    }
    s
}
