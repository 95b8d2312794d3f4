//! The demo's books: reads every journal the workers left, the queue's final state, and
//! decides whether every confirmed publish is accounted for.
//!
//! Rules (each a check that can fail):
//! - **lost**: an id whose publish was confirmed (`P`) and that, after the final draining run,
//!   is neither confirmed acked (`A`), nor in the dead-letter queue, nor pending. The one
//!   ambiguity a kill leaves is allowed for precisely: an ack intent (`I`) in the last,
//!   unfinished cycle of a consumer of a killed run, whose commit may have become durable just
//!   before the kill; such an id is counted as `acked_confirmation_lost`, not lost. Any other
//!   unaccounted id is lost.
//! - **duplicates after fencing**: an id with two confirmed acks (an ack that succeeded twice).
//! - **acked and dead-lettered**: an id both confirmed acked and in the dead-letter queue.
//! - **rejects missing**: a confirmed reject whose id is not in the dead-letter queue.
//! - **attempt regressions**: an id delivered with an attempt not above every attempt it had
//!   in earlier runs, or with the same attempt twice.
//! - **restart checks**: at each restart whose start record survived, every confirmed
//!   publish of earlier runs is below the recovered `next_seq`, and the confirmed publishes not
//!   yet (possibly) acked number at most `pending + dead_letters` (a counting bound: the queue
//!   cannot list pending ids without delivering them).
//! - journal lines failing their check anywhere but at a file's end, and messages still
//!   pending after the draining run, also unbalance the books.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use super::journal::{self, Kind};
use super::worker::StartInfo;

/// How one worker run ended.
#[derive(Debug, Clone, Serialize)]
pub struct RunEnd {
    /// The run number.
    pub run: u32,
    /// Killed with SIGKILL (as opposed to exiting by itself).
    pub killed: bool,
    /// Milliseconds after the run's first journal line (its first publish or delivery) at
    /// which it was killed (the seeded kill moment).
    pub kill_after_ms: Option<u64>,
    /// Its exit code when it exited by itself.
    pub exit_code: Option<i32>,
}

/// The final state of the queue, read by the parent after the last run.
#[derive(Debug, Clone, Default)]
pub struct Final {
    /// Pending messages.
    pub pending: u64,
    /// Next queue position.
    pub next_seq: u64,
    /// Dead-letter entries: message id to (reason, attempts).
    pub dead: HashMap<String, (String, u32)>,
}

/// Recovery figures over all runs whose start record survived.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecoverySummary {
    /// Runs whose start record was found.
    pub runs_reported: u64,
    /// Recovery time reported by the engine, microseconds: min, median, max.
    pub micros_min: u64,
    /// Median.
    pub micros_median: u64,
    /// Max.
    pub micros_max: u64,
    /// Time to open the directory and the queue, microseconds, max.
    pub open_micros_max: u64,
    /// Torn tails truncated, over all runs.
    pub torn_tails_truncated: u64,
    /// Damaged ranges skipped, over all runs (should be 0 after kill -9).
    pub corrupt_ranges: u64,
    /// The damage reports themselves.
    pub damage: Vec<String>,
    /// Checkpoints found unusable.
    pub checkpoint_errors: Vec<String>,
}

