//! What the report says, as values: the filters it is asked with, its rows
//! and its tiles. These are the stable JSON shapes of the API (see
//! `/openapi.json`), shared by the JSON endpoints, the exports and the
//! schedules.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use usage_core::event::{Access, Tokens};
use usage_core::range::{DateRange, RangePreset, ReportRange};
use usage_core::status::Status;

use crate::error::ApiError;

/// The largest page of users one request may ask for.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// The page size when none is asked for.
pub const DEFAULT_PAGE_SIZE: u32 = 50;

/// The query parameters of the report, as sent (stable names; every field
/// optional). Stored as they are with schedules, so a rolling preset rolls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportParams {
    /// A team id, or `all` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// `last_30_days` (default), `last_3_months`, `last_6_months`,
    /// `last_9_months`, `last_12_months` or `custom`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
    /// First date of a custom range (`YYYY-MM-DD`, inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Last date of a custom range (`YYYY-MM-DD`, inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// One product.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// `seat` or `flex`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<String>,
    /// One status (`active`, `inactive`, `not_yet_active`, `flex_unused`, `unassigned`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// A group id or group name (current membership).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Search: part of a user id, name or email (of the user key when hashed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// `column:asc|desc` over any row column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort: Option<String>,
    /// 1-based page number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    /// Rows per page (1..=1000, default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<String>,
}

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
}

impl SortColumn {
    /// Every column with its stable name.
    pub const ALL: [(SortColumn, &'static str); 13] = [
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

impl ReportParams {
    /// Validates the filters as of `now` (sort and page are not looked at).
    pub fn filters(&self, now: DateTime<Utc>) -> Result<ReportFilters, ApiError> {
        let team = match non_empty(&self.team) {
            None | Some("all") => TeamSelection::All,
            Some(t) => TeamSelection::Team(t.to_owned()),
        };
        let range = match non_empty(&self.range) {
            None => ReportRange::Preset(RangePreset::Last30Days),
            Some("custom") => {
                let from = date_param("from", &self.from)?;
                let to = date_param("to", &self.to)?;
                ReportRange::custom(from, to)
                    .map_err(|e| ApiError::invalid("range", e.to_string()))?
            }
            Some(name) => ReportRange::Preset(name.parse::<RangePreset>().map_err(|_| {
                ApiError::invalid(
                    "range",
                    format!(
                        "unknown range {name:?}: expected last_30_days, last_3_months, \
                                 last_6_months, last_9_months, last_12_months or custom"
                    ),
                )
            })?),
        };
        if !matches!(range, ReportRange::Custom(_)) && (self.from.is_some() || self.to.is_some()) {
            return Err(ApiError::invalid(
                "from",
                "from and to are only taken with range=custom",
            ));
        }
        let dates = range
            .resolve(now)
            .map_err(|e| ApiError::invalid("range", e.to_string()))?;
        let access = match non_empty(&self.access) {
            None => None,
            Some("seat") => Some(Access::Seat),
            Some("flex") => Some(Access::Flex),
            Some(other) => {
                return Err(ApiError::invalid(
                    "access",
                    format!("unknown access {other:?}: expected seat or flex"),
                ))
            }
        };
        let status = match non_empty(&self.status) {
            None => None,
            Some(s) => Some(
                Status::ALL
                    .into_iter()
                    .find(|st| st.as_str() == s)
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "status",
                            format!(
                                "unknown status {s:?}: expected active, inactive, \
                                 not_yet_active, flex_unused or unassigned"
                            ),
                        )
                    })?,
            ),
        };
        Ok(ReportFilters {
            team,
            range,
            dates,
            product: non_empty(&self.product).map(str::to_owned),
            access,
            status,
            group: non_empty(&self.group).map(str::to_owned),
            q: non_empty(&self.q).map(str::to_owned),
        })
    }

