//! Batch processing: raw Kafka messages in, encoded ClickHouse rows and dead
//! letters out. All the domain decisions are the core's (`usage_core`); this
//! module only routes messages, keeps the enrichment state current and holds
//! authorizations whose team is not known yet.
//!
//! Within a batch, assignment and directory events are applied before any
//! authorization is stamped: team resolution and rates are functions of the
//! *set* of facts (by event time), so knowing more facts earlier only makes
//! more authorizations resolvable, never changes a resolved one.

use crate::dlq::{DeadLetter, DeadLetterPolicy, PolicyTripped};
use crate::message::{RawMessage, Topic, TopicNames};
use crate::metrics::{Metrics, Request};
use crate::retry::{retry_with, RetryPolicy, UnlessStopped};
use crate::rowbinary::{micros, RowBinary};
use crate::rows;
use crate::sink::{Table, TableRows};
use crate::state::Enrichment;
use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use usage_core::charge::Charge;
use usage_core::event::{Access, Authorization, DirectoryChange};
use usage_core::team::{Resolution, TeamSource};
use usage_core::usage::usage_date;
use usage_core::validate::{
    decode_assignment, decode_authorization, decode_directory, Limits, Reason, ValidationError,
};
use usage_core::{FastMap, FastSet};
use usage_store::{StoreError, Warehouse};

/// What the processor does while a read of enrichment state waits to be
/// retried (ClickHouse down): the pipeline keeps the consumer polled, its
/// partitions paused, so the group keeps this member however long it lasts.
pub(crate) use crate::retry::Wait as Waiter;

/// An authorization waiting for the assignment that explains it.
struct Pending {
    auth: Authorization,
    raw: RawMessage,
    deadline: Instant,
}

/// What one batch turned into.
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    pub(crate) tables: Vec<TableRows>,
    pub(crate) letters: Vec<DeadLetter>,
    /// `occurred_at` of the oldest authorization stored by this batch (freshness).
    pub(crate) oldest_authorization: Option<DateTime<Utc>>,
    pub(crate) offline: u64,
    pub(crate) late_windows: u64,
    /// Authorizations stamped with one of several teams holding the product.
    pub(crate) ambiguous_teams: u64,
}

