//! `ackline demo`: the pipeline under faults, then the books.
//!
//! 1. Generates seeded, realistic traffic ([`traffic`]) and appends it to seven log files
//!    from a writer thread, paced, while the pipeline runs.
//! 2. Runs the pipeline node as a child process (the hidden `ackline demo pipeline-node
//!    --strict`: `ackline run`, with real inputs, queue, workers and SQLite store, whose
//!    processing step is [`fault::DemoFaults`]) and kills it with SIGKILL at a seeded random
//!    moment, `--crashes` times: kills land mid-batch, between a store commit and its ack,
//!    during a position commit.
//! 3. Appends a last burst and runs the pipeline once more in this process with the store
//!    switched to `Unavailable` for `--outage-ms`
//!    ([`ackline_store::test_support::FaultyStore`]): the workers pause and probe, nothing is
//!    dead-lettered for the outage; then it drains.
//! 4. Balances the books ([`books`]) and exits 3 if they do not balance.
//!
//! Invariants:
//! - Kill moments and traffic come from `--seed` (random when absent, always printed).
//! - Nothing waits unboundedly: every child is killed or reaped; the final run is bounded by
//!   `--timeout`.
//! - Lines containing `flaky-retry` fail once and `poison-retry` always, transiently (the
//!   node's and the final run's processing step, [`fault::DemoFaults`]), so the books show
//!   retries and `max attempts exceeded`.

mod books;
mod fault;
pub(crate) mod traffic;

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ackline_app::cli::{PipelineFlags, RunArgs, WorkerFlags};
use ackline_app::config::{self, Env};
use ackline_app::exit::{Unbalanced, usage};
use ackline_app::output::Out;
use ackline_app::pipeline::{self, Mode, RunReport, read_status};
use ackline_app::run::parse_process;
use ackline_input::{Fingerprint, file_message_id};
use ackline_store::test_support::FaultyStore;
use anyhow::{Context, bail};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::cli::PipelineDemoArgs;
use crate::demo::queue::wait_until;

use books::{Books, RunTotals};
use fault::DemoFaults;
use traffic::{FILES, Kind, Line};

/// The demo's settings for `ackline run`, as flags (the nodes get the same as the final run,
/// which builds its configuration from them).
fn flags(logs: &Path) -> PipelineFlags {
    let s = |x: &str| Some(x.to_string());
    PipelineFlags {
        inputs: vec![logs.join("*.log").display().to_string()],
        poll_interval: s("50ms"),
        worker: WorkerFlags {
            strict: true,
            workers: s("2"),
            batch_size: s("200"),
            prefetch: s("400"),
            lease: s("5s"),
            shutdown_deadline: s("5s"),
            retry_base: s("20ms"),
            retry_factor: s("2"),
            retry_cap: s("200ms"),
            max_attempts: s("4"),
            ..WorkerFlags::default()
        },
        ..PipelineFlags::default()
    }
}

fn child_args(f: &PipelineFlags) -> Vec<String> {
    let mut v = vec![
        "demo".to_string(),
        "pipeline-node".into(),
        "--strict".into(),
    ];
    let mut put = |flag: &str, x: &Option<String>| {
        if let Some(x) = x {
            v.push(flag.into());
            v.push(x.clone());
        }
    };
    put("--poll-interval", &f.poll_interval);
    let w = &f.worker;
    put("--workers", &w.workers);
    put("--batch-size", &w.batch_size);
    put("--prefetch", &w.prefetch);
    put("--lease", &w.lease);
    put("--shutdown-deadline", &w.shutdown_deadline);
    put("--retry-base", &w.retry_base);
    put("--retry-factor", &w.retry_factor);
    put("--retry-cap", &w.retry_cap);
    put("--max-attempts", &w.max_attempts);
    v.extend(f.inputs.iter().cloned());
    v
}

/// How one run ended.
#[derive(Debug, Clone, Serialize)]
struct RunEnd {
    run: u32,
    killed: bool,
    kill_after_ms: Option<u64>,
    /// Its last reported counters (a killed run's last status, up to 200 ms old).
    last_report: Option<RunReport>,
}

