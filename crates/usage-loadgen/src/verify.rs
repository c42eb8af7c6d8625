//! Compares what the pipeline stored in ClickHouse with the oracle.
//!
//! Reads the analyst views (`usage_days`, `token_charges`,
//! `current_assignments`), the report's rollups (`usage_months`,
//! `last_access`, `token_months`) and the facts table the way an analyst
//! would — with its own SQL, not the pipeline's code — rebuilds the per-row
//! figures of [`ExpectedRollups`] from each, and lists every difference. The per-team summaries
//! are then computed from the *observed* rows with the oracle's definitions
//! ([`Oracle::status_of`]), so a summary that matches is the warehouse's, not
//! a copy of the oracle's.

use crate::oracle::{DateRange, ExpectedRollups, Oracle, Status};
use crate::{Access, Via};
use chrono::{NaiveDate, TimeZone, Utc};
use clickhouse::{Client, Row};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// A (stamped team, user, product, access).
pub type RowKey = (String, String, String, Access);

/// What the warehouse holds for one row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedRow {
    pub days_used: u32,
    pub first_used: Option<NaiveDate>,
    pub last_accessed: Option<NaiveDate>,
    pub tokens_milli: u64,
    pub windows: u32,
    /// (assigned date, via, group id) of the assignment in force.
    pub assignment: Option<(NaiveDate, Via, Option<String>)>,
    pub days_used_in: BTreeMap<String, u32>,
    /// The same figures from the report's rollups: days used (the day
    /// bits of `usage_months`), last accessed (`last_access`), tokens and
    /// windows (the window sets of `token_months`).
    pub month_days_used: u32,
    pub latest_access: Option<NaiveDate>,
    pub month_tokens_milli: u64,
    pub month_windows: u32,
}

/// Everything read from the warehouse.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub rows: BTreeMap<RowKey, ObservedRow>,
    pub events_counted: u64,
    pub flex_windows: u64,
    pub flex_tokens_milli: u64,
    /// Tokens of windows starting in each named range, per stamped team.
    pub tokens_in: BTreeMap<String, BTreeMap<String, u64>>,
    /// The usage dates in each named range, per row (as days since 1970-01-01).
    pub dates_in: BTreeMap<String, BTreeMap<RowKey, BTreeSet<u16>>>,
}

/// The tiles of one team (after merges) or of all teams, from observed rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tiles {
    pub seats_assigned: u64,
    pub seats_active: u64,
    /// `None` for all teams (rule 6).
    pub seats_inactive: Option<u64>,
    pub seats_not_yet_active: u64,
    pub flex_tokens_milli: u64,
    pub flex_users: u64,
    pub flex_days_used: u64,
}

#[derive(Debug, Row, Deserialize)]
struct DaysRow {
    team_id: String,
    user_id: String,
    product: String,
    access: String,
    days: u64,
    first: u16,
    last: u16,
}

#[derive(Debug, Row, Deserialize)]
struct MonthDaysRow {
    team_id: String,
    user_id: String,
    product: String,
    access: String,
    days: u64,
}

#[derive(Debug, Row, Deserialize)]
struct LatestRow {
    team_id: String,
    user_id: String,
    product: String,
    access: String,
    last: u16,
}

#[derive(Debug, Row, Deserialize)]
struct DateRow {
    team_id: String,
    user_id: String,
    product: String,
    access: String,
    usage_date: u16,
}

#[derive(Debug, Row, Deserialize)]
struct TokensRow {
    team_id: String,
    user_id: String,
    product: String,
    tokens: u64,
    windows: u64,
}

#[derive(Debug, Row, Deserialize)]
struct AssignmentRow {
    team_id: String,
    user_id: String,
    product: String,
    access: String,
    assigned_date: u16,
    via: String,
    group_id: String,
}

#[derive(Debug, Row, Deserialize)]
struct TeamTokens {
    team_id: String,
    tokens: u64,
}

fn date(days: u16) -> NaiveDate {
    NaiveDate::default() + chrono::TimeDelta::days(i64::from(days))
}

fn access(s: &str) -> Access {
    Access::parse(s).unwrap_or(Access::Seat)
}

