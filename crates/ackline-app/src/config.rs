//! The validated configuration of the pipeline, built once from layered sources.
//!
//! Raw flags ([`crate::cli::PipelineFlags`]) stay in the CLI layer; this module turns them,
//! the environment and the TOML file into one [`Config`], checked key by key. Precedence:
//! flags > environment (`ACKLINE_<SECTION>_<KEY>`) > file (`--config`, or
//! `<data-dir>/ackline.toml` when present) > defaults. Every key is listed in [`KEYS`] and
//! documented in `docs/config.md`.
//!
//! Invariants:
//! - A [`Config`] is only ever built by [`load`], which checks every key: code that holds one
//!   never re-validates.
//! - Every error is one line naming the key, the value, its source (file with line and
//!   column, environment variable or flag) and what was expected; it is a usage error (exit 2).
//! - Unknown keys in the file are errors (a typo must not silently fall back to a default);
//!   unknown `ACKLINE_*` variables are ignored (the environment is shared with other tools).

mod file;
mod source;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ackline_input::StartAt;
use ackline_parse::{FormatChoice, ParserConfig};
use ackline_queue::{Fsync, QueueOptions};
use ackline_server::{Scope, Token};
use ackline_store::{StoreOptions, StoreUrl};
use ackline_worker::{RetryPolicy, WorkerConfig};
use anyhow::Context;

use crate::cli::PipelineFlags;
use crate::exit::usage;
pub use source::{Given, RawValue, Source};

/// The default queue of the pipeline.
pub const DEFAULT_QUEUE: &str = "logs";
/// The config file looked for in the data directory.
pub const DEFAULT_FILE: &str = "ackline.toml";

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// `section.key`, as in the file.
    pub name: &'static str,
    /// What a valid value is (quoted in errors).
    pub expected: &'static str,
    /// The environment variable when it is not derived from the name (`server.*`).
    pub env_name: Option<&'static str>,
    /// The value is a secret: errors never quote it.
    pub secret: bool,
}

impl Key {
    /// `ACKLINE_SECTION_KEY`, or the key's own variable name.
    pub fn env(&self) -> String {
        match self.env_name {
            Some(v) => v.to_string(),
            None => format!(
                "ACKLINE_{}",
                self.name.replace('.', "_").to_ascii_uppercase()
            ),
        }
    }
}

const fn key(name: &'static str, expected: &'static str) -> Key {
    Key {
        name,
        expected,
        env_name: None,
        secret: false,
    }
}

/// Every key, in documentation order.
pub const KEYS: &[Key] = &[
    key(
        "input.paths",
        "a list of file paths or valid glob patterns (comma-separated in the environment)",
    ),
    key("input.stdin", "true or false"),
    key(
        "input.format",
        "auto or a format name (json, logfmt, rfc5424, rfc3164, access_common, access_combined, apache_error, log4j, ...)",
    ),
    key("input.strict", "true or false"),
    key("input.start_at", "beginning or end"),
    key(
        "input.poll_interval",
        "a duration from 1ms to 1h, like 250ms or 1s",
    ),
    key("queue.name", "1 to 128 of A-Z a-z 0-9 . _ -"),
    key(
        "queue.fsync",
        "always, never, or a duration like 10ms (fsync at that interval)",
    ),
    key("worker.workers", "an integer from 1 to 256"),
    key("worker.batch_size", "an integer from 1 to 100000"),
    key(
        "worker.prefetch",
        "an integer from 1 to 1000000, at least worker.batch_size",
    ),
    key("worker.lease", "a duration from 100ms to 24h, like 30s"),
    key("worker.shutdown_deadline", "a duration up to 1h, like 10s"),
    key("worker.max_outage", "a duration from 100ms to 24h, like 5m"),
    key("retry.base", "a duration from 1ms to 1h, like 500ms"),
    key("retry.factor", "a number from 1 to 100"),
    key(
        "retry.cap",
        "a duration up to 24h and at least retry.base, like 5m",
    ),
    key("retry.max_attempts", "an integer from 1 to 1000"),
    key("store.url", ackline_store::URL_FORMS),
    Key {
        name: "broker.url",
        expected: "http://HOST:PORT[/QUEUE] (an ackline serve) or amqp://USER:PASS@HOST:PORT/VHOST (or amqps://)",
        env_name: None,
        secret: true,
    },
    key(
        "metrics.listen",
        "an IP address and port, like 127.0.0.1:9464 (port 0 picks a free one)",
    ),
    key(
        "broker.tls_ca_file",
        "a readable PEM file of CA certificates trusted for amqps beside the system's roots",
    ),
    key(
        "store.table",
        "letters, digits and _, starting with a letter or _, at most 48 bytes",
    ),
    key(
        "store.operation_timeout",
        "a duration from 10ms to 1h, shorter than worker.lease, like 10s",
    ),
    Key {
        name: "server.listen",
        expected: "an IP address and port, like 127.0.0.1:8470 (port 0 picks a free one)",
        env_name: Some("ACKLINE_LISTEN"),
        secret: false,
    },
    Key {
        name: "server.tokens",
        expected: "a list of SECRET:SCOPES, each secret at least 16 characters without whitespace, scopes a comma-separated subset of ingest, worker, admin (';' or whitespace between tokens in the environment)",
        env_name: Some("ACKLINE_TOKENS"),
        secret: true,
    },
    Key {
        name: "server.syslog_tcp",
        expected: "an IP address and port for syslog over TCP, like 127.0.0.1:5514",
        env_name: Some("ACKLINE_SYSLOG_TCP"),
        secret: false,
    },
    Key {
        name: "server.syslog_udp",
        expected: "an IP address and port for syslog over UDP, like 127.0.0.1:5514",
        env_name: Some("ACKLINE_SYSLOG_UDP"),
        secret: false,
    },
    key(
        "server.token_file",
        "a readable file of at most 1 MiB with one SECRET:SCOPES per line (blank lines and # comments skipped), each like server.tokens",
    ),
    key("server.max_connections", "an integer from 1 to 1000000"),
    key(
        "server.max_connections_per_client",
        "an integer from 1 to 1000000, at most server.max_connections",
    ),
    key(
        "server.header_read_timeout",
        "a duration from 100ms to 10m, like 10s",
    ),
    key("server.max_queues", "an integer from 1 to 10000"),
    key(
        "server.syslog_udp_recv_buffer",
        "a byte count from 0 to 1073741824 (0: the system default), like 4194304",
    ),
    key(
        "server.auto_create_queues",
        "a list of queue names (1 to 128 of A-Z a-z 0-9 . _ -; comma-separated in the environment)",
    ),
    key(
        "server.max_lines_per_request",
        "an integer from 1 to 10000000 (lines one POST /v1/logs may carry)",
    ),
    key(
        "server.max_sessions_per_token",
        "an integer from 1 to 100000 (lease sessions open at once per token)",
    ),
];

