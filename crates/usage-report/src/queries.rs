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

use clickhouse::query::Query;
use clickhouse::Client;
use usage_core::event::Access;
use usage_store::schema::StoredEnum;

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

/// What the rows query is asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowsQuery {
    /// `(from, into)` of every merged team: stored teams are reported under
    /// their current team.
    pub merges: Vec<(String, String)>,
    /// The stored teams whose rows count; `None`: every team.
    pub teams: Option<Vec<String>>,
    /// First and last date of the range (`YYYY-MM-DD`).
    pub from: String,
    pub to: String,
    pub product: Option<String>,
    /// `seat` or `flex`: the label of the stored `access` code
    /// (`usage_store::schema`, what `toString(access)` reads).
    pub access: Option<String>,
}

impl RowsQuery {
    /// The stored team column `column` mapped to its current team.
    fn team_of(&self, sql: &mut Sql, column: &str) {
        if self.merges.is_empty() {
            sql.push(column);
        } else {
            let (from, into): (Vec<String>, Vec<String>) = self.merges.iter().cloned().unzip();
            sql.push("transform(")
                .push(column)
                .bind(", ?, ", Param::Strs(from))
                .bind("?, ", Param::Strs(into))
                .push(column)
                .push(")");
        }
    }

    /// `team_id` mapped to its current team.
    fn team_expr(&self, sql: &mut Sql) {
        self.team_of(sql, "team_id");
    }

    /// ` AND ...` for the stored team, product and (optionally) access.
    fn filters(&self, sql: &mut Sql, with_access: bool) {
        match &self.teams {
            // An empty array literal has no element type on ClickHouse 18.16.
            Some(teams) if teams.is_empty() => {
                sql.push(" AND 0");
            }
            Some(teams) => {
                sql.bind(
                    " AND team_id IN (SELECT arrayJoin(?))",
                    Param::Strs(teams.clone()),
                );
            }
            None => {}
        }
        if let Some(product) = &self.product {
            sql.bind_str(" AND product = ?", product);
        }
        if with_access {
            if let Some(access) = &self.access {
                sql.bind_str(" AND access = ?", access);
            }
        }
    }

    /// `month >= ... AND month <= ...`: the months the range touches.
    fn months(&self, sql: &mut Sql) {
        sql.bind_str("month >= toStartOfMonth(toDate(?))", &self.from)
            .bind_str(" AND month <= toStartOfMonth(toDate(?))", &self.to);
    }

    /// `lo, hi`: the first and last day of `month` in the range (1 and 31
    /// for the months strictly inside it).
    fn days_of_month(&self, sql: &mut Sql) {
        sql.bind_str("if(month = toStartOfMonth(toDate(?))", &self.from)
            .bind_str(", toDayOfMonth(toDate(?)), 1) AS lo, ", &self.from)
            .bind_str("if(month = toStartOfMonth(toDate(?))", &self.to)
            .bind_str(", toDayOfMonth(toDate(?)), 31) AS hi", &self.to);
    }

    /// Days used in the range per (current team, user, product, access),
    /// where not 0: `team, user_id, product, access, days` ([`DaysRow`]).
    ///
    /// From `usage_months`: per stored month, the day bits of the merged
    /// teams' rows OR-ed (a day used in two merged teams counts once), kept
    /// between `lo` and `hi` and counted. ClickHouse 18.16 has no
    /// `bitCount`: `length(bitmaskToArray(..))` counts the bits.
    pub fn days(&self) -> Sql {
        let mut sql = Sql::new(
            "SELECT tm, user_id, product, acc, toUInt64(sum(length(bitmaskToArray(hit)))) AS days \
             FROM (SELECT ",
        );
        self.team_expr(&mut sql);
        sql.push(" AS tm, user_id, product, toString(access) AS acc, ");
        self.days_of_month(&mut sql);
        sql.push(
            ", bitAnd(toUInt64(groupBitOrMerge(days)), \
             bitAnd(bitShiftLeft(toUInt64(1), hi) - 1, bitNot(bitShiftLeft(toUInt64(1), lo - 1) - 1))) \
             AS hit FROM usage_months WHERE ",
        );
        self.months(&mut sql);
        self.filters(&mut sql, true);
        sql.push(
            " GROUP BY tm, user_id, product, acc, month) \
             GROUP BY tm, user_id, product, acc HAVING days > 0",
        );
        sql
    }

