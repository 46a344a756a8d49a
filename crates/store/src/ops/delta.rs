//! `incr` and `decr`, as memcached's `do_add_delta`.

use crate::config::{memcached_item_size, SLAB_CHUNK_MAX};
use crate::item::{charge, join};
use crate::numeric::parse_counter;
use crate::{DeltaOutcome, RelTime, Store};

impl Store {
    /// `incr` (`incr == true`) or `decr`: incr wraps at 2^64, decr stops at 0. Counts
    /// incr/decr hits and misses; a non-numeric value counts neither (as in memcached).
    ///
    /// The new number replaces the value in place when it is not longer than the old one, padded
    /// with spaces to the old length: memcached 1.6.18, `set n 0 0 2` `10`, `decr n 1`, `get n`
    /// answers "9 " (2 bytes). A longer number makes a new item with the same flags and exptime.
    /// Either way the CAS id is new.
    pub fn delta(&self, key: &[u8], incr: bool, delta: u64, now: RelTime) -> DeltaOutcome {
        let (mut shard, index, hash, ctx) = self.locked(key, now);
        let shard = &mut *shard;
        let Some(id) = shard.find_live(hash, key, &ctx) else {
            if incr {
                shard.counters.incr_misses += 1;
            } else {
                shard.counters.decr_misses += 1;
            }
            return DeltaOutcome::NotFound;
        };
        let slot = shard.slot(id);
        let old_len = slot.value().len();
        // memcached refuses to count in a chunked (over 512 KiB) item, whatever it holds.
        let size = memcached_item_size(self.config.use_cas, key.len(), slot.flags, old_len);
        if size > SLAB_CHUNK_MAX {
            return DeltaOutcome::NonNumeric;
        }
        let Some(current) = parse_counter(slot.value()) else {
            return DeltaOutcome::NonNumeric;
        };
        let (flags, exptime) = (slot.flags, slot.exptime);
        let new = if incr {
            current.wrapping_add(delta)
        } else {
            current.saturating_sub(delta)
        };
        if incr {
            shard.counters.incr_hits += 1;
        } else {
            shard.counters.decr_hits += 1;
        }
        let mut digits = itoa::Buffer::new();
        let text = digits.format(new).as_bytes();
        if text.len() <= old_len {
            const SPACES: [u8; 20] = [b' '; 20];
            let mut data = Vec::with_capacity(key.len() + old_len);
            data.extend_from_slice(key);
            data.extend_from_slice(text);
            let mut pad = old_len - text.len();
            while pad > 0 {
                let n = pad.min(SPACES.len());
                data.extend_from_slice(&SPACES[..n]);
                pad -= n;
            }
            shard.rewrite(id, data.into(), ctx.next_seq());
            return DeltaOutcome::Value(new);
        }
        let data = join(key, text, &[]);
        if !self.make_room(shard, index, charge(data.len()), &ctx) {
            shard.counters.outofmemory += 1;
            return DeltaOutcome::OutOfMemory;
        }
        if !self.link_reserved(shard, index, hash, key.len(), flags, exptime, data, &ctx) {
            return DeltaOutcome::OutOfMemory;
        }
        DeltaOutcome::Value(new)
    }
}
