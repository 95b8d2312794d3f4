//! Torn and corrupt data files: recovery behaves as `docs/queue-format.md` says.
//!
//! The log is written on a [`SimFs`] and the disk captured as after a crash (no clean close,
//! so no final checkpoint covers the damage); then it is cut or flipped and recovered.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use ackline_queue::sim::{SimFs, Torn};
use ackline_queue::{DeadLetter, QueueOptions, RecoveryReport};

use crate::common::{Env, LEASE, msgs};

const N: usize = 12;

fn opts() -> QueueOptions {
    QueueOptions {
        checkpoint_bytes: 1 << 30, // no checkpoint: recovery replays the damaged log
        ..Default::default()
    }
}

/// Publishes N messages one per batch; returns the crashed disk and its only segment.
fn written() -> (SimFs, PathBuf, Env) {
    let sim = SimFs::new();
    let env = Env::with_fs(Arc::new(sim.clone()));
    let (db, q) = env.open(opts());
    for i in 0..N {
        q.publish(msgs(i..i + 1)).unwrap();
    }
    let disk = sim.power_loss(Torn::All);
    drop(q);
    drop(db);
    let seg = disk
        .files()
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    (disk, seg, env)
}

/// Recovers a copy of `disk` and returns the ids deliverable, the report and the dead letters.
fn recover(disk: &SimFs, env: &Env) -> (Vec<String>, RecoveryReport, Vec<DeadLetter>) {
    let fs = disk.power_loss(Torn::None); // an exact copy
    let env = Env {
        fs: Arc::new(fs),
        dir: tempfile::tempdir().unwrap(),
        clock: env.clock.clone(),
    };
    // The copy keeps the original paths, so open under the original directory name.
    let _ = env.dir.path();
    let db = ackline_queue::Db::open_with(
        disk_root(disk),
        ackline_queue::DbOptions {
            fs: env.fs.clone(),
            clock: Arc::new(env.clock.clone()),
        },
    )
    .unwrap();
    let q = db.queue("q", opts()).unwrap();
    let c = q.consumer();
    let ids = c
        .try_receive(1000, LEASE)
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    let dead = q.dead_letters().list(None, 100).unwrap();
    (ids, q.recovery_report().clone(), dead)
}

fn disk_root(disk: &SimFs) -> PathBuf {
    let seg = disk
        .files()
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    // <root>/queues/q/<segment>
    seg.parent()
        .and_then(|p| p.parent())
        .and_then(|p| p.parent())
        .unwrap()
        .to_path_buf()
}

#[test]
fn a_torn_tail_is_truncated_at_every_byte_offset() {
    let (disk, seg, env) = written();
    let data = disk.contents(&seg).unwrap();
    let (all, report, dead) = recover(&disk, &env);
    assert_eq!(all.len(), N);
    assert!(report.truncated.is_empty() && report.corrupt.is_empty());
    assert!(dead.is_empty());
    // Cut anywhere inside the last three records.
    let per_record = (data.len() - 32) / N;
    let mut prev = 0;
    for cut in data.len() - 3 * per_record - 3..=data.len() {
        let cut_disk = disk.power_loss(Torn::None);
        cut_disk.set_contents(&seg, data[..cut].to_vec());
        let (ids, report, dead) = recover(&cut_disk, &env);
        assert!(
            dead.is_empty(),
            "cut at {cut}: a torn tail was never confirmed, nothing to dead-letter: {dead:?}"
        );
        let expect: Vec<String> = (0..ids.len()).map(|i| format!("m-{i}")).collect();
        assert_eq!(ids, expect, "cut at {cut}: a prefix must survive");
        assert!(
            ids.len() >= prev,
            "cut at {cut}: fewer messages than a shorter cut"
        );
        assert!(
            ids.len() >= N - 4,
            "cut at {cut}: lost more than the torn records"
        );
        prev = ids.len();
        assert!(
            report.corrupt.is_empty(),
            "cut at {cut}: {:?}",
            report.corrupt
        );
        if let Some(t) = report.truncated.first() {
            assert_eq!(t.file, seg);
            assert!(t.offset as usize <= cut && t.offset as usize + t.len as usize == cut);
        }
        // Truncation is durable: a second recovery of the same disk finds nothing to cut.
        let fs2 = cut_disk.clone();
        let _ = recover(&cut_disk, &env);
        let _ = fs2;
    }
    assert_eq!(prev, N);
}

