//! Timestamp building blocks shared by the formats.
//!
//! Invariants:
//! - nothing here panics or overflows: every calendar value goes through
//!   chrono's checked constructors, and a value that names no real instant
//!   becomes [`ErrorKind::TimestampOutOfRange`];
//! - a leap second (`:60`) is kept as chrono's leap-second representation;
//! - a timestamp without an offset gets the configured offset and says so
//!   through its [`TimestampSource`];
//! - year inference follows [`YearRule::Infer`], and only that rule.

use chrono::{
    DateTime, Duration, FixedOffset, NaiveDate, NaiveDateTime, Offset as _, TimeZone, Utc,
};
use serde::{Deserialize, Serialize};

use crate::error::ErrorKind;
use crate::record::TimestampSource;
use crate::scan::{Cursor, PResult};
use crate::zone::Zone;

/// A timestamp and where it came from.
pub(crate) type Stamp = (DateTime<FixedOffset>, TimestampSource);

/// How to complete timestamps that carry no year (RFC 3164, logcat,
/// Proxifier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum YearRule {
    /// The year is chosen relative to the line's reference time (its
    /// [`LineContext::ingest_time`](crate::LineContext::ingest_time)): the
    /// **latest** year, among the reference year plus one and the years
    /// before it, for which the timestamp is **not more than 7 days after**
    /// the reference time.
    ///
    /// So a line is normally in the reference year; one from late December
    /// read in early January lands in the previous year; a device clock up
    /// to a week ahead (a January 1st line read on December 31st) lands in
    /// the next year; and `Feb 29` goes to the most recent leap year that
    /// satisfies the rule (looking back at most four years before the
    /// reference year).
    #[default]
    Infer,
    /// Always this year (for replaying an archive whose year is known).
    Fixed(i32),
    /// As [`YearRule::Infer`], but relative to the modification time of the
    /// file the line came from
    /// ([`LineContext::file_mtime`](crate::LineContext::file_mtime), the
    /// ingest time when the input states none), and with a tolerance of
    /// one day instead of seven: the latest year that puts the timestamp
    /// not more than a day after the file's mtime. For archives: a 2005 log
    /// whose mtime is 2006-01-02 reads its `Dec 31` lines as 2005 and its
    /// `Jan 1` lines as 2006. (A day, not zero: a file written in another
    /// zone than the one configured may look up to a day ahead.)
    FileMtime,
}

impl YearRule {
    /// What [`YearRule::from_str`](std::str::FromStr) accepts, for error messages.
    pub const EXPECTED: &'static str = "auto, mtime or a year (1 to 9999)";
}

impl std::fmt::Display for YearRule {
    /// `auto`, `mtime` or the year: what [`YearRule::from_str`](std::str::FromStr) reads back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            YearRule::Infer => f.write_str("auto"),
            YearRule::FileMtime => f.write_str("mtime"),
            YearRule::Fixed(y) => write!(f, "{y}"),
        }
    }
}

/// The string names no year rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown year rule {0:?} (expected {expected})", expected = YearRule::EXPECTED)]
pub struct UnknownYearRule(pub String);

impl std::str::FromStr for YearRule {
    type Err = UnknownYearRule;

    /// `auto` ([`YearRule::Infer`]), `mtime` ([`YearRule::FileMtime`]) or a year from 1 to
    /// 9999 ([`YearRule::Fixed`]); case and surrounding spaces are ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(YearRule::Infer),
            "mtime" => Ok(YearRule::FileMtime),
            y => y
                .parse::<i32>()
                .ok()
                .filter(|y| (1..=9999).contains(y))
                .map(YearRule::Fixed)
                .ok_or_else(|| UnknownYearRule(s.to_owned())),
        }
    }
}

/// How far after the file's mtime an inferred timestamp may be
/// ([`YearRule::FileMtime`]).
pub(crate) const MTIME_TOLERANCE_DAYS: i64 = 1;

/// How far in the future (relative to the reference time) an inferred
/// timestamp may be before an earlier year is preferred.
pub(crate) const FUTURE_TOLERANCE_DAYS: i64 = 7;

