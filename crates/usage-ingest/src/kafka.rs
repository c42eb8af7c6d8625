//! Kafka clients: the group consumer of the three inbound topics, with its
//! rebalance notices, and the producer of dead letters.

use rdkafka::{
    config::ClientConfig,
    consumer::{Consumer, ConsumerContext, Rebalance, StreamConsumer},
    error::KafkaResult,
    producer::FutureProducer,
    ClientContext, TopicPartitionList,
};
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
/// and drops uncommitted work of revoked partitions.
pub(crate) struct IngestContext {
    notices: mpsc::UnboundedSender<PartitionNotice>,
}

impl ClientContext for IngestContext {}

impl ConsumerContext for IngestContext {
    fn pre_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            tracing::info!(partitions = tpl.count(), "partitions revoked");
            let _ = self.notices.send(PartitionNotice::Revoked(partitions(tpl)));
        }
    }

    fn post_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions assigned");
                let _ = self
                    .notices
                    .send(PartitionNotice::Assigned(partitions(tpl)));
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

/// A group consumer subscribed to the inbound topics; offsets are committed
/// by the pipeline only, after the rows they cover are in ClickHouse.
pub(crate) fn consumer(
    args: &KafkaArgs,
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
        ("queued.max.messages.kbytes", "16384".into()),
        // End-of-partition events: reference data is read to its end first.
        ("enable.partition.eof", "true".into()),
    ])?;
    let consumer: IngestConsumer = config
        .create_with_context(IngestContext { notices: tx })
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
