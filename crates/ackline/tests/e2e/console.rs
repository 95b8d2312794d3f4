//! The web console in a real browser: `ackline serve` with an `ackline work` behind it,
//! headless Chromium driven over WebDriver (`chromedriver`, started here on a free port and
//! killed on drop) with fantoccini.
//!
//! What it proves, in the browser: a viewer (`read` token) signs in, sees no replay button,
//! and the server refuses its replay (403) even when the page's own script forces the
//! request; an admin signs in, sees the live numbers move while a producer posts; a dead
//! letter with a hostile payload (`<script>`, an `onerror` handler, NUL, invalid UTF-8) is
//! shown escaped and nothing of it runs; replayed once after the worker is made lenient, it
//! is in the SQLite store exactly once; another is purged only after the confirmation (a
//! cancel purges nothing). The same run takes the screenshots of `docs/console.md` (light and
//! dark, wide and narrow); they are written to `docs/console/` with `ACKLINE_SCREENSHOTS=1`,
//! else to a temporary directory.
//!
//! Needs `chromium` and `chromium-driver` (Debian): under `CI=true` their absence fails the
//! test, otherwise it is skipped with a printed reason.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::common::{Proc, ackline, free_port, wait_for};

const ADMIN: &str = "console-admin-0123456789abcdef";
const READ: &str = "console-viewer-0123456789abcdef";
const HOSTILE_ID: &str = "hostile-1";
const HOSTILE: &[u8] =
    b"<script>window.__pwned=1</script><img src=x onerror=\"window.__pwned=2\">\x00\xff\xfe end";

/// The browser tools, or `None` (skipped; a failure under `CI=true`).
fn browser_tools() -> Option<(PathBuf, Option<PathBuf>)> {
    let find = |name: &str| -> Option<PathBuf> {
        std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|f| f.is_file())
        })
    };
    let driver = find("chromedriver");
    let browser = find("chromium").or_else(|| find("chromium-browser"));
    if driver.is_none() || browser.is_none() {
        let why = "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)";
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "{why} (CI=true, so this fails)"
        );
        println!("skipped: {why}");
        return None;
    }
    Some((driver?, browser))
}

fn admin_http(addr: &str, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    crate::common::http(addr, Some(ADMIN), method, path, "application/json", body)
}

fn serve(dir: &Path) -> (Proc, String) {
    let mut c = ackline();
    c.env_remove("ACKLINE_CONFIG")
        .env_remove("ACKLINE_LISTEN")
        .env_remove("ACKLINE_TOKENS")
        .arg("--data-dir")
        .arg(dir)
        .args(["--json", "serve", "--listen", "127.0.0.1:0"])
        .args(["--token", &format!("{ADMIN}:ingest,worker,admin")])
        .args(["--token", &format!("{READ}:read")]);
    let (p, v) = crate::common::spawn_json_line(c);
    (p, v["listening"].as_str().unwrap().to_string())
}

