//! The generator: determinism, knobs, the poison corpus, unambiguous team
//! holdings, publish order.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::Value;
use usage_loadgen::{Access, Message, Oracle, Reason, Scenario, ScenarioConfig, Status, Topic};

fn end() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-06-01T09:30:00Z")
        .expect("valid")
        .with_timezone(&Utc)
}

fn config() -> ScenarioConfig {
    ScenarioConfig {
        seed: 7,
        users: 120,
        teams: 4,
        products: 6,
        days: 60,
        end: end(),
        duplicate_share: 0.03,
        late_share: 0.03,
        poison_share: 0.005,
        ..ScenarioConfig::default()
    }
}

fn messages(cfg: &ScenarioConfig) -> Vec<Message> {
    Scenario::generate(cfg)
        .expect("valid config")
        .messages()
        .collect()
}

fn json(m: &Message) -> Value {
    serde_json::from_slice(&m.payload).expect("valid JSON")
}

fn time(v: &Value, key: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v[key].as_str().expect("string"))
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

fn valid(msgs: &[Message]) -> impl Iterator<Item = (&Message, Value)> {
    msgs.iter()
        .filter(|m| m.expected_reason.is_none())
        .map(|m| (m, json(m)))
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let a = messages(&config());
    let b = messages(&config());
    assert_eq!(a.len(), b.len());
    assert!(a == b, "same seed, same messages");
    let c = messages(&ScenarioConfig {
        seed: 8,
        ..config()
    });
    assert!(a != c);
    // A fresh stream from the same scenario is identical too.
    let s = Scenario::generate(&config()).expect("valid");
    assert!(s.messages().eq(s.messages()));
    // Counting agrees with the stream.
    let counts = s.count();
    assert_eq!(counts.messages, a.len() as u64);
    assert_eq!(
        counts.duplicates,
        a.iter().filter(|m| m.meta.duplicate).count() as u64
    );
}

#[test]
fn config_is_validated() {
    assert!(Scenario::generate(&ScenarioConfig {
        users: 0,
        ..config()
    })
    .is_err());
    assert!(Scenario::generate(&ScenarioConfig {
        products: 99,
        ..config()
    })
    .is_err());
    assert!(Scenario::generate(&ScenarioConfig {
        late_share: 1.5,
        ..config()
    })
    .is_err());
    assert!(Scenario::generate(&ScenarioConfig {
        days: 0,
        ..config()
    })
    .is_err());
}

#[test]
fn directory_matches_the_knobs() {
    let cfg = config();
    let msgs = messages(&cfg);
    let mut teams = BTreeSet::new();
    let mut users = BTreeSet::new();
    let mut rates: BTreeMap<String, Vec<DateTime<Utc>>> = BTreeMap::new();
    let mut merges = Vec::new();
    let mut pii = BTreeSet::new();
    let mut left_group = 0;
    for (m, v) in valid(&msgs) {
        if m.topic != Topic::Directory || m.meta.duplicate {
            continue;
        }
        let ty = v["type"].as_str().expect("type");
        let key_field = match ty {
            "team" | "group_membership" => "team_id",
            "user_profile" => "user_id",
            "team_merge" => "from_team_id",
            "product_rate" => "product",
            other => panic!("unexpected type {other}"),
        };
        assert_eq!(v[key_field].as_str(), Some(m.key.as_str()), "key of {ty}");
        match ty {
            "team" => {
                teams.insert(v["team_id"].as_str().expect("id").to_owned());
                pii.insert(v["pii_visible"].as_bool().expect("bool"));
            }
            "user_profile" => {
                users.insert(v["user_id"].as_str().expect("id").to_owned());
            }
            "product_rate" => rates
                .entry(v["product"].as_str().expect("product").to_owned())
                .or_default()
                .push(time(&v, "effective_from")),
            "team_merge" => merges.push((v["from_team_id"].clone(), v["into_team_id"].clone())),
            "group_membership" => left_group += usize::from(v["member"] == Value::Bool(false)),
            _ => {}
        }
    }
    assert_eq!(teams.len(), cfg.teams);
    assert_eq!(users.len(), cfg.users);
    assert_eq!(pii.len(), 2, "some teams show PII, some hide it");
    assert_eq!(
        rates.len(),
        cfg.products,
        "a rate for every pool product (the no-rate product has none)"
    );
    let start = cfg.start();
    assert!(
        rates
            .values()
            .any(|e| e.iter().any(|t| *t > start && *t < cfg.end)),
        "a rate change inside the span"
    );
    assert_eq!(merges.len(), 1);
    assert_eq!(
        merges[0].0,
        Value::String("team-umbrella".into()),
        "the last team ..."
    );
    assert_eq!(
        merges[0].1,
        Value::String("team-acme".into()),
        "... merged into the first"
    );
    assert!(left_group > 0, "someone leaves a group");
}

