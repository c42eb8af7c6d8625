//! The decoder and validator on arbitrary bytes: whatever arrives on the
//! inbound topics, decoding answers an event or a `ValidationError` — it
//! never panics, and a refusal always names a reason. The first byte picks
//! the topic's decoder, the rest is the message.
#![no_main]

use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use usage_core::validate::{decode_assignment, decode_authorization, decode_directory, Limits};

fuzz_target!(|data: &[u8]| {
    let Some((&which, message)) = data.split_first() else {
        return;
    };
    let limits = Limits::default();
    let now = Utc
        .with_ymd_and_hms(2026, 11, 28, 12, 0, 0)
        .single()
        .unwrap_or_default();
    let refused = match which % 3 {
        0 => decode_authorization(message, &limits, now).err(),
        1 => decode_assignment(message, &limits, now).err(),
        _ => decode_directory(message, &limits, now).err(),
    };
    if let Some(error) = refused {
        assert!(!error.reason.as_str().is_empty());
    }
});
