//! The local broker and ClickHouse (`scripts/services up`), and scratch
//! resources on them: every test gets topics and a database of its own, so
//! tests run in parallel without seeing each other. The harness helpers
//! themselves (processes, ports, topic admin, metrics) are `usage-testkit`'s;
//! this module binds them to the local services and panics where a test
//! cannot go on.

use rdkafka::config::ClientConfig;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use usage_store::Warehouse;
use usage_testkit::binaries::{self, Profile};
use usage_testkit::clickhouse;
use usage_testkit::ingest::IngestRun;
use usage_testkit::metrics::Metrics;
use usage_testkit::services::Services;
pub use usage_testkit::topics::Topics;

/// The local services (or those `USAGE_KAFKA_BROKERS` and `USAGE_CLICKHOUSE_URL` name).
pub fn local() -> Services {
    Services::from_env()
}

/// The local broker's `bootstrap.servers`.
pub fn brokers() -> String {
    local().brokers
}

/// The local ClickHouse's HTTP URL.
pub fn clickhouse_url() -> String {
    local().clickhouse_url
}

/// A name no other test (or earlier run) uses.
pub fn unique(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{tag}_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates fresh topics named after `tag`, `partitions` partitions each.
pub async fn scratch_topics(tag: &str, partitions: i32) -> Topics {
    let topics = Topics::named(&unique(tag));
    topics
        .create(&brokers(), partitions)
        .await
        .expect("the broker answers (scripts/services up) and creates the topics");
    topics
}

/// Deletes a test's topics (best effort).
pub async fn drop_topics(topics: &Topics) {
    let _ = topics.delete(&brokers()).await;
}

/// Creates a fresh topic named after `tag`; its name.
pub async fn create_topic(tag: &str, partitions: i32) -> String {
    let name = unique(tag);
    usage_testkit::topics::create_topics(&brokers(), &[&name], partitions)
        .await
        .expect("the broker answers (scripts/services up) and creates the topic");
    name
}

/// A consumer of `topic` from its start, in a group of its own.
pub fn reader(topic: &str) -> rdkafka::consumer::StreamConsumer {
    use rdkafka::consumer::Consumer;
    let consumer: rdkafka::consumer::StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique("reader"))
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    consumer
}

/// Reads `expected` messages (or what arrives within `timeout` of the last
/// one) from the start of `topic`: (key, payload).
pub async fn read_topic(topic: &str, expected: usize, timeout: Duration) -> Vec<(String, Vec<u8>)> {
    use rdkafka::Message;
    let consumer = reader(topic);
    let mut out = Vec::new();
    while out.len() < expected {
        let Ok(message) = tokio::time::timeout(timeout, consumer.recv()).await else {
            break;
        };
        let message = message.expect("message");
        out.push((
            String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
            message.payload().unwrap_or_default().to_vec(),
        ));
    }
    out
}

/// Publishes messages in order, each acknowledged, through one producer
/// (for a test that spaces its messages in time).
pub struct Publisher {
    producer: rdkafka::producer::FutureProducer,
}

impl Publisher {
    pub fn new() -> Publisher {
        Publisher {
            producer: ClientConfig::new()
                .set("bootstrap.servers", brokers())
                .set("enable.idempotence", "true")
                .create()
                .expect("producer"),
        }
    }

    /// Publishes `payload` to `topic` under `key` and waits for the acknowledgement.
    pub async fn send(&self, topic: &str, key: &str, payload: impl AsRef<[u8]>) {
        self.producer
            .send(
                rdkafka::producer::FutureRecord::to(topic)
                    .key(key)
                    .payload(payload.as_ref()),
                Duration::from_secs(10),
            )
            .await
            .expect("published");
    }
}

impl Default for Publisher {
    fn default() -> Publisher {
        Publisher::new()
    }
}

/// Publishes `(topic, key, payload)` messages in order, each acknowledged.
pub async fn publish<P: AsRef<[u8]>>(messages: &[(&str, &str, P)]) {
    let publisher = Publisher::new();
    for (topic, key, payload) in messages {
        publisher.send(topic, key, payload).await;
    }
}