    /// The last day used, ever, per (current team, user, product, access)
    /// with any usage: `team, user_id, product, access, last day (days since
    /// 1970)` ([`LastAccessRow`]). From `last_access`, one row per key.
    pub fn last_access(&self) -> Sql {
        let mut sql = Sql::new("SELECT ");
        self.team_expr(&mut sql);
        sql.push(
            " AS tm, user_id, product, toString(access) AS acc, \
             toUInt16(max(last_date)) AS last_day FROM last_access WHERE 1",
        );
        self.filters(&mut sql, true);
        sql.push(" GROUP BY tm, user_id, product, acc");
        sql
    }

    /// Tokens of the Flex windows starting in the range, per (current team
    /// of the opening event, user, product): `team, user_id, product,
    /// tokens (thousandths)` ([`TokensRow`]).
    ///
    /// From `token_months`: per stored month, the sets of windows of the
    /// merged teams' rows merged (a window stored twice is one element),
    /// unrolled, kept when their day is between `lo` and `hi`, and summed.
    /// (No lambda: 18.16 cannot resolve one over a subquery's aggregate.)
    pub fn tokens(&self) -> Sql {
        let mut sql =
            Sql::new("SELECT tm, user_id, product, toUInt64(sum(tupleElement(t, 4))) AS tokens FROM (SELECT ");
        self.team_expr(&mut sql);
        sql.push(" AS tm, user_id, product, groupUniqArrayMerge(windows) AS w, ");
        self.days_of_month(&mut sql);
        sql.push(" FROM token_months WHERE ");
        self.months(&mut sql);
        self.filters(&mut sql, false);
        sql.push(
            " GROUP BY tm, user_id, product, month) ARRAY JOIN w AS t \
             WHERE tupleElement(t, 1) >= lo AND tupleElement(t, 1) <= hi \
             GROUP BY tm, user_id, product",
        );
        sql
    }

    /// The assignments in force now, per (current team, user, product,
    /// access): `team, user_id, product, access, assigned date (days since
    /// 1970; the earliest of the merged teams')` ([`HeldRow`]).
    pub fn held(&self) -> Sql {
        let mut sql =
            Sql::new("SELECT tm, user_id, product, acc, toUInt16(min(d)) AS since FROM (SELECT ");
        self.team_expr(&mut sql);
        sql.push(
            " AS tm, user_id, product, toString(access) AS acc, argMax(assigned, version) AS a, \
             argMax(assigned_date, version) AS d FROM assignment_state WHERE 1",
        );
        self.filters(&mut sql, true);
        sql.push(
            " GROUP BY team_id, user_id, product, access) WHERE a = 1 \
             GROUP BY tm, user_id, product, acc",
        );
        sql
    }

    /// Raw seat usage, day by day: `team, user_id, product, usage_date`
    /// for seat usage in the range ([`SeatDayRow`]).
    pub fn seat_days(&self) -> Sql {
        let mut sql = Sql::new("SELECT tm, user_id, product, usage_date FROM (SELECT ");
        self.team_expr(&mut sql);
        sql.bind_str(
            " AS tm, user_id, product, usage_date FROM daily_usage WHERE access = ?",
            Access::Seat.label(),
        )
        .bind_str(" AND usage_date >= toDate(?)", &self.from)
        .bind_str(" AND usage_date <= toDate(?)", &self.to);
        self.filters(&mut sql, false);
        sql.push(
            ") GROUP BY tm, user_id, product, usage_date \
             ORDER BY usage_date, tm, user_id, product",
        );
        sql
    }

