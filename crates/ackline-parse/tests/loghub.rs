//! Every line of every loghub sample file parses with its intended family,
//! and chosen lines parse to exact field values.
//!
//! The data is the loghub collection of real system logs, read from
//! `shared/data/loghub` beside the repository (never vendored):
//!
//! > Jieming Zhu, Shilin He, Pinjia He, Jinyang Liu, Michael R. Lyu.
//! > *Loghub: A Large Collection of System Log Datasets for AI-driven Log
//! > Analytics.* IEEE International Symposium on Software Reliability
//! > Engineering (ISSRE), 2023.
//! >
//! > Zhihan Jiang, Jinyang Liu, Junjie Huang, Yichen Li, Yintong Huo,
//! > Jiazhen Gu, Zhuangbin Chen, Jieming Zhu, Michael R. Lyu. *A Large-scale
//! > Evaluation for Log Parsing Techniques: How Far are We?* ACM SIGSOFT
//! > International Symposium on Software Testing and Analysis (ISSTA), 2024.
//! >
//! > <https://github.com/logpai/loghub>
//!
//! When the directory is missing the tests print why and pass, except under
//! `CI=true`, where a missing directory fails them.

// Test helpers may unwrap: a panic there is a failed test with its message.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ackline_parse::{
    Format, FormatChoice, LineContext, Parser, ParserConfig, Record, Severity, TimestampSource,
    YearRule,
};
use chrono::{DateTime, Utc};

const LOGHUB_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/loghub");

/// (file, intended family)
const FAMILIES: &[(&str, Format)] = &[
    ("Android_2k.log", Format::Logcat),
    ("Apache_2k.log", Format::ApacheError),
    ("BGL_2k.log", Format::Bgl),
    ("HDFS_2k.log", Format::Log4j),
    ("HPC_2k.log", Format::Hpc),
    ("Hadoop_2k.log", Format::Log4j),
    ("HealthApp_2k.log", Format::HealthApp),
    ("Linux_2k.log", Format::Rfc3164),
    ("Mac_2k.log", Format::Rfc3164),
    ("OpenSSH_2k.log", Format::Rfc3164),
    ("OpenStack_2k.log", Format::OpenStack),
    ("Proxifier_2k.log", Format::Proxifier),
    ("Spark_2k.log", Format::Log4j),
    ("Thunderbird_2k.log", Format::Thunderbird),
    ("Windows_2k.log", Format::WindowsCbs),
    ("Zookeeper_2k.log", Format::Log4j),
];

/// The loghub directory, or `None` (after saying why) when it is absent
/// outside CI. Panics under `CI=true` when it is absent.
fn loghub_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(LOGHUB_DIR);
    if dir.is_dir() {
        return Some(dir);
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(
        !ci,
        "loghub data missing at {} and CI=true: these tests must not be skipped in CI",
        dir.display()
    );
    eprintln!(
        "SKIPPED: loghub data not found at {} (set up shared/data/loghub beside the repo to run these tests)",
        dir.display()
    );
    None
}

/// The file's lines, each with its terminator (as a reader would hand them over).
fn lines(dir: &Path, file: &str) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(dir.join(file)).expect("read loghub file");
    bytes
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .with_timezone(&Utc)
}

fn ctx(id: u64, file: &str, ingest: &str) -> LineContext {
    LineContext {
        id: id.to_string(),
        input: Arc::from(file),
        file_mtime: None,
        ingest_time: at(ingest),
    }
}

#[test]
fn every_line_parses_with_its_family_in_auto_and_fixed_mode() {
    let Some(dir) = loghub_dir() else { return };
    let auto = Parser::new(ParserConfig {
        strict: true,
        ..ParserConfig::default()
    });
    let mut total = 0;
    for &(file, family) in FAMILIES {
        let fixed = Parser::new(ParserConfig {
            format: FormatChoice::Fixed(family),
            strict: true,
            ..ParserConfig::default()
        });
        let lines = lines(&dir, file);
        assert_eq!(
            lines.len(),
            2000,
            "{file}: loghub 2k samples have 2000 lines"
        );
        for (i, line) in lines.iter().enumerate() {
            let c = ctx(i as u64, file, "2026-01-01T00:00:00Z");
            let shown = String::from_utf8_lossy(line);
            let rec = auto
                .parse(line, &c)
                .unwrap_or_else(|e| panic!("{file}:{}: auto: {e}\n{shown}", i + 1));
            assert_eq!(
                rec.format,
                family,
                "{file}:{}: detected wrong family\n{shown}",
                i + 1
            );
            assert_eq!(
                rec.raw.as_bytes(),
                &line[..],
                "{file}:{}: raw not lossless",
                i + 1
            );
            assert_ne!(
                rec.timestamp_source,
                TimestampSource::Ingest,
                "{file}:{}: timestamp not parsed",
                i + 1
            );
            assert!(
                !rec.message.ends_with('\r'),
                "{file}:{}: terminator in message",
                i + 1
            );
            let again = fixed
                .parse(line, &c)
                .unwrap_or_else(|e| panic!("{file}:{}: fixed: {e}\n{shown}", i + 1));
            assert_eq!(again, rec, "{file}:{}: fixed and auto disagree", i + 1);
            total += 1;
        }
    }
    assert_eq!(total, 32_000);
}

