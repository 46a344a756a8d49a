//! Eviction, behind a small interface so that a segment-based engine can replace it: a shard
//! frees one item with [`Shard::evict_one`], and [`Store::make_room`] reserves bytes from the
//! shared budget, taking victims from the shards in turn.
//!
//! The policy is CLOCK (second-chance FIFO) over each shard's slot arena: a hit only sets the
//! item's visited bit, with no list to update; the hand clears visited bits as it passes and
//! evicts the first item without one. A freed slot is reused by the next store, just behind the
//! hand, so a new item gets a full turn of the clock before it can be evicted. Dead (expired or
//! flushed) items the hand meets are reclaimed first, and counted as memcached's LRU tail does
//! (`reclaimed`, `expired_unfetched`), never as evictions.

use std::sync::atomic::Ordering;

use crate::item::{dead, VISITED};
use crate::shard::{Ctx, Shard};
use crate::Store;

/// With evictions off (`-M`), how many slots one attempt looks at for a dead item to reclaim
/// (memcached searches 5 items at the LRU tail).
const DEAD_SEARCH: usize = 16;

/// How many passes over the shards a store makes looking for something to evict; a pass skips
/// shards that are locked at that moment, so another pass follows only when one was busy.
const REMOTE_PASSES: usize = 3;

impl Shard {
    /// Frees one item: a dead one the hand meets, else (with evictions on) the CLOCK victim.
    /// Returns false when there is nothing it may free. Without `second_turn` the hand goes round
    /// once (clearing visited bits): a shard whose items were all used lately gives up nothing
    /// and the caller looks elsewhere first.
    pub fn evict_one(&mut self, ctx: &Ctx<'_>, second_turn: bool) -> bool {
        if self.live_items() == 0 {
            return false;
        }
        let len = self.slots.len();
        let evictions = ctx.config.evictions;
        // Two turns are enough: the first clears every visited bit.
        let steps = if !evictions {
            DEAD_SEARCH.min(len)
        } else if second_turn {
            2 * len + 1
        } else {
            len
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
    /// Reserves `bytes` from the budget, evicting as needed. Victims are taken from the shards in
    /// turn, following one cursor shared by all writers, so eviction pressure is spread evenly
    /// (an approximation of one CLOCK over the whole cache): a shard that takes many writes does
    /// not drain itself while others keep cold items. `own` is the caller's shard (number
    /// `own_index`, already locked); others are only `try_lock`ed, so two stores that both need
    /// room cannot deadlock, and a shard busy at that moment is skipped.
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
            if !self.evict_somewhere(own, own_index, ctx) {
                return false;
            }
        }
    }

    /// Frees one item from the next shard in turn that has one. The first pass only takes items
    /// not used since the hand last passed; later ones take whatever CLOCK gives. False when a
    /// later pass found nothing to evict, or [`REMOTE_PASSES`] passes met only busy shards.
    fn evict_somewhere(&self, own: &mut Shard, own_index: usize, ctx: &Ctx<'_>) -> bool {
        let count = self.shards.len();
        for pass in 0..REMOTE_PASSES {
            let second_turn = pass > 0;
            let mut busy = false;
            for _ in 0..count {
                let index = self.evict_cursor.fetch_add(1, Ordering::Relaxed) % count;
                if index == own_index {
                    if own.evict_one(ctx, second_turn) {
                        return true;
                    }
                    continue;
                }
                match self.shards[index].try_lock() {
                    Some(mut shard) => {
                        if shard.evict_one(ctx, second_turn) {
                            return true;
                        }
                    }
                    None => busy = true,
                }
            }
            if !busy && second_turn {
                return false;
            }
            if busy && pass + 1 < REMOTE_PASSES {
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
