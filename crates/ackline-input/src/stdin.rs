//! [`StdinInput`]: reads a stream (stdin, or any `AsyncRead`) to its end and publishes its
//! lines.
//!
//! What it cannot promise: a stream has no position to persist, so a restart cannot resume
//! it. Ids are `stdin:<run id>:<line number>` (a part of a long line:
//! `stdin:<run id>:<line number>:<part>`), with a random run id per run: within a run each line
//! has one id, but a producer that sends the same lines again after a crash gets new ids, and
//! the store keeps both copies. A producer that needs exactly-once across its own restarts
//! should write to a file (followed with a persisted position) or use HTTP ingest with its own
//! ids. Lines read but not yet confirmed when the process dies are lost with the stream; when
//! the stop signal ends a run during a publish retry, the lines not published are reported in
//! the error ([`InputError::Unpublished`](crate::InputError::Unpublished)), never dropped
//! silently. A long line is held in memory whole (a stream cannot be read twice) before its
//! parts are published.

use std::sync::Arc;

use ackline_broker::{Broker, Message};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::watch;
use tokio::time::Instant;

use ackline_parse::{Joiner, Multiline};

use crate::publish::{Sent, publish, stopped};
use crate::{At, CountersSnapshot, InputCounters, InputError, StdinConfig};

/// The id of line `line` (1-based) of the run `run_id`: `stdin:<run id>:<line>`.
pub fn stdin_message_id(run_id: &str, line: u64) -> String {
    format!("stdin:{run_id}:{line}")
}

/// Reads a stream and publishes its lines; see the module doc.
#[derive(Debug)]
pub struct StdinInput<B> {
    broker: Arc<B>,
    config: StdinConfig,
    counters: Arc<InputCounters>,
    run_id: String,
}

/// The record being built under a multi-line rule (none without one).
struct Records {
    joiner: Option<Joiner>,
    open: Option<Open>,
    timeout: std::time::Duration,
}

/// A record not yet published: its bytes, its first line's number and stream offset, and
/// when it last grew.
struct Open {
    bytes: Vec<u8>,
    line_no: u64,
    offset: u64,
    since: Instant,
}

impl Records {
    fn new(config: &StdinConfig) -> Self {
        Records {
            joiner: (config.multiline != Multiline::None).then(|| Joiner::new(config.multiline)),
            open: None,
            timeout: config.multiline_timeout,
        }
    }

    /// When the open record is published if no line comes.
    fn due(&self) -> Option<Instant> {
        self.open.as_ref().map(|o| o.since + self.timeout)
    }

    fn take(&mut self) -> Option<Open> {
        self.open.take()
    }
}

#[derive(Debug, Default)]
struct Batch {
    msgs: Vec<Message>,
    ats: Vec<At>,
    bytes: usize,
    lines: u64,
    flush_at: Option<Instant>,
}

impl<B: Broker> StdinInput<B> {
    /// An input over `broker` with a new random run id.
    pub fn new(broker: Arc<B>, config: StdinConfig) -> Result<Self, InputError> {
        config.validate()?;
        let run_id = format!(
            "{:016x}{:016x}",
            rand::random::<u64>(),
            rand::random::<u64>()
        );
        Ok(StdinInput {
            broker,
            config,
            counters: Arc::new(InputCounters::default()),
            run_id,
        })
    }

    /// This run's id (part of every message id).
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Live counters.
    pub fn counters(&self) -> Arc<InputCounters> {
        self.counters.clone()
    }

    /// Reads the process's standard input to its end.
    pub async fn run_stdin(
        &self,
        stop: watch::Receiver<bool>,
    ) -> Result<CountersSnapshot, InputError> {
        self.run(tokio::io::stdin(), stop).await
    }