/// A configuration error (exit 2).
#[derive(Debug)]
pub struct ConfigError {
    key: &'static str,
    given: Given,
    expected: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid {} = {} ({}): expected {}",
            self.key, self.given.value, self.given.source, self.expected
        )
    }
}

impl std::error::Error for ConfigError {}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The data directory (queue, input positions, default store, default config file).
    pub data_dir: PathBuf,
    /// The config file read, if any.
    pub file: Option<PathBuf>,
    /// Files and glob patterns to follow.
    pub paths: Vec<String>,
    /// Read standard input too.
    pub stdin: bool,
    /// Format and strictness of the parser.
    pub parser: ParserConfig,
    /// Where files seen for the first time start.
    pub start_at: StartAt,
    /// How often files are checked for new lines.
    pub poll_interval: Duration,
    /// The queue's name.
    pub queue: String,
    /// The queue's options (fsync, max attempts).
    pub queue_options: QueueOptions,
    /// Workers, batches, leases, retries.
    pub worker: WorkerConfig,
    /// `run --once`: how long the store may stay unavailable before the run gives up
    /// (`worker.max_outage`; the runtime's own `worker.max_outage` stays `None` otherwise).
    pub max_outage: Duration,
    /// The store URL.
    pub store_url: String,
    /// Store options (table).
    pub store: StoreOptions,
    /// `ackline serve`: listen address and tokens.
    pub server: ServerSettings,
    /// `work`: where deliveries come from; `serve`: where ingested lines are relayed.
    pub broker: Option<BrokerUrl>,
    /// PEM certificates trusted for `amqps` beside the system's roots (read from
    /// `broker.tls_ca_file`).
    pub broker_tls_ca: Option<String>,
    /// `run` and `work`: where the worker metrics are served, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
}

/// A broker to work from or relay to (`broker.url`). Displayed without its password.
#[derive(Debug, Clone)]
pub enum BrokerUrl {
    /// An `ackline serve` (split mode): `http://HOST:PORT[/QUEUE]`.
    Http(String),
    /// RabbitMQ (scale-out).
    Amqp(ackline_rabbitmq::AmqpUrl),
}

impl BrokerUrl {
    /// Parses `http(s)://...` or `amqp(s)://...`.
    pub fn parse(s: &str) -> Option<BrokerUrl> {
        let s = s.trim();
        if s.starts_with("http://") || s.starts_with("https://") {
            return ackline_http::HttpBroker::connect(s, None)
                .ok()
                .map(|_| BrokerUrl::Http(s.to_string()));
        }
        ackline_rabbitmq::AmqpUrl::parse(s)
            .ok()
            .map(BrokerUrl::Amqp)
    }
}

