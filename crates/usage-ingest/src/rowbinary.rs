//! A RowBinary encoder for the rows of one table, written column by column
//! in the order of the table's definition (`usage_store::schema`).
//!
//! Values are checked on the way in ([`usage_store::schema::values`]): one
//! a column cannot hold faithfully is an [`Unstorable`] error and the row is
//! not written at all — never clamped, as ClickHouse 18.16 would store the
//! clamped value as if it were true. In debug builds (the tests) every value
//! is also checked against its column's type, and every row against the
//! number of columns.
//!
//! The batch is encoded once into bytes; a failed insert is retried with the
//! identical bytes (the official `clickhouse` crate carries them, LZ4
//! compressed, over HTTP). RowBinary is the same on ClickHouse 18.16 and on a
//! current server.

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, NaiveDate, Utc};
use usage_store::schema::{values, Column, ColumnType, StoredEnum, TableDef, Unstorable};

/// Rows of one table, encoded.
#[derive(Debug, Clone)]
pub(crate) struct RowBinary {
    table: TableDef,
    buf: BytesMut,
    rows: usize,
}

impl RowBinary {
    pub(crate) fn new(table: TableDef) -> RowBinary {
        RowBinary {
            table,
            buf: BytesMut::new(),
            rows: 0,
        }
    }

    /// Room for `bytes` up front (no regrowth and copying as rows come).
    pub(crate) fn with_capacity(table: TableDef, bytes: usize) -> RowBinary {
        RowBinary {
            table,
            buf: BytesMut::with_capacity(bytes),
            rows: 0,
        }
    }

