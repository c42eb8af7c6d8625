//! The report's brief cache (`--report-cache-secs`) over the real
//! services: the page's requests for one filter set share one computation
//! and answer as an uncached service does; new data shows within the bound;
//! while nothing is written the entries live on past it; admins with
//! different scopes never share an entry; with 0 every request computes.

use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use reqwest::StatusCode;
use serde_json::Value;
use usage_testkit::metrics::Metrics;
use usage_testkit::report::{Report, ReportRun};
use usage_tests::report::{fixture, TestAdmin, HMAC_KEY};
use usage_tests::services::{self, binary, eventually, unique};

/// The bound the cached service is started with.
const CACHE_SECS: u64 = 5;

async fn start(database: &str, admins: &[TestAdmin], cache_secs: u64) -> Report {
    ReportRun::new(
        binary("usage-report", "usage-report"),
        &services::local(),
        database,
        std::env::temp_dir().join(unique("report-cache")),
    )
    .admins(admins.iter().map(TestAdmin::admin))
    .hmac_key(HMAC_KEY)
    .args(["--report-cache-secs".to_owned(), cache_secs.to_string()])
    .env("RUST_LOG", "info,usage_report=debug")
    .start()
    .await
    .unwrap_or_else(|e| panic!("usage-report starts: {e:#}"))
}

