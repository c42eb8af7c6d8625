//! The scenario generator: a deterministic world (teams, users, products,
//! assignment timelines, rates) and a lazily generated stream of Kafka
//! messages in publish order.
//!
//! # Determinism
//! Everything derives from [`ScenarioConfig::seed`] through ChaCha8 RNGs:
//! one per user for the plan, one per (user, day) for the usage, one for the
//! publish-time decisions (duplicates). Iteration is always in index order
//! and no hash map is iterated, so the same config gives the same bytes.
//!
//! # Publish order
//! 1. The **preamble**: every `team`, every `product_rate` (the mid-span rate
//!    change included: rates are always published before the usage they
//!    price), then per user its `user_profile`, the group joins and the
//!    assignments that happened before the span.
//! 2. The **stream**, day by day: events are ordered by their publish time,
//!    which is `occurred_at` except for late authorizations (published at the
//!    time of a later authorization of the same user, so after it) and late
//!    assignments (published a few minutes of event time after the first
//!    authorization they explain). A user's authorizations therefore come in
//!    `occurred_at` order but for the deliberate late ones. Mid-span
//!    assignments, group changes, the team merge and the poison are
//!    interleaved at their time.
//! 3. Delayed duplicates are re-published 1 hour to 3 days of event time
//!    later (those past `end` at the very end); immediate duplicates follow
//!    their original. Three days keeps a duplicated Flex event inside the
//!    windows a streaming consumer retains (it re-judges duplicates before
//!    deduplicating them), and late authorizations are only a few events
//!    late for the same reason.
//!
//! # Memory
//! Only the plan (a few holdings per user) and about one day of pending
//! events (compact structs, serialised when emitted) are held: 50k users and
//! 10M events fit in a few hundred MB.
//!
//! # Layout
//! - this module: the [`Scenario`] (plan once, stream the messages as often
//!   as asked) and its counts;
//! - `config`: [`ScenarioConfig`] and its bounds;
//! - `random`: the seeded RNGs (one per purpose) and the distributions;
//! - `world`: the plan: products and rates, teams, users, the merge;
//! - `users`: one user's plan: teams, products, assignment timelines,
//!   group memberships;
//! - `specials`: the authorizations and poison the world schedules (the
//!   poison corpus, `unresolved_team`, `unknown_rate`);
//! - `events`: compact events waiting to be published, in publish order;
//! - `render`: an event to its Kafka message (JSON per the contract);
//! - `stream`: [`Messages`], the stream in stages (preamble, days, drain),
//!   with the duplicates;
//! - `day`: one day's events: assignment and membership changes, usage,
//!   Flex boundaries, late authorizations, poison.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::Topic;

mod config;
mod day;
mod events;
mod random;
mod render;
mod specials;
mod stream;
mod users;
mod world;

pub use config::{ConfigError, ScenarioConfig};
pub use stream::Messages;

use world::World;

// Durations in microseconds, the generator's unit of time.
const SEC: i64 = 1_000_000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

/// Microseconds since the epoch to a UTC instant.
pub(crate) fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// A generated scenario: the plan, and the messages it publishes
/// ([`Scenario::messages`], generated lazily and identically each time).
#[derive(Debug, Clone)]
pub struct Scenario {
    world: Arc<World>,
}

/// Message counts of a scenario (from a generation pass without rendering).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScenarioCounts {
    pub messages: u64,
    pub by_topic: BTreeMap<Topic, u64>,
    pub duplicates: u64,
    pub poison: u64,
    pub late_authorizations: u64,
    pub late_assignments: u64,
}

impl Scenario {
    /// Plans the scenario (teams, users, holdings, rates). Deterministic
    /// from `config.seed`.
    pub fn generate(config: &ScenarioConfig) -> Result<Scenario, ConfigError> {
        config.validate()?;
        Ok(Scenario {
            world: Arc::new(World::build(config)),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ScenarioConfig {
        &self.world.cfg
    }

    /// The span: `[end - days, end]`.
    pub fn span(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        (from_micros(self.world.start), from_micros(self.world.end))
    }

    /// Every message in publish order (a fresh, identical stream each call).
    pub fn messages(&self) -> Messages {
        Messages::new(self.world.clone(), true)
    }

    /// Counts the messages without rendering them (a cheaper pass).
    pub fn count(&self) -> ScenarioCounts {
        let mut c = ScenarioCounts::default();
        for m in Messages::new(self.world.clone(), false) {
            c.messages += 1;
            *c.by_topic.entry(m.topic).or_default() += 1;
            c.duplicates += u64::from(m.meta.duplicate);
            c.poison += u64::from(m.expected_reason.is_some());
            c.late_authorizations += u64::from(m.meta.late && !m.meta.duplicate);
            c.late_assignments += u64::from(m.meta.late_assignment && !m.meta.duplicate);
        }
        c
    }

    /// The team ids, in index order.
    pub fn team_ids(&self) -> Vec<String> {
        self.world.teams.iter().map(|t| t.id.clone()).collect()
    }

    /// The user id of user index `i`.
    pub fn user_id(&self, i: usize) -> String {
        self.world.user_id(i as u32)
    }

    /// The product codes of the pool (those with rates).
    pub fn products(&self) -> Vec<&'static str> {
        self.world.products[..self.world.pool]
            .iter()
            .map(|p| p.def.code)
            .collect()
    }

    /// The merge planned (`from`, `into`), if the scenario has two teams or more.
    pub fn merge(&self) -> Option<(String, String)> {
        self.world.merge.map(|(f, i, _)| {
            (
                self.world.teams[f as usize].id.clone(),
                self.world.teams[i as usize].id.clone(),
            )
        })
    }
}