#[test]
fn a_flipped_byte_in_the_middle_is_reported_and_the_rest_served() {
    let (disk, seg, env) = written();
    let data = disk.contents(&seg).unwrap();
    let per_record = (data.len() - 32) / N;
    // Every byte of the 5th record, one at a time.
    let start = 32 + 4 * per_record;
    let mut reported = BTreeSet::new();
    for i in start..start + per_record {
        let d = disk.power_loss(Torn::None);
        let mut bad = data.clone();
        bad[i] ^= 0x5A;
        d.set_contents(&seg, bad);
        let (ids, report, dead) = recover(&d, &env);
        assert!(
            report.truncated.is_empty(),
            "flip at {i}: the tail is intact, nothing to cut"
        );
        assert_eq!(
            dead.iter()
                .map(|d| (d.key, d.reason.as_str()))
                .collect::<Vec<_>>(),
            [(4, "corrupt")],
            "flip at {i}: the damaged message is dead-lettered as corrupt, not dropped"
        );
        assert!(
            dead[0].last_error.contains(&seg.display().to_string()),
            "flip at {i}: the entry names the file: {}",
            dead[0].last_error
        );
        assert!(
            report.corrupt[0]
                .copy
                .as_ref()
                .is_some_and(|p| p.parent().is_some_and(|q| q.ends_with("quarantine"))),
            "flip at {i}: the damaged bytes are kept in quarantine: {:?}",
            report.corrupt
        );
        assert_eq!(report.corrupt.len(), 1, "flip at {i}: {:?}", report.corrupt);
        let c = &report.corrupt[0];
        assert_eq!(c.file, seg);
        assert_eq!(report.lost_messages, 1);
        assert!(
            c.offset as usize <= i && i < c.offset as usize + c.len as usize,
            "flip at {i}: {c}"
        );
        let expect: Vec<String> = (0..N)
            .filter(|&k| k != 4)
            .map(|k| format!("m-{k}"))
            .collect();
        assert_eq!(
            ids, expect,
            "flip at {i}: only the damaged record is missing"
        );
        reported.insert(c.offset);
    }
    assert_eq!(
        reported.len(),
        1,
        "the damage is always located at the record's start"
    );
}

#[test]
fn a_damaged_checkpoint_falls_back_to_replaying_the_log() {
    let sim = SimFs::new();
    let env = Env::with_fs(Arc::new(sim.clone()));
    {
        let (db, q) = env.open(QueueOptions::default());
        q.publish(msgs(0..5)).unwrap();
        let c = q.consumer();
        let d = c.try_receive(1, LEASE).unwrap().remove(0);
        c.ack(d.tag).unwrap().wait().unwrap();
        drop(c);
        drop(q);
        db.close(); // writes a checkpoint
    }
    let ckpt = sim
        .files()
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n == "checkpoint"))
        .expect("a clean close writes a checkpoint");
    let mut bytes = sim.contents(&ckpt).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    sim.set_contents(&ckpt, bytes);
    let (_db, q) = env.open(QueueOptions::default());
    let report = q.recovery_report();
    assert!(!report.from_checkpoint);
    assert!(
        report
            .checkpoint_error
            .as_deref()
            .is_some_and(|e| e.contains("checksum")),
        "{report:?}"
    );
    let c = q.consumer();
    let ids: Vec<String> = c
        .try_receive(10, LEASE)
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, ["m-1", "m-2", "m-3", "m-4"]);
}
