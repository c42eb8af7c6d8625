//! Step 1 of stamping (pure): every message of a batch decoded with the
//! contract's validation, and its timestamps checked to be storable
//! ([`storable`]); assignment and directory facts encoded as rows and applied
//! to the enrichment state; authorizations set aside for the stamper; refused
//! messages turned into dead letters. Authorizations need no state: they are
//! decoded first, spread over the [`Workers`], and taken in order after.

use super::{dead_letter, storable, Pending, StampError};
use crate::dlq::{DeadLetter, DeadLetterPolicy};
use crate::message::{RawMessage, Topic, TopicNames};
use crate::rows::{self, Tables};
use crate::state::Enrichment;
use crate::workers::Workers;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use usage_core::event::{Access, AssignmentVia, DirectoryChange};
use usage_core::validate::{decode_assignment, decode_directory, Limits, ValidationError};
use usage_store::schema::Unstorable;

/// An assignment key: (team, user, product, access).
pub(crate) type AssignmentKey = (String, String, String, Access);

/// A batch, decoded.
pub(crate) struct Decoded {
    /// The valid authorizations, in order, each with the deadline of its hold.
    pub(crate) authorizations: Vec<Pending>,
    /// The assignment keys the batch's assignment events touched, with how
    /// the last of them was assigned.
    pub(crate) touched: BTreeMap<AssignmentKey, AssignmentVia>,
    pub(crate) letters: Vec<DeadLetter>,
}

/// How messages are decoded.
pub(crate) struct Decoder<'a> {
    pub(crate) limits: &'a Limits,
    /// How long an authorization may wait for the data that explains it.
    pub(crate) unresolved_hold: Duration,
    pub(crate) topics: &'a TopicNames,
    /// The threads authorizations are decoded on.
    pub(crate) workers: Workers,
}

/// Where a decoded message's effects go.
struct Effects<'a> {
    enrichment: &'a mut Enrichment,
    tables: &'a mut Tables,
    touched: &'a mut BTreeMap<AssignmentKey, AssignmentVia>,
    ingested_at: DateTime<Utc>,
}

/// A message of the batch after the workers' pass.
enum Read {
    /// An authorization, decoded in place (or refused, the message given back).
    Authorization(Result<Pending, (RawMessage, ValidationError)>),
    /// An assignments message, decoded in order below.
    Assignment(RawMessage),
    /// A directory message, decoded in order below.
    Directory(RawMessage),
}

impl Decoder<'_> {
    /// Decodes `batch` (in consumption order) as of `now`: reference facts go
    /// into `enrichment` and their rows into `tables` (stamped `ingested_at`);
    /// every outcome is recorded by `policy`, which stops the batch when too
    /// many messages are invalid. A row that cannot be stored although its
    /// event's timestamps were checked (the clock's `ingested_at`) is an error.
    pub(crate) fn decode(
        &self,
        batch: Vec<RawMessage>,
        enrichment: &mut Enrichment,
        policy: &mut DeadLetterPolicy,
        tables: &mut Tables,
        now: DateTime<Utc>,
        ingested_at: DateTime<Utc>,
    ) -> Result<Decoded, StampError> {
        let mut authorizations = Vec::new();
        let mut letters = Vec::new();
        let mut touched = BTreeMap::new();
        let mut effects = Effects {
            enrichment,
            tables,
            touched: &mut touched,
            ingested_at,
        };
        // Authorizations first, on every worker, each message handed over
        // (its payload becomes the pending authorization's text); reference
        // messages below, in order.
        let (limits, deadline) = (self.limits, Instant::now() + self.unresolved_hold);
        let read = self.workers.map_owned(batch, |raw| match raw.topic {
            Topic::Authorizations => Read::Authorization(Pending::read(raw, limits, now, deadline)),
            Topic::Assignments => Read::Assignment(raw),
            Topic::Directory => Read::Directory(raw),
        });
        for message in read {
            let (raw, result) = match message {
                Read::Authorization(Ok(pending)) => {
                    policy.record(true)?;
                    authorizations.push(pending);
                    continue;
                }
                Read::Authorization(Err((raw, error))) => (raw, Err(error)),
                Read::Assignment(raw) => {
                    let result = assignment(&raw, limits, &mut effects, now)?;
                    (raw, result)
                }
                Read::Directory(raw) => {
                    let result = directory(&raw, limits, &mut effects, now)?;
                    (raw, result)
                }
            };
            policy.record(result.is_ok())?;
            if let Err(error) = result {
                letters.push(dead_letter(self.topics, &raw, &error));
            }
        }
        Ok(Decoded {
            authorizations,
            touched,
            letters,
        })
    }
}