/// Settings the timestamp helpers need for one line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TimeEnv {
    pub(crate) reference: DateTime<Utc>,
    /// The file's mtime, for [`YearRule::FileMtime`].
    pub(crate) file_mtime: Option<DateTime<Utc>>,
    pub(crate) zone: Zone,
    pub(crate) year_rule: YearRule,
}

/// A wall-clock date and time, unvalidated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Civil {
    pub(crate) year: i32,
    pub(crate) month: u32,
    pub(crate) day: u32,
    pub(crate) hour: u32,
    pub(crate) minute: u32,
    pub(crate) second: u32,
    pub(crate) nanos: u32,
}

impl Civil {
    /// Validates into a naive date-time. Second 60 is a leap second.
    pub(crate) fn naive(self) -> Result<NaiveDateTime, ErrorKind> {
        let date = NaiveDate::from_ymd_opt(self.year, self.month, self.day)
            .ok_or(ErrorKind::TimestampOutOfRange)?;
        if self.nanos >= 1_000_000_000 {
            return Err(ErrorKind::TimestampOutOfRange);
        }
        let (second, nanos) = if self.second == 60 {
            (59, self.nanos + 1_000_000_000)
        } else {
            (self.second, self.nanos)
        };
        date.and_hms_nano_opt(self.hour, self.minute, second, nanos)
            .ok_or(ErrorKind::TimestampOutOfRange)
    }

    /// In an explicit offset.
    pub(crate) fn at(self, offset: FixedOffset) -> Result<DateTime<FixedOffset>, ErrorKind> {
        let naive = self.naive()?;
        offset
            .from_local_datetime(&naive)
            .single()
            .ok_or(ErrorKind::TimestampOutOfRange)
    }

    /// In the configured zone (DST rules of [`Zone`] applied).
    pub(crate) fn in_zone(self, zone: Zone) -> Result<DateTime<FixedOffset>, ErrorKind> {
        let naive = self.naive()?;
        zone.offset_for_local(&naive)
            .from_local_datetime(&naive)
            .single()
            .ok_or(ErrorKind::TimestampOutOfRange)
    }

    /// In the configured zone (the line stated no offset).
    pub(crate) fn assumed(self, env: &TimeEnv) -> Result<Stamp, ErrorKind> {
        Ok((self.in_zone(env.zone)?, TimestampSource::LineAssumedOffset))
    }

    /// `self.year` is ignored: the year comes from the [`YearRule`].
    pub(crate) fn infer_year(self, env: &TimeEnv) -> Result<Stamp, ErrorKind> {
        match env.year_rule {
            YearRule::Fixed(year) => Ok((
                Civil { year, ..self }.in_zone(env.zone)?,
                TimestampSource::LineInferredYear,
            )),
            YearRule::Infer | YearRule::FileMtime => {
                let (reference, tolerance) = match (env.year_rule, env.file_mtime) {
                    (YearRule::FileMtime, Some(mtime)) => (mtime, MTIME_TOLERANCE_DAYS),
                    _ => (env.reference, FUTURE_TOLERANCE_DAYS),
                };
                let limit = reference
                    .checked_add_signed(Duration::days(tolerance))
                    .ok_or(ErrorKind::TimestampOutOfRange)?;
                let ref_year = chrono::Datelike::year(&local_of(reference, env.zone)?);
                for year in (ref_year.saturating_sub(4)..=ref_year.saturating_add(1)).rev() {
                    if let Ok(dt) = (Civil { year, ..self }).in_zone(env.zone)
                        && dt <= limit
                    {
                        return Ok((dt, TimestampSource::LineInferredYear));
                    }
                }
                Err(ErrorKind::TimestampOutOfRange)
            }
        }
    }
}

