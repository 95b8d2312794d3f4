//! Severity normalised to the syslog scale (RFC 5424 §6.2.1).
//!
//! Invariants: a [`Severity`] is always one of the eight syslog levels, its
//! code is 0..=7 and its name is one of the eight fixed lowercase names; the
//! serialised form carries both and deserialising rejects a code/name pair
//! that disagree.
//!
//! Mapping of foreign level names (case-insensitive), documented in
//! `docs/record.md`:
//!
//! | text | severity |
//! |------|----------|
//! | emerg, emergency, panic | emergency (0) |
//! | alert | alert (1) |
//! | crit, critical, fatal | critical (2) |
//! | err, error, severe | error (3) |
//! | warn, warning | warning (4) |
//! | notice | notice (5) |
//! | info, information, informational | info (6) |
//! | debug, trace, trace1..trace8, verbose, fine, finer, finest | debug (7) |
//!
//! FATAL maps to *critical*, not *emergency*: it means one application is
//! dying, while syslog reserves *emergency* for "system is unusable".

use std::fmt;

use serde::{Deserialize, Serialize};

/// A syslog severity level; lower codes are more severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// 0: system is unusable.
    Emergency = 0,
    /// 1: action must be taken immediately.
    Alert = 1,
    /// 2: critical conditions.
    Critical = 2,
    /// 3: error conditions.
    Error = 3,
    /// 4: warning conditions.
    Warning = 4,
    /// 5: normal but significant condition.
    Notice = 5,
    /// 6: informational messages.
    Info = 6,
    /// 7: debug-level messages.
    Debug = 7,
}

impl Severity {
    /// All levels, most severe first.
    pub const ALL: [Severity; 8] = [
        Severity::Emergency,
        Severity::Alert,
        Severity::Critical,
        Severity::Error,
        Severity::Warning,
        Severity::Notice,
        Severity::Info,
        Severity::Debug,
    ];

    /// The syslog code, 0..=7.
    #[must_use]
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The level for a syslog code, `None` above 7.
    #[must_use]
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Severity::Emergency),
            1 => Some(Severity::Alert),
            2 => Some(Severity::Critical),
            3 => Some(Severity::Error),
            4 => Some(Severity::Warning),
            5 => Some(Severity::Notice),
            6 => Some(Severity::Info),
            7 => Some(Severity::Debug),
            _ => None,
        }
    }

    /// The stable lowercase name.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Severity::Emergency => "emergency",
            Severity::Alert => "alert",
            Severity::Critical => "critical",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Notice => "notice",
            Severity::Info => "info",
            Severity::Debug => "debug",
        }
    }

    /// Maps a level word from any supported logging system (see the module
    /// table), ignoring ASCII case. Single letters are not accepted here
    /// (they are format-specific, see [`Severity::from_letter`]).
    #[must_use]
    pub fn from_text(text: &[u8]) -> Option<Self> {
        if text.len() > 13 {
            return None;
        }
        let mut buf = [0u8; 13];
        let lower = buf.get_mut(..text.len())?;
        lower.copy_from_slice(text);
        lower.make_ascii_lowercase();
        Some(match &*lower {
            b"emerg" | b"emergency" | b"panic" => Severity::Emergency,
            b"alert" => Severity::Alert,
            b"crit" | b"critical" | b"fatal" => Severity::Critical,
            b"err" | b"error" | b"severe" => Severity::Error,
            b"warn" | b"warning" => Severity::Warning,
            b"notice" => Severity::Notice,
            b"info" | b"information" | b"informational" => Severity::Info,
            b"debug" | b"trace" | b"verbose" | b"fine" | b"finer" | b"finest" => Severity::Debug,
            [b't', b'r', b'a', b'c', b'e', b'1'..=b'8'] => Severity::Debug,
            _ => return None,
        })
    }

    /// Maps an Android logcat priority letter (`V D I W E F A`; `S` is
    /// "silent" and has no severity).
    #[must_use]
    pub const fn from_letter(letter: u8) -> Option<Self> {
        match letter {
            b'V' | b'D' => Some(Severity::Debug),
            b'I' => Some(Severity::Info),
            b'W' => Some(Severity::Warning),
            b'E' => Some(Severity::Error),
            b'F' | b'A' => Some(Severity::Critical),
            _ => None,
        }
    }

    /// Maps a numeric level: 0..=7 is the syslog scale itself; 10..=60 in
    /// steps of 10 is the pino/bunyan scale (10 trace, 20 debug, 30 info,
    /// 40 warn, 50 error, 60 fatal). Anything else is `None`.
    #[must_use]
    pub const fn from_number(n: i64) -> Option<Self> {
        match n {
            0..=7 => Severity::from_code(n as u8),
            10 | 20 => Some(Severity::Debug),
            30 => Some(Severity::Info),
            40 => Some(Severity::Warning),
            50 => Some(Severity::Error),
            60 => Some(Severity::Critical),
            _ => None,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Serialize, Deserialize)]
