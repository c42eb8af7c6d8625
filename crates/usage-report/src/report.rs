//! The usage report: rows and tiles, from the rollups, for one admin.
//!
//! ClickHouse aggregates one line per (current team, user, product, access)
//! ([`RowsQuery::rows`]); the rules are applied here by the domain core —
//! status ([`usage_core::status::status`]), the Subscriptions tile
//! ([`usage_core::status::subscription_tile`]), the monthly average, PII
//! hashing ([`usage_core::privacy`]) and team merges ([`TeamMerges`]) — so
//! the API, the exports and the schedules share one definition of each.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use clickhouse::Client;
use usage_core::event::{Access, AssignmentVia, Tokens};
use usage_core::merge::TeamMerges;
use usage_core::privacy::{identities_hashed, UserHasher};
use usage_core::range::DateRange;
use usage_core::status::{self, Held, Status};
use usage_core::team::TeamScope;
use usage_core::usage::monthly_average;

use crate::admins::{Admin, Teams};
use crate::error::ApiError;
use crate::model::{Daily, DailyPoint};
use crate::model::{
    FlexTile, Overview, Page, RangeDates, ReportFilters, ReportRow, Sort, SortColumn,
    SubscriptionsTile, TeamSelection, UsersPage,
};
use crate::queries::{
    self, DailyTokensRow, DailyUsageRow, HeldRow, RowsQuery, SeatDayRow, TokenWindowRow, TokensRow,
    UsageRow,
};

/// Reads the report from ClickHouse.
#[derive(Clone)]
pub struct Reporter {
    client: Client,
    hasher: UserHasher,
    /// user id -> keyed hash: the hash is a pure function of the id, and a
    /// report of every team hashes every user.
    keys: Arc<Mutex<HashMap<String, String>>>,
}

/// Past this many cached user keys the cache starts over (memory bound).
const MAX_CACHED_KEYS: usize = 1_000_000;

/// The directory as the report needs it: merges and team privacy.
struct Directory {
    merges: TeamMerges,
    pii_visible: HashMap<String, bool>,
    names: HashMap<String, String>,
}

/// What one report covers.
struct Scope {
    selection: TeamSelection,
    /// Stored teams whose rows count (`None`: every team).
    stored_teams: Option<Vec<String>>,
    /// The current teams in scope (for privacy with All Teams).
    current_teams: Vec<String>,
}

/// (current team, user, product, access).
type RowKey = (String, String, String, Access);

/// What the warehouse says of one row.
#[derive(Debug, Default)]
struct Agg {
    /// Days used in the range.
    days: u64,
    /// Last day used, ever.
    last: Option<NaiveDate>,
    /// Tokens of the windows starting in the range.
    tokens_milli: u64,
    /// Assigned now, since.
    since: Option<NaiveDate>,
}

/// A row before display.
struct Line {
    team: String,
    user_id: String,
    product: String,
    access: Access,
    days: u32,
    last: Option<NaiveDate>,
    tokens_milli: u64,
    since: Option<NaiveDate>,
    status: Status,
    groups: Vec<String>,
    user_key: String,
    profile: Option<Profile>,
}

#[derive(Debug, Clone)]
struct Profile {
    name: String,
    email: String,
    avatar_url: String,
}

/// The report's rows for a request, before paging.
struct Rows {
    lines: Vec<Line>,
    hashed: bool,
    filters: ReportFilters,
    /// Whether `lines` carry their groups (else [`Reporter::complete_groups`]).
    groups_loaded: bool,
    /// The stored teams in scope and the merges, to read groups later.
    stored_teams: Option<Vec<String>>,
    merges: TeamMerges,
}

/// What a report's rows are for: how much of each line to fill in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    /// The overview: no groups, keys or order unless a filter needs them.
    Tiles,
    /// A page: keys for all; the first `end` lines in order.
    Page { end: usize },
    /// Every line in order, with its groups (exports).
    All,
}

/// user id -> (user key, name, email) as a raw export shows them.
type Identities = HashMap<String, (String, Option<String>, Option<String>)>;

