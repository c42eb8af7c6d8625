//! Exports: the report and the raw usage as CSV or XLSX files, the store
//! that keeps them on disk for 14 days (rule 8) and its sweeper.
//!
//! - [`render_report`], [`render_seat_usage`], [`render_token_usage`]: pure
//!   functions from rows to file bytes;
//! - [`ExportStore`]: `<id>.<csv|xlsx>` files with a `<id>.json` sidecar
//!   holding their [`ExportMeta`], written atomically;
//! - [`ExportStore::sweep`]: deletes expired exports, leaving a tombstone so
//!   a late download answers 410 rather than 404;
//! - [`downloadable`]: who may download what, and until when.

use std::borrow::Cow;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, SecondsFormat, TimeDelta, Utc};
use rust_xlsxwriter::{ColNum, Format, RowNum, Workbook, XlsxError};
use serde::{Deserialize, Serialize};
use usage_core::admin::{export_expired, EXPORT_RETENTION};
use usage_core::event::Tokens;
use uuid::Uuid;

use crate::error::ApiError;
use crate::model::{ExportFormat, ExportKind, ReportParams, ReportRow};
use crate::report::{SeatUsageDay, TokenUsageWindow};

/// The columns of the report export: the JSON field names of [`ReportRow`],
/// in declaration order.
pub const REPORT_COLUMNS: [&str; 14] = [
    "user_key",
    "name",
    "email",
    "avatar_url",
    "team_id",
    "groups",
    "product",
    "access",
    "assigned_date",
    "last_accessed",
    "days_used",
    "monthly_average",
    "tokens_used",
    "status",
];

/// The columns of the raw seat usage export.
pub const SEAT_USAGE_COLUMNS: [&str; 6] =
    ["date", "team_id", "user_key", "name", "email", "product"];

/// The columns of the raw token usage export.
pub const TOKEN_USAGE_COLUMNS: [&str; 8] = [
    "date",
    "window_start",
    "team_id",
    "user_key",
    "name",
    "email",
    "product",
    "tokens",
];

/// How long a tombstone (the sidecar of a swept export) is kept, counted
/// from the export's creation: after it, a download answers 404, not 410.
pub const TOMBSTONE_RETENTION: TimeDelta = TimeDelta::days(28);

/// How old a leftover temporary file must be before the sweeper deletes it.
pub const STRAY_TEMP_AGE: TimeDelta = TimeDelta::hours(1);

/// Excel's limit on the characters (UTF-16 code units) of one cell.
const XLSX_MAX_CELL_CHARS: usize = 32_767;

/// What marks a temporary file of the store (`.<final name>.tmp-<uuid>`).
const TMP_MARK: &str = ".tmp-";

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

// ---------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------

/// One cell of an export, before it is written as CSV or XLSX.
enum Cell<'a> {
    /// Text: guarded against formula injection in CSV, `write_string` in XLSX.
    Text(Cow<'a, str>),
    /// A whole number.
    Int(u64),
    /// A decimal number (an average).
    Float(f64),
    /// A token amount (thousandths).
    Tokens(Tokens),
    /// No value (`null` in JSON).
    Empty,
}

impl<'a> Cell<'a> {
    fn text(s: &'a str) -> Cell<'a> {
        Cell::Text(Cow::Borrowed(s))
    }

    fn opt_text(s: &'a Option<String>) -> Cell<'a> {
        s.as_deref().map_or(Cell::Empty, Cell::text)
    }

    fn date(d: NaiveDate) -> Cell<'a> {
        Cell::Text(Cow::Owned(d.format("%Y-%m-%d").to_string()))
    }

    fn opt_date(d: Option<NaiveDate>) -> Cell<'a> {
        d.map_or(Cell::Empty, Cell::date)
    }

    /// The CSV field.
    fn csv(&self) -> Cow<'_, str> {
        match self {
            Cell::Text(s) => guard_formula(s),
            Cell::Int(n) => Cow::Owned(n.to_string()),
            Cell::Float(f) if f.is_finite() => Cow::Owned(f.to_string()),
            Cell::Float(_) | Cell::Empty => Cow::Borrowed(""),
            Cell::Tokens(t) => Cow::Owned(t.to_string()),
        }
    }
}

