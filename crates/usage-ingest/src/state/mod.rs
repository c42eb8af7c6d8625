//! The state enrichment needs — assignment history, Flex rates, Flex windows —
//! kept in ClickHouse (the tables the ingest itself writes) and read from
//! there (by `stamp/loader.rs`) for the users a batch needs, into a cache
//! bounded by bytes (`--state-budget-mb`). Rates (one row per product and
//! rate change) are held whole.
//!
//! - A user's **assignment history** is read whole, by key (`assignment_events`
//!   is ordered by `user_id` first), the first time a batch needs it — for an
//!   authorization to stamp or an assignment key whose current state it
//!   writes — batched: one query per batch (per few thousand users) for all
//!   the users it misses. Assignment events decoded here are applied at once
//!   (to an incomplete entry if the user's history is not held yet: the
//!   history read then is applied first, those events after it). Events other
//!   instances store are followed (by `ingested_at`, as before) for the users
//!   held; a user not held is read whole when next needed.
//! - A (user, product)'s **Flex windows** are read as before: the windows that
//!   may cover the batch's earliest event, older ones on demand.
//! - What a batch decided that ClickHouse may not hold yet (assignment events
//!   decoded, windows opened) is also kept aside until the batch is stored
//!   ([`unwritten`]), and put back on top of anything read again meanwhile.
//! - After each batch the least recently used users (with their assignment
//!   facts and windows) are evicted until the state fits its budget.
//!
//! Why the stamps are those of a state that held everything: a user's history
//! read at `L` is every stored event of the user visible at `L`, a superset of
//! what an unbounded state would hold of that user from its reads before `L`
//! (rows are never removed), and the follows after `L` are the same reads; the
//! facts decoded here, and those of batches still being written, are applied
//! on top. So the facts held of a user when one of its authorizations is
//! stamped include every fact an unbounded state would hold — and only
//! differ from them by rows another process stored after the unbounded
//! state's last follow, which it would read at its next one. With the
//! assignments and authorizations of a user on the same partition number
//! (both keyed by `user_id`, one consumer group), no other process stores
//! facts of a user this instance stamps, and the sets are equal. The windows
//! are reloaded exactly as after a rebalance (docs/rules.md rule 4).
//!
//! There is no read of the whole history at start: only the rates and the
//! point from which to follow `assignment_events`.

pub(crate) mod cache;
pub(crate) mod metrics;
mod reads;
mod records;
mod unwritten;

use crate::stamp::stamper::Stamp;
use crate::stamp::Pending;
use cache::{CacheReport, Part, UserCache, UserEntry};
use chrono::{DateTime, Utc};
use unwritten::Unwritten;
use usage_core::charge::{ChargeConfig, ChargeState, RateTable, WindowRecord, WINDOW};
use usage_core::event::Assignment;
use usage_core::team::{Applied, AssignmentState};
use usage_core::FastSet;

/// What the stamper consults to stamp an authorization.
pub(crate) struct Enrichment {
    assignments: AssignmentState,
    pub(crate) rates: RateTable,
    pub(crate) charges: ChargeState,
    /// Which users (and pairs) the state holds, in eviction order.
    cache: UserCache,
    /// The facts of the batches not yet stored.
    unwritten: Unwritten,
    /// `ingested_at` (seconds) of the newest assignment event read from ClickHouse.
    assignments_read_until: u32,
}

impl Enrichment {
    /// An empty state that keeps everything it reads (tests).
    #[cfg(test)]
    pub(crate) fn new(charge_config: ChargeConfig) -> Enrichment {
        Enrichment::bounded(charge_config, None)
    }

    /// An empty state bounded by `budget` bytes (`None`: unbounded).
    pub(crate) fn bounded(charge_config: ChargeConfig, budget: Option<usize>) -> Enrichment {
        Enrichment {
            assignments: AssignmentState::new(),
            rates: RateTable::new(),
            charges: ChargeState::new(charge_config),
            cache: UserCache::new(budget),
            unwritten: Unwritten::default(),
            assignments_read_until: 0,
        }
    }

