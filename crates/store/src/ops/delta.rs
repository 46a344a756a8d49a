//! `incr` and `decr`, as memcached's `do_add_delta`.

use crate::config::{memcached_item_size, SLAB_CHUNK_MAX};
use crate::layout::{NewItem, BINARY_KEY, HAS_CAS, HAS_EXPTIME};
use crate::numeric::parse_counter;
use crate::shard::{Ctx, Shard};
use crate::{Delta, DeltaOutcome, RelTime, Store};

impl Store {
    /// `incr` (`incr == true`) or `decr`: incr wraps at 2^64, decr stops at 0. Counts
    /// incr/decr hits and misses; a non-numeric value counts neither (as in memcached).
    ///
    /// A number not longer than the old value is padded with spaces to the old length, as
    /// memcached rewrites in place: memcached 1.6.18, `set n 0 0 2` `10`, `decr n 1`, `get n`
    /// answers "9 " (2 bytes). A longer number makes a longer value with the same flags and
    /// exptime. A new CAS id comes with it, unless no client has seen the old one (then a
    /// number that fits is written over the old in place, keeping it).
    pub fn delta(&self, key: &[u8], incr: bool, delta: u64, now: RelTime) -> DeltaOutcome {
        self.delta_with(key, &Delta::new(incr, delta), now)
    }

    /// [`Store::delta`] with the options of [`Delta`]: no padding, a compared CAS id, a miss
    /// that is not counted.
    pub fn delta_with(&self, key: &[u8], delta: &Delta, now: RelTime) -> DeltaOutcome {
        let (mut shard, index, hash, ctx) = self.locked(key, now);
        let shard = &mut *shard;
        let outcome = self.delta_locked(shard, index, hash, key, delta, &ctx);
        if let (DeltaOutcome::Value(_), Some(exptime)) = (outcome, delta.exptime) {
            // Found again: a longer number was written anew.
            if let Some((e, header)) = shard.find_live(hash, key, &ctx) {
                self.set_exptime(shard, index, hash, e, header, exptime, &ctx);
            }
        }
        outcome
    }

    /// [`Store::delta_with`] under the shard's lock, but for [`Delta::exptime`].
    fn delta_locked(
        &self,
        shard: &mut Shard,
        index: usize,
        hash: u64,
        key: &[u8],
        delta: &Delta,
        ctx: &Ctx,
    ) -> DeltaOutcome {
        let Delta {
            incr,
            by: delta,
            pad,
            compare_cas,
            count_miss,
            exptime: _,
        } = *delta;
        let now = ctx.now;
        let Some((e, header)) = shard.find_live(hash, key, ctx) else {
            match (count_miss, incr) {
                (false, _) => {}
                (true, true) => shard.counters.incr_misses += 1,
                (true, false) => shard.counters.decr_misses += 1,
            }
            return DeltaOutcome::NotFound;
        };
        let old_len = header.value_len;
        // memcached refuses to count in an empty or a chunked (over 512 KiB) item, whatever it
        // holds, before it compares a CAS id (memcached 1.6.18: a binary incr with another
        // CAS id of an empty value answers "Non-numeric").
        let size = memcached_item_size(self.config.use_cas, key.len(), header.flags, old_len);
        if old_len == 0 || size > SLAB_CHUNK_MAX {
            return DeltaOutcome::NonNumeric;
        }
        if let Some(cas) = compare_cas {
            if cas != shard.client_cas(e, &header, self.config.use_cas) {
                return DeltaOutcome::Exists;
            }
        }
        let Some(current) = parse_counter(shard.value(e, &header)) else {
            return DeltaOutcome::NonNumeric;
        };
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
        let mut value = Vec::with_capacity(old_len.max(text.len()));
        value.extend_from_slice(text);
        if pad && text.len() < old_len {
            value.resize(old_len, b' ');
        }
        // In place, as memcached does, when the number fits and the CAS id can change there
        // (always with -M, where every item has the field, so an incr never needs room), or
        // need not change because no client has seen it (see `Shard::may_rewrite_in_place`).
        let cas_in_place = header.bits & HAS_CAS != 0;
        let keeps_id =
            !self.config.use_cas || (self.config.evictions && shard.may_rewrite_in_place(e, ctx));
        if value.len() == old_len && (cas_in_place || keeps_id) {
            let cas = cas_in_place.then(|| ctx.seq_range(0));
            shard.set_value_in_place(e, &header, &value, cas);
            shard.mark_read(hash, e, false);
            return DeltaOutcome::Value(new);
        }
        let item = NewItem {
            key,
            value: &value,
            flags: header.flags,
            exptime: header.exptime,
            cas: cas_in_place.then(|| ctx.seq_range(0)),
            keep_exptime_field: header.bits & HAS_EXPTIME != 0,
            binary_key: header.bits & BINARY_KEY != 0,
        };
        let queue = shard.seg(e.segment()).queue;
        let marked = ctx.flush.marks_new_write(now);
        let place = if self.make_index_room(shard, index, hash, ctx) {
            self.place_for(shard, index, queue, &item, marked, ctx)
        } else {
            None
        };
        match place {
            Some(place) if shard.put(place, queue, hash, &item, ctx) => {
                if pad && text.len() <= old_len {
                    // memcached rewrites this in place: no new item for total_items.
                    shard.counters.total_items -= 1;
                }
                DeltaOutcome::Value(new)
            }
            _ => {
                shard.counters.outofmemory += 1;
                DeltaOutcome::OutOfMemory
            }
        }
    }
}
