//! The validated configuration of the pipeline, built once from layered sources.
//!
//! Every key is defined once in [`defs`] (name, environment variable, flags, kind, default,
//! secrecy, documentation); this module reads the layers and turns them into one [`Config`],
//! checked key by key with each key's kind. Raw flags ([`PipelineFlags`], whose clap arguments
//! [`flags`] builds from the definitions) stay strings until then. Precedence: flags >
//! environment (`ACKLINE_<SECTION>_<KEY>`) > file (`--config`, or `<data-dir>/ackline.toml`
//! when present) > defaults. The key table of `docs/config.md` is generated from the
//! definitions, and a test (in `config/doc.rs`) fails when the committed table differs.
//!
//! Invariants:
//! - A [`Config`] is only ever built by [`load`], which checks every key: code that holds one
//!   never re-validates.
//! - Every error is one line naming the key, the value, its source (file with line and
//!   column, environment variable or flag) and what was expected (the key's kind describes
//!   it from the bounds it checks); it is a usage error (exit 2). A secret key's value is
//!   never quoted.
//! - Rules across keys are checked after both keys are read: `worker.prefetch` >=
//!   `worker.batch_size`, `retry.cap` >= `retry.base`, `store.operation_timeout` <
//!   `worker.lease`, `server.max_connections_per_client` <= `server.max_connections`, and
//!   `server.listen` beyond loopback only with tokens.
//! - Unknown keys in the file are errors (a typo must not silently fall back to a default);
//!   unknown `ACKLINE_*` variables are ignored (the environment is shared with other tools).
//! - The per-input groups (`[[input.files]]` in the file; `--files` or `ACKLINE_INPUT_FILES`,
//!   which replace them) are checked by [`groups`] after the run-wide keys, whose values
//!   complete them; their errors name the group.

pub mod defs;
#[cfg(test)]
mod doc;
mod file;
pub mod flags;
pub mod groups;
pub mod key;
pub mod kind;
mod secret;
mod source;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ackline_input::StartAt;
use ackline_parse::ParserConfig;
use ackline_queue::QueueOptions;
use ackline_server::Token;
use ackline_store::{StoreOptions, StoreUrl};
use ackline_worker::{RetryPolicy, WorkerConfig};
use anyhow::Context;

use crate::exit::usage;
use defs::*;
pub use defs::{DEFAULT_QUEUE, KEYS};
pub use flags::{PipelineFlags, ServerFlags, WorkerFlags};
pub use groups::InputGroup;
use key::{AnyKey, Fallback, Key};
use kind::Kind;
pub use secret::read_secret_file;
pub use source::{Given, RawValue, Source};

/// The config file looked for in the data directory.
pub const DEFAULT_FILE: &str = "ackline.toml";

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
    /// Files and glob patterns to follow with the run-wide settings (the default group).
    pub paths: Vec<String>,
    /// Groups of files with settings of their own (`[[input.files]]`), in file order.
    pub groups: Vec<InputGroup>,
    /// Read standard input too.
    pub stdin: bool,
    /// Format and strictness of the parser.
    pub parser: ParserConfig,
    /// Where files seen for the first time start.
    pub start_at: StartAt,
    /// How often files are checked for new lines.
    pub poll_interval: Duration,
    /// How file inputs group lines into records.
    pub multiline: ackline_parse::Multiline,
    /// How long a file's last multi-line record waits for more lines.
    pub multiline_timeout: Duration,
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
    /// PEM certificates trusted for `amqps`, `rediss` and NATS `tls` beside the system's roots (read from
    /// `broker.tls_ca_file`).
    pub broker_tls_ca: Option<String>,
    /// Accept a Redis broker that may drop queued messages by itself (no AOF, an evicting
    /// `maxmemory-policy`): `broker.allow_volatile`.
    pub broker_allow_volatile: bool,
    /// The content of a NATS `.creds` file (read from `broker.credentials_file`).
    pub broker_credentials: Option<String>,
    /// Kafka: partitions of the topics created by ackline (`broker.kafka_partitions`).
    pub broker_kafka_partitions: i32,
    /// Kafka: librdkafka settings for every client (`broker.kafka_settings`), name and value.
    pub broker_kafka_settings: Vec<(String, String)>,
    /// `run` and `work`: where the worker metrics are served, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// `run`: where the web console is served, if anywhere.
    pub console_listen: Option<SocketAddr>,
}

