//! The store of exports on disk: `<id>.<csv|xlsx>` files with a `<id>.json`
//! sidecar holding their [`ExportMeta`], each written atomically; ids are
//! UUIDs, nothing else reaches a path.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use usage_core::admin::EXPORT_RETENTION;
use utoipa::ToSchema;
use uuid::Uuid;

use super::stream::Written;
use super::ExportError;
use crate::model::{ExportFormat, ExportKind, ExportState, ReportParams};

/// What marks a temporary file of the store (`.<final name>.tmp-<uuid>`).
pub(super) const TMP_MARK: &str = ".tmp-";

/// A stored export, as the API returns it (and as its sidecar holds it).
/// Holds no PII: the owner is an admin id, the filters are as asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExportMeta {
    /// A UUID v4.
    #[schema(format = Uuid)]
    pub export_id: String,
    /// The admin who asked for it, or whose schedule wrote it; only they can
    /// see or download it.
    pub owner_admin_id: String,
    /// What it holds.
    pub kind: ExportKind,
    /// CSV or XLSX.
    pub format: ExportFormat,
    /// The attachment's name:
    /// `<usage-report|seat-usage|token-usage>-<YYYY-MM-DDTHH-MM-SSZ>.<csv|xlsx>`
    /// (kind, creation time in UTC, format), e.g.
    /// `usage-report-2026-11-28T04-12-00Z.csv`. A scheduled export is named
    /// after its schedule, made safe, with the run's UTC date:
    /// `<name>-<YYYY-MM-DD>.<csv|xlsx>`, e.g. `Monthly-seats-2026-12-01.csv`.
    pub file_name: String,
    /// Data lines in the file (the header excluded); while `running`, the
    /// lines written so far (the file is written as its rows are read).
    pub rows: u64,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// `created_at` + 14 days: after it the sweep deletes the file.
    pub expires_at: DateTime<Utc>,
    /// The report filters it was made with, as asked.
    pub filters: ReportParams,
    /// The schedule that wrote it; `null` when asked for directly.
    #[schema(format = Uuid, required = true)]
    pub schedule_id: Option<String>,
    /// Where to download it, once `ready`:
    /// `/v1/exports/{export_id}/download`.
    pub download_path: String,
    /// Where it is: written in the background until `ready` or `failed`.
    /// Sidecars stored before exports had a state are `ready`.
    #[serde(default)]
    #[schema(value_type = ExportState)]
    pub state: ExportState,
    /// Why it failed (for people); absent unless `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub error: Option<String>,
    /// When the sweep deleted the file (it is then a tombstone); absent
    /// until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub deleted_at: Option<DateTime<Utc>>,
}

/// The name an export is downloaded as:
/// `<usage-report|seat-usage|token-usage>-<YYYY-MM-DDTHH-MM-SSZ>.<csv|xlsx>`.
pub fn file_name(kind: ExportKind, format: ExportFormat, created_at: DateTime<Utc>) -> String {
    let prefix = match kind {
        ExportKind::Report => "usage-report",
        ExportKind::SeatUsage => "seat-usage",
        ExportKind::TokenUsage => "token-usage",
    };
    format!(
        "{prefix}-{}.{}",
        created_at.format("%Y-%m-%dT%H-%M-%SZ"),
        format.as_str()
    )
}

/// The longest part of a scheduled export's file name taken from the
/// schedule's name, in bytes (ASCII).
const MAX_SCHEDULE_STEM: usize = 80;

/// The name a scheduled export is downloaded as: the schedule's name made
/// safe for file systems and for `Content-Disposition`, then the UTC date
/// of the run: `<name>-<YYYY-MM-DD>.<csv|xlsx>`, e.g.
/// `Monthly-seats-2026-12-01.csv`.
///
/// Only ASCII letters, digits, `_`, `.` and `-` are kept (every other
/// character, separators, quotes, controls and non-ASCII letters included,
/// becomes `-`), runs of `-` collapse, the name never starts with `.` or
/// `-` and is cut to 80 bytes; a name with nothing left is
/// `scheduled-report`.
pub fn scheduled_file_name(
    schedule_name: &str,
    format: ExportFormat,
    run_date: NaiveDate,
) -> String {
    let mut stem = String::with_capacity(schedule_name.len());
    for c in schedule_name.chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '_' | '.') {
            c
        } else {
            '-'
        };
        if c == '-' && (stem.is_empty() || stem.ends_with('-')) {
            continue;
        }
        stem.push(c);
    }
    stem.truncate(MAX_SCHEDULE_STEM);
    let stem = stem.trim_matches(|c| c == '-' || c == '.');
    let stem = if stem.chars().any(|c| c.is_ascii_alphanumeric()) {
        stem
    } else {
        "scheduled-report"
    };
    format!("{stem}-{}.{}", run_date.format("%Y-%m-%d"), format.as_str())
}

