//! Exports: the report and the raw usage as CSV or XLSX files, the store
//! that keeps them on disk for 14 days (rule 8) and its sweeper.
//!
//! - [`RowWriter`]: rows to CSV or XLSX, written one by one as they come
//!   (`render`);
//! - [`write_rows`]: an export's file written as its rows are read, through
//!   a bounded queue to a blocking writer, into a temporary file put in
//!   place only when whole (`stream`);
//! - [`ExportStore`]: `<id>.<csv|xlsx>` files with a `<id>.json` sidecar
//!   holding their [`ExportMeta`], written atomically (`store`);
//! - [`ExportStore::sweep`]: deletes expired exports, leaving a tombstone so
//!   a late download answers 410 rather than 404 (`sweep`);
//! - [`downloadable`]: who may download what, and until when (here);
//! - exports written in the background: accepted `pending`, then
//!   `running`, `ready` or `failed`, a heartbeat while unfinished and
//!   [`ExportStore::settle`] for those whose writer stopped (`jobs`).

mod jobs;
mod render;
mod store;
mod stream;
mod sweep;

use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rust_xlsxwriter::XlsxError;
use usage_core::admin::export_expired;

use crate::error::ApiError;

pub use jobs::{HEARTBEAT, INTERRUPTED, STALE_AFTER};
pub use render::{
    Cell, Record, RowWriter, REPORT_COLUMNS, SEAT_USAGE_COLUMNS, TOKEN_USAGE_COLUMNS,
};
pub use store::{file_name, scheduled_file_name, ExportMeta, ExportStore};
pub use stream::{write_rows, writer_stopped, PartFile, Written, PROGRESS_EVERY, QUEUE_CHUNKS};
pub use sweep::{SweepReport, STRAY_TEMP_AGE, TOMBSTONE_RETENTION};

/// Why an export could not be rendered, stored or read.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A file of the store could not be read, written, renamed or deleted.
    #[error("export store I/O on {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The XLSX writer failed (e.g. more rows than a worksheet holds).
    #[error("writing XLSX: {0}")]
    Xlsx(#[from] XlsxError),
    /// The CSV writer failed.
    #[error("writing CSV: {0}")]
    Csv(#[from] csv::Error),
    /// A sidecar could not be written or parsed.
    #[error("export sidecar {}: {source}", path.display())]
    Json {
        /// The sidecar.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// An export id that is not a UUID (never looked up on disk).
    #[error("not an export id: {0:?}")]
    InvalidId(String),
}

impl ExportError {
    fn io(path: &Path, source: io::Error) -> ExportError {
        ExportError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Why an admin may not download an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// Missing, or another admin's: both answer the same (404), so an id
    /// does not reveal that an export exists.
    #[error("no such export")]
    NotFound,
    /// Older than 14 days, or already swept (410).
    #[error("the export has expired")]
    Expired,
}

impl Denied {
    /// The API's answer: `not_found` (404) or `export_expired` (410).
    pub fn api_error(self) -> ApiError {
        match self {
            Denied::NotFound => ApiError::not_found("no such export"),
            Denied::Expired => ApiError::export_expired(),
        }
    }
}

/// Whether `admin_id` may download the export at `now`: only its owner,
/// only before it expires (rules 8 and 9).
pub fn downloadable(meta: &ExportMeta, admin_id: &str, now: DateTime<Utc>) -> Result<(), Denied> {
    // Ownership first: another admin learns nothing, not even expiry.
    if meta.owner_admin_id != admin_id {
        return Err(Denied::NotFound);
    }
    if meta.deleted_at.is_some() || export_expired(meta.created_at, now) {
        return Err(Denied::Expired);
    }
    Ok(())
}

/// Scratch stores for the tests of the store and the sweeper.
#[cfg(test)]
mod scratch {
    use std::fs;
    use std::path::PathBuf;

    use chrono::{DateTime, Utc};
    use uuid::Uuid;

    use super::{ExportMeta, ExportStore};
    use crate::model::{ExportFormat, ExportKind, ReportParams};

    pub(super) fn now() -> DateTime<Utc> {
        // The store's sweep compares real file times with `now`.
        Utc::now()
    }

    pub(super) struct TempDir(pub(super) PathBuf);

    impl TempDir {
        pub(super) fn new(tag: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!(
                "usage-report-export-{tag}-{}",
                Uuid::new_v4().simple()
            ));
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    pub(super) fn save(store: &ExportStore, owner: &str, created: DateTime<Utc>) -> ExportMeta {
        store
            .save(
                owner,
                ExportKind::Report,
                ExportFormat::Csv,
                ReportParams {
                    range: Some("last_30_days".into()),
                    ..ReportParams::default()
                },
                None,
                store.written(1, b"user_key\r\nx\r\n").expect("written"),
                created,
            )
            .expect("saved")
    }
}
