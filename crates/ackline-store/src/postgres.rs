//! The PostgreSQL store, for scale-out: any number of workers on any number
//! of machines write into one table.
//!
//! Invariants:
//! - **One batch, one transaction, written with binary COPY**. First the
//!   fast path: one `COPY <table> FROM STDIN (FORMAT binary)`, a statement
//!   and so a transaction of its own (no `BEGIN`/`COMMIT` round trips).
//!   COPY has no `ON CONFLICT`, so it succeeds only when every id of the
//!   batch is new (the common case: first deliveries), and then all were
//!   inserted. When it fails because an id is already stored or repeats in
//!   the batch (SQLSTATE 23505), on a deadlock with a concurrent writer of the
//!   same ids (40P01), or on any data error, its transaction is aborted
//!   (nothing of it stays visible; the aborted rows are dead tuples that
//!   vacuum reclaims) and the batch is written by the idempotent path: COPY
//!   into a temporary table of the session (`ackline_stage_<table>`,
//!   `ON COMMIT DELETE ROWS`, created by `CREATE TEMP TABLE IF NOT EXISTS` in
//!   the batch's own transaction, so any session, new or recycled, works),
//!   then one `INSERT ... SELECT ... ORDER BY ord ON CONFLICT (id) DO
//!   NOTHING`, in batch order, whose row count is the number inserted; the
//!   rest are duplicates (ids already stored, or earlier in the batch). The
//!   staging table is never WAL-logged and is empty after every commit or
//!   rollback. Sessions set `synchronous_commit=on`, so the fast path's COPY,
//!   or the staged path's `COMMIT`, returns only once the batch is durable
//!   (WAL flushed). The staged path needs the `TEMPORARY` privilege on the
//!   database (granted to `PUBLIC` by default).
//! - **Several workers, several connections**: each `write_batch` takes its
//!   own connection from the pool ([`StoreOptions::pool_size`], default 4)
//!   for the whole transaction, so concurrent workers (tasks sharing one
//!   store, cloned or behind an `Arc`) write in parallel, each on its own
//!   session and staging table; ids they share are settled by the unique
//!   index (one inserts, the others count a duplicate).
//! - **Rejected records are found by bisection**: when the COPY or the
//!   `INSERT` fails with a data error (SQLSTATE class 22 data exception, 23
//!   integrity, 54 program limit: e.g. a NUL in an id, an id too long for the
//!   index) on the idempotent path, the transaction is rolled back, so nothing
//!   was committed; halves of the batch are then staged and inserted in
//!   transactions that are always rolled back, until one record fails alone
//!   (⌈log₂ n⌉ + 1 rounds, only on this rare path). That index is returned as `Rejected`; if no
//!   single record fails alone the original error is `Fatal`.
//! - **NUL bytes**: PostgreSQL `text` and `jsonb` cannot hold U+0000. The raw
//!   line is always stored as `bytea` (`raw`, with `raw_utf8` saying whether
//!   it was valid UTF-8), so it is lossless for any bytes. In the text columns
//!   (`input`, `host`, `app`, `message`, `parse_error`) and in `fields`, each
//!   NUL is stored as U+FFFD, so the row stays readable and searchable, and
//!   the exact original values of just those columns are kept as a JSON
//!   object in `nul_originals` (JSON escapes NUL as `\u0000`, which `text`
//!   holds); [`PostgresStore::get`] restores them. The id is the key and is
//!   never altered: an id with a NUL is `Rejected`.
//! - **Schema**: created and migrated by the tool under a transaction-scoped
//!   advisory lock (so concurrent workers opening at once do not race); each
//!   table's version is a row of `ackline_schema_version`; a newer version
//!   than this binary knows is `Fatal`. Versions as for SQLite: 1 had no
//!   `parse_error` and no `app` index; 2 added them; 3 (current) drops the
//!   `(host, ts_ms)`, `(severity, ts_ms)` and `(app, ts_ms)` indexes, which
//!   every write paid for (three more B-tree inserts and their WAL per row:
//!   about a third of the server's time per batch) and no ackline operation
//!   reads (it reads by `id`). What stays: the primary key on `id`, which
//!   `ON CONFLICT (id)` and the COPY's duplicate check need, and
//!   `(ts_ms, ts_nanos, id)` for time-ordered reads. An operator who queries
//!   by host or app adds the index they need; ackline never drops an index
//!   it did not create.
//! - **TLS**: `sslmode=require` connects with rustls (ring), verifying the
//!   server certificate against the system's CA store (stricter than libpq's
//!   `require`, which does not verify). `sslmode=prefer` (the default) and
//!   `disable` connect in plain text: no opportunistic unverified TLS.
//! - **A silent server is given up on, never waited for forever**: every
//!   operation (connecting included) ends within
//!   [`StoreOptions::operation_timeout`] as `Unavailable`; a connection
//!   whose operation failed or was cut short by that timeout is detached
//!   from the pool and closed, never reused (it may sit behind a half-open
//!   socket); a pooled connection must answer a round trip before it is
//!   reused (`RecyclingMethod::Verified`, within the recycle timeout, or it
//!   is dropped and the next one tried); and the sockets use TCP keepalive
//!   (10 s idle, 5 s apart, 3 probes) and `tcp_user_timeout` (the operation
//!   timeout, at least 1 s), unless the URL sets them, so the kernel too
//!   closes a connection to a peer that went away.
//! - Timestamps and `pid` are encoded as in [`crate::row`]; `stored_at` is
//!   the server's `now()`.

