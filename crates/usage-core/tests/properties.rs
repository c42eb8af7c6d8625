//! Property tests of the report's rules: exactness under at-least-once
//! delivery (duplicates, re-delivered suffixes, interleavings), order
//! independence of the assignment and merge state, monotone status.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use proptest::prelude::*;
use usage_core::charge::{charges, Charge, ChargeConfig, ChargeState, RateTable};
use usage_core::event::{
    Access, Assignment, AssignmentAction, AssignmentVia, Authorization, ProductRate, Tokens,
};
use usage_core::frequency::{shown_average, usage_class, FrequentDaysPerMonth, UsageClass};
use usage_core::merge::{MergeError, TeamMerges};
use usage_core::range::DateRange;
use usage_core::status::{status, Held, Status};
use usage_core::team::{AssignmentState, Resolution};
use usage_core::usage::UsageBook;

// ---------------------------------------------------------------- generators

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0)
        .single()
        .expect("valid")
}

/// Half-hour slots: 48 slots are exactly one window, so generated events hit
/// window boundaries and share timestamps.
fn slot(n: u16) -> DateTime<Utc> {
    base() + TimeDelta::minutes(30 * i64::from(n))
}

fn rates() -> RateTable {
    let mut r = RateTable::new();
    let rate = |product: &str, millis: u64, from: DateTime<Utc>| ProductRate {
        product: product.into(),
        name: None,
        flex_tokens_per_day: Tokens::from_millis(millis),
        effective_from: from,
    };
    r.apply("r1", base(), &rate("p0", 5000, base() - TimeDelta::days(1)));
    r.apply("r2", base(), &rate("p0", 7000, base() + TimeDelta::days(3)));
    r.apply("r3", base(), &rate("p1", 2500, base() - TimeDelta::days(1)));
    // p2 has no rate: UnknownRate.
    r
}

#[derive(Debug, Clone)]
struct Use {
    user: u8,
    product: u8,
    flex: bool,
    online: bool,
    slot: u16,
}

fn use_strategy() -> impl Strategy<Value = Use> {
    (
        0u8..4,
        0u8..3,
        prop::bool::weighted(0.8),
        prop::bool::weighted(0.9),
        0u16..480,
    )
        .prop_map(|(user, product, flex, online, slot)| Use {
            user,
            product,
            flex,
            online,
            slot,
        })
}

fn authorizations(uses: &[Use]) -> Vec<Authorization> {
    uses.iter()
        .enumerate()
        .map(|(i, u)| Authorization {
            event_id: format!("e{i:03}"),
            occurred_at: slot(u.slot),
            user_id: format!("u{}", u.user),
            product: format!("p{}", u.product),
            product_version: Some(format!("v{}", i % 3)),
            access: if u.flex { Access::Flex } else { Access::Seat },
            team_id: Some(format!("t{}", u.user % 2)),
            machine_id: None,
            online: u.online,
        })
        .collect()
}

/// How a stream is delivered: which user's queue goes next, duplicated
/// events, and crashes (re-delivery from an earlier offset).
#[derive(Debug, Clone)]
struct Delivery {
    picks: Vec<u8>,
    dups: Vec<(u16, u16)>,
    crashes: Vec<(u16, u16)>,
}

fn delivery_strategy() -> impl Strategy<Value = Delivery> {
    (
        prop::collection::vec(any::<u8>(), 0..200),
        prop::collection::vec((any::<u16>(), any::<u16>()), 0..10),
        prop::collection::vec((any::<u16>(), any::<u16>()), 0..3),
    )
        .prop_map(|(picks, dups, crashes)| Delivery {
            picks,
            dups,
            crashes,
        })
}

/// Each user's events in `(occurred_at, event_id)` order (the Kafka
/// partition order when publishers publish in time order), interleaved
/// across users, with duplicates and re-delivered suffixes.
fn deliver<'a>(events: &'a [Authorization], d: &Delivery) -> Vec<&'a Authorization> {
    deliver_with_ties(events, d, None)
}

