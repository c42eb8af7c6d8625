//! Flex token charges: 24-hour usage windows (DESIGN.md rule 4).
//!
//! > *Flex is designed to offer flexible access to more than 100 products by
//! > using prepaid tokens for each day of use.* — the seed.
//!
//! Per **(user, product)** — any product version, any team — the first online
//! Flex authorization that no open usage window covers **opens** a window
//! `[t, t + 24h)` and is charged the product's daily rate in force at `t`
//! ([`RateTable::rate_at`]: the rate with the greatest `effective_from <= t`).
//! Every other authorization inside the window is **free** and carries the
//! window's start. Seat usage costs nothing and has no window; offline usage
//! is not reported (rule 1) and opens nothing. A window whose product has no
//! known rate at `t` still opens — the window sequence depends on timestamps
//! only, never on rates — but its opening event is [`Charge::UnknownRate`]:
//! the ingest dead-letters that event (never guesses); replayed once the rate
//! is published, the same event is recognised as the window's opener and
//! charged.
//!
//! Events are ordered by `(occurred_at, event_id)`; `event_id` is the
//! idempotency key.
//!
//! ## Set form: [`charges`]
//!
//! The definition. Over the **set** of authorizations (deduplicated by
//! `event_id`, sorted by `(occurred_at, event_id)` per (user, product)), walk
//! in order and open a window whenever the current one (if any) does not
//! cover the event. A function of the set: delivery order, replays and
//! duplicates cannot change it.
//!
//! ## Incremental form: [`ChargeState`]
//!
//! What the streaming consumer runs, one event at a time. Per (user, product)
//! it keeps the few most recent windows (start, opening `event_id`, charge).
//! An event is answered against them:
//!
//! 1. it is a window's opener (same `(occurred_at, event_id)`): the same
//!    charge again (a redelivery or duplicate; an `UnknownRate` opener is
//!    re-priced, for the dead-letter replay);
//! 2. the window with the greatest start at or before it covers it: free;
//! 3. otherwise it opens a window.
//!
//! **Theorem** (tested in `tests/properties.rs`): on any delivery in which
//! each user's events come in `occurred_at` order — any interleaving of
//! users, any duplicates, any re-delivered suffix (a replay after a crash or
//! a rebalance) — every answer equals the set form's. Why: an event newer
//! than everything processed finds the newest window in case 2 or 3 exactly
//! as the set form's walk does; an already-processed event finds its own
//! window again in case 1 or 2, because windows are only ever appended after
//! it or dropped from the far past.
//!
//! ## Out-of-order events: charges are immutable
//!
//! A charge is attached to its event once and never changes (rule 4). An
//! authorization that arrives **after** later ones of the same (user,
//! product) were processed is judged by the same rule against the windows
//! already opened:
//!
//! - inside an open window (after its start, before its end) → free. This is
//!   also exactly what the set form says: adding a covered event never moves
//!   a window.
//! - in a gap no window covers → it opens its own window and is charged,
//!   flagged `late: true`. Its own charge is again what the set form says
//!   (the windows before it are unchanged). But if its window reaches past
//!   the start of an already-charged later window, the set form would have
//!   made that later opener free and shifted the windows after it. Those
//!   charges are already stamped, so they stay: windows may then overlap.
//!
//! Why this rule: it is rule 4 read literally at the moment the event is
//! charged ("no open usage window covers it"), it keeps every stamped charge
//! immutable, and it keeps the invariant every analyst can check in SQL —
//! **every Flex authorization lies in the 24 hours after its window start**
//! (`window_start <= occurred_at < window_start + 24h`), with a charged
//! opener at that start. The alternatives break something: re-deriving the
//! later windows would rewrite stamped charges; absorbing the late event
//! into the next window would make a use free that no window covers. The
//! cost is bounded and visible: only an out-of-order event landing less than
//! 24 hours before an existing window can make the number of charged windows
//! exceed the set form's — never fall below it: the opened windows cover
//! every event, and the set form's greedy walk uses the fewest 24-hour
//! windows that do — and the `late` flag lets the ingest count it. Kafka keeps each user's events in order
//! (key: `user_id`), so this only happens when a publisher emits a user's
//! events out of `occurred_at` order.
//!
//! ## Bounded state
//!
//! Per (user, product), [`ChargeConfig`] bounds the windows kept: the last
//! `retain_windows` windows and any window reaching within `retain_for`
//! (event time) of the newest. Once windows were dropped, an event older
//! than the oldest window kept cannot be answered exactly and gets
//! [`Charge::BeyondHorizon`] (dead letter; never guessed). A redelivered
//! suffix reaching no further back than what is retained is answered
//! exactly, so the retention must exceed the consumer's redelivery span.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, TimeDelta, Utc};