    pub(crate) fn table(&self) -> TableDef {
        self.table
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Appends the rows of `other` (of the same table) after these.
    pub(crate) fn append(&mut self, other: RowBinary) {
        debug_assert_eq!(self.table.name, other.table.name);
        if self.rows == 0 {
            *self = other;
            return;
        }
        self.buf.extend_from_slice(&other.buf);
        self.rows += other.rows;
    }

    pub(crate) fn into_bytes(self) -> bytes::Bytes {
        self.buf.freeze()
    }

    /// Writes one row: `write` writes its columns in table order. When a
    /// value cannot be stored, nothing of the row is written.
    pub(crate) fn row(
        &mut self,
        write: impl FnOnce(&mut Row<'_>) -> Result<(), Unstorable>,
    ) -> Result<(), Unstorable> {
        let start = self.buf.len();
        let mut row = Row {
            buf: &mut self.buf,
            table: self.table,
            next: 0,
        };
        match write(&mut row) {
            Ok(()) => {
                debug_assert_eq!(
                    row.next,
                    self.table.columns.len(),
                    "a row of {} has {} columns",
                    self.table,
                    self.table.columns.len()
                );
                self.rows += 1;
                Ok(())
            }
            Err(error) => {
                self.buf.truncate(start);
                Err(error)
            }
        }
    }
}

/// One row being written: each method writes the next column.
pub(crate) struct Row<'a> {
    buf: &'a mut BytesMut,
    table: TableDef,
    next: usize,
}

impl Row<'_> {
    /// The next column, which should be of type `ty`; its name.
    fn column(&mut self, ty: ColumnType) -> &'static str {
        let column: Option<&'static Column> = self.table.columns.get(self.next);
        debug_assert!(
            column.is_some_and(|c| c.ty == ty),
            "{}: column {} is {:?}, not {ty}",
            self.table,
            self.next,
            column.map(|c| (c.name, c.ty.to_string())),
        );
        self.next += 1;
        column.map_or("?", |c| c.name)
    }

    pub(crate) fn string(&mut self, s: &str) -> &mut Self {
        self.column(ColumnType::String);
        let mut len = s.len() as u64;
        loop {
            let byte = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                self.buf.put_u8(byte);
                break;
            }
            self.buf.put_u8(byte | 0x80);
        }
        self.buf.put_slice(s.as_bytes());
        self
    }

    /// A `UInt8` flag: 1 or 0.
    pub(crate) fn flag(&mut self, v: bool) -> &mut Self {
        self.column(ColumnType::UInt8);
        self.buf.put_u8(u8::from(v));
        self
    }

    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.column(ColumnType::UInt64);
        self.buf.put_u64_le(v);
        self
    }

    /// An `Enum8` value: its code.
    pub(crate) fn enum8<E: StoredEnum>(&mut self, v: E) -> &mut Self {
        self.column(ColumnType::Enum8(E::CODES));
        self.buf.put_i8(v.code());
        self
    }

    /// A number in a `UInt16` column.
    pub(crate) fn uint16(&mut self, v: impl Into<i64>) -> Result<&mut Self, Unstorable> {
        let v = values::uint16(self.column(ColumnType::UInt16), v)?;
        self.buf.put_u16_le(v);
        Ok(self)
    }

    /// A number in a `UInt64` column.
    pub(crate) fn uint64(&mut self, v: impl Into<i64>) -> Result<&mut Self, Unstorable> {
        let v = values::uint64(self.column(ColumnType::UInt64), v)?;
        self.buf.put_u64_le(v);
        Ok(self)
    }

    /// An instant as microseconds since the epoch, in a `UInt64` column (a `version`).
    pub(crate) fn micros(&mut self, t: DateTime<Utc>) -> Result<&mut Self, Unstorable> {
        let v = values::micros(self.column(ColumnType::UInt64), t)?;
        self.buf.put_u64_le(v);
        Ok(self)
    }

    /// A `Date`.
    pub(crate) fn date(&mut self, d: NaiveDate) -> Result<&mut Self, Unstorable> {
        let days = values::date(self.column(ColumnType::Date), d)?;
        self.buf.put_u16_le(days);
        Ok(self)
    }

    /// A `DateTime` (whole seconds).
    pub(crate) fn datetime(&mut self, t: DateTime<Utc>) -> Result<&mut Self, Unstorable> {
        let seconds = values::datetime(self.column(ColumnType::DateTime), t)?;
        self.buf.put_u32_le(seconds);
        Ok(self)
    }

    /// A `DateTime` and the `UInt32` microseconds within its second (two columns).
    pub(crate) fn datetime_us(&mut self, t: DateTime<Utc>) -> Result<&mut Self, Unstorable> {
        let (seconds, micros) = values::datetime_us(self.column(ColumnType::DateTime), t)?;
        self.column(ColumnType::UInt32);
        self.buf.put_u32_le(seconds);
        self.buf.put_u32_le(micros);
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use usage_core::event::Access;
    use usage_store::schema::{Why, DAILY_USAGE, FLEX_WINDOWS};

    fn instant(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn strings_are_length_prefixed_with_a_varint() {
        let mut rb = RowBinary::new(DAILY_USAGE);
        let day = NaiveDate::from_ymd_opt(2026, 3, 1).expect("date");
        let long = "x".repeat(300);
        rb.row(|r| {
            r.string("ab")
                .string(&long)
                .string("")
                .enum8(Access::Flex)
                .date(day)?;
            Ok(())
        })
        .expect("storable");
        let bytes = rb.into_bytes();
        assert_eq!(&bytes[..3], &[2, b'a', b'b']);
        assert_eq!(&bytes[3..5], &[0xac, 0x02], "300 = 0b10_0101100");
        assert_eq!(
            &bytes[305..307],
            &[0, 2],
            "empty string, then the flex code"
        );
        assert_eq!(&bytes[307..], &20_513u16.to_le_bytes());
    }

    #[test]
    fn dates_and_times_are_epoch_counts() {
        let t = instant("2026-03-01T00:00:01.000250Z");
        let mut rb = RowBinary::new(FLEX_WINDOWS);
        rb.row(|r| {
            r.string("u")
                .string("p")
                .datetime_us(t)?
                .string("t")
                .string("e")
                .u64(7);
            Ok(())
        })
        .expect("storable");
        let bytes = rb.into_bytes();
        assert_eq!(&bytes[4..8], &1_772_323_201u32.to_le_bytes());
        assert_eq!(&bytes[8..12], &250u32.to_le_bytes());
    }

    #[test]
    fn a_row_with_an_unstorable_value_is_not_written() {
        let mut rb = RowBinary::new(FLEX_WINDOWS);
        let write = |rb: &mut RowBinary, start: &str| {
            rb.row(|r| {
                r.string("u")
                    .string("p")
                    .datetime_us(instant(start))?
                    .string("t")
                    .string("e")
                    .u64(7);
                Ok(())
            })
        };
        write(&mut rb, "2026-03-01T00:00:00Z").expect("storable");
        let error = write(&mut rb, "1969-12-31T23:59:59Z").expect_err("before the epoch");
        assert_eq!((error.column, error.why), ("window_start", Why::Below));
        let error = write(&mut rb, "2106-01-01T00:00:00Z").expect_err("after the last second");
        assert_eq!(error.why, Why::Above);
        assert_eq!(rb.rows(), 1);
        assert_eq!(rb.into_bytes().len(), 2 + 2 + 8 + 2 + 2 + 8, "one row");
    }
}
