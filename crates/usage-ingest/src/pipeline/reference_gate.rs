//! Reference data before usage, as a pure state machine: messages,
//! end-of-partition events and the broker's answers in, decisions out (no
//! I/O, no clock: time is an argument).
//!
//! - After every assignment (start-up, rebalance) the authorizations
//!   partitions are paused (once fetching: `backpressure.rs`) until each assigned assignments and directory
//!   partition has been read to its end ([`CatchUp`]).
//! - In steady state the same holds batch by batch: when a batch is due, the
//!   broker is asked for the end offsets of the assigned reference
//!   partitions (a [`Question`]); the batch waits until they are read and
//!   takes only the authorizations received before the question ([`Flush`]).
//!   So an authorization is never stamped before an assignment published
//!   ahead of it, even when a stalled broker hands over a backlog in another
//!   order. The same answer, given after a held-back authorization's
//!   deadline, is what lets its hold run out.
//! - Past [`REFERENCE_WAIT`] of waiting for a partition the broker gave an
//!   end for, with no reference message coming, it is taken as read to there
//!   (transactional commit markers take offsets no message fills): its read
//!   floor.

use super::Commit;
use crate::message::Topic;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a batch waits for the reference messages a probe found unread
/// when none comes. Past it, the partition is taken as read to that offset (a transactional
/// producer's commit markers take offsets no message ever fills).
pub(crate) const REFERENCE_WAIT: Duration = Duration::from_secs(2);

pub(crate) use crate::kafka::PartitionEnd;

/// A question to the broker: the end offsets of the assigned reference
/// partitions (assignments and directory), asked at `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Question {
    /// When the question was asked: every reference message the broker held
    /// then is below the ends it gives.
    pub(crate) at: Instant,
    /// The authorizations in the batch being filled when it was asked:
    /// received before `at`.
    pub(crate) cut: usize,
    /// Whether every reference partition had been read to its end once since
    /// the assignment (then a partition nothing was read from starts at its end).
    pub(crate) after_catch_up: bool,
}

/// The broker's answer to a [`Question`] (`ends: None`: it gave none).
#[derive(Debug, Clone)]
struct Answer {
    question: Question,
    ends: Option<Vec<PartitionEnd>>,
}

/// Where the question stands.
#[derive(Debug, Default)]
enum Probe {
    /// None asked, or the last answer was used.
    #[default]
    Idle,
    Asked(Question),
    Answered(Answer),
}

/// Reference data first after an assignment: per partition number, how many
/// reference topics still have to reach their end there (end-of-partition
/// events carry no topic name).
#[derive(Debug)]
pub(crate) struct CatchUp {
    remaining: HashMap<i32, usize>,
    started: Instant,
}

/// What the loop does with the batch being filled, now that it is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flush {
    /// Ask the broker (no question asked, no answer): then wait for it.
    Ask,
    /// Nothing yet: the answer, or reference messages it found unread
    /// (`unread`), are awaited.
    Wait { unread: bool },
    /// Process the messages the answer covers: `cut` authorizations, every
    /// reference message; `read_at`: the instant at which every reference
    /// message is known read, if proven; `hold_usage`: stamp nothing (a
    /// batch of reference data only).
    Batch {
        cut: usize,
        read_at: Option<Instant>,
        hold_usage: bool,
    },
}

/// What the batch being filled holds, as far as the gate is concerned.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Due {
    /// Authorizations in it.
    pub(crate) usage: usize,
    /// Authorizations held back from earlier batches.
    pub(crate) pending: usize,
    /// Twice full: a batch waiting on reference data that keeps receiving it
    /// writes what it has of it.
    pub(crate) overfull: bool,
}

/// Whether a batch may be processed now.
enum Reference {
    /// Yes; with the instant at which every reference message is known read, if proven.
    Read(Option<Instant>),
    /// Not yet: reference messages the answer gave are still on their way.
    Waiting,
}

/// The reference gate's state.
#[derive(Debug)]
pub(crate) struct ReferenceGate {
    /// Next offset to read per reference partition, of everything received.
    received: Commit,
    /// Per reference partition nothing was received from: the offset it was
    /// found to end at after the catch-up (or that a batch waited for in vain).
    read_floor: Commit,
    /// When the last reference message was received.
    last_reference: Instant,
    probe: Probe,
    catching_up: Option<CatchUp>,
}

impl ReferenceGate {
    pub(crate) fn new(now: Instant) -> ReferenceGate {
        ReferenceGate {
            received: Commit::default(),
            read_floor: Commit::default(),
            last_reference: now,
            probe: Probe::Idle,
            catching_up: None,
        }
    }

    /// A reference message (assignments, directory) was received at `now`.
    pub(crate) fn received(&mut self, topic: Topic, partition: i32, offset: i64, now: Instant) {
        self.received.insert((topic, partition), offset + 1);
        self.last_reference = now;
    }

    /// Partitions were assigned (`reference`: the partition numbers of the
    /// assigned assignments and directory partitions, one per topic): reads
    /// them to their end before usage. Whether a catch-up started (none
    /// without reference partitions).
    pub(crate) fn assigned(&mut self, reference: &[i32], now: Instant) -> bool {
        let mut remaining: HashMap<i32, usize> = HashMap::new();
        for partition in reference {
            *remaining.entry(*partition).or_default() += 1;
        }
        if remaining.is_empty() {
            self.catching_up = None;
            return false;
        }
        tracing::info!(
            reference_partitions = reference.len(),
            "reading assignments and directory to their end before usage"
        );
        self.catching_up = Some(CatchUp {
            remaining,
            started: now,
        });
        true
    }