/// The id as stored, if `id` is a UUID in its hyphenated form (any case);
/// nothing else ever reaches a path.
pub(super) fn parse_id(id: &str) -> Option<Uuid> {
    let uuid = Uuid::try_parse(id).ok()?;
    let canonical = uuid.hyphenated().to_string();
    canonical.eq_ignore_ascii_case(id).then_some(uuid)
}

/// Exports on disk: `<id>.<csv|xlsx>` with a `<id>.json` sidecar holding its
/// [`ExportMeta`]. Blocking (`std::fs`): call it from `spawn_blocking`.
#[derive(Debug, Clone)]
pub struct ExportStore {
    dir: PathBuf,
}

/// What a file of the store's directory is, by its name.
pub(super) enum Entry {
    Sidecar(Uuid),
    Data(Uuid),
    Temp,
    Other,
}

pub(super) fn classify(name: &str) -> Entry {
    if name.starts_with('.') && name.contains(TMP_MARK) {
        return Entry::Temp;
    }
    let Some((stem, ext)) = name.rsplit_once('.') else {
        return Entry::Other;
    };
    match (parse_id(stem), ext) {
        (Some(id), "json") => Entry::Sidecar(id),
        (Some(id), "csv" | "xlsx") => Entry::Data(id),
        _ => Entry::Other,
    }
}

impl ExportStore {
    /// The store over `dir`, created (private to the service's user) if
    /// missing.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<ExportStore> {
        let dir = dir.into();
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(&dir)?;
        Ok(ExportStore { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn data_path(&self, id: Uuid, format: ExportFormat) -> PathBuf {
        self.dir
            .join(format!("{}.{}", id.hyphenated(), format.as_str()))
    }

    pub(super) fn sidecar_path(&self, id: Uuid) -> PathBuf {
        self.dir.join(format!("{}.json", id.hyphenated()))
    }

    /// Stores a written export, `ready`: its file put in place (renamed
    /// atomically), then its sidecar. Returns its metadata.
    #[allow(clippy::too_many_arguments)] // the fields of one export, as the API gets them
    pub fn save(
        &self,
        owner_admin_id: &str,
        kind: ExportKind,
        format: ExportFormat,
        filters: ReportParams,
        schedule_id: Option<String>,
        written: Written,
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
            rows: written.rows,
            created_at: now,
            expires_at: now
                .checked_add_signed(EXPORT_RETENTION)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            filters,
            schedule_id,
            deleted_at: None,
            state: ExportState::Ready,
            error: None,
        };
        let data = self.data_path(id, format);
        self.place(written, &data)?;
        if let Err(e) = self.write_sidecar(id, &meta) {
            remove_quietly(&data);
            return Err(e);
        }
        Ok(meta)
    }

    /// Gives the export `export_id` the attachment name `file_name` (its
    /// sidecar rewritten atomically); its file is unchanged. Returns the new
    /// metadata, or `None` if there is no such export.
    pub fn rename(
        &self,
        export_id: &str,
        file_name: String,
    ) -> Result<Option<ExportMeta>, ExportError> {
        let Some(mut meta) = self.get(export_id)? else {
            return Ok(None);
        };
        let Some(id) = parse_id(&meta.export_id) else {
            return Ok(None);
        };
        meta.file_name = file_name;
        self.write_sidecar(id, &meta)?;
        Ok(Some(meta))
    }

    /// The metadata of an export (a tombstone if swept), or `None` if there
    /// is none or `export_id` is not a UUID.
    pub fn get(&self, export_id: &str) -> Result<Option<ExportMeta>, ExportError> {
        let Some(id) = parse_id(export_id) else {
            return Ok(None);
        };
        let Some(meta) = self.read_sidecar(id)? else {
            return Ok(None);
        };
        if parse_id(&meta.export_id) != Some(id) {
            tracing::warn!(export_id, "export sidecar names another export; ignored");
            return Ok(None);
        }
        Ok(Some(meta))
    }

    /// The bytes of an export's file (check
    /// [`downloadable`](super::downloadable) first). A swept export's file is
    /// gone: an `Io` error of kind `NotFound`.
    pub fn read(&self, meta: &ExportMeta) -> Result<Vec<u8>, ExportError> {
        let id = parse_id(&meta.export_id)
            .ok_or_else(|| ExportError::InvalidId(meta.export_id.clone()))?;
        let path = self.data_path(id, meta.format);
        fs::read(&path).map_err(|e| ExportError::io(&path, e))
    }

    /// An export's file, open for reading, and its length in bytes (check
    /// [`downloadable`](super::downloadable) first): downloads stream it.
    pub fn open_file(&self, meta: &ExportMeta) -> Result<(fs::File, u64), ExportError> {
        let id = parse_id(&meta.export_id)
            .ok_or_else(|| ExportError::InvalidId(meta.export_id.clone()))?;
        let path = self.data_path(id, meta.format);
        fs::File::open(&path)
            .and_then(|f| Ok((f.metadata()?.len(), f)))
            .map(|(len, f)| (f, len))
            .map_err(|e| ExportError::io(&path, e))
    }

    /// The owner's exports, newest first, without swept ones. Unreadable
    /// sidecars are logged and skipped.
    pub fn list(&self, owner_admin_id: &str) -> Result<Vec<ExportMeta>, ExportError> {
        let mut out = Vec::new();
        for (name, _) in self.entries()? {
            let Entry::Sidecar(id) = classify(&name) else {
                continue;
            };
            match self.read_sidecar(id) {
                Ok(Some(meta))
                    if meta.owner_admin_id == owner_admin_id && meta.deleted_at.is_none() =>
                {
                    out.push(meta);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "unreadable export sidecar skipped"),
            }
        }
        out.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| a.export_id.cmp(&b.export_id))
        });
        Ok(out)
    }

    /// The names and paths of the directory's files; unreadable entries
    /// are logged and skipped.
    pub(super) fn entries(&self) -> Result<Vec<(String, PathBuf)>, ExportError> {
        let dir = fs::read_dir(&self.dir).map_err(|e| ExportError::io(&self.dir, e))?;
        let mut out = Vec::new();
        for entry in dir {
            match entry {
                Ok(entry) => {
                    if let Some(name) = entry.file_name().to_str() {
                        out.push((name.to_owned(), entry.path()));
                    }
                }
                Err(e) => {
                    tracing::warn!(dir = %self.dir.display(), error = %e, "unreadable export directory entry")
                }
            }
        }
        Ok(out)
    }

    pub(super) fn read_sidecar(&self, id: Uuid) -> Result<Option<ExportMeta>, ExportError> {
        let path = self.sidecar_path(id);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ExportError::io(&path, e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| ExportError::Json { path, source })
    }

    pub(super) fn write_sidecar(&self, id: Uuid, meta: &ExportMeta) -> Result<(), ExportError> {
        let path = self.sidecar_path(id);
        let json = serde_json::to_vec_pretty(meta).map_err(|source| ExportError::Json {
            path: path.clone(),
            source,
        })?;
        self.write_atomic(&path, &json)
    }

    /// Writes `bytes` to a temporary file in the store's directory, syncs
    /// it, and renames it to `path`: readers see the old file or the new
    /// one, never a part.
    pub(super) fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("export");
        let tmp = self
            .dir
            .join(format!(".{name}{TMP_MARK}{}", Uuid::new_v4().simple()));
        let written = create_private(&tmp)
            .and_then(|mut file| {
                file.write_all(bytes)?;
                file.sync_all()
            })
            .map_err(|e| ExportError::io(&tmp, e))
            .and_then(|()| fs::rename(&tmp, path).map_err(|e| ExportError::io(path, e)));
        if let Err(e) = written {
            remove_quietly(&tmp);
            return Err(e);
        }
        sync_dir(&self.dir);
        Ok(())
    }
}

