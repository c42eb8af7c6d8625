//! The pipeline on a real replicated, sharded ClickHouse cluster (the local
//! one of `scripts/services up --cluster`: ZooKeeper and four ClickHouse
//! 18.16 servers, 2 shards x 2 replicas; each test starts what is not up):
//!
//! - a generated scenario ingested by two `usage-ingest` instances in cluster
//!   mode equals the oracle, both replicas of each shard hold the same rows,
//!   and the report API over the cluster equals the oracle;
//! - a replica SIGKILLed during the ingest and restarted: the inserts go on
//!   on the other replica, the report answers meanwhile, nothing is lost or
//!   doubled, the restarted replica catches up, and with its partner killed
//!   in turn the report (reading through the Distributed tables, which fail
//!   over) is still exact;
//! - ZooKeeper stopped for 20 s during the ingest: the replicated tables turn
//!   read-only, the inserts fail and are retried, `/readyz` says why, and
//!   once ZooKeeper is back nothing is lost or doubled.
//!
//! The tests hold one lock: a fault of one must not meet another's ingest.

use std::time::{Duration, Instant};
use usage_loadgen::oracle::DateRange;
use usage_loadgen::ScenarioConfig;
use usage_tests::cluster;
use usage_tests::report::{all_rows, compare, milli, Fixture, Report, ReportOptions, TestAdmin};
use usage_tests::scenario::Published;
use usage_tests::services::{self, Ingest, ScratchDatabase, Topics};

/// The tables the ingest writes and the rollups the views fill, each with
/// the key its copies share: replicas are compared by distinct keys, since a
/// part whose commit to ZooKeeper was cut off stays on its replica alone
/// until 18.16's part check settles it (minutes), while the retry wrote
/// the same rows again.
const TABLES: &[(&str, &str)] = &[
    ("authorizations", "event_id"),
    (
        "daily_usage",
        "team_id, user_id, product, access, usage_date",
    ),
    (
        "flex_windows",
        "user_id, product, window_start, window_start_us",
    ),
    ("assignment_events", "event_id"),
    ("assignment_state", "team_id, user_id, product, access"),
    ("usage_months", "team_id, user_id, product, access, month"),
    ("last_access", "team_id, user_id, product, access"),
    ("token_months", "team_id, user_id, product, month"),
];

fn config(seed: u64) -> ScenarioConfig {
    ScenarioConfig {
        seed,
        users: 80,
        teams: 4,
        days: 60,
        events_per_user_day: 2.0,
        duplicate_share: 0.02,
        late_share: 0.02,
        poison_share: 0.0,
        ..ScenarioConfig::default()
    }
}

/// Small batches: many inserts, so that the faults fall among them.
const OPTIONS: &[&str] = &[
    "--unresolved-hold-secs",
    "3",
    "--batch-max-wait-ms",
    "200",
    "--batch-max-rows",
    "500",
    "--retry-max-ms",
    "1000",
];

fn start_ingest(topics: &Topics, db: &ScratchDatabase, group: &str) -> Ingest {
    let mut options = OPTIONS.to_vec();
    options.extend(cluster::cluster_args());
    Ingest::start_on(&cluster::services(), topics, db.name(), group, &options)
}

async fn converged(published: &Published, db: &ScratchDatabase, ingest: &[&Ingest]) {
    let differences = published.converges(db, Duration::from_secs(180)).await;
    assert!(
        differences.is_empty(),
        "{} differences from the oracle:\n{}\nlog:\n{}",
        differences.len(),
        differences[..differences.len().min(12)].join("\n"),
        ingest
            .iter()
            .map(|i| i.log_tail())
            .collect::<Vec<_>>()
            .join("\n---\n")
    );
}

async fn replicas_agree(db: &ScratchDatabase) {
    if let Err(counts) = cluster::replicas_agree(db.name(), TABLES, Duration::from_secs(60)).await {
        panic!("the replicas of a shard differ: {counts}");
    }
}

