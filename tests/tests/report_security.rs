//! `usage-report` keeps its secrets: it refuses to start without an HMAC key
//! or with the public development key outside `--dev`, and never writes the
//! HMAC key or a token to its log.

use std::process::Command;
use std::time::Duration;
use usage_tests::report::{Report, ReportOptions, TestAdmin, HMAC_KEY};
use usage_tests::services::{binary, ScratchDatabase};

fn start(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(binary("usage-report", "usage-report"))
        .args(["--listen", "127.0.0.1:0", "--admins-file", "/dev/null"])
        .args(args)
        .env_remove("USAGE_REPORT_HMAC_KEY")
        .env_remove("USAGE_REPORT_HMAC_KEY_FILE")
        .env_remove("USAGE_REPORT_DEV")
        .output()
        .expect("usage-report runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn no_key_or_the_development_key_is_refused_outside_dev_mode() {
    let (code, stderr) = start(&[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("no HMAC key"), "{stderr}");
    let dev_key = "usage-report development key: not secret, not for production";
    let (code, stderr) = start(&["--hmac-key", dev_key]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("development HMAC key is public"),
        "{stderr}"
    );
    let (code, stderr) = start(&["--hmac-key", "too short"]);
    assert_eq!(code, Some(1), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_stay_out_of_the_log() {
    let db = ScratchDatabase::create("secrets").await;
    let admin = TestAdmin {
        id: "secretive",
        role: "primary",
        teams: vec!["*".into()],
    };
    let report = Report::start(
        db.name(),
        std::slice::from_ref(&admin),
        ReportOptions::default(),
    )
    .await;
    // Exercise the API: a good token, a bad one, a failing query.
    let _ = report
        .get(Some(&admin), "/v1/report/overview?team=all")
        .await;
    let _ = report.get(None, "/v1/report/users").await;
    let _ = report.get(Some(&admin), "/v1/report/users?team=nope").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = report.log_text();
    assert!(log.contains("usage-report serving"), "{log}");
    for secret in [HMAC_KEY, admin.token().as_str()] {
        assert!(!log.contains(secret), "a secret in the log:\n{log}");
    }
}
