//! One day of the stream: the world's events of the day (the merge, the
//! specials), then per user, from the (user, day) RNG: assignment and
//! membership changes, late-published assignments, usage (weekday activity,
//! Poisson counts, office hours), Flex 24-hour boundaries, late
//! authorizations, hostile strings, offsets and poison.

use rand::Rng;

use super::events::{Auth, Body, OnlineField, TeamField};
use super::random::{poisson, rng, time_of_day, PURPOSE_DAY};
use super::render::OFFSETS;
use super::specials::Special;
use super::stream::Messages;
use super::world::World;
use super::{DAY, MIN};
use crate::names;
use crate::poison::PoisonKind;
use crate::Access;

impl Messages {
    pub(super) fn generate_day(&mut self, world: &World, day: i64) {
        let day_start = day * DAY;
        let day_end = day_start + DAY;
        let lo = day_start.max(world.start);
        let hi = day_end.min(world.end + 1);
        // World events of the day.
        if let Some((from, into, at)) = world.merge {
            if (lo..hi).contains(&at) {
                let ev = self.ev(at, Body::Merge { from, into });
                let p = self.pending(at, false, ev);
                self.push(p);
            }
        }
        if let Some(list) = world.specials.get(&day) {
            for &(at, special) in list {
                let body = match special {
                    Special::Poison(kind, user) => Body::Poison { kind, user },
                    Special::Auth(a) => Body::Auth(a),
                };
                let ev = self.ev(at, body);
                let p = self.pending(at, false, ev);
                self.push(p);
            }
        }
        for u in 0..world.users.len() as u32 {
            self.generate_user_day(world, u, day, lo, hi);
        }
    }

