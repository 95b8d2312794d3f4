//! HPC cluster logs (loghub HPC): `LOGID NODE COMPONENT STATE EPOCH FLAG MSG`.
//!
//! Invariants: the instant is EPOCH in UTC (`timestamp_source = line`);
//! LOGID and EPOCH are decimal, FLAG an optionally negative integer.
//! The lines carry no severity.
//!
//! Fields: `log_id`, `state`, `flag`.

use super::{Env, Parts};
use crate::error::ErrorKind;
use crate::record::TimestampSource;
use crate::scan::{Cursor, PResult, text};
use crate::timestamp::from_epoch;

pub(crate) fn parse(body: &[u8], _env: &Env) -> PResult<Parts> {
    let mut cur = Cursor::new(body);
    let log_id = cur.digits_between(1, 19, "log id")?;
    cur.expect_space("SP after log id")?;
    let node = cur.expect_token("node")?;
    cur.expect_space("SP after node")?;
    let component = cur.expect_token("component")?;
    cur.expect_space("SP after component")?;
    let state = cur.expect_token("state")?;
    cur.expect_space("SP after state")?;
    let epoch_pos = cur.pos();
    let epoch = cur.digits_between(1, 12, "epoch seconds")?;
    cur.expect_space("SP after epoch")?;
    let negative = cur.eat(b'-');
    let flag = cur.digits_between(1, 18, "flag")?;
    if !cur.is_at_end() {
        cur.expect_space("SP after flag")?;
    }
    let instant = i64::try_from(epoch)
        .ok()
        .and_then(|s| from_epoch(s, 0))
        .ok_or((epoch_pos, ErrorKind::TimestampOutOfRange))?;
    let mut parts = Parts {
        timestamp: Some((instant.fixed_offset(), TimestampSource::Line)),
        host: Some(text(node)),
        app: Some(text(component)),
        message: text(cur.rest()),
        ..Parts::default()
    };
    parts.put_u64("log_id", log_id);
    parts.put("state", state);
    // At most 18 digits: fits in i64.
    let flag = i64::try_from(flag).unwrap_or(i64::MAX);
    parts.fields.insert(
        "flag".to_owned(),
        serde_json::Value::from(if negative { -flag } else { flag }),
    );
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use crate::format::Format::Hpc;
    use crate::formats::testutil::{field, ok, parse, ts};

    #[test]
    fn edge_table() {
        let p = ok(
            Hpc,
            r"134681 node-246 unix.hw state_change.unavailable 1077804742 1 Component State Change: Component \042alt0\042 is in the unavailable state (HWID=1973)",
        );
        assert_eq!(ts(&p), "2004-02-26T14:12:22+00:00");
        assert_eq!(p.host.as_deref(), Some("node-246"));
        assert_eq!(p.app.as_deref(), Some("unix.hw"));
        assert_eq!(field(&p, "log_id"), "134681");
        assert_eq!(field(&p, "state"), "state_change.unavailable");
        assert_eq!(field(&p, "flag"), "1");
        assert!(p.message.starts_with("Component State Change"));

        let p = ok(Hpc, "2286759 full partition status 1061219795 -1 running");
        assert_eq!(field(&p, "flag"), "-1");
        assert_eq!(p.message, "running");
        let p = ok(Hpc, "1 n c s 0 0");
        assert_eq!(p.message, "");

        assert!(
            parse(
                Hpc,
                "081109 203615 148 INFO dfs.DataNode$PacketResponder: x"
            )
            .is_err()
        );
        assert!(parse(Hpc, "1 n c s 99999999999999 0 x").is_err());
        assert!(parse(Hpc, "1 n c s 5 x y").is_err());
    }
}
