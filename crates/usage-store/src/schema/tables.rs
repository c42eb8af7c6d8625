//! Every table the pipeline writes or reads, as its migration creates it
//! (`schemas/clickhouse/`; held by `tests/tables.rs` against `DESCRIBE TABLE`).

use super::codes::{ScheduleFormat, ScheduleFrequency, ScheduleKind, StoredEnum};
use super::{Column, ColumnType as T, TableDef};
use usage_core::event::{Access, AssignmentAction, AssignmentVia};
use usage_core::team::TeamSource;

const fn c(name: &'static str, ty: T) -> Column {
    Column { name, ty }
}

/// The facts: one row per reportable authorization, stamped at ingest
/// (migration 0001).
pub const AUTHORIZATIONS: TableDef = TableDef {
    name: "authorizations",
    columns: &[
        c("event_id", T::String),
        c("occurred_at", T::DateTime),
        c("occurred_us", T::UInt32),
        c("usage_date", T::Date),
        c("team_id", T::String),
        c("team_source", T::Enum8(TeamSource::CODES)),
        c("user_id", T::String),
        c("product", T::String),
        c("product_version", T::String),
        c("access", T::Enum8(Access::CODES)),
        c("machine_id", T::String),
        c("window_start", T::DateTime),
        c("tokens_milli", T::UInt64),
        c("source_partition", T::UInt16),
        c("source_offset", T::UInt64),
        c("ingested_at", T::DateTime),
    ],
};

/// Days used: one row per (team, user, product, access, UTC date) (migration 0002).
pub const DAILY_USAGE: TableDef = TableDef {
    name: "daily_usage",
    columns: &[
        c("team_id", T::String),
        c("user_id", T::String),
        c("product", T::String),
        c("access", T::Enum8(Access::CODES)),
        c("usage_date", T::Date),
    ],
};

/// Flex usage windows and their charges (migration 0002).
pub const FLEX_WINDOWS: TableDef = TableDef {
    name: "flex_windows",
    columns: &[
        c("user_id", T::String),
        c("product", T::String),
        c("window_start", T::DateTime),
        c("window_start_us", T::UInt32),
        c("team_id", T::String),
        c("opening_event_id", T::String),
        c("tokens_milli", T::UInt64),
    ],
};

/// Assignment events as they arrive (migration 0003).
pub const ASSIGNMENT_EVENTS: TableDef = TableDef {
    name: "assignment_events",
    columns: &[
        c("event_id", T::String),
        c("occurred_at", T::DateTime),
        c("occurred_us", T::UInt32),
        c("action", T::Enum8(AssignmentAction::CODES)),
        c("team_id", T::String),
        c("user_id", T::String),
        c("product", T::String),
        c("access", T::Enum8(Access::CODES)),
        c("via", T::Enum8(AssignmentVia::CODES)),
        c("group_id", T::String),
        c("ingested_at", T::DateTime),
    ],
};

/// The current assignment per (team, user, product, access), latest version
/// wins (migration 0003).
pub const ASSIGNMENT_STATE: TableDef = TableDef {
    name: "assignment_state",
    columns: &[
        c("team_id", T::String),
        c("user_id", T::String),
        c("product", T::String),
        c("access", T::Enum8(Access::CODES)),
        c("assigned", T::UInt8),
        c("assigned_date", T::Date),
        c("via", T::Enum8(AssignmentVia::CODES)),
        c("group_id", T::String),
        c("version", T::UInt64),
    ],
};

/// Directory: user profiles, latest version wins (migration 0003).
pub const USER_PROFILES: TableDef = TableDef {
    name: "user_profiles",
    columns: &[
        c("user_id", T::String),
        c("name", T::String),
        c("email", T::String),
        c("avatar_url", T::String),
        c("version", T::UInt64),
    ],
};

/// Directory: teams, latest version wins (migration 0003).
pub const TEAMS: TableDef = TableDef {
    name: "teams",
    columns: &[
        c("team_id", T::String),
        c("name", T::String),
        c("pii_visible", T::UInt8),
        c("version", T::UInt64),
    ],
};

