//! Queue options, checked once when a queue opens.
//!
//! Invariant: a `Queue` only ever runs with options that passed [`QueueOptions::validate`].

use std::time::Duration;

use crate::error::OpenError;

/// When a publish is confirmed, and what a crash may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// Confirm after fsync (group commit: one fsync serves every operation waiting on it).
    /// Nothing confirmed is lost on a process crash, a kernel crash or a power loss.
    Always,
    /// Confirm after the write reaches the operating system; fsync at this interval, when
    /// writing moves to a new segment, and before each checkpoint. A process crash (even
    /// kill -9) loses nothing confirmed; a kernel crash or power loss may lose what was
    /// confirmed within the last interval (in the current segment only).
    Interval(Duration),
    /// Confirm after the write reaches the operating system; never fsync (the kernel flushes
    /// when it likes, typically within 30 s). A process crash loses nothing confirmed; a
    /// kernel crash or power loss may lose anything not yet flushed, including records a
    /// checkpoint covers (their messages are then dead-lettered as corrupt when read). For
    /// tests and benchmarks.
    Never,
}

/// Options of one queue.
#[derive(Debug, Clone)]
pub struct QueueOptions {
    /// Durability of confirmations. Default [`Fsync::Always`].
    pub fsync: Fsync,
    /// Deliveries a message may have; when a message has had this many and would be delivered
    /// again (or is nacked), it moves to the dead-letter queue with reason
    /// `max attempts exceeded`. Default 5.
    pub max_attempts: u32,
    /// Bytes held (framed messages not yet settled, and the messages of dead-letter entries,
    /// whose records stay on disk until replayed or purged) beyond which publishes fail with
    /// [`PublishError::Full`](crate::PublishError::Full): a flood of bad lines fills the
    /// dead-letter queue up to this bound, then pushes back, instead of filling the disk.
    /// Default 1 GiB.
    pub max_bytes: u64,
    /// Largest framed message accepted. Default 16 MiB; at most 64 MiB.
    pub max_message_bytes: usize,
    /// Segment file size at which writing moves to a new segment. Default 64 MiB.
    pub segment_bytes: u64,
    /// Log bytes written between checkpoints (at least; grows with the checkpoint's own size
    /// so checkpoints never cost more than half the write volume). Default 256 MiB.
    pub checkpoint_bytes: u64,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            fsync: Fsync::Always,
            max_attempts: 5,
            max_bytes: 1 << 30,
            max_message_bytes: 16 << 20,
            segment_bytes: 64 << 20,
            checkpoint_bytes: 256 << 20,
        }
    }
}

impl QueueOptions {
    /// Checks every option, naming the first one out of range.
    pub fn validate(&self) -> Result<(), OpenError> {
        let bad = |field: &'static str, reason: &str| {
            Err(OpenError::InvalidOption {
                field,
                reason: reason.to_string(),
            })
        };
        if self.max_attempts == 0 {
            return bad(
                "max_attempts",
                "at least 1 (deliveries allowed per message)",
            );
        }
        if self.max_message_bytes < 64 || self.max_message_bytes > 64 << 20 {
            return bad("max_message_bytes", "between 64 bytes and 64 MiB");
        }
        if self.max_bytes < self.max_message_bytes as u64 {
            return bad("max_bytes", "at least max_message_bytes");
        }
        if self.segment_bytes < 4096 || self.segment_bytes > 1 << 31 {
            return bad("segment_bytes", "between 4 KiB and 2 GiB");
        }
        if self.checkpoint_bytes < 4096 {
            return bad("checkpoint_bytes", "at least 4 KiB");
        }
        if let Fsync::Interval(d) = self.fsync
            && d.is_zero()
        {
            return bad("fsync", "an interval above zero (or use Fsync::Always)");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        QueueOptions::default().validate().unwrap();
        let e = QueueOptions {
            max_attempts: 0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("max_attempts"), "{e}");
        let e = QueueOptions {
            fsync: Fsync::Interval(Duration::ZERO),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("fsync"), "{e}");
    }
}
