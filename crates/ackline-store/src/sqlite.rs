//! The SQLite store: the embedded default, queryable with `ackline query`.
//!
//! Invariants:
//! - Each record is `INSERT ... ON CONFLICT(id) DO NOTHING` on the single
//!   writer connection, and the changed-row count of each insert says
//!   inserted (1) or duplicate (0). A batch is committed in one
//!   `BEGIN IMMEDIATE ... COMMIT`, and `write_batch` returns only after it.
//! - Group commit: batches that arrive while the writer is busy wait in a
//!   queue, and the next writer turn takes them all (up to
//!   [`GROUP_MAX_ROWS`] rows) into one transaction: one commit and one WAL
//!   fsync for several callers' batches (workers write concurrently). Each
//!   batch still gets its own report. If the group's transaction fails at
//!   any point it is rolled back whole and each of its batches is written
//!   again alone, so a refused record fails only its own batch, with its
//!   own index, and the other batches are stored. Every queued batch has a
//!   writer turn of its own scheduled after it was queued, so none is left
//!   waiting.
//! - Durability: `journal_mode=WAL` with `synchronous=FULL`, so the WAL is
//!   fsynced at every commit and `write_batch` returns only after it.
//!   (`NORMAL` would be faster but can lose the last commits on power loss,
//!   after their deliveries were acked: not acceptable here.)
//! - Checkpoints (copying the WAL back into the database file) run off the
//!   commit path, on a checkpointer thread with its own connection
//!   ([`checkpoint`]): a `PASSIVE` checkpoint after commits, which never
//!   blocks the writer. The WAL stays bounded: the writer's own automatic
//!   checkpoint is kept as a backstop at [`WAL_BACKSTOP_PAGES`] (it then
//!   copies only what the checkpointer has not), and `journal_size_limit`
//!   truncates the file after a spike. A checkpoint never weakens a commit:
//!   the committed frames are already fsynced in the WAL, and SQLite
//!   overwrites them only after the database file is fsynced.
//! - A new database gets 8 KiB pages (half the frames, syscalls and B-tree
//!   depth of 4 KiB); an existing one keeps its page size.
//! - A record SQLite refuses (too big, a constraint) fails the whole
//!   transaction, which is rolled back, and is reported as
//!   `Rejected { index }`: rows are inserted one by one, so the failing index
//!   is known exactly.
//! - All SQLite calls run under `spawn_blocking`: a writer connection behind
//!   a mutex (SQLite has one writer anyway) and a separate read-only
//!   connection for queries, which WAL lets run beside writes. The mutexes
//!   do not poison (`parking_lot`): a task that panicked holding the writer
//!   had its transaction rolled back by the guard's drop, so the connection
//!   stays usable.
//! - Storage of a record: see [`crate::row`] for timestamps and `pid`; the
//!   raw line is in `raw` (TEXT) when it is UTF-8, else in `raw_bytes`
//!   (BLOB), exactly one of the two set (a `CHECK` holds it). Text columns
//!   hold NUL bytes as they are (bound with their length).
//! - The message is stored once: when it is a non-empty slice of the UTF-8
//!   raw line (found by a substring search while the batch is encoded),
//!   `message` is `''` and `(msg_start, msg_len)` locate it in `raw`, in
//!   bytes; otherwise both are `NULL` and `message` holds it. Reading puts it
//!   back exactly (see `schema` version 4), and a `text` query searches the
//!   slice.
//! - Opening waits out a busy database within the busy timeout, including
//!   the moments SQLite answers `SQLITE_BUSY` without its busy handler
//!   (another process closing or recovering the WAL): processes that start
//!   together all open ([`open_within`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::Duration;

use ackline_parse::{Record, Severity};
use parking_lot::Mutex;
use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

use crate::error::join_error;
use crate::row;
use crate::{Store, StoreError, StoreOptions, WriteReport};

mod checkpoint;
mod query;
mod schema;

pub use query::{Query, QueryCursor};

const KIND: &str = "sqlite";

/// The page size of a new database.
const PAGE_SIZE: u32 = 8192;

