//! The dead-letter topic: every message the pipeline cannot report goes there
//! with its original key and bytes, where it came from, and why — never
//! dropped silently. And the bounded dead-letter policy: when too large a
//! share of recent messages is invalid, the pipeline stops and says so rather
//! than divert everything (a bad deploy upstream, a wrong topic).

use rdkafka::{
    error::{KafkaError, RDKafkaErrorCode},
    message::{Header, OwnedHeaders},
    producer::{DeliveryFuture, FutureProducer, FutureRecord},
};
use std::time::Duration;

/// Header names on dead letters (stable: `replay-dlq` and operators read them).
pub(crate) mod header {
    pub(crate) const SOURCE_TOPIC: &str = "usage.source_topic";
    pub(crate) const SOURCE_PARTITION: &str = "usage.source_partition";
    pub(crate) const SOURCE_OFFSET: &str = "usage.source_offset";
    pub(crate) const REASON: &str = "usage.reason";
    pub(crate) const FIELD: &str = "usage.field";
    pub(crate) const ERROR: &str = "usage.error";
    pub(crate) const FAILED_AT: &str = "usage.failed_at";
    /// Only on a letter whose payload the broker refused whole: the original
    /// payload's size in bytes (the letter carries its first
    /// [`super::TRUNCATED_PAYLOAD_BYTES`]; the original stays at its source
    /// offset while the source topic retains it).
    pub(crate) const PAYLOAD_TRUNCATED_FROM: &str = "usage.payload_truncated_from";
}

/// How much of a payload a letter keeps when the whole one is over the
/// broker's (or the producer's) message size limit.
pub(crate) const TRUNCATED_PAYLOAD_BYTES: usize = 64 * 1024;

/// A message on its way to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeadLetter {
    pub(crate) source_topic: String,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) payload: Vec<u8>,
    /// A stable reason string (`usage_core::validate::Reason::as_str`).
    pub(crate) reason: &'static str,
    pub(crate) field: Option<String>,
    pub(crate) error: String,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot publish dead letter for {topic}/{partition}@{offset}: {source}")]
pub(crate) struct DeadLetterError {
    topic: String,
    partition: i32,
    offset: i64,
    #[source]
    source: rdkafka::error::KafkaError,
}

/// Publishes dead letters (acks=all, idempotent producer).
#[derive(Clone)]
pub(crate) struct DeadLetterQueue {
    producer: FutureProducer,
    topic: String,
}

impl DeadLetterQueue {
    pub(crate) fn new(producer: FutureProducer, topic: String) -> DeadLetterQueue {
        DeadLetterQueue { producer, topic }
    }

    /// Publishes every letter and waits until the broker has them all. A
    /// letter too large for the broker goes again with its payload cut to
    /// [`TRUNCATED_PAYLOAD_BYTES`] and a header giving the original size,
    /// rather than stopping the pipeline on a message it has already refused.
    pub(crate) async fn publish(&self, letters: &[DeadLetter]) -> Result<(), DeadLetterError> {
        let failed_at = chrono::Utc::now().to_rfc3339();
        let fail = |letter: &DeadLetter, source| DeadLetterError {
            topic: letter.source_topic.clone(),
            partition: letter.partition,
            offset: letter.offset,
            source,
        };
        let mut deliveries = Vec::with_capacity(letters.len());
        let mut too_large = Vec::new();
        for letter in letters {
            match self.send(letter, &failed_at, false).await {
                Ok(delivery) => deliveries.push((letter, delivery)),
                Err(source) if is_too_large(&source) => too_large.push(letter),
                Err(source) => return Err(fail(letter, source)),
            }
        }
        for (letter, delivery) in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((source, _))) if is_too_large(&source) => too_large.push(letter),
                Ok(Err((source, _))) => return Err(fail(letter, source)),
                Err(_canceled) => return Err(fail(letter, KafkaError::Canceled)),
            }
        }
        for letter in too_large {
            tracing::warn!(
                source_topic = letter.source_topic,
                partition = letter.partition,
                offset = letter.offset,
                payload_bytes = letter.payload.len(),
                kept_bytes = TRUNCATED_PAYLOAD_BYTES,
                "dead letter over the broker's message size: publishing it truncated"
            );
            let delivery = self
                .send(letter, &failed_at, true)
                .await
                .map_err(|source| fail(letter, source))?;
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((source, _))) => return Err(fail(letter, source)),
                Err(_canceled) => return Err(fail(letter, KafkaError::Canceled)),
            }
        }
        Ok(())
    }

    /// Queues one letter (waiting while the producer's queue is full).
    async fn send(
        &self,
        letter: &DeadLetter,
        failed_at: &str,
        truncate: bool,
    ) -> Result<DeliveryFuture, KafkaError> {
        let payload = if truncate {
            &letter.payload[..letter.payload.len().min(TRUNCATED_PAYLOAD_BYTES)]
        } else {
            letter.payload.as_slice()
        };
        let mut headers = headers(letter, failed_at);
        if truncate {
            headers = headers.insert(Header {
                key: header::PAYLOAD_TRUNCATED_FROM,
                value: Some(&letter.payload.len().to_string()),
            });
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic)
            .payload(payload)
            .headers(headers);
        if let Some(key) = &letter.key {
            record = record.key(key.as_slice());
        }
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err((source, _)) => return Err(source),
            }
        }
    }
}