/// A row type that can be exported.
trait Record {
    /// The header row.
    const COLUMNS: &'static [&'static str];
    /// The worksheet's name.
    const SHEET: &'static str;
    /// The cells, in the order of [`Record::COLUMNS`].
    fn cells(&self) -> Vec<Cell<'_>>;
}

impl Record for ReportRow {
    const COLUMNS: &'static [&'static str] = &REPORT_COLUMNS;
    const SHEET: &'static str = "Usage report";

    fn cells(&self) -> Vec<Cell<'_>> {
        vec![
            Cell::text(&self.user_key),
            Cell::opt_text(&self.name),
            Cell::opt_text(&self.email),
            Cell::opt_text(&self.avatar_url),
            Cell::text(&self.team_id),
            if self.groups.is_empty() {
                Cell::Empty
            } else {
                Cell::Text(Cow::Owned(self.groups.join("; ")))
            },
            Cell::text(&self.product),
            Cell::text(self.access.as_str()),
            Cell::opt_date(self.assigned_date),
            Cell::opt_date(self.last_accessed),
            Cell::Int(u64::from(self.days_used)),
            Cell::Float(self.monthly_average),
            Cell::Tokens(self.tokens_used),
            Cell::text(self.status.as_str()),
        ]
    }
}

impl Record for SeatUsageDay {
    const COLUMNS: &'static [&'static str] = &SEAT_USAGE_COLUMNS;
    const SHEET: &'static str = "Seat usage";

    fn cells(&self) -> Vec<Cell<'_>> {
        vec![
            Cell::date(self.date),
            Cell::text(&self.team_id),
            Cell::text(&self.user_key),
            Cell::opt_text(&self.name),
            Cell::opt_text(&self.email),
            Cell::text(&self.product),
        ]
    }
}

impl Record for TokenUsageWindow {
    const COLUMNS: &'static [&'static str] = &TOKEN_USAGE_COLUMNS;
    const SHEET: &'static str = "Token usage";

    fn cells(&self) -> Vec<Cell<'_>> {
        vec![
            Cell::date(self.date),
            Cell::Text(Cow::Owned(
                self.window_start
                    .to_rfc3339_opts(SecondsFormat::AutoSi, true),
            )),
            Cell::text(&self.team_id),
            Cell::text(&self.user_key),
            Cell::opt_text(&self.name),
            Cell::opt_text(&self.email),
            Cell::text(&self.product),
            Cell::Tokens(self.tokens),
        ]
    }
}

/// Renders the report rows (the users table) as a file.
pub fn render_report(rows: &[ReportRow], format: ExportFormat) -> Result<Vec<u8>, ExportError> {
    render(rows, format)
}

/// Renders raw seat usage (one line per team, user, product and UTC date).
pub fn render_seat_usage(
    rows: &[SeatUsageDay],
    format: ExportFormat,
) -> Result<Vec<u8>, ExportError> {
    render(rows, format)
}

/// Renders raw token usage (one line per charged Flex window).
pub fn render_token_usage(
    rows: &[TokenUsageWindow],
    format: ExportFormat,
) -> Result<Vec<u8>, ExportError> {
    render(rows, format)
}

fn render<R: Record>(rows: &[R], format: ExportFormat) -> Result<Vec<u8>, ExportError> {
    match format {
        ExportFormat::Csv => render_csv(rows),
        ExportFormat::Xlsx => render_xlsx(rows),
    }
}

fn render_csv<R: Record>(rows: &[R]) -> Result<Vec<u8>, ExportError> {
    let mut out = Vec::new();
    {
        let mut writer = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .from_writer(&mut out);
        writer.write_record(R::COLUMNS)?;
        for row in rows {
            let cells = row.cells();
            writer.write_record(cells.iter().map(|c| c.csv().into_owned()))?;
        }
        writer.flush().map_err(csv::Error::from)?;
    }
    Ok(out)
}

