//! The batcher: messages accumulate in the batch being filled until it is
//! full (`--batch-max-rows`, `--batch-max-bytes`) or old enough
//! (`--batch-max-wait-ms`); a batch then takes the messages a probe of the
//! reference data covers ([`Filling::take_covered`]).

use crate::message::{RawMessage, Topic};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// When a batch closes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchLimits {
    pub(crate) max_rows: usize,
    pub(crate) max_bytes: usize,
    pub(crate) max_wait: Duration,
    /// Batches written at once while the next one is processed.
    pub(crate) max_in_flight: usize,
}

/// Messages of the batch being filled.
#[derive(Debug, Default)]
pub(crate) struct Filling {
    pub(crate) messages: Vec<RawMessage>,
    bytes: usize,
    opened: Option<Instant>,
    /// How many of the messages are authorizations.
    usage: usize,
}

impl Filling {
    fn push(&mut self, message: RawMessage) {
        self.bytes += message.payload.len();
        self.usage += usize::from(message.topic == Topic::Authorizations);
        self.opened.get_or_insert_with(Instant::now);
        self.messages.push(message);
    }

    /// Keeps the messages `keep` says yes to.
    fn retain(&mut self, keep: impl Fn(&RawMessage) -> bool) {
        self.messages.retain(keep);
        self.bytes = self.messages.iter().map(|m| m.payload.len()).sum();
        self.usage = self
            .messages
            .iter()
            .filter(|m| m.topic == Topic::Authorizations)
            .count();
    }

    /// The batch a probe covers: every reference message, and the first
    /// `cut` authorizations (those received before the question); the later
    /// authorizations stay, in order.
    fn take_covered(&mut self, cut: usize) -> Filling {
        if cut >= self.usage {
            return std::mem::take(self);
        }
        let all = std::mem::take(&mut self.messages);
        let (mut covered, mut rest) = (Filling::default(), Filling::default());
        covered.messages.reserve(all.len());
        for m in all {
            if m.topic == Topic::Authorizations && covered.usage >= cut {
                rest.push(m);
            } else {
                covered.push(m);
            }
        }
        covered.opened = self.opened;
        // The rest starts the next batch: it gets a full wait (a batch of the
        // few messages that came during the probe would double the inserts).
        *self = rest;
        covered
    }
}

/// The batch being filled, its limits, and the messages consumed since the
/// last batch (counted in the metrics with it).
#[derive(Debug)]
pub(crate) struct Batcher {
    limits: BatchLimits,
    filling: Filling,
    consumed: HashMap<Topic, u64>,
}

impl Batcher {
    pub(crate) fn new(limits: BatchLimits) -> Batcher {
        Batcher {
            limits,
            filling: Filling::default(),
            consumed: HashMap::new(),
        }
    }

    /// A consumed message joins the batch being filled.
    pub(crate) fn push(&mut self, message: RawMessage) {
        *self.consumed.entry(message.topic).or_default() += 1;
        self.filling.push(message);
    }

    /// Messages in the batch being filled.
    pub(crate) fn len(&self) -> usize {
        self.filling.messages.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.filling.messages.is_empty()
    }

    /// Authorizations in the batch being filled.
    pub(crate) fn usage(&self) -> usize {
        self.filling.usage
    }

    pub(crate) fn is_full(&self) -> bool {
        let (f, l) = (&self.filling, &self.limits);
        f.messages.len() >= l.max_rows || f.bytes >= l.max_bytes
    }

    /// Seven eighths full: time to ask for the reference partitions' ends.
    pub(crate) fn is_nearly_full(&self) -> bool {
        let (f, l) = (&self.filling, &self.limits);
        f.messages.len() >= l.max_rows - l.max_rows / 8 || f.bytes >= l.max_bytes - l.max_bytes / 8
    }

    /// Twice full: a batch waiting on reference data that keeps receiving it
    /// writes what it has of it.
    pub(crate) fn is_overfull(&self) -> bool {
        let (f, l) = (&self.filling, &self.limits);
        f.messages.len() >= l.max_rows.saturating_mul(2) || f.bytes >= l.max_bytes.saturating_mul(2)
    }

