//! The report's rollups (migration 0006: `usage_months`, `last_access`,
//! `token_months`) on a database that already held data when it was
//! migrated: the migration backfills them, the materialized views keep them
//! from then on, and the report's queries over them answer exactly what the
//! day-level tables (`daily_usage`, `flex_windows`) answer, for ranges at
//! month edges, within a month, across a year, with merges and every filter;
//! with copies of rows written before and after the migration, the
//! migration's statements run a second time, and before and after merges.

use usage_report::queries::Sql;
use usage_store::migrate::{self, Migration};
use usage_store::{Warehouse, WarehouseSettings};
use usage_tests::rollups::{
    daily_from_daily_usage, daily_tokens_from_flex_windows, days_from_daily_usage,
    last_from_daily_usage, queries, tokens_from_flex_windows, usage_rows, window_rows, Rng,
    ROLLUPS,
};
use usage_tests::services::{clickhouse_url, unique};

struct Db {
    warehouse: Warehouse,
}

impl Db {
    async fn execute(&self, sql: &str) {
        self.warehouse
            .client()
            .query(sql)
            .execute()
            .await
            .unwrap_or_else(|e| panic!("{e}: {sql}"));
    }

    async fn insert(&self, table: &str, rows: &[String]) {
        self.execute(&format!("INSERT INTO {table} VALUES {}", rows.join(", ")))
            .await;
    }

    /// The rows `sql` answers, sorted.
    async fn rows<T>(&self, sql: &str) -> Vec<T>
    where
        T: clickhouse::RowOwned + clickhouse::RowRead + Ord,
    {
        let mut rows = self
            .warehouse
            .client()
            .query(sql)
            .fetch_all::<T>()
            .await
            .unwrap_or_else(|e| panic!("{e}: {sql}"));
        rows.sort();
        rows
    }

    /// The rows a report statement answers, its values bound as the
    /// service binds them, sorted.
    async fn rows_of<T>(&self, sql: &Sql) -> Vec<T>
    where
        T: clickhouse::RowOwned + clickhouse::RowRead + Ord,
    {
        let mut rows = sql
            .query(self.warehouse.client())
            .fetch_all::<T>()
            .await
            .unwrap_or_else(|e| panic!("{e}: {}", sql.with_literals()));
        rows.sort();
        rows
    }
}

/// (team, user, product, access, a number).
type LineNumber<N> = (String, String, String, String, N);
/// (team, user, product, tokens).
type TokensLine = (String, String, String, u64);