/// An assignments message: applied and encoded, or why it is refused.
fn assignment(
    raw: &RawMessage,
    limits: &Limits,
    effects: &mut Effects<'_>,
    now: DateTime<Utc>,
) -> Result<Result<(), ValidationError>, Unstorable> {
    let decoded = decode_assignment(&raw.payload, limits, now)
        .and_then(|a| storable::assignment(&a).map(|()| a));
    let a = match decoded {
        Ok(a) => a,
        Err(error) => return Ok(Err(error)),
    };
    rows::assignment_event(effects.tables, &a, effects.ingested_at)?;
    effects.enrichment.apply_assignment(&a);
    let key = (
        a.team_id.clone(),
        a.user_id.clone(),
        a.product.clone(),
        a.access,
    );
    effects.touched.insert(key, a.via);
    Ok(Ok(()))
}

/// A directory message: applied and encoded, or why it is refused.
fn directory(
    raw: &RawMessage,
    limits: &Limits,
    effects: &mut Effects<'_>,
    now: DateTime<Utc>,
) -> Result<Result<(), ValidationError>, Unstorable> {
    let decoded = decode_directory(&raw.payload, limits, now)
        .and_then(|d| storable::directory(&d).map(|()| d));
    let d = match decoded {
        Ok(d) => d,
        Err(error) => return Ok(Err(error)),
    };
    let (tables, at) = (&mut *effects.tables, d.occurred_at);
    match &d.change {
        DirectoryChange::UserProfile(p) => rows::user_profile(tables, p, at)?,
        DirectoryChange::Team(t) => rows::team(tables, t, at)?,
        DirectoryChange::GroupMembership(g) => rows::group_membership(tables, g, at)?,
        DirectoryChange::TeamMerge(m) => rows::team_merge(tables, &d.event_id, at, m)?,
        DirectoryChange::ProductRate(r) => {
            rows::product_rate(tables, &d.event_id, at, r)?;
            effects.enrichment.rates.apply(&d.event_id, at, r);
        }
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use usage_core::charge::ChargeConfig;

    fn raw(topic: Topic, offset: i64, payload: &str) -> RawMessage {
        RawMessage {
            topic,
            partition: 0,
            offset,
            key: None,
            payload: payload.as_bytes().to_vec(),
        }
    }

    #[test]
    fn reference_facts_are_applied_and_refused_messages_become_letters() {
        let topics = TopicNames {
            authorizations: "auth".into(),
            assignments: "asg".into(),
            directory: "dir".into(),
        };
        let limits = Limits::default();
        let decoder = Decoder {
            limits: &limits,
            unresolved_hold: Duration::from_secs(30),
            topics: &topics,
            workers: Workers::default(),
        };
        let mut enrichment = Enrichment::new(ChargeConfig::default());
        let mut policy = DeadLetterPolicy::new(1.0, 100, 0);
        let mut tables = Tables::default();
        let now = Utc::now();
        let batch = vec![
            raw(
                Topic::Authorizations,
                0,
                r#"{"event_id":"e1","occurred_at":"2026-01-05T09:00:00Z","user_id":"u-1","product":"autocad","access":"seat"}"#,
            ),
            raw(
                Topic::Assignments,
                1,
                r#"{"event_id":"a1","occurred_at":"2026-01-02T00:00:00Z","action":"assign","team_id":"t-1","user_id":"u-1","product":"autocad","access":"seat","via":"direct"}"#,
            ),
            raw(Topic::Directory, 2, "{not json"),
        ];
        let decoded = decoder
            .decode(batch, &mut enrichment, &mut policy, &mut tables, now, now)
            .expect("within the policy");
        assert_eq!(decoded.authorizations.len(), 1);
        assert_eq!(decoded.authorizations[0].offset, 0);
        let key = ("t-1".into(), "u-1".into(), "autocad".into(), Access::Seat);
        assert_eq!(decoded.touched.get(&key), Some(&AssignmentVia::Direct));
        // The assignment is known before any authorization is stamped.
        let auth = decoded.authorizations[0].auth();
        let resolution = enrichment.assignments().resolve(auth);
        assert_eq!(resolution.team().map(|t| t.team_id), Some("t-1"));
        assert_eq!(decoded.letters.len(), 1);
        assert_eq!(
            (
                decoded.letters[0].source_topic.as_str(),
                decoded.letters[0].offset
            ),
            ("dir", 2)
        );
        let written: Vec<&str> = tables.finish().iter().map(|t| t.table.name).collect();
        assert_eq!(written, ["assignment_events"]);
    }

    /// Events whose timestamps ClickHouse cannot store are dead letters,
    /// neither applied nor written.
    #[test]
    fn unstorable_timestamps_are_dead_letters() {
        let topics = TopicNames {
            authorizations: "auth".into(),
            assignments: "asg".into(),
            directory: "dir".into(),
        };
        let limits = Limits::default();
        let decoder = Decoder {
            limits: &limits,
            unresolved_hold: Duration::from_secs(30),
            topics: &topics,
            workers: Workers::default(),
        };
        let mut enrichment = Enrichment::new(ChargeConfig::default());
        let mut policy = DeadLetterPolicy::new(1.0, 100, 0);
        let mut tables = Tables::default();
        let now = DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z")
            .expect("a timestamp")
            .with_timezone(&Utc);
        let batch = vec![
            raw(
                Topic::Directory,
                0,
                r#"{"event_id":"r1","occurred_at":"2026-01-01T00:00:00Z","type":"product_rate","product":"p","flex_tokens_per_day":7,"effective_from":"2106-01-01T00:00:00Z"}"#,
            ),
            raw(
                Topic::Assignments,
                1,
                r#"{"event_id":"a1","occurred_at":"2016-12-31T23:59:60Z","action":"assign","team_id":"t-1","user_id":"u-1","product":"p","access":"seat","via":"direct"}"#,
            ),
            raw(
                Topic::Authorizations,
                2,
                r#"{"event_id":"e1","occurred_at":"2026-01-05T23:59:60.5Z","user_id":"u-1","product":"p","access":"seat"}"#,
            ),
        ];
        let decoded = decoder
            .decode(batch, &mut enrichment, &mut policy, &mut tables, now, now)
            .expect("within the policy");
        let letters: Vec<(i64, &str, Option<&str>)> = decoded
            .letters
            .iter()
            .map(|l| (l.offset, l.reason, l.field.as_deref()))
            .collect();
        assert_eq!(
            letters,
            [
                (0, "future_timestamp", Some("effective_from")),
                (1, "bad_timestamp", Some("occurred_at")),
                (2, "bad_timestamp", Some("occurred_at")),
            ]
        );
        assert!(decoded.authorizations.is_empty());
        assert!(decoded.touched.is_empty());
        let far = DateTime::parse_from_rfc3339("2106-06-01T00:00:00Z")
            .expect("a timestamp")
            .with_timezone(&Utc);
        assert_eq!(enrichment.rates.rate_at("p", far), None, "not applied");
        assert!(tables.finish().is_empty(), "nothing written");
    }
}
