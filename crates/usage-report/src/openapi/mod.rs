//! The OpenAPI 3.1 document served at `/openapi.json`, derived from the
//! code:
//!
//! - the operations come from the handlers (`#[utoipa::path]` in the
//!   binary's `api/`), collected by the router that serves them
//!   (utoipa-axum's `OpenApiRouter`): the routes served and the routes
//!   documented are one list;
//! - the schemas are derived from the request and response types
//!   (`#[derive(ToSchema, IntoParams)]`; their doc comments are the
//!   descriptions), the Kafka messages' from [`crate::messages`];
//! - [`document`] adds what no type says: the info, the tags, the bearer
//!   scheme, the error responses of every stable code ([`errors`]), the
//!   Kafka messages (`x-kafka-messages`), the body filters' two forms
//!   (one per kind of range, [`schemas::filters_by_range`]), the response
//!   links from a created export or schedule to the operations on it
//!   (`links`, which utoipa's derive cannot write), and closes every object
//!   schema (`additionalProperties: false`: the types are plain structs, so
//!   a field the document does not list is drift).
//!
//! The stable names (enums, error codes, sort columns, page limits) come
//! from the code that enforces them ([`crate::model`],
//! [`crate::error::CODES`], `usage_core`), through the derives or
//! [`schemas`].

pub mod errors;
mod links;
pub mod schemas;

use serde_json::{json, Map, Value};
use usage_core::admin::{EXPORT_RETENTION, MAX_SCHEDULES_PER_ADMIN};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{Components, InfoBuilder, LicenseBuilder, OpenApi};
use utoipa::ToSchema;

use crate::messages::{
    ReportReady, UnassignRequest, DEFAULT_COMMANDS_TOPIC, DEFAULT_NOTIFICATIONS_TOPIC,
};
use crate::model::ReportParams;

/// Every operation as (HTTP method, path template), for the end-to-end
/// tests that probe them all; the binary's unit tests check it is exactly
/// the document's operations (the router's). Path parameters are written
/// `{name}`, as axum routes spell them.
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

/// The name of the bearer scheme.
pub const BEARER: &str = "bearerAuth";

/// How long an export is kept, in days (docs/rules.md rule 8).
pub const EXPORT_RETENTION_DAYS: i64 = EXPORT_RETENTION.num_days();

/// The tags of the operations, with their descriptions.
pub mod tags {
    pub const SERVICE: &str = "service";
    pub const ADMIN: &str = "admin";
    pub const REPORT: &str = "report";
    pub const EXPORTS: &str = "exports";
    pub const SCHEDULES: &str = "schedules";
    pub const ASSIGNMENTS: &str = "assignments";
}

/// The document of the operations in `routes` (the router's), completed.
pub fn document(mut routes: OpenApi) -> Value {
    routes.info = info();
    routes.tags = Some(
        tag_descriptions()
            .into_iter()
            .map(|(name, description)| {
                TagBuilder::new()
                    .name(name)
                    .description(Some(description))
                    .build()
            })
            .collect(),
    );
    routes.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
    let components = routes.components.get_or_insert_with(Components::new);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "An admin's token (`Authorization: Bearer <token>`). The service keeps \
                     only its SHA-256 and compares in constant time. Required on every `/v1` \
                     operation; `/`, `/healthz`, `/readyz`, `/metrics` and `/openapi.json` \
                     are public.",
                ))
                .build(),
        ),
    );
    components.responses.extend(errors::components());
    let mut schemas = vec![(
        errors::Error::name().into_owned(),
        <errors::Error as utoipa::PartialSchema>::schema(),
    )];
    add_schema::<UnassignRequest>(&mut schemas);
    add_schema::<ReportReady>(&mut schemas);
    components.schemas.extend(schemas);

    let mut doc = serde_json::to_value(&routes).unwrap_or(Value::Null);
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for op in paths.values_mut().filter_map(Value::as_object_mut) {
            for op in op.values_mut() {
                public_as_empty_security(op);
            }
        }
    }
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        if let Some(filters) = schemas.get_mut(&ReportParams::name().into_owned()) {
            *filters = schemas::filters_by_range(filters);
        }
        schemas.values_mut().for_each(close_objects);
    }
    if let Some(paths) = doc.get_mut("paths") {
        links::add(paths);
    }
    if let Some(info) = doc.get_mut("info").and_then(Value::as_object_mut) {
        info.insert("summary".to_owned(), Value::from(SUMMARY));
    }
    if let Some(doc) = doc.as_object_mut() {
        doc.insert("x-kafka-messages".to_owned(), kafka_messages());
    }
    doc
}

/// `T`'s schema and the schemas it refers to.
fn add_schema<T: ToSchema>(
    schemas: &mut Vec<(
        String,
        utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
    )>,
) {
    schemas.push((T::name().into_owned(), T::schema()));
    T::schemas(schemas);
}

