//! The local broker and ClickHouse (`scripts/services up`), and scratch
//! resources on them: every test gets topics and a database of its own, so
//! tests run in parallel without seeing each other.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use usage_store::{migrate, Warehouse, WarehouseSettings};

pub fn brokers() -> String {
    std::env::var("USAGE_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub fn clickhouse_url() -> String {
    std::env::var("USAGE_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".into())
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

/// The three inbound topics and the dead-letter topic of one test.
#[derive(Debug, Clone)]
pub struct Topics {
    pub authorizations: String,
    pub assignments: String,
    pub directory: String,
    pub dlq: String,
}

impl Topics {
    pub fn all(&self) -> [&str; 4] {
        [
            &self.authorizations,
            &self.assignments,
            &self.directory,
            &self.dlq,
        ]
    }

    /// Creates fresh topics with `partitions` partitions each.
    pub async fn create(tag: &str, partitions: i32) -> Topics {
        let base = unique(tag);
        let topics = Topics {
            authorizations: format!("{base}.authorizations"),
            assignments: format!("{base}.assignments"),
            directory: format!("{base}.directory"),
            dlq: format!("{base}.dlq"),
        };
        let admin = admin();
        let new: Vec<NewTopic<'_>> = topics
            .all()
            .iter()
            .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
            .collect();
        let results = admin
            .create_topics(&new, &AdminOptions::new())
            .await
            .expect("the broker answers (scripts/services up)");
        for r in results {
            r.expect("topic created");
        }
        topics
    }

    /// Deletes the topics (best effort).
    pub async fn delete(&self) {
        let _ = admin()
            .delete_topics(&self.all(), &AdminOptions::new())
            .await;
    }
}

/// Creates a fresh topic named after `tag`; its name.
pub async fn create_topic(tag: &str, partitions: i32) -> String {
    let name = unique(tag);
    let results = admin()
        .create_topics(
            &[NewTopic::new(&name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("the broker answers (scripts/services up)");
    for r in results {
        r.expect("topic created");
    }
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

fn admin() -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("admin client")
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

impl ScratchDatabase {
    pub async fn create(tag: &str) -> ScratchDatabase {
        let warehouse = Warehouse::new(WarehouseSettings {
            url: clickhouse_url(),
            database: unique(tag),
            ..WarehouseSettings::default()
        })
        .expect("valid settings");
        let migrations = migrate::load_dir(&crate::repo_root().join("schemas/clickhouse"))
            .expect("migrations load");
        migrate::apply(&warehouse, &migrations)
            .await
            .expect("ClickHouse answers (scripts/services up) and the schema applies");
        ScratchDatabase { warehouse }
    }

    pub fn name(&self) -> &str {
        self.warehouse.database()
    }

    /// One number from a query.
    pub async fn count(&self, sql: &str) -> u64 {
        self.warehouse
            .client()
            .query(sql)
            .fetch_one::<u64>()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub async fn drop_database(&self) {
        let _ = self
            .warehouse
            .server_client()
            .query(&format!("DROP DATABASE IF EXISTS {}", self.name()))
            .execute()
            .await;
    }
}

/// The path of a binary of the workspace, built if needed (`cargo build`).
pub fn binary(package: &str, name: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-q", "-p", package, "--bin", name])
        .current_dir(crate::repo_root())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building {name}");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::repo_root().join("target"));
    target.join("debug").join(name)
}

/// A running `usage-ingest run`, killed when dropped.
pub struct Ingest {
    child: Child,
    pub metrics_port: u16,
    pub log: PathBuf,
}

impl Ingest {
    /// Starts `usage-ingest run` on the given topics and database.
    pub fn start(topics: &Topics, database: &str, group: &str, extra: &[&str]) -> Ingest {
        let bin = binary("usage-ingest", "usage-ingest");
        let metrics_port = free_port();
        let log = std::env::temp_dir().join(format!("{}.log", unique("ingest")));
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(bin)
            .arg("run")
            .args(["--kafka-brokers", &brokers()])
            .args(["--clickhouse-url", &clickhouse_url()])
            .args(["--clickhouse-database", database])
            .args(["--group-id", group])
            .args(["--authorizations-topic", &topics.authorizations])
            .args(["--assignments-topic", &topics.assignments])
            .args(["--directory-topic", &topics.directory])
            .args(["--dlq-topic", &topics.dlq])
            .args([
                "--session-timeout-ms",
                "6000",
                "--heartbeat-interval-ms",
                "500",
            ])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .args(extra)
            .env("RUST_LOG", "info,usage_ingest=debug")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("usage-ingest starts");
        Ingest {
            child,
            metrics_port,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`TERM`, `KILL`, ...) with `kill`.
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status();
    }

    /// Waits for the process to exit; its exit code, or None on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Its whole log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of its log (for assertion messages).
    pub fn log_tail(&self) -> String {
        tail(&self.log, 40)
    }

    /// The Prometheus text of its `/metrics`.
    pub fn metrics(&self) -> String {
        http_get(self.metrics_port, "/metrics").unwrap_or_default()
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A plain HTTP/1.0 GET on loopback.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
}

/// The value of a counter or gauge series in Prometheus text (summed over matching lines).
pub fn metric_value(metrics: &str, series_prefix: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(series_prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
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