/// A time of day without a date (logback's default `HH:mm:ss.SSS`): the
/// date is the reference's (the file's mtime under [`YearRule::FileMtime`],
/// else the ingest time) in the configured zone, or the day before when
/// that would put the timestamp more than an hour after the reference (a
/// line from 23:59 read at 00:01). The source says `line_inferred_year`:
/// the date, year included, was inferred.
pub(crate) fn time_only(
    hour: u32,
    minute: u32,
    second: u32,
    nanos: u32,
    env: &TimeEnv,
) -> Result<Stamp, ErrorKind> {
    use chrono::Datelike as _;
    let reference = match (env.year_rule, env.file_mtime) {
        (YearRule::FileMtime, Some(mtime)) => mtime,
        _ => env.reference,
    };
    let limit = reference
        .checked_add_signed(Duration::hours(1))
        .ok_or(ErrorKind::TimestampOutOfRange)?;
    let mut date = local_of(reference, env.zone)?.date();
    for _ in 0..2 {
        let dt = Civil {
            year: date.year(),
            month: date.month(),
            day: date.day(),
            hour,
            minute,
            second,
            nanos,
        }
        .in_zone(env.zone)?;
        if dt <= limit {
            return Ok((dt, TimestampSource::LineInferredYear));
        }
        date = date.pred_opt().ok_or(ErrorKind::TimestampOutOfRange)?;
    }
    Err(ErrorKind::TimestampOutOfRange)
}

/// `instant`'s wall-clock time in `zone`, or an error where that falls
/// outside chrono's range (never `DateTime::naive_local`/`with_timezone`
/// then a calendar getter, which panic there).
fn local_of(instant: DateTime<Utc>, zone: Zone) -> Result<NaiveDateTime, ErrorKind> {
    instant
        .naive_utc()
        .checked_add_offset(zone.offset_at(&instant))
        .ok_or(ErrorKind::TimestampOutOfRange)
}

#[cfg(test)]
trait YearCe {
    fn year_ce(&self) -> i32;
}

#[cfg(test)]
impl<Tz: TimeZone> YearCe for DateTime<Tz> {
    fn year_ce(&self) -> i32 {
        use chrono::Datelike as _;
        self.year()
    }
}

/// `Jan`..`Dec`, ASCII case-insensitive.
pub(crate) fn month_abbrev(b: &[u8]) -> Option<u32> {
    let [a, b, c] = *b else { return None };
    let key = [
        a.to_ascii_lowercase(),
        b.to_ascii_lowercase(),
        c.to_ascii_lowercase(),
    ];
    Some(match &key {
        b"jan" => 1,
        b"feb" => 2,
        b"mar" => 3,
        b"apr" => 4,
        b"may" => 5,
        b"jun" => 6,
        b"jul" => 7,
        b"aug" => 8,
        b"sep" => 9,
        b"oct" => 10,
        b"nov" => 11,
        b"dec" => 12,
        _ => return None,
    })
}

/// `Mon`..`Sun`, ASCII case-insensitive.
pub(crate) fn is_weekday_abbrev(b: &[u8]) -> bool {
    let [a, b, c] = *b else { return false };
    let key = [
        a.to_ascii_lowercase(),
        b.to_ascii_lowercase(),
        c.to_ascii_lowercase(),
    ];
    matches!(
        &key,
        b"mon" | b"tue" | b"wed" | b"thu" | b"fri" | b"sat" | b"sun"
    )
}

/// A month abbreviation at the cursor.
pub(crate) fn expect_month(cur: &mut Cursor<'_>) -> PResult<u32> {
    let m = cur
        .rest()
        .get(..3)
        .and_then(month_abbrev)
        .ok_or_else(|| cur.fail(ErrorKind::InvalidTimestamp("month name")))?;
    cur.advance(3);
    Ok(m)
}

/// `HH:MM:SS`.
pub(crate) fn hms(cur: &mut Cursor<'_>) -> PResult<(u32, u32, u32)> {
    let h = cur.digits(2, "hour")?;
    cur.expect(b':', "':' after hour")?;
    let m = cur.digits(2, "minute")?;
    cur.expect(b':', "':' after minute")?;
    let s = cur.digits(2, "second")?;
    Ok((h, m, s))
}

/// A UTC offset: `Z`, `z`, `±hh:mm`, `±hhmm` or `±hh`. `None` if there is
/// none at the cursor (nothing consumed).
pub(crate) fn offset(cur: &mut Cursor<'_>) -> PResult<Option<FixedOffset>> {
    offset_with(cur, false)
}

