//! Kafka clients: the group consumer of the three inbound topics, with its
//! rebalance notices and its lag metric, the producer of dead letters, and
//! the question of partitions' end offsets (the reference gate's probe).

use crate::message::Topic;
use crate::metrics::Metrics;
use rdkafka::producer::Producer as _;
use rdkafka::{
    config::ClientConfig,
    consumer::{Consumer, ConsumerContext, Rebalance, StreamConsumer},
    error::{KafkaError, KafkaResult, RDKafkaErrorCode},
    producer::FutureProducer,
    statistics::Statistics,
    ClientContext, TopicPartitionList,
};
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;

/// Where the brokers are and how to talk to them.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Kafka")]
pub(crate) struct KafkaArgs {
    /// Bootstrap brokers, comma-separated host:port.
    #[arg(long, env = "USAGE_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub(crate) kafka_brokers: String,
    /// Consumer group; instances in one group split the partitions.
    #[arg(long, env = "USAGE_GROUP_ID", default_value = "usage-ingest")]
    pub(crate) group_id: String,
    /// Topic of authorization events.
    #[arg(long, env = "USAGE_AUTHORIZATIONS_TOPIC", default_value = usage_core::event::AUTHORIZATIONS_TOPIC)]
    pub(crate) authorizations_topic: String,
    /// Topic of assignment events.
    #[arg(long, env = "USAGE_ASSIGNMENTS_TOPIC", default_value = usage_core::event::ASSIGNMENTS_TOPIC)]
    pub(crate) assignments_topic: String,
    /// Topic of directory events (profiles, teams, groups, merges, rates).
    #[arg(long, env = "USAGE_DIRECTORY_TOPIC", default_value = usage_core::event::DIRECTORY_TOPIC)]
    pub(crate) directory_topic: String,
    /// Dead-letter topic.
    #[arg(long, env = "USAGE_DLQ_TOPIC", default_value = "usage.dlq")]
    pub(crate) dlq_topic: String,
    /// Consumer session timeout. The local broker takes about half of it to form a group.
    #[arg(long, env = "USAGE_KAFKA_SESSION_TIMEOUT_MS", default_value_t = 10_000)]
    pub(crate) session_timeout_ms: u32,
    /// Consumer heartbeat interval.
    #[arg(
        long,
        env = "USAGE_KAFKA_HEARTBEAT_INTERVAL_MS",
        default_value_t = 1_000
    )]
    pub(crate) heartbeat_interval_ms: u32,
    /// Extra librdkafka settings, `key=value`, repeatable (e.g. security.protocol=SSL).
    #[arg(
        long = "kafka-option",
        env = "USAGE_KAFKA_OPTIONS",
        value_delimiter = ','
    )]
    pub(crate) kafka_options: Vec<String>,
}

impl KafkaArgs {
    /// A client config: the brokers, then `defaults`, then the operator's `--kafka-option`s.
    fn client_config(&self, defaults: &[(&str, String)]) -> Result<ClientConfig, String> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.kafka_brokers);
        for (key, value) in defaults {
            config.set(*key, value);
        }
        for option in &self.kafka_options {
            let (key, value) = option
                .split_once('=')
                .ok_or_else(|| format!("--kafka-option {option:?} is not key=value"))?;
            config.set(key.trim(), value.trim());
        }
        Ok(config)
    }

    /// The three inbound topics.
    pub(crate) fn inbound_topics(&self) -> [&str; 3] {
        [
            &self.authorizations_topic,
            &self.assignments_topic,
            &self.directory_topic,
        ]
    }
}

/// What the consumer tells the pipeline about its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PartitionNotice {
    Assigned(Vec<(String, i32)>),
    Revoked(Vec<(String, i32)>),
}