    fn generate_user_day(&mut self, world: &World, u: u32, day: i64, lo: i64, hi: i64) {
        let cfg = &world.cfg;
        let plan = &world.users[u as usize];
        let mut r = rng(&[cfg.seed, PURPOSE_DAY, u64::from(u), day as u64]);
        let mut forced: Vec<(i64, usize)> = Vec::new();

        // Assignment and membership changes of the day.
        for (at, body, late_assign) in Self::assignment_events(world, u) {
            if !(lo..hi).contains(&at) {
                continue;
            }
            let ev = self.ev(at, body);
            let mut p = self.pending(at, false, ev);
            if late_assign {
                // Used 5-30 minutes after the assignment, which is published
                // 1-30 minutes (event time) after that first use.
                let use_at = at + r.random_range(5 * MIN..30 * MIN);
                let holding = plan.holdings.iter().position(|h| match body {
                    Body::Assignment {
                        team,
                        product,
                        access,
                        ..
                    } => h.team == team && h.product == product && h.access == access,
                    _ => false,
                });
                if let Some(h) = holding {
                    if use_at <= world.end && plan.holdings[h].held_at(use_at) {
                        forced.push((use_at, h));
                        p.pt = use_at + r.random_range(MIN..30 * MIN);
                        p.late_assignment = true;
                    }
                }
            }
            self.push(p);
        }
        for m in &plan.memberships {
            for (at, member) in [(m.join, true), (m.leave.unwrap_or(i64::MIN), false)] {
                if (lo..hi).contains(&at) {
                    let ev = self.ev(
                        at,
                        Body::Membership {
                            team: m.team,
                            group: m.group,
                            user: u,
                            member,
                        },
                    );
                    let p = self.pending(at, false, ev);
                    self.push(p);
                }
            }
        }

        // Usage.
        let weekday = (day + 3).rem_euclid(7); // 1970-01-01 was a Thursday; 0 = Monday
        let p_active = if weekday >= 5 {
            plan.activity * 0.12
        } else {
            plan.activity
        };
        let used: Vec<usize> = (0..plan.holdings.len())
            .filter(|&i| plan.holdings[i].used)
            .collect();
        let mut events: Vec<(i64, usize)> = forced;
        if !used.is_empty() && r.random_bool(p_active) {
            let mean = cfg.events_per_user_day;
            let n = if mean >= 1.0 {
                1 + poisson(&mut r, mean - 1.0)
            } else {
                poisson(&mut r, mean)
            };
            for _ in 0..n {
                let t = day * DAY + time_of_day(&mut r);
                let h = used[r.random_range(0..used.len())];
                if t >= lo && t < hi && plan.holdings[h].held_at(t) {
                    events.push((t, h));
                }
            }
        }
        events.sort_unstable();
        // Flex boundaries: sometimes the same product again exactly 24h
        // (and 24h minus 1 ms) after the first use of the day.
        let mut extra: Vec<(i64, usize)> = Vec::new();
        if let Some(&(t0, h)) = events
            .iter()
            .find(|(_, h)| plan.holdings[*h].access == Access::Flex)
        {
            if r.random_bool(0.04) {
                for t in [t0 + DAY - 1_000, t0 + DAY] {
                    if t <= world.end && plan.holdings[h].held_at(t) {
                        extra.push((t, h));
                    }
                }
            }
        }
        // Late: published at the time of one of the next three events.
        let n = events.len();
        let mut pts: Vec<(i64, bool)> = events.iter().map(|(t, _)| (*t, false)).collect();
        let mut anchor = vec![false; n];
        for i in 0..n.saturating_sub(1) {
            if !anchor[i] && cfg.late_share > 0.0 && r.random_bool(cfg.late_share) {
                let j = (i + 1 + r.random_range(0..3usize)).min(n - 1);
                anchor[j] = true;
                pts[i] = (events[j].0, true);
            }
        }
        let all = events
            .iter()
            .zip(pts)
            .map(|(e, pt)| (*e, pt))
            .chain(extra.into_iter().map(|e| (e, (e.0, false))));
        let all: Vec<((i64, usize), (i64, bool))> = all.collect();
        for ((t, h), (pt, late)) in all {
            let holding = &plan.holdings[h];
            let x: f64 = r.random();
            let team = if x < 0.08 {
                TeamField::Team(holding.team)
            } else if x < 0.083 && cfg.teams >= 2 {
                TeamField::Team(((holding.team as usize + 1) % cfg.teams) as u16)
            } else if x < 0.10 {
                TeamField::Null
            } else {
                TeamField::Absent
            };
            let y: f64 = r.random();
            let online = if y < 0.02 {
                OnlineField::False
            } else if y < 0.30 {
                OnlineField::True
            } else if y < 0.33 {
                OnlineField::Null
            } else {
                OnlineField::Absent
            };
            let z: f64 = r.random();
            let version = if z < 0.03 {
                255
            } else if z < 0.08 {
                254
            } else {
                plan.version_bias + r.random_range(0..3u8)
            };
            let machine = if r.random_bool(0.2) {
                0
            } else if r.random_bool(0.02) {
                255
            } else {
                r.random_range(1..=plan.machines)
            };
            let hostile = if cfg.poison_share > 0.0 && r.random_bool(cfg.poison_share) {
                r.random_range(1..=names::HOSTILE.len() as u8 * 2)
            } else {
                0
            };
            let offset = if r.random_bool(0.08) {
                r.random_range(1..=OFFSETS.len() as u8)
            } else {
                0
            };
            let auth = Auth {
                user: u,
                product: holding.product,
                access: holding.access,
                team,
                online,
                version,
                machine,
                hostile,
                offset,
                intended: None,
            };
            let ev = self.ev(t, Body::Auth(auth));
            let p = self.pending(pt, late, ev);
            self.push(p);
            if cfg.poison_share > 0.0 && r.random_bool(cfg.poison_share) {
                let kind = PoisonKind::ALL[self.poison_cursor % PoisonKind::ALL.len()];
                self.poison_cursor += 1;
                let ev = self.ev(t + 1_000, Body::Poison { kind, user: u });
                let p = self.pending(t + 1_000, false, ev);
                self.push(p);
            }
        }
    }
}