/// The writer checkpoints by itself (in its commit) once the WAL holds this
/// many pages: only when the checkpointer falls behind or never completes.
const WAL_BACKSTOP_PAGES: u32 = 4096;

/// A group commit takes waiting batches up to this many rows (a batch larger
/// than this is written alone).
const GROUP_MAX_ROWS: usize = 8192;

/// The WAL file is truncated to this size when it restarts.
const JOURNAL_SIZE_LIMIT: u64 = 64 << 20;

/// The writer connection and the way to wake the checkpointer.
#[derive(Debug)]
struct Writer {
    conn: Connection,
    checkpointer: SyncSender<()>,
    /// Transactions committed (the group-commit tests count them).
    commits: u64,
}

/// A batch waiting for a writer turn, and where its result goes.
#[derive(Debug)]
struct Waiting {
    batch: Encoded,
    done: tokio::sync::oneshot::Sender<Result<WriteReport, StoreError>>,
}

/// Idempotent SQLite store. Cheap to share (`Arc` inside is not needed:
/// wrap it in one to share between tasks).
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    table: Arc<str>,
    insert_sql: Arc<str>,
    writer: Arc<Mutex<Writer>>,
    /// Batches queued for the writer (group commit).
    waiting: Arc<Mutex<Vec<Waiting>>>,
    reader: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, and creates or
    /// migrates the table [`StoreOptions::table`].
    ///
    /// # Errors
    /// `Fatal` when the file cannot be opened or is not a database, the table
    /// name is invalid, or the schema is newer than this binary;
    /// `Unavailable` when another process holds the database locked beyond
    /// [`StoreOptions::busy_timeout`].
    pub async fn open(path: impl AsRef<Path>, opts: &StoreOptions) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let table: Arc<str> = Arc::from(opts.checked_table(KIND)?);
        let busy = opts.busy_timeout;
        let (p, t) = (path.clone(), table.clone());
        let (writer, reader) = tokio::task::spawn_blocking(move || {
            open_within(busy, || {
                let mut writer = Connection::open(&p).map_err(|e| open_error(&p, &e))?;
                writer.busy_timeout(busy).map_err(classify)?;
                // Only takes effect on a new (empty) database, so before WAL.
                writer
                    .execute_batch(&format!("PRAGMA page_size = {PAGE_SIZE};"))
                    .map_err(|e| open_error(&p, &e))?;
                let mode: String = writer
                    .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
                    .map_err(classify)?;
                if !mode.eq_ignore_ascii_case("wal") {
                    return Err(StoreError::fatal(
                        KIND,
                        format!("{}: cannot use WAL journal mode (got {mode})", p.display()),
                    ));
                }
                writer
                    .execute_batch(&format!(
                        "PRAGMA synchronous = FULL; \
                     PRAGMA wal_autocheckpoint = {WAL_BACKSTOP_PAGES}; \
                     PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT};"
                    ))
                    .map_err(classify)?;
                schema::migrate(&mut writer, &t)?;
                let checkpointer = checkpoint::spawn(&p)?;
                let reader = Connection::open_with_flags(
                    &p,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(|e| open_error(&p, &e))?;
                reader.busy_timeout(busy).map_err(classify)?;
                let writer = Writer {
                    conn: writer,
                    checkpointer,
                    commits: 0,
                };
                Ok((writer, reader))
            })
        })
        .await
        .map_err(|e| join_error(KIND, &e))??;
        let insert_sql = format!(
            "INSERT INTO {table} (id, ts_ms, ts_nanos, ts_offset, timestamp_source, severity, \
             host, app, pid, message, fields, raw, raw_bytes, input, format, stored_at_ms, \
             parse_error, msg_start, msg_len) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, \
             ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19) ON CONFLICT (id) DO NOTHING"
        );
        Ok(Self {
            path,
            table,
            insert_sql: Arc::from(insert_sql),
            writer: Arc::new(Mutex::new(writer)),
            waiting: Arc::new(Mutex::new(Vec::new())),
            reader: Arc::new(Mutex::new(reader)),
        })
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The records table.
    #[must_use]
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Records matching `q`, in (timestamp, id) order; see [`Query`].
    ///
    /// # Errors
    /// `Unavailable` when the database is locked beyond the busy timeout;
    /// `Fatal` on I/O errors or a row this binary cannot decode.
    pub async fn query(&self, q: &Query) -> Result<Vec<Record>, StoreError> {
        let (reader, table, q) = (self.reader.clone(), self.table.clone(), q.clone());
        tokio::task::spawn_blocking(move || query::run(&reader.lock(), &table, &q))
            .await
            .map_err(|e| join_error(KIND, &e))?
    }

    /// How many records are stored.
    ///
    /// # Errors
    /// As [`SqliteStore::query`].
    pub async fn count(&self) -> Result<u64, StoreError> {
        let (reader, table) = (self.reader.clone(), self.table.clone());
        tokio::task::spawn_blocking(move || {
            let n: i64 = reader
                .lock()
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .map_err(classify)?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
        .map_err(|e| join_error(KIND, &e))?
    }
}

impl Store for SqliteStore {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn write_batch(
        &self,
        batch: &[Record],
    ) -> impl Future<Output = Result<WriteReport, StoreError>> + Send {
        let (writer, waiting, sql) = (
            self.writer.clone(),
            self.waiting.clone(),
            self.insert_sql.clone(),
        );
        // The blocking task needs owned data: the batch's column values,
        // encoded here, in the caller's task and outside the writer's lock.
        let batch = Encoded::new(batch);
        async move {
            if batch.rows.is_empty() {
                return Ok(WriteReport::default());
            }
            // Queue the batch, then take a writer turn: this turn, or one
            // that got the writer first, writes it (see the module doc).
            let (done, result) = tokio::sync::oneshot::channel();
            waiting.lock().push(Waiting { batch, done });
            tokio::task::spawn_blocking(move || {
                let mut w = writer.lock();
                loop {
                    let group = take_group(&mut waiting.lock());
                    if group.is_empty() {
                        break;
                    }
                    write_group(&mut w, &sql, group);
                }
            })
            .await
            .map_err(|e| join_error(KIND, &e))?;
            result.await.unwrap_or_else(|_| {
                Err(StoreError::fatal(
                    KIND,
                    "the writer stopped before writing this batch",
                ))
            })
        }
    }

    fn probe(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        let reader = self.reader.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                reader
                    .lock()
                    .query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
                    .map_err(classify)
            })
            .await
            .map_err(|e| join_error(KIND, &e))?
        }
    }
}

