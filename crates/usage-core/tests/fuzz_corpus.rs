//! The fuzzing corpus (`fuzz/corpus/decode/`, grown by `scripts/fuzz`) run
//! through the decoders on every test run: each input is decoded or refused
//! with a reason, never a panic — the fuzz target's property, on stable.

use chrono::{TimeZone, Utc};
use usage_core::validate::{decode_assignment, decode_authorization, decode_directory, Limits};

#[test]
fn every_corpus_input_is_decoded_or_refused_with_a_reason() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/decode");
    let entries = std::fs::read_dir(&dir).expect("the fuzz corpus is committed");
    let limits = Limits::default();
    let now = Utc
        .with_ymd_and_hms(2026, 11, 28, 12, 0, 0)
        .single()
        .expect("a date");
    let mut inputs = 0;
    for entry in entries {
        let data = std::fs::read(entry.expect("entry").path()).expect("readable");
        let Some((&which, message)) = data.split_first() else {
            continue;
        };
        let refused = match which % 3 {
            0 => decode_authorization(message, &limits, now).err(),
            1 => decode_assignment(message, &limits, now).err(),
            _ => decode_directory(message, &limits, now).err(),
        };
        if let Some(error) = refused {
            assert!(!error.reason.as_str().is_empty());
        }
        inputs += 1;
    }
    assert!(inputs >= 100, "the corpus has its seeds ({inputs})");
}
