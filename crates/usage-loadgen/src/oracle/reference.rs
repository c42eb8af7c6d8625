//! The reference data: assignments, rates, merges, teams and group
//! memberships read from the first pass, and what they say at a time: the
//! rate in force, the assignment in force, the team an authorization
//! without `team_id` resolves to.

use serde_json::Value;

use super::messages::{parse_time, str_field};
use super::{AssignmentFact, CurrentAssignment, Oracle, RateFact, RowKey, Versioned};
use crate::scenario::from_micros;
use crate::{Access, Topic, Via};

impl Oracle {
    pub(super) fn apply_reference(&mut self, topic: Topic, v: &Value) -> Result<(), String> {
        let field = |k: &str| str_field(v, k).ok_or_else(|| format!("missing {k}"));
        let id = field("event_id")?;
        let at = parse_time(field("occurred_at")?).ok_or("bad occurred_at")?;
        match topic {
            Topic::Assignments => {
                let team = self.teams.intern(field("team_id")?);
                let user = self.users.intern(field("user_id")?);
                let product = self.products.intern(field("product")?);
                let access = Access::parse(field("access")?).ok_or("bad access")?;
                let via = Via::parse(field("via")?).ok_or("bad via")?;
                let assign = match field("action")? {
                    "assign" => true,
                    "unassign" => false,
                    _ => return Err("bad action".into()),
                };
                let key = RowKey {
                    team,
                    user,
                    product,
                    access,
                };
                self.assignments
                    .entry(key)
                    .or_default()
                    .push(AssignmentFact {
                        at,
                        event_id: id.to_owned(),
                        assign,
                        via,
                        group_id: str_field(v, "group_id").map(str::to_owned),
                    });
                self.holders
                    .entry((user, product, access))
                    .or_default()
                    .insert(team);
            }
            Topic::Directory => match field("type")? {
                "product_rate" => {
                    let tokens = v
                        .get("flex_tokens_per_day")
                        .and_then(Value::as_f64)
                        .ok_or("bad tokens")?;
                    let effective =
                        parse_time(field("effective_from")?).ok_or("bad effective_from")?;
                    self.rates
                        .entry(field("product")?.to_owned())
                        .or_default()
                        .push(RateFact {
                            effective,
                            occurred: at,
                            event_id: id.to_owned(),
                            milli: (tokens * 1000.0).round() as u64,
                        });
                }
                "team_merge" => {
                    let from = field("from_team_id")?.to_owned();
                    let into = field("into_team_id")?.to_owned();
                    self.teams.intern(&from);
                    self.teams.intern(&into);
                    // Publish order; the first merge of a team wins, a cycle is refused.
                    if !self.merges.contains_key(&from) && self.current_team(&into) != from {
                        self.merges.insert(from, into);
                    }
                }
                "team" => {
                    let team = field("team_id")?.to_owned();
                    self.teams.intern(&team);
                    let name = field("name")?.to_owned();
                    let pii = v
                        .get("pii_visible")
                        .and_then(Value::as_bool)
                        .ok_or("bad pii_visible")?;
                    let newer = self
                        .team_info
                        .get(&team)
                        .is_none_or(|old| old.newer(at, id));
                    if newer {
                        self.team_info.insert(
                            team,
                            Versioned {
                                at,
                                event_id: id.to_owned(),
                                value: (name, pii),
                            },
                        );
                    }
                }
                "group_membership" => {
                    let key = (
                        field("team_id")?.to_owned(),
                        field("user_id")?.to_owned(),
                        field("group_id")?.to_owned(),
                    );
                    let member = v
                        .get("member")
                        .and_then(Value::as_bool)
                        .ok_or("bad member")?;
                    let newer = self
                        .memberships
                        .get(&key)
                        .is_none_or(|old| old.newer(at, id));
                    if newer {
                        self.memberships.insert(
                            key,
                            Versioned {
                                at,
                                event_id: id.to_owned(),
                                value: member,
                            },
                        );
                    }
                }
                "user_profile" => {}
                other => return Err(format!("unknown directory type {other}")),
            },
            Topic::Authorizations => {}
        }
        Ok(())
    }

    pub(super) fn settle_reference(&mut self) {
        for facts in self.assignments.values_mut() {
            facts.sort_by(|a, b| (a.at, &a.event_id).cmp(&(b.at, &b.event_id)));
        }
    }

    /// The rate of `product` in force at `t`, in thousandths.
    pub(super) fn rate_at(&self, product: &str, t: i64) -> Option<u64> {
        self.rates
            .get(product)?
            .iter()
            .filter(|r| r.effective <= t)
            .max_by(|a, b| {
                (a.effective, a.occurred, &a.event_id).cmp(&(b.effective, b.occurred, &b.event_id))
            })
            .map(|r| r.milli)
    }

    /// Whether the assignment `key` is in force at `t`: the last event at or
    /// before `t` is an `assign`.
    pub(super) fn held_at(&self, key: &RowKey, t: i64) -> bool {
        self.assignments
            .get(key)
            .and_then(|facts| facts.iter().rev().find(|f| f.at <= t))
            .is_some_and(|f| f.assign)
    }

    pub(super) fn assignment_as_of(&self, key: &RowKey, now: i64) -> Option<CurrentAssignment> {
        let facts: Vec<&AssignmentFact> = self
            .assignments
            .get(key)?
            .iter()
            .filter(|f| f.at <= now)
            .collect();
        let last = facts.last()?;
        if !last.assign {
            return None;
        }
        // The current continuous assignment: after the last unassign.
        let after_unassign = facts.iter().rposition(|f| !f.assign).map_or(0, |i| i + 1);
        let first = facts[after_unassign];
        Some(CurrentAssignment {
            since: from_micros(first.at),
            via: last.via,
            group_id: last.group_id.clone(),
        })
    }

    pub(super) fn resolve(
        &mut self,
        user: u32,
        product: u32,
        access: Access,
        t: i64,
    ) -> Option<u32> {
        let held: Vec<u32> = self
            .holders
            .get(&(user, product, access))?
            .iter()
            .copied()
            .filter(|&team| {
                self.held_at(
                    &RowKey {
                        team,
                        user,
                        product,
                        access,
                    },
                    t,
                )
            })
            .collect();
        match held.len() {
            0 => None,
            1 => Some(held[0]),
            _ => {
                self.totals.ambiguous_resolutions += 1;
                held.into_iter().max_by(|&a, &b| {
                    let since = |team| {
                        self.assignment_as_of(
                            &RowKey {
                                team,
                                user,
                                product,
                                access,
                            },
                            t,
                        )
                        .map_or(i64::MIN, |c| c.since.timestamp_micros())
                    };
                    // Greatest since; then the smallest team id.
                    (since(a), std::cmp::Reverse(self.teams.name(a)))
                        .cmp(&(since(b), std::cmp::Reverse(self.teams.name(b))))
                })
            }
        }
    }
}
