//! `usage-report` answers as its own `/openapi.json` says. Over rollups
//! built by the real ingest, against the real broker and ClickHouse, the
//! test calls every route the served document lists (each method and path,
//! with its successes and the errors cheap to provoke: 400, 401, 403, 404,
//! 409, 410) and checks each real answer against the document: its status
//! is documented for the route, a JSON body validates against the schema
//! documented for that status (JSON Schema 2020-12, `$ref`s resolved in the
//! document's components, every object closed, so a field the document
//! does not list fails), and any other body has a documented media type.
//! The Kafka messages the calls cause (an unassign request, a "report
//! ready" notification) validate against `x-kafka-messages`. Every mismatch
//! is listed, then the test fails.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{Duration as Days, Utc};
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use usage_loadgen::Via;
use usage_tests::report::{fixture, Report, ReportOptions, TestAdmin};
use usage_tests::services::{self, eventually};

fn admin(id: &'static str, role: &'static str, teams: &[&str]) -> TestAdmin {
    TestAdmin {
        id,
        role,
        teams: teams.iter().map(|t| (*t).to_owned()).collect(),
    }
}

/// An id no export or schedule has.
const NO_SUCH_ID: &str = "00000000-0000-4000-8000-000000000000";

/// A real answer.
struct Answer {
    status: StatusCode,
    /// The JSON body; `Null` when not JSON.
    json: Value,
}

/// The served document, the calls made and the mismatches found.
struct Checked<'r> {
    report: &'r Report,
    client: reqwest::Client,
    doc: Value,
    /// (METHOD, path template, status) of every call.
    calls: BTreeSet<(String, String, u16)>,
    mismatches: Vec<String>,
}