/// Prefixes `'` to text a spreadsheet would take for a formula (CSV
/// injection): text starting with `=`, `+`, `-`, `@`, tab or CR.
fn guard_formula(text: &str) -> Cow<'_, str> {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{text}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// Cuts text to Excel's cell limit (counted in UTF-16 code units, so it also
/// holds for the XLSX writer's count of characters).
fn truncate_for_xlsx(text: &str) -> &str {
    let mut units = 0;
    for (at, c) in text.char_indices() {
        units += c.len_utf16();
        if units > XLSX_MAX_CELL_CHARS {
            return &text[..at];
        }
    }
    text
}

fn render_xlsx<R: Record>(rows: &[R]) -> Result<Vec<u8>, ExportError> {
    let mut workbook = Workbook::new();
    let bold = Format::new().set_bold();
    let sheet = workbook.add_worksheet();
    sheet.set_name(R::SHEET)?;
    for (col, name) in (0..).zip(R::COLUMNS) {
        sheet.write_string_with_format(0, col, *name, &bold)?;
    }
    sheet.set_freeze_panes(1, 0)?;
    for (index, row) in rows.iter().enumerate() {
        let r = index
            .checked_add(1)
            .and_then(|r| RowNum::try_from(r).ok())
            .ok_or(XlsxError::RowColumnLimitError)?;
        for (col, cell) in (0..).zip(row.cells()) {
            let col: ColNum = col;
            match cell {
                Cell::Text(s) => {
                    // Never a formula, whatever the text starts with.
                    sheet.write_string(r, col, truncate_for_xlsx(&s))?;
                }
                Cell::Int(n) => {
                    // Exact below 2^53, far beyond any count of days.
                    sheet.write_number(r, col, n as f64)?;
                }
                Cell::Float(f) if f.is_finite() => {
                    sheet.write_number(r, col, f)?;
                }
                Cell::Tokens(t) => {
                    // Exact for every thousandth below 2^53 / 1000 tokens.
                    sheet.write_number(r, col, t.millis() as f64 / 1000.0)?;
                }
                Cell::Float(_) | Cell::Empty => {}
            }
        }
    }
    sheet.autofit();
    Ok(workbook.save_to_buffer()?)
}

// ---------------------------------------------------------------------------
// Metadata and access
// ---------------------------------------------------------------------------

/// A stored export, as the API returns it (and as its sidecar holds it).
/// Holds no PII: the owner is an admin id, the filters are as asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportMeta {
    /// A UUID v4.
    pub export_id: String,
    /// The admin who made it (or whose schedule made it); only they may
    /// download it.
    pub owner_admin_id: String,
    /// What it holds.
    pub kind: ExportKind,
    /// CSV or XLSX.
    pub format: ExportFormat,
    /// The name to download it as, e.g. `usage-report-2026-11-28T04-12-00Z.csv`.
    pub file_name: String,
    /// Data rows (not counting the header).
    pub rows: u64,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it is deleted: 14 days after it was made.
    pub expires_at: DateTime<Utc>,
    /// The report parameters it was made with.
    pub filters: ReportParams,
    /// The schedule that made it, if one did.
    pub schedule_id: Option<String>,
    /// Where to download it: `/v1/exports/{export_id}/download`.
    pub download_path: String,
    /// When the sweeper deleted its file (it is then a tombstone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
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

/// The id as stored, if `id` is a UUID in its hyphenated form (any case);
/// nothing else ever reaches a path.
fn parse_id(id: &str) -> Option<Uuid> {
    let uuid = Uuid::try_parse(id).ok()?;
    let canonical = uuid.hyphenated().to_string();
    canonical.eq_ignore_ascii_case(id).then_some(uuid)
}

// ---------------------------------------------------------------------------
// Store
// ---------------------------------------------------------------------------

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Data files deleted: expired exports (now tombstones) and data files
    /// left without a sidecar for 14 days.
    pub deleted: u64,
    /// Tombstones deleted for good (28 days after their export was made).
    pub tombstones_removed: u64,
}

/// Exports on disk: `<id>.<csv|xlsx>` with a `<id>.json` sidecar holding its
/// [`ExportMeta`]. Blocking (`std::fs`): call it from `spawn_blocking`.
#[derive(Debug, Clone)]
pub struct ExportStore {
    dir: PathBuf,
}

/// What a file of the store's directory is, by its name.
enum Entry {
    Sidecar(Uuid),
    Data(Uuid),
    Temp,
    Other,
}

