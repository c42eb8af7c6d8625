//! The usage report's rules (docs/rules.md), table-driven. Every case quotes
//! the sentence of the vendor's help page it checks ("the seed": the page the
//! rules come from, see docs/rules.md) or names the rule of docs/rules.md.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use usage_core::admin::{
    can_add_schedule, can_schedule, can_unassign, can_view_schedule, check_unassign,
    export_expired, AdminRole, MAX_SCHEDULES_PER_ADMIN,
};
use usage_core::charge::{
    charges, tokens_in_range, Charge, ChargeConfig, ChargeState, RateTable, WindowRecord,
};
use usage_core::event::{
    parse_timestamp, Access, Assignment, AssignmentAction, AssignmentVia, Authorization,
    GroupMembership, ProductRate, Team, Tokens, UserProfile,
};
use usage_core::frequency::{
    flex_tokens_if_moved, shown_average, usage_class, FrequentDaysPerMonth, UsageClass,
};
use usage_core::groups::GroupDirectory;
use usage_core::merge::{MergeApplied, MergeError, TeamMerges};
use usage_core::privacy::{display_identity, identities_hashed, TeamDirectory, UserHasher};
use usage_core::range::{DateRange, RangeError, RangePreset, ReportRange, MAX_CUSTOM_DAYS};
use usage_core::status::{status, subscription_tile, Held, Status, SubscriptionTile};
use usage_core::team::{Applied, AssignmentState, Resolution, TeamScope, TeamSource};
use usage_core::usage::{
    days_used, flex_tile, is_reportable, last_accessed, monthly_average, UsageBook,
};

// ---------------------------------------------------------------- helpers

fn t(s: &str) -> DateTime<Utc> {
    parse_timestamp(s).expect("test timestamp")
}

fn d(s: &str) -> NaiveDate {
    s.parse().expect("test date")
}

fn range(from: &str, to: &str) -> DateRange {
    DateRange::new(d(from), d(to)).expect("test range")
}

fn auth(id: &str, at: &str, user: &str, product: &str, access: Access) -> Authorization {
    Authorization {
        event_id: id.into(),
        occurred_at: t(at),
        user_id: user.into(),
        product: product.into(),
        product_version: None,
        access,
        team_id: None,
        machine_id: None,
        online: true,
    }
}

fn flex(id: &str, at: &str) -> Authorization {
    auth(id, at, "u1", "p1", Access::Flex)
}

struct A<'a> {
    id: &'a str,
    at: &'a str,
    action: AssignmentAction,
    team: &'a str,
    access: Access,
    via: AssignmentVia,
}

fn assignment(a: A<'_>) -> Assignment {
    Assignment {
        event_id: a.id.into(),
        occurred_at: t(a.at),
        action: a.action,
        team_id: a.team.into(),
        user_id: "u1".into(),
        product: "p1".into(),
        access: a.access,
        via: a.via,
        group_id: (a.via == AssignmentVia::Group).then(|| "g1".to_owned()),
    }
}

fn assign(id: &str, at: &str, team: &str) -> Assignment {
    assignment(A {
        id,
        at,
        action: AssignmentAction::Assign,
        team,
        access: Access::Seat,
        via: AssignmentVia::Direct,
    })
}

fn unassign(id: &str, at: &str, team: &str) -> Assignment {
    assignment(A {
        id,
        at,
        action: AssignmentAction::Unassign,
        team,
        access: Access::Seat,
        via: AssignmentVia::Direct,
    })
}

fn rate(product: &str, tokens: &str, from: &str) -> ProductRate {
    ProductRate {
        product: product.into(),
        name: None,
        flex_tokens_per_day: Tokens::parse(tokens).expect("test tokens"),
        effective_from: t(from),
    }
}

fn rates() -> RateTable {
    let mut r = RateTable::new();
    r.apply(
        "r1",
        t("2026-01-01T00:00:00Z"),
        &rate("p1", "10", "2026-01-01T00:00:00Z"),
    );
    r.apply(
        "r2",
        t("2026-02-20T00:00:00Z"),
        &rate("p1", "12.5", "2026-03-01T12:00:00Z"),
    );
    r
}

fn tokens(s: &str) -> Tokens {
    Tokens::parse(s).expect("test tokens")
}

fn held(access: Access, since: &str) -> Option<Held> {
    Some(Held {
        access,
        since: t(since),
    })
}

// ---------------------------------------------------------------- rule 6: status

#[test]
fn status_follows_the_seed_definitions() {
    let feb = range("2026-02-01", "2026-02-28");
    let cases: &[(&str, Option<Held>, bool, Option<Status>)] = &[
        (
            "Active users are currently assigned to the product and have used that product in the selected date range.",
            held(Access::Seat, "2025-06-01T00:00:00Z"),
            true,
            Some(Status::Active),
        ),
        (
            "Active users are currently assigned ... (a Flex user who used the product)",
            held(Access::Flex, "2025-06-01T00:00:00Z"),
            true,
            Some(Status::Active),
        ),
        (
            "Inactive users have access rights to the product within the selected team, but for the selected date range haven't accessed the product.",
            held(Access::Seat, "2025-06-01T00:00:00Z"),
            false,
            Some(Status::Inactive),
        ),
        (
            "inactive = seat, assigned since on or before the range start (docs/rules.md rule 6): assigned on the start date",
            held(Access::Seat, "2026-02-01T23:59:59Z"),
            false,
            Some(Status::Inactive),
        ),
        (
            "If a user has been assigned for a duration less than the selected time range and hasn't yet used the product, that user isn't counted (by definition) as active or inactive. They are assigned, but not yet active.",
            held(Access::Seat, "2026-02-02T00:00:00Z"),
            false,
            Some(Status::NotYetActive),
        ),
        (
            "not yet active: assigned after the range ended (a past custom range), not used",
            held(Access::Seat, "2026-03-05T00:00:00Z"),
            false,
            Some(Status::NotYetActive),
        ),
        (
            "Tagging Flex users with an inactive status therefore conflicts with the purpose of Flex. (assigned long ago, unused)",
            held(Access::Flex, "2025-06-01T00:00:00Z"),
            false,
            Some(Status::FlexUnused),
        ),
        (
            "Flex users are only charged tokens when they access products, so you generally don't need to remove their access based on low usage. (assigned in range, unused)",
            held(Access::Flex, "2026-02-10T00:00:00Z"),
            false,
            Some(Status::FlexUnused),
        ),
        (
            "unassigned (our rule): used in the range but not currently assigned",
            None,
            true,
            Some(Status::Unassigned),
        ),
        ("neither assigned nor used: not in the report", None, false, None),
    ];
    for (name, held, used, want) in cases {
        assert_eq!(status(*held, *used, &feb), *want, "{name}");
    }
}

