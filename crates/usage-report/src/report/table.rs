//! A filter set's lines, compact: what the four aggregates of ClickHouse
//! say of each (current team, user, product, access), joined, with its
//! status for the range, and nothing else.
//!
//! A line is a few integers: its team, user and product are indices into
//! the table's sorted lists — teams and products by name, users by the key
//! they are shown and ordered by (the keyed hash when identities are
//! hashed, else the id) — so comparing indices compares the strings, and a
//! table holds 32 bytes per line, each string once and, when identities
//! are hashed, each user's hash as its 32 bytes (hex only for the lines
//! shown). Requests filter, order and page indices; only the lines shown
//! become strings ([`super::rows`]).

use std::cmp::Ordering;
use std::hash::BuildHasher;

use chrono::{NaiveDate, TimeZone, Utc};
use hashbrown::HashTable;
use usage_core::event::Access;
use usage_core::privacy::{HexDigest, UserDigest};
use usage_core::range::DateRange;
use usage_core::status::{self, Held, Status};
use usage_core::FastMap;

use super::{access_of, day};
use crate::error::ApiError;
#[cfg(test)]
use crate::queries::{DaysRow, HeldRow, LastAccessRow, TokensRow};

/// One line: (current team, user, product, access) and what the
/// warehouse says of it, in 32 bytes (dates as days since 1970, as
/// ClickHouse sends them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Entry {
    /// Tokens of the windows starting in the range (thousandths).
    pub(super) tokens_milli: u64,
    /// Index into the table's users ([`Table::user_at`]).
    pub(super) user: u32,
    /// Index into [`Table::teams`].
    pub(super) team: u32,
    /// Index into [`Table::products`].
    pub(super) product: u32,
    /// Days used in the range.
    pub(super) days: u32,
    /// Assigned now, since (orders as the date does: `None` first).
    pub(super) since: Option<u16>,
    /// Last day used, ever; 0: never (orders as the date does).
    pub(super) last: u16,
    pub(super) access: Access,
    pub(super) status: Status,
}

const _: () = assert!(std::mem::size_of::<Entry>() == 32);

impl Entry {
    /// Last day used, ever.
    pub(super) fn last(&self) -> Option<NaiveDate> {
        (self.last > 0).then(|| day(self.last))
    }

    /// Assigned now, since.
    pub(super) fn since(&self) -> Option<NaiveDate> {
        self.since.map(day)
    }
}

/// A user of the table: the id, and the keyed hash it is shown (and
/// ordered) by when identities are hashed.
#[derive(Debug, Clone, Copy)]
pub(super) struct User<'a> {
    pub(super) id: &'a str,
    hash: Option<&'a UserDigest>,
}

/// The key a user is shown by: the id, or the hash's hex.
pub(super) enum UserKey<'a> {
    Id(&'a str),
    Hash(HexDigest),
}

impl std::ops::Deref for UserKey<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            UserKey::Id(id) => id,
            UserKey::Hash(hex) => hex,
        }
    }
}

impl<'a> User<'a> {
    /// The key the user is shown and ordered by.
    pub(super) fn key(&self) -> UserKey<'a> {
        match self.hash {
            Some(h) => UserKey::Hash(h.hex()),
            None => UserKey::Id(self.id),
        }
    }
}

/// The lines of a filter set, in (user key, team, product, access) order.
#[derive(Debug, Default)]
pub(super) struct Table {
    /// Sorted by name.
    pub(super) teams: Vec<String>,
    /// Sorted by name.
    pub(super) products: Vec<String>,
    /// User ids, sorted by key, then id.
    ids: Vec<Box<str>>,
    /// Their keyed hashes, by the same index, when identities are hashed
    /// (else empty): bytes, not hex, which orders alike.
    digests: Vec<UserDigest>,
    /// User indices in id order (to find a user by id); empty when the
    /// key is the id (then `ids` is in id order).
    by_id: Vec<u32>,
    pub(super) lines: Vec<Entry>,
}

/// The aggregates of one filter set as owned rows (the tests' input).
#[cfg(test)]
#[derive(Debug, Default)]
pub(super) struct Aggregates {
    pub(super) days: Vec<DaysRow>,
    pub(super) last: Vec<LastAccessRow>,
    pub(super) tokens: Vec<TokensRow>,
    pub(super) held: Vec<HeldRow>,
}

