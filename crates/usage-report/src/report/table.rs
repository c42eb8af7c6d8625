//! A filter set's lines, compact: what the four aggregates of ClickHouse
//! say of each (current team, user, product, access), joined, with its
//! status for the range, and nothing else.
//!
//! A line is a few integers: its team, user and product are indices into
//! the table's sorted lists — teams and products by name, users by the key
//! they are shown and ordered by (the keyed hash when identities are
//! hashed, else the id) — so comparing indices compares the strings, and a
//! table of 50,000 users holds about 40 bytes per line plus each string
//! once. Requests filter, order and page indices; only the lines shown
//! become strings ([`super::rows`]).

use chrono::{NaiveDate, TimeZone, Utc};
use usage_core::event::Access;
use usage_core::range::DateRange;
use usage_core::status::{self, Held, Status};
use usage_core::FastMap;

use super::{access_of, day};
use crate::error::ApiError;
#[cfg(test)]
use crate::queries::{DaysRow, HeldRow, LastAccessRow, TokensRow};

/// One line: (current team, user, product, access) and what the
/// warehouse says of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Entry {
    /// Index into [`Table::users`].
    pub(super) user: u32,
    /// Index into [`Table::teams`].
    pub(super) team: u32,
    /// Index into [`Table::products`].
    pub(super) product: u32,
    pub(super) access: Access,
    pub(super) status: Status,
    /// Days used in the range.
    pub(super) days: u32,
    /// Last day used, ever.
    pub(super) last: Option<NaiveDate>,
    /// Assigned now, since.
    pub(super) since: Option<NaiveDate>,
    /// Tokens of the windows starting in the range (thousandths).
    pub(super) tokens_milli: u64,
}

/// A user of the table: the id, and the key shown (and ordered by) when it
/// is not the id.
#[derive(Debug)]
pub(super) struct User {
    pub(super) id: Box<str>,
    hash: Option<Box<str>>,
}

impl User {
    /// The key the user is shown and ordered by.
    pub(super) fn key(&self) -> &str {
        self.hash.as_deref().unwrap_or(&self.id)
    }
}

/// The lines of a filter set, in (user key, team, product, access) order.
#[derive(Debug, Default)]
pub(super) struct Table {
    /// Sorted by name.
    pub(super) teams: Vec<String>,
    /// Sorted by name.
    pub(super) products: Vec<String>,
    /// Sorted by key, then id.
    pub(super) users: Vec<User>,
    /// User indices in id order (to find a user by id).
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

/// Strings to dense indices, in first-seen order.
#[derive(Default)]
struct Interner {
    index: FastMap<String, u32>,
}

impl Interner {
    /// The index of `name` if it was seen.
    fn get(&self, name: &str) -> Option<u32> {
        self.index.get(name).copied()
    }

    fn of(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = u32::try_from(self.index.len()).unwrap_or(u32::MAX);
        self.index.insert(name.to_owned(), i);
        i
    }