/// One day of seat usage (raw seat usage export).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SeatUsageDay {
    pub date: NaiveDate,
    pub team_id: String,
    pub user_key: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub product: String,
}

/// One charged Flex window (raw token usage export).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenUsageWindow {
    pub date: NaiveDate,
    pub window_start: DateTime<Utc>,
    pub team_id: String,
    pub user_key: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub product: String,
    pub tokens: Tokens,
}

/// A team an admin can pick.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TeamInfo {
    pub team_id: String,
    pub name: Option<String>,
    pub pii_visible: bool,
}

/// The assignment an unassign request is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldAssignment {
    pub team_id: String,
    pub user_id: String,
    pub product: String,
    pub access: Access,
    pub via: AssignmentVia,
    pub group_id: Option<String>,
}

fn warehouse(e: clickhouse::error::Error) -> ApiError {
    ApiError::unavailable("ClickHouse", &e)
}

fn day(days: u16) -> NaiveDate {
    NaiveDate::default() + chrono::TimeDelta::days(i64::from(days))
}

fn access_of(s: &str) -> Access {
    if s == "flex" {
        Access::Flex
    } else {
        Access::Seat
    }
}

fn contains_ci(haystack: &str, needle_lower: &str) -> bool {
    haystack.to_lowercase().contains(needle_lower)
}

impl Reporter {
    pub fn new(client: Client, hasher: UserHasher) -> Reporter {
        Reporter {
            client,
            hasher,
            keys: Arc::default(),
        }
    }

    /// The keyed hash of `user_id` (cached).
    fn hash(&self, user_id: &str) -> String {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(key) = keys.get(user_id) {
            return key.clone();
        }
        if keys.len() >= MAX_CACHED_KEYS {
            keys.clear();
        }
        let key = self.hasher.hash(user_id);
        keys.insert(user_id.to_owned(), key.clone());
        key
    }

    /// The ClickHouse client (for the readiness probe).
    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn directory(&self) -> Result<Directory, ApiError> {
        let merges = queries::merges()
            .query(&self.client)
            .fetch_all::<(String, String)>()
            .await
            .map_err(warehouse)?;
        let mut team_merges = TeamMerges::new();
        for (from, into) in merges {
            // A merge closing a cycle or re-merging a team is refused by the
            // core, as the ingest refuses it.
            let _ = team_merges.merge(&from, &into);
        }
        let teams = queries::teams()
            .query(&self.client)
            .fetch_all::<(String, String, u8)>()
            .await
            .map_err(warehouse)?;
        Ok(Directory {
            merges: team_merges,
            pii_visible: teams.iter().map(|(t, _, v)| (t.clone(), *v == 1)).collect(),
            names: teams.into_iter().map(|(t, n, _)| (t, n)).collect(),
        })
    }

    fn scope(admin: &Admin, selection: &TeamSelection, dir: &Directory) -> Result<Scope, ApiError> {
        match selection {
            TeamSelection::Team(team) => {
                if !admin.teams.includes(team) {
                    return Err(ApiError::forbidden(format!(
                        "you do not administer team {team}"
                    )));
                }
                let current = dir.merges.current(team);
                if current != team {
                    return Err(ApiError::team_merged(team, current));
                }
                Ok(Scope {
                    selection: selection.clone(),
                    stored_teams: Some(
                        dir.merges
                            .history_of(team)
                            .into_iter()
                            .map(str::to_owned)
                            .collect(),
                    ),
                    current_teams: vec![team.clone()],
                })
            }
            TeamSelection::All => match &admin.teams {
                Teams::Every => Ok(Scope {
                    selection: TeamSelection::All,
                    stored_teams: None,
                    current_teams: dir
                        .pii_visible
                        .keys()
                        .map(|t| dir.merges.current(t).to_owned())
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect(),
                }),
                Teams::Only(teams) => {
                    let current: BTreeSet<String> = teams
                        .iter()
                        .map(|t| dir.merges.current(t).to_owned())
                        .filter(|t| admin.teams.includes(t))
                        .collect();
                    let stored: BTreeSet<String> = current
                        .iter()
                        .flat_map(|t| dir.merges.history_of(t))
                        .map(str::to_owned)
                        .collect();
                    Ok(Scope {
                        selection: TeamSelection::All,
                        stored_teams: Some(stored.into_iter().collect()),
                        current_teams: current.into_iter().collect(),
                    })
                }
            },
        }
    }

