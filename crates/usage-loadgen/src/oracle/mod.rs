//! The oracle: the report the pipeline must produce, re-derived from the
//! messages alone by deliberately simple code. It shares nothing with the
//! pipeline (no `usage-core`): where the two disagree, one of them is wrong,
//! and this one is easy to read.
//!
//! # The rules, as implemented here
//! - **Poison** (a message with
//!   [`Message::expected_reason`](crate::Message::expected_reason)) counts
//!   as that dead letter and nothing else.
//! - **Dedupe** by `event_id`, across all topics: the first copy in publish
//!   order counts, later copies are duplicates and change nothing.
//! - **Reference data is a set**: every assignment, rate, merge, team and
//!   group membership in the scenario is known when authorizations are
//!   judged, whatever its publish position (the pipeline waits, bounded, for
//!   late assignments; the generator publishes rates first).
//! - **Offline** (`online: false`) authorizations are counted as offline and
//!   nothing else (before team resolution).
//! - **Team**: the event's `team_id` if present (and not null); else the team
//!   where the user holds (product, access) at `occurred_at`: per (team,
//!   user, product, access) the last assignment event with `occurred_at <=
//!   t` (ties by `event_id`) is an `assign`. No team: dead letter
//!   `unresolved_team`, not counted. Several (the generator never does it):
//!   counted in [`Totals::ambiguous_resolutions`], the most recent
//!   continuous assignment wins, ties to the smallest `team_id`.
//! - **Flex**, per (user, product), all versions and teams, in publish
//!   order: an authorization at `t` is free if the window with the greatest
//!   start `<= t` among those opened so far has `t < start + 24h`; otherwise
//!   it opens a window at `t` charged the rate in force at `t` (greatest
//!   `effective_from <= t`, ties by the rate event's `(occurred_at,
//!   event_id)`), attributed to the opening event's team. No rate: dead
//!   letter `unknown_rate`, not counted, no window.
//! - **Days used** = distinct UTC dates of counted authorizations; **tokens
//!   in a range** = charges of windows whose start's UTC date is in it.
//! - **Status** as of `now` over `[from, to]`: `active` (assigned now, used
//!   in range), `inactive` (seat, assigned now since a date `<= from`, not
//!   used), `not_yet_active` (seat, assigned now since after `from`, not
//!   used), `flex_unused` (Flex, assigned now, not used: never inactive),
//!   `unassigned` (used, not assigned now), else no status (`None`).
//! - **Merges** are resolved at read time: `current_team` follows `from ->
//!   into` edges transitively; a team merged twice keeps its first merge, a
//!   merge closing a cycle is ignored. The `*_merged` queries sum the
//!   history of every team whose current team is the one asked.
//!
//! # Layout
//! - this module: the [`Oracle`] and the state it keeps (interned ids,
//!   assignment and rate facts, charged windows);
//! - `messages`: the two passes over the messages (reference data, then
//!   every message: poison, dedupe, each authorization counted);
//! - `reference`: the reference data read and what it says at a time (the
//!   rate and the assignment in force, the team an authorization resolves to);
//! - `queries`: per-row questions (days used, tokens, status, groups, ...);
//! - `summary`: the per-team overviews and the whole [`ExpectedRollups`];
//! - `expected`: the public result types, serialisable as JSON;
//! - `days`: UTC dates as day numbers, [`DateRange`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::scenario::ScenarioConfig;
use crate::{Access, Reason, Via};

mod days;
mod expected;
mod lines;
mod messages;
mod queries;
mod reference;
mod summary;

pub use days::DateRange;
pub use expected::{
    CurrentAssignment, ExpectedRange, ExpectedRollups, ExpectedRow, ExpectedTeam, ExpectedWindow,
    Status, TeamSummary, Totals,
};
pub use lines::{usage_class, ExpectedLine, LineKey, OccasionalSeats};
pub use messages::OracleError;

use days::Day;

// The state the oracle keeps: ids interned to numbers, the reference facts
// (assignments, rates, team and membership versions) and the charged windows.

#[derive(Debug, Default)]
struct Interner {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.ids.get(s) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(s.to_owned());
        self.ids.insert(s.to_owned(), i);
        i
    }

    fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    fn name(&self, i: u32) -> &str {
        &self.names[i as usize]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct RowKey {
    team: u32,
    user: u32,
    product: u32,
    access: Access,
}

#[derive(Debug, Clone)]
struct AssignmentFact {
    at: i64,
    event_id: String,
    assign: bool,
    via: Via,
    group_id: Option<String>,
}

#[derive(Debug, Clone)]
struct RateFact {
    effective: i64,
    occurred: i64,
    event_id: String,
    milli: u64,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: i64,
    milli: u64,
    team: u32,
}

#[derive(Debug, Clone)]
struct Versioned<T> {
    at: i64,
    event_id: String,
    value: T,
}

impl<T> Versioned<T> {
    /// Keeps the later fact (greatest (occurred_at, event_id)).
    fn newer(&self, at: i64, event_id: &str) -> bool {
        (at, event_id) > (self.at, self.event_id.as_str())
    }
}

/// The expected rollups of a scenario (see the module docs for the rules).
#[derive(Debug, Default)]
pub struct Oracle {
    teams: Interner,
    users: Interner,
    products: Interner,
    /// Counted usage: sorted distinct day numbers per row.
    usage: HashMap<RowKey, Vec<Day>>,
    /// Charged windows per (user, product), sorted by start.
    windows: HashMap<(u32, u32), Vec<Window>>,
    assignments: HashMap<RowKey, Vec<AssignmentFact>>,
    /// (user, product, access) -> teams with assignment history.
    holders: HashMap<(u32, u32, Access), BTreeSet<u32>>,
    rates: HashMap<String, Vec<RateFact>>,
    /// Accepted merges, from -> into.
    merges: BTreeMap<String, String>,
    team_info: BTreeMap<String, Versioned<(String, bool)>>,
    /// (team, user, group) -> (member, group name).
    memberships: BTreeMap<(String, String, String), Versioned<bool>>,
    totals: Totals,
    dead_letters: BTreeMap<Reason, u64>,
    scenario: Option<ScenarioConfig>,
}
