//! Damage past a clean crash (issue 10): flipped bytes in real segment and checkpoint files,
//! failing reads, the relaxed fsync modes, read-only inspection, forged tags and repeated
//! ids. Each test states the failure it guards against.
//!
//! "Crashed copy": the data directory is copied while the queue is still open, after its
//! publishes were confirmed (so fsynced); the copy is what a kill -9 at that moment leaves
//! (no final checkpoint), and the original stays untouched.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ackline_queue::sim::{SimFs, Torn};
use ackline_queue::{
    Db, DbOptions, DeadLetter, Fsync, OpenError, QueueError, QueueOptions, SettleError, Tag,
};

use crate::common::{Env, LEASE, msgs, open_db, segments};

/// No checkpoint during the test's writes: recovery replays the (damaged) log.
fn no_checkpoint() -> QueueOptions {
    QueueOptions {
        checkpoint_bytes: 1 << 30,
        ..Default::default()
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// Publishes `n` messages (one batch of 100 at a time) under `opts`, then returns a crashed
/// copy of the data directory.
fn crashed_copy(n: usize, opts: QueueOptions) -> tempfile::TempDir {
    let env = Env::new();
    let (db, q) = env.open(opts);
    for start in (0..n).step_by(100) {
        q.publish(msgs(start..(start + 100).min(n))).unwrap();
    }
    let copy = tempfile::tempdir().unwrap();
    copy_dir(env.dir.path(), copy.path());
    drop(q);
    drop(db);
    copy
}

/// Frame offsets of a segment's records (walking lengths from the header on).
fn frames(seg: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut p = 32;
    while p + 9 <= seg.len() {
        let len = u32::from_le_bytes(seg[p + 4..p + 8].try_into().unwrap()) as usize;
        out.push((p, 9 + len));
        p += 9 + len;
    }
    out
}

fn open(dir: &Path, opts: QueueOptions) -> (Db, ackline_queue::Queue) {
    let db = open_db(dir, DbOptions::default());
    let q = db.queue("q", opts).unwrap();
    (db, q)
}

/// Every message deliverable now (acked as it comes) and every dead letter.
fn drain(q: &ackline_queue::Queue) -> (Vec<String>, Vec<DeadLetter>) {
    let c = q.consumer();
    let mut ids = Vec::new();
    loop {
        let ds = c.try_receive(1000, LEASE).unwrap();
        if ds.is_empty() {
            break;
        }
        for d in ds {
            c.ack(d.tag).unwrap();
            ids.push(d.id);
        }
    }
    (ids, q.dead_letters().list(None, usize::MAX).unwrap())
}

fn ids(r: std::ops::Range<usize>) -> BTreeSet<String> {
    r.map(|i| format!("m-{i}")).collect()
}

fn quarantined(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("queues/q/quarantine"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Item 1: the newest segment, 1,000 confirmed messages, one flipped header bit. It used to
/// be removed whole as a "torn creation" (pending 0, nothing logged).
#[test]
fn a_damaged_header_on_the_newest_segment_removes_nothing() {
    let copy = crashed_copy(1000, no_checkpoint());
    let segs = segments(copy.path());
    assert_eq!(segs.len(), 1);
    let mut b = std::fs::read(&segs[0]).unwrap();
    b[22] ^= 0x04; // the creation time: the header's checksum fails, the salt is intact
    std::fs::write(&segs[0], &b).unwrap();
    let (_db, q) = open(copy.path(), no_checkpoint());
    assert!(segs[0].exists(), "the segment must not be removed");
    let report = q.recovery_report().clone();
    assert!(
        report
            .corrupt
            .iter()
            .any(|d| d.file == segs[0] && d.reason.contains("header")),
        "the damaged header is reported: {report:?}"
    );
    let (got, dead) = drain(&q);
    assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), ids(0..1000));
    assert!(dead.is_empty());
}

/// Item 1, the salt itself damaged: nothing in the segment verifies. It is kept in place,
/// reported, and the positions a later segment proves existed go to the dead-letter queue.
#[test]
fn an_unreadable_segment_is_kept_and_its_known_messages_dead_lettered() {
    let opts = QueueOptions {
        segment_bytes: 8 << 10,
        ..no_checkpoint()
    };
    let copy = crashed_copy(600, opts.clone());
    let segs = segments(copy.path());
    assert!(segs.len() >= 3, "{segs:?}");
    let mut b = std::fs::read(&segs[0]).unwrap();
    let in_first = frames(&b).len();
    b[17] ^= 0xFF; // the salt
    std::fs::write(&segs[0], &b).unwrap();
    let (_db, q) = open(copy.path(), opts);
    assert!(segs[0].exists(), "kept in place");
    let report = q.recovery_report().clone();
    assert!(
        report.corrupt.iter().any(|d| d.file == segs[0]),
        "{report:?}"
    );
    let (got, dead) = drain(&q);
    assert_eq!(dead.len(), in_first, "one corrupt entry per lost message");
    assert!(dead.iter().all(|d| d.reason == "corrupt"), "{dead:?}");
    assert_eq!(
        got.len() + dead.len(),
        600,
        "every confirmed message accounted for"
    );
    assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), ids(in_first..600));
}