    fn rows_query(dir: &Directory, scope: &Scope, filters: &ReportFilters) -> RowsQuery {
        RowsQuery {
            merges: dir
                .merges
                .mapping()
                .into_iter()
                .map(|(f, i)| (f.to_owned(), i.to_owned()))
                .collect(),
            teams: scope.stored_teams.clone(),
            from: filters.dates.from().to_string(),
            to: filters.dates.to().to_string(),
            product: filters.product.clone(),
            access: filters.access.map(|a| a.as_str().to_owned()),
        }
    }

    async fn profiles(
        &self,
        users: Option<Vec<String>>,
    ) -> Result<HashMap<String, Profile>, ApiError> {
        let rows = queries::profiles(users)
            .query(&self.client)
            .fetch_all::<(String, String, String, String)>()
            .await
            .map_err(warehouse)?;
        Ok(rows
            .into_iter()
            .map(|(id, name, email, avatar_url)| {
                (
                    id,
                    Profile {
                        name,
                        email,
                        avatar_url,
                    },
                )
            })
            .collect())
    }

    /// The three aggregates of a report (usage, tokens, assignments in
    /// force), queried concurrently and joined here by (current team, user,
    /// product, access); only keys assigned now or used in the range stay.
    async fn aggregate(&self, query: &RowsQuery) -> Result<HashMap<RowKey, Agg>, ApiError> {
        let seat_only = query.access.as_deref() == Some("seat");
        let (usage, tokens, held) = tokio::join!(
            query.usage().query(&self.client).fetch_all::<UsageRow>(),
            async {
                if seat_only {
                    Ok(Vec::new())
                } else {
                    query
                        .tokens()
                        .query(&self.client)
                        .fetch_all::<TokensRow>()
                        .await
                }
            },
            query.held().query(&self.client).fetch_all::<HeldRow>(),
        );
        let (usage, tokens, held) = (
            usage.map_err(warehouse)?,
            tokens.map_err(warehouse)?,
            held.map_err(warehouse)?,
        );
        let mut rows: HashMap<RowKey, Agg> = HashMap::with_capacity(usage.len() + held.len());
        for r in usage {
            let agg = rows
                .entry((r.team, r.user_id, r.product, access_of(&r.access)))
                .or_default();
            agg.days = r.days;
            agg.last = (r.last_day > 0).then(|| day(r.last_day));
        }
        for r in tokens {
            rows.entry((r.team, r.user_id, r.product, Access::Flex))
                .or_default()
                .tokens_milli = r.tokens_milli;
        }
        for r in held {
            rows.entry((r.team, r.user_id, r.product, access_of(&r.access)))
                .or_default()
                .since = Some(day(r.since_day));
        }
        rows.retain(|_, a| a.since.is_some() || a.days > 0);
        Ok(rows)
    }

