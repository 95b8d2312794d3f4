//! The console's router driven in process (`tower::ServiceExt::oneshot`) over a host whose
//! dead letters the test holds: sign-in, the cookie's attributes, scopes, CSRF and origin
//! checks, security headers, paging and filters, replay limits, purge confirmation, escaping.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use ackline_broker::{DeadLetter, DlqSelector};
use ackline_console::{ConsoleConfig, Host, HostError, Overview, QueueView, Role, router};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use parking_lot::Mutex;
use tower::ServiceExt;

const ADMIN: &str = "admin-token-0123456789";
const VIEWER: &str = "viewer-token-0123456789";
const HOST: &str = "console.test:8470";

#[derive(Default)]
struct Fake {
    dlq: Mutex<Vec<DeadLetter>>,
    replayed: Mutex<Vec<u64>>,
    open: bool,
}

fn dead(key: u64, reason: &str, err: &str, at: u64, payload: &[u8]) -> DeadLetter {
    DeadLetter {
        key,
        id: format!("id-{key}"),
        headers: vec![],
        payload: payload.to_vec(),
        enqueued_at: at - 10,
        attempts: 3,
        first_failure: at - 5,
        last_failure: at,
        reason: reason.into(),
        last_error: err.into(),
    }
}

impl Host for Fake {
    fn authenticate(&self, token: &str) -> Option<Role> {
        if self.open {
            return Some(Role::Admin);
        }
        match token {
            ADMIN => Some(Role::Admin),
            VIEWER => Some(Role::Viewer),
            _ => None,
        }
    }
    fn requires_token(&self) -> bool {
        !self.open
    }
    async fn overview(&self) -> Result<Overview, HostError> {
        Ok(Overview {
            mode: "test".into(),
            queues: vec![QueueView {
                name: "logs".into(),
                dead_letters: self.dlq.lock().len() as u64,
                ..QueueView::default()
            }],
            ..Overview::default()
        })
    }
    async fn dlq_list(
        &self,
        queue: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, HostError> {
        if queue != "logs" {
            return Err(HostError::NoQueue(queue.into()));
        }
        Ok(self
            .dlq
            .lock()
            .iter()
            .filter(|d| after.is_none_or(|a| d.key > a))
            .take(limit)
            .cloned()
            .collect())
    }
    async fn dlq_get(&self, _q: &str, key: u64) -> Result<Option<DeadLetter>, HostError> {
        Ok(self.dlq.lock().iter().find(|d| d.key == key).cloned())
    }
    async fn dlq_replay(&self, _q: &str, sel: DlqSelector) -> Result<usize, HostError> {
        let DlqSelector::Keys(keys) = sel else {
            panic!("the console replays by key only, got {sel:?}");
        };
        let mut dlq = self.dlq.lock();
        let before = dlq.len();
        dlq.retain(|d| !keys.contains(&d.key));
        self.replayed.lock().extend(&keys);
        Ok(before - dlq.len())
    }
    async fn dlq_purge(&self, _q: &str, sel: DlqSelector) -> Result<usize, HostError> {
        let mut dlq = self.dlq.lock();
        let before = dlq.len();
        match sel {
            DlqSelector::All => dlq.clear(),
            DlqSelector::Keys(k) => dlq.retain(|d| !k.contains(&d.key)),
            other => panic!("unexpected {other:?}"),
        }
        Ok(before - dlq.len())
    }
}

fn setup(n: u64, cfg: ConsoleConfig) -> (Arc<Fake>, Router) {
    let fake = Arc::new(Fake::default());
    {
        let mut d = fake.dlq.lock();
        for k in 0..n {
            let reason = if k % 2 == 0 {
                "rejected"
            } else {
                "max attempts exceeded"
            };
            d.push(dead(
                k * 3,
                reason,
                &format!("error {k}"),
                1_000_000 + k,
                b"x",
            ));
        }
    }
    let r = router(fake.clone(), cfg);
    (fake, r)
}

struct Resp {
    status: StatusCode,
    headers: header::HeaderMap,
    body: serde_json::Value,
    text: String,
}

async fn call(r: &Router, req: Request<Body>) -> Resp {
    let resp = r.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Resp {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        text,
    }
}

fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut b = Request::get(path).header(header::HOST, HOST);
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::empty()).unwrap()
}

fn post(
    path: &str,
    cookie: Option<&str>,
    csrf: Option<&str>,
    body: serde_json::Value,
) -> Request<Body> {
    let mut b = Request::post(path)
        .header(header::HOST, HOST)
        .header(header::ORIGIN, format!("http://{HOST}"))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    if let Some(t) = csrf {
        b = b.header("x-csrf-token", t);
    }
    b.body(Body::from(body.to_string())).unwrap()
}

