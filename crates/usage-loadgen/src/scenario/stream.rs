//! The message stream of a scenario, in stages: the preamble (teams, rates,
//! each user's profile, memberships and assignments before the span), then
//! day by day (events ordered by publish time in a heap), then the drain;
//! duplicates decided as each message is emitted.

use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::events::{Body, Ev, Pending};
use super::random::{rng, PURPOSE_PUBLISH};
use super::world::World;
use super::{DAY, HOUR, MIN, SEC};
use crate::{Message, Meta, Via};

/// The lazily generated message stream of a [`Scenario`](super::Scenario).
pub struct Messages {
    world: Arc<World>,
    render: bool,
    stage: Stage,
    heap: BinaryHeap<Pending>,
    out: VecDeque<Message>,
    seq: u64,
    next_id: u64,
    pub(super) poison_cursor: usize,
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
    pub(super) fn new(world: Arc<World>, render: bool) -> Messages {
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

    pub(super) fn ev(&mut self, at: i64, body: Body) -> Ev {
        let id = self.next_id;
        self.next_id += 1;
        Ev { id, at, body }
    }

    pub(super) fn pending(&mut self, pt: i64, late: bool, ev: Ev) -> Pending {
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

    pub(super) fn push(&mut self, p: Pending) {
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
    pub(super) fn assignment_events(world: &World, u: u32) -> Vec<(i64, Body, bool)> {
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
}
