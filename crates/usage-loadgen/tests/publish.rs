//! Publishes a tiny scenario to the real local broker (USAGE_KAFKA_BROKERS,
//! default 127.0.0.1:9092; `scripts/services up`) on a topic of its own, and
//! reads it back: every message arrives with its key, and each key's
//! messages keep their order.
//!
//! The local broker (tansu) reports wrong watermarks, so the test counts the
//! messages it expects instead of trusting end offsets.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message as _;
use usage_loadgen::{publish, Message, PublishConfig, Scenario, ScenarioConfig, Topics};

fn brokers() -> String {
    std::env::var("USAGE_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

type Keyed = BTreeMap<Vec<u8>, Vec<Vec<u8>>>;

fn by_key<'a>(items: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> Keyed {
    let mut map: Keyed = BTreeMap::new();
    for (key, payload) in items {
        map.entry(key.to_vec()).or_default().push(payload.to_vec());
    }
    map
}

async fn consume_all(
    brokers: &str,
    topic: &str,
    expected: usize,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>, String> {
    let group = format!("{topic}-reader");
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", &group)
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| e.to_string())?;
    consumer.subscribe(&[topic]).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut got = Vec::with_capacity(expected);
    // Read until every expected message is in, then a little longer to
    // catch extras.
    let mut settle_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let until = settle_until.unwrap_or(deadline).min(deadline);
        if now >= until {
            break;
        }
        match tokio::time::timeout(until - now, consumer.recv()).await {
            Ok(Ok(m)) => {
                let key = m.key().unwrap_or_default().to_vec();
                let payload = m.payload().unwrap_or_default().to_vec();
                got.push((key, payload));
                if got.len() >= expected && settle_until.is_none() {
                    settle_until = Some(Instant::now() + Duration::from_millis(1500));
                }
            }
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => break,
        }
    }
    Ok(got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_every_message_with_its_key_in_key_order() {
    let brokers = brokers();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let topic = format!("loadgen-test-{}-{nanos}", std::process::id());

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("admin client");
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(15)));
    let created = admin
        .create_topics(
            &[NewTopic::new(&topic, 4, TopicReplication::Fixed(1))],
            &options,
        )
        .await
        .expect("the local broker answers (scripts/services up)");
    for result in created {
        result.expect("topic created");
    }

    let end = DateTime::parse_from_rfc3339("2026-05-15T12:00:00Z")
        .expect("valid")
        .with_timezone(&Utc);
    let config = ScenarioConfig {
        seed: 11,
        users: 15,
        teams: 3,
        days: 6,
        end,
        duplicate_share: 0.05,
        late_share: 0.1,
        poison_share: 0.02,
        ..ScenarioConfig::default()
    };
    let scenario = Scenario::generate(&config).expect("valid config");
    let messages: Vec<Message> = scenario.messages().collect();
    let publish_config = PublishConfig {
        topics: Topics::all_on(&topic),
        ..PublishConfig::new(brokers.clone())
    };
    let mut calls = 0;
    let report = publish(
        &publish_config,
        messages.clone(),
        Some(messages.len() as u64),
        |_| calls += 1,
    )
    .await;

    let consumed = match &report {
        Ok(_) => consume_all(&brokers, &topic, messages.len()).await,
        Err(e) => Err(e.to_string()),
    };
    // Clean up before asserting.
    let deleted = admin.delete_topics(&[&topic], &options).await;

    let report = report.expect("published");
    assert_eq!(report.messages, messages.len() as u64);
    assert_eq!(
        report.by_topic.get(&topic).copied(),
        Some(messages.len() as u64)
    );
    assert!(calls >= 1, "progress was reported");
    let consumed = consumed.expect("consumed");
    assert_eq!(
        consumed.len(),
        messages.len(),
        "every message arrives exactly once"
    );
    let want = by_key(
        messages
            .iter()
            .map(|m| (m.key.as_bytes(), m.payload.as_slice())),
    );
    let got = by_key(consumed.iter().map(|(k, p)| (k.as_slice(), p.as_slice())));
    assert_eq!(want.len(), got.len(), "same keys");
    for (key, payloads) in &want {
        assert!(
            got.get(key) == Some(payloads),
            "key {} out of order or incomplete",
            String::from_utf8_lossy(key)
        );
    }
    if let Ok(results) = deleted {
        for r in results {
            r.expect("topic deleted");
        }
    }
}