use std::borrow::Cow;
use std::ops::Range;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use ackline_parse::{Format, RawLine, Record};
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use serde_json::{Map, Value};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::config::SslMode;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Config, NoTls};

use crate::sqlite::severity_from_code;
use crate::{Store, StoreError, StoreOptions, WriteReport, row};

const KIND: &str = "postgres";

/// tokio-postgres's default idle time before keepalive probes (the kernel's usual 2 h).
const DEFAULT_KEEPALIVES_IDLE: Duration = Duration::from_secs(2 * 60 * 60);
/// Idle time before the first keepalive probe.
const KEEPALIVES_IDLE: Duration = Duration::from_secs(10);
/// Between unanswered keepalive probes.
const KEEPALIVES_INTERVAL: Duration = Duration::from_secs(5);
/// Unanswered keepalive probes before the kernel closes the connection.
const KEEPALIVES_RETRIES: u32 = 3;

/// A pooled connection that goes back to the pool only when [`Conn::healthy`] says so.
/// Dropped any other way (an error, or a timeout that cancelled the operation half-way) it is
/// detached from the pool and closed: a connection whose query went unanswered may be stuck
/// behind a silent peer, and every later query on it would hang too.
struct Conn(Option<deadpool_postgres::Client>);

impl Conn {
    async fn get(pool: &Pool) -> Result<Conn, StoreError> {
        pool.get().await.map(|c| Conn(Some(c))).map_err(pool_error)
    }

    /// The connection answered as expected: back to the pool on drop.
    fn healthy(mut self) {
        drop(self.0.take());
    }
}

impl std::ops::Deref for Conn {
    type Target = deadpool_postgres::Client;

