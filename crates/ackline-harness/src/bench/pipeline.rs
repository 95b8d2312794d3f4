//! `ackline bench pipeline`: the all-in-one pipeline's end-to-end rate on real log lines,
//! beside the store's own limit measured in the same run.
//!
//! 1. The loghub samples (every `*.log` of the loghub directory, interleaved line by line and
//!    repeated) are written to one input file.
//! 2. End to end: `ackline run --once` on that file in a fresh data directory (file input →
//!    embedded queue, fsync before confirm → workers → SQLite, ack after commit), timed from
//!    start to the queue drained; every line must be stored.
//! 3. Bare insert: the records the run stored, read back from its store (not timed) and
//!    written in file order to a fresh SQLite store in batches of the same size, one
//!    transaction each, timed.
//!
//! Invariant: both sides store the same records (the file input's ids included, which are
//! longer than a synthetic id and cost the store's id index more) with the same store code and
//! durability, so the ratio isolates what the queue, the input and the workers cost.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ackline_app::cli::{PipelineFlags, WorkerFlags};
use ackline_app::config::{self, Env};
use ackline_app::output::Out;
use ackline_app::pipeline::Mode;
use ackline_app::run::{parse_process, run_with};
use ackline_parse::Record;
use ackline_store::{Query, SqliteStore, Store, StoreOptions};
use anyhow::{Context, anyhow};
use serde::Serialize;

use crate::cli::BenchPipelineArgs;
use crate::demo::pipeline::traffic::loghub_dir;

#[derive(Debug, Serialize)]
struct Report {
    lines: usize,
    input_bytes: u64,
    batch: usize,
    workers: usize,
    end_to_end_secs: f64,
    end_to_end_lines_per_sec: f64,
    bare_insert_secs: f64,
    bare_insert_records_per_sec: f64,
    ratio: f64,
    stored: u64,
}

/// The loghub mix: lines of every sample file, interleaved, repeated up to `n`.
fn mix(dir: &Path, n: usize) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    let mut per_file = Vec::new();
    for f in &files {
        let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        let lines: Vec<Vec<u8>> = bytes
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        if !lines.is_empty() {
            per_file.push(lines);
        }
    }
    let longest = per_file.iter().map(Vec::len).max().unwrap_or(0);
    let mut one_round = Vec::new();
    for i in 0..longest {
        for f in &per_file {
            if let Some(l) = f.get(i) {
                one_round.push(l.clone());
            }
        }
    }
    if one_round.is_empty() {
        return Err(anyhow!("no log lines found in {}", dir.display()));
    }
    Ok(one_round.iter().cycle().take(n).cloned().collect())
}

/// `ackline bench pipeline`.
pub fn run(a: &BenchPipelineArgs, out: Out) -> anyhow::Result<()> {
    let dir = loghub_dir().ok_or_else(|| {
        anyhow!("loghub samples not found: set ACKLINE_LOGHUB_DIR to shared/data/loghub")
    })?;
    let lines = mix(&dir, a.lines)?;
    let tmp = tempfile::tempdir().context("creating a temporary directory")?;
    let input = tmp.path().join("mix.log");
    {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(&input)
                .with_context(|| format!("creating {}", input.display()))?,
        );
        for l in &lines {
            f.write_all(l)?;
            f.write_all(b"\n")?;
        }
        f.flush()?;
    }
    let input_bytes = std::fs::metadata(&input)?.len();
    out.note(&format!(
        "{} lines ({} MB) of the loghub mix from {}",
        lines.len(),
        input_bytes / 1_000_000,
        dir.display()
    ));

    let rt = ackline_app::runtime::build()?;

    // End to end.
    let data_dir = tmp.path().join("data");
    let flags = PipelineFlags {
        inputs: vec![input.display().to_string()],
        worker: WorkerFlags {
            workers: Some(a.workers.to_string()),
            batch_size: Some(a.batch.to_string()),
            prefetch: Some((2 * a.batch).to_string()),
            ..WorkerFlags::default()
        },
        ..PipelineFlags::default()
    };
    let cfg = config::load(
        &data_dir,
        None,
        &flags,
        &Env {
            vars: Default::default(),
        },
    )?;
    let started = Instant::now();
    let report = rt.block_on(async {
        let (_tx, rx) = tokio::sync::watch::channel(false);
        run_with(&cfg, Mode::Once, parse_process(&cfg), rx, out).await
    })?;
    let e2e = started.elapsed().as_secs_f64();
    if report.stored < lines.len() as u64 {
        return Err(anyhow!(
            "end-to-end run stored {} of {} lines",
            report.stored,
            lines.len()
        ));
    }

    // Bare insert of the same records: those the run stored (ids, raw lines, timestamps and
    // all), read back and written in file order, so the two sides differ only in what lies
    // before the store.
    let records = rt.block_on(stored_in_file_order(&data_dir.join("records.db")))?;
    if records.len() != lines.len() {
        return Err(anyhow!(
            "read back {} records of {} lines",
            records.len(),
            lines.len()
        ));
    }
    let bare = rt.block_on(async {
        let store = SqliteStore::open(tmp.path().join("bare.db"), &StoreOptions::default())
            .await
            .context("opening the bare SQLite store")?;
        let started = Instant::now();
        for chunk in records.chunks(a.batch.max(1)) {
            store.write_batch(chunk).await.context("bare insert")?;
        }
        Ok::<_, anyhow::Error>(started.elapsed().as_secs_f64())
    })?;

    let n = lines.len() as f64;
    let r = Report {
        lines: lines.len(),
        input_bytes,
        batch: a.batch,
        workers: a.workers,
        end_to_end_secs: e2e,
        end_to_end_lines_per_sec: n / e2e,
        bare_insert_secs: bare,
        bare_insert_records_per_sec: n / bare,
        ratio: bare / e2e,
        stored: report.stored,
    };
    out.emit(&r, || {
        format!(
            "end to end (file → queue → workers → SQLite): {:>9.0} lines/s ({:.2} s)\n\
             bare batched SQLite insert, same records:   {:>9.0} records/s ({:.2} s)\n\
             end to end / bare insert: {:.0}%\n",
            r.end_to_end_lines_per_sec,
            r.end_to_end_secs,
            r.bare_insert_records_per_sec,
            r.bare_insert_secs,
            r.ratio * 100.0
        )
    })
}

/// Every record of the SQLite store at `path`, in the order of the file offsets their ids end
/// with (`file:…:<offset>`: the order the file input read them); a record whose id has no
/// offset goes last.
async fn stored_in_file_order(path: &Path) -> anyhow::Result<Vec<Record>> {
    let store = SqliteStore::open(path, &StoreOptions::default())
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let mut records = store
        .query(&Query::default())
        .await
        .with_context(|| format!("reading back {}", path.display()))?;
    records.sort_by_key(|r| file_offset(&r.id).unwrap_or(u64::MAX));
    Ok(records)
}

/// The offset a file input's message id ends with.
fn file_offset(id: &str) -> Option<u64> {
    id.rsplit(':').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::file_offset;

    #[test]
    fn the_file_offset_is_the_last_part_of_a_file_input_id() {
        assert_eq!(
            file_offset("file:2049:77:0123456789abcdef:0:12345"),
            Some(12_345)
        );
        assert_eq!(file_offset("file:2049:77:3:0"), Some(0));
        assert_eq!(file_offset("http:7f3a"), None);
        assert_eq!(file_offset(""), None);
    }
}
