//! The OpenAPI 3.1 document served at `/openapi.json`: every endpoint, with
//! its query parameters, request body, response schemas and error answers.
//!
//! The stable names (parameters, enums, error codes, sort columns, page
//! limits) are taken from the code that enforces them — [`crate::model`],
//! [`crate::error::CODES`], [`usage_core`] — so the document cannot drift
//! from them. [`ROUTES`] lists every documented operation; the router's test
//! compares it with the routes it serves.

use serde_json::{json, Map, Value};
use usage_core::admin::{EXPORT_RETENTION, MAX_SCHEDULES_PER_ADMIN};
use usage_core::event::Access;
use usage_core::range::{RangePreset, MAX_CUSTOM_DAYS};
use usage_core::status::Status;

use crate::error::CODES;
use crate::export::TOMBSTONE_RETENTION;
use crate::model::{ExportFormat, ExportKind, SortColumn, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use crate::schedule::{Frequency, LAST_START_DATE, MAX_NAME_CHARS};

/// Every documented operation as (HTTP method, path template), in the
/// document's order. Path parameters are written `{name}`, as axum routes
/// spell them.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/v1/me"),
    ("GET", "/v1/teams"),
    ("GET", "/v1/report/overview"),
    ("GET", "/v1/report/users"),
    ("GET", "/v1/report/daily"),
    ("GET", "/v1/exports"),
    ("POST", "/v1/exports"),
    ("GET", "/v1/exports/{export_id}"),
    ("GET", "/v1/exports/{export_id}/download"),
    ("GET", "/v1/schedules"),
    ("POST", "/v1/schedules"),
    ("GET", "/v1/schedules/{schedule_id}"),
    ("PUT", "/v1/schedules/{schedule_id}"),
    ("DELETE", "/v1/schedules/{schedule_id}"),
    ("POST", "/v1/assignments/unassign"),
];

/// The report filters, as query parameters (components/parameters names).
const FILTER_PARAMETERS: [&str; 9] = [
    "team", "range", "from", "to", "product", "access", "status", "group", "q",
];

/// The filters of the users table, with its sort and paging.
const USERS_PARAMETERS: [&str; 12] = [
    "team",
    "range",
    "from",
    "to",
    "product",
    "access",
    "status",
    "group",
    "q",
    "sort",
    "page",
    "page_size",
];

/// Errors any `/v1` operation may answer.
const V1_ERRORS: [&str; 3] = ["unauthorized", "unavailable", "internal"];

/// How long an export is kept, in days (docs/rules.md rule 8).
const EXPORT_RETENTION_DAYS: i64 = EXPORT_RETENTION.num_days();
/// How long after its creation a swept export still answers 410, in days.
const TOMBSTONE_DAYS: i64 = TOMBSTONE_RETENTION.num_days();
/// The most schedules one admin may have (docs/rules.md rule 9).
const MAX_SCHEDULES: usize = MAX_SCHEDULES_PER_ADMIN;
/// Default topic of the unassign requests sent upstream.
const COMMANDS_TOPIC: &str = "usage.commands";
/// Default topic of the "report ready" notifications.
const NOTIFICATIONS_TOPIC: &str = "usage.notifications";

/// The OpenAPI 3.1.0 document of the usage report API.
pub fn document() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": info(),
        "tags": tags(),
        "security": [{ "bearerAuth": [] }],
        "paths": paths(),
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An admin's token (`Authorization: Bearer <token>`). \
                        The service keeps only its SHA-256 and compares in constant time. \
                        Required on every `/v1` operation; `/`, `/healthz`, `/readyz`, \
                        `/metrics` and `/openapi.json` are public."
                }
            },
            "parameters": parameters(),
            "schemas": schemas(),
            "responses": error_components(),
        },
        "x-kafka-messages": {
            "unassign_request": {
                "topic": COMMANDS_TOPIC,
                "key": "user_id",
                "description": "Published by `POST /v1/assignments/unassign` for upstream \
                    licensing to apply (topic configurable, `--commands-topic`); keyed by \
                    the user id.",
                "schema": schema_ref("UnassignRequestCommand"),
            },
            "report_ready": {
                "topic": NOTIFICATIONS_TOPIC,
                "key": "admin_id",
                "description": "Published after a due schedule's export is written, for \
                    the mail system (topic configurable, `--notifications-topic`); keyed by \
                    the admin id.",
                "schema": schema_ref("ReportReadyNotification"),
            }
        }
    })
}

fn info() -> Value {
    json!({
        "title": "Usage report",
        "version": env!("CARGO_PKG_VERSION"),
        "summary": "Seat and Flex token usage of licensed products, for admins.",
        "description": "One view of subscription seats and prepaid Flex tokens per \
            (team, user, product), from the license authorization calls of \
            internet-connected machines (offline usage is not reported). Dates are \
            UTC dates and ranges include both ends. A report covers the teams the \
            admin administers; after a team merge, the surviving team's report \
            includes the merged team's history. Groups are shown as they are now. \
            When a team's personal data (PII) setting is off, its users' names, \
            emails and avatars are replaced by a stable keyed hash; with all teams \
            selected, everyone is hashed if any team in scope has it off.\n\n\
            Every error is JSON `{\"error\": <stable code>, \"message\": <for people>}`; \
            scripts branch on `error`, never on `message`.",
        "license": { "name": "Apache-2.0", "identifier": "Apache-2.0" },
    })
}

fn tags() -> Value {
    json!([
        { "name": "service", "description": "Health, readiness, metrics, this document and the report page (public)." },
        { "name": "admin", "description": "The calling admin and the teams they administer." },
        {
            "name": "report",
            "description": "The overview tiles and the users table, for the report filters \
                (query parameters; an unknown one is refused with 400 `invalid_parameter`)."
        },
        {
            "name": "exports",
            "description": format!(
                "The report (current filters) or the raw day-by-day seat and token usage, \
                 as CSV or XLSX files. Only the admin who created an export (or whose \
                 schedule did) can see or download it. Exports are deleted {EXPORT_RETENTION_DAYS} \
                 days after they are created."
            )
        },
        {
            "name": "schedules",
            "description": format!(
                "Recurring exports, for primary, secondary and SSO admins, at most \
                 {MAX_SCHEDULES} per admin; only their admin can see them. On each due date \
                 the service runs the schedule: it writes an export owned by the schedule's \
                 admin with the stored filters (a rolling range rolls) and publishes a \
                 \"report ready\" notification (`ReportReadyNotification`) to the \
                 notifications topic (`{NOTIFICATIONS_TOPIC}` by default) for the email \
                 carrying the download link."
            )
        },
        {
            "name": "assignments",
            "description": format!(
                "Unassign a user from the report: an unassign request published to the \
                 commands topic (`{COMMANDS_TOPIC}` by default) for upstream licensing to \
                 apply. Users assigned through a group or a default assignment cannot be \
                 unassigned here."
            )
        },
    ])
}

