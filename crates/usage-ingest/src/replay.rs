//! `usage-ingest replay-dlq`: re-publishes replayable dead letters — those
//! that failed for want of data the pipeline had not seen yet (an unresolved
//! team, an unknown Flex rate) or too early (a future timestamp, accepted
//! once its time has come) — to the topic they came from, with their
//! original key and bytes. Other dead letters are left alone: the same bytes
//! would fail the same way.

use crate::dlq::header;
use crate::kafka::KafkaArgs;
use anyhow::Context;
use rdkafka::{
    config::ClientConfig,
    consumer::{CommitMode, Consumer, StreamConsumer},
    message::Headers,
    producer::FutureRecord,
    Message,
};
use std::collections::BTreeMap;
use std::time::Duration;
use usage_core::validate::Reason;

#[derive(Debug, clap::Args)]
pub(crate) struct ReplayArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Consumer group of the replayer (its committed offsets remember what was replayed).
    #[arg(
        long,
        env = "USAGE_REPLAY_GROUP_ID",
        default_value = "usage-ingest-replay-dlq"
    )]
    replay_group_id: String,
    /// Reasons to replay (default: every replayable reason: unresolved_team, unknown_rate,
    /// future_timestamp).
    #[arg(long = "reason", value_delimiter = ',')]
    reasons: Vec<String>,
    /// Stop after this long without a new dead letter.
    #[arg(long, env = "USAGE_REPLAY_IDLE_SECS", default_value_t = 10)]
    idle_secs: u64,
}

fn header_value<'a, M: Message>(message: &'a M, name: &str) -> Option<&'a str> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

pub(crate) async fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let wanted: Vec<String> = if args.reasons.is_empty() {
        Reason::ALL
            .iter()
            .filter(|r| r.is_replayable())
            .map(|r| r.as_str().to_owned())
            .collect()
    } else {
        for r in &args.reasons {
            r.parse::<Reason>()
                .map_err(|e| anyhow::anyhow!("--reason {r}: {e}"))?;
        }
        args.reasons.clone()
    };
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.kafka.kafka_brokers)
        .set("group.id", &args.replay_group_id)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "session.timeout.ms",
            args.kafka.session_timeout_ms.to_string(),
        )
        .set(
            "heartbeat.interval.ms",
            args.kafka.heartbeat_interval_ms.to_string(),
        );
    let consumer: StreamConsumer = config.create().context("creating the consumer")?;
    consumer
        .subscribe(&[args.kafka.dlq_topic.as_str()])
        .context("subscribing to the dead-letter topic")?;
    let producer = crate::kafka::producer(&args.kafka).map_err(anyhow::Error::msg)?;

    let mut replayed: BTreeMap<String, u64> = BTreeMap::new();
    let mut skipped: BTreeMap<String, u64> = BTreeMap::new();
    let idle = Duration::from_secs(args.idle_secs.max(1));
    // The first message can take a group join; allow for it.
    let mut wait = idle.max(Duration::from_secs(30));
    while let Ok(received) = tokio::time::timeout(wait, consumer.recv()).await {
        wait = idle;
        let message = received.context("reading the dead-letter topic")?;
        let reason = header_value(&message, header::REASON)
            .unwrap_or("")
            .to_owned();
        let source = header_value(&message, header::SOURCE_TOPIC).map(str::to_owned);
        // A truncated letter is not the message: re-publishing it would
        // publish something nobody sent.
        let truncated = header_value(&message, header::PAYLOAD_TRUNCATED_FROM).is_some();
        match source {
            Some(topic) if wanted.contains(&reason) && !truncated => {
                let mut record = FutureRecord::<[u8], [u8]>::to(&topic)
                    .payload(message.payload().unwrap_or_default());
                if let Some(key) = message.key() {
                    record = record.key(key);
                }
                producer
                    .send(record, Duration::from_secs(60))
                    .await
                    .map_err(|(e, _)| e)
                    .with_context(|| format!("re-publishing to {topic}"))?;
                *replayed.entry(reason).or_default() += 1;
            }
            _ => *skipped.entry(reason).or_default() += 1,
        }
        consumer
            .commit_message(&message, CommitMode::Async)
            .context("committing the replay position")?;
    }
    consumer.commit_consumer_state(CommitMode::Sync).ok();
    println!(
        "replay-dlq: replayed {} {:?}, left {} {:?}",
        replayed.values().sum::<u64>(),
        replayed,
        skipped.values().sum::<u64>(),
        skipped
    );
    Ok(())
}
