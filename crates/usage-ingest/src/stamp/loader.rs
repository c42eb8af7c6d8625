//! Step 2 of stamping, the only one with I/O: reading from ClickHouse what
//! a batch's authorizations need into the enrichment state (`state.rs`) —
//! assignments and rates other instances wrote, the Flex windows that may
//! cover the batch's events, a pair's older windows for an out-of-order
//! event, the histories of the users the state does not hold — and the
//! rates at start-up.
//!
//! Every read is retried with backoff until ClickHouse answers (an outage
//! slows the pipeline down, it does not stop it), counted in
//! `usage_ingest_clickhouse_errors_total{operation="read"}` when it fails.
//! Between two attempts the caller's [`Wait`] runs (the pipeline keeps the
//! consumer polled, every partition paused); a read is given up on (an
//! error) only once the process is told to abandon its work.

use super::{Pending, StampError};
use crate::metrics::{Metrics, Request};
use crate::retry::{retry_with, RetryPolicy, Sleep, UnlessStopped, Wait};
use crate::state::cache::CacheReport;
use crate::state::Enrichment;
use chrono::{DateTime, Utc};
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use usage_core::charge::ChargeConfig;
use usage_core::event::Access;
use usage_core::FastMap;
use usage_store::schema::{ASSIGNMENT_EVENTS, FLEX_WINDOWS, PRODUCT_RATES};
use usage_store::{migrate, StoreError, Warehouse};

/// The tables read (the `table` label of a failed read in the metrics).
pub(crate) const READ_TABLES: [&str; 4] = [
    SCHEMA_MIGRATIONS,
    ASSIGNMENT_EVENTS.name,
    PRODUCT_RATES.name,
    FLEX_WINDOWS.name,
];

const SCHEMA_MIGRATIONS: &str = "schema_migrations";

/// Reads enrichment state from ClickHouse.
pub(crate) struct Loader {
    warehouse: Warehouse,
    retry: RetryPolicy,
    /// How often assignments and rates written by other instances are read
    /// again while authorizations are held back.
    follow_interval: Duration,
    last_follow: Instant,
    /// Turns true when the process abandons its work (drain timeout).
    stop: watch::Receiver<bool>,
    metrics: Metrics,
}

impl Loader {
    pub(crate) fn new(
        warehouse: Warehouse,
        retry: RetryPolicy,
        follow_interval: Duration,
        stop: watch::Receiver<bool>,
        metrics: Metrics,
    ) -> Loader {
        Loader {
            warehouse,
            retry,
            follow_interval,
            last_follow: Instant::now(),
            stop,
            metrics,
        }
    }

    /// At start-up: the rates, and the point from which to follow the
    /// assignment events (no history: a user's is read when a batch needs
    /// it), waiting for ClickHouse as long as it takes. `budget`: the bytes
    /// the state may take (`None`: unbounded).
    pub(crate) async fn initial(
        &mut self,
        charge_config: ChargeConfig,
        budget: Option<usize>,
    ) -> Enrichment {
        let mut enrichment = Enrichment::bounded(charge_config, budget);
        let warehouse = &self.warehouse;
        // (A sleep never gives up: both reads succeed.)
        let table = ASSIGNMENT_EVENTS.name;
        let what = "the newest assignment event";
        let _ = self
            .read(what, table, &mut Sleep, &mut enrichment, |e| async move {
                let read = e.follow_from_now(warehouse).await;
                (e, read)
            })
            .await;
        let table = PRODUCT_RATES.name;
        let _ = self
            .read(
                "the rates",
                table,
                &mut Sleep,
                &mut enrichment,
                |e| async move {
                    let read = e.reload_rates(warehouse).await;
                    (e, read)
                },
            )
            .await;
        self.last_follow = Instant::now();
        enrichment
    }

    /// After an assignment: the assignments and rates other members may have
    /// stored meanwhile, one attempt each (a failure is the caller's to log;
    /// held-back authorizations read them again, retried).
    pub(crate) async fn refresh(&mut self, enrichment: &mut Enrichment) -> Result<(), StoreError> {
        let follow = enrichment.follow_assignments(&self.warehouse);
        self.once(ASSIGNMENT_EVENTS.name, follow).await?;
        let rates = enrichment.reload_rates(&self.warehouse);
        self.once(PRODUCT_RATES.name, rates).await?;
        self.last_follow = Instant::now();
        Ok(())
    }

