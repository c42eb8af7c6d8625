//! The report's rollups (migration 0006) against the day-level tables they
//! are built from: sample rows for `daily_usage` and `flex_windows`, the
//! queries to compare (ranges at month edges, within a month, across a year,
//! with merges and every filter) and the day-level answers, as the report
//! computed them before the rollups. Used on 18.16
//! (`tests/report_rollups.rs`) and in chDB (`tests/sql_compat.rs`).

use usage_report::queries::RowsQuery;

/// The first migration of the rollups.
pub const ROLLUPS: u32 = 6;

/// A small deterministic generator (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

const TEAMS: [&str; 3] = ["t0", "t1", "t2"];
const PRODUCTS: [&str; 2] = ["p1", "p2"];
const ACCESS: [&str; 2] = ["seat", "flex"];
/// The days the data spans: 2024-11-01 and the 540 days after.
const FIRST_DAY: &str = "2024-11-01";
const SPAN_DAYS: u64 = 540;

/// `n` rows of `daily_usage` as SQL values, with their edges: the first and
/// last days of months, 29 February, 31 December and 1 January.
pub fn usage_rows(rng: &mut Rng, n: usize) -> Vec<String> {
    let edges = [
        "2024-12-31",
        "2025-01-01",
        "2025-01-31",
        "2025-02-01",
        "2025-02-28",
        "2025-03-01",
        "2025-12-31",
        "2026-01-01",
        "2026-01-31",
        "2026-02-01",
    ];
    (0..n)
        .map(|i| {
            let date = if i % 5 == 0 {
                format!(
                    "toDate('{}')",
                    edges[rng.below(edges.len() as u64) as usize]
                )
            } else {
                format!("toDate('{FIRST_DAY}') + {}", rng.below(SPAN_DAYS))
            };
            format!(
                "('{}', 'u{}', '{}', '{}', {date})",
                TEAMS[rng.below(3) as usize],
                rng.below(12),
                PRODUCTS[rng.below(2) as usize],
                ACCESS[rng.below(2) as usize],
            )
        })
        .collect()
}

/// `n` rows of `flex_windows` as SQL values: windows starting anywhere in
/// the span, some in the last and first seconds of a UTC day, a few
/// starting in the same second (distinct microseconds).
pub fn window_rows(rng: &mut Rng, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let second = match i % 4 {
                0 => 86_399,
                1 => 0,
                _ => rng.below(86_400),
            };
            let start = format!(
                "toDateTime('{FIRST_DAY} 00:00:00', 'UTC') + {}",
                rng.below(SPAN_DAYS) * 86_400 + second
            );
            format!(
                "('u{}', '{}', {start}, {}, '{}', 'e{i}', {})",
                rng.below(12),
                PRODUCTS[rng.below(2) as usize],
                if i % 7 == 0 { 0 } else { rng.below(1_000_000) },
                TEAMS[rng.below(3) as usize],
                1 + rng.below(5_000),
            )
        })
        .collect()
}

fn quoted(values: &[String]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("'{v}'")).collect();
    format!("[{}]", quoted.join(", "))
}

/// The team column mapped to its current team, as literals (test data only).
fn team_of(q: &RowsQuery, column: &str) -> String {
    if q.merges.is_empty() {
        return column.to_owned();
    }
    let (from, into): (Vec<String>, Vec<String>) = q.merges.iter().cloned().unzip();
    format!(
        "transform({column}, {}, {}, {column})",
        quoted(&from),
        quoted(&into)
    )
}

fn filters(q: &RowsQuery, with_access: bool) -> String {
    let mut sql = String::new();
    match &q.teams {
        Some(teams) if teams.is_empty() => sql.push_str(" AND 0"),
        Some(teams) => sql.push_str(&format!(" AND has({}, team_id)", quoted(teams))),
        None => {}
    }
    if let Some(product) = &q.product {
        sql.push_str(&format!(" AND product = '{product}'"));
    }
    if let (true, Some(access)) = (with_access, &q.access) {
        sql.push_str(&format!(" AND access = '{access}'"));
    }
    sql
}

/// Days used in the range from the day-level rows, as the report read them
/// before the rollups: distinct dates per (current team, user, product,
/// access).
pub fn days_from_daily_usage(q: &RowsQuery) -> String {
    format!(
        "SELECT {} AS tm, user_id, product, toString(access) AS acc, \
         toUInt64(uniqExact(usage_date)) FROM daily_usage \
         WHERE usage_date >= toDate('{}') AND usage_date <= toDate('{}'){} \
         GROUP BY tm, user_id, product, acc",
        team_of(q, "team_id"),
        q.from,
        q.to,
        filters(q, true)
    )
}

