//! Exports: written on request (or by a schedule, [`run_export`]), listed,
//! and downloaded by the admin who owns them, for 14 days.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use usage_report::admins::Admin;
use usage_report::error::ApiError;
use usage_report::export::{self, ExportMeta, TOMBSTONE_RETENTION};
use usage_report::model::{ExportFormat, ExportKind, ReportParams};
use usage_report::openapi::{tags, EXPORT_RETENTION_DAYS};
use utoipa::ToSchema;

use super::{blocking, body, errors, AppState, V1Errors};
use crate::request::Authed;

/// The body of `POST /v1/exports`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ExportRequest {
    kind: ExportKind,
    format: ExportFormat,
    /// The report filters; none (the defaults) when absent.
    #[serde(default)]
    filters: ReportParams,
}

/// Runs an export for `admin` and stores it (requests and schedules alike).
pub(crate) async fn run_export(
    state: &AppState,
    admin: &Admin,
    kind: ExportKind,
    format: ExportFormat,
    params: ReportParams,
    schedule_id: Option<String>,
) -> Result<ExportMeta, ApiError> {
    let now = Utc::now();
    let filters = params.filters(now)?;
    let sort = params.sort()?;
    let (bytes, rows) = match kind {
        ExportKind::Report => {
            let rows = state.reporter.all_rows(admin, filters, sort).await?;
            let n = rows.len() as u64;
            (
                blocking(move || export::render_report(&rows, format)).await?,
                n,
            )
        }
        ExportKind::SeatUsage => {
            let rows = state.reporter.seat_usage(admin, &filters).await?;
            let n = rows.len() as u64;
            (
                blocking(move || export::render_seat_usage(&rows, format)).await?,
                n,
            )
        }
        ExportKind::TokenUsage => {
            let rows = state.reporter.token_usage(admin, &filters).await?;
            let n = rows.len() as u64;
            (
                blocking(move || export::render_token_usage(&rows, format)).await?,
                n,
            )
        }
    };
    let store = state.exports.clone();
    let owner = admin.id.clone();
    let origin = if schedule_id.is_some() {
        "schedule"
    } else {
        "request"
    };
    let meta =
        blocking(move || store.save(&owner, kind, format, params, schedule_id, rows, &bytes, now))
            .await?;
    state.metrics.export(kind.as_str(), format.as_str(), origin);
    tracing::info!(admin = %admin.id, export_id = %meta.export_id, kind = kind.as_str(), format = format.as_str(), rows, "export written");
    Ok(meta)
}

errors!(
    /// The errors of `POST /v1/exports`.
    CreateErrors: ["invalid_parameter", "invalid_body", "forbidden", "team_merged"],
    400 => "A filter is malformed or out of range (`invalid_parameter`), or the body is \
            not an `ExportRequest` (`invalid_body`).",
    403 => "The `team` filter names a team the admin does not administer (`forbidden`).",
    404 => "The `team` filter names a team merged into another (`team_merged`).",
);

/// Export the report
///
/// Writes the file now, as the caller (their teams and PII rules), and
/// answers its metadata. `report` holds every row of the users table for
/// the filters (sorted as `sort` says; `page` and `page_size` are ignored);
/// `seat_usage` and `token_usage` hold the raw day-by-day usage for the
/// same filters. The file is deleted 14 days after creation.
#[utoipa::path(
    post,
    path = "/v1/exports",
    operation_id = "createExport",
    tag = tags::EXPORTS,
    request_body(content = ExportRequest, description = "What to export."),
    responses(
        (status = 201, description = "The export was written.", body = ExportMeta),
        CreateErrors,
    ),
)]
pub(super) async fn create_export(
    State(state): State<AppState>,
    Authed(admin): Authed,
    json: Result<Json<ExportRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<ExportMeta>), ApiError> {
    let request = body(json)?;
    let meta = run_export(
        &state,
        &admin,
        request.kind,
        request.format,
        request.filters,
        None,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(meta)))
}

