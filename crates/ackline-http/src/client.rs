//! The HTTP client: requests, retries on connect errors, status → [`BrokerError`] mapping.
//!
//! Invariants: the bearer token is sent as a sensitive header and never formatted (`Debug`
//! redacts it); only requests that never left (connect errors) are retried.

use std::time::Duration;

use ackline_broker::BrokerError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::Client as Hyper;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;

use crate::NAME;

const CONNECT_TRIES: u32 = 4;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A failed request.
#[derive(Debug)]
pub(crate) enum Error {
    /// 404, with the server's code (`not_found`, `session_not_found`).
    NotFound(String),
    /// Anything else.
    Broker(BrokerError),
}

impl From<Error> for BrokerError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound(m) => BrokerError::Invalid {
                backend: NAME,
                reason: format!("not found: {m}"),
            },
            Error::Broker(b) => b,
        }
    }
}

fn unavailable(reason: impl Into<String>) -> Error {
    Error::Broker(BrokerError::Unavailable {
        backend: NAME,
        reason: reason.into(),
    })
}

/// A connection pool to one server.
pub struct Client {
    http: Hyper<HttpConnector, Full<Bytes>>,
    base: String,
    token: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Client {
    /// Parses `http://HOST:PORT[/QUEUE][?queue=QUEUE]`; returns the client and the queue.
    pub(crate) fn new(url: &str, token: Option<String>) -> Result<(Client, String), BrokerError> {
        let bad = |reason: &str| BrokerError::Invalid {
            backend: NAME,
            reason: format!("bad queue URL {url:?}: {reason} (expected http://HOST:PORT[/QUEUE])"),
        };
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("the scheme must be http"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        let mut queue = uri.path().trim_matches('/').to_string();
        if let Some(q) = uri.query() {
            for pair in q.split('&') {
                if let Some(v) = pair.strip_prefix("queue=") {
                    queue = v.to_string();
                }
            }
        }
        if queue.is_empty() {
            queue = "logs".into();
        }
        if queue.contains('/') {
            return Err(bad("one path segment at most (the queue)"));
        }
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        conn.set_connect_timeout(Some(Duration::from_secs(5)));
        let http = Hyper::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(conn);
        Ok((
            Client {
                http,
                base: format!("http://{authority}"),
                token,
            },
            queue,
        ))
    }

    fn request(
        &self,
        method: &Method,
        path: &str,
        body: &Bytes,
    ) -> Result<Request<Full<Bytes>>, Error> {
        let mut b = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.base));
        if !body.is_empty() {
            b = b.header(CONTENT_TYPE, "application/json");
        }
        if let Some(t) = &self.token {
            let mut v =
                hyper::header::HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| {
                    Error::Broker(BrokerError::Fatal {
                        backend: NAME,
                        reason: "the token is not a valid header value".into(),
                    })
                })?;
            v.set_sensitive(true);
            b = b.header(AUTHORIZATION, v);
        }
        b.body(Full::new(body.clone())).map_err(|e| {
            Error::Broker(BrokerError::Invalid {
                backend: NAME,
                reason: format!("building the request: {e}"),
            })
        })
    }

    /// Sends a request; returns the status and body of a 2xx.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        timeout: Option<Duration>,
    ) -> Result<Bytes, Error> {
        let timeout = timeout.unwrap_or(DEFAULT_TIMEOUT);
        let mut tries = 0;
        let resp = loop {
            tries += 1;
            let req = self.request(&method, path, &body)?;
            match tokio::time::timeout(timeout, self.http.request(req)).await {
                Err(_) => {
                    return Err(unavailable(format!(
                        "{method} {path}: no answer within {timeout:?}"
                    )));
                }
                Ok(Ok(r)) => break r,
                Ok(Err(e)) if e.is_connect() && tries < CONNECT_TRIES => {
                    tokio::time::sleep(Duration::from_millis(50 << tries)).await;
                }
                Ok(Err(e)) => {
                    return Err(unavailable(format!("{method} {} failed: {e}", self.base)));
                }
            }
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = match tokio::time::timeout(timeout, resp.into_body().collect()).await {
            Ok(Ok(b)) => b.to_bytes(),
            Ok(Err(e)) => return Err(unavailable(format!("reading the answer: {e}"))),
            Err(_) => return Err(unavailable("reading the answer timed out")),
        };
        if status.is_success() {
            return Ok(bytes);
        }
        Err(status_error(status, &bytes, retry_after))
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        let b = self.send(Method::GET, path, Bytes::new(), None).await?;
        parse(&b)
    }

    pub(crate) async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
        timeout: Option<Duration>,
    ) -> Result<T, Error> {
        let body = serde_json::to_vec(body).map_err(|e| {
            Error::Broker(BrokerError::Invalid {
                backend: NAME,
                reason: e.to_string(),
            })
        })?;
        let b = self.send(Method::POST, path, body.into(), timeout).await?;
        parse(&b)
    }

    pub(crate) async fn delete(&self, path: &str) -> Result<(), Error> {
        self.send(Method::DELETE, path, Bytes::new(), None)
            .await
            .map(drop)
    }
}

fn parse<T: DeserializeOwned>(b: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(b).map_err(|e| {
        Error::Broker(BrokerError::Fatal {
            backend: NAME,
            reason: format!("unexpected answer from the server: {e}"),
        })
    })
}

fn status_error(status: StatusCode, body: &[u8], retry_after: Option<Duration>) -> Error {
    let (code, message) = match serde_json::from_slice::<ackline_wire::ErrorBody>(body) {
        Ok(e) => (e.error, e.message),
        Err(_) => (String::new(), String::from_utf8_lossy(body).into_owned()),
    };
    let reason = format!("{status}: {message}");
    let b = |e| Error::Broker(e);
    match status.as_u16() {
        404 => Error::NotFound(if code.is_empty() { message } else { code }),
        429 => b(BrokerError::Full {
            backend: NAME,
            reason,
            retry_after,
        }),
        503 if code == "full" => b(BrokerError::Full {
            backend: NAME,
            reason,
            retry_after,
        }),
        408 | 502..=504 => b(BrokerError::Unavailable {
            backend: NAME,
            reason,
        }),
        400..=499 if status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN => {
            b(BrokerError::Invalid {
                backend: NAME,
                reason,
            })
        }
        _ => b(BrokerError::Fatal {
            backend: NAME,
            reason,
        }),
    }
}
