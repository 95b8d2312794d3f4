//! The time zone given to timestamps that state no UTC offset.
//!
//! Invariants:
//! - a [`Zone`] is either a fixed UTC offset or an IANA zone from the tz
//!   database compiled into `chrono-tz` (so results do not depend on the
//!   machine's `/usr/share/zoneinfo`);
//! - resolving a wall-clock time never fails: an ambiguous time (the hour
//!   repeated when clocks go back) takes the **earlier** instant (the
//!   offset before the change), and a time that does not exist (the hour
//!   skipped when clocks go forward) takes the offset in force just before
//!   the gap, so `02:30` on a spring-forward night reads as `03:30` local;
//! - names round-trip: [`Zone::from_str`] accepts what `Display` writes.

use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Duration, FixedOffset, LocalResult, NaiveDateTime, Offset as _, TimeZone as _, Utc,
};

/// The zone of timestamps that carry no offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// A fixed offset from UTC (`UTC`, `+02:00`, `-0530`...).
    Fixed(FixedOffset),
    /// An IANA time zone (`Europe/Berlin`), daylight saving time included.
    Named(chrono_tz::Tz),
}

impl Default for Zone {
    fn default() -> Self {
        Zone::Fixed(Utc.fix())
    }
}

impl Zone {
    /// UTC.
    #[must_use]
    pub fn utc() -> Self {
        Zone::default()
    }

    /// The offset at which wall-clock time `local` is read (see the module
    /// doc for ambiguous and skipped times).
    #[must_use]
    pub fn offset_for_local(&self, local: &NaiveDateTime) -> FixedOffset {
        match self {
            Zone::Fixed(off) => *off,
            Zone::Named(tz) => match tz.offset_from_local_datetime(local) {
                LocalResult::Single(off) => off.fix(),
                LocalResult::Ambiguous(earlier, _) => earlier.fix(),
                LocalResult::None => {
                    // In a gap: the offset in force a day before, which is
                    // the one before the change (zones change at most a
                    // few times a year).
                    let before = local
                        .checked_sub_signed(Duration::days(1))
                        .unwrap_or(*local);
                    tz.offset_from_utc_datetime(&before).fix()
                }
            },
        }
    }

    /// The offset in force at instant `utc`.
    #[must_use]
    pub fn offset_at(&self, utc: &DateTime<Utc>) -> FixedOffset {
        match self {
            Zone::Fixed(off) => *off,
            Zone::Named(tz) => tz.offset_from_utc_datetime(&utc.naive_utc()).fix(),
        }
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Zone::Fixed(off) if off.local_minus_utc() == 0 => f.write_str("UTC"),
            Zone::Fixed(off) => write!(f, "{off}"),
            Zone::Named(tz) => f.write_str(tz.name()),
        }
    }
}

/// The string names no time zone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown time zone {0:?} (expected UTC, an offset such as +02:00 or -0530, or an IANA \
     name such as Europe/Berlin)"
)]
pub struct UnknownZone(pub String);

impl FromStr for Zone {
    type Err = UnknownZone;

    /// `UTC`, `Z` or `GMT`; an offset `±hh:mm`, `±hhmm` or `±hh` (at most
    /// ±18:00); or an IANA zone name (case as in the tz database).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let bad = || UnknownZone(s.to_owned());
        if ["utc", "z", "gmt"]
            .iter()
            .any(|u| t.eq_ignore_ascii_case(u))
        {
            return Ok(Zone::utc());
        }
        if let Some(sign) = t
            .strip_prefix('+')
            .map(|r| (1, r))
            .or(t.strip_prefix('-').map(|r| (-1, r)))
        {
            let (sign, rest) = sign;
            let digits: String = rest.chars().filter(|c| *c != ':').collect();
            let colon_ok = match rest.find(':') {
                None => true,
                Some(i) => i == 2 && rest.len() == 5,
            };
            if !colon_ok || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let (h, m) = match digits.len() {
                2 => (digits.parse::<i32>().map_err(|_| bad())?, 0),
                4 => (
                    digits
                        .get(..2)
                        .and_then(|d| d.parse::<i32>().ok())
                        .ok_or_else(bad)?,
                    digits
                        .get(2..)
                        .and_then(|d| d.parse::<i32>().ok())
                        .ok_or_else(bad)?,
                ),
                _ => return Err(bad()),
            };
            if h > 18 || m >= 60 {
                return Err(bad());
            }
            return FixedOffset::east_opt(sign * (h * 3600 + m * 60))
                .map(Zone::Fixed)
                .ok_or_else(bad);
        }
        t.parse::<chrono_tz::Tz>()
            .map(Zone::Named)
            .map_err(|_| bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn local(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d)
            .unwrap()
            .and_hms_opt(h, mi, 0)
            .unwrap()
    }

    #[test]
    fn parse_and_display() {
        let table = [
            ("UTC", "UTC"),
            ("z", "UTC"),
            ("+02:00", "+02:00"),
            ("-0530", "-05:30"),
            ("+09", "+09:00"),
            ("Europe/Berlin", "Europe/Berlin"),
            (" America/New_York ", "America/New_York"),
        ];
        for (input, shown) in table {
            let z: Zone = input.parse().unwrap();
            assert_eq!(z.to_string(), shown, "{input}");
            assert_eq!(shown.parse::<Zone>().unwrap(), z, "{input}");
        }
        for bad in [
            "",
            "Mars/Olympus",
            "+19:00",
            "+2:00",
            "+02:60",
            "+0",
            "CEST",
            "+02:00:00",
        ] {
            assert!(bad.parse::<Zone>().is_err(), "{bad}");
        }
    }

    #[test]
    fn daylight_saving_rules() {
        let berlin: Zone = "Europe/Berlin".parse().unwrap();
        // Winter and summer.
        assert_eq!(
            berlin
                .offset_for_local(&local(2024, 1, 15, 12, 0))
                .local_minus_utc(),
            3600
        );
        assert_eq!(
            berlin
                .offset_for_local(&local(2024, 7, 15, 12, 0))
                .local_minus_utc(),
            7200
        );
        // 2024-10-27 02:30 happens twice: the earlier (summer time) wins.
        assert_eq!(
            berlin
                .offset_for_local(&local(2024, 10, 27, 2, 30))
                .local_minus_utc(),
            7200
        );
        // 2024-03-31 02:30 does not exist: the offset before the gap.
        assert_eq!(
            berlin
                .offset_for_local(&local(2024, 3, 31, 2, 30))
                .local_minus_utc(),
            3600
        );
        let fixed: Zone = "-03:00".parse().unwrap();
        assert_eq!(
            fixed
                .offset_for_local(&local(2024, 7, 15, 12, 0))
                .local_minus_utc(),
            -10800
        );
    }
}
