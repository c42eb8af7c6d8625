//! The license-usage domain as pure functions.
//!
//! Nothing in this crate does I/O, spawns tasks or reads a clock: time is
//! always an argument. The ingest consumers and the report service are thin
//! edges around it; this is where correctness lives. "Rule N" below and in
//! the modules is rule N of `docs/rules.md`.
//!
//! - [`event`]: the inbound event contract (the Rust side of `schemas/events/`).
//! - [`validate`]: raw message bytes to typed events, or a dead-letter [`validate::Reason`].
//! - [`team`]: team resolution at event time from the assignment history (rule 2).
//! - [`merge`]: team merges, the read-time `team -> current team` mapping (rule 2).
//! - [`groups`]: current group memberships (rule 3).
//! - [`charge`]: Flex token charges over 24-hour usage windows (rule 4).
//! - [`range`]: report date ranges and months in range (rule 5).
//! - [`usage`]: days used, last accessed, monthly average, Flex tile (rules 1, 5).
//! - [`status`]: activity status and the Subscriptions tile (rule 6).
//! - [`privacy`]: keyed hashing of user identity and when it applies (rule 7).
//! - [`admin`]: export retention, schedules, unassign (rules 8-10).
//! - [`frequency`]: frequent and occasional users, tokens if moved to Flex (rule 11).

pub mod admin;
pub mod charge;
pub mod event;
pub mod frequency;
pub mod groups;
pub mod merge;
mod pair;
pub mod privacy;
pub mod range;
pub mod status;
pub mod team;
pub mod usage;
pub mod validate;

pub use pair::alloc_bytes;

/// The hash map of the per-event state: foldhash (fast, seeded per process)
/// instead of SipHash, which was 5 % of the consumer's CPU.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// The hash set of the per-event state (see [`FastMap`]).
pub type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
