//! The world, planned once from the seed: products and their rates (one
//! changing mid-span, one in the future), teams, every user's plan, the team
//! merge, and the specials; and the ids of its entities.

use std::collections::BTreeMap;

use super::random::{mix, rng, splitmix, PURPOSE_IDS, PURPOSE_WORLD};
use super::specials::Special;
use super::{ScenarioConfig, DAY, HOUR};
use crate::names::{self, ProductDef};
use crate::{Access, Via};

#[derive(Debug, Clone, Copy)]
pub(super) struct RatePlan {
    pub(super) occurred: i64,
    pub(super) effective: i64,
    pub(super) milli: u64,
}

#[derive(Debug, Clone)]
pub(super) struct Product {
    pub(super) def: ProductDef,
    pub(super) rates: Vec<RatePlan>,
}

#[derive(Debug, Clone)]
pub(super) struct TeamPlan {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) pii_visible: bool,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Segment {
    pub(super) start: i64,
    pub(super) via: Via,
    pub(super) group: Option<u8>,
    /// A re-assignment while assigned (e.g. direct, then via a group).
    pub(super) reassign: Option<(i64, Via, Option<u8>)>,
    pub(super) end: Option<i64>,
}

#[derive(Debug, Clone)]
pub(super) struct Holding {
    pub(super) team: u16,
    pub(super) product: u16,
    pub(super) access: Access,
    pub(super) used: bool,
    /// The assignment of the first segment is published late (after the
    /// first authorization it explains).
    pub(super) late_assign: bool,
    pub(super) segments: Vec<Segment>,
}

impl Holding {
    pub(super) fn held_at(&self, t: i64) -> bool {
        self.segments
            .iter()
            .any(|s| s.start <= t && s.end.is_none_or(|e| t < e))
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct MembershipPlan {
    pub(super) team: u16,
    pub(super) group: u8,
    pub(super) join: i64,
    pub(super) leave: Option<i64>,
}

#[derive(Debug, Clone)]
pub(super) struct UserPlan {
    pub(super) primary: u16,
    pub(super) activity: f64,
    pub(super) first_name: u8,
    pub(super) last_name: u8,
    pub(super) avatar: bool,
    pub(super) machines: u8,
    pub(super) version_bias: u8,
    pub(super) holdings: Vec<Holding>,
    pub(super) memberships: Vec<MembershipPlan>,
}

#[derive(Debug)]
pub(super) struct World {
    pub(super) cfg: ScenarioConfig,
    pub(super) start: i64,
    pub(super) end: i64,
    pub(super) first_day: i64,
    pub(super) last_day: i64,
    pub(super) id_salt: u64,
    pub(super) products: Vec<Product>,
    pub(super) pool: usize,
    pub(super) no_rate: Option<u16>,
    pub(super) unheld: Option<u16>,
    pub(super) teams: Vec<TeamPlan>,
    pub(super) users: Vec<UserPlan>,
    pub(super) merge: Option<(u16, u16, i64)>,
    pub(super) specials: BTreeMap<i64, Vec<(i64, Special)>>,
}

pub(super) fn day_of(us: i64) -> i64 {
    us.div_euclid(DAY)
}

impl World {
    pub(super) fn build(cfg: &ScenarioConfig) -> World {
        let start = cfg.start().timestamp_micros();
        let end = cfg.end.timestamp_micros();
        let span = end - start;
        let mut wrng = rng(&[cfg.seed, PURPOSE_WORLD]);
        let poison = cfg.poison_share > 0.0;

        // Products and rates: every pool product has a rate from long before
        // the span; the first changes mid-span (at 12:00 UTC), the third
        // changes at two thirds (midnight), the second has a future change.
        let mut products: Vec<Product> = names::PRODUCTS[..cfg.products]
            .iter()
            .map(|def| Product {
                def: *def,
                rates: vec![RatePlan {
                    occurred: start - 400 * DAY,
                    effective: start - 365 * DAY,
                    milli: def.rate_milli,
                }],
            })
            .collect();
        let mid = day_of(start + span / 2) * DAY + 12 * HOUR;
        if let Some(p) = products.get_mut(0) {
            p.rates.push(RatePlan {
                occurred: start - 30 * DAY,
                effective: mid.clamp(start, end),
                milli: p.def.rate_milli + 1_000,
            });
        }
        if let Some(p) = products.get_mut(1) {
            p.rates.push(RatePlan {
                occurred: start - 20 * DAY,
                effective: end + 30 * DAY,
                milli: p.def.rate_milli + 1_000,
            });
        }
        if let Some(p) = products.get_mut(2) {
            p.rates.push(RatePlan {
                occurred: start - 10 * DAY,
                effective: (day_of(start + span * 2 / 3) * DAY).clamp(start, end),
                milli: p.def.rate_milli.saturating_sub(500),
            });
        }
        let pool = products.len();
        let (no_rate, unheld) = if poison {
            products.push(Product {
                def: names::NO_RATE_PRODUCT,
                rates: Vec::new(),
            });
            products.push(Product {
                def: names::UNHELD_PRODUCT,
                rates: Vec::new(),
            });
            (Some(pool as u16), Some(pool as u16 + 1))
        } else {
            (None, None)
        };

        let teams: Vec<TeamPlan> = (0..cfg.teams)
            .map(|i| {
                let (id, name) = match names::TEAMS.get(i) {
                    Some((slug, name)) => (format!("team-{slug}"), (*name).to_owned()),
                    None => (format!("team-{:04}", i + 1), format!("Team {}", i + 1)),
                };
                let name = if poison && i == 1 {
                    names::HOSTILE_NAMES[0].to_owned()
                } else {
                    name
                };
                TeamPlan {
                    id,
                    name,
                    pii_visible: i % 2 == 0,
                }
            })
            .collect();

        let team_weights: Vec<f64> = (0..cfg.teams)
            .map(|i| 1.0 / (1.0 + i as f64).sqrt())
            .collect();
        let mut world = World {
            cfg: cfg.clone(),
            start,
            end,
            first_day: day_of(start),
            last_day: day_of(end),
            id_salt: mix(&[cfg.seed, PURPOSE_IDS]),
            products,
            pool,
            no_rate,
            unheld,
            teams,
            users: Vec::with_capacity(cfg.users),
            merge: None,
            specials: BTreeMap::new(),
        };
        for u in 0..cfg.users {
            let plan = world.plan_user(u as u32, &team_weights);
            world.users.push(plan);
        }
        if cfg.teams >= 2 {
            let at = (end - 2 * DAY - 7 * HOUR).max(start + span / 2);
            world.merge = Some((cfg.teams as u16 - 1, 0, at));
        }
        if poison {
            world.plan_specials(&mut wrng);
        }
        world
    }

    pub(super) fn user_id(&self, u: u32) -> String {
        format!("u-{:06}", u + 1)
    }

    pub(super) fn group_id(&self, team: u16, g: u8) -> String {
        let slug = self.teams[team as usize].id.trim_start_matches("team-");
        format!("grp-{slug}-{}", names::GROUPS[g as usize].0)
    }

    pub(super) fn event_id(&self, id: u64) -> String {
        let s = self.id_salt;
        // splitmix is a bijection of u64: distinct ids, distinct strings.
        let x = splitmix(id ^ s);
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            s >> 32,
            (s >> 16) & 0xffff,
            x >> 48,
            (x >> 32) & 0xffff,
            x & 0xffff_ffff_ffff
        )
    }
}