    /// Partitions were revoked: what was known of them is dropped, and so is
    /// the question (its cut counts messages of the batch as it was).
    pub(crate) fn revoked(&mut self, revoked: &[(Topic, i32)]) {
        self.received.retain(|k, _| !revoked.contains(k));
        self.read_floor.retain(|k, _| !revoked.contains(k));
        self.probe = Probe::Idle;
    }

    /// A partition was read to its end: `Some(how long the catch-up took)`
    /// when that ends the catch-up.
    pub(crate) fn reached_end(&mut self, partition: i32, now: Instant) -> Option<Duration> {
        let catch_up = self.catching_up.as_mut()?;
        if let Some(n) = catch_up.remaining.get_mut(&partition) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                catch_up.remaining.remove(&partition);
            }
        }
        if !catch_up.remaining.is_empty() {
            return None;
        }
        let took = now.saturating_duration_since(catch_up.started);
        self.catching_up = None;
        tracing::info!(
            took_ms = took.as_millis() as u64,
            "reference data read to its end: usage flows"
        );
        Some(took)
    }

    #[cfg(test)]
    fn is_catching_up(&self) -> bool {
        self.catching_up.is_some()
    }

    /// Whether a question may be asked ahead (a batch near full): none is
    /// asked and no answer waits to be used.
    pub(crate) fn is_idle(&self) -> bool {
        matches!(self.probe, Probe::Idle)
    }

    /// Whether a question is out.
    pub(crate) fn is_asking(&self) -> bool {
        matches!(self.probe, Probe::Asked(_))
    }

    /// Whether an answer waits to be used.
    pub(crate) fn has_answer(&self) -> bool {
        matches!(self.probe, Probe::Answered(_))
    }

    /// When the question out was asked.
    pub(crate) fn asked_at(&self) -> Option<Instant> {
        match self.probe {
            Probe::Asked(question) => Some(question.at),
            _ => None,
        }
    }

    /// The question to ask now, with `cut` authorizations in the batch.
    pub(crate) fn ask(&mut self, cut: usize, now: Instant) -> Question {
        let question = Question {
            at: now,
            cut,
            after_catch_up: self.catching_up.is_none(),
        };
        self.probe = Probe::Asked(question);
        question
    }

    /// The broker's answer to the question out (`None`: it gave none).
    pub(crate) fn answered(&mut self, ends: Option<Vec<PartitionEnd>>) {
        let Probe::Asked(question) = self.probe else {
            return; // forgotten meanwhile (a rebalance)
        };
        if let (Some(ends), true) = (&ends, question.after_catch_up) {
            // Read to its end in the catch-up with nothing received: it
            // started where it ends (unless a message came in between).
            for (key, end) in ends {
                if !self.received.contains_key(key) {
                    self.read_floor.entry(*key).or_insert(*end);
                }
            }
        }
        self.probe = Probe::Answered(Answer { question, ends });
    }

    /// What to do with the batch being filled, now that it is due.
    pub(crate) fn flush(&mut self, due: Due, now: Instant) -> Flush {
        // Nothing to stamp: no need to know where the reference data ends.
        if due.usage == 0 && due.pending == 0 {
            if self.has_answer() {
                self.probe = Probe::Idle;
            }
            return Flush::Batch {
                cut: 0,
                read_at: None,
                hold_usage: false,
            };
        }
        match self.reference_read(now) {
            None if self.is_asking() => Flush::Wait { unread: false },
            None => Flush::Ask,
            // Reference data keeps coming while usage waits (its partitions
            // paused): write it, stamp nothing yet.
            Some(Reference::Waiting) if due.overfull => Flush::Batch {
                cut: 0,
                read_at: None,
                hold_usage: true,
            },
            Some(Reference::Waiting) => Flush::Wait { unread: true },
            Some(Reference::Read(read_at)) => {
                let cut = match std::mem::take(&mut self.probe) {
                    Probe::Answered(answer) => answer.question.cut,
                    _ => usize::MAX,
                };
                Flush::Batch {
                    cut,
                    read_at,
                    hold_usage: false,
                }
            }
        }
    }

    /// Whether the batch may be processed (`None`: no answer yet).
    fn reference_read(&mut self, now: Instant) -> Option<Reference> {
        let Probe::Answered(answer) = &self.probe else {
            return None;
        };
        let Some(ends) = &answer.ends else {
            // The broker did not answer: process what is there (the
            // authorizations in it came from that broker before it stalled),
            // but prove nothing about what it may hold.
            return Some(Reference::Read(None));
        };
        let position = |key: &(Topic, i32)| {
            let received = self.received.get(key).copied().unwrap_or(i64::MIN);
            received.max(self.read_floor.get(key).copied().unwrap_or(i64::MIN))
        };
        let unread: Vec<PartitionEnd> = ends
            .iter()
            .filter(|(key, end)| position(key) < *end)
            .copied()
            .collect();
        let asked = answer.question.at;
        if unread.is_empty() {
            return Some(Reference::Read(Some(asked)));
        }
        // Waiting as long as reference messages keep coming.
        if now.saturating_duration_since(asked.max(self.last_reference)) < REFERENCE_WAIT {
            return Some(Reference::Waiting);
        }
        tracing::warn!(
            partitions = unread.len(),
            waited_ms = REFERENCE_WAIT.as_millis() as u64,
            "reference partitions not read up to the end the broker gave; taking them as read"
        );
        for (key, end) in unread {
            self.read_floor.insert(key, end);
        }
        Some(Reference::Read(None))
    }
}

#[cfg(test)]
#[path = "reference_gate_tests.rs"]
mod tests;
