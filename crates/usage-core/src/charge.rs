// One file on purpose (a little over 600 lines, a sixth of them the rule's
// docs): the set form (`charges`) and the incremental form (`ChargeState`)
// are one rule in two shapes, and the argument that they agree (the docs
// below) must be read against both.

//! Flex token charges: 24-hour usage windows (docs/rules.md rule 4).
//!
//! > *Flex is designed to offer flexible access to more than 100 products by
//! > using prepaid tokens for each day of use.* — the vendor's help page.
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
//! idempotency key. Simultaneous events (same `occurred_at`) share one
//! window: whichever is met first opens it, the others are free.
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
//! 2. the window with the greatest start at or before its `occurred_at`
//!    covers it: free;
//! 3. otherwise it opens a window.
//!
//! **Theorem** (tested in `tests/properties.rs`): on any delivery in which
//! each user's events come in `(occurred_at, event_id)` order — any
//! interleaving of users, any duplicates, any re-delivered suffix (a replay
//! after a crash or a rebalance) — every answer equals the set form's. Why:
//! an event newer than everything processed finds the newest window in case
//! 2 or 3 exactly as the set form's walk does; an already-processed event
//! finds its own window again in case 1 or 2, because windows are only ever
//! added after it or dropped from the far past. If simultaneous events of a
//! user arrive in another order, every event's window start and the windows
//! charged (start, tokens) are still the set form's; only which of the
//! simultaneous events carries the charge may differ — never a second charge.
//!
//! The state of a user lives with the consumer of that user's partition
//! (Kafka key `user_id`); after a restart or a rebalance it is rebuilt from
//! the stored charges with [`ChargeState::restore`].
//!
//! ## Out-of-order events: charges are immutable
//!
//! A charge is attached to its event once and never changes (rule 4). An
//! authorization that arrives **after** later ones of the same (user,
//! product) were processed is judged by the same rule against the windows
//! already opened:
//!
//! - inside an open window (at or after its start, before its end) → free.
//!   This is also exactly what the set form says: adding a covered event
//!   never moves a window.
//! - in a gap no window covers → it opens its own window and is charged,
//!   flagged `late: true`. Its own charge is again what the set form says
//!   (the windows before it are unchanged). But if its window reaches past
//!   the start of an already-charged later window, the set form would have
//!   made that later opener free and shifted the windows after it. Those
//!   charges are already stamped, so they stay: windows may then overlap.
//!
//! Why this rule: it is rule 4 read literally at the moment the event is
//! charged ("no open usage window covers it"); it keeps every stamped charge
//! immutable; and it keeps the invariant every analyst can check in SQL —
//! **every Flex authorization lies in the 24 hours after its window start**
//! (`window_start <= occurred_at < window_start + 24h`), and that start is
//! the `occurred_at` of the event that opened the window. The alternatives
//! break something: re-deriving the later windows would rewrite stamped
//! charges; absorbing the late event into the next window would make a use
//! free that no window covers. The cost is bounded and visible: only an
//! out-of-order event landing less than 24 hours before an existing window
//! can make the number of windows exceed the set form's — never fall below
//! it, since the opened windows cover every event and the set form's greedy
//! walk uses the fewest 24-hour windows that do — and the `late` flag lets
//! the ingest count it. Kafka keeps each user's events in order, so this
//! only happens when a publisher emits a user's events out of `occurred_at`
//! order.
//!
//! ## Bounded state, restarts
//!
//! Per (user, product), [`ChargeConfig`] bounds the windows kept: the last
//! `retain_windows` windows and any window reaching within `retain_for`
//! (event time) of the newest. After a restart, the consumer restores the
//! stored windows it needs ([`ChargeState::restore`]) and declares from when
//! they are complete ([`ChargeState::known_from`]). Either way the state
//! knows every window starting at or after some instant and nothing before:
//! an event whose answer could depend on a window it does not know (one that
//! could cover it, or lie between it and the window before it) gets
//! [`Charge::BeyondHorizon`] (dead letter; never guessed). A redelivered
//! suffix reaching no further back than what is retained is answered
//! exactly, so the retention must exceed the consumer's redelivery span.
//!

