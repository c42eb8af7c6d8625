//! The Grafana dashboards of `deploy/grafana/dashboards` stay true to the
//! code: every metric a Prometheus query of `pipeline.json` names is exposed
//! by a running `usage-ingest` or `usage-report`, and every SQL query of
//! `usage.json` runs, its Grafana macros replaced by literal dates, on the
//! local ClickHouse 18.16 and on a current ClickHouse (chDB).

use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;
use usage_store::migrate;
use usage_tests::modern_clickhouse::{self, Statement};
use usage_tests::report::{Report, ReportOptions, TestAdmin};
use usage_tests::services::{self, eventually, publish, Ingest, ScratchDatabase};

const PROMETHEUS_UID: &str = "prometheus";
const CLICKHOUSE_UID: &str = "clickhouse";

/// The range the macros of the SQL queries are replaced with: January 2026
/// (UTC), as the plugin would expand it.
const FROM_DATE: &str = "2026-01-01";
const TO_DATE: &str = "2026-01-31";
const FROM_UNIX: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z
const TO_UNIX: i64 = 1_769_903_999; // 2026-01-31T23:59:59Z

fn dashboard(file: &str) -> Value {
    let path = usage_tests::repo_root()
        .join("deploy/grafana/dashboards")
        .join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel);
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// (panel title, target) of every query of the dashboard.
fn targets(dashboard: &Value) -> Vec<(String, &Value)> {
    panels(dashboard)
        .into_iter()
        .flat_map(|panel| {
            let title = panel["title"].as_str().unwrap_or("?").to_owned();
            panel["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |t| (title.clone(), t))
        })
        .collect()
}

/// The data source uid of a target (or of its panel, when the target has none).
fn datasource_uid<'a>(dashboard: &'a Value, target: &'a Value) -> &'a str {
    target["datasource"]["uid"]
        .as_str()
        .or_else(|| {
            panels(dashboard)
                .into_iter()
                .find(|p| {
                    p["targets"]
                        .as_array()
                        .is_some_and(|ts| ts.iter().any(|t| std::ptr::eq(t, target)))
                })
                .and_then(|p| p["datasource"]["uid"].as_str())
        })
        .unwrap_or("")
}

/// The project's metric names in a PromQL expression (`usage_(ingest|report)_[a-z_]+`),
/// histogram series suffixes stripped.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = BTreeSet::new();
    for prefix in ["usage_ingest_", "usage_report_"] {
        let mut from = 0;
        while let Some(at) = expr[from..].find(prefix).map(|i| from + i) {
            from = at + prefix.len();
            if expr[..at].chars().next_back().is_some_and(is_name_char) {
                continue; // inside another identifier
            }
            let end = expr[from..]
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .map_or(expr.len(), |i| from + i);
            names.insert(strip_series_suffix(&expr[at..end]).to_owned());
            from = end;
        }
    }
    names
}

fn strip_series_suffix(name: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name)
}

/// The metric families of a Prometheus text exposition that have at least
/// one sample (a labelled vector shows none until a label set exists; a
/// histogram's samples are its `_bucket`, `_sum` and `_count` series).
fn exposed(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|name| strip_series_suffix(name).to_owned())
        .collect()
}

/// Every PromQL expression of `pipeline.json`, with its panel.
fn pipeline_exprs() -> Vec<(String, String)> {
    let d = dashboard("pipeline.json");
    let exprs: Vec<(String, String)> = targets(&d)
        .into_iter()
        .filter_map(|(panel, t)| Some((panel, t["expr"].as_str()?.to_owned())))
        .collect();
    assert!(!exprs.is_empty(), "pipeline.json has Prometheus queries");
    exprs
}

