//! Rendering: rows to CSV or XLSX bytes, pure functions. Text is guarded
//! against formula injection in CSV and written as strings in XLSX.

use std::borrow::Cow;

use chrono::NaiveDate;
use rust_xlsxwriter::{ColNum, Format, RowNum, Workbook, XlsxError};
use usage_core::event::Tokens;

use super::ExportError;
use crate::model::{ExportFormat, ReportRow};
use crate::report::{SeatUsageDay, TokenUsageDay};

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
pub const TOKEN_USAGE_COLUMNS: [&str; 7] = [
    "date", "team_id", "user_key", "name", "email", "product", "tokens",
];

/// Excel's limit on the characters (UTF-16 code units) of one cell.
const XLSX_MAX_CELL_CHARS: usize = 32_767;

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

/// Renders raw token usage (one line per team, user, product and UTC date
/// with Flex usage).
pub fn render_token_usage(
    rows: &[TokenUsageDay],
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
        let text =
            csv_text(&render_token_usage(&[used, inside], ExportFormat::Csv).expect("rendered"));
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
}
