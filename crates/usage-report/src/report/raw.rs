//! The raw exports: seat usage and token usage, one line per (current team,
//! user, product, UTC date), in the admin's scope, with the identity each
//! user is shown with (rule 7, [`display_identity`]).

use std::collections::{BTreeSet, HashMap};

use chrono::NaiveDate;
use usage_core::event::{Tokens, UserProfile};
use usage_core::privacy::{display_identity, DisplayIdentity};

use super::scope::hashed_for;
use super::{day, warehouse, Reporter};
use crate::admins::Admin;
use crate::error::ApiError;
use crate::model::ReportFilters;
use crate::queries::{self, RowsQuery, SeatDayRow, TokenDayRow};

/// user id -> the identity a raw export shows.
type Identities = HashMap<String, DisplayIdentity>;

/// One day of seat usage (raw seat usage export): a (current team, user,
/// product, UTC date) with seat usage.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SeatUsageDay {
    pub date: NaiveDate,
    pub team_id: String,
    pub user_key: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub product: String,
}

/// One day of Flex usage (raw token usage export): a (current team, user,
/// product, UTC date) with Flex usage, and the tokens charged by the
/// windows opened that date (0 on a day used inside a window opened the day
/// before).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenUsageDay {
    pub date: NaiveDate,
    pub team_id: String,
    pub user_key: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub product: String,
    pub tokens: Tokens,
}

impl Reporter {
    /// The identity each of `users` is shown with in a raw export.
    async fn identities(
        &self,
        users: BTreeSet<String>,
        hashed: bool,
    ) -> Result<Identities, ApiError> {
        let mut profiles = if hashed {
            HashMap::new()
        } else {
            self.profiles(Some(users.iter().cloned().collect())).await?
        };
        Ok(users
            .into_iter()
            .map(|u| {
                let profile = profiles.remove(&u).map(|p| UserProfile {
                    user_id: u.clone(),
                    name: p.name,
                    email: p.email,
                    avatar_url: Some(p.avatar_url),
                });
                let shown = display_identity(&u, profile, hashed, |id| self.hash(id));
                (u, shown)
            })
            .collect())
    }

    /// Whether `admin` may export the filters' team: answers as the report
    /// would (`forbidden`, `team_merged`), before an export is accepted.
    pub async fn check_scope(
        &self,
        admin: &Admin,
        filters: &ReportFilters,
    ) -> Result<(), ApiError> {
        let dir = self.directory().await?;
        Self::scope(admin, &filters.team, &dir).map(|_| ())
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
                let shown = shown(&ids, &d.user_id);
                SeatUsageDay {
                    date: day(d.usage_day),
                    team_id: d.team,
                    user_key: shown.user_key,
                    name: shown.name,
                    email: shown.email,
                    product: d.product,
                }
            })
            .collect())
    }

    /// Raw token usage, day by day, in the range (team, product filters apply).
    pub async fn token_usage(
        &self,
        admin: &Admin,
        filters: &ReportFilters,
    ) -> Result<Vec<TokenUsageDay>, ApiError> {
        let (days, ids) = self
            .raw(admin, filters, RowsQuery::token_days, |d: &TokenDayRow| {
                (&d.team, &d.user_id)
            })
            .await?;
        Ok(days
            .into_iter()
            .map(|d| {
                let shown = shown(&ids, &d.user_id);
                TokenUsageDay {
                    date: day(d.usage_day),
                    team_id: d.team,
                    user_key: shown.user_key,
                    name: shown.name,
                    email: shown.email,
                    product: d.product,
                    tokens: Tokens::from_millis(d.tokens_milli),
                }
            })
            .collect())
    }
}

/// The identity of `user_id` (every user of the rows has one).
fn shown(ids: &Identities, user_id: &str) -> DisplayIdentity {
    ids.get(user_id)
        .cloned()
        .unwrap_or_else(|| DisplayIdentity {
            user_key: String::new(),
            name: None,
            email: None,
            avatar_url: None,
        })
}
