//! Kill -9, then a flipped byte: a real process (this test binary re-executed as a child)
//! publishes, acks and rejects on a real data directory and is SIGKILLed at a moment chosen
//! from its observed progress; between runs a random byte of a random segment file is
//! flipped. At the end the books must balance: every confirmed publish is acked, pending, in
//! the dead-letter queue, or accounted for by a dead-letter entry with reason `corrupt`.
//!
//! The child appends each batch's ids to `confirmed` after the publish returned (durable),
//! and each settlement to `settled` just before making it (an intent: the message may still
//! be pending after a kill, never gone without a line).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ackline_queue::{Db, NewMessage, QueueOptions};

use crate::common::{open_db, segments};
use rand::{Rng, SeedableRng};

const CHILD_DIR: &str = "ACKLINE_CRASH_DAMAGE_DIR";
const CHILD_RUN: &str = "ACKLINE_CRASH_DAMAGE_RUN";
const RUNS: u32 = 12;
const LEASE: Duration = Duration::from_secs(30);

fn opts() -> QueueOptions {
    QueueOptions {
        segment_bytes: 16 << 10,
        checkpoint_bytes: 48 << 10,
        max_attempts: 1000,
        ..Default::default()
    }
}

#[test]
fn kill_9_and_a_flipped_byte_leave_nothing_silently_missing() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        child(Path::new(&dir));
    }
    let seed: u64 = std::env::var("ACKLINE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("seed {seed} (ACKLINE_CRASH_SEED={seed} to repeat)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::Builder::new()
        .disable_cleanup(std::env::var_os("ACKLINE_CRASH_KEEP").is_some())
        .tempdir()
        .unwrap();
    let data = dir.path().join("data");
    let mut tolerated = 0usize;
    let mut flips = Vec::new();
    for run in 0..RUNS {
        let before = lines(&dir.path().join("confirmed")).len();
        let target = before + rng.random_range(20..400);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "crash_damage::kill_9_and_a_flipped_byte_leave_nothing_silently_missing",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_RUN, run.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while lines(&dir.path().join("confirmed")).len() < target {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                use std::io::Read;
                let _ = child.stderr.take().unwrap().read_to_string(&mut err);
                panic!("run {run}: the child exited ({status}) before the kill: {err}");
            }
            assert!(Instant::now() < deadline, "run {run}: no progress");
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // A random byte of a random segment.
        let segs = segments(&data);
        let seg = &segs[rng.random_range(0..segs.len())];
        let mut bytes = std::fs::read(seg).unwrap();
        if bytes.is_empty() {
            continue;
        }
        let at = rng.random_range(0..bytes.len());
        if Some(seg) == segs.last() && in_last_publish_header(&bytes, at) {
            // The one documented blind spot: the length or kind of the newest segment's last
            // PUBLISH frame. Nothing after it chains, so it reads as a torn write; its bytes
            // are kept in quarantine/, but its position cannot be proven.
            tolerated += 1;
        }
        bytes[at] ^= rng.random_range(1..=255u8);
        std::fs::write(seg, &bytes).unwrap();
        flips.push(format!("{}@{at}", seg.display()));
    }

    let db = open_db(&data, ackline_queue::DbOptions::default());
    let q = db.queue("q", opts()).unwrap();
    let c = q.consumer();
    let mut pending: BTreeMap<String, u32> = BTreeMap::new();
    loop {
        let ds = c.try_receive(1000, LEASE).unwrap();
        if ds.is_empty() {
            break;
        }
        for d in ds {
            *pending.entry(d.id).or_default() += 1;
        }
    }
    let twice: Vec<_> = pending.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "ids pending twice: {twice:?}");
    let dead = q.dead_letters().list(None, usize::MAX).unwrap();
    // Entries whose stored message is damaged: reason `corrupt` (its publish record was lost
    // or found damaged on delivery), or a rejected message whose record was damaged later.
    // Each stands for one message whose id can no longer be read.
    let corrupt = dead
        .iter()
        .filter(|d| d.id.starts_with("<unreadable"))
        .count();
    let dead_ids: BTreeSet<String> = dead.iter().map(|d| d.id.clone()).collect();
    let confirmed: BTreeSet<String> = lines(&dir.path().join("confirmed")).into_iter().collect();
    let settled = lines(&dir.path().join("settled"));
    let acked: BTreeSet<&str> = settled
        .iter()
        .filter_map(|l| l.strip_prefix("A "))
        .collect();
    let rejected: BTreeSet<&str> = settled
        .iter()
        .filter_map(|l| l.strip_prefix("R "))
        .collect();
    let missing: Vec<&String> = confirmed
        .iter()
        .filter(|id| {
            !acked.contains(id.as_str()) && !pending.contains_key(*id) && !dead_ids.contains(*id)
        })
        .collect();
    println!(
        "confirmed {}, acked {}, rejected {}, pending {}, dead {} ({corrupt} unreadable), missing {}, flips {flips:?}, report {:?}",
        confirmed.len(),
        acked.len(),
        rejected.len(),
        pending.len(),
        dead.len(),
        missing.len(),
        q.recovery_report()
    );
    assert!(confirmed.len() > 500, "the runs made too little progress");
    assert!(
        missing.len() <= corrupt + tolerated,
        "seed {seed}: {} confirmed messages are neither acked, pending nor dead-lettered, and only {corrupt} unreadable dead-letter entries (+{tolerated} tolerated) account for lost ones: {missing:?}",
        missing.len()
    );
    for id in &rejected {
        assert!(
            dead_ids.contains(*id) || pending.contains_key(*id) || missing.iter().any(|m| m == id),
            "seed {seed}: rejected {id} is neither dead-lettered nor pending"
        );
    }
}

