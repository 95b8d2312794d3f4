//! Where Kafka is: `kafka://host:port[,host:port...]` (plaintext) or
//! `kafkas://host:port[,host:port...]` (TLS), the bootstrap servers.
//!
//! Invariants:
//! - A parsed URL names at least one server, each with a host and a port in 1..=65535.
//! - `kafkas://` means TLS to every server, and nothing downgrades it (`client::Endpoint`
//!   refuses settings that would).
//! - Credentials, paths, queries and fragments are refused, not ignored: SASL settings go to
//!   librdkafka through `KafkaOptions::client_config`, never through a URL that would be
//!   printed.

use std::fmt;

/// What a valid URL looks like (for error messages).
pub const EXPECTED: &str = "kafka://host:port[,host:port...] (or kafkas:// for TLS)";

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Kafka URL {url}: {reason}; expected {EXPECTED}")]
pub struct UrlError {
    /// The URL as given (it can hold no password: `@` is refused before anything is kept).
    pub url: String,
    /// What is wrong.
    pub reason: String,
}

/// A parsed `kafka://` or `kafkas://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaUrl {
    servers: Vec<(String, u16)>,
    tls: bool,
}

impl KafkaUrl {
    /// Parses `s`.
    ///
    /// # Errors
    /// [`UrlError`] naming what is wrong.
    pub fn parse(s: &str) -> Result<Self, UrlError> {
        let err = |reason: &str| UrlError {
            url: if s.contains('@') {
                "kafka://***".into()
            } else {
                s.to_owned()
            },
            reason: reason.to_owned(),
        };
        let (rest, tls) = if let Some(rest) = s.strip_prefix("kafka://") {
            (rest, false)
        } else if let Some(rest) = s.strip_prefix("kafkas://") {
            (rest, true)
        } else {
            return Err(err("the scheme must be kafka or kafkas"));
        };
        if rest.contains('@') {
            return Err(err(
                "credentials are not taken from the URL; set SASL options in the client configuration",
            ));
        }
        if rest.contains(['/', '?', '#']) {
            return Err(err("a path, query or fragment is not allowed"));
        }
        let mut servers = Vec::new();
        for part in rest.split(',') {
            let (host, port) = part
                .rsplit_once(':')
                .ok_or_else(|| err(&format!("server {part:?} has no port")))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() {
                return Err(err(&format!("server {part:?} has no host")));
            }
            let port = match port.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(err(&format!("port {port:?} is not in 1..=65535"))),
            };
            servers.push((host.to_owned(), port));
        }
        Ok(KafkaUrl { servers, tls })
    }

    /// Whether the URL asks for TLS (`kafkas://`).
    #[must_use]
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// librdkafka's `bootstrap.servers` value.
    #[must_use]
    pub fn bootstrap_servers(&self) -> String {
        self.servers
            .iter()
            .map(|(h, p)| {
                if h.contains(':') {
                    format!("[{h}]:{p}")
                } else {
                    format!("{h}:{p}")
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl fmt::Display for KafkaUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "kafkas" } else { "kafka" };
        write!(f, "{scheme}://{}", self.bootstrap_servers())
    }
}

impl std::str::FromStr for KafkaUrl {
    type Err = UrlError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KafkaUrl::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_parsed_into_bootstrap_servers() {
        let u = KafkaUrl::parse("kafka://127.0.0.1:9092").expect("valid");
        assert_eq!(u.bootstrap_servers(), "127.0.0.1:9092");
        let u = KafkaUrl::parse("kafka://a:1,b.example:9093,[::1]:9094").expect("valid");
        assert_eq!(u.bootstrap_servers(), "a:1,b.example:9093,[::1]:9094");
        assert_eq!(u.to_string(), "kafka://a:1,b.example:9093,[::1]:9094");
        assert!(!u.tls());
        let u = KafkaUrl::parse("kafkas://k1:9093,k2:9093").expect("valid");
        assert!(u.tls());
        assert_eq!(u.bootstrap_servers(), "k1:9093,k2:9093");
        assert_eq!(u.to_string(), "kafkas://k1:9093,k2:9093");
    }

    #[test]
    fn bad_urls_name_what_is_wrong_and_never_print_credentials() {
        for (url, want) in [
            ("redis://a:1", "scheme"),
            ("kafka+ssl://a:1", "scheme"),
            ("kafkas://a", "no port"),
            ("kafka://a", "no port"),
            ("kafka://:9092", "no host"),
            ("kafka://a:0", "1..=65535"),
            ("kafka://a:99999", "1..=65535"),
            ("kafka://a:1/topic", "path"),
            ("kafka://a:1,", "no port"),
        ] {
            let e = KafkaUrl::parse(url).expect_err(url);
            assert!(e.to_string().contains(want), "{url}: {e}");
            assert!(e.to_string().contains(EXPECTED));
        }
        let e = KafkaUrl::parse("kafka://user:hunter2@a:1").expect_err("credentials");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(e.to_string().contains("SASL"), "{e}");
    }
}