/// The producer's or the broker's "message too large".
fn is_too_large(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize)
    )
}

fn headers(letter: &DeadLetter, failed_at: &str) -> OwnedHeaders {
    let partition = letter.partition.to_string();
    let offset = letter.offset.to_string();
    let mut headers = OwnedHeaders::new_with_capacity(7);
    for (key, value) in [
        (header::SOURCE_TOPIC, letter.source_topic.as_str()),
        (header::SOURCE_PARTITION, partition.as_str()),
        (header::SOURCE_OFFSET, offset.as_str()),
        (header::REASON, letter.reason),
        (header::ERROR, letter.error.as_str()),
        (header::FAILED_AT, failed_at),
    ] {
        headers = headers.insert(Header {
            key,
            value: Some(value),
        });
    }
    if let Some(field) = &letter.field {
        headers = headers.insert(Header {
            key: header::FIELD,
            value: Some(field.as_str()),
        });
    }
    headers
}

/// The bounded dead-letter policy: over a sliding count of recent messages,
/// the share of invalid ones must stay at or below `max_invalid_ratio`, and
/// no more than `max_consecutive` invalid messages may come in a row.
#[derive(Debug, Clone)]
pub(crate) struct DeadLetterPolicy {
    pub(crate) max_invalid_ratio: f64,
    pub(crate) window: u64,
    pub(crate) max_consecutive: u64,
    seen: u64,
    invalid: u64,
    consecutive: u64,
}

/// The policy's verdict when it trips.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum PolicyTripped {
    #[error(
        "{invalid} of the last {seen} messages were invalid (limit {limit:.0}%): stopping rather \
         than diverting everything to the dead-letter topic; check the producers, then restart"
    )]
    Ratio { invalid: u64, seen: u64, limit: f64 },
    #[error(
        "{count} invalid messages in a row (limit {limit}): stopping rather than diverting \
         everything to the dead-letter topic; check the producers, then restart"
    )]
    Consecutive { count: u64, limit: u64 },
}

impl DeadLetterPolicy {
    pub(crate) fn new(max_invalid_ratio: f64, window: u64, max_consecutive: u64) -> Self {
        DeadLetterPolicy {
            max_invalid_ratio,
            window: window.max(1),
            max_consecutive,
            seen: 0,
            invalid: 0,
            consecutive: 0,
        }
    }

    /// Records one message's outcome.
    pub(crate) fn record(&mut self, valid: bool) -> Result<(), PolicyTripped> {
        if self.seen >= self.window {
            // Decay: keep the ratio, halve the counts (a cheap sliding window).
            self.seen /= 2;
            self.invalid /= 2;
        }
        self.seen += 1;
        if valid {
            self.consecutive = 0;
            return Ok(());
        }
        self.invalid += 1;
        self.consecutive += 1;
        if self.max_consecutive > 0 && self.consecutive > self.max_consecutive {
            return Err(PolicyTripped::Consecutive {
                count: self.consecutive,
                limit: self.max_consecutive,
            });
        }
        // Judge the ratio only over a full window, so a few bad messages at start-up do not trip it.
        if self.seen >= self.window / 2
            && (self.invalid as f64) > self.max_invalid_ratio * self.seen as f64
        {
            return Err(PolicyTripped::Ratio {
                invalid: self.invalid,
                seen: self.seen,
                limit: self.max_invalid_ratio * 100.0,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_bad_messages_among_many_pass() {
        let mut p = DeadLetterPolicy::new(0.1, 1000, 100);
        for i in 0..10_000 {
            p.record(i % 20 != 0)
                .expect("5% invalid is within a 10% limit");
        }
    }

    #[test]
    fn a_flood_of_bad_messages_trips_the_ratio() {
        let mut p = DeadLetterPolicy::new(0.1, 1000, 0);
        let tripped = (0..10_000)
            .map(|i| p.record(i % 3 != 0))
            .find(Result::is_err);
        assert!(matches!(tripped, Some(Err(PolicyTripped::Ratio { .. }))));
    }

    #[test]
    fn a_run_of_bad_messages_trips_the_consecutive_limit() {
        let mut p = DeadLetterPolicy::new(1.0, 1000, 5);
        for _ in 0..5 {
            p.record(false).expect("within the limit");
        }
        assert!(matches!(
            p.record(false),
            Err(PolicyTripped::Consecutive { count: 6, limit: 5 })
        ));
        p.record(true).expect("a good message resets the run");
    }
}
