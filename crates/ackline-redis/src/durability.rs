//! What a confirmed publish is worth on this Redis server, read at connect.
//!
//! Redis answers `XADD` once the entry is in memory and (with AOF) written to the AOF by the
//! event loop; whether it is on disk depends on the server's `appendonly` and `appendfsync`:
//!
//! | server setting | a confirmed publish survives |
//! | --- | --- |
//! | `appendonly yes`, `appendfsync always` | a crash of Redis and of the machine: the AOF is fsynced before the reply is sent |
//! | `appendonly yes`, `appendfsync everysec` | a crash of the Redis process (the write reached the kernel); a machine crash or power loss loses up to about 1 s (2 s when the disk is slow) |
//! | `appendonly yes`, `appendfsync no` | a crash of the Redis process; a machine crash loses what the kernel had not flushed (typically up to 30 s) |
//! | `appendonly no` (RDB snapshots or nothing) | nothing certain: every write since the last snapshot is lost when Redis stops |
//!
//! On Redis 7.2 and later, `WAITAOF 1 0 <timeout>` after a publish makes the reply wait for the
//! local fsync whatever `appendfsync` says; the backend sends it when the server has it and
//! `appendfsync` is not `always` (where it would add a round trip and nothing else). Redis 7.0
//! and 7.1 have no such command: with `everysec` or `no` a confirmed publish is only as durable
//! as the table says.
//!
//! `maxmemory-policy` is read as well: an `allkeys-*` policy lets Redis evict the queue's keys
//! (which have no TTL) when memory runs out, which deletes queued messages.
//!
//! Invariant: a backend on a server without AOF persistence, or with an `allkeys-*` eviction
//! policy, refuses to start unless `allow_volatile` says the operator accepts the loss; the
//! refusal names the setting, what is at risk and both ways out.

use std::fmt;

/// `appendfsync` as read from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// `always`: fsync before replying.
    Always,
    /// `everysec`: fsync once a second in the background.
    EverySec,
    /// `no`: the kernel decides.
    No,
    /// Could not be read (`CONFIG` renamed or forbidden).
    Unknown,
}

/// What the backend found at connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Durability {
    /// The server's version (`redis_version`), e.g. `7.0.15`.
    pub version: String,
    /// `appendonly` (`aof_enabled` from `INFO persistence` when `CONFIG` is unavailable).
    pub appendonly: bool,
    /// `appendfsync`.
    pub fsync: Fsync,
    /// Whether publishes wait for `WAITAOF 1 0` (Redis >= 7.2 and `appendfsync` not `always`).
    pub wait_aof: bool,
    /// Where the settings came from: `CONFIG GET` or `INFO persistence`.
    pub source: &'static str,
    /// `maxmemory-policy` when it may evict keys without a TTL (`allkeys-*`): Redis may then
    /// delete the queue's stream under memory pressure.
    pub evicting: Option<String>,
}

/// Parses `major.minor.patch` (missing parts are 0).
pub(crate) fn version_tuple(v: &str) -> (u32, u32, u32) {
    let mut it = v
        .trim()
        .split('.')
        .map(|p| p.trim().parse::<u32>().unwrap_or(0));
    (
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
    )
}

/// Whether the server has `WAITAOF` (7.2+).
pub(crate) fn has_waitaof(version: &str) -> bool {
    version_tuple(version) >= (7, 2, 0)
}

pub(crate) fn parse_fsync(v: &str) -> Fsync {
    match v.trim().to_ascii_lowercase().as_str() {
        "always" => Fsync::Always,
        "everysec" => Fsync::EverySec,
        "no" => Fsync::No,
        _ => Fsync::Unknown,
    }
}

/// `key:value` from an `INFO` section's text.
pub(crate) fn info_field<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.lines()
        .filter_map(|l| l.trim_end_matches('\r').split_once(':'))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.trim())
}

impl Durability {
    pub(crate) fn new(
        version: String,
        appendonly: bool,
        fsync: Fsync,
        source: &'static str,
    ) -> Self {
        let wait_aof = appendonly && fsync != Fsync::Always && has_waitaof(&version);
        Durability {
            version,
            appendonly,
            fsync,
            wait_aof,
            source,
            evicting: None,
        }
    }

    /// Records `maxmemory-policy` (only `allkeys-*` policies touch keys without a TTL).
    pub(crate) fn with_policy(mut self, policy: &str) -> Self {
        let p = policy.trim().to_ascii_lowercase();
        if p.starts_with("allkeys-") {
            self.evicting = Some(p);
        }
        self
    }

    /// Whether the server may drop queued messages by itself: no AOF, or an eviction policy
    /// that deletes keys without a TTL. The backend refuses such a server unless
    /// `allow_volatile`.
    pub fn volatile(&self) -> bool {
        !self.appendonly || self.evicting.is_some()
    }

