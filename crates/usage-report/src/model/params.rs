//! The report's filters as asked: [`ReportParams`], the query parameters of
//! the report endpoints and the `filters` of exports and schedules (stored
//! as given, so a rolling range rolls), and their validation into
//! [`ReportFilters`], a [`Sort`] and a [`Page`]. The field docs are the
//! parameters' descriptions in `/openapi.json`.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use usage_core::event::Access;
use usage_core::frequency::UsageClass;
use usage_core::range::{RangePreset, ReportRange};
use usage_core::status::Status;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::{IntoParams, ToSchema};

use super::{
    Page, ReportFilters, Sort, SortColumn, TeamSelection, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE,
};
use crate::error::ApiError;
use crate::openapi::schemas;

/// The report filters with the query parameters' names and rules, every one
/// optional and given as a string. Stored as given with a schedule, so a
/// rolling range rolls with each run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportParams {
    /// A current team id the admin administers, or `all` (every team the
    /// admin administers; the default). A team merged into another answers
    /// 404 `team_merged`: its history is in the surviving team's report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(default = "all")]
    pub team: Option<String>,
    /// The date range. `last_30_days` (the default) is rolling: today (UTC)
    /// and the 29 days before; the month presets (`last_3_months`,
    /// `last_6_months`, `last_9_months`, `last_12_months`) are whole
    /// completed calendar months (the current month excluded); `custom`
    /// takes `from` and `to`, and only it does. A preset with `from` or
    /// `to`, or `custom` without both, is refused with 400
    /// `invalid_range`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<schemas::RangeName>, inline)]
    #[param(value_type = Option<schemas::RangeName>, inline)]
    pub range: Option<String>,
    /// First date of a custom range (YYYY-MM-DD, UTC, inclusive): required
    /// with `range=custom` and refused otherwise; `from` <= `to`, `to` not
    /// after today (UTC), at most 366 days. A date not `YYYY-MM-DD` is 400
    /// `invalid_parameter`; a broken rule between the dates and the range
    /// is 400 `invalid_range`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<schemas::DateText>, inline)]
    #[param(value_type = Option<schemas::DateText>, inline)]
    pub from: Option<String>,
    /// Last date of a custom range (YYYY-MM-DD, UTC, inclusive): required
    /// with `range=custom` and refused otherwise; `from` <= `to`, `to` not
    /// after today (UTC), at most 366 days. A date not `YYYY-MM-DD` is 400
    /// `invalid_parameter`; a broken rule between the dates and the range
    /// is 400 `invalid_range`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<schemas::DateText>, inline)]
    #[param(value_type = Option<schemas::DateText>, inline)]
    pub to: Option<String>,
    /// Only this product (its name as the license events spell it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// Only seat (subscription) or Flex (prepaid token) access: `seat` or
    /// `flex`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<schemas::AccessText>, inline)]
    #[param(value_type = Option<schemas::AccessText>, inline)]
    pub access: Option<String>,
    /// Only rows with this status (`active`, `inactive`, `not_yet_active`,
    /// `flex_unused`, `unassigned`; see `Status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<schemas::StatusText>, inline)]
    #[param(value_type = Option<schemas::StatusText>, inline)]
    pub status: Option<String>,
    /// Only rows of this usage class (`frequent`, `occasional`, `unused`;
    /// see `UsageClass`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<schemas::UsageClassText>, inline)]
    #[param(value_type = Option<schemas::UsageClassText>, inline)]
    pub usage_class: Option<String>,
    /// Only members of this group, by group id or name (current membership).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Search: a case-insensitive substring of the user id, name or email;
    /// of the user key when identities are hashed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// Sort order `column:asc|desc` (a column alone sorts ascending), over
    /// any column of the users table; `user_key:asc` by default. Exports
    /// of the report are sorted by it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<schemas::SortText>, inline)]
    #[param(value_type = Option<schemas::SortParam>, inline)]
    pub sort: Option<String>,
    /// The page of the users table, 1 to 1000000 (default 1; checked but
    /// ignored by exports and schedules). A page past the rows has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<schemas::PageText>, inline)]
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000000, default = 1)]
    pub page: Option<String>,
    /// Rows per page of the users table, 1 to 1000 (default 50; checked but
    /// ignored by exports and schedules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<schemas::PageSizeText>, inline)]
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000, default = 50)]
    pub page_size: Option<String>,
}

/// The names of the parameters of the users table alone (sort and paging).
const TABLE_PARAMETERS: [&str; 3] = ["sort", "page", "page_size"];

