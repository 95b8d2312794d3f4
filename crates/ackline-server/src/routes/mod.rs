//! The router: every route with the authority it needs, built from one table.
//!
//! Invariants:
//! - [`build`] registers routes only through `Table::add`, so [`Table::routes`] is exactly
//!   what the router serves (the OpenAPI test compares it with the document).
//! - Every API route but `/healthz`, `/readyz` and `/v1/openapi.json` checks the bearer token
//!   before its handler runs (when tokens are configured). The console (`/`, `/ui`, mounted
//!   from [`crate::console`]) is not in the table: it has its own sessions and checks.
//! - No request creates a queue unless its token has the admin scope or the name is in
//!   `auto_create_queues` (`Table::add_gated` routes check it before the handler runs; the
//!   others never create one); and never beyond `max_queues`.
//! - While shutting down, a request that fails with 500 (the queues closed under a request
//!   that outlasted `limits.shutdown_grace`, such as a long-poll) is answered 503 with
//!   `Retry-After` instead: the client retries, elsewhere or after the restart.
//! - Bodies are limited (413), whole requests time out (408), and each request's latency is
//!   observed under labels from closed sets only: its route pattern (never its concrete
//!   path; `unmatched` for no route), its method ([`method_label`]: the standard ones or
//!   `other`) and its status, so no client can grow the label sets.

pub mod admin;
pub mod ingest;
pub mod lease;

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use tower_http::timeout::TimeoutLayer;

use crate::auth::{self, Need, Scope};
use crate::error::ApiError;
use crate::state::AppState;

/// A route: method (lower case, as in OpenAPI) and path pattern.
pub type Route = (&'static str, &'static str);

/// Which queue a route's handler may create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Creates {
    /// None (the route reads, or needs the queue to exist).
    Nothing,
    /// The `{queue}` path parameter.
    PathQueue,
    /// The `queue` query parameter (the default queue, which always exists, when absent).
    QueryQueue,
}

/// Lets `req` through unless it names a queue that does not exist and its token may not
/// create it. The number of queues is limited where they are created ([`Queues::get`]).
///
/// [`Queues::get`]: crate::state::Queues::get
async fn may_create(st: &AppState, req: Request, creates: Creates) -> Result<Request, ApiError> {
    use axum::extract::{FromRequestParts, Query, RawPathParams};
    let (mut parts, body) = req.into_parts();
    let name = match creates {
        Creates::Nothing => None,
        Creates::PathQueue => RawPathParams::from_request_parts(&mut parts, &())
            .await
            .ok()
            .and_then(|p| {
                p.iter()
                    .find(|(k, _)| *k == "queue")
                    .map(|(_, v)| v.to_string())
            }),
        Creates::QueryQueue => {
            Query::<std::collections::HashMap<String, String>>::try_from_uri(&parts.uri)
                .ok()
                .and_then(|Query(mut q)| q.remove("queue"))
        }
    };
    if let Some(name) = name
        && ackline_queue::valid_queue_name(&name)
        && !st.cfg.auto_create_queues.contains(&name)
        && !st.queues.exists(&name)
        && auth::check(&st.cfg.tokens, &parts.headers, Need::Scope(Scope::Admin)).is_err()
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "no queue named {name:?}: creating a queue needs the admin scope (PUT /v1/queues/{{queue}}) or the name in auto_create_queues"
            ),
        ));
    }
    Ok(Request::from_parts(parts, body))
}

/// Builds the router and remembers what it registered.
#[derive(Debug)]
pub struct Table {
    router: Router<AppState>,
    routes: Vec<Route>,
    state: AppState,
}

impl Table {
    fn add(
        &mut self,
        method: &'static str,
        path: &'static str,
        need: Need,
        mr: MethodRouter<AppState>,
    ) {
        self.add_gated(method, path, need, Creates::Nothing, mr);
    }

    /// Adds a route whose handler opens the queue `creates` names, creating it if it does
    /// not exist: a request that would create one needs the admin scope, or the name in
    /// `auto_create_queues` (403 otherwise), checked before the handler runs.
    fn add_gated(
        &mut self,
        method: &'static str,
        path: &'static str,
        need: Need,
        creates: Creates,
        mr: MethodRouter<AppState>,
    ) {
        let st = self.state.clone();
        let mr = mr.route_layer(middleware::from_fn(move |req: Request, next: Next| {
            let st = st.clone();
            async move {
                if let Err(e) = auth::check(&st.cfg.tokens, req.headers(), need) {
                    return e.into_response();
                }
                let req = match may_create(&st, req, creates).await {
                    Ok(req) => req,
                    Err(e) => return e.into_response(),
                };
                next.run(req).await
            }
        }));
        self.router = std::mem::take(&mut self.router).route(path, mr);
        self.routes.push((method, path));
    }

