//! Command-line syntax of the harness's commands, `ackline demo` and `ackline bench` (clap
//! derive), with the hidden child processes they start (`demo queue-worker`,
//! `demo pipeline-node`, `bench queue-fill`). Only parsing lives here.
//!
//! A leaf: this module imports nothing from the crate's other modules; it reuses the product's
//! [`RunArgs`] for the pipeline demo's node, which is `ackline run` with another processing
//! step.
//!
//! Invariant: the user-facing flags are those `ackline demo` and `ackline bench` always had;
//! the child processes' commands are hidden from `--help`.

use std::path::PathBuf;

use ackline_app::cli::RunArgs;
use clap::{Args, Subcommand, ValueEnum};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DemoCmd {
    #[command(subcommand)]
    pub sub: Option<DemoSub>,
    // `--help` sorts flags by display slot beside the global flags; each subcommand, hidden
    // ones too, takes a slot before these flags. They start at slot 1, as they did when
    // `queue` was the only subcommand, so `demo --help` lists them as it always did.
    #[command(flatten, next_display_order = 1)]
    pub pipeline: PipelineDemoArgs,
}

#[derive(Debug, Subcommand)]
pub enum DemoSub {
    /// Queue crash demo: a worker process publishes and consumes under load, is killed with
    /// SIGKILL at random moments and restarted; then the books are checked (exit 3 if they do
    /// not balance)
    Queue(DemoArgs),
    /// The queue demo's worker process, which `demo queue` kills (internal)
    #[command(hide = true)]
    QueueWorker(WorkerArgs),
    /// The pipeline demo's node: `ackline run` whose processing step fails lines marked
    /// `flaky-retry` once and `poison-retry` always, which `demo` kills (internal)
    #[command(hide = true)]
    PipelineNode(Box<RunArgs>),
}

#[derive(Debug, Args)]
pub struct PipelineDemoArgs {
    /// Log lines to generate in total
    #[arg(long, default_value_t = 20_000)]
    pub lines: u64,
    /// Times `ackline run` is killed with SIGKILL before the final run
    #[arg(long, default_value_t = 3)]
    pub crashes: u32,
    /// Seed for the traffic and the kill moments (random when not given; always printed)
    #[arg(long)]
    pub seed: Option<u64>,
    /// Longest time a run lives before it is killed, in milliseconds
    #[arg(long, default_value_t = 1500)]
    pub max_kill_ms: u64,
    /// How long the store is down at the start of the final run, in milliseconds
    #[arg(long, default_value_t = 2000)]
    pub outage_ms: u64,
    /// Time allowed for each run to start and for the final run to drain, in seconds
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
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
    /// Longest time a worker runs before it is killed, in milliseconds, counted from its first
    /// publish or delivery (kill moments are uniform in [0, this))
    #[arg(long, default_value_t = 600)]
    pub max_kill_ms: u64,
    /// Most journal lines (publishes, deliveries, settlements) a worker writes before it is
    /// killed: each run is killed at its time or after a uniform [1, this] lines, whichever
    /// comes first, so a fast machine cannot finish the work before the kills
    #[arg(long, default_value_t = 3000)]
    pub max_kill_lines: u64,
    /// Consumer threads in the worker
    #[arg(long, default_value_t = 2)]
    pub consumers: usize,
    /// Time allowed for a run to show progress, and for the final run to drain, in seconds
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
    /// End to end on the loghub mix (file in, stored in SQLite), beside a bare batched SQLite
    /// insert of the same records in the same run
    Pipeline(BenchPipelineArgs),
    /// Split mode on loopback: HTTP ingest (batch sizes 1, 100, 1000) and remote workers over
    /// the lease API, each beside the in-process figure measured in the same run
    Http(BenchHttpArgs),
    /// The recovery benchmark's filler process, which `bench queue` kills (internal)
    #[command(hide = true)]
    QueueFill(FillArgs),
}

#[derive(Debug, Args)]
pub struct BenchPipelineArgs {
    /// Lines to push through (the loghub samples, interleaved and repeated)
    #[arg(long, default_value_t = 200_000)]
    pub lines: usize,
    /// Workers of the pipeline
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Records per store transaction (the pipeline's batch size and the bare insert's)
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
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

/// `ackline bench http`.
#[derive(Debug, Args)]
pub struct BenchHttpArgs {
    /// Lines per ingest phase (each batch size, each side), rounded up to whole requests;
    /// 0 skips the ingest comparison
    #[arg(long, default_value_t = 400_000)]
    pub lines: u64,
    /// Lines per request (and per in-process publish call), comma-separated
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
    pub batch_sizes: Vec<usize>,
    /// Concurrent ingest clients: HTTP connections, and publishing threads in process
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Longest time of one ingest phase, in seconds (the phase then stops; its rate is what
    /// was confirmed in the time taken)
    #[arg(long, default_value_t = 10.0)]
    pub max_phase_secs: f64,
    /// Slices each ingest phase is cut into, run alternately with the other side's (HTTP
    /// first, then in process first, ...), so load changes on a shared machine fall on both
    #[arg(long, default_value_t = 4)]
    pub rounds: usize,
    /// Messages pre-loaded and drained by the workers, on each side; 0 skips the remote-worker
    /// comparison
    #[arg(long, default_value_t = 200_000)]
    pub messages: u64,
    /// Workers of the runtime (both sides)
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Deliveries per store transaction (both sides, and the bare store write)
    #[arg(long, default_value_t = 1000)]
    pub worker_batch: usize,
    /// Most unsettled deliveries per worker [default: 2 x --worker-batch]
    #[arg(long)]
    pub prefetch: Option<usize>,
    /// Stores the workers write to, comma-separated; each is run over both brokers
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "memory,ndjson"
    )]
    pub stores: Vec<StoreKind>,
    /// Time allowed for each drain, in seconds (an error beyond)
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
}

/// A store for the remote-worker comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// In memory, idempotent by id, not durable: the queue path alone
    Memory,
    /// The NDJSON file store: durable, one append and one fsync per batch
    Ndjson,
}
