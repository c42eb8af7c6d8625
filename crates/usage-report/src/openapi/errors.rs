//! The error answers in the document, from [`CODES`]: the `Error` schema
//! (every stable code), one component response per code, and the error
//! responses of one operation, grouped by HTTP status. Each route declares
//! its codes beside its handler (the binary's `api/`, `errors!`).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::{json, Value};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::{RefOr, Response};
use utoipa::{PartialSchema, ToSchema};

use super::schemas::from_json;
use crate::error::CODES;

/// Errors any `/v1` operation may answer: no token or an unknown one,
/// ClickHouse or Kafka down, a bug.
pub const V1_ERRORS: [&str; 3] = ["unauthorized", "unavailable", "internal"];

/// The schema of every error answer (`Error`): the body
/// [`ApiError`](crate::error::ApiError) answers.
pub struct Error;

impl PartialSchema for Error {
    fn schema() -> RefOr<Schema> {
        let codes: Vec<&str> = CODES.iter().map(|(c, _, _)| *c).collect();
        let list = CODES
            .iter()
            .map(|(c, s, m)| format!("- `{c}` ({s}): {m}"))
            .collect::<Vec<_>>()
            .join("\n");
        from_json(json!({
            "type": "object",
            "description": "Every error answer.",
            "required": ["error", "message"],
            "properties": {
                "error": {
                    "type": "string",
                    "enum": codes,
                    "description": format!("The stable code (scripts branch on it):\n{list}"),
                },
                "message": { "type": "string", "description": "For people; may change." }
            }
        }))
    }
}

impl ToSchema for Error {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Error")
    }
}

/// The HTTP status of a stable code; `None` for a code not in [`CODES`].
pub fn status_of(code: &str) -> Option<u16> {
    CODES
        .iter()
        .find(|(c, _, _)| *c == code)
        .map(|(_, status, _)| *status)
}

fn meaning_of(code: &str) -> &'static str {
    CODES
        .iter()
        .find(|(c, _, _)| *c == code)
        .map_or("", |(_, _, meaning)| *meaning)
}

/// An error response whose `error` is one of `codes`.
fn error_response(codes: &[&str], description: &str) -> Value {
    let example = codes.first().copied().unwrap_or("internal");
    json!({
        "description": description,
        "content": {
            "application/json": {
                "schema": {
                    "allOf": [
                        { "$ref": "#/components/schemas/Error" },
                        {
                            "type": "object",
                            "properties": { "error": { "type": "string", "enum": codes } }
                        }
                    ]
                },
                "example": { "error": example, "message": meaning_of(example) }
            }
        }
    })
}

fn response(value: Value) -> RefOr<Response> {
    // Built from this module's literals; the unit tests build them all.
    serde_json::from_value(value).expect("a response the OpenAPI types take")
}

/// One response per stable code (`#/components/responses/<code>`).
pub fn components() -> Vec<(String, RefOr<Response>)> {
    CODES
        .iter()
        .map(|(code, status, meaning)| {
            let description = format!("`{code}` ({status}): {meaning}.");
            (
                (*code).to_owned(),
                response(error_response(&[*code], &description)),
            )
        })
        .collect()
}

/// The error responses of a `/v1` operation answering `codes` besides
/// [`V1_ERRORS`], grouped by status: a status with one code refers to that
/// code's component response unless `notes` describes it for this
/// operation; codes sharing a status are listed in one response. A code not
/// in [`CODES`] is documented as a 500 (the unit tests refuse it).
pub fn responses(codes: &[&str], notes: &[(u16, String)]) -> BTreeMap<String, RefOr<Response>> {
    let all: Vec<&str> = codes.iter().copied().chain(V1_ERRORS).collect();
    let status = |code: &str| status_of(code).unwrap_or(500);
    let mut statuses: Vec<u16> = all.iter().map(|c| status(c)).collect();
    statuses.sort_unstable();
    statuses.dedup();
    let mut map = BTreeMap::new();
    for code_status in statuses {
        let here: Vec<&str> = all
            .iter()
            .copied()
            .filter(|c| status(c) == code_status)
            .collect();
        let note = notes
            .iter()
            .find(|(s, _)| *s == code_status)
            .map(|(_, d)| d.as_str());
        let value = match (here.as_slice(), note) {
            ([code], None) => json!({ "$ref": format!("#/components/responses/{code}") }),
            (_, Some(description)) => error_response(&here, description),
            (_, None) => {
                let description = here
                    .iter()
                    .map(|c| format!("`{c}`: {}.", meaning_of(c)))
                    .collect::<Vec<_>>()
                    .join(" ");
                error_response(&here, &description)
            }
        };
        map.insert(code_status.to_string(), response(value));
    }
    map
}