    /// The routes registered.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

/// The route table and the router serving it.
pub fn build(state: AppState) -> (Router, Vec<Route>) {
    use Need::{AnyToken, Open, Scope as S};
    let mut t = Table {
        router: Router::new(),
        routes: Vec::new(),
        state: state.clone(),
    };
    t.add("get", "/healthz", Open, get(admin::healthz));
    t.add("get", "/readyz", Open, get(admin::readyz));
    t.add("get", "/v1/openapi.json", Open, get(admin::openapi));
    t.add("get", "/metrics", S(Scope::Admin), get(admin::metrics));
    t.add_gated(
        "post",
        "/v1/logs",
        S(Scope::Ingest),
        Creates::QueryQueue,
        post(ingest::ingest),
    );
    t.add(
        "get",
        "/v1/queues",
        S(Scope::Admin),
        get(admin::list_queues),
    );
    t.add(
        "put",
        "/v1/queues/{queue}",
        S(Scope::Admin),
        put(admin::create_queue),
    );
    t.add(
        "get",
        "/v1/queues/{queue}/stats",
        AnyToken,
        get(admin::queue_stats),
    );
    t.add_gated(
        "post",
        "/v1/queues/{queue}/messages",
        S(Scope::Ingest),
        Creates::PathQueue,
        post(lease::publish),
    );
    t.add_gated(
        "post",
        "/v1/queues/{queue}/sessions",
        S(Scope::Worker),
        Creates::PathQueue,
        post(lease::open_session),
    );
    t.add(
        "delete",
        "/v1/queues/{queue}/sessions/{session}",
        S(Scope::Worker),
        delete(lease::close_session),
    );
    t.add(
        "post",
        "/v1/queues/{queue}/sessions/{session}/receive",
        S(Scope::Worker),
        post(lease::receive),
    );
    t.add(
        "post",
        "/v1/queues/{queue}/sessions/{session}/settle",
        S(Scope::Worker),
        post(lease::settle),
    );
    t.add(
        "get",
        "/v1/queues/{queue}/dlq",
        S(Scope::Admin),
        get(admin::dlq_list),
    );
    t.add(
        "get",
        "/v1/queues/{queue}/dlq/{key}",
        S(Scope::Admin),
        get(admin::dlq_get),
    );
    t.add(
        "post",
        "/v1/queues/{queue}/dlq/replay",
        S(Scope::Admin),
        post(admin::dlq_replay),
    );
    t.add(
        "post",
        "/v1/queues/{queue}/dlq/purge",
        S(Scope::Admin),
        post(admin::dlq_purge),
    );
    let limits = &state.cfg.limits;
    let st = state.clone();
    let mut router = t
        .router
        .fallback(|| async { ApiError::not_found("no such route") })
        .with_state(state.clone());
    if state.cfg.console {
        // A router of its own (session cookies, not bearer tokens), out of the API's table
        // and so out of the OpenAPI document; it shares the limits and observation below.
        router = router.merge(crate::console::router(state.clone()));
    }
    let router = router
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            let st = st.clone();
            async move { observe(st, req, next).await }
        }));
    (router, t.routes)
}

async fn observe(st: AppState, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let method = method_label(req.method());
    let started = Instant::now();
    let mut resp = next.run(req).await;
    if resp.status() == StatusCode::INTERNAL_SERVER_ERROR && st.is_draining() {
        // A request still open when the shutdown grace ran out fails because the queues
        // closed under it: that is "unavailable, retry", not a fatal error.
        resp = ApiError::unavailable("the server shut down before this request finished; retry")
            .into_response();
    }
    let status = resp.status().as_u16();
    st.metrics
        .observe_request(method, &route, status, started.elapsed());
    tracing::debug!(%method, %route, status, "request");
    resp
}

/// The `method` label: one of the standard methods, else `other`. A client chooses the
/// method freely (any token, of any length, before auth), so its text must never become a
/// label value: each distinct one would be a new series kept for the life of the process.
pub fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// Parses a JSON body, with serde's line and column in the 400.
pub fn json<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}
