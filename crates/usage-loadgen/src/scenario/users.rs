//! One user's plan, from the user's own RNG: a primary team (and sometimes
//! a second), products, assignment timelines (before or during the span,
//! unassigned, re-assigned, moved to another team, near the end), and the
//! group memberships those assignments come through.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::random::{rng, time_of_day, zipf, PURPOSE_PLAN};
use super::world::{Holding, MembershipPlan, Segment, UserPlan, World};
use super::{DAY, HOUR, MIN, SEC};
use crate::names;
use crate::{Access, Via};

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
    pub(super) fn plan_user(&self, u: u32, team_weights: &[f64]) -> UserPlan {
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
}
