//! The report's SQL. Every statement is one of a few fixed texts, chosen by
//! which filters are present; every value from a request is a bound
//! parameter (bound client-side by the `clickhouse` crate, which escapes it:
//! ClickHouse 18.16 has no server-side parameters). Nothing a user sends is
//! ever spliced into SQL text.
//!
//! Lists of values are bound as arrays and tested with `IN (SELECT
//! arrayJoin(?))`, which lets ClickHouse use the tables' primary keys (a
//! `has(?, column)` would scan).
//!
//! The statements run unchanged on ClickHouse 18.16 and on a current
//! ClickHouse (`tests/tests/sql_compat.rs` runs them in chDB): no CTEs, no
//! window functions, no `FINAL` with filters on non-key columns (copies are
//! collapsed with duplicate-insensitive aggregates: `uniqExact`, `max`,
//! `argMax` by version, `any` per key, the OR of day bits, a set of windows),
//! no lambdas (18.16 cannot resolve one inside an aggregating query or over a
//! subquery's aggregate: arrays are unrolled with `ARRAY JOIN` instead), no
//! `bitCount` (18.16 has none: `length(bitmaskToArray(..))`).
//!
//! The line aggregates read the rollups shaped for them (migration 0006):
//! days used from `usage_months`, last accessed from `last_access`, tokens
//! from `token_months`; the raw exports and the daily chart, which list days
//! and windows by nature, read the day-level tables.

mod directory;
mod lines;

use clickhouse::query::Query;
use clickhouse::Client;

pub use directory::{assignments_of, known_teams, memberships, merges, profiles, teams};
pub use lines::{
    product_rates, DailyCountRow, DailyTokensRow, DaysRow, HeldRow, LastAccessRow, RateRow,
    RowsQuery, SeatDayRow, SeatMonthsRef, TokenDayRow, TokensRow,
};

/// A bound value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    Str(String),
    Strs(Vec<String>),
}

/// A statement and its parameters, in `?` order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sql {
    text: String,
    params: Vec<Param>,
}

impl Sql {
    fn new(text: &str) -> Sql {
        Sql {
            text: text.to_owned(),
            params: Vec::new(),
        }
    }

    fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self
    }

    fn bind(&mut self, text: &str, param: Param) -> &mut Sql {
        debug_assert_eq!(text.matches('?').count(), 1);
        self.text.push_str(text);
        self.params.push(param);
        self
    }

    fn bind_str(&mut self, text: &str, value: &str) -> &mut Sql {
        self.bind(text, Param::Str(value.to_owned()))
    }

    /// The distinct teams (`tm`) of this statement's rows: for a raw
    /// export's privacy decision before its rows stream.
    pub fn teams_of_rows(&self) -> Sql {
        Sql {
            text: format!("SELECT DISTINCT tm FROM ({})", self.text),
            params: self.params.clone(),
        }
    }

    /// The statement text, with `?` placeholders.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The query, parameters bound by the client.
    pub fn query(&self, client: &Client) -> Query {
        let mut query = client.query(&self.text);
        for param in &self.params {
            query = match param {
                Param::Str(s) => query.bind(s.as_str()),
                Param::Strs(v) => query.bind(v.as_slice()),
            };
        }
        query
    }

    /// The statement with its parameters written as SQL literals: for running
    /// it where the crate can't bind (the chDB compatibility check) and for
    /// reading. The server path always binds through [`Sql::query`].
    pub fn with_literals(&self) -> String {
        let mut out = String::with_capacity(self.text.len());
        let mut params = self.params.iter();
        for c in self.text.chars() {
            match (c, c == '?') {
                (_, true) => match params.next() {
                    Some(Param::Str(s)) => out.push_str(&literal(s)),
                    Some(Param::Strs(v)) => {
                        out.push('[');
                        out.push_str(&v.iter().map(|s| literal(s)).collect::<Vec<_>>().join(","));
                        out.push(']');
                    }
                    None => out.push('?'),
                },
                (c, false) => out.push(c),
            }
        }
        out
    }
}

