//! The occasional seat users tile (docs/rules.md rule 11): of a request's
//! lines, the seats assigned now whose usage class is `occasional`, and the
//! Flex tokens their days used would have cost.
//!
//! Only the overview asks for it, so the users page never pays for it. The
//! table knows each line's count of days, not which days; the days come
//! from `usage_months` ([`RowsQuery::seat_months`]), for the seat lines used
//! on at most as many days as the most used occasional seat — few by
//! definition, whatever the team's size — and the rates of their products
//! from `product_rates` ([`queries::product_rates`]), read into the core's
//! [`RateTable`] so the rate in force is the one rule 4 charges.

use std::collections::{BTreeSet, HashSet};

use chrono::NaiveDate;
use usage_core::charge::RateTable;
use usage_core::event::{Access, ProductRate, Tokens};
use usage_core::frequency::{flex_tokens_if_moved, usage_class, UsageClass};
use usage_store::schema::values;

use super::rows::Rows;
use super::table::Table;
use super::{day, warehouse, Reporter};
use crate::error::ApiError;
use crate::model::OccasionalTile;
use crate::queries::{self, RateRow, SeatMonthsRef};

impl Reporter {
    /// The occasional seat users tile of `rows`: kept with their state when
    /// no row filter applies (the overview as the page first shows it, so
    /// its refreshes and the page's loads reuse it), else computed.
    pub(super) async fn occasional_tile_of(&self, rows: &Rows) -> Result<OccasionalTile, ApiError> {
        let f = &rows.filters;
        let unfiltered =
            f.status.is_none() && f.usage_class.is_none() && f.group.is_none() && f.q.is_none();
        if !unfiltered {
            return self.occasional_tile(rows).await;
        }
        let mut kept = rows.state.occasional.lock().await;
        if let Some((range, tile)) = *kept {
            if range == f.range {
                return Ok(tile);
            }
        }
        let tile = self.occasional_tile(rows).await?;
        *kept = Some((f.range, tile));
        Ok(tile)
    }

    /// The occasional seat users tile of `rows` (the overview's lines, every
    /// filter applied).
    async fn occasional_tile(&self, rows: &Rows) -> Result<OccasionalTile, ApiError> {
        let table = &rows.state.table;
        let months = rows.filters.range.months();
        let mut seats: HashSet<(u32, u32, u32)> = HashSet::new();
        let mut users: HashSet<u32> = HashSet::new();
        let mut products: BTreeSet<u32> = BTreeSet::new();
        let mut max_days = 0u32;
        for e in rows.picked.iter().map(|&i| &table.lines[i as usize]) {
            let occasional =
                usage_class(e.days, months, self.frequent_at) == UsageClass::Occasional;
            if e.access == Access::Seat && e.since.is_some() && occasional {
                seats.insert((e.team, e.user, e.product));
                users.insert(e.user);
                products.insert(e.product);
                max_days = max_days.max(e.days);
            }
        }
        let mut tile = OccasionalTile {
            below_days_per_month: self.frequent_at.days(),
            seat_users: users.len() as u64,
            seats: seats.len() as u64,
            flex_tokens_if_moved: Tokens::ZERO,
        };
        if seats.is_empty() {
            return Ok(tile);
        }
        let query = Self::rows_query(&rows.state.dir, &rows.state.scope, &rows.filters);
        let names: Vec<String> = products
            .iter()
            .map(|&p| table.products[p as usize].clone())
            .collect();
        // The seat lines' months stream (one row read at a time: at a
        // hundred thousand users and a year they are millions of strings);
        // their first row is read with the rates, so both queries run at once.
        let mut used = query
            .seat_months(u64::from(max_days))
            .query(&self.client)
            .fetch::<SeatMonthsRef<'_>>()
            .map_err(warehouse)?;
        let (first, rates) = tokio::join!(
            used.next(),
            queries::product_rates(names)
                .query(&self.client)
                .fetch_all::<RateRow>(),
        );
        let rates = rate_table(rates.map_err(warehouse)?)?;
        let mut millis = 0u64;
        let mut row = first.map_err(warehouse)?;
        while let Some(r) = row {
            millis = millis.saturating_add(if_moved(table, &seats, &rates, &r));
            row = used.next().await.map_err(warehouse)?;
        }
        tile.flex_tokens_if_moved = Tokens::from_millis(millis);
        Ok(tile)
    }
}

/// The Flex tokens a seat line's days would have cost, if it is one of
/// `seats` (else 0).
fn if_moved(
    table: &Table,
    seats: &HashSet<(u32, u32, u32)>,
    rates: &RateTable,
    row: &SeatMonthsRef<'_>,
) -> u64 {
    let (Some(t), Some(u), Ok(p)) = (
        table.team_index(row.team),
        table.user_index(row.user_id),
        table
            .products
            .binary_search_by(|p| p.as_str().cmp(row.product)),
    ) else {
        return 0;
    };
    if !seats.contains(&(t, u, p as u32)) {
        return 0;
    }
    let days = row
        .days()
        .filter_map(|d| u16::try_from(d).ok())
        .map(day)
        .collect::<Vec<NaiveDate>>();
    flex_tokens_if_moved(rates, row.product, days).millis()
}

/// The rates as the core reads them.
fn rate_table(rows: Vec<RateRow>) -> Result<RateTable, ApiError> {
    let mut rates = RateTable::new();
    for r in rows {
        let effective_from =
            values::read_datetime_us("effective_from_us", r.effective_from, r.effective_from_us)
                .map_err(|e| ApiError::internal(&e))?;
        let published =
            values::read_micros("version", r.version).map_err(|e| ApiError::internal(&e))?;
        rates.apply(
            &r.event_id,
            published,
            &ProductRate {
                product: r.product,
                name: None,
                flex_tokens_per_day: Tokens::from_millis(r.tokens_milli),
                effective_from,
            },
        );
    }
    Ok(rates)
}
