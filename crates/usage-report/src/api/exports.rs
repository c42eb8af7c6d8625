//! Exports: accepted on request and written in the background (the caller
//! polls the export until it is `ready`), written at once by a schedule
//! ([`run_export`]), listed, and downloaded by the admin who owns them, for
//! 14 days.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use usage_report::admins::Admin;
use usage_report::error::ApiError;
use usage_report::export::{self, ExportMeta, Written, HEARTBEAT, TOMBSTONE_RETENTION};
use usage_report::model::{ExportFormat, ExportKind, ExportState, ReportParams};
use usage_report::openapi::{tags, EXPORT_RETENTION_DAYS};
use utoipa::ToSchema;

use super::{blocking, body, errors, AppState, JsonObject, V1Errors};
use crate::request::Authed;

/// Exports written at the same time in the background; the others wait,
/// `pending`. Each streams its rows to its file (memory bounded by a few
/// chunks of rows), but reads ClickHouse and writes the disk meanwhile.
static WRITERS: Semaphore = Semaphore::const_new(2);

/// The body of `POST /v1/exports`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ExportRequest {
    kind: ExportKind,
    format: ExportFormat,
    /// The report filters; none (the defaults) when absent.
    #[serde(default, deserialize_with = "usage_report::model::filters_object")]
    filters: ReportParams,
}

/// Writes the file of an export for `admin` (their teams and PII rules),
/// with the filters as they read at `now`: its rows stream from the
/// report to the file as they are read; `progress` is told the rows
/// written now and then. The file is complete, not yet in place.
async fn write_file(
    state: &AppState,
    admin: &Admin,
    kind: ExportKind,
    format: ExportFormat,
    params: &ReportParams,
    now: DateTime<Utc>,
    progress: impl FnMut(u64) + Send + 'static,
) -> Result<Written, ApiError> {
    let filters = params.filters(now)?;
    let (store, reporter) = (&state.exports, &state.reporter);
    match kind {
        ExportKind::Report => {
            let sort = params.sort()?;
            export::write_rows(store, format, progress, |out| {
                reporter.report_rows(admin, filters, sort, out)
            })
            .await
        }
        ExportKind::SeatUsage => {
            export::write_rows(store, format, progress, |out| async move {
                reporter.seat_usage(admin, &filters, out).await
            })
            .await
        }
        ExportKind::TokenUsage => {
            export::write_rows(store, format, progress, |out| async move {
                reporter.token_usage(admin, &filters, out).await
            })
            .await
        }
    }
}

/// Writes an export for `admin` now and stores it, `ready` (schedules).
pub(crate) async fn run_export(
    state: &AppState,
    admin: &Admin,
    kind: ExportKind,
    format: ExportFormat,
    params: ReportParams,
    schedule_id: Option<String>,
) -> Result<ExportMeta, ApiError> {
    let now = Utc::now();
    let written = write_file(state, admin, kind, format, &params, now, |_| {}).await?;
    let rows = written.rows;
    let store = state.exports.clone();
    let owner = admin.id.clone();
    let origin = if schedule_id.is_some() {
        "schedule"
    } else {
        "request"
    };
    let meta =
        blocking(move || store.save(&owner, kind, format, params, schedule_id, written, now))
            .await?;
    state.metrics.export(kind.as_str(), format.as_str(), origin);
    tracing::info!(admin = %admin.id, export_id = %meta.export_id, kind = kind.as_str(), format = format.as_str(), rows, "export written");
    Ok(meta)
}

/// Writes an accepted export in the background: `running` once a writer
/// is free, then `ready` or `failed`; a panic fails it too. Until it ends,
/// its sidecar is touched every [`HEARTBEAT`] (an export no one touches
/// lost its writer: see `ExportStore::settle`).
fn spawn_export(state: AppState, admin: Admin, meta: ExportMeta) {
    let store = state.exports.clone();
    let accepted = meta.clone();
    let mut job = tokio::spawn(write_export(state, admin, meta));
    tokio::spawn(async move {
        let mut beat = tokio::time::interval(HEARTBEAT);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        beat.tick().await; // the first tick is now: the sidecar was just written
        let ended = loop {
            tokio::select! {
                ended = &mut job => break ended,
                _ = beat.tick() => {
                    let (store, id) = (store.clone(), accepted.export_id.clone());
                    if let Err(e) = blocking(move || store.touch(&id)).await {
                        tracing::warn!(error = %e, "cannot touch an unfinished export");
                    }
                }
            }
        };
        if let Err(e) = ended {
            tracing::error!(export_id = %accepted.export_id, error = %e, "export job failed");
            let failed = blocking(move || {
                store.fail(accepted, "internal error; the service log has the details")
            })
            .await;
            if let Err(e) = failed {
                tracing::error!(error = %e, "cannot mark a failed export");
            }
        }
    });
}

