//! The consumer loop: consume → batch (rows, bytes, time) → process → write
//! (dead letters, then ClickHouse) → commit.
//!
//! One batch is written while the next one fills. When the next one is full
//! before the write ends (ClickHouse slow or down), the loop pauses every
//! assigned partition and keeps polling — so the group keeps this member and
//! memory stays bounded — and resumes them once the write is through. The
//! same while a batch's processing waits to read enrichment state from
//! ClickHouse again ([`PollWhileWaiting`]).
//! Offsets are committed only after the rows and dead letters they cover are
//! stored; a held-back authorization holds its partition's commit back.
//!
//! Reference data before usage, always: before a batch is processed, the
//! broker is asked for the end offsets of the assigned assignments and
//! directory partitions (a [`Probe`]); the batch waits until they are read,
//! and takes only the authorizations received before the question, so no
//! authorization is stamped ahead of an assignment published before it — a
//! broker that stalled and then delivers a backlog in any order included.
//! The same answer tells the processor that a held-back authorization whose
//! hold ran out has really seen every assignment published meanwhile.

use crate::dlq::DeadLetterQueue;
use crate::kafka::{IngestConsumer, PartitionNotice};
use crate::message::{RawMessage, Topic, TopicNames};
use crate::metrics::Metrics;
use crate::sink::Sink;
use crate::stamp::{Prepared, StampError, Stamping};
use futures::FutureExt as _;
use rdkafka::producer::Producer as _;
use rdkafka::{
    consumer::{CommitMode, Consumer},
    Message, Offset, TopicPartitionList,
};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// When a batch closes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchLimits {
    pub(crate) max_rows: usize,
    pub(crate) max_bytes: usize,
    pub(crate) max_wait: Duration,
    /// Batches written at once while the next one is processed.
    pub(crate) max_in_flight: usize,
}

