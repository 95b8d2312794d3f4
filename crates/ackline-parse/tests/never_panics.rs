//! No input makes the parser panic: for arbitrary bytes, and for mutated
//! and truncated real-shaped lines of every format, every configuration
//! (auto and each fixed format, strict and lenient) returns either a record
//! or a typed error, and the invariants of each hold.

// Test helpers may unwrap: a panic there is a failed test with its message.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use ackline_parse::{
    ErrorKind, Format, FormatChoice, LineContext, Parser, ParserConfig, Record, YearRule,
};
use chrono::{DateTime, Utc};
use proptest::prelude::*;

/// One line of each supported shape, the seeds for mutation.
const SEEDS: &[&str] = &[
    r#"{"time":"2024-01-02T03:04:05.123Z","level":"warn","msg":"disk low","host":"db1","n":[1,{"a":null}]}"#,
    r#"ts=2024-01-02T03:04:05Z level=error msg="disk \"sda\" failed" host=db1 pid=7"#,
    r#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 17 ID47 [exampleSDID@32473 iut="3" eventSource="App\]"][p@1 class="high"] BOMless message"#,
    "<34>Oct 11 22:14:15 mymachine su[12]: 'su root' failed for lonvick on /dev/pts/8",
    "Jul  1 09:29:02 mac sandboxd[129] ([31211]): deny network-outbound",
    r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /a.gif HTTP/1.0" 200 2326 "http://x/" "Mozilla/4.08 [en]""#,
    "[Fri Sep 09 10:42:29.902022 2011] [core:error] [pid 35708:tid 4328636416] [client 72.15.99.187] AH00128: nope",
    "2015-07-29 17:41:44,747 - INFO  [QuorumPeer[myid=1]/0:0:0:0:0:0:0:0:2181:FastLeaderElection@774] - Notification",
    "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 terminating",
    "03-17 16:13:38.811  1702  2395 D WindowManager: printFreezingDisplayLogs",
    "- 1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 R02-M1-N0-C:J12-U11 RAS KERNEL INFO corrected",
    "134681 node-246 unix.hw state_change.unavailable 1077804742 -1 Component State Change",
    "- 1131566461 2005.11.09 dn228 Nov 9 12:01:01 dn228/dn228 crond(pam_unix)[2915]: session closed",
    "2016-09-28 04:30:30, Info                  CBS    Loaded Servicing Stack",
    "20171223-22:15:29:606|Step_LSC|30002312|onStandStepChanged 3579",
    "[10.30 16:49:06] chrome.exe *64 - proxy.cse.cuhk.edu.hk:5070 open",
    "nova-api.log.1 2017-05-16 00:00:00.008 25746 INFO nova.osapi [req-1 a b - - -] 10.11.10.1 \"GET /\"",
    // The generic header extractor (tried last): PostgreSQL, Redis, RabbitMQ,
    // NATS, update-alternatives, epoch millis with level=.
    "2026-12-05 01:20:54.024 UTC [25401] postgres@test ERROR:  relation \"x\" does not exist",
    "2248:M 05 Dec 2026 01:14:41.620 * Ready to accept connections",
    "2248:signal-handler (1796436340) Received SIGTERM scheduling shutdown...",
    "2026-12-05 01:14:53.494914+00:00 [notice] <0.223.0> Logging: configured",
    "[2993] 2026/12/05 01:14:51.191716 [INF] Starting nats-server",
    "update-alternatives 2025-06-24 14:36:53: run with --quiet --install /usr/bin/pager",
    "1700000000123 level=warn myd[42]: hi",
    // The named daemon and application formats (issue 15).
    r#"2026-12-05 01:20:54.024 UTC,"postgres","test",25401,"[local]",6931f1b6.6339,1,"SELECT",2026-12-05 01:20:54 UTC,3/2,0,ERROR,42P01,"relation ""x"" does not exist",,,,,,"select * from x;",15,,"psql","client backend",,0"#,
    r#"{"timestamp":"2026-12-05 01:20:54.024 UTC","user":"postgres","dbname":"test","pid":25401,"error_severity":"ERROR","message":"x"}"#,
    "2026-12-05  4:09:25 0 [Note] InnoDB: Using transactional memory",
    "2024-01-02T03:04:05.123456Z 0 [System] [MY-010116] [Server] /usr/sbin/mysqld starting",
    r#"2026/12/05 04:09:25 [error] 4242#4242: *17 open() "/x" failed, client: 127.0.0.1, server: localhost, request: "GET /x HTTP/1.1", host: "localhost""#,
    "2026/12/05 04:09:25.123456 main.go:42: listening on :8080",
    "time=2026-12-05T04:09:25.123+01:00 level=INFO msg=started port=8080",
    r#"{"time":"2026-12-05T04:09:25.123+01:00","level":"WARN","msg":"disk low","free":12}"#,
    "WARNING:root:disk low",
    "2026-12-05 04:09:25,123 - app.db - ERROR - query failed",
    "[2026-12-05 04:09:25,123] INFO in views: GET /",
    "04:09:25.123 [main] INFO  com.example.App - started",
    "E1205 04:09:27.551230    1234 pod_workers.go:1298] \"Error syncing pod\" pod=\"default/web-0\"",
    "2026-12-05T01:14:51.191716123Z stderr F [2993] 2026/12/05 01:14:51.191716 [ERR] boom",
    "2026-12-05T01:14:51.5+01:00 stdout P {\"level\":\"error\"",
    r#"{"log":"2248:M 05 Dec 2026 01:14:41.620 * Ready\n","stream":"stdout","time":"2026-12-05T01:14:41.62Z"}"#,
    r#"{"__CURSOR":"s=1","__REALTIME_TIMESTAMP":"1764897293123456","PRIORITY":"3","_PID":"812","MESSAGE":[104,105]}"#,
    "2026-12-05 01:20:54 CET [7] FATAL:  x",
    "Start-Date: 2025-06-24  14:36:25\nCommandline: apt-get -qqy upgrade",
];

