//! Where the server is: `nats://[user:pass@|token@]host[:port]` or `tls://...` (TLS
//! required), given explicitly or through the environment variable [`ENV_URL`].
//!
//! async-nats does not read credentials from a URL, so they are taken out here and passed as
//! options; the client is given only `scheme://host:port`. The port defaults to 4222.
//!
//! Invariant: neither password nor token leaves this module in text meant for people.
//! [`NatsUrl`]'s `Display` and `Debug` print `***` in their place, and [`NatsUrl::redact`]
//! scrubs them (raw and percent-decoded) from any message before it becomes a `BrokerError`.

use std::fmt;

/// The environment variable read by [`NatsUrl::from_env`].
pub const ENV_URL: &str = "ACKLINE_NATS_URL";

/// What a valid URL looks like (for error messages).
pub const EXPECTED: &str = "nats://[USER:PASS@|TOKEN@]HOST[:PORT] or tls://... (TLS required)";

/// Why a URL was refused. Carries the URL with its secret redacted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not a NATS URL.
    #[error("invalid NATS URL {url}: {reason}; expected {EXPECTED}")]
    Invalid {
        /// The URL, secret redacted.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// Neither a URL nor [`ENV_URL`] was given.
    #[error("no NATS URL: set {ENV_URL} or pass one; expected {EXPECTED}")]
    Missing,
}

/// How the client authenticates, from the URL's user part.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Auth {
    None,
    UserPass { user: String, pass: String },
    Token(String),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::UserPass { user, .. } => write!(f, "UserPass({user}, ***)"),
            Auth::Token(_) => f.write_str("Token(***)"),
        }
    }
}

/// A parsed NATS URL whose password or token is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct NatsUrl {
    tls: bool,
    host: String,
    port: u16,
    pub(crate) auth: Auth,
    /// The secret as written in the URL (percent-encoded), for scrubbing.
    raw_secret: Option<String>,
}

impl NatsUrl {
    /// Parses `s`.
    ///
    /// # Errors
    /// [`UrlError::Invalid`] naming the (redacted) URL and what is wrong.
    pub fn parse(s: &str) -> Result<Self, UrlError> {
        let s = s.trim();
        let invalid = |reason: &str| UrlError::Invalid {
            url: redact_text(s),
            reason: reason.to_owned(),
        };
        let (scheme, rest) = s.split_once("://").ok_or_else(|| invalid("no scheme"))?;
        let tls = match scheme {
            "nats" => false,
            "tls" => true,
            _ => return Err(invalid("the scheme must be nats or tls")),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', ',']) {
            return Err(invalid(
                "only one server, without a path (cluster members are discovered)",
            ));
        }
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (host, port) = split_host_port(hostport).ok_or_else(|| invalid("bad host or port"))?;
        let (auth, raw_secret) = match userinfo {
            None => (Auth::None, None),
            Some(u) => match u.split_once(':') {
                Some((user, pass)) => {
                    let user = percent_decode(user).ok_or_else(|| invalid("bad user name"))?;
                    let dec = percent_decode(pass).ok_or_else(|| invalid("bad password"))?;
                    if user.is_empty() {
                        return Err(invalid("a password without a user name"));
                    }
                    (Auth::UserPass { user, pass: dec }, Some(pass.to_owned()))
                }
                None => {
                    let token = percent_decode(u).ok_or_else(|| invalid("bad token"))?;
                    if token.is_empty() {
                        return Err(invalid("an empty token"));
                    }
                    (Auth::Token(token), Some(u.to_owned()))
                }
            },
        };
        Ok(NatsUrl {
            tls,
            host,
            port,
            auth,
            raw_secret,
        })
    }

    /// [`ENV_URL`]'s value, parsed.
    ///
    /// # Errors
    /// [`UrlError::Missing`] when unset or empty, else as [`NatsUrl::parse`].
    pub fn from_env() -> Result<Self, UrlError> {
        match std::env::var(ENV_URL) {
            Ok(v) if !v.trim().is_empty() => Self::parse(v.trim()),
            _ => Err(UrlError::Missing),
        }
    }

    /// `url` if given, else [`ENV_URL`].
    ///
    /// # Errors
    /// As [`NatsUrl::parse`] and [`NatsUrl::from_env`].
    pub fn resolve(url: Option<&str>) -> Result<Self, UrlError> {
        match url {
            Some(u) => Self::parse(u),
            None => Self::from_env(),
        }
    }

