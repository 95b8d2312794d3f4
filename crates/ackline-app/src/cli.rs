//! Command-line syntax of the product's commands (clap derive). Only parsing lives here; each
//! command's work is in its own module.
//!
//! A leaf: this module imports nothing from the crate's command modules, only the configuration
//! keys' definitions (`crate::config::defs`), from which the flag structs are built; a field here
//! that holds a key takes its flag with `#[arg(config_key = (&KEY, Cmd::...))]`. The `ackline`
//! binary composes [`GlobalArgs`] and [`Command`] with the harness's commands (`demo`, `bench`)
//! into its top-level parser.
//!
//! Invariants:
//! - Every flag that clap rejects exits with code 2 and a one-line message (clap's own).
//! - Values that clap cannot check by type (lists, queue names) are checked by the command
//!   and reported as [`crate::exit::Usage`] errors, which also exit 2.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use crate::config::defs::{
    BROKER_ALLOW_VOLATILE, BROKER_TLS_CA_FILE, BROKER_URL, CONSOLE_LISTEN, QUEUE_NAME,
    RETRY_MAX_ATTEMPTS,
};
use crate::config::flags::KeyArg as _;
use crate::config::key::Cmd;
/// The flag structs of the configuration keys, built from their definitions.
pub use crate::config::{PipelineFlags, ServerFlags, WorkerFlags};

/// The flags every command takes (global: given before or after the subcommand).
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Data directory (queues live in DIR/queues/NAME) [default: ./ackline-data]
    #[arg(long, global = true, env = "ACKLINE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Print one JSON object on stdout instead of human-readable text
    #[arg(long, global = true)]
    pub json: bool,

    /// Configuration file (TOML; see docs/config.md) [default: DIR/ackline.toml if present]
    #[arg(long, global = true, env = "ACKLINE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log lines on stderr: `text` or `json` (one JSON object per event)
    #[arg(long, global = true, env = "ACKLINE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// What to log, as a tracing filter: a level (`error`, `warn`, `info`, `debug`) or
    /// per-module directives (`warn,ackline_worker=info`)
    #[arg(
        long,
        global = true,
        env = "ACKLINE_LOG",
        value_name = "FILTER",
        default_value = "warn"
    )]
    pub log: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines
    Text,
    /// One JSON object per event (for log shippers)
    Json,
}

impl GlobalArgs {
    /// The data directory to use, with its default applied.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("./ackline-data"))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pipeline: inputs -> embedded queue -> N workers -> store
    ///
    /// Follows the files (and reads stdin with `-`) until SIGTERM or SIGINT, or with --once
    /// reads them to their current end, drains the queue and exits 0. On the first signal
    /// it stops reading (positions committed), takes no new deliveries, finishes the batches
    /// in hand within the shutdown deadline and exits 0. A second signal (1 s or more later) exits at once
    /// (code 130); nothing is lost then either: unsettled deliveries come back when their
    /// leases expire, and inputs resume from their committed positions.
    Run(RunArgs),
    /// Split mode, server side: the embedded queue behind HTTP (ingest, the lease API for
    /// `ackline work`, admin, metrics) until SIGTERM or SIGINT; with --broker, a scale-out
    /// ingest node relaying to RabbitMQ or Redis Streams
    ///
    /// Prints the bound address (with --json, one JSON line) once listening. Beyond loopback
    /// at least one --token is required. The first signal stops accepting, lets open requests
    /// finish, releases remote workers' deliveries and closes the queue; exit 0.
    Serve(ServeArgs),
    /// Worker of split and scale-out mode: lease deliveries from `ackline serve`, RabbitMQ or
    /// Redis Streams, parse, store, ack
    ///
    /// Runs until SIGTERM or SIGINT, then finishes the batches in hand within the shutdown
    /// deadline (the rest is released) and exits 0. Killed (even with SIGKILL), its leases
    /// expire on the server (RabbitMQ requeues them; on Redis another worker claims them after
    /// the lease) and other workers get the deliveries; nothing is lost.
    Work(WorkArgs),
    /// Check the configuration (file, environment, flags) and exit: 0 if valid, 2 with a
    /// one-line error naming the field, where it came from and what was expected
    Check(CheckArgs),
    /// Records in the store (SQLite), by time range, severity, host, app and text
    Query(QueryArgs),
    /// Counts of the pipeline: its queue, dead letters, stored records, the last run
    Stats,
    /// Queue tools
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Dead-letter queue tools: list, show, replay, purge
    #[command(subcommand)]
    Dlq(DlqCommand),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub flags: PipelineFlags,
    /// Read the inputs to their current end, drain the queue, and exit 0
    #[arg(long)]
    pub once: bool,
    #[arg(config_key = (&CONSOLE_LISTEN, Cmd::Run))]
    pub listen: Option<String>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub flags: PipelineFlags,
    #[command(flatten)]
    pub server: ServerFlags,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub server: ServerFlags,
    #[arg(config_key = (&QUEUE_NAME, Cmd::Serve))]
    pub queue: Option<String>,
    #[arg(config_key = (&BROKER_URL, Cmd::Serve))]
    pub broker: Option<String>,
    #[arg(config_key = (&BROKER_TLS_CA_FILE, Cmd::Serve))]
    pub broker_ca: Option<String>,
    #[arg(config_key = (&BROKER_ALLOW_VOLATILE, Cmd::Serve))]
    pub allow_volatile: bool,
    #[arg(config_key = (&RETRY_MAX_ATTEMPTS, Cmd::Serve))]
    pub max_attempts: Option<String>,
}

