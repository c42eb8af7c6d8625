//! The bookkeeping of the bounded enrichment state: per user, whether its
//! stored assignment history is held, which of its (user, product) pairs the
//! state holds (assignments, Flex windows and from when), the bytes they
//! take, and when it was last used; the users in least-recently-used order;
//! the counters the metrics report. Pure: what an eviction drops from the
//! state is the caller's ([`crate::state::Enrichment`]).

use chrono::{DateTime, Utc};
use std::collections::VecDeque;
use usage_core::FastMap;

/// How many bytes the enrichment state may take (`--state-budget-mb`): a
/// number of MiB (0: nothing is kept between batches), or `unbounded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StateBudget(Option<usize>);

impl StateBudget {
    /// The largest budget accepted, in MiB (1 TiB).
    const MAX_MB: usize = 1 << 20;

    /// The budget in bytes (`None`: unbounded).
    pub(crate) fn bytes(self) -> Option<usize> {
        self.0
    }
}

impl std::str::FromStr for StateBudget {
    type Err = String;

    fn from_str(s: &str) -> Result<StateBudget, String> {
        if s.trim().eq_ignore_ascii_case("unbounded") {
            return Ok(StateBudget(None));
        }
        let mb: usize = s
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is neither a number of MiB nor `unbounded`"))?;
        if mb > Self::MAX_MB {
            return Err(format!("{mb} MiB is more than {} MiB", Self::MAX_MB));
        }
        Ok(StateBudget(Some(mb << 20)))
    }
}

impl std::fmt::Display for StateBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(bytes) => write!(f, "{}", bytes >> 20),
            None => f.write_str("unbounded"),
        }
    }
}

/// Which part of the state a lookup was for (the `state` label of the
/// cache's hit and miss counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// A user's assignment history.
    Assignments,
    /// A (user, product)'s Flex windows.
    FlexWindows,
}

impl Part {
    pub(crate) const ALL: [Part; 2] = [Part::Assignments, Part::FlexWindows];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Part::Assignments => "assignments",
            Part::FlexWindows => "flex_windows",
        }
    }

    fn index(self) -> usize {
        match self {
            Part::Assignments => 0,
            Part::FlexWindows => 1,
        }
    }
}

/// What the state holds of one user.
#[derive(Debug, Default)]
pub(crate) struct UserEntry {
    /// The user's stored assignment history was read (and everything since
    /// applied). Otherwise only facts decoded here are held: the history
    /// must be read before the user's usage is stamped.
    pub(crate) complete: bool,
    /// Products of which assignment facts are held.
    pub(crate) products: Vec<Box<str>>,
    /// Products whose Flex windows are held, each with the instant from
    /// which every stored window is.
    pub(crate) windows: Vec<(Box<str>, DateTime<Utc>)>,
    /// Estimated heap bytes of the entry and of what it holds.
    bytes: usize,
    /// The batch that last used it.
    used: u64,
    /// Used since its bytes were last counted.
    dirty: bool,
}

impl UserEntry {
    /// Records that assignment facts of `product` are held.
    pub(crate) fn holds_product(&mut self, product: &str) {
        if !self.products.iter().any(|p| **p == *product) {
            self.products.push(product.into());
        }
    }

    /// From when the windows of `product` are held, if they are.
    pub(crate) fn windows_from(&self, product: &str) -> Option<DateTime<Utc>> {
        self.windows
            .iter()
            .find(|(p, _)| **p == *product)
            .map(|(_, from)| *from)
    }

    /// Records that the windows of `product` are held from `from`.
    pub(crate) fn set_windows_from(&mut self, product: &str, from: DateTime<Utc>) {
        match self.windows.iter_mut().find(|(p, _)| **p == *product) {
            Some(held) => held.1 = from,
            None => self.windows.push((product.into(), from)),
        }
    }

