//! Scheduled report exports (DESIGN.md rule 9): what an admin asks for, when
//! each one runs, and their store in ClickHouse (`report_schedules`,
//! migration 0005).
//!
//! Only primary, secondary and SSO admins may schedule, at most
//! [`MAX_SCHEDULES_PER_ADMIN`] each, and only the admin who made a schedule
//! can see, edit or delete it: another admin's schedule reads as absent, so
//! callers answer 404 and its existence is not revealed.
//!
//! When a schedule runs is a pure rule, [`next_run_date`]. The store writes one
//! row per change and reads the latest version of each schedule with
//! `argMax(col, version)`; a deleted schedule is a tombstone row.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, Utc};
use clickhouse::Client;
use serde::{Deserialize, Serialize};
use usage_core::admin::{can_add_schedule, can_schedule, MAX_SCHEDULES_PER_ADMIN};

use crate::admins::Admin;
use crate::error::ApiError;
use crate::model::{ExportFormat, ExportKind, ReportParams};

/// The longest schedule name, in characters (after trimming).
pub const MAX_NAME_CHARS: usize = 100;

/// The latest start date a schedule may have (ClickHouse `Date` ends in 2149;
/// this leaves room for the runs).
pub const LAST_START_DATE: NaiveDate = match NaiveDate::from_ymd_opt(2099, 12, 31) {
    Some(d) => d,
    None => NaiveDate::MIN,
};

/// How often a schedule runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Frequency {
    /// Every day from the start date.
    Daily,
    /// Every 7 days from the start date.
    Weekly,
    /// Every calendar month, on the start date's day of the month (the last
    /// day of shorter months).
    Monthly,
}

impl Frequency {
    /// The stable name (`daily`, `weekly`, `monthly`).
    pub fn as_str(self) -> &'static str {
        match self {
            Frequency::Daily => "daily",
            Frequency::Weekly => "weekly",
            Frequency::Monthly => "monthly",
        }
    }

    fn code(self) -> i8 {
        match self {
            Frequency::Daily => 1,
            Frequency::Weekly => 2,
            Frequency::Monthly => 3,
        }
    }

    fn parse(name: &str) -> Option<Frequency> {
        [Frequency::Daily, Frequency::Weekly, Frequency::Monthly]
            .into_iter()
            .find(|f| f.as_str() == name)
    }
}

/// The `k`-th scheduled date (`k = 0` is the start date), or `None` past the
/// end of the calendar.
fn scheduled_date(start_date: NaiveDate, frequency: Frequency, k: u64) -> Option<NaiveDate> {
    match frequency {
        Frequency::Daily => start_date.checked_add_days(Days::new(k)),
        Frequency::Weekly => start_date.checked_add_days(Days::new(k.checked_mul(7)?)),
        // From the start date each time (not from the previous run), so a
        // clamped month does not shift the day: Jan 31, Feb 28, Mar 31.
        Frequency::Monthly => start_date.checked_add_months(Months::new(u32::try_from(k).ok()?)),
    }
}

/// When a schedule runs next.
///
/// The scheduled dates are the start date and then one every day, every 7
/// days or every calendar month after it (monthly keeps the start date's day
/// of the month, clamped to the month's last day: Jan 31, Feb 28 (29), Mar 31,
/// Apr 30, ...). The next run is:
///
/// - never run (`last_run_date` is `None`, or before the start date, as after
///   a reschedule): the start date, even if it has passed;
/// - otherwise: the first scheduled date strictly after `last_run_date`.
///
/// A run records the date it actually ran on (see [`ScheduleStore::mark_run`]).
/// So when runs were missed (the service was down), the one overdue date is
/// due, one run catches up, and the next run is the first scheduled date after
/// that run: missed dates are skipped, never replayed in a burst. Example:
/// weekly from Mon Jan 5, last run Jan 5, service down until Thu Jan 22: the
/// next run date is Jan 12 (due on Jan 22, runs once); after it, Jan 26.
///
/// Saturates at [`NaiveDate::MAX`] past the end of the calendar.
pub fn next_run_date(
    start_date: NaiveDate,
    frequency: Frequency,
    last_run_date: Option<NaiveDate>,
) -> NaiveDate {
    let Some(last) = last_run_date.filter(|last| *last >= start_date) else {
        return start_date;
    };
    // The index of the last scheduled date on or before `last`, estimated
    // from below; the answer is at most two steps on.
    let k = match frequency {
        Frequency::Daily => u64::try_from((last - start_date).num_days()).unwrap_or(0),
        Frequency::Weekly => u64::try_from((last - start_date).num_days() / 7).unwrap_or(0),
        Frequency::Monthly => {
            let months = (i64::from(last.year()) - i64::from(start_date.year())) * 12
                + i64::from(last.month0())
                - i64::from(start_date.month0());
            u64::try_from(months).unwrap_or(0)
        }
    };
    (k..=k.saturating_add(2))
        .filter_map(|i| scheduled_date(start_date, frequency, i))
        .find(|d| *d > last)
        .unwrap_or(NaiveDate::MAX)
}