/// A new file only the service's user may read.
pub(super) fn create_private(path: &Path) -> io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Makes renames in `dir` durable (best effort; not possible everywhere).
pub(super) fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Err(e) = fs::File::open(dir).and_then(|d| d.sync_all()) {
        tracing::debug!(dir = %dir.display(), error = %e, "cannot sync export directory");
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Deletes a file after a failure, ignoring errors (the sweeper retries).
pub(super) fn remove_quietly(path: &Path) {
    if let Err(e) = fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::debug!(path = %path.display(), error = %e, "cannot delete export file");
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::scratch::{now, save, TempDir};
    use crate::export::{downloadable, Denied};
    use chrono::{NaiveDate, TimeDelta};

    #[test]
    fn file_names_carry_kind_and_time() {
        let at = NaiveDate::from_ymd_opt(2026, 11, 28)
            .and_then(|d| d.and_hms_opt(4, 12, 0))
            .expect("time")
            .and_utc();
        assert_eq!(
            file_name(ExportKind::Report, ExportFormat::Csv, at),
            "usage-report-2026-11-28T04-12-00Z.csv"
        );
        assert_eq!(
            file_name(ExportKind::TokenUsage, ExportFormat::Xlsx, at),
            "token-usage-2026-11-28T04-12-00Z.xlsx"
        );
    }

    #[test]
    fn scheduled_file_names_are_the_schedules_made_safe_with_the_date() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 1).expect("date");
        let name = |schedule: &str| scheduled_file_name(schedule, ExportFormat::Csv, day);
        assert_eq!(name("Monthly seats"), "Monthly-seats-2026-12-01.csv");
        assert_eq!(
            scheduled_file_name("Q4_report v2.1", ExportFormat::Xlsx, day),
            "Q4_report-v2.1-2026-12-01.xlsx"
        );
        assert_eq!(
            name("../../etc/passwd\"; rm -rf / \\ a:b*c?d<e>f|g"),
            "etc-passwd-rm-rf-a-b-c-d-e-f-g-2026-12-01.csv"
        );
        assert_eq!(name("Ünïcödé 報告"), "n-c-d-2026-12-01.csv");
        assert_eq!(name("報告"), "scheduled-report-2026-12-01.csv");
        assert_eq!(name(".hidden"), "hidden-2026-12-01.csv");
        assert_eq!(
            name("a\r\nContent-Type: x"),
            "a-Content-Type-x-2026-12-01.csv"
        );
        let long = name(&"x".repeat(300));
        assert_eq!(long.len(), 80 + "-2026-12-01.csv".len());
        for hostile in [
            "a/b",
            "a\\b",
            "a\"b",
            "a\u{0}b",
            "a\u{7f}b",
            "a;b",
            "..",
            "/",
            "a\u{202e}b",
        ] {
            let n = name(hostile);
            assert!(
                n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
                "{hostile:?} -> {n}"
            );
            assert!(!n.starts_with('.') && !n.starts_with('-'), "{n}");
            assert!(
                axum::http::HeaderValue::from_str(&format!("attachment; filename=\"{n}\"")).is_ok()
            );
        }
    }

    #[test]
    fn an_export_can_be_renamed() {
        let tmp = TempDir::new("rename");
        let store = ExportStore::open(&tmp.0).expect("opened");
        let meta = save(&store, "admin-a", now());
        let renamed = store
            .rename(&meta.export_id, "Weekly-2026-12-01.csv".into())
            .expect("renamed")
            .expect("found");
        assert_eq!(renamed.file_name, "Weekly-2026-12-01.csv");
        assert_eq!(store.get(&meta.export_id).expect("read"), Some(renamed));
        assert_eq!(
            store
                .rename(&Uuid::new_v4().to_string(), "x.csv".into())
                .expect("no error"),
            None
        );
    }

    #[test]
    fn store_saves_gets_lists_and_isolates_owners() {
        let tmp = TempDir::new("store");
        let store = ExportStore::open(&tmp.0).expect("opened");
        let now = now();
        let older = save(&store, "admin-a", now - TimeDelta::minutes(5));
        let newer = save(&store, "admin-a", now);
        let other = save(&store, "admin-b", now);

        assert_eq!(newer.expires_at, now + TimeDelta::days(14));
        assert_eq!(
            newer.download_path,
            format!("/v1/exports/{}/download", newer.export_id)
        );
        let got = store.get(&newer.export_id).expect("read").expect("found");
        assert_eq!(got, newer);
        assert_eq!(store.read(&got).expect("read"), b"user_key\r\nx\r\n");
        let json = serde_json::to_value(&got).expect("serialises");
        assert!(json.get("deleted_at").is_none());

        let listed: Vec<String> = store
            .list("admin-a")
            .expect("listed")
            .into_iter()
            .map(|m| m.export_id)
            .collect();
        assert_eq!(listed, vec![newer.export_id.clone(), older.export_id]);
        assert_eq!(store.list("admin-c").expect("listed"), vec![]);

        assert_eq!(downloadable(&got, "admin-a", now), Ok(()));
        assert_eq!(downloadable(&got, "admin-b", now), Err(Denied::NotFound));
        assert_eq!(downloadable(&other, "admin-a", now), Err(Denied::NotFound));
        assert_eq!(Denied::NotFound.api_error().code(), "not_found");
        assert_eq!(Denied::Expired.api_error().code(), "export_expired");
        // No temporary files are left behind.
        let names: Vec<String> = store
            .entries()
            .expect("listed")
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names.len(), 6, "{names:?}");
        assert!(names.iter().all(|n| !n.contains(TMP_MARK)));
    }

    #[test]
    fn ids_must_be_uuids() {
        let tmp = TempDir::new("ids");
        let store = ExportStore::open(&tmp.0).expect("opened");
        let meta = save(&store, "admin-a", now());
        for bad in ["../etc/passwd", "", "x.json", "..", "/etc/passwd"] {
            assert_eq!(store.get(bad).expect("no error"), None, "{bad}");
        }
        let simple = meta.export_id.replace('-', "");
        assert_eq!(store.get(&simple).expect("no error"), None);
        assert_eq!(
            store.get(&meta.export_id.to_uppercase()).expect("no error"),
            Some(meta.clone())
        );
        assert_eq!(
            store.get(&Uuid::new_v4().to_string()).expect("no error"),
            None
        );
        let mut forged = meta;
        forged.export_id = "../../etc/passwd".into();
        assert!(matches!(
            store.read(&forged),
            Err(ExportError::InvalidId(_))
        ));
    }
}
