//! What to generate ([`ScenarioConfig`]) and the bounds it must keep.

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use serde::Serialize;

use crate::names;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ScenarioConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Number of users.
    pub users: usize,
    /// Number of teams.
    pub teams: usize,
    /// Number of products, the first N of [`names::PRODUCTS`].
    pub products: usize,
    /// Event-time span, in days, ending at `end`.
    pub days: u32,
    /// End of the span. Must not be in the future of the pipeline's clock.
    pub end: DateTime<Utc>,
    /// Share of users on Flex (the others hold seats).
    pub flex_share: f64,
    /// Mean authorizations per active user-day.
    pub events_per_user_day: f64,
    /// Share of valid events re-published as exact duplicates.
    pub duplicate_share: f64,
    /// Share of authorizations published after later ones of the same user.
    pub late_share: f64,
    /// Share of poison messages (per authorization). Above 0 the scenario
    /// also has the full poison corpus, hostile strings, `unresolved_team`
    /// and `unknown_rate` cases.
    pub poison_share: f64,
}

impl Default for ScenarioConfig {
    fn default() -> Self {
        let now = Utc::now();
        ScenarioConfig {
            seed: 42,
            users: 200,
            teams: 4,
            products: 6,
            days: 90,
            end: now.with_nanosecond(0).unwrap_or(now),
            flex_share: 0.3,
            events_per_user_day: 4.0,
            duplicate_share: 0.01,
            late_share: 0.01,
            poison_share: 0.001,
        }
    }
}

/// A refused [`ScenarioConfig`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid scenario config: {field}: {detail}")]
pub struct ConfigError {
    pub field: &'static str,
    pub detail: String,
}

fn check(ok: bool, field: &'static str, detail: impl Into<String>) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError {
            field,
            detail: detail.into(),
        })
    }
}

impl ScenarioConfig {
    /// Checks the bounds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check(
            self.users >= 1 && self.users <= 10_000_000,
            "users",
            "1 to 10000000",
        )?;
        check(
            self.teams >= 1 && self.teams <= 10_000,
            "teams",
            "1 to 10000",
        )?;
        check(
            self.products >= 1 && self.products <= names::PRODUCTS.len(),
            "products",
            format!("1 to {}", names::PRODUCTS.len()),
        )?;
        check(self.days >= 1 && self.days <= 3_650, "days", "1 to 3650")?;
        for (field, v) in [
            ("flex_share", self.flex_share),
            ("duplicate_share", self.duplicate_share),
            ("late_share", self.late_share),
            ("poison_share", self.poison_share),
        ] {
            check((0.0..=1.0).contains(&v), field, "a share between 0 and 1")?;
        }
        check(
            self.events_per_user_day.is_finite()
                && (0.0..=1_000.0).contains(&self.events_per_user_day),
            "events_per_user_day",
            "0 to 1000",
        )?;
        let min = ymd(2001, 1, 1);
        let max = ymd(2150, 1, 1);
        check(
            self.start() >= min && self.end <= max,
            "end",
            "the span must lie between 2001-01-01 and 2150-01-01",
        )?;
        Ok(())
    }

    /// Start of the span: `end - days`.
    pub fn start(&self) -> DateTime<Utc> {
        self.end - TimeDelta::days(i64::from(self.days))
    }
}

fn ymd(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    chrono::NaiveDate::from_ymd_opt(y, m, d)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}