fn classify(name: &str) -> Entry {
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

    fn data_path(&self, id: Uuid, format: ExportFormat) -> PathBuf {
        self.dir
            .join(format!("{}.{}", id.hyphenated(), format.as_str()))
    }

    fn sidecar_path(&self, id: Uuid) -> PathBuf {
        self.dir.join(format!("{}.json", id.hyphenated()))
    }

    /// Stores a rendered export: the data file, then its sidecar, each
    /// written atomically. Returns its metadata.
    #[allow(clippy::too_many_arguments)] // the fields of one export, as the API gets them
    pub fn save(
        &self,
        owner_admin_id: &str,
        kind: ExportKind,
        format: ExportFormat,
        filters: ReportParams,
        schedule_id: Option<String>,
        rows: u64,
        bytes: &[u8],
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
            rows,
            created_at: now,
            expires_at: now
                .checked_add_signed(EXPORT_RETENTION)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            filters,
            schedule_id,
            deleted_at: None,
        };
        let data = self.data_path(id, format);
        self.write_atomic(&data, bytes)?;
        if let Err(e) = self.write_sidecar(id, &meta) {
            remove_quietly(&data);
            return Err(e);
        }
        Ok(meta)
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

    /// The bytes of an export's file (check [`downloadable`] first). A swept
    /// export's file is gone: an `Io` error of kind `NotFound`.
    pub fn read(&self, meta: &ExportMeta) -> Result<Vec<u8>, ExportError> {
        let id = parse_id(&meta.export_id)
            .ok_or_else(|| ExportError::InvalidId(meta.export_id.clone()))?;
        let path = self.data_path(id, meta.format);
        fs::read(&path).map_err(|e| ExportError::io(&path, e))
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

    /// The names and paths of the directory's files; unreadable entries
    /// are logged and skipped.
    fn entries(&self) -> Result<Vec<(String, PathBuf)>, ExportError> {
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

    fn read_sidecar(&self, id: Uuid) -> Result<Option<ExportMeta>, ExportError> {
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

    fn write_sidecar(&self, id: Uuid, meta: &ExportMeta) -> Result<(), ExportError> {
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
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
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
fn create_private(path: &Path) -> io::Result<fs::File> {
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
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Err(e) = fs::File::open(dir).and_then(|d| d.sync_all()) {
        tracing::debug!(dir = %dir.display(), error = %e, "cannot sync export directory");
    }
    #[cfg(not(unix))]
    let _ = dir;
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

/// Deletes a file after a failure, ignoring errors (the sweeper retries).
fn remove_quietly(path: &Path) {
    if let Err(e) = fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::debug!(path = %path.display(), error = %e, "cannot delete export file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use usage_core::event::Access;
    use usage_core::status::Status;

    fn row() -> ReportRow {
        ReportRow {
            user_key: "3f2a9c0d4e5b6a7f".into(),
            name: None,
            email: None,
            avatar_url: None,
            team_id: "team-1".into(),
            groups: vec!["Design".into(), "Ops".into()],
            product: "photoshop".into(),
            access: Access::Flex,
            assigned_date: NaiveDate::from_ymd_opt(2026, 1, 5),
            last_accessed: None,
            days_used: 3,
            monthly_average: 1.5,
            tokens_used: Tokens::from_millis(12_500),
            status: Status::Active,
        }
    }

    fn csv_text(bytes: &[u8]) -> String {
        String::from_utf8(bytes.to_vec()).expect("CSV is UTF-8")
    }

    fn now() -> DateTime<Utc> {
        // The store's sweep compares real file times with `now`.
        Utc::now()
    }

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
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

    fn save(store: &ExportStore, owner: &str, created: DateTime<Utc>) -> ExportMeta {
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
                1,
                b"user_key\r\nx\r\n",
                created,
            )
            .expect("saved")
    }

    #[test]
    fn report_columns_are_the_json_fields_of_a_row() {
        let json = serde_json::to_value(row()).expect("serialises");
        let mut keys: Vec<&str> = json
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        let mut columns = REPORT_COLUMNS.to_vec();
        keys.sort_unstable();
        columns.sort_unstable();
        assert_eq!(keys, columns);
    }

    #[test]
    fn csv_has_the_header_and_a_hashed_row_with_empty_nulls() {
        let bytes = render_report(&[row()], ExportFormat::Csv).expect("rendered");
        let text = csv_text(&bytes);
        let mut lines = text.split("\r\n");
        assert_eq!(
            lines.next(),
            Some(
                "user_key,name,email,avatar_url,team_id,groups,product,access,assigned_date,\
                 last_accessed,days_used,monthly_average,tokens_used,status"
            )
        );
        assert_eq!(
            lines.next(),
            Some("3f2a9c0d4e5b6a7f,,,,team-1,Design; Ops,photoshop,flex,2026-01-05,,3,1.5,12.5,active")
        );
        assert_eq!(lines.next(), Some(""));
        assert_eq!(lines.next(), None);
    }

    #[test]
    fn csv_quotes_commas_quotes_and_newlines() {
        let mut r = row();
        r.name = Some("Doe, \"Jane\"\nJr".into());
        r.email = Some("jane@example.com".into());
        let text = csv_text(&render_report(&[r], ExportFormat::Csv).expect("rendered"));
        assert!(
            text.contains(",\"Doe, \"\"Jane\"\"\nJr\",jane@example.com,"),
            "{text}"
        );
    }

    #[test]
    fn csv_guards_against_formula_injection() {
        let mut r = row();
        r.name = Some("=HYPERLINK(\"http://x\")".into());
        r.email = Some("@evil".into());
        r.avatar_url = Some("-1+1".into());
        r.groups = vec!["+cmd".into()];
        r.team_id = "\tteam".into();
        r.product = "\rp".into();
        let text = csv_text(&render_report(&[r], ExportFormat::Csv).expect("rendered"));
        let line = text.split("\r\n").nth(1).expect("a row");
        assert!(line.contains("\"'=HYPERLINK(\"\"http://x\"\")\""), "{line}");
        assert!(line.contains(",'@evil,'-1+1,"), "{line}");
        assert!(line.contains(",'+cmd,"), "{line}");
        assert!(line.contains("'\tteam"), "{line}");
        assert!(line.contains("\"'\rp\""), "{line}");
        assert_eq!(guard_formula("plain"), "plain");
    }

    #[test]
    fn raw_usage_csv_has_its_columns() {
        let day = NaiveDate::from_ymd_opt(2026, 2, 1).expect("date");
        let seat = SeatUsageDay {
            date: day,
            team_id: "t".into(),
            user_key: "u".into(),
            name: Some("Ann".into()),
            email: None,
            product: "p".into(),
        };
        let text = csv_text(&render_seat_usage(&[seat], ExportFormat::Csv).expect("rendered"));
        assert_eq!(
            text,
            "date,team_id,user_key,name,email,product\r\n2026-02-01,t,u,Ann,,p\r\n"
        );
        let window = TokenUsageWindow {
            date: day,
            window_start: day.and_hms_opt(8, 30, 0).expect("time").and_utc(),
            team_id: "t".into(),
            user_key: "u".into(),
            name: None,
            email: None,
            product: "p".into(),
            tokens: Tokens::from_whole(7),
        };
        let text = csv_text(&render_token_usage(&[window], ExportFormat::Csv).expect("rendered"));
        assert_eq!(
            text,
            "date,window_start,team_id,user_key,name,email,product,tokens\r\n\
             2026-02-01,2026-02-01T08:30:00Z,t,u,,,p,7\r\n"
        );
    }

    #[test]
    fn xlsx_is_a_zip_and_takes_long_and_formula_like_text() {
        let mut r = row();
        r.name = Some("=1+1".into());
        r.email = Some("x".repeat(XLSX_MAX_CELL_CHARS + 10));
        let bytes = render_report(&[r.clone(), row()], ExportFormat::Xlsx).expect("rendered");
        assert!(bytes.len() > 100);
        assert_eq!(&bytes[..4], b"PK\x03\x04");
        for bytes in [
            render_seat_usage(&[], ExportFormat::Xlsx).expect("rendered"),
            render_token_usage(&[], ExportFormat::Xlsx).expect("rendered"),
        ] {
            assert_eq!(&bytes[..2], b"PK");
        }
        assert_eq!(
            truncate_for_xlsx(&"é".repeat(40_000)).chars().count(),
            32_767
        );
        // Astral characters count twice toward Excel's limit.
        assert_eq!(
            truncate_for_xlsx(&"😀".repeat(20_000)).chars().count(),
            16_383
        );
    }

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
