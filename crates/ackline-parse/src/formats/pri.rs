//! The syslog `<PRI>` header shared by RFC 5424 and RFC 3164.
//!
//! Invariants: accepts exactly `<` 1..3 digits `>` with value 0..=191 and no
//! leading zero (other than `<0>`), per RFC 5424 §6.2.1; the facility and
//! severity it yields are always in range.

use crate::error::ErrorKind;
use crate::scan::{Cursor, PResult};
use crate::severity::Severity;

/// Facility names, indexed by facility code (RFC 5424 table 1, names as
/// used by syslog(3) and rsyslog).
const FACILITIES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];

/// Parses `<PRI>` at the cursor: (facility name, severity).
pub(crate) fn parse(cur: &mut Cursor<'_>) -> PResult<(&'static str, Severity)> {
    let start = cur.pos();
    cur.expect(b'<', "'<' starting PRI")?;
    let digits = cur.take_while(|b| b.is_ascii_digit());
    if digits.is_empty() || digits.len() > 3 || (digits.len() > 1 && digits.first() == Some(&b'0'))
    {
        return Err((start, ErrorKind::InvalidPriority));
    }
    cur.expect(b'>', "'>' ending PRI")?;
    let value = digits
        .iter()
        .fold(0u32, |acc, &b| acc * 10 + u32::from(b - b'0'));
    let facility = FACILITIES
        .get((value / 8) as usize)
        .ok_or((start, ErrorKind::InvalidPriority))?;
    let severity =
        Severity::from_code((value % 8) as u8).ok_or((start, ErrorKind::InvalidPriority))?;
    Ok((facility, severity))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pri_table() {
        let ok = [
            ("<0>", "kern", Severity::Emergency),
            ("<34>", "auth", Severity::Critical),
            ("<165>", "local4", Severity::Notice),
            ("<191>", "local7", Severity::Debug),
            ("<13>", "user", Severity::Notice),
        ];
        for (input, fac, sev) in ok {
            assert_eq!(
                parse(&mut Cursor::new(input.as_bytes())).unwrap(),
                (fac, sev),
                "{input}"
            );
        }
        for bad in [
            "<192>", "<01>", "<1000>", "<>", "<-1>", "34>", "<34", "<3a>",
        ] {
            assert!(parse(&mut Cursor::new(bad.as_bytes())).is_err(), "{bad}");
        }
    }
}