use std::collections::BTreeMap;

use crate::FastMap;

use chrono::{DateTime, TimeDelta, Utc};

use crate::event::{
    Access, Authorization, AuthorizationRef, DirectoryChange, DirectoryEvent, ProductRate, Tokens,
};
use crate::pair::{alloc_bytes, map_entry_bytes, pair_slot, slot, with_pair_key, PairKey};
use crate::range::DateRange;

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
    products: FastMap<Box<str>, Vec<Rate>>,
}

#[derive(Debug, Clone)]
struct Rate {
    effective_from: DateTime<Utc>,
    tokens: Tokens,
    published: (DateTime<Utc>, Box<str>),
}

impl RateTable {
    /// An empty table: every product has an unknown rate.
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
        /// The start of the window: the event's own `occurred_at`.
        window_start: DateTime<Utc>,
        /// The daily rate in force at `window_start`.
        tokens: Tokens,
        /// Opened out of order (the incremental form only).
        late: bool,
    },
    /// Inside the window that started at `window_start`: free.
    Free {
        /// The start of the covering window.
        window_start: DateTime<Utc>,
    },
    /// Opened the window starting at `window_start`, but the product has no
    /// rate in force then: dead-letter it; never guess.
    UnknownRate {
        /// The start of the window it opened.
        window_start: DateTime<Utc>,
    },
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
    /// The window's start: the `occurred_at` of the event that opened it.
    pub start: DateTime<Utc>,
    /// The `event_id` of the authorization that opened the window.
    pub opened_by: String,
    /// `None` while the rate is unknown.
    pub tokens: Option<Tokens>,
    /// Opened out of order.
    pub late: bool,
}

/// The incremental form of the charging rule, for the streaming consumer
/// (see the module docs for the rule, its equivalence with [`charges`] and
/// the out-of-order rule).
#[derive(Debug, Clone, Default)]
pub struct ChargeState {
    /// Keyed by (user, product) ([`crate::pair`]).
    windows: FastMap<PairKey, Windows>,
    config: ChargeConfig,
}

#[derive(Debug, Clone, Default)]
struct Windows {
    /// Sorted by `start`; at most one window per start instant.
    open: Vec<Window>,
    /// Every window starting at or after this instant is held (`None`: every
    /// window is). Older ones were dropped, or never loaded after a restart.
    known_from: Option<DateTime<Utc>>,
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
        // At most one window starts at any instant (a second event at that
        // instant is covered), so `open[i - 1]` is *the* window with the
        // greatest start at or before `at`.
        let i = self.open.partition_point(|w| w.start <= at);
        let before = i.checked_sub(1).map(|i| self.open[i].start);
        if let Some(from) = self.known_from {
            // The answer is certain if no unknown window (all start before
            // `from`) can lie between the held window before `at` and `at`,
            // or could cover `at` at all.
            let certain = before.is_some_and(|s| s >= from)
                || at.checked_sub_signed(WINDOW).is_some_and(|t| t >= from);
            let own = before == Some(at) && *self.open[i - 1].opened_by == *id;
            if !certain && !own {
                return Charge::BeyondHorizon;
            }
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
            if let Some(first) = self.open.first() {
                self.known_from = Some(self.known_from.map_or(first.start, |k| k.max(first.start)));
            }
        }
    }
}

impl ChargeState {
    /// An empty state with the given retention.
    pub fn new(config: ChargeConfig) -> ChargeState {
        ChargeState {
            windows: FastMap::default(),
            config,
        }
    }

    /// The retention in use.
    pub fn config(&self) -> ChargeConfig {
        self.config
    }

