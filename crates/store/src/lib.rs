//! ferrocache-store: the cache engine. Index, memory accounting, eviction, expiry, CAS and counters,
//! with no sockets and no protocol. Time is passed in by the caller as `now`, in whole seconds on the
//! server's relative clock (like memcached's `current_time`), which keeps every rule testable.
//!
//! API CONTRACT (stub: the implementation is being written; signatures are fixed).

use bytes::Bytes;

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

/// The cache. `Send + Sync`: shared by all worker threads.
pub struct Store {
    _private: (),
}

impl Store {
    pub fn new(config: StoreConfig) -> Store {
        let _ = config;
        unimplemented!("store being written")
    }
    /// `get`/`gets`: counts get_hits/get_misses/get_expired/get_flushed.
    pub fn get(&self, key: &[u8], now: RelTime) -> Option<Item> {
        let _ = (key, now);
        unimplemented!()
    }
    /// `gat`/`gats`: get and set a new exptime. Counts touch_hits/touch_misses and get_hits/misses.
    pub fn get_and_touch(&self, key: &[u8], exptime: RelTime, now: RelTime) -> Option<Item> {
        let _ = (key, exptime, now);
        unimplemented!()
    }
    pub fn touch(&self, key: &[u8], exptime: RelTime, now: RelTime) -> TouchOutcome {
        let _ = (key, exptime, now);
        unimplemented!()
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
        let _ = (mode, key, flags, exptime, value, now);
        unimplemented!()
    }
    pub fn delete(&self, key: &[u8], now: RelTime) -> DeleteOutcome {
        let _ = (key, now);
        unimplemented!()
    }
    /// `incr` (`incr == true`) or `decr`.
    pub fn delta(&self, key: &[u8], incr: bool, delta: u64, now: RelTime) -> DeltaOutcome {
        let _ = (key, incr, delta, now);
        unimplemented!()
    }
    /// `flush_all`: every item stored at or before `when` is invalid once `now >= when`.
    pub fn flush_all(&self, when: RelTime, now: RelTime) {
        let _ = (when, now);
        unimplemented!()
    }
    pub fn stats(&self) -> StoreStats {
        unimplemented!()
    }
    /// `stats reset`: zero the hit/miss/eviction counters (not curr_items/bytes).
    pub fn reset_stats(&self) {
        unimplemented!()
    }
    pub fn config(&self) -> &StoreConfig {
        unimplemented!()
    }
}
