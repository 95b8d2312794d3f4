//! Per-input groups: `[[input.files]]` tables, each a set of paths with settings of its own.
//!
//! A group has `paths` (required) and may set `format`, `multiline`, `multiline_timeout`,
//! `year`, `timezone` and `strict`; what it leaves unset is the run-wide `input.*` value. The
//! positional `INPUT` paths and `input.paths` are the default group, with the run-wide values.
//! In the file a group is a table; on the command line (`--files`, repeatable) or in
//! `ACKLINE_INPUT_FILES` it is one text, `PATH;KEY=VALUE;...` ([`from_specs`]), and those
//! replace the file's groups. Each value is checked by the kind of the run-wide key of the same
//! name, so a group accepts exactly what that key accepts.
//!
//! How a group's settings reach its lines ([`InputGroup::file_group`]): the file input cuts a
//! group's records by its multi-line rule, and gives its messages the parse headers of
//! `ackline_worker::parse_headers` (the settings in which it differs from the run-wide ones)
//! and, for `year = "mtime"`, the file's mtime; the worker that parses a message applies them
//! over its own settings.
//!
//! Invariants:
//! - Every error is one line naming the group (`input.files[N]`, 0-based in file order, with
//!   the file, line and column of its table or of the value): an unknown key, a bad value, a
//!   group without paths, and two groups with different settings that both name one path (the
//!   same path or glob text, or a glob of one matching a plain path of the other; the default
//!   group counts as `input.paths`). Overlaps only globs can show are refused by the file
//!   input when a file matched by both appears ([`ackline_input::InputError::GroupConflict`]).
//! - Two groups "have different settings" exactly when the file input would treat their files
//!   differently ([`ackline_input::FileGroup::same_settings`] of their [`InputGroup::file_group`]s).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use ackline_input::{FileGroup, check_path_pattern, glob_matches};
use ackline_parse::{Multiline, ParserConfig, YearRule};

use super::Config;
use super::defs::{
    INPUT_FORMAT, INPUT_MULTILINE, INPUT_MULTILINE_TIMEOUT, INPUT_PATHS, INPUT_STRICT,
    INPUT_TIMEZONE, INPUT_YEAR,
};
use super::file::{Entry, GROUPS_KEY, Group};
use super::key::{AnyKey, Key};
use super::kind::Kind;
use super::source::{Given, RawValue, Source};

/// The keys a group may hold, in the order errors list them.
pub const GROUP_KEYS: [&str; 7] = [
    "paths",
    "format",
    "multiline",
    "multiline_timeout",
    "year",
    "timezone",
    "strict",
];

/// The name the default group (positional `INPUT`, `input.paths`) has in errors.
pub const DEFAULT_GROUP_NAME: &str = "input.paths";

/// One checked `[[input.files]]` group: its paths and its settings (the run-wide ones where it
/// sets none).
#[derive(Debug, Clone, PartialEq)]
pub struct InputGroup {
    /// `input.files[N]`.
    pub name: String,
    /// Files and glob patterns.
    pub paths: Vec<String>,
    /// Format, strictness, year rule and zone of its lines.
    pub parser: ParserConfig,
    /// How its lines are grouped into records.
    pub multiline: Multiline,
    /// How long its files' last multi-line record waits for more lines.
    pub multiline_timeout: Duration,
}

impl InputGroup {
    /// The file input's group for these settings, where `base` is the parser settings of the
    /// workers that parse its messages (the run-wide ones).
    pub fn file_group(&self, base: &ParserConfig) -> FileGroup {
        FileGroup {
            name: self.name.clone(),
            paths: self.paths.clone(),
            multiline: self.multiline,
            multiline_timeout: self.multiline_timeout,
            mtime_header: self.parser.year_rule == YearRule::FileMtime,
            headers: ackline_worker::parse_headers(base, &self.parser),
        }
    }
}

/// The default group of `cfg`: its paths with the run-wide settings.
fn default_group(cfg: &Config) -> InputGroup {
    InputGroup {
        name: DEFAULT_GROUP_NAME.to_string(),
        paths: cfg.paths.clone(),
        parser: cfg.parser,
        multiline: cfg.multiline,
        multiline_timeout: cfg.multiline_timeout,
    }
}

