//! What an admin asks for: the body of a schedule's create or edit, and its
//! checks (name, start date, the report's filters).

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Frequency;
use crate::admins::Admin;
use crate::error::ApiError;
use crate::model::{ExportFormat, ExportKind, ReportParams, TeamSelection};

/// The longest schedule name, in characters (after trimming).
pub const MAX_NAME_CHARS: usize = 100;

/// The latest start date a schedule may have (ClickHouse `Date` ends in 2149;
/// this leaves room for the runs).
pub const LAST_START_DATE: NaiveDate = match NaiveDate::from_ymd_opt(2099, 12, 31) {
    Some(d) => d,
    None => NaiveDate::MIN,
};

/// The body of `POST /v1/schedules` and `PUT /v1/schedules/{schedule_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleInput {
    /// A clear name: 1 to 100 characters, at least one of them not a
    /// space, no control characters (stored without surrounding spaces).
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub name: String,
    /// The first run's UTC date (`YYYY-MM-DD`): today or later (an
    /// unchanged one may have passed when editing), at most 2099-12-31;
    /// another is refused with 400 `invalid_start_date` (a schema cannot
    /// say "today").
    #[serde(deserialize_with = "crate::model::date_field")]
    #[schema(value_type = String, format = Date)]
    pub start_date: NaiveDate,
    pub frequency: Frequency,
    pub format: ExportFormat,
    /// What is exported (default `report`).
    #[serde(default = "default_kind")]
    #[schema(default = "report")]
    pub kind: ExportKind,
    /// The report filters, stored as given (a rolling range rolls with each
    /// run); none when absent.
    #[serde(default, deserialize_with = "crate::model::filters_object")]
    pub filters: ReportParams,
}

fn default_kind() -> ExportKind {
    ExportKind::Report
}

impl ScheduleInput {
    /// Checks a new schedule as of `now`: the name, a start date not before
    /// today (UTC), and the filters.
    pub fn validate(&self, now: DateTime<Utc>) -> Result<(), ApiError> {
        self.check(now, None)
    }

    /// Checks an edit of a schedule that starts on `current_start_date`: as
    /// [`ScheduleInput::validate`], except that an unchanged start date may
    /// have passed.
    pub fn validate_update(
        &self,
        current_start_date: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        self.check(now, Some(current_start_date))
    }

    /// Checks that the `team` filter, if any, names a team `admin`
    /// administers (403 `forbidden`, as the report answers): a schedule
    /// for another team would fail on every run.
    pub fn check_teams(&self, admin: &Admin, now: DateTime<Utc>) -> Result<(), ApiError> {
        match self.filters.filters(now)?.team {
            TeamSelection::Team(team) if !admin.teams.includes(&team) => Err(ApiError::forbidden(
                format!("you do not administer team {team}"),
            )),
            _ => Ok(()),
        }
    }