    /// Whether TLS is required (`tls://`).
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// `host:port` (IPv6 in brackets).
    pub fn endpoint(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user name, when the URL carries a user and password.
    pub fn username(&self) -> Option<&str> {
        match &self.auth {
            Auth::UserPass { user, .. } => Some(user),
            _ => None,
        }
    }

    /// The address handed to the client: `scheme://host:port`, no credentials.
    pub(crate) fn server_addr(&self) -> String {
        let scheme = if self.tls { "tls" } else { "nats" };
        format!("{scheme}://{}", self.endpoint())
    }

    /// `text` with every occurrence of this URL's password or token replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        let decoded = match &self.auth {
            Auth::UserPass { pass, .. } => Some(pass.as_str()),
            Auth::Token(t) => Some(t.as_str()),
            Auth::None => None,
        };
        for secret in [self.raw_secret.as_deref(), decoded].into_iter().flatten() {
            if !secret.is_empty() {
                out = out.replace(secret, "***");
            }
        }
        out
    }
}

impl fmt::Display for NatsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "tls" } else { "nats" };
        match &self.auth {
            Auth::None => write!(f, "{scheme}://{}", self.endpoint()),
            Auth::UserPass { user, .. } => write!(f, "{scheme}://{user}:***@{}", self.endpoint()),
            Auth::Token(_) => write!(f, "{scheme}://***@{}", self.endpoint()),
        }
    }
}

impl fmt::Debug for NatsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NatsUrl({self})")
    }
}

impl std::str::FromStr for NatsUrl {
    type Err = UrlError;
    fn from_str(s: &str) -> Result<Self, UrlError> {
        Self::parse(s)
    }
}

/// `host[:port]` or `[v6][:port]`; the port defaults to 4222.
fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (h, port)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let ok_host = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
    if !ok_host {
        return None;
    }
    let port = match port {
        None => 4222,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0)?,
    };
    Some((host.to_owned(), port))
}

/// The userinfo of a URL's text, if any (`scheme://USERINFO@...`).
fn secret_in(s: &str) -> Option<String> {
    let rest = s.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let userinfo = authority.rsplit_once('@')?.0;
    let secret = match userinfo.split_once(':') {
        Some((_, pass)) => pass,
        None => userinfo,
    };
    (!secret.is_empty()).then(|| secret.to_owned())
}

/// A URL's text with its password or token replaced by `***` (works on URLs that do not
/// parse).
pub fn redact_text(s: &str) -> String {
    match secret_in(s) {
        Some(secret) => {
            let mut out = s.replace(&secret, "***");
            if let Some(d) = percent_decode(&secret)
                && !d.is_empty()
            {
                out = out.replace(&d, "***");
            }
            out
        }
        None => s.to_owned(),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
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
    fn user_and_password_are_taken_out_and_hidden() {
        let u = NatsUrl::parse("nats://alice:s3cr%40t@nats.example:4333").unwrap();
        let shown = format!("{u} {u:?}");
        assert!(!shown.contains("s3cr"), "{shown}");
        assert_eq!(u.to_string(), "nats://alice:***@nats.example:4333");
        assert_eq!(u.server_addr(), "nats://nats.example:4333");
        assert_eq!(
            u.auth,
            Auth::UserPass {
                user: "alice".into(),
                pass: "s3cr@t".into()
            }
        );
        assert_eq!(u.redact("bad s3cr@t and s3cr%40t"), "bad *** and ***");
        assert!(!u.tls());
    }

    #[test]
    fn a_lone_user_part_is_a_token() {
        let u = NatsUrl::parse("tls://t0ken@127.0.0.1").unwrap();
        assert!(u.tls());
        assert_eq!(u.port(), 4222);
        assert_eq!(u.auth, Auth::Token("t0ken".into()));
        assert_eq!(u.to_string(), "tls://***@127.0.0.1:4222");
        assert_eq!(u.server_addr(), "tls://127.0.0.1:4222");
    }

    #[test]
    fn ipv6_and_defaults() {
        let u = NatsUrl::parse("nats://[::1]:5000/").unwrap();
        assert_eq!(u.endpoint(), "[::1]:5000");
        assert_eq!(u.auth, Auth::None);
        assert_eq!(NatsUrl::parse("nats://h").unwrap().endpoint(), "h:4222");
    }

    #[test]
    fn refusals_hide_the_secret() {
        for bad in [
            "amqp://bob:hunter2@host/",
            "nats://bob:hunter2@host:notaport",
            "nats://bob:hunter2@host/path",
            "nats://bob:hunter2@a:1,nats://b:2",
            "nats://:hunter2@host",
            "nats://host:0",
            "host:4222",
        ] {
            let e = NatsUrl::parse(bad).unwrap_err();
            assert!(!e.to_string().contains("hunter2"), "{e}");
            assert!(e.to_string().contains("nats://"), "{e}");
        }
        assert_eq!(redact_text("nats://tok3n@h"), "nats://***@h");
    }
}
