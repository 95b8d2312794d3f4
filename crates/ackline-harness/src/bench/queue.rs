//! `ackline bench queue`: the embedded queue under durable publish + receive + ack, run
//! concurrently; memory per pending message; recovery time after kill -9.
//!
//! What is measured, exactly (so the figures can be compared honestly):
//! - **msgs/s**: messages / time from the first publish until the last ack's commit resolved
//!   (producers and consumers run at the same time; every message is published with a
//!   durable confirmation per `--fsync` and acked durably).
//! - **publish confirm latency**: per message, from the `publish` call (or `publish_nowait`)
//!   to the moment its confirmation was observed.
//! - **end-to-end latency**: per message, from the publish call to its ack being durable.
//! - **individual acks** are one `ack` call per message, their commits waited on in bulk
//!   after the consumer's next `receive` (the equivalent of a broker's asynchronous acks);
//!   **batch acks** are one `settle` call per receive batch. Either way a message counts as
//!   acked only once its ack's commit resolved.
//! - **memory per pending message**: in a fresh child process, VmRSS after publishing N
//!   messages without consuming them, minus VmRSS before, divided by N. Nothing is subtracted.
//! - **recovery**: a child publishes `--recovery-messages`, is killed with SIGKILL while they
//!   are all pending, and the time to reopen the data directory and the queue is measured.
//!
//! Invariant: every run uses a fresh temporary data directory, removed afterwards.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ackline_app::exit::usage;
use ackline_app::output::Out;
use ackline_queue::{Db, Fsync, NewMessage, QueueOptions, Settlement};
use anyhow::{Context, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::bench::measure::{Machine, Pct, machine, pct};
use crate::cli::{AckMode, BenchQueueArgs, FillArgs, FsyncMode, PublishMode};

const QUEUE: &str = "bench";
const LEASE: Duration = Duration::from_secs(300);

fn fsync_of(m: FsyncMode) -> Fsync {
    match m {
        FsyncMode::Always => Fsync::Always,
        FsyncMode::Interval => Fsync::Interval(Duration::from_millis(10)),
        FsyncMode::Never => Fsync::Never,
    }
}

fn options(fsync: FsyncMode, messages: u64, size: usize) -> QueueOptions {
    let need = messages.saturating_mul(size as u64 + 128).saturating_mul(2);
    QueueOptions {
        fsync: fsync_of(fsync),
        max_bytes: need.max(1 << 30),
        ..QueueOptions::default()
    }
}

#[derive(Debug, Clone, Serialize)]
struct RunResult {
    producers: usize,
    consumers: usize,
    ack: String,
    publish: String,
    fsync: String,
    messages: u64,
    size: usize,
    seconds: f64,
    msgs_per_s: f64,
    publish_msgs_per_s: f64,
    publish_confirm_us: Pct,
    end_to_end_us: Pct,
    redelivered: u64,
}

/// What the filler child reports (one JSON line on stdout).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FillReport {
    /// Messages published (all confirmed).
    pub published: u64,
    /// VmRSS after opening the queue, kB.
    pub rss_before_kb: u64,
    /// VmRSS after publishing, kB.
    pub rss_after_kb: u64,
    /// Pending bytes by the queue's count.
    pub pending_bytes: u64,
    /// Seconds spent publishing.
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
struct Memory {
    messages: u64,
    rss_before_kb: u64,
    rss_after_kb: u64,
    bytes_per_pending_message: f64,
    payload_bytes: usize,
}

#[derive(Debug, Clone, Serialize)]
struct Recovery {
    messages: u64,
    fill_seconds: f64,
    bytes_per_pending_message: f64,
    reopen_ms: f64,
    engine_recovery_ms: f64,
    from_checkpoint: bool,
    records_replayed: u64,
    bytes_scanned: u64,
    torn_tails_truncated: usize,
    pending_after: u64,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    runs: Vec<RunResult>,
    memory: Option<Memory>,
    recovery: Option<Recovery>,
}

/// VmRSS of this process, kB.
pub fn vm_rss_kb() -> anyhow::Result<u64> {
    let s = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS line in /proc/self/status"))
}

fn name<T: clap::ValueEnum>(v: T) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_string())
        .unwrap_or_default()
}