/// Parses line `n` (1-based) of `file` in auto mode with ingest time `ingest`.
fn line(dir: &Path, file: &str, n: usize, ingest: &str) -> Record {
    let parser = Parser::new(ParserConfig {
        strict: true,
        ..ParserConfig::default()
    });
    let lines = lines(dir, file);
    parser
        .parse(&lines[n - 1], &ctx(n as u64, file, ingest))
        .unwrap_or_else(|e| panic!("{file}:{n}: {e}"))
}

fn field(rec: &Record, key: &str) -> String {
    match rec.fields.get(key) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => "<absent>".to_owned(),
    }
}

/// Checks the common fields of a record.
#[allow(clippy::too_many_arguments)]
fn check(
    rec: &Record,
    format: Format,
    ts: &str,
    severity: Option<Severity>,
    host: Option<&str>,
    app: Option<&str>,
    pid: Option<u64>,
    message: &str,
) {
    let what = format!("{}:{}", rec.input, rec.id);
    assert_eq!(rec.format, format, "{what}");
    assert_eq!(rec.timestamp.to_rfc3339(), ts, "{what}");
    assert_eq!(rec.severity, severity, "{what}");
    assert_eq!(rec.host.as_deref(), host, "{what}");
    assert_eq!(rec.app.as_deref(), app, "{what}");
    assert_eq!(rec.pid, pid, "{what}");
    assert_eq!(rec.message, message, "{what}");
}

#[test]
fn syslog_style_linux_openssh_mac() {
    let Some(dir) = loghub_dir() else { return };
    // Linux (2005): ingest at the end of July 2005, year inferred.
    let r = line(&dir, "Linux_2k.log", 1, "2005-07-31T00:00:00Z");
    check(
        &r,
        Format::Rfc3164,
        "2005-06-14T15:16:01+00:00",
        None,
        Some("combo"),
        Some("sshd(pam_unix)"),
        Some(19939),
        "authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=218.188.2.4 ",
    );
    assert_eq!(r.timestamp_source, TimestampSource::LineInferredYear);
    let r = line(&dir, "Linux_2k.log", 777, "2005-07-31T00:00:00Z");
    check(
        &r,
        Format::Rfc3164,
        "2005-07-04T12:52:44+00:00",
        None,
        Some("combo"),
        Some("ftpd"),
        Some(2829),
        "connection from 63.197.98.106 (adsl-63-197-98-106.dsl.mtry01.pacbell.net) at Mon Jul  4 12:52:44 2005 ",
    );
    let r = line(&dir, "Linux_2k.log", 2000, "2005-07-31T00:00:00Z");
    check(
        &r,
        Format::Rfc3164,
        "2005-07-27T14:42:00+00:00",
        None,
        Some("combo"),
        Some("kernel"),
        None,
        "Linux agpgart interface v0.100 (c) Dave Jones",
    );
    // Read in January 2006, the June/July lines belong to 2005.
    let r = line(&dir, "Linux_2k.log", 1, "2006-01-03T00:00:00Z");
    assert_eq!(r.timestamp.to_rfc3339(), "2005-06-14T15:16:01+00:00");

    let r = line(&dir, "OpenSSH_2k.log", 777, "2015-12-31T00:00:00Z");
    check(
        &r,
        Format::Rfc3164,
        "2015-12-10T09:17:43+00:00",
        None,
        Some("LabSZ"),
        Some("sshd"),
        Some(24618),
        "Received disconnect from 187.141.143.180: 11: Bye Bye [preauth]",
    );
    let r = line(&dir, "OpenSSH_2k.log", 1500, "2015-12-31T00:00:00Z");
    check(
        &r,
        Format::Rfc3164,
        "2015-12-10T10:59:43+00:00",
        None,
        Some("LabSZ"),
        Some("sshd"),
        Some(25205),
        "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=183.62.140.253  user=root",
    );
    // Read on Jan 2nd, December lines fall in the previous year.
    let r = line(&dir, "OpenSSH_2k.log", 2000, "2016-01-02T00:00:00Z");
    check(
        &r,
        Format::Rfc3164,
        "2015-12-10T11:04:45+00:00",
        None,
        Some("LabSZ"),
        Some("sshd"),
        Some(25539),
        "Failed password for invalid user user from 103.99.0.122 port 52683 ssh2",
    );

    let r = line(&dir, "Mac_2k.log", 777, "2017-07-10T00:00:00Z");
    check(
        &r,
        Format::Rfc3164,
        "2017-07-04T05:28:30+00:00",
        None,
        Some("airbears2-10-142-110-255"),
        Some("com.apple.cts"),
        Some(258),
        "com.apple.Safari.SafeBrowsing.Update: scheduler_evaluate_activity told me to run this job; however, but the start time isn't for 1077 seconds.  Ignoring.",
    );
    let r = line(&dir, "Mac_2k.log", 2000, "2017-07-10T00:00:00Z");
    check(
        &r,
        Format::Rfc3164,
        "2017-07-08T08:10:46+00:00",
        None,
        Some("calvisitor-10-105-162-124"),
        Some("kernel"),
        Some(0),
        "AppleCamIn::wakeEventHandlerThread",
    );
}

