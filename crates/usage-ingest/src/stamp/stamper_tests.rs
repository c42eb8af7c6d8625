//! The stamper's decisions, without ClickHouse: the enrichment state is
//! built in memory from events.

use super::*;
use crate::message::{RawMessage, Topic};
use crate::stamp::tests_now as now;
use std::time::Duration;
use usage_core::charge::ChargeConfig;
use usage_core::event::DirectoryChange;
use usage_core::validate::{decode_assignment, decode_directory, Limits};

/// An online authorization of `user` for `product` at `at` (RFC 3339).
fn auth(offset: i64, user: &str, product: &str, access: &str, at: &str) -> Pending {
    let json = format!(
        r#"{{"event_id":"e{offset}","occurred_at":"{at}","user_id":"{user}","product":"{product}","access":"{access}"}}"#
    );
    pending(offset, &json)
}

/// The message read as the pipeline reads it (its strings left in place).
fn pending(offset: i64, json: &str) -> Pending {
    let raw = RawMessage {
        topic: Topic::Authorizations,
        partition: 0,
        offset,
        key: None,
        payload: json.as_bytes().to_vec(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let p = Pending::read(raw, &Limits::default(), now(), deadline)
        .map_err(|(_, error)| error)
        .expect("valid");
    assert!(p.in_place(), "{json}");
    p
}

fn assign(enrichment: &mut Enrichment, team: &str, user: &str, product: &str, access: &str) {
    let json = format!(
        r#"{{"event_id":"a-{team}-{user}-{product}","occurred_at":"2026-01-01T00:00:00Z","action":"assign","team_id":"{team}","user_id":"{user}","product":"{product}","access":"{access}","via":"direct"}}"#
    );
    let a = decode_assignment(json.as_bytes(), &Limits::default(), now()).expect("valid");
    enrichment.apply_assignment(&a);
}

fn rate(enrichment: &mut Enrichment, product: &str) {
    let json = format!(
        r#"{{"event_id":"r-{product}","occurred_at":"2026-01-01T00:00:00Z","type":"product_rate","product":"{product}","flex_tokens_per_day":7,"effective_from":"2026-01-01T00:00:00Z"}}"#
    );
    let d = decode_directory(json.as_bytes(), &Limits::default(), now()).expect("valid");
    let DirectoryChange::ProductRate(r) = &d.change else {
        panic!("a rate")
    };
    enrichment.rates.apply(&d.event_id, d.occurred_at, r);
}

/// Holds never run out.
fn holding() -> Expiry {
    Expiry {
        checked: Instant::now(),
        reference_read_at: None,
    }
}

/// Every hold has run out, and the reference data is known read after it.
fn expired() -> Expiry {
    let later = Instant::now() + Duration::from_secs(60);
    Expiry {
        checked: later,
        reference_read_at: Some(later),
    }
}

fn stamp_all(queue: Vec<Pending>, enrichment: &mut Enrichment, expiry: Expiry) -> Stamped {
    let topics = TopicNames::for_tests();
    let mut stamper = Stamper::new(queue, expiry, &topics);
    assert_eq!(stamper.run(enrichment), Step::Done);
    stamper.finish()
}

fn offsets(ps: &[Pending]) -> Vec<i64> {
    ps.iter().map(|p| p.offset).collect()
}

fn stored(s: &Stamped) -> Vec<(i64, &str)> {
    s.stored
        .iter()
        .map(|(p, stamp)| (p.offset, stamp.team_id.as_str()))
        .collect()
}

fn reasons(s: &Stamped) -> Vec<(i64, &str)> {
    s.letters.iter().map(|l| (l.offset, l.reason)).collect()
}

#[test]
fn a_resolved_authorization_is_stamped_with_its_team_and_an_offline_one_is_counted() {
    let mut enrichment = Enrichment::new(ChargeConfig::default());
    assign(&mut enrichment, "t-1", "u-1", "autocad", "seat");
    let offline = pending(
        1,
        r#"{"event_id":"e1","occurred_at":"2026-01-05T10:00:00Z","user_id":"u-1","product":"autocad","access":"seat","online":false}"#,
    );
    let out = stamp_all(
        vec![
            auth(0, "u-1", "autocad", "seat", "2026-01-05T09:00:00Z"),
            offline,
        ],
        &mut enrichment,
        holding(),
    );
    assert_eq!(stored(&out), [(0, "t-1")]);
    let stamp = &out.stored[0].1;
    assert_eq!((stamp.window_start, stamp.opened_window), (None, false));
    assert_eq!((out.offline, out.held.len(), out.letters.len()), (1, 0, 0));
}

#[test]
fn an_unresolved_authorization_is_held_and_later_events_of_its_pair_wait_behind_it() {
    let mut enrichment = Enrichment::new(ChargeConfig::default());
    assign(&mut enrichment, "t-1", "u-2", "autocad", "seat");
    let queue = vec![
        auth(0, "u-1", "autocad", "seat", "2026-01-05T09:00:00Z"),
        auth(1, "u-2", "autocad", "seat", "2026-01-05T09:00:00Z"),
        // A later event of u-1 names its team: resolvable, but it waits
        // behind offset 0, so that the pair is charged in its own order.
        pending(
            2,
            r#"{"event_id":"e2","occurred_at":"2026-01-06T09:00:00Z","user_id":"u-1","product":"autocad","access":"seat","team_id":"t-1"}"#,
        ),
    ];
    let out = stamp_all(queue, &mut enrichment, holding());
    assert_eq!(stored(&out), [(1, "t-1")]);
    assert_eq!(offsets(&out.held), [0, 2]);
    assert!(out.letters.is_empty());
}

#[test]
fn a_hold_runs_out_only_once_the_reference_data_is_known_read_after_its_deadline() {
    let queue = || vec![auth(0, "u-1", "autocad", "seat", "2026-01-05T09:00:00Z")];
    let mut enrichment = Enrichment::new(ChargeConfig::default());
    // Past its deadline, but no proof that the reference data was read since.
    let unproven = Expiry {
        checked: Instant::now() + Duration::from_secs(60),
        reference_read_at: None,
    };
    let out = stamp_all(queue(), &mut enrichment, unproven);
    assert_eq!(offsets(&out.held), [0]);
    let out = stamp_all(queue(), &mut enrichment, expired());
    assert!(out.held.is_empty());
    assert_eq!(reasons(&out), [(0, "unresolved_team")]);
    assert_eq!(out.letters[0].source_topic, "auth");
}

#[test]
fn a_flex_authorization_without_a_rate_waits_for_it_then_is_dead_lettered_opening_nothing() {
    let mut enrichment = Enrichment::new(ChargeConfig::default());
    assign(&mut enrichment, "t-1", "u-1", "maya", "flex");
    let first = || auth(0, "u-1", "maya", "flex", "2026-01-05T09:00:00Z");
    let out = stamp_all(vec![first()], &mut enrichment, holding());
    assert_eq!(offsets(&out.held), [0]);
    let out = stamp_all(vec![first()], &mut enrichment, expired());
    assert_eq!(reasons(&out), [(0, "unknown_rate")]);
    // Its window was forgotten: once the rate is known, a later event of the
    // same day opens the window and is charged.
    rate(&mut enrichment, "maya");
    let out = stamp_all(
        vec![auth(1, "u-1", "maya", "flex", "2026-01-05T10:00:00Z")],
        &mut enrichment,
        holding(),
    );
    let stamp = &out.stored[0].1;
    assert!(
        stamp.opened_window && stamp.tokens_milli == 7_000,
        "{stamp:?}"
    );
}

#[test]
fn flex_charges_open_a_window_then_ride_free_in_it() {
    let mut enrichment = Enrichment::new(ChargeConfig::default());
    assign(&mut enrichment, "t-1", "u-1", "maya", "flex");
    rate(&mut enrichment, "maya");
    let out = stamp_all(
        vec![
            auth(0, "u-1", "maya", "flex", "2026-01-05T09:00:00Z"),
            auth(1, "u-1", "maya", "flex", "2026-01-05T20:00:00Z"),
        ],
        &mut enrichment,
        holding(),
    );
    let stamps: Vec<(bool, u64)> = out
        .stored
        .iter()
        .map(|(_, s)| (s.opened_window, s.tokens_milli))
        .collect();
    assert_eq!(stamps, [(true, 7_000), (false, 0)]);
    assert_eq!(out.stored[0].1.window_start, out.stored[1].1.window_start);
}

#[test]
fn an_event_older_than_the_windows_held_asks_for_them_and_is_judged_again() {
    let mut enrichment = Enrichment::new(ChargeConfig::default());
    assign(&mut enrichment, "t-1", "u-1", "maya", "flex");
    rate(&mut enrichment, "maya");
    let from = DateTime::parse_from_rfc3339("2026-01-10T00:00:00Z")
        .expect("a timestamp")
        .with_timezone(&Utc);
    // Windows are known only from the 10th: an event of the 9th is beyond.
    enrichment.charges.known_from("u-1", "maya", from);
    let topics = TopicNames::for_tests();
    let queue = vec![
        auth(0, "u-1", "maya", "flex", "2026-01-09T12:00:00Z"),
        auth(1, "u-1", "maya", "flex", "2026-01-12T12:00:00Z"),
    ];
    let mut stamper = Stamper::new(queue, holding(), &topics);
    let Step::OlderWindows {
        user_id,
        product,
        at,
    } = stamper.run(&mut enrichment)
    else {
        panic!("older windows asked for")
    };
    assert_eq!((user_id.as_str(), product.as_str()), ("u-1", "maya"));
    assert_eq!(
        at,
        auth(0, "u-1", "maya", "flex", "2026-01-09T12:00:00Z")
            .auth()
            .occurred_at
    );
    // The loader found nothing older: the history is complete from a day before.
    enrichment
        .charges
        .extend_history("u-1", "maya", at - chrono::TimeDelta::hours(24));
    assert_eq!(stamper.run(&mut enrichment), Step::Done);
    let out = stamper.finish();
    assert_eq!(stored(&out), [(0, "t-1"), (1, "t-1")]);
    assert!(out.stored.iter().all(|(_, s)| s.opened_window));

    // Still beyond after the reload: dead-lettered, and the rest goes on.
    let mut enrichment = Enrichment::new(ChargeConfig::default());
    assign(&mut enrichment, "t-1", "u-1", "maya", "flex");
    rate(&mut enrichment, "maya");
    enrichment.charges.known_from("u-1", "maya", from);
    let queue = vec![
        auth(0, "u-1", "maya", "flex", "2026-01-09T12:00:00Z"),
        auth(1, "u-1", "maya", "flex", "2026-01-12T12:00:00Z"),
    ];
    let mut stamper = Stamper::new(queue, holding(), &topics);
    assert!(matches!(
        stamper.run(&mut enrichment),
        Step::OlderWindows { .. }
    ));
    assert_eq!(stamper.run(&mut enrichment), Step::Done);
    let out = stamper.finish();
    assert_eq!(reasons(&out), [(0, "beyond_horizon")]);
    assert_eq!(stored(&out), [(1, "t-1")]);
}

#[test]
fn an_authorization_two_teams_hold_is_stamped_and_counted_as_ambiguous() {
    let mut enrichment = Enrichment::new(ChargeConfig::default());
    assign(&mut enrichment, "t-1", "u-1", "autocad", "seat");
    assign(&mut enrichment, "t-2", "u-1", "autocad", "seat");
    let out = stamp_all(
        vec![auth(0, "u-1", "autocad", "seat", "2026-01-05T09:00:00Z")],
        &mut enrichment,
        holding(),
    );
    assert_eq!(out.stored.len(), 1);
    assert_eq!(out.ambiguous_teams, 1);
}
