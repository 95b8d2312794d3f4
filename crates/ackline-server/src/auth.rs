//! Bearer tokens with scopes.
//!
//! Invariants:
//! - A token's secret is compared in constant time (the `subtle` crate: its comparisons are
//!   written so the optimiser cannot turn them into early-exit loops, which a hand-rolled
//!   loop cannot promise), against every configured token without early exit. Only the
//!   length of a presented token may show in timing.
//! - A secret is never logged or formatted: [`Token`]'s `Debug` prints its scopes only.
//! - With no tokens configured (allowed only on loopback) every request is let through.

use axum::http::{HeaderMap, StatusCode, header};
use subtle::{Choice, ConstantTimeEq};

use crate::error::ApiError;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `POST /v1/logs` and publishing.
    Ingest,
    /// The lease API (sessions, receive, settle).
    Worker,
    /// Queues, dead letters, metrics; the console's replay and purge.
    Admin,
    /// The console's pages, read only (overview, dead letters, records). Admin implies it.
    Read,
}

impl Scope {
    /// Its name in configuration.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Worker => "worker",
            Scope::Admin => "admin",
            Scope::Read => "read",
        }
    }

    /// Parses a configured name.
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "ingest" => Some(Scope::Ingest),
            "worker" => Some(Scope::Worker),
            "admin" => Some(Scope::Admin),
            "read" => Some(Scope::Read),
            _ => None,
        }
    }
}

/// A bearer token and the scopes it grants.
#[derive(Clone)]
pub struct Token {
    secret: Vec<u8>,
    scopes: Vec<Scope>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("secret", &"<redacted>")
            .field("scopes", &self.scopes)
            .finish()
    }
}

impl Token {
    /// A token granting `scopes`.
    pub fn new(secret: impl Into<String>, scopes: &[Scope]) -> Self {
        Token {
            secret: secret.into().into_bytes(),
            scopes: scopes.to_vec(),
        }
    }

    pub(crate) fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// Whether it grants `scope` (admin implies read).
    pub fn grants(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
            || (scope == Scope::Read && self.scopes.contains(&Scope::Admin))
    }
}

/// The configured token whose secret is `presented`, compared in constant time against every
/// token without early exit.
pub fn find<'a>(tokens: &'a [Token], presented: &str) -> Option<&'a Token> {
    let mut found: Option<&Token> = None;
    for t in tokens {
        let eq: Choice = t.secret.as_slice().ct_eq(presented.as_bytes());
        if bool::from(eq) && found.is_none() {
            found = Some(t);
        }
    }
    found
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing (health, readiness, the OpenAPI document).
    Open,
    /// Any valid token.
    AnyToken,
    /// A token with this scope.
    Scope(Scope),
}

/// Checks a request's `Authorization` header (`Bearer TOKEN`, the scheme in any case): `Ok`,
/// 401 (none or unknown) or 403 (known, lacking the scope).
pub fn check(tokens: &[Token], headers: &HeaderMap, need: Need) -> Result<(), ApiError> {
    if tokens.is_empty() || need == Need::Open {
        return Ok(());
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_credentials);
    let Some(presented) = presented else {
        return Err(unauthorized("a bearer token is required"));
    };
    let Some(t) = find(tokens, presented) else {
        return Err(unauthorized("unknown token"));
    };
    match need {
        Need::Scope(s) if !t.grants(s) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("the token lacks the {} scope", s.name()),
        )),
        _ => Ok(()),
    }
}

/// The credentials of a `Bearer` authorization: the scheme is case-insensitive (RFC 7235
/// section 2.1), followed by one or more spaces.
fn bearer_credentials(v: &str) -> Option<&str> {
    let (scheme, rest) = v.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[test]
    fn scopes_and_statuses() {
        let tokens = [
            Token::new("ingest-secret-0123456789", &[Scope::Ingest]),
            Token::new("admin-secret-0123456789", &[Scope::Admin, Scope::Worker]),
        ];
        let ing = Need::Scope(Scope::Ingest);
        assert!(check(&tokens, &headers("Bearer ingest-secret-0123456789"), ing).is_ok());
        let e = check(&tokens, &HeaderMap::new(), ing).unwrap_err();
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        let e = check(&tokens, &headers("Bearer nope"), ing).unwrap_err();
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        let e = check(&tokens, &headers("Bearer admin-secret-0123456789"), ing).unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert!(
            check(
                &tokens,
                &headers("Bearer admin-secret-0123456789"),
                Need::AnyToken
            )
            .is_ok()
        );
        assert!(check(&[], &HeaderMap::new(), ing).is_ok());
        // The scheme is case-insensitive (RFC 7235); the secret is not.
        for h in [
            "bearer ingest-secret-0123456789",
            "BEARER  ingest-secret-0123456789",
            "BeArEr ingest-secret-0123456789 ",
        ] {
            assert!(check(&tokens, &headers(h), ing).is_ok(), "{h}");
        }
        for h in [
            "Bearer INGEST-SECRET-0123456789",
            "Bearerx ingest-secret-0123456789",
            "Basic ingest-secret-0123456789",
            "bearer ",
        ] {
            let e = check(&tokens, &headers(h), ing).unwrap_err();
            assert_eq!(e.status, StatusCode::UNAUTHORIZED, "{h}");
        }
        assert!(!format!("{:?}", tokens[0]).contains("secret-0123"));
    }

    #[test]
    fn admin_implies_read_and_read_implies_nothing_else() {
        let admin = Token::new("admin-secret-0123456789", &[Scope::Admin]);
        let read = Token::new("read-secret-0123456789", &[Scope::Read]);
        assert!(admin.grants(Scope::Read) && admin.grants(Scope::Admin));
        assert!(read.grants(Scope::Read));
        for s in [Scope::Admin, Scope::Ingest, Scope::Worker] {
            assert!(!read.grants(s), "{s:?}");
        }
        let tokens = [admin, read];
        assert!(find(&tokens, "read-secret-0123456789").is_some_and(|t| t.grants(Scope::Read)));
        assert!(find(&tokens, "read-secret-012345678").is_none());
        assert_eq!(Scope::parse("read"), Some(Scope::Read));
    }
}