/// As [`offset`]; with `colon_required` only `Z`/`z` and `±hh:mm` (RFC 3339).
pub(crate) fn offset_with(
    cur: &mut Cursor<'_>,
    colon_required: bool,
) -> PResult<Option<FixedOffset>> {
    match cur.peek() {
        Some(b'Z' | b'z') => {
            cur.advance(1);
            Ok(Some(Utc.fix()))
        }
        Some(sign @ (b'+' | b'-')) => {
            let start = cur.pos();
            cur.advance(1);
            let h = cur.digits(2, "offset hours")?;
            let m = if cur.eat(b':') {
                cur.digits(2, "offset minutes")?
            } else if colon_required {
                return Err(cur.expected("':' in UTC offset"));
            } else if cur.peek().is_some_and(|b| b.is_ascii_digit()) {
                cur.digits(2, "offset minutes")?
            } else {
                0
            };
            if m >= 60 {
                return Err((start, ErrorKind::TimestampOutOfRange));
            }
            let secs = i32::try_from(h * 3600 + m * 60)
                .map_err(|_| (start, ErrorKind::TimestampOutOfRange))?;
            let secs = if sign == b'-' { -secs } else { secs };
            FixedOffset::east_opt(secs)
                .map(Some)
                .ok_or((start, ErrorKind::TimestampOutOfRange))
        }
        _ => Ok(None),
    }
}

/// An RFC 3339 / ISO 8601 date-time: `YYYY-MM-DD(T|t)HH:MM:SS[.frac][offset]`.
/// With `lenient`, a space may separate date and time, `,` may start the
/// fraction, and a missing offset means the configured one. Without it
/// (RFC 5424), the offset is required.
pub(crate) fn rfc3339(cur: &mut Cursor<'_>, lenient: bool, env: &TimeEnv) -> PResult<Stamp> {
    let start = cur.pos();
    let year = cur.digits(4, "year")?;
    cur.expect(b'-', "'-' after year")?;
    let month = cur.digits(2, "month")?;
    cur.expect(b'-', "'-' after month")?;
    let day = cur.digits(2, "day")?;
    match cur.peek() {
        Some(b'T' | b't') => cur.advance(1),
        Some(b' ') if lenient => cur.advance(1),
        _ => return Err(cur.expected("'T' between date and time")),
    }
    let (hour, minute, second) = hms(cur)?;
    let nanos = match cur.peek() {
        Some(b'.') => {
            cur.advance(1);
            cur.fraction_nanos(if lenient { 12 } else { 6 }, "fractional seconds")?
        }
        Some(b',') if lenient => {
            cur.advance(1);
            cur.fraction_nanos(12, "fractional seconds")?
        }
        _ => 0,
    };
    let civil = Civil {
        year: i32::try_from(year).map_err(|_| (start, ErrorKind::TimestampOutOfRange))?,
        month,
        day,
        hour,
        minute,
        second,
        nanos,
    };
    match offset_with(cur, !lenient)? {
        Some(off) => Ok((
            civil.at(off).map_err(|k| (start, k))?,
            TimestampSource::Line,
        )),
        None if lenient => civil.assumed(env).map_err(|k| (start, k)),
        None => Err(cur.expected("UTC offset ('Z' or '+hh:mm')")),
    }
}

/// Seconds (and nanoseconds) since the Unix epoch, if representable.
pub(crate) fn from_epoch(secs: i64, nanos: u32) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp(secs, nanos)
}

/// The UTC offset at which wall-clock `local` shows instant `utc`, if it is
/// a plausible zone offset (within ±18h, whole quarter hours); otherwise
/// `None`.
pub(crate) fn offset_between(local: NaiveDateTime, utc: DateTime<Utc>) -> Option<FixedOffset> {
    let diff = local.signed_duration_since(utc.naive_utc()).num_seconds();
    if diff.abs() > 18 * 3600 || diff % 900 != 0 {
        return None;
    }
    FixedOffset::east_opt(i32::try_from(diff).ok()?)
}