    /// What a crash can take from confirmed publishes, for logs and refusals.
    pub fn risk(&self) -> String {
        if let Some(p) = &self.evicting {
            return format!(
                "maxmemory-policy {p} lets Redis evict any key when it reaches maxmemory, the \
                 queue's stream included: queued messages, confirmed publishes among them, can \
                 be deleted (use noeviction, or a volatile-* policy: ackline's keys have no TTL)"
            );
        }
        if !self.appendonly {
            return "Redis runs without AOF persistence (appendonly no): every message queued \
                    since the last RDB snapshot, if any, is lost when Redis restarts or crashes, \
                    confirmed publishes included"
                .into();
        }
        if self.wait_aof {
            return "none beyond the disk's own: each publish waits for WAITAOF (the AOF fsynced)"
                .into();
        }
        match self.fsync {
            Fsync::Always => "none beyond the disk's own: appendfsync always fsyncs the AOF \
                              before Redis replies"
                .into(),
            Fsync::EverySec => format!(
                "appendfsync everysec on Redis {} (no WAITAOF before 7.2): a crash of the \
                 machine or a power loss can lose about the last second of confirmed publishes \
                 (2 s when the disk is slow); a crash of the Redis process alone loses nothing",
                self.version
            ),
            Fsync::No => format!(
                "appendfsync no on Redis {} (no WAITAOF before 7.2): a crash of the machine can \
                 lose whatever the kernel had not flushed (typically up to 30 s of confirmed \
                 publishes); a crash of the Redis process alone loses nothing",
                self.version
            ),
            Fsync::Unknown => format!(
                "appendfsync could not be read (CONFIG is renamed or forbidden) on Redis {} \
                 (no WAITAOF before 7.2): a confirmed publish may not be fsynced; with \
                 everysec about a second can be lost in a machine crash",
                self.version
            ),
        }
    }

    /// Whether confirmed publishes may be lost by a crash of the machine (not just the disk).
    pub fn lossy(&self) -> bool {
        self.volatile() || (!self.wait_aof && self.fsync != Fsync::Always)
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fsync = match self.fsync {
            Fsync::Always => "always",
            Fsync::EverySec => "everysec",
            Fsync::No => "no",
            Fsync::Unknown => "unknown",
        };
        write!(
            f,
            "Redis {}, appendonly {}, appendfsync {fsync}{} (from {})",
            self.version,
            if self.appendonly { "yes" } else { "no" },
            if self.wait_aof {
                ", WAITAOF per publish"
            } else {
                ""
            },
            self.source
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waitaof_only_from_7_2_and_only_when_not_always() {
        assert!(!has_waitaof("7.0.15"));
        assert!(!has_waitaof("7.1.99"));
        assert!(has_waitaof("7.2.0"));
        assert!(has_waitaof("8.0.1"));
        let d = |v: &str, aof, fsync| Durability::new(v.into(), aof, fsync, "CONFIG GET");
        assert!(!d("7.0.15", true, Fsync::EverySec).wait_aof);
        assert!(d("7.2.4", true, Fsync::EverySec).wait_aof);
        assert!(d("7.2.4", true, Fsync::Unknown).wait_aof);
        assert!(!d("7.2.4", true, Fsync::Always).wait_aof);
        assert!(!d("7.2.4", false, Fsync::EverySec).wait_aof);
        assert!(d("7.0.15", true, Fsync::EverySec).lossy());
        assert!(!d("7.0.15", true, Fsync::Always).lossy());
        assert!(!d("7.2.4", true, Fsync::EverySec).lossy());
        assert!(d("7.2.4", false, Fsync::Always).lossy());
    }

    #[test]
    fn risks_name_the_setting_and_the_window() {
        let r = Durability::new("7.0.15".into(), true, Fsync::EverySec, "CONFIG GET").risk();
        assert!(r.contains("everysec") && r.contains("7.0.15") && r.contains("second"));
        let r = Durability::new("7.0.15".into(), false, Fsync::Always, "CONFIG GET").risk();
        assert!(r.contains("appendonly no"), "{r}");
    }

    #[test]
    fn only_allkeys_policies_are_volatile() {
        let d = || Durability::new("7.0.15".into(), true, Fsync::Always, "CONFIG GET");
        assert!(!d().with_policy("noeviction").volatile());
        assert!(!d().with_policy("volatile-lru").volatile());
        let e = d().with_policy("allkeys-lru");
        assert!(e.volatile() && e.lossy());
        assert!(e.risk().contains("allkeys-lru"), "{}", e.risk());
    }

    #[test]
    fn info_fields_and_fsync_values() {
        let info = "# Persistence\r\nloading:0\r\naof_enabled:1\r\n";
        assert_eq!(info_field(info, "aof_enabled"), Some("1"));
        assert_eq!(info_field(info, "nope"), None);
        assert_eq!(parse_fsync("EverySec"), Fsync::EverySec);
        assert_eq!(parse_fsync("?"), Fsync::Unknown);
        assert_eq!(version_tuple("7.0.15"), (7, 0, 15));
    }
}