/// Waits until the ingest has written some of the authorizations, not all.
async fn ingest_under_way(db: &ScratchDatabase, published: &Published) {
    let total = published.events_counted();
    let started = Instant::now();
    loop {
        let stored = db.count("SELECT count() FROM authorizations").await;
        if stored > 0 {
            assert!(
                stored < total,
                "the ingest was done before the fault ({stored} of {total})"
            );
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "nothing ingested in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn root() -> TestAdmin {
    TestAdmin {
        id: "root",
        role: "primary",
        teams: vec!["*".into()],
    }
}

/// usage-report in cluster mode, its cache off (every request reads ClickHouse).
async fn start_report(f: &Fixture) -> Report {
    let mut args = cluster::cluster_args().to_vec();
    args.extend(["--report-cache-secs", "0"]);
    Report::start_on(
        &cluster::services(),
        &args,
        f.db.name(),
        &[root()],
        ReportOptions::default(),
    )
    .await
}

/// The users rows of every team and of all teams, and the overview tiles,
/// equal the oracle over two ranges.
async fn report_equals_oracle(f: &Fixture, report: &Report) {
    let today = f.today();
    let ranges = [
        (
            "range=last_30_days".to_owned(),
            DateRange::new(today - chrono::Duration::days(29), today),
        ),
        {
            let custom = DateRange::new(
                today - chrono::Duration::days(50),
                today - chrono::Duration::days(10),
            );
            (
                format!("range=custom&from={}&to={}", custom.from, custom.to),
                custom,
            )
        },
    ];
    let unhash = f.unhash();
    let now = f.published.expected.now;
    let teams = f.current_teams();
    for (query, range) in &ranges {
        for team in teams.iter().map(Some).chain([None]) {
            let q = format!("team={}&{query}", team.map_or("all", |t| t.as_str()));
            let got = all_rows(report, &root(), &q, &unhash).await;
            compare(&q, &f.want(team.map(|t| t.as_str()), *range), &got);
            let (status, overview) = report
                .get(Some(&root()), &format!("/v1/report/overview?{q}"))
                .await;
            assert!(status.is_success(), "{q}: {overview}");
            let s = f.oracle.team_summary(team.map(|t| t.as_str()), *range, now);
            let subs = &overview["subscriptions"];
            assert_eq!(
                subs["assigned_seats"],
                serde_json::json!(s.seats_assigned),
                "{q}"
            );
            assert_eq!(subs["active"], serde_json::json!(s.seats_active), "{q}");
            assert_eq!(
                milli(&overview["flex"]["tokens_consumed"]),
                s.flex_tokens_milli,
                "{q}"
            );
        }
    }
}

struct Run {
    fixture: Fixture,
    second: Option<Ingest>,
}

/// A scenario on fresh topics and a fresh database of the cluster, and the
/// ingest (one or two instances of one group) started before it is published.
async fn run(tag: &str, seed: u64, instances: usize) -> Run {
    let published = Published::generate(config(seed));
    let oracle = usage_loadgen::Oracle::from_scenario(&published.scenario).expect("oracle");
    let topics = services::scratch_topics(tag, 4).await;
    let db = cluster::scratch_database(tag).await;
    let group = services::unique("group");
    let ingest = start_ingest(&topics, &db, &group);
    let second = (instances > 1).then(|| start_ingest(&topics, &db, &group));
    published.publish(&topics).await;
    Run {
        fixture: Fixture {
            published,
            oracle,
            db,
            topics,
            ingest,
        },
        second,
    }
}

impl Run {
    fn instances(&self) -> Vec<&Ingest> {
        std::iter::once(&self.fixture.ingest)
            .chain(self.second.as_ref())
            .collect()
    }

    async fn cleanup(self) {
        drop(self.second);
        services::drop_topics(&self.fixture.topics).await;
        self.fixture.db.drop_database().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_on_the_cluster_equal_the_oracle_and_so_does_the_report() {
    let _cluster = cluster::exclusive().await;
    let run = run("cluster_scenario", 21, 2).await;
    let f = &run.fixture;
    converged(&f.published, &f.db, &run.instances()).await;
    replicas_agree(&f.db).await;
    // Both shards hold users, each user on one shard only.
    for n in [1, 3] {
        let users = cluster::number_on(
            n,
            &format!(
                "SELECT uniqExact(user_id) FROM {}.authorizations_local",
                f.db.name()
            ),
        )
        .await
        .unwrap_or(0);
        assert!(users > 0, "node {n}'s shard holds users");
    }
    let shared = f
        .db
        .count(&format!(
            "SELECT count() FROM (SELECT user_id FROM remote('{}', {db}.authorizations_local) \
             GROUP BY user_id) WHERE user_id IN (SELECT user_id FROM remote('{}', {db}.authorizations_local))",
            cluster::node_address(1),
            cluster::node_address(3),
            db = f.db.name()
        ))
        .await;
    assert_eq!(shared, 0, "a user's rows live on one shard");
    let report = start_report(f).await;
    report_equals_oracle(f, &report).await;
    drop(report);
    run.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_killed_during_the_ingest_loses_and_doubles_nothing() {
    let _cluster = cluster::exclusive().await;
    let run = run("cluster_kill", 22, 1).await;
    let f = &run.fixture;
    ingest_under_way(&f.db, &f.published).await;
    // Node 3: shard 2's first replica, where its inserts and reads go.
    cluster::kill_node(3);
    let at_kill = f.db.count("SELECT count() FROM authorizations").await;
    // The ingest goes on, on node 4.
    let grew = services::eventually(Duration::from_secs(30), || async {
        f.db.count("SELECT count() FROM authorizations").await > at_kill
    })
    .await;
    assert!(
        grew,
        "inserts go on with a replica down:\n{}",
        f.ingest.log_tail()
    );
    // The report's reads of shard 2 fail over to node 4 too.
    let report = start_report(f).await;
    for path in [
        "/v1/report/overview?team=all&range=last_30_days",
        "/v1/report/users?team=all&range=last_30_days",
    ] {
        let (status, body) = report.get(Some(&root()), path).await;
        assert!(
            status.is_success(),
            "{path} with a replica down: {status} {body}"
        );
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster::up();
    converged(&f.published, &f.db, &run.instances()).await;
    // The restarted replica catches up.
    replicas_agree(&f.db).await;
    // With its partner killed in turn, the report reads node 3 alone for
    // shard 2: it fails over, and is exact.
    cluster::kill_node(4);
    report_equals_oracle(f, &report).await;
    cluster::up();
    replicas_agree(&f.db).await;
    drop(report);
    run.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn zookeeper_stopped_during_the_ingest_delays_it_and_loses_nothing() {
    let _cluster = cluster::exclusive().await;
    let run = run("cluster_zookeeper", 23, 1).await;
    let f = &run.fixture;
    ingest_under_way(&f.db, &f.published).await;
    let stopped = Instant::now();
    cluster::stop_zookeeper();
    // The replicated tables turn read-only: the inserts fail, /readyz says why.
    let mut said = None;
    while stopped.elapsed() < Duration::from_secs(20) {
        if let Some((503, body)) = f.ingest.readyz().await {
            if body.contains("inserts into") {
                said = Some(body);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let said = said.unwrap_or_else(|| {
        panic!(
            "/readyz did not report the failing inserts:\n{}",
            f.ingest.log_tail()
        )
    });
    assert!(
        said.to_lowercase().contains("readonly")
            || said.to_lowercase().contains("read-only")
            || said.contains("ZooKeeper")
            || said.contains("Coordination"),
        "/readyz says ZooKeeper is the cause: {said}"
    );
    eprintln!("/readyz with ZooKeeper down: {said}");
    // Reads go on meanwhile (read-only tables still answer SELECTs).
    let stored = f.db.count("SELECT count() FROM daily_usage").await;
    assert!(stored > 0, "reads answer with ZooKeeper down");
    if let Some(left) = Duration::from_secs(20).checked_sub(stopped.elapsed()) {
        tokio::time::sleep(left).await;
    }
    let retried = f
        .ingest
        .metrics()
        .await
        .sum("usage_ingest_insert_retries_total");
    assert!(retried > 0.0, "the inserts were retried");
    cluster::up();
    converged(&f.published, &f.db, &run.instances()).await;
    replicas_agree(&f.db).await;
    let ready = services::eventually(Duration::from_secs(30), || async {
        matches!(f.ingest.readyz().await, Some((200, _)))
    })
    .await;
    assert!(ready, "ready again once ZooKeeper is back");
    run.cleanup().await;
}