    fn deref(&self) -> &Self::Target {
        // Only `healthy` and `drop` take the client, and both consume the `Conn`.
        self.0
            .as_ref()
            .unwrap_or_else(|| unreachable!("Conn used after release"))
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.0
            .as_mut()
            .unwrap_or_else(|| unreachable!("Conn used after release"))
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

/// The schema version this binary writes.
const CURRENT: i32 = 3;

/// Idempotent PostgreSQL store over a connection pool.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: Pool,
    table: Arc<str>,
    sql: Arc<WriteSql>,
    timeout: Duration,
}

/// The statements of one write, for one table.
#[derive(Debug)]
struct WriteSql {
    /// The fast path: the batch straight into the table.
    copy_direct: String,
    /// Opens the batch's transaction and makes sure the session has its staging table.
    begin: String,
    /// Fills the staging table from the binary COPY stream.
    copy: String,
    /// Moves the staged rows into the table, skipping stored ids.
    merge: String,
}

impl PostgresStore {
    /// Connects to `url` (libpq URL syntax: `postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?sslmode=require]`)
    /// and creates or migrates the table [`StoreOptions::table`] (lowercased).
    ///
    /// # Errors
    /// `Fatal` for a bad URL or option, failed authentication, a schema newer
    /// than this binary, or a table of that name not made by ackline;
    /// `Unavailable` when the server cannot be reached in time.
    pub async fn connect(url: &str, opts: &StoreOptions) -> Result<Self, StoreError> {
        let table: Arc<str> = Arc::from(opts.checked_table(KIND)?.to_ascii_lowercase());
        let mut config = Config::from_str(url).map_err(|e| {
            StoreError::fatal(
                KIND,
                format!("invalid PostgreSQL URL: {e}; {}", crate::url::EXPECTED),
            )
        })?;
        if opts.pool_size == 0 {
            return Err(StoreError::fatal(KIND, "pool_size must be at least 1"));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(opts.connect_timeout);
        }
        let options = match config.get_options() {
            Some(o) => format!("{o} -c synchronous_commit=on"),
            None => "-c synchronous_commit=on".to_owned(),
        };
        config.options(options);
        // A peer that goes silent (a dead host, a middlebox that dropped the flow) is noticed
        // by the kernel instead of never: keepalive probes on idle connections, and a limit on
        // how long sent data may stay unacknowledged. Values in the URL win.
        if config.get_keepalives_idle() == DEFAULT_KEEPALIVES_IDLE {
            config.keepalives_idle(KEEPALIVES_IDLE);
        }
        if config.get_keepalives_interval().is_none() {
            config.keepalives_interval(KEEPALIVES_INTERVAL);
        }
        if config.get_keepalives_retries().is_none() {
            config.keepalives_retries(KEEPALIVES_RETRIES);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(opts.operation_timeout.max(Duration::from_secs(1)));
        }
        // Verified: a pooled connection answers a round trip before it is reused; one that
        // does not within the recycle timeout is dropped and the next one (or a new one) tried.
        let mgr_config = ManagerConfig {
            recycling_method: RecyclingMethod::Verified,
        };
        let manager = if config.get_ssl_mode() == SslMode::Require {
            Manager::from_config(config, tls()?, mgr_config)
        } else {
            config.ssl_mode(SslMode::Disable);
            Manager::from_config(config, NoTls, mgr_config)
        };
        let pool = Pool::builder(manager)
            .max_size(opts.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(opts.connect_timeout))
            .create_timeout(Some(opts.connect_timeout))
            .recycle_timeout(Some(opts.connect_timeout.min(opts.operation_timeout / 2)))
            .build()
            .map_err(|e| StoreError::fatal(KIND, format!("cannot build the pool: {e}")))?;
        let store = Self {
            pool,
            sql: Arc::new(WriteSql::new(&table)),
            table,
            timeout: opts.operation_timeout,
        };
        store.within_timeout(store.migrate()).await?;
        Ok(store)
    }

