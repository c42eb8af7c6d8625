//! The stash: while a batch's read of enrichment state waits to be retried
//! (ClickHouse down), every assigned partition is paused and the consumer
//! still polled — so the group keeps this member however long the outage
//! lasts — and what librdkafka had already fetched is kept, in order, for
//! the batch being filled ([`PollWhileWaiting`]).

use super::backpressure::{Backpressure, ConsumerPartitions};
use crate::kafka::IngestConsumer;
use crate::message::{RawMessage, TopicNames};
use crate::retry::Wait;
use rdkafka::error::KafkaError;
use rdkafka::Message;
use std::time::Duration;

/// The stamping's wait between two attempts to read enrichment state.
pub(crate) struct PollWhileWaiting<'a> {
    partitions: ConsumerPartitions<'a>,
    backpressure: &'a mut Backpressure,
    /// Whether a wait began (every partition is then paused for reads).
    waited: bool,
    paused: bool,
    /// Messages received meanwhile, in order.
    stash: Vec<RawMessage>,
    /// End-of-partition events received meanwhile.
    ends: Vec<i32>,
}

/// What was polled while the reads waited.
pub(crate) struct Polled {
    /// The messages, in order.
    pub(crate) stash: Vec<RawMessage>,
    /// The partitions (numbers) read to their end.
    pub(crate) ends: Vec<i32>,
}

impl<'a> PollWhileWaiting<'a> {
    pub(crate) fn new(
        consumer: &'a IngestConsumer,
        topics: &'a TopicNames,
        backpressure: &'a mut Backpressure,
    ) -> PollWhileWaiting<'a> {
        PollWhileWaiting {
            partitions: ConsumerPartitions { consumer, topics },
            backpressure,
            waited: false,
            paused: false,
            stash: Vec::new(),
            ends: Vec::new(),
        }
    }

    /// The reads are over: the partitions resume (as far as nothing else
    /// holds them), and what was polled meanwhile is handed over.
    pub(crate) fn finish(self) -> Result<Polled, KafkaError> {
        if self.waited {
            self.backpressure
                .reads_done(&self.partitions, self.stash.len())?;
        }
        Ok(Polled {
            stash: self.stash,
            ends: self.ends,
        })
    }
}

impl Wait for PollWhileWaiting<'_> {
    async fn wait(&mut self, delay: Duration) -> bool {
        self.waited = true;
        if !self.paused {
            match self.backpressure.reads_failing(&self.partitions) {
                Ok(()) => self.paused = true,
                Err(error) => tracing::warn!(%error, "pausing the partitions failed"),
            }
        }
        let consumer = self.partitions.consumer;
        let topics = self.partitions.topics;
        let until = tokio::time::Instant::now() + delay;
        while let Ok(message) = tokio::time::timeout_at(until, recv_owned(consumer, topics)).await {
            match message {
                Ok(Some(raw)) => self.stash.push(raw),
                Ok(None) => {}
                Err(KafkaError::PartitionEOF(partition)) => self.ends.push(partition),
                Err(error) => tracing::warn!(%error, "consumer error"),
            }
        }
        true
    }
}

/// The next message, owned (`None` for a topic that is not ours).
pub(crate) async fn recv_owned(
    consumer: &IngestConsumer,
    topics: &TopicNames,
) -> Result<Option<RawMessage>, KafkaError> {
    let message = consumer.recv().await?;
    Ok(topics.role(message.topic()).map(|topic| RawMessage {
        topic,
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().unwrap_or_default().to_vec(),
    }))
}
