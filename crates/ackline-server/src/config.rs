//! [`ServerConfig`]: what the server listens on, which queue options it uses, its tokens and
//! its limits. Checked once by [`ServerConfig::validate`] before anything is opened.
//!
//! Invariant: a server bound beyond loopback always has at least one token (no anonymous
//! access from the network).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ackline_queue::QueueOptions;

use crate::auth::Token;
use crate::error::ServerError;

/// Room a syslog message needs besides its frame (id, `input` header, record framing).
const SYSLOG_MESSAGE_OVERHEAD: usize = 1024;

/// Request, connection and batch limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body (413 beyond). Default 8 MiB.
    pub max_body_bytes: usize,
    /// Whole-request deadline (408 beyond), long-polls included. Default 60 s.
    pub request_timeout: Duration,
    /// Time allowed to send a request's headers, counted from when the connection starts
    /// waiting for them: after connecting, or after the previous response (so it is also the
    /// keep-alive idle timeout). Slowloris and idle keep-alive connections close after it.
    /// Default 10 s.
    pub header_read_timeout: Duration,
    /// Concurrent connections (HTTP; syslog TCP has its own table of this size). When full,
    /// the connection idle the longest is closed to make room; when every one is busy, more
    /// wait in the listen backlog. Default 1024.
    pub max_connections: usize,
    /// Concurrent connections from one IP address (HTTP, and syslog TCP separately); more are
    /// refused at once (HTTP: 503). Default 256.
    pub max_connections_per_client: usize,
    /// Longest long-poll wait a receive may ask for. Default 30 s (below `request_timeout`).
    pub max_receive_wait: Duration,
    /// Most deliveries one receive returns. Default 10,000.
    pub max_receive_batch: usize,
    /// How long `GET /readyz` reuses its last check of the default queue (a sync through the
    /// queue's writer) before checking again; one check at a time. Default 1 s.
    pub readiness_interval: Duration,
    /// How long shutdown waits for open requests. Default 10 s.
    pub shutdown_grace: Duration,
    /// `Retry-After` sent when the queue is full (and how long syslog over TCP waits before
    /// trying a full queue again). Default 1 s.
    pub retry_after: Duration,
    /// Most lines (messages) one `POST /v1/logs` may carry; more is 413 and nothing of the
    /// request is queued. Each line costs a message's bookkeeping beyond its bytes, so this
    /// bounds the memory one request can claim (an 8 MiB body of `a\n` would be 4.19M
    /// messages). Default 100,000: an 8 MiB body of 84-byte lines still fits.
    pub max_lines_per_request: usize,
    /// Longest lease a worker may ask for (`lease_ms` of a session, `extend`); 400 beyond.
    /// Default 24 h, as `worker.lease` of the CLI. A session unheard for its lease plus 30 s
    /// is dropped, so this also bounds how long an abandoned session lives.
    pub max_lease: Duration,
    /// Most sessions open at once per token (all sessions, when no tokens are configured);
    /// one more is 429 `too_many_sessions` with `Retry-After`. A `work` process opens one per
    /// worker (`worker.workers`, at most 256), and the sessions of a killed one linger until
    /// they expire, so the default leaves room for four at their maximum. Default 1024.
    pub max_sessions_per_token: usize,
    /// Longest nack error or reject reason kept (bytes); a longer one is cut at a character
    /// boundary and ends with `… [truncated N bytes]`, before it reaches the queue (a dead
    /// letter's reason and last error live in memory). Default 4 KiB.
    pub max_reason_bytes: usize,
    /// Largest syslog frame (TCP frame or UDP datagram); larger ones are refused. Default
    /// 64 KiB; at least 1 KiB below the queue's `max_message_bytes`.
    pub syslog_max_frame: usize,
    /// How long a syslog TCP connection may stall inside a frame before the incomplete frame
    /// is dropped and the connection closed. Default 30 s.
    pub syslog_frame_timeout: Duration,
    /// How long a syslog TCP connection may stay silent between frames. Default 10 min.
    pub syslog_idle_timeout: Duration,
    /// Receive buffer (`SO_RCVBUF`) asked for the syslog UDP socket; datagrams arriving while
    /// it is full are dropped by the kernel (counted in `ackline_syslog_dropped_total`). The
    /// kernel caps it at `net.core.rmem_max` (Linux); 0 leaves the system default. Default
    /// 4 MiB.
    pub syslog_udp_recv_buffer: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 8 << 20,
            request_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_connections_per_client: 256,
            max_receive_wait: Duration::from_secs(30),
            max_receive_batch: 10_000,
            readiness_interval: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(10),
            retry_after: Duration::from_secs(1),
            max_lines_per_request: 100_000,
            max_lease: Duration::from_secs(24 * 3600),
            max_sessions_per_token: 1024,
            max_reason_bytes: ackline_broker::MAX_REASON_BYTES,
            syslog_max_frame: 64 << 10,
            syslog_frame_timeout: Duration::from_secs(30),
            syslog_idle_timeout: Duration::from_secs(600),
            syslog_udp_recv_buffer: 4 << 20,
        }
    }
}

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The data directory (the embedded queue's).
    pub data_dir: PathBuf,
    /// Listen address. Default `127.0.0.1:8470`; port 0 picks a free one.
    pub listen: SocketAddr,
    /// The queue ingest writes to and clients use by default. Default `logs`.
    pub default_queue: String,
    /// Options of every queue the server opens.
    pub queue_options: QueueOptions,
    /// Bearer tokens. Empty: no auth, allowed only on loopback.
    pub tokens: Vec<Token>,
    /// Syslog over TCP (RFC 6587) on this address; `None` (the default): off. Syslog has no
    /// authentication: an address beyond loopback accepts frames from anyone who can reach it.
    pub syslog_tcp: Option<SocketAddr>,
    /// Syslog over UDP on this address; `None` (the default): off. No authentication.
    pub syslog_udp: Option<SocketAddr>,
    /// Queues that a request naming them may create with its route's scope alone (ingest to
    /// `?queue=NAME`, publish, a worker's session). Any other new queue needs a token with the
    /// `admin` scope (`PUT /v1/queues/{queue}`, or a route used with an admin token). Default
    /// empty.
    pub auto_create_queues: Vec<String>,
    /// Most queues in the data directory, the default queue included; creating one more is
    /// refused (403). Each open queue holds two threads and a file. Default 100.
    pub max_queues: usize,
    /// Limits.
    pub limits: Limits,
    /// Serve the web console at `/` and `/ui` (`ackline-console`). Default true.
    pub console: bool,
    /// The console's settings.
    pub console_config: ackline_console::ConsoleConfig,
    /// The broker a relay in this process forwards to (redacted), shown by the console.
    pub relay_to: Option<String>,
}

