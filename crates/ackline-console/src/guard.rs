//! Who may do what: the session cookie, the role a route needs, CSRF and origin checks on
//! every POST, and the security headers on every response.
//!
//! Invariants:
//! - A request is let through only with a live session (the `ackline_console` cookie) whose
//!   role is at least the route's; the token itself never travels again after the login,
//!   and never in a URL.
//! - Every POST but the login carries the session's CSRF token in `X-CSRF-Token` (compared in
//!   constant time); every POST, the login included, is refused when its `Origin` names
//!   another host than `Host`, or its `Sec-Fetch-Site` says another site. With the cookie's
//!   `SameSite=Strict`, a cross-site page can neither send nor forge a console action.
//! - Every response carries a Content-Security-Policy without inline script or style and with
//!   `frame-ancestors 'none'`, `X-Content-Type-Options: nosniff`, `Referrer-Policy:
//!   no-referrer`; API responses are `no-store`.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::host::Role;
use crate::session::{Session, Sessions, csrf_matches};

/// The session cookie's name.
pub const COOKIE: &str = "ackline_console";
/// The header that carries the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The Content-Security-Policy of every console response.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// A refusal, as JSON `{"error", "message"}`.
#[derive(Debug)]
pub struct Refused {
    /// The status.
    pub status: StatusCode,
    /// A short code.
    pub code: &'static str,
    /// What went wrong.
    pub message: String,
}

impl Refused {
    /// A refusal.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Refused {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(json!({ "error": self.code, "message": self.message })),
        )
            .into_response()
    }
}

/// The session id in the request's cookies.
pub fn cookie_session(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The live session of the request with at least `role`; for a POST, also a matching CSRF
/// token and a same-origin request.
pub fn require(
    sessions: &Sessions,
    method: &Method,
    headers: &HeaderMap,
    role: Role,
) -> Result<(String, Session), Refused> {
    if *method == Method::POST {
        same_origin(headers)?;
    }
    let Some(id) = cookie_session(headers) else {
        return Err(Refused::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "sign in first",
        ));
    };
    let Some(s) = sessions.get(&id) else {
        return Err(Refused::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the session ended: sign in again",
        ));
    };
    if *method == Method::POST {
        let presented = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !csrf_matches(&s, presented) {
            return Err(Refused::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "missing or wrong X-CSRF-Token",
            ));
        }
    }
    if s.role < role {
        return Err(Refused::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this needs a token with the admin scope",
        ));
    }
    Ok((id, s))
}

/// Refuses a request whose `Origin` is another host than its `Host`, or whose
/// `Sec-Fetch-Site` is `cross-site` or `same-site` (another origin on the same site).
pub fn same_origin(headers: &HeaderMap) -> Result<(), Refused> {
    let refuse = |why: &str| Err(Refused::new(StatusCode::FORBIDDEN, "origin", why));
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return refuse("a request from another site");
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let authority = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, a)| a);
    match authority {
        Some(a) if !host.is_empty() && a.eq_ignore_ascii_case(host) => Ok(()),
        _ => refuse("Origin is not this console's host"),
    }
}

/// The `Set-Cookie` value of a new session (`secure` over TLS).
pub fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that ends a session in the browser.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Whether the request came over TLS (a TLS-terminating proxy says so in
/// `X-Forwarded-Proto`; the header can only make the cookie stricter).
pub fn over_tls(headers: &HeaderMap, configured: bool) -> bool {
    configured
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// Middleware: the security headers on every console response.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let is_api = req.uri().path().starts_with("/ui/api/");
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if is_api {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn origin_must_be_this_host() {
        assert!(same_origin(&h(&[("host", "a:1")])).is_ok());
        assert!(same_origin(&h(&[("host", "a:1"), ("origin", "http://a:1")])).is_ok());
        assert!(same_origin(&h(&[("host", "a:1"), ("origin", "http://a:2")])).is_err());
        assert!(same_origin(&h(&[("host", "a:1"), ("origin", "null")])).is_err());
        assert!(same_origin(&h(&[("origin", "http://a:1")])).is_err());
        assert!(same_origin(&h(&[("host", "a:1"), ("sec-fetch-site", "cross-site")])).is_err());
        assert!(same_origin(&h(&[("host", "a:1"), ("sec-fetch-site", "same-origin")])).is_ok());
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let m = h(&[("cookie", "a=b; ackline_console=abc ; c=d")]);
        assert_eq!(cookie_session(&m).as_deref(), Some("abc"));
        assert_eq!(cookie_session(&h(&[("cookie", "ackline_console=")])), None);
        assert!(set_cookie("x", true).ends_with("; Secure"));
        assert!(set_cookie("x", false).contains("HttpOnly; SameSite=Strict"));
    }
}
