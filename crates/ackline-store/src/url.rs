//! Parsing store URLs.
//!
//! Accepted forms (and nothing else):
//!
//! | URL | store |
//! |-----|-------|
//! | `sqlite:PATH`, `sqlite://PATH`, or a bare path ending `.db`, `.sqlite`, `.sqlite3` | [`SqliteStore`](crate::SqliteStore) |
//! | `postgres://...`, `postgresql://...` (libpq URL syntax) | [`PostgresStore`](crate::PostgresStore) |
//! | `ndjson:PATH` | [`NdjsonStore`](crate::NdjsonStore) |
//! | `stdout` | [`StdoutStore`](crate::StdoutStore) |
//!
//! Invariant: a URL that names no store, or names one with an empty path, is
//! a one-line [`StoreError::Fatal`] naming what is expected. PostgreSQL URLs
//! must name a host (in the authority, or as a `host=`/`hostaddr=` parameter,
//! e.g. a Unix socket directory); their other parameters are checked when the
//! store opens.

use std::path::PathBuf;

use crate::error::StoreError;

/// The accepted forms, written once for both constants below.
macro_rules! forms {
    () => {
        "sqlite:PATH (or a path ending .db/.sqlite), postgres://USER@HOST:PORT/DB, ndjson:PATH or \
         stdout"
    };
}

/// The accepted URL forms (for a caller that writes its own "expected ...").
pub const FORMS: &str = forms!();

/// What is expected, quoted in every URL error.
pub const EXPECTED: &str = concat!("expected ", forms!());

/// A parsed store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// An SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL, as given.
    Postgres(String),
    /// An NDJSON file.
    Ndjson(PathBuf),
    /// Standard output.
    Stdout,
}

impl StoreUrl {
    /// Parses `url` (surrounding whitespace ignored).
    ///
    /// # Errors
    /// [`StoreError::Fatal`] with store `"url"` when `url` names no store.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let url = url.trim();
        let bad = |why: &str| {
            StoreError::fatal("url", format!("invalid store URL {url:?}: {why}{EXPECTED}"))
        };
        if url == "stdout" || url == "stdout:" || url == "-" {
            return Ok(StoreUrl::Stdout);
        }
        if let Some(rest) = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
        {
            if !postgres_names_a_host(rest) {
                return Err(bad(
                    "no host (give one, or host=/path/to/socket/dir as a parameter); ",
                ));
            }
            return Ok(StoreUrl::Postgres(url.to_owned()));
        }
        let path = |rest: &str| -> Result<PathBuf, StoreError> {
            if rest.is_empty() {
                Err(bad("the path is empty; "))
            } else {
                Ok(PathBuf::from(rest))
            }
        };
        if let Some(rest) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            return path(rest).map(StoreUrl::Sqlite);
        }
        if let Some(rest) = url
            .strip_prefix("ndjson://")
            .or_else(|| url.strip_prefix("ndjson:"))
        {
            return path(rest).map(StoreUrl::Ndjson);
        }
        let lower = url.to_ascii_lowercase();
        let has_scheme = url.split_once(':').is_some_and(|(scheme, _)| {
            scheme.len() > 1
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+')
        });
        if !has_scheme
            && [".db", ".sqlite", ".sqlite3"]
                .iter()
                .any(|ext| lower.ends_with(ext))
        {
            return path(url).map(StoreUrl::Sqlite);
        }
        Err(bad(""))
    }

    /// The store kind this URL opens.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            StoreUrl::Sqlite(_) => "sqlite",
            StoreUrl::Postgres(_) => "postgres",
            StoreUrl::Ndjson(_) => "ndjson",
            StoreUrl::Stdout => "stdout",
        }
    }
}

/// Whether the part of a PostgreSQL URL after `scheme://` names a host: a
/// non-empty host in the authority (`user:pw@host:port,host2/db`; `[::1]`),
/// or a non-empty `host` or `hostaddr` query parameter.
fn postgres_names_a_host(rest: &str) -> bool {
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = before_query.split('/').next().unwrap_or("");
    let hosts = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let in_authority = hosts.split(',').any(|h| {
        let name = if h.starts_with('[') {
            h.trim_start_matches('[').split(']').next().unwrap_or("")
        } else {
            h.split(':').next().unwrap_or("")
        };
        !name.is_empty()
    });
    in_authority
        || query
            .split('&')
            .any(|kv| matches!(kv.split_once('='), Some(("host" | "hostaddr", v)) if !v.is_empty()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn accepted_forms() {
        assert_eq!(StoreUrl::parse("stdout").unwrap(), StoreUrl::Stdout);
        assert_eq!(
            StoreUrl::parse("sqlite:/tmp/a.db").unwrap(),
            StoreUrl::Sqlite("/tmp/a.db".into())
        );
        assert_eq!(
            StoreUrl::parse("sqlite:///tmp/a").unwrap(),
            StoreUrl::Sqlite("/tmp/a".into())
        );
        assert_eq!(
            StoreUrl::parse("data/x.sqlite").unwrap(),
            StoreUrl::Sqlite("data/x.sqlite".into())
        );
        assert_eq!(
            StoreUrl::parse("ndjson:out.ndjson").unwrap(),
            StoreUrl::Ndjson("out.ndjson".into())
        );
        assert_eq!(
            StoreUrl::parse("postgresql://u@h/db").unwrap(),
            StoreUrl::Postgres("postgresql://u@h/db".into())
        );
        for url in [
            "postgres://h",
            "postgres://u:p@h:5432/db",
            "postgres://u@[::1]:5432/db",
            "postgres://h1:5432,h2:5433/db",
            "postgres:///db?host=/var/run/postgresql",
            "postgresql://u@/db?sslmode=disable&hostaddr=127.0.0.1",
        ] {
            assert_eq!(StoreUrl::parse(url).unwrap().kind(), "postgres", "{url}");
        }
    }

    #[test]
    fn a_postgres_url_without_a_host_is_refused() {
        for url in [
            "postgres://",
            "postgresql://",
            "postgres:///db",
            "postgres://u:p@/db",
            "postgres://:5432/db",
            "postgres://[]/db",
            "postgres:///db?host=",
            "postgres:///db?user=host",
        ] {
            let err = StoreUrl::parse(url).unwrap_err().to_string();
            assert!(err.contains("no host"), "{url}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn bad_urls_are_one_line_fatal_errors_naming_what_is_expected() {
        for url in [
            "",
            "mysql://x/y",
            "sqlite:",
            "ndjson:",
            "records.txt",
            "http://h/x.db",
        ] {
            let err = StoreUrl::parse(url).unwrap_err();
            let text = err.to_string();
            assert!(
                matches!(err, StoreError::Fatal { store: "url", .. }),
                "{url}: {err:?}"
            );
            assert!(text.contains("expected sqlite:PATH"), "{text}");
            assert!(!text.contains('\n'), "{text}");
        }
    }
}
