//! The bounded state against the unbounded one, without ClickHouse: a
//! simulated store (what ClickHouse would hold, written two batches late,
//! like batches in flight) is read exactly as `reads.rs` reads it, and the
//! real stamper stamps each batch. Whatever the budget, every stamp must be
//! the unbounded state's, and after each batch the state must fit its budget.

use super::*;
use crate::message::{RawMessage, Topic, TopicNames};
use crate::stamp::stamper::{Expiry, Stamper, Step};
use chrono::TimeDelta;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use usage_core::event::{
    Access, AssignmentAction, AssignmentVia, Authorization, ProductRate, Tokens,
};

/// What ClickHouse holds: assignment events and Flex windows.
#[derive(Default)]
struct Store {
    assignments: Vec<Assignment>,
    windows: Vec<(String, String, WindowRecord)>,
}

/// One batch: assignment events, then authorizations.
#[derive(Debug, Clone)]
struct Batch {
    assignments: Vec<Assignment>,
    authorizations: Vec<Authorization>,
}

fn base() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z")
        .expect("a timestamp")
        .with_timezone(&Utc)
}

/// Every stamp, by event id: (team, window start, tokens) or the dead letter's reason.
type Stamps = BTreeMap<String, String>;

/// A batch being written: its number, assignment events and windows opened.
type InFlight = (u64, Vec<Assignment>, Vec<(String, String, WindowRecord)>);

/// The batches written this many batches after they are stamped.
const IN_FLIGHT: usize = 2;

/// Runs `batches` through a state bounded by `budget`; returns every stamp.
fn run(batches: &[Batch], budget: Option<usize>) -> Stamps {
    let mut state = Enrichment::bounded(usage_core::charge::ChargeConfig::default(), budget);
    state.rates.apply(
        "r",
        base(),
        &ProductRate {
            product: "p0".into(),
            name: None,
            flex_tokens_per_day: Tokens::from_millis(7_000),
            effective_from: base() - TimeDelta::days(30),
        },
    );
    let mut store = Store::default();
    let mut in_flight: Vec<InFlight> = Vec::new();
    let mut stamps = Stamps::new();
    for (n, batch) in batches.iter().enumerate() {
        let number = state.begin_batch();
        for a in &batch.assignments {
            state.apply_assignment(a);
        }
        // The loader's reads.
        let users = batch.authorizations.iter().map(|a| a.user_id.as_str());
        let touched = batch.assignments.iter().map(|a| a.user_id.as_str());
        // As `read_histories` does: the users' rows mixed, in stored
        // order, each applied as it comes.
        let missing = state.users_to_read(users.chain(touched));
        let mut started: BTreeSet<&str> = BTreeSet::new();
        for a in store.assignments.iter() {
            if let Some(user) = missing.iter().find(|u| **u == a.user_id) {
                if started.insert(user) {
                    state.history_started(user);
                }
                state.history_fact(a);
            }
        }
        for user in &missing {
            if !started.contains(user) {
                state.history_started(user);
            }
            state.history_done(user);
        }
        let mut first_use: BTreeMap<(&str, &str), DateTime<Utc>> = BTreeMap::new();
        for a in batch
            .authorizations
            .iter()
            .filter(|a| a.access == Access::Flex)
        {
            let e = first_use
                .entry((&a.user_id, &a.product))
                .or_insert(a.occurred_at);
            *e = (*e).min(a.occurred_at);
        }
        let keys: Vec<(&str, &str, DateTime<Utc>)> =
            first_use.into_iter().map(|((u, p), t)| (u, p, t)).collect();
        read_windows(&mut state, &store, &keys);
        // The stamper, asking for older windows as it goes.
        let queue = batch
            .authorizations
            .iter()
            .enumerate()
            .map(|(i, auth)| {
                let raw = RawMessage {
                    topic: Topic::Authorizations,
                    partition: 0,
                    offset: (n * 1000 + i) as i64,
                    key: None,
                    payload: auth.event_id.clone().into_bytes(),
                };
                Pending::owned(raw, auth.clone(), Instant::now())
            })
            .collect();
        let later = Instant::now() + Duration::from_secs(60);
        let expiry = Expiry {
            checked: later,
            reference_read_at: Some(later),
        };
        let topics = TopicNames::for_tests();
        let mut stamper = Stamper::new(queue, expiry, &topics);
        while let Step::OlderWindows {
            user_id,
            product,
            at,
        } = stamper.run(&mut state)
        {
            state.windows_outdated(&user_id, &product);
            read_windows(&mut state, &store, &[(&user_id, &product, at)]);
        }
        let stamped = stamper.finish();
        state.windows_opened(&stamped.stored);
        let mut opened = Vec::new();
        for (p, stamp) in &stamped.stored {
            let a = p.auth();
            stamps.insert(
                a.event_id.to_owned(),
                format!(
                    "{} {:?} {}",
                    stamp.team_id, stamp.window_start, stamp.tokens_milli
                ),
            );
            if let (true, Some(start)) = (stamp.opened_window, stamp.window_start) {
                let w = WindowRecord {
                    start,
                    opened_by: a.event_id.to_owned(),
                    tokens: Some(Tokens::from_millis(stamp.tokens_milli)),
                    late: false,
                };
                opened.push((a.user_id.to_owned(), a.product.to_owned(), w));
            }
        }
        for letter in &stamped.letters {
            let id = String::from_utf8_lossy(&letter.payload).into_owned();
            stamps.insert(id, letter.reason.to_owned());
        }
        let report = state.end_batch();
        if let Some(budget) = budget {
            assert!(
                report.bytes <= budget,
                "{} bytes over a budget of {budget}",
                report.bytes
            );
        }
        // Batches are stored in order, `IN_FLIGHT` batches late.
        in_flight.push((number, batch.assignments.clone(), opened));
        if in_flight.len() > IN_FLIGHT {
            let (number, assignments, windows) = in_flight.remove(0);
            store.assignments.extend(assignments);
            store.windows.extend(windows);
            state.stored(number);
        }
    }
    stamps
}

