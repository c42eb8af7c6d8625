//! Exactness: the served numbers next to the load generator's oracle of
//! the same scenario (generated again): every team's and all teams'
//! overview and every users-page row, over three ranges.

use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;
use usage_core::privacy::UserHasher;
use usage_loadgen::oracle::{ExpectedLine, LineKey};
use usage_loadgen::{DateRange, Oracle, Scenario, ScenarioConfig};

use crate::{get_json, say};

#[derive(Debug, Serialize)]
pub(crate) struct OracleCheck {
    /// Overviews compared (teams and all teams, times ranges).
    pub(crate) overviews: usize,
    /// Users-page rows compared (teams and all teams, times ranges).
    pub(crate) rows: usize,
    /// `query: what served != oracle`, the first 50.
    pub(crate) differences: Vec<String>,
    /// All the differences.
    pub(crate) difference_count: usize,
    /// Generating the scenario and its oracle.
    pub(crate) oracle_secs: f64,
}

/// Every team's overview and users rows, and all teams', over the last 30
/// days, the last 3 months and a custom range, next to the oracle's of the
/// range the service says it used. `hmac_key`: the service's, to match
/// hashed user keys to ids.
pub(crate) async fn check_oracle(
    http: &reqwest::Client,
    base: &str,
    config: &ScenarioConfig,
    teams: &[String],
    hmac_key: &str,
) -> Result<OracleCheck> {
    say("oracle check: generating the scenario and its oracle");
    let t = Instant::now();
    let config = config.clone();
    let now = chrono::Utc::now();
    let (oracle, expected_rows) = tokio::task::spawn_blocking(move || -> Result<_> {
        let scenario = Scenario::generate(&config)?;
        let oracle = Oracle::from_scenario(&scenario)?;
        let rows = oracle.expected_rollups(now, &[], false).rows;
        Ok((oracle, rows))
    })
    .await??;
    let hasher = UserHasher::new(hmac_key.trim().as_bytes()).context("the HMAC key")?;
    let unhash: BTreeMap<String, String> = expected_rows
        .iter()
        .map(|r| (hasher.hash(&r.user_id), r.user_id.clone()))
        .collect();
    let mut rows = 0;
    let oracle_secs = t.elapsed().as_secs_f64();
    let today = chrono::Utc::now().date_naive();
    let custom = format!(
        "range=custom&from={}&to={}",
        today - chrono::Days::new(59),
        today - chrono::Days::new(10)
    );
    let mut differences = Vec::new();
    let mut overviews = 0;
    for range in ["range=last_30_days", "range=last_3_months", custom.as_str()] {
        for team in teams.iter().map(Some).chain([None]) {
            let q = format!("team={}&{range}", team.map_or("all", String::as_str));
            let o: serde_json::Value = get_json(http, &format!("{base}/v1/report/overview?{q}"))
                .await
                .with_context(|| format!("overview {q}"))?;
            let date = |field: &str| -> Result<chrono::NaiveDate> {
                let v = o["range"][field].as_str().unwrap_or_default();
                chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
                    .with_context(|| format!("overview {q}: range.{field} {v:?}"))
            };
            let range = DateRange::new(date("from")?, date("to")?);
            let want = oracle.team_summary(team.map(String::as_str), range, now);
            let s = &o["subscriptions"];
            let f = &o["flex"];
            let tokens_milli = f["tokens_consumed"]
                .as_f64()
                .map(|t| (t * 1000.0).round() as u64);
            let fields = [
                (
                    "assigned_seats",
                    s["assigned_seats"].as_u64(),
                    Some(want.seats_assigned),
                ),
                ("active", s["active"].as_u64(), Some(want.seats_active)),
                ("inactive", s["inactive"].as_u64(), want.seats_inactive),
                (
                    "not_yet_active",
                    s["not_yet_active"].as_u64(),
                    Some(want.seats_not_yet_active),
                ),
                (
                    "tokens_consumed (thousandths)",
                    tokens_milli,
                    Some(want.flex_tokens_milli),
                ),
                ("flex users", f["users"].as_u64(), Some(want.flex_users)),
                (
                    "flex days_used",
                    f["days_used"].as_u64(),
                    Some(want.flex_days_used),
                ),
            ];
            for (name, served, expected) in fields {
                if served != expected {
                    differences.push(format!("{q}: {name} {served:?} != {expected:?}"));
                }
            }
            overviews += 1;

            let served = users_rows(http, base, &q, &unhash).await?;
            let want = oracle.report_lines(&expected_rows, team.map(String::as_str), range);
            rows += served.len();
            for (key, w) in &want {
                match served.get(key) {
                    Some(g) if g == w => {}
                    Some(g) => differences.push(format!("{q}: {key:?}: served {g:?}, want {w:?}")),
                    None => differences.push(format!("{q}: {key:?}: missing, want {w:?}")),
                }
            }
            for key in served.keys().filter(|k| !want.contains_key(*k)) {
                differences.push(format!("{q}: {key:?}: served, not expected"));
            }
        }
    }
    let difference_count = differences.len();
    differences.truncate(50);
    Ok(OracleCheck {
        overviews,
        rows,
        differences,
        difference_count,
        oracle_secs,
    })
}

/// Every users-page row for `query`, all pages, keyed as the oracle keys
/// its lines (hashed keys turned back into ids).
async fn users_rows(
    http: &reqwest::Client,
    base: &str,
    query: &str,
    unhash: &BTreeMap<String, String>,
) -> Result<BTreeMap<LineKey, ExpectedLine>> {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let date = |v: &serde_json::Value| {
        v.as_str()
            .and_then(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
    };
    let mut out = BTreeMap::new();
    for page in 1.. {
        let body: serde_json::Value = get_json(
            http,
            &format!("{base}/v1/report/users?{query}&page={page}&page_size=1000"),
        )
        .await
        .with_context(|| format!("users {query} page {page}"))?;
        let rows = body["rows"].as_array().cloned().unwrap_or_default();
        for row in &rows {
            let key_text = text(&row["user_key"]);
            let user = unhash.get(&key_text).cloned().unwrap_or(key_text);
            out.insert(
                (
                    text(&row["team_id"]),
                    user,
                    text(&row["product"]),
                    text(&row["access"]),
                ),
                ExpectedLine {
                    days_used: row["days_used"].as_u64().unwrap_or(u64::MAX),
                    last_accessed: date(&row["last_accessed"]),
                    tokens_milli: row["tokens_used"]
                        .as_f64()
                        .map_or(u64::MAX, |t| (t * 1000.0).round() as u64),
                    assigned_date: date(&row["assigned_date"]),
                    status: text(&row["status"]),
                },
            );
        }
        let total = body["total"].as_u64().unwrap_or(0) as usize;
        if rows.is_empty() || out.len() >= total {
            break;
        }
    }
    Ok(out)
}
