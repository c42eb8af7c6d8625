//! The sweeper: deletes exports 14 days old (their sidecars stay as
//! tombstones, so a late download answers 410), tombstones 28 days old, and
//! stray temporary and orphaned data files.

use std::fs;
use std::io;
use std::path::Path;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use usage_core::admin::{export_expired, EXPORT_RETENTION};
use uuid::Uuid;

use super::store::{classify, Entry};
use super::{ExportError, ExportStore};

/// How long a tombstone (the sidecar of a swept export) is kept, counted
/// from the export's creation: after it, a download answers 404, not 410.
pub const TOMBSTONE_RETENTION: TimeDelta = TimeDelta::days(28);

/// How old a leftover temporary file must be before the sweeper deletes it.
pub const STRAY_TEMP_AGE: TimeDelta = TimeDelta::hours(1);

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Data files deleted: expired exports (now tombstones) and data files
    /// left without a sidecar for 14 days.
    pub deleted: u64,
    /// Tombstones deleted for good (28 days after their export was made).
    pub tombstones_removed: u64,
}

impl ExportStore {
    /// Deletes what has expired at `now`: the files of exports 14 days old
    /// (their sidecars become tombstones), tombstones 28 days old, temporary
    /// files an hour old and data files without a sidecar 14 days old (by
    /// modification time). A file that cannot be read or deleted is logged
    /// and skipped; only an unreadable directory fails the sweep.
    pub fn sweep(&self, now: DateTime<Utc>) -> Result<SweepReport, ExportError> {
        let mut report = SweepReport::default();
        let entries = self.entries()?;
        let mut orphans = Vec::new();
        for (name, path) in &entries {
            match classify(name) {
                Entry::Sidecar(id) => self.sweep_export(id, now, &mut report),
                Entry::Data(id) => orphans.push((id, path)),
                Entry::Temp => {
                    if older_than(path, now, STRAY_TEMP_AGE) && remove_logged(path) {
                        tracing::debug!(path = %path.display(), "stray temporary export file deleted");
                    }
                }
                Entry::Other => {}
            }
        }
        for (id, path) in orphans {
            let sidecar = self.sidecar_path(id);
            match sidecar.try_exists() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(path = %sidecar.display(), error = %e, "cannot check export sidecar");
                    continue;
                }
            }
            if older_than(path, now, EXPORT_RETENTION) && remove_logged(path) {
                report.deleted += 1;
            }
        }
        if report != SweepReport::default() {
            tracing::info!(
                deleted = report.deleted,
                tombstones_removed = report.tombstones_removed,
                "export sweep"
            );
        }
        Ok(report)
    }

    /// Sweeps one export, by its sidecar.
    fn sweep_export(&self, id: Uuid, now: DateTime<Utc>, report: &mut SweepReport) {
        let sidecar = self.sidecar_path(id);
        let mut meta = match self.read_sidecar(id) {
            Ok(Some(meta)) => meta,
            Ok(None) => return, // deleted meanwhile
            Err(e) => {
                tracing::warn!(error = %e, "unreadable export sidecar; not swept");
                return;
            }
        };
        if meta.deleted_at.is_none() {
            if !export_expired(meta.created_at, now) {
                return;
            }
            let data = self.data_path(id, meta.format);
            match fs::remove_file(&data) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %data.display(), error = %e, "cannot delete expired export");
                    return;
                }
            }
            report.deleted += 1;
            meta.deleted_at = Some(now);
            if let Err(e) = self.write_sidecar(id, &meta) {
                tracing::warn!(error = %e, "cannot write export tombstone");
                return;
            }
        }
        let tombstone_expired = meta
            .created_at
            .checked_add_signed(TOMBSTONE_RETENTION)
            .is_some_and(|end| now >= end);
        if tombstone_expired && remove_logged(&sidecar) {
            report.tombstones_removed += 1;
        }
    }
}

/// Whether the file was last modified at least `age` before `now` (a file
/// whose time cannot be read is logged and kept).
fn older_than(path: &Path, now: DateTime<Utc>, age: TimeDelta) -> bool {
    match fs::metadata(path).and_then(|m| m.modified()) {
        Ok(modified) => now.signed_duration_since(DateTime::<Utc>::from(modified)) >= age,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read export file time");
            false
        }
    }
}