    /// Every row of the report matching `filters`, filled in and ordered as
    /// much as `view` needs.
    async fn rows(
        &self,
        admin: &Admin,
        filters: ReportFilters,
        sort: Sort,
        view: View,
    ) -> Result<Rows, ApiError> {
        let dir = self.directory().await?;
        let scope = Self::scope(admin, &filters.team, &dir)?;
        let with_groups = view == View::All
            || filters.group.is_some()
            || (view != View::Tiles && sort.column == SortColumn::Groups);
        let with_keys = view != View::Tiles || filters.q.is_some();
        let query = Self::rows_query(&dir, &scope, &filters);
        let (raw, memberships) = tokio::join!(self.aggregate(&query), async {
            if with_groups {
                queries::memberships(scope.stored_teams.clone(), None)
                    .query(&self.client)
                    .fetch_all::<(String, String, String, String, u8)>()
                    .await
                    .map_err(warehouse)
            } else {
                Ok(Vec::new())
            }
        });
        let (raw, memberships) = (raw?, memberships?);
        let hashed = hashed_for(&scope, &dir, raw.keys().map(|k| k.0.as_str()));
        let mut groups: HashMap<(String, String), Vec<(String, String)>> = HashMap::new();
        for (team, user, group_id, group_name, member) in memberships {
            if member == 1 {
                groups
                    .entry((dir.merges.current(&team).to_owned(), user))
                    .or_default()
                    .push((group_id, group_name));
            }
        }
        let mut keys: HashMap<String, String> = HashMap::new();
        let mut lines = Vec::with_capacity(raw.len());
        for ((team, user_id, product, access), a) in raw {
            let held = a.since.map(|since| Held {
                access,
                since: Utc.from_utc_datetime(&since.and_time(chrono::NaiveTime::MIN)),
            });
            let days = u32::try_from(a.days).unwrap_or(u32::MAX);
            let Some(st) = status::status(held, days > 0, &filters.dates) else {
                continue;
            };
            if filters.status.is_some_and(|s| s != st) {
                continue;
            }
            let member_of = if with_groups {
                groups.get(&(team.clone(), user_id.clone()))
            } else {
                None
            };
            if let Some(wanted) = &filters.group {
                let is_member = member_of
                    .is_some_and(|gs| gs.iter().any(|(id, name)| id == wanted || name == wanted));
                if !is_member {
                    continue;
                }
            }
            let mut group_names: Vec<String> = member_of
                .map(|gs| gs.iter().map(|(_, name)| name.clone()).collect())
                .unwrap_or_default();
            group_names.sort();
            group_names.dedup();
            let user_key = if !with_keys {
                String::new()
            } else if hashed {
                keys.entry(user_id.clone())
                    .or_insert_with(|| self.hash(&user_id))
                    .clone()
            } else {
                user_id.clone()
            };
            lines.push(Line {
                team,
                user_id,
                product,
                access,
                days,
                last: a.last,
                tokens_milli: a.tokens_milli,
                since: held.map(|h| h.since.date_naive()),
                status: st,
                groups: group_names,
                user_key,
                profile: None,
            });
        }
        // Search and sorting by name or email need every profile.
        let needs_profiles = !hashed
            && (filters.q.is_some() || matches!(sort.column, SortColumn::Name | SortColumn::Email));
        if needs_profiles {
            let users: BTreeSet<String> = lines.iter().map(|l| l.user_id.clone()).collect();
            let profiles = self.profiles(Some(users.into_iter().collect())).await?;
            for line in &mut lines {
                line.profile = profiles.get(&line.user_id).cloned();
            }
        }
        if let Some(q) = &filters.q {
            let q = q.to_lowercase();
            lines.retain(|l| {
                contains_ci(&l.user_key, &q)
                    || (!hashed
                        && l.profile
                            .as_ref()
                            .is_some_and(|p| contains_ci(&p.name, &q) || contains_ci(&p.email, &q)))
            });
        }
        let order = order(sort, hashed, &filters);
        match view {
            View::Tiles => {}
            View::All => lines.sort_by(&order),
            View::Page { end } => {
                // Only the lines up to the page's end need their order.
                if end < lines.len() && end > 0 {
                    lines.select_nth_unstable_by(end - 1, &order);
                    lines[..end].sort_by(&order);
                } else {
                    lines.sort_by(&order);
                }
            }
        }
        Ok(Rows {
            lines,
            hashed,
            filters,
            groups_loaded: with_groups,
            stored_teams: scope.stored_teams,
            merges: dir.merges,
        })
    }