/// Reads the windows of `keys` from `store` the way `load_windows` does.
fn read_windows(state: &mut Enrichment, store: &Store, keys: &[(&str, &str, DateTime<Utc>)]) {
    let wanted: Vec<(String, String, DateTime<Utc>)> = state
        .windows_to_read(keys)
        .into_iter()
        .map(|(u, p, t)| ((*u).to_owned(), (*p).to_owned(), *t))
        .collect();
    for (user, product, first_use) in wanted {
        let from = first_use - WINDOW;
        let stored: Vec<WindowRecord> = store
            .windows
            .iter()
            .filter(|(u, p, w)| {
                *u == user && *p == product && w.start >= from - TimeDelta::seconds(1)
            })
            .map(|(_, _, w)| w.clone())
            .collect();
        state.windows_read(&user, &product, from, stored);
    }
}

fn assignment(
    id: usize,
    user: usize,
    product: usize,
    team: usize,
    hour: i64,
    assign: bool,
    flex: bool,
) -> Assignment {
    Assignment {
        event_id: format!("a{id}"),
        occurred_at: base() + TimeDelta::hours(hour),
        action: if assign {
            AssignmentAction::Assign
        } else {
            AssignmentAction::Unassign
        },
        team_id: format!("t{team}"),
        user_id: format!("u{user}"),
        product: format!("p{product}"),
        access: if flex { Access::Flex } else { Access::Seat },
        via: AssignmentVia::Direct,
        group_id: None,
    }
}

fn authorization(id: usize, user: usize, product: usize, minute: i64, flex: bool) -> Authorization {
    Authorization {
        event_id: format!("e{id}"),
        occurred_at: base() + TimeDelta::minutes(minute),
        user_id: format!("u{user}"),
        product: format!("p{product}"),
        product_version: None,
        access: if flex { Access::Flex } else { Access::Seat },
        team_id: None,
        machine_id: None,
        online: true,
    }
}