#[test]
fn status_reads_the_current_assignment_as_of_now() {
    // "currently assigned" and "assigned since" are as of now.
    let mut s = AssignmentState::new();
    s.apply(&assign("a1", "2026-01-05T00:00:00Z", "t1"));
    s.apply(&unassign("a2", "2026-02-10T00:00:00Z", "t1"));
    s.apply(&assign("a3", "2026-02-20T00:00:00Z", "t1"));
    let now = t("2026-03-03T10:00:00Z");
    let feb = range("2026-02-01", "2026-02-28");
    let current = s
        .current_assignment("t1", "u1", "p1", Access::Seat, now)
        .expect("assigned now");
    assert_eq!(
        current.since,
        t("2026-02-20T00:00:00Z"),
        "the current continuous assignment"
    );
    let held = Some(Held {
        access: Access::Seat,
        since: current.since,
    });
    assert_eq!(status(held, false, &feb), Some(Status::NotYetActive));
    assert_eq!(status(held, true, &feb), Some(Status::Active));
    // Unassigned now: used in range is shown as unassigned.
    s.apply(&unassign("a4", "2026-03-01T00:00:00Z", "t1"));
    assert!(s
        .current_assignment("t1", "u1", "p1", Access::Seat, now)
        .is_none());
    assert_eq!(status(None, true, &feb), Some(Status::Unassigned));
}

#[test]
fn no_inactive_summary_when_all_teams_are_selected() {
    // "If a user has multiple entitlements to the same product across multiple
    // teams, it's likely that the user is inactive on one team and active on
    // another team. For this reason, the summary number for Inactive isn't
    // present when All Teams is selected."
    let rows = [
        (Access::Seat, Status::Active),
        (Access::Seat, Status::Inactive),
        (Access::Seat, Status::Inactive),
        (Access::Seat, Status::NotYetActive),
        (Access::Seat, Status::Unassigned),
        (Access::Flex, Status::Active),
        (Access::Flex, Status::FlexUnused),
    ];
    assert_eq!(
        subscription_tile(rows, TeamScope::Team("t1")),
        SubscriptionTile {
            assigned: 4,
            active: 1,
            inactive: Some(2),
            not_yet_active: 1
        }
    );
    assert_eq!(
        subscription_tile(rows, TeamScope::All),
        SubscriptionTile {
            assigned: 4,
            active: 1,
            inactive: None,
            not_yet_active: 1
        }
    );
}

// ---------------------------------------------------------------- rules 1, 5: usage

#[test]
fn last_accessed_is_the_most_recent_utc_date() {
    // "Last accessed date represents the most recent date (using UTC) on which
    // a license authorization call was made."
    let times = [
        t("2026-02-10T12:00:00Z"),
        // 23:30 at UTC-2 is 01:30 the next day in UTC.
        t("2026-03-01T23:30:00-02:00"),
        t("2026-03-10T00:00:00Z"),
    ];
    let cases = [
        (
            "UTC date, not the publisher's local date",
            "2026-03-05T00:00:00Z",
            Some("2026-03-02"),
        ),
        (
            "as of now: later usage is not yet visible",
            "2026-03-01T12:00:00Z",
            Some("2026-02-10"),
        ),
        (
            "as of now, not cut by the range",
            "2026-03-10T00:00:00Z",
            Some("2026-03-10"),
        ),
        ("nothing before now", "2026-01-01T00:00:00Z", None),
    ];
    for (name, now, want) in cases {
        assert_eq!(last_accessed(times, t(now)), want.map(d), "{name}");
    }
}

#[test]
fn days_used_counts_distinct_utc_dates_in_an_inclusive_range() {
    let times = [
        t("2026-02-01T00:00:00Z"),
        t("2026-02-01T23:59:59Z"),
        t("2026-02-14T08:00:00+09:00"), // 2026-02-13 UTC
        t("2026-02-28T23:00:00Z"),
        t("2026-03-01T00:00:00Z"),
        t("2026-01-31T23:59:59Z"),
    ];
    let cases = [
        (
            "both ends inclusive, one per date",
            "2026-02-01",
            "2026-02-28",
            3,
        ),
        ("one day", "2026-02-13", "2026-02-13", 1),
        ("range crossing the month", "2026-01-31", "2026-03-01", 5),
        ("nothing in range", "2026-02-02", "2026-02-12", 0),
    ];
    for (name, from, to, want) in cases {
        assert_eq!(days_used(times, &range(from, to)), want, "{name}");
    }
}

#[test]
fn offline_usage_is_not_reported() {
    // "No, offline usage isn't reported in the Usage Report."
    let mut offline = flex("e1", "2026-03-01T08:00:00Z");
    offline.online = false;
    assert!(!is_reportable(&offline));
    assert!(is_reportable(&flex("e2", "2026-03-01T09:00:00Z")));

    let mut book = UsageBook::new();
    assert!(!book.record("t1", &offline), "not counted in days used");
    assert!(book
        .rows(
            &range("2026-03-01", "2026-03-01"),
            t("2026-03-02T00:00:00Z"),
            &TeamMerges::new()
        )
        .is_empty());

    // Not charged, and opens no window: the next online use opens it.
    let rates = rates();
    let online = flex("e2", "2026-03-01T09:00:00Z");
    let mut state = ChargeState::default();
    assert_eq!(state.charge(&offline, &rates), Charge::NotReported);
    let opened = Charge::Charged {
        window_start: online.occurred_at,
        tokens: tokens("10"),
        late: false,
    };
    assert_eq!(state.charge(&online, &rates), opened);
    let set = charges([&offline, &online], &rates);
    assert_eq!(set.get("e1"), Some(&Charge::NotReported));
    assert_eq!(set.get("e2"), Some(&opened));
}