    /// The records table.
    #[must_use]
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The stored record with this id, exactly as written (NUL bytes
    /// restored from `nul_originals`).
    ///
    /// # Errors
    /// As [`Store::write_batch`], and `Fatal` for a row this binary cannot decode.
    pub async fn get(&self, id: &str) -> Result<Option<Record>, StoreError> {
        self.within_timeout(async {
            let client = Conn::get(&self.pool).await?;
            let sql = format!(
                "SELECT id, ts_ms, ts_nanos, ts_offset, timestamp_source, severity, host, app, \
                 pid, message, fields::text, raw, raw_utf8, input, format, nul_originals, \
                 parse_error FROM {} WHERE id = $1",
                self.table
            );
            let row = client
                .query_opt(&sql, &[&id])
                .await
                .map_err(|e| classify(&e))?;
            client.healthy();
            row.map(|r| {
                decode(&r).map_err(|e| StoreError::fatal(KIND, format!("row id {id:?}: {e}")))
            })
            .transpose()
        })
        .await
    }

    async fn within_timeout<T>(
        &self,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.timeout, fut)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::unavailable(
                    KIND,
                    format!("no answer within {:?}", self.timeout),
                ))
            })
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let t = &*self.table;
        let mut client = Conn::get(&self.pool).await?;
        let tx = client.transaction().await.map_err(|e| classify(&e))?;
        let q = |e: tokio_postgres::Error| classify(&e);
        // One lock for all tables: creating ackline_schema_version races otherwise.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('ackline_schema_version'))",
            &[],
        )
        .await
        .map_err(q)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS ackline_schema_version (
                table_name text PRIMARY KEY,
                version integer NOT NULL,
                updated_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(q)?;
        let version: Option<i32> = tx
            .query_opt(
                "SELECT version FROM ackline_schema_version WHERE table_name = $1",
                &[&t],
            )
            .await
            .map_err(q)?
            .map(|r| r.get(0));
        let exists: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_tables \
                 WHERE schemaname = current_schema() AND tablename = $1)",
                &[&t],
            )
            .await
            .map_err(q)?
            .get(0);
        match version {
            None if exists => {
                return Err(StoreError::fatal(
                    KIND,
                    format!(
                        "table {t} exists but has no row in ackline_schema_version: not an ackline table"
                    ),
                ));
            }
            None => {
                tx.batch_execute(&create_current(t)).await.map_err(q)?;
                tx.execute(
                    "INSERT INTO ackline_schema_version (table_name, version) VALUES ($1, $2)",
                    &[&t, &CURRENT],
                )
                .await
                .map_err(q)?;
            }
            Some(v) if v > CURRENT => {
                return Err(StoreError::fatal(
                    KIND,
                    format!(
                        "table {t} has schema version {v}, newer than this binary knows ({CURRENT}): upgrade ackline"
                    ),
                ));
            }
            Some(mut v) => {
                while v < CURRENT {
                    let sql = step(t, v).ok_or_else(|| {
                        StoreError::fatal(KIND, format!("table {t}: no migration from version {v}"))
                    })?;
                    tx.batch_execute(&sql).await.map_err(q)?;
                    v += 1;
                }
                tx.execute(
                    "UPDATE ackline_schema_version SET version = $2, updated_at = now() WHERE table_name = $1",
                    &[&t, &CURRENT],
                )
                .await
                .map_err(q)?;
            }
        }
        tx.commit().await.map_err(q)?;
        client.healthy();
        Ok(())
    }

    async fn write(&self, batch: &[Record]) -> Result<WriteReport, StoreError> {
        if batch.is_empty() {
            return Ok(WriteReport::default());
        }
        let client = Conn::get(&self.pool).await?;
        // One statement, its own transaction: committed (durably) when the COPY returns, or
        // not at all.
        match self.copy_direct(&client, batch).await {
            Ok(n) => {
                client.healthy();
                let inserted = usize::try_from(n).unwrap_or(batch.len()).min(batch.len());
                return Ok(WriteReport {
                    inserted,
                    duplicates: batch.len() - inserted,
                });
            }
            // A stored or repeated id, a deadlock with a writer of the same ids, or a record
            // the server refuses: nothing of the transaction stays; the idempotent path sorts it out.
            Err(e) if is_data_error(&e) || is_deadlock(&e) => {}
            Err(e) => return Err(classify(&e)),
        }
        client
            .batch_execute(&self.sql.begin)
            .await
            .map_err(|e| classify(&e))?;
        match self.stage_and_insert(&client, batch, 0).await {
            Ok(n) => {
                client
                    .batch_execute("COMMIT")
                    .await
                    .map_err(|e| classify(&e))?;
                client.healthy();
                let inserted = usize::try_from(n).unwrap_or(batch.len()).min(batch.len());
                Ok(WriteReport {
                    inserted,
                    duplicates: batch.len() - inserted,
                })
            }
            Err(e) if is_data_error(&e) => {
                client
                    .batch_execute("ROLLBACK")
                    .await
                    .map_err(|e| classify(&e))?;
                let found = self.bisect(&client, batch).await?;
                client.healthy();
                match found {
                    Some((index, reason)) => Err(StoreError::Rejected {
                        index,
                        reason: format!(
                            "postgres refuses {}: {reason}",
                            row::describe(&batch[index])
                        ),
                    }),
                    None => Err(StoreError::fatal(
                        KIND,
                        format!("batch refused, but no record alone: {}", db_text(&e)),
                    )),
                }
            }
            Err(e) => Err(classify(&e)),
        }
    }

    /// COPYs the whole batch into the table, as one autocommitted statement;
    /// returns the rows copied. Fails on the first id already stored (or
    /// repeated), committing nothing.
    async fn copy_direct(
        &self,
        client: &deadpool_postgres::Client,
        batch: &[Record],
    ) -> Result<u64, tokio_postgres::Error> {
        let copy = client.prepare_cached(&self.sql.copy_direct).await?;
        let sink = client.copy_in(&copy).await?;
        let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, &TABLE_TYPES));
        for r in batch {
            writer.as_mut().write(&Row::new(r).values()).await?;
        }
        writer.finish().await
    }

    /// Within the open transaction: COPYs `part` (whose first record is
    /// number `first` of the batch) into the staging table, then inserts it
    /// into the table in batch order; returns how many were inserted.
    async fn stage_and_insert(
        &self,
        client: &deadpool_postgres::Client,
        part: &[Record],
        first: usize,
    ) -> Result<u64, tokio_postgres::Error> {
        let copy = client.prepare_cached(&self.sql.copy).await?;
        let sink = client.copy_in(&copy).await?;
        let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, &STAGE_TYPES));
        for (ord, r) in (0i64..).zip(part) {
            let row = Row::new(r);
            let values = row.values();
            let ord = i64::try_from(first).unwrap_or(i64::MAX).saturating_add(ord);
            let staged: [&(dyn ToSql + Sync); 18] =
                std::array::from_fn(|k| values.get(k).copied().unwrap_or(&ord));
            writer.as_mut().write(&staged).await?;
        }
        writer.finish().await?;
        let merge = client.prepare_cached(&self.sql.merge).await?;
        client.execute(&merge, &[]).await
    }

    /// Finds the first record of the batch that fails alone; every probe is
    /// rolled back. `Ok(None)`: none does.
    async fn bisect(
        &self,
        client: &deadpool_postgres::Client,
        batch: &[Record],
    ) -> Result<Option<(usize, String)>, StoreError> {
        let (mut lo, mut hi) = (0, batch.len());
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self
                .try_rolled_back(client, batch, lo..mid)
                .await?
                .is_some()
            {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Ok(self
            .try_rolled_back(client, batch, lo..hi)
            .await?
            .map(|reason| (lo, reason)))
    }

    /// Stages and inserts rows `range` in a transaction that is rolled back:
    /// `Some(reason)` when the server refuses their data.
    async fn try_rolled_back(
        &self,
        client: &deadpool_postgres::Client,
        batch: &[Record],
        range: Range<usize>,
    ) -> Result<Option<String>, StoreError> {
        client
            .batch_execute(&self.sql.begin)
            .await
            .map_err(|e| classify(&e))?;
        let first = range.start;
        let part = batch.get(range).unwrap_or_default();
        let result = self.stage_and_insert(client, part, first).await;
        client
            .batch_execute("ROLLBACK")
            .await
            .map_err(|e| classify(&e))?;
        match result {
            Ok(_) => Ok(None),
            Err(e) if is_data_error(&e) => Ok(Some(db_text(&e))),
            Err(e) => Err(classify(&e)),
        }
    }
}

