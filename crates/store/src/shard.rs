//! One shard of the store: a hash map of items, a CLOCK queue for eviction, the memory budget, and
//! the counters of the operations that ran here. Everything happens under the shard's mutex.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::numeric::parse_counter;
use crate::{
    item_size_ok, DeleteOutcome, DeltaOutcome, Item, RelTime, StoreConfig, StoreMode, StoreOutcome,
    StoreStats, TouchOutcome, ITEM_OVERHEAD,
};

/// memcached's `settings.oldest_live` and `settings.oldest_cas`, set by `flush_all`.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlushState {
    pub oldest_live: RelTime,
    pub oldest_seq: u64,
}

/// What every shard operation needs from the store.
pub struct Ctx<'a> {
    pub now: RelTime,
    pub flush: FlushState,
    pub next_cas: &'a AtomicU64,
    pub config: &'a StoreConfig,
}

impl Ctx<'_> {
    /// A fresh sequence number, which is also the CAS id when CAS is on.
    fn next_seq(&self) -> u64 {
        self.next_cas.fetch_add(1, Ordering::Relaxed)
    }
}

struct Entry {
    value: Bytes,
    flags: u32,
    exptime: RelTime,
    /// When the item was stored (memcached's `it->time`, used by flush_all).
    time: RelTime,
    /// Sequence number of this version of the item; identifies its queue slot.
    seq: u64,
    cas: u64,
    fetched: bool,
    /// CLOCK bit: set on access, cleared when the eviction hand passes.
    visited: bool,
}

impl Entry {
    fn size(&self, key: &[u8]) -> usize {
        charge(key.len(), self.value.len())
    }
}

fn charge(key_len: usize, value_len: usize) -> usize {
    key_len + value_len + ITEM_OVERHEAD
}

enum Dead {
    Expired,
    Flushed,
}

fn is_dead(entry: &Entry, ctx: &Ctx<'_>) -> Option<Dead> {
    let flush = ctx.flush;
    if flush.oldest_live != 0
        && flush.oldest_live <= ctx.now
        && (entry.time <= flush.oldest_live
            || (flush.oldest_seq != 0 && entry.seq < flush.oldest_seq))
    {
        return Some(Dead::Flushed);
    }
    if entry.exptime != 0 && entry.exptime <= ctx.now {
        return Some(Dead::Expired);
    }
    None
}

pub struct Shard {
    map: HashMap<Arc<[u8]>, Entry>,
    /// Items in insertion order with their sequence number; entries whose item was replaced or
    /// removed are stale and skipped (and compacted away when they pile up).
    queue: VecDeque<(Arc<[u8]>, u64)>,
    used: usize,
    budget: usize,
    stats: StoreStats,
}

impl Shard {
    pub fn new(budget: usize) -> Shard {
        Shard {
            map: HashMap::new(),
            queue: VecDeque::new(),
            used: 0,
            budget,
            stats: StoreStats::default(),
        }
    }

    /// The live entry for `key`; an expired or flushed one is removed and counted on the way.
    fn find_live(&mut self, key: &[u8], ctx: &Ctx<'_>) -> Option<&mut Entry> {
        let dead = is_dead(self.map.get(key)?, ctx);
        if let Some(dead) = dead {
            match dead {
                Dead::Expired => self.stats.get_expired += 1,
                Dead::Flushed => self.stats.get_flushed += 1,
            }
            self.remove(key);
            return None;
        }
        self.map.get_mut(key)
    }

    fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let entry = self.map.remove(key)?;
        self.used -= entry.size(key);
        Some(entry)
    }

    pub fn get(&mut self, key: &[u8], touch: Option<RelTime>, ctx: &Ctx<'_>) -> Option<Item> {
        let found = self.find_live(key, ctx).map(|entry| {
            entry.fetched = true;
            entry.visited = true;
            if let Some(exptime) = touch {
                entry.exptime = exptime;
            }
            Item {
                value: entry.value.clone(),
                flags: entry.flags,
                cas: entry.cas,
            }
        });
        let counter = match (touch.is_some(), found.is_some()) {
            (false, true) => &mut self.stats.get_hits,
            (false, false) => &mut self.stats.get_misses,
            (true, true) => &mut self.stats.touch_hits,
            (true, false) => &mut self.stats.touch_misses,
        };
        *counter += 1;
        found
    }

    pub fn touch(&mut self, key: &[u8], exptime: RelTime, ctx: &Ctx<'_>) -> TouchOutcome {
        match self.find_live(key, ctx) {
            Some(entry) => {
                entry.exptime = exptime;
                entry.visited = true;
                self.stats.touch_hits += 1;
                TouchOutcome::Touched
            }
            None => {
                self.stats.touch_misses += 1;
                TouchOutcome::NotFound
            }
        }
    }

    pub fn delete(&mut self, key: &[u8], count: bool, ctx: &Ctx<'_>) -> DeleteOutcome {
        let found = self.find_live(key, ctx).is_some();
        if found {
            self.remove(key);
        }
        match (found, count) {
            (true, true) => self.stats.delete_hits += 1,
            (false, true) => self.stats.delete_misses += 1,
            _ => {}
        }
        if found {
            DeleteOutcome::Deleted
        } else {
            DeleteOutcome::NotFound
        }
    }

    pub fn store(
        &mut self,
        mode: StoreMode,
        key: &[u8],
        flags: u32,
        exptime: RelTime,
        value: &[u8],
        ctx: &Ctx<'_>,
    ) -> StoreOutcome {
        let config = ctx.config;
        let existing = self.find_live(key, ctx);
        let exists = existing.is_some();
        let (flags, exptime, value) = match mode {
            StoreMode::Set => (flags, exptime, Bytes::copy_from_slice(value)),
            StoreMode::Add => {
                if let Some(entry) = existing {
                    // memcached bumps the existing item on a failed add.
                    entry.visited = true;
                    return StoreOutcome::NotStored;
                }
                (flags, exptime, Bytes::copy_from_slice(value))
            }
            StoreMode::Replace => {
                if !exists {
                    return StoreOutcome::NotStored;
                }
                (flags, exptime, Bytes::copy_from_slice(value))
            }
            StoreMode::Append | StoreMode::Prepend => {
                let Some(entry) = existing else {
                    return StoreOutcome::NotStored;
                };
                let total = entry.value.len() + value.len();
                if !item_size_ok(
                    config.item_size_max,
                    config.use_cas,
                    key.len(),
                    entry.flags,
                    total,
                ) {
                    return StoreOutcome::TooLarge;
                }
                let mut combined = Vec::with_capacity(total);
                if mode == StoreMode::Append {
                    combined.extend_from_slice(&entry.value);
                    combined.extend_from_slice(value);
                } else {
                    combined.extend_from_slice(value);
                    combined.extend_from_slice(&entry.value);
                }
                (entry.flags, entry.exptime, Bytes::from(combined))
            }
            StoreMode::Cas(id) => {
                let Some(entry) = existing else {
                    self.stats.cas_misses += 1;
                    return StoreOutcome::NotFound;
                };
                // With -C memcached answers EXISTS to every cas on an existing item, even
                // `cas ... 0` (checked against memcached 1.6.18 -C).
                if !config.use_cas || entry.cas != id {
                    self.stats.cas_badval += 1;
                    return StoreOutcome::Exists;
                }
                self.stats.cas_hits += 1;
                (flags, exptime, Bytes::copy_from_slice(value))
            }
        };
        match self.insert(key, flags, exptime, value, ctx) {
            Ok(()) => StoreOutcome::Stored,
            Err(()) => StoreOutcome::OutOfMemory,
        }
    }

    pub fn delta(&mut self, key: &[u8], incr: bool, delta: u64, ctx: &Ctx<'_>) -> DeltaOutcome {
        let Some(entry) = self.find_live(key, ctx) else {
            if incr {
                self.stats.incr_misses += 1;
            } else {
                self.stats.decr_misses += 1;
            }
            return DeltaOutcome::NotFound;
        };
        let Some(current) = parse_counter(&entry.value) else {
            return DeltaOutcome::NonNumeric;
        };
        let new = if incr {
            current.wrapping_add(delta)
        } else {
            current.saturating_sub(delta)
        };
        // memcached rewrites a shorter number in place, padded with spaces to the old length
        // (`set n 0 0 2` `10`, `decr n 1` then `get n` shows "9 "); a longer one gets a new item.
        let mut text = new.to_string().into_bytes();
        if text.len() < entry.value.len() {
            text.resize(entry.value.len(), b' ');
        }
        let (flags, exptime) = (entry.flags, entry.exptime);
        if incr {
            self.stats.incr_hits += 1;
        } else {
            self.stats.decr_hits += 1;
        }
        match self.insert(key, flags, exptime, Bytes::from(text), ctx) {
            Ok(()) => DeltaOutcome::Value(new),
            Err(()) => DeltaOutcome::OutOfMemory,
        }
    }

    /// Stores a new version of `key`, replacing any old one, making room first. On failure (no
    /// room with evictions off) the old version stays.
    fn insert(
        &mut self,
        key: &[u8],
        flags: u32,
        exptime: RelTime,
        value: Bytes,
        ctx: &Ctx<'_>,
    ) -> Result<(), ()> {
        let size = charge(key.len(), value.len());
        let old = self.remove(key);
        if size > self.budget || !self.make_room(size, ctx) {
            if let Some(old) = old {
                // Its queue slot may have been consumed while making room: give it a new one.
                let key: Arc<[u8]> = Arc::from(key);
                self.used += old.size(&key);
                self.queue.push_back((key.clone(), old.seq));
                self.map.insert(key, old);
            }
            self.stats.outofmemory += 1;
            return Err(());
        }
        let seq = ctx.next_seq();
        let key: Arc<[u8]> = Arc::from(key);
        self.queue.push_back((key.clone(), seq));
        self.map.insert(
            key,
            Entry {
                value,
                flags,
                exptime,
                time: ctx.now,
                seq,
                cas: if ctx.config.use_cas { seq } else { 0 },
                fetched: false,
                visited: false,
            },
        );
        self.used += size;
        self.stats.total_items += 1;
        if self.queue.len() > 2 * self.map.len() + 1024 {
            let map = &self.map;
            self.queue
                .retain(|(key, seq)| map.get(key).is_some_and(|e| e.seq == *seq));
        }
        Ok(())
    }

    /// Frees memory until `size` more bytes fit: dead items first as the hand meets them, then
    /// (with evictions on) CLOCK victims. Returns false when it cannot.
    fn make_room(&mut self, size: usize, ctx: &Ctx<'_>) -> bool {
        while self.used + size > self.budget {
            let Some((key, seq)) = self.queue.pop_front() else {
                return false;
            };
            let Some(entry) = self.map.get_mut(&key) else {
                continue;
            };
            if entry.seq != seq {
                continue;
            }
            if is_dead(entry, ctx).is_some() {
                if !entry.fetched {
                    self.stats.expired_unfetched += 1;
                }
                self.stats.reclaimed += 1;
                self.remove(&key);
                continue;
            }
            if !ctx.config.evictions {
                self.queue.push_front((key, seq));
                return false;
            }
            if entry.visited {
                entry.visited = false;
                self.queue.push_back((key, seq));
                continue;
            }
            if !entry.fetched {
                self.stats.evicted_unfetched += 1;
            }
            self.stats.evictions += 1;
            self.remove(&key);
        }
        true
    }

    pub fn add_stats(&self, total: &mut StoreStats) {
        let s = &self.stats;
        total.curr_items += self.map.len() as u64;
        total.bytes += self.used as u64;
        total.total_items += s.total_items;
        total.evictions += s.evictions;
        total.reclaimed += s.reclaimed;
        total.expired_unfetched += s.expired_unfetched;
        total.evicted_unfetched += s.evicted_unfetched;
        total.outofmemory += s.outofmemory;
        total.get_hits += s.get_hits;
        total.get_misses += s.get_misses;
        total.get_expired += s.get_expired;
        total.get_flushed += s.get_flushed;
        total.delete_hits += s.delete_hits;
        total.delete_misses += s.delete_misses;
        total.incr_hits += s.incr_hits;
        total.incr_misses += s.incr_misses;
        total.decr_hits += s.decr_hits;
        total.decr_misses += s.decr_misses;
        total.cas_hits += s.cas_hits;
        total.cas_misses += s.cas_misses;
        total.cas_badval += s.cas_badval;
        total.touch_hits += s.touch_hits;
        total.touch_misses += s.touch_misses;
    }

    pub fn reset_stats(&mut self) {
        self.stats = StoreStats::default();
    }
}
