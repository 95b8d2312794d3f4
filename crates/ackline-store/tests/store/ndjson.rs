//! NDJSON store: idempotence from the id index, round trip, torn tails.

use std::io::Write;

use ackline_parse::Record;
use ackline_store::{NdjsonRecovery, NdjsonStore, Store, WriteReport};

use crate::common::{batch, hard_records};

fn report(inserted: usize, duplicates: usize) -> WriteReport {
    WriteReport {
        inserted,
        duplicates,
    }
}

fn read(path: &std::path::Path) -> Vec<Record> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn ndjson_rewrite_is_all_duplicates_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.ndjson");
    let s = NdjsonStore::open(&path).await.unwrap();
    let b = batch("a", 0..20);
    assert_eq!(s.write_batch(&b).await.unwrap(), report(20, 0));
    assert_eq!(s.write_batch(&b).await.unwrap(), report(0, 20));
    drop(s);
    let s = NdjsonStore::open(&path).await.unwrap();
    assert_eq!(
        s.recovery(),
        &NdjsonRecovery {
            records: 20,
            ..Default::default()
        }
    );
    assert_eq!(s.write_batch(&b).await.unwrap(), report(0, 20));
    assert_eq!(read(&path), b);
}

#[tokio::test]
async fn ndjson_overlapping_batches_store_each_id_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.ndjson");
    let s = NdjsonStore::open(&path).await.unwrap();
    assert_eq!(
        s.write_batch(&batch("a", 0..10)).await.unwrap(),
        report(10, 0)
    );
    assert_eq!(
        s.write_batch(&batch("a", 5..15)).await.unwrap(),
        report(5, 5)
    );
    let mut b = batch("a", 15..17);
    b.push(b[0].clone());
    assert_eq!(s.write_batch(&b).await.unwrap(), report(2, 1));
    assert_eq!(read(&path), batch("a", 0..17));
}

#[tokio::test]
async fn ndjson_round_trips_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.ndjson");
    let s = NdjsonStore::open(&path).await.unwrap();
    let records = hard_records(true);
    assert_eq!(
        s.write_batch(&records).await.unwrap(),
        report(records.len(), 0)
    );
    assert_eq!(read(&path), records);
}

#[tokio::test]
async fn ndjson_truncates_a_torn_last_line_and_reports_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.ndjson");
    let b = batch("t", 0..5);
    {
        let s = NdjsonStore::open(&path).await.unwrap();
        s.write_batch(&b[..3]).await.unwrap();
    }
    let good_len = std::fs::metadata(&path).unwrap().len();
    // A crash mid-append: the start of the next batch's first line, no newline.
    let torn = serde_json::to_vec(&b[3]).unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&torn[..torn.len() / 2])
        .unwrap();
    let s = NdjsonStore::open(&path).await.unwrap();
    assert_eq!(
        s.recovery(),
        &NdjsonRecovery {
            records: 3,
            truncated_bytes: (torn.len() / 2) as u64,
            unreadable_lines: vec![]
        }
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), good_len);
    // The redelivered batch appends only what is missing, on a clean line.
    assert_eq!(s.write_batch(&b).await.unwrap(), report(2, 3));
    assert_eq!(read(&path), b);
    drop(s);

    // A complete line that is not a record is reported by offset, and kept.
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"not json\n")
        .unwrap();
    let s = NdjsonStore::open(&path).await.unwrap();
    assert_eq!(s.recovery().unreadable_lines, vec![len]);
    assert_eq!(s.recovery().records, 5);
    assert_eq!(s.write_batch(&b).await.unwrap(), report(0, 5));
    s.probe().await.unwrap();
}