    /// Fills in the groups of `lines` (a page) when the rows were read
    /// without them.
    async fn complete_groups(&self, rows: &Rows, lines: &mut [Line]) -> Result<(), ApiError> {
        if rows.groups_loaded || lines.is_empty() {
            return Ok(());
        }
        let users: BTreeSet<String> = lines.iter().map(|l| l.user_id.clone()).collect();
        let memberships =
            queries::memberships(rows.stored_teams.clone(), Some(users.into_iter().collect()))
                .query(&self.client)
                .fetch_all::<(String, String, String, String, u8)>()
                .await
                .map_err(warehouse)?;
        let mut groups: HashMap<(String, String), Vec<String>> = HashMap::new();
        for (team, user, _group_id, group_name, member) in memberships {
            if member == 1 {
                groups
                    .entry((rows.merges.current(&team).to_owned(), user))
                    .or_default()
                    .push(group_name);
            }
        }
        for line in lines {
            let mut names = groups
                .get(&(line.team.clone(), line.user_id.clone()))
                .cloned()
                .unwrap_or_default();
            names.sort();
            names.dedup();
            line.groups = names;
        }
        Ok(())
    }

    /// Fills in the profiles of `lines` that have none yet.
    async fn complete_profiles(&self, lines: &mut [Line], hashed: bool) -> Result<(), ApiError> {
        if hashed {
            return Ok(());
        }
        let missing: BTreeSet<String> = lines
            .iter()
            .filter(|l| l.profile.is_none())
            .map(|l| l.user_id.clone())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let profiles = self.profiles(Some(missing.into_iter().collect())).await?;
        for line in lines.iter_mut().filter(|l| l.profile.is_none()) {
            line.profile = profiles.get(&line.user_id).cloned();
        }
        Ok(())
    }

    /// The current teams `admin` administers, by id.
    pub async fn teams(&self, admin: &Admin) -> Result<Vec<TeamInfo>, ApiError> {
        let dir = self.directory().await?;
        let known = queries::known_teams()
            .query(&self.client)
            .fetch_all::<String>()
            .await
            .map_err(warehouse)?;
        let current: BTreeSet<String> = known
            .iter()
            .map(|t| dir.merges.current(t).to_owned())
            .filter(|t| admin.teams.includes(t))
            .collect();
        Ok(current
            .into_iter()
            .map(|team_id| TeamInfo {
                name: dir.names.get(&team_id).cloned().filter(|n| !n.is_empty()),
                pii_visible: dir.pii_visible.get(&team_id).copied().unwrap_or(false),
                team_id,
            })
            .collect())
    }

    /// One page of the users table.
    pub async fn users(
        &self,
        admin: &Admin,
        filters: ReportFilters,
        sort: Sort,
        page: Page,
    ) -> Result<UsersPage, ApiError> {
        let first = usize::try_from(u64::from(page.page - 1) * u64::from(page.page_size))
            .unwrap_or(usize::MAX);
        let last = first.saturating_add(page.page_size as usize);
        let mut rows = self
            .rows(admin, filters, sort, View::Page { end: last })
            .await?;
        let total = rows.lines.len() as u64;
        let start = first.min(rows.lines.len());
        let end = last.min(rows.lines.len());
        let mut page_lines = std::mem::take(&mut rows.lines);
        let page_lines = &mut page_lines[start..end];
        self.complete_profiles(page_lines, rows.hashed).await?;
        self.complete_groups(&rows, page_lines).await?;
        Ok(UsersPage {
            rows: page_lines
                .iter()
                .map(|l| display(l, rows.hashed, &rows.filters))
                .collect(),
            total,
            page: page.page,
            page_size: page.page_size,
        })
    }

    /// Every row (exports), sorted.
    pub async fn all_rows(
        &self,
        admin: &Admin,
        filters: ReportFilters,
        sort: Sort,
    ) -> Result<Vec<ReportRow>, ApiError> {
        let mut rows = self.rows(admin, filters, sort, View::All).await?;
        self.complete_profiles(&mut rows.lines, rows.hashed).await?;
        Ok(rows
            .lines
            .iter()
            .map(|l| display(l, rows.hashed, &rows.filters))
            .collect())
    }