#[test]
fn monthly_average_is_days_used_over_months_in_range() {
    let jan15_feb14 = ReportRange::custom(d("2026-01-15"), d("2026-02-14")).expect("custom");
    let q4 = ReportRange::custom(d("2025-10-01"), d("2025-12-31")).expect("custom");
    let feb_leap = ReportRange::custom(d("2024-02-01"), d("2024-02-29")).expect("custom");
    let cases: [(&str, u32, ReportRange, f64); 6] = [
        (
            "last 3 months: 3 months",
            12,
            ReportRange::Preset(RangePreset::Last3Months),
            4.0,
        ),
        (
            "last 12 months: 12 months",
            30,
            ReportRange::Preset(RangePreset::Last12Months),
            2.5,
        ),
        (
            "last 30 days counts as one month",
            12,
            ReportRange::Preset(RangePreset::Last30Days),
            12.0,
        ),
        ("custom whole months count like the preset", 12, q4, 4.0),
        ("a leap February is one month", 10, feb_leap, 10.0),
        (
            "custom: calendar months pro rata (17/31 + 14/28)",
            10,
            jan15_feb14,
            10.0 / (17.0 / 31.0 + 0.5),
        ),
    ];
    for (name, days, range, want) in cases {
        let got = monthly_average(days, &range);
        assert!((got - want).abs() < 1e-9, "{name}: {got} != {want}");
    }
}

#[test]
fn usage_rows_and_flex_tile() {
    let mut book = UsageBook::new();
    let mut e1 = flex("e1", "2026-02-03T10:00:00Z");
    e1.access = Access::Seat;
    let e2 = flex("e2", "2026-02-04T10:00:00Z");
    let e3 = flex("e3", "2026-02-04T11:00:00Z");
    let e4 = auth("e4", "2026-02-05T11:00:00Z", "u2", "p1", Access::Flex);
    for e in [&e1, &e2, &e3, &e4] {
        book.record("t1", e);
    }
    let feb = range("2026-02-01", "2026-02-28");
    let rows = book.rows(&feb, t("2026-03-01T00:00:00Z"), &TeamMerges::new());
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0].days_used, rows[0].flex_days_used), (2, 1));
    assert_eq!(rows[0].last_accessed, Some(d("2026-02-04")));
    let set = charges([&e1, &e2, &e3, &e4], &rates());
    let tokens = tokens_in_range(set.values(), &feb).expect("no overflow");
    assert_eq!(tokens, Tokens::from_whole(20));
    let tile = flex_tile(&rows, tokens);
    assert_eq!((tile.users, tile.days_used), (2, 2));
}

// ---------------------------------------------------------------- rule 5: ranges

#[test]
fn range_presets_have_stable_names() {
    for p in RangePreset::ALL {
        assert_eq!(p.as_str().parse::<RangePreset>(), Ok(p));
    }
    let names: Vec<&str> = RangePreset::ALL.iter().map(|p| p.as_str()).collect();
    assert_eq!(
        names,
        [
            "last_30_days",
            "last_3_months",
            "last_6_months",
            "last_9_months",
            "last_12_months"
        ]
    );
    assert!(matches!(
        "last_month".parse::<RangePreset>(),
        Err(RangeError::UnknownPreset(_))
    ));
}

#[test]
fn range_presets_as_the_vendor_documents_them() {
    // "last 30 days" is rolling (today and the 29 days before); "last 3/6/9/12
    // months" are whole completed calendar months (the current month excluded).
    use RangePreset::*;
    let cases = [
        (
            "rolling 30 days, today included",
            Last30Days,
            "2026-03-15T10:00:00Z",
            "2026-02-14",
            "2026-03-15",
        ),
        (
            "rolling across a leap February",
            Last30Days,
            "2024-03-10T00:00:00Z",
            "2024-02-10",
            "2024-03-10",
        ),
        (
            "today is the UTC date of now",
            Last30Days,
            "2026-03-15T23:30:00-02:00",
            "2026-02-15",
            "2026-03-16",
        ),
        (
            "current month excluded",
            Last3Months,
            "2026-03-15T10:00:00Z",
            "2025-12-01",
            "2026-02-28",
        ),
        (
            "on the 1st, the previous month is complete",
            Last3Months,
            "2026-03-01T00:00:00Z",
            "2025-12-01",
            "2026-02-28",
        ),
        (
            "on the last day, the current month still excluded",
            Last3Months,
            "2026-03-31T23:59:59Z",
            "2025-12-01",
            "2026-02-28",
        ),
        (
            "leap February ends on the 29th",
            Last3Months,
            "2024-03-15T00:00:00Z",
            "2023-12-01",
            "2024-02-29",
        ),
        (
            "January wraps to the previous year",
            Last3Months,
            "2026-01-10T00:00:00Z",
            "2025-10-01",
            "2025-12-31",
        ),
        (
            "6 months",
            Last6Months,
            "2026-01-10T00:00:00Z",
            "2025-07-01",
            "2025-12-31",
        ),
        (
            "9 months",
            Last9Months,
            "2026-05-31T00:00:00Z",
            "2025-08-01",
            "2026-04-30",
        ),
        (
            "12 months",
            Last12Months,
            "2026-01-01T00:00:00Z",
            "2025-01-01",
            "2025-12-31",
        ),
    ];
    for (name, preset, now, from, to) in cases {
        let got = ReportRange::Preset(preset).resolve(t(now)).expect(name);
        assert_eq!((got.from(), got.to()), (d(from), d(to)), "{name}");
    }
    let last30 = Last30Days.dates(d("2026-03-15")).expect("dates");
    assert_eq!(last30.days(), 30);
}

#[test]
fn custom_ranges_are_validated() {
    let now = t("2026-03-15T10:00:00Z");
    let ok = ReportRange::custom(d("2026-03-01"), d("2026-03-15")).expect("valid");
    assert_eq!(ok.resolve(now).map(|r| r.days()), Ok(15));
    let one_day = ReportRange::custom(d("2026-03-15"), d("2026-03-15")).expect("valid");
    assert_eq!(one_day.resolve(now).map(|r| r.days()), Ok(1));
    assert!(matches!(
        ReportRange::custom(d("2026-03-02"), d("2026-03-01")),
        Err(RangeError::Reversed { .. })
    ));
    assert!(
        ReportRange::custom(d("2023-03-16"), d("2024-03-15")).is_ok(),
        "366 days"
    );
    assert!(matches!(
        ReportRange::custom(d("2023-03-15"), d("2024-03-15")),
        Err(RangeError::TooLong {
            days: 367,
            max: MAX_CUSTOM_DAYS
        })
    ));
    let future = ReportRange::custom(d("2026-03-01"), d("2026-03-16")).expect("shape ok");
    assert!(matches!(
        future.resolve(now),
        Err(RangeError::EndsAfterToday { .. })
    ));
}

// ---------------------------------------------------------------- rule 2: teams

