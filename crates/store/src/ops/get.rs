//! `get`/`gets`, `gat`/`gats` and `touch`.

use crate::item::{Item, FETCHED, VISITED};
use crate::{RelTime, Store, TouchOutcome};

impl Store {
    /// `get`/`gets`: counts get_hits/get_misses (and get_expired/get_flushed when the item found
    /// is dead, which is then removed).
    pub fn get(&self, key: &[u8], now: RelTime) -> Option<Item> {
        let (mut shard, _, hash, ctx) = self.locked(key, now);
        let Some(id) = shard.find_live(hash, key, &ctx) else {
            shard.counters.get_misses += 1;
            return None;
        };
        shard.counters.get_hits += 1;
        shard.mark_accessed(id);
        Some(shard.slot(id).to_item(self.config.use_cas))
    }

    /// Reads an item without counting a hit or marking it accessed: for protocol replies that
    /// report the state a write left (the binary protocol's CAS after a store, meta's `c` flag).
    pub fn peek(&self, key: &[u8], now: RelTime) -> Option<Item> {
        let (mut shard, _, hash, ctx) = self.locked(key, now);
        let id = shard.find_live(hash, key, &ctx)?;
        Some(shard.slot(id).to_item(self.config.use_cas))
    }

    /// `gat`/`gats`: get and set a new exptime; the CAS id stays. memcached 1.6.18 counts these
    /// as touches only: after `gat 100 k` on a hit, `stats` shows cmd_touch 1, touch_hits 1,
    /// get_hits 0, cmd_get 0; on a miss touch_misses 1 and get_misses 0 (cmd_* are the server's).
    pub fn get_and_touch(&self, key: &[u8], exptime: RelTime, now: RelTime) -> Option<Item> {
        let (mut shard, _, hash, ctx) = self.locked(key, now);
        let Some(id) = shard.find_live(hash, key, &ctx) else {
            shard.counters.touch_misses += 1;
            return None;
        };
        shard.counters.touch_hits += 1;
        let slot = shard.slot_mut(id);
        slot.exptime = exptime;
        slot.state |= FETCHED | VISITED;
        Some(slot.to_item(self.config.use_cas))
    }

    /// `touch`: a new exptime, CAS id unchanged. Counts touch_hits/touch_misses.
    pub fn touch(&self, key: &[u8], exptime: RelTime, now: RelTime) -> TouchOutcome {
        let (mut shard, _, hash, ctx) = self.locked(key, now);
        let Some(id) = shard.find_live(hash, key, &ctx) else {
            shard.counters.touch_misses += 1;
            return TouchOutcome::NotFound;
        };
        shard.counters.touch_hits += 1;
        let slot = shard.slot_mut(id);
        slot.exptime = exptime;
        slot.state |= FETCHED | VISITED;
        TouchOutcome::Touched
    }
}
