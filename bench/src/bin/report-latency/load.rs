//! Admins opening the page at the same time: `clients` concurrent clients,
//! each on its own connection, asking without pause for a mix of all-teams
//! and one-team overviews, users pages and daily charts for `secs`
//! seconds. Throughput, latency percentiles and errors (a non-200 answer or
//! one that does not hold what it should).

use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};
use usage_testkit::stats::percentile;

use crate::measure::{get_checked, Kind};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LoadResult {
    pub(crate) clients: usize,
    pub(crate) secs: f64,
    /// Distinct requests in the mix.
    pub(crate) mix: usize,
    pub(crate) requests: usize,
    pub(crate) errors: usize,
    pub(crate) first_error: Option<String>,
    pub(crate) requests_per_sec: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p95_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

/// The mix: for the last 30 days and the last 3 months, all teams and every
/// team: the overview, the first users page and the daily chart.
pub(crate) fn mix(teams: &[String]) -> Vec<(String, Kind)> {
    let mut mix = Vec::new();
    for range in ["last_30_days", "last_3_months"] {
        for team in std::iter::once("all").chain(teams.iter().map(String::as_str)) {
            let q = format!("team={team}&range={range}");
            mix.push((format!("/v1/report/overview?{q}"), Kind::Overview));
            mix.push((
                format!("/v1/report/users?{q}&page=1&page_size=50"),
                Kind::Users,
            ));
            mix.push((format!("/v1/report/daily?{q}"), Kind::Daily));
        }
    }
    mix
}

/// Runs the load; requests still in flight at the end are waited for and
/// counted.
pub(crate) async fn run(
    base: &str,
    mix: Vec<(String, Kind)>,
    clients: usize,
    secs: u64,
) -> Result<LoadResult> {
    let mix = Arc::new(mix);
    let started = Instant::now();
    let stop = started + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (mix, base) = (Arc::clone(&mix), base.to_owned());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .pool_max_idle_per_host(1)
                .build()?;
            let (mut ms, mut errors, mut first_error) = (Vec::new(), 0usize, None);
            // Each client walks the mix from its own place.
            let mut next = client * mix.len() / clients.max(1);
            while Instant::now() < stop {
                let (path, kind) = &mix[next % mix.len()];
                next += 1;
                let t = Instant::now();
                match get_checked(&http, &base, path, *kind).await {
                    Ok(_) => ms.push(t.elapsed().as_secs_f64() * 1000.0),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
            }
            anyhow::Ok((ms, errors, first_error))
        }));
    }
    let (mut ms, mut errors, mut first_error) = (Vec::new(), 0, None);
    for task in tasks {
        let (m, e, f) = task.await??;
        ms.extend(m);
        errors += e;
        first_error = first_error.or(f);
    }
    let elapsed = started.elapsed().as_secs_f64();
    ms.sort_by(|a, b| a.total_cmp(b));
    Ok(LoadResult {
        clients,
        secs: elapsed,
        mix: mix.len(),
        requests: ms.len() + errors,
        errors,
        first_error,
        requests_per_sec: (ms.len() + errors) as f64 / elapsed,
        p50_ms: percentile(&ms, 50.0),
        p95_ms: percentile(&ms, 95.0),
        p99_ms: percentile(&ms, 99.0),
        max_ms: ms.last().copied().unwrap_or(0.0),
    })
}