fn paths() -> Value {
    json!({
        "/": { "get": report_page() },
        "/": { "get": report_page() },
        "/healthz": { "get": healthz() },
        "/readyz": { "get": readyz() },
        "/metrics": { "get": metrics() },
        "/openapi.json": { "get": openapi_json() },
        "/v1/me": { "get": me() },
        "/v1/teams": { "get": teams() },
        "/v1/report/overview": { "get": overview() },
        "/v1/report/users": { "get": users() },
        "/v1/report/daily": { "get": daily() },
        "/v1/exports": { "get": list_exports(), "post": create_export() },
        "/v1/exports/{export_id}": { "get": get_export() },
        "/v1/exports/{export_id}/download": { "get": download_export() },
        "/v1/schedules": { "get": list_schedules(), "post": create_schedule() },
        "/v1/schedules/{schedule_id}": {
            "get": get_schedule(),
            "put": update_schedule(),
            "delete": delete_schedule(),
        },
        "/v1/assignments/unassign": { "post": unassign() },
    })
}

// ---------------------------------------------------------------- operations

fn report_page() -> Value {
    json!({
        "operationId": "getReportPage",
        "tags": ["service"],
        "summary": "The usage report page",
        "description": "The report as a page for admins: the overview tiles, the filters, \
            the daily usage chart, the sortable, paginated users table, exports, scheduled \
            reports and unassign. Public: the page asks for the admin's token and calls the \
            `/v1` API with it, like any other client.",
        "security": [],
        "responses": {
            "200": {
                "description": "The page.",
                "content": { "text/html": { "schema": { "type": "string" } } }
            }
        }
    })
}

fn healthz() -> Value {
    json!({
        "operationId": "getHealthz",
        "tags": ["service"],
        "summary": "Liveness",
        "description": "Answers while the process serves HTTP; checks no dependency.",
        "security": [],
        "responses": {
            "200": {
                "description": "Alive.",
                "content": { "text/plain": { "schema": { "type": "string", "const": "ok" } } }
            }
        }
    })
}

fn readyz() -> Value {
    let mut responses = Map::new();
    responses.insert(
        "200".to_owned(),
        json!({
            "description": "ClickHouse answered: the report can be served.",
            "content": { "text/plain": { "schema": { "type": "string", "const": "ready" } } }
        }),
    );
    responses.insert(
        "503".to_owned(),
        json!({
            "description": "ClickHouse did not answer: not ready to serve the report.",
            "content": { "text/plain": { "schema": { "type": "string" } } }
        }),
    );
    json!({
        "operationId": "getReadyz",
        "tags": ["service"],
        "summary": "Readiness",
        "description": "Ready when ClickHouse answers a query.",
        "security": [],
        "responses": responses,
    })
}

fn metrics() -> Value {
    json!({
        "operationId": "getMetrics",
        "tags": ["service"],
        "summary": "Prometheus metrics",
        "description": "The service's metrics in the Prometheus text exposition format.",
        "security": [],
        "responses": {
            "200": {
                "description": "The metrics.",
                "content": { "text/plain; version=0.0.4": { "schema": { "type": "string" } } }
            }
        }
    })
}

fn openapi_json() -> Value {
    json!({
        "operationId": "getOpenApi",
        "tags": ["service"],
        "summary": "This document",
        "description": "The OpenAPI 3.1 document of the API.",
        "security": [],
        "responses": {
            "200": {
                "description": "The document.",
                "content": { "application/json": { "schema": { "type": "object" } } }
            }
        }
    })
}

fn me() -> Value {
    json!({
        "operationId": "getMe",
        "tags": ["admin"],
        "summary": "The calling admin",
        "description": "Who the bearer token belongs to: role, teams and whether they may schedule.",
        "responses": responses(ok("200", "The admin.", "Me"), &V1_ERRORS, &[]),
    })
}

fn teams() -> Value {
    json!({
        "operationId": "listTeams",
        "tags": ["admin"],
        "summary": "The admin's teams",
        "description": "The current teams (not merged into another) the admin administers, \
            with their name and personal data setting: the values of the `team` filter \
            besides `all`.",
        "responses": responses(ok("200", "The teams.", "TeamList"), &V1_ERRORS, &[]),
    })
}

fn overview() -> Value {
    json!({
        "operationId": "getOverview",
        "tags": ["report"],
        "summary": "The overview tiles",
        "description": "The Subscriptions and Flex tiles for the filters. Subscriptions \
            counts the seats assigned now ((user, product) seat assignments in force) and \
            how many of them are active, inactive or not yet active over the range; \
            `inactive` is absent with all teams selected (a user may be inactive in one \
            team and active in another). Flex counts the tokens of the usage windows \
            started in the range, the distinct users with Flex usage and the sum of their \
            days used.",
        "parameters": parameter_refs(&FILTER_PARAMETERS),
        "responses": responses(
            ok("200", "The tiles and the dates they cover.", "Overview"),
            &report_errors(),
            &[REPORT_400],
        ),
    })
}

fn users() -> Value {
    json!({
        "operationId": "listUsers",
        "tags": ["report"],
        "summary": "The users table",
        "description": "One row per (current team, user, product, access) matching the \
            filters, sorted, one page at a time; `total` counts the matching rows over \
            all pages. A page past the end has no rows.",
        "parameters": parameter_refs(&USERS_PARAMETERS),
        "responses": responses(
            ok("200", "One page of rows.", "UsersPage"),
            &report_errors(),
            &[REPORT_400],
        ),
    })
}

fn daily() -> Value {
    json!({
        "operationId": "getDaily",
        "tags": ["report"],
        "summary": "Usage per day (the chart)",
        "description": "Every UTC date of the range, in order: the distinct users with at \
            least one authorization that day, the report rows used that day (the day's \
            share of the rows' days used) and the tokens of the Flex usage windows that started \
            that day. The `team`, range, `product` and `access` filters apply; the row \
            filters (`status`, `group`, `q`) do not: the chart is of the team.",
        "parameters": parameter_refs(&FILTER_PARAMETERS),
        "responses": responses(
            ok("200", "One point per date of the range.", "Daily"),
            &report_errors(),
            &[REPORT_400],
        ),
    })
}

