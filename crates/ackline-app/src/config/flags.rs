//! The configuration keys' flags: the raw flag structs of `run`, `check`, `work` and `serve`,
//! their clap arguments built from the keys' definitions ([`super::defs`]), and the flag
//! layer they give [`super::load`].
//!
//! Each struct binds its fields to keys once (`bind!`); from that one list come its
//! arguments ([`Args`]), its reading from clap's matches ([`FromArgMatches`]) and its layer.
//! Flags declared with clap's derive elsewhere (`serve --queue`, `work --broker`) take their
//! name, value syntax and help from the definition too, through [`KeyArg::config_key`].
//!
//! Invariants:
//! - A flag's name, value syntax and help are its definition's; the help ends with
//!   `[config: KEY]`.
//! - Values stay raw text: they are checked with the file and the environment by
//!   [`super::load`], whose errors name the flag (`--workers`, `INPUT...` or `-`).

use std::collections::BTreeMap;

use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};

use super::defs::{
    BROKER_ALLOW_VOLATILE, BROKER_TLS_CA_FILE, BROKER_URL, CONSOLE_LISTEN, INPUT_FILES,
    INPUT_FORMAT, INPUT_MULTILINE, INPUT_PATHS, INPUT_POLL_INTERVAL, INPUT_START_AT, INPUT_STDIN,
    INPUT_STRICT, INPUT_TIMEZONE, INPUT_YEAR, METRICS_LISTEN, QUEUE_NAME, RETRY_BASE, RETRY_CAP,
    RETRY_FACTOR, RETRY_MAX_ATTEMPTS, SERVER_LISTEN, SERVER_SYSLOG_TCP, SERVER_SYSLOG_UDP,
    SERVER_TOKEN_FILE, SERVER_TOKENS, STORE_URL, WORKER_BATCH_SIZE, WORKER_LEASE,
    WORKER_MAX_OUTAGE, WORKER_PREFETCH, WORKER_SHUTDOWN_DEADLINE, WORKER_WORKERS,
};
use super::key::{AnyKey, Cmd, Flag, Form};
use super::source::{Given, RawValue, Source};

/// A field's value, as the layer reads it.
enum Held<'a> {
    /// `--name VALUE` or `--name [VALUE]`.
    One(&'a Option<String>),
    /// `--name`.
    Switch(&'a bool),
    /// Repeatable, or the positional inputs.
    Many(&'a Vec<String>),
}

/// A field, as clap's matches fill it.
enum HeldMut<'a> {
    One(&'a mut Option<String>),
    Switch(&'a mut bool),
    Many(&'a mut Vec<String>),
}

impl<'a> From<&'a Option<String>> for Held<'a> {
    fn from(v: &'a Option<String>) -> Self {
        Held::One(v)
    }
}

impl<'a> From<&'a bool> for Held<'a> {
    fn from(v: &'a bool) -> Self {
        Held::Switch(v)
    }
}

impl<'a> From<&'a Vec<String>> for Held<'a> {
    fn from(v: &'a Vec<String>) -> Self {
        Held::Many(v)
    }
}

impl<'a> From<&'a mut Option<String>> for HeldMut<'a> {
    fn from(v: &'a mut Option<String>) -> Self {
        HeldMut::One(v)
    }
}

impl<'a> From<&'a mut bool> for HeldMut<'a> {
    fn from(v: &'a mut bool) -> Self {
        HeldMut::Switch(v)
    }
}

impl<'a> From<&'a mut Vec<String>> for HeldMut<'a> {
    fn from(v: &'a mut Vec<String>) -> Self {
        HeldMut::Many(v)
    }
}

/// A field's key and the flag it holds (`None` only if the definitions lack the flag, which a
/// test rules out).
type Binding = (&'static dyn AnyKey, Option<&'static Flag>);