impl Store for PostgresStore {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn write_batch(
        &self,
        batch: &[Record],
    ) -> impl Future<Output = Result<WriteReport, StoreError>> + Send {
        self.within_timeout(self.write(batch))
    }

    fn probe(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.within_timeout(async {
            let client = Conn::get(&self.pool).await?;
            client
                .simple_query("SELECT 1")
                .await
                .map_err(|e| classify(&e))?;
            client.healthy();
            Ok(())
        })
    }
}

/// The rustls connector for `sslmode=require`.
fn tls() -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(StoreError::fatal(
            KIND,
            "sslmode=require, but no CA certificate could be loaded from the system store",
        ));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StoreError::fatal(KIND, format!("TLS setup: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

fn create_current(t: &str) -> String {
    format!(
        "CREATE TABLE {t} (
            id text PRIMARY KEY,
            ts_ms bigint NOT NULL,
            ts_nanos integer NOT NULL,
            ts_offset integer NOT NULL,
            timestamp_source text NOT NULL,
            severity smallint,
            host text,
            app text,
            pid bigint,
            message text NOT NULL,
            fields jsonb,
            raw bytea NOT NULL,
            raw_utf8 boolean NOT NULL,
            input text NOT NULL,
            format text NOT NULL,
            nul_originals text,
            stored_at timestamptz NOT NULL DEFAULT now(),
            parse_error text
        );
        CREATE INDEX {t}_ts ON {t} (ts_ms, ts_nanos, id);"
    )
}

fn step(t: &str, from: i32) -> Option<String> {
    match from {
        1 => Some(format!(
            "ALTER TABLE {t} ADD COLUMN parse_error text;
             CREATE INDEX {t}_app_ts ON {t} (app, ts_ms);"
        )),
        2 => Some(format!(
            "DROP INDEX IF EXISTS {t}_host_ts;
             DROP INDEX IF EXISTS {t}_severity_ts;
             DROP INDEX IF EXISTS {t}_app_ts;"
        )),
        _ => None,
    }
}

/// The table's column types, in the order of [`Row::values`] and of
/// [`COLUMNS`].
const TABLE_TYPES: [Type; 17] = [
    Type::TEXT,
    Type::INT8,
    Type::INT4,
    Type::INT4,
    Type::TEXT,
    Type::INT2,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::TEXT,
    Type::JSONB,
    Type::BYTEA,
    Type::BOOL,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
];

/// The staging table's column types: the table's, then `ord`.
const STAGE_TYPES: [Type; 18] = [
    Type::TEXT,
    Type::INT8,
    Type::INT4,
    Type::INT4,
    Type::TEXT,
    Type::INT2,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::TEXT,
    Type::JSONB,
    Type::BYTEA,
    Type::BOOL,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
];

/// The columns a write sets (`stored_at` takes its default, `now()`).
const COLUMNS: &str = "id, ts_ms, ts_nanos, ts_offset, timestamp_source, severity, host, app, \
                       pid, message, fields, raw, raw_utf8, input, format, nul_originals, \
                       parse_error";

impl WriteSql {
    fn new(t: &str) -> Self {
        // `t` is at most 48 bytes, so the staging table's name stays within 63.
        let stage = format!("ackline_stage_{t}");
        Self {
            copy_direct: format!("COPY {t} ({COLUMNS}) FROM STDIN (FORMAT binary)"),
            // SET LOCAL: no "already exists, skipping" notice for every batch.
            begin: format!(
                "BEGIN; SET LOCAL client_min_messages = warning; \
                 CREATE TEMP TABLE IF NOT EXISTS {stage} (id text, ts_ms int8, ts_nanos int4, \
                 ts_offset int4, timestamp_source text, severity int2, host text, app text, \
                 pid int8, message text, fields jsonb, raw bytea, raw_utf8 bool, input text, \
                 format text, nul_originals text, parse_error text, ord int8) \
                 ON COMMIT DELETE ROWS"
            ),
            copy: format!("COPY {stage} FROM STDIN (FORMAT binary)"),
            merge: format!(
                "INSERT INTO {t} ({COLUMNS}) SELECT {COLUMNS} FROM {stage} ORDER BY ord \
                 ON CONFLICT (id) DO NOTHING"
            ),
        }
    }
}

/// `fields` as `jsonb` in the binary format: a version byte (1), then the
/// JSON text. (tokio-postgres encodes `jsonb` only from `serde_json::Value`,
/// which would parse the text back.)
#[derive(Debug)]
struct Jsonb(String);

impl ToSql for Jsonb {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(&[1]);
        out.extend_from_slice(self.0.as_bytes());
        Ok(tokio_postgres::types::IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
    }

    tokio_postgres::types::to_sql_checked!();
}

/// One record's column values, encoded while the COPY streams (so the
/// client's encoding overlaps the server's work instead of preceding it).
struct Row<'a> {
    id: &'a str,
    ts_ms: i64,
    ts_nanos: i32,
    ts_offset: i32,
    source: &'static str,
    severity: Option<i16>,
    host: Option<Cow<'a, str>>,
    app: Option<Cow<'a, str>>,
    pid: Option<i64>,
    message: Cow<'a, str>,
    fields: Option<Jsonb>,
    raw: &'a [u8],
    raw_utf8: bool,
    input: Cow<'a, str>,
    format: &'static str,
    nul_originals: Option<String>,
    parse_error: Option<Cow<'a, str>>,
}