/// The waiting batches from the front of the queue, up to [`GROUP_MAX_ROWS`]
/// rows (at least one batch, if any waits).
fn take_group(waiting: &mut Vec<Waiting>) -> Vec<Waiting> {
    let mut rows = 0;
    let n = waiting
        .iter()
        .take_while(|w| {
            rows += w.batch.rows.len();
            rows <= GROUP_MAX_ROWS
        })
        .count()
        .max(1)
        .min(waiting.len());
    waiting.drain(..n).collect()
}

/// Writes a group in one transaction and sends each batch its report; if
/// that fails, writes each batch alone and sends it its own result.
fn write_group(w: &mut Writer, sql: &str, group: Vec<Waiting>) {
    let batches: Vec<&Encoded> = group.iter().map(|g| &g.batch).collect();
    let results = match insert(&mut w.conn, sql, &batches) {
        Ok(reports) => {
            w.commits += 1;
            reports.into_iter().map(Ok).collect()
        }
        Err(e) if group.len() == 1 => vec![Err(e)],
        // Rolled back: nothing of the group is stored.
        Err(_) => batches
            .iter()
            .map(|b| {
                let r = insert(&mut w.conn, sql, std::slice::from_ref(b))?;
                w.commits += 1;
                Ok(r.iter().fold(WriteReport::default(), |t, r| WriteReport {
                    inserted: t.inserted + r.inserted,
                    duplicates: t.duplicates + r.duplicates,
                }))
            })
            .collect::<Vec<_>>(),
    };
    // Wake the checkpointer; a wake-up already pending covers this commit too.
    match w.checkpointer.try_send(()) {
        Ok(()) | Err(TrySendError::Full(())) => {}
        // The checkpointer stopped (it logs nothing and cannot fail a write):
        // the writer's automatic checkpoint still bounds the WAL.
        Err(TrySendError::Disconnected(())) => {}
    }
    for (g, r) in group.into_iter().zip(results) {
        // A caller that went away no longer wants the result; its batch is
        // written all the same.
        let _ = g.done.send(r);
    }
}

