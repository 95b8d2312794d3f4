//! `ackline serve`: split mode's server. The embedded queue in `<data-dir>` behind HTTP
//! (`ackline_server`), until SIGTERM or SIGINT.
//!
//! Invariants:
//! - The configuration is built by [`crate::config::load`] like `run`'s and `check`'s, so
//!   `ackline check --listen ... --token ...` accepts exactly what `serve` starts with; a
//!   listen address beyond loopback without tokens is a configuration error (exit 2) before
//!   anything is opened.
//! - The bound address is printed only once the listener is bound (port 0 resolved), on one
//!   stdout line (human) or as the one JSON object of `--json`; scripts may connect as soon
//!   as they have read it.
//! - The first signal stops the server gracefully ([`ackline_server::Server::run`]: open
//!   requests finish, sessions are dropped so their deliveries are released, the queue is
//!   flushed and closed) and the process exits 0; a second one (1 s or more after the first;
//!   sooner it is the same stop, see `signals.rs`) exits at once (130).
//! - With `--broker` (scale-out ingest node) a relay ([`ackline_worker::forward`]) moves
//!   everything queued here to the broker's queue of the same name; a message is acked here
//!   only once the broker confirmed it, so the local queue is a disk buffer that rides out a
//!   broker outage. Ingest starts at once, before the broker is reachable. The relay stops
//!   (releasing what it holds) before the queue is closed. A refusal waiting cannot fix (bad
//!   credentials) stops the server with exit 1.

use std::path::Path;
use std::sync::Arc;

use ackline_broker::Broker;
use ackline_broker::embedded::EmbeddedBroker;
use ackline_http::HttpBroker;
use ackline_server::{Server, ServerConfig, ServerError};
use ackline_worker::forward::{self, ForwardConfig, ForwardStats};
use anyhow::Context;
use serde::Serialize;
use tokio::sync::watch;

use crate::cli::{PipelineFlags, ServeArgs, WorkerFlags};
use crate::config::{self, BrokerUrl, Config, Env};
use crate::exit::usage;
use crate::output::Out;

#[derive(Debug, Serialize)]
struct Listening {
    listening: String,
    url: String,
    queue: String,
    data_dir: String,
    auth: bool,
    syslog_tcp: Option<String>,
    syslog_udp: Option<String>,
    relay_to: Option<String>,
}

/// The configuration of `serve` (the flags as the config layer's flags).
pub fn load(a: &ServeArgs, data_dir: &Path, config_file: Option<&Path>) -> anyhow::Result<Config> {
    let flags = PipelineFlags {
        queue: a.queue.clone(),
        server: a.server.clone(),
        broker: a.broker.clone(),
        broker_ca: a.broker_ca.clone(),
        allow_volatile: a.allow_volatile,
        worker: WorkerFlags {
            max_attempts: a.max_attempts.clone(),
            ..WorkerFlags::default()
        },
        ..PipelineFlags::default()
    };
    config::load(data_dir, config_file, &flags, &Env::process())
}

/// The server's configuration from the pipeline's.
pub fn server_config(cfg: &Config) -> ServerConfig {
    let mut sc = ServerConfig::new(&cfg.data_dir);
    sc.listen = cfg.server.listen;
    sc.tokens = cfg.server.tokens.clone();
    sc.syslog_tcp = cfg.server.syslog_tcp;
    sc.syslog_udp = cfg.server.syslog_udp;
    sc.limits.max_connections = cfg.server.max_connections;
    sc.limits.max_connections_per_client = cfg.server.max_connections_per_client;
    sc.limits.header_read_timeout = cfg.server.header_read_timeout;
    sc.max_queues = cfg.server.max_queues;
    sc.limits.syslog_udp_recv_buffer = cfg.server.syslog_udp_recv_buffer;
    sc.auto_create_queues = cfg.server.auto_create_queues.clone();
    sc.default_queue = cfg.queue.clone();
    sc.queue_options = cfg.queue_options.clone();
    sc.limits.max_lines_per_request = cfg.server.max_lines_per_request;
    sc.limits.max_sessions_per_token = cfg.server.max_sessions_per_token;
    sc.relay_to = cfg.broker.as_ref().map(|b| b.to_string());
    sc
}

fn server_error(e: ServerError) -> anyhow::Error {
    match e {
        ServerError::Config { .. } => usage(e.to_string()),
        other => anyhow::Error::new(other),
    }
}

