//! The report's lines: the aggregates of ClickHouse joined by (current
//! team, user, product, access), each line's status, the group and search
//! filters, the profiles and groups filled in, and a line as JSON shows it.

use std::collections::{BTreeSet, HashMap};

use chrono::{NaiveDate, TimeZone, Utc};
use usage_core::event::{Access, Tokens, UserProfile};
use usage_core::merge::TeamMerges;
use usage_core::privacy::display_identity;
use usage_core::status::{self, Held, Status};
use usage_core::usage::monthly_average;

use super::order::{arrange, order, View};
use super::scope::{Directory, Scope};
use super::{access_of, day, warehouse, Reporter};
use crate::admins::Admin;
use crate::error::ApiError;
use crate::model::{ReportFilters, ReportRow, Sort, SortColumn};
use crate::queries::{self, DaysRow, HeldRow, LastAccessRow, RowsQuery, TokensRow};

/// (current team, user, product, access).
pub(super) type RowKey = (String, String, String, Access);

/// What the warehouse says of one row.
#[derive(Debug, Default)]
pub(super) struct Agg {
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
pub(super) struct Line {
    pub(super) team: String,
    pub(super) user_id: String,
    pub(super) product: String,
    pub(super) access: Access,
    pub(super) days: u32,
    pub(super) last: Option<NaiveDate>,
    pub(super) tokens_milli: u64,
    pub(super) since: Option<NaiveDate>,
    pub(super) status: Status,
    pub(super) groups: Vec<String>,
    pub(super) user_key: String,
    pub(super) profile: Option<Profile>,
}

/// A user's name, email and avatar, from the directory.
#[derive(Debug, Clone)]
pub(super) struct Profile {
    pub(super) name: String,
    pub(super) email: String,
    pub(super) avatar_url: String,
}

/// The report's rows for a request, before paging.
pub(super) struct Rows {
    pub(super) lines: Vec<Line>,
    pub(super) hashed: bool,
    pub(super) filters: ReportFilters,
    /// Whether `lines` carry their groups (else [`Reporter::complete_groups`]).
    groups_loaded: bool,
    /// The stored teams in scope and the merges, to read groups later.
    stored_teams: Option<Vec<String>>,
    merges: TeamMerges,
}

fn contains_ci(haystack: &str, needle_lower: &str) -> bool {
    haystack.to_lowercase().contains(needle_lower)
}

impl Reporter {
    pub(super) fn rows_query(dir: &Directory, scope: &Scope, filters: &ReportFilters) -> RowsQuery {
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

    pub(super) async fn profiles(
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

    /// The aggregates of a report (days used in the range, last accessed,
    /// tokens, assignments in force), queried concurrently and joined here by
    /// (current team, user, product, access); only keys assigned now or used
    /// in the range stay, with their last access (ever) filled in.
    pub(super) async fn aggregate(
        &self,
        query: &RowsQuery,
    ) -> Result<HashMap<RowKey, Agg>, ApiError> {
        let seat_only = query.access.as_deref() == Some("seat");
        let (days, last, tokens, held) = tokio::join!(
            query.days().query(&self.client).fetch_all::<DaysRow>(),
            query
                .last_access()
                .query(&self.client)
                .fetch_all::<LastAccessRow>(),
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
        let (days, last, tokens, held) = (
            days.map_err(warehouse)?,
            last.map_err(warehouse)?,
            tokens.map_err(warehouse)?,
            held.map_err(warehouse)?,
        );
        let mut rows: HashMap<RowKey, Agg> = HashMap::with_capacity(days.len() + held.len());
        for r in days {
            rows.entry((r.team, r.user_id, r.product, access_of(&r.access)?))
                .or_default()
                .days = r.days;
        }
        for r in tokens {
            rows.entry((r.team, r.user_id, r.product, Access::Flex))
                .or_default()
                .tokens_milli = r.tokens_milli;
        }
        for r in held {
            rows.entry((r.team, r.user_id, r.product, access_of(&r.access)?))
                .or_default()
                .since = Some(day(r.since_day));
        }
        rows.retain(|_, a| a.since.is_some() || a.days > 0);
        // Last access alone never makes a line: it is filled into the lines
        // kept, so a line assigned now and not used in the range shows it.
        for r in last {
            let key = (r.team, r.user_id, r.product, access_of(&r.access)?);
            if let Some(agg) = rows.get_mut(&key) {
                agg.last = (r.last_day > 0).then(|| day(r.last_day));
            }
        }
        Ok(rows)
    }

    /// Every row of the report matching `filters`, filled in and ordered as
    /// much as `view` needs: from the filter set's state (cached briefly),
    /// then the row filters, profiles and groups as needed.
    pub(super) async fn rows(
        &self,
        admin: &Admin,
        filters: ReportFilters,
        sort: Sort,
        view: View,
    ) -> Result<Rows, ApiError> {
        let state = self.state(admin, &filters).await?;
        let with_groups = view == View::All
            || filters.group.is_some()
            || (view != View::Tiles && sort.column == SortColumn::Groups);
        let with_keys = view != View::Tiles || filters.q.is_some();
        let memberships = if with_groups {
            queries::memberships(state.scope.stored_teams.clone(), None)
                .query(&self.client)
                .fetch_all::<(String, String, String, String, u8)>()
                .await
                .map_err(warehouse)?
        } else {
            Vec::new()
        };
        let (dir, hashed) = (&state.dir, state.hashed);
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
        let mut lines = Vec::with_capacity(state.raw.len());
        for ((team, user_id, product, access), a) in &state.raw {
            let access = *access;
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
                    .or_insert_with(|| self.hash(user_id))
                    .clone()
            } else {
                user_id.clone()
            };
            lines.push(Line {
                team: team.clone(),
                user_id: user_id.clone(),
                product: product.clone(),
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
        arrange(&mut lines, view, order(sort, hashed, &filters));
        Ok(Rows {
            lines,
            hashed,
            filters,
            groups_loaded: with_groups,
            stored_teams: state.scope.stored_teams.clone(),
            merges: state.dir.merges.clone(),
        })
    }

    /// Fills in the groups of `lines` (a page) when the rows were read
    /// without them.
    pub(super) async fn complete_groups(
        &self,
        rows: &Rows,
        lines: &mut [Line],
    ) -> Result<(), ApiError> {
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
    pub(super) async fn complete_profiles(
        &self,
        lines: &mut [Line],
        hashed: bool,
    ) -> Result<(), ApiError> {
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
}

pub(super) fn display(line: &Line, hashed: bool, filters: &ReportFilters) -> ReportRow {
    let average = monthly_average(line.days, &filters.range);
    // Rule 7, as the core shows it: the key was hashed (cached) above.
    let profile = line
        .profile
        .as_ref()
        .filter(|_| !hashed)
        .map(|p| UserProfile {
            user_id: line.user_id.clone(),
            name: p.name.clone(),
            email: p.email.clone(),
            avatar_url: Some(p.avatar_url.clone()),
        });
    let shown = display_identity(&line.user_id, profile, hashed, |_| line.user_key.clone());
    ReportRow {
        user_key: shown.user_key,
        name: shown.name,
        email: shown.email,
        avatar_url: shown.avatar_url,
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
