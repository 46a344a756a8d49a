//! `delete`, and the quiet unlink memcached does after a refused `set`.

use crate::{DeleteOutcome, RelTime, Store};

impl Store {
    /// `delete`: counts delete_hits/delete_misses.
    pub fn delete(&self, key: &[u8], now: RelTime) -> DeleteOutcome {
        self.delete_if(key, None, false, now)
    }

    /// `delete` of the item only if its CAS id is `compare_cas` (any id when None), else
    /// [`DeleteOutcome::Exists`], which counts as a delete miss when `mismatch_is_miss`: memcached
    /// 1.6.18 counts `md k C<other id>` so, and a binary delete with another CAS as nothing.
    pub fn delete_if(
        &self,
        key: &[u8],
        compare_cas: Option<u64>,
        mismatch_is_miss: bool,
        now: RelTime,
    ) -> DeleteOutcome {
        let (mut shard, _, hash, ctx) = self.locked(key, now);
        let Some((e, header)) = shard.find_live(hash, key, &ctx) else {
            shard.counters.delete_misses += 1;
            return DeleteOutcome::NotFound;
        };
        if let Some(cas) = compare_cas {
            if cas != shard.client_cas(e, &header, self.config.use_cas) {
                if mismatch_is_miss {
                    shard.counters.delete_misses += 1;
                }
                return DeleteOutcome::Exists;
            }
        }
        shard.remove(hash, e, &self.budget);
        shard.counters.delete_hits += 1;
        DeleteOutcome::Deleted
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
