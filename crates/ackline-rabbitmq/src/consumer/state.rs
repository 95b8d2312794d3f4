//! What the consumer's actors (the reader, the reaper, `receive`, `settle`) share, under one
//! lock.
//!
//! Invariants:
//! - A key is in at most one of `held` (handed out, unsettled) and `done` (how it ended);
//!   keys are never reused (`next_key` only grows).
//! - `held` never has more than `prefetch` entries (`receive` hands out only into the room
//!   left).
//! - A held delivery with `settling` set belongs to the `settle` call that set it: the reaper
//!   and a channel loss leave it alone, and a second settlement is `AlreadySettled`.
//! - Buffered and held deliveries carry the generation of the channel they came on; only the
//!   current generation's are handed out or acked (a lost channel's are fenced or dropped).
//! - `done` remembers at most [`Ended::DEFAULT_CAPACITY`] keys, the oldest forgotten first (a
//!   forgotten key's settlement is `Unknown`; see [`ackline_broker::fence`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use ackline_broker::ConsumerOptions;
use ackline_broker::fence::{self, Ended};
use lapin::{Acker, Channel};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::Inner;
use crate::attempts::Envelope;

/// A delivery RabbitMQ pushed, not yet handed out.
pub(super) struct Raw {
    /// The channel it came on.
    pub generation: u64,
    /// When it was buffered.
    pub arrived: Instant,
    pub delivery: lapin::message::Delivery,
}

/// A delivery handed out and not settled.
pub(super) struct Held {
    /// The channel it came on (its ack goes there).
    pub generation: u64,
    pub acker: Acker,
    pub attempt: u32,
    /// When its lease ends.
    pub deadline: Instant,
    /// The message (for the copy a nack or reject publishes).
    pub env: Envelope,
    /// A settlement of it is under way.
    pub settling: bool,
}

impl fence::Held for Held {
    fn attempt(&self) -> u32 {
        self.attempt
    }
    fn settling(&self) -> bool {
        self.settling
    }
}

pub(super) struct State {
    /// The current channel's generation (one more on each new channel).
    pub generation: u64,
    pub channel: Option<Channel>,
    /// The live `basic.consume`'s tag (none while suspended or reconnecting).
    pub consumer_tag: Option<String>,
    /// Idle: the consume was cancelled; the next `receive` resumes it.
    pub suspended: bool,
    /// `receive` calls in progress, and when the last one ended.
    pub receiving: usize,
    pub last_receive: Instant,
    pub buffer: VecDeque<Raw>,
    /// By key.
    pub held: HashMap<u64, Held>,
    /// How deliveries no longer held ended: settled (acked, with its copy confirmed first
    /// when it needed one) or gone (requeued by RabbitMQ: lease expired, channel lost).
    pub done: Ended,
    pub next_key: u64,
}

impl State {
    pub fn new() -> Self {
        State {
            generation: 0,
            channel: None,
            consumer_tag: None,
            suspended: false,
            receiving: 0,
            last_receive: Instant::now(),
            buffer: VecDeque::new(),
            held: HashMap::new(),
            done: Ended::default(),
            next_key: 1,
        }
    }
}

/// The consumer, as its tasks and calls see it.
pub(super) struct Shared {
    pub inner: Arc<Inner>,
    pub opts: ConsumerOptions,
    /// This consumer's id, in every tag it issues.
    pub token: Arc<str>,
    pub state: Mutex<State>,
    /// Deliveries were buffered (wakes `receive`).
    pub arrived: Notify,
    /// A `receive` ended a suspension (wakes the reader).
    pub resume: Notify,
    /// The consumer was closed or dropped.
    pub closed: AtomicBool,
}
