//! A brief in-process cache of the report's state per filter set, so the
//! page's requests for the same filters (the overview, the users pages, the
//! daily chart) share one computation instead of each asking ClickHouse.
//!
//! Freshness: an entry lives `freshness` from the moment its computation
//! starts, and every query it makes starts after that moment; so data
//! visible in the tables is in every answer to a request made more than
//! `freshness` later. Concurrent lookups of one key wait for one
//! computation (single-flight). A failed computation is not kept: the next
//! lookup computes again. A `freshness` of zero disables the cache.
//!
//! Refresh ahead: a lookup that finds an entry past half its life starts
//! its next computation in the background and is answered from the entry;
//! when that computation ends, its value replaces the entry (born when it
//! started). So a filter set asked for steadily — the default view at the
//! start of a week — is never waited for after its first computation, and
//! freshness is kept; one nobody asks for again just expires.
//!
//! Unchanged data: a lookup may bring what it observed of the tables (an
//! [`Observed`] version of their contents, read before the lookup). An
//! entry keeps the version observed before its computation started; a
//! lookup that observes the same version at a later moment knows nothing
//! was written in between, so the entry holds everything visible at that
//! moment and is renewed (born then). While nothing is written — the
//! tables of a finished import, the quiet hours — entries never expire and
//! nothing is computed again; while the ingest writes, the age rule above
//! holds as it is. The version is only ever compared for equality, and a
//! version once left is never seen again (a write makes a new part), so an
//! entry can be renewed only by a moment at which its data is still all
//! there is.
//!
//! Bounds: entries, and the bytes their values hold ([`Weigh`]); past
//! either, the least recently used entries go first. A value that left the
//! cache while requests still use it still weighs (it is still in memory)
//! until the last of them lets it go: the bound is on the values alive, not
//! only the ones held, so a cache that cannot hold every filter set in use
//! does not keep its bound's worth beside the evicted ones still being
//! answered from. A value being computed weighs too, once its computation
//! says how much it expects ([`Cache::reserve`]): room is made for it
//! before it is built, so the bound covers the values held, the ones still
//! in use and the ones on their way, not the held ones alone.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
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

/// Bytes of values per cache by default (`--report-cache-mb` sets the
/// states'): a state of all teams holds about 0.15 MB per 1,000 users
/// (about 23 MB at 150,000).
pub(super) const DEFAULT_BYTES: usize = 32 << 20;

/// What a lookup observed of the tables: a version of their whole contents
/// (equal versions: nothing written in between) and when it was read
/// (before the read was sent, so everything visible then is in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Observed {
    pub(super) version: u64,
    pub(super) at: Instant,
}

/// About how many bytes a cached value holds.
pub(super) trait Weigh {
    fn bytes(&self) -> usize;
}

/// What a lookup found.
enum Found<V> {
    /// The entry's cell: its value, or the computation to wait for or run.
    Cell(Arc<OnceCell<Arc<V>>>),
    /// The value of an entry past half its life, now being refreshed.
    Refresh(Arc<V>),
}

struct Entry<V> {
    /// Everything visible in the tables then is in the value.
    born: Instant,
    /// Last looked up (the least recently used go first past a bound;
    /// not `born`, which renewals set alike for every entry).
    used: Instant,
    /// The tables' version observed before the computation started.
    version: Option<u64>,
    value: Arc<OnceCell<Arc<V>>>,
    /// A computation of the next value runs in the background.
    refreshing: bool,
}

/// Values by key, computed once per key and `freshness`.
pub(super) struct Cache<K, V> {
    freshness: Duration,
    capacity: usize,
    budget: usize,
    entries: Mutex<HashMap<K, Entry<V>>>,
    /// Values out of the cache that requests still use, with their
    /// weight (locked after `entries`, never before).
    retired: Mutex<Vec<(Weak<V>, usize)>>,
    /// Bytes reserved by computations under way ([`Cache::reserve`]).
    reserved: AtomicUsize,
}