/// Deletes a file; logs a failure. Whether it was deleted.
fn remove_logged(path: &Path) -> bool {
    match fs::remove_file(path) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot delete export file");
            false
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::scratch::{now, save, TempDir};
    use crate::export::store::{parse_id, TMP_MARK};
    use crate::export::{downloadable, Denied};

    #[test]
    fn sweep_tombstones_expired_exports() {
        let tmp = TempDir::new("sweep");
        let store = ExportStore::open(&tmp.0).expect("opened");
        let now = now();
        let old = save(&store, "admin-a", now - TimeDelta::days(15));
        let fresh = save(&store, "admin-a", now - TimeDelta::days(13));
        assert_eq!(downloadable(&old, "admin-a", now), Err(Denied::Expired));

        let report = store.sweep(now).expect("swept");
        assert_eq!(
            report,
            SweepReport {
                deleted: 1,
                tombstones_removed: 0
            }
        );
        let id = parse_id(&old.export_id).expect("uuid");
        assert!(!store.data_path(id, old.format).exists());
        let tomb = store.get(&old.export_id).expect("read").expect("tombstone");
        assert_eq!(tomb.deleted_at, Some(now));
        assert_eq!(downloadable(&tomb, "admin-a", now), Err(Denied::Expired));
        assert_eq!(downloadable(&tomb, "admin-b", now), Err(Denied::NotFound));
        assert!(matches!(store.read(&tomb), Err(ExportError::Io { .. })));
        let listed = store.list("admin-a").expect("listed");
        assert_eq!(listed, vec![fresh.clone()]);
        assert_eq!(store.read(&fresh).expect("kept"), b"user_key\r\nx\r\n");

        // Sweeping again changes nothing; 28 days on, the tombstone goes.
        assert_eq!(store.sweep(now).expect("swept"), SweepReport::default());
        let later = now + TimeDelta::days(14);
        let report = store.sweep(later).expect("swept");
        assert_eq!(report.tombstones_removed, 1);
        assert_eq!(report.deleted, 1); // the fresh one expired meanwhile
        assert_eq!(store.get(&old.export_id).expect("read"), None);
    }

    #[test]
    fn sweep_skips_bad_sidecars_and_removes_strays() {
        let tmp = TempDir::new("strays");
        let store = ExportStore::open(&tmp.0).expect("opened");
        let now = now();
        let broken = tmp.0.join(format!("{}.json", Uuid::new_v4()));
        fs::write(&broken, b"{not json").expect("written");
        let orphan = tmp.0.join(format!("{}.csv", Uuid::new_v4()));
        let young_orphan = tmp.0.join(format!("{}.xlsx", Uuid::new_v4()));
        let temp = tmp.0.join(format!(".x.csv{TMP_MARK}1"));
        let young_temp = tmp.0.join(format!(".y.csv{TMP_MARK}2"));
        let unrelated = tmp.0.join("README");
        for (path, age) in [
            (&orphan, TimeDelta::days(15)),
            (&young_orphan, TimeDelta::days(1)),
            (&temp, TimeDelta::hours(2)),
            (&young_temp, TimeDelta::minutes(1)),
            (&unrelated, TimeDelta::days(100)),
        ] {
            let file = fs::File::create(path).expect("created");
            let mtime = std::time::SystemTime::from(now - age);
            file.set_modified(mtime).expect("mtime set");
        }
        let expired = save(&store, "admin-a", now - TimeDelta::days(20));

        let report = store.sweep(now).expect("swept despite the broken sidecar");
        assert_eq!(report.deleted, 2, "the expired export and the old orphan");
        assert!(broken.exists());
        assert!(!orphan.exists());
        assert!(young_orphan.exists());
        assert!(!temp.exists());
        assert!(young_temp.exists());
        assert!(unrelated.exists());
        assert!(store
            .get(&expired.export_id)
            .expect("read")
            .is_some_and(|m| m.deleted_at.is_some()));
        assert!(store.list("admin-a").expect("listed despite it").is_empty());
    }
}
