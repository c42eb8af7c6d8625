//! Stamping a batch: raw Kafka messages in, encoded ClickHouse rows, dead
//! letters and held-back authorizations out. All the domain decisions are
//! the core's (`usage_core`); this module routes messages, keeps the
//! enrichment state current and holds authorizations whose team (or Flex
//! rate) is not known yet. In four steps, only one of which does I/O:
//!
//! 1. [`decode`]: decode every message, refusing the ones whose timestamps
//!    ClickHouse cannot store ([`storable`]); apply the assignment and
//!    directory facts to the enrichment state and encode their rows;
//! 2. [`loader`]: read from ClickHouse what the batch's authorizations need
//!    (assignments and rates other instances wrote, the assignment history
//!    of the users the state does not hold, the Flex windows that may cover
//!    them), each read retried until ClickHouse answers;
//! 3. [`stamper`]: stamp each authorization with its team and Flex charge,
//!    hold it back, or dead-letter it (pure; it asks the loader for a pair's
//!    older windows when an out-of-order event needs them);
//! 4. [`encode`]: the rows of the stamped authorizations, their windows and
//!    days, and the current assignment of every key the batch touched; then
//!    the state is brought back within its byte budget (`crate::state`).
//!
//! Within a batch, assignment and directory events are applied before any
//! authorization is stamped: team resolution and rates are functions of the
//! *set* of facts (by event time), so knowing more facts earlier only makes
//! more authorizations resolvable, never changes a resolved one.

pub(crate) mod decode;
pub(crate) mod encode;
pub(crate) mod loader;
pub(crate) mod pending;
pub(crate) mod stamper;
pub(crate) mod storable;

use crate::dlq::{DeadLetter, DeadLetterPolicy, PolicyTripped};
use crate::message::{RawMessage, Topic, TopicNames};
use crate::retry::Wait;
use crate::rows::Tables;
use crate::sink::TableRows;
use crate::state::Enrichment;
use chrono::{DateTime, SubsecRound, Utc};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use usage_core::validate::{Limits, ValidationError};
use usage_store::schema::Unstorable;
use usage_store::StoreError;

use encode::StateVersions;
use loader::Loader;
pub(crate) use pending::Pending;
use stamper::{Expiry, Stamper, Step};

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
    /// The batch's number: once it is stored, tell [`Stamping::stored`].
    pub(crate) state_batch: u64,
}

