//! `usage-report`'s schedules as admins live with them, over rollups built
//! by the real ingest, against the real broker and ClickHouse: a scheduled
//! file is named after its schedule (made safe, with the run date), a
//! schedule is only for the admin's own teams (403 when made or changed),
//! and a schedule that fails shows its owner why (the API, and the page in
//! headless Chromium: tests/browser/schedule-error.test.mjs).

use chrono::Utc;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;
use usage_testkit::report::{Report, ReportRun};
use usage_tests::report::{fixture, send_to as send, TestAdmin, HMAC_KEY};
use usage_tests::services::{self, binary, unique};

fn admin(id: &'static str, role: &'static str, teams: &[&str]) -> TestAdmin {
    TestAdmin {
        id,
        role,
        teams: teams.iter().map(|t| (*t).to_owned()).collect(),
    }
}

/// Starts `usage-report` for `admin` in `dir` (kept across restarts: the same exports)
/// with a scheduler pass every `scheduler` seconds (0: none).
async fn start(
    database: &str,
    dir: &PathBuf,
    admin: &TestAdmin,
    notes: &str,
    scheduler: u64,
) -> Report {
    ReportRun::new(
        binary("usage-report", "usage-report"),
        &services::local(),
        database,
        dir,
    )
    .admins([admin.admin()])
    .hmac_key(HMAC_KEY)
    .scheduler_interval_secs(scheduler)
    .args(["--notifications-topic", notes])
    .env("RUST_LOG", "info,usage_report=debug")
    .start()
    .await
    .unwrap_or_else(|e| panic!("usage-report starts: {e:#}"))
}

