//! The schedules in ClickHouse (`report_schedules`, migration 0005): one
//! row per change, read back as the latest version of each schedule with
//! `argMax(col, version)`; a deleted schedule is a tombstone row. Only the
//! admin who made a schedule sees it.
//!
//! The table, its columns and the codes of its `Enum8` columns are
//! usage-store's definition (`usage_store::schema::REPORT_SCHEDULES`):
//! frequency, kind and format map to its enums here, both ways, and a stored
//! label this code does not know makes the schedule unreadable (an error),
//! never a default. Values are checked on the way in, not clamped.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, NaiveDate, Utc};
use clickhouse::Client;
use serde::{Deserialize, Serialize};
use usage_core::admin::{can_add_schedule, can_schedule, MAX_SCHEDULES_PER_ADMIN};
use usage_store::schema::{
    values, ScheduleFormat, ScheduleFrequency, ScheduleKind, StoredEnum, Unstorable,
    REPORT_SCHEDULES,
};

use super::calendar::is_due;
use super::{Frequency, RunLog, Schedule, ScheduleInput, LAST_START_DATE};
use crate::admins::Admin;
use crate::error::ApiError;
use crate::model::{ExportFormat, ExportKind, ReportParams};

/// The last version handed out in this process.
static LAST_VERSION: AtomicU64 = AtomicU64::new(0);

/// The version of a row written at `now`: microseconds since the epoch,
/// strictly increasing within the process (a clock before 1970 is an error).
fn next_version(now: DateTime<Utc>) -> Result<u64, Unstorable> {
    let now_us = values::micros("version", now)?;
    let mut prev = LAST_VERSION.load(Ordering::Relaxed);
    loop {
        let next = now_us.max(prev.saturating_add(1));
        match LAST_VERSION.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return Ok(next),
            Err(actual) => prev = actual,
        }
    }
}

/// A stored row; fields in table column order (`REPORT_SCHEDULES`; the
/// crate names the columns of the insert after them).
#[derive(Debug, Clone, clickhouse::Row, Serialize)]
struct ScheduleRow {
    schedule_id: String,
    owner_admin_id: String,
    name: String,
    /// Days since 1970-01-01.
    start_date: u16,
    frequency: i8,
    kind: i8,
    format: i8,
    filters: String,
    /// Seconds since the epoch.
    created_at: u32,
    updated_at: u32,
    /// Days since 1970-01-01; 0 = never.
    last_run_date: u16,
    deleted: u8,
    version: u64,
}

/// The latest version of a schedule, as read back (see [`SELECT`]).
#[derive(Debug, Clone, clickhouse::Row, Deserialize)]
struct StoredRow {
    schedule_id: String,
    owner_admin_id: String,
    name: String,
    start_date: u16,
    frequency: String,
    kind: String,
    format: String,
    filters: String,
    created_at: u32,
    updated_at: u32,
    last_run_date: u16,
}

/// The latest version of every schedule that is not deleted, in creation
/// order (the first version orders ties within a second). `{WHERE}` is
/// replaced by a fixed condition.
const SELECT: &str = "SELECT schedule_id, owner_admin_id, \
     argMax(name, version) AS s_name, \
     toUInt16(argMax(start_date, version)) AS s_start, \
     toString(argMax(frequency, version)) AS s_frequency, \
     toString(argMax(kind, version)) AS s_kind, \
     toString(argMax(format, version)) AS s_format, \
     argMax(filters, version) AS s_filters, \
     toUInt32(argMax(created_at, version)) AS s_created, \
     toUInt32(argMax(updated_at, version)) AS s_updated, \
     toUInt16(argMax(last_run_date, version)) AS s_last_run \
     FROM report_schedules {WHERE} \
     GROUP BY schedule_id, owner_admin_id \
     HAVING argMax(deleted, version) = 0 \
     ORDER BY s_created, min(version), schedule_id";