/// Runs the benchmark.
pub fn run(a: &BenchQueueArgs, data_dir: Option<&Path>, out: Out) -> anyhow::Result<()> {
    if a.size < 8 {
        return Err(usage(
            "--size must be at least 8 (the payload carries its publish time)",
        ));
    }
    if a.messages == 0 || a.batch == 0 || a.window == 0 || a.prefetch == 0 {
        return Err(usage(
            "--messages, --batch, --window and --prefetch must be at least 1",
        ));
    }
    if a.producers.contains(&0) || a.consumers.contains(&0) {
        return Err(usage("--producers and --consumers must be at least 1"));
    }
    let base = match data_dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.to_path_buf()
        }
        None => std::env::temp_dir(),
    };
    let pairs: Vec<(usize, usize)> = if a.producers.len() == a.consumers.len() {
        a.producers
            .iter()
            .copied()
            .zip(a.consumers.iter().copied())
            .collect()
    } else {
        a.producers
            .iter()
            .flat_map(|&p| a.consumers.iter().map(move |&c| (p, c)))
            .collect()
    };
    let mut runs = Vec::new();
    for &(p, c) in &pairs {
        for &ack in &a.ack {
            for &pm in &a.publish {
                let label = format!("{p}p/{c}c {} {}", name(ack), name(pm));
                let r = run_one(a, &base, p, c, ack, pm, out, &label)
                    .with_context(|| format!("benchmark run {label}"))?;
                out.note(&format!(
                    "{label}: {:.0} msgs/s (publish alone {:.0}/s)",
                    r.msgs_per_s, r.publish_msgs_per_s
                ));
                runs.push(r);
            }
        }
    }
    let memory = if a.no_memory {
        None
    } else {
        out.note("measuring memory per pending message in a child process");
        let (rep, _) = fill_child(&base, a.messages, a.size, a.fsync, false)?;
        Some(Memory {
            messages: rep.published,
            rss_before_kb: rep.rss_before_kb,
            rss_after_kb: rep.rss_after_kb,
            bytes_per_pending_message: per_msg(&rep),
            payload_bytes: a.size,
        })
    };
    let recovery = if a.recovery_messages == 0 {
        None
    } else {
        out.note(&format!(
            "publishing {} messages in a child, kill -9, reopening",
            a.recovery_messages
        ));
        Some(recovery(&base, a)?)
    };
    let report = Report {
        machine: machine(),
        runs,
        memory,
        recovery,
    };
    out.emit(&report, || human(&report))
}

fn per_msg(r: &FillReport) -> f64 {
    r.rss_after_kb.saturating_sub(r.rss_before_kb) as f64 * 1024.0 / r.published.max(1) as f64
}

#[allow(clippy::too_many_arguments)]
fn run_one(
    a: &BenchQueueArgs,
    base: &Path,
    producers: usize,
    consumers: usize,
    ack: AckMode,
    pm: PublishMode,
    out: Out,
    label: &str,
) -> anyhow::Result<RunResult> {
    let dir = tempfile::Builder::new()
        .prefix("ackline-bench-")
        .tempdir_in(base)
        .with_context(|| format!("creating a data directory in {}", base.display()))?;
    let db = Db::open(dir.path()).context("opening the bench data directory")?;
    let q = db
        .queue(QUEUE, options(a.fsync, a.messages, a.size))
        .context("opening the bench queue")?;
    let n = a.messages;
    let acked = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let done_at = Mutex::new(None::<Duration>);
    let pb = out.progress(n, label);
    let start = Instant::now();
    let now_ns = || start.elapsed().as_nanos() as u64;

    let (pub_results, con_results) = std::thread::scope(|s| {
        let mut ph = Vec::new();
        for i in 0..producers {
            let count = n / producers as u64 + u64::from((i as u64) < n % producers as u64);
            let (q, failed) = (&q, &failed);
            ph.push(s.spawn(move || -> anyhow::Result<(Vec<u32>, Duration)> {
                let r = produce(q, count, a, pm, &now_ns);
                if r.is_err() {
                    failed.store(true, Ordering::SeqCst);
                }
                r.map(|lat| (lat, start.elapsed()))
            }));
        }
        let mut ch = Vec::new();
        for _ in 0..consumers {
            let (q, failed, acked, done_at, pb) = (&q, &failed, &acked, &done_at, &pb);
            ch.push(s.spawn(move || -> anyhow::Result<Vec<u32>> {
                let sh = Progress {
                    n,
                    start,
                    acked,
                    failed,
                    done_at,
                    pb,
                };
                let r = consume(q, a, ack, &sh, consumers);
                if r.is_err() {
                    failed.store(true, Ordering::SeqCst);
                }
                r
            }));
        }
        let p: Vec<anyhow::Result<(Vec<u32>, Duration)>> = ph.into_iter().map(join).collect();
        let c: Vec<anyhow::Result<Vec<u32>>> = ch.into_iter().map(join).collect();
        (p, c)
    });
    pb.finish_and_clear();
    let mut confirm = Vec::with_capacity(n as usize);
    let mut pub_end = Duration::ZERO;
    for r in pub_results {
        let (lat, end) = r?;
        confirm.extend(lat);
        pub_end = pub_end.max(end);
    }
    let mut e2e = Vec::with_capacity(n as usize);
    for r in con_results {
        e2e.extend(r?);
    }
    let elapsed = done_at
        .lock()
        .ok()
        .and_then(|g| *g)
        .ok_or_else(|| anyhow!("the run ended without acking every message"))?;
    let stats = q.stats();
    drop(q);
    db.close();
    let secs = elapsed.as_secs_f64();
    Ok(RunResult {
        producers,
        consumers,
        ack: name(ack),
        publish: match pm {
            PublishMode::Batch => format!("publish(batch of {})", a.batch),
            PublishMode::Pipelined => {
                format!(
                    "publish_nowait(batch of {}, {} in flight)",
                    a.batch, a.window
                )
            }
        },
        fsync: name(a.fsync),
        messages: n,
        size: a.size,
        seconds: secs,
        msgs_per_s: n as f64 / secs,
        publish_msgs_per_s: n as f64 / pub_end.as_secs_f64(),
        publish_confirm_us: pct(confirm),
        end_to_end_us: pct(e2e),
        redelivered: stats.redelivered,
    })
}