/// [`deliver`], with simultaneous events of a user in an arbitrary order
/// (shuffled by `ties`) instead of by `event_id`.
fn deliver_with_ties<'a>(
    events: &'a [Authorization],
    d: &Delivery,
    ties: Option<u64>,
) -> Vec<&'a Authorization> {
    let tie = |e: &Authorization| match ties {
        None => 0,
        Some(seed) => e.event_id.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        }),
    };
    let mut queues: BTreeMap<&str, Vec<&Authorization>> = BTreeMap::new();
    for e in events {
        queues.entry(e.user_id.as_str()).or_default().push(e);
    }
    for q in queues.values_mut() {
        q.sort_by(|a, b| {
            (b.occurred_at, tie(b), &b.event_id).cmp(&(a.occurred_at, tie(a), &a.event_id))
        });
    }
    let mut out = Vec::with_capacity(events.len());
    let mut picks = d.picks.iter().copied().chain(std::iter::repeat(0));
    loop {
        let live: Vec<&str> = queues
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(u, _)| *u)
            .collect();
        if live.is_empty() {
            break;
        }
        let pick = usize::from(picks.next().unwrap_or(0)) % live.len();
        if let Some(e) = queues.get_mut(live[pick]).and_then(Vec::pop) {
            out.push(e);
        }
    }
    for &(from, to) in &d.dups {
        if out.is_empty() {
            break;
        }
        let i = usize::from(from) % out.len();
        let j = i + 1 + usize::from(to) % (out.len() - i);
        out.insert(j, out[i]);
    }
    for &(a, b) in &d.crashes {
        let n = usize::from(a) % (out.len() + 1);
        let k = usize::from(b) % (n + 1);
        let replay: Vec<&Authorization> = out[k..].to_vec();
        out.truncate(n);
        out.extend(replay);
    }
    out
}

/// Runs the incremental form over a delivery: the first answer per event,
/// and every re-answer checked by `same`.
fn run_incremental<'a>(
    delivered: &[&'a Authorization],
    config: ChargeConfig,
    rates: &RateTable,
) -> (BTreeMap<&'a str, Charge>, Vec<(Charge, Charge)>) {
    let mut state = ChargeState::new(config);
    let mut first: BTreeMap<&'a str, Charge> = BTreeMap::new();
    let mut again = Vec::new();
    for e in delivered {
        let c = state.charge(*e, rates);
        match first.get(e.event_id.as_str()) {
            Some(prev) => again.push((*prev, c)),
            None => {
                first.insert(e.event_id.as_str(), c);
            }
        }
    }
    (first, again)
}

fn record<'a>(events: impl IntoIterator<Item = &'a Authorization>) -> UsageBook {
    let mut book = UsageBook::new();
    for e in events {
        book.record(e.team_id.as_deref().unwrap_or(""), e);
    }
    book
}

fn covers(c: &Charge, at: DateTime<Utc>) -> bool {
    match c.window_start() {
        Some(ws) => ws <= at && at < ws + TimeDelta::hours(24),
        None => true,
    }
}

/// The windows opened per (user, product): (start, tokens).
type WindowsOf<'e> = BTreeMap<(&'e str, &'e str), Vec<(Option<DateTime<Utc>>, Tokens)>>;

fn opened(c: &Charge) -> bool {
    matches!(c, Charge::Charged { .. } | Charge::UnknownRate { .. })
}

