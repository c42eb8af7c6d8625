//! Where the broker and ClickHouse a harness talks to are.

/// The Kafka-protocol broker and the ClickHouse server of a harness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Services {
    /// `bootstrap.servers` of the broker (`127.0.0.1:9092`).
    pub brokers: String,
    /// ClickHouse's HTTP URL (`http://127.0.0.1:8123`).
    pub clickhouse_url: String,
}

impl Services {
    /// The local services (`scripts/services up`), or those named by
    /// `USAGE_KAFKA_BROKERS` and `USAGE_CLICKHOUSE_URL`.
    pub fn from_env() -> Services {
        Services {
            brokers: std::env::var("USAGE_KAFKA_BROKERS")
                .unwrap_or_else(|_| "127.0.0.1:9092".into()),
            clickhouse_url: std::env::var("USAGE_CLICKHOUSE_URL")
                .unwrap_or_else(|_| "http://127.0.0.1:8123".into()),
        }
    }
}
