//! apt's logs: `/var/log/apt/history.log` and `/var/log/apt/term.log`.
//!
//! ```text
//! Start-Date: 2025-06-24  14:36:25
//! Commandline: apt-get -qqy upgrade
//! Upgrade: libsystemd0:amd64 (252.36-1~deb12u1, 252.38-1~deb12u1)
//! End-Date: 2025-06-24  14:36:25
//! ```
//!
//! Only the `Start-Date:`, `End-Date:` (history.log) and `Log started:`,
//! `Log ended:` (term.log) lines carry a time (`YYYY-MM-DD  hh:mm:ss`,
//! two spaces, local time: the configured zone applies); they are `apt`
//! records with the label in `fields.label`. The lines between them
//! (`Commandline:`, `Install:`, dpkg's output...) have no time of their
//! own: alone they are `raw`; with `input.multiline = "auto"` they join the
//! `Start-Date:`/`Log started:` record before them, which is then the whole
//! transaction (its message: those lines).
//!
//! Invariants: only the four labels are accepted, each followed by the
//! exact date layout; linear in the line length.

use super::{Env, Parts, at};
use crate::scan::{Cursor, PResult, text};
use crate::timestamp::{Civil, hms};

const LABELS: [&[u8]; 4] = [b"Start-Date", b"End-Date", b"Log started", b"Log ended"];

/// Does `body` start with one of apt's dated labels? For detection.
pub(crate) fn looks_like(body: &[u8]) -> bool {
    matches!(body.first(), Some(b'S' | b'E' | b'L'))
        && LABELS
            .iter()
            .any(|l| body.starts_with(l) && body.get(l.len()) == Some(&b':'))
}

pub(crate) fn parse(body: &[u8], env: &Env) -> PResult<Parts> {
    let mut cur = Cursor::new(body);
    let label = LABELS
        .iter()
        .find(|l| body.starts_with(l))
        .ok_or_else(|| cur.expected("Start-Date:, End-Date:, Log started: or Log ended:"))?;
    cur.advance(label.len());
    cur.expect(b':', "':' after label")?;
    cur.expect(b' ', "SP after label")?;
    let start = cur.pos();
    let year = cur.digits(4, "year")?;
    cur.expect(b'-', "'-' after year")?;
    let month = cur.digits(2, "month")?;
    cur.expect(b'-', "'-' after month")?;
    let day = cur.digits(2, "day")?;
    if !cur.eat_slice(b"  ") {
        return Err(cur.expected("two spaces between date and time"));
    }
    let (hour, minute, second) = hms(&mut cur)?;
    let stamp = Civil {
        year: i32::try_from(year).unwrap_or(0),
        month,
        day,
        hour,
        minute,
        second,
        nanos: 0,
    }
    .assumed(&env.time)
    .map_err(at(start))?;
    if !matches!(cur.peek(), None | Some(b'\n' | b'\r' | b' ')) {
        return Err(cur.expected("end of line after time"));
    }
    let mut parts = Parts {
        timestamp: Some(stamp),
        ..Parts::default()
    };
    parts.put("label", label);
    let rest = cur.rest();
    let skip = rest
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\n' | b'\r'))
        .count();
    parts.message = text(rest.get(skip..).unwrap_or_default());
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use crate::format::Format::Apt;
    use crate::formats::testutil::{field, ok, parse, ts};

    #[test]
    fn lines() {
        let p = ok(Apt, "Start-Date: 2025-06-24  14:36:25");
        assert_eq!(ts(&p), "2025-06-24T14:36:25+00:00");
        assert_eq!(field(&p, "label"), "Start-Date");
        assert_eq!(p.message, "");
        let p = ok(Apt, "Log ended: 2025-06-24  14:36:25");
        assert_eq!(field(&p, "label"), "Log ended");
        // A joined transaction: the message is the lines after the date.
        let p = ok(
            Apt,
            "Start-Date: 2025-06-24  14:36:25\nCommandline: apt-get -qqy upgrade\nUpgrade: a (1, 2)",
        );
        assert_eq!(
            p.message,
            "Commandline: apt-get -qqy upgrade\nUpgrade: a (1, 2)"
        );
        for bad in [
            "Start-Date: 2025-06-24 14:36:25",
            "Start-Date 2025-06-24  14:36:25",
            "Commandline: apt-get -qqy upgrade",
            "Start-Date: 2025-06-24  14:36:25x",
        ] {
            assert!(parse(Apt, bad).is_err(), "{bad}");
        }
        assert!(super::looks_like(b"End-Date: 2"));
        assert!(!super::looks_like(b"End-Dates: 2"));
    }
}