    /// The strings, by index.
    fn into_names(self) -> Vec<String> {
        let mut names = vec![String::new(); self.index.len()];
        for (name, i) in self.index {
            names[i as usize] = name;
        }
        names
    }
}

/// The `used` ones of `names` ordered by `cmp`: `(them in that order, old
/// index -> new index)` (unused ones map to `u32::MAX`).
fn sorted_used<T>(
    names: Vec<T>,
    used: &[bool],
    cmp: impl Fn(&T, &T) -> std::cmp::Ordering,
) -> (Vec<T>, Vec<u32>) {
    let mut order: Vec<u32> = (0..names.len() as u32)
        .filter(|&i| used[i as usize])
        .collect();
    order.sort_unstable_by(|&a, &b| cmp(&names[a as usize], &names[b as usize]));
    let mut new_of = vec![u32::MAX; names.len()];
    for (new, &old) in order.iter().enumerate() {
        new_of[old as usize] = new as u32;
    }
    let mut slots: Vec<Option<T>> = names.into_iter().map(Some).collect();
    let sorted = order
        .iter()
        .filter_map(|&old| slots[old as usize].take())
        .collect();
    (sorted, new_of)
}

#[derive(Default)]
struct Agg {
    tokens_milli: u64,
    since: Option<NaiveDate>,
    days: u32,
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
        self.aggs.entry(key).or_default().since = Some(day(since_day));
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
    /// the teams of the lines kept; `hash(user_id)` is the key shown for a
    /// user when they are.
    pub(super) fn finish(
        self,
        dates: &DateRange,
        hashed: impl FnOnce(&mut dyn Iterator<Item = &str>) -> bool,
        hash: impl Fn(&str) -> String,
    ) -> (Table, bool) {
        let TableBuilder {
            teams,
            users,
            products,
            mut aggs,
        } = self;
        // Last access alone never makes a line.
        aggs.retain(|_, a| a.since.is_some() || a.days > 0);
        let (teams, products, users) = (
            teams.into_names(),
            products.into_names(),
            users.into_names(),
        );
        let (mut team_used, mut product_used, mut user_used) = (
            vec![false; teams.len()],
            vec![false; products.len()],
            vec![false; users.len()],
        );
        for &(t, u, p, _) in aggs.keys() {
            team_used[t as usize] = true;
            user_used[u as usize] = true;
            product_used[p as usize] = true;
        }
        let hashed = hashed(
            &mut (0..teams.len())
                .filter(|&t| team_used[t])
                .map(|t| teams[t].as_str()),
        );
        let (teams, team_of) = sorted_used(teams, &team_used, String::cmp);
        let (products, product_of) = sorted_used(products, &product_used, String::cmp);
        let users: Vec<User> = users
            .into_iter()
            .zip(&user_used)
            .map(|(id, &used)| User {
                hash: (hashed && used).then(|| hash(&id).into_boxed_str()),
                id: id.into_boxed_str(),
            })
            .collect();
        let (users, user_of) = sorted_used(users, &user_used, |a, b| {
            (a.key(), &*a.id).cmp(&(b.key(), &*b.id))
        });
        let mut by_id: Vec<u32> = (0..users.len() as u32).collect();
        by_id.sort_by(|&a, &b| users[a as usize].id.cmp(&users[b as usize].id));

        let mut lines: Vec<Entry> = Vec::with_capacity(aggs.len());
        lines.extend(aggs.into_iter().filter_map(|(key, a)| {
            let (t, u, p, access) = key;
            let held = a.since.map(|since| Held {
                access,
                since: Utc.from_utc_datetime(&since.and_time(chrono::NaiveTime::MIN)),
            });
            let days = a.days;
            let status = status::status(held, days > 0, dates)?;
            Some(Entry {
                user: user_of[u as usize],
                team: team_of[t as usize],
                product: product_of[p as usize],
                access,
                status,
                days,
                last: (a.last > 0).then(|| day(a.last)),
                since: a.since,
                tokens_milli: a.tokens_milli,
            })
        }));
        lines.sort_unstable_by_key(|e| (e.user, e.team, e.product, e.access));
        (
            Table {
                teams,
                products,
                users,
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
        hash: impl Fn(&str) -> String,
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
        self.by_id
            .binary_search_by(|&i| (*self.users[i as usize].id).cmp(id))
            .ok()
            .map(|at| self.by_id[at])
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

    pub(super) fn user(&self, e: &Entry) -> &User {
        &self.users[e.user as usize]
    }

    /// About how many bytes the table holds (the cache's bound).
    pub(super) fn bytes(&self) -> usize {
        let strings: usize = self.teams.iter().map(|t| t.len() + 24).sum::<usize>()
            + self.products.iter().map(|p| p.len() + 24).sum::<usize>()
            + self
                .users
                .iter()
                .map(|u| u.id.len() + u.hash.as_ref().map_or(0, |h| h.len()) + 40)
                .sum::<usize>();
        strings + self.by_id.len() * 4 + self.lines.len() * std::mem::size_of::<Entry>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            Table::build(aggregates, &range(), |_| false, |id| format!("h-{id}")).expect("build");
        assert!(!hashed);
        assert_eq!(table.teams, ["t-a", "t-b"]);
        assert_eq!(table.products, ["p1", "p2"]);
        let keys: Vec<&str> = table.users.iter().map(User::key).collect();
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
        assert_eq!(line.last, Some(day(20_000)));
        let amy = table.user_index("amy").expect("amy");
        let amy = table.lines.iter().find(|e| e.user == amy).expect("amy");
        assert_eq!((amy.status, amy.tokens_milli), (Status::Unassigned, 7_500));
        assert!(table.user_index("old").is_none());
        assert_eq!(table.team_index("t-b"), Some(1));
    }

    #[test]
    fn hashed_users_are_ordered_by_their_hash() {
        let aggregates = Aggregates {
            days: vec![
                days("t", "a", "p", "seat", 1),
                days("t", "b", "p", "seat", 1),
            ],
            ..Aggregates::default()
        };
        // The hash reverses the order of the ids.
        let hash = |id: &str| if id == "a" { "z".into() } else { "y".into() };
        let (table, hashed) = Table::build(aggregates, &range(), |_| true, hash).expect("build");
        assert!(hashed);
        let keys: Vec<(&str, &str)> = table.users.iter().map(|u| (&*u.id, u.key())).collect();
        assert_eq!(keys, [("b", "y"), ("a", "z")]);
        assert_eq!(table.user_index("a"), Some(1));
        assert_eq!(table.lines[0].user, 0, "lines in key order");
    }
}