impl<'a> Row<'a> {
    fn new(r: &'a Record) -> Self {
        let (ts_ms, ts_nanos, ts_offset) = row::ts_parts(&r.timestamp);
        let mut originals = Map::new();
        let mut text = |name: &str, s: &'a str| -> Cow<'a, str> {
            if s.contains('\0') {
                originals.insert(name.to_owned(), Value::String(s.to_owned()));
                Cow::Owned(s.replace('\0', "\u{FFFD}"))
            } else {
                Cow::Borrowed(s)
            }
        };
        let input = text("input", &r.input);
        let host = r.host.as_deref().map(|s| text("host", s));
        let app = r.app.as_deref().map(|s| text("app", s));
        let message = text("message", &r.message);
        let parse_error = r.parse_error.as_deref().map(|s| text("parse_error", s));
        let fields = if r.fields.is_empty() {
            None
        } else if r.fields.iter().any(|(k, v)| k.contains('\0') || has_nul(v)) {
            let original = Value::Object(r.fields.clone().into_iter().collect());
            let clean = strip_nul(&original);
            originals.insert("fields".to_owned(), original);
            serde_json::to_string(&clean).ok()
        } else {
            row::fields_to_json(&r.fields)
        };
        Row {
            id: &r.id,
            ts_ms,
            ts_nanos,
            ts_offset,
            source: row::ts_source_name(r.timestamp_source),
            severity: r.severity.map(|s| i16::from(s.code())),
            host,
            app,
            pid: row::pid_to_sql(r.pid),
            message,
            fields: fields.map(Jsonb),
            raw: r.raw.as_bytes(),
            raw_utf8: r.raw.is_utf8(),
            input,
            format: r.format.name(),
            nul_originals: if originals.is_empty() {
                None
            } else {
                serde_json::to_string(&originals).ok()
            },
            parse_error,
        }
    }