    fn check(&self, now: DateTime<Utc>, unchanged: Option<NaiveDate>) -> Result<(), ApiError> {
        let chars = self.name.chars().count();
        if self.name.trim().is_empty() || chars > MAX_NAME_CHARS {
            return Err(ApiError::invalid(
                "name",
                format!(
                    "name must be 1 to {MAX_NAME_CHARS} characters, not all spaces, got {chars}"
                ),
            ));
        }
        if self.name.chars().any(char::is_control) {
            return Err(ApiError::invalid(
                "name",
                "name must not contain control characters (line breaks, tabs, ...)",
            ));
        }
        let today = now.date_naive();
        if self.start_date < today && unchanged != Some(self.start_date) {
            return Err(ApiError::invalid_start_date(format!(
                "start_date must be today ({today}) or later"
            )));
        }
        if self.start_date > LAST_START_DATE {
            return Err(ApiError::invalid_start_date(format!(
                "start_date must be {LAST_START_DATE} or earlier"
            )));
        }
        self.filters.validate(now)?;
        Ok(())
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::admins::Teams;
    use crate::schedule::fixtures::{at, d, input};

    fn refused(result: Result<(), ApiError>, field: &str) {
        let err = result.expect_err("refused");
        let code = if field == "start_date" {
            "invalid_start_date"
        } else {
            "invalid_parameter"
        };
        assert_eq!(err.code(), code, "{err}");
        assert!(err.message().contains(field), "{err}");
    }

    #[test]
    fn names_are_checked() {
        let now = at("2026-03-15");
        assert!(input("Monthly seats", "2026-03-15").validate(now).is_ok());
        assert!(input("  Ünïcödé 報告  ", "2026-03-15")
            .validate(now)
            .is_ok());
        assert!(input(&"x".repeat(100), "2026-03-15").validate(now).is_ok());
        assert!(input(&"é".repeat(100), "2026-03-15").validate(now).is_ok());
        for bad in [
            "",
            "   ",
            "a\nb",
            "tab\there",
            "\tleading tab",
            "bell\u{7}",
            "del\u{7f}",
        ] {
            refused(input(bad, "2026-03-15").validate(now), "name");
        }
        refused(input(&"x".repeat(101), "2026-03-15").validate(now), "name");
        // Surrounding spaces count: the document's maxLength is of the value.
        refused(
            input(&format!(" {}", "x".repeat(100)), "2026-03-15").validate(now),
            "name",
        );
    }

    #[test]
    fn start_dates_are_today_or_later_except_when_unchanged() {
        let now = at("2026-03-15");
        assert!(input("a", "2026-03-16").validate(now).is_ok());
        refused(input("a", "2026-03-14").validate(now), "start_date");
        refused(input("a", "2100-01-01").validate(now), "start_date");
        // An edit keeping a past start date is fine; moving it into the past is not.
        let past = input("a", "2026-01-01");
        assert!(past.validate_update(d("2026-01-01"), now).is_ok());
        refused(past.validate_update(d("2026-01-02"), now), "start_date");
        assert!(input("a", "2026-04-01")
            .validate_update(d("2026-01-01"), now)
            .is_ok());
    }

    #[test]
    fn filters_are_checked() {
        let now = at("2026-03-15");
        let with = |json: serde_json::Value| ScheduleInput {
            filters: serde_json::from_value(json).expect("report params"),
            ..input("a", "2026-03-15")
        };
        assert!(
            with(serde_json::json!({"range": "last_3_months", "sort": "days_used:desc"}))
                .validate(now)
                .is_ok()
        );
        refused(
            with(serde_json::json!({"range": "last_week"})).validate(now),
            "range",
        );
        refused(
            with(serde_json::json!({"access": "trial"})).validate(now),
            "access",
        );
        refused(
            with(serde_json::json!({"sort": "salary"})).validate(now),
            "sort",
        );
    }

    #[test]
    fn a_team_filter_must_name_one_of_the_admins_teams() {
        let now = at("2026-03-15");
        let admin = |teams: Teams| Admin {
            id: "a".into(),
            email: "a@example.com".into(),
            role: crate::admins::Role::Secondary,
            teams,
        };
        let of_td = admin(Teams::Only(vec!["tD".into()]));
        let with_team = |team: Option<&str>| ScheduleInput {
            filters: ReportParams {
                team: team.map(str::to_owned),
                ..ReportParams::default()
            },
            ..input("a", "2026-03-15")
        };
        assert!(with_team(Some("tD")).check_teams(&of_td, now).is_ok());
        assert!(with_team(None).check_teams(&of_td, now).is_ok());
        assert!(with_team(Some("all")).check_teams(&of_td, now).is_ok());
        let err = with_team(Some("201"))
            .check_teams(&of_td, now)
            .expect_err("refused");
        assert_eq!((err.code(), err.status().as_u16()), ("forbidden", 403));
        assert!(err.message().contains("201"), "{err}");
        assert!(with_team(Some("201"))
            .check_teams(&admin(Teams::Every), now)
            .is_ok());
    }

    #[test]
    fn the_body_is_strict_json_with_defaults() {
        let body: ScheduleInput = serde_json::from_str(
            r#"{"name":"n","start_date":"2026-03-15","frequency":"monthly","format":"xlsx"}"#,
        )
        .expect("valid");
        assert_eq!(body.kind, ExportKind::Report);
        assert_eq!(body.filters, ReportParams::default());
        assert_eq!(body.frequency, Frequency::Monthly);
        for bad in [
            r#"{"name":"n","start_date":"2026-03-15","frequency":"monthly","format":"xlsx","x":1}"#,
            r#"{"name":"n","start_date":"15/03/2026","frequency":"monthly","format":"xlsx"}"#,
            r#"{"name":"n","start_date":"2026-03-15","frequency":"hourly","format":"xlsx"}"#,
            r#"{"name":"n","start_date":"2026-03-15","frequency":"daily","format":"pdf"}"#,
            r#"{"name":"n","start_date":"2026-03-15","frequency":"daily","format":"csv","filters":{"x":"1"}}"#,
        ] {
            assert!(serde_json::from_str::<ScheduleInput>(bad).is_err(), "{bad}");
        }
    }
}