// ---------------------------------------------------------------- charges

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The set form is a function of the set: any order, any duplicates.
    #[test]
    fn set_form_ignores_order_and_duplicates(
        uses in prop::collection::vec(use_strategy(), 0..60),
        d in delivery_strategy(),
        seed in any::<u64>(),
    ) {
        let rates = rates();
        let events = authorizations(&uses);
        let canonical = charges(&events, &rates);
        let mut shuffled = deliver(&events, &d);
        // Any permutation at all (not only per-user order).
        let len = shuffled.len().max(1) as u64;
        for i in 0..shuffled.len() {
            let j = (seed.wrapping_mul(6364136223846793005).wrapping_add(i as u64) % len) as usize;
            shuffled.swap(i, j);
        }
        prop_assert_eq!(charges(shuffled, &rates), canonical);
    }

    /// The theorem of `charge`: on any delivery preserving each user's order,
    /// with duplicates and re-delivered suffixes, the incremental form gives
    /// every event the set form's charge, and every re-delivery the same one.
    #[test]
    fn incremental_equals_set_form(
        uses in prop::collection::vec(use_strategy(), 0..60),
        d in delivery_strategy(),
    ) {
        let rates = rates();
        let events = authorizations(&uses);
        let set = charges(&events, &rates);
        let delivered = deliver(&events, &d);
        let (first, again) = run_incremental(&delivered, ChargeConfig::UNBOUNDED, &rates);
        prop_assert_eq!(&first, &set);
        for (a, b) in again {
            prop_assert_eq!(a, b);
        }
        // With the production retention: first answers are still exact;
        // a re-delivery is exact or explicitly refused, never different.
        let (first, again) = run_incremental(&delivered, ChargeConfig::default(), &rates);
        prop_assert_eq!(&first, &set);
        for (a, b) in again {
            prop_assert!(b == a || b == Charge::BeyondHorizon, "{:?} then {:?}", a, b);
        }
    }

    /// A crash: the state is lost after `n` deliveries and rebuilt from the
    /// stored windows (restore + known_from), then the stream is re-delivered
    /// from an earlier offset `k`. New events are charged exactly as the set
    /// form; re-delivered ones the same as before, or explicitly refused.
    #[test]
    fn a_rebuilt_state_continues_exactly(
        uses in prop::collection::vec(use_strategy(), 0..60),
        d in delivery_strategy(),
        cut in any::<u16>(),
        back in any::<u16>(),
        unbounded in any::<bool>(),
    ) {
        let rates = rates();
        let config = if unbounded { ChargeConfig::UNBOUNDED } else { ChargeConfig::default() };
        let events = authorizations(&uses);
        let set = charges(&events, &rates);
        let delivered = deliver(&events, &d);
        let n = usize::from(cut) % (delivered.len() + 1);
        let k = usize::from(back) % (n + 1);
        let mut before = ChargeState::new(config);
        let mut answered: BTreeMap<&str, Charge> = BTreeMap::new();
        for e in &delivered[..n] {
            let c = before.charge(*e, &rates);
            answered.entry(e.event_id.as_str()).or_insert(c);
        }
        let mut after = ChargeState::new(config);
        for e in &events {
            let kept = before.windows(&e.user_id, &e.product);
            for w in &kept {
                after.restore(&e.user_id, &e.product, w);
            }
            if let Some(first) = kept.first() {
                after.known_from(&e.user_id, &e.product, first.start);
            }
        }
        for e in &delivered[k..] {
            let c = after.charge(*e, &rates);
            match answered.get(e.event_id.as_str()) {
                Some(prev) => prop_assert!(c == *prev || c == Charge::BeyondHorizon, "{:?} then {:?}", prev, c),
                None => {
                    prop_assert_eq!(c, set[e.event_id.as_str()]);
                    answered.insert(e.event_id.as_str(), c);
                }
            }
        }
    }

    /// Simultaneous events of a user in any order: every event keeps the set
    /// form's window start, and each (user, product) is charged exactly the
    /// set form's windows (start, tokens) — never twice for one instant.
    #[test]
    fn simultaneous_events_in_any_order_share_one_window(
        uses in prop::collection::vec(use_strategy(), 0..60),
        d in delivery_strategy(),
        ties in any::<u64>(),
    ) {
        let rates = rates();
        // Few slots: many simultaneous events.
        let uses: Vec<Use> = uses.into_iter().map(|u| Use { slot: u.slot % 60, ..u }).collect();
        let events = authorizations(&uses);
        let set = charges(&events, &rates);
        let delivered = deliver_with_ties(&events, &d, Some(ties));
        let (first, again) = run_incremental(&delivered, ChargeConfig::UNBOUNDED, &rates);
        for (a, b) in again {
            prop_assert_eq!(a, b);
        }
        let by_id: HashMap<&str, &Authorization> =
            events.iter().map(|e| (e.event_id.as_str(), e)).collect();
        let mut incremental: WindowsOf<'_> = BTreeMap::new();
        let mut expected: WindowsOf<'_> = BTreeMap::new();
        for (id, c) in &first {
            prop_assert_eq!(c.window_start(), set[id].window_start());
            let e = by_id[id];
            let key = (e.user_id.as_str(), e.product.as_str());
            if opened(c) {
                incremental.entry(key).or_default().push((c.window_start(), c.tokens()));
            }
            if opened(&set[id]) {
                expected.entry(key).or_default().push((set[id].window_start(), set[id].tokens()));
            }
        }
        for w in incremental.values_mut().chain(expected.values_mut()) {
            w.sort();
        }
        prop_assert_eq!(incremental, expected);
    }

    /// Out of order (any permutation): every Flex use lies in the 24 hours
    /// after its window start, opened by a charged event of the same (user,
    /// product); re-deliveries are answered the same; never fewer windows
    /// than the set form; `late` only when out of order.
    #[test]
    fn out_of_order_keeps_the_window_invariant(
        uses in prop::collection::vec(use_strategy(), 0..60),
        order in any::<u64>(),
        dups in prop::collection::vec(any::<u16>(), 0..10),
    ) {
        let rates = rates();
        let events = authorizations(&uses);
        let mut delivered: Vec<&Authorization> = events.iter().collect();
        let mut s = order;
        for i in (1..delivered.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            delivered.swap(i, (s >> 33) as usize % (i + 1));
        }
        for k in dups {
            if let Some(e) = delivered.get(usize::from(k) % delivered.len().max(1)).copied() {
                delivered.push(e);
            }
        }
        let (first, again) = run_incremental(&delivered, ChargeConfig::UNBOUNDED, &rates);
        for (a, b) in again {
            prop_assert_eq!(a, b);
        }
        let by_id: HashMap<&str, &Authorization> =
            events.iter().map(|e| (e.event_id.as_str(), e)).collect();
        let set = charges(&events, &rates);
        let mut windows: BTreeMap<(&str, &str), (usize, usize)> = BTreeMap::new();
        let mut openers: BTreeMap<(&str, &str, DateTime<Utc>), ()> = BTreeMap::new();
        for (id, c) in &first {
            let e = by_id[id];
            prop_assert!(covers(c, e.occurred_at), "{:?} does not cover {}", c, e.occurred_at);
            let key = (e.user_id.as_str(), e.product.as_str());
            if opened(c) {
                windows.entry(key).or_default().0 += 1;
                openers.insert((key.0, key.1, e.occurred_at), ());
            }
            if opened(&set[id]) {
                windows.entry(key).or_default().1 += 1;
            }
        }
        for (id, c) in &first {
            let e = by_id[id];
            if let Charge::Free { window_start } = c {
                prop_assert!(openers.contains_key(&(e.user_id.as_str(), e.product.as_str(), *window_start)));
            }
        }
        for (key, (incremental, set)) in windows {
            prop_assert!(incremental >= set, "{:?}: {} windows < set form's {}", key, incremental, set);
        }
    }

    /// Days used and last accessed: invariant under duplicates, re-delivered
    /// suffixes and interleavings.
    #[test]
    fn days_used_ignore_delivery(
        uses in prop::collection::vec(use_strategy(), 0..60),
        d in delivery_strategy(),
        from in 0i64..8,
        len in 0i64..8,
    ) {
        let events = authorizations(&uses);
        let canonical = record(events.iter());
        let delivered = deliver(&events, &d);
        let replayed = record(delivered);
        prop_assert_eq!(&replayed, &canonical);
        let day = base().date_naive();
        let range = DateRange::new(day + TimeDelta::days(from), day + TimeDelta::days(from + len))
            .expect("from <= to");
        let now = base() + TimeDelta::days(6);
        let merges = TeamMerges::new();
        prop_assert_eq!(replayed.rows(&range, now, &merges), canonical.rows(&range, now, &merges));
    }
}

