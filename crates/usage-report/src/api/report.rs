//! The report: the overview tiles, the users table and the daily chart, for
//! the report filters given as query parameters.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use chrono::Utc;
use usage_report::error::ApiError;
use usage_report::model::{Daily, FilterParams, Overview, ReportParams, UsersPage};
use usage_report::openapi::tags;

use super::{errors, params, AppState};
use crate::request::Authed;

errors!(
    /// The errors of the report routes.
    ReportErrors: ["invalid_parameter", "invalid_range", "forbidden", "team_merged"],
    400 => "A query parameter is malformed, out of range or unknown (`invalid_parameter`); \
            or the range's parameters break a rule between them that query parameters \
            cannot state in a schema (`invalid_range`): `from` or `to` with a preset \
            range, `range=custom` without both, `from` after `to`, `to` after today (UTC), \
            more than 366 days.",
);

/// The overview tiles
///
/// The Subscriptions and Flex tiles for the filters. Subscriptions counts
/// the seats assigned now ((user, product) seat assignments in force) and
/// how many of them are active, inactive or not yet active over the range;
/// `inactive` is absent with all teams selected (a user may be inactive in
/// one team and active in another). Flex counts the tokens of the usage
/// windows started in the range, the distinct users with Flex usage and the
/// sum of their days used.
///
/// Data visible in the tables shows here at most `--report-cache-secs`
/// (default 5) seconds later: the report of a filter set is computed once
/// and reused for that long by the overview, the users pages and the chart.
#[utoipa::path(
    get,
    path = "/v1/report/overview",
    operation_id = "getOverview",
    tag = tags::REPORT,
    params(FilterParams),
    responses(
        (status = 200, description = "The tiles and the dates they cover.", body = Overview),
        ReportErrors,
    ),
)]
pub(super) async fn overview(
    State(state): State<AppState>,
    Authed(admin): Authed,
    query: Result<Query<ReportParams>, QueryRejection>,
) -> Result<Json<Overview>, ApiError> {
    let p = params(query)?;
    let filters = p.filters(Utc::now())?;
    Ok(Json(state.reporter.overview(&admin, filters).await?))
}

/// The users table
///
/// One row per (current team, user, product, access) matching the filters,
/// sorted, one page at a time; `total` counts the matching rows over all
/// pages. A page past the end has no rows.
///
/// Data visible in the tables shows here at most `--report-cache-secs`
/// (default 5) seconds later: the report of a filter set is computed once
/// and reused for that long by the overview, the users pages and the chart.
#[utoipa::path(
    get,
    path = "/v1/report/users",
    operation_id = "listUsers",
    tag = tags::REPORT,
    params(ReportParams),
    responses(
        (status = 200, description = "One page of rows.", body = UsersPage),
        ReportErrors,
    ),
)]
pub(super) async fn users(
    State(state): State<AppState>,
    Authed(admin): Authed,
    query: Result<Query<ReportParams>, QueryRejection>,
) -> Result<Json<UsersPage>, ApiError> {
    let p = params(query)?;
    let filters = p.filters(Utc::now())?;
    let (sort, page) = (p.sort()?, p.page()?);
    Ok(Json(
        state.reporter.users(&admin, filters, sort, page).await?,
    ))
}

/// Usage per day (the chart)
///
/// Every UTC date of the range, in order: the distinct users with at least
/// one authorization that day, the report rows used that day (the day's
/// share of the rows' days used) and the tokens of the Flex usage windows
/// that started that day. The `team`, range, `product` and `access` filters
/// apply; the row filters (`status`, `group`, `q`) do not: the chart is of
/// the team.
///
/// Data visible in the tables shows here at most `--report-cache-secs`
/// (default 5) seconds later: the report of a filter set is computed once
/// and reused for that long by the overview, the users pages and the chart.
#[utoipa::path(
    get,
    path = "/v1/report/daily",
    operation_id = "getDaily",
    tag = tags::REPORT,
    params(FilterParams),
    responses(
        (status = 200, description = "One point per date of the range.", body = Daily),
        ReportErrors,
    ),
)]
pub(super) async fn daily(
    State(state): State<AppState>,
    Authed(admin): Authed,
    query: Result<Query<ReportParams>, QueryRejection>,
) -> Result<Json<Daily>, ApiError> {
    let p = params(query)?;
    let filters = p.filters(Utc::now())?;
    Ok(Json(state.reporter.daily(&admin, &filters).await?))
}
