//! The oracle: the report the pipeline must produce, re-derived from the
//! messages alone by deliberately simple code. It shares nothing with the
//! pipeline (no `usage-core`): where the two disagree, one of them is wrong,
//! and this one is easy to read.
//!
//! # The rules, as implemented here
//! - **Poison** (a message with [`Message::expected_reason`]) counts as that
//!   dead letter and nothing else.
//! - **Dedupe** by `event_id`, across all topics: the first copy in publish
//!   order counts, later copies are duplicates and change nothing.
//! - **Reference data is a set**: every assignment, rate, merge, team and
//!   group membership in the scenario is known when authorizations are
//!   judged, whatever its publish position (the pipeline waits, bounded, for
//!   late assignments; the generator publishes rates first).
//! - **Offline** (`online: false`) authorizations are counted as offline and
//!   nothing else (before team resolution).
//! - **Team**: the event's `team_id` if present (and not null); else the team
//!   where the user holds (product, access) at `occurred_at`: per (team,
//!   user, product, access) the last assignment event with `occurred_at <=
//!   t` (ties by `event_id`) is an `assign`. No team: dead letter
//!   `unresolved_team`, not counted. Several (the generator never does it):
//!   counted in [`Totals::ambiguous_resolutions`], the most recent
//!   continuous assignment wins, ties to the smallest `team_id`.
//! - **Flex**, per (user, product), all versions and teams, in publish
//!   order: an authorization at `t` is free if the window with the greatest
//!   start `<= t` among those opened so far has `t < start + 24h`; otherwise
//!   it opens a window at `t` charged the rate in force at `t` (greatest
//!   `effective_from <= t`, ties by the rate event's `(occurred_at,
//!   event_id)`), attributed to the opening event's team. No rate: dead
//!   letter `unknown_rate`, not counted, no window.
//! - **Days used** = distinct UTC dates of counted authorizations; **tokens
//!   in a range** = charges of windows whose start's UTC date is in it.
//! - **Status** as of `now` over `[from, to]`: `active` (assigned now, used
//!   in range), `inactive` (seat, assigned now since a date `<= from`, not
//!   used), `not_yet_active` (seat, assigned now since after `from`, not
//!   used), `flex_unused` (Flex, assigned now, not used: never inactive),
//!   `unassigned` (used, not assigned now), else no status (`None`).
//! - **Merges** are resolved at read time: `current_team` follows `from ->
//!   into` edges transitively; a team merged twice keeps its first merge, a
//!   merge closing a cycle is ignored. The `*_merged` queries sum the
//!   history of every team whose current team is the one asked.

use std::borrow::Cow;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::scenario::{from_micros, Scenario, ScenarioConfig};
use crate::{Access, Message, Reason, Topic, Via};

const DAY_US: i64 = 86_400_000_000;
/// Days from 1970-01-01 to 2000-01-01: day numbers count from 2000-01-01.
const EPOCH_2000: i64 = 10_957;

/// A UTC date as a day number since 2000-01-01.
type Day = u16;

fn day_of_micros(us: i64) -> Option<Day> {
    Day::try_from(us.div_euclid(DAY_US) - EPOCH_2000).ok()
}

fn day_of_date(d: NaiveDate) -> i64 {
    let epoch = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or(NaiveDate::MIN);
    (d - epoch).num_days()
}

fn date_of_day(d: Day) -> NaiveDate {
    let epoch = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or(NaiveDate::MIN);
    epoch + chrono::TimeDelta::days(i64::from(d))
}

/// An inclusive range of UTC dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DateRange {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl DateRange {
    pub fn new(from: NaiveDate, to: NaiveDate) -> DateRange {
        DateRange { from, to }
    }

    fn contains_day(&self, d: Day) -> bool {
        let d = i64::from(d);
        d >= day_of_date(self.from) && d <= day_of_date(self.to)
    }
}

/// Why the oracle could not read a message it expected to be valid (a
/// generator bug, or a hand-written test event that is not valid).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OracleError {
    #[error("message {index} on {topic}: {detail}")]
    Invalid {
        index: u64,
        topic: Topic,
        detail: String,
    },
}

/// Activity status of a (team, user, product, access) over a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Currently assigned and used in the range.
    Active,
    /// Seat, currently assigned since on or before the range start, not used.
    Inactive,
    /// Seat, currently assigned since after the range start, not used.
    NotYetActive,
    /// Flex, currently assigned, not used in the range (Flex is never
    /// inactive, docs/rules.md rule 6; the pipeline's `flex_unused`).
    FlexUnused,
    /// Used in the range, not currently assigned.
    Unassigned,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Inactive => "inactive",
            Status::NotYetActive => "not_yet_active",
            Status::FlexUnused => "flex_unused",
            Status::Unassigned => "unassigned",
        }
    }
}

/// The assignment in force of a (team, user, product, access).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentAssignment {
    /// Start of the current continuous assignment: the first `assign` after
    /// the last `unassign`.
    pub since: DateTime<Utc>,
    /// From the latest `assign`.
    pub via: Via,
    /// From the latest `assign`.
    pub group_id: Option<String>,
}

/// A charged Flex window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedWindow {
    pub start: DateTime<Utc>,
    pub tokens_milli: u64,
    /// The team stamped on the opening event.
    pub team_id: String,
}