fn create_export() -> Value {
    let mut codes = vec![
        "invalid_parameter",
        "invalid_body",
        "forbidden",
        "team_merged",
    ];
    codes.extend(V1_ERRORS);
    json!({
        "operationId": "createExport",
        "tags": ["exports"],
        "summary": "Export the report",
        "description": format!(
            "Writes the file now, as the caller (their teams and PII rules), and answers \
             its metadata. `report` holds every row of the users table for the filters \
             (sorted as `sort` says; `page` and `page_size` are ignored); `seat_usage` and \
             `token_usage` hold the raw day-by-day usage for the same filters. The file is \
             deleted {EXPORT_RETENTION_DAYS} days after creation."
        ),
        "requestBody": json_body("ExportRequest", "What to export."),
        "responses": responses(
            ok("201", "The export was written.", "ExportMeta"),
            &codes,
            &[
                ("400", "A filter is malformed or out of range (`invalid_parameter`), or the body is not an `ExportRequest` (`invalid_body`)."),
                ("403", "The `team` filter names a team the admin does not administer (`forbidden`)."),
                ("404", "The `team` filter names a team merged into another (`team_merged`)."),
            ],
        ),
    })
}

fn list_exports() -> Value {
    json!({
        "operationId": "listExports",
        "tags": ["exports"],
        "summary": "The caller's exports",
        "description": "The exports the caller created or their schedules wrote, newest first; \
            exports already deleted by the sweep are left out.",
        "responses": responses(ok("200", "The exports.", "ExportList"), &V1_ERRORS, &[]),
    })
}

const EXPORT_404: (&str, &str) = (
    "404",
    "No such export, another admin's, or deleted long ago (`not_found`).",
);

fn export_410() -> (&'static str, String) {
    (
        "410",
        format!(
            "The export is {EXPORT_RETENTION_DAYS} days old and its file was (or is about to \
             be) deleted (`export_expired`); export the report again. Answered until \
             {TOMBSTONE_DAYS} days after creation, `not_found` after."
        ),
    )
}

fn get_export() -> Value {
    let expired = export_410();
    let mut codes = vec!["not_found", "export_expired"];
    codes.extend(V1_ERRORS);
    json!({
        "operationId": "getExport",
        "tags": ["exports"],
        "summary": "One export's metadata",
        "description": "Only the admin who owns the export can see it.",
        "parameters": parameter_refs(&["export_id"]),
        "responses": responses(
            ok("200", "The export.", "ExportMeta"),
            &codes,
            &[EXPORT_404, (expired.0, expired.1.as_str())],
        ),
    })
}

fn download_export() -> Value {
    let expired = export_410();
    let mut codes = vec!["not_found", "export_expired"];
    codes.extend(V1_ERRORS);
    let mut success = Map::new();
    success.insert(
        "200".to_owned(),
        json!({
            "description": "The file, as an attachment named as `file_name`.",
            "headers": {
                "Content-Disposition": {
                    "description": "`attachment; filename=\"<file_name>\"`.",
                    "schema": { "type": "string" }
                }
            },
            "content": {
                "text/csv": {
                    "schema": { "type": "string" },
                    "example": "user_key,name,email,...\n"
                },
                (ExportFormat::Xlsx.content_type()): {
                    "schema": {
                        "type": "string",
                        "contentMediaType": ExportFormat::Xlsx.content_type()
                    }
                }
            }
        }),
    );
    json!({
        "operationId": "downloadExport",
        "tags": ["exports"],
        "summary": "Download an export's file",
        "description": "The CSV (UTF-8, `text/csv; charset=utf-8`) or XLSX file. Only \
            the admin who owns the export can download it.",
        "parameters": parameter_refs(&["export_id"]),
        "responses": responses(
            Value::Object(success),
            &codes,
            &[EXPORT_404, (expired.0, expired.1.as_str())],
        ),
    })
}

fn list_schedules() -> Value {
    json!({
        "operationId": "listSchedules",
        "tags": ["schedules"],
        "summary": "The caller's schedules",
        "description": "The caller's scheduled exports (other admins' are never shown).",
        "responses": responses(ok("200", "The schedules.", "ScheduleList"), &V1_ERRORS, &[]),
    })
}

fn schedule_write_errors() -> Vec<&'static str> {
    let mut codes = vec!["invalid_parameter", "invalid_body"];
    codes.extend(V1_ERRORS);
    codes
}

const SCHEDULE_400: (&str, &str) = (
    "400",
    "A field or filter is malformed or out of range (`invalid_parameter`), or the body is not a `ScheduleInput` (`invalid_body`).",
);
const SCHEDULE_403: (&str, &str) = (
    "403",
    "Only primary, secondary and SSO admins can schedule; a `user_admin` cannot (`forbidden`).",
);

fn create_schedule() -> Value {
    let limit = format!(
        "The admin already has {MAX_SCHEDULES} schedules (`schedule_limit`); delete or edit one."
    );
    let mut codes = schedule_write_errors();
    codes.extend(["forbidden", "schedule_limit"]);
    json!({
        "operationId": "createSchedule",
        "tags": ["schedules"],
        "summary": "Schedule a recurring export",
        "description": format!(
            "Creates a schedule owned by the caller (primary, secondary or SSO admins; at \
             most {MAX_SCHEDULES} each). It first runs on `start_date`, then every \
             `frequency`; each run writes an export as the caller (owned by them) and \
             publishes a \"report ready\" notification to the notifications topic \
             (`{NOTIFICATIONS_TOPIC}` by default). The filters are checked now; team access \
             when it runs."
        ),
        "requestBody": json_body("ScheduleInput", "The schedule."),
        "responses": responses(
            ok("201", "The schedule was created.", "Schedule"),
            &codes,
            &[
                SCHEDULE_400,
                SCHEDULE_403,
                (
                    "409",
                    limit.as_str(),
                ),
            ],
        ),
    })
}

fn get_schedule() -> Value {
    let mut codes = vec!["not_found"];
    codes.extend(V1_ERRORS);
    json!({
        "operationId": "getSchedule",
        "tags": ["schedules"],
        "summary": "One schedule",
        "parameters": parameter_refs(&["schedule_id"]),
        "responses": responses(
            ok("200", "The schedule.", "Schedule"),
            &codes,
            &[("404", "No such schedule, or another admin's (`not_found`).")],
        ),
    })
}

fn update_schedule() -> Value {
    let mut codes = schedule_write_errors();
    codes.push("not_found");
    json!({
        "operationId": "updateSchedule",
        "tags": ["schedules"],
        "summary": "Edit a schedule",
        "description": "Replaces the schedule's name, start date, frequency, format, kind \
            and filters. An unchanged start date may have passed. Changing the start date \
            or the frequency starts it afresh (`last_run_date` null, next run on the new \
            start date); other edits keep its last run.",
        "parameters": parameter_refs(&["schedule_id"]),
        "requestBody": json_body("ScheduleInput", "The schedule's new settings."),
        "responses": responses(
            ok("200", "The schedule as edited.", "Schedule"),
            &codes,
            &[
                SCHEDULE_400,
                ("404", "No such schedule, or another admin's (`not_found`)."),
            ],
        ),
    })
}

