//! Team resolution at event time (docs/rules.md rule 2).
//!
//! > *Team assignment is permanently associated with each usage transaction and
//! > won't change over time (with one exception, a team merge event).*
//!
//! An [`Authorization`](crate::event::Authorization) that names `team_id` keeps it. Otherwise the team is
//! read from the assignment history **as of the event's `occurred_at`**: the
//! team(s) in which the user holds that product with that access at that
//! instant. [`AssignmentState::resolve`] returns a [`Resolution`]:
//!
//! - [`Resolution::Resolved`]: exactly one team (or the event named it);
//! - [`Resolution::Unresolved`]: no team holds it. The ingest holds the event
//!   a bounded time for late assignment data, then dead-letters it
//!   (replayable). The team is **never guessed**.
//! - [`Resolution::Ambiguous`]: several teams hold it at that instant. The
//!   rule is deterministic: the **most recently assigned** team wins (the
//!   greatest start of the current continuous assignment), ties broken by the
//!   smallest `team_id`. Rationale: the vendor's help page notes that a
//!   user with entitlements in several teams is typically *"inactive on one
//!   team and active on another team"*; attributing every use to one
//!   consistent team gives exactly that picture, and the newest assignment
//!   is the one an admin most recently made for this user (a move between
//!   teams is usually "assign in the new team, then unassign in the old").
//!   Refusing instead would drop real usage from the report for a fact no
//!   later data can fix.
//!   The variant keeps all candidates so the ingest can count it.
//!
//! ## The assignment state
//!
//! [`AssignmentState`] is built incrementally from [`Assignment`] events in
//! **any order**: each (team, user, product, access) keeps its history sorted
//! by `(occurred_at, event_id)` with duplicates (same `event_id`) dropped, so
//! the state — and every answer — is a function of the *set* of assignment
//! events applied, whatever their arrival order. A late assignment older than
//! others lands at its place in time.
//!
//! The state as of `t` of a (team, user, product, access) is given by the last
//! event at or before `t` (in `(occurred_at, event_id)` order): `assign` means
//! held, `unassign` means not held. An `unassign` ends the assignment whatever
//! its `via` (the upstream licensing system publishes the effective state of a
//! user's product in a team). "Assigned since" is the start of the current
//! continuous assignment: the first `assign` after the last `unassign` (a
//! re-assignment, e.g. direct then via a group, does not restart it); `via`
//! and `group_id` come from the latest `assign`.
//!
//! Hot path: [`AssignmentState::resolve`] does one hash lookup of the
//! (user, product) pair, encoded on the stack (no allocation), and a binary
//! search per candidate team; it allocates only for the rare
//! [`Resolution::Ambiguous`].

use crate::FastMap;

use chrono::{DateTime, Utc};

use crate::event::{Access, Assignment, AssignmentAction, AssignmentVia, AuthorizationRef};
use crate::pair::{alloc_bytes, map_entry_bytes, pair_slot, split, with_pair_key, PairKey};

/// Which teams a report (or an export) covers: one team, or "All Teams".
///
/// Used by the status summary (rule 6: no inactive count for all teams) and
/// by privacy (rule 7). Team ids are *current* teams (after merges).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeamScope<'a> {
    /// "All Teams" is selected.
    All,
    /// One team is selected.
    Team(&'a str),
}

/// What applying an [`Assignment`] did to the [`AssignmentState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A new fact: the history changed.
    New,
    /// Same `event_id` and same content as a fact already held: ignored.
    Duplicate,
    /// Same `event_id` as a fact already held but different content: a
    /// publisher bug. The first copy is kept; the ingest should count it.
    Conflict,
}

/// The current continuous assignment of a (team, user, product, access) as
/// of some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurrentAssignment<'a> {
    /// Start of the current continuous assignment (the "assigned date" is its
    /// UTC date).
    pub since: DateTime<Utc>,
    /// How the latest `assign` came (direct, group, default).
    pub via: AssignmentVia,
    /// The group that carries the latest `assign`, if any.
    pub group_id: Option<&'a str>,
}

/// Where a resolved team came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeamSource {
    /// The authorization named its `team_id`.
    Event,
    /// The assignment history as of `occurred_at`.
    Assignment,
}

