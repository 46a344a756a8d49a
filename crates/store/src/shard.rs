//! One shard of the store: a hash table of items, a CLOCK queue for eviction, the memory budget,
//! and the counters of the operations that ran here. Everything happens under the shard's mutex.
//!
//! Item layout (40 bytes in the table, plus one allocation holding the key then the value):
//! `data` (16: an `Arc<[u8]>` over key+value), `seq` (8: sequence number, also the CAS id),
//! `flags`, `exptime`, `time` (4 each), `key_len` and CLOCK/fetched bits (1 each). The queue holds
//! (hash, seq) pairs, 16 bytes each, so no key is stored twice.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use hashbrown::HashTable;

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
    pub hasher: &'a std::collections::hash_map::RandomState,
}

impl Ctx<'_> {
    /// A fresh sequence number, which is also the CAS id when CAS is on.
    fn next_seq(&self) -> u64 {
        self.next_cas.fetch_add(1, Ordering::Relaxed)
    }

    /// The key hash, for rehashing when the table grows.
    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }
}

/// One allocation: the key, then the value parts.
fn item_data(key: &[u8], parts: [&[u8]; 2]) -> Arc<[u8]> {
    let mut data = Vec::with_capacity(key.len() + parts[0].len() + parts[1].len());
    data.extend_from_slice(key);
    data.extend_from_slice(parts[0]);
    data.extend_from_slice(parts[1]);
    Arc::from(data)
}

/// Values up to this size are copied out on a read; larger ones are shared.
const COPY_UP_TO: usize = 4096;

/// The value part of an item's allocation, kept alive while a reader holds it.
struct ValueOf {
    data: Arc<[u8]>,
    key_len: usize,
}

impl AsRef<[u8]> for ValueOf {
    fn as_ref(&self) -> &[u8] {
        &self.data[self.key_len..]
    }
}

const FETCHED: u8 = 1;
const VISITED: u8 = 2;

struct Entry {
    /// The key followed by the value.
    data: Arc<[u8]>,
    /// Sequence number of this version of the item: identifies its queue slot and, with CAS on,
    /// is its CAS id.
    seq: u64,
    flags: u32,
    exptime: RelTime,
    /// When the item was stored (memcached's `it->time`, used by flush_all).
    time: RelTime,
    key_len: u8,
    bits: u8,
}

impl Entry {
    fn key(&self) -> &[u8] {
        &self.data[..usize::from(self.key_len)]
    }

    /// The value as `Bytes`: small values are copied (cheaper than sharing), large ones are
    /// handed out by reference to the item's allocation.
    fn value(&self) -> Bytes {
        let value = &self.data[usize::from(self.key_len)..];
        if value.len() <= COPY_UP_TO {
            Bytes::copy_from_slice(value)
        } else {
            Bytes::from_owner(ValueOf {
                data: self.data.clone(),
                key_len: usize::from(self.key_len),
            })
        }
    }

    fn value_len(&self) -> usize {
        self.data.len() - usize::from(self.key_len)
    }

    fn size(&self) -> usize {
        charge(usize::from(self.key_len), self.value_len())
    }

    fn cas(&self, config: &StoreConfig) -> u64 {
        if config.use_cas {
            self.seq
        } else {
            0
        }
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
    table: HashTable<Entry>,
    /// (hash, seq) of items in insertion order; entries whose item was replaced or removed are
    /// stale and skipped (and compacted away when they pile up).
    queue: VecDeque<(u64, u64)>,
    used: usize,
    budget: usize,
    stats: StoreStats,
}

fn same_key(key: &[u8]) -> impl Fn(&Entry) -> bool + '_ {
    move |e: &Entry| e.key() == key
}

impl Shard {
    pub fn new(budget: usize) -> Shard {
        Shard {
            table: HashTable::new(),
            queue: VecDeque::new(),
            used: 0,
            budget,
            stats: StoreStats::default(),
        }
    }

    /// The live entry for `key`; an expired or flushed one is removed and counted on the way.
    fn find_live(&mut self, hash: u64, key: &[u8], ctx: &Ctx<'_>) -> Option<&mut Entry> {
        let dead = is_dead(self.table.find(hash, same_key(key))?, ctx);
        if let Some(dead) = dead {
            match dead {
                Dead::Expired => self.stats.get_expired += 1,
                Dead::Flushed => self.stats.get_flushed += 1,
            }
            self.remove(hash, key);
            return None;
        }
        self.table.find_mut(hash, same_key(key))
    }

