//! Rendering: rows to CSV or XLSX, written row by row as they come
//! ([`RowWriter`]). Text is guarded against formula injection in CSV and
//! written as strings in XLSX.

use std::borrow::Cow;
use std::io::{Seek, Write};
use std::marker::PhantomData;
use std::path::Path;

use chrono::NaiveDate;
use rust_xlsxwriter::{ColNum, Format, RowNum, Workbook, Worksheet, XlsxError};
use usage_core::event::Tokens;

use super::ExportError;
use crate::model::{ExportFormat, ReportRow};
use crate::report::{SeatUsageDay, TokenUsageDay};

/// The columns of the report export: the JSON field names of [`ReportRow`],
/// in declaration order.
pub const REPORT_COLUMNS: [&str; 15] = [
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
    "usage_class",
];

/// The columns of the raw seat usage export.
pub const SEAT_USAGE_COLUMNS: [&str; 6] =
    ["date", "team_id", "user_key", "name", "email", "product"];

/// The columns of the raw token usage export.
pub const TOKEN_USAGE_COLUMNS: [&str; 7] = [
    "date", "team_id", "user_key", "name", "email", "product", "tokens",
];

/// Excel's limit on the characters (UTF-16 code units) of one cell.
const XLSX_MAX_CELL_CHARS: usize = 32_767;

/// One cell of an export, before it is written as CSV or XLSX.
pub enum Cell<'a> {
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
pub trait Record {
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
            Cell::text(self.usage_class.as_str()),
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

impl Record for TokenUsageDay {
    const COLUMNS: &'static [&'static str] = &TOKEN_USAGE_COLUMNS;
    const SHEET: &'static str = "Token usage";

    fn cells(&self) -> Vec<Cell<'_>> {
        vec![
            Cell::date(self.date),
            Cell::text(&self.team_id),
            Cell::text(&self.user_key),
            Cell::opt_text(&self.name),
            Cell::opt_text(&self.email),
            Cell::text(&self.product),
            Cell::Tokens(self.tokens),
        ]
    }
}

/// Excel's widest column, in pixels (what `autofit` allows).
const XLSX_MAX_WIDTH_PX: u16 = 1_790;

/// An export's rows written as CSV or XLSX as they come, into `W` (a
/// temporary file of the store; a buffer in tests). Holds one row at a
/// time: CSV goes through the writer's buffer, XLSX through
/// rust_xlsxwriter's constant-memory worksheet (rows flushed to a scratch
/// file as they are written, strings inline), so its memory does not grow
/// with the rows. Blocking.
pub struct RowWriter<R, W: Write + Seek + Send> {
    sink: Sink<W>,
    rows: u64,
    kind: PhantomData<fn(&R)>,
}

enum Sink<W: Write + Seek + Send> {
    Csv(Box<csv::Writer<W>>),
    Xlsx(Box<Sheet<W>>),
}

/// A constant-memory worksheet and where its workbook goes.
struct Sheet<W> {
    workbook: Workbook,
    sheet: Worksheet,
    out: W,
    /// The widest cell of each column so far, in pixels: `autofit` sees
    /// only the row in memory, so the writer measures as it goes.
    widths: Vec<u16>,
}

impl<R: Record, W: Write + Seek + Send> RowWriter<R, W> {
    /// A writer of `format` into `out`, its header written. `scratch`: where
    /// XLSX keeps the rows written until the file is assembled (the system's
    /// temporary directory when `None`); its files are unnamed or unlinked
    /// at once, so nothing is left behind.
    pub fn new(
        format: ExportFormat,
        out: W,
        scratch: Option<&Path>,
    ) -> Result<RowWriter<R, W>, ExportError> {
        let sink = match format {
            ExportFormat::Csv => {
                let mut writer = csv::WriterBuilder::new()
                    .terminator(csv::Terminator::CRLF)
                    .from_writer(out);
                writer.write_record(R::COLUMNS)?;
                Sink::Csv(Box::new(writer))
            }
            ExportFormat::Xlsx => {
                let mut workbook = Workbook::new();
                if let Some(dir) = scratch {
                    workbook.set_tempdir(dir)?;
                }
                let mut sheet = workbook.new_worksheet_with_constant_memory();
                sheet.set_name(R::SHEET)?;
                let bold = Format::new().set_bold();
                let mut widths = Vec::with_capacity(R::COLUMNS.len());
                for (col, name) in (0..).zip(R::COLUMNS) {
                    sheet.write_string_with_format(0, col, *name, &bold)?;
                    widths.push(pixels(name));
                }
                sheet.set_freeze_panes(1, 0)?;
                Sink::Xlsx(Box::new(Sheet {
                    workbook,
                    sheet,
                    out,
                    widths,
                }))
            }
        };
        Ok(RowWriter {
            sink,
            rows: 0,
            kind: PhantomData,
        })
    }