/// Batches of assignments and authorizations of 12 users, 2 products and
/// 3 teams over about two weeks, mostly in time order per user, some out of it.
fn batches() -> impl Strategy<Value = Vec<Batch>> {
    let a = (
        0..12usize,
        0..2usize,
        0..3usize,
        -48..300i64,
        prop::bool::weighted(0.8),
        any::<bool>(),
    );
    let e = (0..12usize, 0..2usize, -60..20_000i64, any::<bool>());
    prop::collection::vec(
        (
            prop::collection::vec(a, 0..4),
            prop::collection::vec(e, 0..12),
        ),
        1..25,
    )
    .prop_map(|raw| {
        let mut id = 0;
        raw.into_iter()
            .map(|(assignments, authorizations)| Batch {
                assignments: assignments
                    .into_iter()
                    .map(|(u, p, t, h, assign, flex)| {
                        id += 1;
                        assignment(id, u, p, t, h, assign, flex)
                    })
                    .collect(),
                authorizations: authorizations
                    .into_iter()
                    .map(|(u, p, m, flex)| {
                        id += 1;
                        authorization(id, u, p, m, flex)
                    })
                    .collect(),
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Constant eviction (a budget of 0), a budget that holds a few users,
    /// and no bound give the same stamps; the budget holds after every batch.
    #[test]
    fn every_budget_stamps_like_an_unbounded_state(batches in batches()) {
        let unbounded = run(&batches, None);
        prop_assert_eq!(&run(&batches, Some(0)), &unbounded);
        prop_assert_eq!(&run(&batches, Some(6_000)), &unbounded);
    }
}

#[test]
fn an_evicted_user_is_read_again_whole_with_what_is_not_stored_yet() {
    let mut state = Enrichment::bounded(usage_core::charge::ChargeConfig::default(), Some(0));
    let stored = assignment(1, 1, 0, 0, 0, true, false);
    let unwritten = assignment(2, 1, 0, 1, 10, true, false);
    state.begin_batch();
    state.apply_assignment(&unwritten);
    assert_eq!(state.users_to_read(["u1", "u1"].into_iter()), ["u1"]);
    state.history_read("u1", std::slice::from_ref(&stored));
    assert_eq!(state.assignments().len(), 2);
    let report = state.end_batch();
    assert_eq!((report.entries, report.bytes, report.evictions), (0, 0, 1));
    assert_eq!(report.misses(Part::Assignments), 1);
    assert!(state.assignments().is_empty(), "evicted");
    // Read again while the batch is still being written: both facts.
    state.begin_batch();
    assert_eq!(state.users_to_read(["u1"].into_iter()), ["u1"]);
    state.history_read("u1", std::slice::from_ref(&stored));
    let auth = authorization(3, 1, 0, 11 * 60, false);
    let team = state
        .assignments()
        .resolve(&auth)
        .team()
        .map(|t| t.team_id.to_owned());
    assert_eq!(
        team.as_deref(),
        Some("t1"),
        "the unwritten assignment is the newer"
    );
    state.end_batch();
    // Once stored, the facts are ClickHouse's alone.
    state.stored(1);
    assert_eq!(state.unwritten_batches(), 0);
}

#[test]
fn a_held_user_is_a_hit_and_follows_apply_only_to_held_histories() {
    let mut state = Enrichment::bounded(usage_core::charge::ChargeConfig::default(), None);
    state.begin_batch();
    assert_eq!(state.users_to_read(["u1"].into_iter()), ["u1"]);
    state.history_read("u1", &[]);
    assert!(state.followed(&assignment(1, 1, 0, 0, 0, true, false)));
    assert!(
        !state.followed(&assignment(2, 2, 0, 0, 0, true, false)),
        "u2 is not held"
    );
    let report = state.end_batch();
    assert_eq!(report.entries, 1);
    state.begin_batch();
    assert!(state.users_to_read(["u1"].into_iter()).is_empty());
    let report = state.end_batch();
    assert_eq!(
        (
            report.hits(Part::Assignments),
            report.misses(Part::Assignments)
        ),
        (1, 0)
    );
}
