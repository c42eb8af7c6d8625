//! What the measurements of `usage-bench` share beyond the harness helpers
//! of `usage-testkit`: the scenario they publish and their ClickHouse polls.

use usage_loadgen::{Scenario, ScenarioConfig};

/// A clean scenario (no duplicates, late events or poison) ending an hour ago.
pub(crate) fn clean_scenario(seed: u64, users: usize, days: u32) -> anyhow::Result<Scenario> {
    Ok(Scenario::generate(&ScenarioConfig {
        seed,
        users,
        days,
        end: chrono::Utc::now() - chrono::TimeDelta::hours(1),
        duplicate_share: 0.0,
        late_share: 0.0,
        poison_share: 0.0,
        ..ScenarioConfig::default()
    })?)
}

/// A count query; 0 when it fails (polled again).
pub(crate) async fn query_count(client: &clickhouse::Client, sql: &str) -> u64 {
    usage_testkit::clickhouse::number(client, sql)
        .await
        .unwrap_or(0)
}

/// Bytes in MB (10^6).
pub(crate) fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}
