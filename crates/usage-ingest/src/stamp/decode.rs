//! Step 1 of stamping (pure): every message of a batch decoded with the
//! contract's validation; assignment and directory facts applied to the
//! enrichment state and encoded as rows; authorizations set aside for the
//! stamper; refused messages turned into dead letters.

use super::encode::Tables;
use super::{dead_letter, Pending};
use crate::dlq::{DeadLetter, DeadLetterPolicy, PolicyTripped};
use crate::message::{RawMessage, Topic, TopicNames};
use crate::rows;
use crate::state::Enrichment;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use usage_core::event::{Access, AssignmentVia, DirectoryChange};
use usage_core::validate::{decode_assignment, decode_authorization, decode_directory, Limits};

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
}

impl Decoder<'_> {
    /// Decodes `batch` (in consumption order) as of `now`: reference facts go
    /// into `enrichment` and their rows into `tables` (stamped `ingested_at`);
    /// every outcome is recorded by `policy`, which stops the batch when too
    /// many messages are invalid.
    pub(crate) fn decode(
        &self,
        batch: Vec<RawMessage>,
        enrichment: &mut Enrichment,
        policy: &mut DeadLetterPolicy,
        tables: &mut Tables,
        now: DateTime<Utc>,
        ingested_at: DateTime<Utc>,
    ) -> Result<Decoded, PolicyTripped> {
        let mut decoded = Decoded {
            authorizations: Vec::new(),
            touched: BTreeMap::new(),
            letters: Vec::new(),
        };
        let limits = self.limits;
        for raw in batch {
            let result = match raw.topic {
                Topic::Authorizations => decode_authorization(&raw.payload, limits, now).map(Some),
                Topic::Assignments => decode_assignment(&raw.payload, limits, now).map(|a| {
                    enrichment.assignments.apply(&a);
                    rows::assignment_event(tables.get(rows::ASSIGNMENT_EVENTS), &a, ingested_at);
                    let key = (
                        a.team_id.clone(),
                        a.user_id.clone(),
                        a.product.clone(),
                        a.access,
                    );
                    decoded.touched.insert(key, a.via);
                    None
                }),
                Topic::Directory => decode_directory(&raw.payload, limits, now).map(|d| {
                    let at = d.occurred_at;
                    match &d.change {
                        DirectoryChange::UserProfile(p) => {
                            rows::user_profile(tables.get(rows::USER_PROFILES), p, at)
                        }
                        DirectoryChange::Team(t) => rows::team(tables.get(rows::TEAMS), t, at),
                        DirectoryChange::GroupMembership(g) => {
                            rows::group_membership(tables.get(rows::GROUP_MEMBERSHIPS), g, at)
                        }
                        DirectoryChange::TeamMerge(m) => {
                            rows::team_merge(tables.get(rows::TEAM_MERGES), &d.event_id, at, m)
                        }
                        DirectoryChange::ProductRate(r) => {
                            enrichment.rates.apply(&d.event_id, at, r);
                            rows::product_rate(tables.get(rows::PRODUCT_RATES), &d.event_id, at, r)
                        }
                    }
                    None
                }),
            };
            policy.record(result.is_ok())?;
            match result {
                Ok(Some(auth)) => decoded.authorizations.push(Pending {
                    auth,
                    raw,
                    deadline: Instant::now() + self.unresolved_hold,
                }),
                Ok(None) => {}
                Err(error) => decoded.letters.push(dead_letter(self.topics, &raw, &error)),
            }
        }
        Ok(decoded)
    }
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
        assert_eq!(decoded.authorizations[0].raw.offset, 0);
        let key = ("t-1".into(), "u-1".into(), "autocad".into(), Access::Seat);
        assert_eq!(decoded.touched.get(&key), Some(&AssignmentVia::Direct));
        // The assignment is known before any authorization is stamped.
        let auth = &decoded.authorizations[0].auth;
        let resolution = enrichment.assignments.resolve(auth);
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
}
