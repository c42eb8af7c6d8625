//! A generated scenario (the load generator's), published to a test's own
//! topics, with its oracle and the checks that compare the warehouse to it.

use crate::services::{ScratchDatabase, Topics};
use std::time::Duration;
use usage_loadgen::oracle::DateRange;
use usage_loadgen::{verify, ExpectedRollups, Oracle, PublishConfig, Scenario, ScenarioConfig};

/// A scenario and what it must produce.
pub struct Published {
    pub scenario: Scenario,
    pub expected: ExpectedRollups,
}

impl Published {
    /// Generates the scenario of `config` and its expectations (not yet published).
    pub fn generate(config: ScenarioConfig) -> Published {
        let scenario = Scenario::generate(&config).expect("a valid scenario config");
        let oracle = Oracle::from_scenario(&scenario).expect("the oracle reads the scenario");
        let end = scenario.config().end;
        let ranges = Oracle::standard_ranges(end, scenario.config().days);
        let expected = oracle.expected_rollups(end, &ranges, false);
        Published { scenario, expected }
    }

    /// Publishes every message of the scenario to `topics` (again, if called twice).
    pub async fn publish(&self, topics: &Topics) {
        let config = PublishConfig {
            topics: topics.inbound(),
            ..PublishConfig::new(crate::services::brokers())
        };
        usage_loadgen::publish_scenario(&config, &self.scenario, |_| {})
            .await
            .expect("the scenario is published");
    }

    pub fn ranges(&self) -> Vec<(String, DateRange)> {
        self.expected
            .ranges
            .iter()
            .map(|r| (r.name.clone(), r.range))
            .collect()
    }

    /// The differences between the warehouse and the oracle now.
    pub async fn differences(&self, db: &ScratchDatabase) -> Vec<String> {
        match verify::observe(db.warehouse.client(), &self.ranges()).await {
            Ok(observed) => verify::differences(&self.expected, &observed),
            Err(e) => vec![format!("reading the warehouse: {e}")],
        }
    }

    /// Waits until the warehouse equals the oracle; the remaining differences otherwise.
    pub async fn converges(&self, db: &ScratchDatabase, timeout: Duration) -> Vec<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let differences = self.differences(db).await;
            if differences.is_empty() || std::time::Instant::now() >= deadline {
                return differences;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The expected number of stored authorizations.
    pub fn events_counted(&self) -> u64 {
        self.expected.totals.events_counted
    }
}
