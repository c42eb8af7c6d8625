//! What the report says, as values: the filters it is asked with, its rows
//! and its tiles. These are the stable JSON shapes of the API, shared by the
//! JSON endpoints, the exports and the schedules; `/openapi.json` derives
//! their schemas from these types, and their doc comments are the schemas'
//! descriptions.
//!
//! - `params`: [`ReportParams`], the filters as asked, and their checks;
//! - here: the validated filters, the sort and page, the rows and tiles.

mod params;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use usage_core::event::{Access, Tokens};
use usage_core::frequency::UsageClass;
use usage_core::range::{DateRange, ReportRange};
use usage_core::status::Status;
use utoipa::ToSchema;

use crate::openapi::schemas;

pub use params::{date_field, filters_object, strict_date, FilterParams, ReportParams, MAX_PAGE};

/// The largest page of users one request may ask for.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// The page size when none is asked for.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// Which teams a report covers, as asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TeamSelection {
    /// Every team the admin administers.
    All,
    /// One (current) team, with the history of teams merged into it.
    Team(String),
}

/// The validated filters of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportFilters {
    pub team: TeamSelection,
    /// As asked (the divisor of the monthly average depends on it).
    pub range: ReportRange,
    /// The dates, resolved as of the request.
    pub dates: DateRange,
    pub product: Option<String>,
    pub access: Option<Access>,
    pub status: Option<Status>,
    /// Only lines of this usage class (rule 11).
    pub usage_class: Option<UsageClass>,
    pub group: Option<String>,
    pub q: Option<String>,
}

/// A column of the users table (the `sort` parameter's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortColumn {
    UserKey,
    Name,
    Email,
    TeamId,
    Groups,
    Product,
    Access,
    AssignedDate,
    LastAccessed,
    DaysUsed,
    MonthlyAverage,
    TokensUsed,
    Status,
    UsageClass,
}

impl SortColumn {
    /// Every column with its stable name.
    pub const ALL: [(SortColumn, &'static str); 14] = [
        (SortColumn::UserKey, "user_key"),
        (SortColumn::Name, "name"),
        (SortColumn::Email, "email"),
        (SortColumn::TeamId, "team_id"),
        (SortColumn::Groups, "groups"),
        (SortColumn::Product, "product"),
        (SortColumn::Access, "access"),
        (SortColumn::AssignedDate, "assigned_date"),
        (SortColumn::LastAccessed, "last_accessed"),
        (SortColumn::DaysUsed, "days_used"),
        (SortColumn::MonthlyAverage, "monthly_average"),
        (SortColumn::TokensUsed, "tokens_used"),
        (SortColumn::Status, "status"),
        (SortColumn::UsageClass, "usage_class"),
    ];

    /// The stable name.
    pub fn as_str(self) -> &'static str {
        SortColumn::ALL
            .iter()
            .find(|(c, _)| *c == self)
            .map_or("user_key", |(_, n)| n)
    }
}

/// A sort order over the users table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    pub column: SortColumn,
    pub descending: bool,
}

impl Default for Sort {
    fn default() -> Sort {
        Sort {
            column: SortColumn::UserKey,
            descending: false,
        }
    }
}

/// A page of the users table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// 1-based.
    pub page: u32,
    pub page_size: u32,
}

impl Default for Page {
    fn default() -> Page {
        Page {
            page: 1,
            page_size: DEFAULT_PAGE_SIZE,
        }
    }
}

/// One row of the users table: a (current team, user, product, access).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReportRow {
    /// The user id when the team's personal data is visible; otherwise a
    /// keyed hash of it (64 hex digits, the same for the same user), and
    /// then `name` and `email` show that hash and `avatar_url` is null.
    pub user_key: String,
    /// The hash (`user_key`) when hashed; `null` when no profile is known.
    #[schema(required = true)]
    pub name: Option<String>,
    /// The hash (`user_key`) when hashed; `null` when no profile is known.
    #[schema(required = true)]
    pub email: Option<String>,
    /// `null` when hashed or unknown.
    #[schema(required = true)]
    pub avatar_url: Option<String>,
    /// The current team (after merges).
    pub team_id: String,
    /// Names of the user's groups in the team now (may be empty).
    pub groups: Vec<String>,
    pub product: String,
    #[schema(value_type = schemas::Access)]
    pub access: Access,
    /// Start of the assignment in force now (YYYY-MM-DD); `null` when not
    /// assigned now.
    #[schema(required = true)]
    pub assigned_date: Option<NaiveDate>,
    /// The most recent UTC date of a license authorization, as of now (not
    /// cut by the range); `null` when never used.
    #[schema(required = true)]
    pub last_accessed: Option<NaiveDate>,
    /// Distinct UTC dates with at least one authorization in the range (both
    /// ends inclusive).
    pub days_used: u32,
    /// Days used / months in range, to 2 decimals (`last_30_days` counts as
    /// 1 month, a month preset as its months, a custom range pro rata by
    /// calendar month).
    #[schema(minimum = 0)]
    pub monthly_average: f64,
    /// Tokens charged for the Flex usage windows that started in the range
    /// (0 for seats).
    #[schema(value_type = schemas::Tokens)]
    pub tokens_used: Tokens,
    #[schema(value_type = schemas::Status)]
    pub status: Status,
    #[schema(value_type = schemas::UsageClass)]
    pub usage_class: UsageClass,
}