/// Binds each field of a flag struct to a key's flag, as `cmd` takes it: `field: KEY, "name";`.
/// Generates the bindings, and the fields in the same order to read and to fill.
macro_rules! bind {
    ($cmd:expr => $( $field:ident: $key:expr, $flag:literal; )*) => {
        /// Each field's key and flag, in field order.
        fn bindings() -> Vec<Binding> {
            vec![$( (&$key as &'static dyn AnyKey, $key.meta.flag($cmd, $flag)) ),*]
        }

        /// Each field, in the order of [`Self::bindings`].
        fn held(&self) -> Vec<Held<'_>> {
            vec![$( Held::from(&self.$field) ),*]
        }

        /// Each field to fill, in the order of [`Self::bindings`].
        fn held_mut(&mut self) -> Vec<HeldMut<'_>> {
            vec![$( HeldMut::from(&mut self.$field) ),*]
        }
    };
}

/// The pipeline's settings as flags: `run` and `check` (positional inputs, `--start-at`,
/// `--poll-interval`, `--queue`, `--max-outage` and [`WorkerFlags`]). Kept raw (strings):
/// [`super::load`] checks them together with the file and the environment and names the flag
/// in any error. `serve` and `work` fill it from their own flags.
#[derive(Debug, Clone, Default)]
pub struct PipelineFlags {
    /// Files or glob patterns to follow; `-` reads standard input.
    pub inputs: Vec<String>,
    /// `input.start_at`.
    pub start_at: Option<String>,
    /// `input.poll_interval`.
    pub poll_interval: Option<String>,
    /// `input.multiline`.
    pub multiline: Option<String>,
    /// `input.files` (`--files`, repeatable).
    pub files: Vec<String>,
    /// `queue.name`.
    pub queue: Option<String>,
    /// `worker.max_outage`.
    pub max_outage: Option<String>,
    /// How deliveries are processed and stored.
    pub worker: WorkerFlags,
    /// The settings of `ackline serve` (set by `serve` and `check`, not flags of `run`).
    pub server: ServerFlags,
    /// `--broker` of `work` and `serve` (not a flag of `run`).
    pub broker: Option<String>,
    /// `--broker-ca` of `work` and `serve` (not a flag of `run`).
    pub broker_ca: Option<String>,
    /// `--allow-volatile` of `work` and `serve` (not a flag of `run`).
    pub allow_volatile: bool,
    /// `console.listen`: `run --listen`, declared by `RunArgs` (so `check`, whose `--listen`
    /// is `server.listen`, has no second one).
    pub console_listen: Option<String>,
}

impl PipelineFlags {
    bind! { Cmd::Run =>
        inputs: INPUT_PATHS, "INPUT";
        start_at: INPUT_START_AT, "start-at";
        poll_interval: INPUT_POLL_INTERVAL, "poll-interval";
        multiline: INPUT_MULTILINE, "multiline";
        files: INPUT_FILES, "files";
        queue: QUEUE_NAME, "queue";
        max_outage: WORKER_MAX_OUTAGE, "max-outage";
    }

    /// The flag layer: each key a flag sets, with the flag that set it.
    pub(super) fn layer(&self) -> BTreeMap<&'static str, Given> {
        let mut m = BTreeMap::new();
        put_all(&mut m, Self::bindings(), self.held());
        put_all(&mut m, WorkerFlags::bindings(), self.worker.held());
        let relay: [(Binding, Held<'_>); 4] = [
            (
                (
                    &CONSOLE_LISTEN,
                    CONSOLE_LISTEN.meta.flag(Cmd::Run, "listen"),
                ),
                Held::One(&self.console_listen),
            ),
            (
                (&BROKER_URL, BROKER_URL.meta.flag(Cmd::Work, "broker")),
                Held::One(&self.broker),
            ),
            (
                (
                    &BROKER_TLS_CA_FILE,
                    BROKER_TLS_CA_FILE.meta.flag(Cmd::Work, "broker-ca"),
                ),
                Held::One(&self.broker_ca),
            ),
            (
                (
                    &BROKER_ALLOW_VOLATILE,
                    BROKER_ALLOW_VOLATILE.meta.flag(Cmd::Work, "allow-volatile"),
                ),
                Held::Switch(&self.allow_volatile),
            ),
        ];
        let (bindings, held) = relay.into_iter().unzip();
        put_all(&mut m, bindings, held);
        put_all(&mut m, ServerFlags::bindings(), self.server.held());
        m
    }
}

/// How deliveries are processed and stored: the flags shared by `run`, `check` and `work`
/// (raw; checked by [`super::load`]).
#[derive(Debug, Clone, Default)]
pub struct WorkerFlags {
    /// `input.format`.
    pub format: Option<String>,
    /// `input.year`.
    pub year: Option<String>,
    /// `input.timezone`.
    pub timezone: Option<String>,
    /// `--strict`: `input.strict = true`.
    pub strict: bool,
    /// `--lenient`: `input.strict = false`.
    pub lenient: bool,
    /// `worker.workers`.
    pub workers: Option<String>,
    /// `worker.batch_size`.
    pub batch_size: Option<String>,
    /// `worker.prefetch`.
    pub prefetch: Option<String>,
    /// `worker.lease`.
    pub lease: Option<String>,
    /// `worker.shutdown_deadline`.
    pub shutdown_deadline: Option<String>,
    /// `retry.base`.
    pub retry_base: Option<String>,
    /// `retry.factor`.
    pub retry_factor: Option<String>,
    /// `retry.cap`.
    pub retry_cap: Option<String>,
    /// `retry.max_attempts`.
    pub max_attempts: Option<String>,
    /// `store.url`.
    pub store: Option<String>,
    /// `metrics.listen`.
    pub metrics_listen: Option<String>,
}

impl WorkerFlags {
    bind! { Cmd::Run =>
        format: INPUT_FORMAT, "format";
        year: INPUT_YEAR, "year";
        timezone: INPUT_TIMEZONE, "timezone";
        strict: INPUT_STRICT, "strict";
        lenient: INPUT_STRICT, "lenient";
        workers: WORKER_WORKERS, "workers";
        batch_size: WORKER_BATCH_SIZE, "batch-size";
        prefetch: WORKER_PREFETCH, "prefetch";
        lease: WORKER_LEASE, "lease";
        shutdown_deadline: WORKER_SHUTDOWN_DEADLINE, "shutdown-deadline";
        retry_base: RETRY_BASE, "retry-base";
        retry_factor: RETRY_FACTOR, "retry-factor";
        retry_cap: RETRY_CAP, "retry-cap";
        max_attempts: RETRY_MAX_ATTEMPTS, "max-attempts";
        store: STORE_URL, "store";
        metrics_listen: METRICS_LISTEN, "metrics-listen";
    }
}

/// The settings of `ackline serve` as flags, which `check` takes too (raw; checked by
/// [`super::load`]).
#[derive(Debug, Clone, Default)]
pub struct ServerFlags {
    /// `server.listen`.
    pub listen: Option<String>,
    /// `server.tokens` (repeatable `--token`).
    pub tokens: Vec<String>,
    /// `server.token_file`.
    pub token_file: Option<String>,
    /// `server.syslog_tcp` (`--syslog-tcp` alone: its default address).
    pub syslog_tcp: Option<String>,
    /// `server.syslog_udp` (`--syslog-udp` alone: its default address).
    pub syslog_udp: Option<String>,
}

impl ServerFlags {
    bind! { Cmd::Serve =>
        listen: SERVER_LISTEN, "listen";
        tokens: SERVER_TOKENS, "token";
        token_file: SERVER_TOKEN_FILE, "token-file";
        syslog_tcp: SERVER_SYSLOG_TCP, "syslog-tcp";
        syslog_udp: SERVER_SYSLOG_UDP, "syslog-udp";
    }
}

/// Implements clap's [`Args`] and [`FromArgMatches`] for a struct with `bind!` bindings, and
/// after its own arguments those of the structs it nests (`worker` in `PipelineFlags`).
macro_rules! clap_args {
    ($ty:ty $(, nested $field:ident: $nested:ty)?) => {
        impl Args for $ty {
            fn augment_args(cmd: Command) -> Command {
                let cmd = add_args(cmd, Self::bindings());
                $( let cmd = <$nested as Args>::augment_args(cmd); )?
                cmd
            }

            fn augment_args_for_update(cmd: Command) -> Command {
                Self::augment_args(cmd)
            }
        }

        impl FromArgMatches for $ty {
            fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
                let mut s = Self::default();
                s.update_from_arg_matches(m)?;
                Ok(s)
            }

            fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
                read(m, Self::bindings(), self.held_mut())?;
                $( self.$field.update_from_arg_matches(m)?; )?
                Ok(())
            }
        }
    };
}

