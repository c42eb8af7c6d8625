//! The consumer loop: consume → batch → stamp → write (dead letters, then
//! ClickHouse) → commit, as a chain of stages (the way Sentry's arroyo
//! chains strategies), each testable alone:
//!
//! - [`batcher`]: the batch being filled and its limits;
//! - [`reference_gate`]: reference data before usage — the catch-up after an
//!   assignment, the probe of the reference partitions' ends before a batch,
//!   the read floors — a pure state machine;
//! - the stamping (`crate::stamp`): rows, dead letters, held-back events;
//!   while its reads of enrichment state wait for ClickHouse, the consumer is
//!   still polled ([`stash`]);
//! - [`committer`]: the batches being written, committed in order;
//! - [`backpressure`]: the one owner of every pause and resume of the
//!   consumer's partitions and of the paused-partitions gauge.
//!
//! This module holds the loop: one `select!` over the consumer, the
//! rebalance notices, the writes in flight, the probe and the timers, which
//! hands each event to its stage. Offsets are committed only after the rows
//! and dead letters they cover are stored; a held-back authorization holds
//! its partition's commit back. SIGTERM drains: the batches in hand are
//! written and committed, then the member leaves the group.

mod backpressure;
mod batcher;
mod committer;
mod reference_gate;
mod stash;

pub(crate) use batcher::BatchLimits;

use crate::dlq::{DeadLetterPolicy, DeadLetterQueue};
use crate::kafka::{self, IngestConsumer, KafkaArgs, PartitionNotice};
use crate::message::{RawMessage, Topic, TopicNames};
use crate::metrics::Metrics;
use crate::retry::RetryPolicy;
use crate::sink::Sink;
use crate::stamp::loader::Loader;
use crate::stamp::{Prepared, StampError, StampSettings, Stamping};
use backpressure::{Backpressure, ConsumerPartitions};
use batcher::{Batcher, Filling};
use committer::{Committer, Writer};
use futures::FutureExt as _;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use reference_gate::{Due, Flush, PartitionEnd, ReferenceGate};
use stash::{recv_owned, PollWhileWaiting};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use usage_core::charge::ChargeConfig;
use usage_store::Warehouse;