/// `ackline serve`.
pub fn run(
    a: &ServeArgs,
    data_dir: &Path,
    config_file: Option<&Path>,
    out: Out,
) -> anyhow::Result<()> {
    let cfg = load(a, data_dir, config_file)?;
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data directory {}", cfg.data_dir.display()))?;
    let sc = server_config(&cfg);
    let rt = crate::runtime::build()?;
    rt.block_on(async {
        let mut signal = crate::signals::install()?;
        let server = Server::bind(sc).await.map_err(server_error)?;
        let addr = server.local_addr();
        let l = Listening {
            listening: addr.to_string(),
            url: format!("http://{addr}"),
            queue: cfg.queue.clone(),
            data_dir: cfg.data_dir.display().to_string(),
            auth: !cfg.server.tokens.is_empty(),
            syslog_tcp: server.syslog_tcp_addr().map(|a| a.to_string()),
            syslog_udp: server.syslog_udp_addr().map(|a| a.to_string()),
            relay_to: cfg.broker.as_ref().map(|b| b.to_string()),
        };
        out.emit(&l, || {
            let mut syslog = String::new();
            if let Some(a) = &l.syslog_tcp {
                syslog += &format!(", syslog tcp {a}");
            }
            if let Some(a) = &l.syslog_udp {
                syslog += &format!(", syslog udp {a}");
            }
            if let Some(b) = &l.relay_to {
                syslog += &format!(", relaying to {b}");
            }
            format!(
                "ackline serve: listening on {} (queue {}, data {}, {}{syslog})\n",
                l.url,
                l.queue,
                l.data_dir,
                if l.auth {
                    "bearer tokens required"
                } else {
                    "no auth: loopback only"
                }
            )
        })?;
        let (relay_stop, relay_halt) = watch::channel(false);
        let stats = Arc::new(ForwardStats::default());
        let relay = match cfg.broker.clone() {
            None => None,
            Some(url) => {
                let src = server.queue(&cfg.queue).map_err(|e| anyhow::anyhow!("opening queue {}: {}", cfg.queue, e.message))?;
                Some(tokio::spawn(relay(
                    src,
                    url,
                    cfg.clone(),
                    stats.clone(),
                    relay_halt,
                    out,
                )))
            }
        };
        let mut outcome = None;
        let shutdown = async {
            match relay {
                None => {
                    let _ = signal.wait_for(|stop| *stop).await;
                }
                Some(mut task) => {
                    tokio::select! {
                        _ = signal.wait_for(|stop| *stop) => {
                            relay_stop.send_replace(true);
                            outcome = Some((&mut task).await);
                        }
                        r = &mut task => outcome = Some(r),
                    }
                }
            }
        };
        server.run(shutdown).await.map_err(server_error)?;
        match outcome {
            Some(Ok(Err(e))) => return Err(e.context("the relay to the broker stopped")),
            Some(Err(e)) => return Err(anyhow::anyhow!("the relay task failed: {e}")),
            _ => {}
        }
        if cfg.broker.is_some() {
            let f = stats.snapshot();
            out.note(&format!(
                "ackline serve: relayed {} message(s), {} refused by the broker (dead-lettered here), {} publish retries",
                f.forwarded, f.refused, f.retries
            ));
        }
        out.note("ackline serve: stopped");
        Ok(())
    })
}

/// Connects to the broker (waiting while it is unreachable) and relays until `halt`.
async fn relay(
    src: EmbeddedBroker,
    url: BrokerUrl,
    cfg: Config,
    stats: Arc<ForwardStats>,
    halt: watch::Receiver<bool>,
    out: Out,
) -> anyhow::Result<()> {
    let fcfg = ForwardConfig::default();
    let src = Arc::new(src);
    match url {
        BrokerUrl::Http(u) => {
            let dst = HttpBroker::connect(&crate::work::http_queue_url(&u, &cfg.queue), None)
                .map_err(|e| usage(format!("invalid --broker: {e}")))?;
            if !crate::work::wait_ready(&dst, halt.clone(), out).await? {
                return Ok(());
            }
            run_relay(src, dst, fcfg, stats, halt).await
        }
        BrokerUrl::Amqp(u) => {
            let opts = crate::work::rabbit_options(&cfg);
            let Some(dst) =
                crate::work::connect_rabbit(u, &cfg.queue, opts, halt.clone(), out).await?
            else {
                return Ok(());
            };
            run_relay(src, dst, fcfg, stats, halt).await
        }
        BrokerUrl::Redis(u) => {
            let opts = crate::work::redis_options(&cfg);
            let Some(dst) =
                crate::work::connect_redis(u, &cfg.queue, opts, halt.clone(), out).await?
            else {
                return Ok(());
            };
            run_relay(src, dst, fcfg, stats, halt).await
        }
        BrokerUrl::Nats(u) => {
            // The relay only publishes: the consumer's AckWait stays the workers' lease.
            let opts = ackline_nats::NatsOptions {
                publish_only: true,
                ..crate::work::nats_options(&cfg)
            };
            let Some(dst) =
                crate::work::connect_nats(u, &cfg.queue, opts, halt.clone(), out).await?
            else {
                return Ok(());
            };
            let r = run_relay(src, dst.clone(), fcfg, stats, halt).await;
            dst.close().await;
            r
        }
        BrokerUrl::Kafka(u) => {
            // The relay only publishes: no consumer joins the workers' group.
            let opts = crate::work::kafka_options(&cfg);
            let Some(dst) =
                crate::work::connect_kafka(u, &cfg.queue, opts, halt.clone(), out).await?
            else {
                return Ok(());
            };
            run_relay(src, dst, fcfg, stats, halt).await
        }
    }
}

async fn run_relay<D: Broker>(
    src: Arc<EmbeddedBroker>,
    dst: D,
    fcfg: ForwardConfig,
    stats: Arc<ForwardStats>,
    halt: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    tracing::info!(destination = dst.name(), "relay started");
    forward::forward(src, Arc::new(dst), fcfg, stats, halt)
        .await
        .map_err(anyhow::Error::new)
}
