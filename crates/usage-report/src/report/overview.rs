//! The overview: the Subscriptions and Flex tiles, folded from the report's
//! lines, and the daily chart.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDate;
use usage_core::event::{Access, Tokens};
use usage_core::status;
use usage_core::team::TeamScope;

use super::order::View;
use super::{day, range_dates, warehouse, Reporter};
use crate::admins::Admin;
use crate::error::ApiError;
use crate::model::{
    Daily, DailyPoint, FlexTile, Overview, RangeDates, ReportFilters, Sort, SubscriptionsTile,
    TeamSelection,
};
use crate::queries::{DailyCountRow, DailyTokensRow};

impl Reporter {
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
        let table = &rows.state.table;
        let picked = rows.picked.iter().map(|&i| &table.lines[i as usize]);
        let held_access = picked
            .clone()
            .filter(|e| e.since.is_some())
            .map(|e| (e.access, e.status));
        let tile = status::subscription_tile(held_access, scope);
        let mut flex_users: HashSet<u32> = HashSet::new();
        let (mut tokens, mut flex_days) = (0u64, 0u64);
        for e in picked.filter(|e| e.access == Access::Flex) {
            tokens += e.tokens_milli;
            if e.days > 0 {
                flex_users.insert(e.user);
                flex_days += u64::from(e.days);
            }
        }
        let occasional = self.occasional_tile_of(&rows).await?;
        Ok(Overview {
            occasional,
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
    /// Its own queries (per day, not per line: the monthly rollups' day bits
    /// and window sets unrolled, three at once); cached by
    /// `Reporter::daily`.
    pub(super) async fn compute_daily(
        &self,
        admin: &Admin,
        filters: &ReportFilters,
    ) -> Result<Daily, ApiError> {
        let dir = self.directory().await?;
        let scope = Self::scope(admin, &filters.team, &dir)?;
        let query = Self::rows_query(&dir, &scope, filters);
        let fetch = |sql: crate::queries::Sql| {
            let client = self.client.clone();
            async move {
                let rows = sql
                    .query(&client)
                    .fetch_all::<DailyCountRow>()
                    .await
                    .map_err(warehouse)?;
                Ok::<HashMap<NaiveDate, u64>, ApiError>(
                    rows.into_iter().map(|r| (day(r.day), r.count)).collect(),
                )
            }
        };
        let tokens = async {
            if filters.access == Some(Access::Seat) {
                return Ok(HashMap::new());
            }
            let rows = query
                .daily_tokens()
                .query(&self.client)
                .fetch_all::<DailyTokensRow>()
                .await
                .map_err(warehouse)?;
            Ok::<HashMap<NaiveDate, u64>, ApiError>(
                rows.into_iter()
                    .map(|r| (day(r.day), r.tokens_milli))
                    .collect(),
            )
        };
        let (users, lines, tokens) = tokio::join!(
            fetch(query.daily_users()),
            fetch(query.daily_lines()),
            tokens
        );
        let (users, lines, tokens) = (users?, lines?, tokens?);
        let range = filters.dates;
        let days = range
            .from()
            .iter_days()
            .take_while(|d| *d <= range.to())
            .map(|date| DailyPoint {
                date,
                active_users: users.get(&date).copied().unwrap_or(0),
                days_used: lines.get(&date).copied().unwrap_or(0),
                tokens: Tokens::from_millis(tokens.get(&date).copied().unwrap_or(0)),
            })
            .collect();
        Ok(Daily {
            days,
            range: range_dates(&range),
        })
    }
}