#[test]
fn keys_and_times_follow_the_contract() {
    let cfg = config();
    let msgs = messages(&cfg);
    let (start, end) = (cfg.start(), cfg.end);
    let mut offsets = 0;
    for (m, v) in valid(&msgs) {
        assert!(m.payload.len() < 65_536);
        match m.topic {
            Topic::Authorizations | Topic::Assignments => {
                assert_eq!(v["user_id"].as_str(), Some(m.key.as_str()));
            }
            Topic::Directory => {}
        }
        if m.topic == Topic::Authorizations {
            let t = time(&v, "occurred_at");
            assert!(
                t >= start && t <= end,
                "authorization at {t} outside the span"
            );
            offsets += usize::from(!v["occurred_at"].as_str().expect("str").ends_with('Z'));
        }
    }
    assert!(offsets > 0, "some timestamps carry an offset");
}

#[test]
fn no_poison_without_poison_share() {
    let cfg = ScenarioConfig {
        poison_share: 0.0,
        ..config()
    };
    let msgs = messages(&cfg);
    assert!(msgs
        .iter()
        .all(|m| m.expected_reason.is_none() && !m.meta.hostile));
    assert!(msgs.iter().all(|m| m.meta.intended_dead_letter.is_none()));
    let oracle = Oracle::from_messages(|| msgs.clone()).expect("valid");
    assert!(oracle.expected_dead_letters().is_empty());
}

#[test]
fn every_poison_reason_is_present() {
    let msgs = messages(&config());
    let reasons: BTreeSet<Reason> = msgs.iter().filter_map(|m| m.expected_reason).collect();
    for reason in Reason::VALIDATION {
        assert!(reasons.contains(&reason), "{reason} missing");
    }
    assert!(
        msgs.iter()
            .all(|m| m.expected_reason.is_none() || !m.meta.duplicate),
        "poison is never duplicated"
    );
    assert!(
        msgs.iter().any(|m| m.meta.hostile),
        "hostile strings inside valid events"
    );
    let oracle = Oracle::from_messages(|| msgs.clone()).expect("valid");
    let dead = oracle.expected_dead_letters();
    for reason in [Reason::UnresolvedTeam, Reason::UnknownRate] {
        assert!(
            dead.get(&reason).copied().unwrap_or(0) >= 2,
            "{reason}: {dead:?}"
        );
    }
    // The generator's intent and the oracle's independent judgement agree.
    let intended = msgs
        .iter()
        .filter(|m| m.meta.intended_dead_letter.is_some())
        .count() as u64;
    assert_eq!(
        intended,
        dead[&Reason::UnresolvedTeam] + dead[&Reason::UnknownRate]
    );
    // Hostile strings are counted normally.
    let hostile = msgs
        .iter()
        .find(|m| m.meta.hostile && m.topic == Topic::Authorizations)
        .expect("one");
    assert!(serde_json::from_slice::<Value>(&hostile.payload).is_ok());
}

