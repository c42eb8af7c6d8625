//! The state a filter set's report is computed from, shared by the page's
//! requests for those filters through a brief cache ([`super::cache`]):
//! the directory, the scope resolved for the admin, the lines with their
//! aggregates and status ([`super::table`]) and whether identities are
//! hashed — everything before the status, group and search filters, the
//! order and the page. The daily
//! chart has queries of its own (per day, not per line): it is cached
//! beside it under the same key and bound.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::NaiveDate;
use usage_core::event::Access;

use super::cache::{CacheLookup, Weigh};
use super::scope::{hashed_for, Directory, Scope};
use super::table::{Expected, Row, Source, Table, TableBuilder};
use super::{warehouse, Reporter};
use crate::admins::{Admin, Teams};
use crate::error::ApiError;
use crate::model::{Daily, DailyPoint, OccasionalTile, ReportFilters, TeamSelection};
use crate::queries::RowsQuery;
use usage_core::range::ReportRange;
use usage_store::schema::StoredEnum;

/// A row of [`RowsQuery::days`] (`V`: `u64` days), [`RowsQuery::held`]
/// (`u16`: the day assigned) or [`RowsQuery::last_access`] (`u16`: the
/// last day used), read in place.
#[derive(clickhouse::Row, serde::Deserialize)]
struct LineRef<'a, V> {
    team: &'a str,
    user_id: &'a str,
    product: &'a str,
    access: &'a str,
    value: V,
}

/// A row of [`RowsQuery::tokens`], read in place (its access is Flex).
#[derive(clickhouse::Row, serde::Deserialize)]
struct TokensRef<'a> {
    team: &'a str,
    user_id: &'a str,
    product: &'a str,
    tokens_milli: u64,
}

impl<'a, V: Into<u64>> LineRef<'a, V> {
    fn row(self) -> Row<'a> {
        Row {
            user: self.user_id,
            team: self.team,
            product: self.product,
            access: self.access,
            value: self.value.into(),
        }
    }
}

impl<'a> TokensRef<'a> {
    fn row(self) -> Row<'a> {
        Row {
            user: self.user_id,
            team: self.team,
            product: self.product,
            access: Access::Flex.label(),
            value: self.tokens_milli,
        }
    }
}

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

/// A state's filters but its range: states of the same shape hold about
/// as many lines whatever their range.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Shape {
    admin_teams: Option<Vec<String>>,
    team: Option<String>,
    product: Option<String>,
    access: Option<Access>,
}

impl StateKey {
    fn shape(&self) -> Shape {
        Shape {
            admin_teams: self.admin_teams.clone(),
            team: self.team.clone(),
            product: self.product.clone(),
            access: self.access,
        }
    }
}

/// Shapes remembered at most (past it, forgotten all at once: a few per
/// admin and team in use).
const SHAPES: usize = 1024;

/// What a state held: its bytes, lines and users.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct StateSize {
    bytes: usize,
    table: Expected,
}

/// What the last state of each shape held: what the next state of that
/// shape is expected to hold — its bytes reserved in the cache before it is
/// built ([`super::cache::Cache::reserve`]), its builder sized for its
/// lines and users. Unknown shapes expect nothing.
#[derive(Default)]
pub(super) struct StateSizes(Mutex<HashMap<Shape, StateSize>>);

impl StateSizes {
    fn expected(&self, key: &StateKey) -> StateSize {
        let sizes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        sizes.get(&key.shape()).copied().unwrap_or_default()
    }

    fn record(&self, key: &StateKey, size: StateSize) {
        let mut sizes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if sizes.len() >= SHAPES && !sizes.contains_key(&key.shape()) {
            sizes.clear();
        }
        sizes.insert(key.shape(), size);
    }
}

