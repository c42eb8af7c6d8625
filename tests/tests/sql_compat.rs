//! Every migration also loads into a current ClickHouse (chDB 26.x), not only
//! into the 18.16 server the other tests use.

use usage_store::migrate;
use usage_tests::modern_clickhouse::{self, Statement};

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
