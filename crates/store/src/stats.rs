//! Counters with memcached's `stats` names. Each shard keeps its own [`Counters`] under its lock
//! (no shared cache line on the hot path); `Store::stats` adds them up.

use crate::RelTime;

/// Counters with memcached's `stats` names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Live items (memcached drops flushed items at once, and so do we).
    pub curr_items: u64,
    pub total_items: u64,
    /// Bytes held: every item's key, value and per-item overhead, plus the index and slot arenas
    /// (by capacity). Never above `max_bytes`.
    pub bytes: u64,
    pub evictions: u64,
    /// Of `evictions`, items that had an exptime (memcached's `evicted_nonzero`).
    pub evicted_nonzero: u64,
    /// At the latest eviction, seconds since the evicted segment opened (memcached's
    /// `evicted_time`: seconds since the evicted item's last access, which we do not keep).
    pub evicted_time: u64,
    pub reclaimed: u64,
    pub expired_unfetched: u64,
    pub evicted_unfetched: u64,
    pub get_hits: u64,
    pub get_misses: u64,
    pub get_expired: u64,
    pub get_flushed: u64,
    pub delete_hits: u64,
    pub delete_misses: u64,
    pub incr_hits: u64,
    pub incr_misses: u64,
    pub decr_hits: u64,
    pub decr_misses: u64,
    pub cas_hits: u64,
    pub cas_misses: u64,
    pub cas_badval: u64,
    pub touch_hits: u64,
    pub touch_misses: u64,
    /// Stores refused for lack of memory (with `-M`).
    pub outofmemory: u64,
    /// Of `bytes`, what the index (hash tables, by capacity) and the ghost hold.
    pub index_bytes: u64,
    /// Of `index_bytes`, the ghost's share (allocated up front, touched once evictions start).
    pub ghost_bytes: u64,
    /// Entries the index's tables take before they next grow.
    pub index_capacity: u64,
    /// Index tables with a growth under way (holding their old buckets while they empty them).
    pub index_growths: u64,
    /// Segments held (open or closed), and of those, segments holding a live item.
    pub segments: u64,
    pub segments_in_use: u64,
    /// Bytes of live items (header, key and value each; memcached's `mem_requested`).
    pub item_bytes: u64,
    /// Seconds since the oldest segment holding a live item opened: about the age of the oldest
    /// item (memcached's `age`, the time since its oldest item was last accessed).
    pub oldest_item_age: u64,
}

/// The counters one shard bumps. `stats reset` zeroes all of them (memcached's `stats reset` zeroes
/// its thread stats and the global counters; `curr_items` and `bytes` are not counters).
#[derive(Debug, Clone, Default)]
pub(crate) struct Counters {
    pub total_items: u64,
    pub evictions: u64,
    pub evicted_nonzero: u64,
    /// When this shard last evicted an item, and the age then of the segment it was in.
    pub last_eviction: Option<(RelTime, RelTime)>,
    pub reclaimed: u64,
    pub expired_unfetched: u64,
    pub evicted_unfetched: u64,
    pub get_hits: u64,
    pub get_misses: u64,
    pub get_expired: u64,
    pub get_flushed: u64,
    pub delete_hits: u64,
    pub delete_misses: u64,
    pub incr_hits: u64,
    pub incr_misses: u64,
    pub decr_hits: u64,
    pub decr_misses: u64,
    pub cas_hits: u64,
    pub cas_misses: u64,
    pub cas_badval: u64,
    pub touch_hits: u64,
    pub touch_misses: u64,
    pub outofmemory: u64,
}

impl Counters {
    /// Adds these to `total`; `latest_eviction` is the latest eviction seen so far (from other
    /// shards), which decides whose `evicted_time` the total shows.
    pub fn add_to(&self, total: &mut StoreStats, latest_eviction: &mut Option<RelTime>) {
        total.total_items += self.total_items;
        total.evictions += self.evictions;
        total.evicted_nonzero += self.evicted_nonzero;
        if let Some((at, age)) = self.last_eviction {
            if latest_eviction.is_none_or(|latest| at >= latest) {
                *latest_eviction = Some(at);
                total.evicted_time = u64::from(age);
            }
        }
        total.reclaimed += self.reclaimed;
        total.expired_unfetched += self.expired_unfetched;
        total.evicted_unfetched += self.evicted_unfetched;
        total.get_hits += self.get_hits;
        total.get_misses += self.get_misses;
        total.get_expired += self.get_expired;
        total.get_flushed += self.get_flushed;
        total.delete_hits += self.delete_hits;
        total.delete_misses += self.delete_misses;
        total.incr_hits += self.incr_hits;
        total.incr_misses += self.incr_misses;
        total.decr_hits += self.decr_hits;
        total.decr_misses += self.decr_misses;
        total.cas_hits += self.cas_hits;
        total.cas_misses += self.cas_misses;
        total.cas_badval += self.cas_badval;
        total.touch_hits += self.touch_hits;
        total.touch_misses += self.touch_misses;
        total.outofmemory += self.outofmemory;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_shows_the_latest_evictions_time_whatever_the_shard_order() {
        let early = Counters {
            last_eviction: Some((5, 3)),
            ..Default::default()
        };
        let late = Counters {
            last_eviction: Some((9, 1)),
            ..Default::default()
        };
        for order in [[&early, &late], [&late, &early]] {
            let mut total = StoreStats::default();
            let mut latest = None;
            for counters in order {
                counters.add_to(&mut total, &mut latest);
            }
            assert_eq!(total.evicted_time, 1);
        }
        let mut total = StoreStats::default();
        Counters::default().add_to(&mut total, &mut None);
        assert_eq!(total.evicted_time, 0, "no eviction yet");
    }
}