    /// Number of (user, product) pairs with window state.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    /// Whether no (user, product) has window state.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// Charges one authorization (see the module docs). Allocates only when
    /// it opens a window or meets a new (user, product).
    pub fn charge<'a>(
        &mut self,
        auth: impl Into<AuthorizationRef<'a>>,
        rates: &RateTable,
    ) -> Charge {
        let auth = auth.into();
        if !auth.online {
            return Charge::NotReported;
        }
        if auth.access == Access::Seat {
            return Charge::Seat;
        }
        let config = self.config;
        let (at, id, product) = (auth.occurred_at, auth.event_id, auth.product);
        if let Some(w) = with_pair_key(auth.user_id, product, |k| self.windows.get_mut(k)) {
            return w.charge(at, id, product, rates, config);
        }
        pair_slot(&mut self.windows, auth.user_id, product).charge(at, id, product, rates, config)
    }

    /// Declares that every window of (user, product) starting at or after
    /// `from` is held (restored, or there is none) — and nothing about older
    /// ones. An event that only an older window could cover, or that one
    /// could precede, then gets [`Charge::BeyondHorizon`]: an event at or
    /// after `from + 24h` is always answered. Knowledge only shrinks: a
    /// boundary already later than `from` stays.
    pub fn known_from(&mut self, user_id: &str, product: &str, from: DateTime<Utc>) {
        let w = pair_slot(&mut self.windows, user_id, product);
        w.known_from = Some(w.known_from.map_or(from, |k| k.max(from)));
    }

    /// Declares that the history of (user, product) is now held further
    /// back: every window starting at or after `from` has been restored.
    /// Unlike [`ChargeState::known_from`] this may move the boundary earlier
    /// (after reloading older windows for an out-of-order event).
    pub fn extend_history(&mut self, user_id: &str, product: &str, from: DateTime<Utc>) {
        let w = pair_slot(&mut self.windows, user_id, product);
        w.known_from = Some(w.known_from.map_or(from, |k| k.min(from)));
    }

    /// Forgets the windows of (user, product) and what is known of its
    /// history — a bounded cache evicting it. The next use must restore its
    /// stored windows and declare from when they are complete
    /// ([`ChargeState::extend_history`]), as after a restart. Returns whether
    /// anything was held.
    pub fn forget_pair(&mut self, user_id: &str, product: &str) -> bool {
        with_pair_key(user_id, product, |k| self.windows.remove(k)).is_some()
    }

    /// An estimate of the heap bytes (user, product) takes (its map entry,
    /// key and windows, with a per-allocation overhead), for a cache bounded
    /// by bytes. 0 when nothing is held.
    pub fn pair_bytes(&self, user_id: &str, product: &str) -> usize {
        with_pair_key(user_id, product, |k| self.windows.get(k)).map_or(0, |w| {
            map_entry_bytes::<Windows>(user_id, product)
                + alloc_bytes(w.open.capacity() * std::mem::size_of::<Window>())
                + w.open
                    .iter()
                    .map(|o| alloc_bytes(o.opened_by.len()))
                    .sum::<usize>()
        })
    }

    /// The windows held for (user, product), oldest first.
    pub fn windows(&self, user_id: &str, product: &str) -> Vec<WindowRecord> {
        with_pair_key(user_id, product, |k| self.windows.get(k))
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

    /// Forgets the window `opened_by` opened at `start` — its opener was
    /// dead-lettered (no rate after the wait), so no charge and no window were
    /// stored. Later events are then judged as if it had never come; replayed
    /// once the rate is known, it is judged again (as a late event if later
    /// windows were opened meanwhile). Returns whether a window was dropped.
    pub fn forget_window(
        &mut self,
        user_id: &str,
        product: &str,
        start: DateTime<Utc>,
        opened_by: &str,
    ) -> bool {
        let Some(w) = with_pair_key(user_id, product, |k| self.windows.get_mut(k)) else {
            return false;
        };
        let before = w.open.len();
        w.open
            .retain(|o| !(o.start == start && *o.opened_by == *opened_by));
        w.open.len() != before
    }

    /// Restores a window from stored charges (after a restart). Idempotent
    /// (one window per start instant: a window already held at that start
    /// is kept). Declare from when the restored history is complete with
    /// [`ChargeState::known_from`].
    pub fn restore(&mut self, user_id: &str, product: &str, window: &WindowRecord) {
        let w = pair_slot(&mut self.windows, user_id, product);
        let i = w.open.partition_point(|o| o.start < window.start);
        if w.open.get(i).is_some_and(|o| o.start == window.start) {
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
