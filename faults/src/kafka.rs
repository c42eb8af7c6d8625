//! Kafka helpers of the suite: the dead-letter topic read back from its
//! start, and a group's committed offsets (topics are created and deleted
//! with `usage_testkit::topics`).

use anyhow::{Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

/// Partitions of every topic the suite creates.
pub(crate) const PARTITIONS: i32 = 4;

/// What the dead-letter topic holds.
#[derive(Debug, Clone, Default)]
pub(crate) struct DeadLetters {
    /// Messages read (copies included).
    pub(crate) messages: u64,
    /// Distinct source positions (topic, partition, offset) by `usage.reason`:
    /// a batch dead-lettered again after a kill or by a replay is the same letter.
    pub(crate) by_reason: BTreeMap<String, u64>,
    /// Every distinct letter: its reason, the hash of its payload and, for a
    /// letter usage-ingest cut to the broker's size limit, the size of the
    /// original (header `usage.payload_truncated_from`).
    pub(crate) payloads: Vec<(String, u64, Option<usize>)>,
    /// Source positions dead-lettered with two different reasons.
    pub(crate) inconsistent: u64,
}

/// A hash of a payload (to compare dead letters with what was published).
pub(crate) fn payload_hash(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// Reads the dead-letter topic from its start to its end (every partition
/// at its end and nothing new for a moment, or no message for 3 s).
/// Blocking: call it from `spawn_blocking`.
pub(crate) fn read_dead_letters(brokers: &str, topic: &str) -> Result<DeadLetters> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("usage-faults-dlq-reader-{}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .set("fetch.message.max.bytes", "16777216")
        .set("receive.message.max.bytes", "100000000")
        .create()
        .context("creating the dead-letter reader")?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .context("assigning")?;
    }
    consumer.assign(&assignment).context("assigning")?;
    let mut out = DeadLetters::default();
    let mut reasons: HashMap<(String, String, String), String> = HashMap::new();
    let mut at_end: HashSet<i32> = HashSet::new();
    let started = Instant::now();
    let mut last_message = Instant::now();
    loop {
        let idle = last_message.elapsed();
        if (at_end.len() as i32 >= PARTITIONS && idle >= Duration::from_millis(700))
            || idle >= Duration::from_secs(3)
            || started.elapsed() >= Duration::from_secs(120)
        {
            break;
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                at_end.insert(partition);
            }
            Some(Err(error)) => return Err(error).context("reading the dead-letter topic"),
            Some(Ok(message)) => {
                last_message = Instant::now();
                at_end.remove(&message.partition());
                out.messages += 1;
                let header = |name: &str| -> String {
                    message
                        .headers()
                        .and_then(|h| {
                            h.iter()
                                .find(|h| h.key == name)
                                .and_then(|h| h.value)
                                .map(|v| String::from_utf8_lossy(v).into_owned())
                        })
                        .unwrap_or_default()
                };
                let reason = header("usage.reason");
                let source = (
                    header("usage.source_topic"),
                    header("usage.source_partition"),
                    header("usage.source_offset"),
                );
                match reasons.get(&source) {
                    Some(known) if *known != reason => out.inconsistent += 1,
                    Some(_) => {}
                    None => {
                        *out.by_reason.entry(reason.clone()).or_default() += 1;
                        let hash = payload_hash(message.payload().unwrap_or_default());
                        let truncated_from = header("usage.payload_truncated_from").parse().ok();
                        out.payloads.push((reason.clone(), hash, truncated_from));
                        reasons.insert(source, reason);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The offsets `group` has committed on `topics` (partition → offset; absent:
/// none). Blocking: call it from `spawn_blocking`.
pub(crate) fn committed(
    brokers: &str,
    group: &str,
    topics: &[String],
) -> Result<BTreeMap<(String, i32), i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .context("creating the offset reader")?;
    let mut list = TopicPartitionList::new();
    for topic in topics {
        for partition in 0..PARTITIONS {
            list.add_partition(topic, partition);
        }
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .context("fetching committed offsets")?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some(((e.topic().to_owned(), e.partition()), o)),
            _ => None,
        })
        .collect())
}