/// The store's read statement with each of its conditions, values written as
/// literals: for the compatibility check on a current ClickHouse.
pub fn statements_for_compatibility() -> Vec<String> {
    ["", "WHERE owner_admin_id = 'it\\'s'"]
        .iter()
        .map(|condition| SELECT.replace("{WHERE}", condition))
        .collect()
}

/// Why a stored row could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("stored schedule {schedule_id} is unreadable: {reason}")]
struct Unreadable {
    schedule_id: String,
    reason: String,
}

fn days(date: NaiveDate) -> Result<u16, ApiError> {
    values::date("start_date", date).map_err(|_| {
        ApiError::invalid(
            "start_date",
            format!("dates must be from 1970-01-01 to {LAST_START_DATE}"),
        )
    })
}

/// An instant as stored (whole seconds); one ClickHouse cannot store (a
/// clock before 1970 or after 2105) is an internal error.
fn seconds(column: &'static str, at: DateTime<Utc>) -> Result<u32, ApiError> {
    values::datetime(column, at).map_err(|e| ApiError::internal(&e))
}

/// `at` to the second, as stored.
fn truncate(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(at.timestamp(), 0).unwrap_or(at)
}

/// The stored kind of an export (`report_schedules.kind`).
fn stored_kind(kind: ExportKind) -> ScheduleKind {
    match kind {
        ExportKind::Report => ScheduleKind::Report,
        ExportKind::SeatUsage => ScheduleKind::SeatUsage,
        ExportKind::TokenUsage => ScheduleKind::TokenUsage,
    }
}

fn kind_of(stored: ScheduleKind) -> ExportKind {
    match stored {
        ScheduleKind::Report => ExportKind::Report,
        ScheduleKind::SeatUsage => ExportKind::SeatUsage,
        ScheduleKind::TokenUsage => ExportKind::TokenUsage,
    }
}

/// The stored format of an export (`report_schedules.format`).
fn stored_format(format: ExportFormat) -> ScheduleFormat {
    match format {
        ExportFormat::Csv => ScheduleFormat::Csv,
        ExportFormat::Xlsx => ScheduleFormat::Xlsx,
    }
}

fn format_of(stored: ScheduleFormat) -> ExportFormat {
    match stored {
        ScheduleFormat::Csv => ExportFormat::Csv,
        ScheduleFormat::Xlsx => ExportFormat::Xlsx,
    }
}

/// The stored frequency of a schedule (`report_schedules.frequency`).
fn stored_frequency(frequency: Frequency) -> ScheduleFrequency {
    match frequency {
        Frequency::Daily => ScheduleFrequency::Daily,
        Frequency::Weekly => ScheduleFrequency::Weekly,
        Frequency::Monthly => ScheduleFrequency::Monthly,
    }
}

fn frequency_of(stored: ScheduleFrequency) -> Frequency {
    match stored {
        ScheduleFrequency::Daily => Frequency::Daily,
        ScheduleFrequency::Weekly => Frequency::Weekly,
        ScheduleFrequency::Monthly => Frequency::Monthly,
    }
}

impl StoredRow {
    fn into_schedule(self) -> Result<Schedule, ApiError> {
        let bad = |reason: String| {
            ApiError::internal(&Unreadable {
                schedule_id: self.schedule_id.clone(),
                reason,
            })
        };
        let frequency = ScheduleFrequency::from_label(&self.frequency)
            .map(frequency_of)
            .map_err(|e| bad(e.to_string()))?;
        let kind = ScheduleKind::from_label(&self.kind)
            .map(kind_of)
            .map_err(|e| bad(e.to_string()))?;
        let format = ScheduleFormat::from_label(&self.format)
            .map(format_of)
            .map_err(|e| bad(e.to_string()))?;
        let filters: ReportParams =
            serde_json::from_str(&self.filters).map_err(|e| bad(format!("filters: {e}")))?;
        let schedule = Schedule {
            start_date: values::read_date(self.start_date),
            frequency,
            format,
            kind,
            filters,
            created_at: values::read_datetime(self.created_at),
            updated_at: values::read_datetime(self.updated_at),
            last_run_date: (self.last_run_date != 0).then(|| values::read_date(self.last_run_date)),
            next_run_date: values::EPOCH,
            last_error: None,
            name: self.name,
            schedule_id: self.schedule_id,
            owner_admin_id: self.owner_admin_id,
        };
        Ok(schedule.with_next_run())
    }
}