    /// The values in the table's column order ([`TABLE_TYPES`]).
    fn values(&self) -> [&(dyn ToSql + Sync); 17] {
        [
            &self.id,
            &self.ts_ms,
            &self.ts_nanos,
            &self.ts_offset,
            &self.source,
            &self.severity,
            &self.host,
            &self.app,
            &self.pid,
            &self.message,
            &self.fields,
            &self.raw,
            &self.raw_utf8,
            &self.input,
            &self.format,
            &self.nul_originals,
            &self.parse_error,
        ]
    }
}

fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

fn strip_nul(v: &Value) -> Value {
    let fix = |s: &str| s.replace('\0', "\u{FFFD}");
    match v {
        Value::String(s) => Value::String(fix(s)),
        Value::Array(a) => Value::Array(a.iter().map(strip_nul).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (fix(k), strip_nul(v))).collect()),
        other => other.clone(),
    }
}

/// 40P01: the server broke a deadlock by failing this transaction.
fn is_deadlock(e: &tokio_postgres::Error) -> bool {
    e.code()
        .is_some_and(|c| *c == tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED)
}

fn is_data_error(e: &tokio_postgres::Error) -> bool {
    e.code()
        .is_some_and(|c| matches!(c.code().get(..2), Some("22" | "23" | "54")))
}

