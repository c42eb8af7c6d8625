//! What a fault publishes: a generated scenario, with extra messages spread
//! through it at random positions (the bad-input corpus of fault 6), as one
//! deterministic stream that both the publisher and the oracle read.

use anyhow::{Context, Result};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use usage_loadgen::scenario::Messages;
use usage_loadgen::{Message, Reason, Scenario, Topic};

/// A scenario plus injected messages, each at a fixed position.
#[derive(Clone)]
pub(crate) struct Stream {
    scenario: Scenario,
    /// (scenario messages before it, message), by position.
    injected: Arc<Vec<(u64, Message)>>,
}

impl Stream {
    /// `extra` spread at random positions (from `rng`) among the
    /// `scenario_messages` of `scenario`.
    pub(crate) fn new(
        scenario: Scenario,
        scenario_messages: u64,
        extra: Vec<Message>,
        rng: &mut ChaCha8Rng,
    ) -> Stream {
        let mut injected: Vec<(u64, Message)> = extra
            .into_iter()
            .map(|m| (rng.random_range(0..=scenario_messages), m))
            .collect();
        injected.sort_by_key(|(at, _)| *at);
        Stream {
            scenario,
            injected: Arc::new(injected),
        }
    }

    pub(crate) fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    pub(crate) fn injected(&self) -> impl Iterator<Item = &Message> {
        self.injected.iter().map(|(_, m)| m)
    }

    /// Every message in publish order (a fresh, identical stream each call).
    pub(crate) fn messages(&self) -> Merged {
        Merged {
            inner: self.scenario.messages(),
            injected: self.injected.clone(),
            next: 0,
            emitted: 0,
        }
    }
}

/// The iterator of [`Stream::messages`].
pub(crate) struct Merged {
    inner: Messages,
    injected: Arc<Vec<(u64, Message)>>,
    next: usize,
    /// Scenario messages emitted so far.
    emitted: u64,
}

impl Iterator for Merged {
    type Item = Message;

    fn next(&mut self) -> Option<Message> {
        if let Some((at, message)) = self.injected.get(self.next) {
            if *at <= self.emitted {
                self.next += 1;
                return Some(message.clone());
            }
        }
        match self.inner.next() {
            Some(message) => {
                self.emitted += 1;
                Some(message)
            }
            None => {
                // Positions past the end (none, by construction): emit them last.
                let (_, message) = self.injected.get(self.next)?;
                self.next += 1;
                Some(message.clone())
            }
        }
    }
}

/// What the bad-input corpus holds, for the report.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct CorpusSummary {
    /// Refused messages injected, by kind of input.
    pub(crate) refused: std::collections::BTreeMap<String, u64>,
    /// Valid events with hostile strings in every identifier (counted).
    pub(crate) hostile_valid: u64,
    /// Contract examples left out because their verdict depends on the clock.
    pub(crate) skipped_examples: Vec<String>,
}

/// The reason of a message as the contract defines it, for inputs that fail
/// before any field is read: size, UTF-8, JSON syntax, not an object.
/// `None` for a JSON object (its reason depends on its fields).
fn shape_reason(bytes: &[u8]) -> Option<Reason> {
    if bytes.len() > 64 * 1024 {
        return Some(Reason::TooLarge);
    }
    if std::str::from_utf8(bytes).is_err() {
        return Some(Reason::InvalidUtf8);
    }
    match serde_json::from_slice::<Value>(bytes) {
        Err(_) => Some(Reason::MalformedJson),
        Ok(v) if !v.is_object() => Some(Reason::NotAnObject),
        Ok(_) => None,
    }
}

