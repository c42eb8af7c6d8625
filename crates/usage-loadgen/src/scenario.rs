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

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, FixedOffset, SecondsFormat, TimeDelta, Timelike, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Serialize, Serializer};
use serde_json::{json, Value};

use crate::names::{self, ProductDef};
use crate::poison::{self, PoisonContext, PoisonKind};
use crate::{Access, Message, Meta, Reason, Topic, Via};

const SEC: i64 = 1_000_000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

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

/// Microseconds since the epoch to a UTC instant.
pub(crate) fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

// ---------------------------------------------------------------------------
// Deterministic randomness

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn mix(parts: &[u64]) -> u64 {
    parts
        .iter()
        .fold(0x5eed_u64, |acc, &p| splitmix(acc ^ splitmix(p)))
}

const PURPOSE_PLAN: u64 = 1;
const PURPOSE_DAY: u64 = 2;
const PURPOSE_PUBLISH: u64 = 3;
const PURPOSE_WORLD: u64 = 4;
const PURPOSE_IDS: u64 = 5;

fn rng(parts: &[u64]) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix(parts))
}

/// Poisson(mean): Knuth below 30, a normal approximation above.
fn poisson(rng: &mut ChaCha8Rng, mean: f64) -> u32 {
    if mean <= 0.0 {
        return 0;
    }
    if mean < 30.0 {
        let limit = (-mean).exp();
        let mut k = 0u32;
        let mut p = 1.0;
        loop {
            p *= rng.random::<f64>();
            if p <= limit {
                return k;
            }
            k += 1;
        }
    }
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    (mean + mean.sqrt() * z).round().max(0.0) as u32
}

/// Index in `0..n` with weight `1 / (i + 1)` (popular first).
fn zipf(rng: &mut ChaCha8Rng, n: usize) -> usize {
    let total: f64 = (0..n).map(|i| 1.0 / (i as f64 + 1.0)).sum();
    let mut x = rng.random::<f64>() * total;
    for i in 0..n {
        x -= 1.0 / (i as f64 + 1.0);
        if x < 0.0 {
            return i;
        }
    }
    n.saturating_sub(1)
}

/// Microseconds into a day: mostly office hours (UTC), some at any hour.
fn time_of_day(rng: &mut ChaCha8Rng) -> i64 {
    const OFFICE: [u32; 12] = [1, 3, 6, 8, 7, 4, 6, 8, 7, 5, 3, 2]; // 07:00 .. 18:59
    let hour = if rng.random_bool(0.85) {
        let total: u32 = OFFICE.iter().sum();
        let mut x = rng.random_range(0..total);
        let mut h = 7;
        for (i, w) in OFFICE.iter().enumerate() {
            if x < *w {
                h = 7 + i as i64;
                break;
            }
            x -= w;
        }
        h
    } else {
        rng.random_range(0..24)
    };
    hour * HOUR + rng.random_range(0..3_600_000) * 1_000
}

// ---------------------------------------------------------------------------
// The world (plan)

#[derive(Debug, Clone, Copy)]
struct RatePlan {
    occurred: i64,
    effective: i64,
    milli: u64,
}

#[derive(Debug, Clone)]
struct Product {
    def: ProductDef,
    rates: Vec<RatePlan>,
}

#[derive(Debug, Clone)]
struct TeamPlan {
    id: String,
    name: String,
    pii_visible: bool,
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    start: i64,
    via: Via,
    group: Option<u8>,
    /// A re-assignment while assigned (e.g. direct, then via a group).
    reassign: Option<(i64, Via, Option<u8>)>,
    end: Option<i64>,
}

#[derive(Debug, Clone)]
struct Holding {
    team: u16,
    product: u16,
    access: Access,
    used: bool,
    /// The assignment of the first segment is published late (after the
    /// first authorization it explains).
    late_assign: bool,
    segments: Vec<Segment>,
}

impl Holding {
    fn held_at(&self, t: i64) -> bool {
        self.segments
            .iter()
            .any(|s| s.start <= t && s.end.is_none_or(|e| t < e))
    }
}