fn parsers() -> Vec<Parser> {
    let mut choices = vec![FormatChoice::Auto];
    choices.extend(Format::ALL.iter().copied().map(FormatChoice::Fixed));
    let mut out = Vec::new();
    for format in choices {
        for strict in [false, true] {
            out.push(Parser::new(ParserConfig {
                format,
                strict,
                max_json_depth: 16,
                ..ParserConfig::default()
            }));
            // A fixed year far out, to push calendar arithmetic to its edges.
            out.push(Parser::new(ParserConfig {
                format,
                strict,
                year_rule: YearRule::Fixed(i32::MAX),
                ..ParserConfig::default()
            }));
            // An IANA zone (DST gaps and overlaps) and the file-mtime rule.
            out.push(Parser::new(ParserConfig {
                format,
                strict,
                year_rule: YearRule::FileMtime,
                timezone: "America/Santiago".parse().unwrap(),
                ..ParserConfig::default()
            }));
        }
    }
    out
}

fn check_all(line: &[u8], ingest: DateTime<Utc>) -> Result<(), TestCaseError> {
    let ctx = LineContext {
        id: "m-7".to_string(),
        input: Arc::from("prop"),
        // The ingest time doubles as the file's mtime (its edges included).
        file_mtime: Some(ingest),
        ingest_time: ingest,
    };
    for parser in parsers() {
        let cfg = *parser.config();
        match parser.parse(line, &ctx) {
            Ok(rec) => check_record(&rec, line, &cfg)?,
            Err(err) => {
                prop_assert!(cfg.strict, "lenient mode returned an error: {err}");
                prop_assert!(
                    err.position <= line.len(),
                    "position {} > len {}",
                    err.position,
                    line.len()
                );
                if let FormatChoice::Fixed(f) = cfg.format {
                    prop_assert_eq!(err.format, Some(f));
                }
                let text = err.to_string();
                prop_assert!(!text.is_empty() && text.len() < 300, "{}", text);
            }
        }
    }
    Ok(())
}

