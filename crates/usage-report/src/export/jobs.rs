//! Exports written in the background: accepted with a sidecar and no file
//! (`pending`), then `running`, then `ready` with their file, or `failed`
//! with a message.
//!
//! Never `running` for ever: while an export is unfinished its writer
//! touches the sidecar every [`HEARTBEAT`]; an unfinished export whose
//! sidecar was not touched for [`STALE_AFTER`] lost its writer (the
//! service restarted or crashed) and is `failed` ([`ExportStore::settle`],
//! applied wherever an export is read). The rule needs no start-up step
//! and holds for instances sharing the exports directory.

use std::fs;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use usage_core::admin::EXPORT_RETENTION;
use uuid::Uuid;

use super::store::{file_name, parse_id};
use super::stream::Written;
use super::{ExportError, ExportMeta, ExportStore};
use crate::model::{ExportFormat, ExportKind, ExportState, ReportParams};

/// The message of an export whose writer stopped.
pub const INTERRUPTED: &str =
    "the service stopped while writing this export; export the report again";

/// How often the writer of an unfinished export touches its sidecar.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// An unfinished export whose sidecar was not touched for this long lost
/// its writer: it is `failed`.
pub const STALE_AFTER: Duration = Duration::from_secs(60);

impl ExportStore {
    /// Accepts an export to write in the background: its sidecar, state
    /// `pending`, no file yet. Returns its metadata.
    pub fn accept(
        &self,
        owner_admin_id: &str,
        kind: ExportKind,
        format: ExportFormat,
        filters: ReportParams,
        now: DateTime<Utc>,
    ) -> Result<ExportMeta, ExportError> {
        let id = Uuid::new_v4();
        let export_id = id.hyphenated().to_string();
        let meta = ExportMeta {
            download_path: format!("/v1/exports/{export_id}/download"),
            export_id,
            owner_admin_id: owner_admin_id.to_owned(),
            kind,
            format,
            file_name: file_name(kind, format, now),
            rows: 0,
            created_at: now,
            expires_at: now
                .checked_add_signed(EXPORT_RETENTION)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            filters,
            schedule_id: None,
            deleted_at: None,
            state: ExportState::Pending,
            error: None,
        };
        self.write_sidecar(id, &meta)?;
        Ok(meta)
    }

    /// Records an accepted export's progress (its state and rows written).
    pub fn progress(&self, meta: &ExportMeta) -> Result<(), ExportError> {
        let id = parse_id(&meta.export_id)
            .ok_or_else(|| ExportError::InvalidId(meta.export_id.clone()))?;
        self.write_sidecar(id, meta)
    }

    /// Puts the written file of an accepted export in place (renamed
    /// atomically), then marks it `ready` with its rows. Returns its
    /// metadata.
    pub fn complete(
        &self,
        mut meta: ExportMeta,
        written: Written,
    ) -> Result<ExportMeta, ExportError> {
        let id = parse_id(&meta.export_id)
            .ok_or_else(|| ExportError::InvalidId(meta.export_id.clone()))?;
        let rows = written.rows;
        self.place(written, &self.data_path(id, meta.format))?;
        meta.rows = rows;
        meta.state = ExportState::Ready;
        meta.error = None;
        self.write_sidecar(id, &meta)?;
        Ok(meta)
    }

    /// Marks an accepted export `failed`, saying why.
    pub fn fail(&self, mut meta: ExportMeta, message: &str) -> Result<ExportMeta, ExportError> {
        meta.state = ExportState::Failed;
        meta.error = Some(message.to_owned());
        self.progress(&meta)?;
        Ok(meta)
    }