/// A broker to work from or relay to (`broker.url`). Displayed without its password.
#[derive(Debug, Clone)]
pub enum BrokerUrl {
    /// An `ackline serve` (split mode): `http://HOST:PORT[/QUEUE]`.
    Http(String),
    /// RabbitMQ (scale-out).
    Amqp(ackline_rabbitmq::AmqpUrl),
    /// Redis Streams (scale-out): `redis://`, `rediss://` (TLS) or `redis+unix://`.
    Redis(ackline_redis::RedisUrl),
    /// NATS JetStream (scale-out): `nats://` or `tls://`.
    Nats(ackline_nats::NatsUrl),
    /// Kafka (scale-out): `kafka://HOST:PORT[,HOST:PORT...]` or `kafkas://` (TLS), the
    /// bootstrap servers.
    Kafka(ackline_kafka::KafkaUrl),
}

impl BrokerUrl {
    /// Parses `http(s)://...`, `amqp(s)://...`, what [`ackline_redis::RedisUrl::parse`]
    /// takes (`redis://`, `rediss://`, `redis+unix://`, `unix://`) or what
    /// [`ackline_nats::NatsUrl::parse`] takes (`nats://`, `tls://`) or what
    /// [`ackline_kafka::KafkaUrl::parse`] takes (`kafka://`, `kafkas://`).
    pub fn parse(s: &str) -> Option<BrokerUrl> {
        let s = s.trim();
        if s.starts_with("kafka://") || s.starts_with("kafkas://") {
            return ackline_kafka::KafkaUrl::parse(s).ok().map(BrokerUrl::Kafka);
        }
        if s.starts_with("nats://") || s.starts_with("tls://") {
            return ackline_nats::NatsUrl::parse(s).ok().map(BrokerUrl::Nats);
        }
        if s.starts_with("http://") || s.starts_with("https://") {
            return ackline_http::HttpBroker::connect(s, None)
                .ok()
                .map(|_| BrokerUrl::Http(s.to_string()));
        }
        if ["redis://", "rediss://", "redis+unix://", "unix://"]
            .iter()
            .any(|p| s.starts_with(p))
        {
            return ackline_redis::RedisUrl::parse(s).ok().map(BrokerUrl::Redis);
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
            BrokerUrl::Redis(u) => write!(f, "{u}"),
            BrokerUrl::Nats(u) => write!(f, "{u}"),
            BrokerUrl::Kafka(u) => write!(f, "{u}"),
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
    /// The file's `[[input.files]]` tables.
    groups: Vec<file::Group>,
}

impl Layers {
    /// What the highest layer that sets `name` gives.
    fn given(&self, name: &str) -> Option<&Given> {
        self.flags
            .get(name)
            .or_else(|| self.env.get(name))
            .or_else(|| self.file.get(name))
    }

    /// The key's value if a layer sets it, checked by its kind.
    fn get<K: Kind>(&self, key: &Key<K>) -> Result<Option<K::Value>, ConfigError> {
        let Some(given) = self.given(key.meta.name) else {
            return Ok(None);
        };
        key.kind
            .parse(&given.value)
            .map(Some)
            .ok_or_else(|| invalid(key, given, key.expected()))
    }

    /// The key's value, or its default.
    fn value<K: Kind>(&self, key: &Key<K>) -> Result<K::Value, ConfigError> {
        match self.get(key)? {
            Some(v) => Ok(v),
            None => default_of(key),
        }
    }

    /// An error about a value that broke a rule across keys (`expected`), quoting the value
    /// as [`Layers::get`] would.
    fn reject(&self, key: &dyn AnyKey, expected: String) -> ConfigError {
        let name = key.meta().name;
        match self.given(name) {
            Some(given) => invalid(key, given, expected),
            None => ConfigError {
                key: name,
                given: Given {
                    value: RawValue::Other("default"),
                    source: Source::Default,
                },
                expected,
            },
        }
    }
}

/// The key's default value ([`Fallback::Value`]), read as if given (a key without one reads
/// an empty text, which only a list accepts). A default its own kind refuses is an error like
/// any other, quoted with [`Source::Default`]; a test proves no definition has one.
fn default_of<K: Kind>(key: &Key<K>) -> Result<K::Value, ConfigError> {
    let text = match key.meta.fallback {
        Fallback::Value(v) => v,
        Fallback::Absent(_) | Fallback::Computed(_) => "",
    };
    let given = Given {
        value: RawValue::Text(text.to_string()),
        source: Source::Default,
    };
    key.kind
        .parse(&given.value)
        .ok_or_else(|| invalid(key, &given, key.expected()))
}

/// The error about `key`'s value `given`: the value is quoted unless the key is secret.
fn invalid(key: &dyn AnyKey, given: &Given, expected: String) -> ConfigError {
    let m = key.meta();
    let given = if m.secret {
        Given {
            value: RawValue::Other("redacted"),
            source: given.source.clone(),
        }
    } else {
        given.clone()
    };
    ConfigError {
        key: m.name,
        given,
        expected,
    }
}

fn find_key(name: &str) -> Option<&'static dyn AnyKey> {
    KEYS.iter().copied().find(|k| k.meta().name == name)
}

fn env_layer(env: &HashMap<String, String>) -> BTreeMap<&'static str, Given> {
    let mut m = BTreeMap::new();
    for k in KEYS {
        let var = k.meta().env();
        if let Some(v) = env.get(var.as_ref()) {
            m.insert(
                k.meta().name,
                Given {
                    value: RawValue::Text(v.clone()),
                    source: Source::Env(var.into_owned()),
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

fn file_layer(path: &Path) -> anyhow::Result<(BTreeMap<&'static str, Given>, Vec<file::Group>)> {
    let text = read_config_file(path)?;
    let parsed = file::parse(path, &text).map_err(usage)?;
    let mut m = BTreeMap::new();
    for (name, e) in parsed.entries {
        let Some(k) = find_key(&name) else {
            let known: Vec<&str> = KEYS.iter().map(|k| k.meta().name).collect();
            return Err(usage(format!(
                "unknown key {name} ({}): expected one of {}",
                e.key_at,
                known.join(", ")
            )));
        };
        m.insert(k.meta().name, e.given);
    }
    Ok((m, parsed.groups))
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
    let (file_keys, groups) = match &file {
        Some(p) => file_layer(p)?,
        None => (BTreeMap::new(), Vec::new()),
    };
    let layers = Layers {
        flags: flags.layer(),
        env: env_layer(&env.vars),
        file: file_keys,
        groups,
    };
    let mut cfg = build(data_dir, file, &layers).map_err(|e| usage(e.to_string()))?;
    // `--files` (or `ACKLINE_INPUT_FILES`) replaces the file's groups, as a flag replaces any
    // key the file sets.
    let specs = layers
        .get(&INPUT_FILES)
        .map_err(|e| usage(e.to_string()))?
        .zip(layers.given(INPUT_FILES.meta.name));
    let groups = match specs {
        Some((specs, given)) => groups::from_specs(&specs, &given.source).map_err(usage)?,
        None => layers.groups.clone(),
    };
    cfg.groups = groups::check(&groups, &cfg).map_err(usage)?;
    Ok(cfg)
}

fn build(data_dir: &Path, file: Option<PathBuf>, l: &Layers) -> Result<Config, ConfigError> {
    let paths = l.get(&INPUT_PATHS)?.unwrap_or_default();
    let stdin = l.value(&INPUT_STDIN)?;
    let format = l.value(&INPUT_FORMAT)?;
    let strict = l.value(&INPUT_STRICT)?;
    let year_rule = l.value(&INPUT_YEAR)?;
    let timezone = l.value(&INPUT_TIMEZONE)?;
    let start_at = l.value(&INPUT_START_AT)?;
    let poll_interval = l.value(&INPUT_POLL_INTERVAL)?;
    let multiline = l.value(&INPUT_MULTILINE)?;
    let multiline_timeout = l.value(&INPUT_MULTILINE_TIMEOUT)?;
    let queue = l.value(&QUEUE_NAME)?;
    let fsync = l.value(&QUEUE_FSYNC)?;
    let workers = l.value(&WORKER_WORKERS)?;
    let batch_size = l.value(&WORKER_BATCH_SIZE)?;
    let prefetch = match l.get(&WORKER_PREFETCH)? {
        Some(p) => p,
        None => default_of(&WORKER_PREFETCH)?.max(batch_size),
    };
    if prefetch < batch_size {
        return Err(l.reject(
            &WORKER_PREFETCH,
            format!("at least worker.batch_size ({batch_size})"),
        ));
    }
    let lease = l.value(&WORKER_LEASE)?;
    let shutdown_deadline = l.value(&WORKER_SHUTDOWN_DEADLINE)?;
    let max_outage = l.value(&WORKER_MAX_OUTAGE)?;
    let base = l.value(&RETRY_BASE)?;
    let factor = l.value(&RETRY_FACTOR)?;
    let cap = match l.get(&RETRY_CAP)? {
        Some(c) => c,
        None => default_of(&RETRY_CAP)?.max(base),
    };
    if cap < base {
        return Err(l.reject(
            &RETRY_CAP,
            format!("at least retry.base ({} ms)", base.as_millis()),
        ));
    }
    let max_attempts = l.value(&RETRY_MAX_ATTEMPTS)?;
    let store_url = l
        .get(&STORE_URL)?
        .unwrap_or_else(|| format!("sqlite:{}", data_dir.join("records.db").display()));
    let table = l.value(&STORE_TABLE)?;
    // A store call that hangs (a silent server) ends as `Unavailable` within a lease: the
    // batch's leases are extended meanwhile anyway, but a timeout past the lease would leave
    // the workers waiting longer on one call than the broker waits on them.
    let operation_timeout = l
        .get(&STORE_OPERATION_TIMEOUT)?
        .unwrap_or_else(|| (lease / 2).min(StoreOptions::default().operation_timeout));
    if operation_timeout >= lease {
        return Err(l.reject(
            &STORE_OPERATION_TIMEOUT,
            format!("shorter than worker.lease ({} ms)", lease.as_millis()),
        ));
    }
    let broker = l.get(&BROKER_URL)?;
    let metrics_listen = l.get(&METRICS_LISTEN)?;
    let console_listen = l.get(&CONSOLE_LISTEN)?;
    let broker_tls_ca = l.get(&BROKER_TLS_CA_FILE)?;
    let broker_allow_volatile = l.value(&BROKER_ALLOW_VOLATILE)?;
    let broker_credentials = l.get(&BROKER_CREDENTIALS_FILE)?;
    let broker_kafka_partitions = l.value(&BROKER_KAFKA_PARTITIONS)?;
    let broker_kafka_settings = l
        .get(&BROKER_KAFKA_SETTINGS)?
        .unwrap_or_default()
        .iter()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let listen = l.value(&SERVER_LISTEN)?;
    let mut tokens: Vec<Token> = l.get(&SERVER_TOKENS)?.unwrap_or_default();
    tokens.extend(l.get(&SERVER_TOKEN_FILE)?.unwrap_or_default());
    let syslog_tcp = l.get(&SERVER_SYSLOG_TCP)?;
    let syslog_udp = l.get(&SERVER_SYSLOG_UDP)?;
    let max_connections = l.value(&SERVER_MAX_CONNECTIONS)?;
    let max_connections_per_client = match l.get(&SERVER_MAX_CONNECTIONS_PER_CLIENT)? {
        Some(n) => n,
        None => default_of(&SERVER_MAX_CONNECTIONS_PER_CLIENT)?.min(max_connections),
    };
    if max_connections_per_client > max_connections {
        return Err(l.reject(
            &SERVER_MAX_CONNECTIONS_PER_CLIENT,
            format!("at most server.max_connections ({max_connections})"),
        ));
    }
    let header_read_timeout = l.value(&SERVER_HEADER_READ_TIMEOUT)?;
    let syslog_udp_recv_buffer = l.value(&SERVER_SYSLOG_UDP_RECV_BUFFER)?;
    let max_queues = l.value(&SERVER_MAX_QUEUES)?;
    let auto_create_queues = l.get(&SERVER_AUTO_CREATE_QUEUES)?.unwrap_or_default();
    let max_lines_per_request = l.value(&SERVER_MAX_LINES_PER_REQUEST)?;
    let max_sessions_per_token = l.value(&SERVER_MAX_SESSIONS_PER_TOKEN)?;
    if !listen.ip().is_loopback() && tokens.is_empty() {
        return Err(l.reject(
            &SERVER_LISTEN,
            "a loopback address unless server.tokens is set (no anonymous access from the network)"
                .into(),
        ));
    }
    if console_listen.is_some_and(|a| !a.ip().is_loopback()) && tokens.is_empty() {
        return Err(l.reject(
            &CONSOLE_LISTEN,
            "a loopback address unless server.tokens is set (no anonymous access from the network)"
                .into(),
        ));
    }
    let d = WorkerConfig::default();
    Ok(Config {
        data_dir: data_dir.to_path_buf(),
        file,
        paths,
        groups: Vec::new(),
        stdin,
        parser: ParserConfig {
            format,
            strict,
            year_rule,
            timezone,
            ..ParserConfig::default()
        },
        start_at,
        poll_interval,
        multiline,
        multiline_timeout,
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
        broker_allow_volatile,
        broker_credentials,
        broker_kafka_partitions,
        broker_kafka_settings,
        metrics_listen,
        console_listen,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use kind::parse_duration;

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
    fn redis_broker_urls_are_parsed_and_shown_redacted() {
        for u in [
            "redis://127.0.0.1:6379/0",
            "rediss://cache.example:6380/2",
            "redis+unix:///run/redis.sock?db=1",
        ] {
            assert!(
                matches!(BrokerUrl::parse(u), Some(BrokerUrl::Redis(_))),
                "{u}"
            );
        }
        let b = BrokerUrl::parse("redis://app:hunter2@127.0.0.1:6379/0").unwrap();
        assert!(!b.to_string().contains("hunter2"), "{b}");
        assert!(b.to_string().starts_with("redis://app:***@"), "{b}");
        assert!(BrokerUrl::parse("redis://h:1/0#insecure").is_none());
        assert!(BrokerUrl::parse("redis://h:notaport/0").is_none());
    }

    #[test]
    fn allow_volatile_from_the_flag_and_the_environment() {
        let none = load(
            Path::new("/d"),
            None,
            &PipelineFlags::default(),
            &Env::empty(),
        );
        assert!(!none.unwrap().broker_allow_volatile);
        let e = env(&[("ACKLINE_BROKER_ALLOW_VOLATILE", "true")]);
        let c = load(Path::new("/d"), None, &PipelineFlags::default(), &e).unwrap();
        assert!(c.broker_allow_volatile);
        let flags = PipelineFlags {
            allow_volatile: true,
            ..PipelineFlags::default()
        };
        let c = load(Path::new("/d"), None, &flags, &Env::empty()).unwrap();
        assert!(c.broker_allow_volatile);
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
            worker: WorkerFlags {
                workers: Some("7".into()),
                ..Default::default()
            },
            ..PipelineFlags::default()
        };
        let c = load(dir.path(), Some(&f), &flags, &e).unwrap();
        assert_eq!(c.worker.workers, 7);
    }

    /// `input.year` and `input.timezone` reach the parser from the file, the environment and
    /// the flags; bad values are refused with the expectation.
    #[test]
    fn year_and_timezone() {
        use ackline_parse::{YearRule, Zone};
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        let c = load(dir.path(), None, &PipelineFlags::default(), &Env::empty()).unwrap();
        assert_eq!(c.parser.year_rule, YearRule::Infer);
        assert_eq!(c.parser.timezone, Zone::utc());
        std::fs::write(
            &f,
            "[input]\nyear = \"2005\"\ntimezone = \"Europe/Berlin\"\n",
        )
        .unwrap();
        let c = load(
            dir.path(),
            Some(&f),
            &PipelineFlags::default(),
            &Env::empty(),
        )
        .unwrap();
        assert_eq!(c.parser.year_rule, YearRule::Fixed(2005));
        assert_eq!(c.parser.timezone, "Europe/Berlin".parse::<Zone>().unwrap());
        let e = env(&[
            ("ACKLINE_INPUT_YEAR", "mtime"),
            ("ACKLINE_INPUT_TIMEZONE", "+05:30"),
        ]);
        let c = load(dir.path(), Some(&f), &PipelineFlags::default(), &e).unwrap();
        assert_eq!(c.parser.year_rule, YearRule::FileMtime);
        assert_eq!(c.parser.timezone, "+05:30".parse::<Zone>().unwrap());
        let flags = PipelineFlags {
            worker: WorkerFlags {
                year: Some("auto".into()),
                timezone: Some("UTC".into()),
                ..Default::default()
            },
            ..PipelineFlags::default()
        };
        let c = load(dir.path(), Some(&f), &flags, &e).unwrap();
        assert_eq!(c.parser.year_rule, YearRule::Infer);
        assert_eq!(c.parser.timezone, Zone::utc());
        for (key, bad) in [
            ("year", "0"),
            ("year", "last"),
            ("timezone", "Mars/Base"),
            ("timezone", "CEST"),
        ] {
            std::fs::write(&f, format!("[input]\n{key} = \"{bad}\"\n")).unwrap();
            let e = load(
                dir.path(),
                Some(&f),
                &PipelineFlags::default(),
                &Env::empty(),
            )
            .unwrap_err()
            .to_string();
            assert!(
                e.contains(&format!("input.{key}")) && e.contains("expected"),
                "{e}"
            );
        }
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
        // The store's URL forms are quoted once, after one "expected".
        let e = load(
            dir.path(),
            None,
            &PipelineFlags::default(),
            &env(&[("ACKLINE_STORE_URL", "mysql://db")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("expected sqlite:PATH"), "{e}");
        assert!(!e.contains("expected expected"), "{e}");
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
                server: ServerFlags {
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

    /// `input.format`'s documentation names every format the parser has (a new format must
    /// not be missing from the doc and the generated table).
    #[test]
    fn the_format_key_names_every_format() {
        let doc = defs::INPUT_FORMAT.meta().doc;
        for f in ackline_parse::Format::ALL {
            assert!(
                doc.contains(&format!("`{}`", f.name())),
                "input.format's doc does not name `{}`",
                f.name()
            );
        }
    }

    #[test]
    fn docs_name_every_key_and_variable() {
        let doc = include_str!("../../../docs/config.md");
        for k in KEYS.iter().map(|k| k.meta()) {
            assert!(
                doc.contains(&format!("`{}`", k.name)),
                "{} undocumented",
                k.name
            );
            assert!(doc.contains(k.env().as_ref()), "{} undocumented", k.env());
        }
    }

    /// Every key in the table is read: an invalid value for it (here `[[`, which no key
    /// accepts) fails the load, naming the key and its variable.
    #[test]
    fn every_key_is_read() {
        for k in KEYS {
            let m = k.meta();
            let var = m.env();
            let e = load(
                Path::new("/d"),
                None,
                &PipelineFlags::default(),
                &env(&[(&var, "[[")]),
            )
            .unwrap_err()
            .to_string();
            assert!(
                e.starts_with(&format!("invalid {} = ", m.name)) && e.contains(var.as_ref()),
                "{e}"
            );
            assert!(e.ends_with(&format!("expected {}", k.expected())), "{e}");
        }
    }

    /// The defaults in the definitions are the libraries' own.
    #[test]
    fn defaults_are_the_libraries_defaults() {
        let c = load(
            Path::new("/d"),
            None,
            &PipelineFlags::default(),
            &Env::empty(),
        )
        .unwrap();
        let w = WorkerConfig::default();
        assert_eq!(
            (c.worker.workers, c.worker.batch_size, c.worker.prefetch),
            (w.workers, w.batch_size, w.prefetch)
        );
        assert_eq!(
            (c.worker.lease, c.worker.shutdown_deadline),
            (w.lease, w.shutdown_deadline)
        );
        let r = RetryPolicy::default();
        assert_eq!(
            (
                c.worker.retry.base,
                c.worker.retry.factor,
                c.worker.retry.cap
            ),
            (r.base, r.factor, r.cap)
        );
        let q = QueueOptions::default();
        assert_eq!(
            (c.queue_options.fsync, c.queue_options.max_attempts),
            (q.fsync, q.max_attempts)
        );
        assert_eq!(c.store.table, StoreOptions::default().table);
        assert_eq!(c.parser.format, ParserConfig::default().format);
        assert_eq!(c.start_at, StartAt::default());
        let l = ackline_server::Limits::default();
        let s = &c.server;
        assert_eq!(
            (
                s.max_connections,
                s.max_connections_per_client,
                s.header_read_timeout,
                s.syslog_udp_recv_buffer,
                s.max_lines_per_request,
                s.max_sessions_per_token,
            ),
            (
                l.max_connections,
                l.max_connections_per_client,
                l.header_read_timeout,
                l.syslog_udp_recv_buffer,
                l.max_lines_per_request,
                l.max_sessions_per_token,
            )
        );
    }

    /// A value that breaks a rule across keys is quoted unless secret, and the expectation
    /// states the rule with the other key's value.
    #[test]
    fn rules_across_keys() {
        let e = load(
            Path::new("/d"),
            None,
            &PipelineFlags::default(),
            &env(&[
                ("ACKLINE_SERVER_MAX_CONNECTIONS", "10"),
                ("ACKLINE_SERVER_MAX_CONNECTIONS_PER_CLIENT", "11"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "invalid server.max_connections_per_client = \"11\" (from environment variable \
             ACKLINE_SERVER_MAX_CONNECTIONS_PER_CLIENT): expected at most server.max_connections (10)"
        );
        let c = load(
            Path::new("/d"),
            None,
            &PipelineFlags::default(),
            &env(&[
                ("ACKLINE_SERVER_MAX_CONNECTIONS", "10"),
                ("ACKLINE_WORKER_BATCH_SIZE", "5000"),
                ("ACKLINE_RETRY_BASE", "10m"),
            ]),
        )
        .unwrap();
        assert_eq!(
            c.server.max_connections_per_client, 10,
            "lowered to the maximum"
        );
        assert_eq!(c.worker.prefetch, 5000, "raised to the batch");
        assert_eq!(
            c.worker.retry.cap,
            Duration::from_secs(600),
            "raised to the base"
        );
    }
}