fn partitions(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

/// Forwards rebalances to the pipeline, which reloads its state on assignment
/// and drops uncommitted work of revoked partitions; turns librdkafka's
/// statistics into the consumer lag metric.
pub(crate) struct IngestContext {
    notices: mpsc::UnboundedSender<PartitionNotice>,
    metrics: Metrics,
    /// The partitions this instance owns, by topic, as the rebalance
    /// callbacks report them. librdkafka's statistics list every partition of
    /// the subscribed topics and keep the last figures of revoked ones: only
    /// these are reported.
    owned: Mutex<HashMap<String, HashSet<i32>>>,
}

impl IngestContext {
    fn new(notices: mpsc::UnboundedSender<PartitionNotice>, metrics: Metrics) -> IngestContext {
        IngestContext {
            notices,
            metrics,
            owned: Mutex::default(),
        }
    }

    fn owned(&self) -> MutexGuard<'_, HashMap<String, HashSet<i32>>> {
        // Nothing panics while holding it; if something did, the set is still usable.
        self.owned.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn assigned(&self, assigned: &[(String, i32)]) {
        let mut owned = self.owned();
        for (topic, partition) in assigned {
            owned.entry(topic.clone()).or_default().insert(*partition);
        }
    }

    /// Under the lock, so that statistics being handled cannot set the lag
    /// of a revoked partition again after it is dropped.
    fn revoked(&self, revoked: &[(String, i32)]) {
        let mut owned = self.owned();
        for (topic, partition) in revoked {
            if let Some(partitions) = owned.get_mut(topic) {
                partitions.remove(partition);
            }
            self.metrics.forget_consumer_lag(topic, *partition);
        }
    }
}

impl ClientContext for IngestContext {
    /// librdkafka's client-level errors. Reaching the end of a partition is
    /// reported here too (`enable.partition.eof`, which the catch-up needs):
    /// routine, not an error.
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error, KafkaError::PartitionEOF(_))
            || error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF)
        {
            tracing::trace!(%error, reason, "librdkafka: end of partition");
        } else {
            tracing::error!(%error, reason, "librdkafka");
        }
    }

    /// Every `statistics.interval.ms` (--kafka-stats-interval-ms), on the
    /// thread that polls the consumer: sets a gauge per owned partition, no
    /// I/O, no blocking (the lock is only contended during a rebalance).
    fn stats(&self, statistics: Statistics) {
        let owned = self.owned();
        for (topic, stats) in &statistics.topics {
            let Some(partitions) = owned.get(topic) else {
                continue;
            };
            for (&partition, p) in &stats.partitions {
                // Partition -1 is librdkafka's internal "unassigned" queue; a
                // negative lag is unknown (no committed offset or watermark yet).
                if partition < 0 || p.consumer_lag < 0 || !partitions.contains(&partition) {
                    continue;
                }
                self.metrics
                    .set_consumer_lag(topic, partition, p.consumer_lag);
            }
        }
    }
}

impl ConsumerContext for IngestContext {
    /// Revoked partitions are resumed here, before librdkafka unassigns
    /// them on this same thread: librdkafka would keep them paused into a
    /// later assignment, where a resume can race their fetcher's start (see
    /// `pipeline::backpressure`). Resuming a partition that is not paused
    /// does nothing.
    fn pre_rebalance(
        &self,
        consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        if let Rebalance::Revoke(tpl) = rebalance {
            tracing::info!(partitions = tpl.count(), "partitions revoked");
            if let Err(error) = consumer.resume(tpl) {
                tracing::warn!(%error, "resuming revoked partitions failed");
            }
            let revoked = partitions(tpl);
            self.revoked(&revoked);
            let _ = self.notices.send(PartitionNotice::Revoked(revoked));
        }
    }

    fn post_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions assigned");
                let assigned = partitions(tpl);
                self.assigned(&assigned);
                let _ = self.notices.send(PartitionNotice::Assigned(assigned));
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance error"),
            Rebalance::Revoke(_) => {}
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(error) = result {
            // Harmless after a rebalance: the new owner re-reads from the last commit.
            tracing::warn!(%error, partitions = offsets.count(), "offset commit failed");
        }
    }
}

pub(crate) type IngestConsumer = StreamConsumer<IngestContext>;

/// librdkafka's queue holds at most one message per this many bytes of
/// `queued.max.messages.kbytes`.
pub(crate) const QUEUE_BYTES_PER_MESSAGE: usize = 256;

