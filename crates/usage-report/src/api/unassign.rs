//! Unassign requests: checked against the assignment the user holds, then
//! published to the commands topic for upstream licensing to apply.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use usage_core::admin::check_unassign;
use usage_core::event::Access;
use usage_report::error::ApiError;
use usage_report::messages::{UnassignRequest, UnassignRequestType, DEFAULT_COMMANDS_TOPIC};
use usage_report::openapi::{schemas, tags};
use utoipa::ToSchema;

use super::{body, errors, AppState, JsonObject};
use crate::request::Authed;

/// Whom to unassign, as the report shows them: the body of
/// `POST /v1/assignments/unassign`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UnassignInput)]
pub(super) struct UnassignBody {
    /// A current team the admin administers.
    team_id: String,
    /// The row's `user_key`: the user id, or its hash when hashed.
    user_key: String,
    product: String,
    /// Only an assignment with this access; any access when absent.
    #[serde(default)]
    #[schema(value_type = Option<schemas::Access>)]
    access: Option<Access>,
}

/// The answer to an unassign request.
#[derive(Serialize, ToSchema)]
#[schema(as = UnassignAccepted)]
pub(super) struct UnassignAnswer {
    /// The published request's id.
    request_id: String,
    #[schema(inline)]
    status: Requested,
    /// Where the request was published.
    topic: String,
}

/// Always `requested`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum Requested {
    Requested,
}

errors!(
    /// The errors of an unassign request.
    UnassignErrors: ["invalid_body", "forbidden", "team_merged", "unassign_refused"],
    400 => "The body is not an `UnassignInput` (`invalid_body`).",
    403 => "The team is not one the admin administers (`forbidden`).",
    404 => "The team was merged into another (`team_merged`); unassign in the surviving team.",
    409 => "The user holds the product in the team via a group or a default assignment, or \
            holds no assignment of it there (`unassign_refused`).",
);

/// Unassign a user from a product
///
/// Publishes an unassign request (`UnassignRequestCommand`, with the real
/// user id even when the report shows a hash) to the commands topic
/// (`usage.commands` by default) for upstream licensing to apply; the
/// report changes when the resulting `unassign` assignment event arrives.
/// Only a direct assignment can be removed here.
#[utoipa::path(
    post,
    path = "/v1/assignments/unassign",
    operation_id = "requestUnassign",
    tag = tags::ASSIGNMENTS,
    request_body(content = UnassignBody, description = "Whom to unassign, as the report shows them."),
    responses(
        (status = 202, description = "The request was published.", body = UnassignAnswer),
        UnassignErrors,
    ),
    extensions(("x-kafka-publishes" = json!({
        "topic": DEFAULT_COMMANDS_TOPIC,
        "schema": { "$ref": "#/components/schemas/UnassignRequestCommand" }
    }))),
)]
pub(super) async fn unassign(
    State(state): State<AppState>,
    Authed(admin): Authed,
    json: JsonObject,
) -> Result<(StatusCode, Json<UnassignAnswer>), ApiError> {
    let request: UnassignBody = body(json)?;
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
        kind: UnassignRequestType::UnassignRequest,
        requested_at: Utc::now(),
        requested_by: admin.id.clone(),
        team_id: held.team_id,
        user_id: held.user_id,
        product: held.product,
        access: held.access,
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
            status: Requested::Requested,
            topic: state.publisher.commands_topic().to_owned(),
        }),
    ))
}
