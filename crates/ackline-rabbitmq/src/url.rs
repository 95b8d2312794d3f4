//! Where the broker is: `amqp://user:pass@host:port/vhost` or `amqps://...` (TLS), given
//! explicitly or through the environment variable [`ENV_URL`].
//!
//! Invariant: the password never leaves this module in text meant for people. [`AmqpUrl`]'s
//! `Display` and `Debug` print `***` in its place, and [`AmqpUrl::redact`] scrubs it from any
//! message (lapin's errors included) before that message becomes a `BrokerError`.

use std::fmt;
use std::str::FromStr;

use lapin::uri::{AMQPScheme, AMQPUri};

/// The environment variable read by [`AmqpUrl::from_env`].
pub const ENV_URL: &str = "ACKLINE_AMQP_URL";

/// What a valid URL looks like (for error messages).
pub const EXPECTED: &str =
    "amqp://user:pass@host:port/vhost or amqps://... (vhost percent-encoded, %2f for /)";

/// Why a URL was refused. Carries the URL with its password redacted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not a URL lapin understands.
    #[error("invalid AMQP URL {url}: {reason}; expected {EXPECTED}")]
    Invalid {
        /// The URL, password redacted.
        url: String,
        /// What is wrong (password redacted).
        reason: String,
    },
    /// Neither a URL nor [`ENV_URL`] was given.
    #[error("no AMQP URL: set {ENV_URL} or pass one; expected {EXPECTED}")]
    Missing,
}

/// A parsed AMQP URL whose password is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct AmqpUrl {
    uri: AMQPUri,
}

impl AmqpUrl {
    /// Parses `s`.
    ///
    /// # Errors
    /// [`UrlError::Invalid`] naming the (redacted) URL and what is wrong.
    pub fn parse(s: &str) -> Result<Self, UrlError> {
        let invalid = |reason: String| UrlError::Invalid {
            url: redact_text(s),
            reason: scrub(&reason, password_in(s).as_deref()),
        };
        let scheme_ok = s.starts_with("amqp://") || s.starts_with("amqps://");
        if !scheme_ok {
            return Err(invalid("the scheme must be amqp or amqps".into()));
        }
        let uri = AMQPUri::from_str(s).map_err(invalid)?;
        if uri.authority.host.is_empty() {
            return Err(invalid("no host".into()));
        }
        Ok(AmqpUrl { uri })
    }

    /// [`ENV_URL`]'s value, parsed.
    ///
    /// # Errors
    /// [`UrlError::Missing`] when unset or empty, else as [`AmqpUrl::parse`].
    pub fn from_env() -> Result<Self, UrlError> {
        match std::env::var(ENV_URL) {
            Ok(v) if !v.trim().is_empty() => Self::parse(v.trim()),
            _ => Err(UrlError::Missing),
        }
    }

    /// `url` if given, else [`ENV_URL`].
    ///
    /// # Errors
    /// As [`AmqpUrl::parse`] and [`AmqpUrl::from_env`].
    pub fn resolve(url: Option<&str>) -> Result<Self, UrlError> {
        match url {
            Some(u) => Self::parse(u),
            None => Self::from_env(),
        }
    }

    /// Whether the connection uses TLS (`amqps`).
    pub fn tls(&self) -> bool {
        matches!(self.uri.scheme, AMQPScheme::AMQPS)
    }

    /// `host:port`.
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.uri.authority.host, self.uri.authority.port)
    }

    /// The user name.
    pub fn username(&self) -> &str {
        &self.uri.authority.userinfo.username
    }

    /// The virtual host.
    pub fn vhost(&self) -> &str {
        &self.uri.vhost
    }

    pub(crate) fn uri(&self) -> AMQPUri {
        self.uri.clone()
    }

    /// `text` with every occurrence of this URL's password replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        scrub(text, Some(&self.uri.authority.userinfo.password))
    }
}

impl FromStr for AmqpUrl {
    type Err = UrlError;
    fn from_str(s: &str) -> Result<Self, UrlError> {
        Self::parse(s)
    }
}

impl fmt::Display for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let vhost = if self.uri.vhost == "/" {
            "%2f"
        } else {
            &self.uri.vhost
        };
        write!(
            f,
            "{}://{}:***@{}/{}",
            self.uri.scheme,
            self.username(),
            self.endpoint(),
            vhost
        )
    }
}

impl fmt::Debug for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AmqpUrl({self})")
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
    match password {
        Some(p) if !p.is_empty() => {
            let mut out = text.replace(p, "***");
            // lapin and url may print the percent-decoded form too.
            if let Ok(decoded) = percent_decode(p)
                && decoded != p
                && !decoded.is_empty()
            {
                out = out.replace(&decoded, "***");
            }
            out
        }
        _ => text.to_owned(),
    }
}

fn percent_decode(s: &str) -> Result<String, ()> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).map_err(|_| ())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| ())?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn display_and_debug_hide_the_password() {
        let u = AmqpUrl::parse("amqp://alice:s3cr%40t@mq.example:5673/prod").unwrap();
        let shown = format!("{u} {u:?}");
        assert!(!shown.contains("s3cr"), "{shown}");
        assert!(shown.contains("alice") && shown.contains("mq.example:5673"));
        assert_eq!(u.redact("auth failed for s3cr@t"), "auth failed for ***");
        assert!(!u.tls());
        assert!(AmqpUrl::parse("amqps://a:b@h/v").unwrap().tls());
    }

    #[test]
    fn errors_hide_the_password() {
        let e = AmqpUrl::parse("amqp://bob:hunter2@host:notaport/v").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = AmqpUrl::parse("http://bob:hunter2@host/").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(e.to_string().contains("amqp"), "{e}");
    }

    #[test]
    fn defaults() {
        let u = AmqpUrl::parse("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap();
        assert_eq!(u.vhost(), "/");
        assert_eq!(u.endpoint(), "127.0.0.1:5672");
        assert_eq!(u.to_string(), "amqp://guest:***@127.0.0.1:5672/%2f");
    }
}
