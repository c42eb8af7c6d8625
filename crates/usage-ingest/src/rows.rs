//! The rows the ingest writes, one encoder per table, columns in the order of
//! each table's column list (the migrations in `schemas/clickhouse/`).

use crate::rowbinary::{micros, RowBinary};
use crate::sink::Table;
use chrono::{DateTime, NaiveDate, Utc};
use usage_core::event::{
    Access, Assignment, AssignmentAction, AssignmentVia, GroupMembership, ProductRate, Team,
    TeamMerge, UserProfile,
};
use usage_core::team::{CurrentAssignment, TeamSource};

pub(crate) const AUTHORIZATIONS: Table = Table {
    name: "authorizations",
    columns: "event_id, occurred_at, occurred_us, usage_date, team_id, team_source, user_id, \
              product, product_version, access, machine_id, window_start, tokens_milli, \
              source_partition, source_offset, ingested_at",
};
pub(crate) const DAILY_USAGE: Table = Table {
    name: "daily_usage",
    columns: "team_id, user_id, product, access, usage_date",
};
pub(crate) const FLEX_WINDOWS: Table = Table {
    name: "flex_windows",
    columns:
        "user_id, product, window_start, window_start_us, team_id, opening_event_id, tokens_milli",
};
pub(crate) const ASSIGNMENT_EVENTS: Table = Table {
    name: "assignment_events",
    columns: "event_id, occurred_at, occurred_us, action, team_id, user_id, product, access, via, \
              group_id, ingested_at",
};
pub(crate) const ASSIGNMENT_STATE: Table = Table {
    name: "assignment_state",
    columns: "team_id, user_id, product, access, assigned, assigned_date, via, group_id, version",
};
pub(crate) const USER_PROFILES: Table = Table {
    name: "user_profiles",
    columns: "user_id, name, email, avatar_url, version",
};
pub(crate) const TEAMS: Table = Table {
    name: "teams",
    columns: "team_id, name, pii_visible, version",
};
pub(crate) const GROUP_MEMBERSHIPS: Table = Table {
    name: "group_memberships",
    columns: "team_id, group_id, group_name, user_id, member, version",
};
pub(crate) const TEAM_MERGES: Table = Table {
    name: "team_merges",
    columns: "event_id, occurred_at, from_team_id, into_team_id",
};
pub(crate) const PRODUCT_RATES: Table = Table {
    name: "product_rates",
    columns:
        "product, name, flex_tokens_milli, effective_from, effective_from_us, event_id, version",
};

/// Every table, in the order a batch writes them: windows before the facts
/// that point at them, facts before the rollups derived from them.
pub(crate) const ALL: [Table; 10] = [
    FLEX_WINDOWS,
    AUTHORIZATIONS,
    DAILY_USAGE,
    ASSIGNMENT_EVENTS,
    ASSIGNMENT_STATE,
    USER_PROFILES,
    TEAMS,
    GROUP_MEMBERSHIPS,
    TEAM_MERGES,
    PRODUCT_RATES,
];

pub(crate) fn access_code(access: Access) -> i8 {
    match access {
        Access::Seat => 1,
        Access::Flex => 2,
    }
}

pub(crate) fn via_code(via: AssignmentVia) -> i8 {
    match via {
        AssignmentVia::Direct => 1,
        AssignmentVia::Group => 2,
        AssignmentVia::Default => 3,
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
    pub(crate) window_start: Option<DateTime<Utc>>,
    pub(crate) tokens_milli: u64,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) ingested_at: DateTime<Utc>,
}

impl FactRow<'_> {
    pub(crate) fn encode(&self, rb: &mut RowBinary) {
        rb.string(self.event_id)
            .datetime_us(self.occurred_at)
            .date(self.usage_date)
            .string(self.team_id)
            .enum8(match self.team_source {
                TeamSource::Event => 1,
                TeamSource::Assignment => 2,
            })
            .string(self.user_id)
            .string(self.product)
            .string(self.product_version)
            .enum8(access_code(self.access))
            .string(self.machine_id)
            .datetime(self.window_start.unwrap_or_default())
            .u64(self.tokens_milli)
            .u16(u16::try_from(self.partition).unwrap_or(u16::MAX))
            .u64(u64::try_from(self.offset).unwrap_or(0))
            .datetime(self.ingested_at)
            .end_row();
    }
}