/// The report filters as query parameters, without the users table's sort
/// and paging: the parameters of the overview and the daily chart (which
/// take [`ReportParams`] and ignore those three).
pub struct FilterParams;

impl IntoParams for FilterParams {
    fn into_params(parameter_in: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        ReportParams::into_params(parameter_in)
            .into_iter()
            .filter(|p| !TABLE_PARAMETERS.contains(&p.name.as_str()))
            .collect()
    }
}

impl ReportParams {
    /// Validates every filter as of `now`, the sort and the page included
    /// (exports and schedules check all they are given, as the document
    /// says, though they ignore the page).
    pub fn validate(&self, now: DateTime<Utc>) -> Result<ReportFilters, ApiError> {
        let filters = self.filters(now)?;
        self.sort()?;
        self.page()?;
        Ok(filters)
    }

    /// Validates the filters as of `now` (sort and page are not looked at).
    ///
    /// A value from a fixed vocabulary or of a fixed form (`range`,
    /// `from`, `to`, `access`, `status`, `usage_class`, `sort`, `page`,
    /// `page_size`) is taken exactly as the document spells it (an empty
    /// one is refused, not taken as absent); free text (`team`, `product`,
    /// `group`, `q`) drops surrounding spaces and is absent when empty.
    pub fn filters(&self, now: DateTime<Utc>) -> Result<ReportFilters, ApiError> {
        let team = match text(&self.team) {
            None | Some("all") => TeamSelection::All,
            Some(t) => TeamSelection::Team(t.to_owned()),
        };
        let range = self.range()?;
        let dates = range
            .resolve(now)
            .map_err(|e| ApiError::invalid_range("range", e.to_string()))?;
        let access = match exact("access", &self.access)? {
            None => None,
            Some("seat") => Some(Access::Seat),
            Some("flex") => Some(Access::Flex),
            Some(other) => {
                return Err(ApiError::invalid(
                    "access",
                    format!("unknown access {other:?}: expected seat or flex"),
                ))
            }
        };
        let status = match exact("status", &self.status)? {
            None => None,
            Some(s) => Some(
                Status::ALL
                    .into_iter()
                    .find(|st| st.as_str() == s)
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "status",
                            format!(
                                "unknown status {s:?}: expected active, inactive, \
                                 not_yet_active, flex_unused or unassigned"
                            ),
                        )
                    })?,
            ),
        };
        let usage_class = match exact("usage_class", &self.usage_class)? {
            None => None,
            Some(c) => Some(UsageClass::from_name(c).ok_or_else(|| {
                ApiError::invalid(
                    "usage_class",
                    format!("unknown usage class {c:?}: expected frequent, occasional or unused"),
                )
            })?),
        };
        Ok(ReportFilters {
            team,
            range,
            dates,
            product: text(&self.product).map(str::to_owned),
            access,
            status,
            usage_class,
            group: text(&self.group).map(str::to_owned),
            q: text(&self.q).map(str::to_owned),
        })
    }

    /// The range: each value checked on its own first (`invalid_parameter`:
    /// an unknown range, a date not `YYYY-MM-DD`), then the rules between
    /// them (`invalid_range`: a schema cannot state them for query
    /// parameters, nor `to` <= today anywhere).
    fn range(&self) -> Result<ReportRange, ApiError> {
        let name = exact("range", &self.range)?;
        let from = exact("from", &self.from)?
            .map(|t| date_param("from", t))
            .transpose()?;
        let to = exact("to", &self.to)?
            .map(|t| date_param("to", t))
            .transpose()?;
        let preset = match name {
            None => RangePreset::Last30Days,
            Some("custom") => {
                let (Some(from), Some(to)) = (from, to) else {
                    let missing = if from.is_none() { "from" } else { "to" };
                    return Err(ApiError::invalid_range(
                        missing,
                        format!("{missing} is required with range=custom"),
                    ));
                };
                return ReportRange::custom(from, to)
                    .map_err(|e| ApiError::invalid_range("range", e.to_string()));
            }
            Some(name) => name.parse::<RangePreset>().map_err(|_| {
                ApiError::invalid(
                    "range",
                    format!(
                        "unknown range {name:?}: expected last_30_days, last_3_months, \
                         last_6_months, last_9_months, last_12_months or custom"
                    ),
                )
            })?,
        };
        if from.is_some() || to.is_some() {
            let given = if from.is_some() { "from" } else { "to" };
            return Err(ApiError::invalid_range(
                given,
                "from and to are only taken with range=custom",
            ));
        }
        Ok(ReportRange::Preset(preset))
    }

    /// The sort order (`column:asc|desc`; `column` alone is ascending).
    pub fn sort(&self) -> Result<Sort, ApiError> {
        let Some(text) = exact("sort", &self.sort)? else {
            return Ok(Sort::default());
        };
        let (name, order) = text.split_once(':').unwrap_or((text, "asc"));
        let column = SortColumn::ALL
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(c, _)| *c)
            .ok_or_else(|| {
                let names: Vec<&str> = SortColumn::ALL.iter().map(|(_, n)| *n).collect();
                ApiError::invalid(
                    "sort",
                    format!(
                        "unknown column {name:?}: expected one of {}",
                        names.join(", ")
                    ),
                )
            })?;
        let descending = match order {
            "asc" => false,
            "desc" => true,
            other => {
                return Err(ApiError::invalid(
                    "sort",
                    format!("unknown order {other:?}: expected asc or desc"),
                ))
            }
        };
        Ok(Sort { column, descending })
    }

    /// The page asked for.
    pub fn page(&self) -> Result<Page, ApiError> {
        let page = number_param("page", &self.page, 1, MAX_PAGE)?.unwrap_or(1);
        let page_size = number_param("page_size", &self.page_size, 1, MAX_PAGE_SIZE)?
            .unwrap_or(DEFAULT_PAGE_SIZE);
        Ok(Page { page, page_size })
    }
}

