//! The order of the report's lines and paging: the sort (with its ties),
//! a page of the users table (only the lines up to the page's end are
//! ordered) and every row in order for exports.

use std::cmp::Ordering;

use super::rows::{display, Line};
use super::Reporter;
use crate::admins::Admin;
use crate::error::ApiError;
use crate::model::{Page, ReportFilters, ReportRow, Sort, SortColumn, UsersPage};

/// What a report's rows are for: how much of each line to fill in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum View {
    /// The overview: no groups, keys or order unless a filter needs them.
    Tiles,
    /// A page: keys for all; the first `end` lines in order.
    Page { end: usize },
    /// Every line in order, with its groups (exports).
    All,
}

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
            .rows(admin, filters, sort, View::Page { end: last })
            .await?;
        let total = rows.lines.len() as u64;
        let start = first.min(rows.lines.len());
        let end = last.min(rows.lines.len());
        let mut page_lines = std::mem::take(&mut rows.lines);
        let page_lines = &mut page_lines[start..end];
        self.complete_profiles(page_lines, rows.hashed).await?;
        self.complete_groups(&rows, page_lines).await?;
        Ok(UsersPage {
            rows: page_lines
                .iter()
                .map(|l| display(l, rows.hashed, &rows.filters))
                .collect(),
            total,
            page: page.page,
            page_size: page.page_size,
        })
    }

    /// Every row (exports), sorted.
    pub async fn all_rows(
        &self,
        admin: &Admin,
        filters: ReportFilters,
        sort: Sort,
    ) -> Result<Vec<ReportRow>, ApiError> {
        let mut rows = self.rows(admin, filters, sort, View::All).await?;
        self.complete_profiles(&mut rows.lines, rows.hashed).await?;
        Ok(rows
            .lines
            .iter()
            .map(|l| display(l, rows.hashed, &rows.filters))
            .collect())
    }
}

/// Orders `lines` as much as `view` needs: not at all for the tiles, the
/// first `end` lines for a page, all of them for exports.
pub(super) fn arrange(lines: &mut [Line], view: View, order: impl Fn(&Line, &Line) -> Ordering) {
    match view {
        View::Tiles => {}
        View::All => lines.sort_by(&order),
        View::Page { end } => {
            // Only the lines up to the page's end need their order.
            if end < lines.len() && end > 0 {
                lines.select_nth_unstable_by(end - 1, &order);
                lines[..end].sort_by(&order);
            } else {
                lines.sort_by(&order);
            }
        }
    }
}

/// The order of `sort` over lines (ties: user key, team, product, access).
pub(super) fn order(
    sort: Sort,
    hashed: bool,
    filters: &ReportFilters,
) -> impl Fn(&Line, &Line) -> Ordering {
    let months = filters.range.months();
    let name = move |l: &Line| -> Option<String> {
        if hashed {
            None
        } else {
            l.profile.as_ref().map(|p| p.name.to_lowercase())
        }
    };
    let email = move |l: &Line| -> Option<String> {
        if hashed {
            None
        } else {
            l.profile.as_ref().map(|p| p.email.to_lowercase())
        }
    };
    move |a: &Line, b: &Line| {
        let primary = match sort.column {
            SortColumn::UserKey => Ordering::Equal,
            SortColumn::Name => name(a).cmp(&name(b)),
            SortColumn::Email => email(a).cmp(&email(b)),
            SortColumn::TeamId => a.team.cmp(&b.team),
            SortColumn::Groups => a.groups.cmp(&b.groups),
            SortColumn::Product => a.product.cmp(&b.product),
            SortColumn::Access => a.access.as_str().cmp(b.access.as_str()),
            SortColumn::AssignedDate => a.since.cmp(&b.since),
            SortColumn::LastAccessed => a.last.cmp(&b.last),
            SortColumn::DaysUsed => a.days.cmp(&b.days),
            SortColumn::MonthlyAverage => {
                (f64::from(a.days) / months).total_cmp(&(f64::from(b.days) / months))
            }
            SortColumn::TokensUsed => a.tokens_milli.cmp(&b.tokens_milli),
            SortColumn::Status => a.status.as_str().cmp(b.status.as_str()),
        };
        let primary = if sort.descending {
            primary.reverse()
        } else {
            primary
        };
        primary
            .then_with(|| {
                let key = a.user_key.cmp(&b.user_key);
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