    /// Forgets that the windows of `product` are held.
    pub(crate) fn drop_windows(&mut self, product: &str) {
        self.windows.retain(|(p, _)| **p != *product);
    }

    /// The bytes of the entry itself: its map slot and key, its lists, and
    /// its place in the eviction order.
    fn own_bytes(&self, user: &str) -> usize {
        use usage_core::alloc_bytes;
        let boxed = |s: &str| alloc_bytes(s.len());
        (std::mem::size_of::<(Box<str>, UserEntry)>() + 1) * 3 / 2
            + 2 * boxed(user)
            + std::mem::size_of::<(u64, Box<str>)>()
            + alloc_bytes(self.products.capacity() * std::mem::size_of::<Box<str>>())
            + self.products.iter().map(|p| boxed(p)).sum::<usize>()
            + alloc_bytes(
                self.windows.capacity() * std::mem::size_of::<(Box<str>, DateTime<Utc>)>(),
            )
            + self.windows.iter().map(|(p, _)| boxed(p)).sum::<usize>()
    }
}

/// Counters since the last report, and the totals now.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct CacheReport {
    pub(crate) entries: usize,
    pub(crate) bytes: usize,
    /// Per [`Part`]: lookups answered by the state.
    pub(crate) hits: [u64; 2],
    /// Per [`Part`]: lookups that had to read ClickHouse.
    pub(crate) misses: [u64; 2],
    pub(crate) evictions: u64,
}

impl CacheReport {
    pub(crate) fn hits(&self, part: Part) -> u64 {
        self.hits[part.index()]
    }

    pub(crate) fn misses(&self, part: Part) -> u64 {
        self.misses[part.index()]
    }
}

/// The users the state holds, in least-recently-used order, within a byte
/// budget.
#[derive(Debug, Default)]
pub(crate) struct UserCache {
    /// `None`: unbounded.
    budget: Option<usize>,
    users: FastMap<Box<str>, UserEntry>,
    /// (batch, user) each time a user is used in a batch, oldest first; an
    /// element whose batch is not the user's last use is stale (skipped).
    order: VecDeque<(u64, Box<str>)>,
    bytes: usize,
    batch: u64,
    counts: CacheReport,
}

impl UserCache {
    pub(crate) fn new(budget: Option<usize>) -> UserCache {
        UserCache {
            budget,
            ..UserCache::default()
        }
    }

    /// The batch being processed (its number, counted from 1).
    pub(crate) fn batch(&self) -> u64 {
        self.batch
    }

    /// A new batch starts: what it uses is the most recently used.
    pub(crate) fn begin_batch(&mut self) -> u64 {
        self.batch += 1;
        self.batch
    }

    pub(crate) fn get(&self, user: &str) -> Option<&UserEntry> {
        self.users.get(user)
    }

    /// The entry of `user`, made (incomplete, empty) if there is none;
    /// marked used by the current batch.
    pub(crate) fn entry(&mut self, user: &str) -> &mut UserEntry {
        let new = !self.users.contains_key(user);
        if new {
            self.users.insert(user.into(), UserEntry::default());
        }
        let batch = self.batch;
        let entry = self.users.get_mut(user).expect("inserted just above");
        if new || entry.used != batch {
            entry.used = batch;
            self.order.push_back((batch, user.into()));
        }
        entry.dirty = true;
        entry
    }

    /// The entry of `user`, if held, marked as changed (its bytes are
    /// counted again) without counting as a use.
    pub(crate) fn changed(&mut self, user: &str) -> Option<&mut UserEntry> {
        let entry = self.users.get_mut(user)?;
        entry.dirty = true;
        Some(entry)
    }

    /// Counts a lookup of `part` answered by the state (`hit`) or not.
    pub(crate) fn looked_up(&mut self, part: Part, hit: bool) {
        let counts = if hit {
            &mut self.counts.hits
        } else {
            &mut self.counts.misses
        };
        counts[part.index()] += 1;
    }

