//! The HTTP API: the routes and their handlers, each a thin edge over
//! [`Reporter`], [`ExportStore`] and [`ScheduleStore`]. Errors answer JSON
//! `{error, message}` ([`ApiError`]). What every request goes through (its
//! span, its metrics, the bearer token) is in [`crate::request`].
//!
//! Each handler carries its OpenAPI operation (`#[utoipa::path]`: its doc
//! comment is the summary and description, its responses name its error
//! codes with [`errors!`]); [`routes`] collects them with the router that
//! serves them, so `/openapi.json` ([`document`]) lists exactly the routes
//! served.
//!
//! - `service`: the page, health, readiness, metrics, the document;
//! - `admin`: the calling admin and their teams;
//! - `report`: the overview tiles, the users table, the daily chart;
//! - `exports`: exports and their files;
//! - `schedules`: scheduled exports;
//! - `unassign`: unassign requests.

mod admin;
mod exports;
mod report;
mod schedules;
mod service;
mod unassign;

use std::sync::{Arc, OnceLock};

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::Query;
use axum::middleware;
use axum::{Json, Router};
use tower_http::trace::TraceLayer;
use usage_report::admins::Admins;
use usage_report::error::ApiError;
use usage_report::export::ExportStore;
use usage_report::model::ReportParams;
use usage_report::report::Reporter;
use usage_report::schedule::ScheduleStore;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::commands::Publisher;
use crate::metrics::Metrics;
use crate::request::{observe, request_span};

pub(crate) use exports::run_export;
pub(crate) use service::page_template;

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) admins: Arc<Admins>,
    pub(crate) reporter: Reporter,
    pub(crate) exports: ExportStore,
    pub(crate) schedules: ScheduleStore,
    pub(crate) publisher: Publisher,
    pub(crate) metrics: Metrics,
    /// The page as served and its Content-Security-Policy.
    pub(crate) page: Arc<usage_report::page::Page>,
}

/// Declares the error answers of a route beside its handler, for its
/// `#[utoipa::path(responses(..))]`: the stable codes it answers besides
/// the `/v1` ones (`unauthorized`, `unavailable`, `internal`), and what a
/// status means for this route where the codes' meanings are not enough.
macro_rules! errors {
    ($(#[$doc:meta])* $name:ident: [$($code:literal),* $(,)?] $(, $status:literal => $note:expr)* $(,)?) => {
        $(#[$doc])*
        pub(crate) struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
            > {
                usage_report::openapi::errors::responses(
                    &[$($code),*],
                    &[$(($status, ($note).to_string())),*],
                )
            }
        }
    };
}
pub(crate) use errors;

errors!(
    /// The errors of a `/v1` route that takes no input.
    V1Errors: []
);

/// Every route, each with its OpenAPI operation. One `routes!` per path:
/// the methods of a path are served and documented together.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(service::page))
        .routes(routes!(service::healthz))
        .routes(routes!(service::readyz))
        .routes(routes!(service::metrics))
        .routes(routes!(service::openapi))
        .routes(routes!(admin::me))
        .routes(routes!(admin::teams))
        .routes(routes!(report::overview))
        .routes(routes!(report::users))
        .routes(routes!(report::daily))
        .routes(routes!(exports::list_exports, exports::create_export))
        .routes(routes!(exports::get_export))
        .routes(routes!(exports::download_export))
        .routes(routes!(
            schedules::list_schedules,
            schedules::create_schedule
        ))
        .routes(routes!(
            schedules::get_schedule,
            schedules::update_schedule,
            schedules::delete_schedule
        ))
        .routes(routes!(unassign::unassign))
}

/// The service: every route of [`routes`], the fallback (404 JSON), the
/// request span and metrics.
pub(crate) fn router(state: AppState) -> Router {
    let (router, _) = routes().split_for_parts();
    router
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

/// The OpenAPI document of [`routes`], as served at `/openapi.json`.
pub(crate) fn document() -> &'static serde_json::Value {
    static DOCUMENT: OnceLock<serde_json::Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| usage_report::openapi::document(routes().into_openapi()))
}

fn params(query: Result<Query<ReportParams>, QueryRejection>) -> Result<ReportParams, ApiError> {
    query
        .map(|Query(p)| p)
        .map_err(|e| ApiError::invalid("query", e.body_text()))
}

/// A JSON body as the handlers take it: an object (serde would build a
/// struct from an array too; the document says object).
type JsonObject = Result<Json<serde_json::Map<String, serde_json::Value>>, JsonRejection>;

/// The body `T`, from a JSON object.
fn body<T: serde::de::DeserializeOwned>(json: JsonObject) -> Result<T, ApiError> {
    let Json(object) = json.map_err(|e| ApiError::invalid_body(e.body_text()))?;
    serde_json::from_value(serde_json::Value::Object(object)).map_err(|e| {
        ApiError::invalid_body(format!(
            "Failed to deserialize the JSON body into the target type: {e}"
        ))
    })
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

#[cfg(test)]
pub(crate) mod tests;