/// Inserts `batches` in one transaction; a report per batch.
fn insert(
    conn: &mut Connection,
    sql: &str,
    batches: &[&Encoded],
) -> Result<Vec<WriteReport>, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(classify)?;
    let mut reports = Vec::with_capacity(batches.len());
    {
        let mut stmt = tx.prepare_cached(sql).map_err(classify)?;
        let stored_at = now_ms();
        for batch in batches {
            let mut inserted = 0;
            for (index, r) in batch.rows.iter().enumerate() {
                let n = batch
                    .bind(&mut stmt, r, stored_at)
                    .and_then(|()| stmt.raw_execute())
                    .map_err(|e| classify_row(e, index, batch.text(r.id)))?;
                inserted += n;
            }
            reports.push(WriteReport {
                inserted,
                duplicates: batch.rows.len() - inserted,
            });
        }
    }
    tx.commit().map_err(classify)?;
    Ok(reports)
}

/// A range of [`Encoded::text`] or [`Encoded::bytes`].
#[derive(Debug, Clone, Copy)]
struct Span(usize, usize);

/// One record's column values; text and bytes point into the batch's arenas.
#[derive(Debug)]
struct Row {
    id: Span,
    ts: (i64, i32, i32),
    source: &'static str,
    severity: Option<i64>,
    host: Option<Span>,
    app: Option<Span>,
    pid: Option<i64>,
    message: Message,
    fields: Option<Span>,
    /// `Ok`: UTF-8 raw line in `text`; `Err`: raw bytes in `bytes`.
    raw: Result<Span, Span>,
    input: Span,
    format: &'static str,
    parse_error: Option<Span>,
}

/// Where a record's message is stored.
#[derive(Debug, Clone, Copy)]
enum Message {
    /// In `message`: this range of [`Encoded::text`].
    Own(Span),
    /// The slice `start..start + len` of the raw line, in bytes: `message`
    /// is `''`.
    InRaw { start: i64, len: i64 },
}

impl Message {
    /// `message` as a slice of the UTF-8 raw line `raw`, when it is one (and
    /// not empty).
    fn find(raw: &str, message: &str) -> Option<Message> {
        if message.is_empty() {
            return None;
        }
        // Most parsers keep the message as the tail of the line, before the newline.
        let body = raw.trim_end_matches(['\n', '\r']);
        let start = if body.ends_with(message) {
            body.len() - message.len()
        } else {
            raw.find(message)?
        };
        Some(Message::InRaw {
            start: i64::try_from(start).ok()?,
            len: i64::try_from(message.len()).ok()?,
        })
    }
}

/// A batch as the writer thread binds it: every string of every record in
/// one text arena (and non-UTF-8 raw lines in one byte arena), `fields`
/// already JSON. Built by the caller, outside the writer's lock, with three
/// allocations per batch where cloning the records took several per record
/// (and a map per record for `fields`).
#[derive(Debug, Default)]
struct Encoded {
    text: String,
    bytes: Vec<u8>,
    rows: Vec<Row>,
}

