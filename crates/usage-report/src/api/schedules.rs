//! Scheduled exports: an admin's own, created, read, edited and deleted
//! (another admin's schedule reads as absent).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use usage_core::admin::MAX_SCHEDULES_PER_ADMIN;
use usage_report::error::ApiError;
use usage_report::openapi::tags;
use usage_report::schedule::{Schedule, ScheduleInput};
use utoipa::ToSchema;

use super::{body, errors, AppState, JsonObject, V1Errors};
use crate::request::Authed;

/// The caller's schedules.
#[derive(Serialize, ToSchema)]
#[schema(as = ScheduleList)]
pub(super) struct ScheduleList {
    schedules: Vec<Schedule>,
}

/// The caller's schedules
///
/// The caller's scheduled exports (other admins' are never shown).
#[utoipa::path(
    get,
    path = "/v1/schedules",
    operation_id = "listSchedules",
    tag = tags::SCHEDULES,
    responses((status = 200, description = "The schedules.", body = ScheduleList), V1Errors),
)]
pub(super) async fn list_schedules(
    State(state): State<AppState>,
    Authed(admin): Authed,
) -> Result<Json<ScheduleList>, ApiError> {
    Ok(Json(ScheduleList {
        schedules: state.schedules.list(&admin.id).await?,
    }))
}

/// What a 400 of a schedule's create or edit means.
const SCHEDULE_400: &str = "A field or filter is malformed or out of range \
    (`invalid_parameter`), the range's dates break a rule no schema states \
    (`invalid_range`: `to` after today (UTC), `from` after `to`, more than 366 days), \
    the start date is before today (UTC) or after 2099-12-31 (`invalid_start_date`; \
    an edit may keep a passed one), or the body is not a `ScheduleInput` \
    (`invalid_body`).";

errors!(
    /// The errors of `POST /v1/schedules`.
    CreateErrors: [
        "invalid_parameter",
        "invalid_range",
        "invalid_start_date",
        "invalid_body",
        "forbidden",
        "schedule_limit",
    ],
    400 => SCHEDULE_400,
    403 => "Only primary, secondary and SSO admins can schedule; a `user_admin` cannot \
            (`forbidden`). The `team` filter names a team the admin does not administer \
            (`forbidden`).",
    409 => format!(
        "The admin already has {MAX_SCHEDULES_PER_ADMIN} schedules (`schedule_limit`); \
         delete or edit one."
    ),
);

/// Schedule a recurring export
///
/// Creates a schedule owned by the caller (primary, secondary or SSO admins;
/// at most 5 each). It first runs on `start_date`, then every `frequency`;
/// each run writes an export as the caller (owned by them, named after the
/// schedule and the run's date), emails the caller a link to it when the
/// service has mail set up (one email per run), and publishes a "report
/// ready" notification to the notifications topic (`usage.notifications`
/// by default). The filters are checked now, and a
/// `team` filter must name a team the caller administers; should a run
/// fail all the same (e.g. the admin lost the team since), the schedule
/// shows why in `last_error` and is tried again on the scheduler's next
/// pass.
#[utoipa::path(
    post,
    path = "/v1/schedules",
    operation_id = "createSchedule",
    tag = tags::SCHEDULES,
    request_body(content = ScheduleInput, description = "The schedule."),
    responses(
        (status = 201, description = "The schedule was created.", body = Schedule),
        CreateErrors,
    ),
)]
pub(super) async fn create_schedule(
    State(state): State<AppState>,
    Authed(admin): Authed,
    json: JsonObject,
) -> Result<(StatusCode, Json<Schedule>), ApiError> {
    let input = body(json)?;
    let schedule = state.schedules.create(&admin, input, Utc::now()).await?;
    tracing::info!(admin = %admin.id, schedule_id = %schedule.schedule_id, "schedule created");
    Ok((StatusCode::CREATED, Json(schedule)))
}

/// The path of one schedule.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct SchedulePath {
    /// The schedule's id (a UUID).
    schedule_id: String,
}

/// What a 404 of one schedule means.
const SCHEDULE_404: &str = "No such schedule, or another admin's (`not_found`).";

errors!(
    /// The errors of reading or deleting one schedule.
    OneErrors: ["not_found"],
    404 => SCHEDULE_404,
);

errors!(
    /// The errors of editing one schedule.
    UpdateErrors: [
        "invalid_parameter",
        "invalid_range",
        "invalid_start_date",
        "invalid_body",
        "forbidden",
        "not_found",
    ],
    400 => SCHEDULE_400,
    403 => "The `team` filter names a team the admin does not administer (`forbidden`).",
    404 => SCHEDULE_404,
);

/// One schedule
#[utoipa::path(
    get,
    path = "/v1/schedules/{schedule_id}",
    operation_id = "getSchedule",
    tag = tags::SCHEDULES,
    params(SchedulePath),
    responses((status = 200, description = "The schedule.", body = Schedule), OneErrors),
)]
pub(super) async fn get_schedule(
    State(state): State<AppState>,
    Authed(admin): Authed,
    Path(path): Path<SchedulePath>,
) -> Result<Json<Schedule>, ApiError> {
    state
        .schedules
        .get(&admin.id, &path.schedule_id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("no such schedule"))
}

/// Edit a schedule
///
/// Replaces the schedule's name, start date, frequency, format, kind and
/// filters (a `team` filter must name a team the caller administers). An
/// unchanged start date may have passed. Changing the start
/// date or the frequency starts it afresh (`last_run_date` null, next run on
/// the new start date); other edits keep its last run.
#[utoipa::path(
    put,
    path = "/v1/schedules/{schedule_id}",
    operation_id = "updateSchedule",
    tag = tags::SCHEDULES,
    params(SchedulePath),
    request_body(content = ScheduleInput, description = "The schedule's new settings."),
    responses((status = 200, description = "The schedule as edited.", body = Schedule), UpdateErrors),
)]
pub(super) async fn update_schedule(
    State(state): State<AppState>,
    Authed(admin): Authed,
    Path(path): Path<SchedulePath>,
    json: JsonObject,
) -> Result<Json<Schedule>, ApiError> {
    let input = body(json)?;
    state
        .schedules
        .update(&admin, &path.schedule_id, input, Utc::now())
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("no such schedule"))
}

/// Delete a schedule
///
/// Stops the schedule. Exports it already wrote stay until their 14 days
/// are over.
#[utoipa::path(
    delete,
    path = "/v1/schedules/{schedule_id}",
    operation_id = "deleteSchedule",
    tag = tags::SCHEDULES,
    params(SchedulePath),
    responses((status = 204, description = "Deleted."), OneErrors),
)]
pub(super) async fn delete_schedule(
    State(state): State<AppState>,
    Authed(admin): Authed,
    Path(path): Path<SchedulePath>,
) -> Result<StatusCode, ApiError> {
    if state.schedules.delete(&admin, &path.schedule_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no such schedule"))
    }
}
