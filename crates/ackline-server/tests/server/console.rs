//! The console mounted in a real server: sign-in with the server's tokens (`read` is a
//! viewer, `admin` an admin, others refused), the books and the sessions of the overview
//! after real traffic, a viewer's replay refused, an admin's replay put back in the queue
//! once, and the console kept out of the API's route table.

use serde_json::{Value, json};

use crate::common::*;

const READ: &str = "read-token-0123456789abcdef";

fn tokens(cfg: &mut ackline_server::ServerConfig) {
    with_tokens(cfg);
    cfg.tokens.push(ackline_server::Token::new(
        READ,
        &[ackline_server::Scope::Read],
    ));
}

/// Signs in with `token`: (cookie, CSRF token), or the status of the refusal.
async fn login(a: std::net::SocketAddr, token: &str) -> Result<(String, String), u16> {
    let origin = format!("http://{a}");
    let body = json!({ "token": token }).to_string();
    let r = http(
        a,
        "POST",
        "/ui/api/login",
        &[("Origin", &origin), ("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .await;
    if r.status != 200 {
        return Err(r.status);
    }
    let cookie = r
        .head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_string();
    let v: Value = serde_json::from_str(&r.body).unwrap();
    Ok((cookie, v["csrf"].as_str().unwrap().to_string()))
}

async fn console_get(a: std::net::SocketAddr, cookie: &str, path: &str) -> Value {
    let r = http(a, "GET", path, &[("Cookie", cookie)], b"").await;
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

async fn console_post(
    a: std::net::SocketAddr,
    (cookie, csrf): &(String, String),
    path: &str,
    body: Value,
) -> Resp {
    let origin = format!("http://{a}");
    http(
        a,
        "POST",
        path,
        &[
            ("Cookie", cookie),
            ("X-CSRF-Token", csrf),
            ("Origin", &origin),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_signs_in_with_server_tokens_and_acts_on_real_dead_letters() {
    let s = start(tokens).await;
    let a = s.addr;
    assert_eq!(
        login(a, INGEST).await.unwrap_err(),
        401,
        "ingest is not a read scope"
    );
    assert_eq!(login(a, WORKER).await.unwrap_err(), 401);
    assert_eq!(login(a, "unknown-token-0123456789").await.unwrap_err(), 401);
    let viewer = login(a, READ).await.unwrap();
    let admin = login(a, ADMIN).await.unwrap();

    // Traffic: 6 published, a worker acks 4 and rejects 2 (one a hostile payload).
    let hostile = base64_of(b"<script>x</script>\x00\xff");
    let msgs = json!({ "messages": [
        { "id": "m0", "payload": "a" }, { "id": "m1", "payload": "b" },
        { "id": "m2", "payload": "c" }, { "id": "m3", "payload": "d" },
        { "id": "m4", "payload": "e" },
        { "id": "bad", "payload": hostile, "encoding": "base64" },
    ]});
    let ing = bearer(INGEST);
    let r = http(
        a,
        "POST",
        "/v1/queues/logs/messages",
        &[("Authorization", &ing)],
        msgs.to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let wk = bearer(WORKER);
    let r = http(
        a,
        "POST",
        "/v1/queues/logs/sessions",
        &[("Authorization", &wk)],
        b"{}",
    )
    .await;
    let sid: Value = serde_json::from_str(&r.body).unwrap();
    let sid = sid["session"].as_str().unwrap().to_string();
    let mut ds: Vec<Value> = Vec::new();
    while ds.len() < 6 {
        let r = http(
            a,
            "POST",
            &format!("/v1/queues/logs/sessions/{sid}/receive"),
            &[("Authorization", &wk)],
            b"{\"max\": 10, \"wait_ms\": 1000}",
        )
        .await;
        let v: Value = serde_json::from_str(&r.body).unwrap();
        ds.extend(v["deliveries"].as_array().unwrap().iter().cloned());
    }
    // While the worker holds them, the overview lists its session with 6 leases.
    let o = console_get(a, &viewer.0, "/ui/api/overview").await;
    let sessions = o["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{o}");
    assert_eq!(sessions[0]["leases"], 6);
    assert!(
        !sessions[0]["name"].as_str().unwrap().contains(&sid),
        "the session id is cut"
    );
    let items: Vec<Value> = ds
        .iter()
        .map(|d| {
            let op = if d["id"] == "bad" || d["id"] == "m4" {
                json!({"op": "reject", "reason": "unparseable"})
            } else {
                json!({"op": "ack"})
            };
            let mut it = op;
            it["key"] = d["key"].clone();
            it["attempt"] = d["attempt"].clone();
            it
        })
        .collect();
    let r = http(
        a,
        "POST",
        &format!("/v1/queues/logs/sessions/{sid}/settle"),
        &[("Authorization", &wk)],
        json!({ "items": items }).to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let o = console_get(a, &viewer.0, "/ui/api/overview").await;
    let b = &o["books"];
    assert_eq!(
        (
            b["published"].as_u64(),
            b["stored"].as_u64(),
            b["dead_lettered"].as_u64(),
            b["pending"].as_u64()
        ),
        (Some(6), Some(4), Some(2), Some(0)),
        "{o}"
    );
    assert_eq!(o["queues"][0]["dead_letters"], 2);
    assert_eq!(
        o["latency"][0]["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>(),
        4,
        "one end-to-end observation per ack"
    );

    let list = console_get(a, &viewer.0, "/ui/api/queues/logs/dlq").await;
    let bad = list["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "bad")
        .unwrap()
        .clone();
    let key = bad["key"].as_u64().unwrap();
    let detail = console_get(a, &viewer.0, &format!("/ui/api/queues/logs/dlq/{key}")).await;
    assert_eq!(detail["payload"]["escaped"], "<script>x</script>\\x00\\xff");

    // The viewer's replay is refused by the server; the admin's puts it back once.
    let r = console_post(
        a,
        &viewer,
        "/ui/api/queues/logs/dlq/replay",
        json!({ "keys": [key] }),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = console_post(
        a,
        &admin,
        "/ui/api/queues/logs/dlq/replay",
        json!({ "keys": [key] }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r2 = console_post(
        a,
        &admin,
        "/ui/api/queues/logs/dlq/replay",
        json!({ "keys": [key] }),
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&r2.body).unwrap()["replayed"],
        0,
        "a second replay of the same key finds nothing"
    );
    let o = console_get(a, &admin.0, "/ui/api/overview").await;
    let b = &o["books"];
    assert_eq!(
        (
            b["published"].as_u64(),
            b["dead_lettered"].as_u64(),
            b["pending"].as_u64()
        ),
        (Some(6), Some(1), Some(1)),
        "a replay is not a publish: {o}"
    );
    let q = &o["queues"][0];
    assert_eq!(
        (q["ready"].as_u64(), q["replayed"].as_u64()),
        (Some(1), Some(1))
    );

    // Purge with confirmation; the books still add up.
    let r = console_post(
        a,
        &admin,
        "/ui/api/queues/logs/dlq/purge",
        json!({ "all": true, "confirm": true }),
    )
    .await;
    assert_eq!(serde_json::from_str::<Value>(&r.body).unwrap()["purged"], 1);
    let b = console_get(a, &admin.0, "/ui/api/overview").await["books"].clone();
    assert_eq!(
        b["published"].as_u64().unwrap(),
        ["stored", "dead_lettered", "pending", "purged"]
            .iter()
            .map(|k| b[k].as_u64().unwrap())
            .sum::<u64>(),
        "{b}"
    );

    // The console is not an API route: bearer tokens do not open it, the OpenAPI table lacks it.
    let r = http(
        a,
        "GET",
        "/ui/api/overview",
        &[("Authorization", &bearer(ADMIN))],
        b"",
    )
    .await;
    assert_eq!(r.status, 401);
    let r = http(a, "GET", "/", &[], b"").await;
    assert_eq!(
        (r.status, r.head.contains("location: /ui/")),
        (303, true),
        "{}",
        r.head
    );
    let r = http(a, "GET", "/ui/", &[], b"").await;
    assert!(
        r.head
            .contains("content-security-policy: default-src 'none'"),
        "{}",
        r.head
    );
    let api = http(a, "GET", "/v1/openapi.json", &[], b"").await;
    assert!(!api.body.contains("/ui"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relaying_server_shows_its_broker_and_counts_relayed() {
    let s = start(|c| c.relay_to = Some("amqp://guest:***@127.0.0.1:5672/%2f".into())).await;
    let admin = login(s.addr, "").await.unwrap();
    let o = console_get(s.addr, &admin.0, "/ui/api/overview").await;
    assert_eq!(o["relay"], "amqp://guest:***@127.0.0.1:5672/%2f");
    assert_eq!(o["books"]["settled_as"], "relayed");
    assert_eq!(o["mode"], "serve");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_can_be_turned_off() {
    let s = start(|c| c.console = false).await;
    let r = http(s.addr, "GET", "/ui/", &[], b"").await;
    assert_eq!(r.status, 404);
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}