/// Reads the warehouse through `client` (bound to the pipeline's database).
pub async fn observe(
    client: &Client,
    ranges: &[(String, DateRange)],
) -> Result<Observed, clickhouse::error::Error> {
    let mut observed = Observed::default();
    let days = client
        .query(
            "SELECT team_id, user_id, product, toString(access), count(), min(usage_date), \
             max(usage_date) FROM usage_days GROUP BY team_id, user_id, product, access",
        )
        .fetch_all::<DaysRow>()
        .await?;
    for r in days {
        let row = observed
            .rows
            .entry((r.team_id, r.user_id, r.product, access(&r.access)))
            .or_default();
        row.days_used = u32::try_from(r.days).unwrap_or(u32::MAX);
        row.first_used = Some(date(r.first));
        row.last_accessed = Some(date(r.last));
    }
    for (name, range) in ranges {
        let dates = client
            .query(
                "SELECT team_id, user_id, product, toString(access), usage_date FROM usage_days \
                 WHERE usage_date BETWEEN toDate(?) AND toDate(?)",
            )
            .bind(range.from.to_string())
            .bind(range.to.to_string())
            .fetch_all::<DateRow>()
            .await?;
        let in_range = observed.dates_in.entry(name.clone()).or_default();
        for r in dates {
            let key = (r.team_id, r.user_id, r.product, access(&r.access));
            in_range.entry(key).or_default().insert(r.usage_date);
        }
        for (key, days) in in_range.iter() {
            observed
                .rows
                .entry(key.clone())
                .or_default()
                .days_used_in
                .insert(name.clone(), u32::try_from(days.len()).unwrap_or(u32::MAX));
        }
        let tokens = client
            .query(
                "SELECT team_id, sum(tokens_milli) FROM token_charges \
                 WHERE window_date BETWEEN toDate(?) AND toDate(?) GROUP BY team_id",
            )
            .bind(range.from.to_string())
            .bind(range.to.to_string())
            .fetch_all::<TeamTokens>()
            .await?;
        observed.tokens_in.insert(
            name.clone(),
            tokens.into_iter().map(|t| (t.team_id, t.tokens)).collect(),
        );
    }
    let tokens = client
        .query(
            "SELECT team_id, user_id, product, sum(tokens_milli), count() FROM token_charges \
             GROUP BY team_id, user_id, product",
        )
        .fetch_all::<TokensRow>()
        .await?;
    for r in tokens {
        observed.flex_windows += r.windows;
        observed.flex_tokens_milli += r.tokens;
        let row = observed
            .rows
            .entry((r.team_id, r.user_id, r.product, Access::Flex))
            .or_default();
        row.tokens_milli = r.tokens;
        row.windows = u32::try_from(r.windows).unwrap_or(u32::MAX);
    }
    let assignments = client
        .query(
            "SELECT team_id, user_id, product, toString(access), assigned_date, toString(via), \
             group_id FROM current_assignments",
        )
        .fetch_all::<AssignmentRow>()
        .await?;
    for r in assignments {
        let via = Via::parse(&r.via).unwrap_or(Via::Direct);
        observed
            .rows
            .entry((r.team_id, r.user_id, r.product, access(&r.access)))
            .or_default()
            .assignment = Some((
            date(r.assigned_date),
            via,
            (!r.group_id.is_empty()).then_some(r.group_id),
        ));
    }
    observe_report_rollups(client, &mut observed).await?;
    observed.events_counted = client
        .query("SELECT uniqExact(event_id) FROM authorizations")
        .fetch_one::<u64>()
        .await?;
    Ok(observed)
}

/// The report's rollups per stamped row: the day bits of every month
/// OR-ed per month and counted (18.16 has no `bitCount`), the last date,
/// the window sets merged per month and unrolled.
async fn observe_report_rollups(
    client: &Client,
    observed: &mut Observed,
) -> Result<(), clickhouse::error::Error> {
    let days = client
        .query(
            "SELECT team_id, user_id, product, acc, toUInt64(sum(length(bitmaskToArray(d)))) \
             FROM (SELECT team_id, user_id, product, toString(access) AS acc, month, \
             toUInt64(groupBitOrMerge(days)) AS d FROM usage_months \
             GROUP BY team_id, user_id, product, acc, month) \
             GROUP BY team_id, user_id, product, acc",
        )
        .fetch_all::<MonthDaysRow>()
        .await?;
    for r in days {
        observed
            .rows
            .entry((r.team_id, r.user_id, r.product, access(&r.access)))
            .or_default()
            .month_days_used = u32::try_from(r.days).unwrap_or(u32::MAX);
    }
    let latest = client
        .query(
            "SELECT team_id, user_id, product, toString(access) AS acc, \
             toUInt16(max(last_date)) FROM last_access GROUP BY team_id, user_id, product, acc",
        )
        .fetch_all::<LatestRow>()
        .await?;
    for r in latest {
        observed
            .rows
            .entry((r.team_id, r.user_id, r.product, access(&r.access)))
            .or_default()
            .latest_access = Some(date(r.last));
    }
    let tokens = client
        .query(
            "SELECT team_id, user_id, product, toUInt64(sum(tupleElement(t, 4))), \
             toUInt64(count()) FROM (SELECT team_id, user_id, product, month, \
             groupUniqArrayMerge(windows) AS w FROM token_months \
             GROUP BY team_id, user_id, product, month) ARRAY JOIN w AS t \
             GROUP BY team_id, user_id, product",
        )
        .fetch_all::<TokensRow>()
        .await?;
    for r in tokens {
        let row = observed
            .rows
            .entry((r.team_id, r.user_id, r.product, Access::Flex))
            .or_default();
        row.month_tokens_milli = r.tokens;
        row.month_windows = u32::try_from(r.windows).unwrap_or(u32::MAX);
    }
    Ok(())
}

