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
}

impl Sink {
    pub(crate) fn new(client: Client, retry: RetryPolicy, metrics: Metrics) -> Sink {
        Sink {
            client,
            retry,
            metrics,
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
        insert.send(rows.data.clone()).await?;
        insert.end().await
    }
}
