//! Load generator for the usage pipeline: a deterministic scenario generator,
//! an independent oracle of the expected report, and a Kafka publisher.
//!
//! - [`scenario`]: [`ScenarioConfig`] → [`Scenario`] → a stream of
//!   [`Message`]s (directory, assignments, authorizations, duplicates, late
//!   events, poison), deterministic from the seed.
//! - [`poison`]: the corpus of refused messages, each with the dead-letter
//!   [`Reason`] the pipeline must give.
//! - [`oracle`]: the expected rollups, re-derived from the messages alone by
//!   simple, obvious code (it does not use `usage-core`: it is the reference
//!   the pipeline is checked against).
//! - [`mod@publish`]: publishes messages with an rdkafka `FutureProducer`.
//!
//! Events are JSON payloads conforming to `schemas/events/` (built here with
//! `serde_json`, never with the pipeline's own types).

use std::fmt;

use serde::{Deserialize, Serialize};

pub mod names;
pub mod oracle;
pub mod poison;
pub mod publish;
pub mod scenario;
pub mod verify;

pub use oracle::{
    CurrentAssignment, DateRange, ExpectedRange, ExpectedRollups, ExpectedRow, ExpectedTeam,
    ExpectedWindow, Oracle, OracleError, Status, TeamSummary, Totals,
};
pub use poison::PoisonKind;
pub use publish::{
    publish, publish_scenario, Progress, PublishConfig, PublishError, PublishReport,
};
pub use scenario::{ConfigError, Messages, Scenario, ScenarioConfig, ScenarioCounts};

/// The three inbound topics, by role. Their names are configurable
/// ([`Topics`]); a [`Message`] names the role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Topic {
    /// `usage.authorizations` (key `user_id`).
    Authorizations,
    /// `usage.assignments` (key `user_id`).
    Assignments,
    /// `usage.directory` (key `team_id`, `user_id`, `from_team_id` or `product`).
    Directory,
}

impl Topic {
    /// Every topic, in a fixed order.
    pub const ALL: [Topic; 3] = [Topic::Authorizations, Topic::Assignments, Topic::Directory];

    /// The default topic name (`usage.authorizations`, ...).
    pub fn default_name(self) -> &'static str {
        match self {
            Topic::Authorizations => "usage.authorizations",
            Topic::Assignments => "usage.assignments",
            Topic::Directory => "usage.directory",
        }
    }

    /// A short stable name: `authorizations`, `assignments`, `directory`.
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Authorizations => "authorizations",
            Topic::Assignments => "assignments",
            Topic::Directory => "directory",
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Kafka topic name of each [`Topic`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topics {
    pub authorizations: String,
    pub assignments: String,
    pub directory: String,
}

impl Topics {
    /// The name of `topic`.
    pub fn name(&self, topic: Topic) -> &str {
        match topic {
            Topic::Authorizations => &self.authorizations,
            Topic::Assignments => &self.assignments,
            Topic::Directory => &self.directory,
        }
    }

    /// Every role on the same topic `name` (tests).
    pub fn all_on(name: &str) -> Topics {
        Topics {
            authorizations: name.to_owned(),
            assignments: name.to_owned(),
            directory: name.to_owned(),
        }
    }
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            authorizations: Topic::Authorizations.default_name().to_owned(),
            assignments: Topic::Assignments.default_name().to_owned(),
            directory: Topic::Directory.default_name().to_owned(),
        }
    }
}

/// Seat or Flex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    Seat,
    Flex,
}

impl Access {
    /// `seat` or `flex`.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Seat => "seat",
            Access::Flex => "flex",
        }
    }

    /// Parses the contract's spelling (exact, lower case).
    pub fn parse(s: &str) -> Option<Access> {
        match s {
            "seat" => Some(Access::Seat),
            "flex" => Some(Access::Flex),
            _ => None,
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an assignment came: `direct`, `group`, `default`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    Direct,
    Group,
    Default,
}

impl Via {
    /// `direct`, `group` or `default`.
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Direct => "direct",
            Via::Group => "group",
            Via::Default => "default",
        }
    }

    /// Parses the contract's spelling.
    pub fn parse(s: &str) -> Option<Via> {
        match s {
            "direct" => Some(Via::Direct),
            "group" => Some(Via::Group),
            "default" => Some(Via::Default),
            _ => None,
        }
    }
}

