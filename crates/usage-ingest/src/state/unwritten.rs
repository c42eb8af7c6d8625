//! What this instance decided that ClickHouse may not hold yet: the
//! assignment events decoded and the Flex windows opened by the batches not
//! yet written (up to `--batches-in-flight` of them, plus the one being
//! stamped). A user's state read again from ClickHouse (after an eviction,
//! or a rebalance for the windows) gets these on top, so reading it again
//! never loses a fact a batch in flight is still writing. A batch's facts
//! are dropped once the batch is stored (batches are stored in order).

use std::collections::VecDeque;
use usage_core::charge::WindowRecord;
use usage_core::event::Assignment;
use usage_core::FastMap;

/// The facts of one batch, by user.
#[derive(Debug, Default)]
struct BatchFacts {
    batch: u64,
    assignments: FastMap<Box<str>, Vec<Assignment>>,
    /// Per user: (product, window).
    windows: FastMap<Box<str>, Vec<(Box<str>, WindowRecord)>>,
}

/// The facts of the batches not yet stored, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Unwritten {
    batches: VecDeque<BatchFacts>,
}

impl Unwritten {
    fn current(&mut self, batch: u64) -> &mut BatchFacts {
        if self.batches.back().is_none_or(|b| b.batch != batch) {
            self.batches.push_back(BatchFacts {
                batch,
                ..BatchFacts::default()
            });
        }
        self.batches.back_mut().expect("pushed just above")
    }

    /// An assignment event decoded by `batch`.
    pub(crate) fn assignment(&mut self, batch: u64, a: &Assignment) {
        let facts = self.current(batch);
        match facts.assignments.get_mut(a.user_id.as_str()) {
            Some(list) => list.push(a.clone()),
            None => {
                facts
                    .assignments
                    .insert(a.user_id.as_str().into(), vec![a.clone()]);
            }
        }
    }

    /// A Flex window opened by `batch` (stored with its rows).
    pub(crate) fn window(&mut self, batch: u64, user: &str, product: &str, w: WindowRecord) {
        let facts = self.current(batch);
        let entry = (Box::from(product), w);
        match facts.windows.get_mut(user) {
            Some(list) => list.push(entry),
            None => {
                facts.windows.insert(user.into(), vec![entry]);
            }
        }
    }

    /// The assignment events of `user` not yet stored, oldest batch first.
    pub(crate) fn assignments_of<'a>(
        &'a self,
        user: &'a str,
    ) -> impl Iterator<Item = &'a Assignment> + 'a {
        self.batches
            .iter()
            .filter_map(move |b| b.assignments.get(user))
            .flatten()
    }

    /// The windows of (user, product) not yet stored.
    pub(crate) fn windows_of<'a>(
        &'a self,
        user: &'a str,
        product: &'a str,
    ) -> impl Iterator<Item = &'a WindowRecord> + 'a {
        self.batches
            .iter()
            .filter_map(move |b| b.windows.get(user))
            .flatten()
            .filter(move |(p, _)| **p == *product)
            .map(|(_, w)| w)
    }

    /// Every batch up to `batch` is stored: their facts are in ClickHouse.
    pub(crate) fn stored(&mut self, batch: u64) {
        while self.batches.front().is_some_and(|b| b.batch <= batch) {
            self.batches.pop_front();
        }
    }

    /// Batches whose facts are held.
    pub(crate) fn len(&self) -> usize {
        self.batches.len()
    }
}
