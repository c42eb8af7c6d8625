//! `usage-report`'s exports, schedules and unassign requests, over rollups
//! built by the real ingest, against the real broker and ClickHouse: the
//! export files hold what the JSON report says; a 15-day-old export is gone
//! after a sweep; only its admin downloads an export; at most 5 schedules
//! per admin, visible only to their owner, run by the service with a "report
//! ready" notification; unassign refused for group and default assignments,
//! published for direct ones.

use chrono::{Duration as Days, NaiveDate, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use usage_loadgen::oracle::DateRange;
use usage_loadgen::{Access, Via};
use usage_tests::report::{fixture, milli, Fixture, Report, ReportOptions, TestAdmin};
use usage_tests::services::{self, eventually};

fn admin(id: &'static str, role: &'static str, teams: &[&str]) -> TestAdmin {
    TestAdmin {
        id,
        role,
        teams: teams.iter().map(|t| (*t).to_owned()).collect(),
    }
}

/// The records of a CSV file (header first).
fn csv_records(bytes: &[u8]) -> Vec<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(bytes);
    reader
        .records()
        .map(|r| r.expect("valid CSV").iter().map(str::to_owned).collect())
        .collect()
}

/// A JSON value as the export writes it in a cell.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join("; "),
        other => other.to_string(),
    }
}

