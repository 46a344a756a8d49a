//! One shard of the store: a slot arena holding the items, a hash index of slot ids, the CLOCK
//! hand (see `evict.rs`) and the counters of the operations that ran here. Everything happens
//! under the shard's mutex.
//!
//! Memory held by the arena and the index is charged to the shared [`Budget`] by capacity, before
//! it is allocated, so the bound covers the index too: a shard grows its arena by a quarter (not
//! double, to keep the slack small) and its index when it is full, after reserving the bytes.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use hashbrown::HashTable;

use crate::budget::Budget;
use crate::item::{charge, dead, Dead, FlushState, Slot, FETCHED, LIVE, VISITED};
use crate::stats::Counters;
use crate::{RelTime, StoreConfig};

/// What every shard operation needs from the store.
pub(crate) struct Ctx<'a> {
    pub now: RelTime,
    pub flush: FlushState,
    pub config: &'a StoreConfig,
    pub hasher: &'a std::collections::hash_map::RandomState,
    pub budget: &'a Budget,
    pub next_seq: &'a AtomicU64,
}

impl Ctx<'_> {
    /// A fresh sequence number, which is also the CAS id when CAS is on. Starts at 1.
    pub fn next_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    pub fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }
}

/// End of the free-slot list.
const NO_SLOT: u32 = u32::MAX;

pub(crate) struct Shard {
    /// Slot ids, hashed by their key.
    index: HashTable<u32>,
    /// Buckets of `index` (hashbrown's capacity is 7/8 of them), known after each growth.
    index_buckets: usize,
    pub(crate) slots: Vec<Slot>,
    /// Free slots, linked through their `seq` field.
    free_head: u32,
    /// CLOCK hand: the next slot the eviction scan looks at.
    pub(crate) hand: usize,
    live: usize,
    /// Bytes reserved for `slots` and `index` (by capacity).
    index_bytes: usize,
    pub counters: Counters,
}

/// Heap bytes of a hashbrown table with this many buckets of `u32`: the buckets, a control byte
/// each and a trailing group of 16 control bytes.
fn table_bytes(buckets: usize) -> usize {
    if buckets == 0 {
        0
    } else {
        buckets * (std::mem::size_of::<u32>() + 1) + 16
    }
}

/// hashbrown's bucket count for a table of this (full) capacity.
fn buckets_for_capacity(capacity: usize) -> usize {
    match capacity {
        0 => 0,
        1..=7 => capacity + 1,
        _ => capacity / 7 * 8,
    }
}

impl Shard {
    pub fn new() -> Shard {
        Shard {
            index: HashTable::new(),
            index_buckets: 0,
            slots: Vec::new(),
            free_head: NO_SLOT,
            hand: 0,
            live: 0,
            index_bytes: 0,
            counters: Counters::default(),
        }
    }

    pub fn live_items(&self) -> usize {
        self.live
    }

    pub fn index_bytes(&self) -> usize {
        self.index_bytes
    }

    pub fn slot(&self, id: u32) -> &Slot {
        &self.slots[id as usize]
    }

    pub fn slot_mut(&mut self, id: u32) -> &mut Slot {
        &mut self.slots[id as usize]
    }

