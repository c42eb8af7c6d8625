//! The public routes of the service: the report page, liveness, readiness,
//! the metrics and the OpenAPI document.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use usage_report::openapi::tags;

use super::AppState;

/// The report page: static HTML whose script calls the JSON API with the
/// admin's token (kept in the tab's session storage).
const PAGE: &str = include_str!("../page.html");

/// The page's template (`usage_report::page::Page` names the avatar
/// origins in it and derives its Content-Security-Policy).
pub(crate) fn page_template() -> &'static str {
    PAGE
}

/// The usage report page
///
/// The report as a page for admins: the overview tiles, the filters, the
/// daily usage chart, the sortable, paginated users table, exports,
/// scheduled reports and unassign. Public: the page asks for the admin's
/// token and calls the `/v1` API with it, like any other client.
#[utoipa::path(
    get,
    path = "/",
    operation_id = "getReportPage",
    tag = tags::SERVICE,
    security(()),
    responses((status = 200, description = "The page.", body = String, content_type = "text/html")),
)]
pub(super) async fn page(State(state): State<AppState>) -> Response {
    let policy = HeaderValue::from_str(&state.page.policy)
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
        state.page.html.clone(),
    )
        .into_response()
}

/// Liveness
///
/// Answers while the process serves HTTP; checks no dependency.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "getHealthz",
    tag = tags::SERVICE,
    security(()),
    responses((status = 200, description = "Alive.", body = String, content_type = "text/plain", example = "ok")),
)]
pub(super) async fn healthz() -> &'static str {
    "ok"
}

/// Readiness
///
/// Ready when ClickHouse answers a query.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "getReadyz",
    tag = tags::SERVICE,
    security(()),
    responses(
        (status = 200, description = "ClickHouse answered: the report can be served.",
            body = String, content_type = "text/plain", example = "ready"),
        (status = 503, description = "ClickHouse did not answer: not ready to serve the report.",
            body = String, content_type = "text/plain"),
    ),
)]
pub(super) async fn readyz(State(state): State<AppState>) -> Response {
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

/// Prometheus metrics
///
/// The service's metrics in the Prometheus text exposition format.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "getMetrics",
    tag = tags::SERVICE,
    security(()),
    responses((status = 200, description = "The metrics.", body = String,
        content_type = "text/plain; version=0.0.4")),
)]
pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// This document
///
/// The OpenAPI 3.1 document of the API, derived from the routes and their
/// types.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "getOpenApi",
    tag = tags::SERVICE,
    security(()),
    responses((status = 200, description = "The document.", body = Object)),
)]
pub(super) async fn openapi() -> Json<&'static serde_json::Value> {
    Json(super::document())
}