fn delete_schedule() -> Value {
    let mut codes = vec!["not_found"];
    codes.extend(V1_ERRORS);
    json!({
        "operationId": "deleteSchedule",
        "tags": ["schedules"],
        "summary": "Delete a schedule",
        "description": "Stops the schedule. Exports it already wrote stay until their \
            14 days are over.",
        "parameters": parameter_refs(&["schedule_id"]),
        "responses": responses(
            json!({ "204": { "description": "Deleted." } }),
            &codes,
            &[("404", "No such schedule, or another admin's (`not_found`).")],
        ),
    })
}

fn unassign() -> Value {
    let mut codes = vec![
        "invalid_body",
        "forbidden",
        "team_merged",
        "unassign_refused",
    ];
    codes.extend(V1_ERRORS);
    json!({
        "operationId": "requestUnassign",
        "tags": ["assignments"],
        "summary": "Unassign a user from a product",
        "description": format!(
            "Publishes an unassign request (`UnassignRequestCommand`, with the real user \
             id even when the report shows a hash) to the commands topic \
             (`{COMMANDS_TOPIC}` by default) for upstream licensing to apply; the report \
             changes when the resulting `unassign` assignment event arrives. Only a direct \
             assignment can be removed here."
        ),
        "requestBody": json_body("UnassignInput", "Whom to unassign, as the report shows them."),
        "responses": responses(
            ok("202", "The request was published.", "UnassignAccepted"),
            &codes,
            &[
                ("400", "The body is not an `UnassignInput` (`invalid_body`)."),
                ("403", "The team is not one the admin administers (`forbidden`)."),
                ("404", "The team was merged into another (`team_merged`); unassign in the surviving team."),
                ("409", "The user holds the product in the team via a group or a default assignment, or holds no assignment of it there (`unassign_refused`)."),
            ],
        ),
        "x-kafka-publishes": {
            "topic": COMMANDS_TOPIC,
            "schema": schema_ref("UnassignRequestCommand"),
        }
    })
}

const REPORT_400: (&str, &str) = (
    "400",
    "A query parameter is malformed, out of range or unknown (`invalid_parameter`).",
);

/// The errors of the report endpoints.
fn report_errors() -> Vec<&'static str> {
    let mut codes = vec!["invalid_parameter", "forbidden", "team_merged"];
    codes.extend(V1_ERRORS);
    codes
}

// ------------------------------------------------------------------ helpers

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn parameter_refs(names: &[&str]) -> Value {
    names
        .iter()
        .map(|n| json!({ "$ref": format!("#/components/parameters/{n}") }))
        .collect()
}

fn json_body(schema: &str, description: &str) -> Value {
    json!({
        "required": true,
        "description": description,
        "content": { "application/json": { "schema": schema_ref(schema) } }
    })
}

/// A JSON success response, as a one-entry responses object.
fn ok(status: &str, description: &str, schema: &str) -> Value {
    let mut map = Map::new();
    map.insert(
        status.to_owned(),
        json!({
            "description": description,
            "content": { "application/json": { "schema": schema_ref(schema) } }
        }),
    );
    Value::Object(map)
}

/// The HTTP status of a stable error code (500 for a code not in `CODES`,
/// which the tests refuse).
fn status_of(code: &str) -> u16 {
    CODES
        .iter()
        .find(|(c, _, _)| *c == code)
        .map_or(500, |(_, status, _)| *status)
}

fn meaning_of(code: &str) -> &'static str {
    CODES
        .iter()
        .find(|(c, _, _)| *c == code)
        .map_or("", |(_, _, meaning)| *meaning)
}

/// An error response whose `error` is one of `codes`.
fn error_response(codes: &[&str], description: &str) -> Value {
    let example_code = codes.first().copied().unwrap_or("internal");
    json!({
        "description": description,
        "content": {
            "application/json": {
                "schema": {
                    "allOf": [
                        schema_ref("Error"),
                        { "properties": { "error": { "enum": codes } } }
                    ]
                },
                "example": { "error": example_code, "message": meaning_of(example_code) }
            }
        }
    })
}

/// One response per stable error code (`#/components/responses/<code>`).
fn error_components() -> Value {
    CODES
        .iter()
        .map(|(code, status, meaning)| {
            let description = format!("`{code}` ({status}): {meaning}.");
            ((*code).to_owned(), error_response(&[*code], &description))
        })
        .collect::<Map<String, Value>>()
        .into()
}

