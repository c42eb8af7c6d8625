//! A RowBinary encoder for the few column types our tables use.
//!
//! The batch is encoded once into bytes; a failed insert is retried with the
//! identical bytes (the official `clickhouse` crate carries them, LZ4
//! compressed, over HTTP). RowBinary is the same on ClickHouse 18.16 and on a
//! current server.

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, NaiveDate, Timelike, Utc};

/// Rows of one table, encoded.
#[derive(Debug, Default, Clone)]
pub(crate) struct RowBinary {
    buf: BytesMut,
    rows: usize,
}

impl RowBinary {
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    pub(crate) fn into_bytes(self) -> bytes::Bytes {
        self.buf.freeze()
    }

    /// Marks the end of a row (the columns were written in table order).
    pub(crate) fn end_row(&mut self) {
        self.rows += 1;
    }

    pub(crate) fn string(&mut self, s: &str) -> &mut Self {
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

    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.put_u8(v);
        self
    }

    /// An `Enum8` value.
    pub(crate) fn enum8(&mut self, v: i8) -> &mut Self {
        self.buf.put_i8(v);
        self
    }

    pub(crate) fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.put_u16_le(v);
        self
    }

    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.put_u32_le(v);
        self
    }

    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.put_u64_le(v);
        self
    }

    /// A `Date`: days since 1970-01-01 (dates before it are clamped to it).
    pub(crate) fn date(&mut self, d: NaiveDate) -> &mut Self {
        self.u16(days_since_epoch(d))
    }

    /// A `DateTime`: seconds since the epoch (clamped to the type's range).
    pub(crate) fn datetime(&mut self, t: DateTime<Utc>) -> &mut Self {
        self.u32(u32::try_from(t.timestamp().max(0)).unwrap_or(u32::MAX))
    }

    /// A `DateTime` and the `UInt32` microseconds within its second.
    pub(crate) fn datetime_us(&mut self, t: DateTime<Utc>) -> &mut Self {
        self.datetime(t).u32(t.nanosecond().min(999_999_999) / 1000)
    }
}

/// Days since 1970-01-01 as ClickHouse's `Date` stores them.
pub(crate) fn days_since_epoch(d: NaiveDate) -> u16 {
    let days = d.signed_duration_since(NaiveDate::default()).num_days();
    u16::try_from(days.max(0)).unwrap_or(u16::MAX)
}

/// Microseconds since the epoch, the `version` of latest-wins tables.
pub(crate) fn micros(t: DateTime<Utc>) -> u64 {
    u64::try_from(t.timestamp_micros()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_length_prefixed_with_a_varint() {
        let mut rb = RowBinary::default();
        rb.string("ab").string(&"x".repeat(300));
        let bytes = rb.into_bytes();
        assert_eq!(&bytes[..3], &[2, b'a', b'b']);
        assert_eq!(&bytes[3..5], &[0xac, 0x02], "300 = 0b10_0101100");
        assert_eq!(bytes.len(), 3 + 2 + 300);
    }

    #[test]
    fn dates_and_times_are_epoch_counts() {
        let d = NaiveDate::from_ymd_opt(2026, 3, 1).expect("date");
        assert_eq!(days_since_epoch(d), 20513);
        let t = DateTime::parse_from_rfc3339("2026-03-01T00:00:01.000250Z")
            .expect("time")
            .with_timezone(&Utc);
        let mut rb = RowBinary::default();
        rb.datetime_us(t);
        let bytes = rb.into_bytes();
        assert_eq!(
            u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")),
            1_772_323_201
        );
        assert_eq!(
            u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes")),
            250
        );
    }
}
