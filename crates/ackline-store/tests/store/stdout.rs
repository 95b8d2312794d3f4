//! stdout store: JSON lines, at-least-once.

use std::io::Write;
use std::sync::{Arc, Mutex};

use ackline_parse::Record;
use ackline_store::{StdoutStore, Store, WriteReport};

use crate::common::{batch, hard_records};

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn stdout_writes_json_lines_at_least_once() {
    let out = Shared::default();
    let s = StdoutStore::with_writer(out.clone());
    let b = batch("s", 0..3);
    let mut records = hard_records(false);
    records.extend(b.clone());
    assert_eq!(
        s.write_batch(&records).await.unwrap(),
        WriteReport {
            inserted: records.len(),
            duplicates: 0
        }
    );
    // Not idempotent: a replay is written again.
    assert_eq!(
        s.write_batch(&b).await.unwrap(),
        WriteReport {
            inserted: 3,
            duplicates: 0
        }
    );
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let back: Vec<Record> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    records.extend(b);
    assert_eq!(back, records);
    s.probe().await.unwrap();
}
