//! Reading the TOML file into flat `section.key` entries, each with its line and column, and
//! the per-input groups (`[[input.files]]`, [`GROUPS_KEY`]) each into entries of its own.
//!
//! Invariants:
//! - A syntax error is one line naming the file, line and column.
//! - Every leaf value keeps the position of its value (so a bad value points at itself); a
//!   key the configuration does not know is reported at the key's position by the caller.
//! - [`GROUPS_KEY`] is never a flat entry: it is an array of tables, each a [`Group`] whose
//!   entries are named relative to it (`format`, not `input.files.format`); anything else under
//!   that name is an error naming it.

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

/// The array of per-input tables: `[[input.files]]`.
pub const GROUPS_KEY: &str = "input.files";

/// One table of [`GROUPS_KEY`]: where it is and its entries (keys relative to the table).
#[derive(Debug, Clone)]
pub struct Group {
    /// Where the table starts.
    pub at: Source,
    /// Its entries, flattened as the file's (a nested table gives dotted keys).
    pub entries: BTreeMap<String, Entry>,
}

/// What a file holds: flat entries and the per-input groups, in file order.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    /// `section.key` entries.
    pub entries: BTreeMap<String, Entry>,
    /// The `[[input.files]]` tables.
    pub groups: Vec<Group>,
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
    mut groups: Option<&mut Vec<Group>>,
) -> Result<(), String> {
    for (k, v) in table.iter() {
        let name = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        if name == GROUPS_KEY
            && let Some(groups) = groups.as_deref_mut()
        {
            let not_tables = || {
                format!(
                    "invalid {GROUPS_KEY} ({}): expected an array of tables, [[{GROUPS_KEY}]] \
                     each with paths = [...]",
                    source(path, text, k.span().start)
                )
            };
            let DeValue::Array(items) = v.get_ref() else {
                return Err(not_tables());
            };
            for item in items.iter() {
                let DeValue::Table(t) = item.get_ref() else {
                    return Err(not_tables());
                };
                let mut entries = BTreeMap::new();
                flatten(path, text, "", t, &mut entries, None)?;
                groups.push(Group {
                    at: source(path, text, item.span().start),
                    entries,
                });
            }
            continue;
        }
        match v.get_ref() {
            DeValue::Table(t) => flatten(path, text, &name, t, out, groups.as_deref_mut())?,
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
    Ok(())
}

/// Parses `text` (the contents of `path`) into flat entries and groups.
pub fn parse(path: &Path, text: &str) -> Result<Parsed, String> {
    let table = DeTable::parse(text).map_err(|e| {
        let at = e.span().map_or(0, |s| s.start);
        let (line, col) = line_col(text, at);
        let msg = e.message().lines().next().unwrap_or("syntax error").trim();
        format!("invalid TOML in {}:{line}:{col}: {msg}", path.display())
    })?;
    let mut out = Parsed::default();
    flatten(
        path,
        text,
        "",
        table.get_ref(),
        &mut out.entries,
        Some(&mut out.groups),
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn entries_carry_their_line_and_column() {
        let text = "[worker]\nworkers = 3\n\n[retry]\nbase = \"1s\"\n";
        let m = parse(Path::new("a.toml"), text).unwrap().entries;
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

    /// `[[input.files]]` tables become groups with their own entries and position; other
    /// `input.*` keys stay flat; `input.files` that is not an array of tables is refused.
    #[test]
    fn input_groups_are_read_apart() {
        let text = "[input]\nformat = \"json\"\n\n[[input.files]]\npaths = [\"a.log\"]\n\
                    timezone = \"Europe/Berlin\"\n\n[[input.files]]\npaths = [\"b.log\"]\n";
        let p = parse(Path::new("g.toml"), text).unwrap();
        assert_eq!(
            p.entries.keys().collect::<Vec<_>>(),
            vec!["input.format"],
            "{p:?}"
        );
        assert_eq!(p.groups.len(), 2);
        let g = &p.groups[0];
        assert_eq!(
            g.entries["timezone"].given.value,
            RawValue::Text("Europe/Berlin".into())
        );
        assert_eq!(
            g.entries["paths"].given.source,
            Source::File {
                path: "g.toml".into(),
                line: 5,
                column: 9
            }
        );
        assert!(matches!(g.at, Source::File { line: 4, .. }), "{:?}", g.at);
        assert!(matches!(p.groups[1].at, Source::File { line: 8, .. }));
        let inline = parse(Path::new("i.toml"), "input.files = [{ paths = [\"c\"] }]\n").unwrap();
        assert_eq!(inline.groups.len(), 1);
        for bad in [
            "[input.files]\npaths = [\"a\"]\n",
            "[input]\nfiles = \"a.log\"\n",
            "[input]\nfiles = [\"a.log\"]\n",
        ] {
            let e = parse(Path::new("h.toml"), bad).unwrap_err();
            assert!(
                e.starts_with("invalid input.files (in h.toml:") && e.contains("[[input.files]]"),
                "{bad}: {e}"
            );
        }
    }
}
