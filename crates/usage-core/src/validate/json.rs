//! The checks on the message as a whole before any parsing (size, UTF-8,
//! nesting, "an object"), the one serde pass into a wire struct, and the
//! mapping of serde's errors to a [`Reason`] and a field path.

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::error::clip;
use super::{Limits, Reason, ValidationError};

/// Size, UTF-8 and "is it an object" checks before any parsing.
pub(super) fn preflight<'a>(bytes: &'a [u8], limits: &Limits) -> Result<&'a str, ValidationError> {
    within_size(bytes, limits)?;
    let text = std::str::from_utf8(bytes).map_err(|e| {
        ValidationError::whole(Reason::InvalidUtf8, format!("message is not UTF-8: {e}"))
    })?;
    an_object(text)
}

/// [`preflight`] of a message already known to be text: the same checks
/// but UTF-8's, in the same order.
pub(super) fn preflight_text<'a>(
    text: &'a str,
    limits: &Limits,
) -> Result<&'a str, ValidationError> {
    within_size(text.as_bytes(), limits)?;
    an_object(text)
}

fn within_size(bytes: &[u8], limits: &Limits) -> Result<(), ValidationError> {
    if bytes.len() > limits.max_message_bytes {
        return Err(ValidationError::whole(
            Reason::TooLarge,
            format!(
                "message is {} bytes, at most {} allowed",
                bytes.len(),
                limits.max_message_bytes
            ),
        ));
    }
    Ok(())
}

/// Nesting within bounds, and a JSON object (not an array or a scalar).
fn an_object(text: &str) -> Result<&str, ValidationError> {
    if nesting_exceeds(text.as_bytes(), MAX_NESTING) {
        return Err(ValidationError::whole(
            Reason::MalformedJson,
            format!("objects and arrays nest deeper than {MAX_NESTING}"),
        ));
    }
    // serde would accept a JSON array for a struct (fields by position): only
    // objects are events.
    let first = text
        .bytes()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(b'{') {
        return Err(match serde_json::from_str::<IgnoredAny>(text) {
            Ok(_) => ValidationError::whole(Reason::NotAnObject, "an event is a JSON object"),
            Err(e) => malformed(&e),
        });
    }
    Ok(text)
}

/// The deepest nesting of objects and arrays a message may have, anywhere
/// (an ignored unknown property included): serde_json's own limit where it
/// builds values, so every decoder refuses the same messages.
pub const MAX_NESTING: usize = 128;

/// Whether objects and arrays nest deeper than `limit` (brackets inside
/// strings do not count). A message with at most `limit` opening brackets in
/// all cannot, which a plain count tells cheaply: the scan runs only then.
fn nesting_exceeds(bytes: &[u8], limit: usize) -> bool {
    // `{` and `[` differ from each other only in bit 5 (0x7B, 0x5B): one
    // compare per byte, summed branch-free in byte lanes (chunks of 255 so a
    // lane never overflows) so that it vectorizes.
    let opening: usize = bytes
        .chunks(255)
        .map(|chunk| {
            usize::from(
                chunk
                    .iter()
                    .fold(0u8, |n, &b| n + u8::from(b | 0x20 == b'{')),
            )
        })
        .sum();
    if opening <= limit {
        return false;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// One serde pass into a wire struct; on failure, the precise reason and field.
pub(super) fn parse<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, ValidationError> {
    serde_json::from_str(text).map_err(|first| classify::<T>(text, &first))
}

/// The error path: parse again to tell syntax from typing, and to find the
/// path of the offending property.
fn classify<'a, T: Deserialize<'a>>(text: &'a str, first: &serde_json::Error) -> ValidationError {
    // Syntax first: a message broken anywhere is malformed, whatever the
    // typed pass stumbled on before reaching the break.
    if let Err(e) = serde_json::from_str::<IgnoredAny>(text) {
        return malformed(&e);
    }
    let mut de = serde_json::Deserializer::from_str(text);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Err(e) => {
            let path = e.path().to_string();
            data_error(&path, &message_of(e.inner()))
        }
        // Cannot happen (the same input failed a moment ago); stay total anyway.
        Ok(_) => data_error(".", &message_of(first)),
    }
}

fn malformed(e: &serde_json::Error) -> ValidationError {
    ValidationError::whole(Reason::MalformedJson, message_of(e))
}

/// serde_json's message without its " at line L column C" suffix.
fn message_of(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) if e.line() != 0 => text[..i].to_owned(),
        _ => text,
    }
}

/// Maps serde's data-error messages (the stable wording of `serde::de::Error`'s
/// provided constructors) to a reason and a field path.
fn data_error(path: &str, message: &str) -> ValidationError {
    let join = |name: &str| {
        if path == "." || path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    let field_at_path = || {
        if path == "." || path.is_empty() {
            None
        } else {
            Some(path.to_owned())
        }
    };
    let (reason, field) = if let Some(name) = backticked(message, "missing field `") {
        (Reason::MissingField, Some(join(name)))
    } else if let Some(name) = backticked(message, "duplicate field `") {
        (Reason::MalformedJson, Some(join(name)))
    } else if message.starts_with("invalid type: ")
        || message.starts_with("invalid length ")
        || message.starts_with("expected ")
    {
        // "expected …" is serde_json's wording when the document is valid
        // (checked before) but the value cannot start the expected type.
        (Reason::WrongType, field_at_path())
    } else if message.starts_with("unknown variant `") {
        (Reason::UnknownValue, field_at_path())
    } else if message.starts_with("recursion limit exceeded") {
        (Reason::MalformedJson, None)
    } else {
        // "invalid value: …", "number out of range", custom messages.
        (Reason::InvalidValue, field_at_path())
    };
    ValidationError {
        reason,
        field,
        detail: clip(message.to_owned(), ValidationError::MAX_DETAIL_LEN),
    }
}

/// The name between `prefix` and the next backtick.
fn backticked<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    let rest = message.strip_prefix(prefix)?;
    rest.split_once('`').map(|(name, _)| name)
}
