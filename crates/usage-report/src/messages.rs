//! The messages the service publishes to Kafka, as JSON: unassign requests
//! for upstream licensing (the commands topic) and "report ready"
//! notifications for the mail system (the notifications topic). Their
//! schemas are in `/openapi.json` (`x-kafka-messages`), derived from these
//! types. The producer is the binary's (`commands.rs`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use usage_core::event::Access;
use utoipa::ToSchema;

use crate::openapi::schemas;

/// Default topic of the unassign requests sent upstream (`--commands-topic`).
pub const DEFAULT_COMMANDS_TOPIC: &str = "usage.commands";
/// Default topic of the "report ready" notifications (`--notifications-topic`).
pub const DEFAULT_NOTIFICATIONS_TOPIC: &str = "usage.notifications";

/// Published to the commands topic (`usage.commands` by default) for
/// upstream licensing to remove the user's direct assignment; keyed by the
/// user id.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = UnassignRequestCommand)]
pub struct UnassignRequest {
    /// Unique id (the idempotency key).
    pub request_id: String,
    #[serde(rename = "type")]
    #[schema(inline)]
    pub kind: UnassignRequestType,
    pub requested_at: DateTime<Utc>,
    /// The admin's id (no email, no token).
    pub requested_by: String,
    /// The team that holds the assignment (a merged team's own id when it
    /// was assigned there).
    pub team_id: String,
    /// The user id (never the hash).
    pub user_id: String,
    pub product: String,
    #[schema(value_type = schemas::Access)]
    pub access: Access,
}

/// Always `unassign_request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UnassignRequestType {
    UnassignRequest,
}

/// Published to the notifications topic (`usage.notifications` by default)
/// when a schedule's export is ready, for the email with its download link;
/// keyed by the admin id.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ReportReadyNotification)]
pub struct ReportReady {
    /// Unique id (the idempotency key).
    pub notification_id: String,
    #[serde(rename = "type")]
    #[schema(inline)]
    pub kind: ReportReadyType,
    /// The schedule's admin.
    pub admin_id: String,
    pub admin_email: String,
    pub schedule_id: String,
    pub schedule_name: String,
    #[schema(format = Uuid)]
    pub export_id: String,
    /// `/v1/exports/{export_id}/download`: only the schedule's admin can use it.
    pub download_path: String,
    pub created_at: DateTime<Utc>,
}

/// Always `report_ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportReadyType {
    ReportReady,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_types_serialise_as_their_names() {
        let kinds = (
            serde_json::to_value(UnassignRequestType::UnassignRequest).ok(),
            serde_json::to_value(ReportReadyType::ReportReady).ok(),
            serde_json::to_value(Access::Flex).ok(),
        );
        assert_eq!(
            kinds,
            (
                Some("unassign_request".into()),
                Some("report_ready".into()),
                Some(Access::Flex.as_str().into())
            )
        );
    }
}