/// Directory: group memberships, latest version wins (migration 0003).
pub const GROUP_MEMBERSHIPS: TableDef = TableDef {
    name: "group_memberships",
    columns: &[
        c("team_id", T::String),
        c("group_id", T::String),
        c("group_name", T::String),
        c("user_id", T::String),
        c("member", T::UInt8),
        c("version", T::UInt64),
    ],
};

/// Directory: team merges (migration 0003).
pub const TEAM_MERGES: TableDef = TableDef {
    name: "team_merges",
    columns: &[
        c("event_id", T::String),
        c("occurred_at", T::DateTime),
        c("from_team_id", T::String),
        c("into_team_id", T::String),
    ],
};

/// Flex token rates per product, latest publication wins (migration 0003).
pub const PRODUCT_RATES: TableDef = TableDef {
    name: "product_rates",
    columns: &[
        c("product", T::String),
        c("name", T::String),
        c("flex_tokens_milli", T::UInt64),
        c("effective_from", T::DateTime),
        c("effective_from_us", T::UInt32),
        c("event_id", T::String),
        c("version", T::UInt64),
    ],
};

/// Scheduled report exports, one row per change (migration 0005).
pub const REPORT_SCHEDULES: TableDef = TableDef {
    name: "report_schedules",
    columns: &[
        c("schedule_id", T::String),
        c("owner_admin_id", T::String),
        c("name", T::String),
        c("start_date", T::Date),
        c("frequency", T::Enum8(ScheduleFrequency::CODES)),
        c("kind", T::Enum8(ScheduleKind::CODES)),
        c("format", T::Enum8(ScheduleFormat::CODES)),
        c("filters", T::String),
        c("created_at", T::DateTime),
        c("updated_at", T::DateTime),
        c("last_run_date", T::Date),
        c("deleted", T::UInt8),
        c("version", T::UInt64),
    ],
};

/// Days used per (team, user, product, access, UTC month): the month's days
/// with usage as bits (bit d-1 for day d), OR-ed. Filled by the materialized
/// view `usage_months_mv` from `daily_usage` (migration 0006).
pub const USAGE_MONTHS: TableDef = TableDef {
    name: "usage_months",
    columns: &[
        c("team_id", T::String),
        c("user_id", T::String),
        c("product", T::String),
        c("access", T::Enum8(Access::CODES)),
        c("month", T::Date),
        c(
            "days",
            T::AggregateState {
                function: "groupBitOr",
                arguments: "UInt32",
            },
        ),
    ],
};

/// Last accessed per (team, user, product, access), the latest date wins.
/// Filled by the materialized view `last_access_mv` from `daily_usage`
/// (migration 0006).
pub const LAST_ACCESS: TableDef = TableDef {
    name: "last_access",
    columns: &[
        c("team_id", T::String),
        c("user_id", T::String),
        c("product", T::String),
        c("access", T::Enum8(Access::CODES)),
        c("last_date", T::Date),
    ],
};

/// Flex windows per (opening event's team, user, product, UTC month of the
/// start): the set of (day of month, start in seconds, its microseconds,
/// tokens in thousandths). Filled by the materialized view `token_months_mv`
/// from `flex_windows` (migration 0006).
pub const TOKEN_MONTHS: TableDef = TableDef {
    name: "token_months",
    columns: &[
        c("team_id", T::String),
        c("user_id", T::String),
        c("product", T::String),
        c("month", T::Date),
        c(
            "windows",
            T::AggregateState {
                function: "groupUniqArray",
                arguments: "Tuple(UInt8, UInt32, UInt32, UInt64)",
            },
        ),
    ],
};

/// Every table, in the order the ingest writes a batch: windows before the
/// facts that point at them, facts before the rollups derived from them,
/// then the assignment and directory tables; the report's own; last the
/// report's rollups, which ClickHouse writes itself (materialized views over
/// `daily_usage` and `flex_windows`).
pub const ALL: [TableDef; 14] = [
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
    REPORT_SCHEDULES,
    USAGE_MONTHS,
    LAST_ACCESS,
    TOKEN_MONTHS,
];
