//! The oracle on small hand-written event lists, one rule at a time.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{json, Value};
use usage_loadgen::{Access, Message, Oracle, Reason, Status, Topic};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
}

fn auth(id: &str, t: &str, user: &str, product: &str, access: &str) -> Value {
    json!({"event_id": id, "occurred_at": t, "user_id": user, "product": product, "access": access})
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

fn a(v: Value) -> Message {
    let key = v["user_id"].as_str().unwrap_or("k").to_owned();
    Message::event(Topic::Authorizations, key, &v)
}

#[allow(clippy::too_many_arguments)]
fn assignment(
    id: &str,
    t: &str,
    action: &str,
    team: &str,
    user: &str,
    product: &str,
    access: &str,
    via: &str,
) -> Message {
    let v = json!({"event_id": id, "occurred_at": t, "action": action, "team_id": team, "user_id": user,
                   "product": product, "access": access, "via": via});
    Message::event(Topic::Assignments, user, &v)
}

fn rate(id: &str, product: &str, tokens: f64, effective: &str) -> Message {
    let v = json!({"event_id": id, "occurred_at": "2026-01-01T00:00:00Z", "type": "product_rate",
                   "product": product, "flex_tokens_per_day": tokens, "effective_from": effective});
    Message::event(Topic::Directory, product, &v)
}

fn merge(id: &str, from: &str, into: &str) -> Message {
    let v = json!({"event_id": id, "occurred_at": "2026-05-20T00:00:00Z", "type": "team_merge",
                   "from_team_id": from, "into_team_id": into});
    Message::event(Topic::Directory, from, &v)
}

fn oracle(msgs: Vec<Message>) -> Oracle {
    Oracle::from_messages(|| msgs.clone()).expect("valid events")
}

const FROM: &str = "2026-05-01";
const TO: &str = "2026-05-31";

fn days(o: &Oracle, team: &str, user: &str, product: &str) -> u32 {
    o.days_used(team, user, product, date(FROM), date(TO))
}

fn tokens(o: &Oracle, team: &str, user: &str, product: &str) -> u64 {
    o.tokens(team, user, product, date(FROM), date(TO))
}

#[test]
fn duplicates_count_once_and_the_first_copy_wins() {
    let first = with(
        auth("e1", "2026-05-02T10:00:00Z", "u1", "maya", "seat"),
        "team_id",
        json!("A"),
    );
    let conflicting = with(
        auth("e1", "2026-05-03T10:00:00Z", "u1", "maya", "seat"),
        "team_id",
        json!("B"),
    );
    let o = oracle(vec![a(first.clone()), a(first), a(conflicting)]);
    assert_eq!(o.totals().duplicates, 2);
    assert_eq!(o.totals().events_counted, 1);
    assert_eq!(days(&o, "A", "u1", "maya"), 1);
    assert_eq!(days(&o, "B", "u1", "maya"), 0);
    assert_eq!(o.last_accessed("A", "u1", "maya"), Some(date("2026-05-02")));
}

#[test]
fn offline_usage_is_not_reported() {
    let e = |id: &str, online: Value| {
        a(with(
            with(
                auth(id, "2026-05-02T10:00:00Z", "u1", "maya", "seat"),
                "team_id",
                json!("A"),
            ),
            "online",
            online,
        ))
    };
    let o = oracle(vec![
        e("e1", json!(false)),
        e("e2", Value::Null),
        e("e3", json!(true)),
    ]);
    assert_eq!(o.totals().events_offline, 1);
    assert_eq!(o.totals().events_counted, 2);
    assert!(o.expected_dead_letters().is_empty());
}

#[test]
fn poison_counts_as_its_dead_letter_only() {
    let o = oracle(vec![
        Message::poison(
            Topic::Authorizations,
            "u1",
            b"{".to_vec(),
            Reason::MalformedJson,
        ),
        Message::poison(Topic::Directory, "t", b"[]".to_vec(), Reason::NotAnObject),
    ]);
    assert_eq!(o.totals().poison, 2);
    assert_eq!(o.totals().events_counted, 0);
    let dl = o.expected_dead_letters();
    assert_eq!(dl[&Reason::MalformedJson], 1);
    assert_eq!(dl[&Reason::NotAnObject], 1);
}

#[test]
fn team_is_resolved_as_of_occurred_at() {
    let msgs = vec![
        // A until 05-10 12:00, then B from 05-10 13:00; an unassign in B at 05-20.
        assignment(
            "s1",
            "2026-04-01T00:00:00Z",
            "assign",
            "A",
            "u1",
            "revit",
            "seat",
            "direct",
        ),
        assignment(
            "s2",
            "2026-05-10T12:00:00Z",
            "unassign",
            "A",
            "u1",
            "revit",
            "seat",
            "direct",
        ),
        assignment(
            "s3",
            "2026-05-10T13:00:00Z",
            "assign",
            "B",
            "u1",
            "revit",
            "seat",
            "group",
        ),
        assignment(
            "s4",
            "2026-05-20T00:00:00Z",
            "unassign",
            "B",
            "u1",
            "revit",
            "seat",
            "group",
        ),
        a(auth(
            "e1",
            "2026-05-10T11:59:59.999999Z",
            "u1",
            "revit",
            "seat",
        )),
        a(auth("e2", "2026-05-10T12:00:00Z", "u1", "revit", "seat")), // gap: unresolved
        a(auth("e3", "2026-05-10T13:00:00Z", "u1", "revit", "seat")), // B (inclusive)
        a(auth(
            "e4",
            "2026-05-10T15:00:00+02:00",
            "u1",
            "revit",
            "seat",
        )), // 13:00Z: B
        a(auth("e5", "2026-05-21T10:00:00Z", "u1", "revit", "seat")), // unresolved
        a(with(
            auth("e6", "2026-05-21T10:00:00Z", "u1", "revit", "seat"),
            "team_id",
            json!("C"),
        )), // as named
        a(auth("e7", "2026-05-11T10:00:00Z", "u1", "revit", "flex")), // other access: unresolved
        a(with(
            auth("e8", "2026-05-11T10:00:00Z", "u1", "revit", "seat"),
            "team_id",
            Value::Null,
        )), // null = absent: B
    ];
    let o = oracle(msgs);
    assert_eq!(days(&o, "A", "u1", "revit"), 1);
    assert_eq!(days(&o, "B", "u1", "revit"), 2);
    assert_eq!(days(&o, "C", "u1", "revit"), 1);
    assert_eq!(o.expected_dead_letters()[&Reason::UnresolvedTeam], 3);
    assert_eq!(
        o.resolve_team("u1", "revit", Access::Seat, at("2026-05-15T00:00:00Z"))
            .as_deref(),
        Some("B")
    );
    assert_eq!(
        o.resolve_team("u1", "revit", Access::Seat, at("2026-05-25T00:00:00Z")),
        None
    );
}

#[test]
fn same_instant_assignment_events_are_ordered_by_event_id() {
    let msgs = vec![
        assignment(
            "x2",
            "2026-05-01T00:00:00Z",
            "unassign",
            "A",
            "u1",
            "revit",
            "seat",
            "direct",
        ),
        assignment(
            "x1",
            "2026-05-01T00:00:00Z",
            "assign",
            "A",
            "u1",
            "revit",
            "seat",
            "direct",
        ),
        a(auth("e1", "2026-05-02T00:00:00Z", "u1", "revit", "seat")),
    ];
    // x1 (assign) then x2 (unassign): not held.
    let o = oracle(msgs);
    assert_eq!(o.expected_dead_letters()[&Reason::UnresolvedTeam], 1);
}

#[test]
fn late_assignments_still_resolve() {
    // The assignment is published after the authorization it explains.
    let msgs = vec![
        a(auth("e1", "2026-05-02T10:00:00Z", "u1", "maya", "seat")),
        assignment(
            "s1",
            "2026-05-02T09:00:00Z",
            "assign",
            "A",
            "u1",
            "maya",
            "seat",
            "direct",
        ),
    ];
    let o = oracle(msgs);
    assert_eq!(days(&o, "A", "u1", "maya"), 1);
}

fn flex(id: &str, t: &str) -> Message {
    a(with(
        with(auth(id, t, "u1", "maya", "flex"), "team_id", json!("A")),
        "product_version",
        json!(id),
    ))
}

#[test]
fn flex_windows_last_24_hours_any_version() {
    let o = oracle(vec![
        rate("r1", "maya", 8.0, "2025-01-01T00:00:00Z"),
        flex("e1", "2026-05-02T10:00:00Z"),
        flex("e2", "2026-05-03T09:59:59.999999Z"), // inside: free
        flex("e3", "2026-05-03T10:00:00Z"),        // exactly 24h: a new window
        flex("e4", "2026-05-03T10:00:00Z"),        // same instant as its start: free
        flex("e5", "2026-05-04T09:00:00Z"),        // inside the second
    ]);
    let ws = o.windows("u1", "maya");
    assert_eq!(ws.len(), 2);
    assert_eq!(ws[0].start, at("2026-05-02T10:00:00Z"));
    assert_eq!(ws[1].start, at("2026-05-03T10:00:00Z"));
    assert_eq!(tokens(&o, "A", "u1", "maya"), 16_000);
    assert_eq!(o.totals().flex_free, 3);
    assert_eq!(days(&o, "A", "u1", "maya"), 3);
    // Tokens by window start date.
    assert_eq!(
        o.tokens("A", "u1", "maya", date("2026-05-03"), date("2026-05-04")),
        8_000
    );
    assert_eq!(
        o.tokens("A", "u1", "maya", date("2026-05-04"), date("2026-05-04")),
        0
    );
}

#[test]
fn the_rate_in_force_when_the_window_opens() {
    let o = oracle(vec![
        rate("r1", "maya", 7.0, "2025-01-01T00:00:00Z"),
        rate("r2", "maya", 8.125, "2026-05-10T12:00:00Z"),
        rate("r3", "maya", 99.0, "2027-01-01T00:00:00Z"),
        flex("e1", "2026-05-09T13:00:00Z"),
        flex("e2", "2026-05-10T12:30:00Z"), // covered by e1's window (7)
        flex("e3", "2026-05-10T13:00:00Z"), // opens, at the new rate
    ]);
    let charges: Vec<u64> = o
        .windows("u1", "maya")
        .iter()
        .map(|w| w.tokens_milli)
        .collect();
    assert_eq!(charges, vec![7_000, 8_125]);
    assert_eq!(o.totals().flex_tokens_milli, 15_125);
}

#[test]
fn a_late_event_is_judged_against_the_windows_opened_so_far() {
    let o = oracle(vec![
        rate("r1", "maya", 1.0, "2025-01-01T00:00:00Z"),
        flex("e1", "2026-05-02T10:00:00Z"),
        flex("e2", "2026-05-03T11:00:00Z"), // second window
        flex("e3", "2026-05-03T10:30:00Z"), // late, in the gap: its own window (overlapping)
        flex("e4", "2026-05-02T20:00:00Z"), // late, inside the first: free
    ]);
    let starts: Vec<DateTime<Utc>> = o.windows("u1", "maya").iter().map(|w| w.start).collect();
    assert_eq!(
        starts,
        vec![
            at("2026-05-02T10:00:00Z"),
            at("2026-05-03T10:30:00Z"),
            at("2026-05-03T11:00:00Z")
        ]
    );
    assert_eq!(o.totals().late_flex_windows, 1);
    // In occurred_at order the same set would be two windows: publish order matters.
    let in_order = oracle(vec![
        rate("r1", "maya", 1.0, "2025-01-01T00:00:00Z"),
        flex("e1", "2026-05-02T10:00:00Z"),
        flex("e4", "2026-05-02T20:00:00Z"),
        flex("e3", "2026-05-03T10:30:00Z"),
        flex("e2", "2026-05-03T11:00:00Z"),
    ]);
    assert_eq!(in_order.windows("u1", "maya").len(), 2);
}

#[test]
fn windows_are_per_user_and_product_across_teams() {
    let o = oracle(vec![
        rate("r1", "maya", 2.0, "2025-01-01T00:00:00Z"),
        rate("r2", "fusion", 3.0, "2025-01-01T00:00:00Z"),
        flex("e1", "2026-05-02T10:00:00Z"),
        a(with(
            auth("e2", "2026-05-02T11:00:00Z", "u1", "maya", "flex"),
            "team_id",
            json!("B"),
        )), // free, day in B
        a(with(
            auth("e3", "2026-05-02T11:00:00Z", "u1", "fusion", "flex"),
            "team_id",
            json!("A"),
        )), // other product
        a(with(
            auth("e4", "2026-05-02T11:00:00Z", "u2", "maya", "flex"),
            "team_id",
            json!("A"),
        )), // other user
        a(with(
            auth("e5", "2026-05-02T12:00:00Z", "u1", "maya", "seat"),
            "team_id",
            json!("A"),
        )), // seat: no tokens
    ]);
    assert_eq!(tokens(&o, "A", "u1", "maya"), 2_000);
    assert_eq!(tokens(&o, "B", "u1", "maya"), 0);
    assert_eq!(days(&o, "B", "u1", "maya"), 1);
    assert_eq!(tokens(&o, "A", "u1", "fusion"), 3_000);
    assert_eq!(tokens(&o, "A", "u2", "maya"), 2_000);
    assert_eq!(o.totals().flex_windows, 3);
}

#[test]
fn unknown_rate_is_a_dead_letter_and_opens_nothing() {
    let o = oracle(vec![
        rate("r1", "maya", 2.0, "2026-05-05T00:00:00Z"),
        flex("e1", "2026-05-02T10:00:00Z"), // before any rate
        flex("e2", "2026-05-02T11:00:00Z"), // no window was opened: unknown too
        a(with(
            auth("e3", "2026-05-02T11:00:00Z", "u1", "flame", "flex"),
            "team_id",
            json!("A"),
        )),
        a(with(
            auth("e4", "2026-05-02T11:00:00Z", "u1", "flame", "seat"),
            "team_id",
            json!("A"),
        )), // seat: fine
        flex("e5", "2026-05-06T10:00:00Z"),
    ]);
    assert_eq!(o.expected_dead_letters()[&Reason::UnknownRate], 3);
    assert_eq!(o.windows("u1", "maya").len(), 1);
    assert_eq!(days(&o, "A", "u1", "maya"), 1);
    assert_eq!(days(&o, "A", "u1", "flame"), 1);
}

#[test]
fn days_used_and_last_accessed() {
    let e = |id: &str, t: &str| {
        a(with(
            auth(id, t, "u1", "maya", "seat"),
            "team_id",
            json!("A"),
        ))
    };
    let o = oracle(vec![
        e("e1", "2026-04-30T23:59:59Z"),
        e("e2", "2026-05-01T00:00:00Z"),
        e("e3", "2026-05-01T18:00:00Z"),
        e("e4", "2026-05-02T01:00:00+02:00"), // 2026-05-01T23:00Z
        e("e5", "2026-05-31T23:59:59.999Z"),
        e("e6", "2026-06-02T08:00:00Z"),
    ]);
    assert_eq!(days(&o, "A", "u1", "maya"), 2);
    assert_eq!(
        o.days_used("A", "u1", "maya", date("2026-04-30"), date("2026-04-30")),
        1
    );
    assert_eq!(o.last_accessed("A", "u1", "maya"), Some(date("2026-06-02")));
    assert_eq!(o.usage_dates("A", "u1", "maya", Access::Seat).len(), 4);
}

#[test]
fn status_classes() {
    let now = at("2026-06-01T00:00:00Z");
    let (from, to) = (date(FROM), date(TO));
    let msgs = vec![
        // u1: seat since April, used in May: active.
        assignment(
            "s1",
            "2026-04-01T00:00:00Z",
            "assign",
            "A",
            "u1",
            "maya",
            "seat",
            "direct",
        ),
        a(auth("e1", "2026-05-03T10:00:00Z", "u1", "maya", "seat")),
        // u2: seat since April, not used: inactive. Re-assigned via a group
        // in May: since unchanged.
        assignment(
            "s2",
            "2026-04-01T00:00:00Z",
            "assign",
            "A",
            "u2",
            "maya",
            "seat",
            "direct",
        ),
        assignment(
            "s3",
            "2026-05-15T00:00:00Z",
            "assign",
            "A",
            "u2",
            "maya",
            "seat",
            "group",
        ),
        // u3: seat since 05-01 (the range start): inactive; u4 since 05-02: not yet active.
        assignment(
            "s4",
            "2026-05-01T23:00:00Z",
            "assign",
            "A",
            "u3",
            "maya",
            "seat",
            "direct",
        ),
        assignment(
            "s5",
            "2026-05-02T00:00:00Z",
            "assign",
            "A",
            "u4",
            "maya",
            "seat",
            "direct",
        ),
        // u5: unassigned then assigned again mid-May: since restarts, not yet active.
        assignment(
            "s6",
            "2026-03-01T00:00:00Z",
            "assign",
            "A",
            "u5",
            "maya",
            "seat",
            "direct",
        ),
        assignment(
            "s7",
            "2026-04-10T00:00:00Z",
            "unassign",
            "A",
            "u5",
            "maya",
            "seat",
            "direct",
        ),
        assignment(
            "s8",
            "2026-05-10T00:00:00Z",
            "assign",
            "A",
            "u5",
            "maya",
            "seat",
            "default",
        ),
        // u6: Flex assigned, unused: flex_unused (never inactive).
        assignment(
            "s9",
            "2026-04-01T00:00:00Z",
            "assign",
            "A",
            "u6",
            "maya",
            "flex",
            "direct",
        ),
        // u7: used, then unassigned: unassigned.
        assignment(
            "s10",
            "2026-04-01T00:00:00Z",
            "assign",
            "A",
            "u7",
            "maya",
            "seat",
            "direct",
        ),
        a(auth("e2", "2026-05-03T10:00:00Z", "u7", "maya", "seat")),
        assignment(
            "s11",
            "2026-05-20T00:00:00Z",
            "unassign",
            "A",
            "u7",
            "maya",
            "seat",
            "direct",
        ),
        // u8: assigned after now: nothing yet.
        assignment(
            "s12",
            "2026-06-05T00:00:00Z",
            "assign",
            "A",
            "u8",
            "maya",
            "seat",
            "direct",
        ),
    ];
    let o = oracle(msgs);
    let st = |u: &str, access: Access| o.status("A", u, "maya", access, from, to, now);
    assert_eq!(st("u1", Access::Seat), Some(Status::Active));
    assert_eq!(st("u2", Access::Seat), Some(Status::Inactive));
    assert_eq!(st("u3", Access::Seat), Some(Status::Inactive));
    assert_eq!(st("u4", Access::Seat), Some(Status::NotYetActive));
    assert_eq!(st("u5", Access::Seat), Some(Status::NotYetActive));
    assert_eq!(st("u6", Access::Flex), Some(Status::FlexUnused));
    assert_eq!(st("u7", Access::Seat), Some(Status::Unassigned));
    assert_eq!(st("u8", Access::Seat), None);
    assert_eq!(st("u1", Access::Flex), None);
    let u2 = o
        .current_assignment("A", "u2", "maya", Access::Seat, now)
        .expect("assigned");
    assert_eq!(u2.since, at("2026-04-01T00:00:00Z"));
    assert_eq!(u2.via, usage_loadgen::Via::Group);
    let u5 = o
        .current_assignment("A", "u5", "maya", Access::Seat, now)
        .expect("assigned");
    assert_eq!(u5.since, at("2026-05-10T00:00:00Z"));

    let s = o.team_summary(Some("A"), usage_loadgen::DateRange::new(from, to), now);
    assert_eq!(s.seats_assigned, 5); // u1..u5
    assert_eq!(s.seats_active, 1);
    assert_eq!(s.seats_inactive, Some(2));
    assert_eq!(s.seats_not_yet_active, 2);
    let all = o.team_summary(None, usage_loadgen::DateRange::new(from, to), now);
    assert_eq!(all.seats_inactive, None);
    assert_eq!(all.seats_assigned, 5);
}

#[test]
fn merges_are_resolved_at_read_time() {
    let now = at("2026-06-01T00:00:00Z");
    let (from, to) = (date(FROM), date(TO));
    let e = |id: &str, t: &str, team: &str, access: &str| {
        a(with(
            auth(id, t, "u1", "maya", access),
            "team_id",
            json!(team),
        ))
    };
    let o = oracle(vec![
        rate("r1", "maya", 5.0, "2025-01-01T00:00:00Z"),
        e("e1", "2026-05-02T10:00:00Z", "B", "flex"),
        e("e2", "2026-05-05T10:00:00Z", "A", "flex"),
        e("e3", "2026-05-07T10:00:00Z", "C", "flex"),
        merge("m1", "B", "A"),
        merge("m2", "C", "B"), // C -> B -> A
        merge("m3", "A", "C"), // would close a cycle: ignored
        merge("m4", "B", "D"), // B already merged: ignored
    ]);
    assert_eq!(o.current_team("C"), "A");
    assert_eq!(o.current_team("B"), "A");
    assert_eq!(o.current_team("A"), "A");
    assert_eq!(o.current_team("D"), "D");
    // Stored rows keep their team ...
    assert_eq!(o.days_used("A", "u1", "maya", from, to), 1);
    assert_eq!(o.tokens("B", "u1", "maya", from, to), 5_000);
    // ... reports for A include B and C.
    assert_eq!(o.days_used_merged("A", "u1", "maya", from, to), 3);
    assert_eq!(o.tokens_merged("A", "u1", "maya", from, to), 15_000);
    assert_eq!(
        o.last_accessed_merged("A", "u1", "maya"),
        Some(date("2026-05-07"))
    );
    assert_eq!(
        o.status_merged("A", "u1", "maya", Access::Flex, from, to, now),
        Some(Status::Unassigned)
    );
    let s = o.team_summary(Some("A"), usage_loadgen::DateRange::new(from, to), now);
    assert_eq!(s.includes, vec!["A", "B", "C"]);
    assert_eq!(s.flex_tokens_milli, 15_000);
    assert_eq!(s.flex_users, 1);
    assert_eq!(s.flex_days_used, 3);
    let (_, teams) = o.summary(usage_loadgen::DateRange::new(from, to), now);
    let ids: Vec<Option<String>> = teams.iter().map(|t| t.team_id.clone()).collect();
    assert_eq!(ids, vec![Some("A".to_owned()), Some("D".to_owned())]);
}

#[test]
fn expected_rollups_serialise() {
    let now = at("2026-06-01T00:00:00Z");
    let o = oracle(vec![
        assignment(
            "s1",
            "2026-04-01T00:00:00Z",
            "assign",
            "A",
            "u1",
            "maya",
            "seat",
            "direct",
        ),
        a(auth("e1", "2026-05-03T10:00:00Z", "u1", "maya", "seat")),
    ]);
    let ranges = Oracle::standard_ranges(now, 30);
    let expected = o.expected_rollups(now, &ranges, true);
    let text = serde_json::to_string(&expected).expect("serialises");
    let back: usage_loadgen::ExpectedRollups = serde_json::from_str(&text).expect("round trip");
    assert_eq!(back, expected);
    assert_eq!(expected.rows.len(), 1);
    assert_eq!(expected.rows[0].status["span"], Some(Status::Active));
    assert_eq!(
        expected.rows[0].dates.as_deref(),
        Some(&[date("2026-05-03")][..])
    );
}