/// Whether `schedule` is due on `today`: its next run date has come.
pub fn is_due(schedule: &Schedule, today: NaiveDate) -> bool {
    next_run_date(
        schedule.start_date,
        schedule.frequency,
        schedule.last_run_date,
    ) <= today
}

/// The body of `POST /schedules` and `PUT /schedules/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleInput {
    /// 1 to 100 characters (surrounding spaces are dropped), no control
    /// characters.
    pub name: String,
    /// The first run, a UTC date (`YYYY-MM-DD`): today or later.
    pub start_date: NaiveDate,
    pub frequency: Frequency,
    pub format: ExportFormat,
    /// What is exported (default `report`).
    #[serde(default = "default_kind")]
    pub kind: ExportKind,
    /// The report's filters, as its query parameters (default: none).
    #[serde(default)]
    pub filters: ReportParams,
}

fn default_kind() -> ExportKind {
    ExportKind::Report
}

impl ScheduleInput {
    /// Checks a new schedule as of `now`: the name, a start date not before
    /// today (UTC), and the filters.
    pub fn validate(&self, now: DateTime<Utc>) -> Result<(), ApiError> {
        self.check(now, None)
    }

    /// Checks an edit of a schedule that starts on `current_start_date`: as
    /// [`ScheduleInput::validate`], except that an unchanged start date may
    /// have passed.
    pub fn validate_update(
        &self,
        current_start_date: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        self.check(now, Some(current_start_date))
    }

    fn check(&self, now: DateTime<Utc>, unchanged: Option<NaiveDate>) -> Result<(), ApiError> {
        let name = self.name.trim();
        let chars = name.chars().count();
        if chars == 0 || chars > MAX_NAME_CHARS {
            return Err(ApiError::invalid(
                "name",
                format!("name must be 1 to {MAX_NAME_CHARS} characters, got {chars}"),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(ApiError::invalid(
                "name",
                "name must not contain control characters (line breaks, tabs, ...)",
            ));
        }
        let today = now.date_naive();
        if self.start_date < today && unchanged != Some(self.start_date) {
            return Err(ApiError::invalid(
                "start_date",
                format!("start_date must be today ({today}) or later"),
            ));
        }
        if self.start_date > LAST_START_DATE {
            return Err(ApiError::invalid(
                "start_date",
                format!("start_date must be {LAST_START_DATE} or earlier"),
            ));
        }
        self.filters.filters(now)?;
        self.filters.sort()?;
        Ok(())
    }
}

/// A scheduled export, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// A UUID v4.
    pub schedule_id: String,
    /// The admin who made it, the only one who sees it.
    pub owner_admin_id: String,
    pub name: String,
    pub start_date: NaiveDate,
    pub frequency: Frequency,
    pub format: ExportFormat,
    pub kind: ExportKind,
    pub filters: ReportParams,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The UTC date it last ran on; `null` when it has not run yet (or since
    /// its start date or frequency changed).
    pub last_run_date: Option<NaiveDate>,
    /// When it runs next ([`next_run_date`]).
    pub next_run_date: NaiveDate,
}

impl Schedule {
    fn with_next_run(mut self) -> Schedule {
        self.next_run_date = next_run_date(self.start_date, self.frequency, self.last_run_date);
        self
    }
}

/// The last version handed out in this process.
static LAST_VERSION: AtomicU64 = AtomicU64::new(0);

/// The version of a row written at `now`: microseconds since the epoch,
/// strictly increasing within the process.
fn next_version(now: DateTime<Utc>) -> u64 {
    let now_us = u64::try_from(now.timestamp_micros()).unwrap_or(0);
    let mut prev = LAST_VERSION.load(Ordering::Relaxed);
    loop {
        let next = now_us.max(prev.saturating_add(1));
        match LAST_VERSION.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(actual) => prev = actual,
        }
    }
}

const EPOCH: NaiveDate = match NaiveDate::from_ymd_opt(1970, 1, 1) {
    Some(d) => d,
    None => NaiveDate::MIN,
};

/// A stored row; fields in table column order.
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
    u16::try_from((date - EPOCH).num_days()).map_err(|_| {
        ApiError::invalid(
            "start_date",
            format!("dates must be from 1970-01-01 to {LAST_START_DATE}"),
        )
    })
}

