//! What one configuration key's definition holds: its name in the file, its environment
//! variable, its flags (name, value syntax, help, the commands that take them), its kind,
//! its value when unset, whether it is secret, and its documentation. The table itself is
//! [`super::defs`].
//!
//! Invariants:
//! - Everything a user sees about a key (the flag's help, the error's expectation, the row of
//!   `docs/config.md`) is derived from its definition; nothing else spells it.
//! - The expectation quoted in errors is the kind's description followed by the key's own
//!   `also` (a rule involving other keys) and `like` (an example), in that order.

use std::borrow::Cow;

use super::kind::Kind;
#[cfg(test)]
use super::source::RawValue;

/// A command that takes configuration flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cmd {
    /// `ackline run`.
    Run,
    /// `ackline check`.
    Check,
    /// `ackline serve`.
    Serve,
    /// `ackline work`.
    Work,
    /// `ackline dlq ...`.
    Dlq,
    /// `ackline queue stats`.
    QueueStats,
}

// The documentation generator (a test) is the only reader of `ALL`, `name` and `Meta::doc`.
#[cfg_attr(not(test), allow(dead_code))]
impl Cmd {
    /// Every command, in the order the documentation lists them.
    pub const ALL: [Cmd; 6] = [
        Cmd::Run,
        Cmd::Check,
        Cmd::Serve,
        Cmd::Work,
        Cmd::Dlq,
        Cmd::QueueStats,
    ];

    /// As typed after `ackline`.
    pub fn name(self) -> &'static str {
        match self {
            Cmd::Run => "run",
            Cmd::Check => "check",
            Cmd::Serve => "serve",
            Cmd::Work => "work",
            Cmd::Dlq => "dlq",
            Cmd::QueueStats => "queue stats",
        }
    }
}

/// How a flag takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `--name VALUE`.
    Value,
    /// `--name [VALUE]`: given alone, it means `missing`.
    Optional {
        /// The value of the flag given without one.
        missing: &'static str,
    },
    /// `--name VALUE`, repeatable: the values form a list.
    Repeated,
    /// `--name` alone sets the key to `value`; a key's switches exclude each other.
    Switch {
        /// The value it sets.
        value: bool,
    },
    /// The positional `INPUT...` (files and glob patterns).
    Inputs,
    /// `-` among the positional inputs (documents a key set by [`Form::Inputs`]'s argument; no
    /// argument of its own).
    Dash,
}

/// One flag of a key, as some commands take it.
#[derive(Debug)]
pub struct Flag {
    /// The long name without `--` (also the argument's id), or the positional's value name.
    pub name: &'static str,
    /// What its value is called in help (`N`, `DURATION`); empty for switches.
    pub value_name: &'static str,
    /// How it takes its value.
    pub form: Form,
    /// Its help (clap adds nothing but ` [config: KEY]`).
    pub help: &'static str,
    /// The commands that take it, with this help.
    pub on: &'static [Cmd],
}

impl Flag {
    /// `--name VALUE`.
    pub const fn value(
        name: &'static str,
        value_name: &'static str,
        on: &'static [Cmd],
        help: &'static str,
    ) -> Flag {
        Flag {
            name,
            value_name,
            form: Form::Value,
            help,
            on,
        }
    }

    /// `--name [VALUE]`, `missing` when given alone.
    pub const fn optional(
        name: &'static str,
        value_name: &'static str,
        missing: &'static str,
        on: &'static [Cmd],
        help: &'static str,
    ) -> Flag {
        Flag {
            form: Form::Optional { missing },
            ..Flag::value(name, value_name, on, help)
        }
    }

    /// `--name VALUE`, repeatable.
    pub const fn repeated(
        name: &'static str,
        value_name: &'static str,
        on: &'static [Cmd],
        help: &'static str,
    ) -> Flag {
        Flag {
            form: Form::Repeated,
            ..Flag::value(name, value_name, on, help)
        }
    }

    /// `--name` alone, setting the key to `value`.
    pub const fn switch(
        name: &'static str,
        value: bool,
        on: &'static [Cmd],
        help: &'static str,
    ) -> Flag {
        Flag {
            form: Form::Switch { value },
            ..Flag::value(name, "", on, help)
        }
    }

