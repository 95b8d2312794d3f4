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
    /// PostgreSQL's stderr log with the default `log_line_prefix` (`%m [%p] `),
    /// also with `%u@%d` and continuation lines (`DETAIL:`, `STATEMENT:`...).
    Postgresql,
    /// PostgreSQL `csvlog` (one record per line; a quoted newline splits it).
    PostgresqlCsv,
    /// PostgreSQL `jsonlog` (PostgreSQL 15+).
    PostgresqlJson,
    /// The MySQL (5.7, 8) and MariaDB error log.
    Mysql,
    /// The Redis server log (`PID:ROLE DD Mon YYYY HH:MM:SS.mmm MARK msg`).
    Redis,
    /// The RabbitMQ (3.9+) log (`TIMESTAMP [level] <0.223.0> msg`).
    #[serde(rename = "rabbitmq")]
    RabbitMq,
    /// The NATS server log (`[PID] YYYY/MM/DD HH:MM:SS.ffffff [INF] msg`).
    Nats,
    /// The nginx error log (`YYYY/MM/DD HH:MM:SS [level] PID#TID: *CID msg`).
    NginxError,
    /// Go's standard `log` package (`YYYY/MM/DD HH:MM:SS[.ffffff] [file:line: ]msg`).
    GoLog,
    /// Go's `log/slog`, text (`time=... level=INFO msg=...`) or JSON handler.
    GoSlog,
    /// Python `logging`: the default `LEVEL:name:message` and the common
    /// `%(asctime)s` layouts.
    Python,
    /// The logback / log4j2 default pattern (`HH:mm:ss.SSS [thread] LEVEL logger - msg`).
    Logback,
    /// klog / glog (Kubernetes components): `Lmmdd hh:mm:ss.uuuuuu TID file:line] msg`,
    /// the single letter `I`/`W`/`E`/`F` being the severity.
    Klog,
    /// Kubernetes CRI container logs (`TIME stream P|F line`), inner line parsed.
    Cri,
    /// Docker json-file container logs (`{"log":..,"stream":..,"time":..}`), inner line parsed.
    DockerJson,
    /// journald JSON export (`journalctl -o json`).
    Journald,
    /// dpkg's `dpkg.log` and `alternatives.log`.
    Dpkg,
    /// apt's `history.log` and `term.log` dated lines (`Start-Date: ...`).
    Apt,
    /// No named format, but a leading timestamp (and perhaps a pid and a
    /// severity) the generic header extractor recognised; the rest is the
    /// message. Tried after every named format, before [`Format::Raw`].
    Generic,
    /// No format: the whole line is the message.
    Raw,
}

impl Format {
    /// Every format, in declaration order.
    pub const ALL: [Format; 36] = [
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
        Format::Postgresql,
        Format::PostgresqlCsv,
        Format::PostgresqlJson,
        Format::Mysql,
        Format::Redis,
        Format::RabbitMq,
        Format::Nats,
        Format::NginxError,
        Format::GoLog,
        Format::GoSlog,
        Format::Python,
        Format::Logback,
        Format::Klog,
        Format::Cri,
        Format::DockerJson,
        Format::Journald,
        Format::Dpkg,
        Format::Apt,
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
            Format::Postgresql => "postgresql",
            Format::PostgresqlCsv => "postgresql_csv",
            Format::PostgresqlJson => "postgresql_json",
            Format::Mysql => "mysql",
            Format::Redis => "redis",
            Format::RabbitMq => "rabbitmq",
            Format::Nats => "nats",
            Format::NginxError => "nginx_error",
            Format::GoLog => "go_log",
            Format::GoSlog => "go_slog",
            Format::Python => "python",
            Format::Logback => "logback",
            Format::Klog => "klog",
            Format::Cri => "cri",
            Format::DockerJson => "docker_json",
            Format::Journald => "journald",
            Format::Dpkg => "dpkg",
            Format::Apt => "apt",
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
    /// `clf`/`common` = access_common, `combined` = access_combined, `postgres`,
    /// `csvlog`, `jsonlog`, `mariadb`, `nginx`, `slog`, `log4j2`, `glog`, `kubernetes`,
    /// `docker`, `journal`).
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
            "postgres" | "postgresql_stderr" => Format::Postgresql,
            "postgres_csv" | "csvlog" => Format::PostgresqlCsv,
            "postgres_json" | "jsonlog" => Format::PostgresqlJson,
            "mariadb" => Format::Mysql,
            "rabbit_mq" => Format::RabbitMq,
            "nginx" => Format::NginxError,
            "slog" => Format::GoSlog,
            "log4j2" => Format::Logback,
            "glog" => Format::Klog,
            "kubernetes" | "containerd" => Format::Cri,
            "docker" => Format::DockerJson,
            "journal" => Format::Journald,
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
