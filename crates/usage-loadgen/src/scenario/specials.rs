//! What the world schedules beside the usage when poison is on: the whole
//! poison corpus spread over the span, and valid authorizations the ingest
//! must dead-letter (`unresolved_team`: a product nobody holds, a use before
//! its assignment; `unknown_rate`: Flex use of a product without a rate).

use std::collections::BTreeMap;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::events::{Auth, TeamField};
use super::world::{day_of, World};
use super::{DAY, HOUR, MIN};
use crate::poison::PoisonKind;
use crate::{Access, Reason};

/// An authorization scheduled by the world (poison-related cases).
#[derive(Debug, Clone, Copy)]
pub(super) enum Special {
    Poison(PoisonKind, u32),
    Auth(Auth),
}

impl World {
    /// Whether user `u` holds (product, access) in any team at `t`.
    fn holds_any(&self, u: usize, product: u16, access: Access, t: i64) -> bool {
        self.users[u]
            .holdings
            .iter()
            .any(|h| h.product == product && h.access == access && h.held_at(t))
    }

    pub(super) fn plan_specials(&mut self, wrng: &mut ChaCha8Rng) {
        let n_days = (self.last_day - self.first_day + 1).max(1);
        let users = self.users.len();
        let add = |specials: &mut BTreeMap<i64, Vec<(i64, Special)>>, at: i64, s: Special| {
            if at >= self.start && at <= self.end {
                specials.entry(day_of(at)).or_default().push((at, s));
            }
        };
        let mut specials = BTreeMap::new();
        // The whole corpus, spread over the span.
        let kinds = PoisonKind::ALL.len() as i64;
        for (i, kind) in PoisonKind::ALL.iter().enumerate() {
            let at = self.start + (self.end - self.start) * (i as i64 + 1) / (kinds + 1);
            let user = wrng.random_range(0..users) as u32;
            add(&mut specials, at, Special::Poison(*kind, user));
        }
        // unresolved_team: a product nobody holds, no team_id.
        if let Some(product) = self.unheld {
            for k in 1..=3i64 {
                let day = self.first_day + n_days * k / 4;
                let at = day * DAY + 11 * HOUR + k * MIN;
                let user = (k as usize - 1) % users;
                add(
                    &mut specials,
                    at,
                    Special::Auth(Auth::special(
                        user as u32,
                        product,
                        Access::Seat,
                        TeamField::Absent,
                        Reason::UnresolvedTeam,
                    )),
                );
            }
        }
        // unresolved_team: a product used a day before its assignment.
        'find: for (u, plan) in self.users.iter().enumerate() {
            for h in &plan.holdings {
                let first = h.segments[0].start;
                let at = first - DAY;
                if first > self.start + 2 * DAY
                    && at > self.start
                    && !self.holds_any(u, h.product, h.access, at)
                    && h.access == Access::Seat
                {
                    add(
                        &mut specials,
                        at,
                        Special::Auth(Auth::special(
                            u as u32,
                            h.product,
                            h.access,
                            TeamField::Absent,
                            Reason::UnresolvedTeam,
                        )),
                    );
                    break 'find;
                }
            }
        }
        // unknown_rate: Flex use of a product without rate, days apart.
        if let Some(product) = self.no_rate {
            let user = self
                .users
                .iter()
                .position(|p| p.holdings.iter().any(|h| h.access == Access::Flex))
                .unwrap_or(0);
            let team = self.users[user].primary;
            let mut last_day = i64::MIN;
            for k in 1..=3i64 {
                let day = self.first_day + n_days * k / 4;
                if day < last_day + 2 {
                    continue;
                }
                last_day = day;
                let at = day * DAY + 10 * HOUR + 30 * MIN;
                add(
                    &mut specials,
                    at,
                    Special::Auth(Auth::special(
                        user as u32,
                        product,
                        Access::Flex,
                        TeamField::Team(team),
                        Reason::UnknownRate,
                    )),
                );
            }
        }
        for list in specials.values_mut() {
            list.sort_by_key(|(at, _)| *at);
        }
        self.specials = specials;
    }
}
