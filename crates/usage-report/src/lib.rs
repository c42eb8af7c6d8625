//! The usage report service: the report over HTTP for admins, from the
//! rollups the consumers keep in ClickHouse, with exports, schedules and
//! unassign requests.
//!
//! - [`model`]: the request parameters and the JSON shapes (stable names);
//! - [`admins`]: bearer tokens, roles and teams;
//! - [`queries`]: the SQL (fixed texts, bound parameters);
//! - [`report`]: rows and tiles, with the rules from `usage-core`;
//! - [`export`]: CSV/XLSX files, their store and the 14-day sweeper;
//! - [`schedule`]: scheduled exports and their store;
//! - [`mail`]: the "report ready" emails and their outbox;
//! - [`messages`]: the Kafka messages the service publishes;
//! - [`openapi`]: the `/openapi.json` document, derived from the types;
//! - [`error`]: errors as JSON with stable codes.

pub mod admins;
pub mod error;
pub mod export;
pub mod mail;
pub mod messages;
pub mod model;
pub mod openapi;
pub mod page;
pub mod queries;
mod records;
pub mod report;
pub mod schedule;