struct SeverityRepr<'a> {
    code: u8,
    name: &'a str,
}

impl Serialize for Severity {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        SeverityRepr {
            code: self.code(),
            name: self.name(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Severity {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Owned {
            code: u8,
            name: String,
        }
        let repr = Owned::deserialize(deserializer)?;
        let sev = Severity::from_code(repr.code)
            .ok_or_else(|| serde::de::Error::custom("severity code above 7"))?;
        if sev.name() != repr.name {
            return Err(serde::de::Error::custom(format!(
                "severity name {:?} does not match code {}",
                repr.name, repr.code
            )));
        }
        Ok(sev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_table() {
        let table: &[(&str, Option<Severity>)] = &[
            ("EMERG", Some(Severity::Emergency)),
            ("panic", Some(Severity::Emergency)),
            ("alert", Some(Severity::Alert)),
            ("FATAL", Some(Severity::Critical)),
            ("crit", Some(Severity::Critical)),
            ("ERROR", Some(Severity::Error)),
            ("SEVERE", Some(Severity::Error)),
            ("err", Some(Severity::Error)),
            ("WARN", Some(Severity::Warning)),
            ("Warning", Some(Severity::Warning)),
            ("notice", Some(Severity::Notice)),
            ("Info", Some(Severity::Info)),
            ("informational", Some(Severity::Info)),
            ("DEBUG", Some(Severity::Debug)),
            ("TRACE", Some(Severity::Debug)),
            ("trace8", Some(Severity::Debug)),
            ("trace9", None),
            ("finest", Some(Severity::Debug)),
            ("I", None),
            ("", None),
            ("informationalX", None),
            ("very very long level name", None),
        ];
        for (text, want) in table {
            assert_eq!(Severity::from_text(text.as_bytes()), *want, "{text}");
        }
    }

    #[test]
    fn letters_and_numbers() {
        assert_eq!(Severity::from_letter(b'V'), Some(Severity::Debug));
        assert_eq!(Severity::from_letter(b'W'), Some(Severity::Warning));
        assert_eq!(Severity::from_letter(b'F'), Some(Severity::Critical));
        assert_eq!(Severity::from_letter(b'S'), None);
        assert_eq!(Severity::from_number(3), Some(Severity::Error));
        assert_eq!(Severity::from_number(30), Some(Severity::Info));
        assert_eq!(Severity::from_number(60), Some(Severity::Critical));
        assert_eq!(Severity::from_number(8), None);
        assert_eq!(Severity::from_number(-1), None);
        assert_eq!(Severity::from_number(35), None);
    }

    #[test]
    fn codes_names_serde() {
        for (i, s) in Severity::ALL.iter().enumerate() {
            assert_eq!(usize::from(s.code()), i);
            assert_eq!(Severity::from_code(s.code()), Some(*s));
            let json = serde_json::to_string(s).unwrap();
            assert_eq!(json, format!("{{\"code\":{i},\"name\":\"{}\"}}", s.name()));
            assert_eq!(serde_json::from_str::<Severity>(&json).unwrap(), *s);
        }
        assert!(serde_json::from_str::<Severity>(r#"{"code":3,"name":"info"}"#).is_err());
        assert!(serde_json::from_str::<Severity>(r#"{"code":9,"name":"info"}"#).is_err());
    }
}
