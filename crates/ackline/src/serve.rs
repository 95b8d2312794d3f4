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
//!   flushed and closed) and the process exits 0; a second one exits at once (130).

use std::path::Path;

use ackline_server::{Server, ServerConfig, ServerError};
use anyhow::Context;
use serde::Serialize;

use crate::cli::{PipelineFlags, ServeArgs};
use crate::config::{self, Config, Env};
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
}

/// The configuration of `serve` (the flags as the config layer's flags).
pub fn load(a: &ServeArgs, data_dir: &Path, config_file: Option<&Path>) -> anyhow::Result<Config> {
    let flags = PipelineFlags {
        queue: a.queue.clone(),
        listen: a.server.listen.clone(),
        tokens: a.server.tokens.clone(),
        syslog_tcp: a.server.syslog_tcp.clone(),
        syslog_udp: a.server.syslog_udp.clone(),
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
    sc.default_queue = cfg.queue.clone();
    sc.queue_options = cfg.queue_options.clone();
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
    let rt = crate::run::tokio_runtime()?;
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
        };
        out.emit(&l, || {
            let mut syslog = String::new();
            if let Some(a) = &l.syslog_tcp {
                syslog += &format!(", syslog tcp {a}");
            }
            if let Some(a) = &l.syslog_udp {
                syslog += &format!(", syslog udp {a}");
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
        server
            .run(async move {
                let _ = signal.wait_for(|stop| *stop).await;
            })
            .await
            .map_err(server_error)?;
        out.note("ackline serve: stopped");
        Ok(())
    })
}
