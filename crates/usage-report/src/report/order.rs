//! The order of the report's lines and paging: the sort (with its ties),
//! a page of the users table (only the lines up to the page's end are
//! ordered) and every row in order for exports, in chunks.

use std::cmp::Ordering;
use std::collections::HashMap;

use tokio::sync::mpsc;
use usage_core::frequency::{usage_class, FrequentDaysPerMonth};

use super::rows::{display, Line, Profile};
use super::table::Entry;
use super::Reporter;
use crate::admins::Admin;
use crate::error::ApiError;
use crate::export::writer_stopped;
use crate::model::{Page, ReportFilters, ReportRow, Sort, SortColumn, UsersPage};

/// What a report's rows are for: how much of each line to fill in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum View {
    /// The overview: no groups, keys or order unless a filter needs them.
    Tiles,
    /// A page: the lines from `start` to `end` (excluded) in order.
    Page { start: usize, end: usize },
    /// Every line in order, none filled in: exports fill them in a chunk
    /// at a time ([`Reporter::report_rows`]).
    Export,
}

/// Report lines filled in, made rows and handed to an export's writer at a
/// time: their profiles are one query, their groups another.
pub const REPORT_CHUNK: usize = 1_000;

impl Reporter {
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
            .rows(
                admin,
                filters,
                sort,
                View::Page {
                    start: first,
                    end: last,
                },
            )
            .await?;
        self.complete_profiles(&mut rows.lines, rows.hashed).await?;
        self.complete_groups(&rows.state, &mut rows.lines, rows.groups_loaded)
            .await?;
        Ok(UsersPage {
            rows: rows
                .lines
                .iter()
                .map(|l| display(l, rows.hashed, &rows.filters))
                .collect(),
            total: rows.total as u64,
            page: page.page,
            page_size: page.page_size,
        })
    }

    /// Every row (exports), sorted, sent to `out` in chunks of
    /// [`REPORT_CHUNK`]: the lines are filtered and ordered as indices
    /// into the filter set's table, and only a chunk at a time becomes
    /// rows, its profiles and groups read for it.
    pub async fn report_rows(
        &self,
        admin: &Admin,
        filters: ReportFilters,
        sort: Sort,
        out: mpsc::Sender<Vec<ReportRow>>,
    ) -> Result<(), ApiError> {
        let rows = self.rows(admin, filters, sort, View::Export).await?;
        let table = &rows.state.table;
        let months = rows.filters.range.months();
        for chunk in rows.picked.chunks(REPORT_CHUNK) {
            let mut lines: Vec<Line> = chunk
                .iter()
                .map(|&i| {
                    let e = &table.lines[i as usize];
                    Line::bare(table, e, usage_class(e.days, months, self.frequent_at))
                })
                .collect();
            self.complete_profiles(&mut lines, rows.hashed).await?;
            self.complete_groups(&rows.state, &mut lines, false).await?;
            let shown = lines
                .iter()
                .map(|l| display(l, rows.hashed, &rows.filters))
                .collect();
            out.send(shown).await.map_err(|_| writer_stopped())?;
        }
        Ok(())
    }
}

/// Orders `items` as much as `view` needs: not at all for the tiles, the
/// first `end` for a page, all of them for exports.
pub(super) fn arrange<T>(items: &mut [T], view: View, order: impl Fn(&T, &T) -> Ordering) {
    match view {
        View::Tiles => {}
        View::Export => items.sort_by(&order),
        View::Page { end, .. } => {
            // Only the items up to the page's end need their order.
            if end < items.len() && end > 0 {
                items.select_nth_unstable_by(end - 1, &order);
                items[..end].sort_by(&order);
            } else {
                items.sort_by(&order);
            }
        }
    }
}

/// The order of a sort over a table's lines (ties: user key, team,
/// product, access). Indices compare as their strings do ([`Table`]).
pub(super) struct SortKeys<'a> {
    sort: Sort,
    months: f64,
    frequent_at: FrequentDaysPerMonth,
    /// Lowercased (name, email) per user, when sorting by either.
    names: HashMap<u32, (String, String)>,
    /// Group names per (team, user), when sorting by them.
    groups: Option<&'a HashMap<(u32, u32), Vec<String>>>,
}

impl<'a> SortKeys<'a> {
    pub(super) fn new(
        sort: Sort,
        filters: &ReportFilters,
        frequent_at: FrequentDaysPerMonth,
        hashed: bool,
        profiles: &HashMap<u32, Profile>,
        groups: Option<&'a HashMap<(u32, u32), Vec<String>>>,
    ) -> SortKeys<'a> {
        let by_name = !hashed && matches!(sort.column, SortColumn::Name | SortColumn::Email);
        SortKeys {
            sort,
            months: filters.range.months(),
            frequent_at,
            names: if by_name {
                profiles
                    .iter()
                    .map(|(&u, p)| (u, (p.name.to_lowercase(), p.email.to_lowercase())))
                    .collect()
            } else {
                HashMap::new()
            },
            groups,
        }
    }

    fn groups(&self, e: &Entry) -> &[String] {
        self.groups
            .and_then(|g| g.get(&(e.team, e.user)))
            .map_or(&[], Vec::as_slice)
    }

    pub(super) fn cmp(&self, a: &Entry, b: &Entry) -> Ordering {
        let name = |e: &Entry| self.names.get(&e.user).map(|n| &n.0);
        let email = |e: &Entry| self.names.get(&e.user).map(|n| &n.1);
        let sort = self.sort;
        let primary = match sort.column {
            SortColumn::UserKey => Ordering::Equal,
            SortColumn::Name => name(a).cmp(&name(b)),
            SortColumn::Email => email(a).cmp(&email(b)),
            SortColumn::TeamId => a.team.cmp(&b.team),
            SortColumn::Groups => self.groups(a).cmp(self.groups(b)),
            SortColumn::Product => a.product.cmp(&b.product),
            SortColumn::Access => a.access.as_str().cmp(b.access.as_str()),
            SortColumn::AssignedDate => a.since.cmp(&b.since),
            SortColumn::LastAccessed => a.last.cmp(&b.last),
            SortColumn::DaysUsed => a.days.cmp(&b.days),
            SortColumn::MonthlyAverage => {
                (f64::from(a.days) / self.months).total_cmp(&(f64::from(b.days) / self.months))
            }
            SortColumn::TokensUsed => a.tokens_milli.cmp(&b.tokens_milli),
            SortColumn::Status => a.status.as_str().cmp(b.status.as_str()),
            SortColumn::UsageClass => {
                let class = |e: &Entry| usage_class(e.days, self.months, self.frequent_at);
                class(a).cmp(&class(b))
            }
        };
        let primary = if sort.descending {
            primary.reverse()
        } else {
            primary
        };
        primary
            .then_with(|| {
                let key = a.user.cmp(&b.user);
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