#[derive(Debug, Serialize)]
struct Report {
    seed: u64,
    lines: u64,
    crashes: u32,
    outage_ms: u64,
    loghub_samples: bool,
    data_dir: PathBuf,
    elapsed_ms: u64,
    runs: Vec<RunEnd>,
    books: Books,
}

/// Appends lines to the files, recording each line's id.
struct Writer {
    files: Vec<std::fs::File>,
    keys: Vec<(u64, u64)>,
    /// Each file's fingerprint: its first line's, known once that is written.
    fingerprints: Vec<Option<Fingerprint>>,
    offsets: Vec<u64>,
    expected: HashMap<String, Kind>,
}

impl Writer {
    fn create(dir: &Path) -> anyhow::Result<Self> {
        let mut w = Writer {
            files: Vec::new(),
            keys: Vec::new(),
            fingerprints: Vec::new(),
            offsets: Vec::new(),
            expected: HashMap::new(),
        };
        for name in FILES {
            let p = dir.join(name);
            let f = std::fs::OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&p)
                .with_context(|| format!("creating {}", p.display()))?;
            let md = f
                .metadata()
                .with_context(|| format!("stat {}", p.display()))?;
            w.keys.push((md.dev(), md.ino()));
            w.files.push(f);
            w.fingerprints.push(None);
            w.offsets.push(0);
        }
        Ok(w)
    }

    fn write(&mut self, lines: &[Line]) -> anyhow::Result<()> {
        let mut bufs: Vec<Vec<u8>> = vec![Vec::new(); FILES.len()];
        for l in lines {
            let (dev, ino) = self.keys[l.file];
            let fp = match self.fingerprints[l.file] {
                Some(fp) => fp,
                None => {
                    let mut first = l.bytes.clone();
                    first.push(b'\n');
                    let fp = Fingerprint::of_head(&first)
                        .context("a complete first line always has a fingerprint")?;
                    self.fingerprints[l.file] = Some(fp);
                    fp
                }
            };
            let id = file_message_id(dev, ino, fp, 0, self.offsets[l.file]);
            self.expected.insert(id, l.kind);
            bufs[l.file].extend_from_slice(&l.bytes);
            bufs[l.file].push(b'\n');
            self.offsets[l.file] += l.bytes.len() as u64 + 1;
        }
        for (f, b) in self.files.iter_mut().zip(bufs) {
            if !b.is_empty() {
                f.write_all(&b).context("appending to a demo log file")?;
            }
        }
        Ok(())
    }
}

/// The pipeline node (`ackline demo pipeline-node`, hidden): `ackline run` with `a`, whose
/// processing step fails marked lines ([`DemoFaults`] around the configured parser).
pub fn node(
    a: &RunArgs,
    data_dir: &Path,
    config_file: Option<&Path>,
    out: Out,
) -> anyhow::Result<()> {
    ackline_app::run::run_as(a, data_dir, config_file, out, |cfg| {
        DemoFaults::new(parse_process(cfg))
    })
}

