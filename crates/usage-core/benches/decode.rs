//! Decoder throughput: the authorization decoder is the pipeline's hot path.
//!
//! `cargo bench -p usage-core --bench decode`; events/s per core is the
//! reported throughput (one iteration decodes one event on one thread).
//! Each authorization is decoded owned and in place (its strings left in the
//! message, as the ingest reads them), side by side.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use usage_core::event::parse_timestamp;
use usage_core::validate::{
    decode_assignment, decode_authorization, decode_authorization_in_place, decode_directory,
    Limits,
};

/// A realistic authorization (227 bytes): UUID event id, an offset, every
/// field but `online` (defaulted).
const AUTHORIZATION: &str = r#"{"event_id":"7d1e4c52-90a1-4b7f-8e0a-5f6b7c8d9e0f","occurred_at":"2026-05-12T14:05:09+05:30","user_id":"u-8c41f2a9","product":"photoshop","product_version":"26.1","access":"flex","team_id":"team-acme","machine_id":"mac-7f3a9c"}"#;

/// The same event without a team (resolved at ingest), as most arrive.
const AUTHORIZATION_NO_TEAM: &str = r#"{"event_id":"7d1e4c52-90a1-4b7f-8e0a-5f6b7c8d9e0f","occurred_at":"2026-05-12T08:35:09.250Z","user_id":"u-8c41f2a9","product":"photoshop","product_version":"26.1","access":"seat","machine_id":"win-19ab33f0"}"#;

const ASSIGNMENT: &str = r#"{"event_id":"b1a2c3d4-0002-4000-8000-000000000002","occurred_at":"2026-04-01T18:00:00.5+09:00","action":"assign","team_id":"team-acme","user_id":"u-1002","product":"illustrator","access":"flex","via":"group","group_id":"grp-design"}"#;

const DIRECTORY: &str = r#"{"event_id":"c0ffee00-0003-4000-8000-000000000001","occurred_at":"2026-03-01T10:00:00Z","type":"user_profile","user_id":"u-1001","name":"Ada Lovelace","email":"ada@example.com","avatar_url":"https://cdn.example.com/avatars/u-1001.png"}"#;

/// A refused event (error path: second parse for the field path).
const WRONG_TYPE: &str = r#"{"event_id":"7d1e4c52-90a1-4b7f-8e0a-5f6b7c8d9e0f","occurred_at":"2026-05-12T08:35:09.250Z","user_id":"u-8c41f2a9","product":"photoshop","access":"seat","online":"yes"}"#;

fn bench_decode(c: &mut Criterion) {
    let limits = Limits::default();
    let now = parse_timestamp("2026-06-01T00:00:00Z").expect("valid now");
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1));

    for (name, json) in [
        ("authorization_227b", AUTHORIZATION),
        ("authorization_no_team_206b", AUTHORIZATION_NO_TEAM),
    ] {
        let bytes = json.as_bytes();
        assert!(decode_authorization(bytes, &limits, now).is_ok(), "{name}");
        group.bench_function(name, |b| {
            b.iter(|| decode_authorization(black_box(bytes), &limits, now))
        });
        // What the ingest does: the strings left in the message.
        group.bench_function(format!("{name}_in_place"), |b| {
            b.iter(|| decode_authorization_in_place(black_box(json), &limits, now))
        });
    }
    group.bench_function("authorization_refused_wrong_type", |b| {
        let bytes = WRONG_TYPE.as_bytes();
        assert!(decode_authorization(bytes, &limits, now).is_err());
        b.iter(|| decode_authorization(black_box(bytes), &limits, now))
    });
    group.bench_function("assignment", |b| {
        let bytes = ASSIGNMENT.as_bytes();
        assert!(decode_assignment(bytes, &limits, now).is_ok());
        b.iter(|| decode_assignment(black_box(bytes), &limits, now))
    });
    group.bench_function("directory_user_profile", |b| {
        let bytes = DIRECTORY.as_bytes();
        assert!(decode_directory(bytes, &limits, now).is_ok());
        b.iter(|| decode_directory(black_box(bytes), &limits, now))
    });
    group.finish();
}

criterion_group!(benches, bench_decode);
criterion_main!(benches);