/// The team stamped on an authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolvedTeam<'a> {
    /// The team to stamp on the event.
    pub team_id: &'a str,
    /// How the user holds the product in that team at that instant (`None`
    /// when the event named a team the assignment state does not know yet).
    pub via: Option<AssignmentVia>,
    /// The group carrying the assignment, when `via` is `group`.
    pub group_id: Option<&'a str>,
    /// Start of the current continuous assignment in that team, when known.
    pub since: Option<DateTime<Utc>>,
    /// Whether the event named the team or the history resolved it.
    pub source: TeamSource,
}

/// The outcome of team resolution for one authorization (rule 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution<'a> {
    /// One team: stamp it.
    Resolved(ResolvedTeam<'a>),
    /// No team holds the product with that access at that instant: hold the
    /// event (bounded) for late assignments, then dead-letter it. Never guess.
    Unresolved,
    /// Several teams hold it at that instant. `chosen` is the team to stamp
    /// (most recently assigned, ties by smallest `team_id`); `teams` are all
    /// candidates, sorted by `team_id`.
    Ambiguous {
        /// The team to stamp: the most recently assigned, ties by smallest `team_id`.
        chosen: ResolvedTeam<'a>,
        /// Every team holding the product with that access at that instant, sorted.
        teams: Vec<&'a str>,
    },
}

impl<'a> Resolution<'a> {
    /// The team to stamp, if any: the resolved one, or the chosen one of an
    /// ambiguous resolution.
    pub fn team(&self) -> Option<&ResolvedTeam<'a>> {
        match self {
            Resolution::Resolved(team) => Some(team),
            Resolution::Ambiguous { chosen, .. } => Some(chosen),
            Resolution::Unresolved => None,
        }
    }
}

/// One (team, user, product, access) whose assignment is in force at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssignmentRow<'a> {
    /// The team holding the assignment.
    pub team_id: &'a str,
    /// The assigned user.
    pub user_id: &'a str,
    /// The assigned product.
    pub product: &'a str,
    /// Seat or Flex.
    pub access: Access,
    /// The continuous assignment in force.
    pub assignment: CurrentAssignment<'a>,
}

/// The assignment history of every (team, user, product, access), built
/// incrementally and order-independently (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct AssignmentState {
    /// Keyed by (user, product) ([`crate::pair`]).
    holdings: FastMap<PairKey, Holdings>,
    facts: usize,
}

/// A user's holdings of one product: per access, one timeline per team.
#[derive(Debug, Clone, Default)]
struct Holdings {
    by_access: [Vec<Timeline>; 2],
}

#[derive(Debug, Clone)]
struct Timeline {
    team_id: Box<str>,
    /// Sorted by `(at, event_id)`; `event_id`s unique.
    facts: Vec<Fact>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Fact {
    at: DateTime<Utc>,
    event_id: Box<str>,
    assigned: bool,
    via: AssignmentVia,
    group_id: Option<Box<str>>,
}

fn access_index(access: Access) -> usize {
    match access {
        Access::Seat => 0,
        Access::Flex => 1,
    }
}

impl Timeline {
    /// The continuous assignment in force at `at`, if any.
    fn as_of(&self, at: DateTime<Utc>) -> Option<CurrentAssignment<'_>> {
        let end = self.facts.partition_point(|f| f.at <= at);
        let last = self.facts[..end].last()?;
        if !last.assigned {
            return None;
        }
        let run_start = self.facts[..end]
            .iter()
            .rposition(|f| !f.assigned)
            .map_or(0, |i| i + 1);
        Some(CurrentAssignment {
            since: self.facts[run_start].at,
            via: last.via,
            group_id: last.group_id.as_deref(),
        })
    }
}

impl AssignmentState {
    /// An empty state.
    pub fn new() -> AssignmentState {
        AssignmentState::default()
    }

    /// Number of distinct assignment facts held.
    pub fn len(&self) -> usize {
        self.facts
    }

    /// Whether no assignment was applied.
    pub fn is_empty(&self) -> bool {
        self.facts == 0
    }

