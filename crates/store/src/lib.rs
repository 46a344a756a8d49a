//! ferrocache-store: the cache engine. Index, memory accounting, eviction, expiry, CAS and counters,
//! with no sockets and no protocol. Time is passed in by the caller as `now`, in whole seconds on the
//! server's relative clock (like memcached's `current_time`), which keeps every rule testable.
//!
//! # Layout (see `docs/storage.md` for the costs in bytes)
//! - **Shards.** The key space is split into [`SHARDS`] shards by key hash (SipHash with a random
//!   key, so clients cannot aim many keys at one shard), each a `parking_lot::Mutex` around a
//!   [`shard`]: its segments, an index of 7-byte slots in cache-line buckets ([`table`]), a ghost,
//!   its counters.
//! - **Segments** ([`segment`], [`layout`]). Items are appended to large buffers with a 3-byte
//!   header in the common case (no per-item allocation, no slab rounding, CAS ids derived from the
//!   place); a `get` copies the value out under the shard lock.
//! - **Memory.** One budget of `max_bytes` shared by all shards ([`budget`]): segments, index and
//!   ghost are charged by capacity before they are allocated, so `stats().bytes` never exceeds
//!   `max_bytes`.
//! - **Eviction** ([`evict`]): S3-FIFO over segments: a small and a main FIFO queue per shard and
//!   a ghost of recently evicted keys; a hit bumps two bits, nothing moves until eviction. With
//!   evictions off (`-M`), a store that finds nothing dead to reclaim gets
//!   [`StoreOutcome::OutOfMemory`].
//! - **Expiry** is lazy (on access and at eviction), plus [`Store::reclaim_expired`], which frees
//!   segments whose items have all expired without looking at them one by one; segments are
//!   filled by lifetime class ([`segment::TTL_CLASSES`]) so that short-lived items expire
//!   together.
//! - **CAS** ids: every version of an item gets a new one (its place; see [`layout`]); touch and
//!   gat keep it.
//!
//! Behaviour is memcached 1.6.18's; where a rule was checked by running memcached, the comment
//! beside the code says how.

mod budget;
mod config;
mod evict;
mod index;
mod item;
mod layout;
mod numeric;
mod ops;
mod segment;
mod shard;
mod stats;
mod table;

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Mutex, MutexGuard};

use budget::Budget;
use ops::flush::FlushCell;
use shard::{Ctx, Shard};

pub use config::{item_size_ok, memcached_item_size, StoreConfig};
pub use item::{Item, ItemRef, MetaState};
pub use ops::dump::{DumpCursor, DumpedItem};
pub use ops::meta::{InvalidateOutcome, MetaGet, MetaGetHit};
pub use ops::presize::IndexPlan;
pub use ops::store::{Standing, WriteOptions};
pub use ops::watch::Evicted;
pub use stats::StoreStats;

/// A key's hash under one store's hasher ([`Store::hash_key`]), so that a multi-key get hashes
/// each key once for its prefetches and its lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyHash(u64);

/// Relative time in seconds since the server started (memcached's `rel_time_t`). 0 in an exptime
/// means "never expires".
pub type RelTime = u32;

/// Longest key the store accepts (memcached's limit; the store itself copes with any length).
pub const MAX_KEY_LENGTH: usize = 250;

/// How many shards the key space is split into: enough that worker threads rarely meet on a lock
/// (a power of two, so a shard is picked by masking the hash), few enough that the open segments
/// (two per shard, half full on average) cost little.
pub const SHARDS: usize = 16;

/// About how many segments a shard holds: the segment size is `max_bytes / (SHARDS * this)`,
/// rounded down to a power of two between [`MIN_SEGMENT`] and [`MAX_SEGMENT`].
const SEGMENTS_PER_SHARD: usize = 64;
const MIN_SEGMENT: usize = 4 * 1024;
const MAX_SEGMENT: usize = 1024 * 1024;

/// The ghost remembers one key per this many bytes of `max_bytes` (2 bytes each: 1.6% of it).
const GHOST_BYTES_PER_KEY: usize = 128;

/// The most keys the ghost of a shard remembers: 32 MB of it, 512 MB for all shards, the ghost of
/// a 32 GB cache. The ghost is allocated whole at start, while everything else is allocated as
/// the cache fills; without a cap, an `-m` larger than the machine's memory (memcached starts
/// with any) asked for more than the system lends and aborted the server.
const GHOST_MAX_ENTRIES: usize = 1 << 24;

/// Keys the ghost of each shard remembers in a store of `max_bytes`.
fn ghost_entries(max_bytes: usize) -> usize {
    (max_bytes / GHOST_BYTES_PER_KEY / SHARDS).clamp(16, GHOST_MAX_ENTRIES)
}

