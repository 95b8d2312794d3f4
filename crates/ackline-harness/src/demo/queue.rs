//! `ackline demo queue`: runs the worker ([`worker`], the hidden `ackline demo queue-worker`) as
//! a child process, kills it with SIGKILL at seeded random moments, restarts it, lets a final
//! run drain the queue, then checks the books ([`books`]).
//!
//! Invariants:
//! - Kill moments come from a generator seeded by `--seed` (random seed when absent, always
//!   reported), so a failing run can be replayed with the same seed. A kill moment counts from
//!   the run's first observed progress (its first journal line: a publish or a delivery), not
//!   from its spawn, so a slow start on a loaded machine cannot make a kill land before the
//!   run did anything; and a run is killed after a seeded number of journal lines if that
//!   comes first, so a fast machine cannot finish the work before the kills.
//! - Nothing waits unboundedly: a killed run is reaped after SIGKILL, a run has
//!   `--drain-timeout` to show progress, the final run has it to drain, and a run that fails
//!   by itself stops the demo with its stderr.
//! - Exit 0 only if the books balance; exit 3 (with the books printed) if they do not.

pub(crate) mod books;
pub(crate) mod journal;
pub(crate) mod worker;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ackline_app::exit::{Unbalanced, usage};
use ackline_app::output::Out;
use ackline_queue::Db;
use anyhow::{Context, bail};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::cli::DemoArgs;
use books::{Books, Final, RunEnd};
use worker::QUEUE;

#[derive(Debug, Serialize)]
struct Report {
    seed: u64,
    messages: u64,
    crashes: u32,
    data_dir: PathBuf,
    elapsed_ms: u64,
    runs: Vec<RunEnd>,
    books: Books,
}

struct Spawner {
    exe: PathBuf,
    data_dir: PathBuf,
    journal: PathBuf,
    messages: u64,
    seed: u64,
    consumers: usize,
}

impl Spawner {
    fn spawn(&self, run: u32) -> anyhow::Result<Child> {
        let stderr_path = self.journal.join(format!("run-{run:04}.stderr"));
        let stderr = std::fs::File::create(&stderr_path)
            .with_context(|| format!("creating {}", stderr_path.display()))?;
        Command::new(&self.exe)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["demo", "queue-worker"])
            .arg("--journal")
            .arg(&self.journal)
            .args(["--run", &run.to_string()])
            .args(["--messages", &self.messages.to_string()])
            .args(["--seed", &self.seed.to_string()])
            .args(["--consumers", &self.consumers.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting worker run {run} ({})", self.exe.display()))
    }

    fn stderr_of(&self, run: u32) -> String {
        let p = self.journal.join(format!("run-{run:04}.stderr"));
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }
}

/// Waits for a child process until `deadline`; `None` if it is still running then. (Shared
/// with the pipeline demo.)
pub(crate) fn wait_until(
    child: &mut Child,
    deadline: Instant,
) -> anyhow::Result<Option<std::process::ExitStatus>> {
    loop {
        if let Some(st) = child.try_wait().context("waiting for a child process")? {
            return Ok(Some(st));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(2)));
    }
}

/// How a run started.
enum Start {
    /// It journaled its first line.
    Progress,
    /// It exited before that.
    Exited(std::process::ExitStatus),
    /// Neither by the deadline.
    Stalled,
}