    /// The overview tiles.
    pub async fn overview(
        &self,
        admin: &Admin,
        filters: ReportFilters,
    ) -> Result<Overview, ApiError> {
        let range = filters.dates;
        let scope = match &filters.team {
            TeamSelection::All => TeamScope::All,
            TeamSelection::Team(t) => TeamScope::Team(t),
        };
        let rows = self
            .rows(admin, filters.clone(), Sort::default(), View::Tiles)
            .await?;
        let held_access = rows
            .lines
            .iter()
            .filter(|l| l.since.is_some())
            .map(|l| (l.access, l.status));
        let tile = status::subscription_tile(held_access, scope);
        let mut flex_users: HashSet<&str> = HashSet::new();
        let (mut tokens, mut flex_days) = (0u64, 0u64);
        for line in rows.lines.iter().filter(|l| l.access == Access::Flex) {
            tokens += line.tokens_milli;
            if line.days > 0 {
                flex_users.insert(&line.user_id);
                flex_days += u64::from(line.days);
            }
        }
        Ok(Overview {
            subscriptions: SubscriptionsTile {
                assigned_seats: tile.assigned,
                active: tile.active,
                inactive: tile.inactive,
                not_yet_active: tile.not_yet_active,
            },
            flex: FlexTile {
                tokens_consumed: Tokens::from_millis(tokens),
                users: flex_users.len() as u64,
                days_used: flex_days,
            },
            range: RangeDates {
                from: range.from(),
                to: range.to(),
            },
        })
    }

    /// The daily chart: per date of the range, active users, days used and
    /// tokens, for the team, product and access filters (the row filters —
    /// status, group, search — do not apply: the chart is of the team).
    pub async fn daily(&self, admin: &Admin, filters: &ReportFilters) -> Result<Daily, ApiError> {
        let dir = self.directory().await?;
        let scope = Self::scope(admin, &filters.team, &dir)?;
        let query = Self::rows_query(&dir, &scope, filters);
        let usage = query
            .daily_usage()
            .query(&self.client)
            .fetch_all::<DailyUsageRow>()
            .await
            .map_err(warehouse)?;
        let tokens = if filters.access == Some(Access::Seat) {
            Vec::new()
        } else {
            query
                .daily_tokens()
                .query(&self.client)
                .fetch_all::<DailyTokensRow>()
                .await
                .map_err(warehouse)?
        };
        let usage: HashMap<NaiveDate, (u64, u64)> = usage
            .into_iter()
            .map(|r| (day(r.day), (r.users, r.pairs)))
            .collect();
        let tokens: HashMap<NaiveDate, u64> = tokens
            .into_iter()
            .map(|r| (day(r.day), r.tokens_milli))
            .collect();
        let range = filters.dates;
        let days = range
            .from()
            .iter_days()
            .take_while(|d| *d <= range.to())
            .map(|date| {
                let (active_users, days_used) = usage.get(&date).copied().unwrap_or((0, 0));
                DailyPoint {
                    date,
                    active_users,
                    days_used,
                    tokens: Tokens::from_millis(tokens.get(&date).copied().unwrap_or(0)),
                }
            })
            .collect();
        Ok(Daily {
            days,
            range: range_dates(&range),
        })
    }

    /// Identity columns for raw exports: key, and name/email when visible.
    async fn identities(
        &self,
        users: BTreeSet<String>,
        hashed: bool,
    ) -> Result<Identities, ApiError> {
        if hashed {
            return Ok(users
                .into_iter()
                .map(|u| {
                    let key = self.hash(&u);
                    (u, (key, None, None))
                })
                .collect());
        }
        let profiles = self.profiles(Some(users.iter().cloned().collect())).await?;
        Ok(users
            .into_iter()
            .map(|u| {
                let p = profiles.get(&u);
                let value = (
                    u.clone(),
                    p.map(|p| p.name.clone()),
                    p.map(|p| p.email.clone()),
                );
                (u, value)
            })
            .collect())
    }