/// Every SQL query of `usage.json`, named after its panel.
fn usage_queries() -> Vec<(String, String)> {
    let d = dashboard("usage.json");
    let queries: Vec<(String, String)> = targets(&d)
        .into_iter()
        .map(|(panel, t)| {
            let sql = t["rawSql"]
                .as_str()
                .unwrap_or_else(|| panic!("{panel}: a ClickHouse target has rawSql"));
            (
                format!("{panel} ({})", t["refId"].as_str().unwrap_or("?")),
                sql.to_owned(),
            )
        })
        .collect();
    assert!(!queries.is_empty(), "usage.json has ClickHouse queries");
    queries
}

/// `name(arg)` macros of `sql` replaced by `expand(arg)`.
fn replace_macro(sql: &str, name: &str, expand: impl Fn(&str) -> String) -> String {
    let open = format!("{name}(");
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find(&open) {
        out.push_str(&rest[..at]);
        let after = &rest[at + open.len()..];
        let close = after
            .find(')')
            .unwrap_or_else(|| panic!("unclosed {name}( in {sql}"));
        out.push_str(&expand(after[..close].trim()));
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// The SQL the ClickHouse plugin sends for January 2026: its macros as it
/// expands them (pkg/macros of grafana/clickhouse-datasource 4.x). Panics on
/// any other `$` (an unknown macro or a dashboard variable this test would
/// not exercise).
fn with_literals(sql: &str) -> String {
    let from_time = format!("toDateTime({FROM_UNIX})");
    let to_time = format!("toDateTime({TO_UNIX})");
    let mut out = replace_macro(sql, "$__dateFilter", |c| {
        format!("{c} >= toDate('{FROM_DATE}') AND {c} <= toDate('{TO_DATE}')")
    });
    out = replace_macro(&out, "$__timeFilter", |c| {
        format!("{c} >= {from_time} AND {c} <= {to_time}")
    });
    out = out
        .replace("$__fromTime", &from_time)
        .replace("$__toTime", &to_time);
    assert!(
        !out.contains('$'),
        "a macro or variable this test does not expand: {out}"
    );
    out
}

/// `sql` with the `usage.` database prefix removed (the scratch database of a
/// test has another name and is the client's default).
fn without_database(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find("usage.") {
        let qualified = !rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        out.push_str(&rest[..at]);
        if !qualified {
            out.push_str("usage.");
        }
        rest = &rest[at + "usage.".len()..];
    }
    out.push_str(rest);
    out
}

/// A few rows behind the views the dashboard reads, in January 2026 (and one
/// day outside it): u-1 seat on two days, u-2 Flex on one day with two
/// windows of 7 and 8.5 tokens, u-3 seat on 2026-02-01.
const SEED: &[&str] = &[
    "INSERT INTO daily_usage (team_id, user_id, product, access, usage_date) VALUES \
     ('t-1', 'u-1', 'autocad', 'seat', '2026-01-05'), \
     ('t-1', 'u-1', 'autocad', 'seat', '2026-01-05'), \
     ('t-1', 'u-1', 'autocad', 'seat', '2026-01-07'), \
     ('t-1', 'u-2', 'revit', 'flex', '2026-01-10'), \
     ('t-1', 'u-3', 'autocad', 'seat', '2026-02-01')",
    "INSERT INTO flex_windows (user_id, product, window_start, window_start_us, team_id, \
     opening_event_id, tokens_milli) VALUES \
     ('u-2', 'revit', '2026-01-10 10:00:00', 0, 't-1', 'f1', 7000), \
     ('u-2', 'revit', '2026-01-11 11:00:00', 0, 't-1', 'f3', 8500)",
];

/// Runs `sql` on the local ClickHouse in `database`: its rows as JSON objects.
async fn rows_on_local(database: &str, sql: &str) -> Result<Vec<Value>, String> {
    let response = reqwest::Client::new()
        .post(format!("{}/", services::clickhouse_url()))
        .query(&[("database", database)])
        .body(format!("{sql}\nFORMAT JSONEachRow"))
        .send()
        .await
        .map_err(|e| format!("ClickHouse answers (scripts/services up): {e}"))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{status}: {}", text.trim()));
    }
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| format!("{e}: {l}")))
        .collect()
}

