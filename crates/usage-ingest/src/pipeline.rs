//! The consumer loop: consume → batch (rows, bytes, time) → process → write
//! (dead letters, then ClickHouse) → commit.
//!
//! One batch is written while the next one fills. When the next one is full
//! before the write ends (ClickHouse slow or down), the loop pauses every
//! assigned partition and keeps polling — so the group keeps this member and
//! memory stays bounded — and resumes them once the write is through.
//! Offsets are committed only after the rows and dead letters they cover are
//! stored; a held-back authorization holds its partition's commit back.

use crate::dlq::DeadLetterQueue;
use crate::kafka::{IngestConsumer, PartitionNotice};
use crate::metrics::Metrics;
use crate::process::{Prepared, ProcessError, Processor, RawMessage, Topic, TopicNames};
use crate::sink::Sink;
use futures::FutureExt as _;
use rdkafka::{
    consumer::{CommitMode, Consumer},
    Message, Offset, TopicPartitionList,
};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use usage_store::Warehouse;

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
    Process(#[from] ProcessError),
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

/// Offsets to commit once a batch is stored: per (topic, partition), the next offset to read.
pub(crate) type Commit = usage_core::FastMap<(Topic, i32), i64>;

struct InFlight {
    handle: JoinHandle<Result<Prepared, PipelineError>>,
    commit: Commit,
}

pub(crate) struct Pipeline {
    pub(crate) consumer: IngestConsumer,
    pub(crate) notices: mpsc::UnboundedReceiver<PartitionNotice>,
    pub(crate) topics: TopicNames,
    pub(crate) processor: Processor,
    pub(crate) warehouse: Warehouse,
    pub(crate) sink: Sink,
    pub(crate) dlq: DeadLetterQueue,
    pub(crate) metrics: Metrics,
    pub(crate) limits: BatchLimits,
    /// Turns true on SIGTERM/SIGINT: drain and stop.
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Turns true when the drain took too long: abandon retries.
    pub(crate) abandon: watch::Receiver<bool>,
    /// Next offset to read per partition, of everything consumed.
    pub(crate) positions: Commit,
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
}

impl Filling {
    fn is_full(&self, limits: &BatchLimits) -> bool {
        self.messages.len() >= limits.max_rows || self.bytes >= limits.max_bytes
    }

    fn deadline(&self, limits: &BatchLimits) -> Option<Instant> {
        self.opened.map(|o| o + limits.max_wait)
    }
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
            if must_flush && room {
                self.report_consumed(&mut consumed);
                let flight = self.start_batch(std::mem::take(&mut filling)).await?;
                in_flight.push_back(flight);
                last_batch = Instant::now();
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
                _ = sleep_until(deadline), if deadline.is_some() && room => {}
                _ = tokio::time::sleep(PENDING_RETRY_INTERVAL), if self.processor.pending_len() > 0 && room => {}
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
        filling.bytes += raw.payload.len();
        filling.opened.get_or_insert_with(Instant::now);
        self.positions
            .insert((raw.topic, raw.partition), raw.offset + 1);
        filling.messages.push(raw);
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
        if !filling.messages.is_empty() {
            self.report_consumed(consumed);
            flights.push(self.start_batch(filling).await?);
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

    async fn start_batch(&mut self, filling: Filling) -> Result<InFlight, PipelineError> {
        let started = Instant::now();
        let messages = filling.messages.len();
        let prepared = self
            .processor
            .process(filling.messages, &self.warehouse)
            .await?;
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
            let resumed = self.partitions(&assignment, |topic| {
                topic != Topic::Authorizations || self.catching_up.is_none()
            })?;
            self.consumer.resume(&resumed)?;
            self.metrics
                .set_paused(assignment.count() - resumed.count());
            tracing::info!(partitions = resumed.count(), "resumed");
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
                filling
                    .messages
                    .retain(|m| !revoked.contains(&(m.topic, m.partition)));
                self.positions.retain(|k, _| !revoked.contains(k));
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
                if let Err(error) = self.processor.refresh(&self.warehouse).await {
                    tracing::warn!(%error, "reloading the enrichment state failed; will retry");
                }
            }
        }
        Ok(())
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
