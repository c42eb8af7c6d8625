//! Cluster mode: the same schema over a replicated, sharded ClickHouse
//! cluster (a `<remote_servers>` entry, ZooKeeper, `<macros>` with `shard`
//! and `replica` on every node).
//!
//! The migration files are written for one server and are never edited
//! (their checksums are recorded); [`cluster_form`] derives each statement's
//! cluster form from its text:
//!
//! - `CREATE TABLE t (...) ENGINE = XMergeTree[(args)] ...` becomes a local
//!   table `t_local` on every node, `ReplicatedXMergeTree` with the ZooKeeper
//!   path `/clickhouse/tables/{shard}/<database>/t_local` and replica
//!   `{replica}`, plus `t` itself, a `Distributed` table over `t_local`
//!   sharded by `cityHash64(user_id)` (or, for a table without `user_id` in
//!   its sorting key, by the key's first column): every row of a user, and
//!   every copy of a row, lives on one shard, so per-key collapsing (`FINAL`,
//!   `argMax`, the rollups' merges) is complete on its shard. Readers and
//!   writers keep today's table names.
//! - `CREATE MATERIALIZED VIEW v TO t AS SELECT ... FROM s` becomes a view
//!   on every node from `s_local` into `t_local`: the rollups are built per
//!   node from the rows that node stores (a row's copies are on one shard).
//! - `CREATE VIEW v AS SELECT ... FROM t` becomes the same view on every
//!   node, over the Distributed `t`.
//! - `INSERT ... SELECT` (a backfill) runs once, on the node the client
//!   talks to, through the Distributed tables: the rows land on the shards
//!   that own them, by the same sharding key as their sources.
//!
//! Every `CREATE` is `ON CLUSTER` (ClickHouse's distributed DDL queue in
//! ZooKeeper, `<distributed_ddl>` in the server config): 18.16 runs it on
//! every node, waits for all of them (`distributed_ddl_task_timeout`) and
//! fails if one fails; a node that is down picks the task up when it returns.
//! Each node records its applied migrations in its own `schema_migrations`,
//! written and read through the `remote()` table function on the node list
//! of `system.clusters`.

use crate::migrate::MIGRATIONS_TABLE;
use crate::{StoreError, Warehouse};
use clickhouse::Client;

/// The suffix of the per-node tables behind the Distributed ones.
pub const LOCAL_SUFFIX: &str = "_local";

/// The session settings of every client in cluster mode.
///
/// - `insert_distributed_sync=1`: an INSERT into a Distributed table returns
///   only when every shard's replica holds its rows (else it fails, and the
///   caller retries the identical block), so a batch's offsets are committed
///   after every shard has its rows.
/// - `load_balancing=in_order`: reads and writes of a shard go to its first
///   live replica (the one listed first), so what the ingest writes it reads
///   back from the same replica while that replica lives; the next one takes
///   over when it does not answer.
/// - `distributed_product_mode=global`: a subquery over a Distributed table
///   inside a distributed query runs once and is shipped to the shards.
/// - `insert_deduplicate=0`: a retried insert is written again rather than
///   dropped as a copy of a block the replicated table has seen. On 18.16 a
///   block dropped that way skips the table's materialized views: if a
///   replica wrote `daily_usage` and died before its rollup views wrote
///   theirs, the retry (on the other replica) would be dropped and the
///   rollups would never get those rows (the cluster test saw exactly that).
///   Written again, the copies change nothing: every table collapses them
///   (ReplacingMergeTree keyed by the row's identity, idempotent aggregates),
///   which is what keeps retries exact on a single server too.
pub(crate) fn client_settings(client: Client) -> Client {
    client
        .with_setting("insert_deduplicate", "0")
        .with_setting("insert_distributed_sync", "1")
        .with_setting("load_balancing", "in_order")
        .with_setting("distributed_product_mode", "global")
}

/// A node of the cluster as `system.clusters` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, clickhouse::Row)]
pub struct Node {
    pub shard: u32,
    pub replica: u32,
    pub host: String,
    /// The native (TCP) port, what `remote()` takes.
    pub port: u16,
}