fn unavailable(e: &clickhouse::error::Error) -> ApiError {
    ApiError::unavailable("ClickHouse", e)
}

/// The schedules in ClickHouse (`report_schedules`), with the last error
/// of each failing one from its [`RunLog`] (when given one).
#[derive(Clone)]
pub struct ScheduleStore {
    client: Client,
    runs: Option<RunLog>,
}

impl std::fmt::Debug for ScheduleStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScheduleStore").finish_non_exhaustive()
    }
}

impl ScheduleStore {
    /// A store over `client` (bound to the pipeline's database).
    pub fn new(client: Client) -> ScheduleStore {
        ScheduleStore { client, runs: None }
    }

    /// The store, each schedule read with its last error from `runs`.
    pub fn with_runs(self, runs: RunLog) -> ScheduleStore {
        ScheduleStore {
            runs: Some(runs),
            ..self
        }
    }

    /// Where the last errors of failing schedules are kept, if anywhere.
    pub fn runs(&self) -> Option<&RunLog> {
        self.runs.as_ref()
    }

    async fn read(&self, condition: &str, params: &[&str]) -> Result<Vec<Schedule>, ApiError> {
        let mut query = self.client.query(&SELECT.replace("{WHERE}", condition));
        for param in params {
            query = query.bind(*param);
        }
        let mut schedules = query
            .fetch_all::<StoredRow>()
            .await
            .map_err(|e| unavailable(&e))?
            .into_iter()
            .map(StoredRow::into_schedule)
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(runs) = &self.runs {
            for schedule in &mut schedules {
                schedule.last_error = runs.last_error(&schedule.schedule_id).await;
            }
        }
        Ok(schedules)
    }

    async fn write(
        &self,
        schedule: &Schedule,
        deleted: bool,
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        let filters =
            serde_json::to_string(&schedule.filters).map_err(|e| ApiError::internal(&e))?;
        let row = ScheduleRow {
            schedule_id: schedule.schedule_id.clone(),
            owner_admin_id: schedule.owner_admin_id.clone(),
            name: schedule.name.clone(),
            start_date: days(schedule.start_date)?,
            frequency: stored_frequency(schedule.frequency).code(),
            kind: stored_kind(schedule.kind).code(),
            format: stored_format(schedule.format).code(),
            filters,
            created_at: seconds("created_at", schedule.created_at)?,
            updated_at: seconds("updated_at", schedule.updated_at)?,
            last_run_date: schedule.last_run_date.map(days).transpose()?.unwrap_or(0),
            deleted: u8::from(deleted),
            version: next_version(now).map_err(|e| ApiError::internal(&e))?,
        };
        let mut insert = self
            .client
            .insert::<ScheduleRow>(REPORT_SCHEDULES.name)
            .await
            .map_err(|e| unavailable(&e))?;
        insert.write(&row).await.map_err(|e| unavailable(&e))?;
        insert.end().await.map_err(|e| unavailable(&e))
    }

    /// The schedules of `owner`, oldest first.
    pub async fn list(&self, owner: &str) -> Result<Vec<Schedule>, ApiError> {
        self.read("WHERE owner_admin_id = ?", &[owner]).await
    }

    /// The schedule `id` if `owner` made it (another admin's schedule is
    /// `None`, as is a deleted one).
    pub async fn get(&self, owner: &str, id: &str) -> Result<Option<Schedule>, ApiError> {
        Ok(self
            .read("WHERE owner_admin_id = ? AND schedule_id = ?", &[owner, id])
            .await?
            .into_iter()
            .next())
    }