impl Encoded {
    fn new(batch: &[Record]) -> Self {
        let size: usize = batch
            .iter()
            .map(|r| {
                r.id.len()
                    + r.message.len()
                    + r.raw.as_bytes().len()
                    + r.input.len()
                    + r.host.as_ref().map_or(0, String::len)
                    + r.app.as_ref().map_or(0, String::len)
            })
            .sum();
        let mut e = Self {
            text: String::with_capacity(size + size / 4),
            bytes: Vec::new(),
            rows: Vec::with_capacity(batch.len()),
        };
        for r in batch {
            let row = Row {
                id: e.push(&r.id),
                ts: row::ts_parts(&r.timestamp),
                source: row::ts_source_name(r.timestamp_source),
                severity: r.severity.map(|s| i64::from(s.code())),
                host: r.host.as_deref().map(|h| e.push(h)),
                app: r.app.as_deref().map(|a| e.push(a)),
                pid: row::pid_to_sql(r.pid),
                message: match &r.raw {
                    ackline_parse::RawLine::Text(t) => Message::find(t, &r.message),
                    ackline_parse::RawLine::Bytes(_) => None,
                }
                .unwrap_or_else(|| Message::Own(e.push(&r.message))),
                fields: row::fields_to_json(&r.fields).map(|j| e.push(&j)),
                raw: match &r.raw {
                    ackline_parse::RawLine::Text(t) => Ok(e.push(t)),
                    ackline_parse::RawLine::Bytes(b) => {
                        let start = e.bytes.len();
                        e.bytes.extend_from_slice(b);
                        Err(Span(start, e.bytes.len()))
                    }
                },
                input: e.push(&r.input),
                format: r.format.name(),
                parse_error: r.parse_error.as_deref().map(|p| e.push(p)),
            };
            e.rows.push(row);
        }
        e
    }

    fn push(&mut self, s: &str) -> Span {
        let start = self.text.len();
        self.text.push_str(s);
        Span(start, self.text.len())
    }

    fn text(&self, s: Span) -> &str {
        &self.text[s.0..s.1]
    }

    /// Binds `r` to the insert statement, by index (the order of the
    /// statement's columns).
    fn bind(
        &self,
        stmt: &mut rusqlite::CachedStatement<'_>,
        r: &Row,
        stored_at: i64,
    ) -> rusqlite::Result<()> {
        let opt = |s: Option<Span>| s.map(|s| self.text(s));
        let (raw, raw_bytes) = match r.raw {
            Ok(t) => (Some(self.text(t)), None),
            Err(b) => (None, Some(&self.bytes[b.0..b.1])),
        };
        stmt.raw_bind_parameter(1, self.text(r.id))?;
        stmt.raw_bind_parameter(2, r.ts.0)?;
        stmt.raw_bind_parameter(3, r.ts.1)?;
        stmt.raw_bind_parameter(4, r.ts.2)?;
        stmt.raw_bind_parameter(5, r.source)?;
        stmt.raw_bind_parameter(6, r.severity)?;
        stmt.raw_bind_parameter(7, opt(r.host))?;
        stmt.raw_bind_parameter(8, opt(r.app))?;
        stmt.raw_bind_parameter(9, r.pid)?;
        let (message, span) = match r.message {
            Message::Own(s) => (self.text(s), None),
            Message::InRaw { start, len } => ("", Some((start, len))),
        };
        stmt.raw_bind_parameter(10, message)?;
        stmt.raw_bind_parameter(11, opt(r.fields))?;
        stmt.raw_bind_parameter(12, raw)?;
        stmt.raw_bind_parameter(13, raw_bytes)?;
        stmt.raw_bind_parameter(14, self.text(r.input))?;
        stmt.raw_bind_parameter(15, r.format)?;
        stmt.raw_bind_parameter(16, stored_at)?;
        stmt.raw_bind_parameter(17, opt(r.parse_error))?;
        stmt.raw_bind_parameter(18, span.map(|s| s.0))?;
        stmt.raw_bind_parameter(19, span.map(|s| s.1))
    }
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A severity back from its code.
pub(crate) fn severity_from_code(code: Option<i64>) -> Result<Option<Severity>, String> {
    code.map(|c| {
        u8::try_from(c)
            .ok()
            .and_then(Severity::from_code)
            .ok_or_else(|| format!("severity {c} out of range"))
    })
    .transpose()
}

/// Runs `open` again while it fails `Unavailable` (the database busy or
/// locked), until `busy` has passed since the first try.
///
/// The busy timeout covers a lock held by another connection's transaction,
/// but SQLite answers `SQLITE_BUSY` at once, without calling the busy handler,
/// in two moments of another process's life: while its last connection closes
/// (it holds the database exclusively to checkpoint and remove the WAL) and
/// while a new connection recovers the WAL index after a crash. Workers that
/// start together, or `ackline query` run beside them, meet those moments;
/// each lasts milliseconds, so opening waits them out as a transaction would.
fn open_within<T>(
    busy: Duration,
    mut open: impl FnMut() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        match open() {
            Err(e) if e.is_unavailable() && started.elapsed() + pause < busy => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

fn open_error(path: &Path, e: &rusqlite::Error) -> StoreError {
    StoreError::fatal(KIND, format!("cannot open {}: {e}", path.display()))
}

/// An error of one record's insert: `Rejected` when it is that record's data.
fn classify_row(e: rusqlite::Error, index: usize, id: &str) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::TooBig | ErrorCode::ConstraintViolation | ErrorCode::TypeMismatch) => {
            StoreError::Rejected {
                index,
                reason: format!("sqlite refuses {}: {e}", row::describe_id(id)),
            }
        }
        _ => classify(e),
    }
}

