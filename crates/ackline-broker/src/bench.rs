//! The driver every backend's throughput benchmark shares (`examples/<backend>_bench.rs` of
//! ackline-rabbitmq, ackline-redis and ackline-nats), so that "the backend" and "the embedded
//! queue" rows of one run measure exactly the same work.
//!
//! The workload: [`SIZE`]-byte messages, one producer publishing confirmed batches of [`BATCH`]
//! concurrently with one consumer (prefetch [`PREFETCH`]) that acks every message individually;
//! a message counts once its ack is done. Latency is from the publish call (the payload carries
//! the time its batch was handed to `publish`) to receipt.
//!
//! Invariants: [`drive`] returns only after every one of the `n` messages was received and its
//! ack confirmed, and after the producer finished without error; every payload byte except the
//! 8-byte timestamp is `x`. Behind the `bench` feature: nothing here ships in a product build.

use std::error::Error;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ackline_queue::{Db, Fsync, QueueOptions};

use crate::embedded::EmbeddedBroker;
use crate::{Broker, BrokerError, Consumer, ConsumerOptions, Message, Settlement};

/// What a benchmark step returns.
pub type BenchResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// Payload bytes per message.
pub const SIZE: usize = 256;
/// Messages per published batch and per receive.
pub const BATCH: usize = 1000;
/// Unsettled deliveries the consumer may hold.
pub const PREFETCH: usize = 1000;
/// The longest one variant of one round may take.
pub const LIMIT: Duration = Duration::from_secs(300);

/// One variant's result in one round.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// Messages per second, publish of the first to ack of the last.
    pub rate: f64,
    /// Median publish-to-receipt latency, ms.
    pub p50_ms: f64,
    /// 99th percentile publish-to-receipt latency, ms.
    pub p99_ms: f64,
}

impl Outcome {
    /// `n` messages in `secs`, with their latencies in µs.
    pub fn new(n: usize, secs: f64, mut lat_us: Vec<u64>) -> Outcome {
        lat_us.sort_unstable();
        let pct = |p: f64| {
            let i = ((lat_us.len() as f64 - 1.0) * p).round() as usize;
            lat_us.get(i).copied().unwrap_or(0) as f64 / 1000.0
        };
        Outcome {
            rate: n as f64 / secs,
            p50_ms: pct(0.5),
            p99_ms: pct(0.99),
        }
    }
}

/// A payload stamped with the time since `t0` (the publish call's time).
pub fn payload(t0: Instant) -> Vec<u8> {
    let mut p = vec![b'x'; SIZE];
    let ns = t0.elapsed().as_nanos() as u64;
    p[..8].copy_from_slice(&ns.to_le_bytes());
    p
}

/// Microseconds since the time [`payload`] stamped into `p`.
pub fn latency_us(t0: Instant, p: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    if let Some(s) = p.get(..8) {
        b.copy_from_slice(s);
    }
    (t0.elapsed().as_nanos() as u64).saturating_sub(u64::from_le_bytes(b)) / 1000
}

/// A name no other run uses: `ackline-bench{sep}{kind}{sep}{pid}{sep}{round}{sep}{nanos}`
/// (`sep` because backends differ in which characters a name may hold).
pub fn unique(kind: &str, round: usize, sep: char) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "ackline-bench{sep}{kind}{sep}{}{sep}{round}{sep}{nanos:08x}",
        std::process::id()
    )
}

/// How far a [`drive`] got: what a variant that ran out of time reports.
#[derive(Debug, Default)]
pub struct Progress {
    /// Messages whose publish was confirmed.
    pub published: AtomicUsize,
    /// Deliveries received.
    pub received: AtomicUsize,
}

impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} published, {} received",
            self.published.load(Ordering::Relaxed),
            self.received.load(Ordering::Relaxed)
        )
    }
}

/// Publishes `n` messages through `broker` while one consumer receives and acks each one.
pub async fn drive<B: Broker>(broker: Arc<B>, n: usize) -> BenchResult<Outcome> {
    drive_counted(broker, n, Arc::new(Progress::default())).await
}

