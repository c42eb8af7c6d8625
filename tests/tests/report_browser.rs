//! The report page in headless Chromium (Debian's `chromium`, driven by
//! `playwright-core` from `tests/browser/`), against `usage-report` over
//! rollups built by the real ingest: log in with a token, change team and
//! range, sort, page, export (with its progress), schedule, unassign; the
//! usage class column and filter and the occasional seat users tile; every
//! filter refreshes the page (typed ones debounced, a custom range only when
//! both dates are set and in order); editing a schedule keeps its kind and
//! filters; badges are never cut off at 1280 px; profile images from the
//! allowed origin (a route of the browser stands for the CDN), initials
//! where there is none or it fails, neither for hashed rows — and the
//! numbers on the page equal the API's. The screenshot is saved to
//! `target/browser/usage-report.png`.
//!
//! `scripts/test` installs Chromium (apt) and `playwright-core` (`npm ci`).

use std::process::Command;
use usage_loadgen::Via;
use usage_tests::report::{fixture, Report, ReportOptions, TestAdmin};

#[tokio::test(flavor = "multi_thread")]
async fn the_page_shows_what_the_api_says() {
    let root = usage_tests::repo_root();
    let browser_dir = root.join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci` in tests/browser (scripts/test does)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} not found: `apt-get install chromium` (scripts/test does)"
    );

    let f = fixture("browser", 14).await;
    let team = f
        .current_teams()
        .into_iter()
        .find(|t| f.pii_visible(t))
        .expect("a team with PII on");
    let hashed_team = f
        .current_teams()
        .into_iter()
        .find(|t| !f.pii_visible(t))
        .expect("a team with PII off");
    let refused = f
        .published
        .expected
        .rows
        .iter()
        .find(|r| {
            r.current_team_id == team
                && r.assignment
                    .as_ref()
                    .is_some_and(|a| matches!(a.via, Via::Group | Via::Default))
        })
        .expect("a group or default assignment in the team");
    let admin = TestAdmin {
        id: "browser",
        role: "primary",
        teams: vec!["*".into()],
    };
    let report = Report::start(
        f.db.name(),
        std::slice::from_ref(&admin),
        ReportOptions {
            avatar_origins: Some("https://cdn.example.com".into()),
            ..ReportOptions::default()
        },
    )
    .await;

    let out_dir = root.join("target/browser");
    std::fs::create_dir_all(&out_dir).expect("target/browser");
    let screenshot = out_dir.join("usage-report.png");
    let _ = std::fs::remove_file(&screenshot);
    let output = Command::new("node")
        .arg("report.test.mjs")
        .current_dir(&browser_dir)
        .env("REPORT_URL", report.url(""))
        .env("REPORT_TOKEN", admin.token())
        .env("REPORT_TEAM", &team)
        .env("REPORT_HASHED_TEAM", &hashed_team)
        .env("REFUSED_USER", &refused.user_id)
        .env("REFUSED_PRODUCT", &refused.product)
        .env("SCREENSHOT", &screenshot)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}\nservice log:\n{}",
        report.log_text()
    );
    println!("{stdout}");
    let size = std::fs::metadata(&screenshot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "a screenshot was saved ({size} bytes)");
}
