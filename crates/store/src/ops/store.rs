//! The storage commands: set, add, replace, append, prepend, cas.
//!
//! The order of checks is memcached's: the new item is allocated (here: its bytes reserved) before
//! the key is looked at, so with `-M` and a full cache even an `add` of an existing key or a `cas`
//! of a missing one answers out of memory. Append and prepend then need the combined item as
//! well, with the old item's flags checked against `item_size_max` (NOT_STORED in memcached; we
//! return [`StoreOutcome::TooLarge`] and the server answers NOT_STORED).

use bytes::Bytes;

use crate::item::{charge, join, VISITED};
use crate::shard::{Ctx, Shard};
use crate::{item_size_ok, RelTime, Store, StoreMode, StoreOutcome};

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
        let reserved = charge(key.len() + value.len());
        if !self.make_room(shard, index, reserved, &ctx) {
            shard.counters.outofmemory += 1;
            if mode == StoreMode::Set {
                // memcached unlinks the old value when a set fails for memory, so that a client
                // that could not write never reads stale data.
                if let Some(id) = shard.lookup(hash, key) {
                    shard.unlink(id, hash, &self.budget);
                }
            }
            return StoreOutcome::OutOfMemory;
        }
        let existing = shard.find_live(hash, key, &ctx);
        let refuse = |outcome| {
            self.budget.release(reserved);
            outcome
        };
        let (flags, exptime, data): (u32, RelTime, Bytes) = match (mode, existing) {
            (StoreMode::Set, _) => (flags, exptime, join(key, value, &[])),
            (StoreMode::Add, Some(id)) => {
                // memcached bumps the existing item on a failed add.
                shard.slot_mut(id).state |= VISITED;
                return refuse(StoreOutcome::NotStored);
            }
            (StoreMode::Add, None) => (flags, exptime, join(key, value, &[])),
            (StoreMode::Replace, Some(_)) => (flags, exptime, join(key, value, &[])),
            (StoreMode::Replace | StoreMode::Append | StoreMode::Prepend, None) => {
                return refuse(StoreOutcome::NotStored);
            }
            (StoreMode::Append | StoreMode::Prepend, Some(id)) => {
                let old = shard.slot(id);
                let total = old.value().len() + value.len();
                if !item_size_ok(
                    self.config.item_size_max,
                    use_cas,
                    key.len(),
                    old.flags,
                    total,
                ) {
                    return refuse(StoreOutcome::TooLarge);
                }
                let data = if mode == StoreMode::Append {
                    join(key, old.value(), value)
                } else {
                    join(key, value, old.value())
                };
                (old.flags, old.exptime, data)
            }
            (StoreMode::Cas(_), None) => {
                shard.counters.cas_misses += 1;
                return refuse(StoreOutcome::NotFound);
            }
            (StoreMode::Cas(expected), Some(id)) => {
                // With -C memcached 1.6.18 answers EXISTS to every cas of an existing item, even
                // `cas k 0 0 1 0` (the item's CAS is 0 but a cas of 0 never matches), and
                // NOT_FOUND for a missing one. Reproduced by never matching when CAS is off.
                if !use_cas || shard.slot(id).seq != expected {
                    shard.counters.cas_badval += 1;
                    return refuse(StoreOutcome::Exists);
                }
                (flags, exptime, join(key, value, &[]))
            }
        };
        // Append/prepend: the combined item is reserved while the raw one is still held, as
        // memcached allocates the second item before freeing the first.
        let needed = charge(data.len());
        if needed != reserved {
            let ok = self.make_room(shard, index, needed, &ctx);
            self.budget.release(reserved);
            if !ok {
                shard.counters.outofmemory += 1;
                return StoreOutcome::OutOfMemory;
            }
        }
        if !self.link_reserved(shard, index, hash, key.len(), flags, exptime, data, &ctx) {
            return StoreOutcome::OutOfMemory;
        }
        if let StoreMode::Cas(_) = mode {
            shard.counters.cas_hits += 1;
        }
        StoreOutcome::Stored
    }

    /// Links a new version of the key whose data bytes are reserved: finds a slot (which may need
    /// more memory), unlinks the old version, links the new one with a fresh sequence number.
    /// On failure the reservation is given back, the old version stays, and false is returned.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn link_reserved(
        &self,
        shard: &mut Shard,
        index: usize,
        hash: u64,
        key_len: usize,
        flags: u32,
        exptime: RelTime,
        data: Bytes,
        ctx: &Ctx<'_>,
    ) -> bool {
        if !self.make_slot(shard, index, ctx) {
            self.budget.release(charge(data.len()));
            shard.counters.outofmemory += 1;
            return false;
        }
        if let Some(old) = shard.lookup(hash, &data[..key_len]) {
            shard.unlink(old, hash, &self.budget);
        }
        shard.link(hash, data, key_len, flags, exptime, ctx.next_seq(), ctx);
        true
    }
}
