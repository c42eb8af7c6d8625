//! `usage-ingest` end to end on a small hand-made stream, against the real
//! broker and ClickHouse: every rule visible in the rollups, bad input in the
//! dead-letter topic, a clean stop on SIGTERM.

use rdkafka::message::Headers;
use rdkafka::Message;
use std::collections::BTreeMap;
use std::time::Duration;
use usage_tests::services::{self, eventually, publish, Ingest, ScratchDatabase};

/// Reads the dead-letter topic: reason header -> count.
async fn dead_letter_reasons(topic: &str, expected: usize) -> BTreeMap<String, usize> {
    let consumer = services::reader(topic);
    let mut reasons = BTreeMap::new();
    let mut seen = 0;
    while seen < expected {
        let Ok(message) = tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await
        else {
            break;
        };
        let message = message.expect("message");
        let reason = message
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == "usage.reason"))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        assert!(
            message
                .headers()
                .is_some_and(|h| h.iter().any(|h| h.key == "usage.source_offset")),
            "dead letters say where they came from"
        );
        *reasons.entry(reason).or_default() += 1;
        seen += 1;
    }
    reasons
}

fn auth(id: &str, at: &str, user: &str, product: &str, access: &str, extra: &str) -> String {
    format!(
        r#"{{"event_id":"{id}","occurred_at":"{at}","user_id":"{user}","product":"{product}","access":"{access}"{extra}}}"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_small_stream_lands_in_every_rollup() {
    let topics = services::scratch_topics("basics", 2).await;
    let db = ScratchDatabase::create("basics").await;
    let t = &topics;
    let mut messages: Vec<(&str, &str, String)> = vec![
        (&t.directory, "t-1", r#"{"event_id":"d1","occurred_at":"2026-01-01T00:00:00Z","type":"team","team_id":"t-1","name":"Design","pii_visible":true}"#.into()),
        (&t.directory, "revit", r#"{"event_id":"d2","occurred_at":"2026-01-01T00:00:00Z","type":"product_rate","product":"revit","flex_tokens_per_day":7,"effective_from":"2026-01-01T00:00:00Z"}"#.into()),
        (&t.directory, "revit", r#"{"event_id":"d3","occurred_at":"2026-01-01T00:00:00Z","type":"product_rate","product":"revit","flex_tokens_per_day":8.5,"effective_from":"2026-02-01T00:00:00Z"}"#.into()),
        (&t.assignments, "u-1", r#"{"event_id":"a1","occurred_at":"2026-01-02T00:00:00Z","action":"assign","team_id":"t-1","user_id":"u-1","product":"autocad","access":"seat","via":"direct"}"#.into()),
        (&t.assignments, "u-2", r#"{"event_id":"a2","occurred_at":"2026-01-02T00:00:00Z","action":"assign","team_id":"t-1","user_id":"u-2","product":"revit","access":"flex","via":"group","group_id":"g-1"}"#.into()),
    ];
    // u-1, seat: three uses on two days, one offline, one duplicate.
    messages.push((
        &t.authorizations,
        "u-1",
        auth("e1", "2026-01-05T09:00:00Z", "u-1", "autocad", "seat", ""),
    ));
    messages.push((
        &t.authorizations,
        "u-1",
        auth(
            "e2",
            "2026-01-05T17:00:00+02:00",
            "u-1",
            "autocad",
            "seat",
            "",
        ),
    ));
    messages.push((
        &t.authorizations,
        "u-1",
        auth("e3", "2026-01-07T10:00:00Z", "u-1", "autocad", "seat", ""),
    ));
    messages.push((
        &t.authorizations,
        "u-1",
        auth("e3", "2026-01-07T10:00:00Z", "u-1", "autocad", "seat", ""),
    ));
    messages.push((
        &t.authorizations,
        "u-1",
        auth(
            "e4",
            "2026-01-08T10:00:00Z",
            "u-1",
            "autocad",
            "seat",
            r#","online":false"#,
        ),
    ));
    // u-2, Flex: a window at 10:00 (7 tokens), a free use inside it, a new
    // window the next day at 11:00 (7), and one after the rate change (8.5).
    messages.push((
        &t.authorizations,
        "u-2",
        auth(
            "f1",
            "2026-01-10T10:00:00Z",
            "u-2",
            "revit",
            "flex",
            r#","product_version":"2026""#,
        ),
    ));
    messages.push((
        &t.authorizations,
        "u-2",
        auth(
            "f2",
            "2026-01-11T09:59:59Z",
            "u-2",
            "revit",
            "flex",
            r#","product_version":"2025""#,
        ),
    ));
    messages.push((
        &t.authorizations,
        "u-2",
        auth("f3", "2026-01-11T11:00:00Z", "u-2", "revit", "flex", ""),
    ));
    messages.push((
        &t.authorizations,
        "u-2",
        auth("f4", "2026-02-03T08:00:00Z", "u-2", "revit", "flex", ""),
    ));
    // Bad input: each goes to the dead-letter topic with its reason.
    messages.push((&t.authorizations, "u-9", "{not json".into()));
    messages.push((&t.authorizations, "u-9", r#"{"event_id":"x1","occurred_at":"2026-01-05T09:00:00Z","user_id":"u-9","product":"autocad"}"#.into()));
    messages.push((
        &t.authorizations,
        "u-9",
        auth(
            "x2",
            "2026-01-05T09:00:00Z",
            "u-9",
            "autocad",
            "floating",
            "",
        ),
    ));
    messages.push((
        &t.authorizations,
        "u-9",
        auth("x3", "yesterday", "u-9", "autocad", "seat", ""),
    ));
    messages.push((
        &t.authorizations,
        "u-9",
        auth(
            "x4",
            "2026-01-05T09:00:00Z",
            "u-9",
            "autocad'; DROP TABLE authorizations; --",
            "seat",
            r#","team_id":"t-1""#,
        ),
    ));

    publish(&messages).await;
    let mut ingest = Ingest::start(
        &topics,
        db.name(),
        &services::unique("group"),
        &["--unresolved-hold-secs", "2", "--batch-max-wait-ms", "200"],
    );

    let stored = eventually(Duration::from_secs(60), || async {
        db.count("SELECT uniqExact(event_id) FROM authorizations")
            .await
            == 8
    })
    .await;
    assert!(
        stored,
        "8 reportable events stored; log:\n{}",
        ingest.log_tail()
    );

    // Days used and last access (u-1: Jan 5 twice — 17:00+02:00 is 15:00Z — and Jan 7).
    assert_eq!(
        db.count("SELECT uniqExact(usage_date) FROM daily_usage WHERE user_id = 'u-1' AND product = 'autocad' AND team_id = 't-1'").await,
        2
    );
    assert_eq!(
        db.count("SELECT toUInt64(max(usage_date) = toDate('2026-01-07')) FROM daily_usage WHERE user_id = 'u-1'").await,
        1
    );
    // Flex: three windows, 7 + 7 + 8.5 tokens; the use inside the first window is free.
    assert_eq!(
        db.count("SELECT count() FROM flex_windows FINAL WHERE user_id = 'u-2'")
            .await,
        3
    );
    assert_eq!(
        db.count("SELECT sum(tokens_milli) FROM flex_windows FINAL WHERE user_id = 'u-2'")
            .await,
        22_500
    );
    assert_eq!(
        db.count("SELECT tokens_milli FROM authorizations FINAL WHERE event_id = 'f2'")
            .await,
        0
    );
    // The team came from the assignment history.
    assert_eq!(
        db.count("SELECT count() FROM authorizations FINAL WHERE team_id = 't-1' AND team_source = 'assignment'").await,
        7
    );
    // The hostile string is data, stored as such.
    assert_eq!(
        db.count("SELECT count() FROM authorizations WHERE product LIKE '%DROP TABLE%'")
            .await,
        1
    );
    assert_eq!(
        db.count("SELECT count() FROM assignment_state FINAL WHERE assigned = 1")
            .await,
        2
    );

    let reasons = dead_letter_reasons(&topics.dlq, 4).await;
    let expected: BTreeMap<String, usize> = [
        ("malformed_json", 1),
        ("missing_field", 1),
        ("unknown_value", 1),
        ("bad_timestamp", 1),
    ]
    .into_iter()
    .map(|(r, n)| (r.to_owned(), n))
    .collect();
    assert_eq!(reasons, expected);

    let metrics = ingest.metrics().await;
    assert_eq!(
        metrics.sum("usage_ingest_events_offline_total"),
        1.0,
        "{metrics}"
    );

    ingest.signal("TERM");
    let code = ingest.wait_exit(Duration::from_secs(30));
    assert_eq!(
        code,
        Some(0),
        "SIGTERM drains and exits 0; log:\n{}",
        ingest.log_tail()
    );

    db.drop_database().await;
    services::drop_topics(&topics).await;
}

/// An assignment that changes again and again, each change in its own batch
/// and several batches within a second: every state row the ingest writes
/// has its own version, so the newest state is the one read — by
/// `argMax(.., version)` (the report) and by `FINAL` (the analyst view) —
/// and no tie can bring an older state back.
#[tokio::test(flavor = "multi_thread")]
async fn quick_assignment_changes_keep_the_newest_state() {
    let topics = services::scratch_topics("flips", 1).await;
    let db = ScratchDatabase::create("flips").await;
    let mut ingest = Ingest::start(
        &topics,
        db.name(),
        &services::unique("group"),
        &["--batch-max-wait-ms", "20"],
    );
    // assign (Jan 2), unassign (Feb 3), assign (Mar 2), ... : 7 changes, the
    // last an assign, published 300 ms apart: several batches, and more of
    // them than the seconds they span.
    let publisher = services::Publisher::new();
    let changes = 7;
    for i in 0..changes {
        let action = if i % 2 == 0 { "assign" } else { "unassign" };
        let event = format!(
            r#"{{"event_id":"flip-{i}","occurred_at":"2026-{month:02}-0{day}T00:00:00Z","action":"{action}","team_id":"t-1","user_id":"u-1","product":"autocad","access":"seat","via":"direct"}}"#,
            month = i + 1,
            day = 2 + i % 2,
        );
        publisher.send(&topics.assignments, "u-1", &event).await;
        if i == 0 {
            // The ingest is reading from here on.
            let first = eventually(Duration::from_secs(60), || async {
                db.count("SELECT count() FROM assignment_state").await == 1
            })
            .await;
            assert!(first, "log:\n{}", ingest.log_tail());
        } else {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let all_written = eventually(Duration::from_secs(60), || async {
        db.count("SELECT uniqExact(event_id) FROM assignment_events")
            .await
            == changes
    })
    .await;
    assert!(all_written, "log:\n{}", ingest.log_tail());

    let key = "FROM assignment_state WHERE user_id = 'u-1' AND product = 'autocad'";
    let rows = db.count(&format!("SELECT count() {key}")).await;
    assert!(rows >= 2, "one state row per batch that changed it: {rows}");
    assert_eq!(
        db.count(&format!("SELECT uniqExact(version) {key}")).await,
        rows,
        "every state row has its own version"
    );
    // The newest change: assigned since Jul 2 (flip-6).
    for _ in 0..5 {
        assert_eq!(
            db.count(&format!("SELECT toUInt64(argMax(assigned, version)) {key}"))
                .await,
            1
        );
        assert_eq!(
            db.count(&format!(
                "SELECT toUInt64(argMax(assigned_date, version) = toDate('2026-07-02')) {key}"
            ))
            .await,
            1
        );
    }
    assert_eq!(
        db.count("SELECT toUInt64(assigned_date = toDate('2026-07-02')) FROM current_assignments WHERE user_id = 'u-1'")
            .await,
        1
    );

    ingest.signal("TERM");
    assert_eq!(ingest.wait_exit(Duration::from_secs(30)), Some(0));
    db.drop_database().await;
    services::drop_topics(&topics).await;
}