/// Records an export's progress; a failure to do so is logged (the export
/// goes on: its end is written again).
async fn record(state: &AppState, meta: &ExportMeta) {
    let store = state.exports.clone();
    let meta = meta.clone();
    if let Err(e) = blocking(move || store.progress(&meta)).await {
        tracing::warn!(error = %e, "cannot record an export's progress");
    }
}

async fn write_export(state: AppState, admin: Admin, mut meta: ExportMeta) {
    // The semaphore is never closed: a permit always comes.
    let _writer = WRITERS.acquire().await;
    meta.state = ExportState::Running;
    record(&state, &meta).await;
    let (kind, format) = (meta.kind, meta.format);
    let written = async {
        // The rows written so far, in the sidecar now and then (blocking:
        // told on the writer's thread).
        let progress = {
            let (store, mut running) = (state.exports.clone(), meta.clone());
            move |rows| {
                running.rows = rows;
                if let Err(e) = store.progress(&running) {
                    tracing::warn!(error = %e, "cannot record an export's progress");
                }
            }
        };
        let file = write_file(
            &state,
            &admin,
            kind,
            format,
            &meta.filters,
            meta.created_at,
            progress,
        )
        .await?;
        let store = state.exports.clone();
        let accepted = meta.clone();
        blocking(move || store.complete(accepted, file)).await
    }
    .await;
    match written {
        Ok(ready) => {
            state
                .metrics
                .export(kind.as_str(), format.as_str(), "request");
            tracing::info!(admin = %admin.id, export_id = %ready.export_id, kind = kind.as_str(), format = format.as_str(), rows = ready.rows, "export written");
        }
        Err(e) => {
            tracing::warn!(admin = %admin.id, export_id = %meta.export_id, error = %e, "export failed");
            let store = state.exports.clone();
            let message = e.message().to_owned();
            if let Err(e) = blocking(move || store.fail(meta, &message)).await {
                tracing::error!(error = %e, "cannot mark a failed export");
            }
        }
    }
}

errors!(
    /// The errors of `POST /v1/exports`.
    CreateErrors: ["invalid_parameter", "invalid_range", "invalid_body", "forbidden", "team_merged"],
    400 => "A filter is malformed or out of range (`invalid_parameter`), the range's \
            dates break a rule no schema states (`invalid_range`: `to` after today (UTC), \
            `from` after `to`, more than 366 days), or the body is not an \
            `ExportRequest` (`invalid_body`).",
    403 => "The `team` filter names a team the admin does not administer (`forbidden`).",
    404 => "The `team` filter names a team merged into another (`team_merged`).",
);

