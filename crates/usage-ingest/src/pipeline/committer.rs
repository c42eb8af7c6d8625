//! The committer: the batches being written (dead letters, then the rows),
//! up to `--batches-in-flight` of them, and their offsets committed once
//! stored, in the order the batches were consumed (a batch's commit covers
//! everything consumed before it, so it waits for the batches before it).
//! An authorization held back holds its partition's commit back.

use super::{Commit, PipelineError};
use crate::dlq::DeadLetterQueue;
use crate::kafka::IngestConsumer;
use crate::message::{RawMessage, Topic, TopicNames};
use crate::sink::Sink;
use crate::stamp::Prepared;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{HashMap, VecDeque};
use tokio::sync::watch;
use tokio::task::{JoinError, JoinHandle};

/// What a write task hands back: the batch, once stored.
type Written = Result<Prepared, PipelineError>;

/// A batch being written, and what to commit once it is stored.
pub(crate) struct InFlight {
    handle: JoinHandle<Written>,
    commit: Commit,
}

/// Writes batches: dead letters first (awaited), then the rows.
#[derive(Clone)]
pub(crate) struct Writer {
    pub(crate) sink: Sink,
    pub(crate) dlq: DeadLetterQueue,
    /// Turns true when the drain took too long: abandon retries.
    pub(crate) abandon: watch::Receiver<bool>,
}

impl Writer {
    fn spawn(&self, prepared: Prepared) -> JoinHandle<Written> {
        let Writer { sink, dlq, abandon } = self.clone();
        tokio::spawn(async move {
            dlq.publish(&prepared.letters).await?;
            match sink.write_all(&prepared.tables, &abandon).await {
                Ok(()) => Ok(prepared),
                Err(abandoned) => Err(PipelineError::Abandoned(abandoned)),
            }
        })
    }
}

/// Next offset to read per partition, of everything taken into a batch:
/// what a batch's commit covers.
#[derive(Debug, Default)]
pub(crate) struct Positions(Commit);

impl Positions {
    /// `batch` is taken into a batch: later commits cover it.
    pub(crate) fn taken(&mut self, batch: &[RawMessage]) {
        for m in batch {
            self.0.insert((m.topic, m.partition), m.offset + 1);
        }
    }

    /// The commit of a batch taken now: everything taken so far (it is in
    /// this batch or an earlier one), except what is held back (`held`: per
    /// authorizations partition, the lowest offset held back).
    pub(crate) fn commit_now(&self, held: &HashMap<i32, i64>) -> Commit {
        let mut commit = self.0.clone();
        for (partition, floor) in held {
            let e = commit
                .entry((Topic::Authorizations, *partition))
                .or_insert(*floor);
            *e = (*e).min(*floor);
        }
        commit
    }

    fn revoked(&mut self, revoked: &[(Topic, i32)]) {
        self.0.retain(|k, _| !revoked.contains(k));
    }
}

/// The batches in flight, oldest first, and the offsets they cover.
pub(crate) struct Committer {
    writer: Writer,
    max_in_flight: usize,
    pub(crate) positions: Positions,
    in_flight: VecDeque<InFlight>,
}

impl Committer {
    pub(crate) fn new(writer: Writer, max_in_flight: usize) -> Committer {
        Committer {
            writer,
            max_in_flight,
            positions: Positions::default(),
            in_flight: VecDeque::new(),
        }
    }

    /// Whether another batch may be written now.
    pub(crate) fn has_room(&self) -> bool {
        self.in_flight.len() < self.max_in_flight
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.in_flight.len()
    }

    /// Starts writing `prepared`, to commit `commit` once it is stored.
    pub(crate) fn write(&mut self, prepared: Prepared, commit: Commit) {
        let handle = self.writer.spawn(prepared);
        self.in_flight.push_back(InFlight { handle, commit });
    }

    /// The oldest write, once it ends (when there is one), with its commit.
    pub(crate) async fn oldest_written(&mut self) -> Option<(Result<Written, JoinError>, Commit)> {
        let written = match self.in_flight.front_mut() {
            Some(flight) => (&mut flight.handle).await,
            None => return None,
        };
        let flight = self.in_flight.pop_front()?;
        Some((written, flight.commit))
    }

    /// Partitions were revoked: their uncommitted work is dropped (the new
    /// owner consumes it again from the last commit, and every write is
    /// idempotent, so nothing is lost or counted twice).
    pub(crate) fn revoked(&mut self, revoked: &[(Topic, i32)]) {
        self.positions.revoked(revoked);
    }

    /// Every batch still in flight, oldest first (when draining).
    pub(crate) fn take_flights(&mut self) -> Vec<InFlight> {
        self.in_flight.drain(..).collect()
    }
}

impl InFlight {
    /// Waits for the write: the batch once stored, and its commit.
    pub(crate) async fn written(self) -> (Result<Written, JoinError>, Commit) {
        (self.handle.await, self.commit)
    }
}

/// Commits `commit` (a stored batch's offsets).
pub(crate) fn commit(
    consumer: &IngestConsumer,
    topics: &TopicNames,
    commit: &Commit,
    mode: CommitMode,
) -> Result<(), KafkaError> {
    if commit.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in commit {
        tpl.add_partition_offset(topics.name(*topic), *partition, Offset::Offset(*offset))?;
    }
    if let Err(error) = consumer.commit(&tpl, mode) {
        // After a rebalance the partition may belong to another member: harmless.
        tracing::warn!(%error, "offset commit failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(topic: Topic, partition: i32, offset: i64) -> RawMessage {
        RawMessage {
            topic,
            partition,
            offset,
            key: None,
            payload: Vec::new(),
        }
    }

    #[test]
    fn a_commit_covers_everything_taken_but_what_is_held_back() {
        let mut positions = Positions::default();
        positions.taken(&[
            message(Topic::Authorizations, 0, 10),
            message(Topic::Authorizations, 0, 11),
            message(Topic::Assignments, 0, 3),
        ]);
        positions.taken(&[message(Topic::Authorizations, 1, 7)]);
        let commit = positions.commit_now(&HashMap::new());
        let offsets = |c: &Commit| {
            let mut v: Vec<((Topic, i32), i64)> = c.iter().map(|(k, v)| (*k, *v)).collect();
            v.sort();
            v
        };
        assert_eq!(
            offsets(&commit),
            [
                ((Topic::Authorizations, 0), 12),
                ((Topic::Authorizations, 1), 8),
                ((Topic::Assignments, 0), 4),
            ]
        );
        // Offset 5 of partition 0 is held back; so is offset 1 of partition
        // 2, of which nothing was taken since.
        let held: HashMap<i32, i64> = [(0, 5), (2, 1)].into_iter().collect();
        assert_eq!(
            offsets(&positions.commit_now(&held)),
            [
                ((Topic::Authorizations, 0), 5),
                ((Topic::Authorizations, 1), 8),
                ((Topic::Authorizations, 2), 1),
                ((Topic::Assignments, 0), 4),
            ]
        );
        // A revoked partition is no longer committed.
        positions.revoked(&[(Topic::Authorizations, 0)]);
        assert_eq!(
            offsets(&positions.commit_now(&HashMap::new())),
            [
                ((Topic::Authorizations, 1), 8),
                ((Topic::Assignments, 0), 4)
            ]
        );
    }
}
