//! A metrics-only HTTP endpoint: `GET /metrics` answered by a caller's text producer, so a
//! process that is not the server (`ackline run`, `ackline work`) can expose its worker
//! metrics (`ackline_worker::metrics::render`) for Prometheus to scrape.
//!
//! Invariants:
//! - Only `GET /metrics` is served: another path is 404, another method 405. Each scrape
//!   calls `render` once, on the request's task (it must be cheap and must not block).
//! - A `render` error is a 500 whose body is the error's text, never a panic or a partial
//!   exposition.
//! - Connections go through the server's own accept loop: at most
//!   [`MAX_CONNECTIONS`] at once (the longest idle is closed for a new one; more wait in
//!   the backlog when all are busy), headers within
//!   [`HEADER_READ_TIMEOUT`], and on shutdown open requests get [`SHUTDOWN_GRACE`].
//! - No authentication: which address it listens on is the caller's choice (bind loopback
//!   unless a scraper elsewhere must reach it; the numbers carry no payloads or credentials).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::error::ServerError;

/// Concurrent scrape connections.
pub const MAX_CONNECTIONS: usize = 64;
/// Time a client has to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time open requests get once shutdown begins.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The content type of the text exposition `prometheus-client` writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `GET /metrics` on `listener`, answering each scrape with `render()`, until
/// `shutdown` completes; then stops accepting and lets open requests finish (at most
/// [`SHUTDOWN_GRACE`]). Returns an error only if accepting connections fails for good.
///
/// With a worker runtime, `render` is `move || ackline_worker::metrics::render(&stats)`; any
/// `Fn() -> Result<String, E: Display>` does:
///
/// ```no_run
/// # async fn f() -> Result<(), ackline_server::ServerError> {
/// let addr = "127.0.0.1:9464";
/// let listener = tokio::net::TcpListener::bind(addr)
///     .await
///     .map_err(|source| ackline_server::ServerError::Bind { addr: addr.into(), source })?;
/// let render = || Ok::<_, std::fmt::Error>("# EOF\n".to_string());
/// ackline_server::serve_metrics(listener, render, std::future::pending::<()>()).await
/// # }
/// ```
pub async fn serve_metrics<F, E>(
    listener: TcpListener,
    render: F,
    shutdown: impl Future,
) -> Result<(), ServerError>
where
    F: Fn() -> Result<String, E> + Send + Sync + 'static,
    E: std::fmt::Display + 'static,
{
    let render = Arc::new(render);
    let router = Router::new().route(
        "/metrics",
        get(move || {
            let render = render.clone();
            async move { scrape(&*render) }
        }),
    );
    serve_router(listener, router, shutdown).await
}

/// Serves `router` on `listener` with the same connection handling as [`serve_metrics`]
/// (the header-read timeout, at most [`MAX_CONNECTIONS`], graceful shutdown): how a process
/// that is not the server serves a small router of its own (`ackline run --listen`'s
/// console).
pub async fn serve_router(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future,
) -> Result<(), ServerError> {
    let slots = crate::slots::Slots::new(MAX_CONNECTIONS, MAX_CONNECTIONS);
    let (close, closing) = tokio::sync::watch::channel(false);
    let result = crate::conn::accept(
        &listener,
        router,
        &slots,
        HEADER_READ_TIMEOUT,
        &closing,
        shutdown,
    )
    .await;
    drop(listener);
    if !crate::conn::drain(close, &slots, SHUTDOWN_GRACE).await {
        tracing::warn!("metrics endpoint: scrapes still open after the shutdown grace");
    }
    result
}

fn scrape<E: std::fmt::Display>(render: &dyn Fn() -> Result<String, E>) -> Response {
    match render() {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "rendering metrics failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("rendering metrics failed: {e}\n"),
            )
                .into_response()
        }
    }
}
