//! The storage commands: set, add, replace, append, prepend, cas.
//!
//! The order of checks is memcached's: room for the new item is found (evicting if need be)
//! before the key is looked at, so with `-M` and a full cache even an `add` of an existing key or
//! a `cas` of a missing one answers out of memory. Append and prepend then need room for the
//! combined item as well, with the old item's flags checked against `item_size_max` (NOT_STORED
//! in memcached; we return [`StoreOutcome::TooLarge`] and the server answers NOT_STORED).

use crate::layout::{NewItem, HAS_EXPTIME};
use crate::segment::Queue;
use crate::{item_size_ok, RelTime, Store, StoreMode, StoreOutcome};

/// What the meta protocol's `ms` adds to a store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// The key was sent base64-encoded (`b`): it is stored as binary and returned encoded.
    pub binary_key: bool,
    /// `I` with a compare-and-swap: a CAS id *older* than the item's still stores, and the new
    /// version is marked stale (memcached's `set_stale`).
    pub invalidate: bool,
    /// Keep this CAS id, written out with the item (a restart restoring one a client saw; the
    /// caller first raises [`Store::raise_cas_floor`] past it). Ignored with `-C`.
    pub cas: Option<u64>,
    /// Append and prepend only: store only if the item's CAS id is this one, else
    /// [`StoreOutcome::Exists`] (memcached's check when a binary or meta append brings a CAS id;
    /// 0 checks nothing, nor does anything with `-C`). The other modes carry theirs in
    /// [`StoreMode::Cas`].
    pub compare_cas: u64,
    /// Where the item stood in eviction before a restart ([`crate::DumpedItem::standing`]): a
    /// restored item goes back to its queue with its reads, instead of starting as new.
    pub standing: Option<Standing>,
}

/// An item's standing in eviction (S3-FIFO, `evict.rs`): in the main queue or the small one, and
/// its reads since it was written or last kept (0 to 3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Standing {
    pub main: bool,
    pub freq: u8,
}

impl Store {
    /// Runs one storage command. `total_items` counts the items stored; cas_hits/cas_misses/
    /// cas_badval count `cas` outcomes; `outofmemory` counts refusals for lack of room.
    pub fn store(
        &self,
        mode: StoreMode,
        key: &[u8],
        flags: u32,
        exptime: RelTime,
        value: &[u8],
        now: RelTime,
    ) -> StoreOutcome {
        self.store_with(
            mode,
            key,
            flags,
            exptime,
            value,
            now,
            WriteOptions::default(),
        )
    }

