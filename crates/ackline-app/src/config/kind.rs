//! The kinds of value a configuration key takes. A kind parses a raw value (from a flag, the
//! environment or the file) into its typed value, and describes what it accepts.
//!
//! Invariants:
//! - A kind's description is generated from the very bounds it checks (`Int { min, max }`
//!   says "an integer from MIN to MAX"), so the text quoted in errors and in `docs/config.md`
//!   cannot disagree with the check. Kinds without bounds to state ([`Text`], [`List`]) carry
//!   their text beside their validator.
//! - Parsing never panics: a value of the wrong type, out of range or malformed is `None`.
//!   Text is trimmed first; integers may be written with `_` separators.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use super::source::RawValue;

/// What a key accepts: how its raw value is checked and typed, and how that is described.
pub trait Kind: Sync {
    /// The typed value.
    type Value;
    /// The typed value, or `None` when `v` is not acceptable.
    fn parse(&self, v: &RawValue) -> Option<Self::Value>;
    /// What is accepted, as errors quote it after "expected" ("an integer from 1 to 256").
    fn describe(&self) -> Cow<'static, str>;
}

/// The trimmed text of a text value (every flag and variable, and TOML strings).
pub(super) fn text(v: &RawValue) -> Option<&str> {
    match v {
        RawValue::Text(s) => Some(s.trim()),
        _ => None,
    }
}

/// An integer within `min..=max`, as `T`.
#[derive(Debug)]
pub struct Int<T> {
    min: i64,
    max: i64,
    noun: &'static str,
    out: PhantomData<fn() -> T>,
}

impl<T> Int<T> {
    /// An integer from `min` to `max`.
    pub const fn new(min: i64, max: i64) -> Self {
        Int {
            min,
            max,
            noun: "an integer",
            out: PhantomData,
        }
    }

    /// A byte count from `min` to `max`.
    pub const fn bytes(min: i64, max: i64) -> Self {
        Int {
            noun: "a byte count",
            ..Int::new(min, max)
        }
    }
}

impl<T: TryFrom<i64>> Kind for Int<T> {
    type Value = T;

    fn parse(&self, v: &RawValue) -> Option<T> {
        let n = match v {
            RawValue::Int(i) => *i,
            RawValue::Text(s) => s.trim().replace('_', "").parse().ok()?,
            _ => return None,
        };
        if !(self.min..=self.max).contains(&n) {
            return None;
        }
        T::try_from(n).ok()
    }

    fn describe(&self) -> Cow<'static, str> {
        format!("{} from {} to {}", self.noun, self.min, self.max).into()
    }
}

/// A finite number within `min..=max`.
#[derive(Debug)]
pub struct Float {
    min: f64,
    max: f64,
}

impl Float {
    /// A number from `min` to `max`.
    pub const fn new(min: f64, max: f64) -> Self {
        Float { min, max }
    }
}

impl Kind for Float {
    type Value = f64;

    fn parse(&self, v: &RawValue) -> Option<f64> {
        let x = match v {
            RawValue::Int(i) => *i as f64,
            RawValue::Float(x) => *x,
            RawValue::Text(s) => s.trim().parse().ok()?,
            _ => return None,
        };
        (x.is_finite() && x >= self.min && x <= self.max).then_some(x)
    }

    fn describe(&self) -> Cow<'static, str> {
        format!("a number from {} to {}", self.min, self.max).into()
    }
}

/// A duration (an integer and a unit, see [`parse_duration`]) within `min..=max`.
#[derive(Debug)]
pub struct Dur {
    min: Duration,
    max: Duration,
}

impl Dur {
    /// A duration from `min` to `max` ("up to `max`" when `min` is zero).
    pub const fn new(min: Duration, max: Duration) -> Self {
        Dur { min, max }
    }

    /// `d` if it is within the bounds.
    pub fn check(&self, d: Duration) -> Option<Duration> {
        (d >= self.min && d <= self.max).then_some(d)
    }
}

impl Kind for Dur {
    type Value = Duration;