/// Last accessed from the day-level rows.
pub fn last_from_daily_usage(q: &RowsQuery) -> String {
    format!(
        "SELECT {} AS tm, user_id, product, toString(access) AS acc, \
         toUInt16(max(usage_date)) FROM daily_usage WHERE 1{} \
         GROUP BY tm, user_id, product, acc",
        team_of(q, "team_id"),
        filters(q, true)
    )
}

/// Tokens of the windows starting in the range from the window rows: each
/// distinct window once, under its opening event's current team.
pub fn tokens_from_flex_windows(q: &RowsQuery) -> String {
    format!(
        "SELECT {} AS tm, user_id, product, toUInt64(sum(tok)) FROM (SELECT user_id, product, \
         window_start, window_start_us, any(team_id) AS opener, any(tokens_milli) AS tok \
         FROM flex_windows WHERE toDate(window_start) >= toDate('{}') \
         AND toDate(window_start) <= toDate('{}'){} \
         GROUP BY user_id, product, window_start, window_start_us) GROUP BY tm, user_id, product",
        team_of(q, "opener"),
        q.from,
        q.to,
        filters(q, false)
    )
}

/// The daily chart's users and lines per day from the day-level rows, as
/// the report read them before the chart used the rollups: `(day, users,
/// lines)`.
pub fn daily_from_daily_usage(q: &RowsQuery) -> String {
    format!(
        "SELECT toUInt16(usage_date), toUInt64(uniqExact(user_id)), \
         toUInt64(uniqExact({}, user_id, product, access)) FROM daily_usage \
         WHERE usage_date >= toDate('{}') AND usage_date <= toDate('{}'){} \
         GROUP BY usage_date",
        team_of(q, "team_id"),
        q.from,
        q.to,
        filters(q, true)
    )
}

/// The daily chart's tokens per day from the window rows, each distinct
/// window once: `(day, tokens)`.
pub fn daily_tokens_from_flex_windows(q: &RowsQuery) -> String {
    format!(
        "SELECT toUInt16(toDate(window_start)) AS day, toUInt64(sum(tok)) FROM (\
         SELECT user_id, product, window_start, window_start_us, any(tokens_milli) AS tok \
         FROM flex_windows WHERE toDate(window_start) >= toDate('{}') \
         AND toDate(window_start) <= toDate('{}'){} \
         GROUP BY user_id, product, window_start, window_start_us) GROUP BY day",
        q.from,
        q.to,
        filters(q, false)
    )
}

/// The queries compared: every range with every combination of filters.
pub fn queries() -> Vec<RowsQuery> {
    let ranges = [
        ("2026-01-01", "2026-01-31"), // a whole month
        ("2026-01-10", "2026-01-20"), // within a month
        ("2026-01-31", "2026-02-01"), // two month edges
        ("2026-02-01", "2026-02-01"), // one day, a month's first
        ("2025-01-31", "2025-01-31"), // one day, a month's last
        ("2025-02-28", "2025-03-01"), // the end of a short month
        ("2024-12-31", "2025-01-01"), // across a year, two days
        ("2025-12-15", "2026-02-14"), // across a year, partial months at both ends
        ("2025-03-01", "2026-02-28"), // twelve whole months
        ("2024-11-02", "2026-04-24"), // all of it but the first and last days
        ("2023-01-01", "2024-10-31"), // before any data
    ];
    let mut queries = Vec::new();
    for (from, to) in ranges {
        let bare = RowsQuery {
            from: from.into(),
            to: to.into(),
            ..RowsQuery::default()
        };
        queries.push(bare.clone());
        queries.push(RowsQuery {
            merges: vec![("t0".into(), "t1".into())],
            ..bare.clone()
        });
        queries.push(RowsQuery {
            merges: vec![("t0".into(), "t1".into())],
            teams: Some(vec!["t0".into(), "t1".into()]),
            product: Some("p1".into()),
            ..bare.clone()
        });
        queries.push(RowsQuery {
            merges: vec![("t0".into(), "t2".into()), ("t1".into(), "t2".into())],
            access: Some("flex".into()),
            ..bare.clone()
        });
        queries.push(RowsQuery {
            teams: Some(vec!["t2".into()]),
            access: Some("seat".into()),
            ..bare.clone()
        });
        queries.push(RowsQuery {
            teams: Some(Vec::new()),
            ..bare
        });
    }
    queries
}