/// The child: publish batches of 20, take up to 15, reject every fifth id and ack the rest,
/// journaling what was confirmed, until killed.
fn child(dir: &Path) -> ! {
    let run: u32 = std::env::var(CHILD_RUN).unwrap().parse().unwrap();
    let db = Db::open(dir.join("data")).unwrap();
    let q = db.queue("q", opts()).unwrap();
    let _ = std::fs::write(
        dir.join(format!("report-{run}")),
        format!("{:#?}\n{:?}", q.recovery_report(), q.stats()),
    );
    let append = |name: &str| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(name))
            .unwrap()
    };
    let (mut confirmed, mut settled) = (append("confirmed"), append("settled"));
    let c = q.consumer();
    for i in 0u64.. {
        let batch: Vec<NewMessage> = (0..20)
            .map(|k| {
                let n = i * 20 + k;
                NewMessage::new(format!("run {run} message {n} ").repeat(4))
                    .with_id(format!("r{run}-{n}"))
            })
            .collect();
        let ids: Vec<String> = batch.iter().filter_map(|m| m.id.clone()).collect();
        q.publish(batch).unwrap();
        confirmed
            .write_all(format!("{}\n", ids.join("\n")).as_bytes())
            .unwrap();
        for d in c.try_receive(15, LEASE).unwrap() {
            // The intent is journaled before the settlement: a kill between the two leaves a
            // message journaled as settled that is still pending (accounted either way); the
            // other order would leave an acked message in no book.
            let reject = d.id.bytes().map(u64::from).sum::<u64>() % 5 == 0;
            if reject {
                settled
                    .write_all(format!("R {}\n", d.id).as_bytes())
                    .unwrap();
                c.reject(d.tag, "rejected by the test")
                    .unwrap()
                    .wait()
                    .unwrap();
            } else {
                settled
                    .write_all(format!("A {}\n", d.id).as_bytes())
                    .unwrap();
                c.ack(d.tag).unwrap().wait().unwrap();
            }
        }
    }
    unreachable!("the loop ends only when the process is killed")
}

fn lines(p: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(p).unwrap_or_default();
    // Only whole lines count: the last one may have been cut by the kill.
    let whole = text.rfind('\n').map_or("", |i| &text[..i]);
    whole
        .split('\n')
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Whether `at` is in the length or kind bytes of the last PUBLISH frame of a segment.
fn in_last_publish_header(seg: &[u8], at: usize) -> bool {
    let mut p = 32;
    let mut last_publish = None;
    while p + 9 <= seg.len() {
        let len = u32::from_le_bytes(seg[p + 4..p + 8].try_into().unwrap()) as usize;
        if seg[p + 8] == 0xA1 {
            last_publish = Some(p);
        }
        p += 9 + len;
    }
    last_publish.is_some_and(|l| (l + 4..l + 9).contains(&at))
}
