//! An authorization between its decoding and its rows: the message's text
//! kept as it came (the payload's bytes, moved, not copied) with where each
//! field lies in it, read through [`Pending::auth`] as an
//! [`AuthorizationRef`] — no string allocated per field. A string the JSON
//! spells with escapes cannot be a slice of the message: such an event
//! (rare) is kept owned instead.

use super::storable;
use crate::dlq::DeadLetter;
use crate::message::{RawMessage, TopicNames};
use chrono::{DateTime, Utc};
use std::time::Instant;
use usage_core::event::{Access, Authorization, AuthorizationRef};
use usage_core::validate::{
    decode_authorization, decode_authorization_in_place, DecodedAuthorization, Limits,
    ValidationError,
};

/// An authorization waiting to be stamped, or for the assignment (or the
/// rate) that explains it.
pub(crate) struct Pending {
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    key: Option<Vec<u8>>,
    body: Body,
    /// When its hold runs out.
    pub(crate) deadline: Instant,
}

enum Body {
    /// The message's text and where the fields lie in it (the common case).
    InPlace { text: String, fields: Fields },
    /// The payload, and the event owned: a string had escapes.
    Owned {
        payload: Vec<u8>,
        auth: Box<Authorization>,
    },
}

/// A field's place in the message's text: `start..start + len`, on
/// character boundaries (it was a slice of that text).
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u32,
    len: u32,
}

/// The authorization's fields, its strings as places in the text.
#[derive(Debug, Clone, Copy)]
struct Fields {
    event_id: Span,
    occurred_at: DateTime<Utc>,
    user_id: Span,
    product: Span,
    product_version: Option<Span>,
    access: Access,
    team_id: Option<Span>,
    machine_id: Option<Span>,
    online: bool,
}

impl Pending {
    /// Decodes an authorizations message (the contract's checks, then
    /// [`storable`]); a refused one comes back with why.
    pub(crate) fn read(
        raw: RawMessage,
        limits: &Limits,
        now: DateTime<Utc>,
        deadline: Instant,
    ) -> Result<Pending, (RawMessage, ValidationError)> {
        let RawMessage {
            topic,
            partition,
            offset,
            key,
            payload,
        } = raw;
        let text = match String::from_utf8(payload) {
            Ok(text) => text,
            Err(not_text) => {
                // Refused by the decoder (too large, or not UTF-8, in that
                // order); the owned decoder says why.
                let payload = not_text.into_bytes();
                let decoded = decode_authorization(&payload, limits, now)
                    .and_then(|a| storable::authorization(&a).map(|()| a));
                let raw = RawMessage {
                    topic,
                    partition,
                    offset,
                    key,
                    payload,
                };
                return match decoded {
                    Ok(auth) => Ok(Pending::owned(raw, auth, deadline)),
                    Err(error) => Err((raw, error)),
                };
            }
        };
        let decoded = decode_authorization_in_place(&text, limits, now)
            .and_then(|a| storable::authorization(a.view()).map(|()| a));
        let read = match decoded {
            Ok(a) => Ok(Fields::of(&a, &text).ok_or_else(|| Box::new(a.into_owned()))),
            Err(error) => Err(error),
        };
        let body = match read {
            Ok(Ok(fields)) => Body::InPlace { text, fields },
            Ok(Err(auth)) => Body::Owned {
                payload: text.into_bytes(),
                auth,
            },
            Err(error) => {
                let raw = RawMessage {
                    topic,
                    partition,
                    offset,
                    key,
                    payload: text.into_bytes(),
                };
                return Err((raw, error));
            }
        };
        Ok(Pending {
            partition,
            offset,
            key,
            body,
            deadline,
        })
    }

    /// An authorization already decoded, kept owned: a payload that is not
    /// text (which the decoder refuses, so never in practice), and tests
    /// that generate events rather than messages.
    pub(crate) fn owned(raw: RawMessage, auth: Authorization, deadline: Instant) -> Pending {
        Pending {
            partition: raw.partition,
            offset: raw.offset,
            key: raw.key,
            body: Body::Owned {
                payload: raw.payload,
                auth: Box::new(auth),
            },
            deadline,
        }
    }

    /// The authorization, its strings borrowed from the message.
    pub(crate) fn auth(&self) -> AuthorizationRef<'_> {
        match &self.body {
            Body::InPlace { text, fields } => fields.view(text),
            Body::Owned { auth, .. } => AuthorizationRef::from(&**auth),
        }
    }

    /// Whether its strings are slices of the message (none had escapes).
    #[cfg(test)]
    pub(crate) fn in_place(&self) -> bool {
        matches!(self.body, Body::InPlace { .. })
    }

    /// The message as a dead letter, with why it is refused.
    pub(crate) fn dead_letter(&self, topics: &TopicNames, error: &ValidationError) -> DeadLetter {
        let payload = match &self.body {
            Body::InPlace { text, .. } => text.as_bytes(),
            Body::Owned { payload, .. } => payload,
        };
        DeadLetter {
            source_topic: topics.authorizations.clone(),
            partition: self.partition,
            offset: self.offset,
            key: self.key.clone(),
            payload: payload.to_vec(),
            reason: error.reason.as_str(),
            field: error.field.clone(),
            error: error.to_string(),
        }
    }
}