    /// Raw rows of `sql` for the admin's scope, with the identity to show
    /// for each user: (user key, name, email).
    async fn raw<R>(
        &self,
        admin: &Admin,
        filters: &ReportFilters,
        sql: impl Fn(&RowsQuery) -> queries::Sql,
        team_user: impl Fn(&R) -> (&str, &str),
    ) -> Result<(Vec<R>, Identities), ApiError>
    where
        R: clickhouse::RowOwned + clickhouse::RowRead,
    {
        let dir = self.directory().await?;
        let scope = Self::scope(admin, &filters.team, &dir)?;
        let rows = sql(&Self::rows_query(&dir, &scope, filters))
            .query(&self.client)
            .fetch_all::<R>()
            .await
            .map_err(warehouse)?;
        let hashed = hashed_for(&scope, &dir, rows.iter().map(|r| team_user(r).0));
        let users = rows.iter().map(|r| team_user(r).1.to_owned()).collect();
        let ids = self.identities(users, hashed).await?;
        Ok((rows, ids))
    }

    /// Raw seat usage, day by day, in the range (team, product filters apply).
    pub async fn seat_usage(
        &self,
        admin: &Admin,
        filters: &ReportFilters,
    ) -> Result<Vec<SeatUsageDay>, ApiError> {
        let (days, ids) = self
            .raw(admin, filters, RowsQuery::seat_days, |d: &SeatDayRow| {
                (&d.team, &d.user_id)
            })
            .await?;
        Ok(days
            .into_iter()
            .map(|d| {
                let (user_key, name, email) = ids.get(&d.user_id).cloned().unwrap_or_default();
                SeatUsageDay {
                    date: day(d.usage_day),
                    team_id: d.team,
                    user_key,
                    name,
                    email,
                    product: d.product,
                }
            })
            .collect())
    }

    /// Raw token usage, window by window, in the range.
    pub async fn token_usage(
        &self,
        admin: &Admin,
        filters: &ReportFilters,
    ) -> Result<Vec<TokenUsageWindow>, ApiError> {
        let (windows, ids) = self
            .raw(
                admin,
                filters,
                RowsQuery::token_windows,
                |w: &TokenWindowRow| (&w.team, &w.user_id),
            )
            .await?;
        Ok(windows
            .into_iter()
            .map(|w| {
                let (user_key, name, email) = ids.get(&w.user_id).cloned().unwrap_or_default();
                let start = Utc
                    .timestamp_opt(i64::from(w.started), 0)
                    .single()
                    .unwrap_or_default();
                TokenUsageWindow {
                    date: start.date_naive(),
                    window_start: start,
                    team_id: w.team,
                    user_key,
                    name,
                    email,
                    product: w.product,
                    tokens: Tokens::from_millis(w.tokens_milli),
                }
            })
            .collect())
    }

    /// The assignment in force of the user shown as `user_key` in `team`
    /// (a current team the admin administers), for `product`.
    pub async fn held_assignment(
        &self,
        admin: &Admin,
        team: &str,
        user_key: &str,
        product: &str,
        access: Option<Access>,
    ) -> Result<Option<HeldAssignment>, ApiError> {
        let dir = self.directory().await?;
        let scope = Self::scope(admin, &TeamSelection::Team(team.to_owned()), &dir)?;
        let teams = scope.stored_teams.unwrap_or_default();
        let rows = queries::assignments_of(teams, product)
            .query(&self.client)
            .fetch_all::<(String, String, String, u8, String, String)>()
            .await
            .map_err(warehouse)?;
        let mut found = None;
        for (stored_team, user_id, acc, assigned, via, group_id) in rows {
            let access_here = access_of(&acc);
            if assigned != 1 || access.is_some_and(|a| a != access_here) {
                continue;
            }
            if user_id != user_key && self.hash(&user_id) != user_key {
                continue;
            }
            let via = match via.as_str() {
                "group" => AssignmentVia::Group,
                "default" => AssignmentVia::Default,
                _ => AssignmentVia::Direct,
            };
            // A direct assignment is the one an admin can remove; prefer it.
            let candidate = HeldAssignment {
                team_id: stored_team,
                user_id,
                product: product.to_owned(),
                access: access_here,
                via,
                group_id: (!group_id.is_empty()).then_some(group_id),
            };
            let better = match &found {
                None => true,
                Some(HeldAssignment { via, .. }) => {
                    *via != AssignmentVia::Direct && candidate.via == AssignmentVia::Direct
                }
            };
            if better {
                found = Some(candidate);
            }
        }
        Ok(found)
    }
}