    /// `--name` (or the positional's value name), as errors and help show it.
    pub fn label(&self) -> String {
        match self.form {
            Form::Inputs => format!("{}...", self.value_name),
            Form::Dash => self.name.to_string(),
            _ => format!("--{}", self.name),
        }
    }
}

/// What a key is when no layer sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// This value, read as if it had been given (so it passes the key's own check).
    Value(&'static str),
    /// Nothing: the feature is off or the list empty (the word the documentation shows).
    Absent(&'static str),
    /// Computed from other keys or the data directory (Markdown, as documented).
    Computed(&'static str),
}

/// Everything about a key that does not depend on its kind.
#[derive(Debug)]
pub struct Meta {
    /// `section.key`, as in the file.
    pub name: &'static str,
    /// The environment variable when it is not derived from the name (`ACKLINE_LISTEN`).
    pub env: Option<&'static str>,
    /// A rule involving other keys, appended to the kind's description
    /// (", at least worker.batch_size").
    pub also: &'static str,
    /// An example value, appended as ", like EXAMPLE" (empty: none).
    pub like: &'static str,
    /// The value when unset.
    pub fallback: Fallback,
    /// The value is a secret: errors never quote it.
    pub secret: bool,
    /// Its flags (none: file and environment only).
    pub flags: &'static [Flag],
    /// What it is (Markdown, one paragraph: a cell of `docs/config.md`'s table).
    #[cfg_attr(not(test), allow(dead_code))]
    pub doc: &'static str,
}

impl Meta {
    /// `ACKLINE_SECTION_KEY`, or the key's own variable name.
    pub fn env(&self) -> Cow<'static, str> {
        match self.env {
            Some(v) => v.into(),
            None => format!(
                "ACKLINE_{}",
                self.name.replace('.', "_").to_ascii_uppercase()
            )
            .into(),
        }
    }

    /// The key's flag named `name` that `cmd` takes.
    pub fn flag(&self, cmd: Cmd, name: &str) -> Option<&'static Flag> {
        self.flags
            .iter()
            .find(|f| f.name == name && f.on.contains(&cmd))
    }
}

/// One key: its metadata and its kind.
#[derive(Debug)]
pub struct Key<K> {
    /// Name, variable, flags, fallback, documentation.
    pub meta: Meta,
    /// What it accepts.
    pub kind: K,
}

impl<K> Key<K> {
    /// A key named `name` (`section.key`) of `kind`, `fallback` when unset, documented by `doc`.
    pub const fn new(name: &'static str, kind: K, fallback: Fallback, doc: &'static str) -> Self {
        Key {
            meta: Meta {
                name,
                env: None,
                also: "",
                like: "",
                fallback,
                secret: false,
                flags: &[],
                doc,
            },
            kind,
        }
    }

    /// With these flags.
    pub const fn flags(mut self, flags: &'static [Flag]) -> Self {
        self.meta.flags = flags;
        self
    }

    /// With its own environment variable instead of `ACKLINE_SECTION_KEY`.
    pub const fn env(mut self, var: &'static str) -> Self {
        self.meta.env = Some(var);
        self
    }

    /// With a rule involving other keys, quoted in errors after the kind's description.
    pub const fn also(mut self, rule: &'static str) -> Self {
        self.meta.also = rule;
        self
    }

    /// With an example value, quoted in errors.
    pub const fn like(mut self, example: &'static str) -> Self {
        self.meta.like = example;
        self
    }

    /// A secret: errors never quote its value.
    pub const fn secret(mut self) -> Self {
        self.meta.secret = true;
        self
    }
}

/// A key whatever its kind, as the layers, the flags and the documentation see it.
pub trait AnyKey: Sync {
    /// Its metadata.
    fn meta(&self) -> &Meta;
    /// What a valid value is, as errors quote it after "expected".
    fn expected(&self) -> String;
    /// Whether `v` is a valid value.
    #[cfg(test)]
    fn accepts(&self, v: &RawValue) -> bool;
}

impl<K: Kind> AnyKey for Key<K> {
    fn meta(&self) -> &Meta {
        &self.meta
    }

    fn expected(&self) -> String {
        let mut s = self.kind.describe().into_owned();
        s.push_str(self.meta.also);
        if !self.meta.like.is_empty() {
            s.push_str(", like ");
            s.push_str(self.meta.like);
        }
        s
    }

    #[cfg(test)]
    fn accepts(&self, v: &RawValue) -> bool {
        self.kind.parse(v).is_some()
    }
}
