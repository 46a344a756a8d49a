//! Sizing the index for a bulk load (a restart's). A table grows by a quarter at a time, and a
//! growth places each of its entries again by a hash that needs the entry's key, read from its
//! segment (`table.rs`): through a load into an empty store every entry is rehashed about four
//! times, most of the time a restart of a large cache took. With the load's keys counted first,
//! each table takes at once the size it would have grown to, and no entry moves. Only when the
//! load fits: a load larger than the memory (a restart with a smaller `-m`) keeps fewer keys than
//! it planned, and an index sized for all of them would take the room of items.

use crate::index::{self, SUBTABLES};
use crate::{Store, SHARDS};

/// How many keys of a coming bulk load go to each index table ([`Store::index_plan`]).
pub struct IndexPlan {
    route: Box<[u8]>,
    /// By shard, then table.
    counts: Vec<usize>,
    /// The keys' and values' bytes: less than the items take in the store (their headers).
    item_bytes: usize,
}

impl IndexPlan {
    /// Keys counted.
    pub fn keys(&self) -> usize {
        self.counts.iter().sum()
    }
}

impl Store {
    /// An empty plan: count each key of the load with [`Store::plan_key`], then size the index
    /// with [`Store::presize_index`] before storing them.
    pub fn index_plan(&self) -> IndexPlan {
        IndexPlan {
            route: index::route_table(),
            counts: vec![0; SHARDS * SUBTABLES],
            item_bytes: 0,
        }
    }

    /// Counts an item the load will store (each key once), with its value's length.
    pub fn plan_key(&self, plan: &mut IndexPlan, key: &[u8], value_len: usize) {
        let hash = self.hash_key(key).0;
        let table = Self::shard_of(hash) * SUBTABLES + index::route(&plan.route, hash);
        plan.counts[table] += 1;
        plan.item_bytes += key.len() + value_len;
    }

    /// Gives each empty index table the size it would reach by taking its planned keys one by
    /// one, its bytes reserved from the budget, if the planned items' keys and values and those
    /// tables fit in what the budget has left. Returns the bytes reserved (0: nothing to size, or
    /// the load does not fit; nothing changed). A table that holds entries keeps its size: it
    /// grows as it fills, as without a plan.
    pub fn presize_index(&self, plan: &IndexPlan) -> usize {
        let chunks = || self.shards.iter().zip(plan.counts.chunks(SUBTABLES));
        let needed: usize = chunks()
            .map(|(s, counts)| s.lock().presize_bytes(counts))
            .sum();
        let free = self.budget.limit().saturating_sub(self.budget.used());
        if needed == 0 || plan.item_bytes.saturating_add(needed) > free {
            return 0;
        }
        let now = self.last_now.load(std::sync::atomic::Ordering::Relaxed);
        let ctx = self.ctx(now);
        let mut reserved = 0;
        for (shard, counts) in chunks() {
            reserved += shard.lock().presize_index(counts, &ctx);
        }
        reserved
    }
}