/// Why the loop ended (or could not start).
#[derive(Debug, thiserror::Error)]
pub(crate) enum PipelineError {
    #[error(transparent)]
    Stamp(#[from] StampError),
    #[error("dead-letter topic: {0}")]
    DeadLetter(#[from] crate::dlq::DeadLetterError),
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("{0}")]
    Client(String),
    #[error("the write task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Abandoned(#[from] crate::sink::Abandoned),
}

/// Offsets to commit once a batch is stored: per (topic, partition), the next offset to read.
pub(crate) type Commit = usage_core::FastMap<(Topic, i32), i64>;

/// How often held-back authorizations are retried when no other message arrives.
const PENDING_RETRY_INTERVAL: Duration = Duration::from_millis(250);
/// Messages taken from librdkafka's queue in one go, between two turns of
/// the pipeline's select!.
const MAX_BURST: usize = 4096;
/// How long a probe of the reference partitions' end offsets may take (a
/// stalled broker answers nothing: the batch then carries no proof).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a batch waiting on reference data looks again.
const REFERENCE_POLL: Duration = Duration::from_millis(5);

/// What the pipeline is made of, from the command line.
pub(crate) struct PipelineSettings {
    pub(crate) kafka: KafkaArgs,
    /// How the inserts are sent (compression, settings).
    pub(crate) inserts: crate::sink::InsertArgs,
    /// How often librdkafka reports statistics (the lag gauge); 0: never.
    pub(crate) kafka_stats_interval_ms: u64,
    /// librdkafka's queue of prefetched messages, KiB (the memory budget's share).
    pub(crate) kafka_queue_kbytes: usize,
    pub(crate) batch: BatchLimits,
    /// Backoff between attempts of every ClickHouse request.
    pub(crate) retry: RetryPolicy,
    /// How often assignments and rates written by other instances are read again.
    pub(crate) follow_interval: Duration,
    /// Bytes the enrichment state may take (`None`: unbounded).
    pub(crate) state_budget: Option<usize>,
    pub(crate) charge: ChargeConfig,
    pub(crate) stamp: StampSettings,
    pub(crate) dead_letters: DeadLetterPolicy,
}

/// What tells the pipeline to stop.
pub(crate) struct Stop {
    /// Turns true on SIGTERM/SIGINT: drain and stop.
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Turns true when the drain took too long: abandon retries.
    pub(crate) abandon: watch::Receiver<bool>,
}

pub(crate) struct Pipeline {
    consumer: IngestConsumer,
    notices: mpsc::UnboundedReceiver<PartitionNotice>,
    topics: TopicNames,
    /// The dead-letter producer: its client also asks the broker for the
    /// reference partitions' ends.
    producer: FutureProducer,
    metrics: Metrics,
    shutdown: watch::Receiver<bool>,
    batcher: Batcher,
    gate: ReferenceGate,
    /// The question to the broker being asked (see [`ReferenceGate`]).
    probe: Option<JoinHandle<Result<Vec<PartitionEnd>, KafkaError>>>,
    stamping: Stamping,
    /// Messages received while a batch's reads waited for ClickHouse: they
    /// go into the batch being filled.
    stash: Vec<RawMessage>,
    committer: Committer,
    backpressure: Backpressure,
}

impl Pipeline {
    /// Wires the stages: reads the rates and where to follow assignments
    /// from ClickHouse (waiting for it as long as it takes), creates the group consumer (subscribed)
    /// and the dead-letter producer.
    pub(crate) async fn new(
        settings: PipelineSettings,
        warehouse: &Warehouse,
        metrics: Metrics,
        stop: Stop,
    ) -> Result<Pipeline, PipelineError> {
        let topics = TopicNames {
            authorizations: settings.kafka.authorizations_topic.clone(),
            assignments: settings.kafka.assignments_topic.clone(),
            directory: settings.kafka.directory_topic.clone(),
        };
        let mut loader = Loader::new(
            warehouse.clone(),
            settings.retry,
            settings.follow_interval,
            stop.abandon.clone(),
            metrics.clone(),
        );
        let enrichment = loader.initial(settings.charge, settings.state_budget).await;
        let stamping = Stamping::new(
            settings.stamp,
            topics.clone(),
            enrichment,
            settings.dead_letters,
            loader,
        );
        let (consumer, notices) = kafka::consumer(
            &settings.kafka,
            settings.kafka_stats_interval_ms,
            settings.kafka_queue_kbytes,
            metrics.clone(),
        )
        .map_err(PipelineError::Client)?;
        let producer = kafka::producer(&settings.kafka).map_err(PipelineError::Client)?;
        let sink = Sink::new(
            warehouse
                .client()
                .clone()
                .with_compression(settings.inserts.compression()),
            settings.retry,
            metrics.clone(),
            settings.inserts.settings().map_err(PipelineError::Client)?,
        );
        let writer = Writer {
            sink,
            dlq: DeadLetterQueue::new(producer.clone(), settings.kafka.dlq_topic.clone()),
            abandon: stop.abandon,
        };
        Ok(Pipeline {
            consumer,
            notices,
            topics,
            producer,
            shutdown: stop.shutdown,
            batcher: Batcher::new(settings.batch),
            gate: ReferenceGate::new(Instant::now()),
            probe: None,
            stamping,
            stash: Vec::new(),
            committer: Committer::new(writer, settings.batch.max_in_flight),
            backpressure: Backpressure::new(metrics.clone()),
            metrics,
        })
    }