/// What the consumers share.
struct Progress<'a> {
    n: u64,
    start: Instant,
    acked: &'a AtomicU64,
    failed: &'a AtomicBool,
    done_at: &'a Mutex<Option<Duration>>,
    pb: &'a indicatif::ProgressBar,
}

impl Progress<'_> {
    /// Counts acks that are durable and records their end-to-end latencies.
    fn settled(&self, pub_times: &[u64], e2e: &mut Vec<u32>) {
        let t = self.start.elapsed().as_nanos() as u64;
        e2e.extend(
            pub_times
                .iter()
                .map(|&p| (t.saturating_sub(p) / 1000) as u32),
        );
        let k = pub_times.len() as u64;
        self.pb.inc(k);
        if self.acked.fetch_add(k, Ordering::SeqCst) + k >= self.n
            && let Ok(mut g) = self.done_at.lock()
        {
            *g = Some(self.start.elapsed());
        }
    }
}

/// One consumer: receive, ack (individually or in one `settle`), and wait for the acks'
/// commits after the next `receive` returned: a receive returns only once its own delivery
/// record is durable, and batches become durable in order, so by then the previous acks are
/// durable too and the wait costs nothing. Acks are counted only once their commit resolved.
fn consume(
    q: &ackline_queue::Queue,
    a: &BenchQueueArgs,
    ack: AckMode,
    sh: &Progress<'_>,
    consumers: usize,
) -> anyhow::Result<Vec<u32>> {
    let c = q.consumer();
    let mut e2e = Vec::with_capacity((sh.n / consumers as u64) as usize + 1024);
    let mut prev: Option<(Vec<ackline_queue::Commit>, Vec<u64>)> = None;
    loop {
        if sh.failed.load(Ordering::SeqCst) {
            bail!("stopped: another thread failed");
        }
        let acked = sh.acked.load(Ordering::SeqCst);
        let in_flight = prev.as_ref().map_or(0, |p| p.1.len() as u64);
        if acked + in_flight >= sh.n {
            // Nothing more to receive for this run: settle what is in flight and stop.
            if let Some((commits, times)) = prev.take() {
                for cm in commits {
                    cm.wait().context("waiting for acks")?;
                }
                sh.settled(&times, &mut e2e);
            }
            if sh.acked.load(Ordering::SeqCst) >= sh.n {
                return Ok(e2e);
            }
        }
        let ds = c
            .receive(a.prefetch, LEASE, Duration::from_millis(20))
            .context("receiving")?;
        if let Some((commits, times)) = prev.take() {
            for cm in commits {
                cm.wait().context("waiting for acks")?;
            }
            sh.settled(&times, &mut e2e);
        }
        if ds.is_empty() {
            continue;
        }
        let times: Vec<u64> = ds
            .iter()
            .map(|d| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&d.payload[..8]);
                u64::from_le_bytes(b)
            })
            .collect();
        let commits = match ack {
            AckMode::Individual => {
                let mut commits = Vec::with_capacity(ds.len());
                for d in &ds {
                    commits.push(c.ack(d.tag).context("acking")?);
                }
                commits
            }
            AckMode::Batch => {
                let items: Vec<_> = ds.iter().map(|d| (d.tag, Settlement::Ack)).collect();
                let (results, commit) = c.settle(&items);
                for r in results {
                    r.context("acking")?;
                }
                vec![commit]
            }
        };
        prev = Some((commits, times));
    }
}

