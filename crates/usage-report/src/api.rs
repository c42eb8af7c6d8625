//! The HTTP API: the routes and their handlers, each a thin edge
//! over [`Reporter`], [`ExportStore`] and [`ScheduleStore`].
//! Errors answer JSON `{error, message}` ([`ApiError`]). What every request
//! goes through (its span, its metrics, the bearer token) is in
//! [`crate::request`].

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use tower_http::trace::TraceLayer;
use usage_core::admin::{can_schedule, check_unassign};
use usage_core::event::Access;
use usage_report::admins::{Admin, Admins, Role};
use usage_report::error::ApiError;
use usage_report::export::{self, ExportMeta, ExportStore};
use usage_report::model::{Daily, ExportFormat, ExportKind, Overview, ReportParams, UsersPage};
use usage_report::report::Reporter;
use usage_report::schedule::{Schedule, ScheduleInput, ScheduleStore};

use crate::commands::{Publisher, UnassignRequest};
use crate::metrics::Metrics;
use crate::request::{observe, request_span, Authed};

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) admins: Arc<Admins>,
    pub(crate) reporter: Reporter,
    pub(crate) exports: ExportStore,
    pub(crate) schedules: ScheduleStore,
    pub(crate) publisher: Publisher,
    pub(crate) metrics: Metrics,
}

/// Every route (method, path), as `/openapi.json` documents them.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/v1/me", get(me))
        .route("/v1/teams", get(teams))
        .route("/v1/report/overview", get(overview))
        .route("/v1/report/users", get(users))
        .route("/v1/report/daily", get(daily))
        .route("/v1/exports", post(create_export).get(list_exports))
        .route("/v1/exports/{export_id}", get(get_export))
        .route("/v1/exports/{export_id}/download", get(download_export))
        .route("/v1/schedules", get(list_schedules).post(create_schedule))
        .route(
            "/v1/schedules/{schedule_id}",
            get(get_schedule)
                .put(update_schedule)
                .delete(delete_schedule),
        )
        .route("/v1/assignments/unassign", post(unassign))
        .fallback(|| async { ApiError::not_found("no such route (see /openapi.json)") })
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(
            // The span of each request; `observe` logs the request in it, so
            // tower-http's own events are off (none of them would add to it).
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(())
                .on_failure(()),
        )
        .with_state(state)
}

fn params(query: Result<Query<ReportParams>, QueryRejection>) -> Result<ReportParams, ApiError> {
    query
        .map(|Query(p)| p)
        .map_err(|e| ApiError::invalid("query", e.body_text()))
}

fn body<T>(json: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    json.map(|Json(b)| b)
        .map_err(|e| ApiError::invalid_body(e.body_text()))
}

/// The report page: static HTML whose script calls the JSON API with the
/// admin's token (kept in the tab's session storage).
const PAGE: &str = include_str!("page.html");

/// The page's Content-Security-Policy: its one inline script by hash, no
/// other script, no remote anything.
fn page_policy() -> &'static str {
    static POLICY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    POLICY.get_or_init(|| {
        use base64::Engine as _;
        use sha2::Digest as _;
        let script = PAGE
            .split_once("<script>")
            .and_then(|(_, rest)| rest.split_once("</script>"))
            .map_or("", |(script, _)| script);
        let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(script));
        format!(
            "default-src 'none'; script-src 'sha256-{hash}'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'"
        )
    })
}

async fn page() -> Response {
    let policy = HeaderValue::from_str(page_policy())
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"));
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CONTENT_SECURITY_POLICY, policy),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        PAGE,
    )
        .into_response()
}

