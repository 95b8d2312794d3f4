//! The console's routes: pages and assets, the session (login, logout, who am I), the
//! overview, records; the dead-letter routes are in [`crate::dlq`].
//!
//! Invariants: [`ROUTES`] lists exactly what [`build`] registers; every `/ui/api/` handler
//! starts with [`guard::require`] (or is the login, which checks the origin and the token).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes as Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use crate::guard::{self, Refused};
use crate::host::{Host, HostError, RecordQuery, Role};
use crate::{Shared, assets, dlq};

/// Every route: method and path pattern.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/"),
    ("get", "/ui"),
    ("get", "/ui/"),
    ("get", "/ui/assets/{file}"),
    ("get", "/ui/api/session"),
    ("post", "/ui/api/login"),
    ("post", "/ui/api/logout"),
    ("get", "/ui/api/overview"),
    ("get", "/ui/api/records"),
    ("get", "/ui/api/queues/{queue}/dlq"),
    ("get", "/ui/api/queues/{queue}/dlq/{key}"),
    ("post", "/ui/api/queues/{queue}/dlq/replay"),
    ("post", "/ui/api/queues/{queue}/dlq/purge"),
];

pub(crate) fn build<H: Host>(st: Arc<Shared<H>>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(index))
        .route("/ui/assets/{file}", get(asset))
        .route("/ui/api/session", get(session::<H>))
        .route("/ui/api/login", post(login::<H>))
        .route("/ui/api/logout", post(logout::<H>))
        .route("/ui/api/overview", get(overview::<H>))
        .route("/ui/api/records", get(records::<H>))
        .route("/ui/api/queues/{queue}/dlq", get(dlq::list::<H>))
        .route("/ui/api/queues/{queue}/dlq/{key}", get(dlq::show::<H>))
        .route("/ui/api/queues/{queue}/dlq/replay", post(dlq::replay::<H>))
        .route("/ui/api/queues/{queue}/dlq/purge", post(dlq::purge::<H>))
        .layer(axum::middleware::from_fn(guard::security_headers))
        .with_state(st)
}

async fn index() -> Response {
    asset_response("index.html")
}

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    asset_response(&file)
}

fn asset_response(name: &str) -> Response {
    match assets::get(name) {
        Some(a) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(a.content_type),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            a.bytes,
        )
            .into_response(),
        None => Refused::new(StatusCode::NOT_FOUND, "not_found", "no such file").into_response(),
    }
}

/// A host's failure as a response.
pub(crate) fn host_error(e: HostError) -> Refused {
    let (status, code) = match &e {
        HostError::NoQueue(_) | HostError::NotHere(_) => (StatusCode::NOT_FOUND, "not_found"),
        HostError::Bad(_) => (StatusCode::BAD_REQUEST, "bad_request"),
        HostError::Broker(
            ackline_broker::BrokerError::Unavailable { .. }
            | ackline_broker::BrokerError::Full { .. },
        ) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        HostError::Broker(ackline_broker::BrokerError::Invalid { .. }) => {
            (StatusCode::BAD_REQUEST, "bad_request")
        }
        HostError::Broker(_) | HostError::Failed(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "failed")
        }
    };
    Refused::new(status, code, e.to_string())
}

/// Parses a JSON body, 400 with serde's reason otherwise.
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(body: &Body) -> Result<T, Refused> {
    serde_json::from_slice(body).map_err(|e| {
        Refused::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("invalid JSON body: {e}"),
        )
    })
}

async fn session<H: Host>(
    State(st): State<Arc<Shared<H>>>,
    headers: HeaderMap,
) -> Result<Response, Refused> {
    let unauth = |e: Refused| {
        let mut e = e;
        e.message = format!(
            "{}{}",
            e.message,
            if st.host.requires_token() {
                ""
            } else {
                " (this process has no tokens: any text signs in as admin)"
            }
        );
        e
    };
    let (_, s) =
        guard::require(&st.sessions, &Method::GET, &headers, Role::Viewer).map_err(unauth)?;
    Ok(axum::Json(json!({ "role": s.role, "csrf": s.csrf })).into_response())
}

#[derive(Deserialize)]
struct Login {
    token: String,
}

async fn login<H: Host>(
    State(st): State<Arc<Shared<H>>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Refused> {
    guard::same_origin(&headers)?;
    let l: Login = json_body(&body)?;
    let Some(role) = st.host.authenticate(l.token.trim()) else {
        return Err(Refused::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unknown token, or one without the read or admin scope",
        ));
    };
    let (id, s) = st.sessions.login(role);
    let secure = guard::over_tls(&headers, st.cfg.secure_cookie);
    tracing::info!(role = ?role, "console: signed in");
    Ok((
        [(header::SET_COOKIE, guard::set_cookie(&id, secure))],
        axum::Json(json!({ "role": s.role, "csrf": s.csrf })),
    )
        .into_response())
}

async fn logout<H: Host>(
    State(st): State<Arc<Shared<H>>>,
    headers: HeaderMap,
) -> Result<Response, Refused> {
    let (id, _) = guard::require(&st.sessions, &Method::POST, &headers, Role::Viewer)?;
    st.sessions.logout(&id);
    let secure = guard::over_tls(&headers, st.cfg.secure_cookie);
    Ok((
        [(header::SET_COOKIE, guard::clear_cookie(secure))],
        axum::Json(json!({ "signed_out": true })),
    )
        .into_response())
}

async fn overview<H: Host>(
    State(st): State<Arc<Shared<H>>>,
    headers: HeaderMap,
) -> Result<Response, Refused> {
    guard::require(&st.sessions, &Method::GET, &headers, Role::Viewer)?;
    let o = st.host.overview().await.map_err(host_error)?;
    Ok(axum::Json(o).into_response())
}

/// Most records one search returns.
const MAX_RECORDS: usize = 500;

async fn records<H: Host>(
    State(st): State<Arc<Shared<H>>>,
    headers: HeaderMap,
    Query(mut q): Query<RecordQuery>,
) -> Result<Response, Refused> {
    guard::require(&st.sessions, &Method::GET, &headers, Role::Viewer)?;
    q.limit = Some(q.limit.unwrap_or(100).clamp(1, MAX_RECORDS));
    for f in [
        &mut q.since,
        &mut q.until,
        &mut q.severity,
        &mut q.host,
        &mut q.app,
        &mut q.text,
    ] {
        if f.as_deref().is_some_and(|s| s.trim().is_empty()) {
            *f = None;
        }
    }
    let rows = st.host.records(q).await.map_err(host_error)?;
    Ok(axum::Json(json!({ "records": rows })).into_response())
}