impl Node {
    /// `host:port` for `remote()`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// The nodes of the warehouse's cluster, by shard and replica.
pub async fn nodes(warehouse: &Warehouse, cluster: &str) -> Result<Vec<Node>, StoreError> {
    let nodes = warehouse
        .server_client()
        .query(
            "SELECT shard_num, replica_num, host_name, port FROM system.clusters \
             WHERE cluster = ? ORDER BY shard_num, replica_num",
        )
        .bind(cluster)
        .fetch_all::<Node>()
        .await?;
    if nodes.is_empty() {
        return Err(StoreError::UnknownCluster(cluster.to_owned()));
    }
    Ok(nodes)
}

/// `remote('host:port', db.table, 'user', 'password')`, the values quoted.
/// (18.16 refuses the five-argument form `remote(addr, db, table, user,
/// password)` in `INSERT INTO FUNCTION`, and ignores a column list there:
/// inserts give every column in the table's order.)
pub(crate) fn remote_table(node: &Node, warehouse: &Warehouse, table: &str) -> String {
    let settings = warehouse.settings();
    format!(
        "remote({}, {}.{table}, {}, {})",
        quote(&node.address()),
        warehouse.database(),
        quote(&settings.user),
        quote(&settings.password)
    )
}

/// A ClickHouse string literal.
pub(crate) fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            other => out.push(other),
        }
    }
    out.push('\'');
    out
}

/// The DDL that creates the database and the per-node record table.
pub(crate) fn bootstrap(database: &str, cluster: &str) -> [String; 2] {
    [
        format!("CREATE DATABASE IF NOT EXISTS {database} ON CLUSTER {cluster}"),
        format!(
            "CREATE TABLE IF NOT EXISTS {database}.{MIGRATIONS_TABLE} ON CLUSTER {cluster} (\
                version UInt32, name String, checksum String, applied_at DateTime('UTC')\
             ) ENGINE = ReplacingMergeTree ORDER BY version"
        ),
    ]
}

/// The cluster form of one statement of a migration (see the module docs).
pub fn cluster_form(
    statement: &str,
    database: &str,
    cluster: &str,
) -> Result<Vec<String>, StoreError> {
    let unsupported = |reason: &str| StoreError::NoClusterForm {
        statement: statement.chars().take(80).collect(),
        reason: reason.to_owned(),
    };
    let words: Vec<&str> = statement.split_whitespace().collect();
    let upper: Vec<String> = words.iter().take(8).map(|w| w.to_uppercase()).collect();
    let starts = |prefix: &[&str]| {
        upper.len() >= prefix.len() && prefix.iter().zip(&upper).all(|(p, w)| *p == w)
    };
    if starts(&["CREATE", "TABLE", "IF", "NOT", "EXISTS"]) {
        table(statement, database, cluster).ok_or_else(|| {
            unsupported("a CREATE TABLE must read `CREATE TABLE IF NOT EXISTS name (...) ENGINE = XMergeTree[(...)] ... ORDER BY ...`")
        })
    } else if starts(&["CREATE", "MATERIALIZED", "VIEW", "IF", "NOT", "EXISTS"]) {
        materialized_view(statement, database, cluster)
            .map(|s| vec![s])
            .ok_or_else(|| {
                unsupported("a materialized view must read `CREATE MATERIALIZED VIEW IF NOT EXISTS v TO t AS SELECT ... FROM s ...`")
            })
    } else if starts(&["CREATE", "VIEW", "IF", "NOT", "EXISTS"]) {
        view(statement, database, cluster)
            .map(|s| vec![s])
            .ok_or_else(|| {
                unsupported("a view must read `CREATE VIEW IF NOT EXISTS v AS SELECT ...`")
            })
    } else if starts(&["INSERT", "INTO"]) {
        Ok(vec![statement.to_owned()])
    } else {
        Err(unsupported(
            "only CREATE TABLE/VIEW/MATERIALIZED VIEW IF NOT EXISTS and INSERT have a cluster form; \
             add one in usage-store's cluster.rs",
        ))
    }
}

/// The identifier at the start of `text` (after spaces), and the rest.
fn identifier(text: &str) -> Option<(&str, &str)> {
    let text = text.trim_start();
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    (end > 0).then(|| (&text[..end], &text[end..]))
}

