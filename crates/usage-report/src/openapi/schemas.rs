//! Schemas the derives cannot write alone: the types of `usage-core` the
//! API shows (`Access`, `Status`, `Tokens`; foreign types, so described
//! here by named stand-ins), and the values whose lists come from the code
//! (range presets, sort columns). Fields refer to them with
//! `#[schema(value_type = ..)]` (add `inline` for the value schemas: unlike
//! `schema_with`, it keeps the field's doc comment as its description).

use std::borrow::Cow;

use serde_json::{json, Value};
use usage_core::event::Access as CoreAccess;
use usage_core::frequency::UsageClass as CoreUsageClass;
use usage_core::range::{RangePreset, MAX_CUSTOM_DAYS};
use usage_core::status::Status as CoreStatus;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use crate::model::{SortColumn, MAX_PAGE, MAX_PAGE_SIZE};

/// A schema written as JSON (OpenAPI 3.1: JSON Schema 2020-12).
pub(crate) fn from_json(value: Value) -> RefOr<Schema> {
    // The values are this module's literals; the unit tests build them all.
    serde_json::from_value(value).expect("a schema the OpenAPI types take")
}

/// The schema of `usage_core::event::Access` in the document (`Access`).
pub struct Access;

impl PartialSchema for Access {
    fn schema() -> RefOr<Schema> {
        let names: Vec<&str> = CoreAccess::ALL.iter().map(|a| a.as_str()).collect();
        from_json(json!({
            "type": "string",
            "enum": names,
            "description": "`seat`: a subscription seat assigned in a team; `flex`: \
                prepaid Flex tokens, charged per 24-hour usage window."
        }))
    }
}

impl ToSchema for Access {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Access")
    }
}

/// The schema of `usage_core::status::Status` in the document (`Status`).
pub struct Status;

impl PartialSchema for Status {
    fn schema() -> RefOr<Schema> {
        let names: Vec<&str> = CoreStatus::ALL.iter().map(|s| s.as_str()).collect();
        from_json(json!({
            "type": "string",
            "enum": names,
            "description": "Of a (team, user, product) over the range, as of now. \
                `active`: currently assigned and used in the range; `inactive`: a seat \
                assigned since on or before the range start, not used in the range; \
                `not_yet_active`: a seat assigned after the range start, not used yet; \
                `flex_unused`: Flex, assigned, not used in the range (Flex users are never \
                inactive); `unassigned`: used in the range, not assigned now."
        }))
    }
}

impl ToSchema for Status {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Status")
    }
}

/// The schema of `usage_core::frequency::UsageClass` in the document
/// (`UsageClass`).
pub struct UsageClass;

impl PartialSchema for UsageClass {
    fn schema() -> RefOr<Schema> {
        let names: Vec<&str> = CoreUsageClass::ALL.iter().map(|c| c.as_str()).collect();
        from_json(json!({
            "type": "string",
            "enum": names,
            "description": "How often the line is used over the range, by its monthly \
                average as shown (days used / months in range, to 2 decimals). `unused`: \
                no day used in the range; `occasional`: used, on fewer days a month than \
                the deployment's threshold (`--frequent-days-per-month`, 5 by default; \
                the overview's `occasional.below_days_per_month`); `frequent`: on at \
                least that many."
        }))
    }
}

impl ToSchema for UsageClass {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("UsageClass")
    }
}

/// The schema of `usage_core::event::Tokens` in the document (`Tokens`).
pub struct Tokens;

impl PartialSchema for Tokens {
    fn schema() -> RefOr<Schema> {
        from_json(json!({
            "type": "number",
            "minimum": 0,
            "description": "Flex tokens, exact to the thousandth: an integer when whole, \
                else a decimal with at most 3 places."
        }))
    }
}

impl ToSchema for Tokens {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Tokens")
    }
}

/// The names of the `range` filter: the presets, then `custom`.
pub fn range_names() -> Vec<&'static str> {
    RangePreset::ALL
        .iter()
        .map(|p| p.as_str())
        .chain(["custom"])
        .collect()
}

/// The `range` filter.
pub fn range() -> RefOr<Schema> {
    from_json(json!({
        "type": "string",
        "enum": range_names(),
        "default": RangePreset::Last30Days.as_str(),
    }))
}

/// The rule of the `from` and `to` filters.
pub fn custom_dates_rule() -> String {
    format!(
        "required with `range=custom` and refused otherwise; `from` <= `to`, `to` not \
         after today (UTC), at most {MAX_CUSTOM_DAYS} days"
    )
}

/// `column[:asc|desc]` over the columns of the users table.
pub fn sort_pattern() -> String {
    let columns: Vec<&str> = SortColumn::ALL.iter().map(|(_, n)| *n).collect();
    format!("^({})(:(asc|desc))?$", columns.join("|"))
}

/// The `sort` query parameter.
pub fn sort() -> RefOr<Schema> {
    from_json(json!({
        "type": "string",
        "pattern": sort_pattern(),
        "default": format!("{}:asc", SortColumn::UserKey.as_str()),
    }))
}

/// The `sort` filter in a JSON body (exports, schedules).
pub fn sort_text() -> RefOr<Schema> {
    from_json(json!({ "type": "string", "pattern": sort_pattern() }))
}