    /// Every entry, to change them all (a rebalance forgets the windows).
    pub(crate) fn entries_mut(&mut self) -> impl Iterator<Item = (&str, &mut UserEntry)> {
        self.users.iter_mut().map(|(user, entry)| {
            entry.dirty = true;
            (&**user, entry)
        })
    }

    /// The users whose bytes must be counted again, with their entries.
    pub(crate) fn dirty(&mut self) -> impl Iterator<Item = (&str, &mut UserEntry)> {
        self.users
            .iter_mut()
            .filter(|(_, e)| e.dirty)
            .map(|(user, entry)| (&**user, entry))
    }

    /// Counts `held` (what the entry's pairs take in the state) plus the
    /// entry's own bytes as the bytes of `user`.
    pub(crate) fn count_bytes(&mut self, user: &str, held: usize) {
        if let Some(entry) = self.users.get_mut(user) {
            let bytes = entry.own_bytes(user) + held;
            self.bytes = self.bytes - entry.bytes + bytes;
            entry.bytes = bytes;
            entry.dirty = false;
        }
    }

    /// Removes least recently used users until the bytes are within the
    /// budget; returns them, for their state to be dropped.
    pub(crate) fn evict(&mut self) -> Vec<(Box<str>, UserEntry)> {
        let evicted = match self.budget {
            Some(budget) => self.evict_down_to(budget, false),
            None => Vec::new(),
        };
        self.compact();
        evicted
    }

    /// Removes least recently used users until the bytes are at most
    /// `target`, or only users of the current batch are left when
    /// `spare_this_batch`; returns them.
    fn evict_down_to(
        &mut self,
        target: usize,
        spare_this_batch: bool,
    ) -> Vec<(Box<str>, UserEntry)> {
        let mut evicted = Vec::new();
        while self.bytes > target {
            let Some((batch, user)) = self.order.front().cloned() else {
                break;
            };
            if self.users.get(&user).is_none_or(|e| e.used != batch) {
                self.order.pop_front();
                continue;
            }
            if spare_this_batch && batch == self.batch {
                break;
            }
            self.order.pop_front();
            if let Some(entry) = self.users.remove(&user) {
                self.bytes -= entry.bytes;
                self.counts.evictions += 1;
                evicted.push((user, entry));
            }
        }
        evicted
    }

    /// Before a batch reads `incoming` users it does not hold: removes the
    /// least recently used users this batch has not used, until what is
    /// held plus `incoming` users of the average size fit the budget, so the
    /// state stays near its budget while the batch is stamped (not the
    /// budget plus every user the batch reads). Returns them, for their
    /// state to be dropped.
    pub(crate) fn make_room(&mut self, incoming: usize) -> Vec<(Box<str>, UserEntry)> {
        let (Some(budget), false) = (self.budget, self.users.is_empty()) else {
            return Vec::new();
        };
        let average = self.bytes / self.users.len();
        self.evict_down_to(
            budget.saturating_sub(incoming.saturating_mul(average)),
            true,
        )
    }

    /// Drops stale elements of the order once they outnumber the users.
    fn compact(&mut self) {
        if self.order.len() > 2 * self.users.len() + 1024 {
            let users = &self.users;
            self.order
                .retain(|(batch, user)| users.get(user).is_some_and(|e| e.used == *batch));
        }
    }