    /// The sort order (`column:asc|desc`; `column` alone is ascending).
    pub fn sort(&self) -> Result<Sort, ApiError> {
        let Some(text) = non_empty(&self.sort) else {
            return Ok(Sort::default());
        };
        let (name, order) = text.split_once(':').unwrap_or((text, "asc"));
        let column = SortColumn::ALL
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(c, _)| *c)
            .ok_or_else(|| {
                let names: Vec<&str> = SortColumn::ALL.iter().map(|(_, n)| *n).collect();
                ApiError::invalid(
                    "sort",
                    format!(
                        "unknown column {name:?}: expected one of {}",
                        names.join(", ")
                    ),
                )
            })?;
        let descending = match order {
            "asc" => false,
            "desc" => true,
            other => {
                return Err(ApiError::invalid(
                    "sort",
                    format!("unknown order {other:?}: expected asc or desc"),
                ))
            }
        };
        Ok(Sort { column, descending })
    }

    /// The page asked for.
    pub fn page(&self) -> Result<Page, ApiError> {
        let page = number_param("page", &self.page, 1, u32::MAX)?.unwrap_or(1);
        let page_size = number_param("page_size", &self.page_size, 1, MAX_PAGE_SIZE)?
            .unwrap_or(DEFAULT_PAGE_SIZE);
        Ok(Page { page, page_size })
    }
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn date_param(name: &'static str, value: &Option<String>) -> Result<NaiveDate, ApiError> {
    let text = non_empty(value)
        .ok_or_else(|| ApiError::invalid(name, format!("{name} is required with range=custom")))?;
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
        ApiError::invalid(
            name,
            format!("{name} must be a date as YYYY-MM-DD, got {text:?}"),
        )
    })
}

fn number_param(
    name: &'static str,
    value: &Option<String>,
    min: u32,
    max: u32,
) -> Result<Option<u32>, ApiError> {
    let Some(text) = non_empty(value) else {
        return Ok(None);
    };
    match text.parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
        _ => Err(ApiError::invalid(
            name,
            format!("{name} must be a whole number from {min} to {max}, got {text:?}"),
        )),
    }
}

/// One row of the users table: a (current team, user, product, access).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportRow {
    /// The user id when PII is visible, the keyed hash otherwise.
    pub user_key: String,
    /// `null` when hashed.
    pub name: Option<String>,
    /// `null` when hashed.
    pub email: Option<String>,
    /// `null` when hashed or unknown.
    pub avatar_url: Option<String>,
    /// The current team (after merges).
    pub team_id: String,
    /// Names of the user's current groups in the team (may be empty).
    pub groups: Vec<String>,
    pub product: String,
    pub access: Access,
    /// Start of the assignment in force now; `null` when not assigned now.
    pub assigned_date: Option<NaiveDate>,
    /// Most recent UTC date of use, as of now (not cut by the range).
    pub last_accessed: Option<NaiveDate>,
    /// Distinct UTC dates used in the range.
    pub days_used: u32,
    /// Days used / months in range, to 2 decimals.
    pub monthly_average: f64,
    /// Tokens of the Flex windows that started in the range.
    pub tokens_used: Tokens,
    pub status: Status,
}

/// The users endpoint's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsersPage {
    pub rows: Vec<ReportRow>,
    /// Rows matching the filters, over all pages.
    pub total: u64,
    pub page: u32,
    pub page_size: u32,
}

/// The Subscriptions tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionsTile {
    pub assigned_seats: u64,
    pub active: u64,
    /// Absent when all teams are selected (rule 6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inactive: Option<u64>,
    pub not_yet_active: u64,
}

/// The Flex tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlexTile {
    pub tokens_consumed: Tokens,
    /// Distinct users with Flex usage in the range.
    pub users: u64,
    /// The sum of their days used (per product) in the range.
    pub days_used: u64,
}

/// The dates a report covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeDates {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

/// The overview endpoint's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overview {
    pub subscriptions: SubscriptionsTile,
    pub flex: FlexTile,
    pub range: RangeDates,
}

