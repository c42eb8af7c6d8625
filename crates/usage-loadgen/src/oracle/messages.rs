//! Reading the messages: two passes in publish order. The first reads the
//! reference data (first copy of each event id) and finds the ids that may
//! be duplicates; the second counts every message: poison as its dead
//! letter, duplicates as nothing more, each authorization judged (offline,
//! team, Flex window or free, usage day).

use std::borrow::Cow;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::days::{day_of_micros, DAY_US};
use super::{Oracle, RowKey, Window};
use crate::scenario::Scenario;
use crate::{Access, Message, Reason, Topic};

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

pub(super) fn parse_time(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc).timestamp_micros())
}

pub(super) fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
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
}