    /// Adds a schedule for `admin`: refused (403) unless the admin is a
    /// primary, secondary or SSO admin, when the input is not valid (400),
    /// when its `team` filter names a team the admin does not administer
    /// (403), and when the admin already has [`MAX_SCHEDULES_PER_ADMIN`]
    /// (409).
    ///
    /// Two creates racing past the count (two instances) are settled after
    /// the write: the ones beyond the limit in creation order are deleted
    /// again and refused.
    pub async fn create(
        &self,
        admin: &Admin,
        input: ScheduleInput,
        now: DateTime<Utc>,
    ) -> Result<Schedule, ApiError> {
        if !can_schedule(admin.role.admin_role()) {
            return Err(ApiError::forbidden(
                "only primary, secondary and SSO admins can schedule reports",
            ));
        }
        input.validate(now)?;
        input.check_teams(admin, now)?;
        if !can_add_schedule(self.list(&admin.id).await?.len()) {
            return Err(ApiError::schedule_limit(MAX_SCHEDULES_PER_ADMIN));
        }
        let at = truncate(now);
        let schedule = Schedule {
            schedule_id: uuid::Uuid::new_v4().to_string(),
            owner_admin_id: admin.id.clone(),
            name: input.name.trim().to_owned(),
            start_date: input.start_date,
            frequency: input.frequency,
            format: input.format,
            kind: input.kind,
            filters: input.filters,
            created_at: at,
            updated_at: at,
            last_run_date: None,
            next_run_date: input.start_date,
            last_error: None,
        }
        .with_next_run();
        self.write(&schedule, false, now).await?;
        let position = self
            .list(&admin.id)
            .await?
            .iter()
            .position(|s| s.schedule_id == schedule.schedule_id);
        if position.is_some_and(|p| p >= MAX_SCHEDULES_PER_ADMIN) {
            self.write(&schedule, true, now).await?;
            return Err(ApiError::schedule_limit(MAX_SCHEDULES_PER_ADMIN));
        }
        Ok(schedule)
    }

    /// Replaces the schedule `id` of `admin` with `input`; `None` when the
    /// admin has no such schedule. Keeps its creation time and its last run,
    /// unless the start date or the frequency changed: then it has not run
    /// yet (its next run is the new start date). An unchanged start date may
    /// have passed; a `team` filter must name a team the admin administers
    /// (403).
    pub async fn update(
        &self,
        admin: &Admin,
        id: &str,
        input: ScheduleInput,
        now: DateTime<Utc>,
    ) -> Result<Option<Schedule>, ApiError> {
        let Some(current) = self.get(&admin.id, id).await? else {
            return Ok(None);
        };
        input.validate_update(current.start_date, now)?;
        input.check_teams(admin, now)?;
        let rescheduled =
            input.start_date != current.start_date || input.frequency != current.frequency;
        let schedule = Schedule {
            name: input.name.trim().to_owned(),
            start_date: input.start_date,
            frequency: input.frequency,
            format: input.format,
            kind: input.kind,
            filters: input.filters,
            updated_at: truncate(now),
            last_run_date: if rescheduled {
                None
            } else {
                current.last_run_date
            },
            ..current
        }
        .with_next_run();
        self.write(&schedule, false, now).await?;
        Ok(Some(schedule))
    }

    /// Deletes the schedule `id` of `admin` (and its last error); `false`
    /// when the admin has no such schedule.
    pub async fn delete(&self, admin: &Admin, id: &str) -> Result<bool, ApiError> {
        let Some(current) = self.get(&admin.id, id).await? else {
            return Ok(false);
        };
        self.write(&current, true, Utc::now()).await?;
        if let Some(runs) = &self.runs {
            if let Err(e) = runs.succeeded(id) {
                tracing::warn!(schedule_id = id, error = %e, "the deleted schedule's last error is left on disk");
            }
        }
        Ok(true)
    }

