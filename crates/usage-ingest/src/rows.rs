//! The rows the ingest writes: one encoder per table, each writing the
//! columns of its table's definition (`usage_store::schema`) in order, with
//! the codes of its `Enum8` columns from there too; and the rows of one batch,
//! per table ([`Tables`]).
//!
//! An encoder fails ([`Unstorable`]) when a value cannot be stored
//! faithfully, and then writes nothing. The events' own timestamps are
//! checked before (`stamp::storable`: a dead letter), so a failure here is a
//! value that valid input cannot produce.

use crate::rowbinary::RowBinary;
use crate::sink::TableRows;
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::BTreeMap;
use usage_core::event::{
    Access, Assignment, AssignmentVia, GroupMembership, ProductRate, Team, TeamMerge, UserProfile,
};
use usage_core::team::{CurrentAssignment, TeamSource};
use usage_store::schema::{self, values, TableDef, Unstorable};

/// Every table the ingest writes, in the order a batch writes them: windows
/// before the facts that point at them, facts before the rollups derived
/// from them.
pub(crate) const WRITTEN: [TableDef; 10] = [
    schema::FLEX_WINDOWS,
    schema::AUTHORIZATIONS,
    schema::DAILY_USAGE,
    schema::ASSIGNMENT_EVENTS,
    schema::ASSIGNMENT_STATE,
    schema::USER_PROFILES,
    schema::TEAMS,
    schema::GROUP_MEMBERSHIPS,
    schema::TEAM_MERGES,
    schema::PRODUCT_RATES,
];

/// The rows of one batch, per table.
#[derive(Default)]
pub(crate) struct Tables(BTreeMap<&'static str, RowBinary>);

impl Tables {
    fn get(&mut self, table: TableDef) -> &mut RowBinary {
        self.0
            .entry(table.name)
            .or_insert_with(|| RowBinary::new(table))
    }

    /// Rows encoded apart (by a worker), after this table's rows so far.
    pub(crate) fn append(&mut self, rows: RowBinary) {
        self.get(rows.table()).append(rows);
    }

    /// The encoded tables, in the order they are written ([`WRITTEN`]).
    pub(crate) fn finish(mut self) -> Vec<TableRows> {
        WRITTEN
            .iter()
            .filter_map(|t| self.0.remove(t.name))
            .map(|rb| TableRows {
                table: rb.table(),
                rows: rb.rows(),
                data: rb.into_bytes(),
            })
            .collect()
    }
}

/// The stamped fact of one reportable authorization.
pub(crate) struct FactRow<'a> {
    pub(crate) event_id: &'a str,
    pub(crate) occurred_at: DateTime<Utc>,
    pub(crate) usage_date: NaiveDate,
    pub(crate) team_id: &'a str,
    pub(crate) team_source: TeamSource,
    pub(crate) user_id: &'a str,
    pub(crate) product: &'a str,
    pub(crate) product_version: &'a str,
    pub(crate) access: Access,
    pub(crate) machine_id: &'a str,
    /// The Flex usage window; `None` (a seat) is stored as 1970-01-01.
    pub(crate) window_start: Option<DateTime<Utc>>,
    pub(crate) tokens_milli: u64,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) ingested_at: DateTime<Utc>,
}

impl FactRow<'_> {
    #[cfg(test)]
    pub(crate) fn encode(&self, tables: &mut Tables) -> Result<(), Unstorable> {
        self.encode_into(tables.get(schema::AUTHORIZATIONS))
    }

    /// Into rows of `authorizations` held apart (see [`Tables::append`]).
    pub(crate) fn encode_into(&self, rows: &mut RowBinary) -> Result<(), Unstorable> {
        debug_assert_eq!(rows.table().name, schema::AUTHORIZATIONS.name);
        rows.row(|r| {
            r.string(self.event_id)
                .datetime_us(self.occurred_at)?
                .date(self.usage_date)?
                .string(self.team_id)
                .enum8(self.team_source)
                .string(self.user_id)
                .string(self.product)
                .string(self.product_version)
                .enum8(self.access)
                .string(self.machine_id)
                .datetime(self.window_start.unwrap_or(DateTime::UNIX_EPOCH))?
                .u64(self.tokens_milli)
                .uint16(self.partition)?
                .uint64(self.offset)?
                .datetime(self.ingested_at)?;
            Ok(())
        })
    }
}

pub(crate) fn daily_usage(
    tables: &mut Tables,
    team_id: &str,
    user_id: &str,
    product: &str,
    access: Access,
    day: NaiveDate,
) -> Result<(), Unstorable> {
    tables.get(schema::DAILY_USAGE).row(|r| {
        r.string(team_id)
            .string(user_id)
            .string(product)
            .enum8(access)
            .date(day)?;
        Ok(())
    })
}

