//! Log output: `tracing` events from every crate, on stderr, as text or JSON lines.
//!
//! Invariants: logs never go to stdout (which carries the `--json` result alone); a bad filter
//! is a usage error (exit 2) naming the flag; the default (`warn`) keeps the quiet commands
//! quiet while still showing a worker's "store unavailable" or a recovery's damage report.

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;
use crate::exit::usage;

/// Installs the global subscriber.
pub fn init(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(filter).map_err(|e| {
        usage(format!(
            "invalid --log / ACKLINE_LOG filter {filter:?}: {e}"
        ))
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true);
    let installed = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
    };
    // Already installed (only possible in tests that call main twice): keep the first.
    let _ = installed;
    Ok(())
}