#[test]
fn team_is_resolved_as_of_the_event() {
    // "Team assignment is permanently associated with each usage transaction
    // and won't change over time (with one exception, a team merge event)."
    let mut s = AssignmentState::new();
    for a in [
        assign("a1", "2026-03-01T01:00:00Z", "tA"),
        unassign("a2", "2026-03-01T04:00:00Z", "tA"),
        assign("a3", "2026-03-01T05:00:00Z", "tB"),
        assign("a4", "2026-03-01T06:00:00Z", "tC"),
        assignment(A {
            id: "a5",
            at: "2026-03-01T06:00:00Z",
            action: AssignmentAction::Assign,
            team: "tD",
            access: Access::Seat,
            via: AssignmentVia::Group,
        }),
    ] {
        assert_eq!(s.apply(&a), Applied::New);
    }
    let team_of = |at: &str, named: Option<&str>| {
        let mut e = auth("e", at, "u1", "p1", Access::Seat);
        e.team_id = named.map(str::to_owned);
        match s.resolve(&e) {
            Resolution::Resolved(r) => format!("{}:{:?}", r.team_id, r.source),
            Resolution::Unresolved => "unresolved".to_owned(),
            Resolution::Ambiguous { chosen, teams } => {
                format!("{} of {}", chosen.team_id, teams.join(","))
            }
        }
    };
    let cases = [
        (
            "If the event names team_id, use it",
            "2026-03-01T00:00:00Z",
            Some("tZ"),
            "tZ:Event",
        ),
        (
            "before any assignment: not guessed",
            "2026-03-01T00:59:59Z",
            None,
            "unresolved",
        ),
        (
            "assigned at that instant (occurred_at <= event)",
            "2026-03-01T01:00:00Z",
            None,
            "tA:Assignment",
        ),
        (
            "team as of the event, not as of now",
            "2026-03-01T02:00:00Z",
            None,
            "tA:Assignment",
        ),
        (
            "unassign ends it",
            "2026-03-01T04:30:00Z",
            None,
            "unresolved",
        ),
        (
            "the new team after a move",
            "2026-03-01T05:30:00Z",
            None,
            "tB:Assignment",
        ),
        (
            "several teams: the most recently assigned, ties by smallest team id",
            "2026-03-01T07:00:00Z",
            None,
            "tC of tB,tC,tD",
        ),
    ];
    for (name, at, named, want) in cases {
        assert_eq!(team_of(at, named), want, "{name}");
    }
    // Access matters: a seat assignment does not resolve Flex usage.
    let flex_use = auth("f", "2026-03-01T02:00:00Z", "u1", "p1", Access::Flex);
    assert_eq!(s.resolve(&flex_use), Resolution::Unresolved);
}

#[test]
fn late_assignments_land_at_their_place_in_time() {
    // The unassign arrives before the (older) assign it ends.
    let mut s = AssignmentState::new();
    s.apply(&unassign("a2", "2026-03-01T05:00:00Z", "t1"));
    let e = auth("e", "2026-03-01T03:00:00Z", "u1", "p1", Access::Seat);
    assert_eq!(
        s.resolve(&e),
        Resolution::Unresolved,
        "held back until the assignment arrives"
    );
    s.apply(&assign("a1", "2026-03-01T01:00:00Z", "t1"));
    let r = s.resolve(&e);
    let team = r.team().expect("resolved");
    assert_eq!(
        (team.team_id, team.via),
        ("t1", Some(AssignmentVia::Direct))
    );
    assert_eq!(team.since, Some(t("2026-03-01T01:00:00Z")));
    let after = auth("e2", "2026-03-01T05:00:00Z", "u1", "p1", Access::Seat);
    assert_eq!(s.resolve(&after), Resolution::Unresolved);
    // A re-assignment via a group keeps the assigned date, takes the new via.
    let mut s = AssignmentState::new();
    s.apply(&assign("a1", "2026-03-01T01:00:00Z", "t1"));
    s.apply(&assignment(A {
        id: "a2",
        at: "2026-03-02T01:00:00Z",
        action: AssignmentAction::Assign,
        team: "t1",
        access: Access::Seat,
        via: AssignmentVia::Group,
    }));
    let now = s
        .current_assignment("t1", "u1", "p1", Access::Seat, t("2026-03-03T00:00:00Z"))
        .expect("assigned");
    assert_eq!(
        (now.since, now.via, now.group_id),
        (t("2026-03-01T01:00:00Z"), AssignmentVia::Group, Some("g1"))
    );
}

#[test]
fn team_merges_are_the_one_exception() {
    // "... won't change over time (with one exception, a team merge event)."
    // Stored rows keep their team; reports for `into` include `from`.
    let mut m = TeamMerges::new();
    assert_eq!(m.merge("b", "c"), Ok(MergeApplied::New));
    assert_eq!(m.merge("a", "b"), Ok(MergeApplied::New));
    assert_eq!(m.merge("a", "b"), Ok(MergeApplied::Duplicate));
    assert_eq!(m.current("a"), "c", "transitive");
    assert_eq!(m.current("b"), "c");
    assert_eq!(m.current("c"), "c");
    assert_eq!(m.current("x"), "x", "never merged");
    assert_eq!(m.history_of("c"), ["a", "b", "c"]);
    assert_eq!(m.mapping(), [("a", "c"), ("b", "c")]);

    let cycle = m.merge("c", "a").expect_err("closes a cycle");
    assert_eq!(
        cycle,
        MergeError::Cycle {
            cycle: vec!["c".into(), "a".into(), "b".into(), "c".into()]
        }
    );
    assert_eq!(
        cycle.to_string(),
        "team merge would close the cycle c -> a -> b -> c"
    );
    assert!(
        matches!(m.merge("d", "d"), Err(MergeError::Cycle { .. })),
        "self merge"
    );
    assert!(matches!(
        m.merge("a", "z"),
        Err(MergeError::AlreadyMerged { .. })
    ));
    assert_eq!(m.len(), 2, "earlier merges stay");

    // Read time: the usage of `a` shows under `c`, one row per user and product.
    let mut book = UsageBook::new();
    let mut e1 = flex("e1", "2026-02-03T10:00:00Z");
    e1.team_id = Some("a".into());
    let e2 = flex("e2", "2026-02-03T12:00:00Z");
    let e3 = flex("e3", "2026-02-04T12:00:00Z");
    book.record("a", &e1);
    book.record("c", &e2);
    book.record("c", &e3);
    let rows = book.rows(
        &range("2026-02-01", "2026-02-28"),
        t("2026-03-01T00:00:00Z"),
        &m,
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].team_id.as_str(), rows[0].days_used),
        ("c", 2),
        "distinct dates across merged teams"
    );
    let unmerged = book.rows(
        &range("2026-02-01", "2026-02-28"),
        t("2026-03-01T00:00:00Z"),
        &TeamMerges::new(),
    );
    assert_eq!(unmerged.len(), 2, "stored rows keep their original team");
}

