//! The contract the document states beyond the derives, against the
//! document and the router: the response links, the body filters' one form
//! per kind of range, and bodies the document forbids refused.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use chrono::Utc;
use serde_json::{json, Value};
use tower::ServiceExt;

use usage_report::model::MAX_PAGE;
use usage_report::schedule::MAX_NAME_CHARS;

use super::{operations, resolve, state, ROUTER, TOKEN};
use crate::api::{document, router};

/// The response links reach the operations on a created export or
/// schedule: each names an operation of the document and fills a path
/// parameter it has from a field of the answer's schema.
#[test]
fn links_follow_a_created_export_and_schedule() {
    let doc = document();
    let ops = operations(doc);
    let mut linked = BTreeSet::new();
    for (method, path, op) in &ops {
        for (status, response) in op["responses"].as_object().into_iter().flatten() {
            for (name, link) in response["links"].as_object().into_iter().flatten() {
                let id = link["operationId"].as_str().expect("an operationId");
                let (_, target_path, target) = ops
                    .iter()
                    .find(|(_, _, o)| o["operationId"] == id)
                    .unwrap_or_else(|| panic!("{method} {path} {status} {name}: no {id}"));
                for (parameter, expression) in link["parameters"].as_object().into_iter().flatten()
                {
                    assert!(
                        target_path.contains(&format!("{{{parameter}}}")),
                        "{name}: {target_path} has no {parameter}"
                    );
                    let field = expression
                        .as_str()
                        .and_then(|e| e.strip_prefix("$response.body#/"))
                        .expect("a body field");
                    let body = resolve(doc, &response["content"]["application/json"]["schema"]);
                    assert!(
                        body["properties"][field].is_object(),
                        "{method} {path} {status} answers no {field}"
                    );
                }
                assert!(target["operationId"].is_string());
                linked.insert(id.to_owned());
            }
        }
    }
    for id in [
        "getExport",
        "downloadExport",
        "getSchedule",
        "updateSchedule",
        "deleteSchedule",
    ] {
        assert!(linked.contains(id), "no link to {id}");
    }
}

/// A JSON body's filters take one form per kind of range: a preset without
/// dates, or `custom` with both.
#[test]
fn body_filters_are_one_object_per_kind_of_range() {
    let doc = document();
    let root =
        json!({ "$ref": "#/components/schemas/ReportParams", "components": doc["components"] });
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&root)
        .expect("the schema compiles");
    for valid in [
        json!({}),
        json!({"range": "last_3_months", "team": "t1"}),
        json!({"range": null, "from": null}),
        json!({"range": "custom", "from": "2026-01-01", "to": "2026-01-31"}),
        json!({"page": "1000000", "page_size": "1000"}),
    ] {
        assert!(validator.is_valid(&valid), "{valid}");
    }
    for invalid in [
        json!({"range": "last_30_days", "from": "2026-01-01"}),
        json!({"to": "2026-01-01"}),
        json!({"range": "custom", "from": "2026-01-01"}),
        json!({"range": "custom", "from": "2026-1-1", "to": "2026-01-31"}),
        json!({"range": ""}),
        json!({"page": "0"}),
        json!({"page": "01"}),
        json!({"page_size": "1001"}),
        json!({"colour": "blue"}),
    ] {
        assert!(!validator.is_valid(&invalid), "{invalid}");
    }
    // The bounds written as literals in attributes are the code's.
    let users = &doc["paths"]["/v1/report/users"]["get"]["parameters"];
    let page = users
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "page"))
        .expect("a page parameter");
    assert_eq!(page["schema"]["maximum"], json!(MAX_PAGE));
    let name = &doc["components"]["schemas"]["ScheduleInput"]["properties"]["name"];
    assert_eq!(name["maxLength"], json!(MAX_NAME_CHARS));
}

/// Bodies the document forbids are refused before anything is looked up:
/// an array for an object (serde alone would build the struct from it),
/// filters of exports and schedules that the report would refuse (sort and
/// page too, though exports ignore the page), a range's dates out of their
/// rules, a start date before today.
#[tokio::test]
async fn bodies_the_document_forbids_are_refused() {
    let _one_at_a_time = ROUTER.lock().await;
    let exports = std::env::temp_dir().join(format!(
        "usage-report-bodies-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let state = state(&exports);
    let schedule = |filters: Value, start_date: &str| {
        json!({"name": "n", "start_date": start_date, "frequency": "daily", "format": "csv",
               "filters": filters})
    };
    let tomorrow = (Utc::now().date_naive() + chrono::Days::new(1)).to_string();
    let export =
        |filters: Value| json!({"kind": "seat_usage", "format": "csv", "filters": filters});
    let cases = [
        ("/v1/exports", json!(["report", "csv"]), "invalid_body"),
        ("/v1/exports", export(json!([null, null])), "invalid_body"),
        (
            "/v1/exports",
            export(json!({"page": "abc"})),
            "invalid_parameter",
        ),
        (
            "/v1/exports",
            export(json!({"page_size": "0"})),
            "invalid_parameter",
        ),
        (
            "/v1/exports",
            export(json!({"sort": "salary"})),
            "invalid_parameter",
        ),
        (
            "/v1/exports",
            export(json!({"range": ""})),
            "invalid_parameter",
        ),
        (
            "/v1/exports",
            export(json!({"range": "custom", "from": "2026-02-01", "to": "2026-01-01"})),
            "invalid_range",
        ),
        (
            "/v1/exports",
            export(json!({"to": "2026-01-01"})),
            "invalid_range",
        ),
        ("/v1/schedules", json!([]), "invalid_body"),
        (
            "/v1/schedules",
            schedule(json!({}), "2026-1-01"),
            "invalid_body",
        ),
        (
            "/v1/schedules",
            schedule(json!({}), "2000-01-01"),
            "invalid_start_date",
        ),
        (
            "/v1/schedules",
            schedule(json!({}), "2100-01-01"),
            "invalid_start_date",
        ),
        (
            "/v1/schedules",
            schedule(json!([]), &tomorrow),
            "invalid_body",
        ),
        (
            "/v1/schedules",
            schedule(json!({"page": "01"}), &tomorrow),
            "invalid_parameter",
        ),
        (
            "/v1/assignments/unassign",
            json!(["t", "u", "p"]),
            "invalid_body",
        ),
    ];
    for (path, body, code) in cases {
        let request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("a request");
        let response = router(state.clone())
            .oneshot(request)
            .await
            .expect("answered");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap_or_default();
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        assert_eq!(
            (status, answer["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{path} {body}: {answer}"
        );
    }
    let _ = std::fs::remove_dir_all(&exports);
}