pub(crate) fn flex_window(
    tables: &mut Tables,
    user_id: &str,
    product: &str,
    start: DateTime<Utc>,
    team_id: &str,
    opening_event_id: &str,
    tokens_milli: u64,
) -> Result<(), Unstorable> {
    tables.get(schema::FLEX_WINDOWS).row(|r| {
        r.string(user_id)
            .string(product)
            .datetime_us(start)?
            .string(team_id)
            .string(opening_event_id)
            .u64(tokens_milli);
        Ok(())
    })
}

pub(crate) fn assignment_event(
    tables: &mut Tables,
    a: &Assignment,
    ingested_at: DateTime<Utc>,
) -> Result<(), Unstorable> {
    tables.get(schema::ASSIGNMENT_EVENTS).row(|r| {
        r.string(&a.event_id)
            .datetime_us(a.occurred_at)?
            .enum8(a.action)
            .string(&a.team_id)
            .string(&a.user_id)
            .string(&a.product)
            .enum8(a.access)
            .enum8(a.via)
            .string(a.group_id.as_deref().unwrap_or(""))
            .datetime(ingested_at)?;
        Ok(())
    })
}

/// The current assignment of a key (or its absence: not assigned, dated
/// 1970-01-01), as of its newest event, under `version` (see
/// `stamp::encode::StateVersions`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn assignment_state(
    tables: &mut Tables,
    team_id: &str,
    user_id: &str,
    product: &str,
    access: Access,
    current: Option<CurrentAssignment<'_>>,
    last_via: AssignmentVia,
    version: u64,
) -> Result<(), Unstorable> {
    tables.get(schema::ASSIGNMENT_STATE).row(|r| {
        r.string(team_id)
            .string(user_id)
            .string(product)
            .enum8(access)
            .flag(current.is_some())
            .date(current.map_or(values::EPOCH, |c| c.since.date_naive()))?
            .enum8(current.map_or(last_via, |c| c.via))
            .string(current.and_then(|c| c.group_id).unwrap_or(""))
            .u64(version);
        Ok(())
    })
}

pub(crate) fn user_profile(
    tables: &mut Tables,
    p: &UserProfile,
    at: DateTime<Utc>,
) -> Result<(), Unstorable> {
    tables.get(schema::USER_PROFILES).row(|r| {
        r.string(&p.user_id)
            .string(&p.name)
            .string(&p.email)
            .string(p.avatar_url.as_deref().unwrap_or(""))
            .micros(at)?;
        Ok(())
    })
}

pub(crate) fn team(tables: &mut Tables, t: &Team, at: DateTime<Utc>) -> Result<(), Unstorable> {
    tables.get(schema::TEAMS).row(|r| {
        r.string(&t.team_id)
            .string(&t.name)
            .flag(t.pii_visible)
            .micros(at)?;
        Ok(())
    })
}

pub(crate) fn group_membership(
    tables: &mut Tables,
    g: &GroupMembership,
    at: DateTime<Utc>,
) -> Result<(), Unstorable> {
    tables.get(schema::GROUP_MEMBERSHIPS).row(|r| {
        r.string(&g.team_id)
            .string(&g.group_id)
            .string(&g.group_name)
            .string(&g.user_id)
            .flag(g.member)
            .micros(at)?;
        Ok(())
    })
}

pub(crate) fn team_merge(
    tables: &mut Tables,
    event_id: &str,
    at: DateTime<Utc>,
    m: &TeamMerge,
) -> Result<(), Unstorable> {
    tables.get(schema::TEAM_MERGES).row(|r| {
        r.string(event_id)
            .datetime(at)?
            .string(&m.from_team_id)
            .string(&m.into_team_id);
        Ok(())
    })
}