    /// Reads `reader` to its end (or until `stop`), publishing every line; returns once all
    /// are confirmed. A last line without a newline is published (the stream ended).
    pub async fn run<R: AsyncRead + Unpin + Send>(
        &self,
        reader: R,
        mut stop: watch::Receiver<bool>,
    ) -> Result<CountersSnapshot, InputError> {
        let mut reader = BufReader::with_capacity(64 << 10, reader);
        let mut line = Vec::new();
        let mut line_no = 0u64;
        let mut stream_offset = 0u64;
        let mut batch = Batch::default();
        let mut records = Records::new(&self.config);
        loop {
            let deadline = batch.flush_at;
            let record_due = records.due();
            tokio::select! {
                biased;
                r = reader.read_until(b'\n', &mut line) => {
                    let n = r.map_err(|source| InputError::Read {
                        input: self.config.name.clone(),
                        line: line_no,
                        source,
                    })?;
                    if n == 0 {
                        if !line.is_empty() {
                            line_no += 1;
                            self.line(&mut records, &mut batch, &line, line_no, stream_offset, &mut stop).await?;
                        }
                        break;
                    }
                    if line.last() == Some(&b'\n') {
                        line_no += 1;
                        let consumed = line.len() as u64;
                        line.pop();
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                        self.line(&mut records, &mut batch, &line, line_no, stream_offset, &mut stop).await?;
                        stream_offset += consumed;
                        line.clear();
                    }
                }
                _ = tokio::time::sleep_until(record_due.unwrap_or_else(Instant::now)), if record_due.is_some() => {
                    if let Some(r) = records.take() {
                        self.push(&mut batch, &r.bytes, r.line_no, r.offset, &mut stop).await?;
                    }
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    self.flush(&mut batch, &mut stop).await?;
                }
                _ = stop.changed() => {
                    if stopped(&stop) {
                        if !line.is_empty() {
                            line_no += 1;
                            self.line(&mut records, &mut batch, &line, line_no, stream_offset, &mut stop).await?;
                        }
                        break;
                    }
                }
            }
        }
        if let Some(r) = records.take() {
            self.push(&mut batch, &r.bytes, r.line_no, r.offset, &mut stop)
                .await?;
        }
        self.flush(&mut batch, &mut stop).await?;
        Ok(self.counters.snapshot())
    }

    /// One line read: published as it is, or (under a multi-line rule) added to the record
    /// being built, publishing the one it completes.
    async fn line(
        &self,
        records: &mut Records,
        batch: &mut Batch,
        line: &[u8],
        line_no: u64,
        line_offset: u64,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), InputError> {
        let Some(joiner) = records.joiner.as_mut() else {
            return self.push(batch, line, line_no, line_offset, stop).await;
        };
        let first = records.open.is_none();
        let how = joiner.join(line, first);
        let max = self.config.max_line_bytes;
        if let Some(open) = records.open.as_mut()
            && how.apply(&mut open.bytes, line, max)
        {
            open.since = Instant::now();
            return Ok(());
        }
        if let Some(done) = records.open.replace(Open {
            bytes: line.to_vec(),
            line_no,
            offset: line_offset,
            since: Instant::now(),
        }) {
            self.push(batch, &done.bytes, done.line_no, done.offset, stop)
                .await?;
        }
        Ok(())
    }

    async fn push(
        &self,
        batch: &mut Batch,
        line: &[u8],
        line_no: u64,
        line_offset: u64,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), InputError> {
        let max = self.config.max_line_bytes;
        let id = stdin_message_id(&self.run_id, line_no);
        let name = self.config.name.clone();
        if line.len() <= max {
            batch
                .msgs
                .push(Message::new(id, line.to_vec()).with_header("input", name));
            batch.ats.push(At::Line(line_no));
            batch.bytes += line.len();
            batch.lines += 1;
        } else {
            let n = line.len().div_ceil(max);
            for (i, part) in line.chunks(max).enumerate() {
                batch.msgs.push(
                    Message::new(format!("{id}:{}", i + 1), part.to_vec())
                        .with_header("input", name.clone())
                        .with_header("part", format!("{}/{n}", i + 1))
                        .with_header("line_offset", line_offset.to_string()),
                );
                batch.ats.push(At::Line(line_no));
                batch.bytes += part.len();
                if i + 1 == n {
                    batch.lines += 1;
                    self.counters.long_line();
                }
                if batch.bytes >= self.config.batch.max_bytes {
                    self.flush(batch, stop).await?;
                }
            }
        }
        if batch.flush_at.is_none() && !batch.msgs.is_empty() {
            batch.flush_at = Some(Instant::now() + self.config.flush_after);
        }
        if batch.msgs.len() >= self.config.batch.max_lines
            || batch.bytes >= self.config.batch.max_bytes
        {
            self.flush(batch, stop).await?;
        }
        Ok(())
    }

    async fn flush(
        &self,
        batch: &mut Batch,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), InputError> {
        let b = std::mem::take(batch);
        if b.msgs.is_empty() {
            return Ok(());
        }
        let count = b.msgs.len() as u64;
        let first = b.ats.first().copied().unwrap_or(At::Line(0));
        let sent = publish(
            &*self.broker,
            &self.config.name,
            b.msgs,
            &b.ats,
            &self.config.retry,
            stop,
            &self.counters,
        )
        .await?;
        match sent {
            Sent::Done => {
                self.counters.published(b.lines, count, b.bytes as u64);
                Ok(())
            }
            Sent::Stopped => Err(InputError::Unpublished {
                input: self.config.name.clone(),
                from: first,
                messages: count,
            }),
        }
    }
}