impl ServerConfig {
    /// Defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ServerConfig {
            data_dir: data_dir.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8470)),
            default_queue: "logs".into(),
            queue_options: QueueOptions::default(),
            tokens: Vec::new(),
            syslog_tcp: None,
            syslog_udp: None,
            auto_create_queues: Vec::new(),
            max_queues: 100,
            limits: Limits::default(),
            console: true,
            console_config: ackline_console::ConsoleConfig::default(),
            relay_to: None,
        }
    }

    /// Checks the configuration, naming the first bad field.
    pub fn validate(&self) -> Result<(), ServerError> {
        let bad = |field, reason: &str| {
            Err(ServerError::Config {
                field,
                reason: reason.into(),
            })
        };
        if !self.listen.ip().is_loopback() && self.tokens.is_empty() {
            return bad(
                "tokens",
                "at least one bearer token when listening beyond loopback",
            );
        }
        if self.tokens.iter().any(|t| t.secret().len() < 16) {
            return bad("tokens", "each token at least 16 characters");
        }
        if !ackline_queue::valid_queue_name(&self.default_queue) {
            return bad("default_queue", "1 to 128 of A-Z a-z 0-9 . _ -");
        }
        if self.max_queues == 0 {
            return bad("max_queues", "at least 1 (the default queue)");
        }
        if let Some(n) = self
            .auto_create_queues
            .iter()
            .find(|n| !ackline_queue::valid_queue_name(n))
        {
            return bad(
                "auto_create_queues",
                &format!("{n:?} is not a queue name: 1 to 128 of A-Z a-z 0-9 . _ -"),
            );
        }
        let l = &self.limits;
        if l.max_body_bytes == 0
            || l.max_connections == 0
            || l.max_connections_per_client == 0
            || l.max_receive_batch == 0
        {
            return bad(
                "limits",
                "max_body_bytes, max_connections, max_connections_per_client and max_receive_batch above 0",
            );
        }
        if l.header_read_timeout.is_zero() {
            return bad("limits.header_read_timeout", "above 0");
        }
        let syslog = self.syslog_tcp.is_some() || self.syslog_udp.is_some();
        if syslog
            && (l.syslog_max_frame == 0
                || l.syslog_max_frame.saturating_add(SYSLOG_MESSAGE_OVERHEAD)
                    > self.queue_options.max_message_bytes)
        {
            return bad(
                "limits.syslog_max_frame",
                "above 0 and at least 1 KiB below the queue's max_message_bytes (room for the id and headers)",
            );
        }
        if l.syslog_frame_timeout.is_zero() || l.syslog_idle_timeout.is_zero() {
            return bad(
                "limits.syslog_frame_timeout",
                "syslog_frame_timeout and syslog_idle_timeout above 0",
            );
        }
        if l.max_lines_per_request == 0 || l.max_sessions_per_token == 0 {
            return bad(
                "limits.max_lines_per_request",
                "max_lines_per_request and max_sessions_per_token above 0",
            );
        }
        if l.max_lease < Duration::from_millis(1) || l.max_reason_bytes < 64 {
            return bad(
                "limits.max_lease",
                "max_lease at least 1 ms and max_reason_bytes at least 64",
            );
        }
        if l.max_receive_wait >= l.request_timeout {
            return bad("limits.max_receive_wait", "below limits.request_timeout");
        }
        self.queue_options.validate().map_err(ServerError::Open)
    }
}