clap_args!(PipelineFlags, nested worker: WorkerFlags);
clap_args!(WorkerFlags);
clap_args!(ServerFlags);

/// Adds one argument per bound flag, in field order.
fn add_args(mut cmd: Command, bindings: Vec<Binding>) -> Command {
    for (key, flag) in bindings {
        if let Some(f) = flag.filter(|f| f.form != Form::Dash) {
            cmd = cmd.arg(configure(Arg::new(f.name), key, f));
        }
    }
    cmd
}

/// Gives `arg` the flag's name, value syntax and help.
fn configure(arg: Arg, key: &dyn AnyKey, f: &'static Flag) -> Arg {
    let name = key.meta().name;
    let arg = arg.help(if f.help.is_empty() {
        format!("[config: {name}]")
    } else {
        format!("{} [config: {name}]", f.help)
    });
    let valued = |arg: Arg| {
        arg.long(f.name)
            .value_name(f.value_name)
            .value_parser(clap::value_parser!(String))
    };
    match f.form {
        Form::Value => valued(arg).action(ArgAction::Set),
        Form::Optional { missing } => valued(arg)
            .action(ArgAction::Set)
            .num_args(0..=1)
            .default_missing_value(missing),
        Form::Repeated => valued(arg).action(ArgAction::Append),
        Form::Switch { .. } => {
            let others = key.meta().flags.iter().filter(|o| {
                matches!(o.form, Form::Switch { .. })
                    && o.name != f.name
                    && o.on.iter().any(|c| f.on.contains(c))
            });
            others.fold(arg.long(f.name).action(ArgAction::SetTrue), |a, o| {
                a.conflicts_with(o.name)
            })
        }
        Form::Inputs => arg
            .value_name(f.value_name)
            .value_parser(clap::value_parser!(String))
            .num_args(1..)
            .action(ArgAction::Append),
        Form::Dash => arg,
    }
}

