//! Prometheus metrics of `usage-ingest` (namespace `usage_ingest`), updated
//! once per batch, never per event, and the HTTP endpoints that expose them:
//! `/metrics`, `/healthz` (the process runs) and `/readyz` (it consumes and
//! its last insert succeeded).

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get, Router};
use prometheus::{
    exponential_buckets, Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

const NAMESPACE: &str = "usage_ingest";

/// What a ClickHouse request does (the `operation` label of
/// `usage_ingest_clickhouse_errors_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request {
    /// An insert of a batch's rows.
    Insert,
    /// A read: enrichment state (assignments, rates, Flex windows), or the
    /// schema version at start-up.
    Read,
}

impl Request {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Request::Insert => "insert",
            Request::Read => "read",
        }
    }
}

/// Every metric of the process. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Metrics(Arc<Inner>);

struct Inner {
    registry: Registry,
    events_consumed: IntCounterVec,
    events_offline: IntCounterVec,
    rows_inserted: IntCounterVec,
    batch_rows: HistogramVec,
    batch_bytes: HistogramVec,
    insert_seconds: HistogramVec,
    dead_letters: IntCounterVec,
    insert_retries: IntCounterVec,
    clickhouse_errors: IntCounterVec,
    ambiguous_teams: IntCounterVec,
    paused_partitions: IntGauge,
    assigned_partitions: IntGaugeVec,
    pending_events: IntGauge,
    consumer_lag: IntGaugeVec,
    freshness_seconds: HistogramVec,
    late_flex_windows: IntCounterVec,
    state: crate::state::metrics::StateMetrics,
    ready: AtomicBool,
    healthy_inserts: AtomicBool,
    /// Why the last ClickHouse request failed, for `/readyz` (cleared by a
    /// successful insert).
    clickhouse_failure: std::sync::Mutex<Option<String>>,
}

/// The longest reason `/readyz` quotes from a ClickHouse error.
const MAX_REASON_CHARS: usize = 400;

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace(NAMESPACE)
}

fn hopts(name: &str, help: &str, buckets: Vec<f64>) -> HistogramOpts {
    HistogramOpts::new(name, help)
        .namespace(NAMESPACE)
        .buckets(buckets)
}

