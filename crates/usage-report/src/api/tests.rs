//! The OpenAPI document against the router that serves it and the code
//! that enforces its names; and [`state`], a service over nothing that must
//! answer, for the router's tests.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use chrono::{TimeZone, Utc};
use serde_json::{json, Value};
use tower::ServiceExt;
use usage_core::admin::{EXPORT_RETENTION, MAX_SCHEDULES_PER_ADMIN};
use usage_core::event::Access;
use usage_core::frequency::UsageClass;
use usage_core::privacy::UserHasher;
use usage_core::range::MAX_CUSTOM_DAYS;
use usage_core::status::Status;
use usage_report::admins::Admins;
use usage_report::error::CODES;
use usage_report::export::ExportStore;
use usage_report::messages::{ReportReady, ReportReadyType, UnassignRequest, UnassignRequestType};
use usage_report::model::{ExportFormat, ExportKind, SortColumn, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use usage_report::openapi::{schemas, ROUTES};
use usage_report::report::Reporter;
use usage_report::schedule::{Frequency, ScheduleStore, LAST_START_DATE, MAX_NAME_CHARS};

use super::{document, router, AppState};

mod contract;
use crate::commands::Publisher;
use crate::metrics::Metrics;

/// Held by the tests that send requests through the router: one at a time,
/// as a request test capturing logs with a scoped subscriber misses events
/// while another thread hits the same callsites (tracing caches interest
/// per callsite, across threads).
pub(crate) static ROUTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An admin's token in [`state`].
pub(crate) const TOKEN: &str = "ada-secret-token-0123456789";

/// The service's state, over nothing that must answer: ClickHouse and the
/// broker are never reached by the routes the tests call (or answer 503).
pub(crate) fn state(exports: &std::path::Path) -> AppState {
    let admins = Admins::parse(&format!(
        "[[admin]]\nid = \"ada\"\nemail = \"ada@example.com\"\nrole = \"primary\"\n\
         teams = [\"*\"]\ntoken = \"{TOKEN}\"\n"
    ))
    .expect("admins");
    let hasher = UserHasher::new(&[7; 32]).expect("a key");
    AppState {
        admins: Arc::new(admins),
        reporter: Reporter::new(clickhouse::Client::default(), hasher),
        exports: ExportStore::open(exports).expect("exports directory"),
        schedules: ScheduleStore::new(clickhouse::Client::default()),
        publisher: Publisher::new("127.0.0.1:1", "c".into(), "n".into()).expect("producer"),
        metrics: Metrics::new().expect("metrics"),
        page: Arc::new(usage_report::page::Page::new(super::page_template(), &[])),
    }
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

/// Every operation: (METHOD, path, operation).
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

fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    &doc["components"]["schemas"][name]
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn parameter<'a>(doc: &'a Value, path: &str, name: &str) -> &'a Value {
    doc["paths"][path]["get"]["parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("{path} has no parameter {name}"))
}

#[test]
fn the_document_is_openapi_3_1_json() {
    let doc = document();
    let text = serde_json::to_string(doc).expect("serialises");
    let back: Value = serde_json::from_str(&text).expect("parses back");
    assert_eq!(&back, doc);
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    assert!(doc["info"]["summary"].is_string());
}

/// The routes served are the routes documented: both come from `routes()`;
/// here the router answers every documented operation (never with the
/// fallback's 404 or a 405) and refuses every other method on a documented
/// path, and [`ROUTES`] (which the end-to-end tests probe) is the same list.
#[tokio::test]
async fn the_router_serves_exactly_the_documented_routes() {
    let _one_at_a_time = ROUTER.lock().await;
    let doc = document();
    let documented: BTreeSet<(String, String)> = operations(doc)
        .into_iter()
        .map(|(m, p, _)| (m, p))
        .collect();
    let listed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(listed.len(), ROUTES.len(), "ROUTES has no duplicates");
    assert_eq!(documented, listed);

    let exports = std::env::temp_dir().join(format!(
        "usage-report-routes-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let state = state(&exports);
    let id = "00000000-0000-4000-8000-000000000000";
    let paths: BTreeSet<&str> = documented.iter().map(|(_, p)| p.as_str()).collect();
    for path in paths {
        let uri = path.replace("{export_id}", id).replace("{schedule_id}", id);
        for method in ["GET", "PUT", "POST", "DELETE", "PATCH"] {
            let request = Request::builder()
                .method(Method::from_bytes(method.as_bytes()).expect("a method"))
                .uri(&uri)
                .body(Body::empty())
                .expect("a request");
            let status = router(state.clone())
                .oneshot(request)
                .await
                .expect("answered")
                .status();
            if documented.contains(&(method.to_owned(), path.to_owned())) {
                if path.starts_with("/v1/") {
                    assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
                } else {
                    assert!(
                        status == StatusCode::OK || status == StatusCode::SERVICE_UNAVAILABLE,
                        "{method} {path}: {status}"
                    );
                }
            } else {
                assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&exports);
}

#[test]
fn every_ref_resolves() {
    let doc = document();
    let mut found = Vec::new();
    refs(doc, &mut found);
    assert!(!found.is_empty());
    for r in found {
        let pointer = r
            .strip_prefix("#/components/")
            .map(|_| &r[1..])
            .unwrap_or_else(|| panic!("{r} is not a component reference"));
        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
    }
}

/// Every object schema lists its properties and allows no other: a field
/// added to a response type without being documented cannot happen (the
/// schemas are derived), and one the document does not know fails the
/// end-to-end validation of the real answers.
#[test]
fn every_object_schema_is_closed() {
    fn check(name: &str, schema: &Value) {
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            assert_eq!(schema["additionalProperties"], json!(false), "{name}");
            for (field, s) in properties {
                check(&format!("{name}.{field}"), s);
            }
        }
    }
    let doc = document();
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for (name, schema) in schemas {
        check(name, schema);
    }
}

#[test]
fn the_error_schema_lists_every_code() {
    let doc = document();
    let listed: BTreeSet<&str> = strings(&schema(doc, "Error")["properties"]["error"]["enum"])
        .into_iter()
        .collect();
    let codes: BTreeSet<&str> = CODES.iter().map(|(c, _, _)| *c).collect();
    assert_eq!(listed, codes);
    let responses = doc["components"]["responses"]
        .as_object()
        .expect("responses");
    let documented: BTreeSet<&str> = responses.keys().map(String::as_str).collect();
    assert_eq!(documented, codes, "one component response per code");
}

#[test]
fn v1_error_responses_carry_codes_of_their_status() {
    let doc = document();
    for (method, path, op) in operations(doc) {
        if !path.starts_with("/v1/") {
            continue;
        }
        let responses = op["responses"].as_object().expect("responses");
        for (status, response) in responses {
            let status: u16 = status.parse().expect("a numeric status");
            if status < 400 {
                continue;
            }
            let response = resolve(doc, response);
            let schema = &response["content"]["application/json"]["schema"];
            assert_eq!(
                schema["allOf"][0]["$ref"], "#/components/schemas/Error",
                "{method} {path} {status}"
            );
            let codes = strings(&schema["allOf"][1]["properties"]["error"]["enum"]);
            assert!(!codes.is_empty());
            for code in codes {
                let known = CODES.iter().find(|(c, _, _)| *c == code);
                let (_, code_status, _) = known.unwrap_or_else(|| panic!("{code} is not in CODES"));
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
    for (method, path, op) in operations(doc) {
        let id = op["operationId"].as_str().expect("an operationId");
        assert!(ids.insert(id.to_owned()), "{id} is unique");
        assert!(op["summary"].is_string(), "{method} {path} has a summary");
        assert_eq!(strings(&op["tags"]).len(), 1, "{method} {path} has a tag");
        let responses = op["responses"].as_object().expect("responses");
        if path.starts_with("/v1/") {
            assert!(op.get("security").is_none(), "{method} {path}");
            for status in ["401", "500", "503"] {
                assert!(responses.contains_key(status), "{method} {path} {status}");
            }
            let takes_input = op.get("requestBody").is_some()
                || op["parameters"].as_array().is_some_and(|ps| {
                    ps.iter()
                        .any(|p| resolve(doc, p)["in"].as_str() == Some("query"))
                });
            if takes_input {
                assert!(responses.contains_key("400"), "{method} {path} 400");
            }
        } else {
            assert_eq!(op["security"], json!([]), "{method} {path}");
        }
    }
    let tags: BTreeSet<&str> = doc["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for (method, path, op) in operations(doc) {
        for tag in strings(&op["tags"]) {
            assert!(
                tags.contains(tag),
                "{method} {path}: tag {tag} is described"
            );
        }
    }
}

#[test]
fn stable_names_come_from_the_code() {
    let doc = document();
    let users = "/v1/report/users";
    let page_size = &parameter(doc, users, "page_size")["schema"];
    assert_eq!(page_size["maximum"], json!(MAX_PAGE_SIZE));
    assert_eq!(page_size["default"], json!(DEFAULT_PAGE_SIZE));
    assert_eq!(
        schema(doc, "UsersPage")["properties"]["page_size"]["maximum"],
        json!(MAX_PAGE_SIZE)
    );
    let pattern = parameter(doc, users, "sort")["schema"]["pattern"]
        .as_str()
        .expect("a pattern");
    for (_, name) in SortColumn::ALL {
        assert!(pattern.contains(name), "{name}");
    }
    let range = &parameter(doc, users, "range")["schema"]["enum"];
    assert_eq!(strings(range), schemas::range_names());
    let access: Vec<&str> = Access::ALL.iter().map(|a| a.as_str()).collect();
    assert_eq!(
        strings(&parameter(doc, users, "access")["schema"]["enum"]),
        access
    );
    assert_eq!(strings(&schema(doc, "Access")["enum"]), access);
    let status: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(
        strings(&parameter(doc, users, "status")["schema"]["enum"]),
        status
    );
    assert_eq!(strings(&schema(doc, "Status")["enum"]), status);
    let classes: Vec<&str> = UsageClass::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(
        strings(&parameter(doc, users, "usage_class")["schema"]["enum"]),
        classes
    );
    assert_eq!(strings(&schema(doc, "UsageClass")["enum"]), classes);
    let kinds: Vec<&str> = ExportKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(strings(&schema(doc, "ExportKind")["enum"]), kinds);
    let formats: Vec<&str> = ExportFormat::ALL.iter().map(|f| f.as_str()).collect();
    assert_eq!(strings(&schema(doc, "ExportFormat")["enum"]), formats);
    let frequencies: Vec<&str> = [Frequency::Daily, Frequency::Weekly, Frequency::Monthly]
        .iter()
        .map(|f| f.as_str())
        .collect();
    assert_eq!(strings(&schema(doc, "Frequency")["enum"]), frequencies);

    // The users table takes the filters, its sort and paging; the overview
    // and the chart the filters alone.
    let names = |path: &str| -> Vec<String> {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .filter_map(|p| p["name"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(names(users).len(), 13);
    let filters: Vec<String> = names(users)
        .into_iter()
        .filter(|n| !["sort", "page", "page_size"].contains(&n.as_str()))
        .collect();
    assert_eq!(names("/v1/report/overview"), filters);
    assert_eq!(names("/v1/report/daily"), filters);

    // The media types of the files, as served.
    let download = &doc["paths"]["/v1/exports/{export_id}/download"]["get"]["responses"]["200"];
    let documented: BTreeSet<&str> = download["content"]
        .as_object()
        .expect("content")
        .keys()
        .map(String::as_str)
        .collect();
    let served: BTreeSet<&str> = ExportFormat::ALL
        .iter()
        .map(|f| f.content_type().split(';').next().unwrap_or_default())
        .collect();
    assert_eq!(documented, served);
}

/// Numbers the doc comments state (which cannot interpolate constants) are
/// the code's.
#[test]
fn numbers_in_descriptions_are_the_codes() {
    let doc = document();
    let text = |value: &Value| value.as_str().unwrap_or_default().replace('\n', " ");
    let users = "/v1/report/users";
    for (description, number) in [
        (
            text(&parameter(doc, users, "from")["description"]),
            format!("at most {MAX_CUSTOM_DAYS} days"),
        ),
        (
            text(&parameter(doc, users, "page_size")["description"]),
            format!("1 to {MAX_PAGE_SIZE} (default {DEFAULT_PAGE_SIZE}"),
        ),
        (
            text(&doc["paths"]["/v1/exports"]["post"]["description"]),
            format!("{} days after creation", EXPORT_RETENTION.num_days()),
        ),
        (
            text(&doc["paths"]["/v1/schedules"]["post"]["description"]),
            format!("at most {MAX_SCHEDULES_PER_ADMIN} each"),
        ),
        (
            text(&schema(doc, "ScheduleInput")["properties"]["start_date"]["description"]),
            format!("at most {LAST_START_DATE}"),
        ),
        (
            text(&schema(doc, "ScheduleInput")["properties"]["name"]["description"]),
            format!("1 to {MAX_NAME_CHARS} characters"),
        ),
        (
            text(&schema(doc, "ExportMeta")["properties"]["expires_at"]["description"]),
            format!("+ {} days", EXPORT_RETENTION.num_days()),
        ),
    ] {
        assert!(
            description.contains(&number),
            "{number:?} in {description:?}"
        );
    }
}

/// The Kafka messages as the service serialises them validate against the
/// schemas `x-kafka-messages` names.
#[test]
fn kafka_messages_validate_against_their_schemas() {
    let doc = document();
    let at = Utc
        .with_ymd_and_hms(2026, 3, 15, 12, 0, 0)
        .single()
        .unwrap_or_default();
    let unassign = UnassignRequest {
        request_id: "r1".into(),
        kind: UnassignRequestType::UnassignRequest,
        requested_at: at,
        requested_by: "ada".into(),
        team_id: "t1".into(),
        user_id: "u1".into(),
        product: "photoshop".into(),
        access: Access::Seat,
    };
    let ready = ReportReady {
        notification_id: "n1".into(),
        kind: ReportReadyType::ReportReady,
        admin_id: "ada".into(),
        admin_email: "ada@example.com".into(),
        schedule_id: "s1".into(),
        schedule_name: "Monthly".into(),
        export_id: "00000000-0000-4000-8000-000000000000".into(),
        download_path: "/v1/exports/00000000-0000-4000-8000-000000000000/download".into(),
        created_at: at,
    };
    for (name, message) in [
        ("unassign_request", serde_json::to_value(&unassign)),
        ("report_ready", serde_json::to_value(&ready)),
    ] {
        let message = message.expect("serialises");
        let reference = &doc["x-kafka-messages"][name]["schema"];
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(&json!({
                "$ref": reference["$ref"],
                "components": doc["components"],
            }))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let errors: Vec<String> = validator
            .iter_errors(&message)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{name}: {errors:?}");
        let mut extra = message.clone();
        if let Some(object) = extra.as_object_mut() {
            object.insert("surprise".into(), json!(1));
        }
        assert!(
            !validator.is_valid(&extra),
            "{name}: a field not in the schema is refused"
        );
    }
    assert_eq!(
        doc["paths"]["/v1/assignments/unassign"]["post"]["x-kafka-publishes"]["schema"],
        doc["x-kafka-messages"]["unassign_request"]["schema"]
    );
}
