//! Client-side fencing of settlements, for backends that keep leases in the client because
//! their server cannot tell one delivery of a message from the next (RabbitMQ, Redis Streams,
//! NATS JetStream): which settlements to let through, and the refusal for the others.
//!
//! Invariants:
//! - A settlement names a delivery by its [`Tag`]: key, attempt, and the consumer's token. It
//!   is let through ([`admit`]) only for a delivery this consumer holds, at that attempt, that
//!   is not being settled already; a tag of another consumer is `Unknown`.
//! - A delivery no longer held is remembered by key in [`Ended`] (at most its capacity, the
//!   oldest forgotten first) as settled or gone (its lease ended or its channel was lost: the
//!   broker delivers it again). A late settlement of it is refused as `AlreadySettled` or
//!   `Stale` (only for the attempt that was held); a forgotten or never-issued key, or another
//!   attempt, is `Unknown`. Nothing is ever sent to the broker for a refused settlement.

use std::collections::{BTreeMap, HashMap};

use crate::{SettleError, Tag};

/// A delivery a consumer holds, as fencing sees it.
pub trait Held {
    /// The attempt it was delivered at.
    fn attempt(&self) -> u32;
    /// A settlement of it is under way.
    fn settling(&self) -> bool;
}

/// How a delivery that is no longer held ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Settled,
    Gone { attempt: u32 },
}

/// Deliveries no longer held, by key, at most `capacity` of them.
#[derive(Debug, Clone)]
pub struct Ended {
    map: BTreeMap<u64, End>,
    capacity: usize,
}

impl Default for Ended {
    fn default() -> Self {
        Ended::new(Ended::DEFAULT_CAPACITY)
    }
}

impl Ended {
    /// How many ended deliveries the backends remember: a settlement arriving after
    /// 100,000 later deliveries ended is `Unknown` rather than `AlreadySettled` or `Stale`.
    pub const DEFAULT_CAPACITY: usize = 100_000;

    /// Remembers at most `capacity` (at least 1).
    pub fn new(capacity: usize) -> Self {
        Ended {
            map: BTreeMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// `key` was settled.
    pub fn settled(&mut self, key: u64) {
        self.insert(key, End::Settled);
    }

    /// `key`, held at `attempt`, went back to the broker (lease over, channel lost).
    pub fn gone(&mut self, key: u64, attempt: u32) {
        self.insert(key, End::Gone { attempt });
    }

    fn insert(&mut self, key: u64, end: End) {
        self.map.insert(key, end);
        while self.map.len() > self.capacity {
            self.map.pop_first();
        }
    }

    /// The refusal of a settlement of `key` at `attempt`, which is not held.
    pub fn refusal(&self, key: u64, attempt: u32) -> SettleError {
        match self.map.get(&key) {
            Some(End::Settled) => SettleError::AlreadySettled,
            Some(&End::Gone { attempt: was }) if was == attempt => SettleError::Stale {
                attempt,
                current: attempt + 1,
            },
            _ => SettleError::Unknown,
        }
    }
}

/// The held delivery `tag` names, if a settlement of it may go ahead; else its refusal.
/// `token` is this consumer's; with `token_required` a tag without one is `Unknown` too.
///
/// # Errors
/// `Unknown` for another consumer's tag, another attempt or a key never issued (or
/// forgotten); `AlreadySettled` or `Stale` as [`Ended::refusal`] says; `AlreadySettled` for a
/// delivery being settled.
pub fn admit<'a, H: Held>(
    held: &'a mut HashMap<u64, H>,
    ended: &Ended,
    tag: &Tag,
    token: &str,
    token_required: bool,
) -> Result<&'a mut H, SettleError> {
    match tag.token.as_deref() {
        Some(t) if t != token => return Err(SettleError::Unknown),
        None if token_required => return Err(SettleError::Unknown),
        _ => {}
    }
    let Some(h) = held.get_mut(&tag.key) else {
        return Err(ended.refusal(tag.key, tag.attempt));
    };
    if h.attempt() != tag.attempt {
        return Err(SettleError::Unknown);
    }
    if h.settling() {
        return Err(SettleError::AlreadySettled);
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    struct H {
        attempt: u32,
        settling: bool,
    }

    impl Held for H {
        fn attempt(&self) -> u32 {
            self.attempt
        }
        fn settling(&self) -> bool {
            self.settling
        }
    }

    fn tag(key: u64, attempt: u32, token: Option<&str>) -> Tag {
        Tag {
            key,
            attempt,
            token: token.map(Arc::from),
        }
    }

    #[test]
    fn only_a_held_delivery_at_its_attempt_and_of_this_consumer_is_admitted() {
        let mut held = HashMap::from([
            (
                1,
                H {
                    attempt: 2,
                    settling: false,
                },
            ),
            (
                2,
                H {
                    attempt: 1,
                    settling: true,
                },
            ),
        ]);
        let mut ended = Ended::default();
        ended.settled(3);
        ended.gone(4, 1);
        let ok = |r: Result<&mut H, SettleError>| r.map(|h| h.attempt);
        assert_eq!(
            ok(admit(&mut held, &ended, &tag(1, 2, Some("me")), "me", true)),
            Ok(2)
        );
        assert_eq!(
            ok(admit(&mut held, &ended, &tag(1, 2, None), "me", false)),
            Ok(2)
        );
        for (t, want) in [
            (tag(1, 2, Some("other")), SettleError::Unknown),
            (tag(1, 2, None), SettleError::Unknown),
            (tag(1, 1, Some("me")), SettleError::Unknown),
            (tag(2, 1, Some("me")), SettleError::AlreadySettled),
            (tag(3, 1, Some("me")), SettleError::AlreadySettled),
            (
                tag(4, 1, Some("me")),
                SettleError::Stale {
                    attempt: 1,
                    current: 2,
                },
            ),
            (tag(4, 2, Some("me")), SettleError::Unknown),
            (tag(5, 1, Some("me")), SettleError::Unknown),
        ] {
            assert_eq!(
                admit(&mut held, &ended, &t, "me", true).err(),
                Some(want.clone()),
                "{t:?}"
            );
        }
    }

    #[test]
    fn the_oldest_ended_deliveries_are_forgotten_first() {
        let mut ended = Ended::new(2);
        ended.settled(1);
        ended.gone(2, 1);
        ended.settled(3);
        assert_eq!(ended.refusal(1, 1), SettleError::Unknown);
        assert_eq!(
            ended.refusal(2, 1),
            SettleError::Stale {
                attempt: 1,
                current: 2
            }
        );
        assert_eq!(ended.refusal(3, 7), SettleError::AlreadySettled);
    }
}