/// Whether run `run` wrote a journal line yet (any of its journal files is non-empty). The
/// journal's lines are written with write(2) as they happen, so they are visible here at once.
fn journaled(journal: &Path, run: u32) -> anyhow::Result<bool> {
    let prefix = format!("run-{run:04}-");
    let entries =
        std::fs::read_dir(journal).with_context(|| format!("reading {}", journal.display()))?;
    for e in entries {
        let e = e.with_context(|| format!("reading {}", journal.display()))?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix)
            && name.ends_with(".log")
            && e.metadata().is_ok_and(|m| m.len() > 0)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Journal lines run `run` has written so far (every line ends with a newline; a line being
/// written counts once it is whole).
fn journal_lines(journal: &Path, run: u32) -> anyhow::Result<u64> {
    let prefix = format!("run-{run:04}-");
    let mut n = 0;
    for e in std::fs::read_dir(journal).with_context(|| format!("reading {}", journal.display()))? {
        let e = e.with_context(|| format!("reading {}", journal.display()))?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix) && name.ends_with(".log") {
            let bytes = std::fs::read(e.path()).unwrap_or_default();
            n += bytes.iter().filter(|&&b| b == b'\n').count() as u64;
        }
    }
    Ok(n)
}

/// Waits for `child` until `deadline` or until run `run` journaled `lines` lines; `None` if it
/// is still running then.
fn wait_until_or_lines(
    child: &mut Child,
    journal: &Path,
    run: u32,
    deadline: Instant,
    lines: u64,
) -> anyhow::Result<Option<std::process::ExitStatus>> {
    loop {
        if let Some(st) = child.try_wait().context("waiting for a child process")? {
            return Ok(Some(st));
        }
        if Instant::now() >= deadline || journal_lines(journal, run)? >= lines {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until run `run` shows progress ([`journaled`]) or exits, until `deadline`.
fn wait_for_progress(
    child: &mut Child,
    journal: &Path,
    run: u32,
    deadline: Instant,
) -> anyhow::Result<Start> {
    loop {
        if let Some(st) = child.try_wait().context("waiting for a child process")? {
            return Ok(Start::Exited(st));
        }
        if journaled(journal, run)? {
            return Ok(Start::Progress);
        }
        if Instant::now() >= deadline {
            return Ok(Start::Stalled);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs the demo.
pub fn run(a: &DemoArgs, data_dir: Option<&Path>, out: Out) -> anyhow::Result<()> {
    if a.messages == 0 {
        return Err(usage("--messages must be at least 1"));
    }
    if a.max_kill_ms == 0 {
        return Err(usage("--max-kill-ms must be at least 1"));
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
    if dir.join("queues").join(QUEUE).exists() {
        return Err(usage(format!(
            "{} already holds a {QUEUE} queue: give the demo a fresh --data-dir",
            dir.display()
        )));
    }
    let journal = dir.join("demo-journal");
    std::fs::create_dir_all(&journal).with_context(|| format!("creating {}", journal.display()))?;
    let sp = Spawner {
        exe: std::env::current_exe().context("finding this executable")?,
        data_dir: dir.clone(),
        journal: journal.clone(),
        messages: a.messages,
        seed,
        consumers: a.consumers,
    };

    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut runs = Vec::new();
    let pb = out.progress(u64::from(a.crashes) + 1, "worker runs");
    for run in 0..a.crashes {
        let after = rng.random_range(0..a.max_kill_ms);
        let lines = rng.random_range(1..=a.max_kill_lines.max(1));
        let mut child = sp.spawn(run)?;
        let limit = Instant::now() + Duration::from_secs(a.drain_timeout);
        let mut progress_at = Instant::now();
        let exited = match wait_for_progress(&mut child, &journal, run, limit)? {
            Start::Progress => {
                progress_at = Instant::now();
                wait_until_or_lines(
                    &mut child,
                    &journal,
                    run,
                    progress_at + Duration::from_millis(after),
                    lines,
                )?
            }
            Start::Exited(st) => Some(st),
            Start::Stalled => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "worker run {run} showed no progress within {} s (seed {seed}): {}",
                    a.drain_timeout,
                    sp.stderr_of(run)
                );
            }
        };
        match exited {
            Some(st) if st.success() => runs.push(RunEnd {
                run,
                killed: false,
                kill_after_ms: None,
                exit_code: st.code(),
            }),
            Some(st) => bail!("worker run {run} failed ({st}): {}", sp.stderr_of(run)),
            None => {
                child
                    .kill()
                    .with_context(|| format!("killing worker run {run}"))?;
                child
                    .wait()
                    .with_context(|| format!("reaping worker run {run}"))?;
                runs.push(RunEnd {
                    run,
                    killed: true,
                    kill_after_ms: Some(progress_at.elapsed().as_millis() as u64),
                    exit_code: None,
                });
            }
        }
        pb.inc(1);
    }
    let last = a.crashes;
    let mut child = sp.spawn(last)?;
    match wait_until(
        &mut child,
        Instant::now() + Duration::from_secs(a.drain_timeout),
    )? {
        Some(st) if st.success() => runs.push(RunEnd {
            run: last,
            killed: false,
            kill_after_ms: None,
            exit_code: st.code(),
        }),
        Some(st) => bail!(
            "final worker run {last} failed ({st}): {}",
            sp.stderr_of(last)
        ),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "final worker run {last} did not drain the queue within {} s (seed {seed}); journal in {}",
                a.drain_timeout,
                journal.display()
            );
        }
    }
    pb.finish_and_clear();

    let fin = final_state(&dir)?;
    let books = books::check(a.messages, &journal, &runs, &fin)?;
    let report = Report {
        seed,
        messages: a.messages,
        crashes: a.crashes,
        data_dir: dir.clone(),
        elapsed_ms: started.elapsed().as_millis() as u64,
        runs,
        books,
    };
    out.emit(&report, || human(&report))?;
    Unbalanced::check(&report.books.failures, &format!(" (seed {seed})"))
}

fn final_state(dir: &Path) -> anyhow::Result<Final> {
    let db = Db::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    let q = db
        .queue(QUEUE, worker::queue_options())
        .with_context(|| format!("opening queue {QUEUE}"))?;
    let s = q.stats();
    let mut fin = Final {
        pending: s.pending,
        next_seq: s.next_seq,
        ..Final::default()
    };
    let mut after = None;
    loop {
        let page = q
            .dead_letters()
            .list(after, 1000)
            .context("listing the dead-letter queue")?;
        let Some(last) = page.last() else { break };
        after = Some(last.key);
        for d in page {
            fin.dead.insert(d.id, (d.reason, d.attempts));
        }
    }
    drop(q);
    db.close();
    Ok(fin)
}

fn human(r: &Report) -> String {
    let b = &r.books;
    let k: Vec<String> = r
        .runs
        .iter()
        .filter_map(|x| x.kill_after_ms.map(|ms| format!("{ms}")))
        .collect();
    let mut s = String::new();
    s += &format!(
        "demo: {} messages, {} kill -9 (seed {}), {} worker runs, {:.1} s, data in {}\n",
        r.messages,
        k.len(),
        r.seed,
        r.runs.len(),
        r.elapsed_ms as f64 / 1000.0,
        r.data_dir.display()
    );
    s += &format!("  kill moments (ms after start): {}\n", k.join(" "));
    s += "books\n";
    s += &format!(
        "  published (confirmed)        {:>9}\n",
        b.published_confirmed
    );
    s += &format!(
        "  published (confirm lost)     {:>9}\n",
        b.published_unconfirmed_delivered
    );
    s += &format!("  acked                        {:>9}\n", b.acked);
    s += &format!(
        "  acked (confirm lost in kill) {:>9}\n",
        b.acked_confirmation_lost
    );
    s += &format!("  dead-lettered                {:>9}\n", b.dead_lettered);
    for (reason, n) in &b.dead_lettered_by_reason {
        s += &format!("    {reason:<26} {n:>9}\n");
    }
    s += &format!("  pending at end               {:>9}\n", b.pending_at_end);
    s += &format!("  redelivered                  {:>9}\n", b.redelivered);
    s += &format!(
        "  duplicates processed         {:>9}  (at-least-once: allowed)\n",
        b.duplicates_processed
    );
    s += &format!(
        "  duplicates after fencing     {:>9}  (must be 0)\n",
        b.duplicates_after_fencing
    );
    s += &format!(
        "  lost                         {:>9}  (must be 0)\n",
        b.lost
    );
    s += &format!(
        "  attempt regressions          {:>9}  (must be 0)\n",
        b.attempt_regressions
    );
    s += &format!(
        "  restart checks               {:>9}  ({} failed)\n",
        b.restart_checks, b.restart_check_failures
    );
    let rc = &b.recovery;
    s += &format!(
        "recovery: {} runs reported, {:.2}/{:.2}/{:.2} ms (min/median/max), {} torn tails truncated, {} corrupt ranges\n",
        rc.runs_reported,
        rc.micros_min as f64 / 1000.0,
        rc.micros_median as f64 / 1000.0,
        rc.micros_max as f64 / 1000.0,
        rc.torn_tails_truncated,
        rc.corrupt_ranges
    );
    for d in &rc.damage {
        s += &format!("  {d}\n");
    }
    if b.balanced {
        s += "the books balance\n";
    } else {
        s += &format!("THE BOOKS DO NOT BALANCE: {}\n", b.failures.join("; "));
        for id in &b.lost_ids {
            s += &format!("  lost: {id}\n");
        }
        for e in b
            .attempt_regression_examples
            .iter()
            .chain(&b.restart_failure_examples)
        {
            s += &format!("  {e}\n");
        }
    }
    s
}
