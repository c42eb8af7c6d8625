//! The overviews: one team's summary (merged teams included) or all
//! teams', the standard ranges, and every expected figure at once
//! ([`ExpectedRollups`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use super::days::{date_of_day, day_of_micros, Day};
use super::{
    DateRange, ExpectedRange, ExpectedRollups, ExpectedRow, ExpectedTeam, Oracle, RowKey, Status,
    TeamSummary, Window,
};
use crate::Access;

impl Oracle {
    /// The summary of one current team (merged teams included), or of all
    /// teams (`team: None`; no inactive count), over `range`, as of `now`.
    pub fn team_summary(
        &self,
        team: Option<&str>,
        range: DateRange,
        now: DateTime<Utc>,
    ) -> TeamSummary {
        let now_us = now.timestamp_micros();
        let teams: Vec<u32> = match team {
            Some(t) => self.members(t),
            None => (0..self.teams.names.len() as u32).collect(),
        };
        // Rows: (current team, user, product, access) from usage and assignments.
        let current: HashMap<u32, String> = teams
            .iter()
            .map(|&t| (t, self.current_team(self.teams.name(t))))
            .collect();
        let mut rows: BTreeMap<(String, u32, u32, Access), Vec<u32>> = BTreeMap::new();
        let keys = self.usage.keys().chain(self.assignments.keys());
        for k in keys {
            if let Some(cur) = current.get(&k.team) {
                let members = rows
                    .entry((cur.clone(), k.user, k.product, k.access))
                    .or_default();
                if !members.contains(&k.team) {
                    members.push(k.team);
                }
            }
        }
        let mut s = TeamSummary {
            team_id: team.map(str::to_owned),
            includes: teams
                .iter()
                .map(|&t| self.teams.name(t).to_owned())
                .collect(),
            seats_inactive: team.map(|_| 0),
            ..TeamSummary::default()
        };
        s.includes.sort();
        let mut flex_user_days: BTreeMap<u32, BTreeSet<Day>> = BTreeMap::new();
        for ((_, user, product, access), members) in &rows {
            let held = self.held_among(members, *user, *product, *access, now_us);
            let days: Vec<Day> = self
                .days_of(members, *user, *product, Some(*access))
                .into_iter()
                .filter(|d| range.contains_day(*d))
                .collect();
            let status = Self::status_of(held.as_ref(), *access, !days.is_empty(), range);
            if let Some(st) = status {
                *s.statuses.entry(st).or_default() += 1;
            }
            s.days_used += days.len() as u64;
            match access {
                Access::Seat if held.is_some() => {
                    s.seats_assigned += 1;
                    match status {
                        Some(Status::Active) => s.seats_active += 1,
                        Some(Status::Inactive) => {
                            if let Some(n) = s.seats_inactive.as_mut() {
                                *n += 1;
                            }
                        }
                        Some(Status::NotYetActive) => s.seats_not_yet_active += 1,
                        _ => {}
                    }
                }
                Access::Flex if !days.is_empty() => {
                    s.flex_days_used += days.len() as u64;
                    flex_user_days
                        .entry(*user)
                        .or_default()
                        .extend(days.iter().copied());
                }
                _ => {}
            }
        }
        s.flex_users = flex_user_days.len() as u64;
        s.flex_user_days = flex_user_days.values().map(|d| d.len() as u64).sum();
        for ws in self.windows.values() {
            for w in ws {
                if current.contains_key(&w.team)
                    && day_of_micros(w.start).is_some_and(|d| range.contains_day(d))
                {
                    s.flex_tokens_milli += w.milli;
                }
            }
        }
        s
    }

    /// The summary of every current team (sorted by id) and of all teams.
    pub fn summary(&self, range: DateRange, now: DateTime<Utc>) -> (TeamSummary, Vec<TeamSummary>) {
        let current: BTreeSet<String> = self
            .teams
            .names
            .iter()
            .map(|t| self.current_team(t))
            .collect();
        let teams = current
            .iter()
            .map(|t| self.team_summary(Some(t), range, now))
            .collect();
        (self.team_summary(None, range, now), teams)
    }

