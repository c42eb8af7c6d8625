//! A running `usage-report` over a test's database, and an HTTP client that
//! speaks to it as an admin.

use crate::services::{binary, brokers, clickhouse_url, unique};
use reqwest::StatusCode;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
}

/// Options of one service.
#[derive(Debug, Clone, Default)]
pub struct ReportOptions {
    pub commands_topic: Option<String>,
    pub notifications_topic: Option<String>,
    pub scheduler_interval_secs: Option<u64>,
    pub sweep_interval_secs: Option<u64>,
}

/// A running `usage-report`, killed when dropped.
pub struct Report {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
    pub exports_dir: PathBuf,
    client: reqwest::Client,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Report {
    /// Starts the service on `database` with `admins`, and waits until it answers.
    pub async fn start(database: &str, admins: &[TestAdmin], options: ReportOptions) -> Report {
        let bin = binary("usage-report", "usage-report");
        let base = std::env::temp_dir().join(unique("report"));
        std::fs::create_dir_all(&base).expect("a scratch directory");
        let admins_file = base.join("admins.toml");
        let mut text = String::new();
        for a in admins {
            let teams: Vec<String> = a.teams.iter().map(|t| format!("{t:?}")).collect();
            text.push_str(&format!(
                "[[admin]]\nid = {:?}\nemail = \"{}@example.com\"\nrole = {:?}\nteams = [{}]\ntoken = {:?}\n\n",
                a.id,
                a.id,
                a.role,
                teams.join(", "),
                a.token()
            ));
        }
        std::fs::write(&admins_file, text).expect("admins file");
        let key_file = base.join("hmac.key");
        std::fs::write(&key_file, HMAC_KEY).expect("key file");
        let exports_dir = base.join("exports");
        let log = base.join("report.log");
        let port = free_port();
        let mut command = Command::new(bin);
        command
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--clickhouse-url", &clickhouse_url()])
            .args(["--clickhouse-database", database])
            .args(["--kafka-brokers", &brokers()])
            .arg("--admins-file")
            .arg(&admins_file)
            .arg("--hmac-key-file")
            .arg(&key_file)
            .arg("--exports-dir")
            .arg(&exports_dir)
            .args([
                "--scheduler-interval-secs",
                &options.scheduler_interval_secs.unwrap_or(0).to_string(),
                "--sweep-interval-secs",
                &options.sweep_interval_secs.unwrap_or(3600).to_string(),
            ]);
        if let Some(topic) = &options.commands_topic {
            command.args(["--commands-topic", topic]);
        }
        if let Some(topic) = &options.notifications_topic {
            command.args(["--notifications-topic", topic]);
        }
        let child = command
            .env("RUST_LOG", "info,usage_report=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("usage-report starts");
        let report = Report {
            child,
            port,
            log,
            exports_dir,
            client: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = report.client.get(report.url("/healthz")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "usage-report did not come up:\n{}",
                report.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        report
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
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
        let response = self
            .client
            .request(method, self.url(path))
            .bearer_auth(admin.token())
            .json(body)
            .send()
            .await
            .expect("usage-report answers");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
