//! The published event contract (`schemas/events/`) and the Rust decoder agree.
//!
//! - Every valid example validates against its JSON Schema, decodes, and
//!   re-serializes to the example (after normalisation: timestamps in UTC `Z`,
//!   `online` defaulted, nulls and unknown properties dropped).
//! - Every invalid example, named `<reason>__<field or ->__<what>.json`, is
//!   refused by the schema (where a schema can say it) and by the decoder with
//!   exactly that reason and field.
//! - Arbitrary bytes never panic a decoder, and on generated objects the
//!   decoder and the schema agree.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use serde_json::{Map, Value};
use usage_core::event::{format_timestamp, parse_timestamp, TIMESTAMP_PATTERN};
use usage_core::validate::{
    decode_assignment, decode_authorization, decode_directory, Limits, Reason, ValidationError,
    DIRECTORY_TYPES,
};

/// The `now` every example is judged against.
const NOW: &str = "2026-06-01T00:00:00Z";

fn now() -> DateTime<Utc> {
    parse_timestamp(NOW).expect("valid now")
}

type Decode = fn(&[u8], &Limits, DateTime<Utc>) -> Result<Value, ValidationError>;

/// One inbound event kind: its folder name, its schema, its decoder.
struct Kind {
    name: &'static str,
    decode: Decode,
    validator: jsonschema::Validator,
    schema: Value,
}

fn contract_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/events")
}

/// The three kinds, schemas compiled once.
static KINDS: LazyLock<Vec<Kind>> = LazyLock::new(load_kinds);

fn kinds() -> &'static [Kind] {
    &KINDS
}

fn load_kinds() -> Vec<Kind> {
    let decoders: [(&str, Decode); 3] = [
        ("authorization", |b, l, n| {
            decode_authorization(b, l, n).map(|e| serde_json::to_value(e).expect("serializable"))
        }),
        ("assignment", |b, l, n| {
            decode_assignment(b, l, n).map(|e| serde_json::to_value(e).expect("serializable"))
        }),
        ("directory", |b, l, n| {
            decode_directory(b, l, n).map(|e| serde_json::to_value(e).expect("serializable"))
        }),
    ];
    decoders
        .into_iter()
        .map(|(name, decode)| {
            let path = contract_dir().join(format!("{name}.schema.json"));
            let text = fs::read_to_string(&path).expect("schema readable");
            let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
            let validator = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .should_validate_formats(true)
                .build(&schema)
                .unwrap_or_else(|e| panic!("{}: invalid schema: {e}", path.display()));
            Kind {
                name,
                decode,
                validator,
                schema,
            }
        })
        .collect()
}

/// The `.json` files of `examples/<valid|invalid>/<kind>/`, sorted.
fn examples(validity: &str, kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = contract_dir().join("examples").join(validity).join(kind);
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let stem = p.file_stem().expect("stem").to_string_lossy().into_owned();
            (stem, fs::read(&p).expect("example readable"))
        })
        .collect();
    files.sort();
    files
}

fn schema_errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect()
}