// ---------------------------------------------------------------- rule 3: groups

#[test]
fn groups_are_current_state_and_may_be_blank() {
    // "The usage report reflects the current state of the group (or multiple
    // groups) to which an end user belongs. Groups shown in the usage report can
    // change if and when an admin updates the group membership."
    // "As group assignment is optional for user management, the group field may be blank."
    let m = |group: &str, name: &str, member: bool| GroupMembership {
        team_id: "t1".into(),
        group_id: group.into(),
        group_name: name.into(),
        user_id: "u1".into(),
        member,
    };
    let events = [
        ("g1", "2026-01-01T00:00:00Z", m("g1", "Design", true)),
        ("g2", "2026-01-02T00:00:00Z", m("g2", "Build", true)),
        ("g3", "2026-02-01T00:00:00Z", m("g1", "Design", false)),
        ("g4", "2026-02-02T00:00:00Z", m("g2", "Builders", true)),
    ];
    let mut forward = GroupDirectory::new();
    let mut backward = GroupDirectory::new();
    for (id, at, e) in &events {
        forward.apply(id, t(at), e);
    }
    for (id, at, e) in events.iter().rev() {
        backward.apply(id, t(at), e);
    }
    assert_eq!(forward.groups_of("t1", "u1"), [("g2", "Builders")]);
    assert_eq!(
        backward.groups_of("t1", "u1"),
        [("g2", "Builders")],
        "order-independent"
    );
    assert!(forward.groups_of("t1", "u2").is_empty(), "blank");
}

// ---------------------------------------------------------------- rule 4: Flex charges

#[test]
fn flex_tokens_are_charged_per_24_hour_window() {
    // "Flex is designed to offer flexible access to more than 100 products by
    // using prepaid tokens for each day of use."
    // "Flex users are only charged tokens when they access products"
    let rates = rates();
    let mut v2 = flex("e2", "2026-03-01T20:00:00Z");
    v2.product_version = Some("2027".into());
    let events = [
        flex("e1", "2026-03-01T08:00:00Z"),
        v2,
        flex("e3", "2026-03-02T07:59:59.999999Z"),
        flex("e4", "2026-03-02T08:00:00Z"),
        auth("e5", "2026-03-02T09:00:00Z", "u1", "p1", Access::Seat),
        auth("e6", "2026-03-02T09:00:00Z", "u1", "p2", Access::Flex),
        auth("e7", "2026-03-02T10:00:00Z", "u1", "p2", Access::Flex),
        auth("e8", "2026-03-01T09:00:00Z", "u2", "p1", Access::Flex),
        flex("e9", "2026-03-05T00:00:00Z"),
    ];
    let charged = |at: &str, tok: &str| Charge::Charged {
        window_start: t(at),
        tokens: tokens(tok),
        late: false,
    };
    let free = |at: &str| Charge::Free {
        window_start: t(at),
    };
    let cases = [
        (
            "e1",
            "the first authorization opens a window, charged the daily rate",
            charged("2026-03-01T08:00:00Z", "10"),
        ),
        (
            "e2",
            "inside the window, any version of the product, is free",
            free("2026-03-01T08:00:00Z"),
        ),
        (
            "e3",
            "the window is 24 hours, end exclusive",
            free("2026-03-01T08:00:00Z"),
        ),
        (
            "e4",
            "at 24h a new window opens, at the rate in force then",
            charged("2026-03-02T08:00:00Z", "12.5"),
        ),
        ("e5", "seat usage costs no tokens", Charge::Seat),
        (
            "e6",
            "no known rate: not guessed",
            Charge::UnknownRate {
                window_start: t("2026-03-02T09:00:00Z"),
            },
        ),
        (
            "e7",
            "the unknown-rate window still covers its usage",
            free("2026-03-02T09:00:00Z"),
        ),
        (
            "e8",
            "windows are per user",
            charged("2026-03-01T09:00:00Z", "10"),
        ),
        (
            "e9",
            "after a gap, a new window",
            charged("2026-03-05T00:00:00Z", "12.5"),
        ),
    ];
    let set = charges(&events, &rates);
    let mut state = ChargeState::default();
    let incremental: Vec<Charge> = events.iter().map(|e| state.charge(e, &rates)).collect();
    for ((id, name, want), got) in cases.iter().zip(&incremental) {
        assert_eq!(set.get(id), Some(want), "set form: {name}");
        assert_eq!(got, want, "incremental: {name}");
    }
    assert_eq!(
        tokens_in_range(set.values(), &range("2026-03-01", "2026-03-01")),
        Some(tokens("20")),
        "tokens used in a range = the charges whose window starts in it"
    );
}

#[test]
fn rates_are_effective_dated_and_corrections_win_in_any_order() {
    let r1 = rate("p1", "10", "2026-01-01T00:00:00Z");
    let fix = rate("p1", "11", "2026-01-01T00:00:00Z");
    let mut a = RateTable::new();
    a.apply("r1", t("2026-01-01T00:00:00Z"), &r1);
    a.apply("r2", t("2026-01-02T00:00:00Z"), &fix);
    let mut b = RateTable::new();
    b.apply("r2", t("2026-01-02T00:00:00Z"), &fix);
    b.apply("r1", t("2026-01-01T00:00:00Z"), &r1);
    let at = t("2026-02-01T00:00:00Z");
    assert_eq!(a.rate_at("p1", at), Some(tokens("11")));
    assert_eq!(b.rate_at("p1", at), Some(tokens("11")));
    assert_eq!(a.rate_at("p1", t("2025-12-31T23:59:59Z")), None);
    let table = rates();
    assert_eq!(
        table.rate_at("p1", t("2026-03-01T11:59:59Z")),
        Some(tokens("10"))
    );
    assert_eq!(
        table.rate_at("p1", t("2026-03-01T12:00:00Z")),
        Some(tokens("12.5"))
    );
}

