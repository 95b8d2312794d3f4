//! Command-line syntax (clap derive). Only parsing lives here; each command's work is in its
//! own module.
//!
//! Invariants:
//! - Every flag that clap rejects exits with code 2 and a one-line message (clap's own).
//! - Values that clap cannot check by type (lists, queue names) are checked by the command
//!   and reported as [`crate::exit::Usage`] errors, which also exit 2.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// ackline: a log pipeline that never loses a log line.
///
/// For now it drives the embedded durable queue: a crash demo that proves no confirmed
/// message is lost across kill -9, a benchmark, and operator tools for queues and their
/// dead-letter queues.
#[derive(Debug, Parser)]
#[command(name = "ackline", version, propagate_version = true)]
pub struct Cli {
    /// Data directory (queues live in DIR/queues/NAME) [default: ./ackline-data]
    #[arg(long, global = true, env = "ACKLINE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Print one JSON object on stdout instead of human-readable text
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The data directory to use, with its default applied.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("./ackline-data"))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Crash demo: a worker process publishes and consumes under load, is killed with SIGKILL
    /// at random moments and restarted; then the books are checked (exit 3 if they do not
    /// balance)
    Demo(DemoArgs),
    /// Benchmarks
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Queue tools
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Dead-letter queue tools: list, show, replay, purge
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// The demo's worker process (internal)
    #[command(hide = true)]
    QueueWorker(WorkerArgs),
    /// The recovery benchmark's filler process (internal)
    #[command(hide = true)]
    BenchFill(FillArgs),
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Messages to publish in total
    #[arg(long, default_value_t = 20_000)]
    pub messages: u64,
    /// Times the worker is killed with SIGKILL before the final (draining) run
    #[arg(long, default_value_t = 5)]
    pub crashes: u32,
    /// Seed for kill moments and for the worker's choices (random when not given; always
    /// printed so a run can be replayed)
    #[arg(long)]
    pub seed: Option<u64>,
    /// Longest time a worker runs before it is killed, in milliseconds (kill moments are
    /// uniform in [0, this))
    #[arg(long, default_value_t = 600)]
    pub max_kill_ms: u64,
    /// Consumer threads in the worker
    #[arg(long, default_value_t = 2)]
    pub consumers: usize,
    /// Time allowed for the final draining run, in seconds
    #[arg(long, default_value_t = 120)]
    pub drain_timeout: u64,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Journal directory (one file per thread per run)
    #[arg(long)]
    pub journal: PathBuf,
    /// Run number (names the journal files)
    #[arg(long)]
    pub run: u32,
    /// Messages to publish in total (ids m-0 .. m-(N-1))
    #[arg(long)]
    pub messages: u64,
    /// Seed for nack decisions
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Consumer threads
    #[arg(long, default_value_t = 2)]
    pub consumers: usize,
    /// Exit 0 once everything is published and nothing is pending
    #[arg(long)]
    pub drain: bool,
}

#[derive(Debug, Args)]
pub struct FillArgs {
    /// Data directory to fill
    #[arg(long)]
    pub dir: PathBuf,
    /// Messages to publish
    #[arg(long)]
    pub messages: u64,
    /// Payload bytes
    #[arg(long)]
    pub size: usize,
    /// Fsync mode
    #[arg(long, value_enum)]
    pub fsync: FsyncMode,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Durable publish + receive + ack, concurrently; memory per pending message; recovery
    /// time after kill -9
    Queue(BenchQueueArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AckMode {
    /// One `ack` call per message (commits waited on in bulk afterwards)
    Individual,
    /// One `settle` call per receive batch
    Batch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PublishMode {
    /// `publish(batch)`: each call returns once its batch is durable
    Batch,
    /// `publish_nowait(batch)`, waiting on the commits later (a window of batches in flight)
    Pipelined,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FsyncMode {
    /// fsync before every confirmation (group commit)
    Always,
    /// fsync every 10 ms; a power loss may lose the last 10 ms of confirmations
    Interval,
    /// never fsync (the kernel flushes when it likes)
    Never,
}

#[derive(Debug, Args)]
pub struct BenchQueueArgs {
    /// Messages per run
    #[arg(long, default_value_t = 200_000)]
    pub messages: u64,
    /// Payload bytes per message
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Producer thread counts, comma-separated (paired with --consumers when both lists have
    /// the same length, otherwise every combination is run)
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    pub producers: Vec<usize>,
    /// Consumer thread counts, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    pub consumers: Vec<usize>,
    /// How deliveries are acked (comma-separated to run several)
    #[arg(long, value_enum, value_delimiter = ',', default_value = "individual")]
    pub ack: Vec<AckMode>,
    /// How producers publish (comma-separated to run several)
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "batch,pipelined"
    )]
    pub publish: Vec<PublishMode>,
    /// Durability of confirmations
    #[arg(long, value_enum, default_value = "always")]
    pub fsync: FsyncMode,
    /// Messages per publish call
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Publish batches in flight per producer in pipelined mode
    #[arg(long, default_value_t = 16)]
    pub window: usize,
    /// Most deliveries per receive call (the prefetch)
    #[arg(long, default_value_t = 1000)]
    pub prefetch: usize,
    /// Pending messages for the recovery-after-kill-9 measurement (0 skips it)
    #[arg(long, default_value_t = 1_000_000)]
    pub recovery_messages: u64,
    /// Skip the memory-per-pending-message measurement
    #[arg(long)]
    pub no_memory: bool,
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Counts of one queue, or of every queue in the data directory
    Stats {
        /// The queue (all queues when omitted)
        queue: Option<String>,
    },
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
    /// Entries whose reason contains this text
    #[arg(long, value_name = "TEXT")]
    pub reason_contains: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List entries in key order, a page at a time
    List {
        /// The queue
        #[arg(long)]
        queue: String,
        /// Start after this key (the previous page's `next_after`)
        #[arg(long, value_name = "KEY")]
        after: Option<u64>,
        /// Entries per page
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show entries in full, by key or by message id
    Show {
        /// The queue
        #[arg(long)]
        queue: String,
        /// The entry's key
        #[arg(required_unless_present = "id", conflicts_with = "id")]
        key: Option<u64>,
        /// The message id
        #[arg(long)]
        id: Option<String>,
    },
    /// Put entries back in the queue (attempts reset)
    Replay {
        /// The queue
        #[arg(long)]
        queue: String,
        #[command(flatten)]
        sel: Selection,
    },
    /// Delete entries for good
    Purge {
        /// The queue
        #[arg(long)]
        queue: String,
        #[command(flatten)]
        sel: Selection,
    },
}