#[test]
fn duplicates_are_exact_republications() {
    let cfg = config();
    let msgs = messages(&cfg);
    let mut first: HashMap<String, (usize, &[u8])> = HashMap::new();
    let (mut immediate, mut delayed, mut dups) = (0, 0, 0);
    for (i, (m, v)) in valid(&msgs).enumerate() {
        let id = v["event_id"].as_str().expect("id").to_owned();
        match first.get(&id) {
            None => {
                assert!(!m.meta.duplicate, "a duplicate before its original");
                first.insert(id, (i, &m.payload));
            }
            Some((j, bytes)) => {
                assert!(m.meta.duplicate, "an event id reused by a different event");
                assert_eq!(*bytes, m.payload.as_slice(), "same bytes");
                dups += 1;
                if i == j + 1 {
                    immediate += 1;
                } else if i > j + 100 {
                    delayed += 1;
                }
            }
        }
    }
    let share = dups as f64 / first.len() as f64;
    assert!((0.02..0.04).contains(&share), "duplicate share {share}");
    assert!(
        immediate > 0 && delayed > 0,
        "immediate {immediate}, delayed {delayed}"
    );
    let none = messages(&ScenarioConfig {
        duplicate_share: 0.0,
        ..cfg
    });
    assert!(none.iter().all(|m| !m.meta.duplicate));
}

#[test]
fn per_user_order_holds_but_for_the_late_events() {
    let cfg = config();
    let msgs = messages(&cfg);
    let mut newest: HashMap<String, DateTime<Utc>> = HashMap::new();
    let (mut late, mut total) = (0, 0);
    for (m, v) in valid(&msgs) {
        if m.topic != Topic::Authorizations || m.meta.duplicate {
            continue;
        }
        total += 1;
        let t = time(&v, "occurred_at");
        let seen = newest.entry(m.key.clone()).or_insert(t);
        if m.meta.late {
            late += 1;
            assert!(
                *seen > t,
                "a late event is published after a later one of its user"
            );
        } else {
            assert!(*seen <= t, "{}: {t} published after {seen}", m.key);
            *seen = t;
        }
    }
    let share = late as f64 / total as f64;
    assert!(share > 0.01 && share < 0.04, "late share {share}");
    let none = messages(&ScenarioConfig {
        late_share: 0.0,
        ..cfg
    });
    assert!(none.iter().all(|m| !m.meta.late));
}

#[test]
fn some_assignments_are_published_after_the_usage_they_explain() {
    let msgs = messages(&config());
    let mut explained = 0;
    for (i, m) in msgs.iter().enumerate() {
        if !m.meta.late_assignment || m.meta.duplicate {
            continue;
        }
        let a = json(m);
        let at = time(&a, "occurred_at");
        let earlier_use = msgs[..i]
            .iter()
            .filter(|x| {
                x.topic == Topic::Authorizations && x.key == m.key && x.expected_reason.is_none()
            })
            .any(|x| {
                let v = json(x);
                v["product"] == a["product"]
                    && v["access"] == a["access"]
                    && time(&v, "occurred_at") > at
            });
        if earlier_use {
            explained += 1;
            // ... and published within a few hundred messages.
            let pos = msgs[..i]
                .iter()
                .rposition(|x| x.key == m.key && x.topic == Topic::Authorizations)
                .unwrap_or(0);
            assert!(i - pos < 5_000);
        }
    }
    assert!(explained > 0, "late assignment data exists");
}

/// (occurred_at, event_id, team, assign)
type Change = (DateTime<Utc>, String, String, bool);

/// At no instant does a user hold the same (product, access) in two teams.
#[test]
fn team_holdings_are_unambiguous() {
    for seed in [1, 2, 3] {
        let msgs = messages(&ScenarioConfig {
            seed,
            users: 300,
            ..config()
        });
        let mut history: BTreeMap<(String, String, String), Vec<Change>> = BTreeMap::new();
        let mut seen = HashSet::new();
        for (m, v) in valid(&msgs) {
            if m.topic != Topic::Assignments
                || !seen.insert(v["event_id"].as_str().expect("id").to_owned())
            {
                continue;
            }
            let s = |k: &str| v[k].as_str().expect("str").to_owned();
            history
                .entry((s("user_id"), s("product"), s("access")))
                .or_default()
                .push((
                    time(&v, "occurred_at"),
                    s("event_id"),
                    s("team_id"),
                    s("action") == "assign",
                ));
        }
        for ((user, product, access), mut events) in history {
            events.sort();
            let mut held: BTreeMap<String, bool> = BTreeMap::new();
            for (t, _, team, assign) in events {
                held.insert(team, assign);
                let n = held.values().filter(|h| **h).count();
                assert!(
                    n <= 1,
                    "{user} holds {product} {access} in {n} teams at {t}"
                );
            }
        }
        let oracle = Oracle::from_messages(|| msgs.clone()).expect("valid");
        assert_eq!(oracle.totals().ambiguous_resolutions, 0);
    }
}

