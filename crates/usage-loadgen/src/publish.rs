//! Publishing messages to Kafka with an rdkafka `FutureProducer`.
//!
//! The messages are generated on a separate thread and handed over in
//! batches, so generation and production overlap. Each message is enqueued
//! with `send_result` (never awaited one by one); delivery futures are
//! awaited in bulk, oldest first, when too many are in flight, when the
//! producer queue is full, and at the end. Partitioning is by key (the
//! default partitioner), so a key's messages keep their order.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::{Message, Scenario, Topics};

/// Where and how fast to publish.
#[derive(Debug, Clone)]
pub struct PublishConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Topic names.
    pub topics: Topics,
    /// Target rate in messages per second; 0 (or less) publishes as fast as
    /// possible.
    pub rate: f64,
    /// Delivery futures kept before awaiting the oldest half.
    pub max_in_flight: usize,
    /// Extra producer properties (override the defaults).
    pub overrides: Vec<(String, String)>,
}

impl PublishConfig {
    /// Defaults for `brokers`: default topics, full speed.
    pub fn new(brokers: impl Into<String>) -> PublishConfig {
        PublishConfig {
            brokers: brokers.into(),
            topics: Topics::default(),
            rate: 0.0,
            max_in_flight: 400_000,
            overrides: Vec::new(),
        }
    }
}

/// Where a publication is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Messages handed to the producer.
    pub sent: u64,
    /// Messages acknowledged by the broker.
    pub delivered: u64,
    /// Messages to publish, when known.
    pub total: Option<u64>,
    pub elapsed: Duration,
}

/// What was published.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PublishReport {
    pub messages: u64,
    /// By topic name.
    pub by_topic: BTreeMap<String, u64>,
    pub duplicates: u64,
    pub poison: u64,
    pub late: u64,
    pub elapsed: Duration,
}

impl PublishReport {
    /// Messages per second.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.messages as f64 / secs
        } else {
            0.0
        }
    }
}

/// A failed publication.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("kafka producer: {0}")]
    Client(#[source] KafkaError),
    #[error("delivery to {topic} failed: {error}")]
    Delivery {
        topic: String,
        #[source]
        error: KafkaError,
    },
    #[error("a delivery report was lost (producer dropped)")]
    Canceled,
    #[error("the message generator thread panicked")]
    Generator,
}

/// The producer: idempotent, `acks=all`, `linger.ms=20`, LZ4, a deep queue.
pub fn producer(config: &PublishConfig) -> Result<FutureProducer, PublishError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "20")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("batch.size", "1000000")
        .set("message.timeout.ms", "120000");
    for (k, v) in &config.overrides {
        c.set(k, v);
    }
    c.create().map_err(PublishError::Client)
}

async fn settle(
    pending: &mut VecDeque<(DeliveryFuture, usize)>,
    keep: usize,
    topics: &[String],
) -> Result<u64, PublishError> {
    let mut delivered = 0;
    while pending.len() > keep {
        let Some((future, topic)) = pending.pop_front() else {
            break;
        };
        match future.await {
            Ok(Ok(_)) => delivered += 1,
            Ok(Err((error, _))) => {
                return Err(PublishError::Delivery {
                    topic: topics[topic].clone(),
                    error,
                });
            }
            Err(_) => return Err(PublishError::Canceled),
        }
    }
    Ok(delivered)
}

/// Publishes `messages` in order. `total` (if known) is only reported in
/// [`Progress`]; `progress` is called after every batch of a few thousand
/// messages and at the end.
pub async fn publish<I>(
    config: &PublishConfig,
    messages: I,
    total: Option<u64>,
    mut progress: impl FnMut(&Progress),
) -> Result<PublishReport, PublishError>
where
    I: IntoIterator<Item = Message>,
    I::IntoIter: Send + 'static,
{
    const BATCH: usize = 4096;
    let producer = producer(config)?;
    let topic_names: Vec<String> = crate::Topic::ALL
        .iter()
        .map(|t| config.topics.name(*t).to_owned())
        .collect();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Message>>(32);
    let iter = messages.into_iter();
    let generator = std::thread::Builder::new()
        .name("loadgen-generate".into())
        .spawn(move || {
            let mut batch = Vec::with_capacity(BATCH);
            for m in iter {
                batch.push(m);
                if batch.len() == BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    if tx.blocking_send(full).is_err() {
                        return;
                    }
                }
            }
            if !batch.is_empty() {
                let _ = tx.blocking_send(batch);
            }
        })
        .map_err(|_| PublishError::Generator)?;

    let started = Instant::now();
    let mut report = PublishReport::default();
    let mut by_topic = [0u64; 3];
    let mut delivered = 0u64;
    let mut pending: VecDeque<(DeliveryFuture, usize)> = VecDeque::new();
    let max_in_flight = config.max_in_flight.max(2);
    while let Some(batch) = rx.recv().await {
        for msg in batch {
            if config.rate > 0.0 {
                let due = Duration::from_secs_f64(report.messages as f64 / config.rate);
                let now = started.elapsed();
                if due > now + Duration::from_millis(1) {
                    tokio::time::sleep(due - now).await;
                }
            }
            let topic = msg.topic as usize;
            let mut record = FutureRecord::to(&topic_names[topic])
                .key(&msg.key)
                .payload(&msg.payload);
            loop {
                match producer.send_result(record) {
                    Ok(future) => {
                        pending.push_back((future, topic));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        if pending.is_empty() {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        } else {
                            let keep = pending.len() / 2;
                            delivered += settle(&mut pending, keep, &topic_names).await?;
                        }
                    }
                    Err((error, _)) => return Err(PublishError::Client(error)),
                }
            }
            report.messages += 1;
            by_topic[topic] += 1;
            report.duplicates += u64::from(msg.meta.duplicate);
            report.poison += u64::from(msg.expected_reason.is_some());
            report.late += u64::from(msg.meta.late && !msg.meta.duplicate);
            if pending.len() >= max_in_flight {
                delivered += settle(&mut pending, max_in_flight / 2, &topic_names).await?;
            }
        }
        progress(&Progress {
            sent: report.messages,
            delivered,
            total,
            elapsed: started.elapsed(),
        });
    }
    delivered += settle(&mut pending, 0, &topic_names).await?;
    generator.join().map_err(|_| PublishError::Generator)?;
    report.elapsed = started.elapsed();
    for (i, n) in by_topic.iter().enumerate() {
        if *n > 0 {
            *report.by_topic.entry(topic_names[i].clone()).or_default() += n;
        }
    }
    progress(&Progress {
        sent: report.messages,
        delivered,
        total,
        elapsed: report.elapsed,
    });
    Ok(report)
}

/// Publishes a scenario's messages (counting them first, for the progress
/// total).
pub async fn publish_scenario(
    config: &PublishConfig,
    scenario: &Scenario,
    progress: impl FnMut(&Progress),
) -> Result<PublishReport, PublishError> {
    let total = scenario.count().messages;
    publish(config, scenario.messages(), Some(total), progress).await
}