async fn ready(State(state): State<AppState>) -> Response {
    match state
        .reporter
        .client()
        .query("SELECT 1")
        .fetch_one::<u8>()
        .await
    {
        Ok(_) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: ClickHouse does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "ClickHouse does not answer",
            )
                .into_response()
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn openapi() -> Json<serde_json::Value> {
    Json(usage_report::openapi::document())
}

#[derive(Serialize)]
struct Me {
    id: String,
    email: String,
    role: Role,
    teams: Vec<String>,
    can_schedule: bool,
}

async fn me(Authed(admin): Authed) -> Json<Me> {
    Json(Me {
        can_schedule: can_schedule(admin.role.admin_role()),
        teams: match &admin.teams {
            usage_report::admins::Teams::Every => vec!["*".to_owned()],
            usage_report::admins::Teams::Only(t) => t.clone(),
        },
        id: admin.id,
        email: admin.email,
        role: admin.role,
    })
}

#[derive(Serialize)]
struct TeamsAnswer {
    teams: Vec<usage_report::report::TeamInfo>,
}

async fn teams(
    State(state): State<AppState>,
    Authed(admin): Authed,
) -> Result<Json<TeamsAnswer>, ApiError> {
    Ok(Json(TeamsAnswer {
        teams: state.reporter.teams(&admin).await?,
    }))
}

async fn overview(
    State(state): State<AppState>,
    Authed(admin): Authed,
    query: Result<Query<ReportParams>, QueryRejection>,
) -> Result<Json<Overview>, ApiError> {
    let p = params(query)?;
    let filters = p.filters(Utc::now())?;
    Ok(Json(state.reporter.overview(&admin, filters).await?))
}

async fn users(
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

async fn daily(
    State(state): State<AppState>,
    Authed(admin): Authed,
    query: Result<Query<ReportParams>, QueryRejection>,
) -> Result<Json<Daily>, ApiError> {
    let p = params(query)?;
    let filters = p.filters(Utc::now())?;
    Ok(Json(state.reporter.daily(&admin, &filters).await?))
}

/// The body of `POST /v1/exports`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportRequest {
    kind: ExportKind,
    format: ExportFormat,
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

/// Runs blocking work (rendering, files) off the async threads.
async fn blocking<T, E, F>(work: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: std::error::Error + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(ApiError::internal(&e)),
        Err(e) => Err(ApiError::internal(&e)),
    }
}

async fn create_export(
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

#[derive(Serialize)]
struct ExportList {
    exports: Vec<ExportMeta>,
}

async fn list_exports(
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

async fn get_export(
    State(state): State<AppState>,
    Authed(admin): Authed,
    Path(export_id): Path<String>,
) -> Result<Json<ExportMeta>, ApiError> {
    Ok(Json(owned_export(&state, &admin, export_id).await?))
}

async fn download_export(
    State(state): State<AppState>,
    Authed(admin): Authed,
    Path(export_id): Path<String>,
) -> Result<Response, ApiError> {
    let meta = owned_export(&state, &admin, export_id).await?;
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

#[derive(Serialize)]
struct ScheduleList {
    schedules: Vec<Schedule>,
}

async fn list_schedules(
    State(state): State<AppState>,
    Authed(admin): Authed,
) -> Result<Json<ScheduleList>, ApiError> {
    Ok(Json(ScheduleList {
        schedules: state.schedules.list(&admin.id).await?,
    }))
}

async fn create_schedule(
    State(state): State<AppState>,
    Authed(admin): Authed,
    json: Result<Json<ScheduleInput>, JsonRejection>,
) -> Result<(StatusCode, Json<Schedule>), ApiError> {
    let input = body(json)?;
    let schedule = state.schedules.create(&admin, input, Utc::now()).await?;
    tracing::info!(admin = %admin.id, schedule_id = %schedule.schedule_id, "schedule created");
    Ok((StatusCode::CREATED, Json(schedule)))
}

async fn get_schedule(
    State(state): State<AppState>,
    Authed(admin): Authed,
    Path(schedule_id): Path<String>,
) -> Result<Json<Schedule>, ApiError> {
    state
        .schedules
        .get(&admin.id, &schedule_id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("no such schedule"))
}

async fn update_schedule(
    State(state): State<AppState>,
    Authed(admin): Authed,
    Path(schedule_id): Path<String>,
    json: Result<Json<ScheduleInput>, JsonRejection>,
) -> Result<Json<Schedule>, ApiError> {
    let input = body(json)?;
    state
        .schedules
        .update(&admin, &schedule_id, input, Utc::now())
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("no such schedule"))
}

async fn delete_schedule(
    State(state): State<AppState>,
    Authed(admin): Authed,
    Path(schedule_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.schedules.delete(&admin, &schedule_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no such schedule"))
    }
}

/// The body of `POST /v1/assignments/unassign`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UnassignBody {
    team_id: String,
    user_key: String,
    product: String,
    #[serde(default)]
    access: Option<Access>,
}

#[derive(Serialize)]
struct UnassignAnswer {
    request_id: String,
    status: &'static str,
    topic: String,
}

async fn unassign(
    State(state): State<AppState>,
    Authed(admin): Authed,
    json: Result<Json<UnassignBody>, JsonRejection>,
) -> Result<(StatusCode, Json<UnassignAnswer>), ApiError> {
    let request = body(json)?;
    let held = state
        .reporter
        .held_assignment(
            &admin,
            &request.team_id,
            &request.user_key,
            &request.product,
            request.access,
        )
        .await?;
    let Some(held) = held else {
        state.metrics.unassign("refused");
        return Err(ApiError::unassign_refused(format!(
            "the user holds no assignment of {} in team {}",
            request.product, request.team_id
        )));
    };
    if let Err(refused) = check_unassign(held.via) {
        state.metrics.unassign("refused");
        return Err(ApiError::unassign_refused(format!(
            "{refused}: the assignment comes from {}; change it there instead",
            match &held.group_id {
                Some(group) => format!("group {group}"),
                None => "the team's default assignment".to_owned(),
            }
        )));
    }
    let message = UnassignRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        kind: "unassign_request",
        requested_at: Utc::now(),
        requested_by: admin.id.clone(),
        team_id: held.team_id,
        user_id: held.user_id,
        product: held.product,
        access: held.access.as_str(),
    };
    if let Err(e) = state.publisher.unassign(&message).await {
        state.metrics.unassign("failed");
        return Err(ApiError::unavailable("Kafka", &e));
    }
    state.metrics.unassign("published");
    tracing::info!(admin = %admin.id, request_id = %message.request_id, "unassign requested");
    Ok((
        StatusCode::ACCEPTED,
        Json(UnassignAnswer {
            request_id: message.request_id,
            status: "requested",
            topic: state.publisher.commands_topic().to_owned(),
        }),
    ))
}