/// A dead-letter reason of the contract (`schemas/events/README.md`), with
/// its stable snake_case spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    TooLarge,
    InvalidUtf8,
    MalformedJson,
    NotAnObject,
    MissingField,
    WrongType,
    UnknownValue,
    InvalidValue,
    BadTimestamp,
    FutureTimestamp,
    PastTimestamp,
    UnresolvedTeam,
    UnknownRate,
}

impl Reason {
    /// The reasons the decoder gives (everything but the two ingest reasons).
    pub const VALIDATION: [Reason; 11] = [
        Reason::TooLarge,
        Reason::InvalidUtf8,
        Reason::MalformedJson,
        Reason::NotAnObject,
        Reason::MissingField,
        Reason::WrongType,
        Reason::UnknownValue,
        Reason::InvalidValue,
        Reason::BadTimestamp,
        Reason::FutureTimestamp,
        Reason::PastTimestamp,
    ];

    /// The stable spelling (`too_large`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::TooLarge => "too_large",
            Reason::InvalidUtf8 => "invalid_utf8",
            Reason::MalformedJson => "malformed_json",
            Reason::NotAnObject => "not_an_object",
            Reason::MissingField => "missing_field",
            Reason::WrongType => "wrong_type",
            Reason::UnknownValue => "unknown_value",
            Reason::InvalidValue => "invalid_value",
            Reason::BadTimestamp => "bad_timestamp",
            Reason::FutureTimestamp => "future_timestamp",
            Reason::PastTimestamp => "past_timestamp",
            Reason::UnresolvedTeam => "unresolved_team",
            Reason::UnknownRate => "unknown_rate",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the generator meant a message to be. Informative (tests, counts):
/// the [`Oracle`] never reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Meta {
    /// An exact re-publication of a message published before (same bytes).
    pub duplicate: bool,
    /// An authorization published after later ones of the same user.
    pub late: bool,
    /// An assignment published after the first authorization it explains.
    pub late_assignment: bool,
    /// A valid event carrying hostile strings (SQL metacharacters, control
    /// characters): valid, counted normally.
    pub hostile: bool,
    /// A valid authorization the generator meant to be dead-lettered by the
    /// ingest (`unresolved_team`, `unknown_rate`); the oracle derives it
    /// independently.
    pub intended_dead_letter: Option<Reason>,
}

/// One Kafka message of a scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The topic role (names: [`Topics`]).
    pub topic: Topic,
    /// The Kafka key.
    pub key: String,
    /// The payload bytes (a JSON event, or poison).
    pub payload: Vec<u8>,
    /// For poison only: the reason the decoder must refuse it with. The
    /// oracle counts such a message as that dead letter and nothing else.
    pub expected_reason: Option<Reason>,
    /// What the generator meant (never read by the oracle).
    pub meta: Meta,
}

impl Message {
    /// A valid event: `payload` is serialised as is.
    pub fn event(topic: Topic, key: impl Into<String>, payload: &serde_json::Value) -> Message {
        Message {
            topic,
            key: key.into(),
            payload: payload.to_string().into_bytes(),
            expected_reason: None,
            meta: Meta::default(),
        }
    }

    /// A poison message the decoder must refuse with `reason`.
    pub fn poison(
        topic: Topic,
        key: impl Into<String>,
        payload: Vec<u8>,
        reason: Reason,
    ) -> Message {
        Message {
            topic,
            key: key.into(),
            payload,
            expected_reason: Some(reason),
            meta: Meta::default(),
        }
    }
}