/// The property names the schema knows for `instance` (for a directory event,
/// the envelope's plus those of its `type`).
fn known_properties(schema: &Value, instance: &Map<String, Value>) -> BTreeSet<String> {
    let mut known: BTreeSet<String> = schema["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .cloned()
        .collect();
    if let Some(Value::String(kind)) = instance.get("type") {
        if let Some(props) = schema["$defs"][kind]["properties"].as_object() {
            known.extend(props.keys().cloned());
        }
    }
    known
}

/// An example as the decoder's output serializes it.
fn normalise(kind: &Kind, example: &Value) -> Value {
    let object = example.as_object().expect("examples are objects");
    let known = known_properties(&kind.schema, object);
    let mut out = Map::new();
    for (key, value) in object {
        if !known.contains(key) || value.is_null() {
            continue;
        }
        let value = match (key.as_str(), value) {
            ("occurred_at" | "effective_from", Value::String(t)) => Value::String(
                format_timestamp(&parse_timestamp(t).expect("valid timestamp")),
            ),
            // A number the decoder keeps exactly (flex_tokens_per_day, in
            // thousandths) is written back without a zero fraction:
            // 1446.0 comes back as 1446.
            (_, Value::Number(n)) => match n.as_f64() {
                Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 2f64.powi(53) => {
                    Value::from(f as i64)
                }
                _ => value.clone(),
            },
            _ => value.clone(),
        };
        out.insert(key.clone(), value);
    }
    if kind.name == "authorization" {
        out.entry("online").or_insert(Value::Bool(true));
    }
    Value::Object(out)
}

#[test]
fn valid_examples_validate_decode_and_round_trip() {
    for kind in kinds() {
        let files = examples("valid", kind.name);
        assert!(files.len() >= 2, "{}: at least 2 valid examples", kind.name);
        let mut directory_types = BTreeMap::<String, usize>::new();
        for (name, bytes) in files {
            let what = format!("valid/{}/{name}", kind.name);
            let example: Value = serde_json::from_slice(&bytes).expect("valid example is JSON");
            let errors = schema_errors(&kind.validator, &example);
            assert!(errors.is_empty(), "{what}: schema refuses it: {errors:?}");

            let decoded = (kind.decode)(&bytes, &Limits::default(), now())
                .unwrap_or_else(|e| panic!("{what}: decoder refuses it: {e}"));
            assert_eq!(decoded, normalise(kind, &example), "{what}: round trip");
            // The typed value is itself a valid instance of the contract.
            let errors = schema_errors(&kind.validator, &decoded);
            assert!(errors.is_empty(), "{what}: re-serialized: {errors:?}");

            if let Some(t) = example["type"].as_str() {
                *directory_types.entry(t.to_owned()).or_default() += 1;
            }
        }
        if kind.name == "directory" {
            for t in DIRECTORY_TYPES {
                let n = directory_types.get(t).copied().unwrap_or(0);
                assert!(n >= 2, "directory type {t}: {n} valid examples, want 2");
            }
        }
    }
}

/// Invalid examples whose fault a JSON Schema cannot express: only the
/// decoder refuses them. Everything else must be refused by both.
fn schema_cannot_express(reason: Reason, name: &str) -> bool {
    // Relative to the consumer's clock and its configured minimum.
    matches!(reason, Reason::FutureTimestamp | Reason::PastTimestamp)
        // A JSON Schema sees parsed data, where a duplicate key has already
        // been resolved (last one wins).
        || name.starts_with("malformed_json__") && name.ends_with("__duplicate_key")
        // Relations between fields and exact decimal precision: `multipleOf:
        // 0.001` is unreliable in binary floating point, so the schema only
        // describes it.
        || name == "invalid_value__into_team_id__team_merge_into_itself"
        || name == "invalid_value__flex_tokens_per_day__product_rate_too_precise"
}

/// `<reason>__<field or ->__<what>` → (reason, field).
fn expectation(name: &str) -> (Reason, Option<String>) {
    let mut parts = name.split("__");
    let reason = parts.next().expect("reason");
    let field = parts
        .next()
        .unwrap_or_else(|| panic!("{name}: no field part"));
    assert!(parts.next().is_some(), "{name}: no description part");
    let reason: Reason = reason.parse().unwrap_or_else(|e| panic!("{name}: {e}"));
    (reason, (field != "-").then(|| field.to_owned()))
}

#[test]
fn invalid_examples_are_refused_with_the_reason_and_field_in_their_name() {
    let mut covered = BTreeMap::<&str, BTreeSet<Reason>>::new();
    for kind in kinds() {
        for (name, bytes) in examples("invalid", kind.name) {
            let what = format!("invalid/{}/{name}", kind.name);
            let (reason, field) = expectation(&name);

            if !schema_cannot_express(reason, &name) {
                // Bytes that are not one JSON value are refused before any schema.
                if let Ok(instance) = serde_json::from_slice::<Value>(&bytes) {
                    assert!(
                        !kind.validator.is_valid(&instance),
                        "{what}: the schema accepts it"
                    );
                }
            }

            match (kind.decode)(&bytes, &Limits::default(), now()) {
                Ok(v) => panic!("{what}: decoded as {v}"),
                Err(e) => assert_eq!(
                    (e.reason, e.field.clone()),
                    (reason, field),
                    "{what}: refused as {e}"
                ),
            }
            covered.entry(kind.name).or_default().insert(reason);
        }
    }
    for (kind, reasons) in &covered {
        for must in [
            Reason::MissingField,
            Reason::WrongType,
            Reason::UnknownValue,
            Reason::BadTimestamp,
            Reason::InvalidValue,
            Reason::FutureTimestamp,
            Reason::MalformedJson,
            Reason::NotAnObject,
        ] {
            assert!(
                reasons.contains(&must),
                "{kind}: no invalid example for {must}"
            );
        }
    }
    let all: BTreeSet<Reason> = covered.values().flatten().copied().collect();
    for must in [Reason::InvalidUtf8, Reason::PastTimestamp] {
        assert!(all.contains(&must), "no invalid example for {must}");
    }
}

#[test]
fn a_message_over_the_size_limit_is_too_large_whatever_it_holds() {
    // Not an example file: the schema cannot bound a message's size, and a
    // 64 KiB fixture says nothing a generated one does not.
    let limits = Limits::default();
    for kind in kinds() {
        let valid = &examples("valid", kind.name)[0].1;
        let mut object: Map<String, Value> = serde_json::from_slice(valid).expect("JSON");
        object.insert("padding".into(), Value::String(String::new()));
        let size = serde_json::to_vec(&object).expect("serializable").len();
        let pad = "x".repeat(limits.max_message_bytes - size);
        object.insert("padding".into(), Value::String(pad));
        let at_limit = serde_json::to_vec(&object).expect("serializable");
        assert_eq!(at_limit.len(), limits.max_message_bytes);
        assert!(
            (kind.decode)(&at_limit, &limits, now()).is_ok(),
            "{}: at the limit",
            kind.name
        );

        let mut over = at_limit;
        over.push(b' ');
        let e = (kind.decode)(&over, &limits, now()).expect_err("one byte over");
        assert_eq!(
            (e.reason, e.field),
            (Reason::TooLarge, None),
            "{}",
            kind.name
        );
    }
}

/// Every string property schema, with its JSON pointer.
fn string_properties(schema: &Value, at: String, out: &mut Vec<(String, Value)>) {
    match schema {
        Value::Object(map) => {
            let is_string = match &map.get("type") {
                Some(Value::String(t)) => t == "string",
                Some(Value::Array(ts)) => ts.iter().any(|t| t == "string"),
                _ => false,
            };
            if is_string {
                out.push((at.clone(), schema.clone()));
            }
            for (k, v) in map {
                string_properties(v, format!("{at}/{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                string_properties(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn schemas_spell_the_decoder_limits() {
    let limits = Limits::default();
    for kind in kinds() {
        let mut strings = Vec::new();
        string_properties(&kind.schema, String::new(), &mut strings);
        assert!(!strings.is_empty());
        for (at, s) in strings {
            let what = format!("{}.schema.json#{at}", kind.name);
            assert!(s["description"].is_string(), "{what}: no description");
            if s.get("enum").is_some() {
                continue;
            }
            if s["format"] == "date-time" {
                assert_eq!(s["pattern"], TIMESTAMP_PATTERN, "{what}");
                continue;
            }
            let max = s["maxLength"]
                .as_u64()
                .unwrap_or_else(|| panic!("{what}: no maxLength"));
            let name = at.rsplit('/').next().unwrap_or_default();
            let want = if name == "avatar_url" {
                limits.max_url_len
            } else {
                limits.max_string_len
            };
            assert_eq!(max, want as u64, "{what}");
            let is_id = name == "event_id" || name.ends_with("_id") || name.starts_with("product");
            assert_eq!(
                s["minLength"].as_u64(),
                is_id.then_some(1),
                "{what}: minLength"
            );
        }
        assert_eq!(
            kind.schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert!(kind.schema["$id"]
            .as_str()
            .is_some_and(|id| id.ends_with(&format!("/{}.schema.json", kind.name))));
        assert_eq!(
            kind.schema["additionalProperties"], true,
            "{}: unknown properties are allowed",
            kind.name
        );
    }
}

#[test]
fn the_readme_lists_every_dead_letter_reason() {
    let readme = fs::read_to_string(contract_dir().join("README.md")).expect("README.md");
    for r in Reason::ALL {
        assert!(
            readme.contains(&format!("`{}`", r.as_str())),
            "README.md misses `{r}`"
        );
    }
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

/// The field rule every error keeps: data problems name a field, problems of
/// the message as a whole do not, and the decoder never reports a reason
/// reserved for the ingest.
fn assert_well_formed(error: &ValidationError) {
    match error.reason {
        Reason::TooLarge | Reason::InvalidUtf8 | Reason::NotAnObject => {
            assert_eq!(error.field, None, "{error}")
        }
        Reason::MalformedJson => {}
        Reason::UnresolvedTeam | Reason::UnknownRate | Reason::BeyondHorizon => {
            panic!("reserved reason: {error}")
        }
        _ => assert!(error.field.is_some(), "no field: {error}"),
    }
    assert!(error.detail.len() <= ValidationError::MAX_DETAIL_LEN);
}

fn all_decoders() -> [Decode; 3] {
    [
        |b, l, n| decode_authorization(b, l, n).map(|_| Value::Null),
        |b, l, n| decode_assignment(b, l, n).map(|_| Value::Null),
        |b, l, n| decode_directory(b, l, n).map(|_| Value::Null),
    ]
}

/// Bytes that mostly look like JSON objects, to get past the first checks.
fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        "\\{[ -~]{0,200}".prop_map(String::into_bytes),
        r#"\{("[a-z_]{1,12}":[\[\]{}",:0-9a-z.+-]{0,20},?){0,10}\}?"#.prop_map(String::into_bytes),
    ]
}

/// A valid example with a few bytes overwritten, inserted or cut.
fn mutated_example() -> impl Strategy<Value = Vec<u8>> {
    let all: Vec<Vec<u8>> = ["authorization", "assignment", "directory"]
        .into_iter()
        .flat_map(|k| examples("valid", k))
        .map(|(_, bytes)| bytes)
        .collect();
    (
        proptest::sample::select(all),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
    )
        .prop_map(|(mut bytes, edits)| {
            for (at, byte, op) in edits {
                if bytes.is_empty() {
                    break;
                }
                let i = at.index(bytes.len());
                match op {
                    0 => bytes[i] = byte,
                    1 => bytes.insert(i, byte),
                    _ => bytes.truncate(i),
                }
            }
            bytes
        })
}

/// A JSON value of any type, small, with the strings the contract cares about.
fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (0u32..20_000).prop_map(|n| Value::from(f64::from(n) / 8.0)),
        Just(Value::String(String::new())),
        "[a-z0-9-]{1,12}".prop_map(Value::String),
        Just(Value::String("x".repeat(257))),
        prop::sample::select(vec![
            "seat",
            "flex",
            "trial",
            "assign",
            "unassign",
            "direct",
            "group",
            "default",
            "user_profile",
            "team",
            "group_membership",
            "team_merge",
            "product_rate",
            "t-1",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
        prop::sample::select(vec![
            "2026-05-01T00:00:00Z",
            "2026-05-01T10:00:00.5+02:00",
            "2026-05-01T00:00:00",
            "2026-13-01T00:00:00Z",
            "2026-05-01 00:00:00Z",
            "2099-01-01T00:00:00Z",
            "1990-01-01T00:00:00Z",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
        Just(Value::Array(vec![])),
        Just(serde_json::json!({"seat": null})),
    ]
}

const FIELD_NAMES: &[&str] = &[
    "event_id",
    "occurred_at",
    "user_id",
    "product",
    "product_version",
    "access",
    "team_id",
    "machine_id",
    "online",
    "action",
    "via",
    "group_id",
    "type",
    "name",
    "email",
    "avatar_url",
    "pii_visible",
    "group_name",
    "member",
    "from_team_id",
    "into_team_id",
    "flex_tokens_per_day",
    "effective_from",
    "unknown_extra",
];

/// Objects built from the contract's field names and assorted values,
/// starting from a valid example so that many of them are (nearly) valid.
fn generated_object() -> impl Strategy<Value = (usize, Map<String, Value>)> {
    let starts: Vec<(usize, Map<String, Value>)> = ["authorization", "assignment", "directory"]
        .into_iter()
        .enumerate()
        .flat_map(|(i, k)| {
            examples("valid", k)
                .into_iter()
                .map(move |(_, b)| (i, serde_json::from_slice(&b).expect("JSON")))
        })
        .collect();
    (
        proptest::sample::select(starts),
        proptest::collection::vec(
            (
                prop::sample::select(FIELD_NAMES.to_vec()),
                prop::option::of(leaf()),
            ),
            0..3,
        ),
    )
        .prop_map(|((i, mut object), edits)| {
            for (key, value) in edits {
                match value {
                    Some(v) => object.insert(key.to_owned(), v),
                    None => object.remove(key),
                };
            }
            (i, object)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_a_decoder(bytes in prop_oneof![jsonish(), mutated_example()]) {
        for decode in all_decoders() {
            if let Err(e) = decode(&bytes, &Limits::default(), now()) {
                assert_well_formed(&e);
            }
        }
    }

    #[test]
    fn decoder_and_schema_agree_on_generated_objects((kind, object) in generated_object()) {
        let kind = &kinds()[kind];
        let instance = Value::Object(object);
        let bytes = serde_json::to_vec(&instance).expect("serializable");
        let schema_ok = kind.validator.is_valid(&instance);
        match (kind.decode)(&bytes, &Limits::default(), now()) {
            Ok(decoded) => {
                prop_assert!(schema_ok, "decoder accepts, schema refuses {}: {:?}", instance, schema_errors(&kind.validator, &instance));
                prop_assert_eq!(decoded, normalise(kind, &instance));
            }
            Err(e) => {
                assert_well_formed(&e);
                let beyond_schema = matches!(e.reason, Reason::FutureTimestamp | Reason::PastTimestamp)
                    || e.field.as_deref() == Some("into_team_id") && e.reason == Reason::InvalidValue;
                prop_assert!(!schema_ok || beyond_schema, "schema accepts, decoder refuses {}: {}", instance, e);
            }
        }
    }
}
