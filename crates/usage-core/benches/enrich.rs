//! Enrichment per authorization on a realistic state: team resolution from
//! the assignment history plus the Flex charge, as the ingest runs it for
//! every event (one core).
//!
//! State: 10,000 users, each holding 1-3 of 200 products (half seat, half
//! Flex) in one of 1,000 teams, 5% also in a second team, with assignment
//! history (an unassign and re-assign for a tenth of them); effective-dated
//! rates for every product. Stream: 30 days, each (user, product) used on
//! random days, several authorizations a day, time-ordered, no `team_id`
//! (every event resolved from the history: the costly case).
//!
//! Run: `cargo bench -p usage-core --bench enrich`.

use std::hint::black_box;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use usage_core::charge::{ChargeState, RateTable};
use usage_core::event::{
    Access, Assignment, AssignmentAction, AssignmentVia, Authorization, ProductRate, Tokens,
};
use usage_core::team::AssignmentState;

const USERS: u64 = 10_000;
const PRODUCTS: u64 = 200;
const TEAMS: u64 = 1_000;
const DAYS: i64 = 30;

/// SplitMix64: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0)
        .single()
        .expect("valid")
}

struct World {
    assignments: AssignmentState,
    rates: RateTable,
    events: Vec<Authorization>,
}

fn world() -> World {
    let mut rng = Rng(42);
    let mut assignments = AssignmentState::new();
    let mut rates = RateTable::new();
    for p in 0..PRODUCTS {
        for (i, from) in [
            start() - TimeDelta::days(365),
            start() + TimeDelta::days(15),
        ]
        .into_iter()
        .enumerate()
        {
            rates.apply(
                &format!("rate-{p}-{i}"),
                from,
                &ProductRate {
                    product: format!("product-{p:03}"),
                    name: None,
                    flex_tokens_per_day: Tokens::from_whole(1 + (p % 9) + i as u64),
                    effective_from: from,
                },
            );
        }
    }
    let mut events = Vec::new();
    let mut n = 0u64;
    let mut id = |prefix: &str| {
        n += 1;
        format!("{prefix}-{n:012x}")
    };
    for u in 0..USERS {
        let user = format!("user-{u:08}");
        let team = format!("team-{:05}", rng.below(TEAMS));
        let held = 1 + rng.below(3);
        for _ in 0..held {
            let product = format!("product-{:03}", rng.below(PRODUCTS));
            let access = if rng.below(2) == 0 {
                Access::Seat
            } else {
                Access::Flex
            };
            let assigned_at = start() - TimeDelta::days(30 + rng.below(300) as i64);
            let mut facts = vec![(assigned_at, AssignmentAction::Assign, team.clone())];
            if rng.below(10) == 0 {
                facts.push((
                    assigned_at + TimeDelta::days(5),
                    AssignmentAction::Unassign,
                    team.clone(),
                ));
                facts.push((
                    assigned_at + TimeDelta::days(9),
                    AssignmentAction::Assign,
                    team.clone(),
                ));
            }
            if rng.below(20) == 0 {
                let other = format!("team-{:05}", rng.below(TEAMS));
                facts.push((
                    assigned_at + TimeDelta::days(1),
                    AssignmentAction::Assign,
                    other,
                ));
            }
            for (at, action, team_id) in facts {
                assignments.apply(&Assignment {
                    event_id: id("asg"),
                    occurred_at: at,
                    action,
                    team_id,
                    user_id: user.clone(),
                    product: product.clone(),
                    access,
                    via: AssignmentVia::Direct,
                    group_id: None,
                });
            }
            for day in 0..DAYS {
                if rng.below(3) != 0 {
                    continue;
                }
                for _ in 0..1 + rng.below(3) {
                    let at = start()
                        + TimeDelta::days(day)
                        + TimeDelta::seconds(rng.below(86_400) as i64);
                    events.push(Authorization {
                        event_id: id("evt"),
                        occurred_at: at,
                        user_id: user.clone(),
                        product: product.clone(),
                        product_version: Some("2027".into()),
                        access,
                        team_id: None,
                        machine_id: Some("m".into()),
                        online: true,
                    });
                }
            }
        }
    }
    events.sort_by(|a, b| (a.occurred_at, &a.event_id).cmp(&(b.occurred_at, &b.event_id)));
    // Re-allocate in stream order: in the ingest an event was just decoded
    // and is hot in cache; only the state lookups should miss.
    let events = events.to_vec();
    World {
        assignments,
        rates,
        events,
    }
}

fn bench(c: &mut Criterion) {
    let w = world();
    let mut group = c.benchmark_group("enrich");
    group.sample_size(10);
    group.throughput(Throughput::Elements(w.events.len() as u64));

    group.bench_function("resolve_team", |b| {
        b.iter(|| {
            let mut resolved = 0usize;
            for e in &w.events {
                resolved += usize::from(w.assignments.resolve(e).team().is_some());
            }
            black_box(resolved)
        })
    });

    group.bench_function("charge", |b| {
        b.iter_batched(
            ChargeState::default,
            |mut state| {
                for e in &w.events {
                    black_box(state.charge(e, &w.rates));
                }
                state
            },
            BatchSize::PerIteration,
        )
    });

    group.bench_function("resolve_and_charge", |b| {
        b.iter_batched(
            ChargeState::default,
            |mut state| {
                for e in &w.events {
                    let team = w.assignments.resolve(e);
                    black_box(team.team().map(|t| t.team_id));
                    black_box(state.charge(e, &w.rates));
                }
                state
            },
            BatchSize::PerIteration,
        )
    });

    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