/// Bytes a computation under way expects to hold, counted against its
/// cache's bound until dropped.
pub(super) struct Reservation<'a> {
    reserved: &'a AtomicUsize,
    bytes: usize,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.reserved.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl<K, V> Cache<K, V>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Weigh + Send + Sync + 'static,
{
    pub(super) fn new(freshness: Duration, capacity: usize, budget: usize) -> Cache<K, V> {
        Cache {
            freshness,
            capacity,
            budget,
            entries: Mutex::new(HashMap::new()),
            retired: Mutex::new(Vec::new()),
            reserved: AtomicUsize::new(0),
        }
    }

    /// Counts `bytes` a computation is about to build against the bound
    /// until the reservation is dropped, and makes room for them now: the
    /// least recently used values go until the values alive and the
    /// reservations fit (all of them if need be, but those being
    /// refreshed: their next value is on its way). A cache that is off
    /// holds nothing to make room in.
    pub(super) fn reserve(&self, bytes: usize) -> Reservation<'_> {
        self.reserved.fetch_add(bytes, Ordering::Relaxed);
        let reservation = Reservation {
            reserved: &self.reserved,
            bytes,
        };
        if self.enabled() && bytes > 0 {
            let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            self.evict(&mut entries, Instant::now(), self.capacity);
        }
        reservation
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

    /// Drops the expired entries, then the least recently used while there
    /// are more than `room` entries; then, while the values alive — theirs,
    /// those of entries dropped that are still in use, and the bytes
    /// reserved for values under way — weigh more than the budget, the
    /// least recently used value not being refreshed. Without reservations
    /// the last such value stays, however much it weighs (a bound below one
    /// value still caches that one).
    fn evict(&self, entries: &mut HashMap<K, Entry<V>>, now: Instant, room: usize) {
        let mut retired = self.retired.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, e) in entries.extract_if(|_, e| now.duration_since(e.born) >= self.freshness) {
            retire(&mut retired, e);
        }
        retired.retain(|(value, _)| value.strong_count() > 0);
        while entries.len() > room {
            let Some(oldest) = least_used(entries, |_| true) else {
                break;
            };
            if let Some(e) = entries.remove(&oldest) {
                retire(&mut retired, e);
            }
        }
        let reserved = self.reserved.load(Ordering::Relaxed);
        let keep = usize::from(reserved == 0);
        let evictable = |e: &Entry<V>| e.value.initialized() && !e.refreshing;
        loop {
            let weight = entries
                .values()
                .filter_map(|e| e.value.get().map(|v| v.bytes()))
                .sum::<usize>()
                + retired.iter().map(|(_, bytes)| bytes).sum::<usize>()
                + reserved;
            if weight <= self.budget || entries.values().filter(|e| evictable(e)).count() <= keep {
                break;
            }
            let Some(oldest) = least_used(entries, evictable) else {
                break;
            };
            if let Some(e) = entries.remove(&oldest) {
                retire(&mut retired, e);
            }
        }
    }

    /// Puts `entry` in for `key`; the value it replaces is retired.
    fn replace(&self, entries: &mut HashMap<K, Entry<V>>, key: K, entry: Entry<V>) {
        if let Some(old) = entries.insert(key, entry) {
            retire(
                &mut self.retired.lock().unwrap_or_else(PoisonError::into_inner),
                old,
            );
        }
    }

    /// The entry of `key`: the fresh one (renewed if the tables have not
    /// changed since its computation started), or a new one; or the value
    /// of one past half its life, which the caller refreshes.
    fn entry(&self, key: &K, observed: Option<Observed>) -> Found<V> {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(o) = observed {
            // Every entry of the same version holds everything there is.
            for e in entries.values_mut() {
                if e.version == Some(o.version) && o.at > e.born {
                    e.born = o.at;
                }
            }
        }
        if let Some(e) = entries.get_mut(key) {
            e.used = now;
        }
        self.evict(&mut entries, now, self.capacity);
        if let Some(e) = entries.get_mut(key) {
            if !e.refreshing && now.duration_since(e.born) >= self.freshness / 2 {
                if let Some(value) = e.value.get() {
                    e.refreshing = true;
                    return Found::Refresh(Arc::clone(value));
                }
            }
            return Found::Cell(Arc::clone(&e.value));
        }
        self.evict(&mut entries, now, self.capacity - 1);
        let value = Arc::new(OnceCell::new());
        entries.insert(
            key.clone(),
            Entry {
                born: now,
                used: now,
                version: observed.map(|o| o.version),
                value: Arc::clone(&value),
                refreshing: false,
            },
        );
        Found::Cell(value)
    }

    /// The value of `key`: the cached one, the one being computed, or
    /// `compute`'s (run in the background to refresh an entry past half its
    /// life). `observed`: the tables' version, read before this call.
    pub(super) async fn get_or_compute<E, F, Fut>(
        self: &Arc<Self>,
        key: K,
        observed: Option<Observed>,
        compute: F,
    ) -> Result<(Arc<V>, CacheLookup), E>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
        E: Send + 'static,
    {
        if !self.enabled() {
            return Ok((Arc::new(compute().await?), CacheLookup::Miss));
        }
        let cell = match self.entry(&key, observed) {
            Found::Cell(cell) => cell,
            Found::Refresh(value) => {
                self.refresh(key, observed, compute);
                return Ok((value, CacheLookup::Hit));
            }
        };
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

    /// Computes `key`'s next value in the background; on success it
    /// replaces the entry, born when the computation started.
    fn refresh<E, F, Fut>(self: &Arc<Self>, key: K, observed: Option<Observed>, compute: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
        E: Send + 'static,
    {
        let cache = Arc::clone(self);
        let started = Instant::now();
        tokio::spawn(async move {
            let outcome = compute().await;
            let mut entries = cache.entries.lock().unwrap_or_else(PoisonError::into_inner);
            match outcome {
                Ok(value) => {
                    cache.evict(&mut entries, Instant::now(), cache.capacity - 1);
                    cache.replace(
                        &mut entries,
                        key,
                        Entry {
                            born: started,
                            used: Instant::now(),
                            version: observed.map(|o| o.version),
                            value: Arc::new(OnceCell::new_with(Some(Arc::new(value)))),
                            refreshing: false,
                        },
                    );
                }
                // Kept until it expires; a later lookup tries again.
                Err(_) => {
                    if let Some(e) = entries.get_mut(&key) {
                        e.refreshing = false;
                    }
                }
            }
        });
    }
}

/// The key of the least recently used entry `which` accepts.
fn least_used<K: Clone, V>(
    entries: &HashMap<K, Entry<V>>,
    which: impl Fn(&Entry<V>) -> bool,
) -> Option<K> {
    entries
        .iter()
        .filter(|(_, e)| which(e))
        .min_by_key(|(_, e)| e.used)
        .map(|(k, _)| k.clone())
}

/// Keeps `entry`'s value weighing in `retired` while something still
/// uses it once the entry is gone.
fn retire<V: Weigh>(retired: &mut Vec<(Weak<V>, usize)>, entry: Entry<V>) {
    let Some(value) = entry.value.get() else {
        return;
    };
    let (weak, bytes) = (Arc::downgrade(value), value.bytes());
    drop(entry);
    if weak.strong_count() > 0 {
        retired.push((weak, bytes));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A test value weighs its number.
    impl Weigh for u32 {
        fn bytes(&self) -> usize {
            *self as usize
        }
    }

    async fn get(cache: &Arc<Cache<String, u32>>, key: &str, value: u32) -> (u32, CacheLookup) {
        let (v, lookup) = cache
            .get_or_compute(
                key.to_owned(),
                None,
                move || async move { Ok::<_, ()>(value) },
            )
            .await
            .expect("no error");
        (*v, lookup)
    }

    #[tokio::test]
    async fn a_fresh_entry_is_reused_and_an_expired_one_recomputed() {
        let cache = Arc::new(Cache::new(Duration::from_millis(200), 8, usize::MAX));
        assert_eq!(get(&cache, "a", 1).await, (1, CacheLookup::Miss));
        assert_eq!(get(&cache, "a", 2).await, (1, CacheLookup::Hit));
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(get(&cache, "a", 3).await, (3, CacheLookup::Miss));
    }

    #[tokio::test]
    async fn zero_freshness_always_computes() {
        let cache = Arc::new(Cache::new(Duration::ZERO, 8, usize::MAX));
        assert_eq!(get(&cache, "a", 1).await, (1, CacheLookup::Miss));
        assert_eq!(get(&cache, "a", 2).await, (2, CacheLookup::Miss));
        assert_eq!(cache.len(), 0);
    }

    #[tokio::test]
    async fn the_entries_are_bounded_and_the_oldest_goes_first() {
        let cache = Arc::new(Cache::new(Duration::from_secs(60), 2, usize::MAX));
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
        let cache: Arc<Cache<(String, bool), u32>> =
            Arc::new(Cache::new(Duration::from_secs(60), 8, usize::MAX));
        let mut lookups = Vec::new();
        for (key, value) in [
            (("admin-1".to_owned(), false), 1),
            (("admin-2".to_owned(), false), 2),
            (("admin-1".to_owned(), true), 3),
        ] {
            let (v, l) = cache
                .get_or_compute(key, None, move || async move { Ok::<_, ()>(value) })
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
        let cache = Arc::new(Cache::<String, u32>::new(
            Duration::from_secs(60),
            8,
            usize::MAX,
        ));
        let runs = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (cache, runs) = (Arc::clone(&cache), Arc::clone(&runs));
                tokio::spawn(async move {
                    cache
                        .get_or_compute("k".to_owned(), None, || async move {
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
        let cache: Arc<Cache<String, u32>> =
            Arc::new(Cache::new(Duration::from_secs(60), 8, usize::MAX));
        let failed = cache
            .get_or_compute("a".to_owned(), None, || async { Err::<u32, _>("down") })
            .await;
        assert!(failed.is_err());
        assert_eq!(get(&cache, "a", 5).await, (5, CacheLookup::Miss));
    }

    #[tokio::test]
    async fn values_are_bounded_by_their_bytes_and_the_oldest_goes_first() {
        let cache = Arc::new(Cache::new(Duration::from_secs(60), 8, 100));
        get(&cache, "a", 60).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        get(&cache, "b", 30).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        // 60 + 30 + 20 > 100: the oldest goes at the next lookup.
        get(&cache, "c", 20).await;
        get(&cache, "c", 0).await;
        assert_eq!(cache.len(), 2);
        assert_eq!(get(&cache, "b", 0).await, (30, CacheLookup::Hit));
        assert_eq!(get(&cache, "a", 1).await, (1, CacheLookup::Miss));
    }

    #[tokio::test]
    async fn values_out_of_the_cache_but_in_use_still_weigh() {
        let cache = Arc::new(Cache::new(Duration::from_secs(60), 8, 100));
        // A request still holds "a" when it leaves the cache.
        let (held, _) = cache
            .get_or_compute("a".to_owned(), None, || async { Ok::<_, ()>(60) })
            .await
            .expect("no error");
        tokio::time::sleep(Duration::from_millis(5)).await;
        get(&cache, "b", 50).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        get(&cache, "c", 30).await;
        // 60 + 50 + 30 > 100: "a" goes, but is still alive (60); 60 + 50
        // + 30 is still over: "b" goes too.
        get(&cache, "c", 0).await;
        assert_eq!(cache.len(), 1);
        assert_eq!(get(&cache, "c", 0).await, (30, CacheLookup::Hit));
        // Once "a" is let go, "b" fits again beside "c".
        drop(held);
        get(&cache, "b", 50).await;
        get(&cache, "c", 0).await;
        assert_eq!(cache.len(), 2);
        assert_eq!(get(&cache, "b", 0).await, (50, CacheLookup::Hit));
    }

    #[tokio::test]
    async fn a_reservation_makes_room_before_its_value_is_built() {
        let cache = Arc::new(Cache::new(Duration::from_secs(60), 8, 100));
        get(&cache, "a", 40).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        get(&cache, "b", 30).await;
        // 40 + 30 + 50 > 100: the least recently used ("a") goes at once.
        let building = cache.reserve(50);
        assert_eq!(cache.len(), 1);
        assert_eq!(get(&cache, "b", 0).await, (30, CacheLookup::Hit));
        // While it is reserved, what is held stays within the rest.
        get(&cache, "c", 25).await;
        get(&cache, "c", 0).await;
        assert_eq!(cache.len(), 1, "30 + 25 + 50 > 100: \"b\" went");
        drop(building);
        get(&cache, "b", 30).await;
        get(&cache, "b", 0).await;
        assert_eq!(cache.len(), 2, "released: 25 + 30 fit again");
    }

    #[tokio::test]
    async fn a_reservation_over_the_bound_leaves_nothing_but_what_is_refreshed() {
        let cache = Arc::new(Cache::new(Duration::from_millis(400), 8, 100));
        get(&cache, "a", 40).await;
        get(&cache, "b", 30).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
        // "a" is being refreshed: its value answers until the next one comes.
        let refreshed = Arc::new(tokio::sync::Notify::new());
        let answer = cache
            .get_or_compute("a".to_owned(), None, {
                let refreshed = Arc::clone(&refreshed);
                move || async move {
                    refreshed.notified().await;
                    Ok::<_, ()>(41)
                }
            })
            .await
            .map(|(v, l)| (*v, l));
        assert_eq!(answer, Ok((40, CacheLookup::Hit)));
        let building = cache.reserve(500);
        assert_eq!(cache.len(), 1, "only the one being refreshed is kept");
        assert_eq!(get(&cache, "a", 0).await, (40, CacheLookup::Hit));
        drop(building);
        refreshed.notify_one();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(get(&cache, "a", 0).await, (41, CacheLookup::Hit));
    }

    #[tokio::test]
    async fn without_a_reservation_one_value_over_the_bound_is_still_held() {
        let cache = Arc::new(Cache::new(Duration::from_secs(60), 8, 100));
        get(&cache, "a", 150).await;
        get(&cache, "a", 0).await;
        assert_eq!(get(&cache, "a", 0).await, (150, CacheLookup::Hit));
        get(&cache, "b", 10).await;
        get(&cache, "b", 0).await;
        assert_eq!(get(&cache, "b", 0).await, (10, CacheLookup::Hit));
        assert_eq!(get(&cache, "a", 1).await, (1, CacheLookup::Miss));
    }

    #[tokio::test]
    async fn an_entry_past_half_its_life_is_refreshed_in_the_background() {
        let cache = Arc::new(Cache::new(Duration::from_millis(400), 8, usize::MAX));
        assert_eq!(get(&cache, "a", 1).await, (1, CacheLookup::Miss));
        // Before half its life: kept, no computation.
        assert_eq!(get(&cache, "a", 2).await, (1, CacheLookup::Hit));
        tokio::time::sleep(Duration::from_millis(250)).await;
        // Past half: answered from the entry at once, the next value
        // computed meanwhile.
        let slow = cache
            .get_or_compute("a".to_owned(), None, || async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok::<_, ()>(3)
            })
            .await
            .map(|(v, l)| (*v, l));
        assert_eq!(slow, Ok((1, CacheLookup::Hit)));
        // While it runs, no second refresh starts.
        assert_eq!(get(&cache, "a", 4).await, (1, CacheLookup::Hit));
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The refreshed value, born when its computation started: it outlives
        // the first entry's 400 ms.
        assert_eq!(get(&cache, "a", 5).await, (3, CacheLookup::Hit));
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(get(&cache, "a", 6).await.0, 3);
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_the_entry_until_it_expires() {
        let cache = Arc::new(Cache::new(Duration::from_millis(300), 8, usize::MAX));
        get(&cache, "a", 1).await;
        tokio::time::sleep(Duration::from_millis(170)).await;
        let answer = cache
            .get_or_compute("a".to_owned(), None, || async { Err::<u32, _>("down") })
            .await
            .map(|(v, l)| (*v, l));
        assert_eq!(answer, Ok((1, CacheLookup::Hit)));
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Tried again by the next lookup past half its life.
        assert_eq!(get(&cache, "a", 2).await, (1, CacheLookup::Hit));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(get(&cache, "a", 0).await, (2, CacheLookup::Hit));
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(get(&cache, "a", 7).await.0, 7, "refreshed ones expire too");
    }

    async fn seen(
        cache: &Arc<Cache<String, u32>>,
        key: &str,
        value: u32,
        observed: Observed,
    ) -> (u32, CacheLookup) {
        let (v, lookup) = cache
            .get_or_compute(key.to_owned(), Some(observed), move || async move {
                Ok::<_, ()>(value)
            })
            .await
            .expect("no error");
        (*v, lookup)
    }

    fn version(version: u64) -> Observed {
        Observed {
            version,
            at: Instant::now(),
        }
    }

    #[tokio::test]
    async fn an_entry_lives_on_while_the_tables_are_unchanged() {
        let cache = Arc::new(Cache::new(Duration::from_millis(400), 8, usize::MAX));
        assert_eq!(
            seen(&cache, "a", 1, version(7)).await,
            (1, CacheLookup::Miss)
        );
        tokio::time::sleep(Duration::from_millis(450)).await;
        // Past its life, but nothing was written: renewed, not recomputed.
        assert_eq!(
            seen(&cache, "a", 2, version(7)).await,
            (1, CacheLookup::Hit)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Renewed 100 ms ago: fresh without any version, too.
        assert_eq!(get(&cache, "a", 3).await, (1, CacheLookup::Hit));
        tokio::time::sleep(Duration::from_millis(350)).await;
        // Written since: the age rule alone (450 ms > 400 ms), so computed.
        assert_eq!(
            seen(&cache, "a", 4, version(8)).await,
            (4, CacheLookup::Miss)
        );
    }

    #[tokio::test]
    async fn past_a_bound_the_least_recently_used_go_first_even_when_renewed_alike() {
        let cache = Arc::new(Cache::new(Duration::from_millis(200), 2, usize::MAX));
        seen(&cache, "a", 1, version(7)).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        seen(&cache, "b", 2, version(7)).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
        // Both renewed by the same reading; "a" used last.
        assert_eq!(
            seen(&cache, "a", 0, version(7)).await,
            (1, CacheLookup::Hit)
        );
        seen(&cache, "c", 3, version(7)).await;
        assert_eq!(
            seen(&cache, "a", 0, version(7)).await,
            (1, CacheLookup::Hit)
        );
        assert_eq!(
            seen(&cache, "b", 4, version(7)).await,
            (4, CacheLookup::Miss)
        );
    }

    #[tokio::test]
    async fn every_entry_of_an_unchanged_version_lives_on() {
        let cache = Arc::new(Cache::new(Duration::from_millis(200), 8, usize::MAX));
        seen(&cache, "a", 1, version(7)).await;
        seen(&cache, "b", 2, version(7)).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
        // A lookup of "a" sees nothing written: "b" is not dropped as old.
        assert_eq!(
            seen(&cache, "a", 0, version(7)).await,
            (1, CacheLookup::Hit)
        );
        assert_eq!(get(&cache, "b", 0).await, (2, CacheLookup::Hit));
    }

    #[tokio::test]
    async fn a_version_observed_before_the_computation_renews_nothing() {
        let cache = Arc::new(Cache::new(Duration::from_millis(200), 8, usize::MAX));
        let before = version(7);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(
            seen(&cache, "a", 1, version(7)).await,
            (1, CacheLookup::Miss)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        // Its moment is older than the entry: it says nothing newer.
        assert_eq!(seen(&cache, "a", 2, before).await, (2, CacheLookup::Miss));
    }

    #[tokio::test]
    async fn without_a_version_an_entry_is_not_renewed() {
        let cache = Arc::new(Cache::new(Duration::from_millis(200), 8, usize::MAX));
        assert_eq!(get(&cache, "a", 1).await, (1, CacheLookup::Miss));
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(
            seen(&cache, "a", 2, version(7)).await,
            (2, CacheLookup::Miss)
        );
    }
}