/// Case-insensitive search for a keyword as a whole word.
fn find_word(text: &str, word: &str) -> Option<usize> {
    let upper = text.to_uppercase();
    let bytes = upper.as_bytes();
    let mut from = 0;
    while let Some(found) = upper[from..].find(word) {
        let at = from + found;
        let before = at == 0 || !is_ident_byte(bytes[at - 1]);
        let after = bytes
            .get(at + word.len())
            .is_none_or(|b| !is_ident_byte(*b));
        if before && after {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The text after the `count`-th whitespace-separated word.
fn after_words(text: &str, count: usize) -> &str {
    let mut rest = text.trim_start();
    for _ in 0..count {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        rest = rest[end..].trim_start();
    }
    rest
}

fn table(statement: &str, database: &str, cluster: &str) -> Option<Vec<String>> {
    let (name, rest) = identifier(after_words(statement, 5))?;
    let engine_at = find_word(rest, "ENGINE")?;
    let columns = rest[..engine_at].trim();
    let after_engine = rest[engine_at + "ENGINE".len()..].trim_start();
    let after_engine = after_engine.strip_prefix('=')?;
    let (engine, mut tail) = identifier(after_engine)?;
    if !engine.ends_with("MergeTree") || engine.starts_with("Replicated") {
        return None;
    }
    let mut args = String::new();
    if let Some(open) = tail.strip_prefix('(') {
        let close = open.find(')')?;
        args = open[..close].trim().to_owned();
        tail = &open[close + 1..];
    }
    let key = sharding_key(tail)?;
    let local = format!("{name}{LOCAL_SUFFIX}");
    let mut replicated_args =
        format!("'/clickhouse/tables/{{shard}}/{database}/{local}', '{{replica}}'");
    if !args.is_empty() {
        replicated_args.push_str(", ");
        replicated_args.push_str(&args);
    }
    Some(vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {database}.{local} ON CLUSTER {cluster}\n{columns}\n\
             ENGINE = Replicated{engine}({replicated_args}){tail}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {database}.{name} ON CLUSTER {cluster} \
             AS {database}.{local} \
             ENGINE = Distributed({cluster}, {database}, {local}, cityHash64({key}))"
        ),
    ])
}

/// `user_id` if the sorting key has it, else the key's first column.
fn sharding_key(tail: &str) -> Option<String> {
    let at = find_word(tail, "ORDER")?;
    let rest = tail[at + "ORDER".len()..].trim_start();
    let rest = rest
        .get(..2)
        .filter(|by| by.eq_ignore_ascii_case("BY"))
        .map(|_| &rest[2..])?;
    let rest = rest.trim_start();
    let columns: Vec<&str> = match rest.strip_prefix('(') {
        Some(inner) => inner[..inner.find(')')?]
            .split(',')
            .map(str::trim)
            .collect(),
        None => vec![identifier(rest)?.0],
    };
    let first = identifier(columns.first()?)?.0;
    let key = if columns.contains(&"user_id") {
        "user_id"
    } else {
        first
    };
    Some(key.to_owned())
}

/// Qualifies every `FROM name` with the database, and `suffix` appended.
fn qualify_sources(select: &str, database: &str, suffix: &str) -> Option<String> {
    let mut out = String::with_capacity(select.len() + 32);
    let mut rest = select;
    while let Some(at) = find_word(rest, "FROM") {
        let after = &rest[at + "FROM".len()..];
        out.push_str(&rest[..at]);
        out.push_str("FROM ");
        if after.trim_start().starts_with('(') {
            rest = after.trim_start();
            continue;
        }
        let (name, tail) = identifier(after)?;
        out.push_str(&format!("{database}.{name}{suffix}"));
        rest = tail;
    }
    out.push_str(rest);
    Some(out)
}

fn materialized_view(statement: &str, database: &str, cluster: &str) -> Option<String> {
    let (name, rest) = identifier(after_words(statement, 6))?;
    let rest = rest.trim_start();
    let rest = rest
        .get(..2)
        .filter(|to| to.eq_ignore_ascii_case("TO"))
        .map(|_| &rest[2..])?;
    let (target, rest) = identifier(rest)?;
    let as_at = find_word(rest, "AS")?;
    if !rest[..as_at].trim().is_empty() {
        return None;
    }
    let select = qualify_sources(&rest[as_at + 2..], database, LOCAL_SUFFIX)?;
    Some(format!(
        "CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.{name} ON CLUSTER {cluster} \
         TO {database}.{target}{LOCAL_SUFFIX} AS{select}"
    ))
}

fn view(statement: &str, database: &str, cluster: &str) -> Option<String> {
    let (name, rest) = identifier(after_words(statement, 5))?;
    let as_at = find_word(rest, "AS")?;
    if !rest[..as_at].trim().is_empty() {
        return None;
    }
    let select = qualify_sources(&rest[as_at + 2..], database, "")?;
    Some(format!(
        "CREATE VIEW IF NOT EXISTS {database}.{name} ON CLUSTER {cluster} AS{select}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_becomes_a_replicated_local_table_and_a_distributed_one() {
        let sql = "CREATE TABLE IF NOT EXISTS assignment_state\n(\n    team_id String,\n    user_id String,\n    version UInt64\n)\nENGINE = ReplacingMergeTree(version)\nORDER BY (team_id, user_id)";
        let out = cluster_form(sql, "usage", "local").expect("a form");
        assert_eq!(
            out[0],
            "CREATE TABLE IF NOT EXISTS usage.assignment_state_local ON CLUSTER local\n\
             (\n    team_id String,\n    user_id String,\n    version UInt64\n)\n\
             ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/usage/assignment_state_local', '{replica}', version)\n\
             ORDER BY (team_id, user_id)"
        );
        assert_eq!(
            out[1],
            "CREATE TABLE IF NOT EXISTS usage.assignment_state ON CLUSTER local AS usage.assignment_state_local \
             ENGINE = Distributed(local, usage, assignment_state_local, cityHash64(user_id))"
        );
    }

    #[test]
    fn tables_without_user_id_shard_by_their_first_key_column() {
        let sql = "CREATE TABLE IF NOT EXISTS teams (team_id String, version UInt64) ENGINE = ReplacingMergeTree(version) ORDER BY team_id";
        let out = cluster_form(sql, "u", "c").expect("a form");
        assert!(out[0].contains("ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/u/teams_local', '{replica}', version) ORDER BY team_id"), "{}", out[0]);
        assert!(out[1].ends_with("cityHash64(team_id))"), "{}", out[1]);
        let plain = "CREATE TABLE IF NOT EXISTS m (a String, b String) ENGINE = ReplacingMergeTree ORDER BY (a, b)";
        let out = cluster_form(plain, "u", "c").expect("a form");
        assert!(out[0].contains("ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/u/m_local', '{replica}') ORDER BY (a, b)"), "{}", out[0]);
        assert!(out[1].ends_with("cityHash64(a))"), "{}", out[1]);
    }

    #[test]
    fn views_read_local_tables_when_materialized_and_distributed_ones_otherwise() {
        let mv = "CREATE MATERIALIZED VIEW IF NOT EXISTS last_access_mv TO last_access AS\nSELECT team_id, max(usage_date) AS last_date\nFROM daily_usage\nGROUP BY team_id";
        assert_eq!(
            cluster_form(mv, "u", "c").expect("a form"),
            vec!["CREATE MATERIALIZED VIEW IF NOT EXISTS u.last_access_mv ON CLUSTER c TO u.last_access_local AS\n\
                  SELECT team_id, max(usage_date) AS last_date\nFROM u.daily_usage_local\nGROUP BY team_id"
                .to_owned()]
        );
        let view = "CREATE VIEW IF NOT EXISTS token_charges AS\nSELECT user_id, toDate(window_start) AS window_date\nFROM flex_windows FINAL";
        assert_eq!(
            cluster_form(view, "u", "c").expect("a form"),
            vec![
                "CREATE VIEW IF NOT EXISTS u.token_charges ON CLUSTER c AS\n\
                  SELECT user_id, toDate(window_start) AS window_date\nFROM u.flex_windows FINAL"
                    .to_owned()
            ]
        );
    }

    #[test]
    fn inserts_stay_and_other_statements_are_refused() {
        let insert = "INSERT INTO a (x) SELECT x FROM b";
        assert_eq!(
            cluster_form(insert, "u", "c").expect("a form"),
            vec![insert.to_owned()]
        );
        for other in [
            "ALTER TABLE a ADD COLUMN b String",
            "CREATE TABLE a (x String) ENGINE = Memory",
            "DROP TABLE a",
        ] {
            assert!(cluster_form(other, "u", "c").is_err(), "{other}");
        }
    }

    #[test]
    fn every_migration_of_the_repository_has_a_cluster_form() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/clickhouse");
        for migration in crate::migrate::load_dir(&dir).expect("migrations") {
            for statement in &migration.statements {
                let forms = cluster_form(statement, "usage", "local")
                    .unwrap_or_else(|e| panic!("{}: {e}", migration.name));
                assert!(!forms.is_empty());
            }
        }
    }

    #[test]
    fn literals_are_escaped() {
        assert_eq!(quote("a'b\\c"), "'a\\'b\\\\c'");
    }
}
