use crate::{check_identifier, ServerVersion, StoreError};
use clickhouse::Client;

/// Where the ClickHouse server is and who we are to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarehouseSettings {
    /// HTTP endpoint, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    pub user: String,
    pub password: String,
    /// The database holding every table of the pipeline.
    pub database: String,
    /// The cluster (a `<remote_servers>` entry of the server) the schema
    /// spans, or `None` for a single server. See [`crate::cluster`].
    pub cluster: Option<String>,
}

impl Default for WarehouseSettings {
    fn default() -> Self {
        WarehouseSettings {
            url: "http://127.0.0.1:8123".into(),
            user: "default".into(),
            password: String::new(),
            database: "usage".into(),
            cluster: None,
        }
    }
}

/// A connection to the pipeline's ClickHouse database.
#[derive(Clone)]
pub struct Warehouse {
    settings: WarehouseSettings,
    client: Client,
}

impl std::fmt::Debug for Warehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Warehouse")
            .field("url", &self.settings.url)
            .field("user", &self.settings.user)
            .field("database", &self.settings.database)
            .field("cluster", &self.settings.cluster)
            .finish_non_exhaustive()
    }
}

impl Warehouse {
    /// Builds a client for `settings.database` (which need not exist yet).
    pub fn new(settings: WarehouseSettings) -> Result<Warehouse, StoreError> {
        check_identifier(&settings.database)?;
        if let Some(cluster) = &settings.cluster {
            check_identifier(cluster)?;
        }
        let client = Self::base_client(&settings).with_database(settings.database.clone());
        Ok(Warehouse { settings, client })
    }

    fn base_client(settings: &WarehouseSettings) -> Client {
        let client = Client::default()
            .with_url(settings.url.clone())
            .with_user(settings.user.clone())
            .with_password(settings.password.clone())
            // 18.16 has no RowBinaryWithNamesAndTypes; plain RowBinary works everywhere.
            .with_validation(false);
        match settings.cluster {
            Some(_) => crate::cluster::client_settings(client),
            None => client,
        }
    }

    /// The cluster the schema spans, if any.
    pub fn cluster(&self) -> Option<&str> {
        self.settings.cluster.as_deref()
    }

    /// The client bound to the pipeline's database.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A client bound to the server's default database (for `CREATE DATABASE`).
    pub fn server_client(&self) -> Client {
        Self::base_client(&self.settings)
    }

    pub fn settings(&self) -> &WarehouseSettings {
        &self.settings
    }

    pub fn database(&self) -> &str {
        &self.settings.database
    }

    /// Asks the server for its version.
    pub async fn server_version(&self) -> Result<ServerVersion, StoreError> {
        let text: String = self
            .server_client()
            .query("SELECT version()")
            .fetch_one()
            .await?;
        text.parse()
    }
}
