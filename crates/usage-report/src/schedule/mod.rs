//! Scheduled report exports (docs/rules.md rule 9): what an admin asks for,
//! when each one runs, and their store in ClickHouse (`report_schedules`,
//! migration 0005).
//!
//! Only primary, secondary and SSO admins may schedule, at most
//! [`MAX_SCHEDULES_PER_ADMIN`](usage_core::admin::MAX_SCHEDULES_PER_ADMIN)
//! each, and only the admin who made a schedule can see, edit or delete it:
//! another admin's schedule reads as absent, so callers answer 404 and its
//! existence is not revealed.
//!
//! - `calendar`: when a schedule runs, a pure rule ([`next_run_date`]);
//! - `input`: what an admin asks for ([`ScheduleInput`]) and its checks;
//! - `store`: [`ScheduleStore`], the schedules in ClickHouse. It writes one
//!   row per change and reads the latest version of each schedule with
//!   `argMax(col, version)`; a deleted schedule is a tombstone row;
//! - `runs`: [`RunLog`], the last error of each failing schedule, on disk.

mod calendar;
mod input;
mod runs;
mod store;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::{ExportFormat, ExportKind, ReportParams};

pub use calendar::{is_due, next_run_date, Frequency};
pub use input::{ScheduleInput, LAST_START_DATE, MAX_NAME_CHARS};
pub use runs::{RunError, RunLog};
pub use store::{statements_for_compatibility, ScheduleStore};

/// A recurring export. On each due date the service writes an export owned
/// by `owner_admin_id` and publishes a `ReportReadyNotification`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Schedule {
    /// A UUID v4.
    #[schema(format = Uuid)]
    pub schedule_id: String,
    /// The admin who scheduled it; only they can see it.
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
    #[schema(required = true)]
    pub last_run_date: Option<NaiveDate>,
    /// The UTC date of the next run.
    pub next_run_date: NaiveDate,
    /// Why the last run failed; `null` when it has not failed since its
    /// last success. A failing schedule stays due and is tried again.
    #[serde(default)]
    #[schema(required = true)]
    pub last_error: Option<RunError>,
}

impl Schedule {
    /// The notification id of the schedule's next run: the same for every
    /// attempt at that run (another pass after a failure, a restart), a new
    /// one once it has run or is edited. The email is sent once per id.
    /// A UUID (version 8: the first 16 bytes of a SHA-256 of the schedule
    /// id, its last edit and its next run date).
    pub fn run_notification_id(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        hash.update(b"report_ready\0");
        hash.update(self.schedule_id.as_bytes());
        hash.update(b"\0");
        hash.update(self.updated_at.timestamp().to_be_bytes());
        hash.update(self.next_run_date.to_string().as_bytes());
        let digest = hash.finalize();
        let mut bytes = [0_u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_custom_bytes(bytes)
            .into_uuid()
            .hyphenated()
            .to_string()
    }

    fn with_next_run(mut self) -> Schedule {
        self.next_run_date = next_run_date(self.start_date, self.frequency, self.last_run_date);
        self
    }
}

/// Dates, times and inputs for the tests of the calendar, the input and the
/// store.
#[cfg(test)]
mod fixtures {
    use chrono::{DateTime, NaiveDate, TimeZone, Utc};

    use super::{Frequency, ScheduleInput};
    use crate::model::{ExportFormat, ExportKind, ReportParams};

    pub(super) fn d(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("a date")
    }

    pub(super) fn at(text: &str) -> DateTime<Utc> {
        let day = d(text);
        Utc.from_utc_datetime(&day.and_hms_opt(12, 0, 0).expect("noon"))
    }

    pub(super) fn input(name: &str, start: &str) -> ScheduleInput {
        ScheduleInput {
            name: name.to_owned(),
            start_date: d(start),
            frequency: Frequency::Weekly,
            format: ExportFormat::Csv,
            kind: ExportKind::Report,
            filters: ReportParams::default(),
        }
    }
}