/// Runs the demo.
pub fn run(a: &PipelineDemoArgs, data_dir: Option<&Path>, out: Out) -> anyhow::Result<()> {
    if a.lines < 100 {
        return Err(usage("--lines must be at least 100"));
    }
    if a.max_kill_ms < 50 {
        return Err(usage("--max-kill-ms must be at least 50"));
    }
    let seed = a.seed.unwrap_or_else(rand::random);
    out.note(&format!("demo: seed {seed} (replay with --seed {seed})"));
    let tmp;
    let dir = match data_dir {
        Some(d) => d.to_path_buf(),
        None => {
            tmp = tempfile::Builder::new()
                .prefix("ackline-demo-")
                .tempdir()
                .context("creating a temporary data directory")?;
            tmp.path().to_path_buf()
        }
    };
    if dir.join("queues").join(config::DEFAULT_QUEUE).exists() || dir.join("records.db").exists() {
        return Err(usage(format!(
            "{} already holds a pipeline: give the demo a fresh --data-dir",
            dir.display()
        )));
    }
    let logs = dir.join("demo-logs");
    let runs_dir = dir.join("demo-runs");
    for d in [&logs, &runs_dir] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let loghub = traffic::loghub_dir();
    let lines = traffic::generate(a.lines, &mut rng, loghub.as_deref());
    out.note(&format!(
        "demo: {} lines in {} files ({}), strict parsing, {} kill -9, a {} ms store outage; data in {}",
        lines.len(),
        FILES.len(),
        if loghub.is_some() {
            "templates and loghub samples"
        } else {
            "built-in templates"
        },
        a.crashes,
        a.outage_ms,
        dir.display()
    ));
    let split = lines.len() * 9 / 10;
    let (first, last) = lines.split_at(split);
    let mut writer = Writer::create(&logs)?;
    let flags = flags(&logs);

    // Phase 1: the writer appends 90% of the traffic while `ackline run` children are killed.
    let (writer_tx, writer_rx) = std::sync::mpsc::channel::<()>();
    let first = first.to_vec();
    let writer_thread = std::thread::spawn(move || -> anyhow::Result<Writer> {
        for chunk in first.chunks(100) {
            writer.write(chunk)?;
            // Pacing, not synchronisation: traffic arrives over time, or until told to hurry.
            let _ = writer_rx.recv_timeout(Duration::from_millis(10));
        }
        Ok(writer)
    });
    let exe = std::env::current_exe().context("finding this executable")?;
    let args = child_args(&flags);
    let mut runs = Vec::new();
    let mut totals = RunTotals::default();
    let pb = out.progress(u64::from(a.crashes), "kill -9 runs");
    for run in 0..a.crashes {
        let _ = std::fs::remove_file(dir.join(pipeline::STATUS_FILE));
        let after = rng.random_range(a.max_kill_ms / 5..a.max_kill_ms);
        let stderr_path = runs_dir.join(format!("run-{run:02}.stderr"));
        let stderr = std::fs::File::create(&stderr_path)
            .with_context(|| format!("creating {}", stderr_path.display()))?;
        let mut child = Command::new(&exe)
            .arg("--data-dir")
            .arg(&dir)
            .arg("--config")
            .arg("/dev/null")
            .args(&args)
            .env_remove("ACKLINE_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting ackline run ({})", exe.display()))?;
        if let Some(st) = wait_until(&mut child, Instant::now() + Duration::from_millis(after))? {
            let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            bail!("ackline run {run} exited by itself ({st}): {}", err.trim());
        }
        child.kill().with_context(|| format!("killing run {run}"))?;
        child.wait().with_context(|| format!("reaping run {run}"))?;
        let last = read_status(&dir);
        if let Some(r) = &last {
            totals.redelivered += r.redelivered;
            totals.retried += r.retried;
            totals.duplicates += r.duplicates;
            totals.outages += r.store_outages;
        }
        runs.push(RunEnd {
            run,
            killed: true,
            kill_after_ms: Some(after),
            last_report: last,
        });
        pb.inc(1);
    }
    pb.finish_and_clear();
    let _ = writer_tx.send(());
    drop(writer_tx);
    let mut writer = match writer_thread.join() {
        Ok(w) => w?,
        Err(_) => bail!("the traffic writer thread panicked"),
    };

    // Phase 2: a last burst, then a final run in this process with a store outage.
    writer.write(last)?;
    let expected = std::mem::take(&mut writer.expected);
    drop(writer);
    let mut cfg = config::load(&dir, Some(Path::new("/dev/null")), &flags, &Env::empty())?;
    out.note(&format!(
        "demo: final run: store down for {} ms, then drain",
        a.outage_ms
    ));
    let rt = ackline_app::runtime::build()?;
    let timeout = Duration::from_secs(a.timeout);
    let outage = Duration::from_millis(a.outage_ms);
    // The outage is the demo's own: the final --once run must outlast it, however long.
    cfg.max_outage = cfg.max_outage.max(outage + timeout);
    let final_report = rt.block_on(async {
        let signal = ackline_app::signals::install()?;
        let store = Arc::new(FaultyStore::new(
            cfg.open_store().await?,
            "simulated outage (demo)",
        ));
        store.set_down(true);
        let outage_store = store.clone();
        tokio::spawn(async move {
            tokio::time::sleep(outage).await;
            outage_store.set_down(false);
        });
        let process = DemoFaults::new(parse_process(&cfg));
        let run = pipeline::run(&cfg, store, Arc::new(process), Mode::Once, signal, out);
        match tokio::time::timeout(timeout + outage, run).await {
            Ok(r) => r,
            Err(_) => bail!(
                "the final run did not drain within {} s (seed {seed}); data in {}",
                a.timeout,
                dir.display()
            ),
        }
    })?;
    drop(rt);
    totals.redelivered += final_report.redelivered;
    totals.retried += final_report.retried;
    totals.duplicates += final_report.duplicates;
    totals.outages += final_report.store_outages;
    runs.push(RunEnd {
        run: a.crashes,
        killed: false,
        kill_after_ms: None,
        last_report: Some(final_report),
    });

    let db_path = cfg.sqlite_path().context("the demo's store is SQLite")?;
    let books = books::check(
        &dir,
        &db_path,
        &cfg.store.table,
        &cfg.queue,
        &expected,
        totals,
    )?;
    let report = Report {
        seed,
        lines: expected.len() as u64,
        crashes: a.crashes,
        outage_ms: a.outage_ms,
        loghub_samples: loghub.is_some(),
        data_dir: dir.clone(),
        elapsed_ms: started.elapsed().as_millis() as u64,
        runs,
        books,
    };
    out.emit(&report, || human(&report))?;
    Unbalanced::check(&report.books.failures, &format!(" (seed {seed})"))
}

