//! The bounds the decoder enforces beyond the JSON shape.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

use crate::event::Tokens;

/// The bounds the decoder enforces beyond the JSON shape. The defaults are
/// the published contract (the JSON Schemas spell the same string limits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted message, in bytes (default 64 KiB). Larger messages
    /// are [`Reason::TooLarge`](super::Reason::TooLarge) and are not parsed at all.
    pub max_message_bytes: usize,
    /// Longest accepted string, in characters, for every string field except
    /// URLs: ids, product codes, names, emails (default 256).
    pub max_string_len: usize,
    /// Longest accepted URL (`avatar_url`), in characters (default 2048).
    pub max_url_len: usize,
    /// How far past `now` an `occurred_at` may be (clock skew between
    /// publishers and us; default 5 minutes). Beyond it:
    /// [`Reason::FutureTimestamp`](super::Reason::FutureTimestamp). Not applied to `product_rate.effective_from`,
    /// which may legitimately be scheduled ahead.
    pub max_future_skew: TimeDelta,
    /// Earliest accepted `occurred_at` and `effective_from` (default
    /// 2000-01-01T00:00:00Z): older ones are absurd ([`Reason::PastTimestamp`](super::Reason::PastTimestamp)).
    pub min_occurred_at: DateTime<Utc>,
    /// Largest accepted `flex_tokens_per_day` (default one billion tokens),
    /// far above any real rate and well inside exact float range on the wire.
    pub max_flex_tokens_per_day: Tokens,
}

impl Limits {
    /// Default [`Limits::max_message_bytes`]: 64 KiB.
    pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;
    /// Default [`Limits::max_string_len`]: 256 characters.
    pub const DEFAULT_MAX_STRING_LEN: usize = 256;
    /// Default [`Limits::max_url_len`]: 2048 characters.
    pub const DEFAULT_MAX_URL_LEN: usize = 2048;
    /// Default [`Limits::max_future_skew`] in seconds: 5 minutes.
    pub const DEFAULT_MAX_FUTURE_SKEW_SECS: i64 = 300;
    /// Default [`Limits::max_flex_tokens_per_day`], in whole tokens.
    pub const DEFAULT_MAX_FLEX_TOKENS_PER_DAY: u64 = 1_000_000_000;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: Self::DEFAULT_MAX_MESSAGE_BYTES,
            max_string_len: Self::DEFAULT_MAX_STRING_LEN,
            max_url_len: Self::DEFAULT_MAX_URL_LEN,
            max_future_skew: TimeDelta::seconds(Self::DEFAULT_MAX_FUTURE_SKEW_SECS),
            min_occurred_at: NaiveDate::from_ymd_opt(2000, 1, 1)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc())
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
            max_flex_tokens_per_day: Tokens::from_whole(Self::DEFAULT_MAX_FLEX_TOKENS_PER_DAY),
        }
    }
}