async fn execute_on_local(database: &str, sql: &str) {
    let response = reqwest::Client::new()
        .post(format!("{}/", services::clickhouse_url()))
        .query(&[("database", database)])
        .body(sql.to_owned())
        .send()
        .await
        .expect("ClickHouse answers (scripts/services up)");
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert!(status.is_success(), "{sql}: {status}: {text}");
}

/// A number in a JSONEachRow value (ClickHouse quotes 64-bit integers).
fn number(value: &Value) -> f64 {
    match value {
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Value::String(s) => s.parse().unwrap_or(f64::NAN),
        _ => f64::NAN,
    }
}

#[test]
fn dashboards_are_provisionable() {
    let datasources = std::fs::read_to_string(
        usage_tests::repo_root().join("deploy/grafana/provisioning/datasources/datasources.yaml"),
    )
    .expect("the provisioned data sources");
    for uid in [PROMETHEUS_UID, CLICKHOUSE_UID] {
        assert!(
            datasources.contains(&format!("uid: {uid}\n")),
            "data source uid {uid} is provisioned"
        );
    }
    let mut uids = BTreeSet::new();
    for (file, uid) in [
        ("pipeline.json", PROMETHEUS_UID),
        ("usage.json", CLICKHOUSE_UID),
    ] {
        let d = dashboard(file);
        assert!(d.get("id").is_none(), "{file}: no id (Grafana assigns it)");
        let dashboard_uid = d["uid"].as_str().unwrap_or_default();
        assert!(!dashboard_uid.is_empty(), "{file}: a fixed uid");
        assert!(uids.insert(dashboard_uid.to_owned()), "{file}: uid unique");
        assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
        let mut panel_ids = BTreeSet::new();
        for panel in panels(&d) {
            let id = panel["id"].as_u64().expect("every panel has an id");
            assert!(panel_ids.insert(id), "{file}: panel id {id} unique");
        }
        let ts = targets(&d);
        assert!(!ts.is_empty());
        for (panel, target) in ts {
            assert_eq!(
                datasource_uid(&d, target),
                uid,
                "{file}, {panel}: queries the provisioned data source"
            );
            if uid == CLICKHOUSE_UID {
                assert_eq!(target["editorType"], "sql", "{file}, {panel}: SQL editor");
                let (query_type, format) =
                    (target["queryType"].as_str(), target["format"].as_u64());
                assert!(
                    matches!(
                        (query_type, format),
                        (Some("timeseries"), Some(0)) | (Some("table"), Some(1))
                    ),
                    "{file}, {panel}: queryType {query_type:?} and format {format:?} agree"
                );
            }
        }
    }
}