/// Why the loop ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PipelineError {
    #[error(transparent)]
    Stamp(#[from] StampError),
    #[error("dead-letter topic: {0}")]
    DeadLetter(#[from] crate::dlq::DeadLetterError),
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("the write task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Abandoned(#[from] crate::sink::Abandoned),
}

/// How often held-back authorizations are retried when no other message arrives.
const PENDING_RETRY_INTERVAL: Duration = Duration::from_millis(250);
/// Messages taken from librdkafka's queue in one go, between two turns of
/// the pipeline's select!.
const MAX_BURST: usize = 4096;

/// How long a probe of the reference partitions' end offsets may take (a
/// stalled broker answers nothing: the batch then carries no proof).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a batch waits for the reference messages a probe found unread
/// when none comes. Past it, the partition is taken as read to that offset (a transactional
/// producer's commit markers take offsets no message ever fills).
const REFERENCE_WAIT: Duration = Duration::from_secs(2);
/// How often a batch waiting on reference data looks again.
const REFERENCE_POLL: Duration = Duration::from_millis(5);

/// Offsets to commit once a batch is stored: per (topic, partition), the next offset to read.
pub(crate) type Commit = usage_core::FastMap<(Topic, i32), i64>;

/// The broker's end offsets of the assigned reference partitions (assignments
/// and directory), asked at `at`.
pub(crate) struct Probe {
    /// When the question was asked: every reference message the broker held
    /// then is below `ends`.
    at: Instant,
    /// The authorizations in the batch being filled when it was asked:
    /// received before `at`.
    cut: usize,
    /// Whether every reference partition had been read to its end once since
    /// the assignment (then a partition nothing was read from starts at its end).
    after_catch_up: bool,
    ends: Result<Vec<PartitionEnd>, rdkafka::error::KafkaError>,
}

/// A reference partition and the offset it ends at.
type PartitionEnd = ((Topic, i32), i64);

/// Whether a batch may be processed now.
enum Reference {
    /// Yes; with the instant at which every reference message is known read, if proven.
    Read(Option<Instant>),
    /// Not yet: reference messages the probe found are still on their way.
    Waiting,
}

struct InFlight {
    handle: JoinHandle<Result<Prepared, PipelineError>>,
    commit: Commit,
}

pub(crate) struct Pipeline {
    pub(crate) consumer: IngestConsumer,
    pub(crate) notices: mpsc::UnboundedReceiver<PartitionNotice>,
    pub(crate) topics: TopicNames,
    pub(crate) processor: Stamping,
    pub(crate) sink: Sink,
    pub(crate) dlq: DeadLetterQueue,
    pub(crate) metrics: Metrics,
    pub(crate) limits: BatchLimits,
    /// Turns true on SIGTERM/SIGINT: drain and stop.
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Turns true when the drain took too long: abandon retries.
    pub(crate) abandon: watch::Receiver<bool>,
    /// Next offset to read per partition, of everything taken into a batch:
    /// what a batch's commit covers.
    pub(crate) positions: Commit,
    /// Next offset to read per reference partition, of everything received.
    pub(crate) received: Commit,
    /// Per reference partition nothing was received from: the offset it was
    /// found to end at after the catch-up (or that a probe waited for in vain).
    pub(crate) read_floor: Commit,
    /// Whether the authorizations partitions are paused because a full batch
    /// waits on reference data.
    pub(crate) usage_held: bool,
    /// When the last reference message was received.
    pub(crate) last_reference: Instant,
    /// Messages received while a batch's processing waited for ClickHouse:
    /// they go into the batch being filled.
    pub(crate) stash: Vec<RawMessage>,
    /// The probe being asked, and the last one answered, not yet used.
    pub(crate) probe: Option<JoinHandle<Probe>>,
    pub(crate) probed: Option<Probe>,
    /// After an assignment: the reference partitions (assignments, directory)
    /// still to be read to their end before authorizations flow again.
    pub(crate) catching_up: Option<CatchUp>,
}

/// Reference data first: after every assignment (start-up, rebalance) the
/// authorizations partitions stay paused until each assigned assignments and
/// directory partition has been read to its end, so a backlog of usage is
/// never stamped ahead of the assignments that were published before it.
#[derive(Debug, Default)]
pub(crate) struct CatchUp {
    /// Per partition number, how many reference topics still have to reach
    /// their end there (end-of-partition events carry no topic name).
    remaining: HashMap<i32, usize>,
    started: Option<Instant>,
}

/// Messages of the batch being filled.
#[derive(Default)]
struct Filling {
    messages: Vec<RawMessage>,
    bytes: usize,
    opened: Option<Instant>,
    /// How many of the messages are authorizations.
    usage: usize,
}

impl Filling {
    fn is_full(&self, limits: &BatchLimits) -> bool {
        self.messages.len() >= limits.max_rows || self.bytes >= limits.max_bytes
    }

    /// Seven eighths full: time to ask for the reference partitions' ends.
    fn is_nearly_full(&self, limits: &BatchLimits) -> bool {
        self.messages.len() >= limits.max_rows - limits.max_rows / 8
            || self.bytes >= limits.max_bytes - limits.max_bytes / 8
    }

    fn deadline(&self, limits: &BatchLimits) -> Option<Instant> {
        self.opened.map(|o| o + limits.max_wait)
    }

    /// Twice full: a batch waiting on reference data that keeps receiving it
    /// writes what it has of it.
    fn is_overfull(&self, limits: &BatchLimits) -> bool {
        self.messages.len() >= limits.max_rows.saturating_mul(2)
            || self.bytes >= limits.max_bytes.saturating_mul(2)
    }

    fn push(&mut self, message: RawMessage) {
        self.bytes += message.payload.len();
        self.usage += usize::from(message.topic == Topic::Authorizations);
        self.opened.get_or_insert_with(Instant::now);
        self.messages.push(message);
    }

    /// Keeps the messages `keep` says yes to.
    fn retain(&mut self, keep: impl Fn(&RawMessage) -> bool) {
        self.messages.retain(keep);
        self.bytes = self.messages.iter().map(|m| m.payload.len()).sum();
        self.usage = self
            .messages
            .iter()
            .filter(|m| m.topic == Topic::Authorizations)
            .count();
    }

    /// The batch a probe covers: every reference message, and the first
    /// `cut` authorizations (those received before the question); the later
    /// authorizations stay, in order.
    fn take_covered(&mut self, cut: usize) -> Filling {
        if cut >= self.usage {
            return std::mem::take(self);
        }
        let all = std::mem::take(&mut self.messages);
        let (mut covered, mut rest) = (Filling::default(), Filling::default());
        covered.messages.reserve(all.len());
        for m in all {
            if m.topic == Topic::Authorizations && covered.usage >= cut {
                rest.push(m);
            } else {
                covered.push(m);
            }
        }
        covered.opened = self.opened;
        // The rest starts the next batch: it gets a full wait (a batch of the
        // few messages that came during the probe would double the inserts).
        *self = rest;
        covered
    }
}

/// What the loop does with the batch being filled.
enum Flush {
    /// Nothing yet: the probe's answer, or reference messages it found
    /// unread, are awaited (`unread`).
    Wait { unread: bool },
    /// Process the messages a probe covers: `cut` authorizations, every
    /// reference message; `read_at` as [`Processor::process`] takes it;
    /// `hold_usage`: stamp nothing (a batch of reference data only).
    Batch {
        cut: usize,
        read_at: Option<Instant>,
        hold_usage: bool,
    },
}

impl Pipeline {
    /// Runs until shutdown (Ok) or a fatal error.
    pub(crate) async fn run(mut self) -> Result<(), PipelineError> {
        let mut filling = Filling::default();
        // Batches being written, oldest first: the next batch is processed
        // while earlier ones are written; they are committed in order.
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        let mut paused = false;
        let mut consumed: HashMap<Topic, u64> = HashMap::new();
        let mut last_batch = Instant::now();
        self.metrics.set_ready(true);
        loop {
            let deadline = filling.deadline(&self.limits);
            // Held-back authorizations are retried on their own when nothing else comes.
            let retry_pending =
                self.processor.pending_len() > 0 && last_batch.elapsed() >= PENDING_RETRY_INTERVAL;
            let must_flush = filling.is_full(&self.limits)
                || deadline.is_some_and(|d| Instant::now() >= d)
                || retry_pending;
            let room = in_flight.len() < self.limits.max_in_flight;
            // A batch near full asks ahead, so the answer is there when it
            // is full rather than the batch growing while it waits.
            if room
                && self.probe.is_none()
                && self.probed.is_none()
                && filling.is_nearly_full(&self.limits)
            {
                self.probe = Some(self.start_probe(filling.usage)?);
            }
            let mut unread = false;
            if must_flush && room {
                match self.flush(&filling)? {
                    Flush::Wait { unread: u } => unread = u,
                    Flush::Batch {
                        cut,
                        read_at,
                        hold_usage,
                    } => {
                        self.report_consumed(&mut consumed);
                        let batch = filling.take_covered(cut);
                        let flight = self.start_batch(batch, read_at, hold_usage).await?;
                        in_flight.push_back(flight);
                        last_batch = Instant::now();
                        self.take_stash(&mut filling, &mut consumed).await?;
                        if self.usage_held && !hold_usage {
                            self.usage_held = false;
                            if !paused {
                                self.pause_usage(false)?;
                            }
                        }
                    }
                }
            }
            let waiting = must_flush && room && (unread || self.probed.is_none());
            // A full batch waiting on reference data: usage stops coming (what
            // librdkafka already fetched still does) so the reference
            // messages behind it get through.
            if unread && filling.is_full(&self.limits) && !self.usage_held && !paused {
                self.usage_held = true;
                self.pause_usage(true)?;
            }
            let room = in_flight.len() < self.limits.max_in_flight;
            if filling.is_full(&self.limits) && !room && !paused {
                self.pause_all(true)?;
                paused = true;
            }
            if *self.shutdown.borrow() {
                break;
            }
            tokio::select! {
                biased;
                _ = self.shutdown.changed() => {}
                done = async { (&mut in_flight.front_mut().expect("guarded").handle).await }, if !in_flight.is_empty() => {
                    let flight = in_flight.pop_front().expect("guarded");
                    self.finish_batch(done??, flight.commit, CommitMode::Async)?;
                    if paused {
                        self.pause_all(false)?;
                        paused = false;
                    }
                }
                notice = self.notices.recv() => {
                    if let Some(notice) = notice {
                        self.on_notice(notice, &mut filling).await?;
                    }
                }
                answer = async { self.probe.as_mut().expect("guarded").await }, if self.probe.is_some() => {
                    self.probe = None;
                    self.probe_answered(answer?);
                }
                message = recv_owned(&self.consumer, &self.topics), if !paused => {
                    self.accept(message, &mut filling, &mut consumed).await?;
                    // Take what librdkafka already holds without going round
                    // the select! (and its timers) for every message; the
                    // burst is bounded so writes finishing and notices get
                    // their turn.
                    let mut burst = 0;
                    while burst < MAX_BURST && !filling.is_full(&self.limits) {
                        let Some(message) = recv_owned(&self.consumer, &self.topics).now_or_never()
                        else {
                            break;
                        };
                        self.accept(message, &mut filling, &mut consumed).await?;
                        burst += 1;
                    }
                }
                _ = sleep_until(deadline), if deadline.is_some() && room && !waiting => {}
                _ = tokio::time::sleep(REFERENCE_POLL), if waiting && self.probe.is_none() => {}
                _ = tokio::time::sleep(PENDING_RETRY_INTERVAL), if self.processor.pending_len() > 0 && room && !waiting => {}
            }
        }
        self.drain(filling, in_flight, &mut consumed).await
    }

    /// Adds a received message to the batch being filled (rebalance notices
    /// that arrived meanwhile are handled first).
    async fn accept(
        &mut self,
        message: Result<Option<RawMessage>, rdkafka::error::KafkaError>,
        filling: &mut Filling,
        consumed: &mut HashMap<Topic, u64>,
    ) -> Result<(), PipelineError> {
        while let Ok(notice) = self.notices.try_recv() {
            self.on_notice(notice, filling).await?;
        }
        let raw = match message {
            Ok(Some(raw)) => raw,
            Ok(None) => return Ok(()),
            Err(rdkafka::error::KafkaError::PartitionEOF(partition)) => {
                return self.reached_end(partition);
            }
            Err(error) => {
                // Broker unreachable, a partition error...: librdkafka
                // reconnects and resumes by itself; nothing is lost.
                tracing::warn!(%error, "consumer error");
                return Ok(());
            }
        };
        *consumed.entry(raw.topic).or_default() += 1;
        if raw.topic != Topic::Authorizations {
            self.received
                .insert((raw.topic, raw.partition), raw.offset + 1);
            self.last_reference = Instant::now();
        }
        filling.push(raw);
        Ok(())
    }

    /// The messages received while ClickHouse could not be read go into the
    /// batch being filled — but only those of partitions still assigned
    /// (the group may have rebalanced meanwhile).
    async fn take_stash(
        &mut self,
        filling: &mut Filling,
        consumed: &mut HashMap<Topic, u64>,
    ) -> Result<(), PipelineError> {
        if self.stash.is_empty() {
            return Ok(());
        }
        while let Ok(notice) = self.notices.try_recv() {
            self.on_notice(notice, filling).await?;
        }
        let assignment = self.consumer.assignment()?;
        let owned: std::collections::HashSet<(String, i32)> = assignment
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        for raw in std::mem::take(&mut self.stash) {
            let key = (self.topics.name(raw.topic).to_owned(), raw.partition);
            if owned.contains(&key) {
                self.accept(Ok(Some(raw)), filling, consumed).await?;
            }
        }
        Ok(())
    }

    fn report_consumed(&self, consumed: &mut HashMap<Topic, u64>) {
        for (topic, n) in consumed.drain() {
            self.metrics.consumed(self.topics.name(topic), n);
        }
    }

    /// SIGTERM: write what was consumed, commit, leave the group.
    async fn drain(
        mut self,
        filling: Filling,
        in_flight: VecDeque<InFlight>,
        consumed: &mut HashMap<Topic, u64>,
    ) -> Result<(), PipelineError> {
        tracing::info!(
            buffered = filling.messages.len(),
            in_flight = in_flight.len(),
            "draining: finishing the current batches"
        );
        self.metrics.set_ready(false);
        let mut flights: Vec<InFlight> = in_flight.into();
        self.probe = None;
        if !filling.messages.is_empty() {
            self.report_consumed(consumed);
            flights.push(self.start_batch(filling, None, false).await?);
        }
        for flight in flights {
            match flight.handle.await? {
                Ok(prepared) => self.finish_batch(prepared, flight.commit, CommitMode::Sync)?,
                Err(error) => {
                    tracing::warn!(%error, "a batch was not stored; it will be consumed again");
                    return Ok(());
                }
            }
        }
        self.consumer.unsubscribe();
        tracing::info!("drained; left the consumer group");
        Ok(())
    }

    async fn start_batch(
        &mut self,
        filling: Filling,
        reference_read_at: Option<Instant>,
        hold_usage: bool,
    ) -> Result<InFlight, PipelineError> {
        let started = Instant::now();
        let messages = filling.messages.len();
        for m in &filling.messages {
            self.positions.insert((m.topic, m.partition), m.offset + 1);
        }
        let mut waiter = PollWhileWaiting {
            consumer: &self.consumer,
            topics: &self.topics,
            metrics: &self.metrics,
            paused: None,
            stash: Vec::new(),
            ends: Vec::new(),
        };
        let processed = self
            .processor
            .process(filling.messages, reference_read_at, hold_usage, &mut waiter)
            .await;
        let PollWhileWaiting {
            paused,
            stash,
            ends,
            ..
        } = waiter;
        if let Some(assignment) = paused {
            self.resume(&assignment)?;
            tracing::info!(
                received = stash.len(),
                "reads of enrichment state succeed again: partitions resumed"
            );
        }
        self.stash = stash;
        for partition in ends {
            self.reached_end(partition)?;
        }
        let prepared = processed?;
        // The commit: everything consumed so far (it is in this batch or an
        // earlier one), except what is held back.
        let mut commit = self.positions.clone();
        for (partition, floor) in self.processor.pending_floor() {
            let e = commit
                .entry((Topic::Authorizations, partition))
                .or_insert(floor);
            *e = (*e).min(floor);
        }
        self.metrics.set_pending(self.processor.pending_len());
        tracing::debug!(
            messages,
            dead_letters = prepared.letters.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "batch processed"
        );
        let sink = self.sink.clone();
        let dlq = self.dlq.clone();
        let abandon = self.abandon.clone();
        let handle = tokio::spawn(async move {
            dlq.publish(&prepared.letters).await?;
            match sink.write_all(&prepared.tables, &abandon).await {
                Ok(()) => Ok(prepared),
                Err(abandoned) => Err(PipelineError::Abandoned(abandoned)),
            }
        });
        Ok(InFlight { handle, commit })
    }

    fn finish_batch(
        &self,
        prepared: Prepared,
        commit: Commit,
        mode: CommitMode,
    ) -> Result<(), PipelineError> {
        let authorizations = self.topics.name(Topic::Authorizations);
        for letter in &prepared.letters {
            self.metrics
                .dead_lettered(&letter.source_topic, letter.reason, 1);
        }
        self.metrics.offline(authorizations, prepared.offline);
        self.metrics
            .ambiguous_teams(authorizations, prepared.ambiguous_teams);
        self.metrics
            .late_windows(authorizations, prepared.late_windows);
        if let Some(oldest) = prepared.oldest_authorization {
            let age = (chrono::Utc::now() - oldest).num_milliseconds() as f64 / 1000.0;
            self.metrics.freshness(authorizations, age);
        }
        if commit.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &commit {
            tpl.add_partition_offset(
                self.topics.name(*topic),
                *partition,
                Offset::Offset(*offset),
            )?;
        }
        if let Err(error) = self.consumer.commit(&tpl, mode) {
            // After a rebalance the partition may belong to another member: harmless.
            tracing::warn!(%error, "offset commit failed");
        }
        Ok(())
    }

    fn pause_all(&self, pause: bool) -> Result<(), PipelineError> {
        let assignment = self.consumer.assignment()?;
        if pause {
            self.consumer.pause(&assignment)?;
            self.metrics.set_paused(assignment.count());
            tracing::info!(
                partitions = assignment.count(),
                "paused: the previous batch is still being written"
            );
        } else {
            let resumed = self.resume(&assignment)?;
            tracing::info!(partitions = resumed, "resumed");
        }
        Ok(())
    }

    /// Resumes the partitions of `assignment`, except usage during a
    /// catch-up or while a batch waits on reference data; how many resumed.
    fn resume(&self, assignment: &TopicPartitionList) -> Result<usize, PipelineError> {
        let resumed = self.partitions(assignment, |topic| {
            topic != Topic::Authorizations || (self.catching_up.is_none() && !self.usage_held)
        })?;
        self.consumer.resume(&resumed)?;
        self.metrics
            .set_paused(assignment.count() - resumed.count());
        Ok(resumed.count())
    }

    /// Asks the broker, off the consumer's task, for the end offsets of the
    /// assigned reference partitions; `cut`: the authorizations of the batch so far.
    fn start_probe(&self, cut: usize) -> Result<JoinHandle<Probe>, PipelineError> {
        let assignment = self.consumer.assignment()?;
        let partitions: Vec<(Topic, String, i32)> = assignment
            .elements()
            .iter()
            .filter_map(|e| match self.topics.role(e.topic()) {
                Some(role @ (Topic::Assignments | Topic::Directory)) => {
                    Some((role, e.topic().to_owned(), e.partition()))
                }
                _ => None,
            })
            .collect();
        let producer = self.dlq.producer().clone();
        let after_catch_up = self.catching_up.is_none();
        let at = Instant::now();
        Ok(tokio::task::spawn_blocking(move || {
            // One question per partition, all at once (each is a round trip).
            let ends = std::thread::scope(|scope| {
                let asked: Vec<_> = partitions
                    .iter()
                    .map(|(role, topic, partition)| {
                        let producer = &producer;
                        scope.spawn(move || {
                            let (_, end) = producer.client().fetch_watermarks(
                                topic,
                                *partition,
                                PROBE_TIMEOUT,
                            )?;
                            Ok(((*role, *partition), end))
                        })
                    })
                    .collect();
                asked
                    .into_iter()
                    .map(|question| {
                        question
                            .join()
                            .unwrap_or(Err(rdkafka::error::KafkaError::Canceled))
                    })
                    .collect()
            });
            Probe {
                at,
                cut,
                after_catch_up,
                ends,
            }
        }))
    }

    fn probe_answered(&mut self, probe: Probe) {
        tracing::debug!(
            took_ms = probe.at.elapsed().as_millis() as u64,
            "reference partitions' ends"
        );
        match &probe.ends {
            Ok(ends) if probe.after_catch_up => {
                // Read to its end in the catch-up with nothing received: it
                // started where it ends (unless a message came in between).
                for (key, end) in ends {
                    if !self.received.contains_key(key) {
                        self.read_floor.entry(*key).or_insert(*end);
                    }
                }
            }
            Ok(_) => {}
            Err(error) => tracing::debug!(
                %error,
                "no answer on the reference partitions' ends; the batch goes without"
            ),
        }
        self.probed = Some(probe);
    }

    /// What to do with the batch being filled, now that it is due.
    fn flush(&mut self, filling: &Filling) -> Result<Flush, PipelineError> {
        // Nothing to stamp: no need to know where the reference data ends.
        if filling.usage == 0 && self.processor.pending_len() == 0 {
            self.probed = None;
            return Ok(Flush::Batch {
                cut: 0,
                read_at: None,
                hold_usage: false,
            });
        }
        match self.reference_read() {
            None => {
                if self.probe.is_none() {
                    self.probe = Some(self.start_probe(filling.usage)?);
                }
                Ok(Flush::Wait { unread: false })
            }
            // Reference data keeps coming while usage waits (its partitions
            // paused): write it, stamp nothing yet.
            Some(Reference::Waiting) if filling.is_overfull(&self.limits) => Ok(Flush::Batch {
                cut: 0,
                read_at: None,
                hold_usage: true,
            }),
            Some(Reference::Waiting) => Ok(Flush::Wait { unread: true }),
            Some(Reference::Read(read_at)) => Ok(Flush::Batch {
                cut: self.probed.take().map_or(usize::MAX, |p| p.cut),
                read_at,
                hold_usage: false,
            }),
        }
    }

    /// Whether the batch may be processed (`None`: no probe answered yet).
    fn reference_read(&mut self) -> Option<Reference> {
        let probe = self.probed.as_ref()?;
        let Ok(ends) = &probe.ends else {
            // The broker did not answer: process what is there (the
            // authorizations in it came from that broker before it stalled),
            // but prove nothing about what it may hold.
            return Some(Reference::Read(None));
        };
        let position = |key: &(Topic, i32)| {
            let received = self.received.get(key).copied().unwrap_or(i64::MIN);
            received.max(self.read_floor.get(key).copied().unwrap_or(i64::MIN))
        };
        let unread: Vec<PartitionEnd> = ends
            .iter()
            .filter(|(key, end)| position(key) < *end)
            .copied()
            .collect();
        if unread.is_empty() {
            return Some(Reference::Read(Some(probe.at)));
        }
        // Waiting as long as reference messages keep coming.
        if probe.at.max(self.last_reference).elapsed() < REFERENCE_WAIT {
            return Some(Reference::Waiting);
        }
        tracing::warn!(
            partitions = unread.len(),
            waited_ms = REFERENCE_WAIT.as_millis() as u64,
            "reference partitions not read up to the end the broker gave; taking them as read"
        );
        for (key, end) in unread {
            self.read_floor.insert(key, end);
        }
        Some(Reference::Read(None))
    }

    /// Pauses or resumes the authorizations partitions for a batch waiting on
    /// reference data (never resumes them during a catch-up).
    fn pause_usage(&self, pause: bool) -> Result<(), PipelineError> {
        if !pause && self.catching_up.is_some() {
            return Ok(());
        }
        let assignment = self.consumer.assignment()?;
        let usage = self.partitions(&assignment, |t| t == Topic::Authorizations)?;
        if pause {
            self.consumer.pause(&usage)?;
            tracing::debug!(
                partitions = usage.count(),
                "usage paused: the batch waits on reference data"
            );
        } else {
            self.consumer.resume(&usage)?;
        }
        Ok(())
    }

    /// The partitions of `of` whose topic role passes `keep`.
    fn partitions(
        &self,
        of: &TopicPartitionList,
        keep: impl Fn(Topic) -> bool,
    ) -> Result<TopicPartitionList, PipelineError> {
        let mut list = TopicPartitionList::new();
        for e in of.elements() {
            if self.topics.role(e.topic()).is_some_and(&keep) {
                list.add_partition(e.topic(), e.partition());
            }
        }
        Ok(list)
    }

    /// Starts reading reference data first (see [`CatchUp`]).
    fn start_catch_up(&mut self, assigned: &[(String, i32)]) -> Result<(), PipelineError> {
        let mut catch_up = CatchUp {
            started: Some(Instant::now()),
            ..CatchUp::default()
        };
        for (topic, partition) in assigned {
            if matches!(
                self.topics.role(topic),
                Some(Topic::Assignments | Topic::Directory)
            ) {
                *catch_up.remaining.entry(*partition).or_default() += 1;
            }
        }
        if catch_up.remaining.is_empty() {
            self.catching_up = None;
            return Ok(());
        }
        let assignment = self.consumer.assignment()?;
        let usage = self.partitions(&assignment, |t| t == Topic::Authorizations)?;
        self.consumer.pause(&usage)?;
        self.metrics.set_paused(usage.count());
        tracing::info!(
            reference_partitions = catch_up.remaining.values().sum::<usize>(),
            "reading assignments and directory to their end before usage"
        );
        self.catching_up = Some(catch_up);
        Ok(())
    }

    /// A partition was read to its end.
    fn reached_end(&mut self, partition: i32) -> Result<(), PipelineError> {
        let Some(catch_up) = self.catching_up.as_mut() else {
            return Ok(());
        };
        if let Some(n) = catch_up.remaining.get_mut(&partition) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                catch_up.remaining.remove(&partition);
            }
        }
        if !catch_up.remaining.is_empty() {
            return Ok(());
        }
        let took = catch_up.started.map(|s| s.elapsed()).unwrap_or_default();
        self.catching_up = None;
        let assignment = self.consumer.assignment()?;
        let usage = self.partitions(&assignment, |t| t == Topic::Authorizations)?;
        self.consumer.resume(&usage)?;
        self.metrics.set_paused(0);
        tracing::info!(
            took_ms = took.as_millis() as u64,
            "reference data read to its end: usage flows"
        );
        Ok(())
    }

    async fn on_notice(
        &mut self,
        notice: PartitionNotice,
        filling: &mut Filling,
    ) -> Result<(), PipelineError> {
        match notice {
            PartitionNotice::Revoked(partitions) => {
                let revoked: Vec<(Topic, i32)> = partitions
                    .iter()
                    .filter_map(|(t, p)| self.topics.role(t).map(|r| (r, *p)))
                    .collect();
                // Uncommitted work of revoked partitions is dropped: the new
                // owner consumes it again from the last commit, and every
                // write is idempotent, so nothing is lost or counted twice.
                filling.retain(|m| !revoked.contains(&(m.topic, m.partition)));
                self.positions.retain(|k, _| !revoked.contains(k));
                self.received.retain(|k, _| !revoked.contains(k));
                self.read_floor.retain(|k, _| !revoked.contains(k));
                // A probe's cut counts messages of the batch as it was.
                self.probe = None;
                self.probed = None;
                self.processor.partitions_revoked(&revoked);
            }
            PartitionNotice::Assigned(partitions) => {
                for topic in [Topic::Authorizations, Topic::Assignments, Topic::Directory] {
                    let name = self.topics.name(topic);
                    let n = partitions.iter().filter(|(t, _)| t == name).count();
                    self.metrics.set_assigned(name, n);
                }
                self.start_catch_up(&partitions)?;
                // Other members may have stored assignments and rates meanwhile.
                if let Err(error) = self.processor.refresh().await {
                    tracing::warn!(%error, "reloading the enrichment state failed; will retry");
                }
            }
        }
        Ok(())
    }
}

