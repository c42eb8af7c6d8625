//! The usage report: rows and tiles, from the rollups, for one admin.
//!
//! ClickHouse aggregates one line per (current team, user, product, access)
//! ([`RowsQuery`](crate::queries::RowsQuery)); the rules are applied here by
//! the domain core — status ([`usage_core::status::status`]), the
//! Subscriptions tile ([`usage_core::status::subscription_tile`]), the
//! monthly average, PII hashing ([`usage_core::privacy`]) and team merges
//! ([`usage_core::merge::TeamMerges`]) — so the API, the exports and the
//! schedules share one definition of each.
//!
//! A request reads top to bottom through the modules:
//!
//! - `state`: what a filter set's report is computed from (directory,
//!   scope, aggregates, hashing), shared by the page's requests for those
//!   filters through `cache`, a single-flight cache bounded by age
//!   (`--report-cache-secs`), entries and bytes, whose entries live on
//!   while `version` sees the tables unchanged;
//! - `scope`: the directory (merges, team privacy) and who a request
//!   covers: the team (or all the admin's teams) and the stored teams in
//!   their history; whether identities are hashed (rule 7); the teams an
//!   admin can pick;
//! - `table`: a filter set's lines, compact (integers, strings interned
//!   in sorted lists): the aggregates joined, each line's status;
//! - `rows`: a request's lines: the status, group and search filters,
//!   the order, the lines shown filled in, and a line as JSON shows it;
//! - `order`: the sort order, a page of the users table, every row for
//!   exports (in chunks, to an export's writer);
//! - `overview`: the tiles and the daily chart;
//! - `occasional`: the occasional seat users tile and what their days would
//!   have cost on Flex;
//! - `raw`: the raw day-by-day seat and window-by-window token exports;
//! - `unassign`: the assignment an unassign request is about.

mod cache;
mod occasional;
mod order;
mod overview;
mod raw;
mod rows;
mod scope;
mod state;
mod table;
mod unassign;
mod version;

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use clickhouse::Client;
use usage_core::event::Access;
use usage_core::frequency::FrequentDaysPerMonth;
use usage_core::privacy::UserHasher;
use usage_core::range::DateRange;
use usage_store::schema::StoredEnum;

use crate::error::ApiError;
use crate::model::{Daily, RangeDates};
use cache::{Cache, Observed, DEFAULT_BYTES, DEFAULT_ENTRIES};
use state::{ReportState, StateKey, StateSizes};
use version::Versions;

pub use cache::CacheLookup;
pub use order::REPORT_CHUNK;
pub use raw::{SeatUsageDay, TokenUsageDay, RAW_CHUNK};
pub use scope::TeamInfo;
pub use unassign::HeldAssignment;

/// Reads the report from ClickHouse.
#[derive(Clone)]
pub struct Reporter {
    client: Client,
    hasher: UserHasher,
    /// Filter sets' states computed at once, weighed: a state being built
    /// is the service's largest transient memory (ClickHouse, not this
    /// service, bounds how fast they go). See [`STATE_PERMITS`].
    computing: Arc<tokio::sync::Semaphore>,
    /// Each filter set's state, briefly (none by default).
    states: Arc<Cache<StateKey, ReportState>>,
    /// What a state of each shape held last (the room made for the next).
    sizes: Arc<StateSizes>,
    /// Each filter set's daily chart, as briefly.
    charts: Arc<Cache<StateKey, Daily>>,
    /// The tables' version, when cached entries may live on while it is
    /// unchanged (one server).
    versions: Option<Arc<Versions>>,
    /// Told of every cache lookup (metrics).
    on_lookup: Option<Arc<dyn Fn(CacheLookup) + Send + Sync>>,
    /// The usage classes' threshold (rule 11).
    frequent_at: FrequentDaysPerMonth,
}

/// States computed at once; the others wait their turn. A state of one
/// team takes one permit; a state of all of an admin's teams, the largest
/// a customer has (at 150,000 users its build peaks near 50 MB), takes
/// them all: it is built alone. Room for a state is made in the cache
/// before it is built (at the size of the last state of its shape), so the
/// service's memory is the cache's bound plus what a build holds beyond
/// its state's size, however many admins ask at once.
const STATE_PERMITS: u32 = 2;

fn warehouse(e: clickhouse::error::Error) -> ApiError {
    ApiError::unavailable("ClickHouse", &e)
}

fn day(days: u16) -> NaiveDate {
    NaiveDate::default() + chrono::TimeDelta::days(i64::from(days))
}

/// An access read as `toString(access)`: a label usage-store's definition
/// does not know is an error, not a default.
fn access_of(label: &str) -> Result<Access, ApiError> {
    Access::from_label(label).map_err(|e| ApiError::internal(&e))
}

impl Reporter {
    /// A reporter computing every request (no cache).
    pub fn new(client: Client, hasher: UserHasher) -> Reporter {
        Reporter {
            client,
            hasher,
            computing: Arc::new(tokio::sync::Semaphore::new(STATE_PERMITS as usize)),
            states: Arc::new(Cache::new(Duration::ZERO, DEFAULT_ENTRIES, DEFAULT_BYTES)),
            sizes: Arc::default(),
            charts: Arc::new(Cache::new(Duration::ZERO, DEFAULT_ENTRIES, DEFAULT_BYTES)),
            versions: None,
            on_lookup: None,
            frequent_at: FrequentDaysPerMonth::DEFAULT,
        }
    }

    /// Classes a line used on at least `frequent_at` days a month on
    /// average as frequent, below it as occasional (rule 11; 5 by default).
    pub fn with_frequent_days_per_month(mut self, frequent_at: FrequentDaysPerMonth) -> Reporter {
        self.frequent_at = frequent_at;
        self
    }

    /// Reuses a filter set's report (the state of its lines and its daily
    /// chart) for `freshness` after its computation starts: data visible in
    /// the tables shows in every report requested more than `freshness`
    /// later. Zero: every request computes its own. The states hold at most
    /// `bytes` (the charts, a few bytes a day, their own default bound).
    /// `on_lookup` is told of
    /// every lookup, hit or miss.
    pub fn with_cache(
        mut self,
        freshness: Duration,
        bytes: usize,
        on_lookup: impl Fn(CacheLookup) + Send + Sync + 'static,
    ) -> Reporter {
        self.states = Arc::new(Cache::new(freshness, DEFAULT_ENTRIES, bytes));
        self.charts = Arc::new(Cache::new(freshness, DEFAULT_ENTRIES, DEFAULT_BYTES));
        self.on_lookup = Some(Arc::new(on_lookup));
        self
    }

    /// Lets a cached report live on past `freshness` while the database's
    /// tables are unchanged (their parts, read from `system.parts`): for
    /// one server, not a cluster, whose nodes each hold their own parts.
    pub fn with_unchanged_data_reuse(mut self) -> Reporter {
        self.versions = Some(Arc::default());
        self
    }

    /// What a cache lookup now observes of the tables, if anything.
    async fn observed(&self) -> Option<Observed> {
        match &self.versions {
            Some(versions) => versions.observe(&self.client).await,
            None => None,
        }
    }

    /// The ClickHouse client (for the readiness probe).
    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// The date range of a report, as JSON shows it.
pub fn range_dates(range: &DateRange) -> RangeDates {
    RangeDates {
        from: range.from(),
        to: range.to(),
    }
}
