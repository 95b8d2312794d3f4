//! Lines per second, per format and on the loghub mix.
//!
//! `cargo bench -p ackline-parse`. Reads the loghub sample logs (Zhu et al.,
//! ISSRE 2023; <https://github.com/logpai/loghub>) from
//! `shared/data/loghub` beside the repository; without them, only the
//! synthetic formats are measured.

// Bench setup may unwrap: a failure there is a broken benchmark.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ackline_parse::{Format, FormatChoice, LineContext, Parser, ParserConfig};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const LOGHUB_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/loghub");

const FILES: &[(&str, Format)] = &[
    ("Android", Format::Logcat),
    ("Apache", Format::ApacheError),
    ("BGL", Format::Bgl),
    ("HDFS", Format::Log4j),
    ("HPC", Format::Hpc),
    ("Hadoop", Format::Log4j),
    ("HealthApp", Format::HealthApp),
    ("Linux", Format::Rfc3164),
    ("Mac", Format::Rfc3164),
    ("OpenSSH", Format::Rfc3164),
    ("OpenStack", Format::OpenStack),
    ("Proxifier", Format::Proxifier),
    ("Spark", Format::Log4j),
    ("Thunderbird", Format::Thunderbird),
    ("Windows", Format::WindowsCbs),
    ("Zookeeper", Format::Log4j),
];