#[test]
fn out_of_order_flex_events_never_move_a_charged_window() {
    let rates = rates();
    let mut state = ChargeState::new(ChargeConfig::UNBOUNDED);
    let charged = |at: &str, late: bool| Charge::Charged {
        window_start: t(at),
        tokens: tokens("10"),
        late,
    };
    let free = |at: &str| Charge::Free {
        window_start: t(at),
    };
    let arrivals = [
        (
            "e1",
            "2026-02-01T08:00:00Z",
            "in order: opens",
            charged("2026-02-01T08:00:00Z", false),
        ),
        (
            "e2",
            "2026-02-03T08:00:00Z",
            "in order: opens",
            charged("2026-02-03T08:00:00Z", false),
        ),
        (
            "e3",
            "2026-02-01T09:00:00Z",
            "late, inside an open window: free",
            free("2026-02-01T08:00:00Z"),
        ),
        (
            "e4",
            "2026-02-02T10:00:00Z",
            "late, in a gap: opens its own window, charged, flagged late",
            charged("2026-02-02T10:00:00Z", true),
        ),
        (
            "e5",
            "2026-02-02T12:00:00Z",
            "inside the late window: free",
            free("2026-02-02T10:00:00Z"),
        ),
        (
            "e6",
            "2026-02-03T09:00:00Z",
            "the charged window of e2 stays: the newest window at or before the event",
            free("2026-02-03T08:00:00Z"),
        ),
        (
            "e7",
            "2026-02-01T07:00:00Z",
            "late, before the first window: opens",
            charged("2026-02-01T07:00:00Z", true),
        ),
    ];
    let mut seen = Vec::new();
    for (id, at, name, want) in &arrivals {
        let e = flex(id, at);
        let got = state.charge(&e, &rates);
        assert_eq!(got, *want, "{name}");
        let start = got.window_start().expect("a window");
        assert!(
            start <= e.occurred_at && e.occurred_at < start + TimeDelta::hours(24),
            "{name}: invariant"
        );
        seen.push((e, got));
    }
    for (e, first) in &seen {
        assert_eq!(
            state.charge(e, &rates),
            *first,
            "re-delivery of {} is answered the same",
            e.event_id
        );
    }
    // The set form of the same events would have made e2 free; e2 stays charged.
    let set = charges(seen.iter().map(|(e, _)| e), &rates);
    assert_eq!(set.get("e2"), Some(&free("2026-02-02T10:00:00Z")));
}

#[test]
fn simultaneous_uses_share_one_window_whatever_their_order() {
    // Two launches at the same microsecond, delivered "b" before "a".
    let rates = rates();
    let mut state = ChargeState::default();
    let b = flex("b", "2026-02-01T08:00:00Z");
    let a = flex("a", "2026-02-01T08:00:00Z");
    let ws = t("2026-02-01T08:00:00Z");
    let charged = Charge::Charged {
        window_start: ws,
        tokens: tokens("10"),
        late: false,
    };
    assert_eq!(
        state.charge(&b, &rates),
        charged,
        "the first met opens the window"
    );
    assert_eq!(
        state.charge(&a, &rates),
        Charge::Free { window_start: ws },
        "never a second charge"
    );
    assert_eq!(state.charge(&b, &rates), charged, "re-delivery");
    // The set form picks the smallest event id; the window and its charge are the same.
    let set = charges([&b, &a], &rates);
    assert_eq!(set.get("a"), Some(&charged));
    assert_eq!(set.get("b"), Some(&Charge::Free { window_start: ws }));
}

#[test]
fn a_dead_lettered_opener_leaves_no_window_behind() {
    // "A Flex event whose product has no known rate is not guessed (dead
    // letter, replayable)": once it is dead-lettered, the next use opens the
    // window and pays for it.
    let rates = RateTable::new();
    let mut state = ChargeState::default();
    let e1 = auth("e1", "2026-03-02T09:00:00Z", "u1", "p2", Access::Flex);
    let e2 = auth("e2", "2026-03-02T10:00:00Z", "u1", "p2", Access::Flex);
    let ws = t("2026-03-02T09:00:00Z");
    assert_eq!(
        state.charge(&e1, &rates),
        Charge::UnknownRate { window_start: ws }
    );
    assert!(state.forget_window("u1", "p2", ws, "e1"));
    assert!(!state.forget_window("u1", "p2", ws, "e1"), "only once");
    assert_eq!(
        state.charge(&e2, &rates),
        Charge::UnknownRate {
            window_start: t("2026-03-02T10:00:00Z")
        },
        "the next use opens its own window"
    );
}

#[test]
fn unknown_rate_is_charged_when_replayed_after_the_rate_arrives() {
    let mut rates = RateTable::new();
    let mut state = ChargeState::default();
    let e1 = auth("e1", "2026-03-02T09:00:00Z", "u1", "p2", Access::Flex);
    let e2 = auth("e2", "2026-03-02T10:00:00Z", "u1", "p2", Access::Flex);
    let ws = t("2026-03-02T09:00:00Z");
    assert_eq!(
        state.charge(&e1, &rates),
        Charge::UnknownRate { window_start: ws }
    );
    assert_eq!(state.charge(&e2, &rates), Charge::Free { window_start: ws });
    rates.apply(
        "r",
        t("2026-03-03T00:00:00Z"),
        &rate("p2", "3", "2026-01-01T00:00:00Z"),
    );
    let replayed = Charge::Charged {
        window_start: ws,
        tokens: tokens("3"),
        late: false,
    };
    assert_eq!(
        state.charge(&e1, &rates),
        replayed,
        "the dead-lettered opener, replayed"
    );
    assert_eq!(state.charge(&e2, &rates), Charge::Free { window_start: ws });
    assert_eq!(charges([&e1, &e2], &rates).get("e1"), Some(&replayed));
}