impl std::fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BrokerUrl::Http(u) => f.write_str(&ackline_rabbitmq::redact_text(u)),
            BrokerUrl::Amqp(u) => write!(f, "{u}"),
        }
    }
}

/// The settings of `ackline serve` (the `[server]` section).
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Listen address.
    pub listen: SocketAddr,
    /// Bearer tokens; empty only when `listen` is loopback.
    pub tokens: Vec<Token>,
    /// Syslog over TCP, when enabled.
    pub syslog_tcp: Option<SocketAddr>,
    /// Syslog over UDP, when enabled.
    pub syslog_udp: Option<SocketAddr>,
    /// Concurrent connections per listener (HTTP; syslog TCP has its own table).
    pub max_connections: usize,
    /// Concurrent connections from one IP address.
    pub max_connections_per_client: usize,
    /// Time to send a request's headers; also the keep-alive idle timeout.
    pub header_read_timeout: Duration,
    /// Most queues in the data directory.
    pub max_queues: usize,
    /// `SO_RCVBUF` asked for the syslog UDP socket (0: the system default).
    pub syslog_udp_recv_buffer: usize,
    /// Queues a request may create without the admin scope.
    pub auto_create_queues: Vec<String>,
    /// Most lines one `POST /v1/logs` may carry (413 beyond).
    pub max_lines_per_request: usize,
    /// Most lease sessions open at once per token (429 beyond).
    pub max_sessions_per_token: usize,
}

impl Config {
    /// The store URL as messages may show it (any password replaced by `***`).
    pub fn store_display(&self) -> String {
        ackline_rabbitmq::redact_text(&self.store_url)
    }

    /// Opens the configured store, creating a SQLite file's directory first.
    pub async fn open_store(&self) -> anyhow::Result<ackline_store::AnyStore> {
        if let Some(parent) = self.sqlite_path().as_deref().and_then(Path::parent)
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        ackline_store::open(&self.store_url, &self.store)
            .await
            .with_context(|| format!("opening store {}", self.store_display()))
    }

    /// Whether the store is the SQLite file at `path`.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        match StoreUrl::parse(&self.store_url) {
            Ok(StoreUrl::Sqlite(p)) => Some(p),
            _ => None,
        }
    }
}

/// The layers, highest first when looked up.
#[derive(Debug, Default)]
struct Layers {
    flags: BTreeMap<&'static str, Given>,
    env: BTreeMap<&'static str, Given>,
    file: BTreeMap<&'static str, Given>,
}

impl Layers {
    fn get(&self, key: &str) -> Option<&Given> {
        self.flags
            .get(key)
            .or_else(|| self.env.get(key))
            .or_else(|| self.file.get(key))
    }
}

fn find_key(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

fn flag_layer(f: &PipelineFlags) -> BTreeMap<&'static str, Given> {
    let mut m = BTreeMap::new();
    let mut put = |key: &'static str, flag: &str, v: Option<RawValue>| {
        if let Some(value) = v {
            m.insert(
                key,
                Given {
                    value,
                    source: Source::Flag(flag.to_string()),
                },
            );
        }
    };
    let text = |s: &Option<String>| s.clone().map(RawValue::Text);
    let files: Vec<RawValue> = f
        .inputs
        .iter()
        .filter(|p| p.as_str() != "-")
        .map(|p| RawValue::Text(p.clone()))
        .collect();
    if !files.is_empty() {
        put("input.paths", "INPUT...", Some(RawValue::List(files)));
    }
    if f.inputs.iter().any(|p| p == "-") {
        put("input.stdin", "-", Some(RawValue::Bool(true)));
    }
    let w = &f.worker;
    put("input.format", "--format", text(&w.format));
    if w.strict {
        put("input.strict", "--strict", Some(RawValue::Bool(true)));
    }
    if w.lenient {
        put("input.strict", "--lenient", Some(RawValue::Bool(false)));
    }
    put("input.start_at", "--start-at", text(&f.start_at));
    put(
        "input.poll_interval",
        "--poll-interval",
        text(&f.poll_interval),
    );
    put("queue.name", "--queue", text(&f.queue));
    put("worker.workers", "--workers", text(&w.workers));
    put("worker.batch_size", "--batch-size", text(&w.batch_size));
    put("worker.prefetch", "--prefetch", text(&w.prefetch));
    put("worker.lease", "--lease", text(&w.lease));
    put("worker.max_outage", "--max-outage", text(&f.max_outage));
    put(
        "worker.shutdown_deadline",
        "--shutdown-deadline",
        text(&w.shutdown_deadline),
    );
    put("retry.base", "--retry-base", text(&w.retry_base));
    put("retry.factor", "--retry-factor", text(&w.retry_factor));
    put("retry.cap", "--retry-cap", text(&w.retry_cap));
    put(
        "retry.max_attempts",
        "--max-attempts",
        text(&w.max_attempts),
    );
    put("store.url", "--store", text(&w.store));
    put(
        "metrics.listen",
        "--metrics-listen",
        text(&w.metrics_listen),
    );
    put("broker.url", "--broker", text(&f.broker));
    put("broker.tls_ca_file", "--broker-ca", text(&f.broker_ca));
    let sv = &f.server;
    put("server.listen", "--listen", text(&sv.listen));
    if !sv.tokens.is_empty() {
        let items = sv.tokens.iter().cloned().map(RawValue::Text).collect();
        put("server.tokens", "--token", Some(RawValue::List(items)));
    }
    put("server.token_file", "--token-file", text(&sv.token_file));
    put("server.syslog_tcp", "--syslog-tcp", text(&sv.syslog_tcp));
    put("server.syslog_udp", "--syslog-udp", text(&sv.syslog_udp));
    m
}