    fn parse(&self, v: &RawValue) -> Option<Duration> {
        self.check(parse_duration(text(v)?)?)
    }

    fn describe(&self) -> Cow<'static, str> {
        if self.min.is_zero() {
            format!("a duration up to {}", Human(self.max)).into()
        } else {
            format!("a duration from {} to {}", Human(self.min), Human(self.max)).into()
        }
    }
}

/// `250ms`, `30s`, `5m`, `1h` (an integer and a unit).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let ms = match unit.trim() {
        "ms" => Some(n),
        "s" => n.checked_mul(1000),
        "m" | "min" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => None,
    }?;
    Some(Duration::from_millis(ms))
}

/// A duration as [`parse_duration`] reads it, in the largest unit that divides it.
#[derive(Debug)]
pub struct Human(pub Duration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        match ms {
            0 => f.write_str("0s"),
            _ if ms.is_multiple_of(3_600_000) => write!(f, "{}h", ms / 3_600_000),
            _ if ms.is_multiple_of(60_000) => write!(f, "{}m", ms / 60_000),
            _ if ms.is_multiple_of(1000) => write!(f, "{}s", ms / 1000),
            _ => write!(f, "{ms}ms"),
        }
    }
}

/// `true` or `false` (also `1`/`0`, `yes`/`no`, `on`/`off` as text).
#[derive(Debug)]
pub struct Bool;

impl Kind for Bool {
    type Value = bool;

    fn parse(&self, v: &RawValue) -> Option<bool> {
        match v {
            RawValue::Bool(b) => Some(*b),
            RawValue::Text(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Some(true),
                "false" | "0" | "no" | "off" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }

    fn describe(&self) -> Cow<'static, str> {
        "true or false".into()
    }
}

/// One of a few words (any case).
#[derive(Debug)]
pub struct Choice<T: 'static>(pub &'static [(&'static str, T)]);

impl<T: Clone + Sync> Kind for Choice<T> {
    type Value = T;

    fn parse(&self, v: &RawValue) -> Option<T> {
        let s = text(v)?;
        self.0
            .iter()
            .find(|(word, _)| word.eq_ignore_ascii_case(s))
            .map(|(_, value)| value.clone())
    }

    fn describe(&self) -> Cow<'static, str> {
        let words: Vec<&str> = self.0.iter().map(|(w, _)| *w).collect();
        match words.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => words.concat(),
        }
        .into()
    }
}

/// Text checked (and typed) by a function, described by its own words: for values whose
/// rules are not a range (URLs, addresses, names, files).
#[derive(Debug)]
pub struct Text<T: 'static> {
    expected: &'static str,
    parse: fn(&str) -> Option<T>,
}

impl<T> Text<T> {
    /// Text that `parse` accepts, described as `expected`.
    pub const fn new(expected: &'static str, parse: fn(&str) -> Option<T>) -> Self {
        Text { expected, parse }
    }
}

impl<T> Kind for Text<T> {
    type Value = T;

    fn parse(&self, v: &RawValue) -> Option<T> {
        (self.parse)(text(v)?)
    }

    fn describe(&self) -> Cow<'static, str> {
        self.expected.into()
    }
}

/// A list of non-empty items that each pass `item`: a TOML array, or comma-separated text
/// (empty items skipped).
#[derive(Debug)]
pub struct List {
    expected: &'static str,
    item: fn(&str) -> bool,
}

impl List {
    /// A list of items that `item` accepts, described as `expected`.
    pub const fn new(expected: &'static str, item: fn(&str) -> bool) -> Self {
        List { expected, item }
    }
}

impl Kind for List {
    type Value = Vec<String>;

    fn parse(&self, v: &RawValue) -> Option<Vec<String>> {
        let items: Vec<String> = match v {
            RawValue::List(items) => items
                .iter()
                .map(|x| text(x).filter(|s| !s.is_empty()).map(str::to_string))
                .collect::<Option<_>>()?,
            RawValue::Text(s) => s
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
            _ => return None,
        };
        items.iter().all(|i| (self.item)(i)).then_some(items)
    }