/// The value of `key` in `entries` (named `group.key` in errors), checked by the kind of the
/// run-wide key `def`.
fn value<K: Kind>(
    group: &str,
    entries: &BTreeMap<String, Entry>,
    key: &str,
    def: &Key<K>,
) -> Result<Option<K::Value>, String> {
    let Some(e) = entries.get(key) else {
        return Ok(None);
    };
    def.kind.parse(&e.given.value).map(Some).ok_or_else(|| {
        format!(
            "invalid {group}.{key} = {} ({}): expected {}",
            e.given.value,
            e.given.source,
            def.expected()
        )
    })
}

/// The groups of `--files` specs (`PATH;KEY=VALUE;...`, from `source`), as the file's tables
/// would give them: the path is the group's one entry of `paths`, each `KEY=VALUE` an entry.
/// A part without `=`, an empty key, a key given twice or `paths` (the path comes first) is an
/// error naming the group.
pub fn from_specs(specs: &[String], source: &Source) -> Result<Vec<Group>, String> {
    let entry = |value: RawValue| Entry {
        key_at: source.clone(),
        given: Given {
            value,
            source: source.clone(),
        },
    };
    let mut groups = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let bad = |why: &str| {
            format!(
                "invalid {GROUPS_KEY}[{i}] = {spec:?} ({source}): expected PATH;KEY=VALUE;... \
                 ({why})"
            )
        };
        let mut parts = spec.split(';').map(str::trim);
        let path = parts.next().unwrap_or_default();
        let mut entries = BTreeMap::new();
        entries.insert(
            "paths".to_string(),
            entry(RawValue::List(vec![RawValue::Text(path.to_string())])),
        );
        for part in parts.filter(|p| !p.is_empty()) {
            let Some((key, value)) = part.split_once('=') else {
                return Err(bad(&format!("{part:?} is not KEY=VALUE")));
            };
            let key = key.trim();
            if key == "paths" {
                return Err(bad("the path comes first, one per group"));
            }
            if key.is_empty() {
                return Err(bad(&format!("{part:?} has no key")));
            }
            let value = RawValue::Text(value.trim().to_string());
            if entries.insert(key.to_string(), entry(value)).is_some() {
                return Err(bad(&format!("{key} given twice")));
            }
        }
        groups.push(Group {
            at: source.clone(),
            entries,
        });
    }
    Ok(groups)
}

/// Checks one group read from the file, completing it with the run-wide settings of `cfg`.
fn check_one(index: usize, g: &Group, cfg: &Config) -> Result<InputGroup, String> {
    let name = format!("{GROUPS_KEY}[{index}]");
    if let Some((key, e)) = g
        .entries
        .iter()
        .find(|(k, _)| !GROUP_KEYS.contains(&k.as_str()))
    {
        return Err(format!(
            "unknown key {key} in {name} ({}): expected one of {}",
            e.key_at,
            GROUP_KEYS.join(", ")
        ));
    }
    let paths = value(&name, &g.entries, "paths", &INPUT_PATHS)?.unwrap_or_default();
    if paths.is_empty() {
        return Err(format!(
            "{name} ({}) has no paths: expected paths = [...], {}",
            g.at,
            INPUT_PATHS.expected()
        ));
    }
    let base = cfg.parser;
    let parser = ParserConfig {
        format: value(&name, &g.entries, "format", &INPUT_FORMAT)?.unwrap_or(base.format),
        strict: value(&name, &g.entries, "strict", &INPUT_STRICT)?.unwrap_or(base.strict),
        year_rule: value(&name, &g.entries, "year", &INPUT_YEAR)?.unwrap_or(base.year_rule),
        timezone: value(&name, &g.entries, "timezone", &INPUT_TIMEZONE)?.unwrap_or(base.timezone),
        ..base
    };
    Ok(InputGroup {
        paths,
        parser,
        multiline: value(&name, &g.entries, "multiline", &INPUT_MULTILINE)?
            .unwrap_or(cfg.multiline),
        multiline_timeout: value(
            &name,
            &g.entries,
            "multiline_timeout",
            &INPUT_MULTILINE_TIMEOUT,
        )?
        .unwrap_or(cfg.multiline_timeout),
        name,
    })
}

/// Whether the path or pattern `a` and the path or pattern `b` certainly name a file in
/// common: the same text, or one a plain path the other (a glob) matches.
fn overlap(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let glob = |p: &str| check_path_pattern(p).ok().flatten();
    match (glob(a), glob(b)) {
        (None, Some(g)) => glob_matches(&g, Path::new(a)),
        (Some(g), None) => glob_matches(&g, Path::new(b)),
        _ => false,
    }
}

