//! The harness helpers shared by the end-to-end tests (`tests/`), the
//! benchmarks (`bench/`) and the fault suite (`faults/`): the one home of
//! each, so that a fix (such as the choice of free ports) reaches all three.
//!
//! - [`binaries`]: the workspace's binaries, built with cargo;
//! - [`process`]: a child process killed when dropped, signals, logs;
//! - [`ingest`] and [`report`]: `usage-ingest` and `usage-report` started
//!   with the flags every harness gives them;
//! - [`ports`]: free ports below the kernel's ephemeral range;
//! - [`services`]: where the broker and ClickHouse are;
//! - [`topics`]: topics created and deleted;
//! - [`clickhouse`]: databases with the schema applied, queries;
//! - [`metrics`]: Prometheus text scraped and read;
//! - [`memory`]: VmRSS and VmHWM of a process;
//! - [`stats`]: percentiles and medians;
//! - [`host`]: the machine's load and CPU, a process's CPU time, who listens on a port.
//!
//! Errors are `anyhow` errors throughout: this is the harness's edge.

#![warn(missing_docs)]

pub mod binaries;
pub mod clickhouse;
pub mod host;
pub mod ingest;
pub mod memory;
pub mod metrics;
pub mod ports;
pub mod process;
pub mod report;
pub mod services;
pub mod stats;
pub mod topics;

use std::path::PathBuf;

/// The repository's root directory (this crate is `crates/usage-testkit`).
pub fn repo_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .map(PathBuf::from)
        .unwrap_or(manifest)
}