#[test]
fn apache_error_and_windows_cbs() {
    let Some(dir) = loghub_dir() else { return };
    let r = line(&dir, "Apache_2k.log", 1, "2026-01-01T00:00:00Z");
    check(
        &r,
        Format::ApacheError,
        "2005-12-04T04:47:44+00:00",
        Some(Severity::Notice),
        None,
        None,
        None,
        "workerEnv.init() ok /etc/httpd/conf/workers2.properties",
    );
    assert_eq!(r.timestamp_source, TimestampSource::LineAssumedOffset);
    let r = line(&dir, "Apache_2k.log", 2000, "2026-01-01T00:00:00Z");
    check(
        &r,
        Format::ApacheError,
        "2005-12-05T19:15:57+00:00",
        Some(Severity::Error),
        None,
        None,
        None,
        "mod_jk child workerEnv in error state 6",
    );
    let lines = lines(&dir, "Apache_2k.log");
    let n = lines
        .iter()
        .position(|l| l.windows(8).any(|w| w == b"[client "))
        .unwrap()
        + 1;
    let r = line(&dir, "Apache_2k.log", n, "2026-01-01T00:00:00Z");
    assert_ne!(field(&r, "client"), "<absent>");
    assert!(
        r.message.starts_with("Directory index forbidden"),
        "{}",
        r.message
    );

    let r = line(&dir, "Windows_2k.log", 777, "2026-01-01T00:00:00Z");
    check(
        &r,
        Format::WindowsCbs,
        "2016-09-28T04:30:50+00:00",
        Some(Severity::Info),
        None,
        Some("CBS"),
        None,
        "Session: 30546174_154395837 initialized by client WindowsUpdateAgent.",
    );
    let r = line(&dir, "Windows_2k.log", 2, "2026-01-01T00:00:00Z");
    assert_eq!(r.app.as_deref(), Some("CSI"));
    assert!(
        r.message
            .starts_with("00000001@2016/9/27:20:30:31.455 WcpInitialize")
    );
}

