//! The enrichment state's byte budget changes no stamp: one generated
//! scenario (late assignments, out-of-order and duplicate usage, a rate
//! change, poison) ingested by two `usage-ingest` at once, on the real
//! broker and ClickHouse — one with `--state-budget-mb 0` (every user
//! evicted after every batch, so every batch reads its users' histories and
//! windows again), one `unbounded` — into two databases. Both equal the
//! oracle, and every stored authorization carries the same team, window and
//! charge in both; every Flex window is the same.

use std::time::Duration;
use usage_loadgen::ScenarioConfig;
use usage_testkit::metrics::Metrics;
use usage_tests::scenario::Published;
use usage_tests::services::{self, Ingest, ScratchDatabase};

/// Small batches, so the users come back batch after batch.
const OPTIONS: &[&str] = &[
    "--unresolved-hold-secs",
    "3",
    "--batch-max-wait-ms",
    "200",
    "--batch-max-rows",
    "1500",
];

/// Every stamp of every stored authorization, one line each, in event order.
async fn stamps(db: &ScratchDatabase) -> Vec<String> {
    let sql = "SELECT concat(event_id, ' ', team_id, ' ', toString(team_source), ' ', \
               toString(toUnixTimestamp(window_start)), ' ', toString(tokens_milli)) AS line \
               FROM authorizations FINAL ORDER BY event_id";
    lines(db, sql).await
}

/// Every Flex window, one line each.
async fn windows(db: &ScratchDatabase) -> Vec<String> {
    let sql = "SELECT concat(user_id, ' ', product, ' ', toString(toUnixTimestamp(window_start)), \
               '.', toString(window_start_us), ' ', opening_event_id, ' ', toString(tokens_milli)) \
               AS line FROM flex_windows FINAL ORDER BY line";
    lines(db, sql).await
}

async fn lines(db: &ScratchDatabase, sql: &str) -> Vec<String> {
    db.warehouse
        .client()
        .query(sql)
        .fetch_all::<String>()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn first_differences(a: &[String], b: &[String]) -> String {
    let differing: Vec<String> = a
        .iter()
        .zip(b)
        .filter(|(x, y)| x != y)
        .take(10)
        .map(|(x, y)| format!("{x}  |  {y}"))
        .collect();
    format!(
        "{} vs {} lines; first differing:\n{}",
        a.len(),
        b.len(),
        differing.join("\n")
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tiny_state_budget_stamps_exactly_like_an_unbounded_one() {
    let published = Published::generate(ScenarioConfig {
        seed: 31,
        users: 300,
        teams: 5,
        days: 40,
        duplicate_share: 0.02,
        late_share: 0.03,
        poison_share: 0.002,
        ..ScenarioConfig::default()
    });
    let topics = services::scratch_topics("budget", 4).await;
    let tiny_db = ScratchDatabase::create("budget_tiny").await;
    let unbounded_db = ScratchDatabase::create("budget_all").await;
    published.publish(&topics).await;

    let with = |budget: &'static str| {
        let mut options = OPTIONS.to_vec();
        options.extend(["--state-budget-mb", budget]);
        options
    };
    let tiny = Ingest::start(
        &topics,
        tiny_db.name(),
        &services::unique("group"),
        &with("0"),
    );
    let unbounded = Ingest::start(
        &topics,
        unbounded_db.name(),
        &services::unique("group"),
        &with("unbounded"),
    );

    for (db, ingest, what) in [
        (&tiny_db, &tiny, "budget 0"),
        (&unbounded_db, &unbounded, "unbounded"),
    ] {
        let differences = published.converges(db, Duration::from_secs(180)).await;
        assert!(
            differences.is_empty(),
            "{what}: {} differences from the oracle:\n{}\nlog:\n{}",
            differences.len(),
            differences
                .iter()
                .take(15)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n"),
            ingest.log_tail()
        );
    }

    let (a, b) = (stamps(&tiny_db).await, stamps(&unbounded_db).await);
    assert!(!a.is_empty());
    assert!(a == b, "stamps differ: {}", first_differences(&a, &b));
    let (a, b) = (windows(&tiny_db).await, windows(&unbounded_db).await);
    assert!(!a.is_empty(), "the scenario has Flex windows");
    assert!(a == b, "Flex windows differ: {}", first_differences(&a, &b));

    // The tiny budget did evict and read again; the unbounded one never evicted.
    let counter = |m: &Metrics, name: &str| m.sum(name);
    let (tm, um) = (tiny.metrics().await, unbounded.metrics().await);
    assert!(counter(&tm, "usage_ingest_state_cache_evictions_total") > 0.0);
    assert_eq!(
        counter(&tm, "usage_ingest_state_cache_bytes"),
        0.0,
        "nothing kept"
    );
    assert!(
        counter(
            &tm,
            "usage_ingest_state_cache_misses_total{state=\"assignments\""
        ) > 300.0
    );
    assert_eq!(
        counter(&um, "usage_ingest_state_cache_evictions_total"),
        0.0
    );
    assert!(counter(&um, "usage_ingest_state_cache_entries") > 0.0);
    assert!(
        counter(
            &um,
            "usage_ingest_state_cache_hits_total{state=\"assignments\""
        ) > 0.0
    );

    drop(tiny);
    drop(unbounded);
    tiny_db.drop_database().await;
    unbounded_db.drop_database().await;
    services::drop_topics(&topics).await;
}