/// The success responses with the error responses of `codes`, grouped by
/// status: a status with one code refers to that code's component response
/// unless `notes` describes it for this operation; several codes sharing a
/// status are listed in one response.
fn responses(success: Value, codes: &[&str], notes: &[(&str, &str)]) -> Value {
    let mut map = match success {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let mut statuses: Vec<u16> = codes.iter().map(|c| status_of(c)).collect();
    statuses.sort_unstable();
    statuses.dedup();
    for status in statuses {
        let here: Vec<&str> = codes
            .iter()
            .copied()
            .filter(|c| status_of(c) == status)
            .collect();
        let key = status.to_string();
        let note = notes.iter().find(|(s, _)| *s == key).map(|(_, d)| *d);
        let response = match (here.as_slice(), note) {
            ([code], None) => json!({ "$ref": format!("#/components/responses/{code}") }),
            (_, Some(description)) => error_response(&here, description),
            (_, None) => {
                let description = here
                    .iter()
                    .map(|c| format!("`{c}`: {}.", meaning_of(c)))
                    .collect::<Vec<_>>()
                    .join(" ");
                error_response(&here, &description)
            }
        };
        map.insert(key, response);
    }
    Value::Object(map)
}

// --------------------------------------------------------------- parameters

fn parameters() -> Value {
    let ranges: Vec<&str> = RangePreset::ALL
        .iter()
        .map(|p| p.as_str())
        .chain(["custom"])
        .collect();
    let accesses: Vec<&str> = Access::ALL.iter().map(|a| a.as_str()).collect();
    let statuses: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
    let columns: Vec<&str> = SortColumn::ALL.iter().map(|(_, n)| *n).collect();
    let sort_pattern = format!("^({})(:(asc|desc))?$", columns.join("|"));
    let date_rule = format!(
        "required with `range=custom` and refused otherwise; `from` <= `to`, `to` not \
         after today (UTC), at most {MAX_CUSTOM_DAYS} days"
    );
    json!({
        "team": query(
            "team",
            "A current team id the admin administers, or `all` (every team the admin \
             administers). A team merged into another answers 404 `team_merged`: its \
             history is in the surviving team's report.",
            json!({ "type": "string", "default": "all" }),
        ),
        "range": query(
            "range",
            "The date range. `last_30_days` is rolling: today (UTC) and the 29 days \
             before; the month presets are whole completed calendar months (the current \
             month excluded); `custom` takes `from` and `to`.",
            json!({ "type": "string", "enum": ranges, "default": "last_30_days" }),
        ),
        "from": query(
            "from",
            &format!("First date of a custom range (YYYY-MM-DD, UTC, inclusive): {date_rule}."),
            json!({ "type": "string", "format": "date" }),
        ),
        "to": query(
            "to",
            &format!("Last date of a custom range (YYYY-MM-DD, UTC, inclusive): {date_rule}."),
            json!({ "type": "string", "format": "date" }),
        ),
        "product": query(
            "product",
            "Only this product (its name as the license events spell it).",
            json!({ "type": "string" }),
        ),
        "access": query(
            "access",
            "Only seat (subscription) or Flex (prepaid token) access.",
            json!({ "type": "string", "enum": accesses }),
        ),
        "status": query(
            "status",
            "Only rows with this status (see `ReportRow.status`).",
            json!({ "type": "string", "enum": statuses }),
        ),
        "group": query(
            "group",
            "Only members of this group, by group id or name (current membership).",
            json!({ "type": "string" }),
        ),
        "q": query(
            "q",
            "Search: a case-insensitive substring of the user id, name or email; of the \
             user key when identities are hashed.",
            json!({ "type": "string" }),
        ),
        "sort": query(
            "sort",
            "Sort order `column:asc|desc` (a column alone sorts ascending), over any \
             column of the users table.",
            json!({ "type": "string", "pattern": sort_pattern, "default": "user_key:asc" }),
        ),
        "page": query(
            "page",
            "The page number, 1-based.",
            json!({ "type": "integer", "minimum": 1, "default": 1 }),
        ),
        "page_size": query(
            "page_size",
            &format!("Rows per page (1 to {MAX_PAGE_SIZE}, default {DEFAULT_PAGE_SIZE})."),
            json!({
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_PAGE_SIZE,
                "default": DEFAULT_PAGE_SIZE
            }),
        ),
        "export_id": path_parameter("export_id", "The export's id (a UUID)."),
        "schedule_id": path_parameter("schedule_id", "The schedule's id (a UUID)."),
    })
}

fn query(name: &str, description: &str, schema: Value) -> Value {
    json!({
        "name": name,
        "in": "query",
        "required": false,
        "description": description,
        "schema": schema,
    })
}

fn path_parameter(name: &str, description: &str) -> Value {
    json!({
        "name": name,
        "in": "path",
        "required": true,
        "description": description,
        "schema": { "type": "string" },
    })
}

// ------------------------------------------------------------------ schemas

fn schemas() -> Value {
    let mut map = Map::new();
    for part in [
        common_schemas(),
        report_schemas(),
        export_schemas(),
        schedule_schemas(),
        assignment_schemas(),
    ] {
        if let Value::Object(part) = part {
            map.extend(part);
        }
    }
    Value::Object(map)
}

fn common_schemas() -> Value {
    let codes: Vec<&str> = CODES.iter().map(|(c, _, _)| *c).collect();
    let code_list = CODES
        .iter()
        .map(|(c, s, m)| format!("- `{c}` ({s}): {m}"))
        .collect::<Vec<_>>()
        .join("\n");
    let accesses: Vec<&str> = Access::ALL.iter().map(|a| a.as_str()).collect();
    json!({
        "Error": {
            "type": "object",
            "description": "Every error answer.",
            "required": ["error", "message"],
            "properties": {
                "error": {
                    "type": "string",
                    "enum": codes,
                    "description": format!("The stable code (scripts branch on it):\n{code_list}"),
                },
                "message": {
                    "type": "string",
                    "description": "For people; may change."
                }
            }
        },
        "Date": {
            "type": "string",
            "format": "date",
            "description": "A UTC date, YYYY-MM-DD."
        },
        "Timestamp": {
            "type": "string",
            "format": "date-time",
            "description": "An instant, RFC 3339 in UTC."
        },
        "Access": {
            "type": "string",
            "enum": accesses,
            "description": "`seat`: a subscription seat assigned in a team; `flex`: \
                prepaid Flex tokens, charged per 24-hour usage window."
        },
        "Tokens": {
            "type": "number",
            "minimum": 0,
            "description": "Flex tokens, exact to the thousandth: an integer when whole, \
                else a decimal with at most 3 places."
        },
        "Me": {
            "type": "object",
            "required": ["id", "email", "role", "teams", "can_schedule"],
            "properties": {
                "id": { "type": "string", "description": "The admin's id." },
                "email": { "type": "string" },
                "role": {
                    "type": "string",
                    "enum": ["primary", "secondary", "sso", "user_admin"]
                },
                "teams": {
                    "type": "array",
                    "items": { "type": "string" },
                    "description": "The team ids the admin administers; `[\"*\"]` means every team."
                },
                "can_schedule": {
                    "type": "boolean",
                    "description": "Whether the admin may schedule exports (primary, secondary and SSO admins)."
                }
            }
        },
        "Team": {
            "type": "object",
            "required": ["team_id", "name", "pii_visible"],
            "properties": {
                "team_id": { "type": "string" },
                "name": {
                    "type": ["string", "null"],
                    "description": "`null` when the directory has no name for it."
                },
                "pii_visible": {
                    "type": "boolean",
                    "description": "Whether its users' names, emails and avatars are shown \
                        (off by default: replaced by a keyed hash)."
                }
            }
        },
        "TeamList": {
            "type": "object",
            "required": ["teams"],
            "properties": {
                "teams": {
                    "type": "array",
                    "items": schema_ref("Team"),
                    "description": "The current (not merged-away) teams the admin administers."
                }
            }
        },
    })
}

fn report_schemas() -> Value {
    let statuses: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
    json!({
        "Status": {
            "type": "string",
            "enum": statuses,
            "description": "Of a (team, user, product) over the range, as of now. \
                `active`: currently assigned and used in the range; `inactive`: a seat \
                assigned since on or before the range start, not used in the range; \
                `not_yet_active`: a seat assigned after the range start, not used yet; \
                `flex_unused`: Flex, assigned, not used in the range (Flex users are never \
                inactive); `unassigned`: used in the range, not assigned now."
        },
        "ReportRow": {
            "type": "object",
            "description": "One row of the users table: a (current team, user, product, access).",
            "required": [
                "user_key", "name", "email", "avatar_url", "team_id", "groups", "product",
                "access", "assigned_date", "last_accessed", "days_used", "monthly_average",
                "tokens_used", "status"
            ],
            "properties": {
                "user_key": {
                    "type": "string",
                    "description": "The user id when the team's personal data is visible; \
                        otherwise a keyed hash of it (64 hex digits, the same for the same \
                        user), and then `name`, `email` and `avatar_url` are null."
                },
                "name": { "type": ["string", "null"], "description": "`null` when hashed." },
                "email": { "type": ["string", "null"], "description": "`null` when hashed." },
                "avatar_url": {
                    "type": ["string", "null"],
                    "description": "`null` when hashed or unknown."
                },
                "team_id": {
                    "type": "string",
                    "description": "The current team (after merges)."
                },
                "groups": {
                    "type": "array",
                    "items": { "type": "string" },
                    "description": "Names of the user's groups in the team now (may be empty)."
                },
                "product": { "type": "string" },
                "access": schema_ref("Access"),
                "assigned_date": {
                    "type": ["string", "null"],
                    "format": "date",
                    "description": "Start of the assignment in force now (YYYY-MM-DD); \
                        `null` when not assigned now."
                },
                "last_accessed": {
                    "type": ["string", "null"],
                    "format": "date",
                    "description": "The most recent UTC date of a license authorization, \
                        as of now (not cut by the range); `null` when never used."
                },
                "days_used": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Distinct UTC dates with at least one authorization in \
                        the range (both ends inclusive)."
                },
                "monthly_average": {
                    "type": "number",
                    "minimum": 0,
                    "description": "Days used / months in range, to 2 decimals \
                        (`last_30_days` counts as 1 month, a month preset as its months, a \
                        custom range pro rata by calendar month)."
                },
                "tokens_used": {
                    "allOf": [schema_ref("Tokens")],
                    "description": "Tokens charged for the Flex usage windows that started \
                        in the range (0 for seats)."
                },
                "status": schema_ref("Status"),
            }
        },
        "UsersPage": {
            "type": "object",
            "required": ["rows", "total", "page", "page_size"],
            "properties": {
                "rows": { "type": "array", "items": schema_ref("ReportRow") },
                "total": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Rows matching the filters, over all pages."
                },
                "page": { "type": "integer", "minimum": 1 },
                "page_size": { "type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE }
            }
        },
        "SubscriptionsTile": {
            "type": "object",
            "required": ["assigned_seats", "active", "not_yet_active"],
            "properties": {
                "assigned_seats": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Seats assigned now: (user, product) seat assignments in force."
                },
                "active": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Of those, used in the range."
                },
                "inactive": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Of those, assigned since on or before the range start \
                        and not used in it. Absent when `team=all`."
                },
                "not_yet_active": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Of those, assigned after the range start and not used yet."
                }
            }
        },
        "FlexTile": {
            "type": "object",
            "required": ["tokens_consumed", "users", "days_used"],
            "properties": {
                "tokens_consumed": {
                    "allOf": [schema_ref("Tokens")],
                    "description": "Tokens charged for the Flex usage windows that started in the range."
                },
                "users": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Distinct users with Flex usage in the range."
                },
                "days_used": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "The sum of their days used (per product) in the range."
                }
            }
        },
        "RangeDates": {
            "type": "object",
            "description": "The dates the report covers, resolved as of the request (both inclusive).",
            "required": ["from", "to"],
            "properties": {
                "from": schema_ref("Date"),
                "to": schema_ref("Date"),
            }
        },
        "DailyPoint": {
            "type": "object",
            "required": ["date", "active_users", "days_used", "tokens"],
            "properties": {
                "date": schema_ref("Date"),
                "active_users": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Distinct users with at least one authorization that UTC day."
                },
                "days_used": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Report rows (team, user, product, access) used that day: the day's share of the rows' days used."
                },
                "tokens": {
                    "allOf": [schema_ref("Tokens")],
                    "description": "Tokens of the Flex usage windows that started that day."
                }
            }
        },
        "Daily": {
            "type": "object",
            "required": ["days", "range"],
            "properties": {
                "days": { "type": "array", "items": schema_ref("DailyPoint") },
                "range": schema_ref("RangeDates"),
            }
        },
        "Overview": {
            "type": "object",
            "required": ["subscriptions", "flex", "range"],
            "properties": {
                "subscriptions": schema_ref("SubscriptionsTile"),
                "flex": schema_ref("FlexTile"),
                "range": schema_ref("RangeDates"),
            }
        },
        "ReportParams": report_params_schema(),
    })
}