fn env_layer(env: &HashMap<String, String>) -> BTreeMap<&'static str, Given> {
    let mut m = BTreeMap::new();
    for k in KEYS {
        let var = k.env();
        if let Some(v) = env.get(&var) {
            m.insert(
                k.name,
                Given {
                    value: RawValue::Text(v.clone()),
                    source: Source::Env(var),
                },
            );
        }
    }
    m
}

/// The largest configuration file read (`--config /dev/zero` must not read forever).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The configuration file's text: at most [`MAX_CONFIG_BYTES`], UTF-8.
fn read_config_file(path: &Path) -> anyhow::Result<String> {
    use std::io::Read;
    let cannot = |e: &dyn std::fmt::Display| {
        usage(format!("cannot read config file {}: {e}", path.display()))
    };
    let f = std::fs::File::open(path).map_err(|e| cannot(&e))?;
    let mut bytes = Vec::new();
    f.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| cannot(&e))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(cannot(&format_args!(
            "larger than {} KiB, not a configuration file",
            MAX_CONFIG_BYTES >> 10
        )));
    }
    String::from_utf8(bytes).map_err(|_| cannot(&"not UTF-8 text"))
}

fn file_layer(path: &Path) -> anyhow::Result<BTreeMap<&'static str, Given>> {
    let text = read_config_file(path)?;
    let entries = file::parse(path, &text).map_err(usage)?;
    let mut m = BTreeMap::new();
    for (name, e) in entries {
        let Some(k) = find_key(&name) else {
            let known: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
            return Err(usage(format!(
                "unknown key {name} ({}): expected one of {}",
                e.key_at,
                known.join(", ")
            )));
        };
        m.insert(k.name, e.given);
    }
    Ok(m)
}

/// What [`load`] reads besides the flags.
#[derive(Debug, Clone)]
pub struct Env {
    /// The environment variables.
    pub vars: HashMap<String, String>,
}

