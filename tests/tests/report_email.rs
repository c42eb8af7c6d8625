//! The "report ready" email of a scheduled report, sent by `usage-report`
//! to a real SMTP server on loopback that requires AUTH with the password
//! the service reads from a file (tests/smtp/sink.py on aiosmtpd, pinned by hash in
//! tests/smtp/requirements.txt, installed by scripts/test into
//! .local/venv-smtp; `USAGE_SMTP_PYTHON` may name another interpreter that
//! has it), over rollups built by the real ingest: a due schedule's run
//! sends one email to its admin with the absolute link; the link opens the
//! page, which after sign-in downloads the file for its owner only (in
//! headless Chromium, tests/browser/email-link.test.mjs); a restart sends no second email; an SMTP
//! server that is down at run time delays the email (the export is written
//! all the same) until it is back.

use chrono::Utc;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use usage_testkit::metrics::Metrics;
use usage_testkit::ports::free_port;
use usage_testkit::process::Process;
use usage_testkit::report::{Report, ReportRun};
use usage_tests::report::{fixture, send_to as send, TestAdmin, HMAC_KEY};
use usage_tests::services::{self, binary, unique};

/// Where the tests' links point.
const PUBLIC_URL: &str = "https://usage.example.com";

fn admin(id: &'static str, role: &'static str, teams: &[&str]) -> TestAdmin {
    TestAdmin {
        id,
        role,
        teams: teams.iter().map(|t| (*t).to_owned()).collect(),
    }
}

fn smtp_python() -> PathBuf {
    std::env::var_os("USAGE_SMTP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.local/venv-smtp/bin/python")
        })
}

/// The SMTP account the service signs in with.
const SMTP_USER: &str = "mailer";
const SMTP_PASSWORD: &str = "s3cret pass";

