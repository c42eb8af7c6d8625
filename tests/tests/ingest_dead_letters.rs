//! Dead letters that waited for data: an authorization whose assignment comes
//! too late goes to the dead-letter topic, and `usage-ingest replay-dlq`
//! brings it back once the assignment is there — counted once. Letters that
//! would fail again (bad JSON) are left where they are.

use std::process::Command;
use std::time::Duration;
use usage_tests::services::{self, eventually, publish, Ingest, ScratchDatabase};

#[tokio::test(flavor = "multi_thread")]
async fn late_assignments_are_replayed_from_the_dead_letter_topic() {
    let topics = services::scratch_topics("replaydlq", 2).await;
    let db = ScratchDatabase::create("replaydlq").await;
    let t = &topics;
    publish(&[
        (&t.authorizations, "u-5", r#"{"event_id":"late-1","occurred_at":"2026-03-02T09:00:00Z","user_id":"u-5","product":"inventor","access":"seat"}"#),
        (&t.authorizations, "u-5", r#"{"event_id":"late-2","occurred_at":"2026-03-03T09:00:00Z","user_id":"u-5","product":"inventor","access":"seat"}"#),
        (&t.authorizations, "u-5", r#"{"event_id":"broken""#),
    ])
    .await;
    let ingest = Ingest::start(
        &topics,
        db.name(),
        &services::unique("group"),
        &["--unresolved-hold-secs", "1", "--batch-max-wait-ms", "200"],
    );
    let dead = eventually(Duration::from_secs(60), || async {
        ingest
            .metrics()
            .await
            .sum("usage_ingest_dead_letters_total")
            >= 3.0
    })
    .await;
    assert!(
        dead,
        "both wait, then go to the DLQ; log:\n{}",
        ingest.log_tail()
    );
    assert_eq!(db.count("SELECT count() FROM authorizations").await, 0);

    // The assignment arrives (dated before the usage), then the replay.
    publish(&[(&t.assignments, "u-5", r#"{"event_id":"as-5","occurred_at":"2026-03-01T00:00:00Z","action":"assign","team_id":"t-7","user_id":"u-5","product":"inventor","access":"seat","via":"direct"}"#)]).await;
    let known = eventually(Duration::from_secs(30), || async {
        db.count("SELECT count() FROM assignment_events").await == 1
    })
    .await;
    assert!(known, "the assignment is stored");

    let output = Command::new(services::binary("usage-ingest", "usage-ingest"))
        .arg("replay-dlq")
        .args(["--kafka-brokers", &services::brokers()])
        .args(["--dlq-topic", &topics.dlq])
        .args(["--replay-group-id", &services::unique("replayer")])
        .args([
            "--session-timeout-ms",
            "6000",
            "--heartbeat-interval-ms",
            "500",
        ])
        .args(["--idle-secs", "3"])
        .output()
        .expect("replay-dlq runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("replayed 2") && stdout.contains("left 1"),
        "two replayable letters re-published, the broken one left: {stdout}"
    );

    let stored = eventually(Duration::from_secs(60), || async {
        db.count("SELECT uniqExact(event_id) FROM authorizations WHERE team_id = 't-7'")
            .await
            == 2
    })
    .await;
    assert!(
        stored,
        "the replayed events are counted; log:\n{}",
        ingest.log_tail()
    );
    assert_eq!(
        db.count("SELECT count() FROM usage_days WHERE user_id = 'u-5'")
            .await,
        2,
        "two days used, once each"
    );
    drop(ingest);
    db.drop_database().await;
    services::drop_topics(&topics).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_bad_input_stops_the_consumer_instead_of_filling_the_dlq() {
    let topics = services::scratch_topics("flood", 1).await;
    let db = ScratchDatabase::create("flood").await;
    let garbage: Vec<(&str, &str, String)> = (0..30)
        .map(|i| (topics.authorizations.as_str(), "k", format!("not json {i}")))
        .collect();
    publish(&garbage).await;
    let mut ingest = Ingest::start(
        &topics,
        db.name(),
        &services::unique("group"),
        &["--dlq-max-consecutive", "20", "--batch-max-wait-ms", "200"],
    );
    let code = ingest.wait_exit(Duration::from_secs(60));
    assert!(
        matches!(code, Some(c) if c != 0),
        "the consumer stops with an error; exit {code:?}"
    );
    assert!(
        ingest.log().contains("invalid messages in a row"),
        "and says why:\n{}",
        ingest.log_tail()
    );
    db.drop_database().await;
    services::drop_topics(&topics).await;
}