fn mismatch(e: clap::parser::MatchesError) -> clap::Error {
    clap::Error::raw(clap::error::ErrorKind::InvalidValue, e)
}

/// Fills the fields from clap's matches (fields whose flag is absent keep their value).
fn read(m: &ArgMatches, bindings: Vec<Binding>, held: Vec<HeldMut<'_>>) -> Result<(), clap::Error> {
    for ((_, flag), field) in bindings.into_iter().zip(held) {
        let Some(f) = flag else { continue };
        match field {
            HeldMut::One(v) => {
                if let Some(x) = m.try_get_one::<String>(f.name).map_err(mismatch)? {
                    *v = Some(x.clone());
                }
            }
            HeldMut::Switch(v) => {
                if let Some(x) = m.try_get_one::<bool>(f.name).map_err(mismatch)? {
                    *v = *x;
                }
            }
            HeldMut::Many(v) => {
                if let Some(xs) = m.try_get_many::<String>(f.name).map_err(mismatch)? {
                    *v = xs.cloned().collect();
                }
            }
        }
    }
    Ok(())
}

/// Puts each set field in the layer under its key, with its flag as the source.
fn put_all(m: &mut BTreeMap<&'static str, Given>, bindings: Vec<Binding>, held: Vec<Held<'_>>) {
    for ((key, flag), field) in bindings.into_iter().zip(held) {
        let Some(f) = flag else { continue };
        let mut put = |key: &'static dyn AnyKey, label: String, value: RawValue| {
            m.insert(
                key.meta().name,
                Given {
                    value,
                    source: Source::Flag(label),
                },
            );
        };
        let texts = |xs: Vec<&String>| {
            RawValue::List(xs.into_iter().map(|x| RawValue::Text(x.clone())).collect())
        };
        match (field, f.form) {
            (Held::One(Some(v)), _) => put(key, f.label(), RawValue::Text(v.clone())),
            (Held::Switch(true), Form::Switch { value }) => {
                put(key, f.label(), RawValue::Bool(value));
            }
            (Held::Many(vs), Form::Inputs) => {
                let files: Vec<&String> = vs.iter().filter(|p| p.as_str() != "-").collect();
                if !files.is_empty() {
                    put(key, f.label(), texts(files));
                }
                if vs.iter().any(|p| p == "-") {
                    let dash = INPUT_STDIN
                        .meta
                        .flags
                        .first()
                        .map_or("-".into(), |d| d.label());
                    put(&INPUT_STDIN, dash, RawValue::Bool(true));
                }
            }
            (Held::Many(vs), _) if !vs.is_empty() => {
                put(key, f.label(), texts(vs.iter().collect()));
            }
            _ => {}
        }
    }
}