/// A real SMTP server on `127.0.0.1:port` (tests/smtp/sink.py, on
/// aiosmtpd) writing every message it accepts to the maildir `dir`, and
/// accepting none before AUTH with [`SMTP_USER`] and the password in
/// `password_file`.
fn start_smtp(port: u16, dir: &Path, password_file: &Path) -> Process {
    let python = smtp_python();
    assert!(
        python.exists(),
        "{} not found: scripts/test installs aiosmtpd there (or set USAGE_SMTP_PYTHON)",
        python.display()
    );
    let log = dir.with_extension("log");
    let log_file = std::fs::File::create(&log).expect("SMTP log");
    let mut command = Command::new(python);
    command
        .arg(usage_tests::repo_root().join("tests/smtp/sink.py"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--maildir")
        .arg(dir)
        .args(["--user", SMTP_USER, "--password-file"])
        .arg(password_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file);
    let mut process = Process::spawn("aiosmtpd", &mut command, Some(log)).expect("aiosmtpd starts");
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        process.check_alive().expect("aiosmtpd runs");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "aiosmtpd listens"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    process
}

/// The text of a quoted-printable message: soft line breaks joined, `=XX`
/// decoded.
fn unquote(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'=', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The messages the SMTP server received so far, decoded.
fn mails(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir.join("new")) else {
        return Vec::new();
    };
    let mut mails: Vec<(std::time::SystemTime, String)> = entries
        .filter_map(Result::ok)
        .map(|e| {
            let time = e
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            (
                time,
                unquote(&std::fs::read_to_string(e.path()).unwrap_or_default()),
            )
        })
        .collect();
    mails.sort();
    mails.into_iter().map(|(_, m)| m).collect()
}

/// Waits (60 s at most) until the SMTP server holds `n` messages.
async fn wait_for_mails(dir: &Path, n: usize, report: &Report) -> Vec<String> {
    let started = Instant::now();
    loop {
        let got = mails(dir);
        if got.len() >= n {
            return got;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{n} emails expected, got {}; log:\n{}",
            got.len(),
            report.process.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The link of an email, and the export id it names.
fn link(mail: &str) -> (String, String) {
    let start = mail.find(PUBLIC_URL).expect("the email holds the link");
    let link: String = mail[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    let id = link
        .strip_prefix(&format!("{PUBLIC_URL}/?download="))
        .expect("a download link")
        .to_owned();
    (link, id)
}

/// Starts `usage-report` in `dir` (kept across restarts) with the
/// scheduler and the mailer every second, mail to `smtp_port`.
async fn start(
    database: &str,
    dir: &Path,
    admins: &[TestAdmin],
    notes: &str,
    smtp_port: u16,
) -> Report {
    ReportRun::new(
        binary("usage-report", "usage-report"),
        &services::local(),
        database,
        dir,
    )
    .admins(admins.iter().map(TestAdmin::admin))
    .hmac_key(HMAC_KEY)
    .scheduler_interval_secs(1)
    .args(["--notifications-topic", notes])
    .args(["--smtp-host", "127.0.0.1", "--smtp-tls", "none"])
    .args(["--smtp-port", &smtp_port.to_string()])
    .args(["--smtp-user", SMTP_USER, "--smtp-password-file"])
    .args([dir.join("smtp-password")])
    .args(["--mail-from", "Usage report <usage@example.com>"])
    .args(["--public-url", PUBLIC_URL, "--mail-interval-secs", "1"])
    .env("RUST_LOG", "info,usage_report=debug")
    .start()
    .await
    .unwrap_or_else(|e| panic!("usage-report starts: {e:#}"))
}

/// Runs tests/browser/email-link.test.mjs (headless Chromium) on the link.
fn open_link_in_browser(
    report: &Report,
    link: &str,
    owner: &TestAdmin,
    other: &TestAdmin,
    file_name: &str,
) {
    let browser_dir = usage_tests::repo_root().join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci` in tests/browser (scripts/test does)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let output = Command::new("node")
        .arg("email-link.test.mjs")
        .current_dir(&browser_dir)
        .env("REPORT_URL", report.url(""))
        .env("LINK_PATH", link)
        .env("OWNER_TOKEN", owner.token())
        .env("OTHER_TOKEN", other.token())
        .env("FILE_NAME", file_name)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node runs");
    assert!(
        output.status.success(),
        "the browser test of the link failed:\n{}\n{}\nservice log:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        report.process.log_text()
    );
}

async fn metric(report: &Report, name: &str) -> f64 {
    Metrics::scrape(report.port)
        .await
        .map(|m| m.sum(name))
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_report_is_emailed_once_with_a_link_for_its_admin() {
    let f = fixture("report_email", 19).await;
    let team = f.current_teams()[0].clone();
    let owner = admin("owner", "secondary", &[&team]);
    let other = admin("other", "primary", &[&team]);
    let admins = [owner.clone(), other.clone()];
    let notes = services::create_topic("notifications", 1).await;
    let dir = std::env::temp_dir().join(unique("report-email"));
    let maildir = dir.join("maildir");
    std::fs::create_dir_all(&dir).expect("test directory");
    // The service reads the password from a file (its final line break
    // ignored).
    let password_file = dir.join("smtp-password");
    std::fs::write(&password_file, format!("{SMTP_PASSWORD}\n")).expect("password file");
    let smtp_port = free_port().expect("a free port");
    let smtp = start_smtp(smtp_port, &maildir, &password_file);
    let report = start(f.db.name(), &dir, &admins, &notes, smtp_port).await;
    let today = Utc::now().date_naive();
    let schedule = |name: &str| {
        json!({
            "name": name,
            "start_date": today.to_string(),
            "frequency": "weekly",
            "format": "csv",
            "filters": {"team": team, "range": "last_30_days"},
        })
    };

    // A due schedule runs: one email, to its admin, with the absolute link.
    let (status, body) = send(
        &report,
        &owner,
        Method::POST,
        "/v1/schedules",
        &schedule("Weekly seats"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let got = wait_for_mails(&maildir, 1, &report).await;
    let mail = &got[0];
    assert!(mail.contains("To: owner@example.com"), "{mail}");
    assert!(
        mail.contains("Subject: Your scheduled report \"Weekly seats\" is ready"),
        "{mail}"
    );
    let (_, export_id) = link(mail);
    let ready = services::read_topic(&notes, 1, Duration::from_secs(30)).await;
    let note: Value = serde_json::from_slice(&ready[0].1).expect("JSON");
    assert_eq!(note["export_id"], json!(export_id));
    assert!(
        mail.contains(&format!(
            "<{}@usage-report>",
            note["notification_id"].as_str().unwrap_or_default()
        )),
        "the email's Message-ID is the notification's id: {mail}"
    );
    assert!(
        mail.contains(&format!("Weekly-seats-{today}.csv")),
        "{mail}"
    );

    // The link opens the page, which downloads the export: for its owner,
    // not for another admin of the same team.
    let page = reqwest::get(report.url(&format!("/?download={export_id}")))
        .await
        .expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.text()
            .await
            .unwrap_or_default()
            .contains("linkedExport"),
        "the page handles the link"
    );
    let download = format!("/v1/exports/{export_id}/download");
    let as_owner = reqwest::Client::new()
        .get(report.url(&download))
        .bearer_auth(owner.token())
        .send()
        .await
        .expect("answers");
    assert_eq!(as_owner.status(), StatusCode::OK);
    assert!(!as_owner.bytes().await.unwrap_or_default().is_empty());
    let (status, _) = send(&report, &other, Method::GET, &download, &Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(metric(&report, "usage_report_emails_sent_total").await, 1.0);
    // In a browser: the page asks for sign-in, then downloads the file for
    // its owner, and nothing for the other admin.
    open_link_in_browser(
        &report,
        &format!("/?download={export_id}"),
        &owner,
        &other,
        &format!("Weekly-seats-{today}.csv"),
    );

    // A restart sends no second email.
    drop(report);
    let report = start(f.db.name(), &dir, &admins, &notes, smtp_port).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(mails(&maildir).len(), 1, "no second email after a restart");
    assert_eq!(metric(&report, "usage_report_emails_sent_total").await, 0.0);

    // The SMTP server is down when a schedule runs: the export is written
    // all the same, and the email arrives once the server is back.
    drop(smtp);
    let (status, body) = send(
        &report,
        &owner,
        Method::POST,
        "/v1/schedules",
        &schedule("Down day"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let ready = services::read_topic(&notes, 2, Duration::from_secs(30)).await;
    let note: Value = serde_json::from_slice(&ready[1].1).expect("JSON");
    assert_eq!(note["schedule_name"], json!("Down day"));
    let export = format!(
        "/v1/exports/{}",
        note["export_id"].as_str().unwrap_or_default()
    );
    let (status, meta) = send(&report, &owner, Method::GET, &export, &Value::Null).await;
    assert_eq!(status, StatusCode::OK, "the export is written: {meta}");
    let started = Instant::now();
    while metric(&report, "usage_report_email_failures_total").await < 1.0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "a failed attempt is counted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(mails(&maildir).len(), 1);
    let _smtp = start_smtp(smtp_port, &maildir, &password_file);
    let got = wait_for_mails(&maildir, 2, &report).await;
    assert!(
        got[1].contains("Subject: Your scheduled report \"Down day\" is ready"),
        "{}",
        got[1]
    );
    assert_eq!(
        link(&got[1]).1,
        note["export_id"].as_str().unwrap_or_default()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(mails(&maildir).len(), 2, "one email per run");
    assert_eq!(metric(&report, "usage_report_emails_sent_total").await, 1.0);
    drop(report);
    let _ = std::fs::remove_dir_all(&dir);
}