#[derive(Debug, Clone, Copy)]
struct MembershipPlan {
    team: u16,
    group: u8,
    join: i64,
    leave: Option<i64>,
}

#[derive(Debug, Clone)]
struct UserPlan {
    primary: u16,
    activity: f64,
    first_name: u8,
    last_name: u8,
    avatar: bool,
    machines: u8,
    version_bias: u8,
    holdings: Vec<Holding>,
    memberships: Vec<MembershipPlan>,
}

/// An authorization scheduled by the world (poison-related cases).
#[derive(Debug, Clone, Copy)]
enum Special {
    Poison(PoisonKind, u32),
    Auth(Auth),
}

#[derive(Debug)]
struct World {
    cfg: ScenarioConfig,
    start: i64,
    end: i64,
    first_day: i64,
    last_day: i64,
    id_salt: u64,
    products: Vec<Product>,
    pool: usize,
    no_rate: Option<u16>,
    unheld: Option<u16>,
    teams: Vec<TeamPlan>,
    users: Vec<UserPlan>,
    merge: Option<(u16, u16, i64)>,
    specials: BTreeMap<i64, Vec<(i64, Special)>>,
}

fn day_of(us: i64) -> i64 {
    us.div_euclid(DAY)
}

fn random_via(rng: &mut ChaCha8Rng) -> (Via, Option<u8>) {
    let r: f64 = rng.random();
    if r < 0.6 {
        (Via::Direct, None)
    } else if r < 0.85 {
        (
            Via::Group,
            Some(rng.random_range(0..names::GROUPS.len() as u8)),
        )
    } else {
        (Via::Default, None)
    }
}

