//! ferrocache-store: the cache engine. Index, memory accounting, eviction, expiry, CAS and counters,
//! with no sockets and no protocol. Time is passed in by the caller as `now`, in whole seconds on the
//! server's relative clock (like memcached's `current_time`), which keeps every rule testable.
//!
//!
//! # Layout (first engine; issue #3 replaces it with a segment-based one)
//! The key space is split into shards by key hash, each a mutex around a hash table and a FIFO
//! queue with a "visited" bit per item (CLOCK, a second-chance FIFO): a hit only sets a bit, no list
//! update; eviction pops the queue head and gives visited items one more round. Every item is
//! charged its key, its value and [`ITEM_OVERHEAD`] bytes for the table slot, the queue slot and
//! its allocation, so `max_bytes` bounds what the store holds, index included.
//!
//! Flush and expiry follow memcached 1.6: an item is expired when `exptime != 0 && exptime <= now`;
//! `flush_all` sets an "oldest live" time and, when it takes effect at once, an oldest sequence
//! number, so that items stored later in the same second survive.

mod numeric;
mod shard;

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;

use shard::{FlushState, Shard};

/// Relative time in seconds since the server started (memcached's `rel_time_t`). 0 in an exptime
/// means "never expires".
pub type RelTime = u32;

/// What the server hands the store at start.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `-m` in bytes: a hard bound on everything the store holds, index included.
    pub max_bytes: usize,
    /// `-I`: the largest item memcached would accept (see [`item_size_ok`]).
    pub item_size_max: usize,
    /// `false` with `-M`: answer out-of-memory instead of evicting.
    pub evictions: bool,
    /// `false` with `-C`: CAS ids are not kept (every item's cas is 0).
    pub use_cas: bool,
}

/// An item as read: the value bytes (shared, no copy), client flags and CAS id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub value: Bytes,
    pub flags: u32,
    pub cas: u64,
}