// ---------------------------------------------------------------- teams

#[derive(Debug, Clone)]
struct Fact {
    team: u8,
    user: u8,
    product: u8,
    flex: bool,
    assign: bool,
    via: u8,
    slot: u16,
}

fn fact_strategy() -> impl Strategy<Value = Fact> {
    (
        0u8..3,
        0u8..2,
        0u8..2,
        prop::bool::weighted(0.3),
        prop::bool::weighted(0.6),
        0u8..3,
        0u16..40,
    )
        .prop_map(|(team, user, product, flex, assign, via, slot)| Fact {
            team,
            user,
            product,
            flex,
            assign,
            via,
            slot,
        })
}

fn assignments(facts: &[Fact]) -> Vec<Assignment> {
    facts
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let via = [
                AssignmentVia::Direct,
                AssignmentVia::Group,
                AssignmentVia::Default,
            ][usize::from(f.via)];
            Assignment {
                event_id: format!("a{i:03}"),
                occurred_at: slot(f.slot),
                action: if f.assign {
                    AssignmentAction::Assign
                } else {
                    AssignmentAction::Unassign
                },
                team_id: format!("t{}", f.team),
                user_id: format!("u{}", f.user),
                product: format!("p{}", f.product),
                access: if f.flex { Access::Flex } else { Access::Seat },
                via,
                group_id: (via == AssignmentVia::Group).then(|| format!("g{}", f.team)),
            }
        })
        .collect()
}

