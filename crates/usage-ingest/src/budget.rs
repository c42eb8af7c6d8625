//! The memory budget (`--memory-budget-mb`): one number that bounds the
//! process — the batches in hand (the one filling or being stamped, and
//! those being written), librdkafka's queue of prefetched messages and the
//! enrichment state (`--state-budget-mb`, its own bound, counted here) — so
//! that it stays within it at full rate.
//!
//! The model, from the benchmark's peak RSS (BENCHMARKS.md, "Per-process
//! cost, both cores and the memory budget"):
//! [`FIXED_MB`] for what does not grow with batches (the runtime,
//! librdkafka's fetch buffers, the allocator's slack, a batch's reads of
//! state in flight), one sixteenth of the budget for librdkafka's queue, the
//! state's budget, and the rest for the batches in hand, each costing about
//! [`BYTES_PER_PAYLOAD_BYTE`] times its payload (the payloads, their decoded
//! events, the encoded rows, their compressed copy). The budget only ever
//! lowers the limits given (`--batch-max-bytes`, `--batches-in-flight`,
//! the queue); 0 turns it off.

/// Memory that does not grow with the batches, in MB.
pub(crate) const FIXED_MB: usize = 96;
/// Memory a batch holds per byte of its payloads, at its largest.
pub(crate) const BYTES_PER_PAYLOAD_BYTE: usize = 6;
/// librdkafka's queue of prefetched messages without a budget (KiB).
pub(crate) const DEFAULT_QUEUE_KBYTES: usize = 16 * 1024;
/// The smallest queue the budget leaves librdkafka (KiB).
const MIN_QUEUE_KBYTES: usize = 1024;
/// The smallest batch the budget allows, in payload bytes.
const MIN_BATCH_BYTES: usize = 1 << 20;

/// What the budget bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// A batch closes at this many payload bytes.
    pub(crate) batch_max_bytes: usize,
    /// Batches written at once while the next one fills.
    pub(crate) batches_in_flight: usize,
    /// librdkafka's `queued.max.messages.kbytes`.
    pub(crate) queue_kbytes: usize,
}

/// The budget is smaller than what the process needs whatever its batches.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--memory-budget-mb {budget_mb} is below the {minimum_mb} MB the process needs \
     with the smallest batches; raise it (or 0: no budget)"
)]
pub(crate) struct BudgetTooSmall {
    pub(crate) budget_mb: usize,
    pub(crate) minimum_mb: usize,
}

/// `asked` lowered to fit `budget_mb` (0: no budget, `asked` as is) beside
/// an enrichment state of `state_mb`.
pub(crate) fn bound(
    budget_mb: usize,
    state_mb: usize,
    asked: Bounds,
) -> Result<Bounds, BudgetTooSmall> {
    if budget_mb == 0 {
        return Ok(asked);
    }
    const MB: usize = 1 << 20;
    let queue_kbytes = asked
        .queue_kbytes
        .min(budget_mb * 1024 / 16)
        .max(MIN_QUEUE_KBYTES);
    let in_flight = asked.batches_in_flight.max(1);
    let beside_batches = FIXED_MB + queue_kbytes / 1024 + state_mb;
    let minimum_mb = beside_batches + (2 * MIN_BATCH_BYTES * BYTES_PER_PAYLOAD_BYTE).div_ceil(MB);
    let for_batches = (budget_mb * MB).saturating_sub(beside_batches * MB);
    // The batches in hand: those being written, and the one filling or being stamped.
    let mut batches_in_flight = in_flight;
    let per_batch = loop {
        let per_batch = for_batches / ((batches_in_flight + 1) * BYTES_PER_PAYLOAD_BYTE);
        if per_batch >= MIN_BATCH_BYTES || batches_in_flight == 1 {
            break per_batch;
        }
        batches_in_flight -= 1;
    };
    if per_batch < MIN_BATCH_BYTES {
        return Err(BudgetTooSmall {
            budget_mb,
            minimum_mb,
        });
    }
    Ok(Bounds {
        batch_max_bytes: asked.batch_max_bytes.min(per_batch),
        batches_in_flight,
        queue_kbytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASKED: Bounds = Bounds {
        batch_max_bytes: 32 << 20,
        batches_in_flight: 2,
        queue_kbytes: DEFAULT_QUEUE_KBYTES,
    };

    #[test]
    fn no_budget_keeps_the_limits_given() {
        assert_eq!(bound(0, 32, ASKED), Ok(ASKED));
    }

    #[test]
    fn the_default_budget_bounds_batches_and_the_queue_beside_the_state() {
        let b = bound(256, 32, ASKED).expect("fits");
        assert_eq!(b.queue_kbytes, 16 * 1024);
        assert_eq!(b.batches_in_flight, 2);
        // (256 - 96 - 16 - 32) MB for 3 batches of 6 bytes per payload byte:
        // 6.2 MiB each.
        assert_eq!(b.batch_max_bytes, (112 << 20) / 18);
        let worst = (FIXED_MB + 32) * (1 << 20)
            + b.queue_kbytes * 1024
            + 3 * b.batch_max_bytes * BYTES_PER_PAYLOAD_BYTE;
        assert!(worst <= 256 << 20);
        // A larger state leaves less to the batches.
        let larger = bound(256, 64, ASKED).expect("fits");
        assert!(larger.batch_max_bytes < b.batch_max_bytes);
    }

    #[test]
    fn a_budget_never_raises_a_limit() {
        let small = Bounds {
            batch_max_bytes: 1 << 20,
            batches_in_flight: 1,
            queue_kbytes: 2048,
        };
        assert_eq!(bound(4096, 32, small), Ok(small));
    }

    #[test]
    fn a_small_budget_writes_fewer_batches_at_once_then_refuses() {
        let b = bound(152, 32, ASKED).expect("fits with one batch in flight");
        assert_eq!(b.batches_in_flight, 1);
        assert!(b.batch_max_bytes >= MIN_BATCH_BYTES);
        let error = bound(132, 32, ASKED).expect_err("too small");
        assert_eq!(error.budget_mb, 132);
        assert!(error.minimum_mb > 132);
    }
}
