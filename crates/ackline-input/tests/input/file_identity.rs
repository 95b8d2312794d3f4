//! Which file is which: inode reuse, files replaced while the input was down, copytruncate
//! refilled between two polls, positions saved by version 1, and `start_at = end` across
//! restarts. Real files on the test's filesystem; inode reuse is real where the filesystem
//! reuses a freed inode at once (ext4, xfs, overlay), and simulated in the saved positions
//! otherwise.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ackline_broker::Broker;
use ackline_input::{FileInput, FileInputConfig, InputError, StartAt};
use tokio::sync::watch;

use crate::common::*;

fn config(fx: &Fixture, paths: &[String]) -> FileInputConfig {
    let mut c = FileInputConfig::new(paths.to_vec(), fx.state());
    c.poll_interval = Duration::from_millis(20);
    c.rotated_grace = Duration::ZERO;
    c
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

fn all_logs(fx: &Fixture) -> Vec<String> {
    vec![path_str(&fx.logs().join("*.log"))]
}

async fn once<B: Broker>(
    broker: Arc<B>,
    cfg: FileInputConfig,
) -> Result<ackline_input::CountersSnapshot, InputError> {
    let (_tx, rx) = watch::channel(false);
    let mut input = FileInput::new(broker, cfg)?;
    input.run_once(rx).await
}

fn positions_json(fx: &Fixture) -> serde_json::Value {
    let text = std::fs::read_to_string(fx.state().join("positions.json")).expect("read positions");
    serde_json::from_str(&text).expect("positions are json")
}

fn write_positions(fx: &Fixture, v: &serde_json::Value) {
    std::fs::write(
        fx.state().join("positions.json"),
        serde_json::to_vec(v).expect("json"),
    )
    .expect("write positions");
}

/// Creates `path` with the inode number `ino` by creating files in its directory until the
/// filesystem hands that (freed) number out again. False if it does not within 1000 tries
/// (a filesystem that does not reuse inode numbers at once, such as tmpfs).
fn reuse_inode(path: &Path, ino: u64) -> bool {
    let dir = path.parent().expect("a directory");
    let mut extra: Vec<PathBuf> = Vec::new();
    let mut found = false;
    for i in 0..1000 {
        let p = dir.join(format!("reuse-{i}.tmp"));
        std::fs::File::create(&p).expect("create");
        if identity(&p).1 == ino {
            std::fs::rename(&p, path).expect("rename");
            found = true;
            break;
        }
        extra.push(p);
    }
    for p in extra {
        std::fs::remove_file(p).expect("remove");
    }
    found
}

fn disjoint(a: &[String], b: &[String]) -> bool {
    a.iter().all(|x| !b.contains(x))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_inode_after_the_retired_memory_gets_its_own_ids() {
    let fx = Fixture::new();
    let old = fx.log("old.log");
    append(&old, b"old-first\nold-second\n");
    let (_, ino) = identity(&old);
    // Follow it until it is deleted, read to its end and retired.
    let (tx, rx) = watch::channel(false);
    let mut input = FileInput::new(fx.broker.clone(), config(&fx, &all_logs(&fx))).expect("input");
    let counters = input.counters();
    let task = tokio::spawn(async move { input.run(rx).await });
    fx.wait_published(2).await;
    std::fs::remove_file(&old).expect("delete");
    wait_until("the deleted file retired", || {
        let s = counters.snapshot();
        async move { s.deletions == 1 }
    })
    .await;
    tx.send(true).expect("stop");
    task.await.expect("join").expect("input ran");
    let first = ids(&fx.take(2).await);
    // 4096 more files retired since would have pushed it out of the retired list.
    let mut v = positions_json(&fx);
    assert_eq!(v["retired"].as_array().map(Vec::len), Some(1));
    v["retired"] = serde_json::json!([]);
    write_positions(&fx, &v);

    let new = fx.log("new.log");
    if !reuse_inode(&new, ino) {
        println!("skipped: this filesystem did not reuse inode {ino} within 1000 files");
        return;
    }
    append(&new, b"new-first\nnew-second\n");
    once(fx.broker.clone(), config(&fx, &all_logs(&fx)))
        .await
        .expect("once");
    let got = fx.take(2).await;
    assert_eq!(
        payloads(&got),
        vec![b"new-first".to_vec(), b"new-second".to_vec()]
    );
    let second = ids(&got);
    assert!(
        disjoint(&first, &second),
        "the new file reuses the old one's ids: {first:?} / {second:?}"
    );
}

/// Deletes the followed file while the input is down and puts a longer file with other
/// content at an inode that the saved position names.
async fn replaced_while_stopped(simulate: bool) {
    let fx = Fixture::new();
    let log = fx.log("app.log");
    append(&log, b"a1\na2\n");
    let cfg = config(&fx, &[path_str(&log)]);
    once(fx.broker.clone(), cfg.clone()).await.expect("once");
    let first = ids(&fx.take(2).await);
    let (_, ino) = identity(&log);
    std::fs::remove_file(&log).expect("delete");
    if simulate || !reuse_inode(&log, ino) {
        // The saved position names the new file's inode, as if the filesystem had reused it.
        append(&log, b"");
        let mut v = positions_json(&fx);
        v["files"][0]["ino"] = identity(&log).1.into();
        write_positions(&fx, &v);
    }
    append(&log, b"replacement-1\nreplacement-2\n");
    once(fx.broker.clone(), cfg).await.expect("restart");
    let got = fx.take(2).await;
    assert_eq!(
        payloads(&got),
        vec![b"replacement-1".to_vec(), b"replacement-2".to_vec()]
    );
    assert!(disjoint(&first, &ids(&got)), "{first:?} / {:?}", ids(&got));
    assert_eq!(positions_json(&fx)["files"][0]["offset"], 28);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_replaced_at_the_same_inode_while_stopped_is_read_from_its_start() {
    replaced_while_stopped(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_position_whose_file_starts_otherwise_is_a_new_file() {
    replaced_while_stopped(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copytruncate_refilled_past_the_position_between_polls_is_seen() {
    let fx = Fixture::new();
    let log = fx.log("app.log");
    append(&log, b"aaa\nbbb\n");
    let (tx, rx) = watch::channel(false);
    let mut input =
        FileInput::new(fx.broker.clone(), config(&fx, &[path_str(&log)])).expect("input");
    let counters = input.counters();
    let task = tokio::spawn(async move { input.run(rx).await });
    fx.wait_published(2).await;
    wait_until("the position committed past both lines", || {
        let at = std::fs::read_to_string(fx.state().join("positions.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["files"][0]["offset"].as_u64());
        async move { at == Some(8) }
    })
    .await;
    // Truncate and refill in one call: the size (13) is past the position (8) at once.
    std::fs::write(&log, b"refilled-one\n").expect("truncate and write");
    fx.wait_published(3).await;
    wait_until("the truncation counted", || {
        let s = counters.snapshot();
        async move { s.truncations == 1 }
    })
    .await;
    tx.send(true).expect("stop");
    task.await.expect("join").expect("input ran");
    let got = fx.take(3).await;
    assert_eq!(
        payloads(&got),
        vec![b"aaa".to_vec(), b"bbb".to_vec(), b"refilled-one".to_vec()]
    );
    assert!(disjoint(&ids(&got[..2]), &ids(&got[2..])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_1_positions_keep_their_ids_and_are_checked() {
    let fx = Fixture::new();
    let kept = fx.log("kept.log");
    append(&kept, b"l1\nl2\n");
    let other = fx.log("other.log");
    append(&other, b"xxxxxxxx\n");
    let (dev, ino) = identity(&kept);
    let (odev, oino) = identity(&other);
    std::fs::create_dir_all(fx.state()).expect("state dir");
    // Saved by version 1: `kept` at its second line; `other` at an offset inside a line,
    // which no version saves for a file it read (that file was replaced).
    write_positions(
        &fx,
        &serde_json::json!({"version":1,
            "files":[
                {"path":path_str(&kept),"dev":dev,"ino":ino,"generation":0,"offset":3},
                {"path":path_str(&other),"dev":odev,"ino":oino,"generation":0,"offset":4}],
            "retired":[]}),
    );
    once(fx.broker.clone(), config(&fx, &all_logs(&fx)))
        .await
        .expect("once");
    let mut got = fx.take(2).await;
    got.sort_by(|a, b| a.payload.cmp(&b.payload));
    assert_eq!(payloads(&got), vec![b"l2".to_vec(), b"xxxxxxxx".to_vec()]);
    // `kept` goes on with the version 1 ids, so a line published again keeps its id.
    assert_eq!(got[0].id, format!("file:{dev}:{ino}:0:3"));
    // `other` is a new file: generation 1, the current id form.
    let fields: Vec<&str> = got[1].id.split(':').collect();
    assert_eq!(fields.len(), 6, "{}", got[1].id);
    assert_eq!(
        (fields[1], fields[2], fields[4], fields[5]),
        (
            odev.to_string().as_str(),
            oino.to_string().as_str(),
            "1",
            "0"
        )
    );
    let v = positions_json(&fx);
    assert_eq!(v["version"], 2);
    let files = v["files"].as_array().expect("files");
    let k = files
        .iter()
        .find(|f| f["ino"] == ino)
        .expect("kept is saved");
    assert_eq!(k["legacy_ids"], true);
    assert_eq!(k["fingerprint"]["bytes"], 3, "checked from now on: {k}");
    append(&kept, b"l3\n");
    once(fx.broker.clone(), config(&fx, &all_logs(&fx)))
        .await
        .expect("once again");
    assert_eq!(
        ids(&fx.take(1).await),
        vec![format!("file:{dev}:{ino}:0:6")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_at_end_applies_only_to_the_first_run_of_a_state_dir() {
    let fx = Fixture::new();
    let a = fx.log("a.log");
    append(&a, b"before the first run\n");
    let mut cfg = config(&fx, &all_logs(&fx));
    cfg.start_at = StartAt::End;
    once(fx.broker.clone(), cfg.clone())
        .await
        .expect("first run");
    assert_eq!(fx.published().await, 0, "the first run starts at the end");
    // While the input is down: a file gets more lines, a new one appears.
    append(&a, b"a2\n");
    append(&fx.log("b.log"), b"b1\nb2\n");
    once(fx.broker.clone(), cfg).await.expect("second run");
    let mut got = payloads(&fx.take(3).await);
    got.sort();
    assert_eq!(got, vec![b"a2".to_vec(), b"b1".to_vec(), b"b2".to_vec()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_run_that_saw_no_file_still_counts_as_the_first() {
    let fx = Fixture::new();
    let mut cfg = config(&fx, &all_logs(&fx));
    cfg.start_at = StartAt::End;
    once(fx.broker.clone(), cfg.clone())
        .await
        .expect("first run, no files");
    append(&fx.log("c.log"), b"c1\n");
    once(fx.broker.clone(), cfg).await.expect("second run");
    assert_eq!(payloads(&fx.take(1).await), vec![b"c1".to_vec()]);
}
