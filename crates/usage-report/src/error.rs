//! Errors as the API answers them: an HTTP status and JSON
//! `{"error": "<stable code>", "message": "<for people>"}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// An error answer. `code` is stable (scripts branch on it); `message` is
/// for people and may change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

/// Every stable error code, with its HTTP status (listed in the OpenAPI).
pub const CODES: [(&str, u16, &str); 14] = [
    (
        "unauthorized",
        401,
        "no bearer token, or one no admin holds",
    ),
    (
        "forbidden",
        403,
        "the team is not one the admin administers, or the role may not do this",
    ),
    (
        "invalid_parameter",
        400,
        "a query parameter or body field is malformed or out of range",
    ),
    (
        "invalid_range",
        400,
        "the range's dates break a rule a schema cannot state: `from` or `to` with a \
         preset range, `range=custom` without both, `from` after `to`, `to` after today \
         (UTC), or more than 366 days",
    ),
    (
        "invalid_start_date",
        400,
        "a schedule's start date is before today (UTC) (unless an edit keeps it \
         unchanged) or after 2099-12-31",
    ),
    (
        "invalid_body",
        400,
        "the request body is not the JSON the endpoint takes",
    ),
    (
        "not_found",
        404,
        "no such export, schedule, team row or route (or not the caller's)",
    ),
    (
        "team_merged",
        404,
        "the team was merged into another; its history is in that team's report",
    ),
    (
        "export_expired",
        410,
        "the export was older than 14 days and was deleted",
    ),
    (
        "export_not_ready",
        409,
        "the export is still being written, or it failed: see its state",
    ),
    (
        "schedule_limit",
        409,
        "the admin already has 5 scheduled reports",
    ),
    (
        "unassign_refused",
        409,
        "the user holds the product via a group or a default assignment, or not at all",
    ),
    (
        "unavailable",
        503,
        "ClickHouse or Kafka did not answer; try again",
    ),
    ("internal", 500, "a bug; the log has the details"),
];

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message for people.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required (Authorization: Bearer <token>)",
        )
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// A malformed parameter, named in the message.
    pub fn invalid(parameter: &str, message: impl Into<String>) -> ApiError {
        let message = message.into();
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            if message.contains(parameter) {
                message
            } else {
                format!("{parameter}: {message}")
            },
        )
    }

    /// A range whose dates break a cross-field rule ([`CODES`]'s
    /// `invalid_range`), the parameter named in the message.
    pub fn invalid_range(parameter: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            code: "invalid_range",
            ..ApiError::invalid(parameter, message)
        }
    }

    /// A schedule's start date out of its window (`invalid_start_date`).
    pub fn invalid_start_date(message: impl Into<String>) -> ApiError {
        ApiError {
            code: "invalid_start_date",
            ..ApiError::invalid("start_date", message)
        }
    }

    pub fn invalid_body(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn team_merged(team: &str, into: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "team_merged",
            format!(
                "team {team} was merged into {into}; its history is in the report of team {into}"
            ),
        )
    }

    pub fn export_expired() -> ApiError {
        ApiError::new(
            StatusCode::GONE,
            "export_expired",
            "exports are deleted after 14 days; export the report again",
        )
    }

    /// A download of an export that is not `ready`.
    pub fn export_not_ready(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "export_not_ready", message)
    }

    pub fn schedule_limit(max: usize) -> ApiError {
        ApiError::new(
            StatusCode::CONFLICT,
            "schedule_limit",
            format!("you already have {max} scheduled reports, the most an admin may have; delete or edit one instead"),
        )
    }

    pub fn unassign_refused(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "unassign_refused", message)
    }

    /// A dependency failed; the cause is logged, not sent.
    pub fn unavailable(what: &str, cause: &dyn std::error::Error) -> ApiError {
        tracing::warn!(error = %cause, "{what} failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("{what} is unavailable; try again shortly"),
        )
    }

    /// A bug or an I/O failure; the cause is logged, not sent.
    pub fn internal(cause: &dyn std::error::Error) -> ApiError {
        tracing::error!(error = %cause, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the service log has the details",
        )
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: self.code,
            message: &self.message,
        };
        (self.status, Json(body)).into_response()
    }
}