    /// Data lines written so far (the header excluded).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Appends one row.
    pub fn write(&mut self, row: &R) -> Result<(), ExportError> {
        let cells = row.cells();
        match &mut self.sink {
            Sink::Csv(writer) => {
                writer.write_record(cells.iter().map(|c| c.csv().into_owned()))?;
            }
            Sink::Xlsx(sheet) => {
                let r = self
                    .rows
                    .checked_add(1)
                    .and_then(|r| RowNum::try_from(r).ok())
                    .ok_or(XlsxError::RowColumnLimitError)?;
                sheet.write(r, cells)?;
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// Ends the file (CSV flushed; XLSX assembled from its scratch file
    /// into `out`) and returns `out`.
    pub fn finish(self) -> Result<W, ExportError> {
        match self.sink {
            Sink::Csv(writer) => writer
                .into_inner()
                .map_err(|e| ExportError::Csv(csv::Error::from(e.into_error()))),
            Sink::Xlsx(sheet) => sheet.finish(),
        }
    }
}

impl<W: Write + Seek + Send> Sheet<W> {
    fn write(&mut self, r: RowNum, cells: Vec<Cell<'_>>) -> Result<(), XlsxError> {
        let sheet = &mut self.sheet;
        for ((col, cell), width) in (0..).zip(cells).zip(self.widths.iter_mut()) {
            let col: ColNum = col;
            let px = match cell {
                Cell::Text(s) => {
                    // Never a formula, whatever the text starts with.
                    let s = truncate_for_xlsx(&s);
                    sheet.write_string(r, col, s)?;
                    pixels(s)
                }
                Cell::Int(n) => {
                    // Exact below 2^53, far beyond any count of days.
                    sheet.write_number(r, col, n as f64)?;
                    pixels(&n.to_string())
                }
                Cell::Float(f) if f.is_finite() => {
                    sheet.write_number(r, col, f)?;
                    pixels(&f.to_string())
                }
                Cell::Tokens(t) => {
                    // Exact for every thousandth below 2^53 / 1000 tokens.
                    sheet.write_number(r, col, t.millis() as f64 / 1000.0)?;
                    pixels(&t.to_string())
                }
                Cell::Float(_) | Cell::Empty => 0,
            };
            *width = (*width).max(px);
        }
        Ok(())
    }

    fn finish(self) -> Result<W, ExportError> {
        let Sheet {
            mut workbook,
            mut sheet,
            mut out,
            widths,
        } = self;
        for (col, px) in (0..).zip(widths) {
            if px > 0 {
                sheet.set_column_autofit_width(col, px)?;
            }
        }
        workbook.push_worksheet(sheet);
        workbook.save_to_writer(&mut out)?;
        Ok(out)
    }
}

/// About how wide `text` shows, in pixels, as `autofit` counts digits: 7
/// per character of the widest line and 7 of padding, at most Excel's limit.
fn pixels(text: &str) -> u16 {
    let chars = text.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    if chars == 0 {
        return 0;
    }
    u16::try_from(chars.saturating_add(1).saturating_mul(7))
        .unwrap_or(u16::MAX)
        .min(XLSX_MAX_WIDTH_PX)
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

/// The whole file of `rows`, in memory (tests).
#[cfg(test)]
pub(super) fn render<R: Record>(rows: &[R], format: ExportFormat) -> Result<Vec<u8>, ExportError> {
    let mut writer = RowWriter::<R, _>::new(format, std::io::Cursor::new(Vec::new()), None)?;
    for row in rows {
        writer.write(row)?;
    }
    Ok(writer.finish()?.into_inner())
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
            usage_class: usage_core::frequency::UsageClass::Occasional,
        }
    }

    fn csv_text(bytes: &[u8]) -> String {
        String::from_utf8(bytes.to_vec()).expect("CSV is UTF-8")
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
        let bytes = render(&[row()], ExportFormat::Csv).expect("rendered");
        let text = csv_text(&bytes);
        let mut lines = text.split("\r\n");
        assert_eq!(
            lines.next(),
            Some(
                "user_key,name,email,avatar_url,team_id,groups,product,access,assigned_date,\
                 last_accessed,days_used,monthly_average,tokens_used,status,usage_class"
            )
        );
        assert_eq!(
            lines.next(),
            Some(
                "3f2a9c0d4e5b6a7f,,,,team-1,Design; Ops,photoshop,flex,2026-01-05,,3,1.5,12.5,\
                 active,occasional"
            )
        );
        assert_eq!(lines.next(), Some(""));
        assert_eq!(lines.next(), None);
    }

    #[test]
    fn csv_quotes_commas_quotes_and_newlines() {
        let mut r = row();
        r.name = Some("Doe, \"Jane\"\nJr".into());
        r.email = Some("jane@example.com".into());
        let text = csv_text(&render(&[r], ExportFormat::Csv).expect("rendered"));
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
        let text = csv_text(&render(&[r], ExportFormat::Csv).expect("rendered"));
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
        let text = csv_text(&render(&[seat], ExportFormat::Csv).expect("rendered"));
        assert_eq!(
            text,
            "date,team_id,user_key,name,email,product\r\n2026-02-01,t,u,Ann,,p\r\n"
        );
        let used = TokenUsageDay {
            date: day,
            team_id: "t".into(),
            user_key: "u".into(),
            name: None,
            email: None,
            product: "p".into(),
            tokens: Tokens::from_whole(7),
        };
        let inside = TokenUsageDay {
            date: day.succ_opt().expect("date"),
            tokens: Tokens::ZERO,
            ..used.clone()
        };
        let text = csv_text(&render(&[used, inside], ExportFormat::Csv).expect("rendered"));
        assert_eq!(
            text,
            "date,team_id,user_key,name,email,product,tokens\r\n\
             2026-02-01,t,u,,,p,7\r\n2026-02-02,t,u,,,p,0\r\n"
        );
    }

    #[test]
    fn xlsx_is_a_zip_and_takes_long_and_formula_like_text() {
        let mut r = row();
        r.name = Some("=1+1".into());
        r.email = Some("x".repeat(XLSX_MAX_CELL_CHARS + 10));
        let bytes = render(&[r.clone(), row()], ExportFormat::Xlsx).expect("rendered");
        assert!(bytes.len() > 100);
        assert_eq!(&bytes[..4], b"PK\x03\x04");
        for bytes in [
            render::<SeatUsageDay>(&[], ExportFormat::Xlsx).expect("rendered"),
            render::<TokenUsageDay>(&[], ExportFormat::Xlsx).expect("rendered"),
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
}
