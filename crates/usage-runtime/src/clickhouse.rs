//! The ClickHouse options every binary takes.

use usage_store::WarehouseSettings;

/// Where ClickHouse is and who we are to it.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "ClickHouse")]
pub struct ClickHouseArgs {
    /// ClickHouse HTTP endpoint.
    #[arg(
        long,
        env = "USAGE_CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:8123"
    )]
    pub clickhouse_url: String,
    /// ClickHouse user.
    #[arg(long, env = "USAGE_CLICKHOUSE_USER", default_value = "default")]
    pub clickhouse_user: String,
    /// ClickHouse password (prefer the environment or --clickhouse-password-file; never logged).
    #[arg(
        long,
        env = "USAGE_CLICKHOUSE_PASSWORD",
        default_value = "",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub clickhouse_password: String,
    /// File holding the ClickHouse password (overrides --clickhouse-password).
    #[arg(long, env = "USAGE_CLICKHOUSE_PASSWORD_FILE")]
    pub clickhouse_password_file: Option<std::path::PathBuf>,
    /// The database holding the pipeline's tables (created by `migrate`).
    #[arg(long, env = "USAGE_CLICKHOUSE_DATABASE", default_value = "usage")]
    pub clickhouse_database: String,
    /// The ClickHouse cluster (a `<remote_servers>` entry) the schema spans:
    /// `migrate` creates replicated tables on every node and Distributed
    /// tables over them; the binaries write and read through those. Unset:
    /// one server.
    #[arg(long, env = "USAGE_CLICKHOUSE_CLUSTER")]
    pub clickhouse_cluster: Option<String>,
}

impl ClickHouseArgs {
    /// The settings, with the password read from its file if one is given.
    pub fn settings(&self) -> std::io::Result<WarehouseSettings> {
        let password = match &self.clickhouse_password_file {
            Some(path) => std::fs::read_to_string(path)?.trim_end().to_owned(),
            None => self.clickhouse_password.clone(),
        };
        Ok(WarehouseSettings {
            url: self.clickhouse_url.clone(),
            user: self.clickhouse_user.clone(),
            password,
            database: self.clickhouse_database.clone(),
            cluster: self
                .clickhouse_cluster
                .clone()
                .filter(|name| !name.is_empty()),
        })
    }
}
