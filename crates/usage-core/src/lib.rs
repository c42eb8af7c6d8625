//! The license-usage domain as pure functions.
//!
//! Nothing in this crate does I/O, spawns tasks or reads a clock: time is
//! always an argument. The ingest consumers and the report service are thin
//! edges around it; this is where correctness lives.
//!
//! - [`event`]: the inbound event contract (the Rust side of `schemas/events/`).

pub mod event;
