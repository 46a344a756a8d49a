//! Eviction, behind a small interface so that a segment-based engine can replace it: a shard
//! frees one item with [`Shard::evict_one`], and [`Store::make_room`] reserves bytes from the
//! shared budget, evicting first from the writer's own shard and then from others.
//!
//! The policy is CLOCK (second-chance FIFO) over each shard's slot arena: a hit only sets the
//! item's visited bit, with no list to update; the hand clears visited bits as it passes and
//! evicts the first item without one. A freed slot is reused by the next store, just behind the
//! hand, so a new item gets a full turn of the clock before it can be evicted. Dead (expired or
//! flushed) items the hand meets are reclaimed first, and counted as memcached's LRU tail does
//! (`reclaimed`, `expired_unfetched`), never as evictions.

use crate::item::{dead, VISITED};
use crate::shard::{Ctx, Shard};
use crate::Store;

/// With evictions off (`-M`), how many slots one attempt looks at for a dead item to reclaim
/// (memcached searches 5 items at the LRU tail).
const DEAD_SEARCH: usize = 16;

/// How many passes over the other shards a store makes when its own shard has nothing left to
/// evict; a pass skips shards that are locked at that moment.
const REMOTE_PASSES: usize = 3;

impl Shard {
    /// Frees one item: a dead one the hand meets, else (with evictions on) the CLOCK victim.
    /// Returns false when there is nothing it may free.
    pub fn evict_one(&mut self, ctx: &Ctx<'_>) -> bool {
        if self.live_items() == 0 {
            return false;
        }
        let len = self.slots.len();
        let evictions = ctx.config.evictions;
        // Two turns are enough: the first clears every visited bit.
        let steps = if evictions {
            2 * len + 1
        } else {
            DEAD_SEARCH.min(len)
        };
        for _ in 0..steps {
            if self.hand >= len {
                self.hand = 0;
            }
            let id = self.hand as u32;
            self.hand += 1;
            let slot = &self.slots[id as usize];
            if !slot.is_live() {
                continue;
            }
            let unfetched = !slot.was_fetched();
            let is_dead = dead(slot, ctx.now, &ctx.flush).is_some();
            if is_dead {
                self.counters.reclaimed += 1;
                self.counters.expired_unfetched += u64::from(unfetched);
                self.unlink_slot(id, ctx);
                return true;
            }
            if !evictions {
                continue;
            }
            let slot = &mut self.slots[id as usize];
            if slot.state & VISITED != 0 {
                slot.state &= !VISITED;
                continue;
            }
            self.counters.evictions += 1;
            self.counters.evicted_unfetched += u64::from(unfetched);
            self.unlink_slot(id, ctx);
            return true;
        }
        false
    }
}

impl Store {
    /// Reserves `bytes` from the budget, evicting from `own` (shard number `own_index`, locked by
    /// the caller) and then from other shards. Other shards are only `try_lock`ed, so two stores
    /// that both need room elsewhere cannot deadlock; a shard busy at that moment is skipped.
    pub(crate) fn make_room(
        &self,
        own: &mut Shard,
        own_index: usize,
        bytes: usize,
        ctx: &Ctx<'_>,
    ) -> bool {
        if bytes > self.budget.limit() {
            return false;
        }
        loop {
            if self.budget.try_reserve(bytes) {
                return true;
            }
            if own.evict_one(ctx) || self.evict_elsewhere(own_index, ctx) {
                continue;
            }
            return false;
        }
    }

    fn evict_elsewhere(&self, own_index: usize, ctx: &Ctx<'_>) -> bool {
        let count = self.shards.len();
        for pass in 0..REMOTE_PASSES {
            let mut busy = false;
            for step in 1..count {
                let index = (own_index + step) % count;
                match self.shards[index].try_lock() {
                    Some(mut shard) => {
                        if shard.evict_one(ctx) {
                            return true;
                        }
                    }
                    None => busy = true,
                }
            }
            if !busy {
                return false;
            }
            if pass + 1 < REMOTE_PASSES {
                std::thread::yield_now();
            }
        }
        false
    }

    /// Makes sure `shard` can link one more item: grows its arena and index, reserving their bytes
    /// first. False when the bytes cannot be found.
    pub(crate) fn make_slot(&self, shard: &mut Shard, own_index: usize, ctx: &Ctx<'_>) -> bool {
        let arena = shard.arena_growth();
        if arena > 0 {
            if !self.make_room(shard, own_index, arena, ctx) {
                return false;
            }
            // Making room may have freed a slot here; then the reserved bytes go back.
            if shard.arena_growth() == 0 {
                self.budget.release(arena);
            } else {
                shard.grow_arena(arena, &self.budget);
            }
        }
        let index = shard.index_growth();
        if index > 0 {
            if !self.make_room(shard, own_index, index, ctx) {
                return false;
            }
            if shard.index_growth() == 0 {
                self.budget.release(index);
            } else {
                shard.grow_index(index, ctx);
            }
        }
        true
    }
}