/// Every query's answer from the rollups equals the day-level tables'.
async fn rollups_answer_as_the_day_level_tables(db: &Db, when: &str) {
    let mut compared = (0, 0, 0, 0);
    for q in queries() {
        let days: Vec<LineNumber<u64>> = db.rows_of(&q.days()).await;
        let want: Vec<LineNumber<u64>> = db.rows(&days_from_daily_usage(&q)).await;
        assert_eq!(days, want, "{when}: days used, {q:?}");
        compared.0 += days.len();
        let last: Vec<LineNumber<u16>> = db.rows_of(&q.last_access()).await;
        let want: Vec<LineNumber<u16>> = db.rows(&last_from_daily_usage(&q)).await;
        assert_eq!(last, want, "{when}: last accessed, {q:?}");
        compared.1 += last.len();
        let tokens: Vec<TokensLine> = db.rows_of(&q.tokens()).await;
        let want: Vec<TokensLine> = db.rows(&tokens_from_flex_windows(&q)).await;
        assert_eq!(tokens, want, "{when}: tokens, {q:?}");
        compared.2 += tokens.len();
        // The daily chart: users and lines used per day, tokens per day.
        let users: Vec<(u16, u64)> = db.rows_of(&q.daily_users()).await;
        let lines: Vec<(u16, u64)> = db.rows_of(&q.daily_lines()).await;
        let daily: Vec<(u16, u64, u64)> = db.rows(&daily_from_daily_usage(&q)).await;
        assert_eq!(
            users,
            daily.iter().map(|d| (d.0, d.1)).collect::<Vec<_>>(),
            "{when}: daily users, {q:?}"
        );
        assert_eq!(
            lines,
            daily.iter().map(|d| (d.0, d.2)).collect::<Vec<_>>(),
            "{when}: daily lines, {q:?}"
        );
        let tokens: Vec<(u16, u64)> = db.rows_of(&q.daily_tokens()).await;
        let want: Vec<(u16, u64)> = db.rows(&daily_tokens_from_flex_windows(&q)).await;
        assert_eq!(tokens, want, "{when}: daily tokens, {q:?}");
        compared.3 += daily.len();
    }
    // The comparisons are not vacuous.
    assert!(
        compared.0 > 500 && compared.1 > 500 && compared.2 > 100 && compared.3 > 100,
        "{when}: rows compared (days, last, tokens, daily): {compared:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_migrated_with_data_gets_exact_rollups() {
    let warehouse = Warehouse::new(WarehouseSettings {
        url: clickhouse_url(),
        database: unique("rollups"),
        ..WarehouseSettings::default()
    })
    .expect("valid settings");
    let db = Db { warehouse };
    let migrations =
        migrate::load_dir(&usage_tests::repo_root().join("schemas/clickhouse")).expect("load");
    let (before, _): (Vec<Migration>, Vec<Migration>) = migrations
        .iter()
        .cloned()
        .partition(|m| m.version < ROLLUPS);
    assert!(migrations.iter().any(|m| m.version == ROLLUPS));

    // Last month's database: the tables before the rollups, holding data,
    // copies included.
    migrate::apply(&db.warehouse, &before)
        .await
        .expect("migrations before the rollups apply");
    let mut rng = Rng(0x5EED_0006);
    let old_usage = usage_rows(&mut rng, 3_000);
    let old_windows = window_rows(&mut rng, 800);
    db.insert("daily_usage", &old_usage).await;
    db.insert("daily_usage", &old_usage[..1_000]).await;
    db.insert("flex_windows", &old_windows).await;
    db.insert("flex_windows", &old_windows[..300]).await;

    // `usage-ingest migrate`: the rollups are built from what is stored.
    let report = migrate::apply(&db.warehouse, &migrations)
        .await
        .expect("the rollups' migration applies");
    assert!(report.applied.contains(&ROLLUPS), "{report:?}");
    rollups_answer_as_the_day_level_tables(&db, "backfilled").await;

    // The ingest goes on: new rows, and copies of rows stored before the
    // migration (a replay), reach the rollups through the views.
    let new_usage = usage_rows(&mut rng, 1_500);
    let new_windows = window_rows(&mut rng, 400);
    db.insert("daily_usage", &new_usage).await;
    db.insert("daily_usage", &old_usage[500..2_000]).await;
    db.insert("flex_windows", &new_windows).await;
    db.insert("flex_windows", &old_windows[200..600]).await;
    db.insert("flex_windows", &new_windows[..100]).await;
    rollups_answer_as_the_day_level_tables(&db, "after more inserts").await;

    // Two instances migrating together both run the backfill: harmless.
    let rollups = migrations
        .iter()
        .find(|m| m.version == ROLLUPS)
        .expect("the rollups' migration");
    for statement in &rollups.statements {
        db.execute(statement).await;
    }
    rollups_answer_as_the_day_level_tables(&db, "backfilled twice").await;

    // And merged, copies collapsed.
    for table in ["usage_months", "last_access", "token_months"] {
        db.execute(&format!("OPTIMIZE TABLE {table} FINAL")).await;
    }
    rollups_answer_as_the_day_level_tables(&db, "merged").await;

    db.warehouse
        .server_client()
        .query(&format!(
            "DROP DATABASE IF EXISTS {}",
            db.warehouse.database()
        ))
        .execute()
        .await
        .expect("drop the database");
}