/// Item 2: damage no checkpoint covers (a flipped payload byte, an impossible length, ten
/// overwritten records). It used to vanish: not dead-lettered, nothing logged.
#[test]
fn damaged_records_are_quarantined_and_dead_lettered_never_dropped() {
    type Damage = fn(&mut Vec<u8>, &[(usize, usize)]) -> usize;
    let cases: [(&str, Damage); 3] = [
        ("a flipped payload byte", |b, f| {
            let (off, len) = f[100];
            b[off + len - 1] ^= 0x01;
            1
        }),
        ("a length of 0x7FFFFFF0", |b, f| {
            let (off, _) = f[200];
            b[off + 4..off + 8].copy_from_slice(&0x7FFF_FFF0u32.to_le_bytes());
            1
        }),
        ("ten overwritten records", |b, f| {
            let (start, _) = f[300];
            let (end, len) = f[309];
            b[start..end + len].fill(0xAB);
            10
        }),
    ];
    for (what, damage) in cases {
        let copy = crashed_copy(1000, no_checkpoint());
        let seg = segments(copy.path()).remove(0);
        let mut b = std::fs::read(&seg).unwrap();
        let f = frames(&b);
        assert_eq!(f.len(), 1000);
        let n = damage(&mut b, &f);
        std::fs::write(&seg, &b).unwrap();
        let (db, q) = open(copy.path(), no_checkpoint());
        let report = q.recovery_report().clone();
        assert!(!report.corrupt.is_empty(), "{what}: reported");
        assert!(
            report.corrupt[0].copy.as_ref().is_some_and(|p| p.exists()),
            "{what}: the damaged bytes are kept: {report:?}"
        );
        assert_eq!(report.lost_messages, n as u64, "{what}");
        let st = q.stats();
        assert_eq!(st.corrupt_ranges, report.corrupt.len() as u64, "{what}");
        assert_eq!(st.corrupt_messages, n as u64, "{what}");
        let (got, dead) = drain(&q);
        assert_eq!(dead.len(), n, "{what}: {dead:?}");
        for d in &dead {
            assert_eq!(d.reason, "corrupt", "{what}");
            assert!(
                d.last_error.contains("0000000001.seg"),
                "{what}: {}",
                d.last_error
            );
        }
        assert_eq!(got.len() + n, 1000, "{what}: every message accounted for");
        // Reopening finds the same damage but dead-letters nothing twice.
        drop(q);
        drop(db);
        let (_db, q) = open(copy.path(), no_checkpoint());
        assert_eq!(
            q.dead_letters().list(None, usize::MAX).unwrap().len(),
            n,
            "{what}"
        );
        assert_eq!(quarantined(copy.path()), report.corrupt.len(), "{what}");
    }
}