    /// Every admin's schedules that are due on `today` ([`is_due`]), for the
    /// scheduler.
    pub async fn due(&self, today: NaiveDate) -> Result<Vec<Schedule>, ApiError> {
        Ok(self
            .read("", &[])
            .await?
            .into_iter()
            .filter(|s| is_due(s, today))
            .collect())
    }

    /// Records that `schedule` ran on `run_date` (the date it actually ran,
    /// not the date it was due: see [`next_run_date`](super::next_run_date)).
    /// Nothing is written when it was deleted, or given a new start date or
    /// frequency, since it was read; any other edit made meanwhile is kept.
    pub async fn mark_run(
        &self,
        schedule: &Schedule,
        run_date: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        let Some(current) = self
            .get(&schedule.owner_admin_id, &schedule.schedule_id)
            .await?
        else {
            return Ok(());
        };
        if current.start_date != schedule.start_date || current.frequency != schedule.frequency {
            return Ok(());
        }
        let last_run_date = current.last_run_date.max(Some(run_date));
        let marked = Schedule {
            last_run_date,
            ..current
        }
        .with_next_run();
        self.write(&marked, false, now).await
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::fixtures::{at, d};

    #[test]
    fn versions_strictly_increase() {
        let version = |now| next_version(now).expect("after 1970");
        let now = at("2026-03-15");
        let a = version(now);
        let b = version(now);
        let c = version(at("2020-01-01"));
        assert!(a < b && b < c, "{a} {b} {c}");
        assert!(version(at("2200-01-01")) > c);
        assert!(next_version(at("1969-12-31")).is_err());
    }

    #[test]
    fn dates_round_trip_through_their_stored_form() {
        for text in ["1970-01-01", "2026-02-28", "2099-12-31"] {
            assert_eq!(values::read_date(days(d(text)).expect("fits")), d(text));
        }
        assert!(days(d("1969-12-31")).is_err());
        assert!(days(d("2106-01-01")).is_err());
    }

    /// The row is inserted by the crate, which names the columns after the
    /// fields: they must be the table's, in order.
    #[test]
    fn the_row_has_the_columns_of_the_table() {
        let names: Vec<&str> = REPORT_SCHEDULES.columns.iter().map(|c| c.name).collect();
        assert_eq!(<ScheduleRow as clickhouse::Row>::COLUMN_NAMES, names);
    }

    #[test]
    fn kinds_formats_and_frequencies_map_to_the_stored_codes_both_ways() {
        for kind in ExportKind::ALL {
            assert_eq!(kind_of(stored_kind(kind)), kind);
            assert_eq!(stored_kind(kind).label(), kind.as_str());
        }
        for format in ExportFormat::ALL {
            assert_eq!(format_of(stored_format(format)), format);
            assert_eq!(stored_format(format).label(), format.as_str());
        }
        for frequency in [Frequency::Daily, Frequency::Weekly, Frequency::Monthly] {
            assert_eq!(frequency_of(stored_frequency(frequency)), frequency);
            assert_eq!(stored_frequency(frequency).label(), frequency.as_str());
        }
    }

    #[test]
    fn a_stored_label_this_code_does_not_know_is_an_error() {
        let row = |frequency: &str, kind: &str, format: &str| StoredRow {
            schedule_id: "s".into(),
            owner_admin_id: "a".into(),
            name: "n".into(),
            start_date: 20_000,
            frequency: frequency.into(),
            kind: kind.into(),
            format: format.into(),
            filters: "{}".into(),
            created_at: 0,
            updated_at: 0,
            last_run_date: 0,
        };
        assert!(row("daily", "report", "csv").into_schedule().is_ok());
        for (frequency, kind, format) in [
            ("hourly", "report", "csv"),
            ("daily", "raw", "csv"),
            ("daily", "report", "pdf"),
        ] {
            let error = row(frequency, kind, format)
                .into_schedule()
                .expect_err("unknown label");
            assert_eq!(error.code(), "internal");
        }
    }
}
