//! Where Redis is: `redis://[user:pass@]host:port/db`, `rediss://...` (TLS) or
//! `redis+unix:///path/to/socket?db=N`, given explicitly or through [`ENV_URL`].
//!
//! Invariants:
//! - The password never leaves this module in text meant for people: [`RedisUrl`]'s
//!   `Display` and `Debug` print `***` in its place, and [`RedisUrl::redact`] scrubs it (raw and
//!   percent-decoded) from any message before that message becomes a `BrokerError`.
//! - `rediss://...#insecure` (redis-rs' switch that turns certificate verification off) is
//!   refused: a private CA is given with `RedisOptions::tls_ca_pem` instead, never a silent
//!   downgrade.

use std::fmt;
use std::str::FromStr;

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo};

/// The environment variable read by [`RedisUrl::from_env`].
pub const ENV_URL: &str = "ACKLINE_REDIS_URL";

/// What a valid URL looks like (for error messages).
pub const EXPECTED: &str = "redis://[user:pass@]host:port/db, rediss://... (TLS) or \
     redis+unix:///path/to/socket?db=N";

/// Why a URL was refused. Carries the URL with its password redacted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not a URL redis-rs understands, or one ackline refuses.
    #[error("invalid Redis URL {url}: {reason}; expected {EXPECTED}")]
    Invalid {
        /// The URL, password redacted.
        url: String,
        /// What is wrong (password redacted).
        reason: String,
    },
    /// Neither a URL nor [`ENV_URL`] was given.
    #[error("no Redis URL: set {ENV_URL} or pass one; expected {EXPECTED}")]
    Missing,
}

/// A parsed Redis URL whose password is never printed.
#[derive(Clone)]
pub struct RedisUrl {
    text: String,
    info: ConnectionInfo,
}

impl RedisUrl {
    /// Parses `s`.
    ///
    /// # Errors
    /// [`UrlError::Invalid`] naming the (redacted) URL and what is wrong.
    pub fn parse(s: &str) -> Result<Self, UrlError> {
        let invalid = |reason: &str| UrlError::Invalid {
            url: redact_text(s),
            reason: scrub(reason, password_in(s).as_deref()),
        };
        let scheme_ok = ["redis://", "rediss://", "redis+unix://", "unix://"]
            .iter()
            .any(|p| s.starts_with(p));
        if !scheme_ok {
            return Err(invalid(
                "the scheme must be redis, rediss, redis+unix or unix",
            ));
        }
        if s.contains('#') {
            return Err(invalid(
                "URL fragments are refused (#insecure would turn certificate verification \
                 off); trust a private CA with the broker CA option instead",
            ));
        }
        let info = s
            .into_connection_info()
            .map_err(|e| invalid(&e.to_string()))?;
        Ok(RedisUrl {
            text: s.to_owned(),
            info,
        })
    }

    /// [`ENV_URL`]'s value, parsed.
    ///
    /// # Errors
    /// [`UrlError::Missing`] when unset or empty, else as [`RedisUrl::parse`].
    pub fn from_env() -> Result<Self, UrlError> {
        match std::env::var(ENV_URL) {
            Ok(v) if !v.trim().is_empty() => Self::parse(v.trim()),
            _ => Err(UrlError::Missing),
        }
    }

    /// `url` if given, else [`ENV_URL`].
    ///
    /// # Errors
    /// As [`RedisUrl::parse`] and [`RedisUrl::from_env`].
    pub fn resolve(url: Option<&str>) -> Result<Self, UrlError> {
        match url {
            Some(u) => Self::parse(u),
            None => Self::from_env(),
        }
    }

    /// Whether the connection uses TLS (`rediss`).
    pub fn tls(&self) -> bool {
        matches!(self.info.addr(), ConnectionAddr::TcpTls { .. })
    }