/// Item 3: a damaged newest checkpoint after segments were reclaimed. It used to fall back
/// to a replay over a log with holes: acked messages came back, dead letters were lost.
#[test]
fn a_damaged_checkpoint_falls_back_to_the_previous_generation_or_refuses() {
    let env = Env::new();
    let opts = QueueOptions {
        segment_bytes: 4096,
        checkpoint_bytes: 4096,
        ..Default::default()
    };
    let qdir = env.dir.path().join("queues/q");
    let (pending, dead): (BTreeSet<String>, BTreeSet<String>) = {
        let (db, q) = env.open(opts.clone());
        let c = q.consumer();
        for round in 0..40 {
            q.publish(msgs(round * 10..round * 10 + 10)).unwrap();
            for d in c.try_receive(100, LEASE).unwrap() {
                let n: usize = d.id[2..].parse().unwrap();
                if n % 10 == 3 && n >= 300 {
                    c.reject(d.tag, "bad").unwrap();
                } else if n < 390 {
                    c.ack(d.tag).unwrap();
                }
            }
        }
        q.sync().unwrap();
        drop(c);
        drop(q);
        db.close();
        (
            (390..400)
                .filter(|n| n % 10 != 3)
                .map(|n| format!("m-{n}"))
                .collect(),
            (300..400)
                .filter(|n| n % 10 == 3)
                .map(|n| format!("m-{n}"))
                .collect(),
        )
    };
    assert!(
        qdir.join("checkpoint.prev").exists(),
        "two generations kept"
    );
    assert!(
        !qdir.join("0000000001.seg").exists(),
        "the test needs reclaimed segments"
    );
    let flip = |name: &str| {
        let p = qdir.join(name);
        let mut b = std::fs::read(&p).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 0x20;
        std::fs::write(&p, b).unwrap();
    };
    flip("checkpoint");
    {
        let (db, q) = env.open(opts.clone());
        let r = q.recovery_report().clone();
        assert!(r.from_previous_checkpoint, "{r:?}");
        assert!(r.checkpoint_error.is_some());
        let (got, dl) = drain(&q);
        assert_eq!(
            got.into_iter().collect::<BTreeSet<_>>(),
            pending,
            "no acked message back"
        );
        assert_eq!(dl.into_iter().map(|d| d.id).collect::<BTreeSet<_>>(), dead);
        drop(q);
        db.close();
    }
    // Both generations damaged over a reclaimed log: refuse, naming what to do.
    flip("checkpoint");
    flip("checkpoint.prev");
    let err = env.db().queue("q", opts.clone()).unwrap_err();
    assert!(
        matches!(err, OpenError::Format { .. }) && err.to_string().contains("reclaimed"),
        "{err}"
    );
}

/// Item 3: a checkpoint of an unknown (newer) version is refused, not replayed around.
#[test]
fn a_checkpoint_from_a_newer_version_is_refused() {
    let env = Env::new();
    {
        let (db, q) = env.open(QueueOptions::default());
        q.publish(msgs(0..3)).unwrap();
        drop(q);
        db.close();
    }
    let p = env.dir.path().join("queues/q/checkpoint");
    let mut b = std::fs::read(&p).unwrap();
    b[8..12].copy_from_slice(&99u32.to_le_bytes());
    std::fs::write(&p, b).unwrap();
    let err = env.db().queue("q", QueueOptions::default()).unwrap_err();
    assert!(err.to_string().contains("version 99"), "{err}");
}

/// Item 4: a transient read error while loading deliveries used to dead-letter them as
/// "stored message unreadable". Now it is retried; a lasting one poisons the queue and the
/// messages come back after reopening.
#[test]
fn read_errors_are_the_queues_failure_not_the_messages() {
    let sim = SimFs::new();
    let env = Env::with_fs(Arc::new(sim.clone()));
    {
        let (_db, q) = env.open(QueueOptions::default());
        q.publish(msgs(0..3)).unwrap();
        let c = q.consumer();
        sim.fail_reads(2);
        let ds = c.try_receive(1, LEASE).unwrap();
        assert_eq!(ds.len(), 1, "a passing read error is retried");
        sim.fail_reads(1000);
        let err = c.try_receive(10, LEASE).unwrap_err();
        assert!(
            matches!(&err, QueueError::Io { cause, .. } if cause.op == "reading" && cause.offset.is_some()),
            "the receive that hit the failure reports it: {err}"
        );
        assert!(
            q.dead_letters()
                .list(None, 10)
                .map(|v| v.is_empty())
                .unwrap_or(true)
        );
        sim.fail_reads(0);
        let err = c.try_receive(10, LEASE).unwrap_err();
        assert!(
            matches!(err, QueueError::Poisoned { .. }),
            "later operations are refused: {err}"
        );
    }
    let disk = sim.power_loss(Torn::None);
    let env = Env {
        fs: Arc::new(disk),
        ..Env::new()
    };
    let db = Db::open_with(
        sim_root(&sim),
        DbOptions {
            fs: env.fs.clone(),
            clock: Arc::new(env.clock.clone()),
        },
    )
    .unwrap();
    let q = db.queue("q", QueueOptions::default()).unwrap();
    let (got, dead) = drain(&q);
    assert_eq!(got.len(), 3, "every message still there");
    assert!(dead.is_empty(), "{dead:?}");
}