/// Checks the groups read from the file, each alone and against each other and the default
/// group of `cfg`.
pub fn check(groups: &[Group], cfg: &Config) -> Result<Vec<InputGroup>, String> {
    let checked = groups
        .iter()
        .enumerate()
        .map(|(i, g)| check_one(i, g, cfg))
        .collect::<Result<Vec<_>, _>>()?;
    let mut all: Vec<(&InputGroup, String)> = Vec::new();
    let default = default_group(cfg);
    if !default.paths.is_empty() {
        all.push((&default, DEFAULT_GROUP_NAME.to_string()));
    }
    for (g, raw) in checked.iter().zip(groups) {
        all.push((g, format!("{} ({})", g.name, raw.at)));
    }
    for (i, (a, a_at)) in all.iter().enumerate() {
        let fa = a.file_group(&cfg.parser);
        for (b, b_at) in all.iter().skip(i + 1) {
            if fa.same_settings(&b.file_group(&cfg.parser)) {
                continue;
            }
            for pa in &a.paths {
                if let Some(pb) = b.paths.iter().find(|pb| overlap(pa, pb)) {
                    return Err(format!(
                        "{b_at} and {a_at} both name {} with different settings: make their \
                         paths exclusive (a file belongs to one group)",
                        if pa == pb {
                            format!("{pa:?}")
                        } else {
                            format!("{pa:?} / {pb:?}")
                        }
                    ));
                }
            }
        }
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::{Env, PipelineFlags, load};
    use ackline_parse::{Format, FormatChoice, Zone};

    fn load_text(text: &str) -> anyhow::Result<Config> {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, text).unwrap();
        load(
            dir.path(),
            Some(&f),
            &PipelineFlags::default(),
            &Env::empty(),
        )
    }

    fn error(text: &str) -> String {
        let e = load_text(text).unwrap_err().to_string();
        assert!(!e.contains('\n'), "{e}");
        e
    }

    /// The two groups: PostgreSQL logs in Berlin time with multi-line records, and
    /// syslog archives whose year comes from their mtime; the rest stays run-wide.
    #[test]
    fn two_groups_with_their_own_settings() {
        let c = load_text(
            "[input]\npaths = [\"/srv/app.log\"]\nstrict = true\n\n\
             [[input.files]]\npaths = [\"/var/log/postgresql/*.log\"]\nformat = \"postgresql\"\n\
             multiline = \"auto\"\nmultiline_timeout = \"2s\"\ntimezone = \"Europe/Berlin\"\n\n\
             [[input.files]]\npaths = [\"/var/log/old/*.log.1\"]\nformat = \"rfc3164\"\n\
             year = \"mtime\"\nstrict = false\n",
        )
        .unwrap();
        assert_eq!(c.paths, vec!["/srv/app.log"]);
        assert_eq!(c.groups.len(), 2);
        let (pg, old) = (&c.groups[0], &c.groups[1]);
        assert_eq!(pg.name, "input.files[0]");
        assert_eq!(pg.paths, vec!["/var/log/postgresql/*.log"]);
        assert_eq!(pg.parser.format, FormatChoice::Fixed(Format::Postgresql));
        assert_eq!(pg.parser.timezone, "Europe/Berlin".parse::<Zone>().unwrap());
        assert_eq!(pg.parser.year_rule, YearRule::Infer);
        assert!(pg.parser.strict, "run-wide strict applies");
        assert_eq!(pg.multiline, Multiline::Auto);
        assert_eq!(pg.multiline_timeout, Duration::from_secs(2));
        assert_eq!(old.parser.format, FormatChoice::Fixed(Format::Rfc3164));
        assert_eq!(old.parser.year_rule, YearRule::FileMtime);
        assert_eq!(old.parser.timezone, Zone::utc());
        assert!(!old.parser.strict);
        assert_eq!(old.multiline, Multiline::None);
        // What the file input gets: the headers of the differing settings, mtime for `mtime`.
        let fg = old.file_group(&c.parser);
        assert!(fg.mtime_header);
        assert_eq!(
            fg.headers,
            vec![
                ("format".to_string(), "rfc3164".to_string()),
                ("year".to_string(), "mtime".to_string()),
                ("strict".to_string(), "false".to_string()),
            ]
        );
        let fg = pg.file_group(&c.parser);
        assert!(!fg.mtime_header);
        assert_eq!(
            fg.headers,
            vec![
                ("format".to_string(), "postgresql".to_string()),
                ("timezone".to_string(), "Europe/Berlin".to_string()),
            ]
        );
    }

    /// Unknown keys, bad values and missing paths are one-line errors naming the group and
    /// where it is.
    #[test]
    fn bad_groups_are_errors_naming_the_group() {
        let e = error("[[input.files]]\npaths = [\"a\"]\nformt = \"json\"\n");
        assert!(
            e.starts_with("unknown key formt in input.files[0] (in ")
                && e.contains("c.toml:3:1)")
                && e.contains("expected one of paths, format, multiline"),
            "{e}"
        );
        let e = error(
            "[[input.files]]\npaths = [\"a\"]\n[[input.files]]\npaths = [\"b\"]\nyear = \"soon\"\n",
        );
        assert!(
            e.starts_with("invalid input.files[1].year = \"soon\" (in ")
                && e.contains("c.toml:5:8)")
                && e.ends_with("expected auto, mtime or a year (1 to 9999)"),
            "{e}"
        );
        let e = error("[[input.files]]\npaths = [\"a\"]\ntimezone = \"Mars/Olympus\"\n");
        assert!(
            e.starts_with("invalid input.files[0].timezone = \"Mars/Olympus\""),
            "{e}"
        );
        let e = error("[[input.files]]\npaths = [\"a\"]\nmultiline = \"sometimes\"\n");
        assert!(e.starts_with("invalid input.files[0].multiline = "), "{e}");
        let e = error("[[input.files]]\npaths = [\"a\"]\nmultiline_timeout = \"0s\"\n");
        assert!(
            e.starts_with("invalid input.files[0].multiline_timeout = "),
            "{e}"
        );
        let e = error("[[input.files]]\npaths = [\"a\"]\nstrict = \"maybe\"\n");
        assert!(e.starts_with("invalid input.files[0].strict = "), "{e}");
        let e = error("[[input.files]]\npaths = [\"[[\"]\n");
        assert!(
            e.starts_with("invalid input.files[0].paths = [\"[[\"]"),
            "{e}"
        );
        let e = error("[[input.files]]\nformat = \"json\"\n");
        assert!(
            e.starts_with("input.files[0] (in ") && e.contains(") has no paths: expected paths"),
            "{e}"
        );
        let e = error("[[input.files]]\npaths = []\n");
        assert!(
            e.contains("input.files[0] (in ") && e.contains("has no paths"),
            "{e}"
        );
        let e = error("[[input.files]]\npaths = [\"a\"]\n[input.files.x]\ny = 1\n");
        assert!(
            e.starts_with("unknown key x.y in input.files[0] (in "),
            "{e}"
        );
    }

    /// A path named by two groups with different settings is refused (the same text, or a
    /// glob of one matching a plain path of the other, the default group included); with the
    /// same settings it is not.
    #[test]
    fn a_path_of_two_groups_with_different_settings_is_refused() {
        let e = error(
            "[[input.files]]\npaths = [\"/l/a.log\"]\nformat = \"json\"\n\
             [[input.files]]\npaths = [\"/l/a.log\"]\nformat = \"logfmt\"\n",
        );
        assert!(
            e.starts_with("input.files[1] (in ")
                && e.contains("and input.files[0] (in ")
                && e.contains("both name \"/l/a.log\" with different settings"),
            "{e}"
        );
        let e = error(
            "[input]\npaths = [\"/l/*.log\"]\n\
             [[input.files]]\npaths = [\"/l/b.log\"]\ntimezone = \"+02:00\"\n",
        );
        assert!(
            e.starts_with("input.files[0] (in ")
                && e.contains("and input.paths both name \"/l/*.log\" / \"/l/b.log\""),
            "{e}"
        );
        // Same settings (explicit or inherited): a file may belong to either.
        let c = load_text(
            "[input]\npaths = [\"/l/*.log\"]\nformat = \"json\"\n\
             [[input.files]]\npaths = [\"/l/b.log\"]\nformat = \"json\"\n\
             [[input.files]]\npaths = [\"/l/b.log\"]\n",
        )
        .unwrap();
        assert_eq!(c.groups.len(), 2);
        // Globs that only overlap on some files are the file input's to refuse.
        assert!(load_text(
            "[[input.files]]\npaths = [\"/l/*.log\"]\n[[input.files]]\npaths = [\"/l/a.*\"]\nyear = \"2005\"\n"
        )
        .is_ok());
    }

    /// `--files` groups: the same settings as a table, errors naming the group and the flag;
    /// they replace the file's groups.
    #[test]
    fn groups_from_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[[input.files]]\npaths = [\"/from/file.log\"]\n").unwrap();
        let flags = |files: &[&str]| PipelineFlags {
            files: files.iter().map(|s| s.to_string()).collect(),
            ..PipelineFlags::default()
        };
        let c = load(
            dir.path(),
            Some(&f),
            &flags(&[
                "/var/log/postgresql/*.log; format=postgresql;multiline=auto;timezone=Europe/Berlin",
                "/var/log/old/*.log.1;format=rfc3164;year=mtime;",
            ]),
            &Env::empty(),
        )
        .unwrap();
        assert_eq!(c.groups.len(), 2, "the flag's groups replace the file's");
        let (pg, old) = (&c.groups[0], &c.groups[1]);
        assert_eq!(pg.paths, vec!["/var/log/postgresql/*.log"]);
        assert_eq!(pg.parser.format, FormatChoice::Fixed(Format::Postgresql));
        assert_eq!(pg.multiline, Multiline::Auto);
        assert_eq!(pg.parser.timezone, "Europe/Berlin".parse::<Zone>().unwrap());
        assert_eq!(old.paths, vec!["/var/log/old/*.log.1"]);
        assert_eq!(old.parser.year_rule, YearRule::FileMtime);
        // Without the flag, the file's.
        let c = load(dir.path(), Some(&f), &flags(&[]), &Env::empty()).unwrap();
        assert_eq!(c.groups[0].paths, vec!["/from/file.log"]);
        // The environment, comma-separated.
        let env = Env {
            vars: [(
                "ACKLINE_INPUT_FILES".to_string(),
                "/a.log;year=2005,/b.log;timezone=+02:00".to_string(),
            )]
            .into(),
        };
        let c = load(dir.path(), None, &flags(&[]), &env).unwrap();
        assert_eq!(c.groups[0].parser.year_rule, YearRule::Fixed(2005));
        assert_eq!(
            c.groups[1].parser.timezone,
            "+02:00".parse::<Zone>().unwrap()
        );
        let err = |files: &[&str]| {
            let e = load(dir.path(), None, &flags(files), &Env::empty())
                .unwrap_err()
                .to_string();
            assert!(!e.contains('\n'), "{e}");
            e
        };
        let e = err(&["/a.log;year=soon"]);
        assert!(
            e.starts_with("invalid input.files[0].year = \"soon\" (from flag --files): expected"),
            "{e}"
        );
        let e = err(&["/a.log", "/b.log;zone=UTC"]);
        assert!(
            e.starts_with("unknown key zone in input.files[1] (from flag --files)"),
            "{e}"
        );
        let e = err(&["/a.log;json"]);
        assert!(
            e.starts_with("invalid input.files[0] = \"/a.log;json\" (from flag --files): expected PATH;KEY=VALUE"),
            "{e}"
        );
        let e = err(&["/a.log;year=2005;year=2006"]);
        assert!(e.contains("year given twice"), "{e}");
        let e = err(&["/a.log;paths=/b.log"]);
        assert!(e.contains("the path comes first"), "{e}");
        let e = err(&[";format=json"]);
        assert!(e.starts_with("invalid input.files = "), "{e}");
        let e = err(&["/l/a.log;format=json", "/l/*.log;format=logfmt"]);
        assert!(e.contains("both name \"/l/a.log\" / \"/l/*.log\""), "{e}");
    }

    #[test]
    fn overlap_of_paths_and_patterns() {
        assert!(overlap("/a/b.log", "/a/b.log"));
        assert!(overlap("/a/*.log", "/a/b.log"));
        assert!(overlap("/a/b.log", "/a/*.log"));
        assert!(!overlap("/a/b.txt", "/a/*.log"));
        assert!(!overlap("/a/*.log", "/a/b*"));
        // `*` stays within a directory, as expansion does.
        assert!(!overlap("/var/log/*.log", "/var/log/postgresql/main.log"));
        assert!(overlap("/var/log/**/*.log", "/var/log/postgresql/main.log"));
    }
}
