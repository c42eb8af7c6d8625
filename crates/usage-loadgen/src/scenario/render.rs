//! Rendering: a pending event to its Kafka message (topic, key, JSON payload
//! per `schemas/events/`, with the generator's [`Meta`]). Timestamps in UTC
//! or a fixed offset; authorizations through a derived `Serialize` (the hot
//! path), the rest through `json!`.

use chrono::{FixedOffset, SecondsFormat};
use serde::{Serialize, Serializer};
use serde_json::{json, Value};

use super::events::{Body, OnlineField, Pending, TeamField};
use super::from_micros;
use super::random::splitmix;
use super::world::World;
use crate::names;
use crate::poison::{self, PoisonContext};
use crate::{Message, Meta, Topic};

pub(super) const OFFSETS: [i32; 5] = [5 * 3600 + 1800, -7 * 3600, 9 * 3600, 3600, -3 * 3600];

fn timestamp(us: i64, offset: u8) -> String {
    let t = from_micros(us);
    match offset {
        0 => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        k => {
            let secs = OFFSETS[(k as usize - 1) % OFFSETS.len()];
            match FixedOffset::east_opt(secs) {
                Some(tz) => t
                    .with_timezone(&tz)
                    .to_rfc3339_opts(SecondsFormat::AutoSi, true),
                None => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            }
        }
    }
}

/// A property that may be absent, `null`, or a value.
enum Field<T> {
    Absent,
    Null,
    Value(T),
}

impl<T> Field<T> {
    fn is_absent(&self) -> bool {
        matches!(self, Field::Absent)
    }
}

impl<T: Serialize> Serialize for Field<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Field::Absent | Field::Null => s.serialize_none(),
            Field::Value(v) => v.serialize(s),
        }
    }
}

/// The authorization wire shape (the hot path: a derived `Serialize`
/// rather than `json!`, several times faster; the contract's field names).
#[derive(Serialize)]
struct AuthorizationJson<'a> {
    event_id: &'a str,
    occurred_at: &'a str,
    user_id: &'a str,
    product: &'a str,
    #[serde(skip_serializing_if = "Field::is_absent")]
    product_version: Field<&'a str>,
    access: &'a str,
    #[serde(skip_serializing_if = "Field::is_absent")]
    team_id: Field<&'a str>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    machine_id: Field<String>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    online: Field<bool>,
}