impl Env {
    /// The process's environment (variables that are not UTF-8 are skipped).
    pub fn process() -> Self {
        Env {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    /// No variables at all (for configurations built by the demo).
    pub fn empty() -> Self {
        Env {
            vars: HashMap::new(),
        }
    }
}

/// Builds and checks the configuration. `config_file` is the `--config` flag (or
/// `ACKLINE_CONFIG`): it must exist; without it `<data_dir>/ackline.toml` is read if present.
pub fn load(
    data_dir: &Path,
    config_file: Option<&Path>,
    flags: &PipelineFlags,
    env: &Env,
) -> anyhow::Result<Config> {
    let file = match config_file {
        Some(p) => Some(p.to_path_buf()),
        None => {
            let p = data_dir.join(DEFAULT_FILE);
            p.is_file().then_some(p)
        }
    };
    let layers = Layers {
        flags: flag_layer(flags),
        env: env_layer(&env.vars),
        file: match &file {
            Some(p) => file_layer(p)?,
            None => BTreeMap::new(),
        },
    };
    build(data_dir, file, &layers).map_err(|e| usage(e.to_string()))
}

/// Looks up `name` and checks it with `parse`, or returns `default`.
fn value<T>(
    layers: &Layers,
    name: &'static str,
    default: T,
    parse: impl FnOnce(&RawValue) -> Option<T>,
) -> Result<T, ConfigError> {
    let Some(given) = layers.get(name) else {
        return Ok(default);
    };
    let k = find_key(name);
    let expected = k.map_or("a valid value", |k| k.expected);
    parse(&given.value).ok_or_else(|| ConfigError {
        key: name,
        given: redacted(k, given),
        expected: expected.to_string(),
    })
}

fn err(layers: &Layers, name: &'static str, expected: String) -> ConfigError {
    ConfigError {
        key: name,
        given: layers
            .get(name)
            .map(|g| redacted(find_key(name), g))
            .unwrap_or(Given {
                value: RawValue::Other("default"),
                source: Source::Flag("(default)".into()),
            }),
        expected,
    }
}

/// The value as errors may quote it: a secret key's value never appears.
fn redacted(k: Option<&Key>, given: &Given) -> Given {
    if k.is_some_and(|k| k.secret) {
        Given {
            value: RawValue::Other("redacted"),
            source: given.source.clone(),
        }
    } else {
        given.clone()
    }
}

/// Most bytes read from a secret file (a token file is a few lines; `/dev/zero` must not be
/// read without bound).
pub const MAX_SECRET_FILE: u64 = 1 << 20;

/// Reads a file of secrets (bounded by [`MAX_SECRET_FILE`]); errors name the file, never its
/// contents.
pub fn read_secret_file(path: &Path) -> anyhow::Result<String> {
    use std::io::Read;
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buf = Vec::new();
    f.take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("reading {}", path.display()))?;
    if buf.len() as u64 > MAX_SECRET_FILE {
        anyhow::bail!("{} is larger than {MAX_SECRET_FILE} bytes", path.display());
    }
    String::from_utf8(buf).map_err(|_| anyhow::anyhow!("{} is not UTF-8", path.display()))
}

/// One `SECRET:SCOPES` token (scopes comma-separated; the secret may contain `:`).
pub fn parse_token(s: &str) -> Option<Token> {
    let (secret, scopes) = s.trim().rsplit_once(':')?;
    if secret.chars().count() < 16 || secret.chars().any(char::is_whitespace) {
        return None;
    }
    let scopes: Vec<Scope> = scopes
        .split(',')
        .map(|x| Scope::parse(x.trim()))
        .collect::<Option<_>>()?;
    (!scopes.is_empty()).then(|| Token::new(secret, &scopes))
}

fn tokens(v: &RawValue) -> Option<Vec<Token>> {
    match v {
        RawValue::List(items) => items.iter().map(|x| parse_token(text(x)?)).collect(),
        RawValue::Text(s) => s
            .split(|c: char| c == ';' || c.is_whitespace())
            .filter(|t| !t.is_empty())
            .map(parse_token)
            .collect(),
        _ => None,
    }
}

fn text(v: &RawValue) -> Option<&str> {
    match v {
        RawValue::Text(s) => Some(s.trim()),
        _ => None,
    }
}

fn int(v: &RawValue, lo: i64, hi: i64) -> Option<i64> {
    let n = match v {
        RawValue::Int(i) => *i,
        RawValue::Text(s) => s.trim().replace('_', "").parse().ok()?,
        _ => return None,
    };
    (lo..=hi).contains(&n).then_some(n)
}

fn float(v: &RawValue, lo: f64, hi: f64) -> Option<f64> {
    let x = match v {
        RawValue::Int(i) => *i as f64,
        RawValue::Float(x) => *x,
        RawValue::Text(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    (x.is_finite() && x >= lo && x <= hi).then_some(x)
}

fn boolean(v: &RawValue) -> Option<bool> {
    match v {
        RawValue::Bool(b) => Some(*b),
        RawValue::Text(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Some(true),
            "false" | "0" | "no" | "off" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// `250ms`, `30s`, `5m`, `1h` (an integer and a unit).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let ms = match unit.trim() {
        "ms" => Some(n),
        "s" => n.checked_mul(1000),
        "m" | "min" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => None,
    }?;
    Some(Duration::from_millis(ms))
}

fn duration(v: &RawValue, lo: Duration, hi: Duration) -> Option<Duration> {
    let d = parse_duration(text(v)?)?;
    (d >= lo && d <= hi).then_some(d)
}

fn list(v: &RawValue) -> Option<Vec<String>> {
    match v {
        RawValue::List(items) => items
            .iter()
            .map(|x| text(x).filter(|s| !s.is_empty()).map(str::to_string))
            .collect(),
        RawValue::Text(s) => Some(
            s.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
        ),
        _ => None,
    }
}

fn table_ok(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 48
        && t.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn build(data_dir: &Path, file: Option<PathBuf>, l: &Layers) -> Result<Config, ConfigError> {
    const MS: Duration = Duration::from_millis(1);
    const HOUR: Duration = Duration::from_secs(3600);
    let paths = value(l, "input.paths", Vec::new(), |v| {
        list(v).filter(|ps| {
            ps.iter()
                .all(|p| ackline_input::check_path_pattern(p).is_ok())
        })
    })?;
    let stdin = value(l, "input.stdin", false, boolean)?;
    let format = value(l, "input.format", FormatChoice::Auto, |v| {
        text(v)?.parse().ok()
    })?;
    let strict = value(l, "input.strict", false, boolean)?;
    let start_at = value(l, "input.start_at", StartAt::Beginning, |v| {
        match text(v)?.to_ascii_lowercase().as_str() {
            "beginning" => Some(StartAt::Beginning),
            "end" => Some(StartAt::End),
            _ => None,
        }
    })?;
    let poll_interval = value(l, "input.poll_interval", Duration::from_millis(250), |v| {
        duration(v, MS, HOUR)
    })?;
    let queue = value(l, "queue.name", DEFAULT_QUEUE.to_string(), |v| {
        let s = text(v)?;
        ackline_queue::valid_queue_name(s).then(|| s.to_string())
    })?;
    let fsync = value(l, "queue.fsync", Fsync::Always, |v| {
        match text(v)?.to_ascii_lowercase().as_str() {
            "always" => Some(Fsync::Always),
            "never" => Some(Fsync::Never),
            other => duration(&RawValue::Text(other.into()), MS, HOUR).map(Fsync::Interval),
        }
    })?;
    let d = WorkerConfig::default();
    let workers = value(l, "worker.workers", d.workers, |v| {
        int(v, 1, 256).map(|n| n as usize)
    })?;
    let batch_size = value(l, "worker.batch_size", d.batch_size, |v| {
        int(v, 1, 100_000).map(|n| n as usize)
    })?;
    let prefetch = value(l, "worker.prefetch", d.prefetch.max(batch_size), |v| {
        int(v, 1, 1_000_000).map(|n| n as usize)
    })?;
    if prefetch < batch_size {
        return Err(err(
            l,
            "worker.prefetch",
            format!("at least worker.batch_size ({batch_size})"),
        ));
    }
    let lease = value(l, "worker.lease", d.lease, |v| {
        duration(v, Duration::from_millis(100), 24 * HOUR)
    })?;
    let shutdown_deadline = value(l, "worker.shutdown_deadline", d.shutdown_deadline, |v| {
        duration(v, Duration::ZERO, HOUR)
    })?;
    let max_outage = value(l, "worker.max_outage", Duration::from_secs(300), |v| {
        duration(v, Duration::from_millis(100), 24 * HOUR)
    })?;
    let r = RetryPolicy::default();
    let base = value(l, "retry.base", r.base, |v| duration(v, MS, HOUR))?;
    let factor = value(l, "retry.factor", r.factor, |v| float(v, 1.0, 100.0))?;
    let cap = value(l, "retry.cap", r.cap.max(base), |v| {
        duration(v, Duration::ZERO, 24 * HOUR)
    })?;
    if cap < base {
        return Err(err(
            l,
            "retry.cap",
            format!("at least retry.base ({} ms)", base.as_millis()),
        ));
    }
    let max_attempts = value(
        l,
        "retry.max_attempts",
        QueueOptions::default().max_attempts,
        |v| int(v, 1, 1000).map(|n| n as u32),
    )?;
    let default_url = format!("sqlite:{}", data_dir.join("records.db").display());
    let store_url = value(l, "store.url", default_url, |v| {
        let s = text(v)?;
        StoreUrl::parse(s).ok().map(|_| s.to_string())
    })?;
    let table = value(l, "store.table", StoreOptions::default().table, |v| {
        let s = text(v)?;
        table_ok(s).then(|| s.to_string())
    })?;
    // A store call that hangs (a silent server) ends as `Unavailable` within a lease: the
    // batch's leases are extended meanwhile anyway, but a timeout past the lease would leave
    // the workers waiting longer on one call than the broker waits on them.
    let operation_timeout = value(
        l,
        "store.operation_timeout",
        (lease / 2).min(StoreOptions::default().operation_timeout),
        |v| duration(v, 10 * MS, HOUR),
    )?;
    if operation_timeout >= lease {
        return Err(err(
            l,
            "store.operation_timeout",
            format!("shorter than worker.lease ({} ms)", lease.as_millis()),
        ));
    }
    let broker = value(l, "broker.url", None, |v| {
        BrokerUrl::parse(text(v)?).map(Some)
    })?;
    let metrics_listen = value(l, "metrics.listen", None, |v| {
        text(v)?.parse().ok().map(Some)
    })?;
    let broker_tls_ca = value(l, "broker.tls_ca_file", None, |v| {
        let pem = std::fs::read_to_string(text(v)?).ok()?;
        pem.contains("-----BEGIN CERTIFICATE-----")
            .then_some(Some(pem))
    })?;
    let listen = value(
        l,
        "server.listen",
        SocketAddr::from(([127, 0, 0, 1], 8470)),
        |v| text(v)?.parse().ok(),
    )?;
    let mut tokens = value(l, "server.tokens", Vec::new(), tokens)?;
    let from_file = value(l, "server.token_file", Vec::new(), |v| {
        let text = read_secret_file(Path::new(text(v)?)).ok()?;
        text.lines()
            .map(str::trim)
            .filter(|t| !t.is_empty() && !t.starts_with('#'))
            .map(parse_token)
            .collect()
    })?;
    tokens.extend(from_file);
    let syslog_tcp = value(l, "server.syslog_tcp", None, |v| {
        text(v)?.parse().ok().map(Some)
    })?;
    let syslog_udp = value(l, "server.syslog_udp", None, |v| {
        text(v)?.parse().ok().map(Some)
    })?;
    let limits = ackline_server::Limits::default();
    let max_connections = value(l, "server.max_connections", limits.max_connections, |v| {
        int(v, 1, 1_000_000).map(|n| n as usize)
    })?;
    let max_connections_per_client = value(
        l,
        "server.max_connections_per_client",
        limits.max_connections_per_client.min(max_connections),
        |v| int(v, 1, 1_000_000).map(|n| n as usize),
    )?;
    if max_connections_per_client > max_connections {
        return Err(err(
            l,
            "server.max_connections_per_client",
            format!("at most server.max_connections ({max_connections})"),
        ));
    }
    let header_read_timeout = value(
        l,
        "server.header_read_timeout",
        limits.header_read_timeout,
        |v| duration(v, Duration::from_millis(100), Duration::from_secs(600)),
    )?;
    let syslog_udp_recv_buffer = value(
        l,
        "server.syslog_udp_recv_buffer",
        limits.syslog_udp_recv_buffer,
        |v| int(v, 0, 1 << 30).map(|n| n as usize),
    )?;
    let max_queues = value(l, "server.max_queues", 100, |v| {
        int(v, 1, 10_000).map(|n| n as usize)
    })?;
    let auto_create_queues = value(l, "server.auto_create_queues", Vec::new(), |v| {
        let names = list(v)?;
        names
            .iter()
            .all(|n| ackline_queue::valid_queue_name(n))
            .then_some(names)
    })?;
    let max_lines_per_request = value(
        l,
        "server.max_lines_per_request",
        ackline_server::Limits::default().max_lines_per_request,
        |v| int(v, 1, 10_000_000).map(|n| n as usize),
    )?;
    let max_sessions_per_token = value(
        l,
        "server.max_sessions_per_token",
        ackline_server::Limits::default().max_sessions_per_token,
        |v| int(v, 1, 100_000).map(|n| n as usize),
    )?;
    if !listen.ip().is_loopback() && tokens.is_empty() {
        return Err(err(
            l,
            "server.listen",
            "a loopback address unless server.tokens is set (no anonymous access from the network)"
                .into(),
        ));
    }
    Ok(Config {
        data_dir: data_dir.to_path_buf(),
        file,
        paths,
        stdin,
        parser: ParserConfig {
            format,
            strict,
            ..ParserConfig::default()
        },
        start_at,
        poll_interval,
        queue,
        queue_options: QueueOptions {
            fsync,
            max_attempts,
            ..QueueOptions::default()
        },
        worker: WorkerConfig {
            workers,
            prefetch,
            batch_size,
            lease,
            retry: RetryPolicy { base, factor, cap },
            shutdown_deadline,
            ..d
        },
        max_outage,
        store_url,
        store: StoreOptions {
            table,
            operation_timeout,
            ..StoreOptions::default()
        },
        server: ServerSettings {
            listen,
            tokens,
            syslog_tcp,
            syslog_udp,
            max_connections,
            max_connections_per_client,
            header_read_timeout,
            max_queues,
            auto_create_queues,
            syslog_udp_recv_buffer,
            max_lines_per_request,
            max_sessions_per_token,
        },
        broker,
        broker_tls_ca,
        metrics_listen,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env {
            vars: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn defaults_are_valid() {
        let c = load(
            Path::new("/d"),
            None,
            &PipelineFlags::default(),
            &Env::empty(),
        )
        .unwrap();
        assert_eq!(c.queue, "logs");
        assert_eq!(c.store_url, "sqlite:/d/records.db");
        assert_eq!(c.sqlite_path(), Some(PathBuf::from("/d/records.db")));
        assert!(!c.parser.strict);
    }

    #[test]
    fn flags_beat_env_beat_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[worker]\nworkers = 3\nbatch_size = 10\n").unwrap();
        let e = env(&[("ACKLINE_WORKER_WORKERS", "5")]);
        let c = load(dir.path(), Some(&f), &PipelineFlags::default(), &e).unwrap();
        assert_eq!((c.worker.workers, c.worker.batch_size), (5, 10));
        let flags = PipelineFlags {
            worker: crate::cli::WorkerFlags {
                workers: Some("7".into()),
                ..Default::default()
            },
            ..PipelineFlags::default()
        };
        let c = load(dir.path(), Some(&f), &flags, &e).unwrap();
        assert_eq!(c.worker.workers, 7);
    }

    #[test]
    fn errors_name_key_source_and_expectation() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[retry]\nbase = \"fast\"\n").unwrap();
        let e = load(
            dir.path(),
            Some(&f),
            &PipelineFlags::default(),
            &Env::empty(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("retry.base"), "{e}");
        assert!(e.contains("c.toml:2:8"), "{e}");
        assert!(e.contains("expected a duration"), "{e}");
        let e = load(
            dir.path(),
            None,
            &PipelineFlags::default(),
            &env(&[("ACKLINE_WORKER_WORKERS", "0")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("worker.workers") && e.contains("ACKLINE_WORKER_WORKERS"),
            "{e}"
        );
        std::fs::write(&f, "[worker]\nwrkers = 2\n").unwrap();
        let e = load(
            dir.path(),
            Some(&f),
            &PipelineFlags::default(),
            &Env::empty(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("unknown key worker.wrkers") && e.contains(":2:1"),
            "{e}"
        );
    }

    #[test]
    fn server_section() {
        let c = load(
            Path::new("/d"),
            None,
            &PipelineFlags::default(),
            &Env::empty(),
        )
        .unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8470");
        assert!(c.server.tokens.is_empty());
        let e = env(&[
            ("ACKLINE_LISTEN", "0.0.0.0:9000"),
            (
                "ACKLINE_TOKENS",
                "a-secret-of-16-chars:ingest,worker; other:secret-0123456789:admin",
            ),
        ]);
        let c = load(Path::new("/d"), None, &PipelineFlags::default(), &e).unwrap();
        assert_eq!(c.server.tokens.len(), 2);
        let e = env(&[("ACKLINE_LISTEN", "0.0.0.0:9000")]);
        let msg = load(Path::new("/d"), None, &PipelineFlags::default(), &e)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("server.listen") && msg.contains("ACKLINE_LISTEN"),
            "{msg}"
        );
        for bad in [
            "short:ingest",
            "a-secret-of-16-chars:root",
            "a-secret-of-16-chars",
        ] {
            let flags = PipelineFlags {
                server: crate::cli::ServerFlags {
                    tokens: vec![bad.into()],
                    ..Default::default()
                },
                ..PipelineFlags::default()
            };
            let msg = load(Path::new("/d"), None, &flags, &Env::empty())
                .unwrap_err()
                .to_string();
            assert!(msg.contains("server.tokens"), "{msg}");
            assert!(
                !msg.contains("secret-of") && !msg.contains("short"),
                "{msg}"
            );
        }
    }

    #[test]
    fn the_store_timeout_is_shorter_than_the_lease() {
        let load_env = |pairs: &[(&str, &str)]| {
            load(
                Path::new("/d"),
                None,
                &PipelineFlags::default(),
                &env(pairs),
            )
        };
        let c = load_env(&[]).unwrap();
        assert_eq!(
            c.store.operation_timeout,
            Duration::from_secs(15),
            "half the lease"
        );
        let c = load_env(&[("ACKLINE_WORKER_LEASE", "10m")]).unwrap();
        assert_eq!(
            c.store.operation_timeout,
            Duration::from_secs(60),
            "at most 60 s"
        );
        let c = load_env(&[("ACKLINE_STORE_OPERATION_TIMEOUT", "2s")]).unwrap();
        assert_eq!(c.store.operation_timeout, Duration::from_secs(2));
        let e = load_env(&[
            ("ACKLINE_WORKER_LEASE", "5s"),
            ("ACKLINE_STORE_OPERATION_TIMEOUT", "5s"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("store.operation_timeout")
                && e.contains("ACKLINE_STORE_OPERATION_TIMEOUT")
                && e.contains("shorter than worker.lease (5000 ms)"),
            "{e}"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("ms"), None);
    }

    #[test]
    fn docs_name_every_key_and_variable() {
        let doc = include_str!("../../../docs/config.md");
        for k in KEYS {
            assert!(
                doc.contains(&format!("`{}`", k.name)),
                "{} undocumented",
                k.name
            );
            assert!(doc.contains(&k.env()), "{} undocumented", k.env());
        }
    }
}