/// Strings to dense indices, in first-seen order: each string once, and
/// a hash table of indices into them (4 bytes a slot, not a map's copy).
#[derive(Default)]
struct Interner {
    names: Vec<Box<str>>,
    index: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
}

impl Interner {
    /// The index of `name` if it was seen.
    fn get(&self, name: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(name);
        self.index
            .find(hash, |&i| *self.names[i as usize] == *name)
            .copied()
    }

    fn of(&mut self, name: &str) -> u32 {
        let hash = self.hasher.hash_one(name);
        let Interner {
            names,
            index,
            hasher,
        } = self;
        if let Some(&i) = index.find(hash, |&i| *names[i as usize] == *name) {
            return i;
        }
        let i = u32::try_from(names.len()).unwrap_or(u32::MAX);
        names.push(name.into());
        index.insert_unique(hash, i, |&j| hasher.hash_one(&*names[j as usize]));
        i
    }

    /// The strings, by index.
    fn into_names(self) -> Vec<Box<str>> {
        self.names
    }
}

/// The indices whose `used` is set, ordered by `cmp`.
fn order_used(used: &[bool], cmp: impl Fn(u32, u32) -> Ordering) -> Vec<u32> {
    let mut order: Vec<u32> = (0..used.len() as u32)
        .filter(|&i| used[i as usize])
        .collect();
    order.sort_unstable_by(|&a, &b| cmp(a, b));
    order
}

/// Old index -> new index of `order` among `len` (`u32::MAX`: not in it).
fn new_of(order: &[u32], len: usize) -> Vec<u32> {
    let mut new_of = vec![u32::MAX; len];
    for (new, &old) in order.iter().enumerate() {
        new_of[old as usize] = new as u32;
    }
    new_of
}

/// `items` at the indices of `order`, in that order (each taken once).
fn take_in_order<T>(items: Vec<T>, order: &[u32]) -> Vec<T> {
    let mut slots: Vec<Option<T>> = items.into_iter().map(Some).collect();
    let mut taken = Vec::with_capacity(order.len());
    taken.extend(order.iter().filter_map(|&old| slots[old as usize].take()));
    taken
}

/// The `used` ones of `names`, sorted: `(them, old index -> new index)`.
fn sorted_names(names: Vec<Box<str>>, used: &[bool]) -> (Vec<String>, Vec<u32>) {
    let order = order_used(used, |a, b| names[a as usize].cmp(&names[b as usize]));
    let sorted = take_in_order(names, &order)
        .into_iter()
        .map(String::from)
        .collect();
    (sorted, new_of(&order, used.len()))
}

#[derive(Default)]
struct Agg {
    tokens_milli: u64,
    days: u32,
    /// Assigned now, since (days since 1970).
    since: Option<u16>,
    /// Last day used, ever (days since 1970; 0: none).
    last: u16,
}

/// (team, user, product, access), interned.
type Key = (u32, u32, u32, Access);

/// A table in the making: the aggregates' rows fed one at a time, in any
/// order, as ClickHouse streams them (borrowed strings: each distinct one
/// is copied once) — but last access after the others: a key with a last
/// access and nothing else makes no line, so only the keys the others made
/// are kept (there are more keys ever used than lines in any range; not
/// holding them halves the builder's memory).
#[derive(Default)]
pub(super) struct TableBuilder {
    teams: Interner,
    users: Interner,
    products: Interner,
    aggs: FastMap<Key, Agg>,
}

impl TableBuilder {
    fn key(&mut self, team: &str, user: &str, product: &str, access: Access) -> Key {
        (
            self.teams.of(team),
            self.users.of(user),
            self.products.of(product),
            access,
        )
    }

    /// Days used in the range (a `days` row).
    pub(super) fn days(
        &mut self,
        team: &str,
        user: &str,
        product: &str,
        access: &str,
        days: u64,
    ) -> Result<(), ApiError> {
        let key = self.key(team, user, product, access_of(access)?);
        self.aggs.entry(key).or_default().days = u32::try_from(days).unwrap_or(u32::MAX);
        Ok(())
    }

