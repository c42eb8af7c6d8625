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

use std::hash::BuildHasher;

use chrono::{NaiveDate, TimeZone, Utc};
use hashbrown::HashTable;
use usage_core::event::Access;
use usage_core::privacy::{HexDigest, UserDigest};
use usage_core::range::DateRange;
use usage_core::status::{self, Held, Status};

use super::{access_of, day};
use crate::error::ApiError;
#[cfg(test)]
use crate::queries::{DaysRow, HeldRow, LastAccessRow, TokensRow};
#[cfg(test)]
use usage_store::schema::StoredEnum;

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

/// A source's row owned: user, team, product, access label, value (the
/// tests' input, in that order).
#[cfg(test)]
type OwnedRow = (String, String, String, String, u64);

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

/// `names` sorted: `(them, old index -> new index)`.
fn sorted_names(names: Vec<Box<str>>) -> (Vec<String>, Vec<u32>) {
    let mut order: Vec<u32> = (0..names.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| names[a as usize].cmp(&names[b as usize]));
    let new_of = new_of(&order, names.len());
    let sorted = take_in_order(names, &order)
        .into_iter()
        .map(String::from)
        .collect();
    (sorted, new_of)
}

/// The four aggregates a line is joined from, in the order their rows
/// are merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// Days used in the range (`days` rows).
    Days = 0,
    /// Tokens of the Flex windows starting in the range (`tokens` rows).
    Tokens = 1,
    /// Assigned now, since (`held` rows).
    Held = 2,
    /// Last day used, ever (`last_access` rows).
    Last = 3,
}

const SOURCES: [Source; 4] = [Source::Days, Source::Tokens, Source::Held, Source::Last];

/// A row of one of the aggregates, read in place: its line's key (the
/// access as its label) and its value.
#[derive(Debug, Clone, Copy)]
pub(super) struct Row<'a> {
    pub(super) user: &'a str,
    pub(super) team: &'a str,
    pub(super) product: &'a str,
    /// `seat` or `flex` (`tokens` rows: `flex`).
    pub(super) access: &'a str,
    /// Days, tokens (thousandths), the day assigned or the last day used,
    /// as the source says.
    pub(super) value: u64,
}

/// The current row of a source, its strings copied into buffers the
/// source keeps (no allocation per row once they are long enough).
#[derive(Default)]
struct Head {
    user: String,
    team: String,
    product: String,
    access: String,
    value: u64,
}

impl Head {
    fn key(&self) -> (&str, &str, &str, &str) {
        (&self.user, &self.team, &self.product, &self.access)
    }
}

/// A source's rows were not in line order.
#[derive(Debug, thiserror::Error)]
#[error("the report's aggregates came out of line order at user {user:?}, team {team:?}")]
struct OutOfOrder {
    user: String,
    team: String,
}

/// Where a source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Its next row is wanted.
    Wanted,
    /// Its current row is in the head.
    Ready,
    /// No rows left.
    Done,
}

/// A table in the making: the four aggregates' rows merged as ClickHouse
/// streams them, each sorted by line (user id, team, product, access
/// label; see [`crate::queries::RowsQuery`]). The builder says which
/// source it wants a row of next ([`TableBuilder::wanted`]), is given it
/// ([`TableBuilder::put`]), and when it has a row of every source that
/// has rows left, joins the smallest line ([`TableBuilder::merge`]).
/// No map of lines: each line is joined once, when its rows are all at
/// the heads, and becomes an [`Entry`] at once — a line used in the range
/// or assigned now, with its status for the range; a line with only a
/// last access (used before the range, not assigned) makes none. Users
/// come in id order, so each is kept once, in that order; teams and
/// products are interned and sorted at the end.
pub(super) struct TableBuilder {
    dates: DateRange,
    heads: [Head; 4],
    slots: [Slot; 4],
    /// The last line joined (the streams' order is checked, not trusted).
    previous: Head,
    /// Whether a line was joined yet.
    joined: bool,
    teams: Interner,
    products: Interner,
    /// User ids in id order (the lines' `user` indexes them).
    ids: Vec<Box<str>>,
    /// Lines, their `team` and `product` interned in first-seen order.
    lines: Vec<Entry>,
}