#[test]
fn the_metric_name_scan_finds_what_it_should() {
    let names = metric_names(
        "histogram_quantile(0.5, sum by (table, le) (rate(usage_ingest_batch_insert_seconds_bucket[5m]))) \
         + sum(usage_report_requests_total{route=\"/x\"}) + my_usage_ingest_thing",
    );
    let want: BTreeSet<String> = [
        "usage_ingest_batch_insert_seconds",
        "usage_report_requests_total",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(names, want);
    let text = "# HELP usage_ingest_x_seconds x\n# TYPE usage_ingest_x_seconds histogram\n\
                usage_ingest_x_seconds_bucket{le=\"1\"} 0\nusage_ingest_y 3\n";
    let want: BTreeSet<String> = ["usage_ingest_x_seconds", "usage_ingest_y"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(exposed(text), want);
    assert_eq!(
        with_literals("SELECT 1 FROM usage.usage_days WHERE $__dateFilter(usage_date)"),
        "SELECT 1 FROM usage.usage_days WHERE usage_date >= toDate('2026-01-01') AND usage_date <= toDate('2026-01-31')"
    );
    assert_eq!(
        without_database("SELECT 1 FROM usage.usage_days, my_usage.t"),
        "SELECT 1 FROM usage_days, my_usage.t"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_of_the_pipeline_dashboard_is_exposed() {
    let exprs = pipeline_exprs();
    let wanted: BTreeSet<String> = exprs.iter().flat_map(|(_, e)| metric_names(e)).collect();
    let ingest_names: BTreeSet<&String> = wanted
        .iter()
        .filter(|n| n.starts_with("usage_ingest_"))
        .collect();
    let report_names: BTreeSet<&String> = wanted
        .iter()
        .filter(|n| n.starts_with("usage_report_"))
        .collect();
    assert!(!ingest_names.is_empty() && !report_names.is_empty());
    assert!(
        ingest_names.contains(&"usage_ingest_consumer_lag_messages".to_owned()),
        "the dashboard shows the consumer lag"
    );

    // A real usage-ingest, fed one valid authorization so that every series
    // the dashboard reads (histograms and labelled vectors appear only once
    // observed) is there; statistics often, so the lag gauge is set soon.
    let topics = services::scratch_topics("dashboards", 1).await;
    let db = ScratchDatabase::create("dashboards").await;
    let group = services::unique("dashboards");
    let ingest = Ingest::start(
        &topics,
        db.name(),
        &group,
        &[
            "--kafka-stats-interval-ms",
            "250",
            "--batch-max-wait-ms",
            "100",
        ],
    );
    assert!(
        eventually(Duration::from_secs(60), || async {
            ingest
                .metrics()
                .await
                .sum("usage_ingest_assigned_partitions")
                >= 3.0
        })
        .await,
        "usage-ingest owns the three inbound partitions:\n{}",
        ingest.log_tail()
    );
    let t = &topics;
    publish(&[
        (&t.directory, "t-1", r#"{"event_id":"d1","occurred_at":"2026-01-01T00:00:00Z","type":"team","team_id":"t-1","name":"Design","pii_visible":true}"#),
        (&t.assignments, "u-1", r#"{"event_id":"a1","occurred_at":"2026-01-02T00:00:00Z","action":"assign","team_id":"t-1","user_id":"u-1","product":"autocad","access":"seat","via":"direct"}"#),
        (&t.authorizations, "u-1", r#"{"event_id":"e1","occurred_at":"2026-01-05T09:00:00Z","user_id":"u-1","product":"autocad","access":"seat"}"#),
    ])
    .await;
    assert!(
        eventually(Duration::from_secs(60), || async {
            db.count("SELECT count() FROM authorizations").await == 1
        })
        .await,
        "the authorization is stored:\n{}",
        ingest.log_tail()
    );
    // Its offsets are committed after the insert; the next statistics then
    // report the lag of the three owned partitions (0 here).
    assert!(
        eventually(Duration::from_secs(30), || async {
            ingest
                .metrics()
                .await
                .text()
                .lines()
                .filter(|l| l.starts_with("usage_ingest_consumer_lag_messages{"))
                .count()
                >= 3
        })
        .await,
        "the consumer lag of each partition is reported:\n{}\n{}",
        ingest.metrics().await,
        ingest.log_tail()
    );
    let ingest_metrics = ingest.metrics().await.text().to_owned();
    let ingest_exposed = exposed(&ingest_metrics);
    assert!(
        !ingest.log().contains("Could not parse statistics JSON"),
        "librdkafka's statistics decode:\n{}",
        ingest.log_tail()
    );

    // A real usage-report: its start-up probes (/readyz) are requests, so the
    // request counter and histogram have a route.
    let admin = TestAdmin {
        id: "dash",
        role: "primary",
        teams: vec!["*".into()],
    };
    let report = Report::start(db.name(), &[admin], ReportOptions::default()).await;
    let report_metrics = report.metrics().await.expect("usage-report answers");
    let report_exposed = exposed(report_metrics.text());

    let mut missing = Vec::new();
    for (panel, expr) in &exprs {
        for name in metric_names(expr) {
            let found = if name.starts_with("usage_ingest_") {
                ingest_exposed.contains(&name)
            } else {
                report_exposed.contains(&name)
            };
            if !found {
                missing.push(format!("{panel}: {name} (in {expr})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "metrics the dashboard reads that the services do not expose:\n{}\n\nusage-ingest:\n{ingest_metrics}\nusage-report:\n{report_metrics}",
        missing.join("\n")
    );

    drop(report);
    drop(ingest);
    services::drop_topics(&topics).await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_query_of_the_usage_dashboard_runs_on_both_clickhouses() {
    let queries = usage_queries();

    // The local 18.16, in a scratch database with the migrations and a few rows.
    let db = ScratchDatabase::create("dashboards_sql").await;
    for sql in SEED {
        execute_on_local(db.name(), sql).await;
    }
    let mut failures = Vec::new();
    let mut results = Vec::new();
    for (name, sql) in &queries {
        let sql = without_database(&with_literals(sql));
        match rows_on_local(db.name(), &sql).await {
            Ok(rows) => results.push((name.clone(), rows)),
            Err(e) => failures.push(format!("{name}: {e}\n{sql}")),
        }
    }
    db.drop_database().await;
    assert!(
        failures.is_empty(),
        "on the local ClickHouse:\n{}",
        failures.join("\n\n")
    );
    // The seeded January: 2 active users, 3 user-days, 15.5 tokens, 2 products;
    // every query returns rows for it, none counts 2026-02-01.
    for (name, rows) in &results {
        assert!(!rows.is_empty(), "{name}: rows for January 2026");
        let value = |column: &str| rows.first().map_or(f64::NAN, |r| number(&r[column]));
        if name.starts_with("Active users (") {
            assert_eq!(value("active_users"), 2.0, "{name}: {rows:?}");
        } else if name.starts_with("Flex tokens (") {
            assert_eq!(value("tokens"), 15.5, "{name}: {rows:?}");
        } else if name.starts_with("User-days (") {
            assert_eq!(value("user_days"), 3.0, "{name}: {rows:?}");
        } else if name.starts_with("Top products") {
            assert_eq!(rows.len(), 2, "{name}: {rows:?}");
            assert_eq!(rows[0]["product"], "autocad", "{name}: {rows:?}");
            assert_eq!(number(&rows[0]["days_used"]), 2.0, "{name}: {rows:?}");
        } else if name.starts_with("Seat vs Flex") {
            assert_eq!(rows.len(), 3, "{name}: three days: {rows:?}");
            let flex: f64 = rows.iter().map(|r| number(&r["flex_users"])).sum();
            let seat: f64 = rows.iter().map(|r| number(&r["seat_users"])).sum();
            assert_eq!((seat, flex), (2.0, 1.0), "{name}: {rows:?}");
        }
    }

    // A current ClickHouse (chDB), in a database named `usage` as in
    // docker-compose.yml: the migrations, the rows, then the queries as the
    // plugin sends them.
    let migrations = migrate::load_dir(&usage_tests::repo_root().join("schemas/clickhouse"))
        .expect("migrations load");
    let mut statements: Vec<Statement> = migrations
        .iter()
        .flat_map(|m| {
            m.statements.iter().enumerate().map(|(i, sql)| Statement {
                name: format!("{:04}_{} statement {}", m.version, m.name, i + 1),
                sql: sql.clone(),
            })
        })
        .collect();
    let schema = statements.len();
    statements.extend(SEED.iter().enumerate().map(|(i, sql)| Statement {
        name: format!("seed {}", i + 1),
        sql: (*sql).to_owned(),
    }));
    statements.extend(queries.iter().map(|(name, sql)| Statement {
        name: format!("usage.json: {name}"),
        sql: with_literals(sql),
    }));
    let run = modern_clickhouse::run("usage", &statements).expect("chDB runs");
    assert!(
        run.version.starts_with('2'),
        "a current engine: {}",
        run.version
    );
    assert_eq!(run.results.len(), statements.len());
    assert!(statements.len() > schema + SEED.len());
    let failures = run.failures();
    assert!(
        failures.is_empty(),
        "on ClickHouse {}:\n{}",
        run.version,
        failures.join("\n")
    );
}