/// Which storage command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    /// Compare-and-swap with the CAS id the client read.
    Cas(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    Stored,
    NotStored,
    Exists,
    NotFound,
    /// The item (after append/prepend, the combined item) is over `item_size_max`.
    TooLarge,
    /// `-M` and no room.
    OutOfMemory,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    NotFound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TouchOutcome {
    Touched,
    NotFound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaOutcome {
    /// The new value.
    Value(u64),
    NotFound,
    /// The stored value is not a decimal number memcached would accept.
    NonNumeric,
    /// -M and no room for the rewritten item.
    OutOfMemory,
}

/// Counters with memcached's `stats` names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub curr_items: u64,
    pub total_items: u64,
    pub bytes: u64,
    pub evictions: u64,
    pub reclaimed: u64,
    pub expired_unfetched: u64,
    pub evicted_unfetched: u64,
    pub get_hits: u64,
    pub get_misses: u64,
    pub get_expired: u64,
    pub get_flushed: u64,
    pub delete_hits: u64,
    pub delete_misses: u64,
    pub incr_hits: u64,
    pub incr_misses: u64,
    pub decr_hits: u64,
    pub decr_misses: u64,
    pub cas_hits: u64,
    pub cas_misses: u64,
    pub cas_badval: u64,
    pub touch_hits: u64,
    pub touch_misses: u64,
    /// Stores refused for lack of memory (with `-M`).
    pub outofmemory: u64,
}

/// memcached's `item_size_ok`: would an item with this key length, flags and value length fit under
/// `item_size_max`? memcached counts a 48-byte header, key + 1, 4 bytes of flags when non-zero, the
/// value plus "\r\n", and 8 bytes of CAS when CAS is on.
pub fn item_size_ok(
    item_size_max: usize,
    use_cas: bool,
    key_len: usize,
    flags: u32,
    value_len: usize,
) -> bool {
    let total = 48
        + key_len
        + 1
        + if flags != 0 { 4 } else { 0 }
        + value_len
        + 2
        + if use_cas { 8 } else { 0 };
    total <= item_size_max
}

/// Bytes charged per item beyond its key and value: the 40-byte table slot with hashbrown's
/// control byte and load-factor slack (about 55 bytes on average), the 16-byte queue slot (up to
/// twice that before compaction), and the `Arc` header and allocator rounding of the item's one
/// allocation (about 30). Measured with `ferrobench fill` (20-byte keys, 32-byte values, -m 64):
/// the process grows by about 168 bytes per item, against 52 + 120 charged.
pub const ITEM_OVERHEAD: usize = 120;

/// Longest key the store accepts (memcached's limit).
pub const MAX_KEY_LENGTH: usize = 250;

/// The cache. `Send + Sync`: shared by all worker threads.
pub struct Store {
    config: StoreConfig,
    shards: Box<[Mutex<Shard>]>,
    hasher: std::collections::hash_map::RandomState,
    /// Source of CAS ids and of the sequence numbers `flush_all` compares.
    next_cas: AtomicU64,
    flush: Mutex<FlushState>,
}

impl Store {
    /// Builds an empty store. The shard count is chosen so that each shard's budget holds several
    /// of the largest items `item_size_max` allows.
    pub fn new(config: StoreConfig) -> Store {
        let per_shard_min = config.item_size_max.saturating_add(ITEM_OVERHEAD + 250) * 4;
        let mut count = (config.max_bytes / per_shard_min.max(1)).clamp(1, 64);
        count = 1 << (usize::BITS - 1 - count.leading_zeros());
        let budget = config.max_bytes / count;
        let shards = (0..count).map(|_| Mutex::new(Shard::new(budget))).collect();
        Store {
            config,
            shards,
            hasher: std::collections::hash_map::RandomState::new(),
            next_cas: AtomicU64::new(1),
            flush: Mutex::new(FlushState::default()),
        }
    }

    /// The key's hash and its shard. The shard comes from bits 32 and up: the shard's table
    /// indexes with the low bits and filters with the top seven.
    fn shard(&self, key: &[u8]) -> (u64, &Mutex<Shard>) {
        let hash = self.hasher.hash_one(key);
        (
            hash,
            &self.shards[((hash >> 32) as usize) & (self.shards.len() - 1)],
        )
    }

    fn ctx(&self, now: RelTime) -> shard::Ctx<'_> {
        shard::Ctx {
            now,
            flush: *self.flush.lock(),
            next_cas: &self.next_cas,
            config: &self.config,
            hasher: &self.hasher,
        }
    }

    /// `get`/`gets`: counts get_hits/get_misses/get_expired/get_flushed.
    pub fn get(&self, key: &[u8], now: RelTime) -> Option<Item> {
        let (hash, shard) = self.shard(key);
        shard.lock().get(hash, key, None, &self.ctx(now))
    }

    /// `gat`/`gats`: get and set a new exptime. memcached counts these as touches only
    /// (touch_hits/touch_misses), not as get hits or misses.
    pub fn get_and_touch(&self, key: &[u8], exptime: RelTime, now: RelTime) -> Option<Item> {
        let (hash, shard) = self.shard(key);
        shard.lock().get(hash, key, Some(exptime), &self.ctx(now))
    }

    pub fn touch(&self, key: &[u8], exptime: RelTime, now: RelTime) -> TouchOutcome {
        let (hash, shard) = self.shard(key);
        shard.lock().touch(hash, key, exptime, &self.ctx(now))
    }

    #[allow(clippy::too_many_arguments)]
    pub fn store(
        &self,
        mode: StoreMode,
        key: &[u8],
        flags: u32,
        exptime: RelTime,
        value: &[u8],
        now: RelTime,
    ) -> StoreOutcome {
        if !item_size_ok(
            self.config.item_size_max,
            self.config.use_cas,
            key.len(),
            flags,
            value.len(),
        ) {
            return StoreOutcome::TooLarge;
        }
        let (hash, shard) = self.shard(key);
        shard
            .lock()
            .store(hash, mode, key, flags, exptime, value, &self.ctx(now))
    }

    pub fn delete(&self, key: &[u8], now: RelTime) -> DeleteOutcome {
        let (hash, shard) = self.shard(key);
        shard.lock().delete(hash, key, true, &self.ctx(now))
    }

    /// Removes `key` without counting a delete (memcached does this when a `set` is refused, so
    /// that the old value does not outlive the failed write).
    pub fn unlink(&self, key: &[u8], now: RelTime) {
        let (hash, shard) = self.shard(key);
        shard.lock().delete(hash, key, false, &self.ctx(now));
    }

    /// `incr` (`incr == true`) or `decr`.
    pub fn delta(&self, key: &[u8], incr: bool, delta: u64, now: RelTime) -> DeltaOutcome {
        let (hash, shard) = self.shard(key);
        shard.lock().delta(hash, key, incr, delta, &self.ctx(now))
    }

    /// `flush_all`: every item stored before `when` is invalid once `now >= when`. Mirrors
    /// memcached's `process_flush_all_command`: with CAS on, the oldest live time is `when - 1`
    /// and, for a flush that takes effect now, items older than the current sequence number go
    /// too; with CAS off, items stored in the second of `when` itself are flushed as well.
    pub fn flush_all(&self, when: RelTime, now: RelTime) {
        let mut flush = self.flush.lock();
        if self.config.use_cas {
            flush.oldest_live = when.saturating_sub(1);
            if flush.oldest_live <= now {
                flush.oldest_seq = self.next_cas.load(Ordering::Relaxed);
            }
        } else {
            flush.oldest_live = when;
        }
    }

    pub fn stats(&self) -> StoreStats {
        let mut total = StoreStats::default();
        for shard in self.shards.iter() {
            shard.lock().add_stats(&mut total);
        }
        total
    }

    /// `stats reset`: zero the counters memcached's `stats reset` zeroes (not curr_items/bytes).
    pub fn reset_stats(&self) {
        for shard in self.shards.iter() {
            shard.lock().reset_stats();
        }
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// How many shards the key space is split into.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(max_bytes: usize, evictions: bool, use_cas: bool) -> Store {
        Store::new(StoreConfig {
            max_bytes,
            item_size_max: 1024 * 1024,
            evictions,
            use_cas,
        })
    }

    fn small() -> Store {
        store(64 * 1024 * 1024, true, true)
    }

    #[test]
    fn set_get_delete() {
        let s = small();
        assert_eq!(
            s.store(StoreMode::Set, b"k", 3, 0, b"v", 100),
            StoreOutcome::Stored
        );
        let item = s.get(b"k", 100).expect("hit");
        assert_eq!((&item.value[..], item.flags), (&b"v"[..], 3));
        assert_eq!(s.delete(b"k", 100), DeleteOutcome::Deleted);
        assert_eq!(s.delete(b"k", 100), DeleteOutcome::NotFound);
        assert!(s.get(b"k", 100).is_none());
        let st = s.stats();
        assert_eq!(
            (st.get_hits, st.get_misses, st.delete_hits, st.delete_misses),
            (1, 1, 1, 1)
        );
    }

    #[test]
    fn add_replace_append_prepend() {
        let s = small();
        assert_eq!(
            s.store(StoreMode::Replace, b"k", 0, 0, b"a", 1),
            StoreOutcome::NotStored
        );
        assert_eq!(
            s.store(StoreMode::Append, b"k", 0, 0, b"a", 1),
            StoreOutcome::NotStored
        );
        assert_eq!(
            s.store(StoreMode::Add, b"k", 7, 0, b"b", 1),
            StoreOutcome::Stored
        );
        assert_eq!(
            s.store(StoreMode::Add, b"k", 0, 0, b"c", 1),
            StoreOutcome::NotStored
        );
        assert_eq!(
            s.store(StoreMode::Append, b"k", 0, 0, b"z", 1),
            StoreOutcome::Stored
        );
        assert_eq!(
            s.store(StoreMode::Prepend, b"k", 0, 0, b"a", 1),
            StoreOutcome::Stored
        );
        let item = s.get(b"k", 1).expect("hit");
        assert_eq!(&item.value[..], b"abz");
        assert_eq!(item.flags, 7, "append keeps the flags");
    }

    #[test]
    fn cas_ids_change_with_every_write() {
        let s = small();
        s.store(StoreMode::Set, b"k", 0, 0, b"a", 1);
        let first = s.get(b"k", 1).expect("hit").cas;
        assert_eq!(
            s.store(StoreMode::Cas(first + 1), b"k", 0, 0, b"b", 1),
            StoreOutcome::Exists
        );
        assert_eq!(
            s.store(StoreMode::Cas(first), b"k", 0, 0, b"b", 1),
            StoreOutcome::Stored
        );
        let second = s.get(b"k", 1).expect("hit").cas;
        assert_ne!(first, second);
        assert_eq!(
            s.store(StoreMode::Cas(first), b"k", 0, 0, b"c", 1),
            StoreOutcome::Exists
        );
        assert_eq!(
            s.store(StoreMode::Cas(1), b"nokey", 0, 0, b"c", 1),
            StoreOutcome::NotFound
        );
        s.touch(b"k", 100, 1);
        assert_eq!(
            s.get(b"k", 1).expect("hit").cas,
            second,
            "touch keeps the CAS id"
        );
        let st = s.stats();
        assert_eq!((st.cas_hits, st.cas_badval, st.cas_misses), (1, 2, 1));
    }

    #[test]
    fn cas_ids_are_unique_across_threads() {
        let s = std::sync::Arc::new(small());
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    (0..1000)
                        .map(|i| {
                            let key = format!("{t}-{i}");
                            s.store(StoreMode::Set, key.as_bytes(), 0, 0, b"v", 1);
                            s.get(key.as_bytes(), 1).expect("hit").cas
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 4000);
    }

    #[test]
    fn disabled_cas_is_zero_and_cas_never_matches() {
        let s = store(64 * 1024 * 1024, true, false);
        s.store(StoreMode::Set, b"k", 0, 0, b"a", 1);
        assert_eq!(s.get(b"k", 1).expect("hit").cas, 0);
        assert_eq!(
            s.store(StoreMode::Cas(12345), b"k", 0, 0, b"b", 1),
            StoreOutcome::Exists
        );
        assert_eq!(
            s.store(StoreMode::Cas(0), b"k", 0, 0, b"b", 1),
            StoreOutcome::Exists
        );
    }

    #[test]
    fn expiry_boundary() {
        let s = small();
        s.store(StoreMode::Set, b"k", 0, 110, b"v", 100);
        assert!(s.get(b"k", 109).is_some());
        assert!(s.get(b"k", 110).is_none(), "expired when exptime <= now");
        assert_eq!(s.stats().get_expired, 1);
        assert_eq!(s.touch(b"k", 0, 110), TouchOutcome::NotFound);
    }

    #[test]
    fn gat_counts_touches_and_sets_exptime() {
        let s = small();
        s.store(StoreMode::Set, b"k", 0, 0, b"v", 100);
        assert!(s.get_and_touch(b"k", 105, 100).is_some());
        assert!(s.get_and_touch(b"x", 105, 100).is_none());
        assert!(s.get(b"k", 105).is_none());
        let st = s.stats();
        assert_eq!((st.touch_hits, st.touch_misses, st.get_hits), (1, 1, 0));
    }

    #[test]
    fn flush_now_spares_later_writes_in_the_same_second() {
        let s = small();
        s.store(StoreMode::Set, b"old", 0, 0, b"v", 100);
        s.flush_all(100, 100);
        s.store(StoreMode::Set, b"new", 0, 0, b"v", 100);
        assert!(s.get(b"old", 100).is_none());
        assert!(s.get(b"new", 100).is_some());
        assert_eq!(s.stats().get_flushed, 1);
    }

    #[test]
    fn delayed_flush() {
        let s = small();
        s.store(StoreMode::Set, b"a", 0, 0, b"v", 100);
        s.flush_all(110, 100);
        assert!(s.get(b"a", 105).is_some(), "not yet");
        s.store(StoreMode::Set, b"b", 0, 0, b"v", 111);
        assert!(s.get(b"a", 110).is_none(), "gone at the flush time");
        assert!(s.get(b"b", 111).is_some(), "stored after the flush time");
    }

    #[test]
    fn incr_decr_like_memcached() {
        let s = small();
        s.store(StoreMode::Set, b"n", 5, 0, b"10", 1);
        assert_eq!(s.delta(b"n", false, 1, 1), DeltaOutcome::Value(9));
        assert_eq!(
            &s.get(b"n", 1).expect("hit").value[..],
            b"9 ",
            "padded in place"
        );
        assert_eq!(s.delta(b"n", true, 991, 1), DeltaOutcome::Value(1000));
        assert_eq!(&s.get(b"n", 1).expect("hit").value[..], b"1000");
        assert_eq!(s.delta(b"n", false, 5000, 1), DeltaOutcome::Value(0));
        s.store(StoreMode::Set, b"n", 0, 0, b"18446744073709551615", 1);
        assert_eq!(s.delta(b"n", true, 2, 1), DeltaOutcome::Value(1));
        s.store(StoreMode::Set, b"t", 0, 0, b"abc", 1);
        assert_eq!(s.delta(b"t", true, 1, 1), DeltaOutcome::NonNumeric);
        assert_eq!(s.delta(b"none", true, 1, 1), DeltaOutcome::NotFound);
        assert_eq!(s.get(b"n", 1).expect("hit").flags, 0);
    }

    #[test]
    fn append_over_the_item_limit_is_too_large() {
        let s = small();
        let half = vec![b'x'; 600 * 1024];
        s.store(StoreMode::Set, b"k", 0, 0, &half, 1);
        assert_eq!(
            s.store(StoreMode::Append, b"k", 0, 0, &half, 1),
            StoreOutcome::TooLarge
        );
        assert_eq!(
            s.get(b"k", 1).expect("old value stays").value.len(),
            half.len()
        );
    }

    #[test]
    fn evicts_within_the_bound_and_m_refuses() {
        let s = store(2 * 1024 * 1024, true, true);
        let value = vec![b'v'; 1000];
        for i in 0..10_000 {
            let key = format!("key{i}");
            assert_eq!(
                s.store(StoreMode::Set, key.as_bytes(), 0, 0, &value, 1),
                StoreOutcome::Stored
            );
            assert!(s.stats().bytes <= 2 * 1024 * 1024);
        }
        let st = s.stats();
        assert!(st.evictions > 0 && st.evicted_unfetched > 0);
        assert!(s.get(b"key9999", 1).is_some(), "the newest item survives");

        let s = store(2 * 1024 * 1024, false, true);
        let mut refused = false;
        for i in 0..10_000 {
            let key = format!("key{i}");
            match s.store(StoreMode::Set, key.as_bytes(), 0, 0, &value, 1) {
                StoreOutcome::Stored => {}
                StoreOutcome::OutOfMemory => {
                    refused = true;
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(refused);
        assert_eq!(s.stats().evictions, 0);
        assert!(s.get(b"key0", 1).is_some(), "-M keeps what it has");
    }

    #[test]
    fn clock_keeps_recently_read_items() {
        let s = store(2 * 1024 * 1024, true, true);
        let value = vec![b'v'; 1000];
        s.store(StoreMode::Set, b"hot", 0, 0, &value, 1);
        for i in 0..10_000 {
            assert!(
                s.get(b"hot", 1).is_some(),
                "hot item evicted after {i} sets"
            );
            s.store(
                StoreMode::Set,
                format!("cold{i}").as_bytes(),
                0,
                0,
                &value,
                1,
            );
        }
    }

    #[test]
    fn largest_item_fits_in_small_memory() {
        let s = store(2 * 1024 * 1024, true, true);
        let big = vec![b'x'; 1024 * 1024 - 100];
        assert_eq!(
            s.store(StoreMode::Set, b"k", 0, 0, &big, 1),
            StoreOutcome::Stored
        );
    }

    proptest::proptest! {
        #[test]
        fn bytes_never_exceed_the_bound(ops in proptest::collection::vec((0u8..4, 0u16..300, 0usize..5000), 1..400)) {
            let s = store(1024 * 1024, true, true);
            for (op, key, len) in ops {
                let key = format!("k{key}");
                let value = vec![b'x'; len];
                match op {
                    0 => { s.store(StoreMode::Set, key.as_bytes(), 0, 0, &value, 1); }
                    1 => { s.store(StoreMode::Append, key.as_bytes(), 0, 0, &value, 1); }
                    2 => { s.get(key.as_bytes(), 1); }
                    _ => { s.delete(key.as_bytes(), 1); }
                }
                proptest::prop_assert!(s.stats().bytes <= 1024 * 1024);
            }
        }
    }
}
