//! The ClickHouse sink: one `INSERT ... FORMAT RowBinary` per table and batch,
//! retried with the identical bytes, exponential backoff and jitter
//! (`retry.rs`), until it succeeds or the process is told to stop. Nothing here drops data: a batch
//! is either in ClickHouse or still owned by the caller, whose offsets are
//! not committed.

use crate::metrics::Metrics;
use crate::retry::{retry, RetryPolicy, SleepUnlessStopped};
use bytes::Bytes;
use clickhouse::Client;
use std::time::Instant;
use tokio::sync::watch;
use usage_store::schema::TableDef;

/// How the inserts are sent.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "ClickHouse inserts")]
pub(crate) struct InsertArgs {
    /// Compression of the inserts' bodies: lz4 (less to send over a
    /// network), or none (less CPU on both sides when ClickHouse is on the
    /// same machine).
    #[arg(
        long,
        env = "USAGE_CLICKHOUSE_COMPRESSION",
        value_enum,
        default_value_t = InsertCompression::Lz4
    )]
    pub(crate) clickhouse_compression: InsertCompression,
    /// A ClickHouse setting sent with every insert, `name=value`,
    /// repeatable (e.g. log_queries=1: each insert's CPU in system.query_log).
    #[arg(
        long = "clickhouse-insert-setting",
        env = "USAGE_CLICKHOUSE_INSERT_SETTINGS",
        value_delimiter = ','
    )]
    pub(crate) clickhouse_insert_settings: Vec<String>,
}

/// Compression of the inserts' bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum InsertCompression {
    Lz4,
    None,
}

impl InsertArgs {
    /// The settings as (name, value) pairs; an entry without `=` is an error.
    pub(crate) fn settings(&self) -> Result<Vec<(String, String)>, String> {
        self.clickhouse_insert_settings
            .iter()
            .map(|s| {
                s.split_once('=')
                    .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                    .filter(|(k, _)| !k.is_empty())
                    .ok_or_else(|| format!("--clickhouse-insert-setting {s:?} is not name=value"))
            })
            .collect()
    }

    pub(crate) fn compression(&self) -> clickhouse::Compression {
        match self.clickhouse_compression {
            InsertCompression::Lz4 => clickhouse::Compression::Lz4,
            InsertCompression::None => clickhouse::Compression::None,
        }
    }
}

/// Rows of one table, encoded once, in the order of its definition's columns.
#[derive(Debug, Clone)]
pub(crate) struct TableRows {
    pub(crate) table: TableDef,
    pub(crate) rows: usize,
    pub(crate) data: Bytes,
}

/// The process is stopping: the write was abandoned (its offsets stay uncommitted).
#[derive(Debug, thiserror::Error)]
#[error("stopped while retrying an insert into {table}")]
pub(crate) struct Abandoned {
    pub(crate) table: &'static str,
}

#[derive(Clone)]
pub(crate) struct Sink {
    client: Client,
    retry: RetryPolicy,
    metrics: Metrics,
    /// ClickHouse settings sent with every insert.
    settings: Vec<(String, String)>,
}

impl Sink {
    pub(crate) fn new(
        client: Client,
        retry: RetryPolicy,
        metrics: Metrics,
        settings: Vec<(String, String)>,
    ) -> Sink {
        Sink {
            client,
            retry,
            metrics,
            settings,
        }
    }

    /// Writes every table's rows, the tables concurrently, each retried until
    /// it is in ClickHouse. Returns early only when `stop` turns true. (The
    /// order between tables does not matter: the batch's offsets are
    /// committed only once all of them are in, and every row is idempotent.)
    pub(crate) async fn write_all(
        &self,
        tables: &[TableRows],
        stop: &watch::Receiver<bool>,
    ) -> Result<(), Abandoned> {
        let writes = tables.iter().filter(|r| r.rows > 0).map(|rows| {
            let mut stop = stop.clone();
            async move { self.write(rows, &mut stop).await }
        });
        for result in futures::future::join_all(writes).await {
            result?;
        }
        Ok(())
    }

    async fn write(
        &self,
        rows: &TableRows,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), Abandoned> {
        let table = rows.table.name;
        retry(
            self.retry,
            &mut SleepUnlessStopped(stop),
            |attempt| async move {
                if attempt > 1 {
                    self.metrics.insert_retried(table);
                }
                let started = Instant::now();
                self.insert_once(rows).await?;
                self.metrics
                    .observe_insert(table, rows.rows, rows.data.len(), started.elapsed());
                Ok(())
            },
            |error: &clickhouse::error::Error, attempt, delay| {
                self.metrics.insert_failed(table, error);
                tracing::warn!(
                    table,
                    rows = rows.rows,
                    attempt,
                    retry_in_ms = delay.as_millis() as u64,
                    error = %error,
                    "insert failed; retrying the identical batch"
                );
            },
        )
        .await
        .map_err(|_| Abandoned { table })
    }

    async fn insert_once(&self, rows: &TableRows) -> Result<(), clickhouse::error::Error> {
        let sql = format!(
            "INSERT INTO {} ({}) FORMAT RowBinary",
            rows.table.name,
            rows.table.column_list()
        );
        let mut insert = self.client.insert_formatted_with(sql);
        for (name, value) in &self.settings {
            insert = insert.with_setting(name, value);
        }
        insert.send(rows.data.clone()).await?;
        insert.end().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(settings: &[&str]) -> InsertArgs {
        InsertArgs {
            clickhouse_compression: InsertCompression::Lz4,
            clickhouse_insert_settings: settings.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn insert_settings_are_name_value_pairs() {
        assert_eq!(
            args(&["log_queries=1", " max_threads = 2 "]).settings(),
            Ok(vec![
                ("log_queries".to_owned(), "1".to_owned()),
                ("max_threads".to_owned(), "2".to_owned())
            ])
        );
        assert!(args(&["log_queries"]).settings().is_err());
        assert!(args(&["=1"]).settings().is_err());
    }
}
