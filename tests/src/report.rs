//! A running `usage-report` over a test's database, an HTTP client that
//! speaks to it as an admin, and the oracle's view of the report: a
//! scenario published and ingested ([`fixture`]), the rows it must show
//! ([`Fixture::want`]) and the comparison ([`compare`]).

use crate::scenario::Published;
use crate::services::{self, binary, unique, Ingest, ScratchDatabase, Topics};
use chrono::NaiveDate;
use reqwest::StatusCode;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;
use usage_core::privacy::UserHasher;
use usage_loadgen::oracle::{DateRange, ExpectedLine, LineKey};
use usage_loadgen::{Oracle, ScenarioConfig};
use usage_testkit::metrics::Metrics;
use usage_testkit::report::{Admin, ReportRun};
use usage_testkit::services::Services;

/// The HMAC key the tests give the service (so they can recompute hashes).
pub const HMAC_KEY: &str = "report-tests-hmac-key-0123456789abcdef";

/// An admin of the tests' admins file.
#[derive(Debug, Clone)]
pub struct TestAdmin {
    pub id: &'static str,
    pub role: &'static str,
    /// `["*"]` for every team.
    pub teams: Vec<String>,
}

impl TestAdmin {
    /// The admin's bearer token.
    pub fn token(&self) -> String {
        format!("token-of-{}-0123456789", self.id)
    }

    /// The admin as the admins file holds it.
    pub fn admin(&self) -> Admin {
        Admin {
            id: self.id.to_owned(),
            role: self.role.to_owned(),
            teams: self.teams.clone(),
            token: self.token(),
        }
    }
}

/// Options of one service.
#[derive(Debug, Clone, Default)]
pub struct ReportOptions {
    pub commands_topic: Option<String>,
    pub notifications_topic: Option<String>,
    pub scheduler_interval_secs: Option<u64>,
    pub sweep_interval_secs: Option<u64>,
    /// `--avatar-origins`.
    pub avatar_origins: Option<String>,
    /// `--frequent-days-per-month`.
    pub frequent_days_per_month: Option<String>,
}

/// A running `usage-report`, killed when dropped.
pub struct Report {
    report: usage_testkit::report::Report,
    pub exports_dir: PathBuf,
    client: reqwest::Client,
}

impl Report {
    /// Starts the service on `database` with `admins`, and waits until it answers.
    pub async fn start(database: &str, admins: &[TestAdmin], options: ReportOptions) -> Report {
        Report::start_on(&services::local(), &[], database, admins, options).await
    }

