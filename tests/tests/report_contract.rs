//! The report API keeps its contract with a client generated from the
//! served `/openapi.json`: schemathesis (a property-based API client,
//! pinned by hash in `tests/contract/requirements.txt`, installed by
//! scripts/test into .local/venv-schemathesis; `USAGE_SCHEMATHESIS` may
//! name another `schemathesis` executable) drives a live `usage-report`
//! over rollups built by the real ingest, against the real broker and
//! ClickHouse, as an admin of every team. Unassign requests go to a
//! commands topic the test makes; the hooks give some of them a real direct
//! assignment, so the run reaches a published request, which must match
//! the document's `x-kafka-messages`.
//!
//! Every check is on (no 5xx, every status, media type, header and body as
//! documented, requests the schema forbids refused, requests it allows
//! accepted, ...), with a fixed seed and a bounded number of examples, in
//! every phase: the document's examples (it has none yet), its boundaries
//! (coverage) and random requests (fuzzing) as one admin, then call
//! sequences along the document's response links (stateful: a schedule
//! created, read, edited, deleted; an export created, read, downloaded) as
//! another, whose schedule limit the fuzzing has not used up. The test
//! prints schemathesis' reports and the service's answers by route and
//! status, and fails if schemathesis found any failure or the runs never
//! went through those lifecycles.
//!
//! `USAGE_CONTRACT_SEED` and `USAGE_CONTRACT_EXAMPLES` change the seed and
//! the number of examples, to explore further than the test command does.
//!
//! The rules no schema can state (between query parameters, against the
//! clock, between two dates) are refused with their own documented 400
//! codes; `tests/contract/hooks.py` lets exactly those answers to
//! schema-valid requests pass, and nothing else, and moves well-formed
//! generated dates into the window those rules allow (so schedules get
//! created and custom ranges reported).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use usage_loadgen::Via;
use usage_tests::report::{fixture, Fixture, Report, ReportOptions, TestAdmin};
use usage_tests::services;

/// The seed of every run: a failure found once is found again.
const SEED: &str = "19";

/// Test cases per operation and phase: the run stays within a couple of
/// minutes on a small machine.
const MAX_EXAMPLES: &str = "25";

/// `name` from the environment (to explore with other seeds or more
/// examples), else `default`.
fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn schemathesis() -> PathBuf {
    let path = std::env::var_os("USAGE_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            usage_testkit::repo_root().join(".local/venv-schemathesis/bin/schemathesis")
        });
    assert!(
        path.exists(),
        "{} not found: scripts/test installs schemathesis there (or set USAGE_SCHEMATHESIS)",
        path.display()
    );
    path
}

/// A schemathesis run: its phases, as which admin.
struct Run {
    phases: &'static str,
    admin: TestAdmin,
}

/// What a run printed and whether it passed.
struct Outcome {
    passed: bool,
    report: String,
}

#[tokio::test(flavor = "multi_thread")]
async fn a_generated_client_finds_no_contract_failure() {
    let schemathesis = schemathesis();
    let f = fixture("contract", 19).await;
    let admin = |id: &'static str| TestAdmin {
        id,
        role: "primary",
        teams: vec!["*".to_owned()],
    };
    // Two runs, one admin each: the stateful phase gets a fresh schedule
    // limit, so it can create (then read, edit, delete) schedules after
    // the fuzzing phase used up the first admin's.
    let runs = [
        Run {
            phases: "examples,coverage,fuzzing",
            admin: admin("generated"),
        },
        Run {
            phases: "stateful",
            admin: admin("stateful"),
        },
    ];
    let admins: Vec<TestAdmin> = runs.iter().map(|r| r.admin.clone()).collect();
    let commands = services::create_topic("commands", 1).await;
    let notifications = services::create_topic("notifications", 1).await;
    let report = Report::start(
        f.db.name(),
        &admins,
        ReportOptions {
            commands_topic: Some(commands.clone()),
            notifications_topic: Some(notifications),
            scheduler_interval_secs: Some(3600),
            ..ReportOptions::default()
        },
    )
    .await;
    let unassignable = unassignable(&f);

    let started = Instant::now();
    let mut outcomes = Vec::new();
    for run in &runs {
        outcomes.push(run_schemathesis(&schemathesis, &report, run, &unassignable).await);
    }
    let elapsed = started.elapsed();
    for (run, outcome) in runs.iter().zip(&outcomes) {
        println!(
            "=== schemathesis, phases {} ===\n{}",
            run.phases, outcome.report
        );
    }
    let answers = answers(&report.log_text());
    println!(
        "schemathesis ran {:.0} s (seed {}, {} examples per operation); \
         the service's answers by admin, route and status:",
        elapsed.as_secs_f64(),
        setting("USAGE_CONTRACT_SEED", SEED),
        setting("USAGE_CONTRACT_EXAMPLES", MAX_EXAMPLES),
    );
    for ((admin, method, route, status), n) in &answers {
        println!("  {admin} {method} {route} {status}: {n}");
    }
    assert!(
        outcomes.iter().all(|o| o.passed),
        "schemathesis found contract failures: its reports are above; the service's log:\n{}",
        tail(&report.log_text(), 40)
    );
    // The runs went through a schedule's life (created, read, edited,
    // deleted) and an export's (created, read, downloaded), and had an
    // unassign request accepted; the stateful phase followed the links of
    // a created schedule and of a created export (a download before the
    // export is written answers 409, as documented). Which calls it makes
    // along the links depends on the seed; that it follows them does not.
    let reached = |admins: &[&str], method: &str, route: &str, status: &str| {
        admins.iter().any(|admin| {
            answers.contains_key(&(
                (*admin).to_owned(),
                method.to_owned(),
                route.to_owned(),
                status.to_owned(),
            ))
        })
    };
    let every: Vec<&str> = runs.iter().map(|r| r.admin.id).collect();
    let schedule = "/v1/schedules/{schedule_id}";
    let export = "/v1/exports/{export_id}";
    let download = "/v1/exports/{export_id}/download";
    for (method, route, status) in [
        ("POST", "/v1/schedules", "201"),
        ("GET", schedule, "200"),
        ("PUT", schedule, "200"),
        ("DELETE", schedule, "204"),
        ("POST", "/v1/exports", "202"),
        ("GET", export, "200"),
        ("GET", download, "200"),
        ("POST", "/v1/assignments/unassign", "202"),
    ] {
        assert!(
            reached(&every, method, route, status),
            "no run got {status} from {method} {route}"
        );
    }
    let stateful = ["stateful"];
    for (what, followed) in [
        (
            "a created schedule's",
            [
                ("GET", schedule, "200"),
                ("PUT", schedule, "200"),
                ("DELETE", schedule, "204"),
            ],
        ),
        (
            "a created export's",
            [
                ("GET", export, "200"),
                ("GET", download, "200"),
                ("GET", download, "409"),
            ],
        ),
    ] {
        assert!(
            followed
                .iter()
                .any(|(method, route, status)| reached(&stateful, method, route, status)),
            "the stateful phase never followed {what} links"
        );
    }

    // The unassign requests accepted were published to the test's
    // commands topic, as the document says.
    let doc: Value = reqwest::get(report.url("/openapi.json"))
        .await
        .expect("usage-report answers")
        .json()
        .await
        .expect("the document is JSON");
    let published = services::read_topic(&commands, 10_000, Duration::from_secs(10)).await;
    assert!(
        !published.is_empty(),
        "schemathesis reached a published unassign request"
    );
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&json!({
            "$ref": doc["x-kafka-messages"]["unassign_request"]["schema"]["$ref"],
            "components": doc["components"],
        }))
        .expect("the message schema compiles");
    for (_, payload) in &published {
        let message: Value = serde_json::from_slice(payload).expect("a JSON message");
        let errors: Vec<String> = validator
            .iter_errors(&message)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{message}: {errors:?}");
        // Any direct assignment: schemathesis also reuses what the report
        // answered (user keys, products) in later requests.
        assert!(
            runs.iter().any(|r| message["requested_by"] == r.admin.id),
            "{message}"
        );
    }
}