    fn remove(&mut self, hash: u64, key: &[u8]) -> Option<Entry> {
        let entry = self.table.find_entry(hash, same_key(key)).ok()?.remove().0;
        self.used -= entry.size();
        Some(entry)
    }

    pub fn get(
        &mut self,
        hash: u64,
        key: &[u8],
        touch: Option<RelTime>,
        ctx: &Ctx<'_>,
    ) -> Option<Item> {
        let found = self.find_live(hash, key, ctx).map(|entry| {
            entry.bits |= FETCHED | VISITED;
            if let Some(exptime) = touch {
                entry.exptime = exptime;
            }
            Item {
                value: entry.value(),
                flags: entry.flags,
                cas: entry.cas(ctx.config),
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

    pub fn touch(
        &mut self,
        hash: u64,
        key: &[u8],
        exptime: RelTime,
        ctx: &Ctx<'_>,
    ) -> TouchOutcome {
        match self.find_live(hash, key, ctx) {
            Some(entry) => {
                entry.exptime = exptime;
                entry.bits |= VISITED;
                self.stats.touch_hits += 1;
                TouchOutcome::Touched
            }
            None => {
                self.stats.touch_misses += 1;
                TouchOutcome::NotFound
            }
        }
    }

    pub fn delete(&mut self, hash: u64, key: &[u8], count: bool, ctx: &Ctx<'_>) -> DeleteOutcome {
        let found = self.find_live(hash, key, ctx).is_some();
        if found {
            self.remove(hash, key);
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

    #[allow(clippy::too_many_arguments)]
    pub fn store(
        &mut self,
        hash: u64,
        mode: StoreMode,
        key: &[u8],
        flags: u32,
        exptime: RelTime,
        value: &[u8],
        ctx: &Ctx<'_>,
    ) -> StoreOutcome {
        let config = ctx.config;
        let existing = self.find_live(hash, key, ctx);
        let exists = existing.is_some();
        // The new value is written after the key in one allocation; append and prepend copy the
        // old value in around the new bytes.
        let (flags, exptime, parts): (u32, RelTime, [&[u8]; 2]) = match mode {
            StoreMode::Set => (flags, exptime, [value, &[]]),
            StoreMode::Add => {
                if let Some(entry) = existing {
                    // memcached bumps the existing item on a failed add.
                    entry.bits |= VISITED;
                    return StoreOutcome::NotStored;
                }
                (flags, exptime, [value, &[]])
            }
            StoreMode::Replace => {
                if !exists {
                    return StoreOutcome::NotStored;
                }
                (flags, exptime, [value, &[]])
            }
            StoreMode::Append | StoreMode::Prepend => {
                let Some(entry) = existing else {
                    return StoreOutcome::NotStored;
                };
                let total = entry.value_len() + value.len();
                if !item_size_ok(
                    config.item_size_max,
                    config.use_cas,
                    key.len(),
                    entry.flags,
                    total,
                ) {
                    return StoreOutcome::TooLarge;
                }
                let old = &entry.data[usize::from(entry.key_len)..];
                // The borrow of `entry` ends here: copy what we need first.
                let (flags, exptime) = (entry.flags, entry.exptime);
                let data = if mode == StoreMode::Append {
                    item_data(key, [old, value])
                } else {
                    item_data(key, [value, old])
                };
                return self.finish_insert(hash, key, flags, exptime, data, ctx);
            }
            StoreMode::Cas(id) => {
                let Some(entry) = existing else {
                    self.stats.cas_misses += 1;
                    return StoreOutcome::NotFound;
                };
                // With -C memcached answers EXISTS to every cas on an existing item, even
                // `cas ... 0` (checked against memcached 1.6.18 -C).
                if !config.use_cas || entry.seq != id {
                    self.stats.cas_badval += 1;
                    return StoreOutcome::Exists;
                }
                self.stats.cas_hits += 1;
                (flags, exptime, [value, &[]])
            }
        };
        let data = item_data(key, parts);
        self.finish_insert(hash, key, flags, exptime, data, ctx)
    }

    fn finish_insert(
        &mut self,
        hash: u64,
        key: &[u8],
        flags: u32,
        exptime: RelTime,
        data: Arc<[u8]>,
        ctx: &Ctx<'_>,
    ) -> StoreOutcome {
        match self.insert(hash, key, flags, exptime, data, ctx) {
            Ok(()) => StoreOutcome::Stored,
            Err(()) => StoreOutcome::OutOfMemory,
        }
    }

    pub fn delta(
        &mut self,
        hash: u64,
        key: &[u8],
        incr: bool,
        delta: u64,
        ctx: &Ctx<'_>,
    ) -> DeltaOutcome {
        let Some(entry) = self.find_live(hash, key, ctx) else {
            if incr {
                self.stats.incr_misses += 1;
            } else {
                self.stats.decr_misses += 1;
            }
            return DeltaOutcome::NotFound;
        };
        let old_len = entry.value_len();
        let Some(current) = parse_counter(&entry.data[usize::from(entry.key_len)..]) else {
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
        if text.len() < old_len {
            text.resize(old_len, b' ');
        }
        let (flags, exptime) = (entry.flags, entry.exptime);
        if incr {
            self.stats.incr_hits += 1;
        } else {
            self.stats.decr_hits += 1;
        }
        match self.insert(hash, key, flags, exptime, item_data(key, [&text, &[]]), ctx) {
            Ok(()) => DeltaOutcome::Value(new),
            Err(()) => DeltaOutcome::OutOfMemory,
        }
    }

    /// Stores a new version of `key` (its bytes are the start of `data`), replacing any old one,
    /// making room first. On failure (no room with evictions off) the old version stays.
    fn insert(
        &mut self,
        hash: u64,
        key: &[u8],
        flags: u32,
        exptime: RelTime,
        data: Arc<[u8]>,
        ctx: &Ctx<'_>,
    ) -> Result<(), ()> {
        let size = charge(key.len(), data.len() - key.len());
        let old = self.remove(hash, key);
        if size > self.budget || !self.make_room(size, ctx) {
            if let Some(old) = old {
                // Its queue slot may have been consumed while making room: give it a new one.
                self.used += old.size();
                self.queue.push_back((hash, old.seq));
                self.table.insert_unique(hash, old, |e| ctx.hash(e.key()));
            }
            self.stats.outofmemory += 1;
            return Err(());
        }
        let seq = ctx.next_seq();
        self.queue.push_back((hash, seq));
        let entry = Entry {
            data,
            seq,
            flags,
            exptime,
            time: ctx.now,
            key_len: key.len() as u8,
            bits: 0,
        };
        self.table.insert_unique(hash, entry, |e| ctx.hash(e.key()));
        self.used += size;
        self.stats.total_items += 1;
        if self.queue.len() > 2 * self.table.len() + 1024 {
            let table = &self.table;
            self.queue
                .retain(|&(hash, seq)| table.find(hash, |e| e.seq == seq).is_some());
        }
        Ok(())
    }

    /// Frees memory until `size` more bytes fit: dead items first as the hand meets them, then
    /// (with evictions on) CLOCK victims. Returns false when it cannot.
    fn make_room(&mut self, size: usize, ctx: &Ctx<'_>) -> bool {
        while self.used + size > self.budget {
            let Some((hash, seq)) = self.queue.pop_front() else {
                return false;
            };
            let Ok(mut slot) = self.table.find_entry(hash, |e| e.seq == seq) else {
                continue;
            };
            let entry = slot.get_mut();
            if is_dead(entry, ctx).is_some() {
                if entry.bits & FETCHED == 0 {
                    self.stats.expired_unfetched += 1;
                }
                self.stats.reclaimed += 1;
                self.used -= slot.remove().0.size();
                continue;
            }
            if !ctx.config.evictions {
                self.queue.push_front((hash, seq));
                return false;
            }
            if entry.bits & VISITED != 0 {
                entry.bits &= !VISITED;
                self.queue.push_back((hash, seq));
                continue;
            }
            if entry.bits & FETCHED == 0 {
                self.stats.evicted_unfetched += 1;
            }
            self.stats.evictions += 1;
            self.used -= slot.remove().0.size();
        }
        true
    }

    pub fn add_stats(&self, total: &mut StoreStats) {
        let s = &self.stats;
        total.curr_items += self.table.len() as u64;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_layout_is_40_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 40);
    }

    #[test]
    fn large_values_are_shared_small_ones_copied() {
        let data = item_data(b"k", [&[7u8; 10_000], &[]]);
        let entry = Entry {
            data: data.clone(),
            seq: 1,
            flags: 0,
            exptime: 0,
            time: 0,
            key_len: 1,
            bits: 0,
        };
        let value = entry.value();
        assert_eq!(value.len(), 10_000);
        assert_eq!(
            value.as_ptr(),
            data[1..].as_ptr(),
            "no copy of a large value"
        );
        let small = Entry {
            data: item_data(b"k", [b"abc", b"def"]),
            ..entry
        };
        assert_eq!(&small.value()[..], b"abcdef");
    }
}