use crate::event::{Access, Authorization, DirectoryChange, DirectoryEvent, ProductRate, Tokens};
use crate::range::DateRange;
use crate::team::slot;

/// The length of a Flex usage window.
pub const WINDOW: TimeDelta = TimeDelta::hours(24);

/// The end (exclusive) of the window that starts at `start`.
fn window_end(start: DateTime<Utc>) -> Option<DateTime<Utc>> {
    start.checked_add_signed(WINDOW)
}

/// Whether the window starting at `start` covers `at` (given `start <= at`).
fn covers(start: DateTime<Utc>, at: DateTime<Utc>) -> bool {
    window_end(start).is_none_or(|end| at < end)
}

/// Effective-dated daily Flex rates per product (`product_rate` events).
///
/// Order-independent: a rate is identified by (product, `effective_from`);
/// two publications for the same pair keep the one published last (greatest
/// `(occurred_at, event_id)`), so a correction wins whatever the arrival order.
#[derive(Debug, Clone, Default)]
pub struct RateTable {
    products: HashMap<Box<str>, Vec<Rate>>,
}

#[derive(Debug, Clone)]
struct Rate {
    effective_from: DateTime<Utc>,
    tokens: Tokens,
    published: (DateTime<Utc>, Box<str>),
}

impl RateTable {
    pub fn new() -> RateTable {
        RateTable::default()
    }

    /// Applies a `product_rate` published by event `event_id` at
    /// `published_at`. Returns whether the table changed.
    pub fn apply(
        &mut self,
        event_id: &str,
        published_at: DateTime<Utc>,
        rate: &ProductRate,
    ) -> bool {
        let rates = slot(&mut self.products, &rate.product);
        let at = rates.partition_point(|r| r.effective_from < rate.effective_from);
        match rates.get_mut(at) {
            Some(held) if held.effective_from == rate.effective_from => {
                if (published_at, event_id) > (held.published.0, &*held.published.1) {
                    let changed = held.tokens != rate.flex_tokens_per_day;
                    held.tokens = rate.flex_tokens_per_day;
                    held.published = (published_at, event_id.into());
                    changed
                } else {
                    false
                }
            }
            _ => {
                rates.insert(
                    at,
                    Rate {
                        effective_from: rate.effective_from,
                        tokens: rate.flex_tokens_per_day,
                        published: (published_at, event_id.into()),
                    },
                );
                true
            }
        }
    }

    /// Applies a directory event if it is a `product_rate`; other kinds are
    /// ignored (returns `false`).
    pub fn apply_event(&mut self, event: &DirectoryEvent) -> bool {
        match &event.change {
            DirectoryChange::ProductRate(rate) => {
                self.apply(&event.event_id, event.occurred_at, rate)
            }
            _ => false,
        }
    }

    /// The daily rate of `product` in force at `t`: the rate with the
    /// greatest `effective_from <= t`; `None` if there is none.
    pub fn rate_at(&self, product: &str, t: DateTime<Utc>) -> Option<Tokens> {
        let rates = self.products.get(product)?;
        let i = rates.partition_point(|r| r.effective_from <= t);
        i.checked_sub(1).map(|i| rates[i].tokens)
    }
}

/// The token charge attached to one authorization (rule 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Charge {
    /// Offline usage: not reported (rule 1); no window.
    NotReported,
    /// Seat usage: no tokens, no window.
    Seat,
    /// Opened the window starting at its own `occurred_at`; charged the
    /// daily rate in force then. `late`: opened out of order (see the module
    /// docs; never set by the set form).
    Charged {
        window_start: DateTime<Utc>,
        tokens: Tokens,
        late: bool,
    },
    /// Inside the window that started at `window_start`: free.
    Free { window_start: DateTime<Utc> },
    /// Opened the window starting at `window_start`, but the product has no
    /// rate in force then: dead-letter it; never guess.
    UnknownRate { window_start: DateTime<Utc> },
    /// Older than the windows the incremental state retains: cannot be
    /// charged exactly; dead-letter it.
    BeyondHorizon,
}

impl Charge {
    /// The tokens charged (zero unless [`Charge::Charged`]).
    pub fn tokens(&self) -> Tokens {
        match self {
            Charge::Charged { tokens, .. } => *tokens,
            _ => Tokens::ZERO,
        }
    }

    /// The start of the usage window the event belongs to, if any.
    pub fn window_start(&self) -> Option<DateTime<Utc>> {
        match self {
            Charge::Charged { window_start, .. }
            | Charge::Free { window_start }
            | Charge::UnknownRate { window_start } => Some(*window_start),
            Charge::NotReported | Charge::Seat | Charge::BeyondHorizon => None,
        }
    }