/// Asks for an export, polls it until it is ready, and downloads it: its
/// metadata and its bytes. It is accepted (202) `pending` or `running`,
/// never written while the request waits.
async fn export(report: &Report, admin: &TestAdmin, body: &Value) -> (Value, Vec<u8>) {
    let (status, accepted) = report.send(admin, Method::POST, "/v1/exports", body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert!(
        matches!(accepted["state"].as_str(), Some("pending" | "running")),
        "{accepted}"
    );
    let id = accepted["export_id"].as_str().unwrap_or_default();
    let meta = ready(report, admin, id).await;
    let (status, bytes) = report
        .get_bytes(admin, meta["download_path"].as_str().unwrap_or_default())
        .await;
    assert_eq!(status, StatusCode::OK, "{meta}");
    (meta, bytes)
}

/// Polls `GET /v1/exports/{id}` until the export is `ready` (60 s at most).
async fn ready(report: &Report, admin: &TestAdmin, id: &str) -> Value {
    let path = format!("/v1/exports/{id}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, meta) = report.get(Some(admin), &path).await;
        assert_eq!(status, StatusCode::OK, "{meta}");
        match meta["state"].as_str() {
            Some("ready") => return meta,
            Some("pending" | "running") if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ => panic!("the export did not become ready: {meta}"),
        }
    }
}

/// The rows of an XLSX file's first sheet (header first), its cells as
/// text, read with Python's standard library (zipfile, ElementTree).
fn xlsx_records(bytes: &[u8]) -> Vec<Vec<String>> {
    const READ: &str = r#"
import sys, zipfile, io, json, xml.etree.ElementTree as ET
ns = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
z = zipfile.ZipFile(io.BytesIO(sys.stdin.buffer.read()))
shared = []
if "xl/sharedStrings.xml" in z.namelist():
    for si in ET.fromstring(z.read("xl/sharedStrings.xml")).findall("m:si", ns):
        shared.append("".join(t.text or "" for t in si.iter("{%s}t" % ns["m"])))
def col(ref):
    n = 0
    for ch in ref:
        if not ch.isalpha():
            break
        n = n * 26 + ord(ch) - 64
    return n - 1
rows = []
for r in ET.fromstring(z.read("xl/worksheets/sheet1.xml")).iter("{%s}row" % ns["m"]):
    cells = {}
    for c in r.findall("m:c", ns):
        v = c.find("m:v", ns)
        text = "" if v is None else v.text
        if c.get("t") == "s":
            text = shared[int(text)]
        elif c.get("t") == "inlineStr":
            text = "".join(t.text or "" for t in c.iter("{%s}t" % ns["m"]))
        cells[col(c.get("r"))] = text
    rows.append([cells.get(i, "") for i in range(max(cells) + 1 if cells else 0)])
print(json.dumps(rows))
"#;
    use std::io::Write;
    let mut child = std::process::Command::new("python3")
        .args(["-c", READ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(bytes)
        .expect("written");
    let out = child.wait_with_output().expect("python3 ends");
    assert!(out.status.success(), "the XLSX file reads");
    serde_json::from_slice(&out.stdout).expect("JSON rows")
}

/// The column `name` of a file's header.
fn column(records: &[Vec<String>], name: &str) -> usize {
    records[0]
        .iter()
        .position(|c| c == name)
        .unwrap_or_else(|| panic!("a {name} column in {:?}", records[0]))
}

/// Thousandths of a token, from an export's cell.
fn cell_milli(cell: &str) -> u64 {
    (cell.parse::<f64>().unwrap_or(f64::NAN) * 1000.0).round() as u64
}

/// The oracle's raw token usage of `team` over `range`: (user, product,
/// UTC date with Flex usage or a window opened) -> tokens (thousandths) of
/// the windows opened that date.
fn want_token_days(
    f: &Fixture,
    team: &str,
    range: DateRange,
) -> BTreeMap<(String, String, NaiveDate), u64> {
    let mut want = BTreeMap::new();
    let mut stamped = BTreeSet::new();
    for row in &f.published.expected.rows {
        if row.current_team_id != team || row.access != Access::Flex {
            continue;
        }
        if !stamped.insert((
            row.team_id.clone(),
            row.user_id.clone(),
            row.product.clone(),
        )) {
            continue;
        }
        let key = |d: NaiveDate| (row.user_id.clone(), row.product.clone(), d);
        for d in f
            .oracle
            .usage_dates(&row.team_id, &row.user_id, &row.product, Access::Flex)
        {
            if range.from <= d && d <= range.to {
                want.entry(key(d)).or_insert(0);
            }
        }
        for w in f.oracle.windows(&row.user_id, &row.product) {
            let d = w.start.date_naive();
            if w.team_id == row.team_id && range.from <= d && d <= range.to {
                *want.entry(key(d)).or_insert(0) += w.tokens_milli;
            }
        }
    }
    want
}

fn same_number(a: &str, b: &str) -> bool {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => (x - y).abs() < 1e-9,
        _ => a == b,
    }
}

/// Starts the service with a fast scheduler and sweeper; its topics.
async fn start(f: &Fixture, admins: &[TestAdmin]) -> (Report, String, String) {
    let commands = services::create_topic("commands", 1).await;
    let notifications = services::create_topic("notifications", 1).await;
    let report = Report::start(
        f.db.name(),
        admins,
        ReportOptions {
            commands_topic: Some(commands.clone()),
            notifications_topic: Some(notifications.clone()),
            scheduler_interval_secs: Some(1),
            sweep_interval_secs: Some(1),
            ..ReportOptions::default()
        },
    )
    .await;
    (report, commands, notifications)
}

#[tokio::test(flavor = "multi_thread")]
async fn exports_hold_the_report_and_expire() {
    let f = fixture("exports", 12).await;
    let team = f
        .current_teams()
        .into_iter()
        .find(|t| f.pii_visible(t))
        .expect("a team with PII on");
    let hidden = f
        .current_teams()
        .into_iter()
        .find(|t| !f.pii_visible(t))
        .expect("a team with PII off");
    let one = admin("one", "secondary", &[&team]);
    let two = admin("two", "sso", &[&team]);
    let three = admin("three", "secondary", &[&hidden]);
    let (report, _, _) = start(&f, &[one.clone(), two.clone(), three.clone()]).await;
    let filters = json!({"team": team, "range": "last_3_months", "sort": "days_used:desc"});

    // The report as CSV equals the JSON report, row by row and column by column.
    let (status, page) = report
        .get(
            Some(&one),
            &format!("/v1/report/users?team={team}&range=last_3_months&sort=days_used:desc&page_size=1000"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let json_rows = page["rows"].as_array().cloned().unwrap_or_default();
    assert!(!json_rows.is_empty());
    let (meta, bytes) = export(
        &report,
        &one,
        &json!({"kind": "report", "format": "csv", "filters": filters}),
    )
    .await;
    assert_eq!(meta["rows"], json!(json_rows.len()));
    let path = meta["download_path"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let records = csv_records(&bytes);
    let header = &records[0];
    assert_eq!(header[0], "user_key");
    assert_eq!(records.len() - 1, json_rows.len());
    for (record, row) in records[1..].iter().zip(&json_rows) {
        for (i, column) in header.iter().enumerate() {
            let want = cell(&row[column.as_str()]);
            assert!(
                same_number(&record[i], &want),
                "{column}: CSV {:?}, JSON {want:?}",
                record[i]
            );
        }
    }

    // The same as XLSX.
    let (xlsx, bytes) = export(
        &report,
        &one,
        &json!({"kind": "report", "format": "xlsx", "filters": filters}),
    )
    .await;
    assert_eq!(xlsx["rows"], json!(json_rows.len()));
    assert!(bytes.starts_with(b"PK\x03\x04"), "an XLSX file is a zip");
    let sheet = xlsx_records(&bytes);
    assert_eq!(
        sheet.len(),
        records.len(),
        "the XLSX file has the CSV's rows"
    );
    assert_eq!(sheet[0], records[0]);

    // Raw seat usage: one line per day used, as many as the report's seat days.
    let today = f.today();
    let this_month = today - Days::days(i64::from(chrono::Datelike::day0(&today)));
    let range = DateRange::new(
        this_month
            .checked_sub_months(chrono::Months::new(3))
            .unwrap_or(this_month),
        this_month.pred_opt().unwrap_or(this_month),
    );
    let want = f.want(Some(&team), range);
    let seat_days: u64 = want
        .iter()
        .filter(|(k, _)| k.3 == "seat")
        .map(|(_, w)| w.days_used)
        .sum();
    let (seat, bytes) = export(
        &report,
        &one,
        &json!({"kind": "seat_usage", "format": "csv", "filters": filters}),
    )
    .await;
    let records = csv_records(&bytes);
    assert_eq!(records.len() as u64 - 1, seat_days, "{seat}");
    assert!(seat_days > 0);
    // ... one line per (team, user, product, date).
    let keys: BTreeSet<&[String]> = records[1..].iter().map(|r| &r[..]).collect();
    assert_eq!(keys.len(), records.len() - 1, "no line twice");
    // Raw token usage: one line per (user, product, UTC date with Flex
    // usage), with the tokens of the windows opened that date, as the
    // oracle says; the tokens add up to the tile.
    let (tokens, bytes) = export(
        &report,
        &one,
        &json!({"kind": "token_usage", "format": "csv", "filters": filters}),
    )
    .await;
    let records = csv_records(&bytes);
    assert_eq!(
        records[0],
        ["date", "team_id", "user_key", "name", "email", "product", "tokens"],
        "{tokens}"
    );
    let [date_at, team_at, key_at, product_at, tokens_at] = [
        column(&records, "date"),
        column(&records, "team_id"),
        column(&records, "user_key"),
        column(&records, "product"),
        column(&records, "tokens"),
    ];
    let mut got = BTreeMap::new();
    for r in &records[1..] {
        assert_eq!(r[team_at], team);
        let day = NaiveDate::parse_from_str(&r[date_at], "%Y-%m-%d").expect("a date");
        let key = (r[key_at].clone(), r[product_at].clone(), day);
        assert!(
            got.insert(key, cell_milli(&r[tokens_at])).is_none(),
            "{r:?} twice"
        );
    }
    let want_days = want_token_days(&f, &team, range);
    assert_eq!(got, want_days, "token usage day by day");
    let inside = want_days
        .iter()
        .filter(|((user, product, d), tokens)| {
            **tokens == 0
                && d.pred_opt().is_some_and(|before| {
                    want_days
                        .get(&(user.clone(), product.clone(), before))
                        .is_some_and(|t| *t > 0)
                })
        })
        .count();
    assert!(
        inside > 0,
        "a day used inside a window opened the day before shows 0 tokens"
    );
    let sum: u64 = got.values().sum();
    let (_, overview) = report
        .get(
            Some(&one),
            &format!("/v1/report/overview?team={team}&range=last_3_months"),
        )
        .await;
    assert_eq!(sum, milli(&overview["flex"]["tokens_consumed"]));
    let want_tokens: u64 = want.values().map(|w| w.tokens_milli).sum();
    assert_eq!(sum, want_tokens);

    // Only the requesting admin downloads, even another admin of the team.
    let (status, body) = report.get(Some(&two), &path).await;
    assert_eq!(
        (status, body["error"].clone()),
        (StatusCode::NOT_FOUND, json!("not_found"))
    );
    let (_, list) = report.get(Some(&two), "/v1/exports").await;
    assert_eq!(list["exports"], json!([]));
    let (_, list) = report.get(Some(&one), "/v1/exports").await;
    assert_eq!(list["exports"].as_array().map(Vec::len), Some(4));

    // A team with PII off: "hashed data values are shown" — the hash (the
    // user key) in name and email, on the page's rows and in every file.
    let unhash = f.unhash();
    let hashed_filters = json!({"team": hidden, "range": "last_3_months"});
    let (status, page) = report
        .get(
            Some(&three),
            &format!("/v1/report/users?team={hidden}&range=last_3_months&page_size=1000"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let rows = page["rows"].as_array().cloned().unwrap_or_default();
    assert!(!rows.is_empty(), "{page}");
    for row in &rows {
        let key = row["user_key"].as_str().unwrap_or_default();
        assert!(unhash.contains_key(key), "{row}");
        assert_eq!((&row["name"], &row["email"]), (&json!(key), &json!(key)));
    }
    for (kind, format) in [
        ("report", "csv"),
        ("report", "xlsx"),
        ("seat_usage", "csv"),
        ("token_usage", "xlsx"),
    ] {
        let (meta, bytes) = export(
            &report,
            &three,
            &json!({"kind": kind, "format": format, "filters": hashed_filters}),
        )
        .await;
        let records = if format == "csv" {
            csv_records(&bytes)
        } else {
            xlsx_records(&bytes)
        };
        assert!(records.len() > 1, "{meta}");
        let [key_at, name_at, email_at] = [
            column(&records, "user_key"),
            column(&records, "name"),
            column(&records, "email"),
        ];
        for r in &records[1..] {
            assert!(unhash.contains_key(&r[key_at]), "{kind} {format}: {r:?}");
            assert_eq!(
                (&r[name_at], &r[email_at]),
                (&r[key_at], &r[key_at]),
                "{kind} {format}: the hash in name and email"
            );
        }
    }

    // An export 15 days old is deleted by the sweeper: the file is gone and
    // the download answers 410.
    let id = meta["export_id"].as_str().unwrap_or_default().to_owned();
    let sidecar = report.exports_dir.join(format!("{id}.json"));
    let data = report.exports_dir.join(format!("{id}.csv"));
    assert!(data.exists(), "{}", data.display());
    let mut stored: Value =
        serde_json::from_slice(&std::fs::read(&sidecar).expect("sidecar")).expect("JSON");
    let created = Utc::now() - Days::days(15);
    stored["created_at"] = json!(created);
    stored["expires_at"] = json!(created + Days::days(14));
    std::fs::write(&sidecar, serde_json::to_vec(&stored).expect("JSON")).expect("write");
    let gone = eventually(Duration::from_secs(10), || async { !data.exists() }).await;
    assert!(gone, "the sweeper deletes a 15-day-old export");
    let (status, body) = report.get(Some(&one), &path).await;
    assert_eq!(
        (status, body["error"].clone()),
        (StatusCode::GONE, json!("export_expired"))
    );
    // Written in the background: the answer is 202 with where to poll.
    let response = reqwest::Client::new()
        .post(report.url("/v1/exports"))
        .bearer_auth(one.token())
        .json(&json!({"kind": "seat_usage", "format": "xlsx", "filters": filters}))
        .send()
        .await
        .expect("usage-report answers");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let accepted: Value = response.json().await.expect("JSON");
    assert_eq!(
        location,
        format!("/v1/exports/{}", cell(&accepted["export_id"]))
    );
    let polled = ready(&report, &one, cell(&accepted["export_id"]).as_str()).await;
    assert!(polled["rows"].as_u64().is_some_and(|n| n > 0), "{polled}");

    // An export whose writer stopped (a restart, a crash: its sidecar is no
    // longer touched) is failed, not running for ever; it is not
    // downloaded (409) and says why. One still touched is running.
    let stranded = "7b0c6f5e-1d2a-4c3b-9e8f-0a1b2c3d4e5f";
    let mut running = stored.clone();
    running["export_id"] = json!(stranded);
    running["download_path"] = json!(format!("/v1/exports/{stranded}/download"));
    running["created_at"] = json!(Utc::now());
    running["expires_at"] = json!(Utc::now() + Days::days(14));
    running["rows"] = json!(0);
    running["state"] = json!("running");
    let stranded_sidecar = report.exports_dir.join(format!("{stranded}.json"));
    std::fs::write(
        &stranded_sidecar,
        serde_json::to_vec(&running).expect("JSON"),
    )
    .expect("write");
    let (_, meta) = report
        .get(Some(&one), &format!("/v1/exports/{stranded}"))
        .await;
    assert_eq!(meta["state"], json!("running"), "{meta}");
    let (status, body) = report
        .get(Some(&one), &format!("/v1/exports/{stranded}/download"))
        .await;
    assert_eq!(
        (status, body["error"].clone()),
        (StatusCode::CONFLICT, json!("export_not_ready"))
    );
    std::fs::File::options()
        .write(true)
        .open(&stranded_sidecar)
        .and_then(|f| f.set_modified(std::time::SystemTime::now() - Duration::from_secs(120)))
        .expect("aged");
    let (_, meta) = report
        .get(Some(&one), &format!("/v1/exports/{stranded}"))
        .await;
    assert_eq!(meta["state"], json!("failed"), "{meta}");
    assert!(cell(&meta["error"]).contains("stopped"), "says why: {meta}");
    let (status, body) = report
        .get(Some(&one), &format!("/v1/exports/{stranded}/download"))
        .await;
    assert_eq!(
        (status, body["error"].clone()),
        (StatusCode::CONFLICT, json!("export_not_ready")),
        "{body}"
    );
    let (_, list) = report.get(Some(&one), "/v1/exports").await;
    let listed = list["exports"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .find(|e| e["export_id"] == json!(stranded));
    assert_eq!(listed.map(|e| e["state"].clone()), Some(json!("failed")));

    // A younger export is still there.
    let (status, _) = report
        .get_bytes(&one, xlsx["download_path"].as_str().unwrap_or_default())
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn schedules_belong_to_their_admin_and_unassign_respects_groups() {
    let f = fixture("schedules", 13).await;
    let team = f
        .current_teams()
        .into_iter()
        .find(|t| f.pii_visible(t))
        .expect("a team with PII on");
    let other = f
        .current_teams()
        .into_iter()
        .find(|t| *t != team)
        .expect("another team");
    let one = admin("one", "secondary", &[&team]);
    let two = admin("two", "primary", &[&team]);
    let helper = admin("helper", "user_admin", &["*"]);
    let (report, commands, notifications) =
        start(&f, &[one.clone(), two.clone(), helper.clone()]).await;
    let today = Utc::now().date_naive();
    let schedule = |n: u32| {
        json!({
            "name": format!("Weekly usage {n}"),
            "start_date": today.to_string(),
            "frequency": "weekly",
            "format": if n.is_multiple_of(2) { "csv" } else { "xlsx" },
            "filters": {"team": team, "range": "last_30_days"},
        })
    };

    // Only primary, secondary and SSO admins schedule.
    let (status, body) = report
        .send(&helper, Method::POST, "/v1/schedules", &schedule(0))
        .await;
    assert_eq!(
        (status, body["error"].clone()),
        (StatusCode::FORBIDDEN, json!("forbidden"))
    );
    // At most 5 per admin; the 6th is refused with a clear message.
    let mut ids = Vec::new();
    for n in 1..=5 {
        let (status, body) = report
            .send(&one, Method::POST, "/v1/schedules", &schedule(n))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        ids.push(body["schedule_id"].as_str().unwrap_or_default().to_owned());
    }
    let (status, body) = report
        .send(&one, Method::POST, "/v1/schedules", &schedule(6))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"], json!("schedule_limit"));
    assert!(
        body["message"].as_str().unwrap_or_default().contains('5'),
        "{body}"
    );
    // Another admin of the same team sees none of them, and can touch none.
    let (_, list) = report.get(Some(&two), "/v1/schedules").await;
    assert_eq!(list["schedules"], json!([]));
    let theirs = format!("/v1/schedules/{}", ids[0]);
    assert_eq!(
        report.get(Some(&two), &theirs).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, _) = report.send(&two, Method::PUT, &theirs, &schedule(9)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = report
        .send(&two, Method::DELETE, &theirs, &Value::Null)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The owner edits and deletes.
    let (status, body) = report.send(&one, Method::PUT, &theirs, &schedule(7)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["name"], json!("Weekly usage 7"));
    let (status, _) = report
        .send(
            &one,
            Method::DELETE,
            &format!("/v1/schedules/{}", ids[4]),
            &Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, list) = report.get(Some(&one), "/v1/schedules").await;
    assert_eq!(list["schedules"].as_array().map(Vec::len), Some(4));

    // The scheduler runs the four due schedules: an export each, owned by
    // the admin, and a "report ready" notification with its download path.
    let notes = services::read_topic(&notifications, 4, Duration::from_secs(30)).await;
    assert_eq!(notes.len(), 4, "{}", report.log_text());
    for (key, payload) in &notes {
        let note: Value = serde_json::from_slice(payload).expect("JSON");
        assert_eq!(key, "one");
        assert_eq!(note["type"], json!("report_ready"));
        assert_eq!(note["admin_id"], json!("one"));
        assert!(ids[..4].contains(&note["schedule_id"].as_str().unwrap_or_default().to_owned()));
        let path = note["download_path"].as_str().unwrap_or_default();
        assert_eq!(report.get_bytes(&one, path).await.0, StatusCode::OK);
        assert_eq!(report.get(Some(&two), path).await.0, StatusCode::NOT_FOUND);
    }
    let (_, list) = report.get(Some(&one), "/v1/schedules").await;
    for s in list["schedules"].as_array().cloned().unwrap_or_default() {
        assert_eq!(s["last_run_date"], json!(today.to_string()), "{s}");
        assert_eq!(
            s["next_run_date"],
            json!((today + Days::days(7)).to_string())
        );
    }

    // Unassign: refused for group and default assignments, published for
    // direct ones.
    let holding = |via: Via| {
        f.published.expected.rows.iter().find(|r| {
            r.current_team_id == team && r.assignment.as_ref().is_some_and(|a| a.via == via)
        })
    };
    for via in [Via::Group, Via::Default] {
        if let Some(row) = holding(via) {
            let (status, body) = report
                .send(
                    &one,
                    Method::POST,
                    "/v1/assignments/unassign",
                    &json!({"team_id": team, "user_key": row.user_id, "product": row.product, "access": row.access.as_str()}),
                )
                .await;
            assert_eq!(status, StatusCode::CONFLICT, "{via:?}: {body}");
            assert_eq!(body["error"], json!("unassign_refused"));
        }
    }
    assert!(
        holding(Via::Group).is_some() || holding(Via::Default).is_some(),
        "the scenario has group or default assignments in {team}"
    );
    let direct = holding(Via::Direct).expect("a direct assignment");
    let (status, body) = report
        .send(
            &one,
            Method::POST,
            "/v1/assignments/unassign",
            &json!({"team_id": team, "user_key": direct.user_id, "product": direct.product, "access": direct.access.as_str()}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let requests = services::read_topic(&commands, 1, Duration::from_secs(30)).await;
    assert_eq!(requests.len(), 1);
    let request: Value = serde_json::from_slice(&requests[0].1).expect("JSON");
    assert_eq!(request["type"], json!("unassign_request"));
    assert_eq!(request["user_id"], json!(direct.user_id));
    assert_eq!(request["team_id"], json!(direct.team_id));
    assert_eq!(request["product"], json!(direct.product));
    assert_eq!(request["requested_by"], json!("one"));
    assert_eq!(request["request_id"], body["request_id"]);
    // Not in a team the admin does not administer.
    let (status, _) = report
        .send(
            &one,
            Method::POST,
            "/v1/assignments/unassign",
            &json!({"team_id": other, "user_key": direct.user_id, "product": direct.product}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