/// Export the report
///
/// Accepts the export and writes it in the background, as the caller
/// (their teams and PII rules): the answer is the export, `pending`, with
/// its `Location`; poll `GET /v1/exports/{export_id}` until its `state` is
/// `ready` (then download it from `download_path`) or `failed` (`error`
/// says why; export again). The filters are checked before it is accepted.
/// `report` holds every row of the users table for the filters (sorted as
/// `sort` says; `page` and `page_size` are ignored); `seat_usage` and
/// `token_usage` hold the raw day-by-day usage for the same filters. The
/// file is deleted 14 days after creation (when the export was asked for).
#[utoipa::path(
    post,
    path = "/v1/exports",
    operation_id = "createExport",
    tag = tags::EXPORTS,
    request_body(content = ExportRequest, description = "What to export."),
    responses(
        (status = 202, description = "The export was accepted; it is written in the background.",
            body = ExportMeta,
            headers(("Location" = String,
                description = "Where to poll it: `/v1/exports/{export_id}`."))),
        CreateErrors,
    ),
)]
pub(super) async fn create_export(
    State(state): State<AppState>,
    Authed(admin): Authed,
    json: JsonObject,
) -> Result<Response, ApiError> {
    let request: ExportRequest = body(json)?;
    let now = Utc::now();
    // Refused now, not in the background: bad filters, another's team.
    let filters = request.filters.validate(now)?;
    state.reporter.check_scope(&admin, &filters).await?;
    let store = state.exports.clone();
    let (owner, kind, format, params) = (
        admin.id.clone(),
        request.kind,
        request.format,
        request.filters,
    );
    let meta = blocking(move || store.accept(&owner, kind, format, params, now)).await?;
    let location = HeaderValue::from_str(&format!("/v1/exports/{}", meta.export_id))
        .map_err(|e| ApiError::internal(&e))?;
    tracing::info!(admin = %admin.id, export_id = %meta.export_id, kind = kind.as_str(), format = format.as_str(), "export accepted");
    spawn_export(state, admin, meta.clone());
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(meta),
    )
        .into_response())
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
    let exports = blocking(move || {
        let now = SystemTime::now();
        store
            .list(&admin.id)
            .map(|list| list.into_iter().map(|m| store.settle(m, now)).collect())
    })
    .await?;
    Ok(Json(ExportList { exports }))
}

/// The export, if `admin` may see it: another admin's is "not found".
async fn owned_export(state: &AppState, admin: &Admin, id: String) -> Result<ExportMeta, ApiError> {
    let store = state.exports.clone();
    let meta = blocking(move || {
        let now = SystemTime::now();
        store.get(&id).map(|m| m.map(|m| store.settle(m, now)))
    })
    .await?;
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

errors!(
    /// The errors of downloading an export.
    DownloadErrors: ["not_found", "export_expired", "export_not_ready"],
    404 => "No such export, another admin's, or deleted long ago (`not_found`).",
    409 => "The export is not `ready`: still `pending` or `running` (poll \
            `GET /v1/exports/{export_id}`), or `failed` (`export_not_ready`).",
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

/// One export's metadata and progress
///
/// Its `state` (`pending`, `running` with the rows read, `ready` with its
/// `download_path`, or `failed` with an `error`): poll it after `POST
/// /v1/exports`. Only the admin who owns the export can see it.
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
/// The CSV (UTF-8, `text/csv; charset=utf-8`) or XLSX file, once the
/// export is `ready`. Only the admin who owns the export can download it.
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
        DownloadErrors,
    ),
)]
pub(super) async fn download_export(
    State(state): State<AppState>,
    Authed(admin): Authed,
    Path(path): Path<ExportPath>,
) -> Result<Response, ApiError> {
    let meta = owned_export(&state, &admin, path.export_id).await?;
    match meta.state {
        ExportState::Ready => {}
        ExportState::Pending | ExportState::Running => {
            return Err(ApiError::export_not_ready(
                "the export is still being written; poll it until it is ready",
            ))
        }
        ExportState::Failed => {
            return Err(ApiError::export_not_ready(format!(
                "the export failed: {}",
                meta.error.as_deref().unwrap_or("no reason recorded")
            )))
        }
    }
    let store = state.exports.clone();
    let (format, file_name) = (meta.format, meta.file_name.clone());
    let (file, length) = blocking(move || store.open_file(&meta)).await?;
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            ),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CONTENT_LENGTH, HeaderValue::from(length)),
        ],
        file_body(file),
    )
        .into_response())
}

/// A file's bytes as a response body, read a block at a time off the
/// async threads: a download holds a block, not the file.
fn file_body(file: std::fs::File) -> Body {
    const BLOCK: usize = 64 * 1024;
    Body::from_stream(futures::stream::try_unfold(file, |mut file| async move {
        let (block, file) = tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut block = vec![0; BLOCK];
            let n = file.read(&mut block)?;
            block.truncate(n);
            Ok::<_, std::io::Error>((block, file))
        })
        .await
        .map_err(std::io::Error::other)??;
        Ok::<_, std::io::Error>((!block.is_empty()).then(|| (Bytes::from(block), file)))
    }))
}
