//! `--metrics-listen ADDR` of `run` and `work`: the worker runtime's Prometheus metrics
//! (counters, store-batch and end-to-end latency histograms; `ackline_worker::metrics`) at
//! `http://ADDR/metrics`, served by `ackline_server::serve_metrics`.
//!
//! Invariants:
//! - Off unless asked for (`metrics.listen`); the address is bound before the workers start,
//!   so a taken port is an error at start (exit 1), never a silent absence of metrics.
//! - The endpoint stops with the command's stop signal; a scrape never blocks the workers
//!   (it reads atomic counters).

use std::net::SocketAddr;
use std::sync::Arc;

use ackline_worker::Stats;
use anyhow::Context;
use tokio::sync::watch;

use crate::output::Out;

/// Binds `addr`, then serves the metrics of `stats` on a task of its own until `stop` turns
/// true.
pub async fn spawn(
    addr: SocketAddr,
    stats: Arc<Stats>,
    mut stop: watch::Receiver<bool>,
    out: Out,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics endpoint on {addr}"))?;
    let bound = listener
        .local_addr()
        .with_context(|| format!("reading the metrics endpoint's address ({addr})"))?;
    out.note(&format!("ackline: metrics on http://{bound}/metrics"));
    let render = move || ackline_worker::metrics::render(&stats);
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = ackline_server::serve_metrics(listener, render, shutdown).await {
            tracing::warn!(error = %e, "the metrics endpoint stopped");
        }
    });
    Ok(())
}