/// Builds a field's argument, declared with clap's derive, from its key's flag for a command:
/// `#[arg(config_key = (&QUEUE_NAME, Cmd::Serve))]` (name, value syntax and help from the
/// definition; the field keeps its id).
pub trait KeyArg {
    /// This argument as `cmd` takes `key`'s flag.
    fn config_key(self, at: (&'static dyn AnyKey, Cmd)) -> Self;
}

impl KeyArg for Arg {
    fn config_key(self, (key, cmd): (&'static dyn AnyKey, Cmd)) -> Arg {
        match key.meta().flags.iter().find(|f| f.on.contains(&cmd)) {
            Some(f) => configure(self, key, f),
            None => self,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_field_is_bound_to_a_defined_flag() {
        for (key, flag) in PipelineFlags::bindings()
            .into_iter()
            .chain(WorkerFlags::bindings())
            .chain(ServerFlags::bindings())
        {
            assert!(flag.is_some(), "{} has no such flag", key.meta().name);
        }
    }

    fn parse<T: Args + FromArgMatches>(args: &[&str]) -> T {
        let cmd = T::augment_args(Command::new("t"));
        let m = cmd.try_get_matches_from(args).unwrap();
        T::from_arg_matches(&m).unwrap()
    }

    #[test]
    fn flags_fill_their_fields_and_name_themselves_in_the_layer() {
        let f: PipelineFlags = parse(&[
            "t",
            "a.log",
            "-",
            "--workers",
            "3",
            "--lenient",
            "--queue",
            "q",
        ]);
        assert_eq!(f.inputs, ["a.log", "-"]);
        assert_eq!(f.worker.workers.as_deref(), Some("3"));
        assert!(f.worker.lenient && !f.worker.strict);
        let l = f.layer();
        let g = &l["worker.workers"];
        assert_eq!(g.value, RawValue::Text("3".into()));
        assert_eq!(g.source, Source::Flag("--workers".into()));
        assert_eq!(l["input.strict"].value, RawValue::Bool(false));
        assert_eq!(l["input.strict"].source, Source::Flag("--lenient".into()));
        assert_eq!(l["input.stdin"].source, Source::Flag("-".into()));
        assert_eq!(l["input.paths"].source, Source::Flag("INPUT...".into()));
        assert_eq!(
            l["input.paths"].value,
            RawValue::List(vec![RawValue::Text("a.log".into())])
        );
        assert!(!l.contains_key("queue.fsync"));

        let s: ServerFlags = parse(&["t", "--syslog-udp", "--token", "a", "--token", "b"]);
        assert_eq!(s.syslog_udp.as_deref(), Some("127.0.0.1:5514"));
        assert_eq!(s.tokens, ["a", "b"]);
        assert!(parse::<ServerFlags>(&["t"]).syslog_tcp.is_none());
        let bad = PipelineFlags::augment_args(Command::new("t")).try_get_matches_from([
            "t",
            "--strict",
            "--lenient",
        ]);
        assert!(bad.is_err());
    }

    /// Which keys each command takes, and through which flags, is what the definitions say
    /// (`on`), both ways: the documentation's flag column is generated from the same.
    #[test]
    fn each_command_takes_the_flags_its_keys_declare() {
        use clap::{Args as _, Subcommand as _};
        use std::collections::BTreeSet;

        use crate::config::KEYS;

        // The product's commands as the binary composes them (global flags + subcommands).
        let cli = crate::cli::Command::augment_subcommands(crate::cli::GlobalArgs::augment_args(
            clap::Command::new("ackline"),
        ));
        let commands: [(&[&str], Cmd); 9] = [
            (&["run"], Cmd::Run),
            (&["check"], Cmd::Check),
            (&["serve"], Cmd::Serve),
            (&["work"], Cmd::Work),
            (&["dlq", "list"], Cmd::Dlq),
            (&["dlq", "show"], Cmd::Dlq),
            (&["dlq", "replay"], Cmd::Dlq),
            (&["dlq", "purge"], Cmd::Dlq),
            (&["queue", "stats"], Cmd::QueueStats),
        ];
        for (path, cmd) in commands {
            let mut c = &cli;
            for p in path {
                c = c.find_subcommand(p).unwrap();
            }
            let has: BTreeSet<(String, String)> = c
                .get_arguments()
                .filter_map(|a| {
                    let help = a.get_help()?.to_string();
                    let key = help.rsplit_once(" [config: ")?.1.strip_suffix(']')?;
                    let name = a.get_long().unwrap_or(a.get_id().as_str());
                    Some((key.to_string(), name.to_string()))
                })
                .collect();
            let declared: BTreeSet<(String, String)> = KEYS
                .iter()
                .flat_map(|k| {
                    k.meta()
                        .flags
                        .iter()
                        .filter(|f| f.on.contains(&cmd) && f.form != Form::Dash)
                        .map(|f| (k.meta().name.to_string(), f.name.to_string()))
                })
                .collect();
            assert_eq!(has, declared, "{path:?}");
        }
        cli.debug_assert();
    }
}
