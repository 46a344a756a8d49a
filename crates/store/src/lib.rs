//! ferrocache-store: the cache engine. Index, memory accounting, eviction, expiry, CAS and counters,
//! with no sockets and no protocol. Time is passed in by the caller as `now`, in whole seconds on the
//! server's relative clock (like memcached's `current_time`), which keeps every rule testable.
//!
//! # Layout (first engine; a segment-based one is to replace it)
//! - **Shards.** The key space is split into [`SHARDS`] shards by key hash (SipHash with a random
//!   key, so clients cannot aim many keys at one shard), each a `parking_lot::Mutex` around a
//!   [`shard`]: a slot arena of 64-byte item records, a `hashbrown` index of 4-byte slot ids, and
//!   the shard's counters. A command locks one shard for a hash lookup and a refcount bump: a `get`
//!   returns the value as a `bytes::Bytes` slice of the stored buffer, never a copy.
//! - **Memory.** One budget of `max_bytes` shared by all shards ([`budget`]). Every item is charged
//!   its key, value and [`ITEM_OVERHEAD`] (allocator slack and the `Bytes` header); the slot arena
//!   and index are charged by capacity, reserved before they grow. A store reserves its bytes
//!   first (compare-and-swap: concurrent stores never overshoot together), so `stats().bytes` never
//!   exceeds `max_bytes`. The largest item `item_size_ok` allows always fits, whatever its shard:
//!   victims come from all shards (memcached itself refuses `-I` above half of `-m`).
//! - **Eviction** ([`evict`]): CLOCK per shard, shards taking turns to give up a victim; a hit
//!   sets a bit, no list update. Dead items the hand meets are reclaimed first. With evictions off (`-M`), a store that finds no dead item to
//!   reclaim gets [`StoreOutcome::OutOfMemory`].
//! - **Expiry** is lazy (on access and under the eviction hand), with memcached's rule: expired
//!   when `exptime != 0 && exptime <= now`.
//! - **CAS** ids come from one `AtomicU64`, starting at 1; every write (set/add/replace/append/
//!   prepend/cas/incr/decr) takes a fresh one, touch and gat do not. The same sequence number
//!   orders writes against `flush_all` (see [`ops::flush`]).
//!
//! Behaviour is memcached 1.6.18's; where a rule was checked by running memcached, the comment
//! beside the code says how.

mod budget;
mod config;
mod evict;
mod item;
mod numeric;
mod ops;
mod shard;
mod stats;

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Mutex, MutexGuard};

use budget::Budget;
use ops::flush::FlushCell;
use shard::{Ctx, Shard};

pub use config::{item_size_ok, StoreConfig};
pub use item::{Item, ITEM_OVERHEAD};
pub use stats::StoreStats;

/// Relative time in seconds since the server started (memcached's `rel_time_t`). 0 in an exptime
/// means "never expires".
pub type RelTime = u32;

/// Longest key the store accepts (memcached's limit; the store itself copes with any length).
pub const MAX_KEY_LENGTH: usize = 250;

/// How many shards the key space is split into: enough that worker threads rarely meet on a lock
/// (a power of two, so a shard is picked by masking the hash).
pub const SHARDS: usize = 64;

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

/// The cache. `Send + Sync`: shared by all worker threads.
pub struct Store {
    config: StoreConfig,
    shards: Box<[Mutex<Shard>]>,
    hasher: std::collections::hash_map::RandomState,
    budget: Budget,
    /// Source of CAS ids and of the sequence numbers `flush_all` compares.
    next_seq: AtomicU64,
    flush: FlushCell,
    /// Which shard gives up the next eviction victim (see `evict.rs`).
    evict_cursor: AtomicUsize,
    /// The latest `now` a command brought, for `stats` (which is not given one).
    last_now: AtomicU32,
}

impl Store {
    /// Builds an empty store; nothing is allocated until items arrive.
    pub fn new(config: StoreConfig) -> Store {
        let shards = (0..SHARDS).map(|_| Mutex::new(Shard::new())).collect();
        Store {
            budget: Budget::new(config.max_bytes),
            config,
            shards,
            hasher: std::collections::hash_map::RandomState::new(),
            next_seq: AtomicU64::new(1),
            flush: FlushCell::default(),
            last_now: AtomicU32::new(0),
            evict_cursor: AtomicUsize::new(0),
        }
    }

    fn ctx(&self, now: RelTime) -> Ctx<'_> {
        Ctx {
            now,
            flush: self.flush.load(),
            config: &self.config,
            hasher: &self.hasher,
            budget: &self.budget,
            next_seq: &self.next_seq,
        }
    }

    fn saw_time(&self, now: RelTime) {
        // A write only once a second, so the shared line is not bounced on every command.
        if self.last_now.load(Ordering::Relaxed) < now {
            self.last_now.fetch_max(now, Ordering::Relaxed);
        }
    }

    /// The shard for `key`, locked, with its number, the key's hash and the command's context.
    fn locked(&self, key: &[u8], now: RelTime) -> (MutexGuard<'_, Shard>, usize, u64, Ctx<'_>) {
        self.saw_time(now);
        let hash = self.hasher.hash_one(key);
        // The index uses the low bits and the top 7; the shard takes bits 32 and up.
        let index = (hash >> 32) as usize & (SHARDS - 1);
        (self.shards[index].lock(), index, hash, self.ctx(now))
    }

    /// Counters with memcached's names, and what is held. Sweeps the items of a `flush_all` that
    /// has taken effect first, so `curr_items` and `bytes` do not count them.
    pub fn stats(&self) -> StoreStats {
        self.sweep_flushed(self.last_now.load(Ordering::Relaxed));
        let mut total = StoreStats::default();
        for shard in self.shards.iter() {
            let shard = shard.lock();
            shard.counters.add_to(&mut total);
            total.curr_items += shard.live_items() as u64;
            total.index_bytes += shard.index_bytes() as u64;
        }
        total.bytes = self.budget.used() as u64;
        total
    }

    /// `stats reset`: zero the counters memcached's `stats reset` zeroes (not curr_items/bytes).
    pub fn reset_stats(&self) {
        for shard in self.shards.iter() {
            shard.lock().counters = Default::default();
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
mod tests;