fn join<T>(h: std::thread::ScopedJoinHandle<'_, anyhow::Result<T>>) -> anyhow::Result<T> {
    h.join()
        .unwrap_or_else(|_| Err(anyhow!("a benchmark thread panicked")))
}

fn batch_of(k: u64, size: usize, t: u64) -> Vec<NewMessage> {
    (0..k)
        .map(|_| {
            let mut p = vec![b'x'; size];
            p[..8].copy_from_slice(&t.to_le_bytes());
            NewMessage::new(p)
        })
        .collect()
}

fn produce(
    q: &ackline_queue::Queue,
    count: u64,
    a: &BenchQueueArgs,
    pm: PublishMode,
    now_ns: &dyn Fn() -> u64,
) -> anyhow::Result<Vec<u32>> {
    let mut lat = Vec::with_capacity(count as usize);
    let mut sent = 0u64;
    let mut inflight = VecDeque::new();
    let record = |lat: &mut Vec<u32>, t: u64, k: u64| {
        let l = (now_ns().saturating_sub(t) / 1000) as u32;
        lat.extend(std::iter::repeat_n(l, k as usize));
    };
    while sent < count {
        let k = (a.batch as u64).min(count - sent);
        let t = now_ns();
        let msgs = batch_of(k, a.size, t);
        match pm {
            PublishMode::Batch => {
                q.publish(msgs).context("publishing")?;
                record(&mut lat, t, k);
            }
            PublishMode::Pipelined => {
                let (_, commit) = q.publish_nowait(msgs).context("publishing")?;
                inflight.push_back((t, k, commit));
                while inflight.len() >= a.window {
                    if let Some((t, k, c)) = inflight.pop_front() {
                        c.wait().context("waiting for a publish")?;
                        record(&mut lat, t, k);
                    }
                }
            }
        }
        sent += k;
    }
    while let Some((t, k, c)) = inflight.pop_front() {
        c.wait().context("waiting for a publish")?;
        record(&mut lat, t, k);
    }
    Ok(lat)
}