/// A number from a structured log's time field: epoch seconds, milliseconds,
/// microseconds or nanoseconds, told apart by magnitude (below 1e11 is
/// seconds, i.e. up to year 5138; below 1e14 milliseconds; below 1e17
/// microseconds; above that nanoseconds). Negative and non-finite values
/// are refused.
pub(crate) fn from_epoch_number(value: f64) -> Option<DateTime<Utc>> {
    if !value.is_finite() || !(0.0..1e27).contains(&value) {
        return None;
    }
    let (scale, nanos_per_unit) = if value < 1e11 {
        (1.0, 1e9)
    } else if value < 1e14 {
        (1e3, 1e6)
    } else if value < 1e17 {
        (1e6, 1e3)
    } else {
        (1e9, 1.0)
    };
    // Split in the original unit so that e.g. 1700000000123 ms keeps an
    // exact 123 ms remainder (dividing first would round it to 122.99...).
    let secs = (value / scale).floor();
    let remainder = (value - secs * scale).max(0.0);
    let nanos = (remainder * nanos_per_unit)
        .round()
        .clamp(0.0, 999_999_999.0);
    if secs > 1e15 {
        return None;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    from_epoch(secs as i64, nanos as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `Display` writes, `FromStr` reads back (the file input carries a group's year
    /// rule to the parser as text); out-of-range years and other words are refused.
    #[test]
    fn year_rule_text_round_trips() {
        for rule in [YearRule::Infer, YearRule::FileMtime, YearRule::Fixed(2005)] {
            assert_eq!(rule.to_string().parse::<YearRule>(), Ok(rule));
        }
        assert_eq!(" MTime ".parse::<YearRule>(), Ok(YearRule::FileMtime));
        for bad in ["", "0", "10000", "-1", "later", "2005.5"] {
            let e = bad.parse::<YearRule>().unwrap_err();
            assert!(e.to_string().contains(YearRule::EXPECTED), "{e}");
        }
    }

    fn env(reference: &str) -> TimeEnv {
        TimeEnv {
            reference: DateTime::parse_from_rfc3339(reference)
                .unwrap()
                .with_timezone(&Utc),
            file_mtime: None,
            zone: Zone::utc(),
            year_rule: YearRule::Infer,
        }
    }

    fn civil(month: u32, day: u32, hour: u32) -> Civil {
        Civil {
            year: 0,
            month,
            day,
            hour,
            minute: 0,
            second: 0,
            nanos: 0,
        }
    }

    #[test]
    fn year_inference_table() {
        // (reference, month, day, hour) -> expected year
        let table = [
            ("2024-06-15T00:00:00Z", 6, 14, 0, 2024),   // yesterday
            ("2024-06-15T00:00:00Z", 6, 20, 0, 2024),   // 5 days ahead: clock skew
            ("2024-06-15T00:00:00Z", 6, 23, 0, 2023),   // 8 days ahead: last year
            ("2024-06-15T00:00:00Z", 12, 31, 23, 2023), // late December, read in June
            ("2025-01-01T00:00:05Z", 12, 31, 23, 2024), // new-year rollover
            ("2024-12-31T23:00:00Z", 1, 1, 0, 2025),    // device clock slightly ahead
            ("2025-03-01T00:00:00Z", 2, 29, 0, 2024),   // leap day, last leap year
            ("2024-03-01T00:00:00Z", 2, 29, 0, 2024),   // leap day, this year
            ("2027-03-01T00:00:00Z", 2, 29, 0, 2024),   // leap day, three years back
        ];
        for (reference, month, day, hour, want) in table {
            let (dt, src) = civil(month, day, hour).infer_year(&env(reference)).unwrap();
            assert_eq!(src, TimestampSource::LineInferredYear);
            assert_eq!(dt.year_ce(), want, "{reference} {month}-{day}");
        }
        assert_eq!(
            civil(2, 30, 0).infer_year(&env("2024-06-15T00:00:00Z")),
            Err(ErrorKind::TimestampOutOfRange)
        );
        let fixed = TimeEnv {
            year_rule: YearRule::Fixed(2005),
            ..env("2024-06-15T00:00:00Z")
        };
        assert_eq!(
            civil(12, 31, 0).infer_year(&fixed).unwrap().0.year_ce(),
            2005
        );
        assert!(civil(2, 29, 0).infer_year(&fixed).is_err());
    }

    /// A reference at the edge of chrono's range, read in a zone that pushes
    /// it past the edge, is an error, not a panic (found by the proptest).
    #[test]
    fn references_at_the_edges_do_not_panic() {
        let santiago: Zone = "America/Santiago".parse().unwrap();
        let tokyo: Zone = "Asia/Tokyo".parse().unwrap();
        for (reference, zone) in [
            (DateTime::<Utc>::MIN_UTC, santiago),
            (DateTime::<Utc>::MAX_UTC, tokyo),
        ] {
            let env = TimeEnv {
                reference,
                zone,
                ..env("2024-06-15T00:00:00Z")
            };
            assert!(civil(6, 1, 0).infer_year(&env).is_err());
            assert!(time_only(1, 2, 3, 0, &env).is_err());
        }
    }

    #[test]
    fn rfc3339_table() {
        let e = env("2024-06-15T00:00:00Z");
        let ok = [
            (
                "1985-04-12T23:20:50.52Z",
                "1985-04-12T23:20:50.520+00:00",
                true,
            ),
            (
                "2003-08-24T05:14:15.000003-07:00",
                "2003-08-24T05:14:15.000003-07:00",
                true,
            ),
            (
                "2003-10-11T22:14:15.003Z",
                "2003-10-11T22:14:15.003+00:00",
                true,
            ),
            ("1990-12-31T23:59:60Z", "1990-12-31T23:59:60+00:00", true),
            ("2024-01-01t00:00:00z", "2024-01-01T00:00:00+00:00", true),
            (
                "2024-01-01 10:00:00,123",
                "2024-01-01T10:00:00.123+00:00",
                false,
            ),
            (
                "2024-01-01T10:00:00+0530",
                "2024-01-01T10:00:00+05:30",
                false,
            ),
            ("2024-01-01T10:00:00-03", "2024-01-01T10:00:00-03:00", false),
        ];
        for (input, want, strict_ok) in ok {
            let (dt, _) = rfc3339(&mut Cursor::new(input.as_bytes()), true, &e).unwrap();
            assert_eq!(dt.to_rfc3339(), want, "{input}");
            let strict = rfc3339(&mut Cursor::new(input.as_bytes()), false, &e);
            assert_eq!(strict.is_ok(), strict_ok, "{input}: {strict:?}");
        }
        let bad = [
            ("2024-13-01T00:00:00Z", ErrorKind::TimestampOutOfRange),
            ("2024-02-30T00:00:00Z", ErrorKind::TimestampOutOfRange),
            ("2024-01-01T24:00:00Z", ErrorKind::TimestampOutOfRange),
            ("2024-01-01T00:00:00+25:00", ErrorKind::TimestampOutOfRange),
            ("2024-01-01T00:00:00+05:60", ErrorKind::TimestampOutOfRange),
            (
                "2024-01-01T00:00:00.Z",
                ErrorKind::Expected("fractional seconds"),
            ),
            ("2024-1-01T00:00:00Z", ErrorKind::Expected("month")),
        ];
        for (input, kind) in bad {
            let err = rfc3339(&mut Cursor::new(input.as_bytes()), true, &e).unwrap_err();
            assert_eq!(err.1, kind, "{input}");
        }
        // 5424 allows at most 6 fractional digits.
        assert!(rfc3339(&mut Cursor::new(b"2024-01-01T00:00:00.1234567Z"), false, &e).is_err());
    }

    #[test]
    fn epoch_numbers() {
        let s = from_epoch_number(1_700_000_000.0).unwrap();
        assert_eq!(s.timestamp(), 1_700_000_000);
        let ms = from_epoch_number(1_700_000_000_123.0).unwrap();
        assert_eq!(ms.timestamp_millis(), 1_700_000_000_123);
        let us = from_epoch_number(1_700_000_000_123_456.0).unwrap();
        assert_eq!(us.timestamp_micros(), 1_700_000_000_123_456);
        let ns = from_epoch_number(1.7e18).unwrap();
        assert_eq!(ns.timestamp(), 1_700_000_000);
        assert!(from_epoch_number(-1.0).is_none());
        assert!(from_epoch_number(f64::NAN).is_none());
        assert!(from_epoch_number(1e300).is_none());
    }

    #[test]
    fn offsets_between() {
        let local = NaiveDate::from_ymd_opt(2005, 6, 3)
            .unwrap()
            .and_hms_opt(15, 42, 50)
            .unwrap();
        let utc = from_epoch(1_117_838_570, 0).unwrap();
        assert_eq!(offset_between(local, utc), FixedOffset::west_opt(7 * 3600));
        let odd = from_epoch(1_117_838_571, 0).unwrap();
        assert_eq!(offset_between(local, odd), None);
    }
}