/// The server's message and SQLSTATE, or the client's error.
fn db_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

fn pool_error(e: PoolError) -> StoreError {
    match e {
        PoolError::Timeout(t) => {
            StoreError::unavailable(KIND, format!("no connection in time ({t:?})"))
        }
        PoolError::Backend(e) => classify(&e),
        other => StoreError::fatal(KIND, other.to_string()),
    }
}

/// Classifies an error that is not about one record.
fn classify(e: &tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        let transient = matches!(code.get(..2), Some("08" | "40" | "53" | "57"))
            || matches!(code, "55P03" | "55006" | "58030");
        let text = db_text(e);
        return if transient {
            StoreError::unavailable(KIND, text)
        } else {
            StoreError::fatal(KIND, text)
        };
    }
    let mut source = std::error::Error::source(e);
    let mut io = false;
    while let Some(s) = source {
        io |= s.is::<std::io::Error>();
        source = s.source();
    }
    let text = full_text(e);
    let lower = text.to_ascii_lowercase();
    if io || e.is_closed() || lower.contains("timeout") || lower.contains("timed out") {
        StoreError::unavailable(KIND, text)
    } else {
        StoreError::fatal(KIND, text)
    }
}

/// The error with its causes, on one line.
fn full_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text.replace('\n', " ")
}

fn decode(r: &tokio_postgres::Row) -> Result<Record, String> {
    let g = |e: tokio_postgres::Error| e.to_string();
    let ts_ms: i64 = r.try_get(1).map_err(g)?;
    let ts_nanos: i32 = r.try_get(2).map_err(g)?;
    let ts_offset: i32 = r.try_get(3).map_err(g)?;
    let source: String = r.try_get(4).map_err(g)?;
    let severity: Option<i16> = r.try_get(5).map_err(g)?;
    let fields: Option<String> = r.try_get(10).map_err(g)?;
    let raw: Vec<u8> = r.try_get(11).map_err(g)?;
    let raw_utf8: bool = r.try_get(12).map_err(g)?;
    let format: String = r.try_get(14).map_err(g)?;
    let originals: Option<String> = r.try_get(15).map_err(g)?;
    let mut rec = Record {
        id: r.try_get(0).map_err(g)?,
        timestamp: row::ts_from_parts(ts_ms, ts_nanos.into(), ts_offset.into())?,
        timestamp_source: row::ts_source_from_name(&source)?,
        severity: severity_from_code(severity.map(i64::from))?,
        host: r.try_get(6).map_err(g)?,
        app: r.try_get(7).map_err(g)?,
        pid: row::pid_from_sql(r.try_get(8).map_err(g)?),
        message: r.try_get(9).map_err(g)?,
        fields: row::fields_from_json(fields.as_deref())?,
        raw: if raw_utf8 {
            RawLine::Text(String::from_utf8(raw).map_err(|e| format!("raw: {e}"))?)
        } else {
            RawLine::Bytes(raw)
        },
        input: Arc::from(r.try_get::<_, String>(13).map_err(g)?),
        format: format.parse::<Format>().map_err(|e| e.to_string())?,
        parse_error: r.try_get(16).map_err(g)?,
    };
    if let Some(text) = originals {
        let map: Map<String, Value> =
            serde_json::from_str(&text).map_err(|e| format!("nul_originals: {e}"))?;
        for (key, value) in map {
            let as_string = || {
                value
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("nul_originals.{key}: not a string"))
            };
            match key.as_str() {
                "input" => rec.input = Arc::from(as_string()?),
                "host" => rec.host = Some(as_string()?),
                "app" => rec.app = Some(as_string()?),
                "message" => rec.message = as_string()?,
                "parse_error" => rec.parse_error = Some(as_string()?),
                "fields" => {
                    rec.fields = serde_json::from_value(value)
                        .map_err(|e| format!("nul_originals.fields: {e}"))?;
                }
                other => return Err(format!("nul_originals: unknown key {other:?}")),
            }
        }
    }
    Ok(rec)
}