fn check_record(rec: &Record, line: &[u8], cfg: &ParserConfig) -> Result<(), TestCaseError> {
    prop_assert_eq!(rec.raw.as_bytes(), line, "raw must be lossless");
    prop_assert_eq!(rec.raw.is_utf8(), std::str::from_utf8(line).is_ok());
    prop_assert_eq!(rec.id.as_str(), "m-7");
    if cfg.strict {
        if let FormatChoice::Fixed(f) = cfg.format {
            // Formats that name a more specific variant of what they parse.
            let same_family = rec.format == f
                || matches!(
                    (f, rec.format),
                    (
                        Format::AccessCommon | Format::AccessCombined,
                        Format::AccessCommon | Format::AccessCombined
                    ) | (
                        Format::Generic,
                        Format::Postgresql
                            | Format::Redis
                            | Format::RabbitMq
                            | Format::Nats
                            | Format::Dpkg
                    ) | (
                        Format::Json,
                        Format::DockerJson
                            | Format::Journald
                            | Format::PostgresqlJson
                            | Format::GoSlog
                    ) | (Format::Logfmt, Format::GoSlog)
                );
            prop_assert!(same_family, "strict fixed {f} produced {}", rec.format);
        } else {
            prop_assert_ne!(rec.format, Format::Raw);
        }
    }
    // The serialised form is valid JSON and reads back to the same record.
    let json = serde_json::to_string(rec).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back: Record =
        serde_json::from_str(&json).map_err(|e| TestCaseError::fail(format!("{e}: {json}")))?;
    prop_assert_eq!(&back, rec);
    Ok(())
}

/// Truncates a seed and overwrites / inserts some bytes.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        0..SEEDS.len(),
        any::<prop::sample::Index>(),
        prop::collection::vec(
            (any::<prop::sample::Index>(), any::<u8>(), any::<bool>()),
            0..6,
        ),
    )
        .prop_map(|(seed, cut, edits)| {
            let mut line = SEEDS[seed].as_bytes().to_vec();
            let keep = cut.index(line.len() + 1);
            if keep < line.len() / 2 {
                line.truncate(line.len() - keep);
            }
            for (at, byte, insert) in edits {
                let i = at.index(line.len() + 1);
                if insert || i == line.len() {
                    line.insert(i, byte);
                } else {
                    line[i] = byte;
                }
            }
            line
        })
}

fn ingest_times() -> impl Strategy<Value = DateTime<Utc>> {
    prop_oneof![
        Just(DateTime::<Utc>::MIN_UTC),
        Just(DateTime::<Utc>::MAX_UTC),
        (0i64..4_102_444_800).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(line in prop::collection::vec(any::<u8>(), 0..300), ingest in ingest_times()) {
        check_all(&line, ingest)?;
    }

    #[test]
    fn mutated_real_lines_never_panic(line in mutated(), ingest in ingest_times()) {
        check_all(&line, ingest)?;
    }

    #[test]
    fn printable_ascii_never_panics(line in "[ -~]{0,200}", ingest in ingest_times()) {
        check_all(line.as_bytes(), ingest)?;
    }
}

#[test]
fn seeds_parse_with_their_own_format_in_auto_mode() {
    // Guards the mutation test: its seeds must be valid lines to start from.
    let parser = Parser::new(ParserConfig {
        strict: true,
        ..ParserConfig::default()
    });
    let ctx = LineContext::now("seed", Arc::from("seed"));
    for seed in SEEDS {
        let rec = parser
            .parse(seed.as_bytes(), &ctx)
            .unwrap_or_else(|e| panic!("{seed}: {e}"));
        assert_ne!(rec.format, Format::Raw);
    }
    assert!(matches!(
        parser.parse(b"plain words", &ctx).unwrap_err().kind,
        ErrorKind::Expected(_) | ErrorKind::NoFormatMatched
    ));
}