impl World {
    pub(super) fn render(&self, p: &Pending) -> Message {
        let ev = &p.ev;
        let event_id = self.event_id(ev.id);
        let occurred_at = timestamp(ev.at, 0);
        let (topic, key, payload, expected_reason, hostile, intended) = match ev.body {
            Body::Team(t) => {
                let team = &self.teams[t as usize];
                let v = json!({
                    "event_id": event_id,
                    "occurred_at": occurred_at,
                    "type": "team",
                    "team_id": team.id,
                    "name": team.name,
                    "pii_visible": team.pii_visible,
                });
                (
                    Topic::Directory,
                    team.id.clone(),
                    v.to_string().into_bytes(),
                    None,
                    false,
                    None,
                )
            }
            Body::Rate { product, idx } => {
                let prod = &self.products[product as usize];
                let rate = prod.rates[idx as usize];
                let mut v = json!({
                    "event_id": event_id,
                    "occurred_at": occurred_at,
                    "type": "product_rate",
                    "product": prod.def.code,
                    "flex_tokens_per_day": tokens_json(rate.milli),
                    "effective_from": timestamp(rate.effective, 0),
                });
                if idx == 0 {
                    if let Some(m) = v.as_object_mut() {
                        m.insert("name".into(), json!(prod.def.name));
                    }
                }
                (
                    Topic::Directory,
                    prod.def.code.to_owned(),
                    v.to_string().into_bytes(),
                    None,
                    false,
                    None,
                )
            }
            Body::Profile(u) => {
                let plan = &self.users[u as usize];
                let user_id = self.user_id(u);
                let first = names::FIRST_NAMES[plan.first_name as usize];
                let last = names::LAST_NAMES[plan.last_name as usize];
                let hostile = self.cfg.poison_share > 0.0 && u == 0;
                let name = if hostile {
                    names::HOSTILE_NAMES[0].to_owned()
                } else {
                    format!("{first} {last}")
                };
                let email = format!("{}.{}.{}@example.com", first, last, u + 1)
                    .to_lowercase()
                    .replace([' ', '\''], "-");
                let mut v = json!({
                    "event_id": event_id,
                    "occurred_at": occurred_at,
                    "type": "user_profile",
                    "user_id": user_id,
                    "name": name,
                    "email": email,
                });
                if plan.avatar {
                    if let Some(m) = v.as_object_mut() {
                        m.insert(
                            "avatar_url".into(),
                            json!(format!("https://cdn.example.com/avatars/{user_id}.png")),
                        );
                    }
                }
                (
                    Topic::Directory,
                    user_id,
                    v.to_string().into_bytes(),
                    None,
                    hostile,
                    None,
                )
            }
            Body::Membership {
                team,
                group,
                user,
                member,
            } => {
                let team_id = &self.teams[team as usize].id;
                let v = json!({
                    "event_id": event_id,
                    "occurred_at": occurred_at,
                    "type": "group_membership",
                    "team_id": team_id,
                    "group_id": self.group_id(team, group),
                    "group_name": names::GROUPS[group as usize].1,
                    "user_id": self.user_id(user),
                    "member": member,
                });
                (
                    Topic::Directory,
                    team_id.clone(),
                    v.to_string().into_bytes(),
                    None,
                    false,
                    None,
                )
            }
            Body::Merge { from, into } => {
                let from_id = &self.teams[from as usize].id;
                let v = json!({
                    "event_id": event_id,
                    "occurred_at": occurred_at,
                    "type": "team_merge",
                    "from_team_id": from_id,
                    "into_team_id": self.teams[into as usize].id,
                });
                (
                    Topic::Directory,
                    from_id.clone(),
                    v.to_string().into_bytes(),
                    None,
                    false,
                    None,
                )
            }
            Body::Assignment {
                assign,
                team,
                user,
                product,
                access,
                via,
                group,
            } => {
                let user_id = self.user_id(user);
                let mut v = json!({
                    "event_id": event_id,
                    "occurred_at": occurred_at,
                    "action": if assign { "assign" } else { "unassign" },
                    "team_id": self.teams[team as usize].id,
                    "user_id": user_id,
                    "product": self.products[product as usize].def.code,
                    "access": access.as_str(),
                    "via": via.as_str(),
                });
                if let Some(m) = v.as_object_mut() {
                    match group {
                        Some(g) => {
                            m.insert("group_id".into(), json!(self.group_id(team, g)));
                        }
                        None if ev.id.is_multiple_of(3) => {
                            m.insert("group_id".into(), Value::Null);
                        }
                        None => {}
                    }
                }
                (
                    Topic::Assignments,
                    user_id,
                    v.to_string().into_bytes(),
                    None,
                    false,
                    None,
                )
            }
            Body::Auth(a) => {
                let user_id = self.user_id(a.user);
                let prod = &self.products[a.product as usize];
                let hostile = (a.hostile as usize)
                    .checked_sub(1)
                    .map(|k| (k % 2 == 0, names::HOSTILE[k % names::HOSTILE.len()]));
                let version = match hostile {
                    Some((true, s)) => Field::Value(s),
                    _ => match a.version {
                        255 => Field::Null,
                        254 => Field::Absent,
                        v => Field::Value(prod.def.versions[v as usize % prod.def.versions.len()]),
                    },
                };
                let machine = match hostile {
                    Some((false, s)) => Field::Value(s.to_owned()),
                    _ => match a.machine {
                        0 => Field::Absent,
                        255 => Field::Null,
                        k => Field::Value(format!(
                            "m-{:08x}",
                            (splitmix(u64::from(a.user) ^ self.id_salt) as u32) ^ u32::from(k)
                        )),
                    },
                };
                let occurred = if a.offset == 0 {
                    occurred_at
                } else {
                    timestamp(ev.at, a.offset)
                };
                let team = match a.team {
                    TeamField::Absent => Field::Absent,
                    TeamField::Null => Field::Null,
                    TeamField::Team(t) => Field::Value(self.teams[t as usize].id.as_str()),
                };
                let json = AuthorizationJson {
                    event_id: &event_id,
                    occurred_at: &occurred,
                    user_id: &user_id,
                    product: prod.def.code,
                    product_version: version,
                    access: a.access.as_str(),
                    team_id: team,
                    machine_id: machine,
                    online: match a.online {
                        OnlineField::Absent => Field::Absent,
                        OnlineField::Null => Field::Null,
                        OnlineField::True => Field::Value(true),
                        OnlineField::False => Field::Value(false),
                    },
                };
                let payload = serde_json::to_vec(&json).unwrap_or_default();
                (
                    Topic::Authorizations,
                    user_id,
                    payload,
                    None,
                    hostile.is_some(),
                    a.intended,
                )
            }
            Body::Poison { kind, user } => {
                let plan = &self.users[user as usize];
                let product = plan
                    .holdings
                    .first()
                    .map(|h| self.products[h.product as usize].def.code)
                    .unwrap_or("autocad");
                let user_id = self.user_id(user);
                let ctx = PoisonContext {
                    event_id: &event_id,
                    occurred_at: &occurred_at,
                    user_id: &user_id,
                    team_id: &self.teams[plan.primary as usize].id,
                    product,
                    end: self.cfg.end,
                    salt: splitmix(ev.id ^ self.id_salt),
                };
                let m = poison::render(kind, &ctx);
                (m.topic, m.key, m.payload, m.expected_reason, false, None)
            }
        };
        Message {
            topic,
            key,
            payload,
            expected_reason,
            meta: Meta {
                duplicate: p.copy,
                late: p.late,
                late_assignment: p.late_assignment,
                hostile,
                intended_dead_letter: intended,
            },
        }
    }

    pub(super) fn topic_of(body: &Body) -> Topic {
        match body {
            Body::Team(_)
            | Body::Rate { .. }
            | Body::Profile(_)
            | Body::Membership { .. }
            | Body::Merge { .. } => Topic::Directory,
            Body::Assignment { .. } => Topic::Assignments,
            Body::Auth(_) => Topic::Authorizations,
            Body::Poison { kind, .. } => kind.topic(),
        }
    }
}

/// A token amount in thousandths as a JSON number (integer when whole).
fn tokens_json(milli: u64) -> Value {
    if milli.is_multiple_of(1000) {
        json!(milli / 1000)
    } else {
        json!(milli as f64 / 1000.0)
    }
}