#[test]
fn charge_state_is_bounded_and_refuses_what_it_forgot() {
    let rates = rates();
    let mut state = ChargeState::default(); // last 4 windows and 7 days
    let days: Vec<Authorization> = (1..=20)
        .map(|day| flex(&format!("e{day}"), &format!("2026-02-{day:02}T08:00:00Z")))
        .collect();
    let first: Vec<Charge> = days.iter().map(|e| state.charge(e, &rates)).collect();
    assert!(first
        .iter()
        .all(|c| matches!(c, Charge::Charged { late: false, .. })));
    let kept = state.windows("u1", "p1");
    assert_eq!(
        kept.len(),
        8,
        "7 days of event time plus the window reaching into them"
    );
    assert_eq!(kept[0].start, t("2026-02-13T08:00:00Z"));
    assert_eq!(
        state.charge(&days[0], &rates),
        Charge::BeyondHorizon,
        "forgotten: not guessed"
    );
    let late = flex("x", "2026-02-12T09:00:00Z");
    assert_eq!(state.charge(&late, &rates), Charge::BeyondHorizon);
    assert_eq!(
        state.charge(&days[12], &rates),
        first[12],
        "kept: answered exactly"
    );

    // Restored from stored charges after a restart.
    let mut restored = ChargeState::default();
    for w in &kept {
        restored.restore("u1", "p1", w);
        restored.restore("u1", "p1", w);
    }
    restored.known_from("u1", "p1", kept[0].start);
    assert_eq!(restored.windows("u1", "p1"), kept, "idempotent");
    assert_eq!(restored.charge(&days[19], &rates), first[19]);
    assert_eq!(restored.charge(&days[0], &rates), Charge::BeyondHorizon);
    let next = flex("e21", "2026-02-21T08:00:00Z");
    assert_eq!(restored.charge(&next, &rates), state.charge(&next, &rates));
    let record = WindowRecord {
        start: t("2026-02-20T08:00:00Z"),
        opened_by: "e20".into(),
        tokens: Some(tokens("10")),
        late: false,
    };
    assert!(restored.windows("u1", "p1").contains(&record));
}

#[test]
fn a_restarted_state_answers_only_what_it_knows() {
    let rates = rates();
    let mut state = ChargeState::default();
    // Windows starting at or after Feb 10 are all loaded: there is one.
    state.known_from("u1", "p1", t("2026-02-10T00:00:00Z"));
    state.restore(
        "u1",
        "p1",
        &WindowRecord {
            start: t("2026-02-12T08:00:00Z"),
            opened_by: "w".into(),
            tokens: Some(tokens("10")),
            late: false,
        },
    );
    let charged = |at: &str| Charge::Charged {
        window_start: t(at),
        tokens: tokens("10"),
        late: false,
    };
    let cases = [
        (
            "a Feb 9 window could cover it",
            "2026-02-10T06:00:00Z",
            Charge::BeyondHorizon,
        ),
        (
            "24h after the boundary: no unknown window reaches it",
            "2026-02-11T00:00:00Z",
            Charge::Charged {
                window_start: t("2026-02-11T00:00:00Z"),
                tokens: tokens("10"),
                late: true,
            },
        ),
        (
            "inside the restored window",
            "2026-02-12T09:00:00Z",
            Charge::Free {
                window_start: t("2026-02-12T08:00:00Z"),
            },
        ),
        (
            "after it, in order",
            "2026-02-14T00:00:00Z",
            charged("2026-02-14T00:00:00Z"),
        ),
    ];
    for (i, (name, at, want)) in cases.into_iter().enumerate() {
        assert_eq!(
            state.charge(&flex(&format!("e{i}"), at), &rates),
            want,
            "{name}"
        );
    }
    let fresh = ChargeState::default();
    assert!(fresh.windows("u1", "p1").is_empty());
}

// ---------------------------------------------------------------- rule 7: privacy