/// Signs in: (cookie header value, CSRF token).
async fn login(r: &Router, token: &str) -> (String, String) {
    let resp = call(
        r,
        post(
            "/ui/api/login",
            None,
            None,
            serde_json::json!({ "token": token }),
        ),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text);
    let set = resp.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    let cookie = set.split(';').next().unwrap().to_string();
    (cookie, resp.body["csrf"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn login_sets_a_strict_http_only_cookie_and_never_echoes_the_token() {
    let (_, r) = setup(1, ConsoleConfig::default());
    let resp = call(
        &r,
        post(
            "/ui/api/login",
            None,
            None,
            serde_json::json!({ "token": ADMIN }),
        ),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK);
    let set = resp.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(set.starts_with("ackline_console="), "{set}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(set.contains(attr), "{set} lacks {attr}");
    }
    assert!(!set.contains("Secure"), "no TLS here: {set}");
    assert!(!set.contains(ADMIN) && !resp.text.contains(ADMIN));
    assert_eq!(resp.body["role"], "admin");

    // Over a TLS-terminating proxy the cookie is Secure.
    let mut req = post(
        "/ui/api/login",
        None,
        None,
        serde_json::json!({ "token": ADMIN }),
    );
    req.headers_mut()
        .insert("x-forwarded-proto", "https".parse().unwrap());
    let resp = call(&r, req).await;
    assert!(
        resp.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("; Secure")
    );

    // A wrong token: 401, no cookie.
    let resp = call(
        &r,
        post(
            "/ui/api/login",
            None,
            None,
            serde_json::json!({ "token": "nope-nope-nope-nope" }),
        ),
    )
    .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert!(resp.headers.get(header::SET_COOKIE).is_none());

    // A login from another origin is refused before the token is looked at.
    let mut req = post(
        "/ui/api/login",
        None,
        None,
        serde_json::json!({ "token": ADMIN }),
    );
    req.headers_mut()
        .insert(header::ORIGIN, "http://evil.example".parse().unwrap());
    assert_eq!(call(&r, req).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn every_api_route_needs_a_session_and_logout_ends_it() {
    let (_, r) = setup(3, ConsoleConfig::default());
    for p in [
        "/ui/api/overview",
        "/ui/api/session",
        "/ui/api/queues/logs/dlq",
        "/ui/api/queues/logs/dlq/0",
        "/ui/api/records",
    ] {
        assert_eq!(
            call(&r, get(p, None)).await.status,
            StatusCode::UNAUTHORIZED,
            "{p}"
        );
        assert_eq!(
            call(
                &r,
                get(p, Some("ackline_console=00000000000000000000000000000000"))
            )
            .await
            .status,
            StatusCode::UNAUTHORIZED,
            "{p}"
        );
    }
    // A bearer token is not a console session.
    let mut req = get("/ui/api/overview", None);
    req.headers_mut().insert(
        header::AUTHORIZATION,
        format!("Bearer {ADMIN}").parse().unwrap(),
    );
    assert_eq!(call(&r, req).await.status, StatusCode::UNAUTHORIZED);

    let (cookie, csrf) = login(&r, VIEWER).await;
    let o = call(&r, get("/ui/api/overview", Some(&cookie))).await;
    assert_eq!(o.status, StatusCode::OK);
    assert_eq!(o.body["queues"][0]["dead_letters"], 3);
    let s = call(&r, get("/ui/api/session", Some(&cookie))).await;
    assert_eq!(
        (s.body["role"].as_str(), s.body["csrf"].as_str()),
        (Some("viewer"), Some(csrf.as_str()))
    );
    // Records: this host has none, and says so.
    let rec = call(&r, get("/ui/api/records?text=x", Some(&cookie))).await;
    assert_eq!(rec.status, StatusCode::NOT_FOUND);

    assert_eq!(
        call(
            &r,
            post(
                "/ui/api/logout",
                Some(&cookie),
                Some(&csrf),
                serde_json::json!({})
            )
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        call(&r, get("/ui/api/overview", Some(&cookie)))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_viewer_cannot_replay_or_purge() {
    let (fake, r) = setup(3, ConsoleConfig::default());
    let (cookie, csrf) = login(&r, VIEWER).await;
    for (path, body) in [
        (
            "/ui/api/queues/logs/dlq/replay",
            serde_json::json!({ "keys": [0] }),
        ),
        (
            "/ui/api/queues/logs/dlq/purge",
            serde_json::json!({ "all": true, "confirm": true }),
        ),
    ] {
        let resp = call(&r, post(path, Some(&cookie), Some(&csrf), body)).await;
        assert_eq!(resp.status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(resp.body["error"], "forbidden");
    }
    assert_eq!(fake.dlq.lock().len(), 3);
    assert!(fake.replayed.lock().is_empty());
}

#[tokio::test]
async fn posts_need_the_csrf_token_and_the_same_origin() {
    let (fake, r) = setup(3, ConsoleConfig::default());
    let (cookie, csrf) = login(&r, ADMIN).await;
    let body = || serde_json::json!({ "keys": [0] });
    let path = "/ui/api/queues/logs/dlq/replay";
    let no_csrf = call(&r, post(path, Some(&cookie), None, body())).await;
    assert_eq!(
        (no_csrf.status, no_csrf.body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("csrf"))
    );
    let wrong = call(&r, post(path, Some(&cookie), Some(&"0".repeat(32)), body())).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    // Another session's token does not do.
    let (_, other_csrf) = login(&r, ADMIN).await;
    assert_eq!(
        call(&r, post(path, Some(&cookie), Some(&other_csrf), body()))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let mut cross = post(path, Some(&cookie), Some(&csrf), body());
    cross
        .headers_mut()
        .insert(header::ORIGIN, "http://evil.example".parse().unwrap());
    assert_eq!(call(&r, cross).await.status, StatusCode::FORBIDDEN);
    let mut site = post(path, Some(&cookie), Some(&csrf), body());
    site.headers_mut().remove(header::ORIGIN);
    site.headers_mut()
        .insert("sec-fetch-site", "cross-site".parse().unwrap());
    assert_eq!(call(&r, site).await.status, StatusCode::FORBIDDEN);
    assert!(
        fake.replayed.lock().is_empty(),
        "nothing replayed by a refused request"
    );

    let ok = call(&r, post(path, Some(&cookie), Some(&csrf), body())).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(
        (ok.body["replayed"].as_u64(), ok.body["selected"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(*fake.replayed.lock(), vec![0]);
}

#[tokio::test]
async fn every_response_has_the_security_headers() {
    let (_, r) = setup(1, ConsoleConfig::default());
    for p in [
        "/ui/",
        "/ui/assets/app.js",
        "/ui/api/overview",
        "/ui/assets/nope",
    ] {
        let resp = call(&r, get(p, None)).await;
        let csp = resp.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{p}: {csp}"
        );
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert_eq!(
            resp.headers[header::X_CONTENT_TYPE_OPTIONS],
            "nosniff",
            "{p}"
        );
    }
    let page = call(&r, get("/ui/", None)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    // No inline script and nothing from another host in the page.
    assert!(
        !page.text.contains("<script>")
            && !page.text.contains("http://")
            && !page.text.contains("https://")
    );
    let api = call(&r, get("/ui/api/overview", None)).await;
    assert_eq!(api.headers[header::CACHE_CONTROL], "no-store");
    let root = call(&r, get("/", None)).await;
    assert_eq!(root.headers[header::LOCATION], "/ui/");
    // The script puts data in the DOM as text only.
    let js = call(&r, get("/ui/assets/app.js", None)).await.text;
    assert!(
        !js.contains("innerHTML") && !js.contains("insertAdjacentHTML") && !js.contains("eval(")
    );
}

#[tokio::test]
async fn pages_and_filters_are_served_by_key() {
    let (_, r) = setup(120, ConsoleConfig::default());
    let (cookie, _) = login(&r, VIEWER).await;
    let p1 = call(&r, get("/ui/api/queues/logs/dlq?limit=50", Some(&cookie))).await;
    let keys = |v: &serde_json::Value| -> Vec<u64> {
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["key"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(keys(&p1.body), (0..50).map(|k| k * 3).collect::<Vec<_>>());
    assert_eq!(p1.body["next_after"], 49 * 3);
    let p3 = call(
        &r,
        get("/ui/api/queues/logs/dlq?limit=50&after=297", Some(&cookie)),
    )
    .await;
    assert_eq!(
        keys(&p3.body),
        (100..120).map(|k| k * 3).collect::<Vec<_>>()
    );
    assert!(p3.body["next_after"].is_null());
    // Filters: reason, error text and time range together.
    let f = call(
        &r,
        get(
            "/ui/api/queues/logs/dlq?reason=rejected&error=error%201&since=1000010&until=1000020",
            Some(&cookie),
        ),
    )
    .await;
    assert_eq!(keys(&f.body), vec![10 * 3, 12 * 3, 14 * 3, 16 * 3, 18 * 3]);
    assert!(f.body["next_after"].is_null());
    assert_eq!(
        call(&r, get("/ui/api/queues/nope/dlq", Some(&cookie)))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_hostile_dead_letter_leaves_escaped() {
    let (fake, r) = setup(0, ConsoleConfig::default());
    let hostile = b"<script>window.__pwned=1</script>\x00\xff\xfe";
    let mut d = dead(7, "rejected", "bad \x1b[31m line", 1_000_000, hostile);
    d.id = "<img src=x onerror=alert(1)>".into();
    fake.dlq.lock().push(d);
    let (cookie, _) = login(&r, VIEWER).await;
    let resp = call(&r, get("/ui/api/queues/logs/dlq/7", Some(&cookie))).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert!(
        resp.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let p = &resp.body["payload"];
    assert_eq!(p["is_text"], false);
    assert_eq!(
        p["escaped"],
        "<script>window.__pwned=1</script>\\x00\\xff\\xfe"
    );
    assert_eq!(resp.body["last_error"], "bad \\x1b[31m line");
    assert_eq!(p["len"], hostile.len());
    // The list row's preview is escaped the same way.
    let list = call(&r, get("/ui/api/queues/logs/dlq", Some(&cookie))).await;
    assert_eq!(
        list.body["entries"][0]["payload_preview"],
        "<script>window.__pwned=1</script>\\x00\\xff\\xfe"
    );
}

#[tokio::test]
async fn replays_are_bounded_and_rate_limited_whole() {
    let cfg = ConsoleConfig {
        replay_max: 10,
        replay_rate: 10,
        ..ConsoleConfig::default()
    };
    let (fake, r) = setup(40, cfg);
    let (cookie, csrf) = login(&r, ADMIN).await;
    let path = "/ui/api/queues/logs/dlq/replay";
    let too_many = call(
        &r,
        post(
            path,
            Some(&cookie),
            Some(&csrf),
            serde_json::json!({ "keys": (0..11).collect::<Vec<u64>>() }),
        ),
    )
    .await;
    assert_eq!(too_many.status, StatusCode::BAD_REQUEST);
    // By filter: the first 10 matching, and "more".
    let first = call(
        &r,
        post(
            path,
            Some(&cookie),
            Some(&csrf),
            serde_json::json!({ "filter": { "reason": "rejected" } }),
        ),
    )
    .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(
        (
            first.body["replayed"].as_u64(),
            first.body["more"].as_bool()
        ),
        (Some(10), Some(true))
    );
    assert_eq!(
        *fake.replayed.lock(),
        (0..10).map(|k| k * 6).collect::<Vec<_>>()
    );
    // The bucket is empty now: the next is refused whole, with Retry-After.
    let limited = call(
        &r,
        post(
            path,
            Some(&cookie),
            Some(&csrf),
            serde_json::json!({ "all": true }),
        ),
    )
    .await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers.contains_key(header::RETRY_AFTER));
    assert_eq!(fake.replayed.lock().len(), 10);
    let both = call(
        &r,
        post(
            path,
            Some(&cookie),
            Some(&csrf),
            serde_json::json!({ "all": true, "keys": [1] }),
        ),
    )
    .await;
    assert_eq!(both.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_purge_needs_confirmation() {
    let (fake, r) = setup(6, ConsoleConfig::default());
    let (cookie, csrf) = login(&r, ADMIN).await;
    let path = "/ui/api/queues/logs/dlq/purge";
    let unconfirmed = call(
        &r,
        post(
            path,
            Some(&cookie),
            Some(&csrf),
            serde_json::json!({ "all": true }),
        ),
    )
    .await;
    assert_eq!(
        (unconfirmed.status, unconfirmed.body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unconfirmed"))
    );
    assert_eq!(fake.dlq.lock().len(), 6);
    let one = call(
        &r,
        post(
            path,
            Some(&cookie),
            Some(&csrf),
            serde_json::json!({ "keys": [3], "confirm": true }),
        ),
    )
    .await;
    assert_eq!(one.body["purged"], 1);
    let by_filter = call(
        &r,
        post(
            path,
            Some(&cookie),
            Some(&csrf),
            serde_json::json!({ "filter": { "reason": "rejected" }, "confirm": true }),
        ),
    )
    .await;
    assert_eq!(by_filter.body["purged"], 3);
    let all = call(
        &r,
        post(
            path,
            Some(&cookie),
            Some(&csrf),
            serde_json::json!({ "all": true, "confirm": true }),
        ),
    )
    .await;
    assert_eq!(all.body["purged"], 2);
    assert!(fake.dlq.lock().is_empty());
}

#[tokio::test]
async fn without_tokens_any_text_signs_in_as_admin() {
    let fake = Arc::new(Fake {
        open: true,
        ..Fake::default()
    });
    let r = router(fake, ConsoleConfig::default());
    let resp = call(&r, get("/ui/api/session", None)).await;
    assert!(resp.text.contains("no tokens"), "{}", resp.text);
    let (cookie, _) = login(&r, "").await;
    let s = call(&r, get("/ui/api/session", Some(&cookie))).await;
    assert_eq!(s.body["role"], "admin");
}

#[test]
fn the_console_routes_are_apart_from_the_api() {
    for (_, p) in ackline_console::ROUTES {
        assert!(*p == "/" || p.starts_with("/ui"), "{p}");
        assert!(!p.starts_with("/v1"), "{p}");
    }
}