/// How many lines and users a table is expected to have (the last one of
/// its kind's), so its builder starts at about that size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Expected {
    pub(super) lines: usize,
    pub(super) users: usize,
}

impl Expected {
    /// About `n` and a sixteenth more (a few lines come and go).
    fn room(n: usize) -> usize {
        n.saturating_add(n / 16)
    }
}

impl TableBuilder {
    /// A builder of the lines of a report over `dates`, with room for the
    /// lines and users `expected`: a table as large as the last one of its
    /// kind is built without growing (no block twice its size, no copy to
    /// size at the end); a larger one grows as any vector does.
    pub(super) fn new(dates: &DateRange, expected: Expected) -> TableBuilder {
        TableBuilder {
            dates: *dates,
            heads: Default::default(),
            slots: [Slot::Wanted; 4],
            previous: Head::default(),
            joined: false,
            teams: Interner::default(),
            products: Interner::default(),
            ids: Vec::with_capacity(Expected::room(expected.users)),
            lines: Vec::with_capacity(Expected::room(expected.lines)),
        }
    }

    /// The source whose next row is wanted, if any.
    pub(super) fn wanted(&self) -> Option<Source> {
        SOURCES
            .into_iter()
            .find(|&s| self.slots[s as usize] == Slot::Wanted)
    }

    /// The next row of `source` (`None`: it has no more).
    pub(super) fn put(&mut self, source: Source, row: Option<Row<'_>>) {
        let i = source as usize;
        let Some(row) = row else {
            self.slots[i] = Slot::Done;
            return;
        };
        let head = &mut self.heads[i];
        for (buf, s) in [
            (&mut head.user, row.user),
            (&mut head.team, row.team),
            (&mut head.product, row.product),
            (&mut head.access, row.access),
        ] {
            buf.clear();
            buf.push_str(s);
        }
        head.value = row.value;
        self.slots[i] = Slot::Ready;
    }

    /// Joins the smallest line at the heads (every source must have its
    /// row or be done: call when [`TableBuilder::wanted`] is `None`).
    /// `Ok(false)`: every source is done. An error if a source's rows were
    /// not in line order (a line twice, or smaller than one joined).
    pub(super) fn merge(&mut self) -> Result<bool, ApiError> {
        let Some(min) = SOURCES
            .into_iter()
            .filter(|&s| self.slots[s as usize] == Slot::Ready)
            .min_by(|&a, &b| {
                self.heads[a as usize]
                    .key()
                    .cmp(&self.heads[b as usize].key())
            })
        else {
            return Ok(false);
        };
        let key = self.heads[min as usize].key();
        if self.joined && key <= self.previous.key() {
            return Err(ApiError::internal(&OutOfOrder {
                user: key.0.to_owned(),
                team: key.1.to_owned(),
            }));
        }
        let (mut days, mut tokens_milli, mut since, mut last) = (0u32, 0u64, None, 0u16);
        for s in SOURCES {
            let i = s as usize;
            if self.slots[i] != Slot::Ready || self.heads[i].key() != key {
                continue;
            }
            let value = self.heads[i].value;
            match s {
                Source::Days => days = u32::try_from(value).unwrap_or(u32::MAX),
                Source::Tokens => tokens_milli = value,
                Source::Held => since = Some(u16::try_from(value).unwrap_or(u16::MAX)),
                Source::Last => last = u16::try_from(value).unwrap_or(u16::MAX),
            }
            self.slots[i] = Slot::Wanted;
        }
        // The joined line's key, kept for the order check (swapped, not
        // copied: the head's buffers take the previous key's).
        std::mem::swap(&mut self.previous, &mut self.heads[min as usize]);
        self.joined = true;
        let access = access_of(&self.previous.access)?;
        let held = since.map(|since| Held {
            access,
            since: Utc.from_utc_datetime(&day(since).and_time(chrono::NaiveTime::MIN)),
        });
        let Some(status) = status::status(held, days > 0, &self.dates) else {
            return Ok(true);
        };
        if self.ids.last().is_none_or(|id| **id != *self.previous.user) {
            self.ids.push(self.previous.user.as_str().into());
        }
        let line = Entry {
            tokens_milli,
            user: (self.ids.len() - 1) as u32,
            team: self.teams.of(&self.previous.team),
            product: self.products.of(&self.previous.product),
            days,
            since,
            last,
            access,
            status,
        };
        self.lines.push(line);
        Ok(true)
    }