pub(crate) fn product_rate(
    tables: &mut Tables,
    event_id: &str,
    at: DateTime<Utc>,
    rate: &ProductRate,
) -> Result<(), Unstorable> {
    tables.get(schema::PRODUCT_RATES).row(|r| {
        r.string(&rate.product)
            .string(rate.name.as_deref().unwrap_or(""))
            .u64(rate.flex_tokens_per_day.millis())
            .datetime_us(rate.effective_from)?
            .string(event_id)
            .micros(at)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use usage_core::event::{AssignmentAction, Tokens};
    use usage_store::schema::Why;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("a timestamp")
            .with_timezone(&Utc)
    }

    fn fact(partition: i32, offset: i64, ingested_at: &str) -> FactRow<'static> {
        FactRow {
            event_id: "e",
            occurred_at: at("2026-03-01T08:30:00.25Z"),
            usage_date: at("2026-03-01T08:30:00Z").date_naive(),
            team_id: "t",
            team_source: TeamSource::Assignment,
            user_id: "u",
            product: "p",
            product_version: "",
            access: Access::Flex,
            machine_id: "",
            window_start: Some(at("2026-03-01T08:30:00.25Z")),
            tokens_milli: 7_000,
            partition,
            offset,
            ingested_at: at(ingested_at),
        }
    }

    /// Every encoder, once: in a debug build, each value is checked against
    /// its column's type and each row against the number of columns.
    #[test]
    fn every_encoder_writes_the_columns_of_its_table() {
        let mut tables = Tables::default();
        let t = at("2026-03-01T08:30:00Z");
        let assignment = Assignment {
            event_id: "a".into(),
            occurred_at: t,
            action: AssignmentAction::Assign,
            team_id: "t".into(),
            user_id: "u".into(),
            product: "p".into(),
            access: Access::Seat,
            via: AssignmentVia::Group,
            group_id: Some("g".into()),
        };
        let current = CurrentAssignment {
            since: t,
            via: AssignmentVia::Group,
            group_id: Some("g"),
        };
        let rate = ProductRate {
            product: "p".into(),
            name: None,
            flex_tokens_per_day: Tokens::from_millis(7_000),
            effective_from: t,
        };
        let written: Result<(), Unstorable> = (|| {
            fact(3, 42, "2026-03-01T08:31:00Z").encode(&mut tables)?;
            daily_usage(&mut tables, "t", "u", "p", Access::Flex, t.date_naive())?;
            flex_window(&mut tables, "u", "p", t, "t", "e", 7_000)?;
            assignment_event(&mut tables, &assignment, t)?;
            assignment_state(
                &mut tables,
                "t",
                "u",
                "p",
                Access::Seat,
                Some(current),
                AssignmentVia::Direct,
                1,
            )?;
            assignment_state(
                &mut tables,
                "t",
                "u",
                "p",
                Access::Seat,
                None,
                AssignmentVia::Direct,
                2,
            )?;
            let profile = UserProfile {
                user_id: "u".into(),
                name: "n".into(),
                email: "e@example.com".into(),
                avatar_url: None,
            };
            user_profile(&mut tables, &profile, t)?;
            let team_fact = Team {
                team_id: "t".into(),
                name: "n".into(),
                pii_visible: true,
            };
            team(&mut tables, &team_fact, t)?;
            let membership = GroupMembership {
                team_id: "t".into(),
                group_id: "g".into(),
                group_name: "n".into(),
                user_id: "u".into(),
                member: true,
            };
            group_membership(&mut tables, &membership, t)?;
            let merge = TeamMerge {
                from_team_id: "t".into(),
                into_team_id: "t2".into(),
            };
            team_merge(&mut tables, "m", t, &merge)?;
            product_rate(&mut tables, "r", t, &rate)?;
            Ok(())
        })();
        written.expect("storable");
        let finished = tables.finish();
        let names: Vec<&str> = finished.iter().map(|t| t.table.name).collect();
        let all: Vec<&str> = WRITTEN.iter().map(|t| t.name).collect();
        assert_eq!(names, all, "every table, in the order of WRITTEN");
        let rows: Vec<usize> = finished.iter().map(|t| t.rows).collect();
        assert_eq!(rows, [1, 1, 1, 1, 2, 1, 1, 1, 1, 1]);
    }

    #[test]
    fn a_partition_or_an_offset_out_of_its_column_is_an_error() {
        let mut tables = Tables::default();
        let error = fact(65_536, 0, "2026-03-01T08:31:00Z")
            .encode(&mut tables)
            .expect_err("not a UInt16");
        assert_eq!((error.column, error.why), ("source_partition", Why::Above));
        let error = fact(0, -1, "2026-03-01T08:31:00Z")
            .encode(&mut tables)
            .expect_err("not a UInt64");
        assert_eq!((error.column, error.why), ("source_offset", Why::Below));
        fact(65_535, i64::MAX, "2026-03-01T08:31:00Z")
            .encode(&mut tables)
            .expect("the largest of each");
        assert_eq!(tables.finish()[0].rows, 1, "only the storable row");
    }

    #[test]
    fn an_ingestion_time_after_2105_is_an_error() {
        let error = fact(0, 0, "2106-01-01T00:00:00Z")
            .encode(&mut Tables::default())
            .expect_err("not a DateTime");
        assert_eq!((error.column, error.why), ("ingested_at", Why::Above));
    }
}