    /// Runs until shutdown (Ok) or a fatal error.
    pub(crate) async fn run(mut self) -> Result<(), PipelineError> {
        let mut last_batch = Instant::now();
        self.metrics.set_ready(true);
        loop {
            let deadline = self.batcher.deadline();
            // Held-back authorizations are retried on their own when nothing else comes.
            let retry_pending =
                self.stamping.pending_len() > 0 && last_batch.elapsed() >= PENDING_RETRY_INTERVAL;
            let must_flush = self.batcher.is_full()
                || deadline.is_some_and(|d| Instant::now() >= d)
                || retry_pending;
            let room = self.committer.has_room();
            // A batch near full asks ahead, so the answer is there when it
            // is full rather than the batch growing while it waits.
            if room && self.gate.is_idle() && self.batcher.is_nearly_full() {
                self.ask(self.batcher.usage())?;
            }
            let mut unread = false;
            if must_flush && room {
                let due = Due {
                    usage: self.batcher.usage(),
                    pending: self.stamping.pending_len(),
                    overfull: self.batcher.is_overfull(),
                };
                match self.gate.flush(due, Instant::now()) {
                    Flush::Ask => self.ask(self.batcher.usage())?,
                    Flush::Wait { unread: u } => unread = u,
                    Flush::Batch {
                        cut,
                        read_at,
                        hold_usage,
                    } => {
                        self.report_consumed();
                        let batch = self.batcher.take_covered(cut);
                        self.start_batch(batch, read_at, hold_usage).await?;
                        last_batch = Instant::now();
                        self.take_stash().await?;
                        if !hold_usage {
                            self.pressure(|b, p| b.release_usage(p))?;
                        }
                    }
                }
            }
            let waiting = must_flush && room && (unread || !self.gate.has_answer());
            // A full batch waiting on reference data: usage stops coming.
            if unread && self.batcher.is_full() {
                self.pressure(|b, p| b.hold_usage(p))?;
            }
            // Full, and no write may start: everything waits for the oldest write.
            if self.batcher.is_full() && !self.committer.has_room() {
                self.pressure(|b, p| b.writes_full(p))?;
            }
            if *self.shutdown.borrow() {
                break;
            }
            let probe = &mut self.probe;
            tokio::select! {
                biased;
                _ = self.shutdown.changed() => {}
                written = self.committer.oldest_written(), if !self.committer.is_empty() => {
                    if let Some((written, commit)) = written {
                        let prepared = written??;
                        self.stamping.stored(prepared.state_batch);
                        self.finish_batch(prepared, &commit, CommitMode::Async)?;
                        self.pressure(|b, p| b.write_done(p))?;
                    }
                }
                notice = self.notices.recv() => {
                    if let Some(notice) = notice {
                        self.on_notice(notice).await?;
                    }
                }
                answer = async { probe.as_mut().expect("guarded").await }, if probe.is_some() => {
                    self.probe = None;
                    self.answered(answer?);
                }
                message = recv_owned(&self.consumer, &self.topics), if !self.backpressure.writes_lag() => {
                    self.accept(message).await?;
                    // Take what librdkafka already holds without going round
                    // the select! (and its timers) for every message; the
                    // burst is bounded so writes finishing and notices get
                    // their turn.
                    let mut burst = 0;
                    while burst < MAX_BURST && !self.batcher.is_full() {
                        let Some(message) = recv_owned(&self.consumer, &self.topics).now_or_never()
                        else {
                            break;
                        };
                        self.accept(message).await?;
                        burst += 1;
                    }
                }
                _ = sleep_until(deadline), if deadline.is_some() && room && !waiting => {}
                _ = tokio::time::sleep(REFERENCE_POLL), if waiting && !self.gate.is_asking() => {}
                _ = tokio::time::sleep(PENDING_RETRY_INTERVAL), if self.stamping.pending_len() > 0 && room && !waiting => {}
            }
        }
        self.drain().await
    }

