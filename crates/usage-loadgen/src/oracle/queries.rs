//! The oracle's questions about one row or one team: days used, last
//! accessed, tokens, windows, the assignment in force, the resolved team,
//! status, groups, PII visibility; each as stamped or with merged teams.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};

use super::days::{date_of_day, day_of_micros, Day};
use super::{CurrentAssignment, DateRange, ExpectedWindow, Oracle, RowKey, Status, Totals};
use crate::scenario::from_micros;
use crate::{Access, Reason};

impl Oracle {
    /// Totals over the scenario.
    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    /// Expected dead letters by reason (poison and ingest reasons).
    pub fn expected_dead_letters(&self) -> BTreeMap<Reason, u64> {
        self.dead_letters.clone()
    }

    /// The team whose reports include `team`'s history (follows merges).
    pub fn current_team(&self, team: &str) -> String {
        let mut t = team.to_owned();
        for _ in 0..=self.merges.len() {
            match self.merges.get(&t) {
                Some(into) => t = into.clone(),
                None => break,
            }
        }
        t
    }

    /// Accepted merges (from, into).
    pub fn merges(&self) -> Vec<(String, String)> {
        self.merges
            .iter()
            .map(|(f, i)| (f.clone(), i.clone()))
            .collect()
    }

    /// Every team id seen (directory, assignments, authorizations), sorted.
    pub fn team_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.teams.names.clone();
        ids.sort();
        ids
    }

    /// Teams whose current team is `team` (itself included), sorted.
    pub(super) fn members(&self, team: &str) -> Vec<u32> {
        let mut m: Vec<u32> = (0..self.teams.names.len() as u32)
            .filter(|&t| self.current_team(self.teams.name(t)) == team)
            .collect();
        m.sort_by(|a, b| self.teams.name(*a).cmp(self.teams.name(*b)));
        m
    }

    pub(super) fn ids(&self, team: &str, user: &str, product: &str) -> Option<(u32, u32, u32)> {
        Some((
            self.teams.get(team)?,
            self.users.get(user)?,
            self.products.get(product)?,
        ))
    }

    pub(super) fn days_of(
        &self,
        teams: &[u32],
        user: u32,
        product: u32,
        access: Option<Access>,
    ) -> BTreeSet<Day> {
        let mut days = BTreeSet::new();
        for &team in teams {
            for a in [Access::Seat, Access::Flex] {
                if access.is_some_and(|x| x != a) {
                    continue;
                }
                if let Some(d) = self.usage.get(&RowKey {
                    team,
                    user,
                    product,
                    access: a,
                }) {
                    days.extend(d.iter().copied());
                }
            }
        }
        days
    }

    fn team_list(&self, team: &str, merged: bool) -> Vec<u32> {
        if merged {
            self.members(team)
        } else {
            self.teams.get(team).into_iter().collect()
        }
    }

    fn days_used_in(
        &self,
        team: &str,
        user: &str,
        product: &str,
        range: DateRange,
        merged: bool,
    ) -> u32 {
        let (Some(u), Some(p)) = (self.users.get(user), self.products.get(product)) else {
            return 0;
        };
        let teams = self.team_list(team, merged);
        self.days_of(&teams, u, p, None)
            .into_iter()
            .filter(|d| range.contains_day(*d))
            .count() as u32
    }

    /// Distinct UTC dates in `[from, to]` with counted usage of `product` by
    /// `user` stamped `team` (seat and Flex).
    pub fn days_used(
        &self,
        team: &str,
        user: &str,
        product: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> u32 {
        self.days_used_in(team, user, product, DateRange::new(from, to), false)
    }

    /// [`Oracle::days_used`] of the current team `team`, merged teams included.
    pub fn days_used_merged(
        &self,
        team: &str,
        user: &str,
        product: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> u32 {
        self.days_used_in(team, user, product, DateRange::new(from, to), true)
    }

    /// The usage dates of a row (as stamped), sorted.
    pub fn usage_dates(
        &self,
        team: &str,
        user: &str,
        product: &str,
        access: Access,
    ) -> Vec<NaiveDate> {
        self.ids(team, user, product)
            .and_then(|(t, u, p)| {
                self.usage.get(&RowKey {
                    team: t,
                    user: u,
                    product: p,
                    access,
                })
            })
            .map(|d| d.iter().map(|&x| date_of_day(x)).collect())
            .unwrap_or_default()
    }

    fn last_accessed_in(
        &self,
        team: &str,
        user: &str,
        product: &str,
        merged: bool,
    ) -> Option<NaiveDate> {
        let (u, p) = (self.users.get(user)?, self.products.get(product)?);
        let teams = self.team_list(team, merged);
        self.days_of(&teams, u, p, None)
            .last()
            .map(|&d| date_of_day(d))
    }

    /// The most recent UTC date of counted usage (not cut by any range).
    pub fn last_accessed(&self, team: &str, user: &str, product: &str) -> Option<NaiveDate> {
        self.last_accessed_in(team, user, product, false)
    }

    /// [`Oracle::last_accessed`], merged teams included.
    pub fn last_accessed_merged(&self, team: &str, user: &str, product: &str) -> Option<NaiveDate> {
        self.last_accessed_in(team, user, product, true)
    }

    fn tokens_in(
        &self,
        team: &str,
        user: &str,
        product: &str,
        range: DateRange,
        merged: bool,
    ) -> u64 {
        let (Some(u), Some(p)) = (self.users.get(user), self.products.get(product)) else {
            return 0;
        };
        let teams = self.team_list(team, merged);
        self.windows
            .get(&(u, p))
            .map(|ws| {
                ws.iter()
                    .filter(|w| teams.contains(&w.team))
                    .filter(|w| day_of_micros(w.start).is_some_and(|d| range.contains_day(d)))
                    .map(|w| w.milli)
                    .sum()
            })
            .unwrap_or(0)
    }

    /// Tokens (thousandths) of the windows opened in `team` whose start date
    /// is in `[from, to]`.
    pub fn tokens(
        &self,
        team: &str,
        user: &str,
        product: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> u64 {
        self.tokens_in(team, user, product, DateRange::new(from, to), false)
    }

    /// [`Oracle::tokens`], merged teams included.
    pub fn tokens_merged(
        &self,
        team: &str,
        user: &str,
        product: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> u64 {
        self.tokens_in(team, user, product, DateRange::new(from, to), true)
    }

    /// Every charged window of (user, product), by start.
    pub fn windows(&self, user: &str, product: &str) -> Vec<ExpectedWindow> {
        let (Some(u), Some(p)) = (self.users.get(user), self.products.get(product)) else {
            return Vec::new();
        };
        self.windows
            .get(&(u, p))
            .map(|ws| {
                ws.iter()
                    .map(|w| ExpectedWindow {
                        start: from_micros(w.start),
                        tokens_milli: w.milli,
                        team_id: self.teams.name(w.team).to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The assignment of (team, user, product, access) in force at `now`.
    pub fn current_assignment(
        &self,
        team: &str,
        user: &str,
        product: &str,
        access: Access,
        now: DateTime<Utc>,
    ) -> Option<CurrentAssignment> {
        let (t, u, p) = self.ids(team, user, product)?;
        self.assignment_as_of(
            &RowKey {
                team: t,
                user: u,
                product: p,
                access,
            },
            now.timestamp_micros(),
        )
    }

    /// The team resolved for an authorization without `team_id` at `t`.
    pub fn resolve_team(
        &self,
        user: &str,
        product: &str,
        access: Access,
        t: DateTime<Utc>,
    ) -> Option<String> {
        let (u, p) = (self.users.get(user)?, self.products.get(product)?);
        let teams = self.holders.get(&(u, p, access))?;
        let held: Vec<&u32> = teams
            .iter()
            .filter(|&&team| {
                self.held_at(
                    &RowKey {
                        team,
                        user: u,
                        product: p,
                        access,
                    },
                    t.timestamp_micros(),
                )
            })
            .collect();
        match held.as_slice() {
            [one] => Some(self.teams.name(**one).to_owned()),
            _ => None,
        }
    }

    pub fn status_of(
        held: Option<&CurrentAssignment>,
        access: Access,
        used: bool,
        range: DateRange,
    ) -> Option<Status> {
        match (held, used) {
            (Some(_), true) => Some(Status::Active),
            (None, true) => Some(Status::Unassigned),
            (None, false) => None,
            (Some(a), false) => match access {
                Access::Flex => Some(Status::FlexUnused),
                Access::Seat if a.since.date_naive() <= range.from => Some(Status::Inactive),
                Access::Seat => Some(Status::NotYetActive),
            },
        }
    }

    /// The assignment in force at `now` among `teams` (the earliest since).
    pub(super) fn held_among(
        &self,
        teams: &[u32],
        user: u32,
        product: u32,
        access: Access,
        now: i64,
    ) -> Option<CurrentAssignment> {
        teams
            .iter()
            .filter_map(|&team| {
                self.assignment_as_of(
                    &RowKey {
                        team,
                        user,
                        product,
                        access,
                    },
                    now,
                )
            })
            .min_by_key(|a| a.since)
    }

    #[allow(clippy::too_many_arguments)]
    fn status_in(
        &self,
        team: &str,
        user: &str,
        product: &str,
        access: Access,
        range: DateRange,
        now: DateTime<Utc>,
        merged: bool,
    ) -> Option<Status> {
        let (u, p) = (self.users.get(user)?, self.products.get(product)?);
        let teams = self.team_list(team, merged);
        let held = self.held_among(&teams, u, p, access, now.timestamp_micros());
        let used = self
            .days_of(&teams, u, p, Some(access))
            .iter()
            .any(|d| range.contains_day(*d));
        Self::status_of(held.as_ref(), access, used, range)
    }

    /// The status of (team as stamped, user, product, access) over `[from,
    /// to]` as of `now`; `None` when neither assigned now nor used.
    #[allow(clippy::too_many_arguments)]
    pub fn status(
        &self,
        team: &str,
        user: &str,
        product: &str,
        access: Access,
        from: NaiveDate,
        to: NaiveDate,
        now: DateTime<Utc>,
    ) -> Option<Status> {
        self.status_in(
            team,
            user,
            product,
            access,
            DateRange::new(from, to),
            now,
            false,
        )
    }

    /// [`Oracle::status`] of the current team `team`, merged teams included
    /// (assigned now in any of them; the earliest such assignment's since).
    #[allow(clippy::too_many_arguments)]
    pub fn status_merged(
        &self,
        team: &str,
        user: &str,
        product: &str,
        access: Access,
        from: NaiveDate,
        to: NaiveDate,
        now: DateTime<Utc>,
    ) -> Option<Status> {
        self.status_in(
            team,
            user,
            product,
            access,
            DateRange::new(from, to),
            now,
            true,
        )
    }

    /// Current group memberships of `user` in `team` (group ids, sorted).
    pub fn groups(&self, team: &str, user: &str) -> Vec<String> {
        self.memberships
            .iter()
            .filter(|((t, u, _), m)| t == team && u == user && m.value)
            .map(|((_, _, g), _)| g.clone())
            .collect()
    }

    /// Whether the team's PII is visible (latest `team` event; default off).
    pub fn pii_visible(&self, team: &str) -> bool {
        self.team_info.get(team).is_some_and(|t| t.value.1)
    }
}