    /// Applies one assignment event, in any order relative to the others.
    /// Idempotent: a duplicate (same `event_id`) changes nothing.
    pub fn apply(&mut self, a: &Assignment) -> Applied {
        let holdings = pair_slot(&mut self.holdings, &a.user_id, &a.product);
        let timelines = &mut holdings.by_access[access_index(a.access)];
        let timeline = match timelines.iter().position(|t| *t.team_id == *a.team_id) {
            Some(i) => &mut timelines[i],
            None => {
                timelines.push(Timeline {
                    team_id: a.team_id.as_str().into(),
                    facts: Vec::new(),
                });
                let last = timelines.len() - 1;
                &mut timelines[last]
            }
        };
        let fact = Fact {
            at: a.occurred_at,
            event_id: a.event_id.as_str().into(),
            assigned: a.action == AssignmentAction::Assign,
            via: a.via,
            group_id: a.group_id.as_deref().map(Into::into),
        };
        if let Some(held) = timeline.facts.iter().find(|f| f.event_id == fact.event_id) {
            return if *held == fact {
                Applied::Duplicate
            } else {
                Applied::Conflict
            };
        }
        let at = timeline
            .facts
            .partition_point(|f| (f.at, &*f.event_id) < (fact.at, &*fact.event_id));
        timeline.facts.insert(at, fact);
        self.facts += 1;
        Applied::New
    }

    /// Forgets everything held about (user, product) — a bounded cache
    /// evicting it, to be read again whole from the stored history. Returns
    /// how many facts were dropped.
    pub fn forget_pair(&mut self, user_id: &str, product: &str) -> usize {
        let Some(holdings) = with_pair_key(user_id, product, |k| self.holdings.remove(k)) else {
            return 0;
        };
        let facts: usize = holdings
            .by_access
            .iter()
            .flatten()
            .map(|t| t.facts.len())
            .sum();
        self.facts -= facts;
        facts
    }

    /// An estimate of the heap bytes (user, product) takes (its map entry,
    /// key, timelines and facts, with a per-allocation overhead), for a cache
    /// bounded by bytes. 0 when nothing is held.
    pub fn pair_bytes(&self, user_id: &str, product: &str) -> usize {
        with_pair_key(user_id, product, |k| self.holdings.get(k)).map_or(0, |h| {
            let mut bytes = map_entry_bytes::<Holdings>(user_id, product);
            for timelines in &h.by_access {
                bytes += alloc_bytes(timelines.capacity() * std::mem::size_of::<Timeline>());
                for timeline in timelines {
                    bytes += alloc_bytes(timeline.team_id.len())
                        + alloc_bytes(timeline.facts.capacity() * std::mem::size_of::<Fact>());
                    for f in &timeline.facts {
                        bytes += alloc_bytes(f.event_id.len())
                            + f.group_id.as_ref().map_or(0, |g| alloc_bytes(g.len()));
                    }
                }
            }
            bytes
        })
    }

    fn timelines(&self, user_id: &str, product: &str, access: Access) -> &[Timeline] {
        with_pair_key(user_id, product, |k| self.holdings.get(k))
            .map_or(&[], |h| &h.by_access[access_index(access)])
    }

    /// The continuous assignment of (team, user, product, access) in force at
    /// `at`, if any (for status: "currently assigned", "assigned since").
    pub fn current_assignment(
        &self,
        team_id: &str,
        user_id: &str,
        product: &str,
        access: Access,
        at: DateTime<Utc>,
    ) -> Option<CurrentAssignment<'_>> {
        self.timelines(user_id, product, access)
            .iter()
            .find(|t| *t.team_id == *team_id)
            .and_then(|t| t.as_of(at))
    }

    /// Every assignment in force at `at` (unordered).
    pub fn assignments_as_of(&self, at: DateTime<Utc>) -> impl Iterator<Item = AssignmentRow<'_>> {
        self.holdings.iter().flat_map(move |(key, holdings)| {
            let (user_id, product) = split(key);
            Access::ALL.into_iter().flat_map(move |access| {
                holdings.by_access[access_index(access)]
                    .iter()
                    .filter_map(move |t| {
                        t.as_of(at).map(|assignment| AssignmentRow {
                            team_id: &t.team_id,
                            user_id,
                            product,
                            access,
                            assignment,
                        })
                    })
            })
        })
    }

    /// Resolves the team of an authorization as of its `occurred_at` (rule 2;
    /// see the module docs for the ambiguity rule).
    pub fn resolve<'a>(&'a self, auth: impl Into<AuthorizationRef<'a>>) -> Resolution<'a> {
        let auth = auth.into();
        let timelines = self.timelines(auth.user_id, auth.product, auth.access);
        if let Some(team_id) = auth.team_id {
            let held = timelines
                .iter()
                .find(|t| *t.team_id == *team_id)
                .and_then(|t| t.as_of(auth.occurred_at));
            return Resolution::Resolved(ResolvedTeam {
                team_id,
                via: held.map(|h| h.via),
                group_id: held.and_then(|h| h.group_id),
                since: held.map(|h| h.since),
                source: TeamSource::Event,
            });
        }
        let mut chosen: Option<ResolvedTeam<'a>> = None;
        let mut candidates = 0usize;
        for t in timelines {
            let Some(held) = t.as_of(auth.occurred_at) else {
                continue;
            };
            candidates += 1;
            let team = ResolvedTeam {
                team_id: &t.team_id,
                via: Some(held.via),
                group_id: held.group_id,
                since: Some(held.since),
                source: TeamSource::Assignment,
            };
            chosen = match chosen {
                Some(best) if !preferred(&team, &best) => Some(best),
                _ => Some(team),
            };
        }
        match (chosen, candidates) {
            (None, _) => Resolution::Unresolved,
            (Some(team), 1) => Resolution::Resolved(team),
            (Some(chosen), _) => {
                let mut teams: Vec<&'a str> = timelines
                    .iter()
                    .filter(|t| t.as_of(auth.occurred_at).is_some())
                    .map(|t| &*t.team_id)
                    .collect();
                teams.sort_unstable();
                Resolution::Ambiguous { chosen, teams }
            }
        }
    }
}