/// A group consumer subscribed to the inbound topics; offsets are committed
/// by the pipeline only, after the rows they cover are in ClickHouse. Every
/// `stats_interval_ms` (0: never) its statistics update the lag in `metrics`.
/// librdkafka prefetches at most `queue_kbytes` KiB of messages, and at
/// most one message per [`QUEUE_BYTES_PER_MESSAGE`] bytes of it.
pub(crate) fn consumer(
    args: &KafkaArgs,
    stats_interval_ms: u64,
    queue_kbytes: usize,
    metrics: Metrics,
) -> Result<(IngestConsumer, mpsc::UnboundedReceiver<PartitionNotice>), String> {
    let (tx, rx) = mpsc::unbounded_channel();
    let config = args.client_config(&[
        ("group.id", args.group_id.clone()),
        ("enable.auto.commit", "false".into()),
        ("enable.auto.offset.store", "false".into()),
        ("auto.offset.reset", "earliest".into()),
        ("session.timeout.ms", args.session_timeout_ms.to_string()),
        (
            "heartbeat.interval.ms",
            args.heartbeat_interval_ms.to_string(),
        ),
        // Keep the fetcher busy while an insert is in flight, with bounded memory.
        ("fetch.queue.backoff.ms", "10".into()),
        ("queued.max.messages.kbytes", queue_kbytes.to_string()),
        // Which counts payloads only: each queued message also costs an op
        // of ~200 bytes and keeps its decompressed batch alive, so at this
        // contract's ~100-byte events 16 MiB of payloads took ~60 MB
        // (heaptrack). The count bounds that. (librdkafka stops fetching a
        // partition whose queue holds `queued.min.messages`.)
        (
            "queued.min.messages",
            (queue_kbytes * 1024 / QUEUE_BYTES_PER_MESSAGE)
                .max(1000)
                .to_string(),
        ),
        // End-of-partition events: reference data is read to its end first.
        ("enable.partition.eof", "true".into()),
        // Statistics (consumer lag) for the metrics; 0 disables them.
        ("statistics.interval.ms", stats_interval_ms.to_string()),
    ])?;
    let consumer: IngestConsumer = config
        .create_with_context(IngestContext::new(tx, metrics))
        .map_err(|e| format!("cannot create the Kafka consumer: {e}"))?;
    consumer
        .subscribe(&args.inbound_topics())
        .map_err(|e| format!("cannot subscribe: {e}"))?;
    Ok((consumer, rx))
}

/// The idempotent producer for dead letters (and `replay-dlq`).
pub(crate) fn producer(args: &KafkaArgs) -> Result<FutureProducer, String> {
    args.client_config(&[
        ("enable.idempotence", "true".into()),
        ("acks", "all".into()),
        ("linger.ms", "5".into()),
        ("compression.type", "lz4".into()),
    ])?
    .create()
    .map_err(|e| format!("cannot create the Kafka producer: {e}"))
}

/// A partition, by role, and the offset it ends at.
pub(crate) type PartitionEnd = ((Topic, i32), i64);

/// The end offsets of `partitions` (each with its role), asked of the broker
/// all at once (each is a round trip), each within `timeout`. Blocking: run
/// it off the async tasks.
pub(crate) fn partition_ends(
    producer: &FutureProducer,
    partitions: &[(Topic, String, i32)],
    timeout: Duration,
) -> Result<Vec<PartitionEnd>, KafkaError> {
    std::thread::scope(|scope| {
        let asked: Vec<_> = partitions
            .iter()
            .map(|(role, topic, partition)| {
                scope.spawn(move || {
                    let (_, end) = producer
                        .client()
                        .fetch_watermarks(topic, *partition, timeout)?;
                    Ok(((*role, *partition), end))
                })
            })
            .collect();
        asked
            .into_iter()
            .map(|question| question.join().unwrap_or(Err(KafkaError::Canceled)))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::statistics::{Partition, Topic};

    fn statistics(partitions: &[(&str, i32, i64)]) -> Statistics {
        let mut statistics = Statistics::default();
        for &(topic, partition, consumer_lag) in partitions {
            statistics
                .topics
                .entry(topic.to_owned())
                .or_insert_with(|| Topic {
                    topic: topic.to_owned(),
                    ..Topic::default()
                })
                .partitions
                .insert(
                    partition,
                    Partition {
                        partition,
                        consumer_lag,
                        ..Partition::default()
                    },
                );
        }
        statistics
    }

    fn lag_lines(metrics: &Metrics) -> Vec<String> {
        metrics
            .render()
            .lines()
            .filter(|l| l.starts_with("usage_ingest_consumer_lag_messages{"))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn the_lag_of_owned_partitions_only_is_reported_and_dropped_on_revoke() {
        let metrics = Metrics::new().expect("metrics");
        let (tx, _rx) = mpsc::unbounded_channel();
        let context = IngestContext::new(tx, metrics.clone());
        context.assigned(&[("a".into(), 0), ("a".into(), 1), ("b".into(), 0)]);
        context.stats(statistics(&[
            ("a", 0, 5),
            ("a", 1, -1), // unknown: no committed offset yet
            ("a", 2, 7),  // another instance's partition
            ("a", -1, 3), // librdkafka's internal partition
            ("b", 0, 0),
            ("c", 0, 9), // not subscribed here
        ]));
        assert_eq!(
            lag_lines(&metrics),
            [
                r#"usage_ingest_consumer_lag_messages{partition="0",topic="a"} 5"#,
                r#"usage_ingest_consumer_lag_messages{partition="0",topic="b"} 0"#,
            ]
        );
        context.revoked(&[("a".into(), 0)]);
        context.stats(statistics(&[("a", 0, 4), ("b", 0, 2)]));
        assert_eq!(
            lag_lines(&metrics),
            [r#"usage_ingest_consumer_lag_messages{partition="0",topic="b"} 2"#]
        );
    }
}
