//! Where a configuration value came from, and the raw value itself before it is checked.
//!
//! Invariant: every raw value carries its [`Source`], so an error about it can name the file
//! (with line and column), the environment variable or the flag it came from (or that it is
//! the key's default).

use std::fmt;
use std::path::PathBuf;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A TOML file, at a 1-based line and column.
    File {
        /// The file.
        path: PathBuf,
        /// Line, 1-based.
        line: usize,
        /// Column (characters), 1-based.
        column: usize,
    },
    /// An environment variable.
    Env(String),
    /// A command-line flag (`--workers`, or `INPUT...` for positionals).
    Flag(String),
    /// The key's own default (only quoted if the definitions contradict themselves).
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File { path, line, column } => {
                write!(f, "in {}:{line}:{column}", path.display())
            }
            Source::Env(v) => write!(f, "from environment variable {v}"),
            Source::Flag(flag) => write!(f, "from flag {flag}"),
            Source::Default => f.write_str("by default"),
        }
    }
}

/// A value as given, not yet checked against its key.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    /// Text: every environment variable and flag, and TOML strings.
    Text(String),
    /// A TOML integer.
    Int(i64),
    /// A TOML float.
    Float(f64),
    /// A TOML boolean.
    Bool(bool),
    /// A TOML array.
    List(Vec<RawValue>),
    /// A TOML table or date-time where a plain value was expected (always an error).
    Other(&'static str),
}

impl fmt::Display for RawValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawValue::Text(s) => write!(f, "{s:?}"),
            RawValue::Int(i) => write!(f, "{i}"),
            RawValue::Float(x) => write!(f, "{x}"),
            RawValue::Bool(b) => write!(f, "{b}"),
            RawValue::List(v) => {
                f.write_str("[")?;
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{x}")?;
                }
                f.write_str("]")
            }
            RawValue::Other(what) => write!(f, "<{what}>"),
        }
    }
}

/// A raw value and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Given {
    /// The value.
    pub value: RawValue,
    /// Its source.
    pub source: Source,
}
