//! What every binary of the pipeline shares at its edge.
//!
//! - [`config`]: one typed configuration per binary, declared once with `clap`
//!   (so `--help` explains every option), read from a TOML file with
//!   environment and command-line overrides.
//! - [`clickhouse`]: the ClickHouse options every binary takes.
//! - [`logging`]: `tracing` to stderr, human-readable or JSON.
//! - [`signal`]: the stop request (SIGTERM, Ctrl-C).

pub mod clickhouse;
pub mod config;
pub mod logging;
pub mod signal;