/// Counts over the whole scenario.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Every message, poison and duplicates included.
    pub messages: u64,
    pub messages_by_topic: BTreeMap<Topic, u64>,
    /// Poison messages (refused by the decoder).
    pub poison: u64,
    /// Valid messages whose `event_id` was seen before.
    pub duplicates: u64,
    /// Distinct valid events, by topic.
    pub distinct_events: u64,
    pub distinct_by_topic: BTreeMap<Topic, u64>,
    /// Distinct authorizations.
    pub authorizations: u64,
    /// Authorizations counted in the rollups.
    pub events_counted: u64,
    pub events_counted_seat: u64,
    pub events_counted_flex: u64,
    /// Offline authorizations (not reported).
    pub events_offline: u64,
    /// Everything dead-lettered (poison, `unresolved_team`, `unknown_rate`).
    pub dead_lettered: u64,
    /// Authorizations whose team came from `team_id`.
    pub team_from_event: u64,
    /// Authorizations whose team was resolved from assignments.
    pub team_from_assignments: u64,
    /// Resolutions with several candidate teams (never in generated scenarios).
    pub ambiguous_resolutions: u64,
    /// Charged Flex windows and their tokens.
    pub flex_windows: u64,
    pub flex_tokens_milli: u64,
    /// Flex authorizations inside an open window.
    pub flex_free: u64,
    /// Windows opened by an authorization earlier than an existing window's
    /// start (out-of-order publication).
    pub late_flex_windows: u64,
}

/// The overview of one team (after merges) or of all teams, over a range,
/// as of `now`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamSummary {
    /// The current team; `None` for all teams.
    pub team_id: Option<String>,
    /// The teams whose history it includes (itself and those merged into it).
    pub includes: Vec<String>,
    /// (user, product) seat assignments in force now.
    pub seats_assigned: u64,
    pub seats_active: u64,
    /// `None` for all teams (rule 6).
    pub seats_inactive: Option<u64>,
    pub seats_not_yet_active: u64,
    /// Tokens of windows starting in the range, in thousandths.
    pub flex_tokens_milli: u64,
    /// Distinct users with Flex usage in the range.
    pub flex_users: u64,
    /// Sum over (user, product) of Flex days used in the range.
    pub flex_days_used: u64,
    /// Sum over users of distinct dates with Flex usage in the range.
    pub flex_user_days: u64,
    /// Rows (user, product, access) by status.
    pub statuses: BTreeMap<Status, u64>,
    /// Days used in the range, summed over (user, product) rows, seat and Flex.
    pub days_used: u64,
}

/// One report row: a (team as stamped, user, product, access).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedRow {
    pub team_id: String,
    pub current_team_id: String,
    pub user_id: String,
    pub product: String,
    pub access: Access,
    /// All time.
    pub days_used: u32,
    pub first_used: Option<NaiveDate>,
    pub last_accessed: Option<NaiveDate>,
    /// Charges of the windows opened in this team, all time.
    pub tokens_milli: u64,
    pub windows: u32,
    /// As of `now`.
    pub assignment: Option<CurrentAssignment>,
    /// Status per named range (as stamped, not merged).
    pub status: BTreeMap<String, Option<Status>>,
    /// Days used per named range.
    pub days_used_in: BTreeMap<String, u32>,
    /// The usage dates (only with detail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dates: Option<Vec<NaiveDate>>,
}

/// A team as the directory says now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedTeam {
    pub team_id: String,
    pub name: Option<String>,
    pub pii_visible: bool,
    pub current_team_id: String,
}

/// Summaries of one named range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedRange {
    pub name: String,
    pub range: DateRange,
    pub all_teams: TeamSummary,
    pub teams: Vec<TeamSummary>,
}

/// Everything the oracle expects, serialisable as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpectedRollups {
    pub now: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<ScenarioConfig>,
    pub totals: Totals,
    pub dead_letters: BTreeMap<Reason, u64>,
    pub teams: Vec<ExpectedTeam>,
    pub merges: Vec<(String, String)>,
    pub ranges: Vec<ExpectedRange>,
    pub rows: Vec<ExpectedRow>,
}

// ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Interner {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.ids.get(s) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(s.to_owned());
        self.ids.insert(s.to_owned(), i);
        i
    }

    fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    fn name(&self, i: u32) -> &str {
        &self.names[i as usize]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct RowKey {
    team: u32,
    user: u32,
    product: u32,
    access: Access,
}

#[derive(Debug, Clone)]
struct AssignmentFact {
    at: i64,
    event_id: String,
    assign: bool,
    via: Via,
    group_id: Option<String>,
}

#[derive(Debug, Clone)]
struct RateFact {
    effective: i64,
    occurred: i64,
    event_id: String,
    milli: u64,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: i64,
    milli: u64,
    team: u32,
}

#[derive(Debug, Clone)]
struct Versioned<T> {
    at: i64,
    event_id: String,
    value: T,
}

impl<T> Versioned<T> {
    /// Keeps the later fact (greatest (occurred_at, event_id)).
    fn newer(&self, at: i64, event_id: &str) -> bool {
        (at, event_id) > (self.at, self.event_id.as_str())
    }
}

/// The expected rollups of a scenario (see the module docs for the rules).
#[derive(Debug, Default)]
pub struct Oracle {
    teams: Interner,
    users: Interner,
    products: Interner,
    /// Counted usage: sorted distinct day numbers per row.
    usage: HashMap<RowKey, Vec<Day>>,
    /// Charged windows per (user, product), sorted by start.
    windows: HashMap<(u32, u32), Vec<Window>>,
    assignments: HashMap<RowKey, Vec<AssignmentFact>>,
    /// (user, product, access) -> teams with assignment history.
    holders: HashMap<(u32, u32, Access), BTreeSet<u32>>,
    rates: HashMap<String, Vec<RateFact>>,
    /// Accepted merges, from -> into.
    merges: BTreeMap<String, String>,
    team_info: BTreeMap<String, Versioned<(String, bool)>>,
    /// (team, user, group) -> (member, group name).
    memberships: BTreeMap<(String, String, String), Versioned<bool>>,
    totals: Totals,
    dead_letters: BTreeMap<Reason, u64>,
    scenario: Option<ScenarioConfig>,
}

#[derive(Deserialize)]
struct IdOnly<'a> {
    #[serde(borrow)]
    event_id: Cow<'a, str>,
}

