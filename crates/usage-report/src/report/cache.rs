//! A brief in-process cache of the report's state per filter set, so the
//! page's requests for the same filters (the overview, the users pages, the
//! daily chart) share one computation instead of each asking ClickHouse.
//!
//! Freshness: an entry lives `freshness` from the moment its computation
//! starts, and every query it makes starts after that moment; so data
//! visible in the tables is in every answer to a request made more than
//! `freshness` later. Bounded by age and by a number of entries (the
//! oldest goes first); concurrent lookups of one key wait for one
//! computation (single-flight). A failed computation is not kept: the next
//! lookup computes again. A `freshness` of zero disables the cache.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

/// How a lookup was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheLookup {
    /// From an entry computed, or being computed, for an earlier lookup.
    Hit,
    /// By a computation of its own.
    Miss,
}

/// Entries per cache by default.
pub(super) const DEFAULT_ENTRIES: usize = 64;

struct Entry<V> {
    born: Instant,
    value: Arc<OnceCell<Arc<V>>>,
}

/// Values by key, computed once per key and `freshness`.
pub(super) struct Cache<K, V> {
    freshness: Duration,
    capacity: usize,
    entries: Mutex<HashMap<K, Entry<V>>>,
}

impl<K: Eq + Hash + Clone, V> Cache<K, V> {
    pub(super) fn new(freshness: Duration, capacity: usize) -> Cache<K, V> {
        Cache {
            freshness,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn enabled(&self) -> bool {
        !self.freshness.is_zero() && self.capacity > 0
    }

    /// The number of entries held (expired ones included until the next
    /// lookup).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The entry of `key`: the fresh one, or a new one (expired entries
    /// and, past the capacity, the oldest are dropped first).
    fn entry(&self, key: K) -> Arc<OnceCell<Arc<V>>> {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|_, e| now.duration_since(e.born) < self.freshness);
        if let Some(e) = entries.get(&key) {
            return Arc::clone(&e.value);
        }
        while entries.len() >= self.capacity {
            let oldest = entries
                .iter()
                .min_by_key(|(_, e)| e.born)
                .map(|(k, _)| k.clone());
            let Some(oldest) = oldest else { break };
            entries.remove(&oldest);
        }
        let value = Arc::new(OnceCell::new());
        entries.insert(
            key,
            Entry {
                born: now,
                value: Arc::clone(&value),
            },
        );
        value
    }

    /// The value of `key`: the cached one, the one being computed, or
    /// `compute`'s.
    pub(super) async fn get_or_compute<E, F, Fut>(
        &self,
        key: K,
        compute: F,
    ) -> Result<(Arc<V>, CacheLookup), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        if !self.enabled() {
            return Ok((Arc::new(compute().await?), CacheLookup::Miss));
        }
        let cell = self.entry(key);
        let mut computed = false;
        let value = cell
            .get_or_try_init(|| {
                computed = true;
                async move { compute().await.map(Arc::new) }
            })
            .await?;
        let lookup = if computed {
            CacheLookup::Miss
        } else {
            CacheLookup::Hit
        };
        Ok((Arc::clone(value), lookup))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    async fn get(cache: &Cache<String, u32>, key: &str, value: u32) -> (u32, CacheLookup) {
        let (v, lookup) = cache
            .get_or_compute(key.to_owned(), || async move { Ok::<_, ()>(value) })
            .await
            .expect("no error");
        (*v, lookup)
    }

    #[tokio::test]
    async fn a_fresh_entry_is_reused_and_an_expired_one_recomputed() {
        let cache = Cache::new(Duration::from_millis(200), 8);
        assert_eq!(get(&cache, "a", 1).await, (1, CacheLookup::Miss));
        assert_eq!(get(&cache, "a", 2).await, (1, CacheLookup::Hit));
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(get(&cache, "a", 3).await, (3, CacheLookup::Miss));
    }

    #[tokio::test]
    async fn zero_freshness_always_computes() {
        let cache = Cache::new(Duration::ZERO, 8);
        assert_eq!(get(&cache, "a", 1).await, (1, CacheLookup::Miss));
        assert_eq!(get(&cache, "a", 2).await, (2, CacheLookup::Miss));
        assert_eq!(cache.len(), 0);
    }

    #[tokio::test]
    async fn the_entries_are_bounded_and_the_oldest_goes_first() {
        let cache = Cache::new(Duration::from_secs(60), 2);
        get(&cache, "a", 1).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        get(&cache, "b", 2).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        get(&cache, "c", 3).await;
        assert_eq!(cache.len(), 2);
        assert_eq!(get(&cache, "b", 0).await, (2, CacheLookup::Hit));
        assert_eq!(get(&cache, "c", 0).await, (3, CacheLookup::Hit));
        assert_eq!(get(&cache, "a", 4).await, (4, CacheLookup::Miss));
    }

    #[tokio::test]
    async fn keys_differ_by_every_part() {
        // As the report keys its entries: (admin, scope, hashed) differ.
        let cache: Cache<(String, bool), u32> = Cache::new(Duration::from_secs(60), 8);
        let mut lookups = Vec::new();
        for (key, value) in [
            (("admin-1".to_owned(), false), 1),
            (("admin-2".to_owned(), false), 2),
            (("admin-1".to_owned(), true), 3),
        ] {
            let (v, l) = cache
                .get_or_compute(key, || async move { Ok::<_, ()>(value) })
                .await
                .expect("no error");
            lookups.push((*v, l));
        }
        assert_eq!(
            lookups,
            vec![
                (1, CacheLookup::Miss),
                (2, CacheLookup::Miss),
                (3, CacheLookup::Miss)
            ]
        );
    }

    #[tokio::test]
    async fn concurrent_lookups_wait_for_one_computation() {
        let cache = Arc::new(Cache::<String, u32>::new(Duration::from_secs(60), 8));
        let runs = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (cache, runs) = (Arc::clone(&cache), Arc::clone(&runs));
                tokio::spawn(async move {
                    cache
                        .get_or_compute("k".to_owned(), || async move {
                            runs.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Ok::<_, ()>(7)
                        })
                        .await
                        .map(|(v, l)| (*v, l))
                })
            })
            .collect();
        let mut misses = 0;
        for task in tasks {
            let (v, lookup) = task.await.expect("joined").expect("no error");
            assert_eq!(v, 7);
            misses += usize::from(lookup == CacheLookup::Miss);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(misses, 1);
    }

    #[tokio::test]
    async fn a_failure_is_not_kept() {
        let cache: Cache<String, u32> = Cache::new(Duration::from_secs(60), 8);
        let failed = cache
            .get_or_compute("a".to_owned(), || async { Err::<u32, _>("down") })
            .await;
        assert!(failed.is_err());
        assert_eq!(get(&cache, "a", 5).await, (5, CacheLookup::Miss));
    }
}