#[test]
fn log4j_family_hdfs_hadoop_spark_zookeeper() {
    let Some(dir) = loghub_dir() else { return };
    let r = line(&dir, "HDFS_2k.log", 2000, "2026-01-01T00:00:00Z");
    check(
        &r,
        Format::Log4j,
        "2008-11-11T10:20:17+00:00",
        Some(Severity::Info),
        None,
        Some("dfs.DataNode$DataXceiver"),
        Some(26347),
        "Receiving block blk_4343207286455274569 src: /10.250.9.207:59759 dest: /10.250.9.207:50010",
    );
    let r = line(&dir, "Hadoop_2k.log", 1500, "2026-01-01T00:00:00Z");
    check(
        &r,
        Format::Log4j,
        "2015-10-18T18:08:31.537+00:00",
        Some(Severity::Warning),
        None,
        Some("org.apache.hadoop.hdfs.LeaseRenewer"),
        None,
        "Failed to renew lease for [DFSClient_NONMAPREDUCE_1537864556_1] for 214 seconds.  Will retry shortly ...",
    );
    assert_eq!(field(&r, "thread"), "LeaseRenewer:msrabi@msra-sa-41:9000");
    let r = line(&dir, "Hadoop_2k.log", 777, "2026-01-01T00:00:00Z");
    assert_eq!(field(&r, "thread"), "IPC Server handler 8 on 62270");
    assert_eq!(
        r.message,
        "Progress of TaskAttempt attempt_1445144423722_0020_m_000009_0 is : 0.5323719"
    );
    let r = line(&dir, "Spark_2k.log", 777, "2026-01-01T00:00:00Z");
    check(
        &r,
        Format::Log4j,
        "2017-06-09T20:10:56+00:00",
        Some(Severity::Info),
        None,
        Some("executor.Executor"),
        None,
        "Finished task 2.0 in stage 21.0 (TID 877). 2333 bytes result sent to driver",
    );
    let r = line(&dir, "Zookeeper_2k.log", 777, "2026-01-01T00:00:00Z");
    check(
        &r,
        Format::Log4j,
        "2015-07-29T19:20:16.794+00:00",
        Some(Severity::Warning),
        None,
        Some("LearnerHandler"),
        None,
        "******* GOODBYE /10.10.34.13:57580 ********",
    );
    assert_eq!(field(&r, "thread"), "LearnerHandler-/10.10.34.13:57580");
    assert_eq!(field(&r, "line"), "575");
    let r = line(&dir, "Zookeeper_2k.log", 2000, "2026-01-01T00:00:00Z");
    assert_eq!(field(&r, "thread"), "ProcessThread(sid:3 cport:-1):");
    assert_eq!(r.app.as_deref(), Some("PrepRequestProcessor"));
    assert_eq!(
        r.message,
        "Processed session termination for sessionid: 0x24f0557806a0010"
    );
}

#[test]
fn logcat_healthapp_proxifier() {
    let Some(dir) = loghub_dir() else { return };
    let r = line(&dir, "Android_2k.log", 777, "2017-03-20T00:00:00Z");
    check(
        &r,
        Format::Logcat,
        "2017-03-17T16:14:24.979+00:00",
        Some(Severity::Warning),
        None,
        Some("ActivityManager"),
        Some(1702),
        "getTasks: caller 10111 does not hold REAL_GET_TASKS; limiting output",
    );
    assert_eq!(field(&r, "tid"), "14640");
    let r = line(&dir, "Android_2k.log", 1500, "2017-03-20T00:00:00Z");
    check(
        &r,
        Format::Logcat,
        "2017-03-17T16:15:49.573+00:00",
        Some(Severity::Info),
        None,
        Some("PanelView"),
        Some(2227),
        "cancelPeek: false",
    );

    let r = line(&dir, "HealthApp_2k.log", 2000, "2026-01-01T00:00:00Z");
    check(
        &r,
        Format::HealthApp,
        "2017-12-24T01:02:35.789+00:00",
        None,
        None,
        Some("Step_LSC"),
        Some(30_002_312),
        "processHandleBroadcastAction action:android.intent.action.TIME_TICK",
    );

    // Proxifier spans October to July: read in August 2017, October is 2016.
    let r = line(&dir, "Proxifier_2k.log", 1, "2017-08-01T00:00:00Z");
    check(
        &r,
        Format::Proxifier,
        "2016-10-30T16:49:06+00:00",
        None,
        None,
        Some("chrome.exe"),
        None,
        "proxy.cse.cuhk.edu.hk:5070 open through proxy proxy.cse.cuhk.edu.hk:5070 HTTPS",
    );
    let r = line(&dir, "Proxifier_2k.log", 2000, "2017-08-01T00:00:00Z");
    check(
        &r,
        Format::Proxifier,
        "2017-07-27T10:23:42+00:00",
        None,
        None,
        Some("chrome.exe"),
        None,
        "t12.baidu.com:80 close, 0 bytes sent, 0 bytes received, lifetime 00:17",
    );
    assert_eq!(field(&r, "bitness"), "64");
}

