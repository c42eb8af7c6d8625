//! The ClickHouse sink: one `INSERT ... FORMAT RowBinary` per table and batch,
//! retried with the identical bytes, exponential backoff and jitter, until it
//! succeeds or the process is told to stop. Nothing here drops data: a batch
//! is either in ClickHouse or still owned by the caller, whose offsets are
//! not committed.

use crate::metrics::Metrics;
use bytes::Bytes;
use clickhouse::Client;
use rand::Rng;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A destination table and its column list, in the order rows are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Table {
    pub(crate) name: &'static str,
    pub(crate) columns: &'static str,
}

/// Rows of one table, encoded once.
#[derive(Debug, Clone)]
pub(crate) struct TableRows {
    pub(crate) table: Table,
    pub(crate) rows: usize,
    pub(crate) data: Bytes,
}

/// How failed inserts are retried.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    pub(crate) initial: Duration,
    pub(crate) max: Duration,
}

impl RetryPolicy {
    /// The delay before retry number `attempt` (1-based): exponential, capped, with full jitter
    /// over its upper half so that instances restarting together do not retry in lockstep.
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .initial
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let capped = exp.min(self.max);
        let half = capped / 2;
        half + half.mul_f64(rand::rng().random::<f64>())
    }
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
        let mut attempt = 0u32;
        loop {
            let started = Instant::now();
            match self.insert_once(rows).await {
                Ok(()) => {
                    self.metrics.observe_insert(
                        rows.table.name,
                        rows.rows,
                        rows.data.len(),
                        started.elapsed(),
                    );
                    return Ok(());
                }
                Err(error) => {
                    attempt += 1;
                    let delay = self.retry.delay(attempt);
                    self.metrics.clickhouse_error(rows.table.name);
                    tracing::warn!(
                        table = rows.table.name,
                        rows = rows.rows,
                        attempt,
                        retry_in_ms = delay.as_millis() as u64,
                        error = %error,
                        "insert failed; retrying the identical batch"
                    );
                    if *stop.borrow() {
                        return Err(Abandoned {
                            table: rows.table.name,
                        });
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.wait_for(|s| *s) => {
                            return Err(Abandoned { table: rows.table.name });
                        }
                    }
                }
            }
        }
    }

    async fn insert_once(&self, rows: &TableRows) -> Result<(), clickhouse::error::Error> {
        let sql = format!(
            "INSERT INTO {} ({}) FORMAT RowBinary",
            rows.table.name, rows.table.columns
        );
        let mut insert = self.client.insert_formatted_with(sql);
        insert.send(rows.data.clone()).await?;
        insert.end().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let policy = RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
        };
        for attempt in 1..30 {
            let d = policy.delay(attempt);
            let ceiling = (Duration::from_millis(100) * 2u32.pow((attempt - 1).min(16)))
                .min(Duration::from_secs(5));
            assert!(d <= ceiling && d >= ceiling / 2, "attempt {attempt}: {d:?}");
        }
    }
}
