//! The last error of each failing schedule, kept on disk so that its owner
//! sees why it did not run (`last_error` of the API and the page), across
//! restarts and from every instance that shares the exports directory.
//!
//! One file per failing schedule, `<schedule_id>.json` in a directory of
//! its own (`schedule-runs/` under the exports directory), written
//! atomically; a successful run removes it. Only UUIDs reach a path.

use std::io;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::records::{open_private_dir, uuid_stem, write_atomic};

/// Why a schedule's last run failed. The schedule stays due: the scheduler
/// tries it again on its next pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = ScheduleRunError)]
pub struct RunError {
    /// When the run failed.
    pub at: DateTime<Utc>,
    /// The stable error code of the failure, as the API answers it (e.g.
    /// `forbidden` for a team the admin no longer administers).
    pub error: String,
    /// What went wrong, for the admin.
    pub message: String,
}

/// The last errors of failing schedules, on disk.
#[derive(Debug, Clone)]
pub struct RunLog {
    dir: PathBuf,
}

impl RunLog {
    /// The log in `dir`, created (private to the service's user) if missing.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<RunLog> {
        let dir = dir.into();
        open_private_dir(&dir)?;
        Ok(RunLog { dir })
    }

    fn path(&self, schedule_id: &str) -> Option<PathBuf> {
        uuid_stem(schedule_id).map(|stem| self.dir.join(format!("{stem}.json")))
    }

    /// Records that the schedule's run failed (replacing an older error).
    pub fn failed(&self, schedule_id: &str, error: &RunError) -> io::Result<()> {
        let Some(path) = self.path(schedule_id) else {
            return Ok(());
        };
        let json = serde_json::to_vec(error).map_err(io::Error::other)?;
        write_atomic(&self.dir, &path, &json)
    }

    /// Records that the schedule ran (or was deleted): its last error is
    /// forgotten.
    pub fn succeeded(&self, schedule_id: &str) -> io::Result<()> {
        let Some(path) = self.path(schedule_id) else {
            return Ok(());
        };
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The schedule's last error, if its last run failed. An unreadable
    /// record is logged and reads as none.
    pub async fn last_error(&self, schedule_id: &str) -> Option<RunError> {
        let path = self.path(schedule_id)?;
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unreadable schedule run record");
                return None;
            }
        };
        serde_json::from_slice(&bytes)
            .map_err(|e| {
                tracing::warn!(path = %path.display(), error = %e, "unreadable schedule run record");
            })
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[tokio::test]
    async fn errors_are_kept_until_a_run_succeeds() {
        let dir = std::env::temp_dir().join(format!("schedule-runs-{}", Uuid::new_v4().simple()));
        let log = RunLog::open(&dir).expect("opened");
        let id = Uuid::new_v4().to_string();
        assert_eq!(log.last_error(&id).await, None);
        let error = RunError {
            at: DateTime::from_timestamp(1_800_000_000, 0).expect("time"),
            error: "forbidden".into(),
            message: "you do not administer team 201".into(),
        };
        log.failed(&id, &error).expect("recorded");
        assert_eq!(log.last_error(&id).await, Some(error.clone()));
        assert_eq!(log.last_error(&id.to_uppercase()).await, Some(error));
        log.succeeded(&id).expect("cleared");
        log.succeeded(&id).expect("cleared twice");
        assert_eq!(log.last_error(&id).await, None);
        // Nothing but a UUID reaches a path.
        for bad in ["../x", "", "/etc/passwd"] {
            assert_eq!(log.last_error(bad).await, None);
            log.failed(
                bad,
                &RunError {
                    at: Utc::now(),
                    error: "x".into(),
                    message: "x".into(),
                },
            )
            .expect("ignored");
        }
        let names: Vec<_> = std::fs::read_dir(&dir).expect("listed").collect();
        assert!(names.is_empty(), "{names:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
