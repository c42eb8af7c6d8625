//! When a schedule runs: its frequency, the scheduled dates from its start
//! date, and the next run after the last one (missed runs are skipped, not
//! replayed).

use chrono::{Datelike, Days, Months, NaiveDate};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Schedule;

/// How often a schedule runs from `start_date`: `daily`; `weekly`, every 7
/// days; `monthly`, on the start date's day of the month (the last day of
/// shorter months). Runs missed while the service was down are caught up by
/// one run, not replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Frequency {
    /// Every day from the start date.
    Daily,
    /// Every 7 days from the start date.
    Weekly,
    /// Every calendar month, on the start date's day of the month (the last
    /// day of shorter months).
    Monthly,
}

impl Frequency {
    /// The stable name (`daily`, `weekly`, `monthly`).
    pub fn as_str(self) -> &'static str {
        match self {
            Frequency::Daily => "daily",
            Frequency::Weekly => "weekly",
            Frequency::Monthly => "monthly",
        }
    }
}

/// The `k`-th scheduled date (`k = 0` is the start date), or `None` past the
/// end of the calendar.
fn scheduled_date(start_date: NaiveDate, frequency: Frequency, k: u64) -> Option<NaiveDate> {
    match frequency {
        Frequency::Daily => start_date.checked_add_days(Days::new(k)),
        Frequency::Weekly => start_date.checked_add_days(Days::new(k.checked_mul(7)?)),
        // From the start date each time (not from the previous run), so a
        // clamped month does not shift the day: Jan 31, Feb 28, Mar 31.
        Frequency::Monthly => start_date.checked_add_months(Months::new(u32::try_from(k).ok()?)),
    }
}

/// When a schedule runs next.
///
/// The scheduled dates are the start date and then one every day, every 7
/// days or every calendar month after it (monthly keeps the start date's day
/// of the month, clamped to the month's last day: Jan 31, Feb 28 (29), Mar 31,
/// Apr 30, ...). The next run is:
///
/// - never run (`last_run_date` is `None`, or before the start date, as after
///   a reschedule): the start date, even if it has passed;
/// - otherwise: the first scheduled date strictly after `last_run_date`.
///
/// A run records the date it actually ran on (see
/// [`ScheduleStore::mark_run`](super::ScheduleStore::mark_run)). So when runs
/// were missed (the service was down), the one overdue date is due, one run
/// catches up, and the next run is the first scheduled date after that run:
/// missed dates are skipped, never replayed in a burst. Example:
/// weekly from Mon Jan 5, last run Jan 5, service down until Thu Jan 22: the
/// next run date is Jan 12 (due on Jan 22, runs once); after it, Jan 26.
///
/// Saturates at [`NaiveDate::MAX`] past the end of the calendar.
pub fn next_run_date(
    start_date: NaiveDate,
    frequency: Frequency,
    last_run_date: Option<NaiveDate>,
) -> NaiveDate {
    let Some(last) = last_run_date.filter(|last| *last >= start_date) else {
        return start_date;
    };
    // The index of the last scheduled date on or before `last`, estimated
    // from below; the answer is at most two steps on.
    let k = match frequency {
        Frequency::Daily => u64::try_from((last - start_date).num_days()).unwrap_or(0),
        Frequency::Weekly => u64::try_from((last - start_date).num_days() / 7).unwrap_or(0),
        Frequency::Monthly => {
            let months = (i64::from(last.year()) - i64::from(start_date.year())) * 12
                + i64::from(last.month0())
                - i64::from(start_date.month0());
            u64::try_from(months).unwrap_or(0)
        }
    };
    (k..=k.saturating_add(2))
        .filter_map(|i| scheduled_date(start_date, frequency, i))
        .find(|d| *d > last)
        .unwrap_or(NaiveDate::MAX)
}

