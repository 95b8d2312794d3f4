//! The key table of `docs/config.md`, generated from the definitions ([`super::defs`]).
//!
//! Invariant: the committed table is exactly [`table`]'s output, between [`BEGIN`] and
//! [`END`]; a test fails otherwise and says how to regenerate it
//! (`ACKLINE_BLESS=1 cargo test -p ackline-app docs_key_table`).

use std::fmt::Write;

use super::defs::KEYS;
use super::key::{AnyKey, Cmd, Fallback, Form};

/// The line before the generated table.
pub const BEGIN: &str = "<!-- BEGIN key table: generated from the key definitions (config/defs.rs); \
                         to update, ACKLINE_BLESS=1 cargo test docs_key_table -->";
/// The line after it.
pub const END: &str = "<!-- END key table -->";

/// The Markdown table of every key: name, flags, variable, value when unset, what it accepts
/// (the text errors quote) and what it is.
pub fn table() -> String {
    let mut s = String::from(
        "| key | flag | environment | default | accepts | what it is |\n\
         | --- | --- | --- | --- | --- | --- |\n",
    );
    for k in KEYS {
        let m = k.meta();
        let secret = if m.secret { " (secret)" } else { "" };
        let default = match m.fallback {
            Fallback::Value(v) => format!("`{v}`"),
            Fallback::Absent(word) => word.to_string(),
            Fallback::Computed(md) => md.to_string(),
        };
        // Writing to a String cannot fail.
        let _ = writeln!(
            s,
            "| `{}`{secret} | {} | `{}` | {default} | {} | {} |",
            m.name,
            flags(*k),
            m.env(),
            cell(&k.expected()),
            cell(m.doc),
        );
    }
    s
}

/// A table cell: `|` escaped.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// The flags of a key and the commands that take them: "`--strict` / `--lenient` (`run`,
/// `check`, `work`)".
fn flags(k: &dyn AnyKey) -> String {
    let m = k.meta();
    let mut names: Vec<String> = Vec::new();
    let mut notes: Vec<&str> = Vec::new();
    for f in m.flags {
        let syntax = match f.form {
            Form::Optional { .. } => format!("`--{} [{}]`", f.name, f.value_name),
            _ => format!("`{}`", f.label()),
        };
        if !names.contains(&syntax) {
            names.push(syntax);
        }
        let note = match f.form {
            Form::Inputs | Form::Dash => Some("positional"),
            Form::Repeated => Some("repeatable"),
            _ => None,
        };
        if let Some(n) = note.filter(|n| !notes.contains(n)) {
            notes.push(n);
        }
    }
    if names.is_empty() {
        return String::new();
    }
    let commands: Vec<String> = Cmd::ALL
        .iter()
        .filter(|c| m.flags.iter().any(|f| f.on.contains(c)))
        .map(|c| format!("`{}`", c.name()))
        .collect();
    let mut paren = commands.join(", ");
    for n in notes {
        paren.push_str("; ");
        paren.push_str(n);
    }
    format!("{} ({paren})", names.join(" / "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/config.md`, from this crate's directory.
    const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/config.md");

    #[test]
    fn docs_key_table_is_current() {
        let doc = std::fs::read_to_string(DOC).unwrap_or_else(|e| panic!("reading {DOC}: {e}"));
        let start = doc.find(BEGIN).map(|i| i + BEGIN.len() + 1);
        let end = doc.find(END);
        let (Some(start), Some(end)) = (start, end) else {
            panic!("{DOC} lacks the markers of the key table:\n{BEGIN}\n{END}");
        };
        let generated = table();
        if doc.get(start..end) == Some(generated.as_str()) {
            return;
        }
        if std::env::var_os("ACKLINE_BLESS").is_some_and(|v| v == "1") {
            let updated = format!("{}{generated}{}", &doc[..start], &doc[end..]);
            std::fs::write(DOC, updated).unwrap_or_else(|e| panic!("writing {DOC}: {e}"));
            return;
        }
        panic!(
            "the key table of docs/config.md is not what the key definitions \
             (src/config/defs.rs) generate; regenerate it with\n    \
             ACKLINE_BLESS=1 cargo test -p {} docs_key_table\nand commit the result",
            env!("CARGO_PKG_NAME")
        );
    }

    #[test]
    fn the_table_has_one_row_per_key() {
        let t = table();
        assert_eq!(t.lines().count(), KEYS.len() + 2);
        assert!(t.contains(
            "| `input.strict` | `--strict` / `--lenient` (`run`, `check`, `work`) | \
             `ACKLINE_INPUT_STRICT` | `false` | true or false |"
        ));
        assert!(
            t.contains("| `server.tokens` (secret) | `--token` (`check`, `serve`; repeatable) |")
        );
        assert!(t.contains("| `server.syslog_tcp` | `--syslog-tcp [ADDR]` (`check`, `serve`) |"));
    }
}