fn work(dir: &Path, addr: &str, mode: &str) -> Proc {
    let mut c = ackline();
    c.env_remove("ACKLINE_CONFIG")
        .arg("--data-dir")
        .arg(dir)
        .args([
            "work",
            "--queue",
            &format!("http://{addr}/logs"),
            "--token",
            ADMIN,
        ])
        .args([
            "--format",
            "json",
            mode,
            "--batch-size",
            "20",
            "--lease",
            "5s",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    Proc(c.spawn().unwrap())
}

fn stored(db: &Path, id: &str) -> i64 {
    let Ok(conn) = rusqlite::Connection::open(db) else {
        return 0;
    };
    conn.query_row(
        "SELECT COUNT(*) FROM ackline_records WHERE id = ?1",
        [id],
        |r| r.get(0),
    )
    .unwrap_or(0)
}

fn dead_letters(addr: &str) -> Vec<Value> {
    let (st, body) = admin_http(addr, "GET", "/v1/queues/logs/dlq", b"");
    assert_eq!(st, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["entries"]
        .as_array()
        .unwrap()
        .clone()
}

/// Publishes one message with this id and payload (base64, so any bytes).
fn publish(addr: &str, id: &str, payload: &[u8]) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(payload);
    let body = json!({ "messages": [{ "id": id, "payload": b64, "encoding": "base64" }] });
    let (st, resp) = admin_http(
        addr,
        "POST",
        "/v1/queues/logs/messages",
        body.to_string().as_bytes(),
    );
    assert_eq!(st, 200, "{resp}");
}

/// A producer posting a JSON line every 50 ms until dropped.
struct Producer(Arc<AtomicBool>, Option<std::thread::JoinHandle<()>>);

impl Producer {
    fn start(addr: &str) -> Producer {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, addr) = (stop.clone(), addr.to_string());
        let h = std::thread::spawn(move || {
            let mut i = 0;
            while !s.load(Ordering::Relaxed) {
                let line = format!("{{\"msg\":\"tick {i}\",\"level\":\"info\"}}\n");
                let _ = crate::common::http(
                    &addr,
                    Some(ADMIN),
                    "POST",
                    "/v1/logs",
                    "text/plain",
                    line.as_bytes(),
                );
                i += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Producer(stop, Some(h))
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        if let Some(h) = self.1.take() {
            let _ = h.join();
        }
    }
}

/// Polls `cond` (a browser query) every 50 ms until it holds or `limit` passes.
async fn until<F, Fut>(limit: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Finds the element at `at` and clicks it.
async fn click(c: &Client, at: Locator<'_>) {
    c.find(at).await.unwrap().click().await.unwrap();
}

/// Waits (at most 60 s) until the element at `at` is displayed.
async fn until_displayed(c: &Client, at: Locator<'_>, what: &str) {
    until(Duration::from_secs(60), what, || async {
        match c.find(at).await {
            Ok(e) => e.is_displayed().await.unwrap_or(false),
            Err(_) => false,
        }
    })
    .await;
}

async fn text(c: &Client, css: &str) -> String {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

fn number(s: &str) -> Option<u64> {
    s.replace([',', '\u{a0}', ' '], "").parse().ok()
}

async fn login(c: &Client, base: &str, token: &str) {
    c.goto(&format!("{base}/ui/")).await.unwrap();
    let input = c
        .wait()
        .at_most(Duration::from_secs(60))
        .for_element(Locator::Id("token"))
        .await
        .unwrap();
    until(Duration::from_secs(60), "the login form", || async {
        input.is_displayed().await.unwrap_or(false)
    })
    .await;
    input.send_keys(token).await.unwrap();
    click(c, Locator::Css("#login-form button[type=submit]")).await;
    until_displayed(c, Locator::Id("nav"), "signed in").await;
}

async fn logout(c: &Client) {
    click(c, Locator::Id("logout")).await;
    until_displayed(c, Locator::Id("login"), "the login form again").await;
}

/// Where screenshots go: `docs/console/` with `ACKLINE_SCREENSHOTS=1`, else a temporary dir.
fn shots_dir(tmp: &Path) -> PathBuf {
    if std::env::var("ACKLINE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/console")
    } else {
        tmp.join("shots")
    }
}

async fn shoot(c: &Client, dir: &Path, name: &str, theme: &str, (w, h): (u32, u32), at: &str) {
    c.set_window_size(w, h).await.unwrap();
    c.execute(
        "document.documentElement.dataset.theme = arguments[0];
         document.querySelector(arguments[1]).scrollIntoView();
         return true;",
        vec![json!(theme), json!(at)],
    )
    .await
    .unwrap();
    // Let one poll redraw the charts at the new size and colours.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join(format!(
            "{name}-{theme}-{}.png",
            if w >= 1000 { "wide" } else { "narrow" }
        )),
        png,
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_browser() {
    let Some((driver, browser_path)) = browser_tools() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_serve, addr) = serve(dir.path());
    let base = format!("http://{addr}");
    let db = dir.path().join("records.db");
    let mut strict = Some(work(dir.path(), &addr, "--strict"));

    // Two lines the strict JSON worker dead-letters: the hostile one, and one to purge.
    publish(&addr, HOSTILE_ID, HOSTILE);
    publish(&addr, "to-purge", b"not json either");
    wait_for(Duration::from_secs(60), "two dead letters", || {
        dead_letters(&addr).len() == 2
    });
    let entries = dead_letters(&addr);
    let key_of = |id: &str| {
        entries.iter().find(|e| e["id"] == id).unwrap()["key"]
            .as_u64()
            .unwrap()
    };
    let (hostile_key, purge_key) = (key_of(HOSTILE_ID), key_of("to-purge"));

    let (_driver, c) = browser(&driver, browser_path).await;

    // A viewer: no replay button, and the server refuses the replay the page could send.
    login(&c, &base, READ).await;
    assert!(text(&c, "#who").await.contains("viewer"));
    c.goto(&format!("{base}/ui/#dlq")).await.unwrap();
    until(Duration::from_secs(60), "the dead-letter list", || async {
        text(&c, "#dlq-table tbody").await.contains(HOSTILE_ID)
    })
    .await;
    for id in [
        "replay-filter",
        "replay-selected",
        "purge-filter",
        "d-replay",
    ] {
        let b = c.find(Locator::Id(id)).await.unwrap();
        assert!(!b.is_displayed().await.unwrap(), "{id} shown to a viewer");
        assert!(!b.is_enabled().await.unwrap(), "{id} enabled for a viewer");
    }
    let forced = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch('/ui/api/session').then(r => r.json()).then(s =>
               fetch('/ui/api/queues/logs/dlq/replay', { method: 'POST',
                 headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': s.csrf },
                 body: JSON.stringify({ keys: [arguments[0]] }) }))
             .then(r => done(r.status), e => done(String(e)));",
            vec![json!(hostile_key)],
        )
        .await
        .unwrap();
    assert_eq!(forced, json!(403), "the server refuses a viewer's replay");
    assert_eq!(dead_letters(&addr).len(), 2);
    logout(&c).await;

    // An admin: the numbers move while a producer posts.
    login(&c, &base, ADMIN).await;
    until(Duration::from_secs(60), "the books", || async {
        number(&text(&c, "#book-published").await).is_some()
    })
    .await;
    let before = number(&text(&c, "#book-published").await).unwrap();
    let producer = Producer::start(&addr);
    until(
        Duration::from_secs(30),
        "published to grow by 10",
        || async { number(&text(&c, "#book-published").await).is_some_and(|n| n >= before + 10) },
    )
    .await;
    // The screenshots want some history on the charts: about 8 s of traffic.
    until(
        Duration::from_secs(60),
        "published to grow by 150",
        || async { number(&text(&c, "#book-published").await).is_some_and(|n| n >= before + 150) },
    )
    .await;
    until(
        Duration::from_secs(30),
        "a publish rate above 0",
        || async {
            let t = text(&c, "#chart-rates [data-series=published] b").await;
            t.parse::<f64>().is_ok_and(|r| r > 0.0)
        },
    )
    .await;
    until(
        Duration::from_secs(30),
        "the worker's lines stored",
        || async { number(&text(&c, "#book-stored").await).is_some_and(|n| n >= 10) },
    )
    .await;
    assert!(
        text(&c, "#book-check").await.contains("balanced"),
        "{}",
        text(&c, "#books").await
    );
    let shots = shots_dir(dir.path());
    for (theme, size) in [
        ("light", (1280, 900)),
        ("dark", (1280, 900)),
        ("light", (390, 844)),
        ("dark", (390, 844)),
    ] {
        shoot(&c, &shots, "overview", theme, size, "body").await;
    }
    drop(producer);
    c.set_window_size(1280, 900).await.unwrap();

    // The hostile dead letter, escaped; nothing of it runs.
    c.goto(&format!("{base}/ui/#dlq/logs/{hostile_key}"))
        .await
        .unwrap();
    until(Duration::from_secs(60), "the hostile entry", || async {
        text(&c, "#d-id").await == HOSTILE_ID
    })
    .await;
    let hex = text(&c, "#d-payload").await;
    assert!(
        hex.starts_with("00000000  3c 73 63 72 69 70 74 3e"),
        "binary opens in hex: {hex}"
    );
    click(&c, Locator::Css(".tabs button[data-view=text]")).await;
    let shown = text(&c, "#d-payload").await;
    assert!(
        shown.contains("<script>window.__pwned=1</script><img src=x onerror=\"window.__pwned=2\">\\x00\\xff\\xfe end"),
        "{shown}"
    );
    let dom = c
        .execute(
            "return { pwned: window.__pwned === undefined ? null : window.__pwned,
                      scripts: document.scripts.length,
                      imgs: document.querySelectorAll('#dlq-detail img, #dlq-table img').length };",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        dom,
        json!({ "pwned": null, "scripts": 1, "imgs": 0 }),
        "nothing of the payload became markup or ran"
    );
    for theme in ["light", "dark"] {
        shoot(&c, &shots, "dead-letter", theme, (1280, 900), "#dlq-detail").await;
    }
    c.set_window_size(1280, 900).await.unwrap();

    // Make the worker lenient, replay the hostile one: stored exactly once.
    drop(strict.take());
    let _lenient = work(dir.path(), &addr, "--lenient");
    click(&c, Locator::Id("d-replay")).await;
    until(Duration::from_secs(60), "the replay's result", || async {
        text(&c, "#dlq-result").await.contains("replayed 1 of 1")
    })
    .await;
    wait_for(Duration::from_secs(60), "the replayed line stored", || {
        stored(&db, HOSTILE_ID) >= 1
    });
    wait_for(Duration::from_secs(60), "nothing pending", || {
        let (_, b) = admin_http(&addr, "GET", "/v1/queues/logs/stats", b"");
        serde_json::from_str::<Value>(&b).is_ok_and(|v| v["pending"] == 0)
    });
    assert_eq!(
        stored(&db, HOSTILE_ID),
        1,
        "the replayed line is in the store once"
    );
    let left: Vec<u64> = dead_letters(&addr)
        .iter()
        .map(|e| e["key"].as_u64().unwrap())
        .collect();
    assert_eq!(left, vec![purge_key]);

    // Purge: cancelled first (nothing purged), then confirmed.
    c.goto(&format!("{base}/ui/#dlq")).await.unwrap();
    until(Duration::from_secs(60), "the remaining entry", || async {
        text(&c, "#dlq-table tbody").await.contains("to-purge")
    })
    .await;
    let pick = format!("#dlq-table tr[data-key='{purge_key}'] input");
    click(&c, Locator::Css(&pick)).await;
    click(&c, Locator::Id("purge-selected")).await;
    let cancel = c
        .wait()
        .at_most(Duration::from_secs(60))
        .for_element(Locator::Id("confirm-cancel"))
        .await
        .unwrap();
    until(Duration::from_secs(60), "the confirmation", || async {
        cancel.is_displayed().await.unwrap_or(false)
    })
    .await;
    cancel.click().await.unwrap();
    until(Duration::from_secs(60), "the cancel", || async {
        text(&c, "#dlq-result").await.contains("cancelled")
    })
    .await;
    assert_eq!(
        dead_letters(&addr).len(),
        1,
        "a cancelled purge purges nothing"
    );
    click(&c, Locator::Id("purge-selected")).await;
    let ok = c.find(Locator::Id("confirm-ok")).await.unwrap();
    until(Duration::from_secs(60), "the confirmation", || async {
        ok.is_displayed().await.unwrap_or(false)
    })
    .await;
    ok.click().await.unwrap();
    until(Duration::from_secs(60), "the purge's result", || async {
        text(&c, "#dlq-result").await.contains("purged 1")
    })
    .await;
    assert!(dead_letters(&addr).is_empty());
    assert_eq!(stored(&db, "to-purge"), 0);
    c.close().await.unwrap();
}

/// One request to the console; returns (status, headers in lower case, body).
fn console_req(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, Value) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (
        status,
        head.to_ascii_lowercase(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

/// `ackline run --listen`: the console of the all-in-one pipeline, with its store's state,
/// the worker runtime's latencies, its dead letters and a records search.
#[test]
fn run_listen_serves_the_console_of_the_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("in.log");
    std::fs::write(&log, "{\"msg\":\"hello console\",\"level\":\"error\",\"host\":\"h1\"}\nnot json\n{\"msg\":\"second\",\"level\":\"info\"}\n").unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut c = ackline();
    c.env_remove("ACKLINE_CONFIG")
        .env_remove("ACKLINE_TOKENS")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["run", "--format", "json", "--strict", "--listen", &addr])
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let _run = Proc(c.spawn().unwrap());
    wait_for(Duration::from_secs(60), "the console", || {
        std::net::TcpStream::connect(&addr).is_ok()
    });
    // No tokens (loopback): any text signs in as admin.
    let origin = format!("http://{addr}");
    let (st, head, v) = console_req(
        &addr,
        "POST",
        "/ui/api/login",
        &[("Origin", &origin)],
        "{\"token\":\"\"}",
    );
    assert_eq!((st, v["role"].as_str()), (200, Some("admin")), "{v}");
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_string();
    let get = |path: &str| console_req(&addr, "GET", path, &[("Cookie", &cookie)], "").2;
    let mut o = Value::Null;
    wait_for(
        Duration::from_secs(60),
        "two stored and one dead letter",
        || {
            o = get("/ui/api/overview");
            o["books"]["stored"] == 2 && o["books"]["dead_lettered"] == 1
        },
    );
    assert_eq!(o["mode"], "run");
    assert_eq!(
        (o["store"]["state"].as_str(), o["store"]["breaker"].as_str()),
        (Some("up"), Some("closed")),
        "{o}"
    );
    let names: Vec<&str> = o["latency"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["end_to_end", "store_batch"]);
    assert_eq!(o["books"]["published"], 3);
    let dlq = get("/ui/api/queues/logs/dlq");
    assert_eq!(dlq["entries"][0]["payload_preview"], "not json");
    let rec = get("/ui/api/records?text=hello&severity=err");
    let rows = rec["records"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rec}");
    assert_eq!(
        (rows[0]["message"].as_str(), rows[0]["host"].as_str()),
        (Some("hello console"), Some("h1"))
    );
    assert!(get("/ui/api/records?severity=bogus").is_object());
    let (st, _, _) = console_req(
        &addr,
        "GET",
        "/ui/api/records?severity=bogus",
        &[("Cookie", &cookie)],
        "",
    );
    assert_eq!(st, 400);
}

/// `console.listen` beyond loopback needs tokens, as `serve` does.
#[test]
fn run_listen_beyond_loopback_needs_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ackline();
    c.env_remove("ACKLINE_CONFIG")
        .env_remove("ACKLINE_TOKENS")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["run", "--once", "--listen", "0.0.0.0:0", "-"]);
    let out = crate::common::run_with_deadline(c, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--listen") && err.contains("loopback"),
        "{err}"
    );
}

