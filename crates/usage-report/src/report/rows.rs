//! The report's lines for a request: the filter set's table ([`super::table`])
//! through the status, group and search filters, ordered, and the lines
//! shown filled in with their profiles and groups; a line as JSON shows it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::NaiveDate;
use usage_core::event::{Access, Tokens, UserProfile};
use usage_core::frequency::{shown_average, usage_class, UsageClass};
use usage_core::privacy::display_identity;
use usage_core::status::Status;

use super::order::{arrange, SortKeys, View};
use super::scope::{Directory, Scope};
use super::state::ReportState;
use super::table::{Entry, Table};
use super::{warehouse, Reporter};
use crate::admins::Admin;
use crate::error::ApiError;
use crate::model::{ReportFilters, ReportRow, Sort, SortColumn};
use crate::queries::{self, RowsQuery};

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
    pub(super) class: UsageClass,
    pub(super) groups: Vec<String>,
    pub(super) user_key: String,
    pub(super) profile: Option<Profile>,
}

impl Line {
    /// A line of the table as strings, without its groups and profile.
    pub(super) fn bare(table: &Table, e: &Entry, class: UsageClass) -> Line {
        let user = table.user(e);
        Line {
            team: table.team(e).to_owned(),
            user_id: user.id.to_string(),
            product: table.product(e).to_owned(),
            access: e.access,
            days: e.days,
            last: e.last(),
            tokens_milli: e.tokens_milli,
            since: e.since(),
            status: e.status,
            class,
            groups: Vec::new(),
            user_key: user.key().to_owned(),
            profile: None,
        }
    }
}

/// A user's name, email and avatar, from the directory.
#[derive(Debug, Clone)]
pub(super) struct Profile {
    pub(super) name: String,
    pub(super) email: String,
    pub(super) avatar_url: String,
}

/// The report's lines for a request.
pub(super) struct Rows {
    /// The lines the view shows (none for the tiles and exports, or a
    /// page), filled in.
    pub(super) lines: Vec<Line>,
    pub(super) hashed: bool,
    pub(super) filters: ReportFilters,
    /// Whether `lines` carry their groups (else [`Reporter::complete_groups`]).
    pub(super) groups_loaded: bool,
    /// Lines matching the filters.
    pub(super) total: usize,
    /// Every matching line: indices into the state's table, ordered as the
    /// view needs.
    pub(super) picked: Vec<u32>,
    pub(super) state: Arc<ReportState>,
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

    /// Every line of the report matching `filters`, ordered as much as
    /// `view` needs: from the filter set's state (cached briefly), then the
    /// status, group and search filters, with the profiles and groups they
    /// and the order need; the lines `view` shows filled in.
    pub(super) async fn rows(
        &self,
        admin: &Admin,
        filters: ReportFilters,
        sort: Sort,
        view: View,
    ) -> Result<Rows, ApiError> {
        let state = self.state(admin, &filters).await?;
        let table = &state.table;
        let with_groups =
            filters.group.is_some() || (view != View::Tiles && sort.column == SortColumn::Groups);
        let groups = if with_groups {
            self.groups_of(&state).await?
        } else {
            HashMap::new()
        };
        let group_names: HashMap<(u32, u32), Vec<String>> = groups
            .iter()
            .map(|(k, gs)| {
                let mut names: Vec<String> = gs.iter().map(|(_, name)| name.clone()).collect();
                names.sort();
                names.dedup();
                (*k, names)
            })
            .collect();
        let months = filters.range.months();
        let class = |days: u32| usage_class(days, months, self.frequent_at);
        let mut picked: Vec<u32> = Vec::new();
        for (i, e) in table.lines.iter().enumerate() {
            if filters.status.is_some_and(|s| s != e.status) {
                continue;
            }
            if filters.usage_class.is_some_and(|c| c != class(e.days)) {
                continue;
            }
            if let Some(wanted) = &filters.group {
                let is_member = groups
                    .get(&(e.team, e.user))
                    .is_some_and(|gs| gs.iter().any(|(id, name)| id == wanted || name == wanted));
                if !is_member {
                    continue;
                }
            }
            picked.push(u32::try_from(i).unwrap_or(u32::MAX));
        }
        // Search and sorting by name or email need every profile.
        let needs_profiles = !state.hashed
            && (filters.q.is_some() || matches!(sort.column, SortColumn::Name | SortColumn::Email));
        let profiles = if needs_profiles {
            let users: BTreeSet<u32> = picked
                .iter()
                .map(|&i| table.lines[i as usize].user)
                .collect();
            self.profiles_of(table, users).await?
        } else {
            HashMap::new()
        };
        if let Some(q) = &filters.q {
            let q = q.to_lowercase();
            picked.retain(|&i| {
                let e = &table.lines[i as usize];
                contains_ci(&table.user(e).key(), &q)
                    || (!state.hashed
                        && profiles
                            .get(&e.user)
                            .is_some_and(|p| contains_ci(&p.name, &q) || contains_ci(&p.email, &q)))
            });
        }
        {
            let keys = SortKeys::new(
                sort,
                &filters,
                self.frequent_at,
                state.hashed,
                &profiles,
                Some(&group_names),
            );
            arrange(&mut picked, view, |a, b| {
                keys.cmp(&table.lines[*a as usize], &table.lines[*b as usize])
            });
        }
        let shown = match view {
            View::Tiles => &[][..],
            View::Page { start, end } => &picked[start.min(picked.len())..end.min(picked.len())],
            View::Export => &[][..],
        };
        let lines = shown
            .iter()
            .map(|&i| {
                let e = &table.lines[i as usize];
                Line {
                    groups: group_names
                        .get(&(e.team, e.user))
                        .cloned()
                        .unwrap_or_default(),
                    profile: profiles.get(&e.user).cloned(),
                    ..Line::bare(table, e, class(e.days))
                }
            })
            .collect();
        Ok(Rows {
            lines,
            hashed: state.hashed,
            filters,
            groups_loaded: with_groups,
            total: picked.len(),
            picked,
            state,
        })
    }