impl Span {
    /// Where `s` lies in `text`, if it is a slice of it. A string the JSON
    /// spelled with escapes was unescaped into a copy, another allocation:
    /// it is not inside the text.
    fn of(s: &str, text: &str) -> Option<Span> {
        let start = (s.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
        let end = start.checked_add(s.len())?;
        // Inside the text, on character boundaries, the same characters:
        // checked once here, so that reading it back cannot fail.
        if text.get(start..end)? != s {
            return None;
        }
        Some(Span {
            start: u32::try_from(start).ok()?,
            len: u32::try_from(s.len()).ok()?,
        })
    }

    fn of_opt(s: Option<&str>, text: &str) -> Option<Option<Span>> {
        match s {
            None => Some(None),
            Some(s) => Span::of(s, text).map(Some),
        }
    }

    fn read(self, text: &str) -> &str {
        let start = self.start as usize;
        // A place checked against this very text when it was made.
        text.get(start..start + self.len as usize)
            .unwrap_or_default()
    }
}

impl Fields {
    /// The places of `a`'s strings in `text`, the text it was decoded from;
    /// `None` when one of them is not a slice of it.
    fn of(a: &DecodedAuthorization<'_>, text: &str) -> Option<Fields> {
        Some(Fields {
            event_id: Span::of(&a.event_id, text)?,
            occurred_at: a.occurred_at,
            user_id: Span::of(&a.user_id, text)?,
            product: Span::of(&a.product, text)?,
            product_version: Span::of_opt(a.product_version.as_deref(), text)?,
            access: a.access,
            team_id: Span::of_opt(a.team_id.as_deref(), text)?,
            machine_id: Span::of_opt(a.machine_id.as_deref(), text)?,
            online: a.online,
        })
    }

    fn view(self, text: &str) -> AuthorizationRef<'_> {
        AuthorizationRef {
            event_id: self.event_id.read(text),
            occurred_at: self.occurred_at,
            user_id: self.user_id.read(text),
            product: self.product.read(text),
            product_version: self.product_version.map(|s| s.read(text)),
            access: self.access,
            team_id: self.team_id.map(|s| s.read(text)),
            machine_id: self.machine_id.map(|s| s.read(text)),
            online: self.online,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Topic;
    use crate::stamp::tests_now as now;

    fn raw(payload: &[u8]) -> RawMessage {
        RawMessage {
            topic: Topic::Authorizations,
            partition: 3,
            offset: 17,
            key: Some(b"u-1".to_vec()),
            payload: payload.to_vec(),
        }
    }

    fn read(payload: &[u8]) -> Result<Pending, (RawMessage, ValidationError)> {
        Pending::read(raw(payload), &Limits::default(), now(), Instant::now())
    }

    /// Read in place or owned, the authorization is the one the owned
    /// decoder reads, and a dead letter carries the message as it came.
    #[test]
    fn in_place_and_owned_read_the_same_authorization() {
        let plain = r#"{"event_id":"e-1","occurred_at":"2026-05-12T14:05:09+05:30","user_id":"u-1","product":"photoshop","product_version":"26.1","access":"flex","team_id":"t-é","machine_id":"m-1","online":true}"#;
        let escaped = r#"{"event_id":"e-\u0031","occurred_at":"2026-05-12T08:35:09Z","user_id":"u\"1","product":"p","access":"seat"}"#;
        let minimal = r#"{"event_id":"e","occurred_at":"2026-05-12T08:35:09Z","user_id":"u","product":"p","access":"seat","team_id":null}"#;
        for (json, in_place) in [(plain, true), (escaped, false), (minimal, true)] {
            let expected =
                decode_authorization(json.as_bytes(), &Limits::default(), now()).expect("valid");
            let p = read(json.as_bytes()).map_err(|(_, e)| e).expect("valid");
            assert_eq!(p.in_place(), in_place, "{json}");
            assert_eq!(p.auth().to_owned(), expected, "{json}");
            assert_eq!((p.partition, p.offset), (3, 17));
            let error =
                ValidationError::at(usage_core::validate::Reason::UnresolvedTeam, "team_id", "x");
            let letter = p.dead_letter(&TopicNames::for_tests(), &error);
            assert_eq!(letter.payload, json.as_bytes());
            assert_eq!(letter.key.as_deref(), Some(&b"u-1"[..]));
            assert_eq!((letter.source_topic.as_str(), letter.offset), ("auth", 17));
        }
    }

    /// A refused message comes back whole, with the owned decoder's reason.
    #[test]
    fn refused_messages_come_back_with_the_decoders_reason() {
        let too_large = vec![b' '; Limits::default().max_message_bytes + 1];
        let mut too_large_not_text = too_large.clone();
        too_large_not_text[0] = 0xff;
        let cases: [&[u8]; 6] = [
            b"{not json",
            b"\xff\xfe",
            br#"{"event_id":"","occurred_at":"2026-05-12T08:35:09Z","user_id":"u","product":"p","access":"seat"}"#,
            br#"{"event_id":"e","occurred_at":"2016-12-31T23:59:60Z","user_id":"u","product":"p","access":"seat"}"#,
            &too_large,
            &too_large_not_text,
        ];
        for payload in cases {
            let expected = decode_authorization(payload, &Limits::default(), now())
                .and_then(|a| storable::authorization(&a))
                .expect_err("refused");
            let Err((back, error)) = read(payload) else {
                panic!("refused: {payload:?}")
            };
            assert_eq!(error, expected);
            assert_eq!(back.payload, payload);
            assert_eq!((back.partition, back.offset), (3, 17));
        }
    }
}
