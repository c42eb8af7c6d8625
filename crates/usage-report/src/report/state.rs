//! The state a filter set's report is computed from, shared by the page's
//! requests for those filters through a brief cache ([`super::cache`]):
//! the directory, the scope resolved for the admin, the aggregates of
//! ClickHouse and whether identities are hashed — everything before the
//! status, group and search filters, the order and the page. The daily
//! chart has queries of its own (per day, not per line): it is cached
//! beside it under the same key and bound.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::NaiveDate;
use usage_core::event::Access;

use super::cache::CacheLookup;
use super::rows::{Agg, RowKey};
use super::scope::{hashed_for, Directory, Scope};
use super::Reporter;
use crate::admins::{Admin, Teams};
use crate::error::ApiError;
use crate::model::{Daily, ReportFilters, TeamSelection};

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
    pub(super) raw: HashMap<RowKey, Agg>,
    /// Rule 7: whether identities are hashed.
    pub(super) hashed: bool,
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
            .get_or_compute(StateKey::of(admin, filters), || async {
                let dir = self.directory().await?;
                let scope = Self::scope(admin, &filters.team, &dir)?;
                let raw = self
                    .aggregate(&Self::rows_query(&dir, &scope, filters))
                    .await?;
                let hashed = hashed_for(&scope, &dir, raw.keys().map(|k| k.0.as_str()));
                Ok::<_, ApiError>(ReportState {
                    dir,
                    scope,
                    raw,
                    hashed,
                })
            })
            .await?;
        self.observe(lookup);
        Ok(state)
    }

    /// The daily chart of `filters` for `admin`, cached as the state is.
    pub async fn daily(&self, admin: &Admin, filters: &ReportFilters) -> Result<Daily, ApiError> {
        let (daily, lookup) = self
            .charts
            .get_or_compute(StateKey::of(admin, filters), || {
                self.compute_daily(admin, filters)
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
