//! Errors: [`ServerError`] for starting and running the server, [`ApiError`] for one request.
//!
//! Invariant: every failed request gets a JSON body `{"error": code, "message": text}` whose
//! code is one of a fixed set (documented in `docs/server.md` and the OpenAPI document), and
//! backpressure (`full`) always carries a `Retry-After` header. No message ever contains a
//! request's credentials.

use std::time::Duration;

use ackline_broker::BrokerError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A configuration value is unacceptable.
    #[error("server config: {field}: {reason}")]
    Config {
        /// The field.
        field: &'static str,
        /// What is expected.
        reason: String,
    },
    /// The data directory or a queue could not be opened.
    #[error("opening the queue: {0}")]
    Open(#[from] ackline_queue::OpenError),
    /// Binding a listener failed.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Accepting connections failed in a way that does not pass.
    #[error("accepting connections: {0}")]
    Accept(#[source] std::io::Error),
}

/// A request's failure, rendered as a status and a JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable code (`bad_request`, `full`, ...).
    pub code: &'static str,
    /// A human-readable reason.
    pub message: String,
    /// The `Retry-After` to send.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// A failure with status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400 with a precise reason.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 503 while shutting down or when the queue cannot serve.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(Duration::from_secs(1)),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        }
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        let message = e.to_string();
        match e {
            BrokerError::Full { retry_after, .. } => ApiError {
                retry_after: Some(retry_after.unwrap_or(Duration::from_secs(1))),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "full", message)
            },
            BrokerError::Unavailable { .. } => ApiError::unavailable(message),
            BrokerError::Invalid { .. } if message.contains("over the maximum") => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
            }
            BrokerError::Invalid { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid", message)
            }
            BrokerError::Fatal { .. } => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "fatal", message)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ackline_wire::ErrorBody {
            error: self.code.to_string(),
            message: self.message,
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(d) = self.retry_after {
            let secs = d.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}