fn sim_root(sim: &SimFs) -> PathBuf {
    let seg = sim
        .files()
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    seg.ancestors().nth(3).unwrap().to_path_buf()
}

/// Item 5: with `fsync = interval` a rotated-away segment was never fsynced and checkpoints
/// were installed over a log not yet durable; after a power loss the checkpoint pointed at
/// bytes that were gone.
#[test]
fn interval_mode_checkpoints_only_cover_durable_records() {
    let sim = SimFs::new();
    let env = Env::with_fs(Arc::new(sim.clone()));
    let opts = QueueOptions {
        fsync: Fsync::Interval(std::time::Duration::from_secs(3600)),
        segment_bytes: 4096,
        checkpoint_bytes: 8192,
        ..Default::default()
    };
    let (db, q) = env.open(opts.clone());
    for i in 0..60 {
        q.publish(msgs(i * 10..i * 10 + 10)).unwrap();
    }
    // Wait (bounded) until a checkpoint is installed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !sim.files().iter().any(|p| p.ends_with("checkpoint")) {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint written"
        );
        std::thread::yield_now();
    }
    let disk = sim.power_loss(Torn::None);
    drop(q);
    drop(db);
    let db = Db::open_with(
        sim_root(&disk),
        DbOptions {
            fs: Arc::new(disk),
            clock: Arc::new(env.clock.clone()),
        },
    )
    .unwrap();
    let q = db.queue("q", opts).unwrap();
    let (got, dead) = drain(&q);
    assert!(
        dead.is_empty(),
        "nothing the checkpoint covers may be missing: {dead:?}"
    );
    let expect: Vec<String> = (0..got.len()).map(|i| format!("m-{i}")).collect();
    assert_eq!(got, expect, "a prefix of what was published survives");
    assert!(got.len() >= 10, "at least what the checkpoint covered");
}