    /// Tokens of the Flex windows starting in the range (a `tokens` row).
    pub(super) fn tokens(&mut self, team: &str, user: &str, product: &str, tokens_milli: u64) {
        let key = self.key(team, user, product, Access::Flex);
        self.aggs.entry(key).or_default().tokens_milli = tokens_milli;
    }

    /// Assigned now, since (a `held` row).
    pub(super) fn held(
        &mut self,
        team: &str,
        user: &str,
        product: &str,
        access: &str,
        since_day: u16,
    ) -> Result<(), ApiError> {
        let key = self.key(team, user, product, access_of(access)?);
        self.aggs.entry(key).or_default().since = Some(since_day);
        Ok(())
    }

    /// Last day used, ever (a `last_access` row), of a key the other
    /// aggregates made (fed after them).
    pub(super) fn last(
        &mut self,
        team: &str,
        user: &str,
        product: &str,
        access: &str,
        last_day: u16,
    ) -> Result<(), ApiError> {
        let access = access_of(access)?;
        let (Some(t), Some(u), Some(p)) = (
            self.teams.get(team),
            self.users.get(user),
            self.products.get(product),
        ) else {
            return Ok(());
        };
        if let Some(a) = self.aggs.get_mut(&(t, u, p, access)) {
            a.last = last_day;
        }
        Ok(())
    }

    /// Joins what was fed by (current team, user, product, access): only
    /// keys assigned now or used in the range stay, with their last access
    /// (ever) filled in and their status for `dates`; strings no line uses
    /// are dropped. `hashed(teams)` says whether identities are hashed given
    /// the teams of the lines kept; `hash(user_id)` is the keyed hash a
    /// user is shown by when they are.
    pub(super) fn finish(
        self,
        dates: &DateRange,
        hashed: impl FnOnce(&mut dyn Iterator<Item = &str>) -> bool,
        hash: impl Fn(&str) -> UserDigest,
    ) -> (Table, bool) {
        let TableBuilder {
            teams,
            users,
            products,
            mut aggs,
        } = self;
        // Last access alone never makes a line.
        aggs.retain(|_, a| a.since.is_some() || a.days > 0);
        let (teams, products, ids) = (
            teams.into_names(),
            products.into_names(),
            users.into_names(),
        );
        let (mut team_used, mut product_used, mut user_used) = (
            vec![false; teams.len()],
            vec![false; products.len()],
            vec![false; ids.len()],
        );
        for &(t, u, p, _) in aggs.keys() {
            team_used[t as usize] = true;
            user_used[u as usize] = true;
            product_used[p as usize] = true;
        }
        let hashed = hashed(
            &mut (0..teams.len())
                .filter(|&t| team_used[t])
                .map(|t| &*teams[t]),
        );
        let (teams, team_of) = sorted_names(teams, &team_used);
        let (products, product_of) = sorted_names(products, &product_used);
        let (ids, digests, by_id, user_of) = if hashed {
            // Each used user's hash, once, then ordered by it.
            let mut keyed: Vec<(UserDigest, u32)> = (0..ids.len() as u32)
                .filter(|&u| user_used[u as usize])
                .map(|u| (hash(&ids[u as usize]), u))
                .collect();
            keyed
                .sort_unstable_by(|a, b| (a.0, &ids[a.1 as usize]).cmp(&(b.0, &ids[b.1 as usize])));
            let order: Vec<u32> = keyed.iter().map(|&(_, u)| u).collect();
            let digests: Vec<UserDigest> = keyed.into_iter().map(|(d, _)| d).collect();
            let user_of = new_of(&order, ids.len());
            let ids = take_in_order(ids, &order);
            let mut by_id: Vec<u32> = (0..ids.len() as u32).collect();
            by_id.sort_unstable_by(|&a, &b| ids[a as usize].cmp(&ids[b as usize]));
            (ids, digests, by_id, user_of)
        } else {
            let order = order_used(&user_used, |a, b| ids[a as usize].cmp(&ids[b as usize]));
            let user_of = new_of(&order, ids.len());
            (take_in_order(ids, &order), Vec::new(), Vec::new(), user_of)
        };

        let mut lines: Vec<Entry> = Vec::with_capacity(aggs.len());
        lines.extend(aggs.into_iter().filter_map(|(key, a)| {
            let (t, u, p, access) = key;
            let held = a.since.map(|since| Held {
                access,
                since: Utc.from_utc_datetime(&day(since).and_time(chrono::NaiveTime::MIN)),
            });
            let days = a.days;
            let status = status::status(held, days > 0, dates)?;
            Some(Entry {
                tokens_milli: a.tokens_milli,
                user: user_of[u as usize],
                team: team_of[t as usize],
                product: product_of[p as usize],
                days,
                since: a.since,
                last: a.last,
                access,
                status,
            })
        }));
        lines.sort_unstable_by_key(|e| (e.user, e.team, e.product, e.access));
        (
            Table {
                teams,
                products,
                ids,
                digests,
                by_id,
                lines,
            },
            hashed,
        )
    }
}