/// Bytes of one segment for a store of `max_bytes`.
pub fn segment_size(max_bytes: usize) -> usize {
    let per = (max_bytes / (SHARDS * SEGMENTS_PER_SHARD)).max(1);
    let pow2 = 1usize << (usize::BITS - 1 - per.leading_zeros());
    pow2.clamp(MIN_SEGMENT, MAX_SEGMENT)
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
    /// The item's CAS id is not the one compared ([`Store::delete_if`]).
    Exists,
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
    /// The item's CAS id is not the one compared ([`Delta::compare_cas`]).
    Exists,
    /// The stored value is not a decimal number memcached would accept.
    NonNumeric,
    /// -M and no room for the rewritten item.
    OutOfMemory,
}

/// An `incr` or `decr` as a protocol asks for it ([`Store::delta_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delta {
    /// `incr` (wraps at 2^64), else `decr` (stops at 0).
    pub incr: bool,
    pub by: u64,
    /// A shorter number is padded with spaces to the old length, as memcached's rewrite in
    /// place leaves it. False when memcached could not rewrite in place because something else
    /// still references the item (its refcount is above 2), such as a reply to an `mg` not yet
    /// written: the number is then stored at its length, as a new version.
    pub pad: bool,
    /// The item's CAS id must be this one, compared after an empty value is refused and before
    /// the number is read: else [`DeltaOutcome::Exists`], counted as nothing (memcached's
    /// `do_add_delta`).
    pub compare_cas: Option<u64>,
    /// A miss counts as an incr or decr miss. False when the caller creates the counter on a
    /// miss (`ma N`, a binary incr with an initial value): memcached 1.6.18 counts those as
    /// neither hit nor miss.
    pub count_miss: bool,
    /// A new exptime for the counter once changed (`ma T`), counted as no touch.
    pub exptime: Option<RelTime>,
}

impl Delta {
    /// A plain `incr` or `decr` by `by`.
    pub fn new(incr: bool, by: u64) -> Self {
        Delta {
            incr,
            by,
            pad: true,
            compare_cas: None,
            count_miss: true,
            exptime: None,
        }
    }
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
    segment_size: usize,
}