#[test]
fn personal_data_is_hashed_per_the_team_setting() {
    // "If your team's personal data (PII) is selected (On), user's names, email
    // addresses, and profile images are displayed. If personal data isn't
    // selected (Off), then that team's user's personal data will be hashed. If
    // personal data is set to Off for one or more teams and All Teams is
    // selected, then hashed data values are shown for all teams."
    let mut teams = TeamDirectory::new();
    let team = |id: &str, on: bool| Team {
        team_id: id.into(),
        name: id.into(),
        pii_visible: on,
    };
    teams.apply("d1", t("2026-01-01T00:00:00Z"), &team("on", true));
    teams.apply("d2", t("2026-01-01T00:00:00Z"), &team("off", false));
    teams.apply("d3", t("2026-01-01T00:00:00Z"), &team("on2", true));
    let pii = |t: &str| teams.pii_visible(t);
    let cases: [(&str, TeamScope<'_>, &[&str], bool); 6] = [
        ("If your team's personal data (PII) is selected (On), ... displayed", TeamScope::Team("on"), &["on"], false),
        ("If personal data isn't selected (Off), then that team's user's personal data will be hashed", TeamScope::Team("off"), &["off"], true),
        ("teams default to off", TeamScope::Team("never-described"), &["never-described"], true),
        ("Off for one or more teams and All Teams is selected: hashed for all teams", TeamScope::All, &["on", "off", "on2"], true),
        ("All Teams, every team On: displayed", TeamScope::All, &["on", "on2"], false),
        ("All Teams with a team never described (off by default)", TeamScope::All, &["on", "new"], true),
    ];
    for (name, scope, in_scope, want) in cases {
        assert_eq!(
            identities_hashed(scope, in_scope.iter().copied(), pii),
            want,
            "{name}"
        );
    }
    // A later publication wins, in any order.
    teams.apply("d0", t("2025-12-01T00:00:00Z"), &team("off", true));
    assert!(
        !teams.pii_visible("off"),
        "an older publication does not override"
    );
    teams.apply("d9", t("2026-02-01T00:00:00Z"), &team("off", true));
    assert!(teams.pii_visible("off"));
}

#[test]
fn the_hash_is_keyed_stable_and_hides_every_field() {
    let hasher = UserHasher::new(b"0123456789abcdef0123456789abcdef").expect("32-byte secret");
    // Known answer: HMAC-SHA-256(secret, "user-42"), lowercase hex.
    assert_eq!(
        hasher.hash("user-42"),
        "d6f70521973278294ce7b05519c3131f25d1710102d6c7e2842e84faa1ca1b01"
    );
    assert_eq!(
        hasher.hash("user-42"),
        hasher.hash("user-42"),
        "same user, same hash"
    );
    assert_ne!(hasher.hash("user-42"), hasher.hash("user-43"));
    let other = UserHasher::new(b"another deployment's secret, 32+").expect("secret");
    assert_ne!(other.hash("user-42"), hasher.hash("user-42"), "keyed");
    assert!(UserHasher::new(b"short").is_err());
    // The digest is the hash as bytes: its hex is the hash, and digests
    // order as the hashes do.
    assert_eq!(&*hasher.digest("user-42").hex(), hasher.hash("user-42"));
    let ids = ["user-1", "user-2", "user-3", "user-42", "user-43"];
    let mut by_digest = ids;
    by_digest.sort_by_key(|id| hasher.digest(id));
    let mut by_hash = ids;
    by_hash.sort_by_key(|id| hasher.hash(id));
    assert_eq!(by_digest, by_hash);
    assert!(
        !format!("{hasher:?}").contains("0123"),
        "the secret is not printed"
    );

    let profile = UserProfile {
        user_id: "user-42".into(),
        name: "Ada".into(),
        email: "ada@example.com".into(),
        avatar_url: Some("https://example.com/ada.png".into()),
    };
    // "Hashed data values are shown": the hash in the key, name and email.
    let hidden = display_identity("user-42", Some(profile.clone()), true, |u| hasher.hash(u));
    let h = hasher.hash("user-42");
    assert_eq!(hidden.user_key, h);
    assert_eq!(hidden.name.as_deref(), Some(h.as_str()));
    assert_eq!(hidden.email.as_deref(), Some(h.as_str()));
    assert_eq!(hidden.avatar_url, None);
    let hidden_unknown = display_identity("user-42", None, true, |u| hasher.hash(u));
    assert_eq!(
        hidden_unknown, hidden,
        "hashed whether or not a profile is known"
    );
    let shown = display_identity("user-42", Some(profile), false, |u| hasher.hash(u));
    assert_eq!(
        (
            shown.user_key.as_str(),
            shown.name.as_deref(),
            shown.email.as_deref(),
            shown.avatar_url.as_deref()
        ),
        (
            "user-42",
            Some("Ada"),
            Some("ada@example.com"),
            Some("https://example.com/ada.png")
        )
    );
    let unknown = display_identity("user-42", None, false, |u| hasher.hash(u));
    assert_eq!(
        (unknown.user_key.as_str(), unknown.name, unknown.email),
        ("user-42", None, None)
    );
}

// ---------------------------------------------------------------- rules 8-10: admin

#[test]
fn past_exports_are_deleted_after_14_days() {
    // "We automatically delete past exports after 14 days to maintain security
    // and manage storage."
    let created = t("2026-03-01T10:00:00Z");
    let cases = [
        ("just created", "2026-03-01T10:00:00Z", false),
        ("13 days later", "2026-03-14T10:00:00Z", false),
        ("one second before 14 days", "2026-03-15T09:59:59Z", false),
        ("14 days later", "2026-03-15T10:00:00Z", true),
        ("a month later", "2026-04-01T00:00:00Z", true),
    ];
    for (name, now, want) in cases {
        assert_eq!(export_expired(created, t(now)), want, "{name}");
    }
}

#[test]
fn at_most_5_scheduled_reports() {
    // "You can set up a maximum of 5 scheduled reports."
    assert_eq!(MAX_SCHEDULES_PER_ADMIN, 5);
    let cases = [(0, true), (4, true), (5, false), (6, false)];
    for (existing, want) in cases {
        assert_eq!(can_add_schedule(existing), want, "{existing} existing");
    }
}

#[test]
fn who_may_schedule_and_see_schedules() {
    // "As a primary, secondary, or SSO admin, you can schedule the usage report"
    for (role, want) in [
        (AdminRole::Primary, true),
        (AdminRole::Secondary, true),
        (AdminRole::Sso, true),
        (AdminRole::Other, false),
    ] {
        assert_eq!(can_schedule(role), want, "{role:?}");
    }
    // "Only the admin who schedules a recurring report can view it in their account."
    assert!(can_view_schedule("admin-1", "admin-1"));
    assert!(!can_view_schedule("admin-1", "admin-2"));
}

#[test]
fn unassign_is_refused_for_group_and_default_assignments() {
    // "Users assigned through a group or default assignments cannot be
    // unassigned from the Usage report."
    let cases = [
        (
            "Admins can unassign users directly from the Usage report.",
            AssignmentVia::Direct,
            true,
        ),
        ("assigned through a group", AssignmentVia::Group, false),
        (
            "assigned through a default assignment",
            AssignmentVia::Default,
            false,
        ),
    ];
    for (name, via, want) in cases {
        assert_eq!(can_unassign(via), want, "{name}");
        assert_eq!(check_unassign(via).is_ok(), want, "{name}");
    }
    assert_eq!(
        check_unassign(AssignmentVia::Group).map_err(|e| e.to_string()),
        Err("users assigned via group cannot be unassigned from the usage report".to_owned())
    );
}

#[test]
fn team_resolution_source_and_named_team_details() {
    let mut s = AssignmentState::new();
    s.apply(&assign("a1", "2026-03-01T01:00:00Z", "t1"));
    let mut e = auth("e", "2026-03-01T02:00:00Z", "u1", "p1", Access::Seat);
    e.team_id = Some("t1".into());
    let r = s.resolve(&e);
    let team = r.team().expect("named");
    assert_eq!(team.source, TeamSource::Event);
    assert_eq!(
        team.via,
        Some(AssignmentVia::Direct),
        "named team known to the state: via filled in"
    );
    e.team_id = None;
    assert_eq!(
        s.resolve(&e).team().map(|t| t.source),
        Some(TeamSource::Assignment)
    );
}

/// "See which users are frequent or occasional users of a product …
/// consider assigning them to prepaid Flex" (rule 11): lines classed by the
/// monthly average as shown, and the tokens a seat user would have cost.
#[test]
fn frequent_and_occasional_users() {
    let five = FrequentDaysPerMonth::DEFAULT;
    let quarter = ReportRange::Preset(RangePreset::Last3Months).months();
    // Fewer than 5 days a month over 3 months: 14 days; 15 is 5.00 a month.
    assert_eq!(usage_class(0, quarter, five), UsageClass::Unused);
    assert_eq!(usage_class(14, quarter, five), UsageClass::Occasional);
    assert_eq!(usage_class(15, quarter, five), UsageClass::Frequent);
    assert_eq!(
        monthly_average(15, &ReportRange::Preset(RangePreset::Last3Months)),
        shown_average(15, quarter)
    );
    let mut rates = RateTable::new();
    rates.apply(
        "r1",
        t("2026-01-01T00:00:00Z"),
        &ProductRate {
            product: "p1".into(),
            name: None,
            flex_tokens_per_day: Tokens::from_whole(6),
            effective_from: t("2026-01-01T00:00:00Z"),
        },
    );
    let days = [d("2026-02-03"), d("2026-02-10"), d("2026-03-01")];
    assert_eq!(
        flex_tokens_if_moved(&rates, "p1", days),
        Tokens::from_whole(18),
        "days used x the daily rate in force each day"
    );
}