impl Table {
    /// [`TableBuilder`] fed `aggregates` (owned rows).
    #[cfg(test)]
    pub(super) fn build(
        aggregates: Aggregates,
        dates: &DateRange,
        hashed: impl FnOnce(&mut dyn Iterator<Item = &str>) -> bool,
        hash: impl Fn(&str) -> UserDigest,
    ) -> Result<(Table, bool), ApiError> {
        let mut b = TableBuilder::default();
        for r in &aggregates.days {
            b.days(&r.team, &r.user_id, &r.product, &r.access, r.days)?;
        }
        for r in &aggregates.tokens {
            b.tokens(&r.team, &r.user_id, &r.product, r.tokens_milli);
        }
        for r in &aggregates.held {
            b.held(&r.team, &r.user_id, &r.product, &r.access, r.since_day)?;
        }
        for r in &aggregates.last {
            b.last(&r.team, &r.user_id, &r.product, &r.access, r.last_day)?;
        }
        Ok(b.finish(dates, hashed, hash))
    }

    /// The index of the user `id`.
    pub(super) fn user_index(&self, id: &str) -> Option<u32> {
        if self.by_id.is_empty() {
            return self
                .ids
                .binary_search_by(|i| (**i).cmp(id))
                .ok()
                .map(|i| i as u32);
        }
        self.by_id
            .binary_search_by(|&i| (*self.ids[i as usize]).cmp(id))
            .ok()
            .map(|at| self.by_id[at])
    }