    /// Raw token usage, window by window: `team, user_id, product, window
    /// start (seconds), tokens (thousandths)` for the windows starting in the
    /// range ([`TokenWindowRow`]).
    pub fn token_windows(&self) -> Sql {
        let mut sql = Sql::new("SELECT ");
        self.team_of(&mut sql, "opener");
        sql.push(
            " AS tm, user_id, product, toUInt32(window_start) AS started, tok FROM (\
             SELECT user_id, product, window_start, window_start_us, any(team_id) AS opener, \
             any(tokens_milli) AS tok FROM flex_windows WHERE 1",
        )
        .bind_str(" AND toDate(window_start) >= toDate(?)", &self.from)
        .bind_str(" AND toDate(window_start) <= toDate(?)", &self.to);
        self.filters(&mut sql, false);
        sql.push(
            " GROUP BY user_id, product, window_start, window_start_us) \
             ORDER BY started, tm, user_id, product",
        );
        sql
    }
}

impl RowsQuery {
    /// Per UTC date of the range: distinct users with usage, and report
    /// rows — (current team, user, product, access) — used that day (`usage_date`
    /// as days since 1970, users, rows) ([`DailyUsageRow`]).
    pub fn daily_usage(&self) -> Sql {
        let mut sql = Sql::new(
            "SELECT toUInt16(usage_date) AS day, toUInt64(uniqExact(user_id)) AS users, \
             toUInt64(uniqExact(",
        );
        self.team_expr(&mut sql);
        sql.push(", user_id, product, access)) AS pairs FROM daily_usage WHERE 1")
            .bind_str(" AND usage_date >= toDate(?)", &self.from)
            .bind_str(" AND usage_date <= toDate(?)", &self.to);
        self.filters(&mut sql, true);
        sql.push(" GROUP BY usage_date ORDER BY usage_date");
        sql
    }

    /// Per UTC date of the range: tokens (thousandths) of the Flex windows
    /// starting that day ([`DailyTokensRow`]).
    pub fn daily_tokens(&self) -> Sql {
        let mut sql = Sql::new(
            "SELECT toUInt16(toDate(started)) AS day, toUInt64(sum(tok)) AS tokens FROM (\
             SELECT user_id, product, window_start AS started, window_start_us, \
             any(tokens_milli) AS tok FROM flex_windows WHERE 1",
        );
        sql.bind_str(" AND toDate(window_start) >= toDate(?)", &self.from)
            .bind_str(" AND toDate(window_start) <= toDate(?)", &self.to);
        self.filters(&mut sql, false);
        sql.push(
            " GROUP BY user_id, product, window_start, window_start_us) \
             GROUP BY day ORDER BY day",
        );
        sql
    }
}

/// A row of [`RowsQuery::daily_usage`].
#[derive(Debug, Clone, clickhouse::Row, serde::Deserialize)]
pub struct DailyUsageRow {
    pub day: u16,
    pub users: u64,
    pub pairs: u64,
}

/// A row of [`RowsQuery::daily_tokens`].
#[derive(Debug, Clone, clickhouse::Row, serde::Deserialize)]
pub struct DailyTokensRow {
    pub day: u16,
    pub tokens_milli: u64,
}

/// A row of [`RowsQuery::days`].
#[derive(Debug, Clone, clickhouse::Row, serde::Deserialize)]
pub struct DaysRow {
    pub team: String,
    pub user_id: String,
    pub product: String,
    pub access: String,
    pub days: u64,
}

/// A row of [`RowsQuery::last_access`].
#[derive(Debug, Clone, clickhouse::Row, serde::Deserialize)]
pub struct LastAccessRow {
    pub team: String,
    pub user_id: String,
    pub product: String,
    pub access: String,
    pub last_day: u16,
}

/// A row of [`RowsQuery::tokens`].
#[derive(Debug, Clone, clickhouse::Row, serde::Deserialize)]
pub struct TokensRow {
    pub team: String,
    pub user_id: String,
    pub product: String,
    pub tokens_milli: u64,
}

/// A row of [`RowsQuery::held`].
#[derive(Debug, Clone, clickhouse::Row, serde::Deserialize)]
pub struct HeldRow {
    pub team: String,
    pub user_id: String,
    pub product: String,
    pub access: String,
    pub since_day: u16,
}

