//! The statements of the report's lines ([`RowsQuery`]): the aggregates
//! per (current team, user, product, access) — days used, last accessed,
//! tokens, assignments in force —, the raw exports and the daily chart; and
//! the rows they answer. The four aggregates come sorted by line (user id,
//! team, product, access label, compared as bytes): the report merges them
//! as they stream instead of holding a map of lines.

use super::{Param, Sql};
use usage_core::event::Access;
use usage_store::schema::StoredEnum;

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

    /// `lo, hi, hit FROM usage_months WHERE <the range's months>`: per
    /// stored month, the day bits of the merged rows OR-ed and kept from bit
    /// `lo - 1` to bit `hi - 1` (the mask of the bits below `hi` AND NOT the
    /// mask of the bits below `lo - 1`: empty if `lo > hi`).
    fn month_hits(&self, sql: &mut Sql) {
        self.days_of_month(sql);
        sql.push(
            ", bitAnd(toUInt64(groupBitOrMerge(days)), bitAnd(bitShiftLeft(toUInt64(1), hi) - 1, \
             bitNot(bitShiftLeft(toUInt64(1), lo - 1) - 1))) AS hit FROM usage_months WHERE ",
        );
        self.months(sql);
    }

    /// Days used in the range per (current team, user, product, access),
    /// where not 0: `team, user_id, product, access, days` ([`DaysRow`]).
    ///
    /// From `usage_months`: per stored month, the day bits of the merged
    /// teams' rows OR-ed (a day used in two merged teams counts once), kept
    /// from bit `lo - 1` to bit `hi - 1` (the mask of the bits below `hi`
    /// AND NOT the mask of the bits below `lo - 1`: empty if `lo > hi`) and
    /// counted. ClickHouse 18.16 has no `bitCount`:
    /// `length(bitmaskToArray(..))` counts the bits.
    pub fn days(&self) -> Sql {
        let mut sql = Sql::new(
            "SELECT tm, user_id, product, acc, toUInt64(sum(length(bitmaskToArray(hit)))) AS days \
             FROM (SELECT ",
        );
        self.team_expr(&mut sql);
        sql.push(" AS tm, user_id, product, toString(access) AS acc, ");
        self.month_hits(&mut sql);
        self.filters(&mut sql, true);
        sql.push(
            " GROUP BY tm, user_id, product, acc, month) \
             GROUP BY tm, user_id, product, acc HAVING days > 0 \
             ORDER BY user_id, tm, product, acc",
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
        sql.push(" GROUP BY tm, user_id, product, acc ORDER BY user_id, tm, product, acc");
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
        let mut sql = Sql::new(
            "SELECT tm, user_id, product, toUInt64(sum(tupleElement(t, 4))) AS tokens \
             FROM (SELECT ",
        );
        self.team_expr(&mut sql);
        sql.push(" AS tm, user_id, product, groupUniqArrayMerge(windows) AS w, ");
        self.days_of_month(&mut sql);
        sql.push(" FROM token_months WHERE ");
        self.months(&mut sql);
        self.filters(&mut sql, false);
        sql.push(
            " GROUP BY tm, user_id, product, month) ARRAY JOIN w AS t \
             WHERE tupleElement(t, 1) >= lo AND tupleElement(t, 1) <= hi \
             GROUP BY tm, user_id, product ORDER BY user_id, tm, product",
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
             GROUP BY tm, user_id, product, acc ORDER BY user_id, tm, product, acc",
        );
        sql
    }

    /// Raw seat usage, day by day: `team, user_id, product, usage_date`,
    /// one row per (current team, user, product, UTC date) with seat usage
    /// in the range ([`SeatDayRow`]).
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

    /// Raw token usage, day by day: `team, user_id, product, usage day
    /// (days since 1970), tokens (thousandths)` ([`TokenDayRow`]), one row
    /// per (current team, user, product, UTC date) in the range with Flex
    /// usage (`daily_usage`, access flex) or a window opened: the tokens of
    /// the windows opened that date (by `window_start`, under the current
    /// team of the opening event), 0 on a day used inside a window opened
    /// before. The two sources are joined by a union summed per key (no
    /// JOIN: the same text runs on 18.16 and a current ClickHouse).
    pub fn token_days(&self) -> Sql {
        let mut sql = Sql::new(
            "SELECT tm, user_id, product, day, toUInt64(sum(tok)) AS tokens FROM (SELECT ",
        );
        self.team_expr(&mut sql);
        sql.bind_str(
            " AS tm, user_id, product, toUInt16(usage_date) AS day, toUInt64(0) AS tok \
             FROM daily_usage WHERE access = ?",
            Access::Flex.label(),
        )
        .bind_str(" AND usage_date >= toDate(?)", &self.from)
        .bind_str(" AND usage_date <= toDate(?)", &self.to);
        self.filters(&mut sql, false);
        sql.push(" UNION ALL SELECT ");
        self.team_of(&mut sql, "opener");
        sql.push(
            " AS tm, user_id, product, toUInt16(toDate(window_start)) AS day, \
             toUInt64(tok) AS tok FROM (SELECT user_id, product, window_start, window_start_us, \
             any(team_id) AS opener, any(tokens_milli) AS tok FROM flex_windows WHERE 1",
        )
        .bind_str(" AND toDate(window_start) >= toDate(?)", &self.from)
        .bind_str(" AND toDate(window_start) <= toDate(?)", &self.to);
        self.filters(&mut sql, false);
        sql.push(
            " GROUP BY user_id, product, window_start, window_start_us)) \
             GROUP BY tm, user_id, product, day ORDER BY day, tm, user_id, product",
        );
        sql
    }
}

