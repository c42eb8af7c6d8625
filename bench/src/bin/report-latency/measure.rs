//! The measurement: the cases (a path and query, and what a good answer
//! holds), timed one request at a time on a keep-alive connection, and the
//! page's full load (its three requests at once).

use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::time::{Duration, Instant};
use usage_testkit::stats::percentile;

use crate::TOKEN;

/// What a case asks for, and so what a good answer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Overview,
    Users,
    Daily,
    /// The page's three requests for one filter set, at once: the overview,
    /// the daily chart and the first users page.
    PageLoad,
}

/// One timed case.
#[derive(Debug, Clone)]
pub(crate) struct Case {
    pub(crate) name: String,
    pub(crate) range: String,
    /// Path and query (for a page load, the overview's).
    pub(crate) path: String,
    pub(crate) kind: Kind,
}

impl Case {
    fn new(name: &str, range: &str, kind: Kind, path: String) -> Case {
        Case {
            name: name.to_owned(),
            range: range.to_owned(),
            path,
            kind,
        }
    }

    /// The paths the case requests.
    pub(crate) fn paths(&self) -> Vec<String> {
        if self.kind != Kind::PageLoad {
            return vec![self.path.clone()];
        }
        let query = self.path.split_once('?').map_or("", |(_, q)| q);
        vec![
            format!("/v1/report/overview?{query}"),
            format!("/v1/report/daily?{query}"),
            format!("/v1/report/users?{query}&page=1&page_size=50"),
        ]
    }
}

/// The ranges measured: three presets and a custom one of 50 days.
pub(crate) fn ranges(today: chrono::NaiveDate) -> Vec<(String, String)> {
    let custom = format!(
        "range=custom&from={}&to={}",
        today - chrono::Days::new(59),
        today - chrono::Days::new(10)
    );
    vec![
        ("last_30_days".into(), "range=last_30_days".into()),
        ("last_3_months".into(), "range=last_3_months".into()),
        ("last_12_months".into(), "range=last_12_months".into()),
        ("custom_50_days".into(), custom),
    ]
}

/// Every case: overview and users page 1 for all teams and the largest
/// team over every range; sorted by days used and a search over three
/// months; the page's full load over 30 days and three months.
pub(crate) fn cases(largest: &str, search: &str, today: chrono::NaiveDate) -> Vec<Case> {
    let mut cases = Vec::new();
    for (range, query) in ranges(today) {
        for (who, team) in [("team=all", "all"), ("largest team", largest)] {
            cases.push(Case::new(
                &format!("overview {who}"),
                &range,
                Kind::Overview,
                format!("/v1/report/overview?team={team}&{query}"),
            ));
            cases.push(Case::new(
                &format!("users p1 {who}"),
                &range,
                Kind::Users,
                format!("/v1/report/users?team={team}&{query}&page=1&page_size=50"),
            ));
        }
    }
    for (who, team) in [("team=all", "all"), ("largest team", largest)] {
        cases.push(Case::new(
            &format!("users p1 {who}, days_used:desc"),
            "last_3_months",
            Kind::Users,
            format!(
                "/v1/report/users?team={team}&range=last_3_months&page=1&page_size=50\
                 &sort=days_used:desc"
            ),
        ));
    }
    cases.push(Case::new(
        &format!("users p1 team=all, q={search}"),
        "last_3_months",
        Kind::Users,
        format!("/v1/report/users?team=all&range=last_3_months&page=1&page_size=50&q={search}"),
    ));
    for range in ["last_30_days", "last_3_months"] {
        for (who, team) in [("team=all", "all"), ("largest team", largest)] {
            cases.push(Case::new(
                &format!("page load {who}"),
                range,
                Kind::PageLoad,
                format!("/v1/report/overview?team={team}&range={range}"),
            ));
        }
    }
    cases
}