pub(crate) fn daily_usage(
    rb: &mut RowBinary,
    team_id: &str,
    user_id: &str,
    product: &str,
    access: Access,
    day: NaiveDate,
) {
    rb.string(team_id)
        .string(user_id)
        .string(product)
        .enum8(access_code(access))
        .date(day)
        .end_row();
}

pub(crate) fn flex_window(
    rb: &mut RowBinary,
    user_id: &str,
    product: &str,
    start: DateTime<Utc>,
    team_id: &str,
    opening_event_id: &str,
    tokens_milli: u64,
) {
    rb.string(user_id)
        .string(product)
        .datetime_us(start)
        .string(team_id)
        .string(opening_event_id)
        .u64(tokens_milli)
        .end_row();
}

pub(crate) fn assignment_event(rb: &mut RowBinary, a: &Assignment, ingested_at: DateTime<Utc>) {
    rb.string(&a.event_id)
        .datetime_us(a.occurred_at)
        .enum8(match a.action {
            AssignmentAction::Assign => 1,
            AssignmentAction::Unassign => 2,
        })
        .string(&a.team_id)
        .string(&a.user_id)
        .string(&a.product)
        .enum8(access_code(a.access))
        .enum8(via_code(a.via))
        .string(a.group_id.as_deref().unwrap_or(""))
        .datetime(ingested_at)
        .end_row();
}

/// The current assignment of a key (or its absence), as of its newest event,
/// under `version` (see `stamp::encode::StateVersions`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn assignment_state(
    rb: &mut RowBinary,
    team_id: &str,
    user_id: &str,
    product: &str,
    access: Access,
    current: Option<CurrentAssignment<'_>>,
    last_via: AssignmentVia,
    version: u64,
) {
    rb.string(team_id)
        .string(user_id)
        .string(product)
        .enum8(access_code(access))
        .u8(u8::from(current.is_some()))
        .date(current.map_or(NaiveDate::default(), |c| c.since.date_naive()))
        .enum8(via_code(current.map_or(last_via, |c| c.via)))
        .string(current.and_then(|c| c.group_id).unwrap_or(""))
        .u64(version)
        .end_row();
}

pub(crate) fn user_profile(rb: &mut RowBinary, p: &UserProfile, at: DateTime<Utc>) {
    rb.string(&p.user_id)
        .string(&p.name)
        .string(&p.email)
        .string(p.avatar_url.as_deref().unwrap_or(""))
        .u64(micros(at))
        .end_row();
}

pub(crate) fn team(rb: &mut RowBinary, t: &Team, at: DateTime<Utc>) {
    rb.string(&t.team_id)
        .string(&t.name)
        .u8(u8::from(t.pii_visible))
        .u64(micros(at))
        .end_row();
}

pub(crate) fn group_membership(rb: &mut RowBinary, g: &GroupMembership, at: DateTime<Utc>) {
    rb.string(&g.team_id)
        .string(&g.group_id)
        .string(&g.group_name)
        .string(&g.user_id)
        .u8(u8::from(g.member))
        .u64(micros(at))
        .end_row();
}

pub(crate) fn team_merge(rb: &mut RowBinary, event_id: &str, at: DateTime<Utc>, m: &TeamMerge) {
    rb.string(event_id)
        .datetime(at)
        .string(&m.from_team_id)
        .string(&m.into_team_id)
        .end_row();
}

pub(crate) fn product_rate(rb: &mut RowBinary, event_id: &str, at: DateTime<Utc>, r: &ProductRate) {
    rb.string(&r.product)
        .string(r.name.as_deref().unwrap_or(""))
        .u64(r.flex_tokens_per_day.millis())
        .datetime_us(r.effective_from)
        .string(event_id)
        .u64(micros(at))
        .end_row();
}