    /// `host:port`, or the socket's path.
    pub fn endpoint(&self) -> String {
        match self.info.addr() {
            ConnectionAddr::Tcp(h, p)
            | ConnectionAddr::TcpTls {
                host: h, port: p, ..
            } => {
                if h.contains(':') {
                    format!("[{h}]:{p}")
                } else {
                    format!("{h}:{p}")
                }
            }
            ConnectionAddr::Unix(path) => path.display().to_string(),
            other => format!("{other}"),
        }
    }

    /// The database number.
    pub fn db(&self) -> i64 {
        self.info.redis_settings().db()
    }

    pub(crate) fn info(&self) -> &ConnectionInfo {
        &self.info
    }

    /// `text` with every occurrence of this URL's password replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        let pw = self.info.redis_settings().password();
        let out = scrub(text, pw);
        scrub(&out, password_in(&self.text).as_deref())
    }
}

impl FromStr for RedisUrl {
    type Err = UrlError;
    fn from_str(s: &str) -> Result<Self, UrlError> {
        Self::parse(s)
    }
}

impl PartialEq for RedisUrl {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for RedisUrl {}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.text.split("://").next().unwrap_or("redis");
        let settings = self.info.redis_settings();
        let user = match (settings.username(), settings.password()) {
            (Some(u), Some(_)) => format!("{u}:***@"),
            (None, Some(_)) => ":***@".to_owned(),
            (Some(u), None) => format!("{u}@"),
            (None, None) => String::new(),
        };
        match self.info.addr() {
            ConnectionAddr::Unix(_) => {
                write!(f, "{scheme}://{user}{}?db={}", self.endpoint(), self.db())
            }
            _ => write!(f, "{scheme}://{user}{}/{}", self.endpoint(), self.db()),
        }
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

/// The password part of a URL's text, if any (`scheme://user:PASS@...`).
fn password_in(s: &str) -> Option<String> {
    let rest = s.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let userinfo = authority.rsplit_once('@')?.0;
    let pass = userinfo.split_once(':')?.1;
    (!pass.is_empty()).then(|| pass.to_owned())
}

/// A URL's text with its password replaced by `***` (works on URLs that do not parse).
pub fn redact_text(s: &str) -> String {
    scrub(s, password_in(s).as_deref())
}

fn scrub(text: &str, password: Option<&str>) -> String {
    let Some(p) = password.filter(|p| !p.is_empty()) else {
        return text.to_owned();
    };
    let mut out = text.replace(p, "***");
    if let Some(decoded) = percent_decode(p)
        && decoded != p
        && !decoded.is_empty()
    {
        out = out.replace(&decoded, "***");
    }
    out
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn display_and_errors_hide_the_password() {
        let u = RedisUrl::parse("redis://alice:s3cr%40t@cache.example:6380/2").unwrap();
        let shown = format!("{u} {u:?}");
        assert!(!shown.contains("s3cr"), "{shown}");
        assert_eq!(u.to_string(), "redis://alice:***@cache.example:6380/2");
        assert_eq!(u.redact("auth failed for s3cr@t"), "auth failed for ***");
        assert_eq!(u.db(), 2);
        assert!(!u.tls());
        let e = RedisUrl::parse("redis://bob:hunter2@host:notaport/0").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = RedisUrl::parse("http://bob:hunter2@host/").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(e.to_string().contains("rediss://"), "{e}");
    }

    #[test]
    fn tls_and_defaults() {
        let u = RedisUrl::parse("rediss://:pw@127.0.0.1:6390/0").unwrap();
        assert!(u.tls());
        assert_eq!(u.to_string(), "rediss://:***@127.0.0.1:6390/0");
        let u = RedisUrl::parse("redis://127.0.0.1").unwrap();
        assert_eq!(u.endpoint(), "127.0.0.1:6379");
        assert_eq!(u.to_string(), "redis://127.0.0.1:6379/0");
    }

    #[test]
    fn insecure_fragments_are_refused() {
        let e = RedisUrl::parse("rediss://h:6379/0#insecure").unwrap_err();
        assert!(e.to_string().contains("certificate verification"), "{e}");
    }
}