/// Starts chromedriver and a headless Chromium session; the driver is killed on drop.
async fn browser(driver: &Path, browser: Option<PathBuf>) -> (Proc, Client) {
    let port = free_port();
    let p = Proc(
        Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(Duration::from_secs(30), "chromedriver", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let mut opts = json!({ "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"] });
    if let Some(b) = browser {
        opts["binary"] = json!(b);
    }
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), opts);
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .unwrap();
    (p, c)
}

/// 10,000 dead letters: the dead-letter page still shows its first 50 with the total, and a
/// filter that matches nothing scans them all and says there is no more. The times are
/// printed (the figures of docs/BENCHMARKS.md), never asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_with_10000_dead_letters() {
    let Some((driver, chromium)) = browser_tools() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_serve, addr) = serve(dir.path());
    let base = format!("http://{addr}");
    let _strict = work(dir.path(), &addr, "--strict");
    for batch in 0..10 {
        let msgs: Vec<Value> = (0..1000)
            .map(|i| json!({ "id": format!("bad-{batch}-{i}"), "payload": format!("not json {batch} {i} <b>") }))
            .collect();
        let (st, resp) = admin_http(
            &addr,
            "POST",
            "/v1/queues/logs/messages",
            json!({ "messages": msgs }).to_string().as_bytes(),
        );
        assert_eq!(st, 200, "{resp}");
    }
    wait_for(Duration::from_secs(120), "10,000 dead letters", || {
        let (_, b) = admin_http(&addr, "GET", "/v1/queues/logs/stats", b"");
        serde_json::from_str::<Value>(&b).is_ok_and(|v| v["dead_letters"] == 10_000)
    });

    let (_driver, c) = browser(&driver, chromium).await;
    login(&c, &base, READ).await;
    // A fresh load of the page (not a same-document hash change); the session cookie stays.
    c.goto("about:blank").await.unwrap();
    let t0 = Instant::now();
    c.goto(&format!("{base}/ui/#dlq")).await.unwrap();
    until(Duration::from_secs(30), "the first page", || async {
        text(&c, "#dlq-count").await.contains("10,000")
    })
    .await;
    let usable = t0.elapsed();
    let rows = c
        .find_all(Locator::Css("#dlq-table tbody tr"))
        .await
        .unwrap()
        .len();
    assert_eq!(rows, 50);
    let nav = c
        .execute("const n = performance.getEntriesByType('navigation')[0]; return [n.domContentLoadedEventEnd, n.loadEventEnd];", vec![])
        .await
        .unwrap();

    // The API behind it: the first page, a page in the middle, a filter that matches nothing.
    let (st, head, _) = console_req(
        &addr,
        "POST",
        "/ui/api/login",
        &[("Origin", &base)],
        &json!({ "token": READ }).to_string(),
    );
    assert_eq!(st, 200);
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_string();
    let timed = |path: &str| {
        let t = Instant::now();
        let (st, _, v) = console_req(&addr, "GET", path, &[("Cookie", &cookie)], "");
        assert_eq!(st, 200, "{path}");
        (t.elapsed(), v)
    };
    let (first, v) = timed("/ui/api/queues/logs/dlq?limit=50");
    assert_eq!(v["entries"].as_array().unwrap().len(), 50);
    let (middle, v) = timed("/ui/api/queues/logs/dlq?limit=50&after=5000");
    assert_eq!(v["entries"][0]["key"].as_u64(), Some(5001));
    let (scan, v) = timed("/ui/api/queues/logs/dlq?limit=50&error=no-such-error");
    assert!(v["entries"].as_array().unwrap().is_empty() && v["next_after"].is_null());
    println!(
        "console with 10,000 dead letters: dead-letter page usable {:.0} ms after navigation \
         (DOMContentLoaded {:.0} ms, load {:.0} ms); API: first page {:.1} ms, page after 5000 \
         {:.1} ms, filter scanning all 10,000 {:.1} ms",
        usable.as_secs_f64() * 1e3,
        nav[0].as_f64().unwrap_or(f64::NAN),
        nav[1].as_f64().unwrap_or(f64::NAN),
        first.as_secs_f64() * 1e3,
        middle.as_secs_f64() * 1e3,
        scan.as_secs_f64() * 1e3,
    );
    c.close().await.unwrap();
}