/// [`drive`], counting its progress in `progress`.
pub async fn drive_counted<B: Broker>(
    broker: Arc<B>,
    n: usize,
    progress: Arc<Progress>,
) -> BenchResult<Outcome> {
    let c = broker
        .consumer(ConsumerOptions {
            prefetch: PREFETCH,
            lease: Duration::from_secs(60),
        })
        .await?;
    let t0 = Instant::now();
    let b = broker.clone();
    let counted = progress.clone();
    let producer = tokio::spawn(async move {
        let mut sent = 0;
        while sent < n {
            let k = BATCH.min(n - sent);
            let batch = (sent..sent + k)
                .map(|i| Message::new(format!("b-{i}"), payload(t0)))
                .collect();
            b.publish(batch).await?;
            sent += k;
            counted.published.store(sent, Ordering::Relaxed);
        }
        Ok::<(), BrokerError>(())
    });
    let mut producer = Some(producer);
    let mut lat = Vec::with_capacity(n);
    while lat.len() < n {
        // A producer that gave up ends the run at once: the rest will never come.
        if let Some(p) = producer.take_if(|p| p.is_finished()) {
            p.await?.map_err(|e| {
                format!(
                    "publish failed ({progress}, {:.1} s into the run): {e}",
                    t0.elapsed().as_secs_f64()
                )
            })?;
        }
        let ds = c.receive(BATCH, Duration::from_millis(100)).await?;
        let mut items = Vec::with_capacity(ds.len());
        for d in ds {
            lat.push(latency_us(t0, &d.payload));
            items.push((d.tag, Settlement::Ack));
        }
        progress.received.store(lat.len(), Ordering::Relaxed);
        for r in c.settle(items).await? {
            r?;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    if let Some(p) = producer {
        p.await??;
    }
    c.close().await;
    Ok(Outcome::new(n, secs, lat))
}

/// The same work on the embedded queue in `dir` (`Fsync::Always`: confirmed after fsync).
pub async fn embedded(dir: &Path, n: usize) -> BenchResult<Outcome> {
    let db = Db::open(dir)?;
    let queue = db.queue(
        "bench",
        QueueOptions {
            fsync: Fsync::Always,
            ..Default::default()
        },
    )?;
    let broker = Arc::new(EmbeddedBroker::new(queue));
    let run = tokio::time::timeout(LIMIT, drive(broker.clone(), n)).await;
    drop(broker);
    db.close();
    run.map_err(|_| format!("embedded: not done within {LIMIT:?}"))?
}

/// The 1-minute load average, for the report.
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// The median of `v` (0 when empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        l if l % 2 == 1 => v[l / 2],
        l => (v[l / 2 - 1] + v[l / 2]) / 2.0,
    }
}

/// The command line every backend benchmark takes: `[MESSAGES] [ROUNDS] [VARIANTS]`
/// (defaults 200,000 and 3; variants comma-separated, all by default).
#[derive(Debug, Clone)]
pub struct Args {
    /// Messages per variant and round.
    pub n: usize,
    /// Rounds.
    pub rounds: usize,
    /// The variants to run (their keys); empty: all.
    pub only: Vec<String>,
}

impl Args {
    /// Reads the process's arguments; `keys` are the variants' keys.
    ///
    /// # Errors
    /// A number that does not parse, an unknown variant, no messages, or rounds outside 1..=20.
    pub fn from_env(keys: &[&str]) -> BenchResult<Args> {
        let mut args = std::env::args().skip(1);
        let n: usize = args
            .next()
            .map(|a| a.parse())
            .transpose()?
            .unwrap_or(200_000);
        let rounds: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(3);
        let only: Vec<String> = args
            .next()
            .map(|a| a.split(',').map(str::to_owned).collect())
            .unwrap_or_default();
        if let Some(bad) = only.iter().find(|k| !keys.contains(&k.as_str())) {
            return Err(format!("unknown variant {bad:?} ({})", keys.join(", ")).into());
        }
        if n == 0 || rounds == 0 || rounds > 20 {
            return Err("MESSAGES must be at least 1 and ROUNDS between 1 and 20".into());
        }
        Ok(Args { n, rounds, only })
    }

    /// Whether variant `key` runs.
    pub fn runs(&self, key: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|k| k == key)
    }
}

/// Each round's outcomes, by variant (`None`: not run, or failed).
pub type Rounds = Vec<Vec<Option<Outcome>>>;