/// The filters as a JSON object of strings (exports and schedules).
fn report_params_schema() -> Value {
    let ranges: Vec<&str> = RangePreset::ALL
        .iter()
        .map(|p| p.as_str())
        .chain(["custom"])
        .collect();
    let accesses: Vec<&str> = Access::ALL.iter().map(|a| a.as_str()).collect();
    let statuses: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
    let filter = |name: &str| {
        json!({
            "type": "string",
            "description": format!("As the `{name}` query parameter."),
        })
    };
    json!({
        "type": "object",
        "description": "The report filters with the query parameters' names and rules, \
            every one optional and given as a string. Stored as given with a schedule, so \
            a rolling range rolls with each run.",
        "additionalProperties": false,
        "properties": {
            "team": filter("team"),
            "range": { "type": "string", "enum": ranges, "description": "As the `range` query parameter." },
            "from": { "type": "string", "format": "date", "description": "As the `from` query parameter." },
            "to": { "type": "string", "format": "date", "description": "As the `to` query parameter." },
            "product": filter("product"),
            "access": { "type": "string", "enum": accesses, "description": "As the `access` query parameter." },
            "status": { "type": "string", "enum": statuses, "description": "As the `status` query parameter." },
            "group": filter("group"),
            "q": filter("q"),
            "sort": filter("sort"),
            "page": { "type": "string", "pattern": "^[0-9]+$", "description": "As the `page` query parameter." },
            "page_size": { "type": "string", "pattern": "^[0-9]+$", "description": "As the `page_size` query parameter." },
        }
    })
}