    /// [`Report::start`] on other services, with `extra` options (the
    /// cluster's, see [`crate::cluster`]).
    pub async fn start_on(
        on: &Services,
        extra: &[&str],
        database: &str,
        admins: &[TestAdmin],
        options: ReportOptions,
    ) -> Report {
        let dir = std::env::temp_dir().join(unique("report"));
        let mut args = vec![
            "--sweep-interval-secs".to_owned(),
            options.sweep_interval_secs.unwrap_or(3600).to_string(),
        ];
        if let Some(topic) = &options.commands_topic {
            args.extend(["--commands-topic".to_owned(), topic.clone()]);
        }
        if let Some(topic) = &options.notifications_topic {
            args.extend(["--notifications-topic".to_owned(), topic.clone()]);
        }
        if let Some(origins) = &options.avatar_origins {
            args.extend(["--avatar-origins".to_owned(), origins.clone()]);
        }
        if let Some(days) = &options.frequent_days_per_month {
            args.extend(["--frequent-days-per-month".to_owned(), days.clone()]);
        }
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let report = ReportRun::new(binary("usage-report", "usage-report"), on, database, dir)
            .admins(admins.iter().map(TestAdmin::admin))
            .hmac_key(HMAC_KEY)
            .scheduler_interval_secs(options.scheduler_interval_secs.unwrap_or(0))
            .args(args)
            .env("RUST_LOG", "info,usage_report=debug")
            .start()
            .await
            .unwrap_or_else(|e| panic!("usage-report starts: {e:#}"));
        Report {
            exports_dir: report.exports_dir.clone(),
            report,
            client: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.report.url(path)
    }

    pub fn log_text(&self) -> String {
        self.report.process.log_text()
    }

    /// Its `/metrics` now (None when it does not answer).
    pub async fn metrics(&self) -> Option<Metrics> {
        Metrics::scrape(self.report.port).await
    }

    /// GET as `admin` (None: no token): status and JSON body (Null if not JSON).
    pub async fn get(&self, admin: Option<&TestAdmin>, path: &str) -> (StatusCode, Value) {
        let mut request = self.client.get(self.url(path));
        if let Some(a) = admin {
            request = request.bearer_auth(a.token());
        }
        let response = request.send().await.expect("usage-report answers");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// GET the raw bytes as `admin`.
    pub async fn get_bytes(&self, admin: &TestAdmin, path: &str) -> (StatusCode, Vec<u8>) {
        let response = self
            .client
            .get(self.url(path))
            .bearer_auth(admin.token())
            .send()
            .await
            .expect("usage-report answers");
        let status = response.status();
        (
            status,
            response
                .bytes()
                .await
                .map(|b| b.to_vec())
                .unwrap_or_default(),
        )
    }

    /// Sends `method` with a JSON body as `admin`.
    pub async fn send(
        &self,
        admin: &TestAdmin,
        method: reqwest::Method,
        path: &str,
        body: &Value,
    ) -> (StatusCode, Value) {
        send_json(&self.client, self.url(path), admin, method, body).await
    }
}

/// Sends `method` to `path` of a usage-report started with options of its
/// own (`usage_testkit::report::Report`) with a JSON body as `admin`.
pub async fn send_to(
    report: &usage_testkit::report::Report,
    admin: &TestAdmin,
    method: reqwest::Method,
    path: &str,
    body: &Value,
) -> (StatusCode, Value) {
    send_json(
        &reqwest::Client::new(),
        report.url(path),
        admin,
        method,
        body,
    )
    .await
}

/// Sends `method` to `url` with a JSON body as `admin`: the status and the
/// JSON answer (`null` when the body is not JSON).
pub async fn send_json(
    client: &reqwest::Client,
    url: String,
    admin: &TestAdmin,
    method: reqwest::Method,
    body: &Value,
) -> (StatusCode, Value) {
    let response = client
        .request(method, url)
        .bearer_auth(admin.token())
        .json(body)
        .send()
        .await
        .expect("usage-report answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

// ---------------------------------------------------------------------------
// The oracle's report

/// A (current team, user id, product, access).
pub type Key = LineKey;

/// What the oracle says of one report row.
pub type Want = ExpectedLine;

/// A scenario published and ingested into a database of its own.
pub struct Fixture {
    pub published: Published,
    pub oracle: Oracle,
    pub db: ScratchDatabase,
    pub topics: Topics,
    pub ingest: Ingest,
}

pub fn config(seed: u64) -> ScenarioConfig {
    ScenarioConfig {
        seed,
        users: 120,
        teams: 4,
        days: 130,
        events_per_user_day: 2.0,
        duplicate_share: 0.02,
        late_share: 0.02,
        poison_share: 0.0,
        ..ScenarioConfig::default()
    }
}

/// Publishes a scenario and waits until the ingest has built its rollups.
pub async fn fixture(tag: &str, seed: u64) -> Fixture {
    let published = Published::generate(config(seed));
    let oracle = Oracle::from_scenario(&published.scenario).expect("oracle");
    let topics = services::scratch_topics(tag, 2).await;
    let db = ScratchDatabase::create(tag).await;
    published.publish(&topics).await;
    let ingest = Ingest::start(
        &topics,
        db.name(),
        &services::unique("group"),
        &["--unresolved-hold-secs", "3", "--batch-max-wait-ms", "200"],
    );
    let differences = published.converges(&db, Duration::from_secs(120)).await;
    assert!(
        differences.is_empty(),
        "the rollups must be right before the report is judged:\n{}\n{}",
        differences[..differences.len().min(10)].join("\n"),
        ingest.log_tail()
    );
    Fixture {
        published,
        oracle,
        db,
        topics,
        ingest,
    }
}

impl Fixture {
    pub fn today(&self) -> NaiveDate {
        self.published.expected.now.date_naive()
    }

    /// The current teams (merges applied), sorted.
    pub fn current_teams(&self) -> Vec<String> {
        self.published
            .expected
            .teams
            .iter()
            .map(|t| t.current_team_id.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    pub fn pii_visible(&self, team: &str) -> bool {
        self.oracle.pii_visible(team)
    }

    /// The oracle's rows of the report for `team` (None: all teams) over `range`.
    pub fn want(&self, team: Option<&str>, range: DateRange) -> BTreeMap<Key, Want> {
        self.oracle
            .report_lines(&self.published.expected.rows, team, range)
    }

    /// user key -> user id, for every user of the scenario.
    pub fn unhash(&self) -> BTreeMap<String, String> {
        let hasher = UserHasher::new(HMAC_KEY.as_bytes()).expect("key");
        self.published
            .expected
            .rows
            .iter()
            .map(|r| (hasher.hash(&r.user_id), r.user_id.clone()))
            .collect()
    }
}

pub fn date(v: &Value) -> Option<NaiveDate> {
    v.as_str()
        .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
}

pub fn milli(v: &Value) -> u64 {
    (v.as_f64().unwrap_or(-1.0) * 1000.0).round() as u64
}

/// Every row of the users endpoint for `query` (all pages), keyed like the oracle.
pub async fn all_rows(
    report: &Report,
    admin: &TestAdmin,
    query: &str,
    unhash: &BTreeMap<String, String>,
) -> BTreeMap<Key, (Want, Value)> {
    let mut out = BTreeMap::new();
    let mut page = 1;
    loop {
        let (status, body) = report
            .get(
                Some(admin),
                &format!("/v1/report/users?{query}&page={page}&page_size=1000"),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        let rows = body["rows"].as_array().cloned().unwrap_or_default();
        for row in &rows {
            let key_text = row["user_key"].as_str().unwrap_or_default();
            let user = unhash
                .get(key_text)
                .cloned()
                .unwrap_or_else(|| key_text.to_owned());
            let key = (
                row["team_id"].as_str().unwrap_or_default().to_owned(),
                user,
                row["product"].as_str().unwrap_or_default().to_owned(),
                row["access"].as_str().unwrap_or_default().to_owned(),
            );
            let got = Want {
                days_used: row["days_used"].as_u64().unwrap_or(u64::MAX),
                last_accessed: date(&row["last_accessed"]),
                tokens_milli: milli(&row["tokens_used"]),
                assigned_date: date(&row["assigned_date"]),
                status: row["status"].as_str().unwrap_or_default().to_owned(),
            };
            assert!(
                out.insert(key, (got, row.clone())).is_none(),
                "a row twice: {row}"
            );
        }
        let total = body["total"].as_u64().unwrap_or(0) as usize;
        if out.len() >= total || rows.is_empty() {
            assert_eq!(out.len(), total, "{query}: total");
            return out;
        }
        page += 1;
    }
}

pub fn compare(what: &str, want: &BTreeMap<Key, Want>, got: &BTreeMap<Key, (Want, Value)>) {
    assert!(!want.is_empty(), "{what}: the oracle expects rows");
    let mut differences = Vec::new();
    for (key, w) in want {
        match got.get(key) {
            Some((g, _)) if g == w => {}
            Some((g, _)) => differences.push(format!("{key:?}: got {g:?}, want {w:?}")),
            None => differences.push(format!("{key:?}: missing, want {w:?}")),
        }
    }
    for key in got.keys().filter(|k| !want.contains_key(*k)) {
        differences.push(format!("{key:?}: not expected"));
    }
    assert!(
        differences.is_empty(),
        "{what}: {} differences of {} rows:\n{}",
        differences.len(),
        want.len(),
        differences[..differences.len().min(12)].join("\n")
    );
}