fn literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Every statement the service runs, with sample parameters: for the
/// compatibility check on a current ClickHouse.
pub fn all_for_compatibility() -> Vec<(&'static str, Sql)> {
    let full = RowsQuery {
        merges: vec![("t-old".into(), "t-new".into())],
        teams: Some(vec!["t-new".into(), "t-old".into()]),
        from: "2026-01-01".into(),
        to: "2026-01-31".into(),
        product: Some("it's".into()),
        access: Some("flex".into()),
    };
    let bare = RowsQuery {
        from: "2026-01-01".into(),
        to: "2026-01-31".into(),
        ..RowsQuery::default()
    };
    vec![
        ("days, every filter", full.days()),
        ("days, no filter", bare.days()),
        ("last access, every filter", full.last_access()),
        ("last access, no filter", bare.last_access()),
        ("tokens, every filter", full.tokens()),
        ("tokens, no filter", bare.tokens()),
        ("held, every filter", full.held()),
        ("held, no filter", bare.held()),
        ("seat days", full.seat_days()),
        ("seat days, no filter", bare.seat_days()),
        ("token days", full.token_days()),
        ("token days, no filter", bare.token_days()),
        ("teams of seat days", bare.seat_days().teams_of_rows()),
        ("teams of token days", bare.token_days().teams_of_rows()),
        ("daily users", full.daily_users()),
        ("daily users, no filter", bare.daily_users()),
        ("daily lines", full.daily_lines()),
        ("daily lines, no filter", bare.daily_lines()),
        ("daily tokens", full.daily_tokens()),
        ("daily tokens, no filter", bare.daily_tokens()),
        ("seat months", full.seat_months(14)),
        ("seat months, no filter", bare.seat_months(14)),
        ("rates", product_rates(vec!["p1".into(), "it's".into()])),
        ("merges", merges()),
        ("teams", teams()),
        ("profiles", profiles(Some(vec!["u1".into()]))),
        ("all profiles", profiles(None)),
        ("memberships", memberships(Some(vec!["t1".into()]), None)),
        (
            "memberships of users",
            memberships(None, Some(vec!["u1".into()])),
        ),
        ("known teams", known_teams()),
        (
            "days, no team",
            RowsQuery {
                teams: Some(Vec::new()),
                ..bare.clone()
            }
            .days(),
        ),
        ("profiles of nobody", profiles(Some(Vec::new()))),
        ("assignments", assignments_of(vec!["t1".into()], "p")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_bound_never_spliced() {
        let hostile = "x' OR 1=1 --";
        let q = RowsQuery {
            teams: Some(vec![hostile.into()]),
            from: "2026-01-01".into(),
            to: "2026-01-31".into(),
            product: Some(hostile.into()),
            ..RowsQuery::default()
        };
        for sql in [
            q.days(),
            q.last_access(),
            q.tokens(),
            q.held(),
            q.seat_days(),
            q.token_days(),
            q.seat_months(3),
            product_rates(vec![hostile.into()]),
        ] {
            assert!(!sql.text().contains("OR 1=1"), "{}", sql.text());
            assert_eq!(sql.text().matches('?').count(), sql.params.len());
            assert!(sql.with_literals().contains(r"'x\' OR 1=1 --'"));
        }
    }

    #[test]
    fn the_access_filter_applies_to_usage_and_assignments() {
        let q = RowsQuery {
            access: Some("seat".into()),
            ..RowsQuery::default()
        };
        assert!(q.days().text().contains("access = ?"));
        assert!(q.last_access().text().contains("access = ?"));
        assert!(q.held().text().contains("access = ?"));
        // Flex windows have no access column: the caller skips them for seats.
        assert!(!q.tokens().text().contains("access = ?"));
    }
}
