//! Team merges, resolved at read time (docs/rules.md rule 2, the one exception).
//!
//! > *Team assignment is permanently associated with each usage transaction
//! > and won't change over time (with one exception, a team merge event).*
//!
//! Stored rows keep the team stamped at ingest. After `team_merge {from,
//! into}`, reports for `into` include the history of `from`: the report maps
//! every stored team to its **current team** with [`TeamMerges::current`].
//!
//! - The mapping is **transitive**: `a → b` and `b → c` give `a → c`, in
//!   whichever order the two merges arrive.
//! - A merge that would **close a cycle** (`a → b` then `b → a`, or `a → a`)
//!   is refused with [`MergeError::Cycle`] naming the cycle; the merges
//!   applied before it stay.
//! - A team is merged **at most once** (after a merge `from` no longer
//!   exists): a second merge of the same `from` into another team is refused
//!   with [`MergeError::AlreadyMerged`]; the same merge again is a duplicate.
//!
//! For a set of merges with neither cycles nor a team merged twice, the
//! result does not depend on the order in which they were applied: it is
//! held as the set of `from → into` edges, and the current team is computed
//! by following them.

use std::collections::HashMap;

use crate::event::TeamMerge;

/// Why a merge was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// The merge would close a cycle; `cycle` lists it from the merge's
    /// `from` team back to itself (`[a, b, a]` for `a → b` with `b → a` held).
    #[error("team merge would close the cycle {}", .cycle.join(" -> "))]
    Cycle {
        /// The cycle, from the refused merge's `from` back to it.
        cycle: Vec<String>,
    },
    /// `team` was already merged into `into`; merging it into `refused` too is refused.
    #[error("team {team} was already merged into {into}; merge into {refused} refused")]
    AlreadyMerged {
        /// The team merged twice.
        team: String,
        /// The team it was merged into first (kept).
        into: String,
        /// The team of the refused merge.
        refused: String,
    },
}

/// What applying a merge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeApplied {
    /// A merge not seen before.
    New,
    /// The same merge again: nothing changed.
    Duplicate,
}

/// The merges known so far: `from → into` edges (acyclic, one per `from`).
#[derive(Debug, Clone, Default)]
pub struct TeamMerges {
    into: HashMap<Box<str>, Box<str>>,
}

impl TeamMerges {
    /// No merges: every team is its own current team.
    pub fn new() -> TeamMerges {
        TeamMerges::default()
    }

    /// Number of merges held.
    pub fn len(&self) -> usize {
        self.into.len()
    }

    /// Whether no merge was applied.
    pub fn is_empty(&self) -> bool {
        self.into.is_empty()
    }

    /// Applies a merge (see the module docs for what is refused).
    pub fn apply(&mut self, merge: &TeamMerge) -> Result<MergeApplied, MergeError> {
        self.merge(&merge.from_team_id, &merge.into_team_id)
    }

    /// Applies `from → into`.
    pub fn merge(&mut self, from: &str, into: &str) -> Result<MergeApplied, MergeError> {
        if let Some(held) = self.into.get(from) {
            return if **held == *into {
                Ok(MergeApplied::Duplicate)
            } else {
                Err(MergeError::AlreadyMerged {
                    team: from.to_owned(),
                    into: held.to_string(),
                    refused: into.to_owned(),
                })
            };
        }
        // Following `into`'s chain back to `from` means the merge closes a cycle.
        let mut cycle = vec![from.to_owned()];
        let mut team = into;
        loop {
            cycle.push(team.to_owned());
            if team == from {
                return Err(MergeError::Cycle { cycle });
            }
            match self.into.get(team) {
                Some(next) => team = next,
                None => break,
            }
        }
        self.into.insert(from.into(), into.into());
        Ok(MergeApplied::New)
    }

    /// The current team of `team`: itself if never merged, else the end of its
    /// merge chain.
    pub fn current<'a>(&'a self, team: &'a str) -> &'a str {
        let mut team = team;
        // The edges are acyclic (refused otherwise), so the chain ends; the
        // bound is a belt-and-braces guard.
        for _ in 0..=self.into.len() {
            match self.into.get(team) {
                Some(next) => team = next,
                None => break,
            }
        }
        team
    }

    /// Every team whose history a report for `team` includes: `team` itself
    /// and all teams merged into it, directly or transitively, sorted.
    /// (For a team that was itself merged away, this is its own history and
    /// that of the teams merged into it; reports ask for current teams.)
    pub fn history_of<'a>(&'a self, team: &'a str) -> Vec<&'a str> {
        let mut teams: Vec<&'a str> = vec![team];
        teams.extend(
            self.into
                .keys()
                .map(|from| &**from)
                .filter(|from| self.reaches(from, team)),
        );
        teams.sort_unstable();
        teams
    }

    /// Whether `from`'s merge chain passes through `team` (excluding `from` itself).
    fn reaches(&self, from: &str, team: &str) -> bool {
        let mut at = from;
        for _ in 0..=self.into.len() {
            match self.into.get(at) {
                Some(next) if **next == *team => return true,
                Some(next) => at = next,
                None => return false,
            }
        }
        false
    }

    /// Every merged team with its current team, sorted by merged team: the
    /// read-time mapping (e.g. for a dictionary in the warehouse).
    pub fn mapping(&self) -> Vec<(&str, &str)> {
        let mut rows: Vec<(&str, &str)> = self
            .into
            .keys()
            .map(|from| (&**from, self.current(from)))
            .collect();
        rows.sort_unstable();
        rows
    }
}