/// Runs tests/browser/schedule-error.test.mjs (headless Chromium): the
/// page shows the schedule's last error.
fn show_error_in_browser(report: &Report, admin: &TestAdmin, schedule_id: &str, message: &str) {
    let browser_dir = usage_tests::repo_root().join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci` in tests/browser (scripts/test does)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let output = std::process::Command::new("node")
        .arg("schedule-error.test.mjs")
        .current_dir(&browser_dir)
        .env("REPORT_URL", report.url(""))
        .env("TOKEN", admin.token())
        .env("SCHEDULE_ID", schedule_id)
        .env("MESSAGE", message)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node runs");
    assert!(
        output.status.success(),
        "the browser check of the schedule's error failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

async fn get(report: &Report, admin: &TestAdmin, path: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(report.url(path))
        .bearer_auth(admin.token())
        .send()
        .await
        .expect("usage-report answers")
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduled_files_are_named_after_their_schedule_and_only_for_the_admins_teams() {
    let f = fixture("schedule_names", 17).await;
    let teams = f.current_teams();
    let (td, ta) = (teams[0].clone(), teams[1].clone());
    let owner = admin("owner", "secondary", &[&td]);
    let notes = services::create_topic("notifications", 1).await;
    let dir = std::env::temp_dir().join(unique("report-schedules"));
    let report = start(f.db.name(), &dir, &owner, &notes, 1).await;
    let today = Utc::now().date_naive();
    let schedule = |name: &str, team: &str| {
        json!({
            "name": name,
            "start_date": today.to_string(),
            "frequency": "daily",
            "format": "csv",
            "filters": {"team": team, "range": "last_30_days"},
        })
    };

    // A schedule for a team the admin does not administer is refused, made
    // or changed, with the code the report answers for such a team.
    let (status, body) = send(
        &report,
        &owner,
        Method::POST,
        "/v1/schedules",
        &schedule("Theirs", &ta),
    )
    .await;
    assert_eq!(
        (status, body["error"].clone()),
        (StatusCode::FORBIDDEN, json!("forbidden")),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap_or_default().contains(&ta),
        "{body}"
    );
    let hostile = "../../etc/passwd \"seats\"; Q4/Ünï";
    let (status, created) = send(
        &report,
        &owner,
        Method::POST,
        "/v1/schedules",
        &schedule(hostile, &td),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["last_error"], Value::Null);
    let id = created["schedule_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let path = format!("/v1/schedules/{id}");
    let (status, body) = send(&report, &owner, Method::PUT, &path, &schedule(hostile, &ta)).await;
    assert_eq!(
        (status, body["error"].clone()),
        (StatusCode::FORBIDDEN, json!("forbidden")),
        "{body}"
    );
    let (_, kept) = send(&report, &owner, Method::GET, &path, &Value::Null).await;
    assert_eq!(
        kept["filters"]["team"],
        json!(td),
        "a refused edit changes nothing"
    );

    // The run's file is named after the schedule, made safe, with its date.
    let ready = services::read_topic(&notes, 1, Duration::from_secs(30)).await;
    assert_eq!(ready.len(), 1, "{}", report.process.log_text());
    let note: Value = serde_json::from_slice(&ready[0].1).expect("JSON");
    let want = format!("etc-passwd-seats-Q4-n-{today}.csv");
    let (_, meta) = send(
        &report,
        &owner,
        Method::GET,
        &format!(
            "/v1/exports/{}",
            note["export_id"].as_str().unwrap_or_default()
        ),
        &Value::Null,
    )
    .await;
    assert_eq!(meta["file_name"], json!(want), "{meta}");
    let download = get(
        &report,
        &owner,
        note["download_path"].as_str().unwrap_or_default(),
    )
    .await;
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(
        download.headers()["content-disposition"]
            .to_str()
            .unwrap_or_default(),
        format!("attachment; filename=\"{want}\"")
    );
    let (_, listed) = send(&report, &owner, Method::GET, &path, &Value::Null).await;
    assert_eq!(listed["last_error"], Value::Null, "{listed}");
    drop(report);

    // The admin loses the team: the schedule (made due again by a new
    // frequency, while no scheduler runs) fails, and shows its owner why.
    let report = start(f.db.name(), &dir, &owner, &notes, 0).await;
    let mut weekly = schedule(hostile, &td);
    weekly["frequency"] = json!("weekly");
    let (status, body) = send(&report, &owner, Method::PUT, &path, &weekly).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["next_run_date"], json!(today.to_string()), "{body}");
    drop(report);
    let moved = admin("owner", "secondary", &[&ta]);
    let report = start(f.db.name(), &dir, &moved, &notes, 1).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let failed = loop {
        let (_, s) = send(&report, &moved, Method::GET, &path, &Value::Null).await;
        if !s["last_error"].is_null() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a last error is shown; log:\n{}",
            report.process.log_text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(
        failed["last_error"]["error"],
        json!("forbidden"),
        "{failed}"
    );
    assert!(
        failed["last_error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains(&td),
        "{failed}"
    );
    assert!(failed["last_error"]["at"].is_string(), "{failed}");
    assert_eq!(
        failed["last_run_date"],
        Value::Null,
        "it did not run: {failed}"
    );
    let (_, list) = send(&report, &moved, Method::GET, "/v1/schedules", &Value::Null).await;
    assert_eq!(list["schedules"][0]["last_error"], failed["last_error"]);
    // The page shows it under the schedule.
    show_error_in_browser(
        &report,
        &moved,
        &id,
        failed["last_error"]["message"].as_str().unwrap_or_default(),
    );
    drop(report);

    // The team given back, the next pass runs it and the error is gone.
    let report = start(f.db.name(), &dir, &owner, &notes, 1).await;
    let cleared = services::eventually(Duration::from_secs(30), || async {
        let (_, s) = send(&report, &owner, Method::GET, &path, &Value::Null).await;
        s["last_error"].is_null() && s["last_run_date"] == json!(today.to_string())
    })
    .await;
    assert!(
        cleared,
        "the error is cleared by a run; log:\n{}",
        report.process.log_text()
    );
    drop(report);
    let _ = std::fs::remove_dir_all(&dir);
}