/// An owned summary of a resolution, to compare states.
fn summary(r: &Resolution<'_>) -> String {
    match r {
        Resolution::Resolved(t) => {
            format!("{} {:?} {:?} {:?}", t.team_id, t.via, t.group_id, t.since)
        }
        Resolution::Unresolved => "-".into(),
        Resolution::Ambiguous { chosen, teams } => format!(
            "{} {:?} {:?} {:?} of {}",
            chosen.team_id,
            chosen.via,
            chosen.group_id,
            chosen.since,
            teams.join(",")
        ),
    }
}

/// The rule written out naively over the list of distinct assignments.
fn oracle(
    all: &[Assignment],
    user: &str,
    product: &str,
    access: Access,
    at: DateTime<Utc>,
) -> String {
    let mut held: Vec<(&str, DateTime<Utc>, AssignmentVia, Option<&str>)> = Vec::new();
    let mut teams: Vec<&str> = all.iter().map(|a| a.team_id.as_str()).collect();
    teams.sort_unstable();
    teams.dedup();
    for team in teams {
        let mut facts: Vec<&Assignment> = all
            .iter()
            .filter(|a| {
                a.team_id == team
                    && a.user_id == user
                    && a.product == product
                    && a.access == access
                    && a.occurred_at <= at
            })
            .collect();
        facts.sort_by(|a, b| (a.occurred_at, &a.event_id).cmp(&(b.occurred_at, &b.event_id)));
        let Some(last) = facts.last() else { continue };
        if last.action != AssignmentAction::Assign {
            continue;
        }
        let run = facts
            .iter()
            .rev()
            .take_while(|a| a.action == AssignmentAction::Assign)
            .last()
            .map_or(last.occurred_at, |a| a.occurred_at);
        held.push((team, run, last.via, last.group_id.as_deref()));
    }
    // Most recent `since`, then smallest team id.
    held.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    match held.as_slice() {
        [] => "-".into(),
        [(team, since, via, group)] => {
            format!("{team} {:?} {group:?} {:?}", Some(via), Some(since))
        }
        [(team, since, via, group), ..] => {
            let mut all: Vec<&str> = held.iter().map(|h| h.0).collect();
            all.sort_unstable();
            format!(
                "{team} {:?} {group:?} {:?} of {}",
                Some(via),
                Some(since),
                all.join(",")
            )
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Team resolution depends on the set of assignments only: any order,
    /// any duplicates; and it matches the rule written out naively.
    #[test]
    fn team_resolution_ignores_assignment_order(
        facts in prop::collection::vec(fact_strategy(), 0..30),
        perm in any::<u64>(),
        dups in prop::collection::vec(any::<u16>(), 0..10),
    ) {
        let all = assignments(&facts);
        let mut forward = AssignmentState::new();
        for a in &all {
            forward.apply(a);
        }
        let mut order: Vec<&Assignment> = all.iter().collect();
        let mut s = perm;
        for i in (1..order.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            order.swap(i, (s >> 33) as usize % (i + 1));
        }
        for k in dups {
            if let Some(a) = order.get(usize::from(k) % order.len().max(1)).copied() {
                order.push(a);
            }
        }
        let mut shuffled = AssignmentState::new();
        for a in order {
            shuffled.apply(a);
        }
        prop_assert_eq!(forward.len(), shuffled.len());
        for user in ["u0", "u1"] {
            for product in ["p0", "p1"] {
                for access in Access::ALL {
                    for n in 0..42u16 {
                        for at in [slot(n), slot(n) + TimeDelta::minutes(15)] {
                            let probe = Authorization {
                                event_id: "probe".into(),
                                occurred_at: at,
                                user_id: user.into(),
                                product: product.into(),
                                product_version: None,
                                access,
                                team_id: None,
                                machine_id: None,
                                online: true,
                            };
                            let a = summary(&forward.resolve(&probe));
                            prop_assert_eq!(&a, &summary(&shuffled.resolve(&probe)));
                            prop_assert_eq!(&a, &oracle(&all, user, product, access, at));
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- status

proptest! {
    /// Status is monotone: a use inside the range never makes a user
    /// inactive; a Flex user is never inactive.
    #[test]
    fn status_is_monotone(
        assigned in any::<bool>(),
        flex in any::<bool>(),
        since in 0i64..60,
        from in 0i64..60,
        len in 0i64..40,
        used in any::<bool>(),
        uses in prop::collection::vec(0i64..120, 0..10),
        extra in 0i64..40,
    ) {
        let day = base().date_naive();
        let range = DateRange::new(day + TimeDelta::days(from), day + TimeDelta::days(from + len))
            .expect("from <= to");
        let held = assigned.then(|| Held {
            access: if flex { Access::Flex } else { Access::Seat },
            since: base() + TimeDelta::days(since),
        });
        prop_assert_ne!(status(held, true, &range), Some(Status::Inactive));
        if flex {
            prop_assert_ne!(status(held, used, &range), Some(Status::Inactive));
        }
        // Through the rollup: add a use inside the range.
        let auth = |i: usize, day_offset: i64| Authorization {
            event_id: format!("e{i}"),
            occurred_at: base() + TimeDelta::days(day_offset) + TimeDelta::hours(5),
            user_id: "u".into(),
            product: "p".into(),
            product_version: None,
            access: if flex { Access::Flex } else { Access::Seat },
            team_id: None,
            machine_id: None,
            online: true,
        };
        let now = base() + TimeDelta::days(200);
        let status_of = |book: &UsageBook| {
            let rows = book.rows(&range, now, &TeamMerges::new());
            let used = rows.iter().any(|r| r.days_used > 0);
            status(held, used, &range)
        };
        let mut book = UsageBook::new();
        for (i, d) in uses.iter().enumerate() {
            book.record("t", &auth(i, *d));
        }
        let before = status_of(&book);
        book.record("t", &auth(999, from + extra.min(len)));
        let after = status_of(&book);
        prop_assert_ne!(after, Some(Status::Inactive));
        prop_assert!(
            matches!(after, Some(Status::Active | Status::Unassigned)),
            "{:?} -> {:?}", before, after
        );
    }
}

// ---------------------------------------------------------------- merges

proptest! {
    /// Merges are transitive and, for a set without cycles or double merges,
    /// independent of the order they are applied in.
    #[test]
    fn merges_are_transitive_and_order_independent(
        parents in prop::collection::vec(prop::option::weighted(0.6, any::<u8>()), 1..10),
        perm in any::<u64>(),
    ) {
        let n = parents.len();
        // Team i merges into a team with a greater index: acyclic by construction.
        let edges: Vec<(String, String)> = parents
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let p = (*p)?;
                (i + 1 < n).then(|| (format!("t{i}"), format!("t{}", i + 1 + usize::from(p) % (n - i - 1))))
            })
            .collect();
        let mut forward = TeamMerges::new();
        for (a, b) in &edges {
            prop_assert!(forward.merge(a, b).is_ok());
        }
        let mut order: Vec<&(String, String)> = edges.iter().chain(edges.iter().take(2)).collect();
        let mut s = perm;
        for i in (1..order.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            order.swap(i, (s >> 33) as usize % (i + 1));
        }
        let mut shuffled = TeamMerges::new();
        for (a, b) in order {
            prop_assert!(shuffled.merge(a, b).is_ok());
        }
        prop_assert_eq!(forward.mapping(), shuffled.mapping());
        let parent: HashMap<&str, &str> = edges.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        for i in 0..n {
            let team = format!("t{i}");
            let mut naive = team.as_str();
            while let Some(next) = parent.get(naive) {
                naive = next;
            }
            prop_assert_eq!(forward.current(&team), naive);
            prop_assert_eq!(forward.current(forward.current(&team)), naive, "idempotent");
            prop_assert!(forward.history_of(naive).contains(&team.as_str()));
        }
        for (a, b) in &edges {
            prop_assert_eq!(forward.current(a), forward.current(b), "transitive");
        }
    }

    /// Arbitrary merges: a merge is refused only when it would close a cycle
    /// (the error names a real cycle) or its team was already merged; the
    /// accepted ones stay acyclic.
    #[test]
    fn cyclic_merges_are_refused_with_the_cycle(
        edges in prop::collection::vec((0u8..6, 0u8..6), 0..15),
    ) {
        let mut m = TeamMerges::new();
        let mut accepted: HashMap<String, String> = HashMap::new();
        for (a, b) in edges {
            let (a, b) = (format!("t{a}"), format!("t{b}"));
            match m.merge(&a, &b) {
                Ok(_) => {
                    accepted.insert(a, b);
                }
                Err(MergeError::Cycle { cycle }) => {
                    prop_assert_eq!(cycle.first(), Some(&a));
                    prop_assert_eq!(cycle.get(1), Some(&b));
                    prop_assert_eq!(cycle.last(), Some(&a));
                    for pair in cycle[1..].windows(2) {
                        prop_assert_eq!(accepted.get(&pair[0]), Some(&pair[1]));
                    }
                }
                Err(MergeError::AlreadyMerged { team, into, refused }) => {
                    prop_assert_eq!(&team, &a);
                    prop_assert_eq!(&refused, &b);
                    prop_assert_eq!(accepted.get(&a), Some(&into));
                }
            }
        }
        for t in 0..6 {
            let team = format!("t{t}");
            let current = m.current(&team);
            prop_assert!(!accepted.contains_key(current), "{} ends at a team not merged", team);
        }
    }
}

// ---------------------------------------------------------- usage classes

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Rule 11: unused iff no day used; occasional iff used and the shown
    /// monthly average is below the threshold; frequent otherwise; and more
    /// days never lower the class, a higher threshold never raises it.
    #[test]
    fn usage_classes_follow_the_shown_average(
        days in 0u32..400,
        more in 0u32..40,
        months in prop_oneof![Just(1.0f64), Just(3.0), Just(6.0), Just(12.0), 0.03f64..12.1],
        hundredths in 1u32..=3100,
        raise in 0u32..500,
    ) {
        let frequent_at = FrequentDaysPerMonth::new(f64::from(hundredths) / 100.0).expect("valid");
        let class = usage_class(days, months, frequent_at);
        let average = shown_average(days, months);
        prop_assert_eq!(class == UsageClass::Unused, days == 0);
        prop_assert_eq!(
            class == UsageClass::Occasional,
            days > 0 && average < frequent_at.days()
        );
        prop_assert_eq!(
            class == UsageClass::Frequent,
            days > 0 && average >= frequent_at.days()
        );
        prop_assert!(usage_class(days + more, months, frequent_at) >= class);
        let higher = FrequentDaysPerMonth::new(f64::from((hundredths + raise).min(3100)) / 100.0)
            .expect("valid");
        prop_assert!(usage_class(days, months, higher) <= class);
    }
}