/// A direct assignment in a team whose identities are shown (its user key
/// is the user id), as the body of an unassign request.
fn unassignable(f: &Fixture) -> Value {
    let team = f
        .current_teams()
        .into_iter()
        .find(|t| f.pii_visible(t))
        .expect("a team with PII on");
    let row = f
        .published
        .expected
        .rows
        .iter()
        .find(|r| {
            r.current_team_id == team && r.assignment.as_ref().is_some_and(|a| a.via == Via::Direct)
        })
        .expect("a direct assignment");
    json!({"team_id": team, "user_key": row.user_id, "product": row.product})
}

/// Runs schemathesis against `report` (every check, the seed, the bound),
/// as `run` says.
async fn run_schemathesis(
    schemathesis: &Path,
    report: &Report,
    run: &Run,
    unassignable: &Value,
) -> Outcome {
    // Its reports and its own files (the examples database) go here.
    let reports = std::env::temp_dir().join(services::unique("schemathesis"));
    std::fs::create_dir_all(&reports).expect("a directory for schemathesis");
    let mut command = Command::new(schemathesis);
    command
        .args(["run", &report.url("/openapi.json")])
        .args(["--url", report.url("").trim_end_matches('/')])
        .args(["--checks", "all", "--phases", run.phases])
        .args(["--seed", &setting("USAGE_CONTRACT_SEED", SEED)])
        .args([
            "--max-examples",
            &setting("USAGE_CONTRACT_EXAMPLES", MAX_EXAMPLES),
        ])
        .args(["--workers", "1", "--no-color"])
        .args([
            "--header",
            &format!("Authorization: Bearer {}", run.admin.token()),
        ])
        .args(["--report", "junit", "--report-dir"])
        .arg(&reports)
        .env("NO_COLOR", "1")
        .env(
            "SCHEMATHESIS_HOOKS",
            usage_testkit::repo_root().join("tests/contract/hooks.py"),
        )
        .env("CONTRACT_UNASSIGNABLE", unassignable.to_string())
        .current_dir(&reports);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the run ends")
        .expect("schemathesis runs");
    if output.status.success() {
        // Kept when it failed: its JUnit report and examples database.
        let _ = std::fs::remove_dir_all(&reports);
    }
    Outcome {
        passed: output.status.success(),
        report: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// (admin, method, route, status) of a request.
type Answer = (String, String, String, String);

/// How many requests of the service's log answered each (admin, method,
/// route, status).
fn answers(log: &str) -> BTreeMap<Answer, u32> {
    let mut counts = BTreeMap::new();
    for line in log.lines() {
        let Some((span, fields)) = line.split_once("usage_report::request: request ") else {
            continue;
        };
        // `request{method=.. route=.. admin=..}: ...` then `method=.. route=.. status=..`;
        // the admin is absent when the token was not an admin's.
        let field = |text: &str, name: &str| {
            text.split(' ')
                .find_map(|f| f.strip_prefix(name))
                .map_or("-", |v| v.strip_suffix("}:").unwrap_or(v))
                .to_owned()
        };
        *counts
            .entry((
                field(span, "admin="),
                field(fields, "method="),
                field(fields, "route="),
                field(fields, "status="),
            ))
            .or_default() += 1;
    }
    counts
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