/// Formats loghub has no file for: generated lines with some variety.
fn synthetic() -> Vec<(&'static str, Format, Vec<Vec<u8>>)> {
    let n = 2000;
    let json = (0..n)
        .map(|i| format!(r#"{{"time":"2024-01-02T03:04:{:02}.{i:03}Z","level":"info","msg":"request {i} served","host":"web-{}","service":"api","pid":{},"latency_ms":{},"path":"/v1/items/{i}"}}"#, i % 60, i % 7, 1000 + i % 13, i % 250).into_bytes())
        .collect();
    let logfmt = (0..n)
        .map(|i| format!(r#"ts=2024-01-02T03:04:{:02}Z level=warn msg="slow query {i}" host=db-{} app=pg duration={}ms table=items"#, i % 60, i % 5, i % 900).into_bytes())
        .collect();
    let rfc5424 = (0..n)
        .map(|i| format!(r#"<165>1 2024-01-02T03:04:{:02}.{i:03}+01:00 host{}.example.com evntslog {} ID{} [exampleSDID@32473 iut="3" eventSource="Application" eventID="{i}"] An application event log entry {i}"#, i % 60, i % 9, 100 + i, i % 50).into_bytes())
        .collect();
    let rfc3164 = (0..n)
        .map(|i| format!("<34>Oct {:2} 22:14:{:02} mymachine su[{}]: 'su root' failed for lonvick on /dev/pts/{}", 1 + i % 28, i % 60, 100 + i, i % 9).into_bytes())
        .collect();
    let combined = (0..n)
        .map(|i| format!(r#"10.0.{}.{} - frank [10/Oct/2000:13:55:{:02} -0700] "GET /items/{i}?q=x HTTP/1.1" {} {} "http://www.example.com/start.html" "Mozilla/5.0 (X11; Linux x86_64)""#, i % 255, i % 200, i % 60, [200, 304, 404, 500][i % 4], 100 + i).into_bytes())
        .collect();
    vec![
        ("json", Format::Json, json),
        ("logfmt", Format::Logfmt, logfmt),
        ("rfc5424", Format::Rfc5424, rfc5424),
        ("rfc3164_pri", Format::Rfc3164, rfc3164),
        ("access_combined", Format::AccessCombined, combined),
    ]
}

/// The daemon and application formats of issue 15: their fixtures (real
/// output where the program runs on the development machine), each cycled to
/// 2,000 lines. Auto mode reaches most of them only after the loghub
/// families' candidates failed.
fn named() -> Vec<(&'static str, Format, Vec<Vec<u8>>)> {
    const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let files: &[(&str, &str, Format)] = &[
        ("postgresql", "daemons/postgresql.log", Format::Postgresql),
        (
            "postgresql_csv",
            "formats/postgresql.csv",
            Format::PostgresqlCsv,
        ),
        (
            "postgresql_json",
            "formats/postgresql.json",
            Format::PostgresqlJson,
        ),
        ("mysql", "formats/mariadb.log", Format::Mysql),
        ("redis", "daemons/redis.log", Format::Redis),
        ("rabbitmq", "daemons/rabbitmq.log", Format::RabbitMq),
        ("nats", "daemons/nats.log", Format::Nats),
        ("dpkg", "daemons/dpkg.log", Format::Dpkg),
        ("nginx_error", "formats/nginx_error.log", Format::NginxError),
        ("go_log", "formats/go_log.log", Format::GoLog),
        ("go_slog", "formats/go_slog.log", Format::GoSlog),
        ("python", "formats/python.log", Format::Python),
        ("logback", "formats/logback.log", Format::Logback),
        ("klog", "formats/klog.log", Format::Klog),
        ("cri", "formats/cri.log", Format::Cri),
        ("docker_json", "formats/docker.log", Format::DockerJson),
        ("journald", "formats/journald.json", Format::Journald),
    ];
    files
        .iter()
        .map(|&(name, file, format)| {
            let bytes = std::fs::read(format!("{DIR}/{file}")).unwrap();
            let lines: Vec<Vec<u8>> = bytes
                .split_inclusive(|&b| b == b'\n')
                .map(<[u8]>::to_vec)
                .collect();
            let cycled = lines.iter().cycle().take(2000).cloned().collect();
            (name, format, cycled)
        })
        .collect()
}

fn loghub() -> Vec<(&'static str, Format, Vec<Vec<u8>>)> {
    let dir = PathBuf::from(LOGHUB_DIR);
    if !dir.is_dir() {
        eprintln!(
            "loghub data not found at {}: measuring synthetic formats only",
            dir.display()
        );
        return Vec::new();
    }
    FILES
        .iter()
        .map(|&(name, format)| {
            let bytes = std::fs::read(dir.join(format!("{name}_2k.log"))).unwrap();
            let lines = bytes
                .split_inclusive(|&b| b == b'\n')
                .map(<[u8]>::to_vec)
                .collect();
            (name, format, lines)
        })
        .collect()
}

fn run(parser: &Parser, lines: &[Vec<u8>], ctx: &LineContext) -> usize {
    let mut n = 0;
    for line in lines {
        let rec = parser.parse(line, ctx).unwrap();
        n += rec.message.len();
        black_box(rec);
    }
    n
}

fn bench(c: &mut Criterion) {
    let ctx = LineContext::now("bench-0", Arc::from("bench"));
    let auto = Parser::new(ParserConfig::default());
    let sets: Vec<_> = loghub()
        .into_iter()
        .chain(synthetic())
        .chain(named())
        .collect();

    let mut group = c.benchmark_group("format");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (name, format, lines) in &sets {
        group.throughput(Throughput::Elements(lines.len() as u64));
        group.bench_function(format!("{name}/auto"), |b| {
            b.iter(|| run(&auto, lines, &ctx))
        });
        let fixed = Parser::new(ParserConfig {
            format: FormatChoice::Fixed(*format),
            ..ParserConfig::default()
        });
        group.bench_function(format!("{name}/fixed"), |b| {
            b.iter(|| run(&fixed, lines, &ctx))
        });
    }
    group.finish();

    // The loghub mix: every file's lines interleaved, detected per line.
    let loghub_sets: Vec<_> = sets
        .iter()
        .filter(|(_, _, l)| l.len() == 2000)
        .take(FILES.len())
        .collect();
    if loghub_sets.len() == FILES.len() {
        let mut mix = Vec::new();
        for i in 0..2000 {
            for (_, _, lines) in &loghub_sets {
                if let Some(l) = lines.get(i) {
                    mix.push(l.clone());
                }
            }
        }
        let mut group = c.benchmark_group("mix");
        group
            .sample_size(20)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(5));
        group.throughput(Throughput::Elements(mix.len() as u64));
        group.bench_function("loghub/auto", |b| b.iter(|| run(&auto, &mix, &ctx)));
        let raw = Parser::new(ParserConfig {
            format: FormatChoice::Fixed(Format::Raw),
            ..ParserConfig::default()
        });
        group.bench_function("loghub/raw_only", |b| b.iter(|| run(&raw, &mix, &ctx)));
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