/// The ambiguity rule: the most recent `since` wins, then the smallest team id.
fn preferred(a: &ResolvedTeam<'_>, b: &ResolvedTeam<'_>) -> bool {
    (a.since, std::cmp::Reverse(a.team_id)) > (b.since, std::cmp::Reverse(b.team_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, h, 0, 0)
            .single()
            .expect("valid")
    }

    fn assign(id: &str, h: u32, action: AssignmentAction, team: &str) -> Assignment {
        Assignment {
            event_id: id.into(),
            occurred_at: at(h),
            action,
            team_id: team.into(),
            user_id: "u".into(),
            product: "p".into(),
            access: Access::Seat,
            via: AssignmentVia::Direct,
            group_id: None,
        }
    }

    #[test]
    fn since_is_start_of_current_run() {
        let mut s = AssignmentState::new();
        for a in [
            assign("1", 1, AssignmentAction::Assign, "t"),
            assign("2", 3, AssignmentAction::Unassign, "t"),
            assign("3", 5, AssignmentAction::Assign, "t"),
            assign("4", 7, AssignmentAction::Assign, "t"),
        ] {
            assert_eq!(s.apply(&a), Applied::New);
        }
        let since = |h| {
            s.current_assignment("t", "u", "p", Access::Seat, at(h))
                .map(|c| c.since)
        };
        assert_eq!(since(0), None);
        assert_eq!(since(2), Some(at(1)));
        assert_eq!(since(4), None);
        assert_eq!(since(8), Some(at(5)));
        assert_eq!(
            s.apply(&assign("4", 7, AssignmentAction::Assign, "t")),
            Applied::Duplicate
        );
        assert_eq!(
            s.apply(&assign("4", 8, AssignmentAction::Assign, "t")),
            Applied::Conflict
        );
        assert_eq!(s.len(), 4);
    }

    #[test]
    fn a_forgotten_pair_holds_nothing_and_its_bytes_grow_with_its_facts() {
        let mut s = AssignmentState::new();
        assert_eq!(s.pair_bytes("u", "p"), 0);
        s.apply(&assign("1", 1, AssignmentAction::Assign, "t"));
        let one = s.pair_bytes("u", "p");
        assert!(one > 0);
        s.apply(&assign("2", 2, AssignmentAction::Unassign, "t"));
        s.apply(&assign("3", 3, AssignmentAction::Assign, "t2"));
        assert!(s.pair_bytes("u", "p") > one);
        assert_eq!(s.forget_pair("u", "p"), 3);
        assert_eq!((s.len(), s.pair_bytes("u", "p")), (0, 0));
        assert_eq!(s.forget_pair("u", "p"), 0);
        // Read again, it answers as before.
        s.apply(&assign("1", 1, AssignmentAction::Assign, "t"));
        let since = s.current_assignment("t", "u", "p", Access::Seat, at(5));
        assert_eq!(since.map(|c| c.since), Some(at(1)));
    }
}