impl RowsQuery {
    /// The days used in the range of the seat lines used on at most
    /// `max_days` of them, per (current team, user, product): `team,
    /// user_id, product, months (days since 1970 of each month's first
    /// day), hits (each month's day bits in the range: bit i is day i + 1)`
    /// ([`SeatMonthsRef`]). The bits are read as [`RowsQuery::days`] reads
    /// them; `max_days` keeps the lines that can be occasional (few days by
    /// definition, so the answer stays small whatever the team's size).
    pub fn seat_months(&self, max_days: u64) -> Sql {
        let mut sql = Sql::new(
            "SELECT tm, user_id, product, groupArray(m) AS months, groupArray(hit) AS hits \
             FROM (SELECT ",
        );
        self.team_expr(&mut sql);
        sql.push(" AS tm, user_id, product, toUInt16(month) AS m, ");
        self.month_hits(&mut sql);
        sql.bind_str(" AND access = ?", Access::Seat.label());
        self.filters(&mut sql, false);
        sql.push(
            " GROUP BY tm, user_id, product, month) WHERE hit != 0 GROUP BY tm, user_id, product",
        )
        .bind_str(
            " HAVING sum(length(bitmaskToArray(hit))) <= toUInt64(?)",
            &max_days.to_string(),
        );
        sql
    }
}

impl RowsQuery {
    /// Per UTC date of the range with usage, as days since 1970, how many
    /// groups (`group`, selected by `select`) used it: `day, count`
    /// ([`DailyCountRow`]). From `usage_months`: per group and month the
    /// day bits OR-ed, kept inside the range ([`Self::month_hits`]),
    /// unrolled (`bitmaskToArray` gives each set bit as its power of two,
    /// whose log2 is the day of the month less one) and counted per day.
    fn daily_count(&self, group: &str, select: impl FnOnce(&mut Sql)) -> Sql {
        let mut sql = Sql::new(
            "SELECT toUInt16(toUInt16(month) + toUInt16(round(log2(b)))) AS day, \
             toUInt64(count()) AS n FROM (SELECT ",
        );
        select(&mut sql);
        sql.push(", month, ");
        self.month_hits(&mut sql);
        self.filters(&mut sql, true);
        sql.push(" GROUP BY ")
            .push(group)
            .push(", month) ARRAY JOIN bitmaskToArray(hit) AS b GROUP BY day ORDER BY day");
        sql
    }

    /// Per UTC date of the range: the distinct users with usage that day
    /// ([`DailyCountRow`]).
    pub fn daily_users(&self) -> Sql {
        self.daily_count("user_id", |sql| {
            sql.push("user_id");
        })
    }