    /// The table of the lines joined: teams and products sorted by name,
    /// users by the key they are shown by, lines by (user, team, product,
    /// access). `hashed(teams)` says whether identities are hashed given
    /// the teams of the lines; `hash(user_id)` is the keyed hash a user is
    /// shown by when they are.
    pub(super) fn finish(
        self,
        hashed: impl FnOnce(&mut dyn Iterator<Item = &str>) -> bool,
        hash: impl Fn(&str) -> UserDigest,
    ) -> (Table, bool) {
        let TableBuilder {
            teams,
            products,
            ids,
            lines,
            ..
        } = self;
        // First, before the hashes and orders below are made beside them:
        // the lines and ids to their size.
        let (mut lines, ids) = (to_size(lines), to_size(ids));
        let (teams, products) = (teams.into_names(), products.into_names());
        let hashed = hashed(&mut teams.iter().map(|t| &**t));
        let (teams, team_of) = sorted_names(teams);
        let (products, product_of) = sorted_names(products);
        let (ids, digests, by_id) = if hashed {
            // Each user's hash, once, then ordered by it.
            let mut keyed: Vec<(UserDigest, u32)> = (0..ids.len() as u32)
                .map(|u| (hash(&ids[u as usize]), u))
                .collect();
            keyed
                .sort_unstable_by(|a, b| (a.0, &ids[a.1 as usize]).cmp(&(b.0, &ids[b.1 as usize])));
            let order: Vec<u32> = keyed.iter().map(|&(_, u)| u).collect();
            let digests: Vec<UserDigest> = keyed.into_iter().map(|(d, _)| d).collect();
            // The ids were in id order: user k in it is now at by_id[k].
            let by_id = new_of(&order, ids.len());
            for line in &mut lines {
                line.user = by_id[line.user as usize];
            }
            (take_in_order(ids, &order), digests, by_id)
        } else {
            (ids, Vec::new(), Vec::new())
        };
        for line in &mut lines {
            line.team = team_of[line.team as usize];
            line.product = product_of[line.product as usize];
        }
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

/// `v`, moved into a block of its size when it grew by doubling past an
/// eighth more than it holds: a cached state does not keep up to as much
/// again unused (`shrink_to_fit` leaves a block over half used in place).
fn to_size<T>(mut v: Vec<T>) -> Vec<T> {
    if v.capacity() - v.len() <= v.len() / 8 {
        return v;
    }
    let mut exact = Vec::with_capacity(v.len());
    exact.append(&mut v);
    exact
}

impl Table {
    /// [`TableBuilder`] fed `aggregates` (owned rows, in any order: each
    /// source's are sorted by line first, as ClickHouse sends them).
    #[cfg(test)]
    pub(super) fn build(
        aggregates: Aggregates,
        dates: &DateRange,
        hashed: impl FnOnce(&mut dyn Iterator<Item = &str>) -> bool,
        hash: impl Fn(&str) -> UserDigest,
    ) -> Result<(Table, bool), ApiError> {
        let mut sources: [Vec<OwnedRow>; 4] = [
            aggregates
                .days
                .into_iter()
                .map(|r| (r.user_id, r.team, r.product, r.access, r.days))
                .collect(),
            aggregates
                .tokens
                .into_iter()
                .map(|r| {
                    let flex = Access::Flex.label().to_owned();
                    (r.user_id, r.team, r.product, flex, r.tokens_milli)
                })
                .collect(),
            aggregates
                .held
                .into_iter()
                .map(|r| {
                    (
                        r.user_id,
                        r.team,
                        r.product,
                        r.access,
                        u64::from(r.since_day),
                    )
                })
                .collect(),
            aggregates
                .last
                .into_iter()
                .map(|r| {
                    (
                        r.user_id,
                        r.team,
                        r.product,
                        r.access,
                        u64::from(r.last_day),
                    )
                })
                .collect(),
        ];
        for rows in &mut sources {
            rows.sort();
        }
        Table::merge_sorted(&sources, dates, Expected::default(), hashed, hash)
    }

    /// [`TableBuilder`] fed each source's rows as given, as
    /// `compute_state` feeds ClickHouse's.
    #[cfg(test)]
    fn merge_sorted(
        sources: &[Vec<OwnedRow>; 4],
        dates: &DateRange,
        expected: Expected,
        hashed: impl FnOnce(&mut dyn Iterator<Item = &str>) -> bool,
        hash: impl Fn(&str) -> UserDigest,
    ) -> Result<(Table, bool), ApiError> {
        let mut next = [0usize; 4];
        let mut b = TableBuilder::new(dates, expected);
        loop {
            if let Some(source) = b.wanted() {
                let i = source as usize;
                let row = sources[i].get(next[i]).map(|(u, t, p, a, v)| Row {
                    user: u,
                    team: t,
                    product: p,
                    access: a,
                    value: *v,
                });
                next[i] += 1;
                b.put(source, row);
            } else if !b.merge()? {
                return Ok(b.finish(hashed, hash));
            }
        }
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
            + self.lines.capacity() * std::mem::size_of::<Entry>()
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

    #[test]
    fn rows_out_of_line_order_are_an_error_not_a_wrong_table() {
        let row = |user: &str, days: u64| {
            (
                user.to_owned(),
                "t".to_owned(),
                "p".to_owned(),
                "seat".to_owned(),
                days,
            )
        };
        let sorted = [vec![row("a", 1), row("b", 2)], vec![], vec![], vec![]];
        let (table, _) = Table::merge_sorted(
            &sorted,
            &range(),
            Expected::default(),
            |_| false,
            |id| hasher().digest(id),
        )
        .expect("sorted rows");
        assert_eq!(table.lines.len(), 2);
        for unsorted in [
            [vec![row("b", 1), row("a", 2)], vec![], vec![], vec![]],
            // The same line twice.
            [vec![row("a", 1), row("a", 2)], vec![], vec![], vec![]],
        ] {
            let built = Table::merge_sorted(
                &unsorted,
                &range(),
                Expected::default(),
                |_| false,
                |id| hasher().digest(id),
            );
            assert!(built.is_err());
        }
    }

    #[test]
    fn a_builder_sized_for_its_table_builds_the_same_table_without_growing() {
        let row = |user: usize, team: usize| {
            (
                format!("u-{user:04}"),
                format!("t-{team}"),
                "p".to_owned(),
                "seat".to_owned(),
                1 + (user % 5) as u64,
            )
        };
        let days: Vec<OwnedRow> = (0..600).map(|u| row(u / 2, u % 2)).collect();
        let sources = [days, vec![], vec![], vec![]];
        let build = |expected: Expected, hashed: bool| {
            Table::merge_sorted(
                &sources,
                &range(),
                expected,
                |_| hashed,
                |id| hasher().digest(id),
            )
            .expect("sorted rows")
            .0
        };
        let exact = Expected {
            lines: 600,
            users: 300,
        };
        for hashed in [false, true] {
            let grown = build(Expected::default(), hashed);
            assert_eq!(grown.lines.len(), 600);
            for expected in [
                exact,
                Expected {
                    lines: 100,
                    users: 10,
                },
                Expected {
                    lines: 10_000,
                    users: 5_000,
                },
            ] {
                let sized = build(expected, hashed);
                assert_eq!(sized.lines, grown.lines, "{expected:?}");
                assert_eq!(sized.ids, grown.ids);
                assert_eq!(sized.digests, grown.digests);
                assert_eq!(sized.by_id, grown.by_id);
            }
            // As many as expected: the block it started with, no copy.
            let sized = build(exact, hashed);
            assert_eq!(sized.lines.capacity(), Expected::room(600));
            // Far fewer than expected: to its size.
            let fewer = build(
                Expected {
                    lines: 10_000,
                    users: 5_000,
                },
                hashed,
            );
            assert_eq!(fewer.lines.capacity(), 600);
        }
    }

    /// Random aggregates (a small LCG, many seeds) joined by the merge
    /// equal a join by key done the obvious way: every source's rows in,
    /// the lines with a status out, each with its four values.
    #[test]
    fn the_merge_joins_like_a_join_by_key() {
        use std::collections::BTreeMap;
        for seed in 1..=40u64 {
            let mut x = seed;
            let mut next = move |n: u64| {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (x >> 33) % n
            };
            let mut aggregates = Aggregates::default();
            // (user, team, product, access) -> (days, tokens, since, last)
            type Line = (String, String, String, Access);
            let mut model: BTreeMap<Line, (u64, u64, Option<u16>, u16)> = BTreeMap::new();
            for u in 0..30 {
                for t in ["t-a", "t-b"] {
                    for p in ["p1", "p2", "p3"] {
                        for access in [Access::Seat, Access::Flex] {
                            let user = format!("u{:02}", (u * 7) % 30);
                            let key = (user.clone(), t.to_owned(), p.to_owned(), access);
                            let label = access.label();
                            let mut m = (0, 0, None, 0);
                            if next(3) == 0 {
                                m.0 = 1 + next(30);
                                aggregates.days.push(days(t, &user, p, label, m.0));
                                if access == Access::Flex && next(2) == 0 {
                                    m.1 = 1 + next(9_000);
                                    aggregates.tokens.push(TokensRow {
                                        team: t.into(),
                                        user_id: user.clone(),
                                        product: p.into(),
                                        tokens_milli: m.1,
                                    });
                                }
                            }
                            if next(4) == 0 {
                                m.2 = Some(20_000 + next(200) as u16);
                                aggregates
                                    .held
                                    .push(held(t, &user, p, label, m.2.unwrap_or(0)));
                            }
                            if m.0 > 0 || next(3) == 0 {
                                m.3 = 19_000 + next(1_000) as u16;
                                aggregates.last.push(LastAccessRow {
                                    team: t.into(),
                                    user_id: user.clone(),
                                    product: p.into(),
                                    access: label.into(),
                                    last_day: m.3,
                                });
                            }
                            model.insert(key, m);
                        }
                    }
                }
            }
            // Rows in any order: the build sorts each source, as ClickHouse does.
            aggregates.days.reverse();
            aggregates.last.rotate_left(7);
            let dates = range();
            let expected: Vec<_> = model
                .into_iter()
                .filter_map(
                    |((user, team, product, access), (d, tokens, since, last))| {
                        let held = since.map(|s| Held {
                            access,
                            since: Utc.from_utc_datetime(&day(s).and_time(chrono::NaiveTime::MIN)),
                        });
                        let status = status::status(held, d > 0, &dates)?;
                        Some((
                            user, team, product, access, status, d as u32, tokens, since, last,
                        ))
                    },
                )
                .collect();
            let (table, _) = Table::build(aggregates, &dates, |_| false, |id| hasher().digest(id))
                .expect("build");
            let got: Vec<_> = table
                .lines
                .iter()
                .map(|e| {
                    (
                        table.user(e).id.to_owned(),
                        table.team(e).to_owned(),
                        table.product(e).to_owned(),
                        e.access,
                        e.status,
                        e.days,
                        e.tokens_milli,
                        e.since,
                        e.last,
                    )
                })
                .collect();
            assert_eq!(got, expected, "seed {seed}");
        }
    }

    fn hasher() -> UserHasher {
        UserHasher::new(b"0123456789abcdef0123456789abcdef").expect("32-byte secret")
    }
}