/// The permits of [`super::STATE_PERMITS`] a state of `team` is built
/// with: all of them for all of an admin's teams (built alone), one for a
/// team.
fn state_permits(team: &TeamSelection) -> u32 {
    match team {
        TeamSelection::All => super::STATE_PERMITS,
        TeamSelection::Team(_) => 1,
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
    /// The occasional seat users tile of all its lines (the overview with
    /// no row filter), once asked for, with the range as asked (its months
    /// divide the days): computed once per state like the rest of it.
    pub(super) occasional: tokio::sync::Mutex<Option<(ReportRange, OccasionalTile)>>,
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
        let observed = self.observed().await;
        let key = StateKey::of(admin, filters);
        let (state, lookup) = self
            .states
            .get_or_compute(key.clone(), observed, {
                let (this, admin, filters) = (self.clone(), admin.clone(), filters.clone());
                move || async move { this.compute_state(&admin, &filters, &key).await }
            })
            .await?;
        self.observe(lookup);
        Ok(state)
    }

    /// The state of `filters` for `admin`, whose cache key is `key`.
    async fn compute_state(
        &self,
        admin: &Admin,
        filters: &ReportFilters,
        key: &StateKey,
    ) -> Result<ReportState, ApiError> {
        // Never closed: the permits always come.
        let _permits = self
            .computing
            .acquire_many(state_permits(&filters.team))
            .await;
        // The cache's bound covers the state being built: room for it is
        // made before, at the size the last state of its shape had.
        let expected = self.sizes.expected(key);
        let _room = self.states.reserve(expected.bytes);
        let started = std::time::Instant::now();
        let dir = self.directory().await?;
        let scope = Self::scope(admin, &filters.team, &dir)?;
        let mut builder = TableBuilder::new(&filters.dates, expected.table);
        self.aggregate(&Self::rows_query(&dir, &scope, filters), &mut builder)
            .await?;
        let queried = started.elapsed();
        let (table, hashed) = builder.finish(
            |teams| hashed_for(&scope, &dir, teams),
            |id| self.hasher.digest(id),
        );
        tracing::debug!(
            lines = table.lines.len(),
            users = table.user_count(),
            bytes = table.bytes(),
            queries_ms = queried.as_millis() as u64,
            build_ms = (started.elapsed() - queried).as_millis() as u64,
            "report state computed"
        );
        self.sizes.record(
            key,
            StateSize {
                bytes: table.bytes(),
                table: Expected {
                    lines: table.lines.len(),
                    users: table.user_count(),
                },
            },
        );
        Ok(ReportState {
            dir,
            scope,
            bytes: table.bytes(),
            table,
            hashed,
            occasional: tokio::sync::Mutex::new(None),
        })
    }

    /// Streams the aggregates of a report (days used in the range, tokens,
    /// assignments in force, last accessed) into `builder`: four queries
    /// at once, each sorted by line, merged row by row as they come (each
    /// row read in place, none held: the builder keeps only each source's
    /// current row and the lines joined).
    async fn aggregate(
        &self,
        query: &RowsQuery,
        builder: &mut TableBuilder,
    ) -> Result<(), ApiError> {
        let seat_only = query.access.as_deref() == Some("seat");
        let mut days = query
            .days()
            .query(&self.client)
            .fetch::<LineRef<'_, u64>>()
            .map_err(warehouse)?;
        let mut tokens = if seat_only {
            None
        } else {
            Some(
                query
                    .tokens()
                    .query(&self.client)
                    .fetch::<TokensRef<'_>>()
                    .map_err(warehouse)?,
            )
        };
        let mut held = query
            .held()
            .query(&self.client)
            .fetch::<LineRef<'_, u16>>()
            .map_err(warehouse)?;
        let mut last = query
            .last_access()
            .query(&self.client)
            .fetch::<LineRef<'_, u16>>()
            .map_err(warehouse)?;
        // A cursor sends its query when first read: the four first rows
        // are read together, so ClickHouse runs the queries at once.
        {
            let (d, t, h, l) = tokio::join!(
                days.next(),
                async {
                    match &mut tokens {
                        Some(cursor) => cursor.next().await,
                        None => Ok(None),
                    }
                },
                held.next(),
                last.next(),
            );
            builder.put(Source::Days, d.map_err(warehouse)?.map(LineRef::row));
            builder.put(Source::Tokens, t.map_err(warehouse)?.map(TokensRef::row));
            builder.put(Source::Held, h.map_err(warehouse)?.map(LineRef::row));
            builder.put(Source::Last, l.map_err(warehouse)?.map(LineRef::row));
        }
        loop {
            match builder.wanted() {
                Some(Source::Days) => {
                    let r = days.next().await.map_err(warehouse)?;
                    builder.put(Source::Days, r.map(LineRef::row));
                }
                Some(Source::Tokens) => {
                    let r = match &mut tokens {
                        Some(cursor) => cursor.next().await.map_err(warehouse)?,
                        None => None,
                    };
                    builder.put(Source::Tokens, r.map(TokensRef::row));
                }
                Some(Source::Held) => {
                    let r = held.next().await.map_err(warehouse)?;
                    builder.put(Source::Held, r.map(LineRef::row));
                }
                Some(Source::Last) => {
                    let r = last.next().await.map_err(warehouse)?;
                    builder.put(Source::Last, r.map(LineRef::row));
                }
                None => {
                    if !builder.merge()? {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// The daily chart of `filters` for `admin`, cached as the state is.
    pub async fn daily(&self, admin: &Admin, filters: &ReportFilters) -> Result<Daily, ApiError> {
        let observed = self.observed().await;
        let (daily, lookup) = self
            .charts
            .get_or_compute(StateKey::of(admin, filters), observed, {
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
    fn a_state_of_all_teams_is_built_alone_and_team_states_two_at_once() {
        assert_eq!(
            state_permits(&TeamSelection::All),
            super::super::STATE_PERMITS
        );
        assert_eq!(state_permits(&TeamSelection::Team("t-1".into())), 1);
    }

    #[test]
    fn a_state_is_expected_to_hold_what_the_last_of_its_shape_held() {
        let sizes = StateSizes::default();
        let root = admin("root", Teams::Every);
        let month = StateKey::of(&root, &filters(ReportParams::default()));
        let quarter = StateKey::of(
            &root,
            &filters(ReportParams {
                range: Some("last_3_months".into()),
                ..ReportParams::default()
            }),
        );
        let team = StateKey::of(
            &root,
            &filters(ReportParams {
                team: Some("t-1".into()),
                ..ReportParams::default()
            }),
        );
        let size = |bytes: usize, lines: usize| StateSize {
            bytes,
            table: Expected { lines, users: 7 },
        };
        assert_eq!(
            sizes.expected(&month),
            StateSize::default(),
            "nothing known yet"
        );
        sizes.record(&month, size(23 << 20, 340_000));
        assert_eq!(
            sizes.expected(&quarter),
            size(23 << 20, 340_000),
            "another range"
        );
        assert_eq!(sizes.expected(&team), StateSize::default(), "another shape");
        sizes.record(&quarter, size(25 << 20, 390_000));
        assert_eq!(
            sizes.expected(&month),
            size(25 << 20, 390_000),
            "the last one counts"
        );
        // Past SHAPES, forgotten all at once.
        for i in 0..SHAPES {
            let key = StateKey::of(
                &root,
                &filters(ReportParams {
                    team: Some(format!("t-{i}")),
                    ..ReportParams::default()
                }),
            );
            sizes.record(&key, size(i, i));
        }
        assert_eq!(sizes.expected(&month), StateSize::default());
        assert_eq!(
            sizes.expected(&team),
            StateSize::default(),
            "t-1 came before the reset"
        );
        assert_eq!(sizes.0.lock().expect("not poisoned").len(), 1);
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
            usage_class: Some("occasional".into()),
            ..ReportParams::default()
        });
        assert_eq!(key, StateKey::of(&one, &searched));
    }
}
