//! Proxifier logs (loghub): `[MM.DD hh:mm:ss] program[ *64] - message`.
//!
//! Invariants: the year is inferred with [`YearRule`](crate::YearRule) and
//! the configured offset applies (`line_inferred_year`); the program is
//! everything up to the first ` - `; a trailing ` *64` (64-bit process
//! marker) is split off into `fields.bitness = "64"`.

use super::{Env, Parts, at};
use crate::scan::{Cursor, PResult, text};
use crate::timestamp::{Civil, hms};

pub(crate) fn parse(body: &[u8], env: &Env) -> PResult<Parts> {
    let mut cur = Cursor::new(body);
    cur.expect(b'[', "'[' opening timestamp")?;
    let month = cur.digits(2, "month")?;
    cur.expect(b'.', "'.' after month")?;
    let day = cur.digits(2, "day")?;
    cur.expect_space("SP after day")?;
    let (hour, minute, second) = hms(&mut cur)?;
    cur.expect(b']', "']' closing timestamp")?;
    cur.expect_space("SP after timestamp")?;
    let stamp = Civil {
        year: 0,
        month,
        day,
        hour,
        minute,
        second,
        nanos: 0,
    }
    .infer_year(&env.time)
    .map_err(at(1))?;
    let program = cur
        .take_until_slice(b" - ")
        .ok_or_else(|| cur.expected("' - ' after program"))?;
    cur.advance(3);
    let mut parts = Parts {
        timestamp: Some(stamp),
        message: text(cur.rest()),
        ..Parts::default()
    };
    let program = match program.strip_suffix(b" *64") {
        Some(p) => {
            parts.put("bitness", b"64");
            p
        }
        None => program,
    };
    if program.is_empty() {
        return Err((cur.pos(), crate::error::ErrorKind::Expected("program name")));
    }
    parts.app = Some(text(program));
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use crate::format::Format::Proxifier;
    use crate::formats::testutil::{field, ok, parse, ts};

    #[test]
    fn edge_table() {
        let p = ok(
            Proxifier,
            "[10.30 16:49:06] chrome.exe - proxy.cse.cuhk.edu.hk:5070 open through proxy proxy.cse.cuhk.edu.hk:5070 HTTPS",
        );
        assert_eq!(ts(&p), "2023-10-30T16:49:06+00:00"); // reference 2024-06-15
        assert_eq!(p.app.as_deref(), Some("chrome.exe"));
        assert_eq!(
            p.message,
            "proxy.cse.cuhk.edu.hk:5070 open through proxy proxy.cse.cuhk.edu.hk:5070 HTTPS"
        );
        let p = ok(
            Proxifier,
            "[10.30 16:51:56] svchost.exe *64 - proxy:5070 close, 303 bytes sent - x",
        );
        assert_eq!(p.app.as_deref(), Some("svchost.exe"));
        assert_eq!(field(&p, "bitness"), "64");
        assert_eq!(p.message, "proxy:5070 close, 303 bytes sent - x");
        assert!(parse(Proxifier, "[10.30 16:49:06] chrome.exe open").is_err());
        assert!(parse(Proxifier, "[13.30 16:49:06] a - b").is_err());
        assert!(parse(Proxifier, "[10.30 16:49:06]  - b").is_err());
        assert!(parse(Proxifier, "[Sun Dec 04 04:47:44 2005] [notice] x").is_err());
    }
}
