//! Every migration also loads into a current ClickHouse (chDB 26.x), not only
//! into the 18.16 server the other tests use.

use usage_store::migrate;
use usage_tests::modern_clickhouse::{self, Statement};
use usage_tests::rollups;

/// Every statement of every migration, in order, named.
fn migration_statements() -> Vec<Statement> {
    let migrations = migrate::load_dir(&usage_tests::repo_root().join("schemas/clickhouse"))
        .expect("migrations load");
    assert!(!migrations.is_empty());
    let mut statements = Vec::new();
    for m in &migrations {
        for (i, sql) in m.statements.iter().enumerate() {
            statements.push(Statement {
                name: format!("{:04}_{} statement {}", m.version, m.name, i + 1),
                sql: sql.clone(),
            });
        }
    }
    statements
}

#[test]
fn every_migration_loads_into_a_current_clickhouse() {
    let statements = migration_statements();
    // Twice: the statements must be idempotent there too.
    let twice: Vec<Statement> = statements.iter().chain(&statements).cloned().collect();
    all_run(&twice);
}

/// Runs `statements` in chDB and asserts that each one ran.
fn all_run(statements: &[Statement]) {
    let run = modern_clickhouse::run("usage", statements).expect("chDB runs");
    assert!(
        run.version.starts_with("2"),
        "a current engine: {}",
        run.version
    );
    assert_eq!(run.results.len(), statements.len());
    let failures = run.failures();
    assert!(
        failures.is_empty(),
        "on ClickHouse {}:\n{}",
        run.version,
        failures.join("\n")
    );
}

#[test]
fn the_check_does_catch_sql_a_current_clickhouse_refuses() {
    let run = modern_clickhouse::run(
        "usage",
        &[Statement {
            name: "not sql".into(),
            sql: "CREATE TABEL nope".into(),
        }],
    )
    .expect("chDB runs");
    assert_eq!(run.failures().len(), 1);
}

#[test]
fn every_report_query_runs_on_a_current_clickhouse() {
    let mut statements = migration_statements();
    let schema = statements.len();
    for (name, sql) in usage_report::queries::all_for_compatibility() {
        statements.push(Statement {
            name: format!("report query: {name}"),
            sql: sql.with_literals(),
        });
    }
    for (i, sql) in usage_report::schedule::statements_for_compatibility()
        .into_iter()
        .enumerate()
    {
        statements.push(Statement {
            name: format!("schedule store query {}", i + 1),
            sql,
        });
    }
    assert!(statements.len() > schema);
    all_run(&statements);
}

/// The report's rollups (migration 0006) on a current ClickHouse too: a
/// database holding data when it is migrated gets them backfilled, the
/// materialized views keep them, and the report's queries over them answer
/// what the day-level tables answer (`tests/report_rollups.rs` holds the same
/// on 18.16).
#[test]
fn the_rollups_answer_as_the_day_level_tables_on_a_current_clickhouse() {
    let statements = migration_statements();
    let is_rollups = |s: &Statement| s.name.starts_with(&format!("{:04}_", rollups::ROLLUPS));
    let (before, after): (Vec<Statement>, Vec<Statement>) =
        statements.iter().cloned().partition(|s| !is_rollups(s));
    let insert = |table: &str, rows: &[String]| Statement {
        name: format!("insert into {table}"),
        sql: format!("INSERT INTO {table} VALUES {}", rows.join(", ")),
    };
    let mut rng = rollups::Rng(0xC0DE_0006);
    let (old_usage, old_windows) = (
        rollups::usage_rows(&mut rng, 1_500),
        rollups::window_rows(&mut rng, 400),
    );
    let (new_usage, new_windows) = (
        rollups::usage_rows(&mut rng, 800),
        rollups::window_rows(&mut rng, 200),
    );
    let mut run: Vec<Statement> = before;
    run.push(insert("daily_usage", &old_usage));
    run.push(insert("daily_usage", &old_usage[..500]));
    run.push(insert("flex_windows", &old_windows));
    run.push(insert("flex_windows", &old_windows[..100]));
    run.extend(after);
    run.push(insert("daily_usage", &new_usage));
    run.push(insert("daily_usage", &old_usage[300..900]));
    run.push(insert("flex_windows", &new_windows));
    run.push(insert("flex_windows", &old_windows[50..250]));
    let setup = run.len();
    let sorted = |sql: String, columns: &str| format!("SELECT * FROM ({sql}) ORDER BY {columns}");
    for (i, q) in rollups::queries().iter().enumerate() {
        let pairs = [
            (
                "days used",
                q.days().with_literals(),
                rollups::days_from_daily_usage(q),
            ),
            (
                "last accessed",
                q.last_access().with_literals(),
                rollups::last_from_daily_usage(q),
            ),
            (
                "tokens",
                q.tokens().with_literals(),
                rollups::tokens_from_flex_windows(q),
            ),
        ];
        for (what, rollup, day_level) in pairs {
            let columns = if what == "tokens" {
                "1, 2, 3, 4"
            } else {
                "1, 2, 3, 4, 5"
            };
            run.push(Statement {
                name: format!("query {i}, {what}, from the rollup ({q:?})"),
                sql: sorted(rollup, columns),
            });
            run.push(Statement {
                name: format!("query {i}, {what}, from the day-level table"),
                sql: sorted(day_level, columns),
            });
        }
    }
    let outcome = modern_clickhouse::run("usage", &run).expect("chDB runs");
    let failures = outcome.failures();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let mut lines = 0;
    for pair in outcome.results[setup..].chunks(2) {
        let (rollup, day_level) = (&pair[0], &pair[1]);
        assert_eq!(
            rollup.rows, day_level.rows,
            "on ClickHouse {}: {}",
            outcome.version, rollup.name
        );
        lines += rollup.rows.as_deref().unwrap_or("").lines().count();
    }
    assert!(lines > 1_000, "rows compared: {lines}");
}