/// Runs `args.rounds` rounds of the variants (`keys`, shown as `names`), each round starting
/// with the next variant, so none always runs first; `run(variant, round)` measures one.
/// Prints every outcome, and after each round `ratios(round's outcomes)` when it says
/// something. A variant that fails is printed as such and left out of its round (the others
/// run on), so one stalled variant does not cost the run's other measurements.
///
/// # Errors
/// Never: a failure of `run` is reported in its round (the `Result` is kept for callers'
/// `?`).
pub async fn rounds(
    args: &Args,
    keys: &[&str],
    names: &[&str],
    mut run: impl AsyncFnMut(usize, usize) -> BenchResult<Outcome>,
    ratios: impl Fn(&[Option<Outcome>]) -> Option<String>,
) -> BenchResult<Rounds> {
    let k = keys.len();
    let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
    let mut all: Rounds = Vec::with_capacity(args.rounds);
    let mut failed = 0usize;
    for round in 1..=args.rounds {
        let mut got: Vec<Option<Outcome>> = vec![None; k];
        for j in 0..k {
            let i = (j + round - 1) % k;
            if !args.runs(keys[i]) {
                continue;
            }
            // A variant that fails (out of time, say) is reported and left out of this
            // round; the other variants and rounds still run.
            let o = match run(i, round).await {
                Ok(o) => o,
                Err(e) => {
                    println!("round {round} {:<width$} FAILED: {e}", names[i]);
                    failed += 1;
                    continue;
                }
            };
            println!(
                "round {round} {:<width$} {:>9.0} msgs/s  p50 {:>8.1} ms  p99 {:>8.1} ms",
                names[i], o.rate, o.p50_ms, o.p99_ms
            );
            got[i] = Some(o);
        }
        if let Some(r) = ratios(&got) {
            println!("round {round} ratios: {r} (load average {})", load());
        }
        all.push(got);
    }
    if failed > 0 {
        println!("{failed} variant run(s) FAILED (above); the medians below leave them out");
    }
    Ok(all)
}

/// The median over the rounds of `f` of variant `i`.
pub fn median_of(all: &Rounds, i: usize, f: fn(&Outcome) -> f64) -> f64 {
    median(all.iter().filter_map(|g| g[i].as_ref().map(f)).collect())
}

/// Prints each variant's medians over the rounds.
pub fn print_medians(all: &Rounds, names: &[&str]) {
    let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
    println!("median of {} rounds:", all.len());
    for (i, v) in names.iter().enumerate() {
        if !all.iter().any(|g| g.get(i).is_some_and(Option::is_some)) {
            continue; // not run, or never finished
        }
        println!(
            "  {v:<width$} {:>9.0} msgs/s  p50 {:>8.1} ms  p99 {:>8.1} ms",
            median_of(all, i, |o| o.rate),
            median_of(all, i, |o| o.p50_ms),
            median_of(all, i, |o| o.p99_ms)
        );
    }
}

/// The median over the rounds of variant `num`'s rate over variant `den`'s in the same
/// round (each round's variants ran back to back, so a round pairs them under the same load).
pub fn paired(all: &Rounds, num: usize, den: usize) -> f64 {
    median(
        all.iter()
            .filter_map(|g| Some(g.get(num)?.as_ref()?.rate / g.get(den)?.as_ref()?.rate))
            .collect(),
    )
}

/// Variant `i`'s rate in one round's outcomes.
pub fn rate(got: &[Option<Outcome>], i: usize) -> Option<f64> {
    got.get(i)?.as_ref().map(|o| o.rate)
}

/// For the benchmarks whose variants are (0) the bare client loop, (1) the backend and (2) the
/// embedded queue: one round's line, `BACKEND / BARE N %, embedded / BACKEND Mx`.
#[must_use]
pub fn round_ratios(got: &[Option<Outcome>], backend: &str, bare: &str) -> Option<String> {
    let (b, k, e) = (rate(got, 0)?, rate(got, 1)?, rate(got, 2)?);
    Some(format!(
        "{backend} / {bare} {:.0} %, embedded / {backend} {:.1}x",
        100.0 * k / b,
        e / k
    ))
}

/// For the same layout: the ratio of the medians (against the 90 % target) and the median of
/// the per-round ratios; a ratio of a variant that was not run (or never finished) is left out.
pub fn print_ratios(all: &Rounds, backend: &str, bare: &str) {
    let med = |i| median_of(all, i, |o| o.rate);
    let ran = |i| med(i) > 0.0;
    let mut of_medians = Vec::new();
    let mut per_round = Vec::new();
    if ran(0) && ran(1) {
        of_medians.push(format!(
            "{backend} / {bare} {:.0} % (target >= 90 %)",
            100.0 * med(1) / med(0)
        ));
        per_round.push(format!(
            "{backend} / {bare} {:.0} %",
            100.0 * paired(all, 1, 0)
        ));
    }
    if ran(1) && ran(2) {
        of_medians.push(format!("embedded / {backend} {:.1}x", med(2) / med(1)));
        per_round.push(format!("embedded / {backend} {:.1}x", paired(all, 2, 1)));
    }
    if of_medians.is_empty() {
        return;
    }
    println!("  ratio of the medians: {}", of_medians.join(", "));
    println!("  median of the per-round ratios: {}", per_round.join(", "));
}