    /// Tells backpressure of an event; it acts on the consumer's partitions.
    fn pressure(
        &mut self,
        event: impl FnOnce(&mut Backpressure, &ConsumerPartitions<'_>) -> Result<(), KafkaError>,
    ) -> Result<(), PipelineError> {
        let partitions = ConsumerPartitions {
            consumer: &self.consumer,
            topics: &self.topics,
        };
        event(&mut self.backpressure, &partitions)?;
        Ok(())
    }

    /// Adds a received message to the batch being filled (rebalance notices
    /// that arrived meanwhile are handled first).
    async fn accept(
        &mut self,
        message: Result<Option<RawMessage>, KafkaError>,
    ) -> Result<(), PipelineError> {
        while let Ok(notice) = self.notices.try_recv() {
            self.on_notice(notice).await?;
        }
        let raw = match message {
            Ok(Some(raw)) => raw,
            Ok(None) => return Ok(()),
            Err(KafkaError::PartitionEOF(partition)) => return self.reached_end(partition),
            Err(error) => {
                // Broker unreachable, a partition error...: librdkafka
                // reconnects and resumes by itself; nothing is lost.
                tracing::warn!(%error, "consumer error");
                return Ok(());
            }
        };
        if raw.topic != Topic::Authorizations {
            self.gate
                .received(raw.topic, raw.partition, raw.offset, Instant::now());
        }
        let partition = (raw.topic, raw.partition);
        self.pressure(|b, p| b.received(p, partition))?;
        self.batcher.push(raw);
        Ok(())
    }

    /// The messages received while ClickHouse could not be read go into the
    /// batch being filled — but only those of partitions still assigned
    /// (the group may have rebalanced meanwhile).
    async fn take_stash(&mut self) -> Result<(), PipelineError> {
        if self.stash.is_empty() {
            return Ok(());
        }
        while let Ok(notice) = self.notices.try_recv() {
            self.on_notice(notice).await?;
        }
        let assignment = self.consumer.assignment()?;
        let owned: HashSet<(String, i32)> = assignment
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        for raw in std::mem::take(&mut self.stash) {
            let key = (self.topics.name(raw.topic).to_owned(), raw.partition);
            if owned.contains(&key) {
                self.accept(Ok(Some(raw))).await?;
            }
        }
        Ok(())
    }

    /// The messages consumed since the last batch, into the metrics.
    fn report_consumed(&mut self) {
        for (topic, n) in self.batcher.take_consumed() {
            self.metrics.consumed(self.topics.name(topic), n);
        }
    }

    /// Stamps `batch` and starts writing it.
    async fn start_batch(
        &mut self,
        batch: Filling,
        reference_read_at: Option<Instant>,
        hold_usage: bool,
    ) -> Result<(), PipelineError> {
        let started = Instant::now();
        let messages = batch.messages.len();
        self.committer.positions.taken(&batch.messages);
        let mut waiter =
            PollWhileWaiting::new(&self.consumer, &self.topics, &mut self.backpressure);
        let processed = self
            .stamping
            .process(batch.messages, reference_read_at, hold_usage, &mut waiter)
            .await;
        let polled = waiter.finish()?;
        self.stash = polled.stash;
        for partition in polled.ends {
            self.reached_end(partition)?;
        }
        let prepared = processed?;
        let commit = self
            .committer
            .positions
            .commit_now(&self.stamping.pending_floor());
        self.metrics.set_pending(self.stamping.pending_len());
        tracing::debug!(
            messages,
            dead_letters = prepared.letters.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "batch processed"
        );
        self.committer.write(prepared, commit);
        Ok(())
    }

    /// A batch is stored: its metrics, then its offsets committed.
    fn finish_batch(
        &self,
        prepared: Prepared,
        commit: &Commit,
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
        committer::commit(&self.consumer, &self.topics, commit, mode)?;
        Ok(())
    }

    /// SIGTERM: write what was consumed, commit, leave the group.
    async fn drain(mut self) -> Result<(), PipelineError> {
        tracing::info!(
            buffered = self.batcher.len(),
            in_flight = self.committer.len(),
            "draining: finishing the current batches"
        );
        self.metrics.set_ready(false);
        self.probe = None;
        if !self.batcher.is_empty() {
            self.report_consumed();
            let batch = self.batcher.take_all();
            self.start_batch(batch, None, false).await?;
        }
        for flight in self.committer.take_flights() {
            let (written, commit) = flight.written().await;
            match written? {
                Ok(prepared) => {
                    self.stamping.stored(prepared.state_batch);
                    self.finish_batch(prepared, &commit, CommitMode::Sync)?;
                }
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

    /// Asks the broker, off the consumer's task, for the end offsets of the
    /// assigned reference partitions; `cut`: the authorizations of the batch so far.
    fn ask(&mut self, cut: usize) -> Result<(), PipelineError> {
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
        self.gate.ask(cut, Instant::now());
        let producer = self.producer.clone();
        self.probe = Some(tokio::task::spawn_blocking(move || {
            kafka::partition_ends(&producer, &partitions, PROBE_TIMEOUT)
        }));
        Ok(())
    }

    /// The broker's answer to the question out.
    fn answered(&mut self, ends: Result<Vec<PartitionEnd>, KafkaError>) {
        if let Some(at) = self.gate.asked_at() {
            tracing::debug!(
                took_ms = at.elapsed().as_millis() as u64,
                "reference partitions' ends"
            );
        }
        let ends = match ends {
            Ok(ends) => Some(ends),
            Err(error) => {
                tracing::debug!(
                    %error,
                    "no answer on the reference partitions' ends; the batch goes without"
                );
                None
            }
        };
        self.gate.answered(ends);
    }

    /// A partition was read to its end: usage flows once every reference
    /// partition is (after an assignment).
    fn reached_end(&mut self, partition: i32) -> Result<(), PipelineError> {
        if self.gate.reached_end(partition, Instant::now()).is_some() {
            self.pressure(|b, p| b.catch_up(p, false))?;
        }
        Ok(())
    }

    async fn on_notice(&mut self, notice: PartitionNotice) -> Result<(), PipelineError> {
        match notice {
            PartitionNotice::Revoked(partitions) => {
                let revoked: Vec<(Topic, i32)> = partitions
                    .iter()
                    .filter_map(|(t, p)| self.topics.role(t).map(|r| (r, *p)))
                    .collect();
                // Uncommitted work of revoked partitions is dropped: the new
                // owner consumes it again from the last commit, and every
                // write is idempotent, so nothing is lost or counted twice.
                self.batcher.revoked(&revoked);
                self.committer.revoked(&revoked);
                self.gate.revoked(&revoked);
                self.backpressure.revoked(&revoked);
                // (A probe's cut counts messages of the batch as it was.)
                self.probe = None;
                self.stamping.partitions_revoked(&revoked);
            }
            PartitionNotice::Assigned(partitions) => {
                for topic in [Topic::Authorizations, Topic::Assignments, Topic::Directory] {
                    let name = self.topics.name(topic);
                    let n = partitions.iter().filter(|(t, _)| t == name).count();
                    self.metrics.set_assigned(name, n);
                }
                let roles: Vec<(Topic, i32)> = partitions
                    .iter()
                    .filter_map(|(t, p)| self.topics.role(t).map(|r| (r, *p)))
                    .collect();
                self.backpressure.assigned(&roles);
                let reference: Vec<i32> = roles
                    .iter()
                    .filter(|(t, _)| matches!(t, Topic::Assignments | Topic::Directory))
                    .map(|(_, p)| *p)
                    .collect();
                let catching_up = self.gate.assigned(&reference, Instant::now());
                self.pressure(|b, p| b.catch_up(p, catching_up))?;
                // Other members may have stored assignments and rates meanwhile.
                if let Err(error) = self.stamping.refresh().await {
                    tracing::warn!(%error, "reloading the enrichment state failed; will retry");
                }
            }
        }
        Ok(())
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