fn human(r: &Report) -> String {
    let b = &r.books;
    let kills: Vec<String> = r
        .runs
        .iter()
        .filter_map(|x| x.kill_after_ms.map(|ms| ms.to_string()))
        .collect();
    let mut s = format!(
        "demo: {} lines, {} kill -9 of `ackline run` (at {} ms), {} ms store outage, seed {}, {:.1} s\n",
        r.lines,
        kills.len(),
        kills.join(", "),
        r.outage_ms,
        r.seed,
        r.elapsed_ms as f64 / 1000.0
    );
    s += &format!(
        "  traffic: {} valid, {} flaky (fail once), {} poison (always fail), {} malformed\n",
        b.valid, b.flaky, b.poison, b.malformed
    );
    s += "books\n";
    let row = |name: &str, n: u64, note: &str| format!("  {name:<28} {n:>9}{note}\n");
    s += &row("published", b.published, "");
    s += &row("stored", b.stored, "");
    s += &row("dead-lettered", b.dead_lettered, "");
    for (reason, n) in &b.dead_lettered_by_reason {
        s += &format!("    {reason:<26} {n:>9}\n");
    }
    s += &row("redelivered", b.redelivered, "  (after kills; at least)");
    s += &row("retried", b.retried, "  (nacked with backoff)");
    s += &row(
        "already stored, skipped",
        b.duplicates_skipped,
        "  (idempotent store)",
    );
    s += &row(
        "store outages",
        b.store_outages,
        "  (workers paused, nothing dead-lettered)",
    );
    s += &row(
        "duplicates in the store",
        b.duplicates_in_store,
        "  (must be 0)",
    );
    s += &row(
        "ids dead-lettered twice",
        b.duplicates_in_dlq,
        "  (must be 0)",
    );
    s += &row("lost", b.lost, "  (must be 0)");
    s += &row("malformed stored", b.malformed_stored, "  (must be 0)");
    s += &row("pending at end", b.pending_at_end, "  (must be 0)");
    if b.stored_and_dead_lettered > 0 {
        s += &row(
            "stored and dead-lettered",
            b.stored_and_dead_lettered,
            "  (kills used up their attempts after the store had them)",
        );
    }
    if b.balanced {
        s += "the books balance\n";
    } else {
        s += &format!("THE BOOKS DO NOT BALANCE: {}\n", b.failures.join("; "));
        for id in &b.lost_examples {
            s += &format!("  lost: {id}\n");
        }
    }
    s
}