    /// The slot holding `key`, dead or alive.
    pub fn lookup(&self, hash: u64, key: &[u8]) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(hash, |&id| slots[id as usize].key() == key)
            .copied()
    }

    /// The live slot holding `key`. A dead item met here is unlinked and counted the way memcached's
    /// `do_item_get` counts it (`get_expired`/`get_flushed`, whatever the command).
    pub fn find_live(&mut self, hash: u64, key: &[u8], ctx: &Ctx<'_>) -> Option<u32> {
        let id = self.lookup(hash, key)?;
        match dead(self.slot(id), ctx.now, &ctx.flush) {
            None => Some(id),
            Some(why) => {
                match why {
                    Dead::Expired => self.counters.get_expired += 1,
                    Dead::Flushed => self.counters.get_flushed += 1,
                }
                self.unlink(id, hash, ctx.budget);
                None
            }
        }
    }

    /// Marks a hit: fetched, and visited for CLOCK.
    pub fn mark_accessed(&mut self, id: u32) {
        self.slot_mut(id).state |= FETCHED | VISITED;
    }

    /// Removes the item in slot `id` (whose key hashes to `hash`) and gives its bytes back.
    pub fn unlink(&mut self, id: u32, hash: u64, budget: &Budget) {
        if let Ok(entry) = self.index.find_entry(hash, |&other| other == id) {
            entry.remove();
        }
        let slot = std::mem::replace(&mut self.slots[id as usize], Slot::FREE);
        debug_assert!(slot.is_live());
        budget.release(slot.charge());
        self.live -= 1;
        let free = &mut self.slots[id as usize];
        free.seq = u64::from(self.free_head);
        self.free_head = id;
    }

    /// Unlinks the item in slot `id`, hashing its key to find it in the index.
    pub fn unlink_slot(&mut self, id: u32, ctx: &Ctx<'_>) {
        let hash = ctx.hash(self.slot(id).key());
        self.unlink(id, hash, ctx.budget);
    }

    /// Bytes the arena must grow by before one more item can be linked (0: there is room).
    pub fn arena_growth(&self) -> usize {
        if self.free_head != NO_SLOT || self.slots.len() < self.slots.capacity() {
            return 0;
        }
        let capacity = self.slots.capacity();
        let grown = (capacity + capacity / 4).max(16);
        (grown - capacity) * std::mem::size_of::<Slot>()
    }

    /// Grows the arena by `bytes`, which the caller has reserved.
    pub fn grow_arena(&mut self, bytes: usize, budget: &Budget) {
        let before = self.slots.capacity();
        self.slots
            .reserve_exact(bytes / std::mem::size_of::<Slot>());
        let actual = (self.slots.capacity() - before) * std::mem::size_of::<Slot>();
        self.settle_growth(bytes, actual, budget);
    }

    /// Bytes the index may grow by before one more item can be inserted (an upper bound: hashbrown
    /// may rehash in place instead, when deletions left tombstones).
    pub fn index_growth(&self) -> usize {
        if self.index.len() < self.index.capacity() {
            return 0;
        }
        let wanted =
            (self.index.len() + 1).max(buckets_for_capacity_inverse(self.index_buckets) + 1);
        let buckets = if wanted < 4 {
            4
        } else if wanted < 8 {
            8
        } else {
            (wanted * 8 / 7).next_power_of_two()
        };
        table_bytes(buckets).saturating_sub(table_bytes(self.index_buckets))
    }

    /// Makes room in the index for one more entry; the caller has reserved `bytes`.
    pub fn grow_index(&mut self, bytes: usize, ctx: &Ctx<'_>) {
        let slots = &self.slots;
        let hasher = ctx.hasher;
        self.index
            .reserve(1, |&id| hasher.hash_one(slots[id as usize].key()));
        let buckets = buckets_for_capacity(self.index.capacity());
        let actual = table_bytes(buckets).saturating_sub(table_bytes(self.index_buckets));
        self.index_buckets = buckets;
        self.settle_growth(bytes, actual, ctx.budget);
    }

    /// Growth reserved `reserved` bytes and took `actual`: give back the difference (or, should an
    /// estimate ever fall short, take the rest; the next store evicts it back under the bound).
    fn settle_growth(&mut self, reserved: usize, actual: usize, budget: &Budget) {
        if actual <= reserved {
            budget.release(reserved - actual);
        } else if !budget.try_reserve(actual - reserved) {
            budget.force(actual - reserved);
        }
        self.index_bytes += actual;
    }

    /// Links a new item; its bytes are reserved and `arena_growth`/`index_growth` are 0.
    #[allow(clippy::too_many_arguments)]
    pub fn link(
        &mut self,
        hash: u64,
        data: Bytes,
        key_len: usize,
        flags: u32,
        exptime: RelTime,
        seq: u64,
        ctx: &Ctx<'_>,
    ) {
        let slot = Slot {
            data,
            seq,
            key_len: key_len as u32,
            flags,
            exptime,
            time: ctx.now,
            state: LIVE,
        };
        let id = if self.free_head != NO_SLOT {
            let id = self.free_head;
            self.free_head = self.slots[id as usize].seq as u32;
            self.slots[id as usize] = slot;
            id
        } else {
            self.slots.push(slot);
            (self.slots.len() - 1) as u32
        };
        let slots = &self.slots;
        let hasher = ctx.hasher;
        self.index
            .insert_unique(hash, id, |&id| hasher.hash_one(slots[id as usize].key()));
        self.live += 1;
        self.counters.total_items += 1;
    }

    /// Replaces the value of a live item in place (same key, same size), with a new sequence number.
    pub fn rewrite(&mut self, id: u32, data: Bytes, seq: u64) {
        let slot = self.slot_mut(id);
        debug_assert_eq!(charge(slot.data.len()), charge(data.len()));
        slot.data = data;
        slot.seq = seq;
        slot.state |= VISITED;
    }

    /// Unlinks every item an effective `flush_all` has invalidated (what memcached's LRU crawler
    /// does in the background shortly after a flush). Not counted.
    pub fn sweep_flushed(&mut self, ctx: &Ctx<'_>) {
        for id in 0..self.slots.len() as u32 {
            let slot = self.slot(id);
            if slot.is_live() && ctx.flush.flushes(slot, ctx.now) {
                self.unlink_slot(id, ctx);
            }
        }
    }
}

/// The capacity hashbrown reports for a table of `buckets` buckets.
fn buckets_for_capacity_inverse(buckets: usize) -> usize {
    if buckets < 8 {
        buckets.saturating_sub(1)
    } else {
        buckets / 8 * 7
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_arithmetic_matches_hashbrown() {
        let hasher = std::collections::hash_map::RandomState::new();
        let mut table: HashTable<u32> = HashTable::new();
        let mut seen = Vec::new();
        for i in 0..10_000u32 {
            if table.len() == table.capacity() {
                table.reserve(1, |&x| hasher.hash_one(x));
                let buckets = buckets_for_capacity(table.capacity());
                assert_eq!(buckets_for_capacity_inverse(buckets), table.capacity());
                assert!(buckets.is_power_of_two(), "{buckets}");
                seen.push(buckets);
            }
            table.insert_unique(hasher.hash_one(i), i, |&x| hasher.hash_one(x));
        }
        assert_eq!(seen[..4], [4, 8, 16, 32]);
    }
}
