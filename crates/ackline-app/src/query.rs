//! `ackline query`: records from the SQLite store, filtered, as a table or JSON.
//!
//! Invariants:
//! - Read-only: a missing database is reported (exit 1), never created.
//! - Bad filter values (a time, a severity) are usage errors (exit 2) naming the flag.
//! - Order is the store's: (timestamp, id) ascending; `--limit` keeps the oldest.

use std::path::Path;

use ackline_parse::{Record, Severity};
use ackline_store::{Query, SqliteStore, StoreOptions, StoreUrl};
use anyhow::{Context, anyhow};
use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::Serialize;

use crate::cli::{PipelineFlags, QueryArgs};
use crate::config::{self, Env};
use crate::exit::usage;
use crate::output::Out;

fn time(flag: &str, s: &str) -> anyhow::Result<DateTime<FixedOffset>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s.trim()) {
        return Ok(t);
    }
    if let Ok(d) = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        && let Some(t) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(t.and_utc().fixed_offset());
    }
    Err(usage(format!(
        "invalid {flag} {s:?}: expected an RFC 3339 time (2024-05-01T12:00:00Z) or a date (2024-05-01)"
    )))
}

/// Builds the store query from the flags.
pub fn build(a: &QueryArgs) -> anyhow::Result<Query> {
    if a.limit == 0 {
        return Err(usage("invalid --limit 0: expected at least 1"));
    }
    let severity_at_most = match &a.severity {
        None => None,
        Some(s) => Some(Severity::from_text(s.trim().as_bytes()).ok_or_else(|| {
            usage(format!(
                "invalid --severity {s:?}: expected emerg, alert, crit, err, warning, notice, info or debug"
            ))
        })?),
    };
    Ok(Query {
        since: a.since.as_deref().map(|s| time("--since", s)).transpose()?,
        until: a.until.as_deref().map(|s| time("--until", s)).transpose()?,
        severity_at_most,
        host: a.host.clone(),
        app: a.app.clone(),
        text: a.text.clone(),
        limit: Some(a.limit),
        after: None,
    })
}

#[derive(Debug, Serialize)]
struct Found<'a> {
    count: usize,
    records: &'a [Record],
}

/// `ackline query`.
pub fn run(
    a: &QueryArgs,
    data_dir: &Path,
    config_file: Option<&Path>,
    out: Out,
) -> anyhow::Result<()> {
    let q = build(a)?;
    let (url, opts) = match &a.store {
        Some(u) => (u.clone(), StoreOptions::default()),
        None => {
            let cfg = config::load(
                data_dir,
                config_file,
                &PipelineFlags::default(),
                &Env::process(),
            )?;
            (cfg.store_url, cfg.store)
        }
    };
    let path = match StoreUrl::parse(&url) {
        Ok(StoreUrl::Sqlite(p)) => p,
        Ok(other) => {
            return Err(usage(format!(
                "ackline query reads SQLite stores; the store is {} ({url})",
                other.kind()
            )));
        }
        Err(e) => return Err(usage(format!("invalid --store: {e}"))),
    };
    if !path.is_file() {
        return Err(anyhow!(
            "no records database at {} (has `ackline run` stored anything here?)",
            path.display()
        ));
    }
    let rt = crate::runtime::build()?;
    let records = rt.block_on(async {
        let store = SqliteStore::open(&path, &opts)
            .await
            .with_context(|| format!("opening {}", path.display()))?;
        store.query(&q).await.context("querying the store")
    })?;
    out.emit(
        &Found {
            count: records.len(),
            records: &records,
        },
        || table(&records),
    )
}

fn cut(s: &str, n: usize) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= n {
        one_line
    } else {
        let mut t: String = one_line.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn table(rs: &[Record]) -> String {
    if rs.is_empty() {
        return "no records match\n".to_string();
    }
    let rows: Vec<[String; 5]> = rs
        .iter()
        .map(|r| {
            [
                r.timestamp
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                r.severity.map_or("-".into(), |s| s.name().to_string()),
                cut(r.host.as_deref().unwrap_or("-"), 20),
                cut(r.app.as_deref().unwrap_or("-"), 20),
                cut(&r.message, 100),
            ]
        })
        .collect();
    let head = ["TIME", "SEVERITY", "HOST", "APP", "MESSAGE"];
    let mut w = head.map(str::len);
    for r in &rows {
        for (i, c) in r.iter().enumerate().take(4) {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |c: [&str; 5]| {
        format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {}\n",
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3]
        )
    };
    let mut s = line(head);
    for r in &rows {
        s += &line([&r[0], &r[1], &r[2], &r[3], &r[4]]);
    }
    s += &format!("{} record(s)\n", rows.len());
    s
}
