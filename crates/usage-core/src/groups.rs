//! Groups are current state (docs/rules.md rule 3).
//!
//! > *The usage report reflects the current state of the group (or multiple
//! > groups) to which an end user belongs. Groups shown in the usage report
//! > can change if and when an admin updates the group membership.* and
//! > *As group assignment is optional for user management, the group field
//! > may be blank.* — the vendor's help page.
//!
//! Unlike the team (stamped on each usage at ingest), the groups shown for a
//! (team, user) are read from the **latest** membership facts: for each
//! (team, group, user) the `group_membership` event with the greatest
//! `(occurred_at, event_id)` decides (order-independent, idempotent), and a
//! group's name is the latest one published. An empty list is a blank field.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::event::GroupMembership;

type Published = (DateTime<Utc>, String);

/// Current group memberships and group names.
#[derive(Debug, Clone, Default)]
pub struct GroupDirectory {
    /// (team, user) → group → (member, publication).
    members: BTreeMap<(String, String), BTreeMap<String, (bool, Published)>>,
    /// (team, group) → (name, publication).
    names: BTreeMap<(String, String), (String, Published)>,
}

impl GroupDirectory {
    /// An empty directory: every group field blank.
    pub fn new() -> GroupDirectory {
        GroupDirectory::default()
    }

    /// Applies a `group_membership` event published by `event_id` at
    /// `published_at`. Returns whether the membership changed.
    pub fn apply(
        &mut self,
        event_id: &str,
        published_at: DateTime<Utc>,
        m: &GroupMembership,
    ) -> bool {
        let published = (published_at, event_id.to_owned());
        let name = self
            .names
            .entry((m.team_id.clone(), m.group_id.clone()))
            .or_insert_with(|| (m.group_name.clone(), published.clone()));
        if published > name.1 {
            *name = (m.group_name.clone(), published.clone());
        }
        let held = self
            .members
            .entry((m.team_id.clone(), m.user_id.clone()))
            .or_default()
            .entry(m.group_id.clone())
            .or_insert_with(|| (!m.member, (DateTime::<Utc>::MIN_UTC, String::new())));
        if published > held.1 {
            let changed = held.0 != m.member;
            *held = (m.member, published);
            changed
        } else {
            false
        }
    }

    /// The groups (id, name) `user_id` belongs to in `team_id` now, sorted by
    /// name then id; empty when none (a blank field).
    pub fn groups_of(&self, team_id: &str, user_id: &str) -> Vec<(&str, &str)> {
        let Some(groups) = self.members.get(&(team_id.to_owned(), user_id.to_owned())) else {
            return Vec::new();
        };
        let mut out: Vec<(&str, &str)> = groups
            .iter()
            .filter(|(_, (member, _))| *member)
            .map(|(group, _)| {
                let name = self
                    .names
                    .get(&(team_id.to_owned(), group.clone()))
                    .map_or(group.as_str(), |(n, _)| n.as_str());
                (group.as_str(), name)
            })
            .collect();
        out.sort_unstable_by(|a, b| (a.1, a.0).cmp(&(b.1, b.0)));
        out
    }
}