/// A row of [`RowsQuery::seat_days`].
#[derive(Debug, Clone, clickhouse::Row, serde::Deserialize)]
pub struct SeatDayRow {
    pub team: String,
    pub user_id: String,
    pub product: String,
    pub usage_day: u16,
}

/// A row of [`RowsQuery::token_windows`].
#[derive(Debug, Clone, clickhouse::Row, serde::Deserialize)]
pub struct TokenWindowRow {
    pub team: String,
    pub user_id: String,
    pub product: String,
    pub started: u32,
    pub tokens_milli: u64,
}

/// Accepted team merges, oldest first: `from_team_id, into_team_id`.
pub fn merges() -> Sql {
    Sql::new(
        "SELECT from_team_id, into_team_id FROM team_merges \
         GROUP BY from_team_id, into_team_id, event_id \
         ORDER BY min(occurred_at), event_id",
    )
}

/// Every team in the directory: `team_id, name, pii_visible` (latest).
pub fn teams() -> Sql {
    Sql::new(
        "SELECT team_id, argMax(name, version), argMax(pii_visible, version) \
         FROM teams GROUP BY team_id",
    )
}

/// Profiles (latest) of `users`, or of everyone: `user_id, name, email,
/// avatar_url`.
pub fn profiles(users: Option<Vec<String>>) -> Sql {
    let mut sql = Sql::new(
        "SELECT user_id, argMax(name, version), argMax(email, version), \
         argMax(avatar_url, version) FROM user_profiles",
    );
    match users {
        Some(users) if users.is_empty() => {
            sql.push(" WHERE 0");
        }
        Some(users) => {
            sql.bind(
                " WHERE user_id IN (SELECT arrayJoin(?))",
                Param::Strs(users),
            );
        }
        None => {}
    }
    sql.push(" GROUP BY user_id");
    sql
}

/// Group memberships (latest per team, user, group) of `teams`, or of
/// every team, of `users` or of everyone: `team_id, user_id, group_id,
/// group_name, member`.
pub fn memberships(teams: Option<Vec<String>>, users: Option<Vec<String>>) -> Sql {
    let mut sql = Sql::new(
        "SELECT team_id, user_id, group_id, argMax(group_name, version), argMax(member, version) \
         FROM group_memberships",
    );
    match teams {
        Some(teams) if teams.is_empty() => {
            sql.push(" WHERE 0");
        }
        Some(teams) => {
            sql.bind(
                " WHERE team_id IN (SELECT arrayJoin(?))",
                Param::Strs(teams),
            );
        }
        None => {
            sql.push(" WHERE 1");
        }
    }
    match users {
        Some(users) if users.is_empty() => {
            sql.push(" AND 0");
        }
        Some(users) => {
            sql.bind(" AND user_id IN (SELECT arrayJoin(?))", Param::Strs(users));
        }
        None => {}
    }
    sql.push(" GROUP BY team_id, user_id, group_id");
    sql
}

/// Every team id known: in the directory or holding assignments.
pub fn known_teams() -> Sql {
    Sql::new(
        "SELECT team_id FROM (SELECT team_id FROM teams GROUP BY team_id \
         UNION ALL SELECT team_id FROM assignment_state GROUP BY team_id) GROUP BY team_id",
    )
}

/// The assignments of `product` in `teams` (stored ids): `team_id,
/// user_id, access, assigned (latest), via, group_id`.
pub fn assignments_of(teams: Vec<String>, product: &str) -> Sql {
    let mut sql = Sql::new(
        "SELECT team_id, user_id, toString(access), argMax(assigned, version), \
         toString(argMax(via, version)), argMax(group_id, version) FROM assignment_state WHERE 1",
    );
    if teams.is_empty() {
        sql.push(" AND 0");
    } else {
        sql.bind(" AND team_id IN (SELECT arrayJoin(?))", Param::Strs(teams));
    }
    sql.bind_str(" AND product = ?", product)
        .push(" GROUP BY team_id, user_id, product, access");
    sql
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
        ("token windows", full.token_windows()),
        ("daily usage", full.daily_usage()),
        ("daily usage, no filter", bare.daily_usage()),
        ("daily tokens", full.daily_tokens()),
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
            q.token_windows(),
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