/// Starts `ackline bench queue-fill` and returns its report; with `hold` the child is still
/// running (waiting to be killed) and is returned too.
fn fill_child(
    base: &Path,
    messages: u64,
    size: usize,
    fsync: FsyncMode,
    hold: bool,
) -> anyhow::Result<(FillReport, Option<(std::process::Child, tempfile::TempDir)>)> {
    let dir = tempfile::Builder::new()
        .prefix("ackline-fill-")
        .tempdir_in(base)
        .with_context(|| format!("creating a data directory in {}", base.display()))?;
    let exe = std::env::current_exe().context("finding this executable")?;
    let mut cmd = Command::new(exe);
    cmd.args(["bench", "queue-fill"])
        .arg("--dir")
        .arg(dir.path())
        .args(["--messages", &messages.to_string()])
        .args(["--size", &size.to_string()])
        .args(["--fsync", &name(fsync)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().context("starting the filler process")?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("the filler's stdout is missing"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let r = BufReader::new(stdout).read_line(&mut line).map(|_| line);
        let _ = tx.send(r);
    });
    let line = match rx.recv_timeout(Duration::from_secs(1800)) {
        Ok(Ok(l)) if !l.trim().is_empty() => l,
        other => {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the filler process gave no report ({other:?})");
        }
    };
    let rep: FillReport =
        serde_json::from_str(line.trim()).context("parsing the filler's report")?;
    if hold {
        Ok((rep, Some((child, dir))))
    } else {
        drop(child.stdin.take());
        let st = child.wait().context("waiting for the filler")?;
        if !st.success() {
            bail!("the filler process failed: {st}");
        }
        Ok((rep, None))
    }
}

fn recovery(base: &Path, a: &BenchQueueArgs) -> anyhow::Result<Recovery> {
    let (rep, held) = fill_child(base, a.recovery_messages, a.size, a.fsync, true)?;
    let Some((mut child, dir)) = held else {
        bail!("the filler process was not held");
    };
    child.kill().context("killing the filler with SIGKILL")?;
    child.wait().context("reaping the filler")?;
    let t = Instant::now();
    let db = Db::open(dir.path()).context("reopening after kill -9")?;
    let q = db
        .queue(QUEUE, options(a.fsync, a.recovery_messages, a.size))
        .context("reopening the queue after kill -9")?;
    let reopen = t.elapsed();
    let r = q.recovery_report().clone();
    let pending = q.stats().pending;
    drop(q);
    db.close();
    if pending != rep.published {
        bail!(
            "after kill -9, {pending} messages pending but {} were confirmed",
            rep.published
        );
    }
    Ok(Recovery {
        messages: rep.published,
        fill_seconds: rep.seconds,
        bytes_per_pending_message: per_msg(&rep),
        reopen_ms: reopen.as_secs_f64() * 1000.0,
        engine_recovery_ms: r.micros as f64 / 1000.0,
        from_checkpoint: r.from_checkpoint,
        records_replayed: r.records_replayed,
        bytes_scanned: r.bytes_scanned,
        torn_tails_truncated: r.truncated.len(),
        pending_after: pending,
    })
}

/// `ackline bench queue-fill` (hidden): publishes `--messages` into a fresh queue, prints a
/// [`FillReport`] line, then waits until stdin closes (the parent kills it with SIGKILL first
/// when measuring recovery).
pub fn fill(a: &FillArgs) -> anyhow::Result<()> {
    let db = Db::open(&a.dir).with_context(|| format!("opening {}", a.dir.display()))?;
    let q = db
        .queue(QUEUE, options(a.fsync, a.messages, a.size))
        .context("opening the queue")?;
    let rss_before_kb = vm_rss_kb()?;
    let t = Instant::now();
    let mut inflight = VecDeque::new();
    let mut sent = 0;
    while sent < a.messages {
        let k = 1000.min(a.messages - sent);
        let (_, c) = q
            .publish_nowait(batch_of(k, a.size.max(8), 0))
            .context("publishing")?;
        inflight.push_back(c);
        if inflight.len() > 8
            && let Some(c) = inflight.pop_front()
        {
            c.wait().context("waiting for a publish")?;
        }
        sent += k;
    }
    for c in inflight {
        c.wait().context("waiting for a publish")?;
    }
    let rep = FillReport {
        published: sent,
        rss_before_kb,
        rss_after_kb: vm_rss_kb()?,
        pending_bytes: q.stats().pending_bytes,
        seconds: t.elapsed().as_secs_f64(),
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", serde_json::to_string(&rep)?)?;
    stdout.flush()?;
    drop(stdout);
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(q);
    db.close();
    Ok(())
}

fn ms(us: u32) -> String {
    format!("{:.2}", f64::from(us) / 1000.0)
}

fn human(r: &Report) -> String {
    let m = &r.machine;
    let mut s = format!(
        "machine: {} ({} cores), Linux {}\n",
        m.cpu, m.cores, m.kernel
    );
    if let Some(x) = r.runs.first() {
        s += &format!(
            "{} messages of {} bytes per run, fsync={}, publish + receive + ack concurrently\n",
            x.messages, x.size, x.fsync
        );
    }
    s += "prod cons ack        publish mode                                msgs/s  publish/s   confirm ms p50/p99/max   end-to-end ms p50/p99/max\n";
    for x in &r.runs {
        s += &format!(
            "{:>4} {:>4} {:<10} {:<42} {:>9.0} {:>10.0}   {:>7}/{}/{}   {:>7}/{}/{}\n",
            x.producers,
            x.consumers,
            x.ack,
            x.publish,
            x.msgs_per_s,
            x.publish_msgs_per_s,
            ms(x.publish_confirm_us.p50),
            ms(x.publish_confirm_us.p99),
            ms(x.publish_confirm_us.max),
            ms(x.end_to_end_us.p50),
            ms(x.end_to_end_us.p99),
            ms(x.end_to_end_us.max),
        );
    }
    if let Some(mem) = &r.memory {
        s += &format!(
            "memory: {:.1} bytes of RSS per pending message ({} messages of {} bytes; VmRSS {} kB -> {} kB; payloads stay on disk)\n",
            mem.bytes_per_pending_message,
            mem.messages,
            mem.payload_bytes,
            mem.rss_before_kb,
            mem.rss_after_kb
        );
    }
    if let Some(rc) = &r.recovery {
        s += &format!(
            "recovery after kill -9 with {} pending: reopen {:.1} ms (engine {:.1} ms, {} records replayed, {} MB scanned, from checkpoint: {}); {:.1} bytes RSS per pending message in the filler\n",
            rc.messages,
            rc.reopen_ms,
            rc.engine_recovery_ms,
            rc.records_replayed,
            rc.bytes_scanned >> 20,
            rc.from_checkpoint,
            rc.bytes_per_pending_message
        );
    }
    s
}