/// `run --listen` against PostgreSQL behind the worker tests' proxy: when the store goes
/// silent under a write, the overview shows the outage (with its duration and error) and the
/// open circuit breaker; once it is back, `up` and every line stored. Needs PostgreSQL
/// (skipped with a printed reason outside CI).
#[test]
fn run_listen_shows_a_store_outage_and_its_end() {
    use std::io::Write;
    if !crate::common::reachable(
        "PostgreSQL",
        "127.0.0.1:5432",
        ".ci/run (it starts PostgreSQL)",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let table = crate::common::unique("console_outage");
    let pg = crate::common::Pg::connect(&table);
    let proxy = crate::proxy::Proxy::start("127.0.0.1:5432".parse().unwrap());
    let url = crate::common::pg_url().replace("127.0.0.1:5432", &proxy.addr().to_string());
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut c = ackline();
    c.env_remove("ACKLINE_CONFIG")
        .env_remove("ACKLINE_TOKENS")
        .env("ACKLINE_STORE_TABLE", &table)
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "run",
            "-",
            "--store",
            &url,
            "--listen",
            &addr,
            "--lease",
            "1s",
            "--batch-size",
            "10",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let _run = Proc(child);
    wait_for(Duration::from_secs(60), "the console", || {
        std::net::TcpStream::connect(&addr).is_ok()
    });
    let origin = format!("http://{addr}");
    let (_, head, _) = console_req(
        &addr,
        "POST",
        "/ui/api/login",
        &[("Origin", &origin)],
        "{\"token\":\"x\"}",
    );
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_string();
    let store = || {
        console_req(&addr, "GET", "/ui/api/overview", &[("Cookie", &cookie)], "").2["store"].clone()
    };
    let o = store();
    assert_eq!(
        (o["state"].as_str(), o["breaker"].as_str()),
        (Some("up"), Some("closed")),
        "{o}"
    );

    proxy.black_hole();
    let lines: String = (0..20)
        .map(|i| format!("{{\"msg\":\"line {i}\"}}\n"))
        .collect();
    stdin.write_all(lines.as_bytes()).unwrap();
    stdin.flush().unwrap();
    let mut seen = Value::Null;
    wait_for(
        Duration::from_secs(90),
        "the outage on the overview",
        || {
            seen = store();
            seen["state"] == "outage" && seen["breaker"] == "open"
        },
    );
    println!("store during the outage: {seen}");
    assert!(seen["outage_ms"].as_u64().is_some(), "{seen}");
    assert!(
        seen["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{seen}"
    );

    proxy.restore();
    wait_for(
        Duration::from_secs(120),
        "the store back and every line stored",
        || {
            let s = store();
            s["state"] == "up" && s["breaker"] == "closed" && pg.counts() == (20, 20)
        },
    );
}