#[derive(Debug, Args)]
pub struct WorkArgs {
    #[arg(config_key = (&BROKER_URL, Cmd::Work))]
    pub broker: Option<String>,
    #[arg(config_key = (&BROKER_TLS_CA_FILE, Cmd::Work))]
    pub broker_ca: Option<String>,
    #[arg(config_key = (&BROKER_ALLOW_VOLATILE, Cmd::Work))]
    pub allow_volatile: bool,
    #[arg(config_key = (&QUEUE_NAME, Cmd::Work))]
    pub queue: Option<String>,
    /// Bearer token with the worker scope (the secret only; split mode). Prefer
    /// ACKLINE_TOKEN or --token-file: a flag's value shows in /proc/PID/cmdline
    #[arg(
        long,
        env = "ACKLINE_TOKEN",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub token: Option<String>,
    /// File holding the bearer token (the secret only, surrounding whitespace ignored), instead
    /// of --token
    #[arg(long, value_name = "FILE", conflicts_with = "token")]
    pub token_file: Option<String>,
    #[command(flatten)]
    pub worker: WorkerFlags,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Records at or after this time (RFC 3339, or YYYY-MM-DD, UTC)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Records before this time (RFC 3339, or YYYY-MM-DD, UTC)
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Records at least this severe (emerg, alert, crit, err, warning, notice, info, debug)
    #[arg(long, value_name = "LEVEL")]
    pub severity: Option<String>,
    /// Records from this host
    #[arg(long)]
    pub host: Option<String>,
    /// Records from this app or service
    #[arg(long)]
    pub app: Option<String>,
    /// Records whose message contains this text (case-sensitive)
    #[arg(long)]
    pub text: Option<String>,
    /// At most this many records (oldest first)
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Store URL (must be SQLite) [default: the configuration's store.url]
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Counts of one queue, or of every queue in the data directory (with a broker: of one
    /// queue, the pipeline's unless named)
    Stats {
        /// The queue (all queues when omitted)
        queue: Option<String>,
        /// The queue, as a flag (the same as the positional NAME)
        #[arg(long = "queue", value_name = "NAME", conflicts_with = "queue")]
        queue_flag: Option<String>,
        #[command(flatten)]
        broker: BrokerFlags,
    },
}

/// `--broker` of `dlq` and `queue stats`: act on a broker's queue instead of the data
/// directory's (raw; checked by [`crate::config::load`]).
#[derive(Debug, Clone, Default, Args)]
pub struct BrokerFlags {
    #[arg(config_key = (&BROKER_URL, Cmd::Dlq))]
    pub broker: Option<String>,
    #[arg(config_key = (&BROKER_TLS_CA_FILE, Cmd::Dlq))]
    pub broker_ca: Option<String>,
    #[arg(config_key = (&BROKER_ALLOW_VOLATILE, Cmd::Dlq))]
    pub allow_volatile: bool,
    /// Bearer token with the admin scope, for an `ackline serve` broker (the secret only).
    /// Prefer ACKLINE_TOKEN or --token-file: a flag's value shows in /proc/PID/cmdline
    #[arg(
        long,
        env = "ACKLINE_TOKEN",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub token: Option<String>,
    /// File holding the bearer token (the secret only, surrounding whitespace ignored), instead
    /// of --token
    #[arg(long, value_name = "FILE", conflicts_with = "token")]
    pub token_file: Option<String>,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Selection {
    /// Every entry
    #[arg(long)]
    pub all: bool,
    /// Entries with these keys
    #[arg(long = "key", value_name = "KEY", num_args = 1..)]
    pub keys: Vec<u64>,
    /// Entries whose message has these ids
    #[arg(long = "id", value_name = "ID", num_args = 1..)]
    pub ids: Vec<String>,
    /// Entries whose reason contains this text (not blank: every entry is --all)
    #[arg(long, value_name = "TEXT")]
    pub reason_contains: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List entries in key order, a page at a time
    List {
        /// The queue [default: the pipeline's, queue.name, normally logs]
        #[arg(long)]
        queue: Option<String>,
        /// Start after this key (the previous page's `next_after`)
        #[arg(long, value_name = "KEY")]
        after: Option<u64>,
        /// Entries per page
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        broker: BrokerFlags,
    },
    /// Show entries in full, by key or by message id
    Show {
        /// The queue [default: the pipeline's, queue.name, normally logs]
        #[arg(long)]
        queue: Option<String>,
        /// The entry's key
        #[arg(required_unless_present = "id", conflicts_with = "id")]
        key: Option<u64>,
        /// The message id
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        broker: BrokerFlags,
    },
    /// Put entries back in the queue (attempts reset)
    Replay {
        /// The queue [default: the pipeline's, queue.name, normally logs]
        #[arg(long)]
        queue: Option<String>,
        #[command(flatten)]
        sel: Selection,
        #[command(flatten)]
        broker: BrokerFlags,
    },
    /// Delete entries for good
    Purge {
        /// The queue [default: the pipeline's, queue.name, normally logs]
        #[arg(long)]
        queue: Option<String>,
        #[command(flatten)]
        sel: Selection,
        #[command(flatten)]
        broker: BrokerFlags,
    },
}