/// Every difference between the warehouse and the oracle, as readable lines.
pub fn differences(expected: &ExpectedRollups, observed: &Observed) -> Vec<String> {
    let mut out = Vec::new();
    let t = &expected.totals;
    if observed.events_counted != t.events_counted {
        out.push(format!(
            "authorizations stored: {} (expected {})",
            observed.events_counted, t.events_counted
        ));
    }
    if observed.flex_windows != t.flex_windows || observed.flex_tokens_milli != t.flex_tokens_milli
    {
        out.push(format!(
            "Flex windows: {} with {} milli-tokens (expected {} with {})",
            observed.flex_windows, observed.flex_tokens_milli, t.flex_windows, t.flex_tokens_milli
        ));
    }
    let mut expected_keys = BTreeSet::new();
    for row in &expected.rows {
        let key = (
            row.team_id.clone(),
            row.user_id.clone(),
            row.product.clone(),
            row.access,
        );
        expected_keys.insert(key.clone());
        let got = observed.rows.get(&key).cloned().unwrap_or_default();
        let want_assignment = row
            .assignment
            .as_ref()
            .map(|a| (a.since.date_naive(), a.via, a.group_id.clone()));
        let mut want_in = row.days_used_in.clone();
        want_in.retain(|_, n| *n > 0);
        let checks: [(&str, String, String); 11] = [
            (
                "days used",
                got.days_used.to_string(),
                row.days_used.to_string(),
            ),
            (
                "first used",
                format!("{:?}", got.first_used),
                format!("{:?}", row.first_used),
            ),
            (
                "last accessed",
                format!("{:?}", got.last_accessed),
                format!("{:?}", row.last_accessed),
            ),
            (
                "tokens",
                got.tokens_milli.to_string(),
                row.tokens_milli.to_string(),
            ),
            ("windows", got.windows.to_string(), row.windows.to_string()),
            (
                "assignment",
                format!("{:?}", got.assignment),
                format!("{want_assignment:?}"),
            ),
            (
                "days used per range",
                format!("{:?}", got.days_used_in),
                format!("{want_in:?}"),
            ),
            (
                "days used (usage_months)",
                got.month_days_used.to_string(),
                row.days_used.to_string(),
            ),
            (
                "last accessed (last_access)",
                format!("{:?}", got.latest_access),
                format!("{:?}", row.last_accessed),
            ),
            (
                "tokens (token_months)",
                got.month_tokens_milli.to_string(),
                row.tokens_milli.to_string(),
            ),
            (
                "windows (token_months)",
                got.month_windows.to_string(),
                row.windows.to_string(),
            ),
        ];
        for (what, got, want) in checks {
            if got != want {
                out.push(format!(
                    "{}/{}/{}/{}: {what} {got} (expected {want})",
                    row.team_id,
                    row.user_id,
                    row.product,
                    row.access.as_str(),
                ));
            }
        }
    }
    for key in observed.rows.keys().filter(|k| !expected_keys.contains(*k)) {
        out.push(format!(
            "{}/{}/{}/{}: in the warehouse, not expected",
            key.0,
            key.1,
            key.2,
            key.3.as_str()
        ));
    }
    out
}