/// An error that is not about one record.
pub(crate) fn classify(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        // Another process holds the lock beyond busy_timeout, or the disk is
        // full: the operator (or time) fixes it, not the batch.
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::DiskFull) => {
            StoreError::unavailable(KIND, e.to_string())
        }
        // I/O errors are final (as in the queue engine); so are corruption,
        // permissions and everything unexpected.
        _ => StoreError::fatal(KIND, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(prefix: &str, range: std::ops::Range<usize>) -> Vec<Record> {
        let parser = ackline_parse::Parser::new(ackline_parse::ParserConfig::default());
        range
            .map(|i| {
                let id = format!("{prefix}-{i}");
                parser
                    .parse(
                        format!("line {i}").as_bytes(),
                        &ackline_parse::LineContext::now(id, Arc::from("test")),
                    )
                    .unwrap()
            })
            .collect()
    }

    async fn shared_store(dir: &tempfile::TempDir) -> Arc<SqliteStore> {
        let path = dir.path().join("s.db");
        Arc::new(
            SqliteStore::open(path, &StoreOptions::default())
                .await
                .unwrap(),
        )
    }

    /// Queues `batches` while the test holds the writer, then lets the
    /// writer go: the batches meet in the queue, as concurrent workers'
    /// batches do while a commit runs. Returns each batch's result and the
    /// commits the writer made for them.
    #[expect(
        clippy::await_holding_lock,
        reason = "the test holds the writer on purpose while the batches queue"
    )]
    async fn written_together(
        store: Arc<SqliteStore>,
        batches: Vec<Vec<Record>>,
    ) -> (Vec<Result<WriteReport, StoreError>>, u64) {
        let held = store.writer.lock();
        let before = held.commits;
        // One at a time, so they queue in the order given (the reports depend on it).
        let mut tasks = Vec::new();
        for (i, b) in batches.into_iter().enumerate() {
            let s = store.clone();
            tasks.push(tokio::spawn(async move { s.write_batch(&b).await }));
            while store.waiting.lock().len() < i + 1 {
                tokio::task::yield_now().await;
            }
        }
        drop(held);
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        let commits = store.writer.lock().commits - before;
        (results, commits)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_that_wait_for_the_writer_share_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = shared_store(&dir).await;
        // b overlaps a: its first five are duplicates of a's last five.
        let batches = vec![
            records("r", 0..10),
            records("r", 5..20),
            records("other", 0..3),
        ];
        let (results, commits) = written_together(store.clone(), batches).await;
        let reports: Vec<_> = results.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            reports,
            vec![
                WriteReport {
                    inserted: 10,
                    duplicates: 0
                },
                WriteReport {
                    inserted: 10,
                    duplicates: 5
                },
                WriteReport {
                    inserted: 3,
                    duplicates: 0
                },
            ]
        );
        assert_eq!(commits, 1, "one transaction for the three batches");
        assert_eq!(store.count().await.unwrap(), 23);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_record_fails_only_its_own_batch_of_a_group() {
        let dir = tempfile::tempdir().unwrap();
        let store = shared_store(&dir).await;
        // SQLite refuses one record (a constraint, as a too-big value would).
        store
            .writer
            .lock()
            .conn
            .execute_batch(&format!(
                "CREATE TRIGGER refuse BEFORE INSERT ON {} WHEN NEW.id = 'bad-4' \
                 BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
                store.table()
            ))
            .unwrap();
        let batches = vec![
            records("ok", 0..10),
            records("bad", 0..8),
            records("ok", 8..12),
        ];
        let (results, commits) = written_together(store.clone(), batches).await;
        let mut results = results.into_iter();
        assert_eq!(
            results.next().unwrap().unwrap(),
            WriteReport {
                inserted: 10,
                duplicates: 0
            }
        );
        match results.next().unwrap() {
            Err(StoreError::Rejected { index, reason }) => {
                assert_eq!(index, 4, "the refused record's index in its own batch");
                assert!(reason.contains("bad-4"), "{reason}");
            }
            other => panic!("expected Rejected, got {other:?}"),
        }
        assert_eq!(
            results.next().unwrap().unwrap(),
            WriteReport {
                inserted: 2,
                duplicates: 2
            }
        );
        assert_eq!(
            commits, 2,
            "the group rolled back, then the good batches alone"
        );
        let stored = store.query(&Query::default()).await.unwrap();
        assert_eq!(stored.len(), 12);
        assert!(
            stored.iter().all(|r| r.id.starts_with("ok-")),
            "nothing of the refused batch"
        );
    }

    #[test]
    fn a_group_takes_waiting_batches_up_to_its_row_limit() {
        let waiting = |sizes: &[usize]| -> Vec<Waiting> {
            sizes
                .iter()
                .map(|&n| Waiting {
                    batch: Encoded::new(&records("g", 0..n)),
                    done: tokio::sync::oneshot::channel().0,
                })
                .collect()
        };
        let sizes = |g: &[Waiting]| g.iter().map(|w| w.batch.rows.len()).collect::<Vec<_>>();
        let mut q = waiting(&[4000, 4000, 1000, 10]);
        assert_eq!(sizes(&take_group(&mut q)), vec![4000, 4000]);
        assert_eq!(sizes(&take_group(&mut q)), vec![1000, 10]);
        assert!(take_group(&mut q).is_empty());
        // A batch over the limit goes alone.
        let mut q = waiting(&[GROUP_MAX_ROWS + 1, 5]);
        assert_eq!(sizes(&take_group(&mut q)), vec![GROUP_MAX_ROWS + 1]);
        assert_eq!(sizes(&take_group(&mut q)), vec![5]);
    }

    #[test]
    fn opening_retries_a_busy_database_until_it_opens() {
        let mut tries = 0;
        let got = open_within(Duration::from_secs(5), || {
            tries += 1;
            if tries < 4 {
                Err(StoreError::unavailable(KIND, "database is locked"))
            } else {
                Ok(tries)
            }
        });
        assert_eq!(got.ok(), Some(4));
    }

    #[test]
    fn opening_gives_up_on_a_busy_database_after_the_busy_timeout() {
        let started = std::time::Instant::now();
        let mut tries = 0;
        let got: Result<(), _> = open_within(Duration::from_millis(60), || {
            tries += 1;
            Err(StoreError::unavailable(KIND, "database is locked"))
        });
        assert!(got.is_err_and(|e| e.is_unavailable()));
        assert!(tries > 1, "retried");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "bounded by the timeout"
        );
    }

    #[test]
    fn opening_does_not_retry_a_fatal_error() {
        let mut tries = 0;
        let got: Result<(), _> = open_within(Duration::from_secs(5), || {
            tries += 1;
            Err(StoreError::fatal(KIND, "file is not a database"))
        });
        assert!(got.is_err_and(|e| !e.is_unavailable()));
        assert_eq!(tries, 1);
    }
}