impl World {
    fn build(cfg: &ScenarioConfig) -> World {
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

    fn plan_user(&self, u: u32, team_weights: &[f64]) -> UserPlan {
        let cfg = &self.cfg;
        let mut r = rng(&[cfg.seed, PURPOSE_PLAN, u64::from(u)]);
        let (start, end) = (self.start, self.end);
        let span = end - start;
        let teams = cfg.teams;
        let primary = if (u as usize) < teams {
            u as usize
        } else {
            let total: f64 = team_weights.iter().sum();
            let mut x = r.random::<f64>() * total;
            let mut t = teams - 1;
            for (i, w) in team_weights.iter().enumerate() {
                if x < *w {
                    t = i;
                    break;
                }
                x -= w;
            }
            t
        };
        let flex = r.random_bool(cfg.flex_share);
        let activity = r.random_range(0.35..0.95);
        let first_name = r.random_range(0..names::FIRST_NAMES.len()) as u8;
        let last_name = r.random_range(0..names::LAST_NAMES.len()) as u8;
        let avatar = r.random_bool(0.5);
        let machines = r.random_range(1..=2u8);
        let version_bias = r.random_range(0..4u8);

        // Products: primary team 1-3, maybe a second team with others.
        let mut chosen: Vec<usize> = Vec::new();
        let n_primary = r.random_range(1..=3usize.min(self.pool));
        while chosen.len() < n_primary {
            let p = zipf(&mut r, self.pool);
            if !chosen.contains(&p) {
                chosen.push(p);
            }
        }
        let mut wanted: Vec<(usize, usize, Access)> = chosen
            .iter()
            .map(|&p| (primary, p, if flex { Access::Flex } else { Access::Seat }))
            .collect();
        let mut secondary = None;
        if teams >= 2 && self.pool > n_primary && r.random_bool(0.12) {
            let mut other = r.random_range(0..teams - 1);
            if other >= primary {
                other += 1;
            }
            secondary = Some(other);
            let n = r.random_range(1..=2usize.min(self.pool - n_primary));
            let mut extra = 0;
            while extra < n {
                let p = zipf(&mut r, self.pool);
                if !chosen.contains(&p) {
                    chosen.push(p);
                    let access = if r.random_bool(cfg.flex_share) {
                        Access::Flex
                    } else {
                        Access::Seat
                    };
                    wanted.push((other, p, access));
                    extra += 1;
                }
            }
        }

        let mut holdings = Vec::new();
        let mut moved = false;
        for (i, &(team, product, access)) in wanted.iter().enumerate() {
            let (via, group) = random_via(&mut r);
            let used_share = match access {
                Access::Seat => 0.88,
                Access::Flex => 0.92,
            };
            let mut used = r.random_bool(used_share);
            let mut late_assign = false;
            let mut segments = Vec::new();
            let x: f64 = r.random();
            let mut move_to = None;
            if x < 0.78 {
                let s = start - r.random_range(1..365) * DAY + time_of_day(&mut r);
                let mut seg = Segment {
                    start: s,
                    via,
                    group,
                    reassign: None,
                    end: None,
                };
                let y: f64 = r.random();
                if y < 0.06 {
                    // Unassigned mid-span, half of them re-assigned later.
                    let off = (span as f64 * r.random_range(0.15..0.75)) as i64;
                    let un = start + off;
                    seg.end = Some(un);
                    segments.push(seg);
                    if r.random_bool(0.5) {
                        let again =
                            un + r.random_range(1..10) * DAY + r.random_range(0..DAY / SEC) * SEC;
                        if again < end - HOUR {
                            let (via, group) = random_via(&mut r);
                            segments.push(Segment {
                                start: again,
                                via,
                                group,
                                reassign: None,
                                end: None,
                            });
                        }
                    }
                } else if y < 0.10 {
                    let off = (span as f64 * r.random_range(0.2..0.8)) as i64;
                    let (v2, g2) = random_via(&mut r);
                    if (v2, g2) != (via, group) {
                        seg.reassign = Some((start + off, v2, g2));
                    }
                    segments.push(seg);
                } else if y < 0.16 && i == 0 && secondary.is_none() && teams >= 2 && !moved {
                    // A move: unassigned here, assigned in another team an
                    // hour later (one team at any instant).
                    let off = (span as f64 * r.random_range(0.3..0.7)) as i64;
                    seg.end = Some(start + off);
                    segments.push(seg);
                    let mut other = r.random_range(0..teams - 1);
                    if other >= team {
                        other += 1;
                    }
                    move_to = Some((other, start + off + HOUR));
                    moved = true;
                } else {
                    segments.push(seg);
                }
            } else if x < 0.90 {
                let s = start + (span as f64 * r.random_range(0.05..0.85)) as i64;
                late_assign = r.random_bool(0.3);
                segments.push(Segment {
                    start: s,
                    via,
                    group,
                    reassign: None,
                    end: None,
                });
            } else {
                // Near the end: not yet active unless used.
                let back = r.random_range(HOUR..(5 * DAY).min(span).max(HOUR + 1));
                segments.push(Segment {
                    start: end - back,
                    via,
                    group,
                    reassign: None,
                    end: None,
                });
                used = r.random_bool(0.5);
            }
            holdings.push(Holding {
                team: team as u16,
                product: product as u16,
                access,
                used,
                late_assign,
                segments,
            });
            if let Some((other, at)) = move_to {
                if at < end {
                    holdings.push(Holding {
                        team: other as u16,
                        product: product as u16,
                        access,
                        used,
                        late_assign: false,
                        segments: vec![Segment {
                            start: at,
                            via: Via::Direct,
                            group: None,
                            reassign: None,
                            end: None,
                        }],
                    });
                }
            }
        }

        // Group memberships: every group an assignment comes through, joined
        // a minute before the first such assignment; plus a random one,
        // sometimes left mid-span.
        let mut memberships: Vec<MembershipPlan> = Vec::new();
        for h in &holdings {
            for seg in &h.segments {
                let groups = [
                    (seg.start, seg.group),
                    (
                        seg.reassign.map_or(0, |x| x.0),
                        seg.reassign.and_then(|x| x.2),
                    ),
                ];
                for (at, g) in groups {
                    let Some(g) = g else { continue };
                    match memberships
                        .iter_mut()
                        .find(|m| m.team == h.team && m.group == g)
                    {
                        Some(m) => m.join = m.join.min(at - MIN),
                        None => memberships.push(MembershipPlan {
                            team: h.team,
                            group: g,
                            join: at - MIN,
                            leave: None,
                        }),
                    }
                }
            }
        }
        if r.random_bool(0.3) {
            let g = r.random_range(0..names::GROUPS.len() as u8);
            if !memberships
                .iter()
                .any(|m| m.team == primary as u16 && m.group == g)
            {
                let leave = if r.random_bool(0.3) {
                    Some(start + (span as f64 * r.random_range(0.2..0.9)) as i64)
                } else {
                    None
                };
                memberships.push(MembershipPlan {
                    team: primary as u16,
                    group: g,
                    join: start - 30 * DAY,
                    leave,
                });
            }
        }

        UserPlan {
            primary: primary as u16,
            activity,
            first_name,
            last_name,
            avatar,
            machines,
            version_bias,
            holdings,
            memberships,
        }
    }

    /// Whether user `u` holds (product, access) in any team at `t`.
    fn holds_any(&self, u: usize, product: u16, access: Access, t: i64) -> bool {
        self.users[u]
            .holdings
            .iter()
            .any(|h| h.product == product && h.access == access && h.held_at(t))
    }

    fn plan_specials(&mut self, wrng: &mut ChaCha8Rng) {
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

    fn user_id(&self, u: u32) -> String {
        format!("u-{:06}", u + 1)
    }

    fn group_id(&self, team: u16, g: u8) -> String {
        let slug = self.teams[team as usize].id.trim_start_matches("team-");
        format!("grp-{slug}-{}", names::GROUPS[g as usize].0)
    }

    fn event_id(&self, id: u64) -> String {
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

// ---------------------------------------------------------------------------
// Events (compact) and their rendering

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TeamField {
    Absent,
    Null,
    Team(u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnlineField {
    Absent,
    Null,
    True,
    False,
}

#[derive(Debug, Clone, Copy)]
struct Auth {
    user: u32,
    product: u16,
    access: Access,
    team: TeamField,
    online: OnlineField,
    version: u8,
    /// 0: absent, 255: null, k: the user's machine k.
    machine: u8,
    /// 0: none; k: `HOSTILE[k-1]`, in `product_version` (odd k) or `machine_id`.
    hostile: u8,
    /// 0: `Z`; k: one of the offsets.
    offset: u8,
    intended: Option<Reason>,
}

impl Auth {
    fn special(user: u32, product: u16, access: Access, team: TeamField, reason: Reason) -> Auth {
        Auth {
            user,
            product,
            access,
            team,
            online: OnlineField::Absent,
            version: 0,
            machine: 0,
            hostile: 0,
            offset: 0,
            intended: Some(reason),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Body {
    Team(u16),
    Rate {
        product: u16,
        idx: u8,
    },
    Profile(u32),
    Membership {
        team: u16,
        group: u8,
        user: u32,
        member: bool,
    },
    Merge {
        from: u16,
        into: u16,
    },
    Assignment {
        assign: bool,
        team: u16,
        user: u32,
        product: u16,
        access: Access,
        via: Via,
        group: Option<u8>,
    },
    Auth(Auth),
    Poison {
        kind: PoisonKind,
        user: u32,
    },
}

#[derive(Debug, Clone, Copy)]
struct Ev {
    id: u64,
    at: i64,
    body: Body,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    pt: i64,
    late: bool,
    seq: u64,
    ev: Ev,
    copy: bool,
    late_assignment: bool,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    /// Reversed: `BinaryHeap` pops the smallest (pt, late, seq).
    fn cmp(&self, other: &Self) -> Ordering {
        (other.pt, other.late, other.seq).cmp(&(self.pt, self.late, self.seq))
    }
}

const OFFSETS: [i32; 5] = [5 * 3600 + 1800, -7 * 3600, 9 * 3600, 3600, -3 * 3600];

fn timestamp(us: i64, offset: u8) -> String {
    let t = from_micros(us);
    match offset {
        0 => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        k => {
            let secs = OFFSETS[(k as usize - 1) % OFFSETS.len()];
            match FixedOffset::east_opt(secs) {
                Some(tz) => t
                    .with_timezone(&tz)
                    .to_rfc3339_opts(SecondsFormat::AutoSi, true),
                None => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            }
        }
    }
}

/// A property that may be absent, `null`, or a value.
enum Field<T> {
    Absent,
    Null,
    Value(T),
}

impl<T> Field<T> {
    fn is_absent(&self) -> bool {
        matches!(self, Field::Absent)
    }
}

impl<T: Serialize> Serialize for Field<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Field::Absent | Field::Null => s.serialize_none(),
            Field::Value(v) => v.serialize(s),
        }
    }
}

/// The authorization wire shape (the hot path: a derived `Serialize`
/// rather than `json!`, several times faster; the contract's field names).
#[derive(Serialize)]
struct AuthorizationJson<'a> {
    event_id: &'a str,
    occurred_at: &'a str,
    user_id: &'a str,
    product: &'a str,
    #[serde(skip_serializing_if = "Field::is_absent")]
    product_version: Field<&'a str>,
    access: &'a str,
    #[serde(skip_serializing_if = "Field::is_absent")]
    team_id: Field<&'a str>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    machine_id: Field<String>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    online: Field<bool>,
}

impl World {
    fn render(&self, p: &Pending) -> Message {
        let ev = &p.ev;
        let event_id = self.event_id(ev.id);
        let occurred_at = timestamp(ev.at, 0);
        let (topic, key, payload, expected_reason, hostile, intended) = match ev.body {
            Body::Team(t) => {
                let team = &self.teams[t as usize];
                let v = json!({
                    "event_id": event_id,
                    "occurred_at": occurred_at,
                    "type": "team",
                    "team_id": team.id,
                    "name": team.name,
                    "pii_visible": team.pii_visible,
                });
                (
                    Topic::Directory,
                    team.id.clone(),
                    v.to_string().into_bytes(),
                    None,
                    false,
                    None,
                )
            }
            Body::Rate { product, idx } => {
                let prod = &self.products[product as usize];
                let rate = prod.rates[idx as usize];
                let mut v = json!({
                    "event_id": event_id,
                    "occurred_at": occurred_at,
                    "type": "product_rate",
                    "product": prod.def.code,
                    "flex_tokens_per_day": tokens_json(rate.milli),
                    "effective_from": timestamp(rate.effective, 0),
                });
                if idx == 0 {
                    if let Some(m) = v.as_object_mut() {
                        m.insert("name".into(), json!(prod.def.name));
                    }
                }
                (
                    Topic::Directory,
                    prod.def.code.to_owned(),
                    v.to_string().into_bytes(),
                    None,
                    false,
                    None,
                )
            }
            Body::Profile(u) => {
                let plan = &self.users[u as usize];
                let user_id = self.user_id(u);
                let first = names::FIRST_NAMES[plan.first_name as usize];
                let last = names::LAST_NAMES[plan.last_name as usize];
                let hostile = self.cfg.poison_share > 0.0 && u == 0;
                let name = if hostile {
                    names::HOSTILE_NAMES[0].to_owned()
                } else {
                    format!("{first} {last}")
                };
                let email = format!("{}.{}.{}@example.com", first, last, u + 1)
                    .to_lowercase()
                    .replace([' ', '\''], "-");
                let mut v = json!({
                    "event_id": event_id,
                    "occurred_at": occurred_at,
                    "type": "user_profile",
                    "user_id": user_id,
                    "name": name,
                    "email": email,
                });
                if plan.avatar {
                    if let Some(m) = v.as_object_mut() {
                        m.insert(
                            "avatar_url".into(),
                            json!(format!("https://cdn.example.com/avatars/{user_id}.png")),
                        );
                    }
                }
                (
                    Topic::Directory,
                    user_id,
                    v.to_string().into_bytes(),
                    None,
                    hostile,
                    None,
                )
            }
            Body::Membership {
                team,
                group,
                user,
                member,
            } => {
                let team_id = &self.teams[team as usize].id;
                let v = json!({
                    "event_id": event_id,
                    "occurred_at": occurred_at,
                    "type": "group_membership",
                    "team_id": team_id,
                    "group_id": self.group_id(team, group),
                    "group_name": names::GROUPS[group as usize].1,
                    "user_id": self.user_id(user),
                    "member": member,
                });
                (
                    Topic::Directory,
                    team_id.clone(),
                    v.to_string().into_bytes(),
                    None,
                    false,
                    None,
                )
            }
            Body::Merge { from, into } => {
                let from_id = &self.teams[from as usize].id;
                let v = json!({
                    "event_id": event_id,
                    "occurred_at": occurred_at,
                    "type": "team_merge",
                    "from_team_id": from_id,
                    "into_team_id": self.teams[into as usize].id,
                });
                (
                    Topic::Directory,
                    from_id.clone(),
                    v.to_string().into_bytes(),
                    None,
                    false,
                    None,
                )
            }
            Body::Assignment {
                assign,
                team,
                user,
                product,
                access,
                via,
                group,
            } => {
                let user_id = self.user_id(user);
                let mut v = json!({
                    "event_id": event_id,
                    "occurred_at": occurred_at,
                    "action": if assign { "assign" } else { "unassign" },
                    "team_id": self.teams[team as usize].id,
                    "user_id": user_id,
                    "product": self.products[product as usize].def.code,
                    "access": access.as_str(),
                    "via": via.as_str(),
                });
                if let Some(m) = v.as_object_mut() {
                    match group {
                        Some(g) => {
                            m.insert("group_id".into(), json!(self.group_id(team, g)));
                        }
                        None if ev.id.is_multiple_of(3) => {
                            m.insert("group_id".into(), Value::Null);
                        }
                        None => {}
                    }
                }
                (
                    Topic::Assignments,
                    user_id,
                    v.to_string().into_bytes(),
                    None,
                    false,
                    None,
                )
            }
            Body::Auth(a) => {
                let user_id = self.user_id(a.user);
                let prod = &self.products[a.product as usize];
                let hostile = (a.hostile as usize)
                    .checked_sub(1)
                    .map(|k| (k % 2 == 0, names::HOSTILE[k % names::HOSTILE.len()]));
                let version = match hostile {
                    Some((true, s)) => Field::Value(s),
                    _ => match a.version {
                        255 => Field::Null,
                        254 => Field::Absent,
                        v => Field::Value(prod.def.versions[v as usize % prod.def.versions.len()]),
                    },
                };
                let machine = match hostile {
                    Some((false, s)) => Field::Value(s.to_owned()),
                    _ => match a.machine {
                        0 => Field::Absent,
                        255 => Field::Null,
                        k => Field::Value(format!(
                            "m-{:08x}",
                            (splitmix(u64::from(a.user) ^ self.id_salt) as u32) ^ u32::from(k)
                        )),
                    },
                };
                let occurred = if a.offset == 0 {
                    occurred_at
                } else {
                    timestamp(ev.at, a.offset)
                };
                let team = match a.team {
                    TeamField::Absent => Field::Absent,
                    TeamField::Null => Field::Null,
                    TeamField::Team(t) => Field::Value(self.teams[t as usize].id.as_str()),
                };
                let json = AuthorizationJson {
                    event_id: &event_id,
                    occurred_at: &occurred,
                    user_id: &user_id,
                    product: prod.def.code,
                    product_version: version,
                    access: a.access.as_str(),
                    team_id: team,
                    machine_id: machine,
                    online: match a.online {
                        OnlineField::Absent => Field::Absent,
                        OnlineField::Null => Field::Null,
                        OnlineField::True => Field::Value(true),
                        OnlineField::False => Field::Value(false),
                    },
                };
                let payload = serde_json::to_vec(&json).unwrap_or_default();
                (
                    Topic::Authorizations,
                    user_id,
                    payload,
                    None,
                    hostile.is_some(),
                    a.intended,
                )
            }
            Body::Poison { kind, user } => {
                let plan = &self.users[user as usize];
                let product = plan
                    .holdings
                    .first()
                    .map(|h| self.products[h.product as usize].def.code)
                    .unwrap_or("autocad");
                let user_id = self.user_id(user);
                let ctx = PoisonContext {
                    event_id: &event_id,
                    occurred_at: &occurred_at,
                    user_id: &user_id,
                    team_id: &self.teams[plan.primary as usize].id,
                    product,
                    end: self.cfg.end,
                    salt: splitmix(ev.id ^ self.id_salt),
                };
                let m = poison::render(kind, &ctx);
                (m.topic, m.key, m.payload, m.expected_reason, false, None)
            }
        };
        Message {
            topic,
            key,
            payload,
            expected_reason,
            meta: Meta {
                duplicate: p.copy,
                late: p.late,
                late_assignment: p.late_assignment,
                hostile,
                intended_dead_letter: intended,
            },
        }
    }

    fn topic_of(body: &Body) -> Topic {
        match body {
            Body::Team(_)
            | Body::Rate { .. }
            | Body::Profile(_)
            | Body::Membership { .. }
            | Body::Merge { .. } => Topic::Directory,
            Body::Assignment { .. } => Topic::Assignments,
            Body::Auth(_) => Topic::Authorizations,
            Body::Poison { kind, .. } => kind.topic(),
        }
    }
}

/// A token amount in thousandths as a JSON number (integer when whole).
fn tokens_json(milli: u64) -> Value {
    if milli.is_multiple_of(1000) {
        json!(milli / 1000)
    } else {
        json!(milli as f64 / 1000.0)
    }
}

// ---------------------------------------------------------------------------
// The scenario and its message stream

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

/// The lazily generated message stream of a [`Scenario`].
pub struct Messages {
    world: Arc<World>,
    render: bool,
    stage: Stage,
    heap: BinaryHeap<Pending>,
    out: VecDeque<Message>,
    seq: u64,
    next_id: u64,
    poison_cursor: usize,
    publish_rng: ChaCha8Rng,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Teams,
    Rates,
    Users(u32),
    Day(i64),
    Drain,
    Done,
}

impl Iterator for Messages {
    type Item = Message;

    fn next(&mut self) -> Option<Message> {
        loop {
            if let Some(m) = self.out.pop_front() {
                return Some(m);
            }
            if self.stage == Stage::Done {
                return None;
            }
            self.advance();
        }
    }
}

impl Messages {
    fn new(world: Arc<World>, render: bool) -> Messages {
        let seed = world.cfg.seed;
        Messages {
            world,
            render,
            stage: Stage::Teams,
            heap: BinaryHeap::new(),
            out: VecDeque::new(),
            seq: 0,
            next_id: 0,
            poison_cursor: 0,
            publish_rng: rng(&[seed, PURPOSE_PUBLISH]),
        }
    }

    fn ev(&mut self, at: i64, body: Body) -> Ev {
        let id = self.next_id;
        self.next_id += 1;
        Ev { id, at, body }
    }

    fn pending(&mut self, pt: i64, late: bool, ev: Ev) -> Pending {
        let seq = self.seq;
        self.seq += 1;
        Pending {
            pt,
            late,
            seq,
            ev,
            copy: false,
            late_assignment: false,
        }
    }

    fn push(&mut self, p: Pending) {
        self.heap.push(p);
    }

    /// Emits `p` now (preamble), possibly followed by a duplicate.
    fn emit(&mut self, p: Pending) {
        let msg = if self.render {
            self.world.render(&p)
        } else {
            let (expected_reason, intended) = match p.ev.body {
                Body::Poison { kind, .. } => (Some(kind.reason()), None),
                Body::Auth(a) => (None, a.intended),
                _ => (None, None),
            };
            Message {
                topic: World::topic_of(&p.ev.body),
                key: String::new(),
                payload: Vec::new(),
                expected_reason,
                meta: Meta {
                    duplicate: p.copy,
                    late: p.late,
                    late_assignment: p.late_assignment,
                    hostile: false,
                    intended_dead_letter: intended,
                },
            }
        };
        let eligible = !p.copy
            && msg.expected_reason.is_none()
            && msg.meta.intended_dead_letter.is_none()
            && self.world.cfg.duplicate_share > 0.0;
        let dup = eligible && self.publish_rng.random_bool(self.world.cfg.duplicate_share);
        let immediate = dup && self.publish_rng.random_bool(0.5);
        let delay = if dup && !immediate {
            self.publish_rng.random_range(HOUR..3 * DAY)
        } else {
            0
        };
        if immediate {
            let mut copy = msg.clone();
            copy.meta.duplicate = true;
            self.out.push_back(msg);
            self.out.push_back(copy);
        } else {
            self.out.push_back(msg);
        }
        if dup && !immediate {
            let pt = p.pt.max(self.world.start) + delay;
            let seq = self.seq;
            self.seq += 1;
            self.heap.push(Pending {
                pt,
                seq,
                copy: true,
                ..p
            });
        }
    }

    fn advance(&mut self) {
        let world = self.world.clone();
        let pre = world.start - 1;
        match self.stage {
            Stage::Teams => {
                for t in 0..world.teams.len() {
                    let ev = self.ev(
                        world.start - 400 * DAY + t as i64 * MIN,
                        Body::Team(t as u16),
                    );
                    let p = self.pending(pre, false, ev);
                    self.emit(p);
                }
                self.stage = Stage::Rates;
            }
            Stage::Rates => {
                for (i, prod) in world.products.iter().enumerate() {
                    for (k, rate) in prod.rates.iter().enumerate() {
                        let ev = self.ev(
                            rate.occurred,
                            Body::Rate {
                                product: i as u16,
                                idx: k as u8,
                            },
                        );
                        let p = self.pending(pre, false, ev);
                        self.emit(p);
                    }
                }
                self.stage = Stage::Users(0);
            }
            Stage::Users(u) => {
                if (u as usize) < world.users.len() {
                    self.user_preamble(&world, u);
                    self.stage = Stage::Users(u + 1);
                } else {
                    self.stage = Stage::Day(world.first_day);
                }
            }
            Stage::Day(day) => {
                if day > world.last_day {
                    self.stage = Stage::Drain;
                    return;
                }
                self.generate_day(&world, day);
                let until = (day + 1) * DAY;
                while self.heap.peek().is_some_and(|p| p.pt < until) {
                    if let Some(p) = self.heap.pop() {
                        self.emit(p);
                    }
                }
                self.stage = Stage::Day(day + 1);
            }
            Stage::Drain => {
                while let Some(p) = self.heap.pop() {
                    self.emit(p);
                }
                self.stage = Stage::Done;
            }
            Stage::Done => {}
        }
    }

    /// All assignment events of a user, in time order: (at, body, late_assign).
    fn assignment_events(world: &World, u: u32) -> Vec<(i64, Body, bool)> {
        let mut list = Vec::new();
        for h in &world.users[u as usize].holdings {
            for (k, seg) in h.segments.iter().enumerate() {
                let body = |assign: bool, via: Via, group: Option<u8>| Body::Assignment {
                    assign,
                    team: h.team,
                    user: u,
                    product: h.product,
                    access: h.access,
                    via,
                    group,
                };
                list.push((
                    seg.start,
                    body(true, seg.via, seg.group),
                    k == 0 && h.late_assign,
                ));
                let mut last = (seg.via, seg.group);
                if let Some((at, via, group)) = seg.reassign {
                    list.push((at, body(true, via, group), false));
                    last = (via, group);
                }
                if let Some(at) = seg.end {
                    list.push((at, body(false, last.0, last.1), false));
                }
            }
        }
        list.sort_by_key(|(at, _, _)| *at);
        list
    }

    fn user_preamble(&mut self, world: &World, u: u32) {
        let plan = &world.users[u as usize];
        let ev = self.ev(
            world.start - 300 * DAY + i64::from(u) * SEC,
            Body::Profile(u),
        );
        let p = self.pending(world.start - 1, false, ev);
        self.emit(p);
        for m in &plan.memberships {
            if m.join < world.start {
                let ev = self.ev(
                    m.join,
                    Body::Membership {
                        team: m.team,
                        group: m.group,
                        user: u,
                        member: true,
                    },
                );
                let p = self.pending(world.start - 1, false, ev);
                self.emit(p);
            }
        }
        for (at, body, _) in Self::assignment_events(world, u) {
            if at < world.start {
                let ev = self.ev(at, body);
                let p = self.pending(world.start - 1, false, ev);
                self.emit(p);
            }
        }
    }

    fn generate_day(&mut self, world: &World, day: i64) {
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