/// One UTC date of the daily usage chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DailyPoint {
    pub date: NaiveDate,
    /// Distinct users with at least one authorization that day.
    pub active_users: u64,
    /// Report rows (team, user, product, access) used that day: the day's
    /// share of the rows' days used.
    pub days_used: u64,
    /// Tokens of the Flex windows that started that day.
    pub tokens: Tokens,
}

/// The daily chart's answer: every date of the range, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Daily {
    pub days: Vec<DailyPoint>,
    pub range: RangeDates,
}

/// What an export holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportKind {
    /// The report rows (the users table) with the current filters.
    Report,
    /// Raw seat usage: one line per (team, user, product, UTC date used).
    SeatUsage,
    /// Raw token usage: one line per charged Flex window.
    TokenUsage,
}

impl ExportKind {
    /// The stable name (`report`, `seat_usage`, `token_usage`).
    pub fn as_str(self) -> &'static str {
        match self {
            ExportKind::Report => "report",
            ExportKind::SeatUsage => "seat_usage",
            ExportKind::TokenUsage => "token_usage",
        }
    }
}

/// The file format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    Csv,
    Xlsx,
}

impl ExportFormat {
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
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 15, 12, 0, 0)
            .single()
            .unwrap_or_default()
    }

    fn params(pairs: &[(&str, &str)]) -> ReportParams {
        let value: serde_json::Map<String, serde_json::Value> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
            .collect();
        serde_json::from_value(value.into()).unwrap_or_default()
    }

    #[test]
    fn defaults_are_all_teams_over_the_last_30_days() {
        let f = ReportParams::default().filters(now()).expect("valid");
        assert_eq!(f.team, TeamSelection::All);
        assert_eq!(f.range, ReportRange::Preset(RangePreset::Last30Days));
        assert_eq!(f.dates.from().to_string(), "2026-02-14");
        assert_eq!(f.dates.to().to_string(), "2026-03-15");
    }

    #[test]
    fn month_presets_are_completed_months() {
        let f = params(&[("range", "last_3_months"), ("team", "t1")])
            .filters(now())
            .expect("valid");
        assert_eq!(f.team, TeamSelection::Team("t1".into()));
        assert_eq!(f.dates.from().to_string(), "2025-12-01");
        assert_eq!(f.dates.to().to_string(), "2026-02-28");
    }

    #[test]
    fn custom_ranges_need_both_dates_in_order_and_not_after_today() {
        let ok = params(&[
            ("range", "custom"),
            ("from", "2026-01-01"),
            ("to", "2026-01-31"),
        ]);
        assert!(ok.filters(now()).is_ok());
        for bad in [
            params(&[("range", "custom"), ("from", "2026-01-01")]),
            params(&[
                ("range", "custom"),
                ("from", "2026-02-01"),
                ("to", "2026-01-01"),
            ]),
            params(&[
                ("range", "custom"),
                ("from", "2026-01-01"),
                ("to", "2026-04-01"),
            ]),
            params(&[
                ("range", "custom"),
                ("from", "01/01/2026"),
                ("to", "2026-01-02"),
            ]),
            params(&[("range", "last_30_days"), ("from", "2026-01-01")]),
            params(&[("range", "last_week")]),
            params(&[("access", "trial")]),
            params(&[("status", "dormant")]),
        ] {
            let err = bad.filters(now()).expect_err("refused");
            assert_eq!(err.code(), "invalid_parameter", "{bad:?}");
        }
    }

    #[test]
    fn sort_and_page_are_checked() {
        let p = params(&[
            ("sort", "days_used:desc"),
            ("page", "3"),
            ("page_size", "20"),
        ]);
        assert_eq!(
            p.sort().expect("valid"),
            Sort {
                column: SortColumn::DaysUsed,
                descending: true
            }
        );
        assert_eq!(
            p.page().expect("valid"),
            Page {
                page: 3,
                page_size: 20
            }
        );
        assert!(params(&[("sort", "salary:asc")]).sort().is_err());
        assert!(params(&[("sort", "name:up")]).sort().is_err());
        assert!(params(&[("page", "0")]).page().is_err());
        assert!(params(&[("page_size", "5000")]).page().is_err());
    }

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