fn date(days: u16) -> NaiveDate {
    EPOCH
        .checked_add_days(Days::new(u64::from(days)))
        .unwrap_or(EPOCH)
}

fn seconds(at: DateTime<Utc>) -> u32 {
    u32::try_from(at.timestamp()).unwrap_or(0)
}

/// `at` to the second, as stored.
fn truncate(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(at.timestamp(), 0).unwrap_or(at)
}

fn kind_code(kind: ExportKind) -> i8 {
    match kind {
        ExportKind::Report => 1,
        ExportKind::SeatUsage => 2,
        ExportKind::TokenUsage => 3,
    }
}

fn format_code(format: ExportFormat) -> i8 {
    match format {
        ExportFormat::Csv => 1,
        ExportFormat::Xlsx => 2,
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
        let frequency = Frequency::parse(&self.frequency)
            .ok_or_else(|| bad(format!("frequency {:?}", self.frequency)))?;
        let kind = [
            ExportKind::Report,
            ExportKind::SeatUsage,
            ExportKind::TokenUsage,
        ]
        .into_iter()
        .find(|k| k.as_str() == self.kind)
        .ok_or_else(|| bad(format!("kind {:?}", self.kind)))?;
        let format = [ExportFormat::Csv, ExportFormat::Xlsx]
            .into_iter()
            .find(|f| f.as_str() == self.format)
            .ok_or_else(|| bad(format!("format {:?}", self.format)))?;
        let filters: ReportParams =
            serde_json::from_str(&self.filters).map_err(|e| bad(format!("filters: {e}")))?;
        let at = |s: u32| DateTime::from_timestamp(i64::from(s), 0).unwrap_or_default();
        let schedule = Schedule {
            start_date: date(self.start_date),
            frequency,
            format,
            kind,
            filters,
            created_at: at(self.created_at),
            updated_at: at(self.updated_at),
            last_run_date: (self.last_run_date != 0).then(|| date(self.last_run_date)),
            next_run_date: EPOCH,
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

/// The schedules in ClickHouse (`report_schedules`).
#[derive(Clone)]
pub struct ScheduleStore {
    client: Client,
}

impl std::fmt::Debug for ScheduleStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScheduleStore").finish_non_exhaustive()
    }
}

impl ScheduleStore {
    /// A store over `client` (bound to the pipeline's database).
    pub fn new(client: Client) -> ScheduleStore {
        ScheduleStore { client }
    }

    async fn read(&self, condition: &str, params: &[&str]) -> Result<Vec<Schedule>, ApiError> {
        let mut query = self.client.query(&SELECT.replace("{WHERE}", condition));
        for param in params {
            query = query.bind(*param);
        }
        query
            .fetch_all::<StoredRow>()
            .await
            .map_err(|e| unavailable(&e))?
            .into_iter()
            .map(StoredRow::into_schedule)
            .collect()
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
            frequency: schedule.frequency.code(),
            kind: kind_code(schedule.kind),
            format: format_code(schedule.format),
            filters,
            created_at: seconds(schedule.created_at),
            updated_at: seconds(schedule.updated_at),
            last_run_date: schedule.last_run_date.map(days).transpose()?.unwrap_or(0),
            deleted: u8::from(deleted),
            version: next_version(now),
        };
        let mut insert = self
            .client
            .insert::<ScheduleRow>("report_schedules")
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
    /// primary, secondary or SSO admin, when the input is not valid (400), and
    /// when the admin already has [`MAX_SCHEDULES_PER_ADMIN`] (409).
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
    /// have passed.
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

    /// Deletes the schedule `id` of `admin`; `false` when the admin has no
    /// such schedule.
    pub async fn delete(&self, admin: &Admin, id: &str) -> Result<bool, ApiError> {
        let Some(current) = self.get(&admin.id, id).await? else {
            return Ok(false);
        };
        self.write(&current, true, Utc::now()).await?;
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
    /// not the date it was due: see [`next_run_date`]). Nothing is written
    /// when it was deleted, or given a new start date or frequency, since it
    /// was read; any other edit made meanwhile is kept.
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
    use crate::admins::{Role, Teams};
    use chrono::TimeZone;

    fn d(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("a date")
    }

    fn at(text: &str) -> DateTime<Utc> {
        let day = d(text);
        Utc.from_utc_datetime(&day.and_hms_opt(12, 0, 0).expect("noon"))
    }

    /// The next run dates of a schedule that runs every time it is due and
    /// nothing else: the scheduled dates themselves.
    fn calendar(start: &str, frequency: Frequency, n: usize) -> Vec<String> {
        let mut last = None;
        let mut out = Vec::new();
        for _ in 0..n {
            let next = next_run_date(d(start), frequency, last);
            out.push(next.to_string());
            last = Some(next);
        }
        out
    }

    #[test]
    fn the_first_run_is_the_start_date() {
        for f in [Frequency::Daily, Frequency::Weekly, Frequency::Monthly] {
            assert_eq!(next_run_date(d("2026-03-20"), f, None), d("2026-03-20"));
            // A last run before the start date (not possible after a
            // reschedule, which resets it) counts as never.
            assert_eq!(
                next_run_date(d("2026-03-20"), f, Some(d("2026-03-01"))),
                d("2026-03-20")
            );
        }
    }

    #[test]
    fn daily_and_weekly_step_from_the_start_date() {
        assert_eq!(
            calendar("2026-02-27", Frequency::Daily, 4),
            ["2026-02-27", "2026-02-28", "2026-03-01", "2026-03-02"]
        );
        assert_eq!(
            calendar("2026-02-20", Frequency::Weekly, 4),
            ["2026-02-20", "2026-02-27", "2026-03-06", "2026-03-13"]
        );
    }

    #[test]
    fn monthly_keeps_the_day_of_month_clamped_to_the_month() {
        assert_eq!(
            calendar("2026-01-31", Frequency::Monthly, 6),
            [
                "2026-01-31",
                "2026-02-28",
                "2026-03-31",
                "2026-04-30",
                "2026-05-31",
                "2026-06-30"
            ]
        );
        // Leap years: Feb 29, and back to the 31st after it.
        assert_eq!(
            calendar("2027-12-31", Frequency::Monthly, 4),
            ["2027-12-31", "2028-01-31", "2028-02-29", "2028-03-31"]
        );
        // Starting on Feb 29: the 29th of every month, Feb 28 in common years.
        assert_eq!(
            calendar("2028-02-29", Frequency::Monthly, 13)[11..],
            ["2029-01-29", "2029-02-28"]
        );
        assert_eq!(
            calendar("2026-11-15", Frequency::Monthly, 3),
            ["2026-11-15", "2026-12-15", "2027-01-15"]
        );
    }

    #[test]
    fn missed_runs_are_skipped_not_replayed() {
        // Weekly from Mon 2026-01-05; ran on the 5th; down until Thu the 22nd.
        let start = d("2026-01-05");
        let next = next_run_date(start, Frequency::Weekly, Some(d("2026-01-05")));
        assert_eq!(next, d("2026-01-12"));
        assert!(next <= d("2026-01-22"), "overdue, so due on the 22nd");
        // It runs once on the 22nd; the next is the first scheduled date
        // after that run (not the 19th).
        assert_eq!(
            next_run_date(start, Frequency::Weekly, Some(d("2026-01-22"))),
            d("2026-01-26")
        );
        // A run on a scheduled date: the next one.
        assert_eq!(
            next_run_date(start, Frequency::Weekly, Some(d("2026-01-26"))),
            d("2026-02-02")
        );
        // Daily: the day after the run, whatever was missed.
        assert_eq!(
            next_run_date(start, Frequency::Daily, Some(d("2026-03-10"))),
            d("2026-03-11")
        );
        // Monthly from Jan 31, last run Mar 5 (late): Mar 31, not Apr 5.
        let start = d("2026-01-31");
        assert_eq!(
            next_run_date(start, Frequency::Monthly, Some(d("2026-03-05"))),
            d("2026-03-31")
        );
        // Ran on the clamped date Feb 28: next is Mar 31.
        assert_eq!(
            next_run_date(start, Frequency::Monthly, Some(d("2026-02-28"))),
            d("2026-03-31")
        );
        // Ran late on Apr 30 (the scheduled date) after missing March.
        assert_eq!(
            next_run_date(start, Frequency::Monthly, Some(d("2026-04-30"))),
            d("2026-05-31")
        );
        // Years later.
        assert_eq!(
            next_run_date(start, Frequency::Monthly, Some(d("2029-02-28"))),
            d("2029-03-31")
        );
    }

    #[test]
    fn the_end_of_the_calendar_saturates() {
        assert_eq!(
            next_run_date(NaiveDate::MAX, Frequency::Daily, Some(NaiveDate::MAX)),
            NaiveDate::MAX
        );
    }

    fn input(name: &str, start: &str) -> ScheduleInput {
        ScheduleInput {
            name: name.to_owned(),
            start_date: d(start),
            frequency: Frequency::Weekly,
            format: ExportFormat::Csv,
            kind: ExportKind::Report,
            filters: ReportParams::default(),
        }
    }

    fn schedule(start: &str, frequency: Frequency, last: Option<&str>) -> Schedule {
        let last_run_date = last.map(d);
        Schedule {
            schedule_id: "s".into(),
            owner_admin_id: "ada".into(),
            name: "n".into(),
            start_date: d(start),
            frequency,
            format: ExportFormat::Csv,
            kind: ExportKind::Report,
            filters: ReportParams::default(),
            created_at: at("2026-01-01"),
            updated_at: at("2026-01-01"),
            last_run_date,
            next_run_date: next_run_date(d(start), frequency, last_run_date),
        }
    }

    #[test]
    fn due_when_the_next_run_date_has_come() {
        let s = schedule("2026-03-15", Frequency::Daily, None);
        assert!(!is_due(&s, d("2026-03-14")));
        assert!(is_due(&s, d("2026-03-15")));
        assert!(is_due(&s, d("2026-04-01")), "overdue is due");
        let s = schedule("2026-03-15", Frequency::Weekly, Some("2026-03-15"));
        assert!(!is_due(&s, d("2026-03-21")));
        assert!(is_due(&s, d("2026-03-22")));
    }

    fn refused(result: Result<(), ApiError>, field: &str) {
        let err = result.expect_err("refused");
        assert_eq!(err.code(), "invalid_parameter", "{err}");
        assert!(err.message().contains(field), "{err}");
    }

    #[test]
    fn names_are_checked() {
        let now = at("2026-03-15");
        assert!(input("Monthly seats", "2026-03-15").validate(now).is_ok());
        assert!(input("  Ünïcödé 報告  ", "2026-03-15")
            .validate(now)
            .is_ok());
        assert!(input(&"x".repeat(100), "2026-03-15").validate(now).is_ok());
        assert!(input(&"é".repeat(100), "2026-03-15").validate(now).is_ok());
        for bad in ["", "   ", "a\nb", "tab\there", "bell\u{7}", "del\u{7f}"] {
            refused(input(bad, "2026-03-15").validate(now), "name");
        }
        refused(input(&"x".repeat(101), "2026-03-15").validate(now), "name");
    }

    #[test]
    fn start_dates_are_today_or_later_except_when_unchanged() {
        let now = at("2026-03-15");
        assert!(input("a", "2026-03-16").validate(now).is_ok());
        refused(input("a", "2026-03-14").validate(now), "start_date");
        refused(input("a", "2100-01-01").validate(now), "start_date");
        // An edit keeping a past start date is fine; moving it into the past is not.
        let past = input("a", "2026-01-01");
        assert!(past.validate_update(d("2026-01-01"), now).is_ok());
        refused(past.validate_update(d("2026-01-02"), now), "start_date");
        assert!(input("a", "2026-04-01")
            .validate_update(d("2026-01-01"), now)
            .is_ok());
    }

    #[test]
    fn filters_are_checked() {
        let now = at("2026-03-15");
        let with = |json: serde_json::Value| ScheduleInput {
            filters: serde_json::from_value(json).expect("report params"),
            ..input("a", "2026-03-15")
        };
        assert!(
            with(serde_json::json!({"range": "last_3_months", "sort": "days_used:desc"}))
                .validate(now)
                .is_ok()
        );
        refused(
            with(serde_json::json!({"range": "last_week"})).validate(now),
            "range",
        );
        refused(
            with(serde_json::json!({"access": "trial"})).validate(now),
            "access",
        );
        refused(
            with(serde_json::json!({"sort": "salary"})).validate(now),
            "sort",
        );
    }

    #[test]
    fn the_body_is_strict_json_with_defaults() {
        let body: ScheduleInput = serde_json::from_str(
            r#"{"name":"n","start_date":"2026-03-15","frequency":"monthly","format":"xlsx"}"#,
        )
        .expect("valid");
        assert_eq!(body.kind, ExportKind::Report);
        assert_eq!(body.filters, ReportParams::default());
        assert_eq!(body.frequency, Frequency::Monthly);
        for bad in [
            r#"{"name":"n","start_date":"2026-03-15","frequency":"monthly","format":"xlsx","x":1}"#,
            r#"{"name":"n","start_date":"15/03/2026","frequency":"monthly","format":"xlsx"}"#,
            r#"{"name":"n","start_date":"2026-03-15","frequency":"hourly","format":"xlsx"}"#,
            r#"{"name":"n","start_date":"2026-03-15","frequency":"daily","format":"pdf"}"#,
            r#"{"name":"n","start_date":"2026-03-15","frequency":"daily","format":"csv","filters":{"x":"1"}}"#,
        ] {
            assert!(serde_json::from_str::<ScheduleInput>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn versions_strictly_increase() {
        let now = at("2026-03-15");
        let a = next_version(now);
        let b = next_version(now);
        let c = next_version(at("2020-01-01"));
        assert!(a < b && b < c, "{a} {b} {c}");
        assert!(next_version(at("2200-01-01")) > c);
    }

    #[test]
    fn dates_round_trip_through_their_stored_form() {
        for text in ["1970-01-01", "2026-02-28", "2099-12-31"] {
            assert_eq!(date(days(d(text)).expect("fits")), d(text));
        }
        assert!(days(d("1969-12-31")).is_err());
    }

    // --- The store, against a real ClickHouse -------------------------------

    /// The server to test against: `USAGE_CLICKHOUSE_URL` (which must answer),
    /// or the local one when it answers; `None`: skip.
    async fn clickhouse_url() -> Option<String> {
        if let Ok(url) = std::env::var("USAGE_CLICKHOUSE_URL") {
            return Some(url);
        }
        let url = "http://127.0.0.1:8123".to_owned();
        let probe = Client::default()
            .with_url(url.clone())
            .with_validation(false);
        let answer = tokio::time::timeout(
            std::time::Duration::from_secs(3),
            probe.query("SELECT 1").fetch_one::<u8>(),
        )
        .await;
        match answer {
            Ok(Ok(1)) => Some(url),
            _ => {
                eprintln!("skipped: no ClickHouse at {url} (scripts/services up)");
                None
            }
        }
    }

    fn admin(id: &str, role: Role) -> Admin {
        Admin {
            id: id.to_owned(),
            email: format!("{id}@example.com"),
            role,
            teams: Teams::Every,
        }
    }

    #[tokio::test]
    async fn the_store_keeps_schedules_per_admin() {
        use usage_store::{migrate, Warehouse, WarehouseSettings};

        let Some(url) = clickhouse_url().await else {
            return;
        };
        let nanos = Utc::now().timestamp_subsec_nanos();
        let settings = WarehouseSettings {
            url,
            database: format!("test_schedules_{}_{nanos}", std::process::id()),
            ..WarehouseSettings::default()
        };
        let warehouse = Warehouse::new(settings).expect("valid settings");
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/clickhouse");
        let migrations = migrate::load_dir(std::path::Path::new(dir)).expect("migrations load");
        migrate::apply(&warehouse, &migrations)
            .await
            .expect("migrations apply");
        let store = ScheduleStore::new(warehouse.client().clone());

        let outcome = exercise(&store).await;
        warehouse
            .server_client()
            .query(&format!("DROP DATABASE IF EXISTS {}", warehouse.database()))
            .execute()
            .await
            .expect("drop the scratch database");
        outcome.expect("the store behaves");
    }

    /// The scenario; an `Err` (rather than a panic) lets the caller drop the
    /// scratch database first.
    async fn exercise(store: &ScheduleStore) -> Result<(), String> {
        let check = |ok: bool, what: &str| if ok { Ok(()) } else { Err(what.to_owned()) };
        let now = at("2026-03-15");
        let today = now.date_naive();
        let ada = admin("ada", Role::Primary);
        let bob = admin("bob", Role::Sso);
        let uma = admin("uma", Role::UserAdmin);

        let err = store
            .create(&uma, input("mine", "2026-03-15"), now)
            .await
            .err()
            .ok_or("a user admin may not schedule")?;
        check(err.status().as_u16() == 403, "403 for a user admin")?;
        let err = store
            .create(&ada, input("old", "2026-03-01"), now)
            .await
            .err()
            .ok_or("a past start date is refused")?;
        check(err.code() == "invalid_parameter", "invalid start date")?;

        // Five schedules: one daily from today, the others later.
        let mut made = Vec::new();
        for i in 0..5 {
            let mut body = input(&format!(" schedule {i} "), "2026-03-20");
            if i == 0 {
                body.start_date = today;
                body.frequency = Frequency::Daily;
                body.filters = serde_json::from_value(
                    serde_json::json!({"team": "t1", "range": "last_3_months", "q": "o'brien\\"}),
                )
                .map_err(|e| e.to_string())?;
            }
            let s = store
                .create(&ada, body, now)
                .await
                .map_err(|e| e.to_string())?;
            check(s.name == format!("schedule {i}"), "the name is trimmed")?;
            made.push(s);
        }
        let err = store
            .create(&ada, input("sixth", "2026-03-20"), now)
            .await
            .err()
            .ok_or("the sixth schedule is refused")?;
        check(err.code() == "schedule_limit", "schedule_limit")?;
        check(err.status().as_u16() == 409, "409 for the sixth")?;

        let listed = store.list("ada").await.map_err(|e| e.to_string())?;
        check(listed == made, "list gives what create gave, oldest first")?;
        let first = store
            .get("ada", &made[0].schedule_id)
            .await
            .map_err(|e| e.to_string())?;
        check(
            first.as_ref() == Some(&made[0]),
            "get gives what create gave",
        )?;

        // Another admin sees nothing and can change nothing.
        check(
            store
                .list("bob")
                .await
                .map_err(|e| e.to_string())?
                .is_empty(),
            "bob lists nothing",
        )?;
        let id = made[1].schedule_id.clone();
        check(
            store
                .get("bob", &id)
                .await
                .map_err(|e| e.to_string())?
                .is_none(),
            "bob cannot get ada's",
        )?;
        let updated = store
            .update(&bob, &id, input("stolen", "2026-03-20"), now)
            .await
            .map_err(|e| e.to_string())?;
        check(updated.is_none(), "bob cannot update ada's")?;
        check(
            !store.delete(&bob, &id).await.map_err(|e| e.to_string())?,
            "bob cannot delete ada's",
        )?;
        check(
            store.list("ada").await.map_err(|e| e.to_string())? == made,
            "ada's schedules unchanged",
        )?;
        // Bob has a limit of his own.
        store
            .create(&bob, input("bob's", "2026-03-20"), now)
            .await
            .map_err(|e| e.to_string())?;

        // Due today: only the daily one; it runs and is not due again today.
        let due = store.due(today).await.map_err(|e| e.to_string())?;
        check(due == vec![made[0].clone()], "only the daily one is due")?;
        store
            .mark_run(&due[0], today, now)
            .await
            .map_err(|e| e.to_string())?;
        check(
            store
                .due(today)
                .await
                .map_err(|e| e.to_string())?
                .is_empty(),
            "nothing is due after the run",
        )?;
        let tomorrow = d("2026-03-16");
        let due = store.due(tomorrow).await.map_err(|e| e.to_string())?;
        check(
            due.len() == 1 && due[0].last_run_date == Some(today),
            "the daily one is due tomorrow, having run today",
        )?;
        check(due[0].next_run_date == tomorrow, "next run tomorrow")?;
        let due = store
            .due(d("2026-03-20"))
            .await
            .map_err(|e| e.to_string())?;
        check(due.len() == 6, "all due on the 20th (bob's too)")?;

        // An edit of the name keeps the last run; the frequency resets it.
        let later = at("2026-03-17");
        let renamed = ScheduleInput {
            name: "renamed".into(),
            frequency: Frequency::Daily,
            start_date: today,
            ..input("x", "2026-03-15")
        };
        let s = store
            .update(&ada, &made[0].schedule_id, renamed.clone(), later)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("ada updates her own")?;
        check(s.name == "renamed", "renamed")?;
        check(s.created_at == made[0].created_at, "created_at kept")?;
        check(s.updated_at == later, "updated_at moved")?;
        check(s.last_run_date == Some(today), "last run kept")?;
        check(s.filters == ReportParams::default(), "filters replaced")?;
        let stored = store
            .get("ada", &made[0].schedule_id)
            .await
            .map_err(|e| e.to_string())?;
        check(stored.as_ref() == Some(&s), "update is stored")?;
        let weekly = ScheduleInput {
            frequency: Frequency::Weekly,
            ..renamed
        };
        let s = store
            .update(&ada, &made[0].schedule_id, weekly, later)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("ada updates her own")?;
        check(
            s.last_run_date.is_none(),
            "a new frequency resets the last run",
        )?;
        check(s.next_run_date == today, "and it runs from its start again")?;
        // A run read before the reschedule is not recorded over it.
        store
            .mark_run(&due[0], tomorrow, later)
            .await
            .map_err(|e| e.to_string())?;
        let stored = store
            .get("ada", &made[0].schedule_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("still there")?;
        check(stored.last_run_date.is_none(), "stale mark_run ignored")?;
        check(stored.frequency == Frequency::Weekly, "weekly kept")?;

        // Delete: gone for good, and room for another.
        check(
            store.delete(&ada, &id).await.map_err(|e| e.to_string())?,
            "ada deletes her own",
        )?;
        check(
            store
                .get("ada", &id)
                .await
                .map_err(|e| e.to_string())?
                .is_none(),
            "deleted is gone",
        )?;
        check(
            !store.delete(&ada, &id).await.map_err(|e| e.to_string())?,
            "deleting twice finds nothing",
        )?;
        check(
            store
                .update(&ada, &id, input("back", "2026-03-20"), later)
                .await
                .map_err(|e| e.to_string())?
                .is_none(),
            "a deleted schedule cannot be updated",
        )?;
        let listed = store.list("ada").await.map_err(|e| e.to_string())?;
        check(listed.len() == 4, "four left")?;
        check(
            !listed.iter().any(|s| s.schedule_id == id),
            "the deleted one is not listed",
        )?;
        let deleted = made[1].clone();
        store
            .mark_run(&deleted, today, later)
            .await
            .map_err(|e| e.to_string())?;
        check(
            store
                .get("ada", &id)
                .await
                .map_err(|e| e.to_string())?
                .is_none(),
            "marking a deleted schedule does not bring it back",
        )?;
        let fifth = store
            .create(&ada, input("fifth again", "2026-03-20"), later)
            .await
            .map_err(|e| e.to_string())?;
        let listed = store.list("ada").await.map_err(|e| e.to_string())?;
        check(
            listed.len() == 5 && listed.last() == Some(&fifth),
            "a fifth again, listed last",
        )?;
        Ok(())
    }
}