    /// [`Store::store`] with the meta protocol's options.
    #[allow(clippy::too_many_arguments)]
    pub fn store_with(
        &self,
        mode: StoreMode,
        key: &[u8],
        flags: u32,
        exptime: RelTime,
        value: &[u8],
        now: RelTime,
        options: WriteOptions,
    ) -> StoreOutcome {
        let use_cas = self.config.use_cas;
        if !item_size_ok(
            self.config.item_size_max,
            use_cas,
            key.len(),
            flags,
            value.len(),
        ) {
            return StoreOutcome::TooLarge;
        }
        let (mut shard, index, hash, ctx) = self.locked(key, now);
        let shard = &mut *shard;
        let item = NewItem {
            key,
            value,
            flags,
            exptime,
            // Without evictions, touch and incr must never need room: every item has the
            // fields they rewrite in place.
            cas: match options.cas {
                Some(cas) if use_cas => Some(cas),
                _ => (!self.config.evictions && use_cas).then(|| ctx.seq_range(0)),
            },
            keep_exptime_field: !self.config.evictions,
            binary_key: options.binary_key,
        };
        // With evictions on, memcached's allocating the new item first only shows in the
        // `evictions` count; with -M it decides whether the store fails, so -M keeps that order.
        let looked = (self.config.evictions && matches!(mode, StoreMode::Set | StoreMode::Replace))
            .then(|| shard.find_live(hash, key, &ctx));
        if let Some(Some((e, old))) = looked {
            if shard.overwrite_in_place(hash, e, &old, &item, &ctx) {
                return StoreOutcome::Stored;
            }
        }
        let len = item.len();
        shard.note_written(len);
        let queue = match options.standing {
            Some(Standing { main: true, .. }) => Queue::Main,
            _ => shard.queue_for(hash, key, len, self.config.evictions),
        };
        let marked = ctx.flush.marks_new_write(now);
        let place = if self.make_index_room(shard, index, hash, &ctx) {
            self.place_for(shard, index, queue, &item, marked, &ctx)
        } else {
            None
        };
        let Some(place) = place else {
            shard.counters.outofmemory += 1;
            if mode == StoreMode::Set {
                // memcached unlinks the old value when a set fails for memory, so that a client
                // that could not write never reads stale data.
                if let Some(e) = shard.lookup(hash, key) {
                    shard.remove(hash, e, &self.budget);
                }
            }
            return StoreOutcome::OutOfMemory;
        };
        // Making room can only have removed the key: one found absent above still is.
        let existing = match looked {
            Some(None) => None,
            _ => shard.find_live(hash, key, &ctx),
        };
        let refuse = |outcome| {
            self.abandon(place);
            outcome
        };
        match (mode, existing) {
            (StoreMode::Add, Some((e, _))) => {
                // memcached bumps the existing item on a failed add.
                shard.mark_read(hash, e, false);
                return refuse(StoreOutcome::NotStored);
            }
            (StoreMode::Replace | StoreMode::Append | StoreMode::Prepend, None) => {
                return refuse(StoreOutcome::NotStored);
            }
            (StoreMode::Append | StoreMode::Prepend, Some((e, old))) => {
                if use_cas
                    && options.compare_cas != 0
                    && shard.cas_of(e, &old) != options.compare_cas
                {
                    // Not a `cas` command: memcached counts no cas_badval here.
                    return refuse(StoreOutcome::Exists);
                }
                let total = old.value_len + value.len();
                if !item_size_ok(
                    self.config.item_size_max,
                    use_cas,
                    key.len(),
                    old.flags,
                    total,
                ) {
                    return refuse(StoreOutcome::TooLarge);
                }
                let old_value = shard.value(e, &old);
                let mut combined = Vec::with_capacity(total);
                if mode == StoreMode::Append {
                    combined.extend_from_slice(old_value);
                    combined.extend_from_slice(value);
                } else {
                    combined.extend_from_slice(value);
                    combined.extend_from_slice(old_value);
                }
                let item = NewItem {
                    value: &combined,
                    flags: old.flags,
                    exptime: old.exptime,
                    keep_exptime_field: item.keep_exptime_field || old.bits & HAS_EXPTIME != 0,
                    ..item
                };
                // The combined item is placed while the raw one's place is still held, as
                // memcached allocates the second item before freeing the first.
                let second = self.place_for(shard, index, queue, &item, marked, &ctx);
                self.abandon(place);
                let Some(second) = second else {
                    shard.counters.outofmemory += 1;
                    return StoreOutcome::OutOfMemory;
                };
                shard.put(second, queue, hash, &item, &ctx);
                return StoreOutcome::Stored;
            }
            (StoreMode::Cas(_), None) => {
                shard.counters.cas_misses += 1;
                return refuse(StoreOutcome::NotFound);
            }
            (StoreMode::Cas(expected), Some((e, header))) => {
                // With -C memcached 1.6.18 answers EXISTS to every cas of an existing item, even
                // `cas k 0 0 1 0` (the item's CAS is 0 but a cas of 0 never matches), and
                // NOT_FOUND for a missing one. Reproduced by never matching when CAS is off.
                let current = shard.cas_of(e, &header);
                // A CAS id of 0 is never older: memcached 1.6.18 answers `ms k 1 I C0` with EX.
                if options.invalidate && use_cas && expected != 0 && expected < current {
                    // memcached 1.6.18's do_store_item: stored, and marked stale.
                    shard.counters.cas_hits += 1;
                    if !shard.put(place, queue, hash, &item, &ctx) {
                        shard.counters.outofmemory += 1;
                        return StoreOutcome::OutOfMemory;
                    }
                    // The new version is stale and keeps the old one's win token (memcached
                    // 1.6.18: `mg` right after answers `Z X` if someone had won).
                    if let Some(new) = shard.lookup(hash, key) {
                        let marked = new.with_stale(true).with_token_sent(e.token_sent());
                        shard.update_entry(hash, new, marked);
                    }
                    return StoreOutcome::Stored;
                }
                if !use_cas || current != expected {
                    shard.counters.cas_badval += 1;
                    return refuse(StoreOutcome::Exists);
                }
                shard.counters.cas_hits += 1;
            }
            (StoreMode::Set | StoreMode::Add | StoreMode::Replace, _) => {}
        }
        if !shard.put(place, queue, hash, &item, &ctx) {
            shard.counters.outofmemory += 1;
            return StoreOutcome::OutOfMemory;
        }
        if let Some(standing) = options.standing.filter(|s| s.freq > 0) {
            if let Some(new) = shard.lookup(hash, key) {
                shard.update_entry(hash, new, new.with_freq(standing.freq.min(3)));
            }
        }
        StoreOutcome::Stored
    }
}