/// A public operation says `security: []` (none needed); the derive writes
/// the equivalent `[{}]`.
fn public_as_empty_security(op: &mut Value) {
    if let Some(security) = op.get_mut("security") {
        if *security == json!([{}]) {
            *security = json!([]);
        }
    }
}

/// Every object schema with properties lists them all: no other property is
/// allowed (the types are plain structs, without flattened maps). The parts
/// of an `allOf` are left open, as each is checked against the whole value.
fn close_objects(schema: &mut Value) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if object.contains_key("properties") && !object.contains_key("additionalProperties") {
        object.insert("additionalProperties".to_owned(), Value::Bool(false));
    }
    for (key, value) in object.iter_mut() {
        match (key.as_str(), value) {
            ("allOf", _) => {}
            ("properties", Value::Object(properties)) => {
                properties.values_mut().for_each(close_objects);
            }
            ("items" | "additionalProperties", value) => close_objects(value),
            ("oneOf" | "anyOf", Value::Array(items)) => items.iter_mut().for_each(close_objects),
            _ => {}
        }
    }
}

fn info() -> utoipa::openapi::Info {
    InfoBuilder::new()
        .title("Usage report")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "One view of subscription seats and prepaid Flex tokens per (team, user, \
             product), from the license authorization calls of internet-connected machines \
             (offline usage is not reported). Dates are UTC dates and ranges include both \
             ends. A report covers the teams the admin administers; after a team merge, the \
             surviving team's report includes the merged team's history. Groups are shown as \
             they are now. When a team's personal data (PII) setting is off, its users' \
             names, emails and avatars are replaced by a stable keyed hash; with all teams \
             selected, everyone is hashed if any team in scope has it off.\n\n\
             Every error is JSON `{\"error\": <stable code>, \"message\": <for people>}`; \
             scripts branch on `error`, never on `message`.",
        ))
        .license(Some(
            LicenseBuilder::new()
                .name("Apache-2.0")
                .identifier(Some("Apache-2.0"))
                .build(),
        ))
        .build()
}

/// The info's summary (OpenAPI 3.1; not a field of utoipa's `Info`).
const SUMMARY: &str = "Seat and Flex token usage of licensed products, for admins.";

fn tag_descriptions() -> Vec<(&'static str, String)> {
    vec![
        (
            tags::SERVICE,
            "Health, readiness, metrics, this document and the report page (public).".to_owned(),
        ),
        (
            tags::ADMIN,
            "The calling admin and the teams they administer.".to_owned(),
        ),
        (
            tags::REPORT,
            "The overview tiles and the users table, for the report filters (query \
             parameters; an unknown one is refused with 400 `invalid_parameter`)."
                .to_owned(),
        ),
        (
            tags::EXPORTS,
            format!(
                "The report (current filters) or the raw day-by-day seat and token usage, \
                 as CSV or XLSX files. Only the admin who created an export (or whose \
                 schedule did) can see or download it. Exports are deleted \
                 {EXPORT_RETENTION_DAYS} days after they are created."
            ),
        ),
        (
            tags::SCHEDULES,
            format!(
                "Recurring exports, for primary, secondary and SSO admins, at most \
                 {MAX_SCHEDULES_PER_ADMIN} per admin; only their admin can see them. On each \
                 due date the service runs the schedule: it writes an export owned by the \
                 schedule's admin with the stored filters (a rolling range rolls) and \
                 publishes a \"report ready\" notification (`ReportReadyNotification`) to \
                 the notifications topic (`{DEFAULT_NOTIFICATIONS_TOPIC}` by default) for the \
                 email carrying the download link."
            ),
        ),
        (
            tags::ASSIGNMENTS,
            format!(
                "Unassign a user from the report: an unassign request published to the \
                 commands topic (`{DEFAULT_COMMANDS_TOPIC}` by default) for upstream \
                 licensing to apply. Users assigned through a group or a default assignment \
                 cannot be unassigned here."
            ),
        ),
    ]
}

/// `x-kafka-messages`: what the service publishes, where, keyed by what.
fn kafka_messages() -> Value {
    let mut messages = Map::new();
    messages.insert(
        "unassign_request".to_owned(),
        json!({
            "topic": DEFAULT_COMMANDS_TOPIC,
            "key": "user_id",
            "description": "Published by `POST /v1/assignments/unassign` for upstream \
                licensing to apply (topic configurable, `--commands-topic`); keyed by the \
                user id.",
            "schema": schema_ref(&UnassignRequest::name()),
        }),
    );
    messages.insert(
        "report_ready".to_owned(),
        json!({
            "topic": DEFAULT_NOTIFICATIONS_TOPIC,
            "key": "admin_id",
            "description": "Published after a due schedule's export is written, for the \
                mail system (topic configurable, `--notifications-topic`); keyed by the \
                admin id.",
            "schema": schema_ref(&ReportReady::name()),
        }),
    );
    Value::Object(messages)
}

/// A reference to the component schema `name`.
pub fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}