/// A database of one test, with the schema applied; dropped by [`ScratchDatabase::drop_database`].
pub struct ScratchDatabase {
    pub warehouse: Warehouse,
}

/// What the names of the local server's scratch databases start with.
const SCRATCH_PREFIX: &str = "test_";

impl ScratchDatabase {
    /// A database named `test_<tag>_...` with the schema applied. The first
    /// one a test process makes first drops the scratch databases of test
    /// processes gone (failed, killed, or a fixture's that outlived its
    /// binary): they would gather on the server run after run (on a server
    /// on loopback only, see [`clickhouse::sweep_databases`]).
    pub async fn create(tag: &str) -> ScratchDatabase {
        static SWEPT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
        SWEPT
            .get_or_init(|| async {
                if let Err(e) = clickhouse::sweep_databases(&clickhouse_url(), SCRATCH_PREFIX).await
                {
                    eprintln!("earlier tests' databases not swept: {e:#}");
                }
            })
            .await;
        let name = unique(&format!("{SCRATCH_PREFIX}{tag}"));
        let warehouse = clickhouse::create_database(&clickhouse_url(), &name)
            .await
            .expect("ClickHouse answers (scripts/services up) and the schema applies");
        ScratchDatabase { warehouse }
    }

    pub fn name(&self) -> &str {
        self.warehouse.database()
    }

    /// One number from a query.
    pub async fn count(&self, sql: &str) -> u64 {
        clickhouse::number(self.warehouse.client(), sql)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    pub async fn drop_database(&self) {
        let _ = clickhouse::drop_database(&self.warehouse).await;
    }
}

/// The path of a binary of the workspace, built if needed (`cargo build`).
pub fn binary(package: &str, name: &str) -> PathBuf {
    binaries::build(package, name, Profile::Debug).unwrap_or_else(|e| panic!("{e:#}"))
}

/// A running `usage-ingest run`, killed when dropped.
pub struct Ingest {
    ingest: usage_testkit::ingest::Ingest,
}

impl Ingest {
    /// Starts `usage-ingest run` on the given topics and database, with the
    /// `extra` options.
    pub fn start(topics: &Topics, database: &str, group: &str, extra: &[&str]) -> Ingest {
        Ingest::start_on(&local(), topics, database, group, extra)
    }

    /// [`Ingest::start`] on other services (the cluster's, see [`crate::cluster`]).
    pub fn start_on(
        services: &Services,
        topics: &Topics,
        database: &str,
        group: &str,
        extra: &[&str],
    ) -> Ingest {
        let log = std::env::temp_dir().join(format!("{}.log", unique("ingest")));
        let ingest = IngestRun::new(
            binary("usage-ingest", "usage-ingest"),
            services,
            database,
            topics,
            group,
        )
        .args(extra)
        .env("RUST_LOG", "info,usage_ingest=debug")
        .spawn(&log)
        .unwrap_or_else(|e| panic!("usage-ingest starts: {e:#}"));
        Ingest { ingest }
    }

    pub fn pid(&self) -> u32 {
        self.ingest.pid()
    }

    /// Sends a signal (`TERM`, `KILL`, ...).
    pub fn signal(&self, signal: &str) {
        let _ = self.ingest.process.signal(signal);
    }

    /// Waits for the process to exit; its exit code (-1 for a signal), or None on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        self.ingest
            .process
            .wait_exit(timeout)
            .map(|status| status.code().unwrap_or(-1))
    }

    /// Its whole log.
    pub fn log(&self) -> String {
        self.ingest.process.log_text()
    }

    /// The last lines of its log (for assertion messages).
    pub fn log_tail(&self) -> String {
        self.ingest.process.log_tail(40)
    }

    /// Its metrics now (empty when it does not answer).
    pub async fn metrics(&self) -> Metrics {
        self.ingest.metrics().await.unwrap_or_default()
    }

    /// `/readyz`: its status code and body (None when it does not answer).
    pub async fn readyz(&self) -> Option<(u16, String)> {
        let response = usage_testkit::metrics::http_client()
            .get(format!(
                "http://127.0.0.1:{}/readyz",
                self.ingest.metrics_port
            ))
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.unwrap_or_default()))
    }
}

/// Polls `check` until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