/// The books.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Books {
    /// Messages the demo set out to publish.
    pub messages: u64,
    /// Distinct ids whose publish was confirmed (journaled after `publish` returned Ok).
    pub published_confirmed: u64,
    /// Ids delivered whose publish confirmation was lost in a crash (durable, not journaled).
    pub published_unconfirmed_delivered: u64,
    /// Distinct ids with a confirmed ack.
    pub acked: u64,
    /// Ids whose ack was sent but whose confirmation was lost in a kill, and which were
    /// neither redelivered nor pending: the ack became durable.
    pub acked_confirmation_lost: u64,
    /// Dead-letter entries at the end.
    pub dead_lettered: u64,
    /// Dead-letter entries by reason.
    pub dead_lettered_by_reason: BTreeMap<String, u64>,
    /// Deliveries with attempt above 1.
    pub redelivered: u64,
    /// Deliveries of an id after an earlier delivery of it was acked (work done twice:
    /// allowed, delivery is at-least-once).
    pub duplicates_processed: u64,
    /// Ids with two confirmed acks (must be 0).
    pub duplicates_after_fencing: u64,
    /// Ids both confirmed acked and dead-lettered (must be 0).
    pub acked_and_dead_lettered: u64,
    /// Confirmed rejects not in the dead-letter queue (must be 0).
    pub rejects_missing_from_dlq: u64,
    /// Confirmed publishes unaccounted for (must be 0).
    pub lost: u64,
    /// Up to 20 of the lost ids.
    pub lost_ids: Vec<String>,
    /// Pending after the draining run (must be 0).
    pub pending_at_end: u64,
    /// Ids whose attempts went backwards or repeated (must be 0).
    pub attempt_regressions: u64,
    /// Up to 20 examples.
    pub attempt_regression_examples: Vec<String>,
    /// Restarts checked against their start record.
    pub restart_checks: u64,
    /// Restart checks that failed (must be 0).
    pub restart_check_failures: u64,
    /// Up to 20 failure descriptions.
    pub restart_failure_examples: Vec<String>,
    /// Runs that received at least one delivery (kills that hit a worker under load).
    pub runs_with_deliveries: u64,
    /// Runs that confirmed at least one publish.
    pub runs_with_publishes: u64,
    /// Journal files whose torn last line was ignored.
    pub journal_torn_tails: u64,
    /// Journal lines failing their check before the end of a file (must be 0).
    pub journal_corrupt_lines: u64,
    /// Recovery figures.
    pub recovery: RecoverySummary,
    /// Every check held.
    pub balanced: bool,
    /// The failed checks, named.
    pub failures: Vec<String>,
}

struct FileLines {
    run: u32,
    consumer: bool,
    entries: Vec<journal::Entry>,
}

fn list_journal(dir: &Path) -> anyhow::Result<(Vec<FileLines>, Vec<StartInfo>, u64, u64)> {
    let mut files = Vec::new();
    let mut starts = Vec::new();
    let (mut torn, mut corrupt) = (0, 0);
    let rd = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    for name in names {
        let Some(rest) = name.strip_prefix("run-") else {
            continue;
        };
        let Some(run) = rest.get(..4).and_then(|r| r.parse::<u32>().ok()) else {
            continue;
        };
        let path = dir.join(&name);
        if name.ends_with("-start.json") {
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let info: StartInfo = serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing {}", path.display()))?;
            starts.push(info);
        } else if name.ends_with(".log") {
            let r = journal::read(&path)?;
            torn += u64::from(r.torn_tail);
            corrupt += r.corrupt;
            files.push(FileLines {
                run,
                consumer: name.contains("-consumer-"),
                entries: r.entries,
            });
        }
    }
    files.sort_by_key(|f| f.run);
    Ok((files, starts, torn, corrupt))
}

fn examples(v: &mut Vec<String>, s: String) {
    if v.len() < 20 {
        v.push(s);
    }
}