    /// What `queue` needs before it is stamped, and `touched` (the users
    /// whose current assignments the batch writes): when `following` (some
    /// of the queue was held back) and `--follow-interval-ms` has passed, the
    /// assignments and rates other instances wrote; the stored assignment
    /// history of every user the state does not hold (one query for all of
    /// them); and the Flex windows that may cover its events: per (user,
    /// product), every stored window from 24 hours before its earliest event.
    pub(crate) async fn load<'a>(
        &mut self,
        enrichment: &mut Enrichment,
        queue: &'a [Pending],
        touched: impl Iterator<Item = &'a str>,
        following: bool,
        waiter: &mut impl Wait,
    ) -> Result<(), StampError> {
        let started = Instant::now();
        let warehouse = &self.warehouse;
        let mut wait = UnlessStopped {
            stop: &self.stop,
            inner: waiter,
        };
        if following && self.last_follow.elapsed() >= self.follow_interval {
            let table = ASSIGNMENT_EVENTS.name;
            self.read(
                "assignments",
                table,
                &mut wait,
                &mut *enrichment,
                |e| async move {
                    let read = e.follow_assignments(warehouse).await;
                    (e, read)
                },
            )
            .await?;
            let table = PRODUCT_RATES.name;
            self.read(
                "rates",
                table,
                &mut wait,
                &mut *enrichment,
                |e| async move {
                    let read = e.reload_rates(warehouse).await;
                    (e, read)
                },
            )
            .await?;
            self.last_follow = Instant::now();
        }

        let stamped = queue.iter().map(Pending::auth).filter(|a| a.online);
        let users = stamped.map(|a| a.user_id).chain(touched);
        let missing = enrichment.users_to_read(users);
        if !missing.is_empty() {
            let missing = &missing;
            let table = ASSIGNMENT_EVENTS.name;
            self.read(
                "assignment histories",
                table,
                &mut wait,
                &mut *enrichment,
                |e| async move {
                    let read = e.read_histories(warehouse, missing).await;
                    (e, read)
                },
            )
            .await?;
        }

        let mut first_use: FastMap<(&str, &str), DateTime<Utc>> = FastMap::default();
        for a in queue
            .iter()
            .map(Pending::auth)
            .filter(|a| a.online && a.access == Access::Flex)
        {
            let e = first_use
                .entry((a.user_id, a.product))
                .or_insert(a.occurred_at);
            *e = (*e).min(a.occurred_at);
        }
        let keys: Vec<(&str, &str, DateTime<Utc>)> =
            first_use.into_iter().map(|((u, p), t)| (u, p, t)).collect();
        let keys = &keys;
        let table = FLEX_WINDOWS.name;
        self.read(
            "Flex windows",
            table,
            &mut wait,
            enrichment,
            |e| async move {
                let read = e.load_windows(warehouse, keys).await;
                (e, read)
            },
        )
        .await?;
        self.metrics.state_loaded(started.elapsed());
        Ok(())
    }

    /// The state's cache after a batch, into the metrics.
    pub(crate) fn report(&self, cache: &CacheReport, unwritten_batches: usize) {
        self.metrics.state_cache(cache, unwritten_batches);
    }

    /// The stored windows of (user, product) from before `at`: an
    /// out-of-order event older than what the state holds.
    pub(crate) async fn older_windows(
        &mut self,
        enrichment: &mut Enrichment,
        user: &str,
        product: &str,
        at: DateTime<Utc>,
        waiter: &mut impl Wait,
    ) -> Result<(), StampError> {
        let warehouse = &self.warehouse;
        let mut wait = UnlessStopped {
            stop: &self.stop,
            inner: waiter,
        };
        let table = FLEX_WINDOWS.name;
        self.read(
            "older Flex windows",
            table,
            &mut wait,
            enrichment,
            |e| async move {
                let read = e.reload_windows(warehouse, user, product, at).await;
                (e, read)
            },
        )
        .await?;
        Ok(())
    }

    /// Reads `what` from `table`, retried ([`read_retried`]).
    async fn read<S, T, Fut>(
        &self,
        what: &str,
        table: &str,
        wait: &mut impl Wait,
        state: S,
        read: impl FnMut(S) -> Fut,
    ) -> Result<T, StoreError>
    where
        Fut: Future<Output = (S, Result<T, StoreError>)>,
    {
        read_retried(self.retry, &self.metrics, what, table, wait, state, read).await
    }

    /// One attempt to read from `table`, its failure counted.
    async fn once<T>(
        &self,
        table: &str,
        read: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let result = read.await;
        if result.is_err() {
            self.metrics.clickhouse_error(Request::Read, table);
        }
        result
    }
}

/// At start-up: the version of the database's schema (`None`: no migration
/// applied), waiting for ClickHouse as long as it takes.
pub(crate) async fn schema_version(
    warehouse: &Warehouse,
    retry: RetryPolicy,
    metrics: &Metrics,
) -> Option<u32> {
    let what = "the schema version";
    let version = read_retried(
        retry,
        metrics,
        what,
        SCHEMA_MIGRATIONS,
        &mut Sleep,
        warehouse,
        |warehouse| async move { (warehouse, migrate::schema_version(warehouse).await) },
    )
    .await;
    // (A sleep never gives up.)
    version.ok().flatten()
}

/// Reads `what` from `table` (into `state`, lent to one attempt at a time),
/// retried until it succeeds or `wait` gives up; each failure counted and
/// logged.
async fn read_retried<S, T, Fut>(
    retry: RetryPolicy,
    metrics: &Metrics,
    what: &str,
    table: &str,
    wait: &mut impl Wait,
    state: S,
    mut read: impl FnMut(S) -> Fut,
) -> Result<T, StoreError>
where
    Fut: Future<Output = (S, Result<T, StoreError>)>,
{
    retry_with(
        retry,
        wait,
        state,
        |state, _| read(state),
        |error, attempt, delay| {
            metrics.clickhouse_error(Request::Read, table);
            tracing::warn!(
                %error,
                attempt,
                retry_in_ms = delay.as_millis() as u64,
                "reading {what} from ClickHouse failed; retrying"
            );
        },
    )
    .await
}