#[test]
fn every_status_class_and_two_team_users_exist() {
    let cfg = config();
    let scenario = Scenario::generate(&cfg).expect("valid");
    let msgs: Vec<Message> = scenario.messages().collect();
    let oracle = Oracle::from_scenario(&scenario).expect("valid");
    let ranges = Oracle::standard_ranges(cfg.end, cfg.days);
    let expected = oracle.expected_rollups(cfg.end, &ranges, false);
    let statuses: BTreeSet<Status> = expected
        .rows
        .iter()
        .filter_map(|r| r.status["span"])
        .collect();
    for s in [
        Status::Active,
        Status::Inactive,
        Status::NotYetActive,
        Status::FlexUnused,
        Status::Unassigned,
    ] {
        assert!(statuses.contains(&s), "{s:?} missing");
    }
    // Users holding different products in two teams.
    let mut teams_of: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for r in &expected.rows {
        if r.assignment.is_some() {
            teams_of.entry(&r.user_id).or_default().insert(&r.team_id);
        }
    }
    assert!(
        teams_of.values().any(|t| t.len() == 2),
        "some users are in two teams"
    );
    // Seat and Flex, with and without team_id, online and offline.
    let auths: Vec<Value> = valid(&msgs)
        .filter(|(m, _)| m.topic == Topic::Authorizations)
        .map(|(_, v)| v)
        .collect();
    assert!(
        auths.iter().any(|v| v["access"] == "flex") && auths.iter().any(|v| v["access"] == "seat")
    );
    assert!(auths.iter().any(|v| v["team_id"].is_string()));
    let without = auths.iter().filter(|v| !v["team_id"].is_string()).count();
    assert!(without * 10 > auths.len() * 8, "mostly without team_id");
    assert!(auths.iter().any(|v| v["online"] == Value::Bool(false)));
    let versions: BTreeSet<&str> = auths
        .iter()
        .filter_map(|v| v["product_version"].as_str())
        .collect();
    assert!(versions.len() > 3);
    assert!(oracle.totals().flex_windows > 0 && oracle.totals().flex_free > 0);
    // The rate change shows: autocad windows charged two different rates.
    let rates: BTreeSet<u64> = expected
        .rows
        .iter()
        .filter(|r| r.product == "autocad" && r.access == Access::Flex && r.windows > 0)
        .flat_map(|r| {
            oracle
                .windows(&r.user_id, "autocad")
                .into_iter()
                .map(|w| w.tokens_milli)
        })
        .collect();
    assert_eq!(rates, BTreeSet::from([7_000, 8_000]));
}

#[test]
fn flex_share_is_respected() {
    let all_seat = messages(&ScenarioConfig {
        flex_share: 0.0,
        poison_share: 0.0,
        ..config()
    });
    assert!(valid(&all_seat)
        .filter(|(m, _)| m.topic != Topic::Directory)
        .all(|(_, v)| v["access"] == "seat"));
    let all_flex = messages(&ScenarioConfig {
        flex_share: 1.0,
        poison_share: 0.0,
        ..config()
    });
    assert!(valid(&all_flex)
        .filter(|(m, _)| m.topic != Topic::Directory)
        .all(|(_, v)| v["access"] == "flex"));
}

#[test]
fn events_per_user_day_scales_the_volume() {
    let few = Scenario::generate(&ScenarioConfig {
        events_per_user_day: 2.0,
        ..config()
    })
    .expect("valid")
    .count();
    let many = Scenario::generate(&ScenarioConfig {
        events_per_user_day: 8.0,
        ..config()
    })
    .expect("valid")
    .count();
    let a = few.by_topic[&Topic::Authorizations] as f64;
    let b = many.by_topic[&Topic::Authorizations] as f64;
    assert!(b / a > 3.0 && b / a < 5.0, "{a} -> {b}");
}
