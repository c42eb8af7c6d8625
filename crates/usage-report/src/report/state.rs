//! The state a filter set's report is computed from, shared by the page's
//! requests for those filters through a brief cache ([`super::cache`]):
//! the directory, the scope resolved for the admin, the lines with their
//! aggregates and status ([`super::table`]) and whether identities are
//! hashed — everything before the status, group and search filters, the
//! order and the page. The daily
//! chart has queries of its own (per day, not per line): it is cached
//! beside it under the same key and bound.

use std::sync::Arc;

use chrono::NaiveDate;
use usage_core::event::Access;

use super::cache::{CacheLookup, Weigh};
use super::scope::{hashed_for, Directory, Scope};
use super::table::{Aggregates, Table};
use super::{warehouse, Reporter};
use crate::admins::{Admin, Teams};
use crate::error::ApiError;
use crate::model::{Daily, DailyPoint, ReportFilters, TeamSelection};
use crate::queries::{DaysRow, HeldRow, LastAccessRow, RowsQuery, TokensRow};

/// What a filter set's state depends on. The admin (with the teams they
/// administer) is part of it: the scope and the hashing decision follow
/// from them, so no entry is ever shared by two admins.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct StateKey {
    admin: String,
    /// `None`: every team.
    admin_teams: Option<Vec<String>>,
    /// `None`: all the admin's teams.
    team: Option<String>,
    from: NaiveDate,
    to: NaiveDate,
    product: Option<String>,
    access: Option<Access>,
}

impl StateKey {
    pub(super) fn of(admin: &Admin, filters: &ReportFilters) -> StateKey {
        StateKey {
            admin: admin.id.clone(),
            admin_teams: match &admin.teams {
                Teams::Every => None,
                Teams::Only(teams) => Some(teams.clone()),
            },
            team: match &filters.team {
                TeamSelection::All => None,
                TeamSelection::Team(t) => Some(t.clone()),
            },
            from: filters.dates.from(),
            to: filters.dates.to(),
            product: filters.product.clone(),
            access: filters.access,
        }
    }
}

/// A filter set's report before the row filters, the order and the page.
pub(super) struct ReportState {
    pub(super) dir: Directory,
    pub(super) scope: Scope,
    pub(super) table: Table,
    /// Rule 7: whether identities are hashed.
    pub(super) hashed: bool,
    /// About how many bytes the table holds (the cache's bound).
    bytes: usize,
}

impl Weigh for ReportState {
    fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Weigh for Daily {
    fn bytes(&self) -> usize {
        self.days.len() * std::mem::size_of::<DailyPoint>()
    }
}

impl Reporter {
    fn observe(&self, lookup: CacheLookup) {
        if let Some(on_lookup) = &self.on_lookup {
            on_lookup(lookup);
        }
    }

    /// The state of `filters` for `admin`: cached, being computed by
    /// another request, or computed now.
    pub(super) async fn state(
        &self,
        admin: &Admin,
        filters: &ReportFilters,
    ) -> Result<Arc<ReportState>, ApiError> {
        let (state, lookup) = self
            .states
            .get_or_compute(StateKey::of(admin, filters), {
                let (this, admin, filters) = (self.clone(), admin.clone(), filters.clone());
                move || async move { this.compute_state(&admin, &filters).await }
            })
            .await?;
        self.observe(lookup);
        Ok(state)
    }

    async fn compute_state(
        &self,
        admin: &Admin,
        filters: &ReportFilters,
    ) -> Result<ReportState, ApiError> {
        let started = std::time::Instant::now();
        let dir = self.directory().await?;
        let scope = Self::scope(admin, &filters.team, &dir)?;
        let aggregates = self
            .aggregates(&Self::rows_query(&dir, &scope, filters))
            .await?;
        let queried = started.elapsed();
        let (table, hashed) = Table::build(
            aggregates,
            &filters.dates,
            |teams| hashed_for(&scope, &dir, teams),
            |id| self.hash(id),
        )?;
        tracing::debug!(
            lines = table.lines.len(),
            users = table.users.len(),
            bytes = table.bytes(),
            queries_ms = queried.as_millis() as u64,
            build_ms = (started.elapsed() - queried).as_millis() as u64,
            "report state computed"
        );
        Ok(ReportState {
            dir,
            scope,
            bytes: table.bytes(),
            table,
            hashed,
        })
    }

    /// The aggregates of a report (days used in the range, last accessed,
    /// tokens, assignments in force), queried concurrently.
    async fn aggregates(&self, query: &RowsQuery) -> Result<Aggregates, ApiError> {
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
        Ok(Aggregates {
            days: days.map_err(warehouse)?,
            last: last.map_err(warehouse)?,
            tokens: tokens.map_err(warehouse)?,
            held: held.map_err(warehouse)?,
        })
    }

    /// The daily chart of `filters` for `admin`, cached as the state is.
    pub async fn daily(&self, admin: &Admin, filters: &ReportFilters) -> Result<Daily, ApiError> {
        let (daily, lookup) = self
            .charts
            .get_or_compute(StateKey::of(admin, filters), {
                let (this, admin, filters) = (self.clone(), admin.clone(), filters.clone());
                move || async move { this.compute_daily(&admin, &filters).await }
            })
            .await?;
        self.observe(lookup);
        Ok(Daily::clone(&daily))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admins::Role;
    use crate::model::ReportParams;

    fn admin(id: &str, teams: Teams) -> Admin {
        Admin {
            id: id.to_owned(),
            email: format!("{id}@example.com"),
            role: Role::Secondary,
            teams,
        }
    }

    fn filters(params: ReportParams) -> ReportFilters {
        params.filters(chrono::Utc::now()).expect("valid filters")
    }

    #[test]
    fn keys_differ_by_admin_scope_and_filters() {
        let all = filters(ReportParams::default());
        let one = admin("one", Teams::Only(vec!["t-1".into()]));
        let two = admin("two", Teams::Only(vec!["t-2".into()]));
        let every = admin("root", Teams::Every);
        let key = StateKey::of(&one, &all);
        assert_eq!(
            key,
            StateKey::of(&one, &all),
            "the same request, the same key"
        );
        // Never shared across admins, whatever their scope.
        assert_ne!(key, StateKey::of(&two, &all));
        assert_ne!(key, StateKey::of(&every, &all));
        assert_ne!(
            key,
            StateKey::of(&admin("one", Teams::Only(vec!["t-2".into()])), &all),
            "an admin whose teams changed"
        );
        // Every filter before the row filters counts.
        for params in [
            ReportParams {
                team: Some("t-1".into()),
                ..ReportParams::default()
            },
            ReportParams {
                range: Some("last_3_months".into()),
                ..ReportParams::default()
            },
            ReportParams {
                product: Some("autocad".into()),
                ..ReportParams::default()
            },
            ReportParams {
                access: Some("flex".into()),
                ..ReportParams::default()
            },
        ] {
            assert_ne!(key, StateKey::of(&one, &filters(params)));
        }
        // The row filters do not: one state serves them all.
        let searched = filters(ReportParams {
            q: Some("pat".into()),
            status: Some("active".into()),
            ..ReportParams::default()
        });
        assert_eq!(key, StateKey::of(&one, &searched));
    }
}