/// The processor's wait between two attempts to read enrichment state
/// (ClickHouse down): every assigned partition paused, the consumer still
/// polled — so the group keeps this member however long the outage lasts —
/// and what librdkafka had already fetched kept for the next batch.
struct PollWhileWaiting<'a> {
    consumer: &'a IngestConsumer,
    topics: &'a TopicNames,
    metrics: &'a Metrics,
    /// The partitions paused by the first wait.
    paused: Option<TopicPartitionList>,
    /// Messages received meanwhile, in order.
    stash: Vec<RawMessage>,
    /// End-of-partition events received meanwhile.
    ends: Vec<i32>,
}

impl crate::retry::Wait for PollWhileWaiting<'_> {
    async fn wait(&mut self, delay: Duration) -> bool {
        if self.paused.is_none() {
            match self.consumer.assignment() {
                Ok(assignment) => {
                    if let Err(error) = self.consumer.pause(&assignment) {
                        tracing::warn!(%error, "pausing the partitions failed");
                    }
                    self.metrics.set_paused(assignment.count());
                    tracing::info!(
                        partitions = assignment.count(),
                        "paused: enrichment state cannot be read"
                    );
                    self.paused = Some(assignment);
                }
                Err(error) => tracing::warn!(%error, "reading the assignment failed"),
            }
        }
        let until = tokio::time::Instant::now() + delay;
        while let Ok(message) =
            tokio::time::timeout_at(until, recv_owned(self.consumer, self.topics)).await
        {
            match message {
                Ok(Some(raw)) => self.stash.push(raw),
                Ok(None) => {}
                Err(rdkafka::error::KafkaError::PartitionEOF(partition)) => {
                    self.ends.push(partition)
                }
                Err(error) => tracing::warn!(%error, "consumer error"),
            }
        }
        true
    }
}