/// The last page that may be asked for (a page past the rows has none).
pub const MAX_PAGE: u32 = 1_000_000;

/// Free text: surrounding spaces dropped, absent when empty.
fn text(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// A value of a fixed vocabulary or form, as given; an empty one is
/// refused (the document's enum or pattern has no empty value).
fn exact<'v>(name: &str, value: &'v Option<String>) -> Result<Option<&'v str>, ApiError> {
    match value.as_deref() {
        Some("") => Err(ApiError::invalid(
            name,
            format!("{name} is empty: leave it out for the default"),
        )),
        other => Ok(other),
    }
}

/// A date exactly as RFC 3339's `full-date` (the document's `format:
/// date`): `YYYY-MM-DD`, zero-padded, a real calendar date.
pub fn strict_date(text: &str) -> Option<NaiveDate> {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        bytes
            .get(range.clone())
            .filter(|b| b.iter().all(u8::is_ascii_digit))
            .and_then(|_| text.get(range))
            .and_then(|t| t.parse::<u32>().ok())
    };
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let year = i32::try_from(digits(0..4)?).ok()?;
    NaiveDate::from_ymd_opt(year, digits(5..7)?, digits(8..10)?)
}

/// A date field of a JSON body, exactly `YYYY-MM-DD` (for `deserialize_with`).
pub fn date_field<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<NaiveDate, D::Error> {
    let text = String::deserialize(deserializer)?;
    strict_date(&text).ok_or_else(|| {
        serde::de::Error::custom(format!("expected a date as YYYY-MM-DD, got {text:?}"))
    })
}

/// The `filters` of a JSON body: an object only (serde would take a
/// struct from an array too; the document says object), for
/// `deserialize_with`.
pub fn filters_object<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<ReportParams, D::Error> {
    let object = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
    serde_json::from_value(serde_json::Value::Object(object)).map_err(serde::de::Error::custom)
}

fn date_param(name: &'static str, text: &str) -> Result<NaiveDate, ApiError> {
    strict_date(text).ok_or_else(|| {
        ApiError::invalid(
            name,
            format!("{name} must be a date as YYYY-MM-DD, got {text:?}"),
        )
    })
}