fn export_schemas() -> Value {
    let kinds: Vec<&str> = [
        ExportKind::Report,
        ExportKind::SeatUsage,
        ExportKind::TokenUsage,
    ]
    .iter()
    .map(|k| k.as_str())
    .collect();
    let formats: Vec<&str> = [ExportFormat::Csv, ExportFormat::Xlsx]
        .iter()
        .map(|f| f.as_str())
        .collect();
    json!({
        "ExportKind": {
            "type": "string",
            "enum": kinds,
            "description": "`report`: the users table's rows for the filters; \
                `seat_usage`: raw seat usage, one line per (team, user, product, UTC date \
                used); `token_usage`: raw token usage, one line per charged Flex window."
        },
        "ExportFormat": {
            "type": "string",
            "enum": formats,
            "description": "The file format and extension."
        },
        "ExportRequest": {
            "type": "object",
            "required": ["kind", "format"],
            "additionalProperties": false,
            "properties": {
                "kind": schema_ref("ExportKind"),
                "format": schema_ref("ExportFormat"),
                "filters": {
                    "allOf": [schema_ref("ReportParams")],
                    "description": "The report filters; none (the defaults) when absent."
                },
            }
        },
        "ExportMeta": {
            "type": "object",
            "required": [
                "export_id", "owner_admin_id", "kind", "format", "file_name", "rows",
                "created_at", "expires_at", "filters", "schedule_id", "download_path"
            ],
            "properties": {
                "export_id": { "type": "string", "format": "uuid" },
                "owner_admin_id": {
                    "type": "string",
                    "description": "The admin who asked for it, or whose schedule wrote it; \
                        only they can see or download it."
                },
                "kind": schema_ref("ExportKind"),
                "format": schema_ref("ExportFormat"),
                "file_name": {
                    "type": "string",
                    "description": "The attachment's name: \
                        `<usage-report|seat-usage|token-usage>-<YYYY-MM-DDTHH-MM-SSZ>.<csv|xlsx>` \
                        (kind, creation time in UTC, format)."
                },
                "rows": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Data lines in the file (the header excluded)."
                },
                "created_at": schema_ref("Timestamp"),
                "expires_at": {
                    "allOf": [schema_ref("Timestamp")],
                    "description": format!("`created_at` + {EXPORT_RETENTION_DAYS} days: after it the sweep deletes the file.")
                },
                "filters": schema_ref("ReportParams"),
                "schedule_id": {
                    "type": ["string", "null"],
                    "format": "uuid",
                    "description": "The schedule that wrote it; `null` when asked for directly."
                },
                "download_path": {
                    "type": "string",
                    "description": "`/v1/exports/{export_id}/download`."
                },
                "deleted_at": {
                    "allOf": [schema_ref("Timestamp")],
                    "description": "When the sweep deleted the file; absent until then."
                }
            }
        },
        "ExportList": {
            "type": "object",
            "required": ["exports"],
            "properties": {
                "exports": {
                    "type": "array",
                    "items": schema_ref("ExportMeta"),
                    "description": "The caller's exports, newest first."
                }
            }
        },
    })
}

fn schedule_schemas() -> Value {
    let frequencies: Vec<&str> = [Frequency::Daily, Frequency::Weekly, Frequency::Monthly]
        .iter()
        .map(|f| f.as_str())
        .collect();
    let frequency = json!({
        "type": "string",
        "enum": frequencies,
        "description": "How often it runs from `start_date`: `daily`; `weekly`, every 7 days; \
            `monthly`, on the start date's day of the month (the last day of shorter months). \
            Runs missed while the service was down are caught up by one run, not replayed."
    });
    json!({
        "Frequency": frequency,
        "ScheduleInput": {
            "type": "object",
            "description": "The body of `POST /v1/schedules` and `PUT /v1/schedules/{schedule_id}`.",
            "required": ["name", "start_date", "frequency", "format"],
            "additionalProperties": false,
            "properties": {
                "name": {
                    "type": "string",
                    "minLength": 1,
                    "description": format!(
                        "A clear name: 1 to {MAX_NAME_CHARS} characters once surrounding \
                         spaces are dropped, no control characters."
                    )
                },
                "start_date": {
                    "allOf": [schema_ref("Date")],
                    "description": format!(
                        "The first run's UTC date: today or later (an unchanged one may have \
                         passed when editing), at most {LAST_START_DATE}."
                    )
                },
                "frequency": schema_ref("Frequency"),
                "format": schema_ref("ExportFormat"),
                "kind": {
                    "allOf": [schema_ref("ExportKind")],
                    "default": "report"
                },
                "filters": {
                    "allOf": [schema_ref("ReportParams")],
                    "description": "The report filters, stored as given (a rolling range \
                        rolls with each run); none when absent."
                },
            }
        },
        "Schedule": {
            "type": "object",
            "description": "A recurring export. On each due date the service writes an \
                export owned by `owner_admin_id` and publishes a `ReportReadyNotification`.",
            "required": [
                "schedule_id", "owner_admin_id", "name", "start_date", "frequency",
                "format", "kind", "filters", "created_at", "updated_at", "last_run_date",
                "next_run_date"
            ],
            "properties": {
                "schedule_id": { "type": "string", "format": "uuid" },
                "owner_admin_id": {
                    "type": "string",
                    "description": "The admin who scheduled it; only they can see it."
                },
                "name": { "type": "string" },
                "start_date": schema_ref("Date"),
                "frequency": schema_ref("Frequency"),
                "format": schema_ref("ExportFormat"),
                "kind": schema_ref("ExportKind"),
                "filters": schema_ref("ReportParams"),
                "created_at": schema_ref("Timestamp"),
                "updated_at": schema_ref("Timestamp"),
                "last_run_date": {
                    "type": ["string", "null"],
                    "format": "date",
                    "description": "The UTC date it last ran on; `null` before its first run \
                        (or since its start date or frequency changed)."
                },
                "next_run_date": {
                    "allOf": [schema_ref("Date")],
                    "description": "The UTC date of the next run."
                }
            }
        },
        "ScheduleList": {
            "type": "object",
            "required": ["schedules"],
            "properties": {
                "schedules": { "type": "array", "items": schema_ref("Schedule") }
            }
        },
        "ReportReadyNotification": {
            "type": "object",
            "description": format!(
                "Published to the notifications topic (`{NOTIFICATIONS_TOPIC}` by default) \
                 when a schedule's export is ready, for the email with its download link."
            ),
            "required": [
                "notification_id", "type", "admin_id", "admin_email", "schedule_id",
                "schedule_name", "export_id", "download_path", "created_at"
            ],
            "properties": {
                "notification_id": { "type": "string", "description": "Unique id (the idempotency key)." },
                "type": { "type": "string", "const": "report_ready" },
                "admin_id": { "type": "string", "description": "The schedule's admin." },
                "admin_email": { "type": "string" },
                "schedule_id": { "type": "string" },
                "schedule_name": { "type": "string" },
                "export_id": { "type": "string", "format": "uuid" },
                "download_path": {
                    "type": "string",
                    "description": "`/v1/exports/{export_id}/download`: only the schedule's admin can use it."
                },
                "created_at": schema_ref("Timestamp"),
            }
        },
    })
}