    /// The standard ranges of a span ending at `now`: the whole span
    /// (`span`, `days` dates ending today) and the rolling `last_30_days`.
    pub fn standard_ranges(now: DateTime<Utc>, days: u32) -> Vec<(String, DateRange)> {
        let today = now.date_naive();
        let back = |n: i64| today - chrono::TimeDelta::days(n);
        vec![
            (
                "span".to_owned(),
                DateRange::new(back(i64::from(days)), today),
            ),
            ("last_30_days".to_owned(), DateRange::new(back(29), today)),
        ]
    }

    /// Everything expected, as of `now`, for the named ranges. `detail`
    /// adds every row's usage dates.
    pub fn expected_rollups(
        &self,
        now: DateTime<Utc>,
        ranges: &[(String, DateRange)],
        detail: bool,
    ) -> ExpectedRollups {
        let now_us = now.timestamp_micros();
        let mut keys: BTreeSet<(String, String, String, Access)> = BTreeSet::new();
        for k in self.usage.keys().chain(self.assignments.keys()) {
            keys.insert((
                self.teams.name(k.team).to_owned(),
                self.users.name(k.user).to_owned(),
                self.products.name(k.product).to_owned(),
                k.access,
            ));
        }
        let mut rows = Vec::with_capacity(keys.len());
        for (team, user, product, access) in keys {
            let Some((t, u, p)) = self.ids(&team, &user, &product) else {
                continue;
            };
            let key = RowKey {
                team: t,
                user: u,
                product: p,
                access,
            };
            let days = self.usage.get(&key).cloned().unwrap_or_default();
            let windows: Vec<&Window> = match access {
                Access::Flex => self
                    .windows
                    .get(&(u, p))
                    .map(|ws| ws.iter().filter(|w| w.team == t).collect())
                    .unwrap_or_default(),
                Access::Seat => Vec::new(),
            };
            let assignment = self.assignment_as_of(&key, now_us);
            let mut status = BTreeMap::new();
            let mut days_used_in = BTreeMap::new();
            for (name, range) in ranges {
                let used = days.iter().filter(|d| range.contains_day(**d)).count() as u32;
                status.insert(
                    name.clone(),
                    Self::status_of(assignment.as_ref(), access, used > 0, *range),
                );
                days_used_in.insert(name.clone(), used);
            }
            rows.push(ExpectedRow {
                current_team_id: self.current_team(&team),
                team_id: team,
                user_id: user,
                product,
                access,
                days_used: days.len() as u32,
                first_used: days.first().map(|&d| date_of_day(d)),
                last_accessed: days.last().map(|&d| date_of_day(d)),
                tokens_milli: windows.iter().map(|w| w.milli).sum(),
                windows: windows.len() as u32,
                assignment,
                status,
                days_used_in,
                dates: detail.then(|| days.iter().map(|&d| date_of_day(d)).collect()),
            });
        }
        let teams = self
            .team_ids()
            .into_iter()
            .map(|id| ExpectedTeam {
                name: self.team_info.get(&id).map(|t| t.value.0.clone()),
                pii_visible: self.pii_visible(&id),
                current_team_id: self.current_team(&id),
                team_id: id,
            })
            .collect();
        let ranges = ranges
            .iter()
            .map(|(name, range)| {
                let (all_teams, teams) = self.summary(*range, now);
                ExpectedRange {
                    name: name.clone(),
                    range: *range,
                    all_teams,
                    teams,
                }
            })
            .collect();
        ExpectedRollups {
            now,
            scenario: self.scenario.clone(),
            totals: self.totals.clone(),
            dead_letters: self.dead_letters.clone(),
            teams,
            merges: self.merges(),
            ranges,
            rows,
        }
    }
}
