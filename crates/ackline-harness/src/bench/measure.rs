//! What every benchmark reports beside its figures: latency percentiles and the machine it
//! ran on.
//!
//! Invariant: percentiles are read off the sorted samples (nearest rank, never interpolated),
//! so every figure reported is a latency that was measured.

use serde::Serialize;

/// Latency percentiles, microseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Pct {
    /// Median.
    pub p50: u32,
    /// 90th percentile.
    pub p90: u32,
    /// 99th.
    pub p99: u32,
    /// 99.9th.
    pub p999: u32,
    /// Largest.
    pub max: u32,
}

/// The percentiles of `v` (all zero when it is empty).
pub(crate) fn pct(mut v: Vec<u32>) -> Pct {
    if v.is_empty() {
        return Pct::default();
    }
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    Pct {
        p50: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
        p999: at(0.999),
        max: v[v.len() - 1],
    }
}

/// The machine a benchmark ran on.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Machine {
    pub(crate) cpu: String,
    pub(crate) cores: usize,
    pub(crate) kernel: String,
}

/// This machine: CPU model, cores available to this process, kernel release.
pub(crate) fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
    }
}
