//! Reading the TOML file into flat `section.key` entries, each with its line and column.
//!
//! Invariants:
//! - A syntax error is one line naming the file, line and column.
//! - Every leaf value keeps the position of its value (so a bad value points at itself); a
//!   key the configuration does not know is reported at the key's position by the caller.

use std::collections::BTreeMap;
use std::path::Path;

use toml::de::{DeTable, DeValue};

use super::source::{Given, RawValue, Source};

/// One flattened entry: the dotted key, where its key starts, and the value.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Where the key itself is (for unknown keys).
    pub key_at: Source,
    /// The value and where it is.
    pub given: Given,
}

/// Line and column (1-based, in characters) of byte offset `at` of `text`.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn source(path: &Path, text: &str, at: usize) -> Source {
    let (line, column) = line_col(text, at);
    Source::File {
        path: path.to_path_buf(),
        line,
        column,
    }
}

fn raw(v: &DeValue<'_>) -> RawValue {
    match v {
        DeValue::String(s) => RawValue::Text(s.to_string()),
        DeValue::Integer(i) => i64::from_str_radix(&i.as_str().replace('_', ""), i.radix())
            .map_or(RawValue::Other("integer out of range"), RawValue::Int),
        DeValue::Float(x) => x
            .as_str()
            .replace('_', "")
            .parse::<f64>()
            .map_or(RawValue::Other("float"), RawValue::Float),
        DeValue::Boolean(b) => RawValue::Bool(*b),
        DeValue::Datetime(_) => RawValue::Other("date-time"),
        DeValue::Array(a) => RawValue::List(a.iter().map(|x| raw(x.get_ref())).collect()),
        DeValue::Table(_) => RawValue::Other("table"),
    }
}

fn flatten(
    path: &Path,
    text: &str,
    prefix: &str,
    table: &DeTable<'_>,
    out: &mut BTreeMap<String, Entry>,
) {
    for (k, v) in table.iter() {
        let name = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        match v.get_ref() {
            DeValue::Table(t) => flatten(path, text, &name, t, out),
            other => {
                out.insert(
                    name,
                    Entry {
                        key_at: source(path, text, k.span().start),
                        given: Given {
                            value: raw(other),
                            source: source(path, text, v.span().start),
                        },
                    },
                );
            }
        }
    }
}

/// Parses `text` (the contents of `path`) into flat entries.
pub fn parse(path: &Path, text: &str) -> Result<BTreeMap<String, Entry>, String> {
    let table = DeTable::parse(text).map_err(|e| {
        let at = e.span().map_or(0, |s| s.start);
        let (line, col) = line_col(text, at);
        let msg = e.message().lines().next().unwrap_or("syntax error").trim();
        format!("invalid TOML in {}:{line}:{col}: {msg}", path.display())
    })?;
    let mut out = BTreeMap::new();
    flatten(path, text, "", table.get_ref(), &mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn entries_carry_their_line_and_column() {
        let text = "[worker]\nworkers = 3\n\n[retry]\nbase = \"1s\"\n";
        let m = parse(Path::new("a.toml"), text).unwrap();
        let w = &m["worker.workers"];
        assert_eq!(w.given.value, RawValue::Int(3));
        assert_eq!(
            w.given.source,
            Source::File {
                path: "a.toml".into(),
                line: 2,
                column: 11
            }
        );
        assert_eq!(m["retry.base"].given.value, RawValue::Text("1s".into()));
    }

    #[test]
    fn syntax_errors_name_the_position() {
        let e = parse(Path::new("b.toml"), "[worker]\nworkers = = 3\n").unwrap_err();
        assert!(e.starts_with("invalid TOML in b.toml:2:"), "{e}");
        assert!(!e.contains('\n'));
    }
}
