//! Support for the end-to-end tests: the real services they talk to, scratch
//! topics and databases of their own, and the project's binaries as
//! processes (started with `usage-testkit`, the harness helpers tests,
//! benchmarks and the fault suite share).

pub mod cluster;
pub mod modern_clickhouse;
pub mod report;
pub mod rollups;
pub mod scenario;
pub mod services;

pub use usage_testkit::repo_root;
