//! The raw exports: seat usage and token usage, one line per (current team,
//! user, product, UTC date), in the admin's scope, with the identity each
//! user is shown with (rule 7, [`display_identity`]); streamed from
//! ClickHouse in chunks to an export's writer, never held whole.

use std::collections::{BTreeSet, HashMap};

use chrono::NaiveDate;
use tokio::sync::mpsc;
use usage_core::event::{Tokens, UserProfile};
use usage_core::privacy::{display_identity, DisplayIdentity};

use super::scope::hashed_for;
use super::{day, warehouse, Reporter};
use crate::admins::Admin;
use crate::error::ApiError;
use crate::export::writer_stopped;
use crate::model::ReportFilters;
use crate::queries::{self, RowsQuery, SeatDayRow, TokenDayRow};

/// user id -> the identity a raw export shows.
type Identities = HashMap<String, DisplayIdentity>;

/// Raw rows read, made and handed to the writer at a time: the profiles of
/// a chunk's users are one query.
pub const RAW_CHUNK: usize = 5_000;

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
                let shown = display_identity(&u, profile, hashed, |id| self.hasher.hash(id));
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

    /// Streams the rows of `sql` for the admin's scope to `out`, in chunks
    /// of [`RAW_CHUNK`], each row made by `make` with the identity its user
    /// is shown with: the rows come from ClickHouse through a cursor, and
    /// the profiles of each chunk's users are read for that chunk, so
    /// nothing grows with the rows.
    async fn raw<R, T>(
        &self,
        admin: &Admin,
        filters: &ReportFilters,
        sql: impl Fn(&RowsQuery) -> queries::Sql,
        user: impl Fn(&R) -> &str,
        make: impl Fn(R, DisplayIdentity) -> T,
        out: mpsc::Sender<Vec<T>>,
    ) -> Result<(), ApiError>
    where
        R: clickhouse::RowOwned + clickhouse::RowRead,
    {
        let dir = self.directory().await?;
        let scope = Self::scope(admin, &filters.team, &dir)?;
        let sql = sql(&Self::rows_query(&dir, &scope, filters));
        // Rule 7 before the first row: for an admin of every team, with
        // the teams the rows show (asked apart, as the rows stream).
        let mut hashed = hashed_for(&scope, &dir, std::iter::empty::<&str>());
        if !hashed && scope.stored_teams.is_none() {
            let teams = sql
                .teams_of_rows()
                .query(&self.client)
                .fetch_all::<String>()
                .await
                .map_err(warehouse)?;
            hashed = hashed_for(&scope, &dir, teams.iter().map(String::as_str));
        }
        let mut cursor = sql.query(&self.client).fetch::<R>().map_err(warehouse)?;
        let mut chunk = Vec::with_capacity(RAW_CHUNK);
        loop {
            let row = cursor.next().await.map_err(warehouse)?;
            let end = row.is_none();
            chunk.extend(row);
            if chunk.len() == RAW_CHUNK || (end && !chunk.is_empty()) {
                let users = chunk.iter().map(|r| user(r).to_owned()).collect();
                let ids = self.identities(users, hashed).await?;
                let rows = std::mem::replace(&mut chunk, Vec::with_capacity(RAW_CHUNK))
                    .into_iter()
                    .map(|r| {
                        let identity = shown(&ids, user(&r));
                        make(r, identity)
                    })
                    .collect();
                out.send(rows).await.map_err(|_| writer_stopped())?;
            }
            if end {
                return Ok(());
            }
        }
    }

    /// Raw seat usage, day by day, in the range (team, product filters
    /// apply), sent to `out` in chunks.
    pub async fn seat_usage(
        &self,
        admin: &Admin,
        filters: &ReportFilters,
        out: mpsc::Sender<Vec<SeatUsageDay>>,
    ) -> Result<(), ApiError> {
        self.raw(
            admin,
            filters,
            RowsQuery::seat_days,
            |d: &SeatDayRow| &d.user_id,
            |d, shown| SeatUsageDay {
                date: day(d.usage_day),
                team_id: d.team,
                user_key: shown.user_key,
                name: shown.name,
                email: shown.email,
                product: d.product,
            },
            out,
        )
        .await
    }

    /// Raw token usage, day by day, in the range (team, product filters
    /// apply), sent to `out` in chunks.
    pub async fn token_usage(
        &self,
        admin: &Admin,
        filters: &ReportFilters,
        out: mpsc::Sender<Vec<TokenUsageDay>>,
    ) -> Result<(), ApiError> {
        self.raw(
            admin,
            filters,
            RowsQuery::token_days,
            |d: &TokenDayRow| &d.user_id,
            |d, shown| TokenUsageDay {
                date: day(d.usage_day),
                team_id: d.team,
                user_key: shown.user_key,
                name: shown.name,
                email: shown.email,
                product: d.product,
                tokens: Tokens::from_millis(d.tokens_milli),
            },
            out,
        )
        .await
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