/// A whole number from `min` to `max`, in decimal digits without a sign or
/// leading zeros (the document's integer, or its pattern in a JSON body).
fn number_param(
    name: &'static str,
    value: &Option<String>,
    min: u32,
    max: u32,
) -> Result<Option<u32>, ApiError> {
    let Some(text) = exact(name, value)? else {
        return Ok(None);
    };
    let plain = text.bytes().all(|b| b.is_ascii_digit()) && !text.starts_with('0');
    match text.parse::<u32>() {
        Ok(n) if plain && (min..=max).contains(&n) => Ok(Some(n)),
        _ => Err(ApiError::invalid(
            name,
            format!("{name} must be a whole number from {min} to {max}, got {text:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 15, 12, 0, 0)
            .single()
            .unwrap_or_default()
    }

    fn params(pairs: &[(&str, &str)]) -> ReportParams {
        let value: serde_json::Map<String, serde_json::Value> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
            .collect();
        serde_json::from_value(value.into()).unwrap_or_default()
    }

    #[test]
    fn defaults_are_all_teams_over_the_last_30_days() {
        let f = ReportParams::default().filters(now()).expect("valid");
        assert_eq!(f.team, TeamSelection::All);
        assert_eq!(f.range, ReportRange::Preset(RangePreset::Last30Days));
        assert_eq!(f.dates.from().to_string(), "2026-02-14");
        assert_eq!(f.dates.to().to_string(), "2026-03-15");
    }

    #[test]
    fn month_presets_are_completed_months() {
        let f = params(&[("range", "last_3_months"), ("team", "t1")])
            .filters(now())
            .expect("valid");
        assert_eq!(f.team, TeamSelection::Team("t1".into()));
        assert_eq!(f.dates.from().to_string(), "2025-12-01");
        assert_eq!(f.dates.to().to_string(), "2026-02-28");
    }

    #[test]
    fn custom_ranges_need_both_dates_in_order_and_not_after_today() {
        let ok = params(&[
            ("range", "custom"),
            ("from", "2026-01-01"),
            ("to", "2026-01-31"),
        ]);
        assert!(ok.filters(now()).is_ok());
        // Each value on its own: invalid_parameter.
        for bad in [
            params(&[
                ("range", "custom"),
                ("from", "01/01/2026"),
                ("to", "2026-01-02"),
            ]),
            params(&[
                ("range", "custom"),
                ("from", "2026-1-01"),
                ("to", "2026-01-02"),
            ]),
            params(&[
                ("range", "custom"),
                ("from", "2026-02-30"),
                ("to", "2026-03-02"),
            ]),
            params(&[("range", "last_week")]),
            params(&[("range", "")]),
            params(&[("range", " last_30_days")]),
            params(&[("access", "trial")]),
            params(&[("access", "")]),
            params(&[("status", "dormant")]),
            params(&[("usage_class", "rare")]),
            params(&[("usage_class", "")]),
            params(&[("usage_class", "occasional ")]),
        ] {
            let err = bad.filters(now()).expect_err("refused");
            assert_eq!(err.code(), "invalid_parameter", "{bad:?}");
        }
        // The rules between them: invalid_range.
        for bad in [
            params(&[("range", "custom"), ("from", "2026-01-01")]),
            params(&[("range", "custom"), ("to", "2026-01-01")]),
            params(&[
                ("range", "custom"),
                ("from", "2026-02-01"),
                ("to", "2026-01-01"),
            ]),
            params(&[
                ("range", "custom"),
                ("from", "2026-01-01"),
                ("to", "2026-04-01"),
            ]),
            params(&[
                ("range", "custom"),
                ("from", "2025-01-01"),
                ("to", "2026-03-01"),
            ]),
            params(&[("range", "last_30_days"), ("from", "2026-01-01")]),
            params(&[("to", "2026-01-01")]),
        ] {
            let err = bad.filters(now()).expect_err("refused");
            assert_eq!(err.code(), "invalid_range", "{bad:?}");
        }
        // Free text drops surrounding spaces; empty is absent.
        let f = params(&[("team", " t1 "), ("product", ""), ("q", "  ")])
            .filters(now())
            .expect("valid");
        assert_eq!(f.team, TeamSelection::Team("t1".into()));
        assert_eq!((f.product, f.q), (None, None));
    }

    #[test]
    fn sort_and_page_are_checked() {
        let p = params(&[
            ("sort", "days_used:desc"),
            ("page", "3"),
            ("page_size", "20"),
        ]);
        assert_eq!(
            p.sort().expect("valid"),
            Sort {
                column: SortColumn::DaysUsed,
                descending: true
            }
        );
        assert_eq!(
            p.page().expect("valid"),
            Page {
                page: 3,
                page_size: 20
            }
        );
        assert!(params(&[("sort", "salary:asc")]).sort().is_err());
        assert!(params(&[("sort", "name:up")]).sort().is_err());
        for bad in [
            ("page", "0"),
            ("page", "01"),
            ("page", "+1"),
            ("page", ""),
            ("page", "1000001"),
            ("page_size", "5000"),
            ("page_size", "1001"),
        ] {
            assert!(params(&[bad]).page().is_err(), "{bad:?}");
        }
        assert_eq!(
            params(&[("page", "1000000"), ("page_size", "1000")]).page(),
            Ok(Page {
                page: MAX_PAGE,
                page_size: MAX_PAGE_SIZE
            })
        );
    }
}