/// Checks the books from the journal directory, the runs and the final queue state.
pub fn check(
    messages: u64,
    journal_dir: &Path,
    runs: &[RunEnd],
    fin: &Final,
) -> anyhow::Result<Books> {
    let (files, mut starts, torn, corrupt) = list_journal(journal_dir)?;
    let killed: HashSet<u32> = runs.iter().filter(|r| r.killed).map(|r| r.run).collect();
    let mut b = Books {
        messages,
        journal_torn_tails: torn,
        journal_corrupt_lines: corrupt,
        pending_at_end: fin.pending,
        ..Books::default()
    };

    let mut published: HashMap<String, u32> = HashMap::new(); // id -> run
    let mut acked: HashMap<String, u32> = HashMap::new(); // id -> confirmed acks
    let mut acked_run: HashMap<String, u32> = HashMap::new();
    let mut rejected: HashSet<String> = HashSet::new();
    let mut ambiguous: HashMap<String, u32> = HashMap::new(); // id -> run
    let mut deliveries: HashMap<String, Vec<(u32, u32)>> = HashMap::new();
    let mut ack_intents: HashSet<(String, u32)> = HashSet::new();
    let mut runs_d: HashSet<u32> = HashSet::new();
    let mut runs_p: HashSet<u32> = HashSet::new();
    for f in &files {
        if f.entries.iter().any(|e| e.kind == Kind::Delivered) {
            runs_d.insert(f.run);
        }
        if f.entries.iter().any(|e| e.kind == Kind::Published) {
            runs_p.insert(f.run);
        }
        let last_confirm = f
            .entries
            .iter()
            .rposition(|e| matches!(e.kind, Kind::Acked | Kind::Rejected));
        for (i, e) in f.entries.iter().enumerate() {
            match e.kind {
                Kind::Published => {
                    published.entry(e.id.clone()).or_insert(f.run);
                }
                Kind::Delivered => {
                    deliveries
                        .entry(e.id.clone())
                        .or_default()
                        .push((f.run, e.attempt));
                    if e.attempt > 1 {
                        b.redelivered += 1;
                    }
                }
                Kind::AckIntent => {
                    ack_intents.insert((e.id.clone(), e.attempt));
                    let trailing = last_confirm.is_none_or(|l| i > l);
                    if f.consumer && trailing && killed.contains(&f.run) {
                        ambiguous.insert(e.id.clone(), f.run);
                    }
                }
                Kind::Acked => {
                    *acked.entry(e.id.clone()).or_default() += 1;
                    acked_run.entry(e.id.clone()).or_insert(f.run);
                }
                Kind::Rejected => {
                    rejected.insert(e.id.clone());
                }
                Kind::RejectIntent | Kind::Nacked => {}
            }
        }
    }

    b.runs_with_deliveries = runs_d.len() as u64;
    b.runs_with_publishes = runs_p.len() as u64;
    b.published_confirmed = published.len() as u64;
    b.published_unconfirmed_delivered = deliveries
        .keys()
        .filter(|id| !published.contains_key(*id))
        .count() as u64;
    b.acked = acked.len() as u64;
    b.dead_lettered = fin.dead.len() as u64;
    for (reason, _) in fin.dead.values() {
        *b.dead_lettered_by_reason.entry(reason.clone()).or_default() += 1;
    }
    b.duplicates_after_fencing = acked.values().filter(|&&n| n > 1).count() as u64;
    b.acked_and_dead_lettered = acked.keys().filter(|id| fin.dead.contains_key(*id)).count() as u64;
    b.rejects_missing_from_dlq = rejected
        .iter()
        .filter(|id| !fin.dead.contains_key(*id))
        .count() as u64;

    let mut lost: Vec<&String> = Vec::new();
    for id in published.keys() {
        if acked.contains_key(id) || fin.dead.contains_key(id) {
            continue;
        }
        if ambiguous.contains_key(id) {
            b.acked_confirmation_lost += 1;
            continue;
        }
        if fin.pending == 0 {
            lost.push(id);
        }
    }
    lost.sort_by_key(|id| id.strip_prefix("m-").and_then(|n| n.parse::<u64>().ok()));
    b.lost = lost.len() as u64;
    b.lost_ids = lost.iter().take(20).map(|s| s.to_string()).collect();

    for (id, ds) in &mut deliveries {
        ds.sort(); // by run, then attempt
        let mut bad = false;
        for w in ds.windows(2) {
            if w[1].1 <= w[0].1 {
                bad = true;
                examples(
                    &mut b.attempt_regression_examples,
                    format!(
                        "{id}: attempt {} (run {}) then {} (run {})",
                        w[0].1, w[0].0, w[1].1, w[1].0
                    ),
                );
            }
        }
        b.attempt_regressions += u64::from(bad);
        let mut after_ack = false;
        for (_, attempt) in ds.iter() {
            if after_ack {
                b.duplicates_processed += 1;
            }
            after_ack |= ack_intents.contains(&(id.clone(), *attempt));
        }
    }

    starts.sort_by_key(|s| s.run);
    for s in &starts {
        if s.run == 0 {
            continue;
        }
        b.restart_checks += 1;
        let earlier = |run: u32| run < s.run;
        let mut max_pos = None;
        let mut open = 0u64;
        for (id, &run) in &published {
            if !earlier(run) {
                continue;
            }
            let pos = id.strip_prefix("m-").and_then(|n| n.parse::<u64>().ok());
            max_pos = max_pos.max(pos);
            let done = acked_run.get(id).is_some_and(|&r| earlier(r))
                || ambiguous.get(id).is_some_and(|&r| earlier(r));
            open += u64::from(!done);
        }
        if let Some(p) = max_pos
            && p >= s.next_seq
        {
            b.restart_check_failures += 1;
            examples(
                &mut b.restart_failure_examples,
                format!(
                    "run {}: confirmed publish m-{p} but recovered next_seq {}",
                    s.run, s.next_seq
                ),
            );
        }
        if open > s.pending + s.dead_letters {
            b.restart_check_failures += 1;
            examples(
                &mut b.restart_failure_examples,
                format!(
                    "run {}: {open} confirmed publishes not acked before it, but only {} pending + {} dead-lettered",
                    s.run, s.pending, s.dead_letters
                ),
            );
        }
    }

    let mut micros: Vec<u64> = starts.iter().map(|s| s.recovery_micros).collect();
    micros.sort_unstable();
    b.recovery = RecoverySummary {
        runs_reported: starts.len() as u64,
        micros_min: micros.first().copied().unwrap_or(0),
        micros_median: micros.get(micros.len() / 2).copied().unwrap_or(0),
        micros_max: micros.last().copied().unwrap_or(0),
        open_micros_max: starts.iter().map(|s| s.open_micros).max().unwrap_or(0),
        torn_tails_truncated: starts.iter().map(|s| s.truncated.len() as u64).sum(),
        corrupt_ranges: starts.iter().map(|s| s.corrupt.len() as u64).sum(),
        damage: starts
            .iter()
            .flat_map(|s| {
                s.truncated
                    .iter()
                    .chain(&s.corrupt)
                    .map(move |d| format!("run {}: {d}", s.run))
            })
            .take(20)
            .collect(),
        checkpoint_errors: starts
            .iter()
            .filter_map(|s| s.checkpoint_error.clone())
            .collect(),
    };

    let mut fail = |cond: bool, what: String| {
        if cond {
            b.failures.push(what);
        }
    };
    fail(b.lost > 0, format!("{} confirmed publishes lost", b.lost));
    fail(
        b.duplicates_after_fencing > 0,
        format!(
            "{} ids acked successfully twice",
            b.duplicates_after_fencing
        ),
    );
    fail(
        b.acked_and_dead_lettered > 0,
        format!(
            "{} ids both acked and dead-lettered",
            b.acked_and_dead_lettered
        ),
    );
    fail(
        b.rejects_missing_from_dlq > 0,
        format!(
            "{} confirmed rejects missing from the dead-letter queue",
            b.rejects_missing_from_dlq
        ),
    );
    fail(
        b.attempt_regressions > 0,
        format!(
            "{} ids with attempts going backwards or repeating",
            b.attempt_regressions
        ),
    );
    fail(
        b.restart_check_failures > 0,
        format!("{} restart checks failed", b.restart_check_failures),
    );
    fail(
        b.journal_corrupt_lines > 0,
        format!("{} corrupt journal lines", b.journal_corrupt_lines),
    );
    fail(
        b.pending_at_end > 0,
        format!(
            "{} messages still pending after the draining run",
            b.pending_at_end
        ),
    );
    fail(
        fin.next_seq != messages,
        format!(
            "queue ended at position {} but {messages} messages were to be published",
            fin.next_seq
        ),
    );
    b.balanced = b.failures.is_empty();
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::queue::journal::Writer;

    fn write(dir: &Path, run: u32, thread: &str, lines: &[(Kind, &str, u32)]) {
        let mut w = Writer::create(journal::path(dir, run, thread)).unwrap();
        for (k, id, a) in lines {
            w.push(*k, id, *a);
        }
        w.sync().unwrap();
    }

    fn runs(killed: &[u32], last: u32) -> Vec<RunEnd> {
        (0..=last)
            .map(|run| RunEnd {
                run,
                killed: killed.contains(&run),
                kill_after_ms: None,
                exit_code: None,
            })
            .collect()
    }

    fn fin(next_seq: u64, dead: &[(&str, &str)]) -> Final {
        Final {
            pending: 0,
            next_seq,
            dead: dead
                .iter()
                .map(|(id, r)| (id.to_string(), (r.to_string(), 1)))
                .collect(),
        }
    }

    use Kind::*;

    #[test]
    fn clean_books_balance() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            0,
            "producer",
            &[(Published, "m-0", 0), (Published, "m-1", 0)],
        );
        write(
            d.path(),
            0,
            "consumer-0",
            &[
                (Delivered, "m-0", 1),
                (AckIntent, "m-0", 1),
                (Delivered, "m-1", 1),
                (RejectIntent, "m-1", 1),
                (Acked, "m-0", 1),
                (Rejected, "m-1", 1),
            ],
        );
        let b = check(
            2,
            d.path(),
            &runs(&[], 0),
            &fin(2, &[("m-1", "poison payload")]),
        )
        .unwrap();
        assert!(b.balanced, "{:?}", b.failures);
        assert_eq!((b.acked, b.dead_lettered, b.lost), (1, 1, 0));
    }

    #[test]
    fn a_confirmed_publish_that_vanished_is_lost() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            0,
            "producer",
            &[(Published, "m-0", 0), (Published, "m-1", 0)],
        );
        write(
            d.path(),
            0,
            "consumer-0",
            &[
                (Delivered, "m-0", 1),
                (AckIntent, "m-0", 1),
                (Acked, "m-0", 1),
            ],
        );
        let b = check(2, d.path(), &runs(&[], 0), &fin(2, &[])).unwrap();
        assert!(!b.balanced);
        assert_eq!(b.lost, 1);
        assert_eq!(b.lost_ids, vec!["m-1".to_string()]);
    }

    #[test]
    fn an_unconfirmed_ack_counts_only_at_the_end_of_a_killed_run() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), 0, "producer", &[(Published, "m-0", 0)]);
        write(
            d.path(),
            0,
            "consumer-0",
            &[(Delivered, "m-0", 1), (AckIntent, "m-0", 1)],
        );
        let killed = check(1, d.path(), &runs(&[0], 0), &fin(1, &[])).unwrap();
        assert!(killed.balanced, "{:?}", killed.failures);
        assert_eq!(killed.acked_confirmation_lost, 1);
        // The same journal from a run that exited by itself: the ack was never confirmed.
        let clean = check(1, d.path(), &runs(&[], 0), &fin(1, &[])).unwrap();
        assert_eq!(clean.lost, 1);
    }

    #[test]
    fn double_acks_attempt_regressions_and_bad_restarts_are_caught() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            0,
            "producer",
            &[(Published, "m-0", 0), (Published, "m-1", 0)],
        );
        write(
            d.path(),
            0,
            "consumer-0",
            &[
                (Delivered, "m-0", 2),
                (AckIntent, "m-0", 2),
                (Acked, "m-0", 2),
            ],
        );
        write(
            d.path(),
            1,
            "consumer-0",
            &[
                (Delivered, "m-0", 2),
                (AckIntent, "m-0", 2),
                (Acked, "m-0", 2),
            ],
        );
        let start = StartInfo {
            run: 1,
            recovery_micros: 1,
            open_micros: 1,
            records_replayed: 0,
            from_checkpoint: false,
            truncated: vec![],
            corrupt: vec![],
            checkpoint_error: None,
            pending: 0,
            dead_letters: 0,
            next_seq: 1, // m-1 was confirmed, so next_seq must be above 1
        };
        std::fs::write(
            d.path().join("run-0001-start.json"),
            serde_json::to_vec(&start).unwrap(),
        )
        .unwrap();
        let b = check(
            2,
            d.path(),
            &runs(&[0], 1),
            &fin(2, &[("m-1", "poison payload")]),
        )
        .unwrap();
        assert!(!b.balanced);
        assert_eq!(b.duplicates_after_fencing, 1);
        assert_eq!(b.attempt_regressions, 1);
        assert_eq!(b.duplicates_processed, 1);
        assert_eq!(b.restart_checks, 1);
        assert_eq!(
            b.restart_check_failures, 2,
            "{:?}",
            b.restart_failure_examples
        );
    }
}