/// Why stamping stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StampError {
    #[error(transparent)]
    Policy(#[from] PolicyTripped),
    #[error("reading enrichment state from ClickHouse: {0}")]
    State(#[from] StoreError),
    /// A value that valid input cannot produce (the events' own timestamps
    /// were checked: those are dead letters) and ClickHouse cannot store.
    #[error("a row cannot be stored: {0}")]
    Unstorable(#[from] Unstorable),
}

/// Settings of the stamping.
#[derive(Debug, Clone)]
pub(crate) struct StampSettings {
    pub(crate) limits: Limits,
    /// How long an authorization whose team is unknown waits for late assignment data.
    pub(crate) unresolved_hold: Duration,
    /// The threads that decode authorizations and encode their rows.
    pub(crate) workers: crate::workers::Workers,
}

/// The stamping stage: the enrichment state, the authorizations held back,
/// the dead-letter policy, and the loader that keeps the state current.
pub(crate) struct Stamping {
    settings: StampSettings,
    topics: TopicNames,
    enrichment: Enrichment,
    pending: Vec<Pending>,
    policy: DeadLetterPolicy,
    /// Versions of the `assignment_state` rows this process writes.
    state_versions: StateVersions,
    loader: Loader,
}

impl Stamping {
    pub(crate) fn new(
        settings: StampSettings,
        topics: TopicNames,
        enrichment: Enrichment,
        policy: DeadLetterPolicy,
        loader: Loader,
    ) -> Stamping {
        Stamping {
            settings,
            topics,
            enrichment,
            pending: Vec::new(),
            policy,
            state_versions: StateVersions::default(),
            loader,
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
            let e = floor.entry(p.partition).or_insert(p.offset);
            *e = (*e).min(p.offset);
        }
        floor
    }

    /// After a rebalance: drop what belonged to partitions this instance lost
    /// (their new owner re-reads them from the last commit) and reload the
    /// Flex windows lazily, since the users this instance serves changed.
    pub(crate) fn partitions_revoked(&mut self, revoked: &[(Topic, i32)]) {
        self.pending
            .retain(|p| !revoked.contains(&(Topic::Authorizations, p.partition)));
        self.enrichment.forget_windows();
    }

    /// Every batch up to `state_batch` (of [`Prepared`]) is stored: the
    /// state no longer keeps their facts aside.
    pub(crate) fn stored(&mut self, state_batch: u64) {
        self.enrichment.stored(state_batch);
    }

    /// Reads assignments and rates other instances wrote, now (once).
    pub(crate) async fn refresh(&mut self) -> Result<(), StoreError> {
        self.loader.refresh(&mut self.enrichment).await
    }

    /// Turns a batch of messages (in consumption order) into rows and dead
    /// letters. `reference_read_at`: an instant at which every assignment and
    /// directory message the broker held is known to be read (in this batch
    /// or an earlier one), if there is one. A held-back authorization whose
    /// hold ran out is dead-lettered only when that instant is past its
    /// deadline: a hold that ran out while the broker was unreachable waits
    /// for the data published meanwhile. `hold_usage`: stamp nothing (every
    /// authorization, of the batch or held back, waits for the next batch).
    /// `waiter`: what to do between two attempts to read from ClickHouse.
    pub(crate) async fn process(
        &mut self,
        batch: Vec<RawMessage>,
        reference_read_at: Option<Instant>,
        hold_usage: bool,
        waiter: &mut impl Wait,
    ) -> Result<Prepared, StampError> {
        let now = Utc::now();
        let ingested_at = now.trunc_subsecs(0);
        let mut tables = Tables::default();
        let state_batch = self.enrichment.begin_batch();

        // 1. Decode everything; apply assignment and directory facts.
        let decoder = decode::Decoder {
            limits: &self.settings.limits,
            unresolved_hold: self.settings.unresolved_hold,
            topics: &self.topics,
            workers: self.settings.workers,
        };
        let decoded = decoder.decode(
            batch,
            &mut self.enrichment,
            &mut self.policy,
            &mut tables,
            now,
            ingested_at,
        )?;

        // Held-back authorizations first (they are older), then this batch's.
        // Events held back wait for data another instance may have stored.
        let following = !self.pending.is_empty() && !hold_usage;
        let queue = if hold_usage {
            // A batch of reference data only, while usage waits for the rest
            // of it: nothing is stamped.
            self.pending.extend(decoded.authorizations);
            Vec::new()
        } else {
            let mut queue = std::mem::take(&mut self.pending);
            queue.extend(decoded.authorizations);
            queue
        };

        // 2. What the stamping needs from ClickHouse.
        let touched = decoded.touched.keys().map(|(_, user, _, _)| user.as_str());
        self.loader
            .load(&mut self.enrichment, &queue, touched, following, waiter)
            .await?;

        // 3. Stamp (asking for older Flex windows when an event needs them).
        let expiry = Expiry {
            checked: Instant::now(),
            reference_read_at,
        };
        let mut stamper = Stamper::new(queue, expiry, &self.topics);
        while let Step::OlderWindows {
            user_id,
            product,
            at,
        } = stamper.run(&mut self.enrichment)
        {
            self.loader
                .older_windows(&mut self.enrichment, &user_id, &product, at, waiter)
                .await?;
        }
        let stamped = stamper.finish();
        self.enrichment.windows_opened(&stamped.stored);
        self.pending.extend(stamped.held);

        // 4. Encode the facts, the windows and the day-level rollup, and the
        // current assignment of every key this batch touched.
        let oldest_authorization = encode::authorizations(
            &mut tables,
            &stamped.stored,
            ingested_at,
            &self.settings.workers,
        )?;
        encode::assignment_states(
            &mut tables,
            self.enrichment.assignments(),
            &decoded.touched,
            self.state_versions.next(now)?,
        )?;
        // What the batch used counted; the least recently used evicted.
        let cache = self.enrichment.end_batch();
        self.loader
            .report(&cache, self.enrichment.unwritten_batches());

        let mut letters = decoded.letters;
        letters.extend(stamped.letters);
        Ok(Prepared {
            tables: tables.finish(),
            letters,
            oldest_authorization,
            offline: stamped.offline,
            late_windows: stamped.late_windows,
            ambiguous_teams: stamped.ambiguous_teams,
            state_batch,
        })
    }
}

/// The `now` the stamping tests decode their messages at.
#[cfg(test)]
pub(crate) fn tests_now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z")
        .expect("a timestamp")
        .with_timezone(&Utc)
}

/// The dead letter of `raw`, refused for `error`.
fn dead_letter(topics: &TopicNames, raw: &RawMessage, error: &ValidationError) -> DeadLetter {
    DeadLetter {
        source_topic: topics.name(raw.topic).to_owned(),
        partition: raw.partition,
        offset: raw.offset,
        key: raw.key.clone(),
        payload: raw.payload.clone(),
        reason: error.reason.as_str(),
        field: error.field.clone(),
        error: error.to_string(),
    }
}