    /// The totals now and the counters since the last report (reset).
    pub(crate) fn report(&mut self) -> CacheReport {
        let mut report = std::mem::take(&mut self.counts);
        report.entries = self.users.len();
        report.bytes = self.bytes;
        report
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.bytes
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.users.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_are_mib_or_unbounded() {
        let parse = |s: &str| s.parse::<StateBudget>().map(StateBudget::bytes);
        assert_eq!(parse("64"), Ok(Some(64 << 20)));
        assert_eq!(parse("0"), Ok(Some(0)));
        assert_eq!(parse("unbounded"), Ok(None));
        assert!(parse("-1").is_err());
        assert!(parse("64MB").is_err());
        assert!(parse("2000000").is_err());
        assert_eq!(StateBudget(Some(64 << 20)).to_string(), "64");
    }

    fn used(cache: &mut UserCache, users: &[&str], held: usize) {
        cache.begin_batch();
        for u in users {
            cache.entry(u).complete = true;
            cache.count_bytes(u, held);
        }
    }

    #[test]
    fn the_least_recently_used_go_first_and_the_budget_holds() {
        let one = {
            let mut c = UserCache::new(None);
            used(&mut c, &["a"], 1000);
            c.bytes()
        };
        // Room for three users.
        let mut cache = UserCache::new(Some(3 * one + one / 2));
        used(&mut cache, &["a", "b", "c"], 1000);
        assert!(cache.evict().is_empty());
        used(&mut cache, &["a"], 1000);
        used(&mut cache, &["d"], 1000);
        let evicted: Vec<Box<str>> = cache.evict().into_iter().map(|(u, _)| u).collect();
        assert_eq!(
            evicted,
            vec![Box::from("b")],
            "b is the least recently used"
        );
        assert!(cache.bytes() <= 3 * one + one / 2);
        used(&mut cache, &["e", "f"], 1000);
        let evicted: Vec<Box<str>> = cache.evict().into_iter().map(|(u, _)| u).collect();
        assert_eq!(evicted, vec![Box::from("c"), Box::from("a")]);
        assert_eq!(cache.len(), 3);
        let report = cache.report();
        assert_eq!((report.entries, report.evictions), (3, 3));
        assert_eq!(cache.report().evictions, 0, "counters reset");
    }

    #[test]
    fn room_is_made_before_a_batch_reads_from_users_it_does_not_use() {
        let one = {
            let mut c = UserCache::new(None);
            used(&mut c, &["a"], 1000);
            c.bytes()
        };
        let mut cache = UserCache::new(Some(4 * one));
        used(&mut cache, &["a", "b", "c", "d"], 1000);
        assert!(cache.evict().is_empty());
        // The next batch uses c and will read two users it does not hold.
        cache.begin_batch();
        cache.entry("c");
        let evicted: Vec<Box<str>> = cache.make_room(2).into_iter().map(|(u, _)| u).collect();
        assert_eq!(evicted, vec![Box::from("a"), Box::from("b")]);
        assert!(cache.get("c").is_some() && cache.get("d").is_some());
        // Only this batch's users left: nothing more goes, whatever comes.
        let evicted: Vec<Box<str>> = cache.make_room(10).into_iter().map(|(u, _)| u).collect();
        assert_eq!(evicted, vec![Box::from("d")]);
        assert!(cache.make_room(10).is_empty(), "c is this batch's");
        assert!(cache.get("c").is_some());
        // Unbounded: never.
        let mut unbounded = UserCache::new(None);
        used(&mut unbounded, &["a"], 1000);
        unbounded.begin_batch();
        assert!(unbounded.make_room(1_000).is_empty());
    }

    #[test]
    fn a_zero_budget_keeps_nothing_after_a_batch_and_unbounded_keeps_everything() {
        let mut tiny = UserCache::new(Some(0));
        let mut all = UserCache::new(None);
        for round in 0..50 {
            let users: Vec<String> = (0..20)
                .map(|i| format!("u{}", (round * 7 + i) % 60))
                .collect();
            let users: Vec<&str> = users.iter().map(String::as_str).collect();
            used(&mut tiny, &users, 300);
            used(&mut all, &users, 300);
            tiny.evict();
            all.evict();
            assert_eq!((tiny.len(), tiny.bytes()), (0, 0));
        }
        assert_eq!(all.len(), 60);
        assert!(
            all.order.len() <= 2 * 60 + 1024,
            "stale elements are dropped"
        );
    }
}