impl Metrics {
    pub(crate) fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(opts(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let histogram = |name: &str,
                         help: &str,
                         labels: &[&str],
                         buckets: Vec<f64>|
         -> Result<HistogramVec, prometheus::Error> {
            let h = HistogramVec::new(hopts(name, help, buckets), labels)?;
            registry.register(Box::new(h.clone()))?;
            Ok(h)
        };
        let events_consumed = counter(
            "events_consumed_total",
            "Kafka messages consumed, by topic.",
            &["topic"],
        )?;
        let events_offline = counter(
            "events_offline_total",
            "Authorizations not reported because they were offline (rule 1).",
            &["topic"],
        )?;
        let rows_inserted = counter(
            "rows_inserted_total",
            "Rows inserted into ClickHouse, by table.",
            &["table"],
        )?;
        let batch_rows = histogram(
            "batch_rows",
            "Rows per insert, by table.",
            &["table"],
            exponential_buckets(1.0, 4.0, 11)?,
        )?;
        let batch_bytes = histogram(
            "batch_bytes",
            "Uncompressed RowBinary bytes per insert, by table.",
            &["table"],
            exponential_buckets(256.0, 4.0, 12)?,
        )?;
        let insert_seconds = histogram(
            "batch_insert_seconds",
            "Latency of successful inserts, by table.",
            &["table"],
            exponential_buckets(0.001, 2.0, 16)?,
        )?;
        let dead_letters = counter(
            "dead_letters_total",
            "Messages sent to the dead-letter topic, by source topic and reason.",
            &["topic", "reason"],
        )?;
        let insert_retries = counter(
            "insert_retries_total",
            "Inserts retried after a failure (the identical rows again), by table.",
            &["table"],
        )?;
        let clickhouse_errors = counter(
            "clickhouse_errors_total",
            "Failed ClickHouse requests, by operation (insert, or read of enrichment state and \
             of the schema version) and table.",
            &["operation", "table"],
        )?;
        let ambiguous_teams = counter(
            "ambiguous_teams_total",
            "Authorizations stamped with one of several teams holding the product at that \
             instant (the most recently assigned).",
            &["topic"],
        )?;
        let late_flex_windows = counter(
            "late_flex_windows_total",
            "Flex windows opened by out-of-order authorizations.",
            &["topic"],
        )?;
        let freshness_seconds = histogram(
            "freshness_seconds",
            "End-to-end freshness at insert: now - occurred_at of the oldest event of each batch.",
            &["topic"],
            exponential_buckets(0.05, 2.0, 20)?,
        )?;
        let paused_partitions = IntGauge::with_opts(opts(
            "paused_partitions",
            "Partitions paused: writes or reads of ClickHouse lag, or usage waits for reference data.",
        ))?;
        registry.register(Box::new(paused_partitions.clone()))?;
        let assigned_partitions = IntGaugeVec::new(
            opts(
                "assigned_partitions",
                "Partitions assigned to this instance, by topic.",
            ),
            &["topic"],
        )?;
        registry.register(Box::new(assigned_partitions.clone()))?;
        let pending_events = IntGauge::with_opts(opts(
            "pending_events",
            "Authorizations held back, waiting for the assignment that explains them.",
        ))?;
        registry.register(Box::new(pending_events.clone()))?;
        let consumer_lag = IntGaugeVec::new(
            opts(
                "consumer_lag_messages",
                "Messages between the committed offset and the high watermark of each partition \
                 this instance owns, from librdkafka statistics (--kafka-stats-interval-ms).",
            ),
            &["topic", "partition"],
        )?;
        registry.register(Box::new(consumer_lag.clone()))?;
        let state = crate::state::metrics::StateMetrics::new(&registry)?;
        Ok(Metrics(Arc::new(Inner {
            registry,
            events_consumed,
            events_offline,
            rows_inserted,
            batch_rows,
            batch_bytes,
            insert_seconds,
            dead_letters,
            insert_retries,
            clickhouse_errors,
            ambiguous_teams,
            paused_partitions,
            assigned_partitions,
            pending_events,
            consumer_lag,
            freshness_seconds,
            late_flex_windows,
            state,
            ready: AtomicBool::new(false),
            healthy_inserts: AtomicBool::new(true),
            clickhouse_failure: std::sync::Mutex::new(None),
        })))
    }

    /// Pre-creates the labelled series so dashboards see zeros, not gaps:
    /// per inbound topic (`authorizations`: the authorizations topic), per
    /// table written, per table read, per dead-letter reason.
    pub(crate) fn register_labels(
        &self,
        topics: &[&str],
        authorizations: &str,
        written: &[&str],
        read: &[&str],
        reasons: &[&str],
    ) {
        for topic in topics {
            self.0.events_consumed.with_label_values(&[topic]);
            for reason in reasons {
                self.0.dead_letters.with_label_values(&[topic, reason]);
            }
        }
        self.0.ambiguous_teams.with_label_values(&[authorizations]);
        for table in written {
            self.0.rows_inserted.with_label_values(&[table]);
            self.0.insert_retries.with_label_values(&[table]);
            self.0
                .clickhouse_errors
                .with_label_values(&[Request::Insert.as_str(), table]);
        }
        for table in read {
            self.0
                .clickhouse_errors
                .with_label_values(&[Request::Read.as_str(), table]);
        }
    }

    /// The enrichment state's byte budget (`None`: unbounded).
    pub(crate) fn state_budget(&self, bytes: Option<usize>) {
        self.0.state.budget(bytes);
    }

    /// The enrichment state's cache after a batch.
    pub(crate) fn state_cache(&self, report: &crate::state::cache::CacheReport, unwritten: usize) {
        self.0.state.cache(report, unwritten);
    }

    /// A batch's reads of enrichment state took `took`.
    pub(crate) fn state_loaded(&self, took: Duration) {
        self.0.state.loaded(took);
    }

    pub(crate) fn consumed(&self, topic: &str, n: u64) {
        self.0.events_consumed.with_label_values(&[topic]).inc_by(n);
    }

    pub(crate) fn offline(&self, topic: &str, n: u64) {
        if n > 0 {
            self.0.events_offline.with_label_values(&[topic]).inc_by(n);
        }
    }

    pub(crate) fn dead_lettered(&self, topic: &str, reason: &str, n: u64) {
        self.0
            .dead_letters
            .with_label_values(&[topic, reason])
            .inc_by(n);
    }

    pub(crate) fn late_windows(&self, topic: &str, n: u64) {
        if n > 0 {
            self.0
                .late_flex_windows
                .with_label_values(&[topic])
                .inc_by(n);
        }
    }

    pub(crate) fn observe_insert(&self, table: &str, rows: usize, bytes: usize, took: Duration) {
        self.0
            .rows_inserted
            .with_label_values(&[table])
            .inc_by(rows as u64);
        self.0
            .batch_rows
            .with_label_values(&[table])
            .observe(rows as f64);
        self.0
            .batch_bytes
            .with_label_values(&[table])
            .observe(bytes as f64);
        self.0
            .insert_seconds
            .with_label_values(&[table])
            .observe(took.as_secs_f64());
        self.0.healthy_inserts.store(true, Ordering::Relaxed);
        *self.failure() = None;
    }

    fn failure(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        // A panic while holding it leaves a reason or none: both are fine.
        self.0
            .clickhouse_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A failed insert into `table`, with ClickHouse's reason (a replicated
    /// table read-only while ZooKeeper is away, a shard with no live
    /// replica, ...), which `/readyz` reports until an insert succeeds.
    pub(crate) fn insert_failed(&self, table: &str, error: &dyn std::fmt::Display) {
        self.clickhouse_error(Request::Insert, table);
        let reason: String = format!("inserts into {table} fail: {error}")
            .chars()
            .take(MAX_REASON_CHARS)
            .collect();
        *self.failure() = Some(reason);
    }

    /// A failed ClickHouse request: an insert into `table`, or a read of
    /// it. Not ready until an insert succeeds.
    pub(crate) fn clickhouse_error(&self, request: Request, table: &str) {
        self.0
            .clickhouse_errors
            .with_label_values(&[request.as_str(), table])
            .inc();
        self.0.healthy_inserts.store(false, Ordering::Relaxed);
        *self.failure() = Some(format!(
            "a ClickHouse {} of {table} failed",
            request.as_str()
        ));
    }

    /// An insert into `table` made again after it failed.
    pub(crate) fn insert_retried(&self, table: &str) {
        self.0.insert_retries.with_label_values(&[table]).inc();
    }

    pub(crate) fn ambiguous_teams(&self, topic: &str, n: u64) {
        if n > 0 {
            self.0.ambiguous_teams.with_label_values(&[topic]).inc_by(n);
        }
    }

    pub(crate) fn freshness(&self, topic: &str, seconds: f64) {
        self.0
            .freshness_seconds
            .with_label_values(&[topic])
            .observe(seconds.max(0.0));
    }

    pub(crate) fn set_paused(&self, partitions: usize) {
        self.0.paused_partitions.set(partitions as i64);
    }

    pub(crate) fn set_assigned(&self, topic: &str, partitions: usize) {
        self.0
            .assigned_partitions
            .with_label_values(&[topic])
            .set(partitions as i64);
    }

    pub(crate) fn set_pending(&self, events: usize) {
        self.0.pending_events.set(events as i64);
    }

    /// The lag of one owned partition, from the Kafka client's statistics.
    pub(crate) fn set_consumer_lag(&self, topic: &str, partition: i32, messages: i64) {
        let partition = partition.to_string();
        self.0
            .consumer_lag
            .with_label_values(&[topic, partition.as_str()])
            .set(messages);
    }

    /// Drops the lag series of a partition this instance no longer owns (its
    /// new owner reports it).
    pub(crate) fn forget_consumer_lag(&self, topic: &str, partition: i32) {
        let partition = partition.to_string();
        // Err only when the series never existed: nothing to drop.
        let _ = self
            .0
            .consumer_lag
            .remove_label_values(&[topic, partition.as_str()]);
    }

    pub(crate) fn set_ready(&self, ready: bool) {
        self.0.ready.store(ready, Ordering::Relaxed);
    }

    /// Ready, or why not.
    fn readiness(&self) -> Result<(), String> {
        if !self.0.ready.load(Ordering::Relaxed) {
            return Err("not consuming: starting up or shutting down".into());
        }
        if !self.0.healthy_inserts.load(Ordering::Relaxed) {
            let reason = self.failure().clone();
            return Err(reason.unwrap_or_else(|| "a ClickHouse request failed".into()));
        }
        Ok(())
    }

    /// The text exposition of every metric.
    pub(crate) fn render(&self) -> String {
        let mut out = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(error) = encoder.encode(&self.0.registry.gather(), &mut out) {
            tracing::error!(%error, "cannot encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

async fn metrics(State(m): State<Metrics>) -> impl IntoResponse {
    ([("content-type", "text/plain; version=0.0.4")], m.render())
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// 200 `ready`, or 503 `not ready: <why>` (the last ClickHouse failure).
async fn readyz(State(m): State<Metrics>) -> (StatusCode, String) {
    match m.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n".into()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", why.replace('\n', " ")),
        ),
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until the process ends.
pub(crate) async fn serve(addr: SocketAddr, metrics: Metrics) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(self::metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(metrics);
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "metrics server stopped");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(metrics: &Metrics, name: &str) -> Vec<String> {
        metrics
            .render()
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn failed_requests_and_retried_inserts_are_distinct_series() {
        let metrics = Metrics::new().expect("metrics");
        metrics.register_labels(&["auth"], "auth", &["daily_usage"], &["flex_windows"], &[]);
        // Zeros from the start, for the dashboards.
        assert_eq!(
            series(&metrics, "usage_ingest_clickhouse_errors_total"),
            [
                r#"usage_ingest_clickhouse_errors_total{operation="insert",table="daily_usage"} 0"#,
                r#"usage_ingest_clickhouse_errors_total{operation="read",table="flex_windows"} 0"#,
            ]
        );
        assert_eq!(
            series(&metrics, "usage_ingest_ambiguous_teams_total"),
            [r#"usage_ingest_ambiguous_teams_total{topic="auth"} 0"#]
        );
        // A failed read is an error, not an insert retry.
        metrics.clickhouse_error(Request::Read, "flex_windows");
        metrics.clickhouse_error(Request::Insert, "daily_usage");
        metrics.insert_retried("daily_usage");
        metrics.ambiguous_teams("auth", 2);
        assert_eq!(
            series(&metrics, "usage_ingest_clickhouse_errors_total"),
            [
                r#"usage_ingest_clickhouse_errors_total{operation="insert",table="daily_usage"} 1"#,
                r#"usage_ingest_clickhouse_errors_total{operation="read",table="flex_windows"} 1"#,
            ]
        );
        assert_eq!(
            series(&metrics, "usage_ingest_insert_retries_total"),
            [r#"usage_ingest_insert_retries_total{table="daily_usage"} 1"#]
        );
        assert_eq!(
            series(&metrics, "usage_ingest_ambiguous_teams_total"),
            [r#"usage_ingest_ambiguous_teams_total{topic="auth"} 2"#]
        );
        // Not ready until an insert succeeds.
        metrics.set_ready(true);
        assert!(metrics.readiness().is_err());
        metrics.insert_failed("authorizations", &"Table is in readonly mode");
        assert_eq!(
            metrics.readiness(),
            Err("inserts into authorizations fail: Table is in readonly mode".to_owned()),
            "/readyz says why"
        );
        metrics.observe_insert("daily_usage", 1, 10, Duration::from_millis(1));
        assert!(metrics.readiness().is_ok());
    }
}
