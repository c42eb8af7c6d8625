//! The migrations in cluster mode against the local cluster (`scripts/services
//! up --cluster`: ZooKeeper and 2 shards x 2 replicas of ClickHouse 18.16),
//! or the one named by `USAGE_TEST_CLUSTER_URL` (a node's HTTP URL) and
//! `USAGE_TEST_CLUSTER` (the cluster's name).

use std::path::PathBuf;
use usage_store::{cluster, migrate, Warehouse, WarehouseSettings};

fn warehouse(tag: &str) -> Warehouse {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .subsec_nanos();
    Warehouse::new(WarehouseSettings {
        url: std::env::var("USAGE_TEST_CLUSTER_URL")
            .unwrap_or_else(|_| "http://127.0.0.1:19113".into()),
        database: format!("test_{tag}_{}_{nanos}", std::process::id()),
        cluster: Some(std::env::var("USAGE_TEST_CLUSTER").unwrap_or_else(|_| "local".into())),
        ..WarehouseSettings::default()
    })
    .expect("valid settings")
}

async fn number(warehouse: &Warehouse, sql: &str) -> u64 {
    warehouse
        .client()
        .query_raw(sql)
        .fetch_one::<u64>()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[tokio::test]
async fn every_node_gets_the_schema_and_records_it_and_rows_land_on_their_shard() {
    let warehouse = warehouse("cluster_migrate");
    let name = warehouse.cluster().expect("cluster mode").to_owned();
    let db = warehouse.database().to_owned();
    let migrations = migrate::load_dir(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas/clickhouse"),
    )
    .expect("migrations load");
    let latest = migrations.last().expect("a migration").version;

    let first = migrate::apply(&warehouse, &migrations)
        .await
        .expect("first run (is the cluster up? scripts/services up --cluster)");
    assert_eq!(first.applied.len(), migrations.len());
    let nodes = cluster::nodes(&warehouse, &name).await.expect("nodes");
    assert_eq!(nodes.len(), 4, "2 shards x 2 replicas: {nodes:?}");
    for node in &nodes {
        let remote = |table: &str| format!("remote('{}', {db}.{table})", node.address());
        assert_eq!(
            number(
                &warehouse,
                &format!(
                    "SELECT toUInt64(max(version)) FROM {}",
                    remote("schema_migrations")
                )
            )
            .await,
            u64::from(latest),
            "{node:?} records the migrations"
        );
        let engines: Vec<(String, String)> = warehouse
            .client()
            .query_raw(&format!(
                "SELECT name, engine FROM remote('{}', system.tables) WHERE database = '{db}' \
                 AND name IN ('authorizations', 'authorizations_local', 'usage_months_mv', 'usage_days') \
                 ORDER BY name",
                node.address()
            ))
            .fetch_all()
            .await
            .expect("tables of a node");
        assert_eq!(
            engines,
            vec![
                ("authorizations".into(), "Distributed".into()),
                (
                    "authorizations_local".into(),
                    "ReplicatedReplacingMergeTree".into()
                ),
                ("usage_days".into(), "View".into()),
                ("usage_months_mv".into(), "MaterializedView".into()),
            ],
            "{node:?}"
        );
    }

    // Every session writes synchronously through the Distributed tables and
    // without block deduplication (a deduplicated retry skips the rollup
    // views on 18.16: see usage-store's cluster module).
    let settings: Vec<(String, String)> = warehouse
        .client()
        .query_raw(
            "SELECT name, value FROM system.settings WHERE name IN \
             ('insert_deduplicate', 'insert_distributed_sync', 'load_balancing') ORDER BY name",
        )
        .fetch_all()
        .await
        .expect("the session's settings");
    assert_eq!(
        settings,
        vec![
            ("insert_deduplicate".into(), "0".into()),
            ("insert_distributed_sync".into(), "1".into()),
            ("load_balancing".into(), "in_order".into()),
        ]
    );

    // A second run finds everything applied on every node.
    let second = migrate::apply(&warehouse, &migrations)
        .await
        .expect("second run");
    assert!(second.applied.is_empty());
    assert_eq!(second.schema_version(), Some(latest));

    // Rows written through the Distributed table land on their user's shard,
    // on both of its replicas, and the rollups follow on every node.
    let users: Vec<String> = (0..40).map(|i| format!("user-{i}")).collect();
    let values: Vec<String> = users
        .iter()
        .map(|u| {
            format!(
                "('team', '{u}', 'product', 'seat', '2024-03-0{}')",
                1 + u.len() % 5
            )
        })
        .collect();
    warehouse
        .client()
        .query_raw(&format!(
            "INSERT INTO daily_usage (team_id, user_id, product, access, usage_date) VALUES {}",
            values.join(", ")
        ))
        .execute()
        .await
        .expect("insert through the Distributed table");
    assert_eq!(
        number(&warehouse, "SELECT count() FROM daily_usage").await,
        40
    );
    assert_eq!(
        number(&warehouse, "SELECT count() FROM usage_months").await,
        40
    );
    let mut per_shard = [0u64; 2];
    for node in &nodes {
        let sql = format!(
            "SELECT count() FROM remote('{}', {db}.daily_usage_local)",
            node.address()
        );
        let mut local = number(&warehouse, &sql).await;
        for _ in 0..100 {
            if node.replica == 1 || local == per_shard[node.shard as usize - 1] {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            local = number(&warehouse, &sql).await;
        }
        if node.replica == 1 {
            per_shard[node.shard as usize - 1] = local;
        } else {
            assert_eq!(
                local,
                per_shard[node.shard as usize - 1],
                "{node:?} replicates its shard"
            );
        }
        let rollup = format!(
            "SELECT count() FROM remote('{}', {db}.usage_months_local)",
            node.address()
        );
        // Its own replicated table: on the second replica it arrives on its own.
        let mut rolled = number(&warehouse, &rollup).await;
        for _ in 0..100 {
            if rolled == local {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            rolled = number(&warehouse, &rollup).await;
        }
        assert_eq!(rolled, local, "{node:?}: the rollup follows the rows");
    }
    assert_eq!(per_shard.iter().sum::<u64>(), 40);
    assert!(
        per_shard.iter().all(|&n| n > 0),
        "both shards hold users: {per_shard:?}"
    );
    let sharded = format!(
        "SELECT uniqExact(user_id) FROM remote('{}', {db}.daily_usage_local) WHERE cityHash64(user_id) % 2 != 0",
        nodes[0].address()
    );
    assert_eq!(
        number(&warehouse, &sharded).await,
        0,
        "shard 1 holds the users whose hash is even"
    );

    warehouse
        .server_client()
        .query_raw(&format!("DROP DATABASE IF EXISTS {db} ON CLUSTER {name}"))
        .execute()
        .await
        .expect("drop the database on every node");
}