/// Rule 7: hashed when the selected team's PII is off; with All Teams, when
/// any team in scope has it off — the admin's teams, and (for an admin of
/// every team) every team the rows show, a team without a directory entry
/// counting as off.
fn hashed_for<'a>(
    scope: &Scope,
    dir: &Directory,
    row_teams: impl Iterator<Item = &'a str>,
) -> bool {
    let visible = |t: &str| dir.pii_visible.get(t).copied().unwrap_or(false);
    match &scope.selection {
        TeamSelection::Team(team) => identities_hashed(TeamScope::Team(team), [], visible),
        TeamSelection::All => {
            identities_hashed(
                TeamScope::All,
                scope.current_teams.iter().map(String::as_str),
                visible,
            ) || (scope.stored_teams.is_none()
                && identities_hashed(TeamScope::All, row_teams, visible))
        }
    }
}

fn display(line: &Line, hashed: bool, filters: &ReportFilters) -> ReportRow {
    let average = monthly_average(line.days, &filters.range);
    let profile = if hashed { None } else { line.profile.as_ref() };
    ReportRow {
        user_key: line.user_key.clone(),
        name: profile.map(|p| p.name.clone()),
        email: profile.map(|p| p.email.clone()),
        avatar_url: profile
            .map(|p| p.avatar_url.clone())
            .filter(|a| !a.is_empty()),
        team_id: line.team.clone(),
        groups: line.groups.clone(),
        product: line.product.clone(),
        access: line.access,
        assigned_date: line.since,
        last_accessed: line.last,
        days_used: line.days,
        monthly_average: (average * 100.0).round() / 100.0,
        tokens_used: Tokens::from_millis(line.tokens_milli),
        status: line.status,
    }
}

/// The order of `sort` over lines (ties: user key, team, product, access).
fn order(
    sort: Sort,
    hashed: bool,
    filters: &ReportFilters,
) -> impl Fn(&Line, &Line) -> std::cmp::Ordering {
    let months = filters.range.months();
    let name = move |l: &Line| -> Option<String> {
        if hashed {
            None
        } else {
            l.profile.as_ref().map(|p| p.name.to_lowercase())
        }
    };
    let email = move |l: &Line| -> Option<String> {
        if hashed {
            None
        } else {
            l.profile.as_ref().map(|p| p.email.to_lowercase())
        }
    };
    move |a: &Line, b: &Line| {
        use std::cmp::Ordering;
        let primary = match sort.column {
            SortColumn::UserKey => Ordering::Equal,
            SortColumn::Name => name(a).cmp(&name(b)),
            SortColumn::Email => email(a).cmp(&email(b)),
            SortColumn::TeamId => a.team.cmp(&b.team),
            SortColumn::Groups => a.groups.cmp(&b.groups),
            SortColumn::Product => a.product.cmp(&b.product),
            SortColumn::Access => a.access.as_str().cmp(b.access.as_str()),
            SortColumn::AssignedDate => a.since.cmp(&b.since),
            SortColumn::LastAccessed => a.last.cmp(&b.last),
            SortColumn::DaysUsed => a.days.cmp(&b.days),
            SortColumn::MonthlyAverage => {
                (f64::from(a.days) / months).total_cmp(&(f64::from(b.days) / months))
            }
            SortColumn::TokensUsed => a.tokens_milli.cmp(&b.tokens_milli),
            SortColumn::Status => a.status.as_str().cmp(b.status.as_str()),
        };
        let primary = if sort.descending {
            primary.reverse()
        } else {
            primary
        };
        primary
            .then_with(|| {
                let key = a.user_key.cmp(&b.user_key);
                if sort.column == SortColumn::UserKey && sort.descending {
                    key.reverse()
                } else {
                    key
                }
            })
            .then_with(|| a.team.cmp(&b.team))
            .then_with(|| a.product.cmp(&b.product))
            .then_with(|| a.access.cmp(&b.access))
    }
}

/// The date range of a report, as JSON shows it.
pub fn range_dates(range: &DateRange) -> RangeDates {
    RangeDates {
        from: range.from(),
        to: range.to(),
    }
}
