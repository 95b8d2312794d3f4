//! What ackline keeps in a Kafka record's headers, beside the user's own headers.
//!
//! Header names starting with [`RESERVED`] are ackline's; a message carrying a user header
//! with such a name is refused at publish ([`check_user_headers`]), so the two never mix.
//! User headers keep their order and duplicates (Kafka headers are a list).
//!
//! | header | on | meaning |
//! | --- | --- | --- |
//! | `ackline.id` | every record | the message id (also the record key) |
//! | `ackline.enqueued_at` | every record | first publish, Unix ms |
//! | `ackline.attempts` | retry and dead-letter copies | deliveries that ended before this copy was written |
//! | `ackline.not_before` | retry copies | deliver no earlier than this, Unix ms |
//! | `ackline.first_failure` | retry and dead-letter copies | the first failed delivery, Unix ms |
//! | `ackline.error` | retry and dead-letter copies | the last error |
//! | `ackline.reason`, `ackline.last_failure` | dead-letter copies | why and when it was dead-lettered |
//! | `ackline.purged` | purge markers in the dead-letter topic | the key (offset) of the entry purged or replayed |
//!
//! Invariant: decoding never fails: a missing or malformed ackline header takes its default
//! (attempts 0, no delay), so records written by other producers are delivered as they are.

/// The prefix of ackline's header names.
pub const RESERVED: &str = "ackline.";

pub(crate) const ID: &str = "ackline.id";
pub(crate) const ENQUEUED_AT: &str = "ackline.enqueued_at";
pub(crate) const ATTEMPTS: &str = "ackline.attempts";
pub(crate) const NOT_BEFORE: &str = "ackline.not_before";
pub(crate) const FIRST_FAILURE: &str = "ackline.first_failure";
pub(crate) const ERROR: &str = "ackline.error";
pub(crate) const REASON: &str = "ackline.reason";
pub(crate) const LAST_FAILURE: &str = "ackline.last_failure";
pub(crate) const PURGED: &str = "ackline.purged";

/// ackline's fields of a record, decoded from its headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// The message id, when the producer was ackline.
    pub id: Option<String>,
    /// First publish, Unix ms.
    pub enqueued_at: Option<u64>,
    /// Deliveries that ended before this copy.
    pub attempts: u32,
    /// Earliest delivery, Unix ms.
    pub not_before: Option<u64>,
    /// First failure, Unix ms.
    pub first_failure: Option<u64>,
    /// The last error.
    pub error: Option<String>,
    /// Why it was dead-lettered.
    pub reason: Option<String>,
    /// When it was dead-lettered, Unix ms.
    pub last_failure: Option<u64>,
    /// The dead-letter key a purge marker names.
    pub purged: Option<u64>,
}

impl Meta {
    /// ackline's headers for these fields (only those set).
    #[must_use]
    pub fn encode(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(id) = &self.id {
            out.push((ID, id.clone()));
        }
        let nums = [
            (ENQUEUED_AT, self.enqueued_at),
            (
                ATTEMPTS,
                (self.attempts > 0).then_some(u64::from(self.attempts)),
            ),
            (NOT_BEFORE, self.not_before),
            (FIRST_FAILURE, self.first_failure),
            (LAST_FAILURE, self.last_failure),
            (PURGED, self.purged),
        ];
        for (k, v) in nums {
            if let Some(v) = v {
                out.push((k, v.to_string()));
            }
        }
        for (k, v) in [(ERROR, &self.error), (REASON, &self.reason)] {
            if let Some(v) = v {
                out.push((k, v.clone()));
            }
        }
        out
    }
}

/// Splits a record's headers into ackline's fields and the user's headers (values decoded as
/// UTF-8, invalid sequences replaced).
#[must_use]
pub fn decode<'a>(
    headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
) -> (Meta, Vec<(String, String)>) {
    let mut meta = Meta::default();
    let mut user = Vec::new();
    for (k, v) in headers {
        let text = String::from_utf8_lossy(v.unwrap_or_default()).into_owned();
        if !k.starts_with(RESERVED) {
            user.push((k.to_owned(), text));
            continue;
        }
        let num = || text.parse::<u64>().ok();
        match k {
            ID => meta.id = Some(text.clone()),
            ENQUEUED_AT => meta.enqueued_at = num(),
            ATTEMPTS => meta.attempts = text.parse().unwrap_or(0),
            NOT_BEFORE => meta.not_before = num(),
            FIRST_FAILURE => meta.first_failure = num(),
            LAST_FAILURE => meta.last_failure = num(),
            PURGED => meta.purged = num(),
            ERROR => meta.error = Some(text.clone()),
            REASON => meta.reason = Some(text.clone()),
            _ => {} // a later version's field: ignored
        }
    }
    (meta, user)
}

/// The first user header whose name is reserved for ackline, if any.
#[must_use]
pub fn check_user_headers(headers: &[(String, String)]) -> Option<&str> {
    headers
        .iter()
        .map(|(k, _)| k.as_str())
        .find(|k| k.starts_with(RESERVED))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn fields_round_trip_and_user_headers_keep_order_and_duplicates() {
        let meta = Meta {
            id: Some("m-1".into()),
            enqueued_at: Some(17),
            attempts: 2,
            not_before: Some(99),
            first_failure: Some(18),
            error: Some("db busy".into()),
            reason: Some("max attempts exceeded".into()),
            last_failure: Some(20),
            purged: Some(4),
        };
        let enc = meta.encode();
        let user = [("b", "1"), ("a", "2"), ("b", "3")];
        let all: Vec<(&str, Option<&[u8]>)> = user
            .iter()
            .map(|(k, v)| (*k, Some(v.as_bytes())))
            .chain(enc.iter().map(|(k, v)| (*k, Some(v.as_bytes()))))
            .collect();
        let (back, u) = decode(all);
        assert_eq!(back, meta);
        assert_eq!(
            u,
            user.map(|(k, v)| (k.to_string(), v.to_string())).to_vec()
        );
    }

    #[test]
    fn a_first_publish_carries_no_attempts_and_malformed_fields_take_defaults() {
        let meta = Meta {
            id: Some("x".into()),
            ..Meta::default()
        };
        assert_eq!(meta.encode(), vec![(ID, "x".to_string())]);
        let (m, u) = decode([
            (ATTEMPTS, Some(&b"lots"[..])),
            (NOT_BEFORE, Some(&b"-1"[..])),
            ("ackline.future", Some(&b"?"[..])),
            ("plain", None),
        ]);
        assert_eq!((m.attempts, m.not_before), (0, None));
        assert_eq!(u, vec![("plain".to_string(), String::new())]);
    }

    #[test]
    fn reserved_user_headers_are_found() {
        let h = vec![
            ("ok".to_string(), "1".to_string()),
            ("ackline.id".into(), "2".into()),
        ];
        assert_eq!(check_user_headers(&h), Some("ackline.id"));
        assert_eq!(check_user_headers(&h[..1]), None);
    }

    proptest! {
        #[test]
        fn decoding_any_headers_never_panics(
            hs in proptest::collection::vec(("(ackline\\.)?[a-z_]{0,12}", proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16))), 0..12)
        ) {
            let (_, user) = decode(hs.iter().map(|(k, v)| (k.as_str(), v.as_deref())));
            prop_assert!(user.iter().all(|(k, _)| !k.starts_with(RESERVED)));
        }
    }
}
