//! Step 3 of stamping (pure): each authorization, oldest held-back ones
//! first, is stamped with its team (`usage_core::team`) and Flex charge
//! (`usage_core::charge`), held back, or dead-lettered. No I/O: when an
//! out-of-order Flex event is older than the windows held in memory
//! ([`Charge::BeyondHorizon`]), the stamper stops and asks for that pair's
//! older windows ([`Step::OlderWindows`]); once the loader has read them,
//! [`Stamper::run`] judges the event again and goes on.

use super::Pending;
use crate::dlq::DeadLetter;
use crate::message::TopicNames;
use crate::state::Enrichment;
use chrono::{DateTime, Utc};
use std::time::Instant;
use usage_core::charge::Charge;
use usage_core::team::{Resolution, TeamSource};
use usage_core::validate::{Reason, ValidationError};
use usage_core::FastSet;

/// The stamps of one authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) team_id: String,
    pub(crate) source: TeamSource,
    pub(crate) window_start: Option<DateTime<Utc>>,
    pub(crate) tokens_milli: u64,
    /// Whether the authorization opened its Flex window.
    pub(crate) opened_window: bool,
}

/// When a hold has run out: its deadline is past (`checked`), and so is the
/// instant at which every reference message the broker held was known read
/// (`reference_read_at`; none: not proven, the hold goes on).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expiry {
    pub(crate) checked: Instant,
    pub(crate) reference_read_at: Option<Instant>,
}

impl Expiry {
    fn expired(&self, p: &Pending) -> bool {
        p.deadline <= self.checked && self.reference_read_at.is_some_and(|at| p.deadline <= at)
    }
}

/// What the stamper needs next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Every authorization has its outcome: [`Stamper::finish`].
    Done,
    /// The stored windows of (user, product) from before `at` are needed:
    /// read them into the state, then [`Stamper::run`] again.
    OlderWindows {
        user_id: String,
        product: String,
        at: DateTime<Utc>,
    },
}

/// The outcome of a batch's authorizations.
#[derive(Default)]
pub(crate) struct Stamped {
    /// Stamped, in order: to be stored.
    pub(crate) stored: Vec<(Pending, Stamp)>,
    /// Held back, in order: they wait for the next batch.
    pub(crate) held: Vec<Pending>,
    pub(crate) letters: Vec<DeadLetter>,
    pub(crate) offline: u64,
    pub(crate) late_windows: u64,
    /// Stored with one of several teams holding the product.
    pub(crate) ambiguous_teams: u64,
}

/// An authorization with its team, waiting for its charge.
struct Resolved {
    pending: Pending,
    team_id: String,
    source: TeamSource,
    ambiguous: bool,
}

/// Stamps a queue of authorizations.
pub(crate) struct Stamper<'t> {
    queue: std::vec::IntoIter<Pending>,
    expiry: Expiry,
    topics: &'t TopicNames,
    /// (user, product) pairs with an earlier event held back: their later
    /// events wait behind it, so each pair is charged in its own order.
    blocked: FastSet<(String, String)>,
    /// The authorization whose older windows were asked for.
    waiting: Option<Resolved>,
    out: Stamped,
}

