//! The raw exports: seat usage day by day and token usage window by window,
//! in the admin's scope, with the identity each user is shown with.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use usage_core::event::Tokens;

use super::scope::hashed_for;
use super::{day, warehouse, Reporter};
use crate::admins::Admin;
use crate::error::ApiError;
use crate::model::ReportFilters;
use crate::queries::{self, RowsQuery, SeatDayRow, TokenWindowRow};

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

impl Reporter {
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
}