/// The tiles per current team (after merges) and for all teams, over the
/// named range, computed from the observed rows.
pub fn tiles(
    expected: &ExpectedRollups,
    observed: &Observed,
    range_name: &str,
) -> (Tiles, BTreeMap<String, Tiles>) {
    let Some(range) = expected.ranges.iter().find(|r| r.name == range_name) else {
        return (Tiles::default(), BTreeMap::new());
    };
    let current = |team: &str| -> String {
        expected
            .teams
            .iter()
            .find(|t| t.team_id == team)
            .map_or_else(|| team.to_owned(), |t| t.current_team_id.clone())
    };
    // Rows after merges: (current team, user, product, access), with the
    // union of the member teams' usage dates and the earliest assignment.
    let empty = BTreeMap::new();
    let dates_in = observed.dates_in.get(range_name).unwrap_or(&empty);
    let mut merged: BTreeMap<RowKey, (BTreeSet<u16>, Option<NaiveDate>)> = BTreeMap::new();
    for (key, row) in &observed.rows {
        let (team, user, product, access) = key;
        let entry = merged
            .entry((current(team), user.clone(), product.clone(), *access))
            .or_default();
        if let Some(days) = dates_in.get(key) {
            entry.0.extend(days.iter().copied());
        }
        if let Some((since, _, _)) = &row.assignment {
            entry.1 = Some(entry.1.map_or(*since, |s| s.min(*since)));
        }
    }
    let mut all = Tiles::default();
    let mut teams: BTreeMap<String, Tiles> = BTreeMap::new();
    let mut flex_users: BTreeMap<Option<String>, BTreeSet<&str>> = BTreeMap::new();
    for ((team, user, _product, access), (dates, since)) in &merged {
        let days = dates.len() as u64;
        let held = since.map(|since| crate::oracle::CurrentAssignment {
            since: Utc.from_utc_datetime(&since.and_time(chrono::NaiveTime::MIN)),
            via: Via::Direct,
            group_id: None,
        });
        let status = Oracle::status_of(held.as_ref(), *access, days > 0, range.range);
        for (tiles, scope) in [
            (teams.entry(team.clone()).or_default(), Some(team.clone())),
            (&mut all, None),
        ] {
            match access {
                Access::Seat if held.is_some() => {
                    tiles.seats_assigned += 1;
                    match status {
                        Some(Status::Active) => tiles.seats_active += 1,
                        Some(Status::Inactive) => {
                            *tiles.seats_inactive.get_or_insert(0) += 1;
                        }
                        Some(Status::NotYetActive) => tiles.seats_not_yet_active += 1,
                        _ => {}
                    }
                }
                Access::Flex if days > 0 => {
                    tiles.flex_days_used += days;
                    flex_users.entry(scope).or_default().insert(user.as_str());
                }
                _ => {}
            }
        }
    }
    for (team, tokens) in observed.tokens_in.get(range_name).into_iter().flatten() {
        teams.entry(current(team)).or_default().flex_tokens_milli += tokens;
        all.flex_tokens_milli += tokens;
    }
    for (scope, users) in flex_users {
        let n = users.len() as u64;
        match scope {
            Some(team) => teams.entry(team).or_default().flex_users = n,
            None => all.flex_users = n,
        }
    }
    // One team: an inactive count (zero when none); all teams: none (rule 6).
    for tiles in teams.values_mut() {
        tiles.seats_inactive.get_or_insert(0);
    }
    all.seats_inactive = None;
    (all, teams)
}

/// The oracle's tiles in the same shape, for side-by-side printing.
pub fn expected_tiles(
    expected: &ExpectedRollups,
    range_name: &str,
) -> (Tiles, BTreeMap<String, Tiles>) {
    let Some(range) = expected.ranges.iter().find(|r| r.name == range_name) else {
        return (Tiles::default(), BTreeMap::new());
    };
    let convert = |s: &crate::oracle::TeamSummary| Tiles {
        seats_assigned: s.seats_assigned,
        seats_active: s.seats_active,
        seats_inactive: s.seats_inactive,
        seats_not_yet_active: s.seats_not_yet_active,
        flex_tokens_milli: s.flex_tokens_milli,
        flex_users: s.flex_users,
        flex_days_used: s.flex_days_used,
    };
    (
        convert(&range.all_teams),
        range
            .teams
            .iter()
            .filter_map(|s| s.team_id.clone().map(|t| (t, convert(s))))
            .collect(),
    )
}

/// A printable table of observed tiles against expected ones.
pub fn tiles_table(
    range_name: &str,
    range: DateRange,
    observed: &(Tiles, BTreeMap<String, Tiles>),
    expected: &(Tiles, BTreeMap<String, Tiles>),
) -> String {
    let mut out = format!(
        "{range_name} ({} .. {})\n{:<14} {:>7} {:>7} {:>9} {:>9} {:>12} {:>6} {:>9}  oracle\n",
        range.from,
        range.to,
        "team",
        "seats",
        "active",
        "inactive",
        "not yet",
        "flex tokens",
        "users",
        "flex days"
    );
    let mut line = |name: &str, got: &Tiles, want: Option<&Tiles>| {
        let verdict = match want {
            Some(w) if w == got => "=",
            Some(_) => "DIFFERS",
            None => "missing",
        };
        out.push_str(&format!(
            "{:<14} {:>7} {:>7} {:>9} {:>9} {:>12} {:>6} {:>9}  {verdict}\n",
            name,
            got.seats_assigned,
            got.seats_active,
            got.seats_inactive
                .map_or_else(|| "-".to_owned(), |n| n.to_string()),
            got.seats_not_yet_active,
            format!(
                "{}.{:03}",
                got.flex_tokens_milli / 1000,
                got.flex_tokens_milli % 1000
            ),
            got.flex_users,
            got.flex_days_used,
        ));
        if let Some(w) = want.filter(|w| *w != got) {
            out.push_str(&format!("{:<14} expected {w:?}\n", ""));
        }
    };
    for (team, got) in &observed.1 {
        line(team, got, expected.1.get(team));
    }
    line("all teams", &observed.0, Some(&expected.0));
    out
}
