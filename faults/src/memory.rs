//! Peak memory of a fault's usage-ingest instances: the largest VmHWM of
//! any of them, sampled while they run (read with `usage-testkit`'s
//! `/proc` reader).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use usage_testkit::process::alive;

/// Peak memory of every instance of a fault: the largest VmHWM seen, sampled
/// while they run (a background task samples every 200 ms; kills sample
/// just before).
#[derive(Clone, Default)]
pub(crate) struct Memory(Arc<Mutex<MemoryState>>);

#[derive(Default)]
struct MemoryState {
    /// Live pids and their last VmRSS (bytes).
    rss: BTreeMap<u32, u64>,
    peak_bytes: u64,
}

impl Memory {
    fn state(&self) -> MutexGuard<'_, MemoryState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Samples `pid` from now on.
    pub(crate) fn watch(&self, pid: u32) {
        self.state().rss.insert(pid, 0);
        self.sample(pid);
    }

    /// Stops sampling `pid`.
    pub(crate) fn unwatch(&self, pid: u32) {
        self.state().rss.remove(&pid);
    }

    /// Samples `pid` now.
    pub(crate) fn sample(&self, pid: u32) {
        if let Some(memory) = usage_testkit::memory::of(pid) {
            let mut state = self.state();
            state.peak_bytes = state.peak_bytes.max(memory.peak_bytes);
            if let Some(r) = state.rss.get_mut(&pid) {
                *r = memory.rss_bytes;
            }
        }
    }

    /// Samples every watched process (dead ones are dropped).
    pub(crate) fn sample_all(&self) {
        let pids: Vec<u32> = self.state().rss.keys().copied().collect();
        for pid in pids {
            if alive(pid) {
                self.sample(pid);
            } else {
                self.unwatch(pid);
            }
        }
    }

    /// The largest VmHWM seen, in bytes.
    pub(crate) fn peak_bytes(&self) -> u64 {
        self.state().peak_bytes
    }

    /// The current VmRSS of `pid` (bytes), as last sampled.
    pub(crate) fn rss_bytes(&self, pid: u32) -> Option<u64> {
        self.sample(pid);
        self.state().rss.get(&pid).copied()
    }

    /// Samples every 200 ms until the returned handle is aborted.
    pub(crate) fn spawn_sampler(&self) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                me.sample_all();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    }
}