async fn get(report: &Report, admin: &TestAdmin, path: &str) -> Value {
    let response = reqwest::Client::new()
        .get(report.url(path))
        .bearer_auth(admin.token())
        .send()
        .await
        .expect("usage-report answers");
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

async fn counter(report: &Report, name: &str) -> f64 {
    Metrics::scrape(report.port)
        .await
        .expect("/metrics answers")
        .sum(name)
}

/// The page's three requests for `team`.
async fn page(report: &Report, admin: &TestAdmin, team: &str) -> [Value; 3] {
    [
        get(report, admin, &format!("/v1/report/overview?team={team}")).await,
        get(
            report,
            admin,
            &format!("/v1/report/users?team={team}&page=1&page_size=500"),
        )
        .await,
        get(report, admin, &format!("/v1/report/daily?team={team}")).await,
    ]
}

const HITS: &str = "usage_report_cache_hits_total";
const MISSES: &str = "usage_report_cache_misses_total";

#[tokio::test(flavor = "multi_thread")]
async fn the_page_shares_one_computation_within_its_bound() {
    let f = fixture("report_cache", 23).await;
    let teams = f.current_teams();
    assert!(teams.len() >= 2, "teams: {teams:?}");
    let root = TestAdmin {
        id: "root",
        role: "primary",
        teams: vec!["*".into()],
    };
    let first = TestAdmin {
        id: "first",
        role: "secondary",
        teams: vec![teams[0].clone()],
    };
    let second = TestAdmin {
        id: "second",
        role: "secondary",
        teams: vec![teams[1].clone()],
    };
    let admins = [root.clone(), first.clone(), second.clone()];
    let cached = start(f.db.name(), &admins, CACHE_SECS).await;
    let uncached = start(f.db.name(), &admins, 0).await;

    // The page twice: the same answers, the second from the cache, and as
    // the uncached service answers.
    let hits = counter(&cached, HITS).await;
    let once = page(&cached, &root, "all").await;
    let twice = page(&cached, &root, "all").await;
    assert_eq!(once, twice, "the page's second load answers as the first");
    assert!(
        counter(&cached, HITS).await > hits,
        "the second load is served from the cache"
    );
    assert_eq!(
        once,
        page(&uncached, &root, "all").await,
        "the cache answers as a computation does"
    );
    assert!(
        once[1]["total"].as_u64().unwrap_or(0) > 0,
        "the report has rows: {}",
        once[1]
    );

    // Two admins of different teams, one after the other within the bound:
    // each sees the lines of their own team only.
    for (admin, team) in [(&first, &teams[0]), (&second, &teams[1])] {
        let [overview, users, _] = page(&cached, admin, "all").await;
        let rows = users["rows"].as_array().expect("rows");
        assert!(!rows.is_empty(), "{} sees rows", admin.id);
        for row in rows {
            assert_eq!(
                row["team_id"].as_str(),
                Some(team.as_str()),
                "{} sees only their team: {row}",
                admin.id
            );
        }
        let [alone, ..] = page(&uncached, admin, "all").await;
        assert_eq!(overview, alone, "{}'s tiles are their own", admin.id);
    }

    // With 0, every request computes: misses only.
    let (hits, misses) = (
        counter(&uncached, HITS).await,
        counter(&uncached, MISSES).await,
    );
    page(&uncached, &root, "all").await;
    page(&uncached, &root, "all").await;
    assert_eq!(counter(&uncached, HITS).await, hits, "no hit with 0");
    assert!(
        counter(&cached, MISSES).await >= 1.0,
        "the cached service computed"
    );
    assert!(
        counter(&uncached, MISSES).await >= misses + 6.0,
        "each of the six requests computed"
    );

    // Nothing written to the tables: the page past the bound is still
    // served from the cache. Merges after the ingest's last batch change
    // the parts (and so what the service observes) for a while: tried until
    // a wait passes with the parts unchanged throughout.
    let parts = "SELECT cityHash64(count(), sum(rows), groupBitXor(cityHash64(table, name))) \
                 FROM system.parts WHERE database = currentDatabase() AND active";
    let mut reused = false;
    for _ in 0..6 {
        let before = f.db.count(parts).await;
        let misses = counter(&cached, MISSES).await;
        tokio::time::sleep(Duration::from_secs(CACHE_SECS + 1)).await;
        page(&cached, &root, "all").await;
        let unchanged = f.db.count(parts).await == before;
        if unchanged && counter(&cached, MISSES).await == misses {
            reused = true;
            break;
        }
    }
    assert!(
        reused,
        "with the tables unchanged, the page is served from the cache past its bound"
    );

    // New data: a seat assigned now shows within the bound once the tables
    // hold it.
    let seats = |overview: &Value| overview["subscriptions"]["assigned_seats"].as_u64();
    let before = seats(&page(&cached, &root, "all").await[0]).expect("assigned seats");
    let user = f
        .published
        .expected
        .rows
        .iter()
        .find(|r| r.current_team_id == teams[0])
        .map(|r| r.user_id.clone())
        .expect("a user of the first team");
    let occurred =
        (Utc::now() - chrono::TimeDelta::minutes(1)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let event = format!(
        r#"{{"event_id":"cache-probe-1","occurred_at":"{occurred}","action":"assign","team_id":"{team}","user_id":"{user}","product":"cache-probe","access":"seat","via":"direct"}}"#,
        team = teams[0],
    );
    services::Publisher::new()
        .send(&f.topics.assignments, &user, &event)
        .await;
    let stored = eventually(Duration::from_secs(60), || async {
        f.db.count("SELECT count() FROM assignment_state WHERE product = 'cache-probe'")
            .await
            >= 1
    })
    .await;
    assert!(stored, "the assignment is stored:\n{}", f.ingest.log_tail());
    let visible = Instant::now();
    let fresh = get(&uncached, &root, "/v1/report/overview?team=all").await;
    assert_eq!(seats(&fresh), Some(before + 1), "uncached: at once");
    let mut shown = None;
    while visible.elapsed() <= Duration::from_secs(CACHE_SECS + 2) {
        let overview = get(&cached, &root, "/v1/report/overview?team=all").await;
        if seats(&overview) == Some(before + 1) {
            shown = Some(visible.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let shown = shown.unwrap_or_else(|| {
        panic!("the new seat is not shown {CACHE_SECS} s after it is in the tables")
    });
    assert!(
        shown <= Duration::from_secs(CACHE_SECS) + Duration::from_millis(1500),
        "shown after {shown:?}, past the {CACHE_SECS} s bound"
    );
}