    /// Whether the event can be stored as is (the others go to the dead-letter topic).
    pub fn is_final(&self) -> bool {
        !matches!(self, Charge::UnknownRate { .. } | Charge::BeyondHorizon)
    }

    /// A stable name for metrics and dead-letter reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            Charge::NotReported => "not_reported",
            Charge::Seat => "seat",
            Charge::Charged { late: false, .. } => "charged",
            Charge::Charged { late: true, .. } => "charged_late",
            Charge::Free { .. } => "free",
            Charge::UnknownRate { .. } => "unknown_rate",
            Charge::BeyondHorizon => "beyond_horizon",
        }
    }
}

/// The set form (the definition): the charge of every distinct event.
///
/// Deduplicates by `event_id` (the first copy of an id is kept; an id names
/// one event), groups online Flex events by (user, product), sorts each group
/// by `(occurred_at, event_id)` and walks it, opening a window whenever the
/// current one does not cover the event. Seat and offline events get
/// [`Charge::Seat`] / [`Charge::NotReported`].
pub fn charges<'a, I>(events: I, rates: &RateTable) -> BTreeMap<&'a str, Charge>
where
    I: IntoIterator<Item = &'a Authorization>,
{
    let mut distinct: BTreeMap<&'a str, &'a Authorization> = BTreeMap::new();
    for e in events {
        distinct.entry(e.event_id.as_str()).or_insert(e);
    }
    let mut out = BTreeMap::new();
    let mut flex: BTreeMap<(&'a str, &'a str), Vec<&'a Authorization>> = BTreeMap::new();
    for (&id, &e) in &distinct {
        if !e.online {
            out.insert(id, Charge::NotReported);
        } else if e.access == Access::Seat {
            out.insert(id, Charge::Seat);
        } else {
            flex.entry((e.user_id.as_str(), e.product.as_str()))
                .or_default()
                .push(e);
        }
    }
    for ((_, product), mut group) in flex {
        group.sort_unstable_by(|a, b| {
            (a.occurred_at, &a.event_id).cmp(&(b.occurred_at, &b.event_id))
        });
        let mut open: Option<DateTime<Utc>> = None;
        for e in group {
            let charge = match open {
                Some(start) if covers(start, e.occurred_at) => Charge::Free {
                    window_start: start,
                },
                _ => {
                    open = Some(e.occurred_at);
                    opening(rates.rate_at(product, e.occurred_at), e.occurred_at, false)
                }
            };
            out.insert(e.event_id.as_str(), charge);
        }
    }
    out
}

fn opening(tokens: Option<Tokens>, window_start: DateTime<Utc>, late: bool) -> Charge {
    match tokens {
        Some(tokens) => Charge::Charged {
            window_start,
            tokens,
            late,
        },
        None => Charge::UnknownRate { window_start },
    }
}

/// Tokens used in a range (rule 5): the sum of the charges whose window
/// starts in it (by UTC date). `None` on overflow.
pub fn tokens_in_range<'a, I>(charges: I, range: &DateRange) -> Option<Tokens>
where
    I: IntoIterator<Item = &'a Charge>,
{
    charges
        .into_iter()
        .filter_map(|c| match c {
            Charge::Charged {
                window_start,
                tokens,
                ..
            } if range.contains_instant(*window_start) => Some(*tokens),
            _ => None,
        })
        .try_fold(Tokens::ZERO, Tokens::checked_add)
}

/// How much window history [`ChargeState`] keeps per (user, product).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChargeConfig {
    /// Always keep at least this many most recent windows (minimum 1).
    pub retain_windows: usize,
    /// Also keep every window that reaches within this much event time of
    /// the newest window's start.
    pub retain_for: TimeDelta,
}

impl ChargeConfig {
    /// Keeps every window (batch re-derivation, tests).
    pub const UNBOUNDED: ChargeConfig = ChargeConfig {
        retain_windows: usize::MAX,
        retain_for: TimeDelta::MAX,
    };
}

impl Default for ChargeConfig {
    /// The last 4 windows, and 7 days of event time.
    fn default() -> ChargeConfig {
        ChargeConfig {
            retain_windows: 4,
            retain_for: TimeDelta::days(7),
        }
    }
}

/// A usage window as the incremental state holds it (for checkpoints and
/// for restoring the state from stored charges).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowRecord {
    pub start: DateTime<Utc>,
    /// The `event_id` of the authorization that opened the window.
    pub opened_by: String,
    /// `None` while the rate is unknown.
    pub tokens: Option<Tokens>,
    pub late: bool,
}

/// The incremental form of the charging rule, for the streaming consumer
/// (see the module docs for the rule, its equivalence with [`charges`] and
/// the out-of-order rule).
#[derive(Debug, Clone, Default)]
pub struct ChargeState {
    users: HashMap<Box<str>, HashMap<Box<str>, Windows>>,
    config: ChargeConfig,
}

