//! Pure per-message work spread over the machine's cores: a batch cut into
//! contiguous chunks, one scoped thread per chunk (the calling thread does
//! the first), the results put back in the batch's order — so what comes
//! out is exactly what one thread would have produced, only sooner.
//!
//! Used for the work that needs no state: decoding authorizations
//! (`stamp::decode`) and encoding their fact rows (`stamp::encode`). The
//! stamping itself — team and charge against the per-(user, product)
//! state — stays on one thread, in consumption order.

/// Below this many items per chunk the work stays on the calling thread: a
/// thread's start (tens of µs) would cost more than the chunk saves.
const MIN_CHUNK: usize = 2048;

/// How many threads share pure per-message work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Workers {
    threads: usize,
}

impl Default for Workers {
    /// One thread: everything on the caller.
    fn default() -> Workers {
        Workers { threads: 1 }
    }
}

impl Workers {
    /// `threads` threads; 0: one per core the process may use.
    pub(crate) fn new(threads: usize) -> Workers {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        Workers { threads }
    }

    pub(crate) fn threads(&self) -> usize {
        self.threads
    }

    /// Into how many chunks `len` items are cut.
    fn chunks(&self, len: usize) -> usize {
        self.threads.min(len / MIN_CHUNK).max(1)
    }

    /// `work` over contiguous chunks of `items`, one result per chunk, in
    /// order. A panic in a worker is a bug: it is raised again here.
    pub(crate) fn map_chunks<T, R>(&self, items: &[T], work: impl Fn(&[T]) -> R + Sync) -> Vec<R>
    where
        T: Sync,
        R: Send,
    {
        let chunks = self.chunks(items.len());
        if chunks <= 1 {
            return vec![work(items)];
        }
        let size = items.len().div_ceil(chunks);
        on_threads(items.chunks(size).collect(), work)
    }

    /// `work` over every item, each handed over (moved, not copied), the
    /// results in the items' order.
    pub(crate) fn map_owned<T, R>(&self, mut items: Vec<T>, work: impl Fn(T) -> R + Sync) -> Vec<R>
    where
        T: Send,
        R: Send,
    {
        let chunks = self.chunks(items.len());
        if chunks <= 1 {
            return items.into_iter().map(work).collect();
        }
        let size = items.len().div_ceil(chunks);
        // Cut from the end, so each item moves once.
        let mut parts = Vec::with_capacity(chunks);
        for at in (1..chunks).rev().map(|i| i * size) {
            if at < items.len() {
                parts.push(items.split_off(at));
            }
        }
        parts.push(items);
        parts.reverse();
        let len = parts.iter().map(Vec::len).sum();
        let results = on_threads(parts, |part| {
            part.into_iter().map(&work).collect::<Vec<R>>()
        });
        let mut out = Vec::with_capacity(len);
        for part in results {
            out.extend(part);
        }
        out
    }
}

/// `work` over each of `parts`, the first on the calling thread, each other
/// on a scoped thread of its own; the results in the parts' order. A panic
/// in a worker is a bug: it is raised again here.
fn on_threads<P, R>(parts: Vec<P>, work: impl Fn(P) -> R + Sync) -> Vec<R>
where
    P: Send,
    R: Send,
{
    let work = &work;
    let mut parts = parts.into_iter();
    std::thread::scope(|scope| {
        let first = parts.next();
        let others: Vec<_> = parts.map(|part| scope.spawn(move || work(part))).collect();
        let mut out = Vec::with_capacity(others.len() + 1);
        out.extend(first.map(work));
        for other in others {
            match other.join() {
                Ok(result) => out.push(result),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_items_order_whatever_the_threads() {
        let items: Vec<u64> = (0..10_000).collect();
        let one: Vec<u64> = items.iter().map(|i| i * 3).collect();
        for threads in [1, 2, 3, 8] {
            let owned = Workers::new(threads).map_owned(items.clone(), |i| i * 3);
            assert_eq!(owned, one, "{threads} threads");
        }
        let chunks = Workers::new(2).map_chunks(&items, <[u64]>::len);
        assert_eq!(chunks, [5_000, 5_000], "two chunks of 5000");
    }

    #[test]
    fn small_batches_stay_on_the_calling_thread() {
        let caller = std::thread::current().id();
        let items = vec![1; MIN_CHUNK + 1];
        let threads = Workers::new(4).map_owned(items, |_| std::thread::current().id());
        assert!(threads.iter().all(|t| *t == caller));
        assert!(Workers::new(0).threads() >= 1);
    }
}