    fn describe(&self) -> Cow<'static, str> {
        self.expected.into()
    }
}

/// An SQL identifier: ASCII letters, digits and `_`, not starting with a digit, at most
/// `max_len` bytes.
#[derive(Debug)]
pub struct Ident {
    max_len: usize,
}

impl Ident {
    /// An identifier of at most `max_len` bytes.
    pub const fn new(max_len: usize) -> Self {
        Ident { max_len }
    }
}

impl Kind for Ident {
    type Value = String;

    fn parse(&self, v: &RawValue) -> Option<String> {
        let t = text(v)?;
        let ok = !t.is_empty()
            && t.len() <= self.max_len
            && t.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        ok.then(|| t.to_string())
    }

    fn describe(&self) -> Cow<'static, str> {
        format!(
            "letters, digits and _, starting with a letter or _, at most {} bytes",
            self.max_len
        )
        .into()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn t(s: &str) -> RawValue {
        RawValue::Text(s.into())
    }

    #[test]
    fn ints_check_the_range_they_describe() {
        let k: Int<usize> = Int::new(1, 256);
        assert_eq!(k.describe(), "an integer from 1 to 256");
        assert_eq!(k.parse(&t(" 256 ")), Some(256));
        assert_eq!(k.parse(&RawValue::Int(1)), Some(1));
        assert_eq!(k.parse(&t("1_0")), Some(10));
        assert_eq!(k.parse(&t("0")), None);
        assert_eq!(k.parse(&t("257")), None);
        assert_eq!(k.parse(&RawValue::Bool(true)), None);
        let b: Int<usize> = Int::bytes(0, 1 << 30);
        assert_eq!(b.describe(), "a byte count from 0 to 1073741824");
    }

    #[test]
    fn durations_check_the_range_they_describe() {
        let k = Dur::new(Duration::from_millis(100), Duration::from_secs(600));
        assert_eq!(k.describe(), "a duration from 100ms to 10m");
        assert_eq!(k.parse(&t("10m")), Some(Duration::from_secs(600)));
        assert_eq!(k.parse(&t("601s")), None);
        assert_eq!(k.parse(&t("99ms")), None);
        assert_eq!(k.parse(&RawValue::Int(5)), None);
        let up = Dur::new(Duration::ZERO, Duration::from_secs(86_400));
        assert_eq!(up.describe(), "a duration up to 24h");
        assert_eq!(up.parse(&t("0s")), Some(Duration::ZERO));
    }

    #[test]
    fn durations_are_described_as_they_are_written() {
        for s in ["1ms", "250ms", "1s", "90s", "5m", "1h", "24h"] {
            let d = parse_duration(s).unwrap();
            assert_eq!(parse_duration(&Human(d).to_string()), Some(d), "{s}");
        }
    }

    #[test]
    fn choices_floats_lists_and_identifiers() {
        let c = Choice(&[("beginning", 0), ("end", 1)]);
        assert_eq!(c.describe(), "beginning or end");
        assert_eq!(c.parse(&t(" END ")), Some(1));
        assert_eq!(c.parse(&t("middle")), None);
        let f = Float::new(1.0, 100.0);
        assert_eq!(f.describe(), "a number from 1 to 100");
        assert_eq!(f.parse(&RawValue::Int(2)), Some(2.0));
        assert_eq!(f.parse(&t("NaN")), None);
        let l = List::new("letters", |s| s.chars().all(char::is_alphabetic));
        assert_eq!(
            l.parse(&t("a, b,,c")),
            Some(vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(l.parse(&t("a,1")), None);
        assert_eq!(l.parse(&RawValue::List(vec![t("a"), t("")])), None);
        let i = Ident::new(48);
        assert_eq!(i.parse(&t("_ok_1")), Some("_ok_1".into()));
        assert_eq!(i.parse(&t("1no")), None);
        assert_eq!(i.parse(&t(&"a".repeat(49))), None);
    }
}