fn assignment_schemas() -> Value {
    let accesses: Vec<&str> = Access::ALL.iter().map(|a| a.as_str()).collect();
    json!({
        "UnassignInput": {
            "type": "object",
            "required": ["team_id", "user_key", "product"],
            "additionalProperties": false,
            "properties": {
                "team_id": {
                    "type": "string",
                    "description": "A current team the admin administers."
                },
                "user_key": {
                    "type": "string",
                    "description": "The row's `user_key`: the user id, or its hash when hashed."
                },
                "product": { "type": "string" },
                "access": {
                    "type": "string",
                    "enum": accesses,
                    "description": "Only an assignment with this access; any access when absent."
                }
            }
        },
        "UnassignAccepted": {
            "type": "object",
            "required": ["request_id", "status", "topic"],
            "properties": {
                "request_id": { "type": "string", "description": "The published request's id." },
                "status": { "type": "string", "const": "requested" },
                "topic": { "type": "string", "description": "Where the request was published." }
            }
        },
        "UnassignRequestCommand": {
            "type": "object",
            "description": format!(
                "Published to the commands topic (`{COMMANDS_TOPIC}` by default) for upstream \
                 licensing to remove the user's direct assignment."
            ),
            "required": [
                "request_id", "type", "requested_at", "requested_by", "team_id", "user_id",
                "product", "access"
            ],
            "properties": {
                "request_id": { "type": "string", "description": "Unique id (the idempotency key)." },
                "type": { "type": "string", "const": "unassign_request" },
                "requested_at": schema_ref("Timestamp"),
                "requested_by": { "type": "string", "description": "The admin's id." },
                "team_id": {
                    "type": "string",
                    "description": "The team that holds the assignment (a merged team's own id when it was assigned there)."
                },
                "user_id": { "type": "string", "description": "The user id (never the hash)." },
                "product": { "type": "string" },
                "access": schema_ref("Access"),
            }
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "patch", "head", "options", "trace",
    ];

    fn operations(doc: &Value) -> Vec<(String, String, Value)> {
        let paths = doc["paths"].as_object().expect("paths is an object");
        let mut ops = Vec::new();
        for (path, item) in paths {
            let item = item.as_object().expect("a path item is an object");
            for (method, op) in item {
                assert!(METHODS.contains(&method.as_str()), "{method} on {path}");
                ops.push((method.to_uppercase(), path.clone(), op.clone()));
            }
        }
        ops
    }

    fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        ("$ref", Value::String(r)) => out.push(r),
                        _ => refs(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
        match value.get("$ref").and_then(Value::as_str) {
            Some(r) => doc
                .pointer(r.strip_prefix('#').expect("a local $ref"))
                .expect("the $ref resolves"),
            None => value,
        }
    }

    #[test]
    fn the_document_is_openapi_3_1_json() {
        let doc = document();
        let text = serde_json::to_string(&doc).expect("serialises");
        let back: Value = serde_json::from_str(&text).expect("parses back");
        assert_eq!(back, doc);
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    }

    #[test]
    fn routes_and_paths_agree() {
        let doc = document();
        let documented: BTreeSet<(String, String)> = operations(&doc)
            .into_iter()
            .map(|(m, p, _)| (m, p))
            .collect();
        let listed: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        assert_eq!(listed.len(), ROUTES.len(), "ROUTES has no duplicates");
        assert_eq!(documented, listed);
    }

    #[test]
    fn every_ref_resolves() {
        let doc = document();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(!found.is_empty());
        for r in found {
            let pointer = r
                .strip_prefix("#/components/")
                .map(|_| &r[1..])
                .unwrap_or_else(|| panic!("{r} is not a component reference"));
            assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
        }
    }

    #[test]
    fn the_error_schema_lists_every_code() {
        let doc = document();
        let listed: BTreeSet<&str> = doc["components"]["schemas"]["Error"]["properties"]["error"]
            ["enum"]
            .as_array()
            .expect("an enum")
            .iter()
            .map(|v| v.as_str().expect("a string"))
            .collect();
        let codes: BTreeSet<&str> = CODES.iter().map(|(c, _, _)| *c).collect();
        assert_eq!(listed, codes);
    }

    #[test]
    fn v1_error_responses_carry_codes_of_their_status() {
        let doc = document();
        for (method, path, op) in operations(&doc) {
            if !path.starts_with("/v1/") {
                continue;
            }
            let responses = op["responses"].as_object().expect("responses");
            for (status, response) in responses {
                let status: u16 = status.parse().expect("a numeric status");
                if status < 400 {
                    continue;
                }
                let response = resolve(&doc, response);
                let schema = &response["content"]["application/json"]["schema"];
                assert_eq!(
                    schema["allOf"][0]["$ref"], "#/components/schemas/Error",
                    "{method} {path} {status}"
                );
                let codes = schema["allOf"][1]["properties"]["error"]["enum"]
                    .as_array()
                    .expect("codes");
                assert!(!codes.is_empty());
                for code in codes {
                    let code = code.as_str().expect("a code");
                    let known = CODES.iter().find(|(c, _, _)| *c == code);
                    let (_, code_status, _) =
                        known.unwrap_or_else(|| panic!("{code} is not in CODES"));
                    assert_eq!(*code_status, status, "{method} {path}: {code}");
                }
            }
        }
    }

    #[test]
    fn v1_is_behind_bearer_auth_and_the_rest_is_public() {
        let doc = document();
        assert_eq!(doc["security"], json!([{ "bearerAuth": [] }]));
        assert_eq!(
            doc["components"]["securitySchemes"]["bearerAuth"]["scheme"],
            "bearer"
        );
        let mut ids = BTreeSet::new();
        for (method, path, op) in operations(&doc) {
            let id = op["operationId"].as_str().expect("an operationId");
            assert!(ids.insert(id.to_owned()), "{id} is unique");
            let responses = op["responses"].as_object().expect("responses");
            if path.starts_with("/v1/") {
                assert!(op.get("security").is_none(), "{method} {path}");
                for status in ["401", "503"] {
                    assert!(responses.contains_key(status), "{method} {path} {status}");
                }
                let takes_input = op.get("requestBody").is_some()
                    || op["parameters"].as_array().is_some_and(|ps| {
                        ps.iter()
                            .any(|p| resolve(&doc, p)["in"].as_str() == Some("query"))
                    });
                if takes_input {
                    assert!(responses.contains_key("400"), "{method} {path} 400");
                }
            } else {
                assert_eq!(op["security"], json!([]), "{method} {path}");
            }
        }
    }

    #[test]
    fn stable_names_come_from_the_code() {
        let doc = document();
        let params = &doc["components"]["parameters"];
        assert_eq!(
            params["page_size"]["schema"]["maximum"],
            json!(MAX_PAGE_SIZE)
        );
        assert_eq!(
            params["page_size"]["schema"]["default"],
            json!(DEFAULT_PAGE_SIZE)
        );
        let pattern = params["sort"]["schema"]["pattern"]
            .as_str()
            .expect("a pattern");
        for (_, name) in SortColumn::ALL {
            assert!(pattern.contains(name), "{name}");
        }
        let users = &doc["paths"]["/v1/report/users"]["get"]["parameters"];
        assert_eq!(users.as_array().map(Vec::len), Some(USERS_PARAMETERS.len()));
    }
}