/// `page` in a JSON body, where every filter is a string: 1 to
/// [`MAX_PAGE`] in plain digits.
pub fn page_text() -> RefOr<Schema> {
    from_json(json!({ "type": "string", "pattern": number_pattern(MAX_PAGE) }))
}

/// `page_size` in a JSON body: 1 to [`MAX_PAGE_SIZE`] in plain digits.
pub fn page_size_text() -> RefOr<Schema> {
    from_json(json!({ "type": "string", "pattern": number_pattern(MAX_PAGE_SIZE) }))
}

/// The decimal numbers 1 to `max` without sign or leading zeros, for `max`
/// a power of ten (10^k: up to k digits, or `max` itself).
pub fn number_pattern(max: u32) -> String {
    let digits = max.to_string().len();
    debug_assert_eq!(10u32.checked_pow(digits as u32 - 1), Some(max));
    format!("^([1-9][0-9]{{0,{}}}|{max})$", digits - 2)
}

/// A date filter (`from`, `to`) in a JSON body.
pub fn date_text() -> RefOr<Schema> {
    from_json(json!({ "type": "string", "format": "date" }))
}

/// The `access` filter (a JSON body's or a query's).
pub fn access_text() -> RefOr<Schema> {
    let names: Vec<&str> = CoreAccess::ALL.iter().map(|a| a.as_str()).collect();
    from_json(json!({ "type": "string", "enum": names }))
}

/// The `status` filter (a JSON body's or a query's).
pub fn status_text() -> RefOr<Schema> {
    let names: Vec<&str> = CoreStatus::ALL.iter().map(|s| s.as_str()).collect();
    from_json(json!({ "type": "string", "enum": names }))
}

/// The `usage_class` filter (a JSON body's or a query's).
pub fn usage_class_text() -> RefOr<Schema> {
    let names: Vec<&str> = CoreUsageClass::ALL.iter().map(|c| c.as_str()).collect();
    from_json(json!({ "type": "string", "enum": names }))
}

/// Declares a type whose schema is `f()`, for `value_type = ..` with
/// `inline`.
macro_rules! value_schema {
    ($($(#[$doc:meta])* $name:ident = $f:ident;)*) => {$(
        $(#[$doc])*
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                $f()
            }
        }

        impl ToSchema for $name {}
    )*};
}

value_schema! {
    /// The `range` filter.
    RangeName = range;
    /// The `sort` query parameter.
    SortParam = sort;
    /// The `sort` filter in a JSON body.
    SortText = sort_text;
    /// `page` in a JSON body.
    PageText = page_text;
    /// `page_size` in a JSON body.
    PageSizeText = page_size_text;
    /// `from` or `to`.
    DateText = date_text;
    /// The `access` filter.
    AccessText = access_text;
    /// The `status` filter.
    StatusText = status_text;
    /// The `usage_class` filter.
    UsageClassText = usage_class_text;
}

/// The report filters of a JSON body (`ReportParams`), from the schema the
/// derive wrote (every filter optional): one object per kind of range, so
/// the schema itself says which filters go together, as the server checks
/// them. A preset range (or none: `last_30_days`) takes no `from` or `to`;
/// `range: custom` requires both (dates). What no schema can say (`from`
/// <= `to` <= today, at most [`MAX_CUSTOM_DAYS`] days) is in their
/// descriptions, refused with 400 `invalid_range`.
pub fn filters_by_range(derived: &Value) -> Value {
    let properties = derived["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let presets: Vec<&str> = RangePreset::ALL.iter().map(|p| p.as_str()).collect();
    let described = |name: &str, schema: Value| {
        let mut schema = schema;
        if let (Some(object), Some(description)) = (
            schema.as_object_mut(),
            properties.get(name).and_then(|p| p.get("description")),
        ) {
            object.insert("description".to_owned(), description.clone());
        }
        schema
    };
    let mut preset = properties.clone();
    preset.insert(
        "range".to_owned(),
        described(
            "range",
            json!({
                "oneOf": [
                    {
                        "type": "string",
                        "enum": presets,
                        "default": RangePreset::Last30Days.as_str(),
                    },
                    { "type": "null" },
                ],
            }),
        ),
    );
    for date in ["from", "to"] {
        preset.insert(
            date.to_owned(),
            json!({ "type": "null", "description": "Only with `range: custom`." }),
        );
    }
    let mut custom = properties.clone();
    custom.insert(
        "range".to_owned(),
        described("range", json!({ "type": "string", "const": "custom" })),
    );
    for date in ["from", "to"] {
        custom.insert(
            date.to_owned(),
            described(date, json!({ "type": "string", "format": "date" })),
        );
    }
    let description = derived["description"].as_str().unwrap_or_default();
    json!({
        "description": format!(
            "{description}\n\nOne of two forms: a preset range (or none, \
             `last_30_days`) without `from` and `to`, or `range: custom` with both; \
             `from` <= `to`, `to` not after today (UTC), at most {MAX_CUSTOM_DAYS} days \
             (else 400 `invalid_range`)."
        ),
        "oneOf": [
            {
                "title": "PresetRangeFilters",
                "type": "object",
                "properties": preset,
                "additionalProperties": false,
            },
            {
                "title": "CustomRangeFilters",
                "type": "object",
                "properties": custom,
                "required": ["range", "from", "to"],
                "additionalProperties": false,
            },
        ],
    })
}