/// One page of the users table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UsersPage {
    pub rows: Vec<ReportRow>,
    /// Rows matching the filters, over all pages.
    pub total: u64,
    #[schema(minimum = 1)]
    pub page: u32,
    #[schema(minimum = 1, maximum = 1000)]
    pub page_size: u32,
}

/// The Subscriptions tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionsTile {
    /// Seats assigned now: (user, product) seat assignments in force.
    pub assigned_seats: u64,
    /// Of those, used in the range.
    pub active: u64,
    /// Of those, assigned since on or before the range start and not used
    /// in it. Absent when `team=all`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub inactive: Option<u64>,
    /// Of those, assigned after the range start and not used yet.
    pub not_yet_active: u64,
}

/// The Flex tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FlexTile {
    /// Tokens charged for the Flex usage windows that started in the range.
    #[schema(value_type = schemas::Tokens)]
    pub tokens_consumed: Tokens,
    /// Distinct users with Flex usage in the range.
    pub users: u64,
    /// The sum of their days used (per product) in the range.
    pub days_used: u64,
}

/// The occasional seat users tile (rule 11): the seats assigned now and
/// used in the range on fewer than `below_days_per_month` days a month on
/// average (usage class `occasional`), and the Flex tokens their days used
/// would have cost at the products' rates, to weigh moving them to Flex.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OccasionalTile {
    /// The threshold of this deployment (`--frequent-days-per-month`):
    /// below it a line is occasional, at or above it frequent.
    #[schema(minimum = 0.01, maximum = 31)]
    pub below_days_per_month: f64,
    /// Distinct users holding such a seat.
    pub seat_users: u64,
    /// Such seats: (team, user, product) seat assignments in force.
    pub seats: u64,
    /// What their days used in the range would have cost on Flex: per seat
    /// and day used, the product's daily rate in force at the start of that
    /// UTC day (0 on a day with no rate). An estimate: Flex charges per
    /// 24-hour window, so consecutive days may cost less.
    #[schema(value_type = schemas::Tokens)]
    pub flex_tokens_if_moved: Tokens,
}

/// The dates the report covers, resolved as of the request (both
/// inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RangeDates {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

/// The overview tiles and the dates they cover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Overview {
    pub subscriptions: SubscriptionsTile,
    pub flex: FlexTile,
    pub occasional: OccasionalTile,
    pub range: RangeDates,
}

/// One UTC date of the daily usage chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DailyPoint {
    pub date: NaiveDate,
    /// Distinct users with at least one authorization that UTC day.
    pub active_users: u64,
    /// Report rows (team, user, product, access) used that day: the day's
    /// share of the rows' days used.
    pub days_used: u64,
    /// Tokens of the Flex usage windows that started that day.
    #[schema(value_type = schemas::Tokens)]
    pub tokens: Tokens,
}

/// The daily chart: every date of the range, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Daily {
    pub days: Vec<DailyPoint>,
    pub range: RangeDates,
}

/// What an export holds. `report`: the users table's rows for the filters;
/// `seat_usage`: raw seat usage, one line per (team, user, product, UTC date
/// used); `token_usage`: raw token usage, one line per (team, user, product,
/// UTC date with Flex usage) with the tokens of the windows opened that date
/// (0 on a day used inside a window opened the day before).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportKind {
    /// The report rows (the users table) with the current filters.
    Report,
    /// Raw seat usage.
    SeatUsage,
    /// Raw token usage.
    TokenUsage,
}

impl ExportKind {
    /// Every kind.
    pub const ALL: [ExportKind; 3] = [
        ExportKind::Report,
        ExportKind::SeatUsage,
        ExportKind::TokenUsage,
    ];

    /// The stable name (`report`, `seat_usage`, `token_usage`).
    pub fn as_str(self) -> &'static str {
        match self {
            ExportKind::Report => "report",
            ExportKind::SeatUsage => "seat_usage",
            ExportKind::TokenUsage => "token_usage",
        }
    }
}

/// Where an export is. `pending`: accepted, waiting for a free writer;
/// `running`: being written; `ready`: its file can be downloaded; `failed`:
/// it was not written (`error` says why; export again). An export whose
/// writer stopped (a restart, a crash) is `failed`, never `running` for
/// ever.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportState {
    Pending,
    Running,
    /// Also every export stored before exports had a state.
    #[default]
    Ready,
    Failed,
}

impl ExportState {
    /// Whether the export is still being written.
    pub fn unfinished(self) -> bool {
        matches!(self, ExportState::Pending | ExportState::Running)
    }
}

/// The file format and extension of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    Csv,
    Xlsx,
}

impl ExportFormat {
    /// Every format.
    pub const ALL: [ExportFormat; 2] = [ExportFormat::Csv, ExportFormat::Xlsx];

    /// The stable name and file extension (`csv`, `xlsx`).
    pub fn as_str(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Xlsx => "xlsx",
        }
    }

    /// The media type of the file.
    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Csv => "text/csv; charset=utf-8",
            ExportFormat::Xlsx => {
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overview_omits_inactive_when_absent() {
        let tile = SubscriptionsTile {
            assigned_seats: 3,
            active: 1,
            inactive: None,
            not_yet_active: 1,
        };
        let json = serde_json::to_value(tile).expect("serialises");
        assert!(json.get("inactive").is_none());
    }
}