/// Why processing stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProcessError {
    #[error(transparent)]
    Policy(#[from] PolicyTripped),
    #[error("reading enrichment state from ClickHouse: {0}")]
    State(#[from] StoreError),
}

/// Settings of the processor.
#[derive(Debug, Clone)]
pub(crate) struct ProcessorSettings {
    pub(crate) limits: Limits,
    /// How long an authorization whose team is unknown waits for late assignment data.
    pub(crate) unresolved_hold: Duration,
    /// How often assignment data written by other instances is read again.
    pub(crate) follow_interval: Duration,
    /// Backoff between attempts to read state from ClickHouse.
    pub(crate) retry: RetryPolicy,
}

pub(crate) struct Processor {
    settings: ProcessorSettings,
    topics: TopicNames,
    enrichment: Enrichment,
    pending: Vec<Pending>,
    policy: DeadLetterPolicy,
    last_follow: Instant,
    /// Versions of the `assignment_state` rows this process writes.
    state_versions: StateVersions,
    reads: Reads,
}

/// Reads of enrichment state from ClickHouse, each retried with backoff
/// until it answers: a ClickHouse outage slows the pipeline down, it does
/// not stop it. Given up on (an error) only once the process is told to
/// abandon its work.
struct Reads {
    retry: RetryPolicy,
    /// Turns true when the process abandons its work (drain timeout).
    stop: watch::Receiver<bool>,
    metrics: Metrics,
}

impl Reads {
    /// Reads `what` from `table` (its label in the metrics) into `enrichment`.
    async fn retry<'e, T, Fut>(
        &self,
        what: &str,
        table: &str,
        waiter: &mut impl Waiter,
        enrichment: &'e mut Enrichment,
        read: impl FnMut(&'e mut Enrichment, u32) -> Fut,
    ) -> Result<T, ProcessError>
    where
        Fut: std::future::Future<Output = (&'e mut Enrichment, Result<T, StoreError>)>,
    {
        let mut wait = UnlessStopped {
            stop: &self.stop,
            inner: waiter,
        };
        retry_with(
            self.retry,
            &mut wait,
            enrichment,
            read,
            |error, attempt, delay| {
                self.metrics.clickhouse_error(Request::Read, table);
                tracing::warn!(
                    %error,
                    attempt,
                    retry_in_ms = delay.as_millis() as u64,
                    "reading {what} from ClickHouse failed; retrying"
                );
            },
        )
        .await
        .map_err(ProcessError::State)
    }

    /// One attempt to read from `table`, its failure counted.
    async fn once<T>(
        &self,
        table: &str,
        read: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let result = read.await;
        if result.is_err() {
            self.metrics.clickhouse_error(Request::Read, table);
        }
        result
    }
}

/// The stamps of one authorization.
struct Stamp {
    team_id: String,
    source: TeamSource,
    window_start: Option<DateTime<Utc>>,
    tokens_milli: u64,
    opened_window: bool,
}

impl Processor {
    pub(crate) fn new(
        settings: ProcessorSettings,
        topics: TopicNames,
        enrichment: Enrichment,
        policy: DeadLetterPolicy,
        stop: watch::Receiver<bool>,
        metrics: Metrics,
    ) -> Processor {
        Processor {
            topics,
            enrichment,
            pending: Vec::new(),
            policy,
            last_follow: Instant::now(),
            reads: Reads {
                retry: settings.retry,
                stop,
                metrics,
            },
            settings,
            state_versions: StateVersions::default(),
        }
    }

    /// Authorizations held back, waiting for their team.
    pub(crate) fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Per authorizations partition, the lowest offset still held back: the
    /// commit of that partition must not pass it.
    pub(crate) fn pending_floor(&self) -> HashMap<i32, i64> {
        let mut floor: HashMap<i32, i64> = HashMap::new();
        for p in &self.pending {
            let e = floor.entry(p.raw.partition).or_insert(p.raw.offset);
            *e = (*e).min(p.raw.offset);
        }
        floor
    }

    /// After a rebalance: drop what belonged to partitions this instance lost
    /// (their new owner re-reads them from the last commit) and reload the
    /// Flex windows lazily, since the users this instance serves changed.
    pub(crate) fn partitions_revoked(&mut self, revoked: &[(Topic, i32)]) {
        self.pending
            .retain(|p| !revoked.contains(&(Topic::Authorizations, p.raw.partition)));
        self.enrichment.forget_windows();
    }

    /// Reads assignments and rates other instances wrote, now (once).
    pub(crate) async fn refresh(&mut self, warehouse: &Warehouse) -> Result<(), StoreError> {
        let follow = self.enrichment.follow_assignments(warehouse);
        self.reads
            .once(rows::ASSIGNMENT_EVENTS.name, follow)
            .await?;
        let rates = self.enrichment.reload_rates(warehouse);
        self.reads.once(rows::PRODUCT_RATES.name, rates).await?;
        self.last_follow = Instant::now();
        Ok(())
    }

    fn letter(&self, raw: &RawMessage, error: &ValidationError) -> DeadLetter {
        DeadLetter {
            source_topic: self.topics.name(raw.topic).to_owned(),
            partition: raw.partition,
            offset: raw.offset,
            key: raw.key.clone(),
            payload: raw.payload.clone(),
            reason: error.reason.as_str(),
            field: error.field.clone(),
            error: error.to_string(),
        }
    }

    /// Turns a batch of messages (in consumption order) into rows and dead
    /// letters. `reference_read_at`: an instant at which every assignment and
    /// directory message the broker held is known to be read (in this batch
    /// or an earlier one), if there is one. A held-back authorization whose
    /// hold ran out is dead-lettered only when that instant is past its
    /// deadline: a hold that ran out while the broker was unreachable waits
    /// for the data published meanwhile. `hold_usage`: stamp nothing (every
    /// authorization, of the batch or held back, waits for the next batch).
    pub(crate) async fn process(
        &mut self,
        batch: Vec<RawMessage>,
        warehouse: &Warehouse,
        reference_read_at: Option<Instant>,
        hold_usage: bool,
        waiter: &mut impl Waiter,
    ) -> Result<Prepared, ProcessError> {
        let now = Utc::now();
        let ingested_at = now.trunc_subsecs(0);
        let mut out = Prepared::default();
        let mut tables = Tables::default();

        // 1. Decode everything; apply assignment and directory facts.
        let mut authorizations = Vec::new();
        let mut touched_assignments = BTreeMap::new();
        for raw in batch {
            let decoded = match raw.topic {
                Topic::Authorizations => {
                    decode_authorization(&raw.payload, &self.settings.limits, now).map(Some)
                }
                Topic::Assignments => decode_assignment(&raw.payload, &self.settings.limits, now)
                    .map(|a| {
                        self.enrichment.assignments.apply(&a);
                        rows::assignment_event(
                            tables.get(rows::ASSIGNMENT_EVENTS),
                            &a,
                            ingested_at,
                        );
                        let key = (
                            a.team_id.clone(),
                            a.user_id.clone(),
                            a.product.clone(),
                            a.access,
                        );
                        touched_assignments.insert(key, a.via);
                        None
                    }),
                Topic::Directory => {
                    decode_directory(&raw.payload, &self.settings.limits, now).map(|d| {
                        let at = d.occurred_at;
                        match &d.change {
                            DirectoryChange::UserProfile(p) => {
                                rows::user_profile(tables.get(rows::USER_PROFILES), p, at)
                            }
                            DirectoryChange::Team(t) => rows::team(tables.get(rows::TEAMS), t, at),
                            DirectoryChange::GroupMembership(g) => {
                                rows::group_membership(tables.get(rows::GROUP_MEMBERSHIPS), g, at)
                            }
                            DirectoryChange::TeamMerge(m) => {
                                rows::team_merge(tables.get(rows::TEAM_MERGES), &d.event_id, at, m)
                            }
                            DirectoryChange::ProductRate(r) => {
                                self.enrichment.rates.apply(&d.event_id, at, r);
                                rows::product_rate(
                                    tables.get(rows::PRODUCT_RATES),
                                    &d.event_id,
                                    at,
                                    r,
                                )
                            }
                        }
                        None
                    })
                }
            };
            self.policy.record(decoded.is_ok())?;
            match decoded {
                Ok(Some(auth)) => authorizations.push(Pending {
                    auth,
                    raw,
                    deadline: Instant::now() + self.settings.unresolved_hold,
                }),
                Ok(None) => {}
                Err(error) => out.letters.push(self.letter(&raw, &error)),
            }
        }

        // 2. Held-back authorizations first (they are older), then this batch's.
        // Events held back wait for data another instance may have stored.
        let waiting = !self.pending.is_empty() && !hold_usage;
        let queue = if hold_usage {
            // A batch of reference data only, while usage waits for the rest
            // of it: nothing is stamped.
            self.pending.extend(authorizations);
            Vec::new()
        } else {
            let mut queue = std::mem::take(&mut self.pending);
            queue.extend(authorizations);
            queue
        };
        if waiting && self.last_follow.elapsed() >= self.settings.follow_interval {
            self.reads
                .retry(
                    "assignments",
                    rows::ASSIGNMENT_EVENTS.name,
                    waiter,
                    &mut self.enrichment,
                    |enrichment, _| async move {
                        let read = enrichment.follow_assignments(warehouse).await;
                        (enrichment, read)
                    },
                )
                .await?;
            self.reads
                .retry(
                    "rates",
                    rows::PRODUCT_RATES.name,
                    waiter,
                    &mut self.enrichment,
                    |enrichment, _| async move {
                        let read = enrichment.reload_rates(warehouse).await;
                        (enrichment, read)
                    },
                )
                .await?;
            self.last_follow = Instant::now();
        }

        // 3. The Flex windows that may cover these events.
        let mut first_use: FastMap<(&str, &str), DateTime<Utc>> = FastMap::default();
        for p in queue
            .iter()
            .filter(|p| p.auth.online && p.auth.access == Access::Flex)
        {
            let e = first_use
                .entry((p.auth.user_id.as_str(), p.auth.product.as_str()))
                .or_insert(p.auth.occurred_at);
            *e = (*e).min(p.auth.occurred_at);
        }
        let keys: Vec<(&str, &str, DateTime<Utc>)> =
            first_use.into_iter().map(|((u, p), t)| (u, p, t)).collect();
        let keys = &keys;
        self.reads
            .retry(
                "Flex windows",
                rows::FLEX_WINDOWS.name,
                waiter,
                &mut self.enrichment,
                |enrichment, _| async move {
                    let read = enrichment.load_windows(warehouse, keys).await;
                    (enrichment, read)
                },
            )
            .await?;

        // 4. Stamp.
        let checked = Instant::now();
        let expired = |p: &Pending| {
            p.deadline <= checked && reference_read_at.is_some_and(|at| p.deadline <= at)
        };
        let mut stored: Vec<(Pending, Stamp)> = Vec::with_capacity(queue.len());
        // (user, product) pairs with an earlier event held back: their later
        // events wait behind it, so each pair is charged in its own order.
        let mut blocked: FastSet<(String, String)> = FastSet::default();
        for p in queue {
            if !p.auth.online {
                out.offline += 1;
                continue;
            }
            let pair = || (p.auth.user_id.clone(), p.auth.product.clone());
            // (Rarely non-empty: only build the key when there is something to look up.)
            if !blocked.is_empty() && blocked.contains(&pair()) {
                self.pending.push(p);
                continue;
            }
            let resolution = self.enrichment.assignments.resolve(&p.auth);
            let ambiguous = matches!(resolution, Resolution::Ambiguous { .. });
            let Some(team) = resolution.team() else {
                if !expired(&p) {
                    blocked.insert(pair());
                    self.pending.push(p);
                } else {
                    let error = ValidationError::at(
                        Reason::UnresolvedTeam,
                        "team_id",
                        format!(
                            "no team holds {} ({}) for user {} at {}, and the event names none",
                            p.auth.product,
                            p.auth.access.as_str(),
                            p.auth.user_id,
                            usage_core::event::format_timestamp(&p.auth.occurred_at)
                        ),
                    );
                    out.letters.push(self.letter(&p.raw, &error));
                }
                continue;
            };
            let (team_id, source) = (team.team_id.to_owned(), team.source);
            let mut charge = self
                .enrichment
                .charges
                .charge(&p.auth, &self.enrichment.rates);
            if charge == Charge::BeyondHorizon {
                // Older than the windows held in memory: read its history from
                // ClickHouse further back, then judge it again.
                let (user, product, at) = (
                    p.auth.user_id.as_str(),
                    p.auth.product.as_str(),
                    p.auth.occurred_at,
                );
                self.reads
                    .retry(
                        "older Flex windows",
                        rows::FLEX_WINDOWS.name,
                        waiter,
                        &mut self.enrichment,
                        |enrichment, _| async move {
                            let read = enrichment
                                .reload_windows(warehouse, user, product, at)
                                .await;
                            (enrichment, read)
                        },
                    )
                    .await?;
                charge = self
                    .enrichment
                    .charges
                    .charge(&p.auth, &self.enrichment.rates);
            }
            let stamp = match charge {
                Charge::Charged {
                    window_start,
                    tokens,
                    late,
                } => {
                    out.late_windows += u64::from(late);
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
                Charge::UnknownRate { .. } if !expired(&p) => {
                    // The rate may still be on its way (the directory topic is
                    // read concurrently): wait for it like for a late assignment.
                    blocked.insert(pair());
                    self.pending.push(p);
                    continue;
                }
                Charge::UnknownRate { .. } | Charge::BeyondHorizon => {
                    if let Charge::UnknownRate { window_start } = charge {
                        // Dead-lettered: it charges nothing, so it opens nothing.
                        self.enrichment.charges.forget_window(
                            &p.auth.user_id,
                            &p.auth.product,
                            window_start,
                            &p.auth.event_id,
                        );
                    }
                    let (reason, field, detail) = match charge {
                        Charge::UnknownRate { .. } => (
                            Reason::UnknownRate,
                            "product",
                            format!(
                                "no Flex token rate for {} is in force at {}",
                                p.auth.product,
                                usage_core::event::format_timestamp(&p.auth.occurred_at)
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
                    out.letters.push(self.letter(&p.raw, &error));
                    continue;
                }
            };
            out.ambiguous_teams += u64::from(ambiguous);
            stored.push((p, stamp));
        }

        // 5. Encode the facts, the windows and the day-level rollup (deduplicated per batch).
        let mut days: FastSet<(&str, &str, &str, Access, NaiveDate)> = FastSet::default();
        for (p, stamp) in &stored {
            let a = &p.auth;
            let day = usage_date(a.occurred_at);
            out.oldest_authorization = Some(
                out.oldest_authorization
                    .map_or(a.occurred_at, |o| o.min(a.occurred_at)),
            );
            rows::FactRow {
                event_id: &a.event_id,
                occurred_at: a.occurred_at,
                usage_date: day,
                team_id: &stamp.team_id,
                team_source: stamp.source,
                user_id: &a.user_id,
                product: &a.product,
                product_version: a.product_version.as_deref().unwrap_or(""),
                access: a.access,
                machine_id: a.machine_id.as_deref().unwrap_or(""),
                window_start: stamp.window_start,
                tokens_milli: stamp.tokens_milli,
                partition: p.raw.partition,
                offset: p.raw.offset,
                ingested_at,
            }
            .encode(tables.get(rows::AUTHORIZATIONS));
            if stamp.opened_window {
                if let Some(start) = stamp.window_start {
                    rows::flex_window(
                        tables.get(rows::FLEX_WINDOWS),
                        &a.user_id,
                        &a.product,
                        start,
                        &stamp.team_id,
                        &a.event_id,
                        stamp.tokens_milli,
                    );
                }
            }
            if days.insert((&stamp.team_id, &a.user_id, &a.product, a.access, day)) {
                rows::daily_usage(
                    tables.get(rows::DAILY_USAGE),
                    &stamp.team_id,
                    &a.user_id,
                    &a.product,
                    a.access,
                    day,
                );
            }
        }

        // 6. The current assignment of every key this batch touched, under a
        // version above every earlier batch's (two batches in one second
        // must not tie: readers keep the highest version).
        let latest = DateTime::<Utc>::MAX_UTC;
        let version = self.state_versions.next(now);
        for ((team_id, user_id, product, access), via) in &touched_assignments {
            let current = self
                .enrichment
                .assignments
                .current_assignment(team_id, user_id, product, *access, latest);
            rows::assignment_state(
                tables.get(rows::ASSIGNMENT_STATE),
                team_id,
                user_id,
                product,
                *access,
                current,
                *via,
                version,
            );
        }

        out.tables = tables.finish();
        Ok(out)
    }
}

/// Versions of `assignment_state` rows: the wall clock in microseconds,
/// strictly increasing within a process even when batches follow each other
/// within a microsecond or the clock steps back. A key's newest state is
/// computed from the most complete history, so the highest version is the
/// one readers must keep (`argMax(.., version)`, `ReplacingMergeTree(version)`).
/// The rows of one key are written by the instance that owns its assignments
/// partition, which after a rebalance is a later writer.
#[derive(Debug, Default)]
struct StateVersions {
    last: u64,
}

impl StateVersions {
    fn next(&mut self, now: DateTime<Utc>) -> u64 {
        self.last = micros(now).max(self.last.saturating_add(1));
        self.last
    }
}

/// The rows of one batch, per table.
#[derive(Default)]
struct Tables(BTreeMap<&'static str, (Table, RowBinary)>);

impl Tables {
    fn get(&mut self, table: Table) -> &mut RowBinary {
        &mut self
            .0
            .entry(table.name)
            .or_insert_with(|| (table, RowBinary::default()))
            .1
    }

    /// The encoded tables, in the order they are written ([`rows::ALL`]).
    fn finish(mut self) -> Vec<TableRows> {
        rows::ALL
            .iter()
            .filter_map(|t| self.0.remove(t.name))
            .map(|(table, rb)| TableRows {
                table,
                rows: rb.rows(),
                data: rb.into_bytes(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn state_versions_increase_within_one_second_and_when_the_clock_steps_back() {
        let mut versions = StateVersions::default();
        let t = Utc
            .timestamp_opt(1_795_931_568, 0)
            .single()
            .expect("a valid instant");
        let first = versions.next(t);
        assert_eq!(first, micros(t));
        let second = versions.next(t);
        let third = versions.next(t - chrono::TimeDelta::seconds(3));
        assert!(first < second && second < third, "{first} {second} {third}");
        let later = t + chrono::TimeDelta::seconds(1);
        assert_eq!(versions.next(later), micros(later));
    }
}