/// The caller's exports.
#[derive(Serialize, ToSchema)]
#[schema(as = ExportList)]
pub(super) struct ExportList {
    /// The caller's exports, newest first.
    exports: Vec<ExportMeta>,
}

/// The caller's exports
///
/// The exports the caller created or their schedules wrote, newest first;
/// exports already deleted by the sweep are left out.
#[utoipa::path(
    get,
    path = "/v1/exports",
    operation_id = "listExports",
    tag = tags::EXPORTS,
    responses((status = 200, description = "The exports.", body = ExportList), V1Errors),
)]
pub(super) async fn list_exports(
    State(state): State<AppState>,
    Authed(admin): Authed,
) -> Result<Json<ExportList>, ApiError> {
    let store = state.exports.clone();
    let exports = blocking(move || store.list(&admin.id)).await?;
    Ok(Json(ExportList { exports }))
}

/// The export, if `admin` may see it: another admin's is "not found".
async fn owned_export(state: &AppState, admin: &Admin, id: String) -> Result<ExportMeta, ApiError> {
    let store = state.exports.clone();
    let meta = blocking(move || store.get(&id)).await?;
    let meta = meta.ok_or_else(|| ApiError::not_found("no such export"))?;
    match export::downloadable(&meta, &admin.id, Utc::now()) {
        Ok(()) => Ok(meta),
        Err(export::Denied::NotFound) => Err(ApiError::not_found("no such export")),
        Err(export::Denied::Expired) => Err(ApiError::export_expired()),
    }
}

errors!(
    /// The errors of the routes of one export.
    ExportErrors: ["not_found", "export_expired"],
    404 => "No such export, another admin's, or deleted long ago (`not_found`).",
    410 => format!(
        "The export is {EXPORT_RETENTION_DAYS} days old and its file was (or is about to \
         be) deleted (`export_expired`); export the report again. Answered until {} days \
         after creation, `not_found` after.",
        TOMBSTONE_RETENTION.num_days()
    ),
);

/// The path of one export.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct ExportPath {
    /// The export's id (a UUID).
    export_id: String,
}

/// One export's metadata
///
/// Only the admin who owns the export can see it.
#[utoipa::path(
    get,
    path = "/v1/exports/{export_id}",
    operation_id = "getExport",
    tag = tags::EXPORTS,
    params(ExportPath),
    responses((status = 200, description = "The export.", body = ExportMeta), ExportErrors),
)]
pub(super) async fn get_export(
    State(state): State<AppState>,
    Authed(admin): Authed,
    Path(path): Path<ExportPath>,
) -> Result<Json<ExportMeta>, ApiError> {
    Ok(Json(owned_export(&state, &admin, path.export_id).await?))
}

/// Download an export's file
///
/// The CSV (UTF-8, `text/csv; charset=utf-8`) or XLSX file. Only the admin
/// who owns the export can download it.
#[utoipa::path(
    get,
    path = "/v1/exports/{export_id}/download",
    operation_id = "downloadExport",
    tag = tags::EXPORTS,
    params(ExportPath),
    responses(
        (status = 200, description = "The file, as an attachment named as `file_name`.",
            headers(("Content-Disposition" = String,
                description = "`attachment; filename=\"<file_name>\"`.")),
            content(
                (String = "text/csv", example = "user_key,name,email,...\n"),
                (String = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
            ),
        ),
        ExportErrors,
    ),
)]
pub(super) async fn download_export(
    State(state): State<AppState>,
    Authed(admin): Authed,
    Path(path): Path<ExportPath>,
) -> Result<Response, ApiError> {
    let meta = owned_export(&state, &admin, path.export_id).await?;
    let store = state.exports.clone();
    let (format, file_name) = (meta.format, meta.file_name.clone());
    let bytes = blocking(move || store.read(&meta)).await?;
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            ),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response())
}
