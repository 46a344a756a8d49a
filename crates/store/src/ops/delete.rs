//! `delete`, and the quiet unlink memcached does after a refused `set`.

use crate::{DeleteOutcome, RelTime, Store};

impl Store {
    /// `delete`: counts delete_hits/delete_misses.
    pub fn delete(&self, key: &[u8], now: RelTime) -> DeleteOutcome {
        let (mut shard, _, hash, ctx) = self.locked(key, now);
        match shard.find_live(hash, key, &ctx) {
            Some((e, _)) => {
                shard.remove(hash, e, &self.budget);
                shard.counters.delete_hits += 1;
                DeleteOutcome::Deleted
            }
            None => {
                shard.counters.delete_misses += 1;
                DeleteOutcome::NotFound
            }
        }
    }

    /// Removes `key` without counting anything (memcached does this when a `set` is refused as
    /// too large, so that the old value does not outlive the failed write).
    pub fn unlink(&self, key: &[u8], now: RelTime) {
        let (mut shard, _, hash, _) = self.locked(key, now);
        if let Some(e) = shard.lookup(hash, key) {
            shard.remove(hash, e, &self.budget);
        }
    }
}