fn reason_named(name: &str) -> Option<Reason> {
    Reason::VALIDATION
        .into_iter()
        .chain([Reason::UnresolvedTeam, Reason::UnknownRate])
        .find(|r| r.as_str() == name)
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The bad-input corpus of fault 6 (the scenario adds its own poison and
/// hostile-but-valid events): the contract's invalid examples, random
/// bytes, deep nesting, huge messages, broken UTF-8, hostile strings where
/// they are refused, 900 KB strings — each with the reason the contract
/// gives it — and valid events with hostile strings in every identifier,
/// which must be counted exactly as they are. With `oversize`, only huge
/// messages over 1,000,000 bytes (1 MB strings, a 2 MB JSON array): fault 6b.
pub(crate) fn bad_input(
    repo: &Path,
    scenario: &Scenario,
    rng: &mut ChaCha8Rng,
    oversize: bool,
) -> Result<(Vec<Message>, CorpusSummary)> {
    let mut out: Vec<(String, Message)> = Vec::new();
    let mut summary = CorpusSummary::default();
    let (start, end) = scenario.span();
    let now = Utc::now();
    let span_secs = (end - start).num_seconds().max(7_200);
    let random_time =
        |rng: &mut ChaCha8Rng| start + TimeDelta::seconds(rng.random_range(0..span_secs - 3_600));

    // 1. The contract's invalid examples, named <reason>__<field>__<what>.json.
    let examples = repo.join("schemas/events/examples/invalid");
    let kinds = if oversize {
        Vec::new()
    } else {
        vec![
            ("authorization", Topic::Authorizations),
            ("assignment", Topic::Assignments),
            ("directory", Topic::Directory),
        ]
    };
    for (dir, topic) in kinds {
        let mut files: Vec<_> = std::fs::read_dir(examples.join(dir))
            .with_context(|| format!("reading {}", examples.join(dir).display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        for path in files {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            let Some(reason) = name.split("__").next().and_then(reason_named) else {
                continue;
            };
            let payload =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            if reason == Reason::FutureTimestamp {
                // Judged as of 2026-06-01 by the contract's tests: only those
                // still in the future of this clock (by a day) are refused here.
                let future = serde_json::from_slice::<Value>(&payload)
                    .ok()
                    .and_then(|v| v.get("occurred_at")?.as_str().map(str::to_owned))
                    .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
                    .is_some_and(|t| t > now + TimeDelta::days(1));
                if !future {
                    summary.skipped_examples.push(format!("{dir}/{name}"));
                    continue;
                }
            }
            out.push((
                "contract example".into(),
                Message::poison(topic, format!("example-{name}"), payload, reason),
            ));
        }
    }

    // A valid authorization to break.
    let auth = |rng: &mut ChaCha8Rng| {
        let at = random_time(rng);
        json!({
            "event_id": format!("faults-bad-{}", rng.random::<u64>()),
            "occurred_at": timestamp(at),
            "user_id": "u-faults",
            "product": "autocad",
            "access": "seat",
            "team_id": "team-faults",
        })
    };
    let with = |mut v: Value, key: &str, value: Value| {
        if let Some(map) = v.as_object_mut() {
            map.insert(key.to_owned(), value);
        }
        v
    };
    let mut refuse = |kind: &str, topic: Topic, payload: Vec<u8>, reason: Reason| {
        out.push((
            kind.to_owned(),
            Message::poison(topic, format!("bad-{kind}"), payload, reason),
        ));
    };

    // 2. Random bytes (binary, and printable ASCII), judged by shape.
    for i in 0..if oversize { 0 } else { 60 } {
        let len = rng.random_range(1..4_096);
        let bytes: Vec<u8> = if i % 2 == 0 {
            (0..len).map(|_| rng.random()).collect()
        } else {
            (0..len).map(|_| rng.random_range(0x20..0x7f)).collect()
        };
        if let Some(reason) = shape_reason(&bytes) {
            refuse("random bytes", Topic::Authorizations, bytes, reason);
        }
    }

    // 3. Deep nesting: past serde's limit of 128 at the top and inside an
    // ignored property; a nesting of 100 inside an ignored property is valid
    // (added below among the valid events).
    let deep_array = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    let nested =
        |depth: usize| -> String { format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth)) };
    if !oversize {
        refuse(
            "deep nesting",
            Topic::Authorizations,
            deep_array.into_bytes(),
            Reason::MalformedJson,
        );
        for (topic, depth) in [
            (Topic::Authorizations, 200),
            (Topic::Assignments, 1_000),
            (Topic::Directory, 5_000),
        ] {
            let base = auth(rng).to_string();
            let payload = format!("{},\"extra\":{}}}", &base[..base.len() - 1], nested(depth));
            refuse(
                "deep nesting",
                topic,
                payload.into_bytes(),
                Reason::MalformedJson,
            );
        }
    }

    // 4. Huge: over the 64 KiB limit (never parsed): below 1,000,000
    // bytes here (librdkafka's default message.max.bytes), above it in the
    // oversize corpus.
    let array_elements = if oversize { 1_000_000 } else { 450_000 };
    let big_array = format!("[{}1]", "1,".repeat(array_elements));
    refuse(
        "huge JSON",
        Topic::Authorizations,
        big_array.into_bytes(),
        Reason::TooLarge,
    );
    let many_keys: serde_json::Map<String, Value> =
        (0..20_000).map(|i| (format!("k{i}"), json!(i))).collect();
    let big_object = with(auth(rng), "extra", Value::Object(many_keys));
    refuse(
        "huge JSON",
        Topic::Directory,
        big_object.to_string().into_bytes(),
        Reason::TooLarge,
    );
    // Long strings (1,000,000 characters in the oversize corpus, 900,000
    // otherwise), in a known and in an unknown property.
    let repeat = if oversize { 31_250 } else { 28_125 };
    for key in ["product_version", "user_id", "comment"] {
        let value = Value::String("'; DROP TABLE authorizations; --".repeat(repeat));
        let payload = with(auth(rng), key, value).to_string();
        refuse(
            if oversize {
                "1 MB string"
            } else {
                "900 KB string"
            },
            Topic::Authorizations,
            payload.into_bytes(),
            Reason::TooLarge,
        );
    }
    if oversize {
        return Ok(finish(out, summary));
    }

    // 5. Broken UTF-8 inside otherwise valid events, and raw control bytes.
    for bad in [
        &b"\xc0\xaf"[..],    // overlong '/'
        b"\xed\xa0\x80",     // a UTF-16 surrogate
        b"\xe2\x82",         // truncated sequence
        b"\xfe\xff",         // never in UTF-8
        b"\xf4\x90\x80\x80", // beyond U+10FFFF
        b"\x80continuation", // lone continuation byte
    ] {
        let base = auth(rng).to_string();
        let mut payload = Vec::new();
        let marker = "\"user_id\":\"";
        let at = base.find(marker).map_or(0, |i| i + marker.len());
        payload.extend_from_slice(&base.as_bytes()[..at]);
        payload.extend_from_slice(bad);
        payload.extend_from_slice(&base.as_bytes()[at..]);
        refuse(
            "invalid UTF-8",
            Topic::Authorizations,
            payload,
            Reason::InvalidUtf8,
        );
    }
    for raw in ["\u{0}", "\u{1b}[31m", "\n"] {
        // Unescaped control characters are not allowed in JSON strings.
        let base = auth(rng).to_string();
        let payload = base.replacen("u-faults", &format!("u-{raw}-faults"), 1);
        refuse(
            "control characters",
            Topic::Authorizations,
            payload.into_bytes(),
            Reason::MalformedJson,
        );
    }

    // 6. Hostile strings where the contract refuses them.
    let sql = "'; DROP TABLE authorizations; --";
    let t = random_time(rng);
    let cases: Vec<(Topic, Value, Reason)> = vec![
        (
            Topic::Authorizations,
            with(auth(rng), "access", json!(sql)),
            Reason::UnknownValue,
        ),
        (
            Topic::Authorizations,
            with(auth(rng), "product", json!(sql.repeat(9))),
            Reason::InvalidValue,
        ),
        (
            Topic::Authorizations,
            with(auth(rng), "occurred_at", json!(format!("2026-01-01{sql}"))),
            Reason::BadTimestamp,
        ),
        (
            Topic::Authorizations,
            with(auth(rng), "user_id", json!({ "$ne": sql })),
            Reason::WrongType,
        ),
        (
            Topic::Authorizations,
            with(auth(rng), "team_id", json!("")),
            Reason::InvalidValue,
        ),
        (
            Topic::Authorizations,
            with(auth(rng), "online", json!("1 OR 1=1")),
            Reason::WrongType,
        ),
        (
            Topic::Assignments,
            json!({
                "event_id": "faults-bad-assign", "occurred_at": timestamp(t),
                "action": sql, "team_id": "t", "user_id": "u", "product": "p",
                "access": "seat", "via": "direct",
            }),
            Reason::UnknownValue,
        ),
        (
            Topic::Directory,
            json!({
                "event_id": "faults-bad-dir", "occurred_at": timestamp(t),
                "type": "'; DROP DATABASE default; --", "team_id": sql,
            }),
            Reason::UnknownValue,
        ),
        (
            Topic::Directory,
            json!({
                "event_id": "faults-bad-merge", "occurred_at": timestamp(t),
                "type": "team_merge", "from_team_id": sql, "into_team_id": sql,
            }),
            Reason::InvalidValue,
        ),
    ];
    for (topic, value, reason) in cases {
        refuse(
            "hostile strings",
            topic,
            value.to_string().into_bytes(),
            reason,
        );
    }

    // 7. Valid events with hostile strings in every identifier, naming their
    // team (so the assignments do not matter): counted, byte for byte.
    let mut hostile: Vec<String> = usage_loadgen::names::HOSTILE
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    hostile.extend([
        "x'); INSERT INTO authorizations SELECT * FROM authorizations; --".to_owned(),
        "' UNION SELECT name FROM system.tables --".to_owned(),
        "\u{0}\u{0}\u{0}".to_owned(),
        "'".repeat(256),
        "\u{1F4A9}".repeat(256),
        "\\".repeat(255),
    ]);
    let mut valid = 0;
    for (i, s) in hostile.iter().enumerate() {
        let at = random_time(rng);
        let mut event = json!({
            "event_id": format!("faults-hostile-{i}-{s}").chars().take(256).collect::<String>(),
            "occurred_at": timestamp(at),
            "user_id": s,
            "product": s,
            "product_version": s,
            "machine_id": s,
            "access": "seat",
            "team_id": format!("team-{s}").chars().take(256).collect::<String>(),
        });
        if i == 0 {
            // Nesting of 100 in an ignored property: within the limit, valid.
            let value: Value = serde_json::from_str(&nested(100)).unwrap_or(Value::Null);
            event = with(event, "extra", value);
        }
        out.push((
            "hostile valid".to_owned(),
            Message::event(Topic::Authorizations, s.clone(), &event),
        ));
        valid += 1;
    }
    summary.hostile_valid = valid;
    Ok(finish(out, summary))
}

fn finish(
    out: Vec<(String, Message)>,
    mut summary: CorpusSummary,
) -> (Vec<Message>, CorpusSummary) {
    for (kind, message) in &out {
        if message.expected_reason.is_some() {
            *summary.refused.entry(kind.clone()).or_default() += 1;
        }
    }
    (out.into_iter().map(|(_, m)| m).collect(), summary)
}