/// A case's timings under one variant of the service.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub(crate) struct CaseResult {
    pub(crate) case: String,
    pub(crate) range: String,
    /// Path and query.
    pub(crate) path: String,
    pub(crate) requests: usize,
    pub(crate) p50_ms: f64,
    pub(crate) p95_ms: f64,
    pub(crate) max_ms: f64,
    pub(crate) min_ms: f64,
    pub(crate) mean_ms: f64,
    pub(crate) response_bytes: usize,
    /// Users page: rows matching over all pages.
    pub(crate) total_rows: Option<u64>,
}

/// `GET base + path`, checked: 200 and JSON holding what `kind` promises.
/// Its size and, for a users page, the total rows.
pub(crate) async fn get_checked(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    kind: Kind,
) -> Result<(usize, Option<u64>)> {
    let url = format!("{base}{path}");
    let response = http
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .with_context(|| format!("GET {path}"))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .with_context(|| format!("reading GET {path}"))?;
    if status != reqwest::StatusCode::OK {
        bail!(
            "GET {path}: {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(500)])
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&body).with_context(|| format!("GET {path}: not JSON"))?;
    let kind = if kind == Kind::PageLoad {
        if path.starts_with("/v1/report/users") {
            Kind::Users
        } else if path.starts_with("/v1/report/daily") {
            Kind::Daily
        } else {
            Kind::Overview
        }
    } else {
        kind
    };
    let empty = |what: &str| -> Result<(usize, Option<u64>)> {
        bail!(
            "GET {path}: {what}: {}",
            String::from_utf8_lossy(&body[..body.len().min(500)])
        )
    };
    match kind {
        Kind::Users => {
            let total = v.get("total").and_then(serde_json::Value::as_u64);
            if v.get("rows")
                .and_then(serde_json::Value::as_array)
                .is_none()
                || total.is_none()
            {
                return empty("not a users page");
            }
            Ok((body.len(), total))
        }
        Kind::Daily => {
            let days = v
                .get("days")
                .and_then(serde_json::Value::as_array)
                .map_or(0, Vec::len);
            if days == 0 {
                return empty("an empty chart");
            }
            Ok((body.len(), None))
        }
        Kind::Overview | Kind::PageLoad => {
            let seats = v
                .pointer("/subscriptions/assigned_seats")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            if seats == 0 || v.get("flex").is_none() {
                return empty("an empty overview");
            }
            Ok((body.len(), None))
        }
    }
}

/// One timing of `case`: its request, or its three at once.
pub(crate) async fn time_once(
    http: &reqwest::Client,
    base: &str,
    case: &Case,
) -> Result<(Duration, usize, Option<u64>)> {
    let paths = case.paths();
    let get = |i: usize| get_checked(http, base, &paths[i.min(paths.len() - 1)], case.kind);
    let t = Instant::now();
    let answers = if case.kind == Kind::PageLoad {
        let (a, b, c) = tokio::join!(get(0), get(1), get(2));
        vec![a, b, c]
    } else {
        vec![get(0).await]
    };
    let elapsed = t.elapsed();
    let (mut bytes, mut total) = (0, None);
    for answer in answers {
        let (b, t) = answer?;
        bytes += b;
        total = total.or(t);
    }
    Ok((elapsed, bytes, total))
}

/// A case's result from its timings (milliseconds), the size of an answer
/// and a users page's total.
pub(crate) fn summarize(
    case: &Case,
    mut ms: Vec<f64>,
    bytes: usize,
    total: Option<u64>,
) -> CaseResult {
    let mean = ms.iter().sum::<f64>() / ms.len().max(1) as f64;
    ms.sort_by(|a, b| a.total_cmp(b));
    CaseResult {
        case: case.name.clone(),
        range: case.range.clone(),
        path: case.path.clone(),
        requests: ms.len(),
        p50_ms: percentile(&ms, 50.0),
        p95_ms: percentile(&ms, 95.0),
        max_ms: ms.last().copied().unwrap_or(0.0),
        min_ms: ms.first().copied().unwrap_or(0.0),
        mean_ms: mean,
        response_bytes: bytes,
        total_rows: total,
    }
}
