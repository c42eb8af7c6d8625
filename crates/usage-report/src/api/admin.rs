//! The calling admin and the teams they administer.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use usage_core::admin::can_schedule;
use usage_report::admins::{Role, Teams};
use usage_report::error::ApiError;
use usage_report::openapi::tags;
use usage_report::report::TeamInfo;
use utoipa::ToSchema;

use super::{AppState, V1Errors};
use crate::request::Authed;

/// The admin a bearer token belongs to.
#[derive(Serialize, ToSchema)]
pub(super) struct Me {
    /// The admin's id.
    id: String,
    email: String,
    role: Role,
    /// The team ids the admin administers; `["*"]` means every team.
    teams: Vec<String>,
    /// Whether the admin may schedule exports (primary, secondary and SSO
    /// admins).
    can_schedule: bool,
}

/// The calling admin
///
/// Who the bearer token belongs to: role, teams and whether they may
/// schedule.
#[utoipa::path(
    get,
    path = "/v1/me",
    operation_id = "getMe",
    tag = tags::ADMIN,
    responses((status = 200, description = "The admin.", body = Me), V1Errors),
)]
pub(super) async fn me(Authed(admin): Authed) -> Json<Me> {
    Json(Me {
        can_schedule: can_schedule(admin.role.admin_role()),
        teams: match &admin.teams {
            Teams::Every => vec!["*".to_owned()],
            Teams::Only(t) => t.clone(),
        },
        id: admin.id,
        email: admin.email,
        role: admin.role,
    })
}

/// The teams an admin may pick.
#[derive(Serialize, ToSchema)]
#[schema(as = TeamList)]
pub(super) struct TeamsAnswer {
    /// The current (not merged-away) teams the admin administers.
    teams: Vec<TeamInfo>,
}

/// The admin's teams
///
/// The current teams (not merged into another) the admin administers, with
/// their name and personal data setting: the values of the `team` filter
/// besides `all`.
#[utoipa::path(
    get,
    path = "/v1/teams",
    operation_id = "listTeams",
    tag = tags::ADMIN,
    responses((status = 200, description = "The teams.", body = TeamsAnswer), V1Errors),
)]
pub(super) async fn teams(
    State(state): State<AppState>,
    Authed(admin): Authed,
) -> Result<Json<TeamsAnswer>, ApiError> {
    Ok(Json(TeamsAnswer {
        teams: state.reporter.teams(&admin).await?,
    }))
}