/// The next message, owned (`None` for a topic that is not ours).
async fn recv_owned(
    consumer: &IngestConsumer,
    topics: &TopicNames,
) -> Result<Option<RawMessage>, rdkafka::error::KafkaError> {
    let message = consumer.recv().await?;
    Ok(topics.role(message.topic()).map(|topic| RawMessage {
        topic,
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().unwrap_or_default().to_vec(),
    }))
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(topic: Topic, offset: i64) -> RawMessage {
        RawMessage {
            topic,
            partition: 0,
            offset,
            key: None,
            payload: vec![b'x'; 10],
        }
    }

    fn filling(topics: &[Topic]) -> Filling {
        let messages: Vec<RawMessage> = topics
            .iter()
            .enumerate()
            .map(|(i, t)| message(*t, i as i64))
            .collect();
        Filling {
            bytes: messages.len() * 10,
            usage: messages.iter().filter(|m| m.topic == Auth).count(),
            messages,
            opened: Some(Instant::now()),
        }
    }

    use Topic::{Assignments as Ref, Authorizations as Auth};

    #[test]
    fn a_probe_covers_the_authorizations_before_it_and_every_reference_message() {
        let mut f = filling(&[Auth, Ref, Auth, Auth, Ref, Auth]);
        // Two authorizations had come when the question was asked.
        let covered = f.take_covered(2);
        let offsets = |ms: &[RawMessage]| ms.iter().map(|m| m.offset).collect::<Vec<_>>();
        // Reference messages that came after the question go too (they are
        // read before the batch's usage is stamped); later usage waits.
        assert_eq!(offsets(&covered.messages), [0, 1, 2, 4]);
        assert_eq!(covered.bytes, 40);
        assert_eq!(covered.usage, 2);
        assert_eq!(offsets(&f.messages), [3, 5]);
        assert_eq!((f.bytes, f.usage), (20, 2));
        assert!(f.opened.is_some());
        // A batch of reference data only leaves every authorization.
        let mut f = filling(&[Auth, Ref, Auth, Ref]);
        let covered = f.take_covered(0);
        assert_eq!(offsets(&covered.messages), [1, 3]);
        assert_eq!(offsets(&f.messages), [0, 2]);
    }

    #[test]
    fn a_probe_after_everything_takes_everything() {
        let mut f = filling(&[Auth, Ref, Auth]);
        let covered = f.take_covered(usize::MAX);
        assert_eq!(covered.messages.len(), 3);
        assert!(f.messages.is_empty() && f.bytes == 0 && f.opened.is_none());
        let mut f = filling(&[Auth, Ref, Ref]);
        let covered = f.take_covered(1);
        assert_eq!(covered.messages.len(), 3);
        assert!(f.messages.is_empty() && f.opened.is_none() && f.usage == 0);
    }
}