/// The media type without its parameters (`text/csv; charset=utf-8` ->
/// `text/csv`).
fn essence(media_type: &str) -> String {
    media_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

impl<'r> Checked<'r> {
    async fn new(report: &'r Report) -> Checked<'r> {
        let client = reqwest::Client::new();
        let doc: Value = client
            .get(report.url("/openapi.json"))
            .send()
            .await
            .expect("usage-report answers")
            .json()
            .await
            .expect("the document is JSON");
        Checked {
            report,
            client,
            doc,
            calls: BTreeSet::new(),
            mismatches: Vec::new(),
        }
    }

    /// The value `value` refers to, if it is a `$ref` into the document.
    fn resolve(&self, value: &Value) -> Value {
        match value.get("$ref").and_then(Value::as_str) {
            Some(r) => self
                .doc
                .pointer(r.trim_start_matches('#'))
                .cloned()
                .unwrap_or(Value::Null),
            None => value.clone(),
        }
    }

    /// Validates `instance` against `schema` (refs into the document's
    /// components); a mismatch per error.
    fn validate(&mut self, what: &str, schema: &Value, instance: &Value) {
        let root = json!({
            "allOf": [schema],
            "components": self.doc["components"],
        });
        let validator = match jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&root)
        {
            Ok(v) => v,
            Err(e) => {
                self.mismatches.push(format!(
                    "{what}: the documented schema does not compile: {e}"
                ));
                return;
            }
        };
        for error in validator.iter_errors(instance) {
            let text = instance.to_string();
            self.mismatches.push(format!(
                "{what}: {error} at {} (body: {})",
                error.instance_path,
                &text[..text.len().min(300)]
            ));
        }
    }

    /// Calls `method path` (the route `template`) as `admin` with a JSON
    /// `body`, and checks the answer against the document.
    async fn call(
        &mut self,
        admin: Option<&TestAdmin>,
        method: Method,
        template: &str,
        path: &str,
        body: Option<Value>,
    ) -> Answer {
        let mut request = self.client.request(method.clone(), self.report.url(path));
        if let Some(a) = admin {
            request = request.bearer_auth(a.token());
        }
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request.send().await.expect("usage-report answers");
        let status = response.status();
        let media_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(essence);
        let bytes = response
            .bytes()
            .await
            .map(|b| b.to_vec())
            .unwrap_or_default();
        let what = format!("{method} {path} -> {}", status.as_u16());
        self.calls.insert((
            method.as_str().to_owned(),
            template.to_owned(),
            status.as_u16(),
        ));

        let operation = self.doc["paths"][template][method.as_str().to_lowercase()].clone();
        let documented = self.resolve(&operation["responses"][status.as_str()]);
        let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if operation.is_null() {
            self.mismatches.push(format!(
                "{what}: {method} {template} is not in the document"
            ));
            return Answer { status, json };
        }
        if documented.is_null() {
            self.mismatches
                .push(format!("{what}: status not documented for {template}"));
            return Answer { status, json };
        }
        let content = documented["content"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        if content.is_empty() {
            if !bytes.is_empty() {
                self.mismatches.push(format!(
                    "{what}: documented without a body, answered {} bytes",
                    bytes.len()
                ));
            }
            return Answer { status, json };
        }
        let Some(media_type) = media_type else {
            self.mismatches.push(format!(
                "{what}: no Content-Type, documented {:?}",
                content.keys()
            ));
            return Answer { status, json };
        };
        let Some((_, entry)) = content.iter().find(|(k, _)| essence(k) == media_type) else {
            self.mismatches.push(format!(
                "{what}: Content-Type {media_type}, documented {:?}",
                content.keys().collect::<Vec<_>>()
            ));
            return Answer { status, json };
        };
        if media_type == "application/json" {
            if json.is_null() {
                self.mismatches
                    .push(format!("{what}: the body is not JSON"));
            } else {
                let schema = entry["schema"].clone();
                self.validate(&what, &schema, &json);
            }
        } else if bytes.is_empty() {
            self.mismatches
                .push(format!("{what}: an empty {media_type} body"));
        }
        Answer { status, json }
    }

    /// [`Checked::call`], expecting `want`.
    async fn expect(
        &mut self,
        want: StatusCode,
        admin: Option<&TestAdmin>,
        method: Method,
        template: &str,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let answer = self.call(admin, method.clone(), template, path, body).await;
        if answer.status != want {
            self.mismatches.push(format!(
                "{method} {path}: answered {}, the test wants {want}: {}",
                answer.status, answer.json
            ));
        }
        answer.json
    }

    /// Validates a Kafka message against the schema `x-kafka-messages`
    /// gives `name`.
    fn check_message(&mut self, name: &str, payload: &[u8]) {
        let schema = self.doc["x-kafka-messages"][name]["schema"].clone();
        if schema.is_null() {
            self.mismatches
                .push(format!("x-kafka-messages has no {name}"));
            return;
        }
        match serde_json::from_slice::<Value>(payload) {
            Ok(message) => self.validate(&format!("Kafka message {name}"), &schema, &message),
            Err(e) => self
                .mismatches
                .push(format!("Kafka message {name}: not JSON: {e}")),
        }
    }

    /// Every object schema of the document's components allows no property
    /// it does not list (else validation would not catch a new field).
    fn check_objects_are_closed(&mut self) {
        fn walk(name: &str, schema: &Value, out: &mut Vec<String>) {
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                if schema.get("additionalProperties") != Some(&Value::Bool(false)) {
                    out.push(format!("schema {name} allows properties it does not list"));
                }
                for (field, s) in properties {
                    walk(&format!("{name}.{field}"), s, out);
                }
            }
        }
        let schemas = self.doc["components"]["schemas"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for (name, schema) in &schemas {
            walk(name, schema, &mut self.mismatches);
        }
    }

    /// Every documented operation was called and answered with success at
    /// least once, and the error statuses were all provoked.
    fn check_coverage(&mut self) {
        let paths = self.doc["paths"].as_object().cloned().unwrap_or_default();
        for (path, item) in &paths {
            for method in item.as_object().map(|m| m.keys()).into_iter().flatten() {
                let method = method.to_uppercase();
                let succeeded = self
                    .calls
                    .iter()
                    .any(|(m, p, s)| *m == method && p == path && (200..300).contains(s));
                if !succeeded {
                    self.mismatches
                        .push(format!("{method} {path}: never called with success"));
                }
            }
        }
        for status in [400, 401, 403, 404, 409, 410] {
            if !self.calls.iter().any(|(_, _, s)| *s == status) {
                self.mismatches
                    .push(format!("no route was made to answer {status}"));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_answers_as_the_served_document_says() {
    let f = fixture("openapi", 14).await;
    let teams = f.current_teams();
    let team = teams
        .iter()
        .find(|t| f.pii_visible(t))
        .cloned()
        .expect("a team with PII on");
    let hashed = teams.iter().find(|t| !f.pii_visible(t)).cloned();
    let other = teams
        .iter()
        .find(|t| **t != team)
        .cloned()
        .expect("another team");
    let one = admin("one", "secondary", &[&team]);
    let two = admin("two", "primary", &[&team]);
    let every = admin("every", "user_admin", &["*"]);
    let commands = services::create_topic("commands", 1).await;
    let notifications = services::create_topic("notifications", 1).await;
    let report = Report::start(
        f.db.name(),
        &[one.clone(), two.clone(), every.clone()],
        ReportOptions {
            commands_topic: Some(commands.clone()),
            notifications_topic: Some(notifications.clone()),
            scheduler_interval_secs: Some(1),
            sweep_interval_secs: Some(1),
            ..ReportOptions::default()
        },
    )
    .await;
    let mut api = Checked::new(&report).await;
    api.check_objects_are_closed();
    let (get, post, put, delete) = (Method::GET, Method::POST, Method::PUT, Method::DELETE);
    let ok = StatusCode::OK;

    // The public routes.
    for path in ["/", "/healthz", "/readyz", "/metrics", "/openapi.json"] {
        api.expect(ok, None, get.clone(), path, path, None).await;
    }

    // Without a token (or with one no admin holds), every /v1 route is 401.
    let operations: Vec<(String, String)> = api.doc["paths"]
        .as_object()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .flat_map(|(path, item)| {
            let methods: Vec<String> = item
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            methods
                .into_iter()
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .filter(|(_, path)| path.starts_with("/v1/"))
        .collect();
    let stranger = admin("stranger", "primary", &["*"]);
    for (method, template) in &operations {
        let path = template
            .replace("{export_id}", NO_SUCH_ID)
            .replace("{schedule_id}", NO_SUCH_ID);
        let method = Method::from_bytes(method.as_bytes()).expect("a method");
        let body = (method == Method::POST || method == Method::PUT).then(|| json!({}));
        api.expect(
            StatusCode::UNAUTHORIZED,
            None,
            method.clone(),
            template,
            &path,
            body.clone(),
        )
        .await;
        api.expect(
            StatusCode::UNAUTHORIZED,
            Some(&stranger),
            method,
            template,
            &path,
            body,
        )
        .await;
    }

    // The admin and the teams.
    api.expect(ok, Some(&one), get.clone(), "/v1/me", "/v1/me", None)
        .await;
    api.expect(ok, Some(&every), get.clone(), "/v1/me", "/v1/me", None)
        .await;
    api.expect(ok, Some(&one), get.clone(), "/v1/teams", "/v1/teams", None)
        .await;
    api.expect(
        ok,
        Some(&every),
        get.clone(),
        "/v1/teams",
        "/v1/teams",
        None,
    )
    .await;

    // The report, for a team (with `inactive`), for all teams (without), for
    // a hashed team (the hash as name and email), and refused.
    let report_routes = [
        "/v1/report/overview",
        "/v1/report/users",
        "/v1/report/daily",
    ];
    let mut queries = vec![
        format!("team={team}&range=last_3_months"),
        "team=all".to_owned(),
        format!(
            "team={team}&range=custom&from={}&to={}",
            f.today() - Days::days(20),
            f.today()
        ),
    ];
    if let Some(hashed) = &hashed {
        queries.push(format!("team={hashed}&range=last_30_days"));
    }
    for route in report_routes {
        for query in &queries {
            let path = format!("{route}?{query}");
            api.expect(ok, Some(&every), get.clone(), route, &path, None)
                .await;
        }
        let path = format!("{route}?team={team}");
        api.expect(ok, Some(&one), get.clone(), route, &path, None)
            .await;
        for bad in [
            "range=last_week",
            "access=trial",
            "range=custom&from=2026-02-01",
            "colour=blue",
        ] {
            let path = format!("{route}?{bad}");
            api.expect(
                StatusCode::BAD_REQUEST,
                Some(&one),
                get.clone(),
                route,
                &path,
                None,
            )
            .await;
        }
        let path = format!("{route}?team={other}");
        api.expect(
            StatusCode::FORBIDDEN,
            Some(&one),
            get.clone(),
            route,
            &path,
            None,
        )
        .await;
    }
    let users = "/v1/report/users";
    for query in ["sort=salary:asc", "page_size=0", "page=x"] {
        let path = format!("{users}?{query}");
        api.expect(
            StatusCode::BAD_REQUEST,
            Some(&one),
            get.clone(),
            users,
            &path,
            None,
        )
        .await;
    }
    let path = format!("{users}?team={team}&sort=days_used:desc&page=2&page_size=5");
    api.expect(ok, Some(&one), get.clone(), users, &path, None)
        .await;
    // A team merged into another answers 404 `team_merged`.
    let (merged, _) = f
        .published
        .scenario
        .merge()
        .expect("the scenario merges a team into another");
    let path = format!("{users}?team={merged}");
    api.expect(
        StatusCode::NOT_FOUND,
        Some(&every),
        get.clone(),
        users,
        &path,
        None,
    )
    .await;

    // Exports: accepted (written in the background), polled, listed, read,
    // downloaded; refused; not ready; expired.
    let exports = "/v1/exports";
    let filters = json!({"team": team, "range": "last_3_months", "sort": "days_used:desc"});
    let mut written = Vec::new();
    for (kind, format) in [
        ("report", "csv"),
        ("report", "xlsx"),
        ("seat_usage", "csv"),
        ("token_usage", "xlsx"),
    ] {
        let body = json!({"kind": kind, "format": format, "filters": filters});
        let meta = api
            .expect(
                StatusCode::ACCEPTED,
                Some(&one),
                post.clone(),
                exports,
                exports,
                Some(body),
            )
            .await;
        written.push(meta);
    }
    let meta = api
        .expect(
            StatusCode::ACCEPTED,
            Some(&one),
            post.clone(),
            exports,
            exports,
            Some(json!({"kind": "report", "format": "csv"})),
        )
        .await;
    written.push(meta);
    for (status, body) in [
        (StatusCode::BAD_REQUEST, json!({"kind": "report"})),
        (
            StatusCode::BAD_REQUEST,
            json!({"kind": "report", "format": "pdf"}),
        ),
        (
            StatusCode::BAD_REQUEST,
            json!({"kind": "report", "format": "csv", "x": 1}),
        ),
        (
            StatusCode::BAD_REQUEST,
            json!({"kind": "report", "format": "csv", "filters": {"range": "last_week"}}),
        ),
        (
            StatusCode::FORBIDDEN,
            json!({"kind": "report", "format": "csv", "filters": {"team": other}}),
        ),
    ] {
        api.expect(
            status,
            Some(&one),
            post.clone(),
            exports,
            exports,
            Some(body),
        )
        .await;
    }
    api.expect(ok, Some(&one), get.clone(), exports, exports, None)
        .await;
    api.expect(ok, Some(&two), get.clone(), exports, exports, None)
        .await;
    let one_export = "/v1/exports/{export_id}";
    let download = "/v1/exports/{export_id}/download";
    for meta in &written {
        let path = format!(
            "/v1/exports/{}",
            meta["export_id"].as_str().unwrap_or(NO_SUCH_ID)
        );
        let ready = eventually(Duration::from_secs(60), || async {
            report.get(Some(&one), &path).await.1["state"] == json!("ready")
        })
        .await;
        assert!(ready, "{path} becomes ready");
    }
    // Not ready: an export still running is not downloaded (409).
    {
        let id = written[1]["export_id"].as_str().unwrap_or(NO_SUCH_ID);
        let mut running: Value = serde_json::from_slice(
            &std::fs::read(report.exports_dir.join(format!("{id}.json"))).expect("sidecar"),
        )
        .expect("JSON");
        let unfinished = "5d7e8f90-a1b2-4c3d-8e4f-5a6b7c8d9e0f";
        running["export_id"] = json!(unfinished);
        running["download_path"] = json!(format!("/v1/exports/{unfinished}/download"));
        running["state"] = json!("running");
        running["rows"] = json!(0);
        std::fs::write(
            report.exports_dir.join(format!("{unfinished}.json")),
            serde_json::to_vec(&running).expect("JSON"),
        )
        .expect("write");
        let path = format!("/v1/exports/{unfinished}");
        api.expect(ok, Some(&one), get.clone(), one_export, &path, None)
            .await;
        api.expect(
            StatusCode::CONFLICT,
            Some(&one),
            get.clone(),
            download,
            &format!("{path}/download"),
            None,
        )
        .await;
    }
    for meta in &written {
        let id = meta["export_id"].as_str().unwrap_or(NO_SUCH_ID).to_owned();
        let path = format!("/v1/exports/{id}");
        api.expect(ok, Some(&one), get.clone(), one_export, &path, None)
            .await;
        api.expect(
            StatusCode::NOT_FOUND,
            Some(&two),
            get.clone(),
            one_export,
            &path,
            None,
        )
        .await;
        let path = format!("/v1/exports/{id}/download");
        api.expect(ok, Some(&one), get.clone(), download, &path, None)
            .await;
        api.expect(
            StatusCode::NOT_FOUND,
            Some(&two),
            get.clone(),
            download,
            &path,
            None,
        )
        .await;
    }
    for template in [one_export, download] {
        let path = template.replace("{export_id}", NO_SUCH_ID);
        api.expect(
            StatusCode::NOT_FOUND,
            Some(&one),
            get.clone(),
            template,
            &path,
            None,
        )
        .await;
        let path = template.replace("{export_id}", "not-a-uuid");
        api.expect(
            StatusCode::NOT_FOUND,
            Some(&one),
            get.clone(),
            template,
            &path,
            None,
        )
        .await;
    }
    // An export 15 days old is swept: its metadata and file answer 410.
    let expired = written[0]["export_id"]
        .as_str()
        .unwrap_or(NO_SUCH_ID)
        .to_owned();
    let sidecar = report.exports_dir.join(format!("{expired}.json"));
    let data = report.exports_dir.join(format!("{expired}.csv"));
    let mut stored: Value =
        serde_json::from_slice(&std::fs::read(&sidecar).expect("sidecar")).expect("JSON");
    let created = Utc::now() - Days::days(15);
    stored["created_at"] = json!(created);
    stored["expires_at"] = json!(created + Days::days(14));
    std::fs::write(&sidecar, serde_json::to_vec(&stored).expect("JSON")).expect("write");
    let gone = eventually(Duration::from_secs(10), || async { !data.exists() }).await;
    assert!(gone, "the sweeper deletes a 15-day-old export");
    for template in [one_export, download] {
        let path = template.replace("{export_id}", &expired);
        api.expect(
            StatusCode::GONE,
            Some(&one),
            get.clone(),
            template,
            &path,
            None,
        )
        .await;
    }
    api.expect(ok, Some(&one), get.clone(), exports, exports, None)
        .await;

    // Schedules: created (one due today, which the scheduler runs), read,
    // edited, deleted; refused.
    let schedules = "/v1/schedules";
    let one_schedule = "/v1/schedules/{schedule_id}";
    let today = Utc::now().date_naive();
    let schedule = |n: u32, start: chrono::NaiveDate| {
        let frequency = ["daily", "weekly", "monthly"][n as usize % 3];
        let kind = ["report", "seat_usage", "token_usage"][n as usize % 3];
        json!({
            "name": format!("Usage {n}"),
            "start_date": start.to_string(),
            "frequency": frequency,
            "format": if n.is_multiple_of(2) { "csv" } else { "xlsx" },
            "kind": kind,
            "filters": {"team": team, "range": "last_30_days"},
        })
    };
    let mut ids = Vec::new();
    for n in 0..5 {
        let start = if n == 0 { today } else { today + Days::days(1) };
        let created = api
            .expect(
                StatusCode::CREATED,
                Some(&one),
                post.clone(),
                schedules,
                schedules,
                Some(schedule(n, start)),
            )
            .await;
        ids.push(
            created["schedule_id"]
                .as_str()
                .unwrap_or(NO_SUCH_ID)
                .to_owned(),
        );
    }
    api.expect(
        StatusCode::CONFLICT,
        Some(&one),
        post.clone(),
        schedules,
        schedules,
        Some(schedule(5, today)),
    )
    .await;
    api.expect(
        StatusCode::FORBIDDEN,
        Some(&every),
        post.clone(),
        schedules,
        schedules,
        Some(schedule(0, today)),
    )
    .await;
    // A schedule for a team the admin does not administer: 403, made or
    // changed.
    let mut theirs = schedule(0, today);
    theirs["filters"]["team"] = json!(other);
    api.expect(
        StatusCode::FORBIDDEN,
        Some(&two),
        post.clone(),
        schedules,
        schedules,
        Some(theirs.clone()),
    )
    .await;
    api.expect(
        StatusCode::FORBIDDEN,
        Some(&one),
        put.clone(),
        one_schedule,
        &format!("/v1/schedules/{}", ids[2]),
        Some(theirs),
    )
    .await;
    for bad in [
        json!({"name": "x"}),
        json!({"name": "", "start_date": today.to_string(), "frequency": "daily", "format": "csv"}),
        json!({"name": "x", "start_date": "2000-01-01", "frequency": "daily", "format": "csv"}),
        json!({"name": "x", "start_date": today.to_string(), "frequency": "hourly", "format": "csv"}),
    ] {
        api.expect(
            StatusCode::BAD_REQUEST,
            Some(&two),
            post.clone(),
            schedules,
            schedules,
            Some(bad),
        )
        .await;
    }
    api.expect(ok, Some(&one), get.clone(), schedules, schedules, None)
        .await;
    api.expect(ok, Some(&two), get.clone(), schedules, schedules, None)
        .await;
    let mine = format!("/v1/schedules/{}", ids[1]);
    api.expect(ok, Some(&one), get.clone(), one_schedule, &mine, None)
        .await;
    api.expect(
        StatusCode::NOT_FOUND,
        Some(&two),
        get.clone(),
        one_schedule,
        &mine,
        None,
    )
    .await;
    api.expect(
        ok,
        Some(&one),
        put.clone(),
        one_schedule,
        &mine,
        Some(schedule(7, today + Days::days(2))),
    )
    .await;
    api.expect(
        StatusCode::BAD_REQUEST,
        Some(&one),
        put.clone(),
        one_schedule,
        &mine,
        Some(json!({"name": "x"})),
    )
    .await;
    api.expect(
        StatusCode::NOT_FOUND,
        Some(&two),
        put.clone(),
        one_schedule,
        &mine,
        Some(schedule(8, today)),
    )
    .await;
    api.expect(
        StatusCode::NO_CONTENT,
        Some(&one),
        delete.clone(),
        one_schedule,
        &mine,
        None,
    )
    .await;
    for method in [get.clone(), delete.clone()] {
        api.expect(
            StatusCode::NOT_FOUND,
            Some(&one),
            method,
            one_schedule,
            &mine,
            None,
        )
        .await;
    }
    // The schedule due today runs: its "report ready" notification, and its
    // export in the list.
    let notes = services::read_topic(&notifications, 1, Duration::from_secs(30)).await;
    assert_eq!(notes.len(), 1, "{}", report.log_text());
    for (_, payload) in &notes {
        api.check_message("report_ready", payload);
    }
    api.expect(ok, Some(&one), get.clone(), exports, exports, None)
        .await;
    let due = format!("/v1/schedules/{}", ids[0]);
    api.expect(ok, Some(&one), get.clone(), one_schedule, &due, None)
        .await;

    // Unassign: published for a direct assignment, refused otherwise.
    let unassign = "/v1/assignments/unassign";
    let holding = |via: Via| {
        f.published.expected.rows.iter().find(|r| {
            r.current_team_id == team && r.assignment.as_ref().is_some_and(|a| a.via == via)
        })
    };
    let direct = holding(Via::Direct).expect("a direct assignment");
    let accepted = api
        .expect(
            StatusCode::ACCEPTED,
            Some(&one),
            post.clone(),
            unassign,
            unassign,
            Some(json!({"team_id": team, "user_key": direct.user_id, "product": direct.product, "access": direct.access.as_str()})),
        )
        .await;
    let requests = services::read_topic(&commands, 1, Duration::from_secs(30)).await;
    assert_eq!(requests.len(), 1, "{accepted}");
    for (_, payload) in &requests {
        api.check_message("unassign_request", payload);
    }
    for via in [Via::Group, Via::Default] {
        if let Some(row) = holding(via) {
            api.expect(
                StatusCode::CONFLICT,
                Some(&one),
                post.clone(),
                unassign,
                unassign,
                Some(json!({"team_id": team, "user_key": row.user_id, "product": row.product})),
            )
            .await;
        }
    }
    api.expect(
        StatusCode::CONFLICT,
        Some(&one),
        post.clone(),
        unassign,
        unassign,
        Some(json!({"team_id": team, "user_key": "nobody-at-all", "product": direct.product})),
    )
    .await;
    api.expect(
        StatusCode::FORBIDDEN,
        Some(&one),
        post.clone(),
        unassign,
        unassign,
        Some(json!({"team_id": other, "user_key": direct.user_id, "product": direct.product})),
    )
    .await;
    for bad in [
        json!({"team_id": team}),
        json!({"team_id": team, "user_key": "u", "product": "p", "access": "trial"}),
        json!({"team_id": team, "user_key": "u", "product": "p", "x": 1}),
    ] {
        api.expect(
            StatusCode::BAD_REQUEST,
            Some(&one),
            post.clone(),
            unassign,
            unassign,
            Some(bad),
        )
        .await;
    }
    api.expect(
        StatusCode::NOT_FOUND,
        Some(&every),
        post.clone(),
        unassign,
        unassign,
        Some(json!({"team_id": merged, "user_key": direct.user_id, "product": direct.product})),
    )
    .await;

    api.check_coverage();
    assert!(
        api.mismatches.is_empty(),
        "{} answers differ from /openapi.json:\n{}",
        api.mismatches.len(),
        api.mismatches.join("\n")
    );
}