#[test]
fn supercomputers_bgl_hpc_thunderbird() {
    let Some(dir) = loghub_dir() else { return };
    let r = line(&dir, "BGL_2k.log", 1500, "2026-01-01T00:00:00Z");
    check(
        &r,
        Format::Bgl,
        "2005-10-15T21:46:23.436761-07:00",
        Some(Severity::Info),
        Some("R25-M1-N0-I:J18-U01"),
        Some("KERNEL"),
        None,
        "ciod: generated 64 core files for program /home/spelce1/HPCC_IBM/Urgent/COP/64K/opt_co_dc.rts",
    );
    assert_eq!(r.timestamp_source, TimestampSource::Line);
    assert_eq!(r.timestamp.timestamp(), 1_129_437_983);
    // January: standard time, -08:00.
    let r = line(&dir, "BGL_2k.log", 2000, "2026-01-01T00:00:00Z");
    assert_eq!(r.timestamp.to_rfc3339(), "2006-01-03T07:13:09.127918-08:00");
    let lines = lines(&dir, "BGL_2k.log");
    let n = lines
        .iter()
        .position(|l| l.starts_with(b"KERNDTLB "))
        .unwrap()
        + 1;
    let r = line(&dir, "BGL_2k.log", n, "2026-01-01T00:00:00Z");
    assert_eq!(field(&r, "alert_type"), "KERNDTLB");
    assert_eq!(r.severity, Some(Severity::Critical));

    let r = line(&dir, "HPC_2k.log", 1500, "2026-01-01T00:00:00Z");
    check(
        &r,
        Format::Hpc,
        "2004-01-16T07:17:09+00:00",
        None,
        Some("Interconnect-0N03"),
        Some("switch_module"),
        None,
        "Linkerror event interval expired",
    );
    assert_eq!(field(&r, "log_id"), "2586431");
    assert_eq!(field(&r, "state"), "error");
    assert_eq!(field(&r, "flag"), "1");
    let r = line(&dir, "HPC_2k.log", 777, "2026-01-01T00:00:00Z");
    assert_eq!(r.message, "normal");

    let r = line(&dir, "Thunderbird_2k.log", 777, "2026-01-01T00:00:00Z");
    check(
        &r,
        Format::Thunderbird,
        "2005-11-09T12:07:04-08:00",
        None,
        Some("tbird-sm1"),
        Some("ib_sm.x"),
        Some(24904),
        "[ib_sm_sweep.c:1482]: No configuration change required",
    );
    assert_eq!(field(&r, "location"), "src@tbird-sm1");
    let r = line(&dir, "Thunderbird_2k.log", 2000, "2026-01-01T00:00:00Z");
    check(
        &r,
        Format::Thunderbird,
        "2005-11-09T12:15:32-08:00",
        None,
        Some("cn390"),
        Some("ntpd"),
        Some(10152),
        "synchronized to 10.100.20.250, stratum 3",
    );
}

#[test]
fn openstack() {
    let Some(dir) = loghub_dir() else { return };
    let r = line(&dir, "OpenStack_2k.log", 777, "2026-01-01T00:00:00Z");
    check(
        &r,
        Format::OpenStack,
        "2017-05-16T00:05:48.488+00:00",
        Some(Severity::Info),
        None,
        Some("nova.metadata.wsgi.server"),
        Some(25793),
        "10.11.21.130,10.11.10.1 \"GET /openstack/2013-10-17/meta_data.json HTTP/1.1\" status: 200 len: 967 time: 0.2323599",
    );
    assert_eq!(field(&r, "log_file"), "nova-api.log.1.2017-05-16_13:53:08");
    assert_eq!(
        field(&r, "request_id"),
        "req-c1795e2c-0a17-4aa0-b47e-19e4218b049e"
    );
    let r = line(&dir, "OpenStack_2k.log", 1500, "2026-01-01T00:00:00Z");
    check(
        &r,
        Format::OpenStack,
        "2017-05-16T00:11:12.170+00:00",
        Some(Severity::Info),
        None,
        Some("nova.virt.libvirt.driver"),
        Some(2931),
        "[instance: a015cf14-84bb-4156-a48d-7c4824ac7a9d] Instance spawned successfully.",
    );
    assert_eq!(field(&r, "context"), "-");
}

#[test]
fn fixed_year_replays_an_archive() {
    let Some(dir) = loghub_dir() else { return };
    let parser = Parser::new(ParserConfig {
        format: FormatChoice::Fixed(Format::Rfc3164),
        strict: true,
        year_rule: YearRule::Fixed(2005),
        ..ParserConfig::default()
    });
    let lines = lines(&dir, "Linux_2k.log");
    let r = parser
        .parse(&lines[0], &ctx(1, "Linux_2k.log", "2026-05-01T00:00:00Z"))
        .unwrap();
    assert_eq!(r.timestamp.to_rfc3339(), "2005-06-14T15:16:01+00:00");
}