/// Whether `schedule` is due on `today`: its next run date has come.
pub fn is_due(schedule: &Schedule, today: NaiveDate) -> bool {
    next_run_date(
        schedule.start_date,
        schedule.frequency,
        schedule.last_run_date,
    ) <= today
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ExportFormat, ExportKind, ReportParams};
    use crate::schedule::fixtures::{at, d};

    /// The next run dates of a schedule that runs every time it is due and
    /// nothing else: the scheduled dates themselves.
    fn calendar(start: &str, frequency: Frequency, n: usize) -> Vec<String> {
        let mut last = None;
        let mut out = Vec::new();
        for _ in 0..n {
            let next = next_run_date(d(start), frequency, last);
            out.push(next.to_string());
            last = Some(next);
        }
        out
    }

    #[test]
    fn the_first_run_is_the_start_date() {
        for f in [Frequency::Daily, Frequency::Weekly, Frequency::Monthly] {
            assert_eq!(next_run_date(d("2026-03-20"), f, None), d("2026-03-20"));
            // A last run before the start date (not possible after a
            // reschedule, which resets it) counts as never.
            assert_eq!(
                next_run_date(d("2026-03-20"), f, Some(d("2026-03-01"))),
                d("2026-03-20")
            );
        }
    }

    #[test]
    fn daily_and_weekly_step_from_the_start_date() {
        assert_eq!(
            calendar("2026-02-27", Frequency::Daily, 4),
            ["2026-02-27", "2026-02-28", "2026-03-01", "2026-03-02"]
        );
        assert_eq!(
            calendar("2026-02-20", Frequency::Weekly, 4),
            ["2026-02-20", "2026-02-27", "2026-03-06", "2026-03-13"]
        );
    }

    #[test]
    fn monthly_keeps_the_day_of_month_clamped_to_the_month() {
        assert_eq!(
            calendar("2026-01-31", Frequency::Monthly, 6),
            [
                "2026-01-31",
                "2026-02-28",
                "2026-03-31",
                "2026-04-30",
                "2026-05-31",
                "2026-06-30"
            ]
        );
        // Leap years: Feb 29, and back to the 31st after it.
        assert_eq!(
            calendar("2027-12-31", Frequency::Monthly, 4),
            ["2027-12-31", "2028-01-31", "2028-02-29", "2028-03-31"]
        );
        // Starting on Feb 29: the 29th of every month, Feb 28 in common years.
        assert_eq!(
            calendar("2028-02-29", Frequency::Monthly, 13)[11..],
            ["2029-01-29", "2029-02-28"]
        );
        assert_eq!(
            calendar("2026-11-15", Frequency::Monthly, 3),
            ["2026-11-15", "2026-12-15", "2027-01-15"]
        );
    }

    #[test]
    fn missed_runs_are_skipped_not_replayed() {
        // Weekly from Mon 2026-01-05; ran on the 5th; down until Thu the 22nd.
        let start = d("2026-01-05");
        let next = next_run_date(start, Frequency::Weekly, Some(d("2026-01-05")));
        assert_eq!(next, d("2026-01-12"));
        assert!(next <= d("2026-01-22"), "overdue, so due on the 22nd");
        // It runs once on the 22nd; the next is the first scheduled date
        // after that run (not the 19th).
        assert_eq!(
            next_run_date(start, Frequency::Weekly, Some(d("2026-01-22"))),
            d("2026-01-26")
        );
        // A run on a scheduled date: the next one.
        assert_eq!(
            next_run_date(start, Frequency::Weekly, Some(d("2026-01-26"))),
            d("2026-02-02")
        );
        // Daily: the day after the run, whatever was missed.
        assert_eq!(
            next_run_date(start, Frequency::Daily, Some(d("2026-03-10"))),
            d("2026-03-11")
        );
        // Monthly from Jan 31, last run Mar 5 (late): Mar 31, not Apr 5.
        let start = d("2026-01-31");
        assert_eq!(
            next_run_date(start, Frequency::Monthly, Some(d("2026-03-05"))),
            d("2026-03-31")
        );
        // Ran on the clamped date Feb 28: next is Mar 31.
        assert_eq!(
            next_run_date(start, Frequency::Monthly, Some(d("2026-02-28"))),
            d("2026-03-31")
        );
        // Ran late on Apr 30 (the scheduled date) after missing March.
        assert_eq!(
            next_run_date(start, Frequency::Monthly, Some(d("2026-04-30"))),
            d("2026-05-31")
        );
        // Years later.
        assert_eq!(
            next_run_date(start, Frequency::Monthly, Some(d("2029-02-28"))),
            d("2029-03-31")
        );
    }

    #[test]
    fn the_end_of_the_calendar_saturates() {
        assert_eq!(
            next_run_date(NaiveDate::MAX, Frequency::Daily, Some(NaiveDate::MAX)),
            NaiveDate::MAX
        );
    }

    fn schedule(start: &str, frequency: Frequency, last: Option<&str>) -> Schedule {
        let last_run_date = last.map(d);
        Schedule {
            schedule_id: "s".into(),
            owner_admin_id: "ada".into(),
            name: "n".into(),
            start_date: d(start),
            frequency,
            format: ExportFormat::Csv,
            kind: ExportKind::Report,
            filters: ReportParams::default(),
            created_at: at("2026-01-01"),
            updated_at: at("2026-01-01"),
            last_run_date,
            next_run_date: next_run_date(d(start), frequency, last_run_date),
            last_error: None,
        }
    }

    #[test]
    fn due_when_the_next_run_date_has_come() {
        let s = schedule("2026-03-15", Frequency::Daily, None);
        assert!(!is_due(&s, d("2026-03-14")));
        assert!(is_due(&s, d("2026-03-15")));
        assert!(is_due(&s, d("2026-04-01")), "overdue is due");
        let s = schedule("2026-03-15", Frequency::Weekly, Some("2026-03-15"));
        assert!(!is_due(&s, d("2026-03-21")));
        assert!(is_due(&s, d("2026-03-22")));
    }
}