    /// The user of index `u`.
    pub(super) fn user_at(&self, u: u32) -> User<'_> {
        let u = u as usize;
        User {
            id: &self.ids[u],
            hash: self.digests.get(u),
        }
    }

    /// How many users the table has.
    pub(super) fn user_count(&self) -> usize {
        self.ids.len()
    }

    /// The index of the team `team`.
    pub(super) fn team_index(&self, team: &str) -> Option<u32> {
        self.teams
            .binary_search_by(|t| t.as_str().cmp(team))
            .ok()
            .map(|i| i as u32)
    }

    pub(super) fn team(&self, e: &Entry) -> &str {
        &self.teams[e.team as usize]
    }

    pub(super) fn product(&self, e: &Entry) -> &str {
        &self.products[e.product as usize]
    }

    pub(super) fn user(&self, e: &Entry) -> User<'_> {
        self.user_at(e.user)
    }

    /// About how many bytes the table holds (the cache's bound).
    pub(super) fn bytes(&self) -> usize {
        let names = |names: &[String]| names.iter().map(|n| n.len() + 24).sum::<usize>();
        names(&self.teams)
            + names(&self.products)
            + self.ids.iter().map(|id| id.len() + 16).sum::<usize>()
            + self.digests.len() * std::mem::size_of::<UserDigest>()
            + self.by_id.len() * 4
            + self.lines.len() * std::mem::size_of::<Entry>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use usage_core::privacy::UserHasher;

    fn days(team: &str, user: &str, product: &str, access: &str, days: u64) -> DaysRow {
        DaysRow {
            team: team.into(),
            user_id: user.into(),
            product: product.into(),
            access: access.into(),
            days,
        }
    }

    fn held(team: &str, user: &str, product: &str, access: &str, since: u16) -> HeldRow {
        HeldRow {
            team: team.into(),
            user_id: user.into(),
            product: product.into(),
            access: access.into(),
            since_day: since,
        }
    }

    fn range() -> DateRange {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
        DateRange::new(d("2026-01-01"), d("2026-01-31")).expect("range")
    }

    #[test]
    fn joins_by_line_orders_indices_like_strings_and_drops_lines_without_status() {
        let aggregates = Aggregates {
            days: vec![
                days("t-b", "zed", "p2", "seat", 3),
                days("t-a", "amy", "p1", "flex", 2),
            ],
            last: vec![
                LastAccessRow {
                    team: "t-b".into(),
                    user_id: "zed".into(),
                    product: "p2".into(),
                    access: "seat".into(),
                    last_day: 20_000,
                },
                // Last access of a line neither held nor used in the range: no line.
                LastAccessRow {
                    team: "t-c".into(),
                    user_id: "old".into(),
                    product: "p1".into(),
                    access: "seat".into(),
                    last_day: 19_000,
                },
            ],
            tokens: vec![TokensRow {
                team: "t-a".into(),
                user_id: "amy".into(),
                product: "p1".into(),
                tokens_milli: 7_500,
            }],
            held: vec![
                held("t-b", "zed", "p2", "seat", 19_500),
                held("t-a", "bob", "p1", "seat", 20_400),
            ],
        };
        let (table, hashed) =
            Table::build(aggregates, &range(), |_| false, |id| hasher().digest(id)).expect("build");
        assert!(!hashed);
        assert_eq!(table.teams, ["t-a", "t-b"]);
        assert_eq!(table.products, ["p1", "p2"]);
        let keys: Vec<String> = (0..table.user_count() as u32)
            .map(|u| table.user_at(u).key().to_string())
            .collect();
        assert_eq!(keys, ["amy", "bob", "zed"]);
        assert_eq!(table.lines.len(), 3);
        let zed = table.user_index("zed").expect("zed");
        let line = table
            .lines
            .iter()
            .find(|e| e.user == zed)
            .expect("zed's line");
        assert_eq!((table.team(line), table.product(line)), ("t-b", "p2"));
        assert_eq!(line.days, 3);
        assert_eq!(line.status, Status::Active);
        assert_eq!(line.last(), Some(day(20_000)));
        assert_eq!(line.since(), Some(day(19_500)));
        let amy = table.user_index("amy").expect("amy");
        let amy = table.lines.iter().find(|e| e.user == amy).expect("amy");
        assert_eq!((amy.status, amy.tokens_milli), (Status::Unassigned, 7_500));
        assert!(table.user_index("old").is_none());
        assert_eq!(table.team_index("t-b"), Some(1));
    }

    #[test]
    fn hashed_users_are_ordered_by_their_hash() {
        let ids = ["a", "b", "c", "d", "e", "f"];
        let aggregates = Aggregates {
            days: ids.iter().map(|id| days("t", id, "p", "seat", 1)).collect(),
            ..Aggregates::default()
        };
        let hasher = hasher();
        let (table, hashed) =
            Table::build(aggregates, &range(), |_| true, |id| hasher.digest(id)).expect("build");
        assert!(hashed);
        let shown: Vec<(String, String)> = (0..table.user_count() as u32)
            .map(|u| {
                let user = table.user_at(u);
                (user.id.to_owned(), user.key().to_string())
            })
            .collect();
        // Shown by the hash's hex, in its order (not the ids').
        let mut expected: Vec<(String, String)> = ids
            .iter()
            .map(|id| (id.to_string(), hasher.hash(id)))
            .collect();
        expected.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(shown, expected);
        assert_ne!(
            expected.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
            ids,
            "the test's ids are not already in hash order"
        );
        for id in ids {
            let u = table.user_index(id).expect("found by id");
            assert_eq!(table.user_at(u).id, id);
        }
        let first = table.user_index(&expected[0].0).expect("first");
        assert_eq!(table.lines[0].user, first, "lines in key order");
    }

    fn hasher() -> UserHasher {
        UserHasher::new(b"0123456789abcdef0123456789abcdef").expect("32-byte secret")
    }
}
