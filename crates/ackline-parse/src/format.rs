//! The formats (and log families) this crate can parse.
//!
//! Invariants: every variant has exactly one stable snake_case name, used by
//! serde, `Display` and `FromStr` alike, and [`Format::ALL`] lists every
//! variant once.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A line format or log family. Names are stable: they are written into
/// every record and accepted in configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One JSON object per line; common field names are mapped.
    Json,
    /// `key=value key2="quoted value"` pairs.
    Logfmt,
    /// Syslog per RFC 5424: `<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG`.
    Rfc5424,
    /// BSD syslog per RFC 3164 (PRI optional, host optional): Linux, OpenSSH,
    /// macOS system logs.
    Rfc3164,
    /// Apache/nginx Common Log Format.
    AccessCommon,
    /// Apache/nginx Combined Log Format (common plus referer and user agent).
    AccessCombined,
    /// Apache httpd error log (2.2 and 2.4 layouts).
    ApacheError,
    /// log4j-style application logs: HDFS, Hadoop, Spark, Zookeeper and the
    /// generic `DATE TIME LEVEL logger: message` shape.
    Log4j,
    /// Android `logcat -v threadtime`.
    Logcat,
    /// Blue Gene/L RAS logs (loghub BGL).
    Bgl,
    /// HPC cluster logs (loghub HPC).
    Hpc,
    /// Thunderbird supercomputer logs (loghub Thunderbird).
    Thunderbird,
    /// Windows CBS (component based servicing) logs.
    WindowsCbs,
    /// Huawei HealthApp logs (`time|component|pid|message`).
    HealthApp,
    /// Proxifier logs (`[MM.DD HH:MM:SS] program - message`).
    Proxifier,
    /// OpenStack (oslo.log) service logs, optionally prefixed by the file name.
    OpenStack,
    /// No named format, but a leading timestamp (and perhaps a pid and a
    /// severity) the generic header extractor recognised; the rest is the
    /// message. Tried after every named format, before [`Format::Raw`].
    Generic,
    /// No format: the whole line is the message.
    Raw,
}

impl Format {
    /// Every format, in declaration order.
    pub const ALL: [Format; 18] = [
        Format::Json,
        Format::Logfmt,
        Format::Rfc5424,
        Format::Rfc3164,
        Format::AccessCommon,
        Format::AccessCombined,
        Format::ApacheError,
        Format::Log4j,
        Format::Logcat,
        Format::Bgl,
        Format::Hpc,
        Format::Thunderbird,
        Format::WindowsCbs,
        Format::HealthApp,
        Format::Proxifier,
        Format::OpenStack,
        Format::Generic,
        Format::Raw,
    ];

    /// The stable snake_case name (as serialised).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Logfmt => "logfmt",
            Format::Rfc5424 => "rfc5424",
            Format::Rfc3164 => "rfc3164",
            Format::AccessCommon => "access_common",
            Format::AccessCombined => "access_combined",
            Format::ApacheError => "apache_error",
            Format::Log4j => "log4j",
            Format::Logcat => "logcat",
            Format::Bgl => "bgl",
            Format::Hpc => "hpc",
            Format::Thunderbird => "thunderbird",
            Format::WindowsCbs => "windows_cbs",
            Format::HealthApp => "health_app",
            Format::Proxifier => "proxifier",
            Format::OpenStack => "open_stack",
            Format::Generic => "generic",
            Format::Raw => "raw",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The string given to [`Format::from_str`] names no format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log format {0:?} (expected one of: {list})", list = format_list())]
pub struct UnknownFormat(pub String);

fn format_list() -> String {
    Format::ALL
        .iter()
        .map(|f| f.name())
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for Format {
    type Err = UnknownFormat;

    /// Accepts the snake_case names, case-insensitively, with `-` or `_`,
    /// plus a few obvious aliases (`syslog` = rfc5424, `bsd_syslog` = rfc3164,
    /// `clf`/`common` = access_common, `combined` = access_combined).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        if let Some(f) = Format::ALL.iter().find(|f| f.name() == norm) {
            return Ok(*f);
        }
        let alias = match norm.as_str() {
            "syslog" => Format::Rfc5424,
            "bsd_syslog" => Format::Rfc3164,
            "clf" | "common" => Format::AccessCommon,
            "combined" => Format::AccessCombined,
            "healthapp" => Format::HealthApp,
            "openstack" => Format::OpenStack,
            _ => return Err(UnknownFormat(s.to_owned())),
        };
        Ok(alias)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_from_str_and_serde() {
        for f in Format::ALL {
            assert_eq!(f.name().parse::<Format>().unwrap(), f);
            assert_eq!(f.to_string(), f.name());
            let json = serde_json::to_string(&f).unwrap();
            assert_eq!(json, format!("\"{}\"", f.name()));
            assert_eq!(serde_json::from_str::<Format>(&json).unwrap(), f);
        }
    }

    #[test]
    fn aliases_and_case() {
        assert_eq!(
            "Access-Combined".parse::<Format>().unwrap(),
            Format::AccessCombined
        );
        assert_eq!("syslog".parse::<Format>().unwrap(), Format::Rfc5424);
        assert_eq!("openstack".parse::<Format>().unwrap(), Format::OpenStack);
        let err = "xml".parse::<Format>().unwrap_err();
        assert!(err.to_string().contains("rfc3164"), "{err}");
    }
}