    /// When the batch being filled is due by age.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.filling.opened.map(|o| o + self.limits.max_wait)
    }

    /// The batch a probe covers ([`Filling::take_covered`]).
    pub(crate) fn take_covered(&mut self, cut: usize) -> Filling {
        self.filling.take_covered(cut)
    }

    /// Everything (when draining).
    pub(crate) fn take_all(&mut self) -> Filling {
        std::mem::take(&mut self.filling)
    }

    /// Partitions were revoked: their messages are dropped.
    pub(crate) fn revoked(&mut self, revoked: &[(Topic, i32)]) {
        self.filling
            .retain(|m| !revoked.contains(&(m.topic, m.partition)));
    }

    /// The messages consumed per topic since the last call.
    pub(crate) fn take_consumed(&mut self) -> impl Iterator<Item = (Topic, u64)> + '_ {
        self.consumed.drain()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(topic: Topic, offset: i64) -> RawMessage {
        RawMessage {
            topic,
            partition: 0,
            offset,
            key: None,
            payload: vec![b'x'; 10],
        }
    }

    fn filling(topics: &[Topic]) -> Filling {
        let messages: Vec<RawMessage> = topics
            .iter()
            .enumerate()
            .map(|(i, t)| message(*t, i as i64))
            .collect();
        Filling {
            bytes: messages.len() * 10,
            usage: messages.iter().filter(|m| m.topic == Auth).count(),
            messages,
            opened: Some(Instant::now()),
        }
    }

    use Topic::{Assignments as Ref, Authorizations as Auth};

    #[test]
    fn a_probe_covers_the_authorizations_before_it_and_every_reference_message() {
        let mut f = filling(&[Auth, Ref, Auth, Auth, Ref, Auth]);
        // Two authorizations had come when the question was asked.
        let covered = f.take_covered(2);
        let offsets = |ms: &[RawMessage]| ms.iter().map(|m| m.offset).collect::<Vec<_>>();
        // Reference messages that came after the question go too (they are
        // read before the batch's usage is stamped); later usage waits.
        assert_eq!(offsets(&covered.messages), [0, 1, 2, 4]);
        assert_eq!(covered.bytes, 40);
        assert_eq!(covered.usage, 2);
        assert_eq!(offsets(&f.messages), [3, 5]);
        assert_eq!((f.bytes, f.usage), (20, 2));
        assert!(f.opened.is_some());
        // A batch of reference data only leaves every authorization.
        let mut f = filling(&[Auth, Ref, Auth, Ref]);
        let covered = f.take_covered(0);
        assert_eq!(offsets(&covered.messages), [1, 3]);
        assert_eq!(offsets(&f.messages), [0, 2]);
    }

    #[test]
    fn a_probe_after_everything_takes_everything() {
        let mut f = filling(&[Auth, Ref, Auth]);
        let covered = f.take_covered(usize::MAX);
        assert_eq!(covered.messages.len(), 3);
        assert!(f.messages.is_empty() && f.bytes == 0 && f.opened.is_none());
        let mut f = filling(&[Auth, Ref, Ref]);
        let covered = f.take_covered(1);
        assert_eq!(covered.messages.len(), 3);
        assert!(f.messages.is_empty() && f.opened.is_none() && f.usage == 0);
    }

    #[test]
    fn a_batch_is_full_by_rows_or_bytes_and_due_by_age() {
        let limits = BatchLimits {
            max_rows: 8,
            max_bytes: 1_000,
            max_wait: Duration::from_millis(500),
            max_in_flight: 2,
        };
        let mut batcher = Batcher::new(limits);
        assert_eq!(batcher.deadline(), None);
        for offset in 0..7 {
            batcher.push(message(Auth, offset));
        }
        let opened = batcher.deadline().expect("a deadline") - limits.max_wait;
        assert!(opened <= Instant::now());
        assert!(batcher.is_nearly_full() && !batcher.is_full());
        batcher.push(message(Ref, 7));
        assert!(batcher.is_full() && !batcher.is_overfull());
        for offset in 8..16 {
            batcher.push(message(Ref, offset));
        }
        assert!(batcher.is_overfull());
        let mut consumed: Vec<(Topic, u64)> = batcher.take_consumed().collect();
        consumed.sort();
        assert_eq!(consumed, [(Auth, 7), (Ref, 9)]);
        assert_eq!(batcher.take_consumed().count(), 0);
        // A revoked partition's messages leave the batch.
        batcher.revoked(&[(Auth, 0)]);
        assert_eq!((batcher.len(), batcher.usage()), (9, 0));
        assert!(batcher.deadline().is_some(), "the batch keeps its age");
        let all = batcher.take_all();
        assert_eq!(all.messages.len(), 9);
        assert!(batcher.is_empty() && batcher.deadline().is_none());
    }
}