    /// The assignment history of the users held.
    pub(crate) fn assignments(&self) -> &AssignmentState {
        &self.assignments
    }

    /// A batch starts; returns its number (for [`Enrichment::stored`]).
    pub(crate) fn begin_batch(&mut self) -> u64 {
        self.cache.begin_batch()
    }

    /// An assignment event decoded from the topic (it is being stored by
    /// the current batch).
    pub(crate) fn apply_assignment(&mut self, a: &Assignment) -> Applied {
        self.unwritten.assignment(self.cache.batch(), a);
        self.cache.entry(&a.user_id).holds_product(&a.product);
        self.assignments.apply(a)
    }

    /// A stored assignment event read by a follow: applied when the user's
    /// history is held (otherwise the user's next read gets it).
    fn followed(&mut self, a: &Assignment) -> bool {
        match self.cache.changed(&a.user_id) {
            Some(entry) if entry.complete => {
                entry.holds_product(&a.product);
                self.assignments.apply(a) == Applied::New
            }
            _ => false,
        }
    }

    /// Of `users`, those whose stored history must be read (each once);
    /// the others are marked used.
    pub(crate) fn users_to_read<'a>(
        &mut self,
        users: impl Iterator<Item = &'a str>,
    ) -> Vec<&'a str> {
        let mut seen: FastSet<&str> = FastSet::default();
        let mut missing = Vec::new();
        for user in users {
            if !seen.insert(user) {
                continue;
            }
            let hit = self.cache.get(user).is_some_and(|e| e.complete);
            self.cache.looked_up(Part::Assignments, hit);
            if hit {
                self.cache.entry(user);
            } else {
                missing.push(user);
            }
        }
        // Room for them first, from users this batch does not use.
        let evicted = self.cache.make_room(missing.len());
        self.forget(evicted);
        missing
    }

    /// The stored history of `user` was read: it replaces the facts held,
    /// and the facts of the batches not yet stored are applied after it
    /// ([`Enrichment::history_started`], [`Enrichment::history_fact`] for
    /// each stored fact, [`Enrichment::history_done`]).
    #[cfg(test)]
    pub(crate) fn history_read(&mut self, user: &str, stored: &[Assignment]) {
        self.history_started(user);
        for a in stored {
            self.history_fact(a);
        }
        self.history_done(user);
    }

    /// A read of `user`'s stored history begins: the facts held of them
    /// are dropped (the read brings them all again).
    pub(crate) fn history_started(&mut self, user: &str) {
        let entry = self.cache.entry(user);
        for product in std::mem::take(&mut entry.products) {
            self.assignments.forget_pair(user, &product);
        }
        entry.complete = false;
    }

    /// One stored fact of a history being read (after
    /// [`Enrichment::history_started`] for its user): applied as it comes,
    /// so a read holds one row at a time, not the batch's histories.
    pub(crate) fn history_fact(&mut self, fact: &Assignment) {
        self.assignments.apply(fact);
        self.cache.entry(&fact.user_id).holds_product(&fact.product);
    }

    /// Every stored fact of `user` was read: the facts of the batches not
    /// yet stored are applied after them, and the history is complete.
    pub(crate) fn history_done(&mut self, user: &str) {
        let mut products: Vec<&str> = Vec::new();
        for a in self.unwritten.assignments_of(user) {
            self.assignments.apply(a);
            if !products.contains(&a.product.as_str()) {
                products.push(&a.product);
            }
        }
        let entry = self.cache.entry(user);
        for product in products {
            entry.holds_product(product);
        }
        entry.complete = true;
    }

    /// Of the (user, product, earliest use) `keys`, those whose windows
    /// must be read: not held, or not from far enough back (24 hours before
    /// the earliest use).
    pub(crate) fn windows_to_read<'k, 'a>(
        &mut self,
        keys: &'k [(&'a str, &'a str, DateTime<Utc>)],
    ) -> Vec<&'k (&'a str, &'a str, DateTime<Utc>)> {
        let mut wanted = Vec::new();
        for key in keys {
            let (user, product, first_use) = *key;
            let from = self.cache.get(user).and_then(|e| e.windows_from(product));
            let hit = from.is_some_and(|from| first_use - WINDOW >= from);
            self.cache.looked_up(Part::FlexWindows, hit);
            self.cache.entry(user);
            if !hit {
                wanted.push(key);
            }
        }
        wanted
    }

    /// The stored windows of (user, product) starting at or after `from`
    /// were read: they (and those of batches not yet stored) are restored,
    /// and the pair's history is known from `from`.
    pub(crate) fn windows_read(
        &mut self,
        user: &str,
        product: &str,
        from: DateTime<Utc>,
        stored: impl IntoIterator<Item = WindowRecord>,
    ) -> usize {
        let mut restored = 0;
        for w in stored {
            self.charges.restore(user, product, &w);
            restored += 1;
        }
        for w in self.unwritten.windows_of(user, product) {
            self.charges.restore(user, product, w);
        }
        self.charges.extend_history(user, product, from);
        self.cache.entry(user).set_windows_from(product, from);
        restored
    }

    /// The windows of (user, product) must be read again from further back.
    pub(crate) fn windows_outdated(&mut self, user: &str, product: &str) {
        if let Some(entry) = self.cache.changed(user) {
            entry.drop_windows(product);
        }
    }

    /// Forgets the Flex windows (after a rebalance: the partitions, and so the
    /// users, this instance owns may have changed hands).
    pub(crate) fn forget_windows(&mut self) {
        self.charges = ChargeState::new(self.charges.config());
        for (_, entry) in self.cache.entries_mut() {
            entry.windows.clear();
        }
    }

    /// The windows the current batch opened (stored with its rows).
    pub(crate) fn windows_opened(&mut self, stored: &[(Pending, Stamp)]) {
        let batch = self.cache.batch();
        for (p, stamp) in stored {
            if let (true, Some(start)) = (stamp.opened_window, stamp.window_start) {
                let a = p.auth();
                let window = WindowRecord {
                    start,
                    opened_by: a.event_id.to_owned(),
                    tokens: Some(usage_core::event::Tokens::from_millis(stamp.tokens_milli)),
                    late: false,
                };
                self.unwritten.window(batch, a.user_id, a.product, window);
            }
        }
    }

    /// Every batch up to `batch` is stored in ClickHouse.
    pub(crate) fn stored(&mut self, batch: u64) {
        self.unwritten.stored(batch);
    }

    /// The batch is stamped: the bytes of what it used are counted, the
    /// least recently used users evicted down to the budget. Returns the
    /// counters for the metrics.
    pub(crate) fn end_batch(&mut self) -> CacheReport {
        let (assignments, charges) = (&self.assignments, &self.charges);
        let counted: Vec<(Box<str>, usize)> = self
            .cache
            .dirty()
            .map(|(user, entry)| {
                let held = entry
                    .products
                    .iter()
                    .map(|p| assignments.pair_bytes(user, p))
                    .chain(
                        entry
                            .windows
                            .iter()
                            .map(|(p, _)| charges.pair_bytes(user, p)),
                    )
                    .sum();
                (Box::from(user), held)
            })
            .collect();
        for (user, held) in counted {
            self.cache.count_bytes(&user, held);
        }
        let evicted = self.cache.evict();
        self.forget(evicted);
        self.cache.report()
    }

    /// Drops the state of users evicted from the cache.
    fn forget(&mut self, evicted: Vec<(Box<str>, UserEntry)>) {
        for (user, entry) in evicted {
            for product in &entry.products {
                self.assignments.forget_pair(&user, product);
            }
            for (product, _) in &entry.windows {
                self.charges.forget_pair(&user, product);
            }
        }
    }

    /// Batches whose facts are kept until they are stored.
    pub(crate) fn unwritten_batches(&self) -> usize {
        self.unwritten.len()
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