    /// The profiles of the table's `users` found in the directory.
    async fn profiles_of(
        &self,
        table: &Table,
        users: BTreeSet<u32>,
    ) -> Result<HashMap<u32, Profile>, ApiError> {
        let ids = users
            .iter()
            .map(|&u| table.user_at(u).id.to_owned())
            .collect();
        let by_id = self.profiles(Some(ids)).await?;
        Ok(users
            .into_iter()
            .filter_map(|u| by_id.get(table.user_at(u).id).map(|p| (u, p.clone())))
            .collect())
    }

    /// The groups of every (team, user) of `state`'s lines: group id and
    /// name, under the user's current team.
    async fn groups_of(
        &self,
        state: &ReportState,
    ) -> Result<HashMap<(u32, u32), Vec<(String, String)>>, ApiError> {
        let memberships = queries::memberships(state.scope.stored_teams.clone(), None)
            .query(&self.client)
            .fetch_all::<(String, String, String, String, u8)>()
            .await
            .map_err(warehouse)?;
        let table = &state.table;
        let mut groups: HashMap<(u32, u32), Vec<(String, String)>> = HashMap::new();
        for (team, user, group_id, group_name, member) in memberships {
            if member != 1 {
                continue;
            }
            let current = state.dir.merges.current(&team);
            if let (Some(t), Some(u)) = (table.team_index(current), table.user_index(&user)) {
                groups
                    .entry((t, u))
                    .or_default()
                    .push((group_id, group_name));
            }
        }
        Ok(groups)
    }

    /// Fills in the groups of `lines` (a page) when the rows were read
    /// without them.
    pub(super) async fn complete_groups(
        &self,
        state: &ReportState,
        lines: &mut [Line],
        loaded: bool,
    ) -> Result<(), ApiError> {
        if loaded || lines.is_empty() {
            return Ok(());
        }
        let users: BTreeSet<String> = lines.iter().map(|l| l.user_id.clone()).collect();
        let memberships = queries::memberships(
            state.scope.stored_teams.clone(),
            Some(users.into_iter().collect()),
        )
        .query(&self.client)
        .fetch_all::<(String, String, String, String, u8)>()
        .await
        .map_err(warehouse)?;
        let mut groups: HashMap<(String, String), Vec<String>> = HashMap::new();
        for (team, user, _group_id, group_name, member) in memberships {
            if member == 1 {
                groups
                    .entry((state.dir.merges.current(&team).to_owned(), user))
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
    let average = shown_average(line.days, filters.range.months());
    // Rule 7, as the core shows it: the key is the table's hash, above.
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
        monthly_average: average,
        tokens_used: Tokens::from_millis(line.tokens_milli),
        status: line.status,
        usage_class: line.class,
    }
}