#[derive(Deserialize)]
struct AuthIn<'a> {
    #[serde(borrow)]
    event_id: Cow<'a, str>,
    #[serde(borrow)]
    occurred_at: Cow<'a, str>,
    #[serde(borrow)]
    user_id: Cow<'a, str>,
    #[serde(borrow)]
    product: Cow<'a, str>,
    #[serde(borrow)]
    access: Cow<'a, str>,
    #[serde(borrow, default)]
    team_id: Option<Cow<'a, str>>,
    #[serde(default)]
    online: Option<bool>,
}

fn hash_id(id: &str) -> u64 {
    let mut h = DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

fn parse_time(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc).timestamp_micros())
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

impl Oracle {
    /// The oracle of a generated scenario (two generation passes).
    pub fn from_scenario(scenario: &Scenario) -> Result<Oracle, OracleError> {
        let mut oracle = Oracle::from_messages(|| scenario.messages())?;
        oracle.scenario = Some(scenario.config().clone());
        Ok(oracle)
    }

    /// The oracle of a message stream in publish order. `messages` is called
    /// twice and must give the same stream both times: the first pass reads
    /// the reference data (assignments, rates, merges, directory) and the
    /// event ids, the second the authorizations.
    pub fn from_messages<F, I>(mut messages: F) -> Result<Oracle, OracleError>
    where
        F: FnMut() -> I,
        I: IntoIterator<Item = Message>,
    {
        let mut oracle = Oracle::default();
        // Pass 1: reference data (first copy of each event id), and a hash of
        // every event id. Ids whose hash occurs twice are the only ones that
        // can be duplicates: pass 2 tracks only those, exactly.
        let mut hashes: Vec<u64> = Vec::new();
        let mut reference_ids: HashSet<String> = HashSet::new();
        for (index, msg) in messages().into_iter().enumerate() {
            if msg.expected_reason.is_some() {
                continue;
            }
            let invalid = |detail: String| OracleError::Invalid {
                index: index as u64,
                topic: msg.topic,
                detail,
            };
            match msg.topic {
                Topic::Authorizations => {
                    let id: IdOnly<'_> =
                        serde_json::from_slice(&msg.payload).map_err(|e| invalid(e.to_string()))?;
                    hashes.push(hash_id(&id.event_id));
                }
                Topic::Assignments | Topic::Directory => {
                    let v: Value =
                        serde_json::from_slice(&msg.payload).map_err(|e| invalid(e.to_string()))?;
                    let id =
                        str_field(&v, "event_id").ok_or_else(|| invalid("no event_id".into()))?;
                    hashes.push(hash_id(id));
                    if reference_ids.insert(id.to_owned()) {
                        oracle.apply_reference(msg.topic, &v).map_err(invalid)?;
                    }
                }
            }
        }
        drop(reference_ids);
        hashes.sort_unstable();
        let suspects: HashSet<u64> = hashes
            .windows(2)
            .filter(|w| w[0] == w[1])
            .map(|w| w[0])
            .collect();
        drop(hashes);
        oracle.settle_reference();

        // Pass 2: every message in publish order.
        let mut seen: HashSet<String> = HashSet::new();
        for (index, msg) in messages().into_iter().enumerate() {
            let invalid = |detail: String| OracleError::Invalid {
                index: index as u64,
                topic: msg.topic,
                detail,
            };
            oracle.totals.messages += 1;
            *oracle
                .totals
                .messages_by_topic
                .entry(msg.topic)
                .or_default() += 1;
            if let Some(reason) = msg.expected_reason {
                oracle.totals.poison += 1;
                oracle.dead_letter(reason);
                continue;
            }
            let auth: Option<AuthIn<'_>> = match msg.topic {
                Topic::Authorizations => {
                    Some(serde_json::from_slice(&msg.payload).map_err(|e| invalid(e.to_string()))?)
                }
                Topic::Assignments | Topic::Directory => None,
            };
            let id: Cow<'_, str> = match &auth {
                Some(a) => a.event_id.clone(),
                None => {
                    let id: IdOnly<'_> =
                        serde_json::from_slice(&msg.payload).map_err(|e| invalid(e.to_string()))?;
                    id.event_id
                }
            };
            if suspects.contains(&hash_id(&id)) && !seen.insert(id.into_owned()) {
                oracle.totals.duplicates += 1;
                continue;
            }
            oracle.totals.distinct_events += 1;
            *oracle
                .totals
                .distinct_by_topic
                .entry(msg.topic)
                .or_default() += 1;
            if let Some(auth) = auth {
                oracle.authorization(&auth).map_err(invalid)?;
            }
        }
        Ok(oracle)
    }

    fn dead_letter(&mut self, reason: Reason) {
        self.totals.dead_lettered += 1;
        *self.dead_letters.entry(reason).or_default() += 1;
    }

    fn apply_reference(&mut self, topic: Topic, v: &Value) -> Result<(), String> {
        let field = |k: &str| str_field(v, k).ok_or_else(|| format!("missing {k}"));
        let id = field("event_id")?;
        let at = parse_time(field("occurred_at")?).ok_or("bad occurred_at")?;
        match topic {
            Topic::Assignments => {
                let team = self.teams.intern(field("team_id")?);
                let user = self.users.intern(field("user_id")?);
                let product = self.products.intern(field("product")?);
                let access = Access::parse(field("access")?).ok_or("bad access")?;
                let via = Via::parse(field("via")?).ok_or("bad via")?;
                let assign = match field("action")? {
                    "assign" => true,
                    "unassign" => false,
                    _ => return Err("bad action".into()),
                };
                let key = RowKey {
                    team,
                    user,
                    product,
                    access,
                };
                self.assignments
                    .entry(key)
                    .or_default()
                    .push(AssignmentFact {
                        at,
                        event_id: id.to_owned(),
                        assign,
                        via,
                        group_id: str_field(v, "group_id").map(str::to_owned),
                    });
                self.holders
                    .entry((user, product, access))
                    .or_default()
                    .insert(team);
            }
            Topic::Directory => match field("type")? {
                "product_rate" => {
                    let tokens = v
                        .get("flex_tokens_per_day")
                        .and_then(Value::as_f64)
                        .ok_or("bad tokens")?;
                    let effective =
                        parse_time(field("effective_from")?).ok_or("bad effective_from")?;
                    self.rates
                        .entry(field("product")?.to_owned())
                        .or_default()
                        .push(RateFact {
                            effective,
                            occurred: at,
                            event_id: id.to_owned(),
                            milli: (tokens * 1000.0).round() as u64,
                        });
                }
                "team_merge" => {
                    let from = field("from_team_id")?.to_owned();
                    let into = field("into_team_id")?.to_owned();
                    self.teams.intern(&from);
                    self.teams.intern(&into);
                    // Publish order; the first merge of a team wins, a cycle is refused.
                    if !self.merges.contains_key(&from) && self.current_team(&into) != from {
                        self.merges.insert(from, into);
                    }
                }
                "team" => {
                    let team = field("team_id")?.to_owned();
                    self.teams.intern(&team);
                    let name = field("name")?.to_owned();
                    let pii = v
                        .get("pii_visible")
                        .and_then(Value::as_bool)
                        .ok_or("bad pii_visible")?;
                    let newer = self
                        .team_info
                        .get(&team)
                        .is_none_or(|old| old.newer(at, id));
                    if newer {
                        self.team_info.insert(
                            team,
                            Versioned {
                                at,
                                event_id: id.to_owned(),
                                value: (name, pii),
                            },
                        );
                    }
                }
                "group_membership" => {
                    let key = (
                        field("team_id")?.to_owned(),
                        field("user_id")?.to_owned(),
                        field("group_id")?.to_owned(),
                    );
                    let member = v
                        .get("member")
                        .and_then(Value::as_bool)
                        .ok_or("bad member")?;
                    let newer = self
                        .memberships
                        .get(&key)
                        .is_none_or(|old| old.newer(at, id));
                    if newer {
                        self.memberships.insert(
                            key,
                            Versioned {
                                at,
                                event_id: id.to_owned(),
                                value: member,
                            },
                        );
                    }
                }
                "user_profile" => {}
                other => return Err(format!("unknown directory type {other}")),
            },
            Topic::Authorizations => {}
        }
        Ok(())
    }

    fn settle_reference(&mut self) {
        for facts in self.assignments.values_mut() {
            facts.sort_by(|a, b| (a.at, &a.event_id).cmp(&(b.at, &b.event_id)));
        }
    }

    /// The rate of `product` in force at `t`, in thousandths.
    fn rate_at(&self, product: &str, t: i64) -> Option<u64> {
        self.rates
            .get(product)?
            .iter()
            .filter(|r| r.effective <= t)
            .max_by(|a, b| {
                (a.effective, a.occurred, &a.event_id).cmp(&(b.effective, b.occurred, &b.event_id))
            })
            .map(|r| r.milli)
    }

    /// Whether the assignment `key` is in force at `t`: the last event at or
    /// before `t` is an `assign`.
    fn held_at(&self, key: &RowKey, t: i64) -> bool {
        self.assignments
            .get(key)
            .and_then(|facts| facts.iter().rev().find(|f| f.at <= t))
            .is_some_and(|f| f.assign)
    }

    fn assignment_as_of(&self, key: &RowKey, now: i64) -> Option<CurrentAssignment> {
        let facts: Vec<&AssignmentFact> = self
            .assignments
            .get(key)?
            .iter()
            .filter(|f| f.at <= now)
            .collect();
        let last = facts.last()?;
        if !last.assign {
            return None;
        }
        // The current continuous assignment: after the last unassign.
        let after_unassign = facts.iter().rposition(|f| !f.assign).map_or(0, |i| i + 1);
        let first = facts[after_unassign];
        Some(CurrentAssignment {
            since: from_micros(first.at),
            via: last.via,
            group_id: last.group_id.clone(),
        })
    }

    fn resolve(&mut self, user: u32, product: u32, access: Access, t: i64) -> Option<u32> {
        let held: Vec<u32> = self
            .holders
            .get(&(user, product, access))?
            .iter()
            .copied()
            .filter(|&team| {
                self.held_at(
                    &RowKey {
                        team,
                        user,
                        product,
                        access,
                    },
                    t,
                )
            })
            .collect();
        match held.len() {
            0 => None,
            1 => Some(held[0]),
            _ => {
                self.totals.ambiguous_resolutions += 1;
                held.into_iter().max_by(|&a, &b| {
                    let since = |team| {
                        self.assignment_as_of(
                            &RowKey {
                                team,
                                user,
                                product,
                                access,
                            },
                            t,
                        )
                        .map_or(i64::MIN, |c| c.since.timestamp_micros())
                    };
                    // Greatest since; then the smallest team id.
                    (since(a), std::cmp::Reverse(self.teams.name(a)))
                        .cmp(&(since(b), std::cmp::Reverse(self.teams.name(b))))
                })
            }
        }
    }

    fn authorization(&mut self, a: &AuthIn<'_>) -> Result<(), String> {
        let t = parse_time(&a.occurred_at).ok_or("bad occurred_at")?;
        let access = Access::parse(&a.access).ok_or("bad access")?;
        self.totals.authorizations += 1;
        if a.online == Some(false) {
            self.totals.events_offline += 1;
            return Ok(());
        }
        let user = self.users.intern(&a.user_id);
        let product = self.products.intern(&a.product);
        let team = match &a.team_id {
            Some(team) => {
                self.totals.team_from_event += 1;
                self.teams.intern(team)
            }
            None => match self.resolve(user, product, access, t) {
                Some(team) => {
                    self.totals.team_from_assignments += 1;
                    team
                }
                None => {
                    self.dead_letter(Reason::UnresolvedTeam);
                    return Ok(());
                }
            },
        };
        if access == Access::Flex {
            let windows = self.windows.get(&(user, product));
            let before = windows.map_or(0, |ws| ws.partition_point(|w| w.start <= t));
            let covered = before > 0 && windows.is_some_and(|ws| t < ws[before - 1].start + DAY_US);
            if covered {
                self.totals.flex_free += 1;
            } else {
                let Some(milli) = self.rate_at(&a.product, t) else {
                    self.dead_letter(Reason::UnknownRate);
                    return Ok(());
                };
                let ws = self.windows.entry((user, product)).or_default();
                if before < ws.len() {
                    self.totals.late_flex_windows += 1;
                }
                ws.insert(
                    before,
                    Window {
                        start: t,
                        milli,
                        team,
                    },
                );
                self.totals.flex_windows += 1;
                self.totals.flex_tokens_milli += milli;
            }
            self.totals.events_counted_flex += 1;
        } else {
            self.totals.events_counted_seat += 1;
        }
        let day = day_of_micros(t).ok_or("occurred_at outside 2000..2179")?;
        let days = self
            .usage
            .entry(RowKey {
                team,
                user,
                product,
                access,
            })
            .or_default();
        if let Err(pos) = days.binary_search(&day) {
            days.insert(pos, day);
        }
        self.totals.events_counted += 1;
        Ok(())
    }

    // -----------------------------------------------------------------------
    // Queries

    /// Totals over the scenario.
    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    /// Expected dead letters by reason (poison and ingest reasons).
    pub fn expected_dead_letters(&self) -> BTreeMap<Reason, u64> {
        self.dead_letters.clone()
    }

    /// The team whose reports include `team`'s history (follows merges).
    pub fn current_team(&self, team: &str) -> String {
        let mut t = team.to_owned();
        for _ in 0..=self.merges.len() {
            match self.merges.get(&t) {
                Some(into) => t = into.clone(),
                None => break,
            }
        }
        t
    }

    /// Accepted merges (from, into).
    pub fn merges(&self) -> Vec<(String, String)> {
        self.merges
            .iter()
            .map(|(f, i)| (f.clone(), i.clone()))
            .collect()
    }

    /// Every team id seen (directory, assignments, authorizations), sorted.
    pub fn team_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.teams.names.clone();
        ids.sort();
        ids
    }

    /// Teams whose current team is `team` (itself included), sorted.
    fn members(&self, team: &str) -> Vec<u32> {
        let mut m: Vec<u32> = (0..self.teams.names.len() as u32)
            .filter(|&t| self.current_team(self.teams.name(t)) == team)
            .collect();
        m.sort_by(|a, b| self.teams.name(*a).cmp(self.teams.name(*b)));
        m
    }

    fn ids(&self, team: &str, user: &str, product: &str) -> Option<(u32, u32, u32)> {
        Some((
            self.teams.get(team)?,
            self.users.get(user)?,
            self.products.get(product)?,
        ))
    }

    fn days_of(
        &self,
        teams: &[u32],
        user: u32,
        product: u32,
        access: Option<Access>,
    ) -> BTreeSet<Day> {
        let mut days = BTreeSet::new();
        for &team in teams {
            for a in [Access::Seat, Access::Flex] {
                if access.is_some_and(|x| x != a) {
                    continue;
                }
                if let Some(d) = self.usage.get(&RowKey {
                    team,
                    user,
                    product,
                    access: a,
                }) {
                    days.extend(d.iter().copied());
                }
            }
        }
        days
    }

    fn team_list(&self, team: &str, merged: bool) -> Vec<u32> {
        if merged {
            self.members(team)
        } else {
            self.teams.get(team).into_iter().collect()
        }
    }

    fn days_used_in(
        &self,
        team: &str,
        user: &str,
        product: &str,
        range: DateRange,
        merged: bool,
    ) -> u32 {
        let (Some(u), Some(p)) = (self.users.get(user), self.products.get(product)) else {
            return 0;
        };
        let teams = self.team_list(team, merged);
        self.days_of(&teams, u, p, None)
            .into_iter()
            .filter(|d| range.contains_day(*d))
            .count() as u32
    }

    /// Distinct UTC dates in `[from, to]` with counted usage of `product` by
    /// `user` stamped `team` (seat and Flex).
    pub fn days_used(
        &self,
        team: &str,
        user: &str,
        product: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> u32 {
        self.days_used_in(team, user, product, DateRange::new(from, to), false)
    }

    /// [`Oracle::days_used`] of the current team `team`, merged teams included.
    pub fn days_used_merged(
        &self,
        team: &str,
        user: &str,
        product: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> u32 {
        self.days_used_in(team, user, product, DateRange::new(from, to), true)
    }

    /// The usage dates of a row (as stamped), sorted.
    pub fn usage_dates(
        &self,
        team: &str,
        user: &str,
        product: &str,
        access: Access,
    ) -> Vec<NaiveDate> {
        self.ids(team, user, product)
            .and_then(|(t, u, p)| {
                self.usage.get(&RowKey {
                    team: t,
                    user: u,
                    product: p,
                    access,
                })
            })
            .map(|d| d.iter().map(|&x| date_of_day(x)).collect())
            .unwrap_or_default()
    }

    fn last_accessed_in(
        &self,
        team: &str,
        user: &str,
        product: &str,
        merged: bool,
    ) -> Option<NaiveDate> {
        let (u, p) = (self.users.get(user)?, self.products.get(product)?);
        let teams = self.team_list(team, merged);
        self.days_of(&teams, u, p, None)
            .last()
            .map(|&d| date_of_day(d))
    }

    /// The most recent UTC date of counted usage (not cut by any range).
    pub fn last_accessed(&self, team: &str, user: &str, product: &str) -> Option<NaiveDate> {
        self.last_accessed_in(team, user, product, false)
    }

    /// [`Oracle::last_accessed`], merged teams included.
    pub fn last_accessed_merged(&self, team: &str, user: &str, product: &str) -> Option<NaiveDate> {
        self.last_accessed_in(team, user, product, true)
    }

    fn tokens_in(
        &self,
        team: &str,
        user: &str,
        product: &str,
        range: DateRange,
        merged: bool,
    ) -> u64 {
        let (Some(u), Some(p)) = (self.users.get(user), self.products.get(product)) else {
            return 0;
        };
        let teams = self.team_list(team, merged);
        self.windows
            .get(&(u, p))
            .map(|ws| {
                ws.iter()
                    .filter(|w| teams.contains(&w.team))
                    .filter(|w| day_of_micros(w.start).is_some_and(|d| range.contains_day(d)))
                    .map(|w| w.milli)
                    .sum()
            })
            .unwrap_or(0)
    }

    /// Tokens (thousandths) of the windows opened in `team` whose start date
    /// is in `[from, to]`.
    pub fn tokens(
        &self,
        team: &str,
        user: &str,
        product: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> u64 {
        self.tokens_in(team, user, product, DateRange::new(from, to), false)
    }

    /// [`Oracle::tokens`], merged teams included.
    pub fn tokens_merged(
        &self,
        team: &str,
        user: &str,
        product: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> u64 {
        self.tokens_in(team, user, product, DateRange::new(from, to), true)
    }

    /// Every charged window of (user, product), by start.
    pub fn windows(&self, user: &str, product: &str) -> Vec<ExpectedWindow> {
        let (Some(u), Some(p)) = (self.users.get(user), self.products.get(product)) else {
            return Vec::new();
        };
        self.windows
            .get(&(u, p))
            .map(|ws| {
                ws.iter()
                    .map(|w| ExpectedWindow {
                        start: from_micros(w.start),
                        tokens_milli: w.milli,
                        team_id: self.teams.name(w.team).to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The assignment of (team, user, product, access) in force at `now`.
    pub fn current_assignment(
        &self,
        team: &str,
        user: &str,
        product: &str,
        access: Access,
        now: DateTime<Utc>,
    ) -> Option<CurrentAssignment> {
        let (t, u, p) = self.ids(team, user, product)?;
        self.assignment_as_of(
            &RowKey {
                team: t,
                user: u,
                product: p,
                access,
            },
            now.timestamp_micros(),
        )
    }

    /// The team resolved for an authorization without `team_id` at `t`.
    pub fn resolve_team(
        &self,
        user: &str,
        product: &str,
        access: Access,
        t: DateTime<Utc>,
    ) -> Option<String> {
        let (u, p) = (self.users.get(user)?, self.products.get(product)?);
        let teams = self.holders.get(&(u, p, access))?;
        let held: Vec<&u32> = teams
            .iter()
            .filter(|&&team| {
                self.held_at(
                    &RowKey {
                        team,
                        user: u,
                        product: p,
                        access,
                    },
                    t.timestamp_micros(),
                )
            })
            .collect();
        match held.as_slice() {
            [one] => Some(self.teams.name(**one).to_owned()),
            _ => None,
        }
    }

    pub fn status_of(
        held: Option<&CurrentAssignment>,
        access: Access,
        used: bool,
        range: DateRange,
    ) -> Option<Status> {
        match (held, used) {
            (Some(_), true) => Some(Status::Active),
            (None, true) => Some(Status::Unassigned),
            (None, false) => None,
            (Some(a), false) => match access {
                Access::Flex => Some(Status::FlexUnused),
                Access::Seat if a.since.date_naive() <= range.from => Some(Status::Inactive),
                Access::Seat => Some(Status::NotYetActive),
            },
        }
    }

    /// The assignment in force at `now` among `teams` (the earliest since).
    fn held_among(
        &self,
        teams: &[u32],
        user: u32,
        product: u32,
        access: Access,
        now: i64,
    ) -> Option<CurrentAssignment> {
        teams
            .iter()
            .filter_map(|&team| {
                self.assignment_as_of(
                    &RowKey {
                        team,
                        user,
                        product,
                        access,
                    },
                    now,
                )
            })
            .min_by_key(|a| a.since)
    }

    #[allow(clippy::too_many_arguments)]
    fn status_in(
        &self,
        team: &str,
        user: &str,
        product: &str,
        access: Access,
        range: DateRange,
        now: DateTime<Utc>,
        merged: bool,
    ) -> Option<Status> {
        let (u, p) = (self.users.get(user)?, self.products.get(product)?);
        let teams = self.team_list(team, merged);
        let held = self.held_among(&teams, u, p, access, now.timestamp_micros());
        let used = self
            .days_of(&teams, u, p, Some(access))
            .iter()
            .any(|d| range.contains_day(*d));
        Self::status_of(held.as_ref(), access, used, range)
    }

    /// The status of (team as stamped, user, product, access) over `[from,
    /// to]` as of `now`; `None` when neither assigned now nor used.
    #[allow(clippy::too_many_arguments)]
    pub fn status(
        &self,
        team: &str,
        user: &str,
        product: &str,
        access: Access,
        from: NaiveDate,
        to: NaiveDate,
        now: DateTime<Utc>,
    ) -> Option<Status> {
        self.status_in(
            team,
            user,
            product,
            access,
            DateRange::new(from, to),
            now,
            false,
        )
    }

    /// [`Oracle::status`] of the current team `team`, merged teams included
    /// (assigned now in any of them; the earliest such assignment's since).
    #[allow(clippy::too_many_arguments)]
    pub fn status_merged(
        &self,
        team: &str,
        user: &str,
        product: &str,
        access: Access,
        from: NaiveDate,
        to: NaiveDate,
        now: DateTime<Utc>,
    ) -> Option<Status> {
        self.status_in(
            team,
            user,
            product,
            access,
            DateRange::new(from, to),
            now,
            true,
        )
    }

    /// Current group memberships of `user` in `team` (group ids, sorted).
    pub fn groups(&self, team: &str, user: &str) -> Vec<String> {
        self.memberships
            .iter()
            .filter(|((t, u, _), m)| t == team && u == user && m.value)
            .map(|((_, _, g), _)| g.clone())
            .collect()
    }

    /// Whether the team's PII is visible (latest `team` event; default off).
    pub fn pii_visible(&self, team: &str) -> bool {
        self.team_info.get(team).is_some_and(|t| t.value.1)
    }

    /// The summary of one current team (merged teams included), or of all
    /// teams (`team: None`; no inactive count), over `range`, as of `now`.
    pub fn team_summary(
        &self,
        team: Option<&str>,
        range: DateRange,
        now: DateTime<Utc>,
    ) -> TeamSummary {
        let now_us = now.timestamp_micros();
        let teams: Vec<u32> = match team {
            Some(t) => self.members(t),
            None => (0..self.teams.names.len() as u32).collect(),
        };
        // Rows: (current team, user, product, access) from usage and assignments.
        let current: HashMap<u32, String> = teams
            .iter()
            .map(|&t| (t, self.current_team(self.teams.name(t))))
            .collect();
        let mut rows: BTreeMap<(String, u32, u32, Access), Vec<u32>> = BTreeMap::new();
        let keys = self.usage.keys().chain(self.assignments.keys());
        for k in keys {
            if let Some(cur) = current.get(&k.team) {
                let members = rows
                    .entry((cur.clone(), k.user, k.product, k.access))
                    .or_default();
                if !members.contains(&k.team) {
                    members.push(k.team);
                }
            }
        }
        let mut s = TeamSummary {
            team_id: team.map(str::to_owned),
            includes: teams
                .iter()
                .map(|&t| self.teams.name(t).to_owned())
                .collect(),
            seats_inactive: team.map(|_| 0),
            ..TeamSummary::default()
        };
        s.includes.sort();
        let mut flex_user_days: BTreeMap<u32, BTreeSet<Day>> = BTreeMap::new();
        for ((_, user, product, access), members) in &rows {
            let held = self.held_among(members, *user, *product, *access, now_us);
            let days: Vec<Day> = self
                .days_of(members, *user, *product, Some(*access))
                .into_iter()
                .filter(|d| range.contains_day(*d))
                .collect();
            let status = Self::status_of(held.as_ref(), *access, !days.is_empty(), range);
            if let Some(st) = status {
                *s.statuses.entry(st).or_default() += 1;
            }
            s.days_used += days.len() as u64;
            match access {
                Access::Seat if held.is_some() => {
                    s.seats_assigned += 1;
                    match status {
                        Some(Status::Active) => s.seats_active += 1,
                        Some(Status::Inactive) => {
                            if let Some(n) = s.seats_inactive.as_mut() {
                                *n += 1;
                            }
                        }
                        Some(Status::NotYetActive) => s.seats_not_yet_active += 1,
                        _ => {}
                    }
                }
                Access::Flex if !days.is_empty() => {
                    s.flex_days_used += days.len() as u64;
                    flex_user_days
                        .entry(*user)
                        .or_default()
                        .extend(days.iter().copied());
                }
                _ => {}
            }
        }
        s.flex_users = flex_user_days.len() as u64;
        s.flex_user_days = flex_user_days.values().map(|d| d.len() as u64).sum();
        for ws in self.windows.values() {
            for w in ws {
                if current.contains_key(&w.team)
                    && day_of_micros(w.start).is_some_and(|d| range.contains_day(d))
                {
                    s.flex_tokens_milli += w.milli;
                }
            }
        }
        s
    }

    /// The summary of every current team (sorted by id) and of all teams.
    pub fn summary(&self, range: DateRange, now: DateTime<Utc>) -> (TeamSummary, Vec<TeamSummary>) {
        let current: BTreeSet<String> = self
            .teams
            .names
            .iter()
            .map(|t| self.current_team(t))
            .collect();
        let teams = current
            .iter()
            .map(|t| self.team_summary(Some(t), range, now))
            .collect();
        (self.team_summary(None, range, now), teams)
    }

    /// The standard ranges of a span ending at `now`: the whole span
    /// (`span`, `days` dates ending today) and the rolling `last_30_days`.
    pub fn standard_ranges(now: DateTime<Utc>, days: u32) -> Vec<(String, DateRange)> {
        let today = now.date_naive();
        let back = |n: i64| today - chrono::TimeDelta::days(n);
        vec![
            (
                "span".to_owned(),
                DateRange::new(back(i64::from(days)), today),
            ),
            ("last_30_days".to_owned(), DateRange::new(back(29), today)),
        ]
    }

    /// Everything expected, as of `now`, for the named ranges. `detail`
    /// adds every row's usage dates.
    pub fn expected_rollups(
        &self,
        now: DateTime<Utc>,
        ranges: &[(String, DateRange)],
        detail: bool,
    ) -> ExpectedRollups {
        let now_us = now.timestamp_micros();
        let mut keys: BTreeSet<(String, String, String, Access)> = BTreeSet::new();
        for k in self.usage.keys().chain(self.assignments.keys()) {
            keys.insert((
                self.teams.name(k.team).to_owned(),
                self.users.name(k.user).to_owned(),
                self.products.name(k.product).to_owned(),
                k.access,
            ));
        }
        let mut rows = Vec::with_capacity(keys.len());
        for (team, user, product, access) in keys {
            let Some((t, u, p)) = self.ids(&team, &user, &product) else {
                continue;
            };
            let key = RowKey {
                team: t,
                user: u,
                product: p,
                access,
            };
            let days = self.usage.get(&key).cloned().unwrap_or_default();
            let windows: Vec<&Window> = match access {
                Access::Flex => self
                    .windows
                    .get(&(u, p))
                    .map(|ws| ws.iter().filter(|w| w.team == t).collect())
                    .unwrap_or_default(),
                Access::Seat => Vec::new(),
            };
            let assignment = self.assignment_as_of(&key, now_us);
            let mut status = BTreeMap::new();
            let mut days_used_in = BTreeMap::new();
            for (name, range) in ranges {
                let used = days.iter().filter(|d| range.contains_day(**d)).count() as u32;
                status.insert(
                    name.clone(),
                    Self::status_of(assignment.as_ref(), access, used > 0, *range),
                );
                days_used_in.insert(name.clone(), used);
            }
            rows.push(ExpectedRow {
                current_team_id: self.current_team(&team),
                team_id: team,
                user_id: user,
                product,
                access,
                days_used: days.len() as u32,
                first_used: days.first().map(|&d| date_of_day(d)),
                last_accessed: days.last().map(|&d| date_of_day(d)),
                tokens_milli: windows.iter().map(|w| w.milli).sum(),
                windows: windows.len() as u32,
                assignment,
                status,
                days_used_in,
                dates: detail.then(|| days.iter().map(|&d| date_of_day(d)).collect()),
            });
        }
        let teams = self
            .team_ids()
            .into_iter()
            .map(|id| ExpectedTeam {
                name: self.team_info.get(&id).map(|t| t.value.0.clone()),
                pii_visible: self.pii_visible(&id),
                current_team_id: self.current_team(&id),
                team_id: id,
            })
            .collect();
        let ranges = ranges
            .iter()
            .map(|(name, range)| {
                let (all_teams, teams) = self.summary(*range, now);
                ExpectedRange {
                    name: name.clone(),
                    range: *range,
                    all_teams,
                    teams,
                }
            })
            .collect();
        ExpectedRollups {
            now,
            scenario: self.scenario.clone(),
            totals: self.totals.clone(),
            dead_letters: self.dead_letters.clone(),
            teams,
            merges: self.merges(),
            ranges,
            rows,
        }
    }
}