    /// Says the writer of `export_id` is alive: touches its sidecar.
    pub fn touch(&self, export_id: &str) -> Result<(), ExportError> {
        let id = parse_id(export_id).ok_or_else(|| ExportError::InvalidId(export_id.to_owned()))?;
        let path = self.sidecar_path(id);
        fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(SystemTime::now()))
            .map_err(|e| ExportError::io(&path, e))
    }

    /// The export as it stands at `now`: an unfinished export whose sidecar
    /// was not touched for [`STALE_AFTER`] lost its writer and is marked
    /// `failed` (stored; should that fail, still answered `failed`).
    pub fn settle(&self, meta: ExportMeta, now: SystemTime) -> ExportMeta {
        if !meta.state.unfinished() {
            return meta;
        }
        let Some(id) = parse_id(&meta.export_id) else {
            return meta;
        };
        let path = self.sidecar_path(id);
        let touched = match fs::metadata(&path).and_then(|m| m.modified()) {
            Ok(touched) => touched,
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "cannot read an export's sidecar time");
                return meta;
            }
        };
        if now.duration_since(touched).unwrap_or_default() < STALE_AFTER {
            return meta;
        }
        let mut failed = meta.clone();
        failed.state = ExportState::Failed;
        failed.error = Some(INTERRUPTED.to_owned());
        match self.fail(meta, INTERRUPTED) {
            Ok(stored) => {
                tracing::warn!(export_id = %stored.export_id, "an export lost its writer: failed");
                stored
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot mark an interrupted export failed");
                failed
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::scratch;

    #[test]
    fn an_accepted_export_runs_then_is_ready_or_failed() {
        let dir = scratch::TempDir::new("jobs");
        let store = ExportStore::open(&dir.0).expect("store");
        let now = Utc::now();
        let params = ReportParams::default();
        let meta = store
            .accept(
                "ada",
                ExportKind::Report,
                ExportFormat::Csv,
                params.clone(),
                now,
            )
            .expect("accepted");
        assert_eq!((meta.state, meta.rows), (ExportState::Pending, 0));
        let got = store.get(&meta.export_id).expect("read").expect("stored");
        assert_eq!(got, meta);
        assert!(store.read(&meta).is_err(), "no file yet");
        assert_eq!(store.list("ada").expect("listed"), vec![meta.clone()]);

        let mut running = meta.clone();
        running.state = ExportState::Running;
        running.rows = 2;
        store.progress(&running).expect("progress");
        assert_eq!(
            store.get(&meta.export_id).expect("read"),
            Some(running.clone())
        );

        let ready = store
            .complete(
                running,
                store.written(2, b"a\r\n1\r\n2\r\n").expect("written"),
            )
            .expect("complete");
        assert_eq!(
            (ready.state, ready.rows, ready.error.as_deref()),
            (ExportState::Ready, 2, None)
        );
        assert_eq!(store.read(&ready).expect("file"), b"a\r\n1\r\n2\r\n");

        let other = store
            .accept(
                "ada",
                ExportKind::SeatUsage,
                ExportFormat::Xlsx,
                params,
                now,
            )
            .expect("accepted");
        let failed = store
            .fail(other, "ClickHouse did not answer")
            .expect("failed");
        let got = store.get(&failed.export_id).expect("read").expect("stored");
        assert_eq!(got.state, ExportState::Failed);
        assert_eq!(got.error.as_deref(), Some("ClickHouse did not answer"));
    }

    #[test]
    fn an_unfinished_export_whose_writer_stopped_is_failed() {
        let dir = scratch::TempDir::new("jobs");
        let store = ExportStore::open(&dir.0).expect("store");
        let now = Utc::now();
        let accept = || {
            store
                .accept(
                    "ada",
                    ExportKind::Report,
                    ExportFormat::Csv,
                    ReportParams::default(),
                    now,
                )
                .expect("accepted")
        };
        let pending = accept();
        let mut running = accept();
        running.state = ExportState::Running;
        store.progress(&running).expect("progress");
        let ready = store
            .complete(accept(), store.written(0, b"").expect("written"))
            .expect("complete");
        let failed = store.fail(accept(), "broken").expect("failed");

        // Touched recently: as they are.
        let soon = SystemTime::now() + STALE_AFTER / 2;
        for meta in [&pending, &running, &ready, &failed] {
            assert_eq!(&store.settle(meta.clone(), soon), meta);
        }
        // Not touched for a minute: the unfinished ones failed, and stored so.
        let later = SystemTime::now() + STALE_AFTER + Duration::from_secs(1);
        for meta in [&pending, &running] {
            let settled = store.settle(meta.clone(), later);
            assert_eq!(settled.state, ExportState::Failed);
            assert_eq!(settled.error.as_deref(), Some(INTERRUPTED));
            assert_eq!(store.get(&meta.export_id).expect("read"), Some(settled));
        }
        assert_eq!(store.settle(ready.clone(), later), ready);
        assert_eq!(store.settle(failed.clone(), later), failed);
        // A heartbeat keeps a running export alive.
        let mut alive = accept();
        alive.state = ExportState::Running;
        store.progress(&alive).expect("progress");
        let id = parse_id(&alive.export_id).expect("id");
        fs::File::options()
            .write(true)
            .open(store.sidecar_path(id))
            .and_then(|f| f.set_modified(SystemTime::now() - STALE_AFTER * 2))
            .expect("aged");
        store.touch(&alive.export_id).expect("touched");
        assert_eq!(store.settle(alive.clone(), SystemTime::now()), alive);
    }

    #[test]
    fn sidecars_from_before_states_are_ready() {
        let json = serde_json::json!({
            "export_id": "00000000-0000-4000-8000-000000000000",
            "owner_admin_id": "ada",
            "kind": "report",
            "format": "csv",
            "file_name": "usage-report-2026-11-28T04-12-00Z.csv",
            "rows": 3,
            "created_at": "2026-11-28T04:12:00Z",
            "expires_at": "2026-12-12T04:12:00Z",
            "filters": {},
            "schedule_id": null,
            "download_path": "/v1/exports/00000000-0000-4000-8000-000000000000/download"
        });
        let meta: ExportMeta = serde_json::from_value(json).expect("an old sidecar reads");
        assert_eq!((meta.state, meta.error), (ExportState::Ready, None));
    }
}