impl<'t> Stamper<'t> {
    pub(crate) fn new(queue: Vec<Pending>, expiry: Expiry, topics: &'t TopicNames) -> Stamper<'t> {
        // Most of the queue is stored: its room taken once, not grown
        // (doubling left a batch's rows in two buffers at once).
        let out = Stamped {
            stored: Vec::with_capacity(queue.len()),
            ..Stamped::default()
        };
        Stamper {
            queue: queue.into_iter(),
            expiry,
            topics,
            blocked: FastSet::default(),
            waiting: None,
            out,
        }
    }

    /// Stamps what is left of the queue against `enrichment`, until done or
    /// until an event needs older windows.
    pub(crate) fn run(&mut self, enrichment: &mut Enrichment) -> Step {
        if let Some(resolved) = self.waiting.take() {
            // Its older windows are read now: judged again, for good.
            let charge = enrichment
                .charges
                .charge(resolved.pending.auth(), &enrichment.rates);
            self.settle(enrichment, resolved, charge);
        }
        while let Some(p) = self.queue.next() {
            let a = p.auth();
            if !a.online {
                self.out.offline += 1;
                continue;
            }
            let pair = || (a.user_id.to_owned(), a.product.to_owned());
            // (Rarely non-empty: only build the key when there is something to look up.)
            if !self.blocked.is_empty() && self.blocked.contains(&pair()) {
                self.out.held.push(p);
                continue;
            }
            let resolution = enrichment.assignments().resolve(a);
            let ambiguous = matches!(resolution, Resolution::Ambiguous { .. });
            let Some(team) = resolution.team() else {
                if !self.expiry.expired(&p) {
                    self.blocked.insert(pair());
                    self.out.held.push(p);
                } else {
                    let error = ValidationError::at(
                        Reason::UnresolvedTeam,
                        "team_id",
                        format!(
                            "no team holds {} ({}) for user {} at {}, and the event names none",
                            a.product,
                            a.access.as_str(),
                            a.user_id,
                            usage_core::event::format_timestamp(&a.occurred_at)
                        ),
                    );
                    self.out.letters.push(p.dead_letter(self.topics, &error));
                }
                continue;
            };
            let (team_id, source) = (team.team_id.to_owned(), team.source);
            let charge = enrichment.charges.charge(a, &enrichment.rates);
            let resolved = Resolved {
                pending: p,
                team_id,
                source,
                ambiguous,
            };
            if charge == Charge::BeyondHorizon {
                // Older than the windows held in memory: its history is read
                // from ClickHouse further back, then it is judged again.
                let auth = resolved.pending.auth();
                let step = Step::OlderWindows {
                    user_id: auth.user_id.to_owned(),
                    product: auth.product.to_owned(),
                    at: auth.occurred_at,
                };
                self.waiting = Some(resolved);
                return step;
            }
            self.settle(enrichment, resolved, charge);
        }
        Step::Done
    }

    /// The outcome (once [`Stamper::run`] said [`Step::Done`]).
    pub(crate) fn finish(self) -> Stamped {
        self.out
    }

    /// Stores, holds back or dead-letters a resolved authorization by its charge.
    fn settle(&mut self, enrichment: &mut Enrichment, resolved: Resolved, charge: Charge) {
        let Resolved {
            pending: p,
            team_id,
            source,
            ambiguous,
        } = resolved;
        let a = p.auth();
        let stamp = match charge {
            Charge::Charged {
                window_start,
                tokens,
                late,
            } => {
                self.out.late_windows += u64::from(late);
                Stamp {
                    team_id,
                    source,
                    window_start: Some(window_start),
                    tokens_milli: tokens.millis(),
                    opened_window: true,
                }
            }
            Charge::Free { window_start } => Stamp {
                team_id,
                source,
                window_start: Some(window_start),
                tokens_milli: 0,
                opened_window: false,
            },
            Charge::Seat | Charge::NotReported => Stamp {
                team_id,
                source,
                window_start: None,
                tokens_milli: 0,
                opened_window: false,
            },
            Charge::UnknownRate { .. } if !self.expiry.expired(&p) => {
                // The rate may still be on its way (the directory topic is
                // read concurrently): wait for it like for a late assignment.
                self.blocked
                    .insert((a.user_id.to_owned(), a.product.to_owned()));
                self.out.held.push(p);
                return;
            }
            Charge::UnknownRate { .. } | Charge::BeyondHorizon => {
                if let Charge::UnknownRate { window_start } = charge {
                    // Dead-lettered: it charges nothing, so it opens nothing.
                    enrichment.charges.forget_window(
                        a.user_id,
                        a.product,
                        window_start,
                        a.event_id,
                    );
                }
                let (reason, field, detail) = match charge {
                    Charge::UnknownRate { .. } => (
                        Reason::UnknownRate,
                        "product",
                        format!(
                            "no Flex token rate for {} is in force at {}",
                            a.product,
                            usage_core::event::format_timestamp(&a.occurred_at)
                        ),
                    ),
                    _ => (
                        Reason::BeyondHorizon,
                        "occurred_at",
                        "older than the Flex usage windows the pipeline holds for this user and product"
                            .to_owned(),
                    ),
                };
                let error = ValidationError::at(reason, field, detail);
                self.out.letters.push(p.dead_letter(self.topics, &error));
                return;
            }
        };
        self.out.ambiguous_teams += u64::from(ambiguous);
        self.out.stored.push((p, stamp));
    }
}

#[cfg(test)]
#[path = "stamper_tests.rs"]
mod tests;