impl Store {
    /// Builds an empty store; nothing is allocated until items arrive.
    pub fn new(config: StoreConfig) -> Store {
        let ghost_entries = ghost_entries(config.max_bytes);
        let shards: Box<[Mutex<Shard>]> = (0..SHARDS)
            .map(|number| Mutex::new(Shard::new(number, ghost_entries)))
            .collect();
        let budget = Budget::new(config.max_bytes);
        let ghost_bytes: usize = shards.iter().map(|s| s.lock().index_bytes()).sum();
        budget.force(ghost_bytes);
        Store {
            segment_size: segment_size(config.max_bytes),
            budget,
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
            segment_size: self.segment_size,
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
        self.locked_hashed(self.hash_key(key), now)
    }

    fn locked_hashed(
        &self,
        hash: KeyHash,
        now: RelTime,
    ) -> (MutexGuard<'_, Shard>, usize, u64, Ctx<'_>) {
        self.saw_time(now);
        let index = Self::shard_of(hash.0);
        (self.shards[index].lock(), index, hash.0, self.ctx(now))
    }

    /// The shard of a key with this hash: bits 32-35 (the index uses the lowest bits for the
    /// bucket, 40-49 for the table and the top 10 for the tag).
    fn shard_of(hash: u64) -> usize {
        (hash >> 32) as usize & (SHARDS - 1)
    }

    /// Counters with memcached's names, and what is held. Sweeps the items of a `flush_all` that
    /// has taken effect first, so `curr_items` and `bytes` do not count them.
    pub fn stats(&self) -> StoreStats {
        let now = self.last_now.load(Ordering::Relaxed);
        self.sweep_flushed(now);
        self.reclaim_expired(now);
        let mut total = StoreStats::default();
        let mut latest_eviction = None;
        for shard in self.shards.iter() {
            let shard = shard.lock();
            shard.counters.add_to(&mut total, &mut latest_eviction);
            shard.census(now, &mut total);
            total.curr_items += shard.live_items() as u64;
            total.index_bytes += shard.index_bytes() as u64;
            total.ghost_bytes += shard.ghost_bytes() as u64;
            total.index_capacity += shard.index_capacity() as u64;
            total.index_growths += shard.growths_under_way() as u64;
        }
        total.bytes = self.budget.used() as u64;
        total
    }

    /// [`Store::stats`] as of `now` (the server's clock), which ages and expires by the time now
    /// rather than by the latest command's.
    pub fn stats_at(&self, now: RelTime) -> StoreStats {
        self.saw_time(now);
        self.stats()
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

    /// Every CAS id given so far is below this.
    pub fn cas_floor(&self) -> u64 {
        self.next_seq.load(Ordering::Relaxed)
    }

    /// From now on every CAS id given is at least `floor`: a restart raises it to the floor of
    /// the run before, so that no new version of an item takes an id a client saw then.
    pub fn raise_cas_floor(&self, floor: u64) {
        self.next_seq.fetch_max(floor, Ordering::Relaxed);
    }

    /// The memory bound now: `-m`, or what [`Store::set_max_bytes`] last set.
    pub fn max_bytes(&self) -> usize {
        self.budget.limit()
    }

    /// The smallest bound [`Store::set_max_bytes`] takes: two segments per shard (an open one and
    /// one to evict), and twice the largest item, the rule `-m` and `-I` follow at start.
    pub fn min_max_bytes(&self) -> usize {
        (2 * SHARDS * self.segment_size).max(2 * self.config.item_size_max)
    }

    /// `cache_memlimit`: a new bound on what the store holds. False, and nothing changed, below
    /// [`Store::min_max_bytes`]. Raising it lets the cache grow at once. Lowering it evicts until
    /// what is held fits, then shrinks the index tables to what their entries need (the index
    /// of a cache full of small items can take more than a lower bound: evicting alone would then
    /// empty the cache and still not fit). It evicts one segment of each shard in turn, each
    /// shard locked for one eviction or for its index's shrink, so requests go on meanwhile;
    /// evictions are counted as any other. With `-M` only the bytes of deleted and overwritten
    /// items can be reclaimed: what stays over the bound stays, and stores that need a new
    /// segment answer out of memory until enough is deleted. The ghost takes the size the new
    /// bound gives it, empty; the segment size stays the one `-m` gave.
    pub fn set_max_bytes(&self, max_bytes: usize, now: RelTime) -> bool {
        if max_bytes < self.min_max_bytes() {
            return false;
        }
        self.budget.set_limit(max_bytes);
        self.saw_time(now);
        for shard in self.shards.iter() {
            shard
                .lock()
                .resize_ghost(ghost_entries(max_bytes), &self.budget);
        }
        let over =
            |shrinkable: usize| self.budget.used().saturating_sub(shrinkable) > self.budget.limit();
        loop {
            // Evict while what is held would not fit even with the index shrunk.
            loop {
                let shrinkable = self.shards.iter().map(|s| s.lock().index_shrinkable());
                if !over(shrinkable.sum()) || !self.evict_round(now) {
                    break;
                }
            }
            for shard in self.shards.iter() {
                let mut shard = shard.lock();
                shard.shrink_index(&self.ctx(now));
            }
            // The estimate counts the index as the entries left need it; moving kept items
            // while evicting can leave it short.
            if !over(0) || !self.evict_round(now) {
                return true;
            }
        }
    }

    /// Evicts a segment from each shard in turn, as long as what is held is over the bound.
    /// False when none could be. Each eviction reads the flush state anew, as a request does.
    fn evict_round(&self, now: RelTime) -> bool {
        let mut evicted = false;
        for shard in self.shards.iter() {
            if self.budget.used() <= self.budget.limit() {
                break;
            }
            let mut shard = shard.lock();
            evicted |= shard.evict_one(&self.ctx(now));
        }
        evicted
    }

    /// How many shards the key space is split into.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Bytes of one segment (items larger than this get a segment of their own).
    pub fn segment_bytes(&self) -> usize {
        self.segment_size
    }

    /// Frees every segment (open or closed) whose items have all expired by `now`, without looking
    /// at items in segments that still hold a live one: what memcached's LRU crawler does, at the
    /// cost of a look at each segment's `max_exptime`. The server calls it once a second; `stats` too.
    /// Counted as memcached counts reclaimed items (`reclaimed`, `expired_unfetched`).
    pub fn reclaim_expired(&self, now: RelTime) {
        self.saw_time(now);
        for shard in self.shards.iter() {
            let ctx = self.ctx(now);
            let mut shard = shard.lock();
            for id in shard.segment_ids() {
                // Open ones too: in a lifetime class that is rarely written, the open segment
                // may be the only one.
                if shard.seg(id).all_expired(now) {
                    shard.drop_segment(id, &ctx, |c, fetched| {
                        c.reclaimed += 1;
                        c.expired_unfetched += u64::from(!fetched);
                    });
                }
            }
        }
    }

    /// Finishes the index growths under way when it is called, a [`Shard::move_growth_step`]
    /// (about 500 entries, 100 us) per hold of a shard's lock, so that no request waits longer
    /// behind it than behind an insert that moves entries. Inserts move a growing table's
    /// entries too, but a table that takes no new keys would keep its old buckets (and their
    /// bytes) until it does. Growths that start meanwhile get at most the steps left at the
    /// start, so a fill cannot keep it running. The server calls it once a second.
    pub fn finish_index_growths(&self) {
        let ctx = self.ctx(self.last_now.load(Ordering::Relaxed));
        for shard in self.shards.iter() {
            let mut steps = shard.lock().growth_steps_left();
            while steps > 0 {
                let mut locked = shard.lock();
                let moved = locked.move_growth_step(&ctx);
                // Handed straight to a request waiting for the shard, if any: relocked at once,
                // it would otherwise wait for parking_lot's next fair unlock (every 0.5 ms on
                // average).
                MutexGuard::unlock_fair(locked);
                if !moved {
                    break;
                }
                steps -= 1;
            }
        }
    }
}

#[cfg(test)]
impl Store {
    /// Each shard's [`Shard::growth_steps_left`].
    fn growth_steps_left(&self) -> Vec<usize> {
        self.shards
            .iter()
            .map(|s| s.lock().growth_steps_left())
            .collect()
    }
}

#[cfg(test)]
mod tests;