#[derive(Debug, Clone, Default)]
struct Windows {
    /// Sorted by `(start, opened_by)`.
    open: Vec<Window>,
    /// Whether older windows were dropped (or never loaded): events before
    /// `open[0]` cannot be answered.
    truncated: bool,
}

#[derive(Debug, Clone)]
struct Window {
    start: DateTime<Utc>,
    opened_by: Box<str>,
    tokens: Option<Tokens>,
    late: bool,
}

impl Window {
    fn outcome(&self) -> Charge {
        opening(self.tokens, self.start, self.late)
    }
}

impl Windows {
    fn charge(
        &mut self,
        at: DateTime<Utc>,
        id: &str,
        product: &str,
        rates: &RateTable,
        config: ChargeConfig,
    ) -> Charge {
        let i = self
            .open
            .partition_point(|w| (w.start, &*w.opened_by) <= (at, id));
        if i == 0 && self.truncated {
            return Charge::BeyondHorizon;
        }
        if let Some(w) = i.checked_sub(1).map(|i| &mut self.open[i]) {
            if w.start == at && *w.opened_by == *id {
                if w.tokens.is_none() {
                    w.tokens = rates.rate_at(product, at);
                }
                return w.outcome();
            }
            if covers(w.start, at) {
                return Charge::Free {
                    window_start: w.start,
                };
            }
        }
        let late = i < self.open.len();
        let w = Window {
            start: at,
            opened_by: id.into(),
            tokens: rates.rate_at(product, at),
            late,
        };
        let outcome = w.outcome();
        self.open.insert(i, w);
        if !late {
            self.prune(config);
        }
        outcome
    }

    fn prune(&mut self, config: ChargeConfig) {
        let Some(newest) = self.open.last().map(|w| w.start) else {
            return;
        };
        let by_count = self.open.len().saturating_sub(config.retain_windows.max(1));
        let horizon = newest.checked_sub_signed(config.retain_for);
        let by_time = self
            .open
            .partition_point(|w| match (horizon, window_end(w.start)) {
                (Some(h), Some(end)) => end <= h,
                _ => false,
            });
        let drop = by_count.min(by_time);
        if drop > 0 {
            self.open.drain(..drop);
            self.truncated = true;
        }
    }
}

impl ChargeState {
    pub fn new(config: ChargeConfig) -> ChargeState {
        ChargeState {
            users: HashMap::new(),
            config,
        }
    }

    pub fn config(&self) -> ChargeConfig {
        self.config
    }

    /// Number of (user, product) pairs with window state.
    pub fn len(&self) -> usize {
        self.users.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Charges one authorization (see the module docs). Allocates only when
    /// it opens a window or meets a new (user, product).
    pub fn charge(&mut self, auth: &Authorization, rates: &RateTable) -> Charge {
        if !auth.online {
            return Charge::NotReported;
        }
        if auth.access == Access::Seat {
            return Charge::Seat;
        }
        let config = self.config;
        let (at, id, product) = (
            auth.occurred_at,
            auth.event_id.as_str(),
            auth.product.as_str(),
        );
        if let Some(w) = self
            .users
            .get_mut(auth.user_id.as_str())
            .and_then(|p| p.get_mut(product))
        {
            return w.charge(at, id, product, rates, config);
        }
        slot(slot(&mut self.users, &auth.user_id), product).charge(at, id, product, rates, config)
    }

    /// The windows held for (user, product), oldest first.
    pub fn windows(&self, user_id: &str, product: &str) -> Vec<WindowRecord> {
        self.users
            .get(user_id)
            .and_then(|p| p.get(product))
            .map(|w| {
                w.open
                    .iter()
                    .map(|w| WindowRecord {
                        start: w.start,
                        opened_by: w.opened_by.to_string(),
                        tokens: w.tokens,
                        late: w.late,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Restores a window from stored charges (after a restart). History
    /// before the oldest restored window counts as unknown: older events
    /// get [`Charge::BeyondHorizon`]. Idempotent.
    pub fn restore(&mut self, user_id: &str, product: &str, window: &WindowRecord) {
        let w = slot(slot(&mut self.users, user_id), product);
        w.truncated = true;
        let key = (window.start, window.opened_by.as_str());
        let i = w.open.partition_point(|o| (o.start, &*o.opened_by) < key);
        if w.open
            .get(i)
            .is_some_and(|o| (o.start, &*o.opened_by) == key)
        {
            return;
        }
        w.open.insert(
            i,
            Window {
                start: window.start,
                opened_by: window.opened_by.as_str().into(),
                tokens: window.tokens,
                late: window.late,
            },
        );
    }
}
