//! Support for the end-to-end tests: the real services they talk to, scratch
//! topics and databases of their own, and the project's binaries as processes.

pub mod modern_clickhouse;
pub mod report;
pub mod scenario;
pub mod services;

use std::path::PathBuf;

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}
