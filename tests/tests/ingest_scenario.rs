//! `usage-ingest` on a generated scenario (many users and teams, seat and
//! Flex, a rate change, assignments before and after the usage they explain,
//! group changes, a team merge, duplicates, late events, poison), against the
//! real broker and ClickHouse: the rollups equal the load generator's
//! independent oracle — after a plain run, after a SIGKILL and a restart, and
//! after the whole stream is published again and re-read from offset 0.

use std::time::Duration;
use usage_loadgen::ScenarioConfig;
use usage_testkit::metrics::Metrics;
use usage_tests::scenario::Published;
use usage_tests::services::{self, eventually, Ingest, ScratchDatabase};

fn config(seed: u64) -> ScenarioConfig {
    ScenarioConfig {
        seed,
        users: 150,
        teams: 4,
        days: 45,
        duplicate_share: 0.02,
        late_share: 0.02,
        poison_share: 0.002,
        ..ScenarioConfig::default()
    }
}

/// Small batches (many commits, pauses while a write is in flight) and a
/// short wait for late assignments.
const TEST_OPTIONS: &[&str] = &[
    "--unresolved-hold-secs",
    "3",
    "--batch-max-wait-ms",
    "200",
    "--batch-max-rows",
    "2000",
];

fn show(differences: &[String]) -> String {
    differences
        .iter()
        .take(15)
        .cloned()
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rollups_equal_the_oracle() {
    let published = Published::generate(config(7));
    let topics = services::scratch_topics("scenario", 4).await;
    let db = ScratchDatabase::create("scenario").await;
    published.publish(&topics).await;
    let ingest = Ingest::start(&topics, db.name(), &services::unique("group"), TEST_OPTIONS);

    let differences = published.converges(&db, Duration::from_secs(120)).await;
    assert!(
        differences.is_empty(),
        "{} differences:\n{}\nlog:\n{}",
        differences.len(),
        show(&differences),
        ingest.log_tail()
    );
    // Every refused message is in the dead-letter topic, with the oracle's reason.
    let expected: Vec<(String, u64)> = published
        .expected
        .dead_letters
        .iter()
        .map(|(reason, n)| (reason.as_str().to_owned(), *n))
        .collect();
    let dead_letters = |metrics: &Metrics| -> Vec<(String, u64)> {
        expected
            .iter()
            .map(|(reason, _)| {
                let series = format!("usage_ingest_dead_letters_total{{reason=\"{reason}\"");
                (reason.clone(), metrics.sum(&series) as u64)
            })
            .collect()
    };
    let all_there = eventually(Duration::from_secs(30), || async {
        dead_letters(&ingest.metrics().await) == expected
    })
    .await;
    assert!(
        all_there,
        "dead letters by reason: {:?}, expected {expected:?}",
        dead_letters(&ingest.metrics().await)
    );
    drop(ingest);
    db.drop_database().await;
    services::drop_topics(&topics).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_consumer_restarts_without_loss_or_double_counting() {
    let published = Published::generate(ScenarioConfig {
        users: 400,
        ..config(11)
    });
    let topics = services::scratch_topics("killed", 4).await;
    let db = ScratchDatabase::create("killed").await;
    published.publish(&topics).await;
    let group = services::unique("group");
    // Small batches (TEST_OPTIONS), so the kill lands among committed ones.
    let first = Ingest::start(&topics, db.name(), &group, TEST_OPTIONS);
    let half = published.events_counted() / 3;
    let started = eventually(Duration::from_secs(90), || async {
        db.count("SELECT count() FROM authorizations").await >= half
    })
    .await;
    assert!(
        started,
        "the first run stores rows; log:\n{}",
        first.log_tail()
    );
    first.signal("KILL");
    drop(first);

    let second = Ingest::start(&topics, db.name(), &group, TEST_OPTIONS);
    let differences = published.converges(&db, Duration::from_secs(120)).await;
    assert!(
        differences.is_empty(),
        "{} differences after kill and restart:\n{}\nlog:\n{}",
        differences.len(),
        show(&differences),
        second.log_tail()
    );
    drop(second);
    db.drop_database().await;
    services::drop_topics(&topics).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_from_offset_zero_and_republished_duplicates_change_nothing() {
    let published = Published::generate(config(23));
    let topics = services::scratch_topics("replay", 4).await;
    let db = ScratchDatabase::create("replay").await;
    published.publish(&topics).await;
    let first = Ingest::start(&topics, db.name(), &services::unique("group"), TEST_OPTIONS);
    let differences = published.converges(&db, Duration::from_secs(120)).await;
    assert!(
        differences.is_empty(),
        "first pass:\n{}",
        show(&differences)
    );
    drop(first);

    // Every event published a second time, and everything read again by a new group.
    published.publish(&topics).await;
    let replay = Ingest::start(
        &topics,
        db.name(),
        &services::unique("replay"),
        TEST_OPTIONS,
    );
    let twice = published.events_counted();
    let reread = eventually(Duration::from_secs(120), || async {
        let consumed = replay
            .metrics()
            .await
            .sum("usage_ingest_events_consumed_total");
        consumed as u64 >= 2 * published.scenario.count().messages
    })
    .await;
    assert!(
        reread,
        "the new group reads both copies; log:\n{}",
        replay.log_tail()
    );
    // Let the last batch land, then compare.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let differences = published.differences(&db).await;
    assert!(
        differences.is_empty(),
        "after the replay ({twice} events):\n{}\nlog:\n{}",
        show(&differences),
        replay.log_tail()
    );
    drop(replay);
    db.drop_database().await;
    services::drop_topics(&topics).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_in_one_group_give_the_results_of_one() {
    let published = Published::generate(ScenarioConfig {
        users: 300,
        ..config(31)
    });
    let topics = services::scratch_topics("pair", 4).await;
    let db = ScratchDatabase::create("pair").await;
    published.publish(&topics).await;
    let group = services::unique("group");
    let first = Ingest::start(&topics, db.name(), &group, TEST_OPTIONS);
    // The second joins while the first is consuming: a rebalance splits the partitions.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = Ingest::start(&topics, db.name(), &group, TEST_OPTIONS);
    let differences = published.converges(&db, Duration::from_secs(120)).await;
    assert!(
        differences.is_empty(),
        "{} differences with two instances:\n{}\nfirst:\n{}\nsecond:\n{}",
        differences.len(),
        show(&differences),
        first.log_tail(),
        second.log_tail()
    );
    drop((first, second));
    db.drop_database().await;
    services::drop_topics(&topics).await;
}