/// Item 6: `queue stats` / `dlq list` opened the queue for writing: each call added a
/// segment file (2,000 calls, 2,003 files) and failed on a read-only mount.
#[test]
fn inspection_changes_no_file_even_while_another_process_writes() {
    let env = Env::new();
    let (db, q) = env.open(QueueOptions::default());
    q.publish(msgs(0..5)).unwrap();
    let c = q.consumer();
    let d = c.try_receive(1, LEASE).unwrap().remove(0);
    c.reject(d.tag, "bad").unwrap().wait().unwrap();
    let listing = |dir: &Path| -> Vec<(PathBuf, u64)> {
        let mut v: Vec<_> = walk(dir)
            .into_iter()
            .map(|p| {
                let len = std::fs::metadata(&p).unwrap().len();
                (p, len)
            })
            .collect();
        v.sort();
        v
    };
    let before = listing(env.dir.path());
    for _ in 0..50 {
        // The writer still holds the directory: inspection does not need its lock.
        let ro = Db::open_read_only(env.dir.path()).unwrap();
        let rq = ro.queue("q", QueueOptions::default()).unwrap();
        assert_eq!(rq.stats().pending, 4);
        assert_eq!(rq.dead_letters().list(None, 10).unwrap().len(), 1);
        assert!(matches!(
            rq.publish(msgs(9..10)),
            Err(ackline_queue::PublishError::Queue(
                QueueError::ReadOnly { .. }
            ))
        ));
        assert!(matches!(
            rq.consumer().try_receive(1, LEASE),
            Err(QueueError::ReadOnly { .. })
        ));
    }
    assert_eq!(listing(env.dir.path()), before, "inspection wrote nothing");
    assert!(Db::open_read_only(env.dir.path().join("nope")).is_err());
    drop(c);
    drop(q);
    db.close();
    // A writable open that writes nothing leaves no new segment either.
    let segs = segments(env.dir.path()).len();
    for _ in 0..5 {
        let (db, q) = env.open(QueueOptions::default());
        let _ = q.stats();
        drop(q);
        db.close();
    }
    assert_eq!(segments(env.dir.path()).len(), segs);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Item 7: a settlement quoting attempt 0 matched a message never delivered (0 attempts)
/// and acked it.
#[test]
fn a_tag_with_attempt_zero_settles_nothing() {
    let env = Env::new();
    let (_db, q) = env.open(QueueOptions::default());
    let p = q.publish(msgs(0..1)).unwrap().remove(0);
    let c = q.consumer();
    let forged = Tag {
        seq: p.seq,
        attempt: 0,
    };
    assert!(matches!(c.ack(forged), Err(SettleError::Unknown { .. })));
    assert!(matches!(
        c.reject(forged, "x"),
        Err(SettleError::Unknown { .. })
    ));
    assert_eq!(q.stats().pending, 1);
    assert_eq!(c.try_receive(1, LEASE).unwrap()[0].id, "m-0");
}

/// Item 8: an id already pending or dead-lettered is not enqueued again (a crash between a
/// confirmed publish and the input's position commit republished lines: the store absorbed
/// them, the dead-letter queue held them twice).
#[test]
fn an_id_pending_or_dead_lettered_is_not_enqueued_twice_across_restarts() {
    let env = Env::new();
    let opts = QueueOptions::default;
    {
        let (db, q) = env.open(opts());
        let first = q.publish(msgs(0..3)).unwrap();
        assert!(first.iter().all(|p| !p.duplicate));
        let again = q.publish(msgs(1..4)).unwrap();
        assert_eq!(
            again
                .iter()
                .map(|p| (p.seq, p.duplicate))
                .collect::<Vec<_>>(),
            [(1, true), (2, true), (3, false)]
        );
        let c = q.consumer();
        for d in c.try_receive(10, LEASE).unwrap() {
            match d.id.as_str() {
                "m-0" => c.ack(d.tag).unwrap().wait().unwrap(),
                "m-1" => c.reject(d.tag, "bad").unwrap().wait().unwrap(),
                _ => {}
            }
        }
        drop(c);
        assert_eq!(q.stats().duplicates, 2);
        drop(q);
        db.close(); // a checkpoint carries the index
    }
    for reopen in ["from the checkpoint", "from a replay of the log"] {
        if reopen == "from a replay of the log" {
            for f in ["checkpoint", "checkpoint.prev"] {
                let _ = std::fs::remove_file(env.dir.path().join("queues/q").join(f));
            }
        }
        let (db, q) = env.open(opts());
        let p = q.publish(msgs(0..4)).unwrap();
        assert_eq!(
            p.iter().map(|p| p.duplicate).collect::<Vec<_>>(),
            [false, true, true, true],
            "{reopen}: m-0 was acked (may come again), m-1 is dead-lettered, m-2/m-3 pending"
        );
        assert_eq!(q.dead_letters().find("m-1").unwrap().len(), 1, "{reopen}");
        // Settle the new m-0 so the next round starts from the same books.
        let c = q.consumer();
        for d in c.try_receive(10, LEASE).unwrap() {
            if d.id == "m-0" {
                c.ack(d.tag).unwrap().wait().unwrap();
            }
        }
        drop(c);
        drop(q);
        db.close();
    }
    // A replayed dead letter is pending again under its id: still one copy.
    let (_db, q) = env.open(opts());
    assert_eq!(
        q.dead_letters()
            .replay(&ackline_queue::DlqSelector::Ids(vec!["m-1".into()]))
            .unwrap(),
        1
    );
    assert!(q.publish(msgs(1..2)).unwrap()[0].duplicate);
    assert_eq!(q.stats().pending, 3);
}

/// Every fsync mode writes checkpoints and closes: with `Never` a checkpoint once waited for a
/// batch the writer never took (nothing forced it), and the close hung.
#[test]
fn checkpoints_and_close_finish_in_every_fsync_mode() {
    for fsync in [
        Fsync::Always,
        Fsync::Interval(std::time::Duration::from_millis(5)),
        Fsync::Never,
    ] {
        let env = Env::new();
        let opts = QueueOptions {
            fsync,
            segment_bytes: 4096,
            checkpoint_bytes: 4096,
            ..Default::default()
        };
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let dir = env.dir.path().to_path_buf();
        std::thread::spawn(move || {
            let db = open_db(&dir, DbOptions::default());
            let q = db.queue("q", opts).unwrap();
            for i in 0..50 {
                q.publish(msgs(i * 10..i * 10 + 10)).unwrap();
            }
            drop(q);
            db.close();
            done_tx.send(()).unwrap();
        });
        assert!(
            done_rx
                .recv_timeout(std::time::Duration::from_secs(60))
                .is_ok(),
            "{fsync:?}: publishing with checkpoints and closing did not finish"
        );
        assert!(
            env.dir.path().join("queues/q/checkpoint").exists(),
            "{fsync:?}"
        );
    }
}