    /// Per UTC date of the range: the report lines — (current team, user,
    /// product, access) — used that day ([`DailyCountRow`]).
    pub fn daily_lines(&self) -> Sql {
        self.daily_count("tm, user_id, product, access", |sql| {
            self.team_expr(sql);
            sql.push(" AS tm, user_id, product, access");
        })
    }

    /// Per UTC date of the range: tokens (thousandths) of the Flex windows
    /// starting that day ([`DailyTokensRow`]). From `token_months`: per
    /// (user, product, month) the sets of windows merged (a window stored
    /// twice, or under two teams, is one element), unrolled, kept when
    /// their day is in the range, and summed per day.
    pub fn daily_tokens(&self) -> Sql {
        let mut sql = Sql::new(
            "SELECT toUInt16(toUInt16(month) + tupleElement(t, 1) - 1) AS day, \
             toUInt64(sum(tupleElement(t, 4))) AS tokens FROM (SELECT user_id, product, month, \
             groupUniqArrayMerge(windows) AS w, ",
        );
        self.days_of_month(&mut sql);
        sql.push(" FROM token_months WHERE ");
        self.months(&mut sql);
        self.filters(&mut sql, false);
        sql.push(
            " GROUP BY user_id, product, month) ARRAY JOIN w AS t \
             WHERE tupleElement(t, 1) >= lo AND tupleElement(t, 1) <= hi \
             GROUP BY day ORDER BY day",
        );
        sql
    }
}

/// A row of [`RowsQuery::daily_users`] and [`RowsQuery::daily_lines`].
#[derive(Debug, Clone, clickhouse::Row, serde::Deserialize)]
pub struct DailyCountRow {
    pub day: u16,
    pub count: u64,
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

/// A row of [`RowsQuery::token_days`].
#[derive(Debug, Clone, clickhouse::Row, serde::Deserialize)]
pub struct TokenDayRow {
    pub team: String,
    pub user_id: String,
    pub product: String,
    pub usage_day: u16,
    pub tokens_milli: u64,
}

/// A row of [`RowsQuery::seat_months`], its strings read in place.
#[derive(Debug, Clone, clickhouse::Row, serde::Deserialize)]
pub struct SeatMonthsRef<'a> {
    pub team: &'a str,
    pub user_id: &'a str,
    pub product: &'a str,
    /// Each month's first day, as days since 1970.
    pub months: Vec<u16>,
    /// Each month's day bits in the range (bit i: day i + 1).
    pub hits: Vec<u64>,
}

impl SeatMonthsRef<'_> {
    /// The days used, as days since 1970.
    pub fn days(&self) -> impl Iterator<Item = u32> + '_ {
        self.months
            .iter()
            .zip(&self.hits)
            .flat_map(|(&month, &hits)| {
                (0..64u32)
                    .filter(move |bit| hits & (1u64 << bit) != 0)
                    .map(move |bit| u32::from(month) + bit)
            })
    }
}

/// The rates of `products` (each publication per (product, effective
/// from) collapsed to the latest version, as the ingest reads them): `product,
/// effective_from (seconds), effective_from_us, tokens (thousandths),
/// version, event_id` ([`RateRow`]).
pub fn product_rates(products: Vec<String>) -> Sql {
    let mut sql = Sql::new(
        "SELECT product, toUInt32(effective_from) AS from_s, effective_from_us, \
         argMax(flex_tokens_milli, version) AS milli, max(version) AS v, \
         argMax(event_id, version) AS id FROM product_rates WHERE 1",
    );
    sql.bind(
        " AND product IN (SELECT arrayJoin(?))",
        Param::Strs(products),
    )
    .push(" GROUP BY product, effective_from, effective_from_us");
    sql
}

/// A row of [`product_rates`].
#[derive(Debug, Clone, clickhouse::Row, serde::Deserialize)]
pub struct RateRow {
    pub product: String,
    pub effective_from: u32,
    pub effective_from_us: u32,
    pub tokens_milli: u64,
    pub version: u64,
    pub event_id: String,
}
