//! The meta protocol's item states, as memcached 1.6.18's `process_mget_command` and
//! `process_mdelete_command` keep them: `mg` with vivify on miss (`N`), early recache (`R`), the
//! win/stale/already-won answers (`W X Z`) and reads that do not bump (`u`); `md` with `I`, which
//! marks an item stale instead of deleting it.

use crate::layout::{NewItem, BINARY_KEY, HAS_CAS, HAS_EXPTIME};
use crate::shard::Shard;
use crate::{Item, RelTime, Store};

/// What an `mg` asks besides the read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetaGet {
    /// The reply shows the CAS id (`c`).
    pub shows_cas: bool,
    /// Bump the item: mark it fetched and hit (not with `u`).
    pub bump: bool,
    /// New exptime (`T`).
    pub touch: Option<RelTime>,
    /// On a miss, create an empty item with this exptime and tell this client it won (`N`).
    /// `touch` does not apply to it: this is its exptime once the request's `N` and `T` are
    /// applied in their order.
    pub vivify: Option<RelTime>,
    /// Win the recache if the item expires before this time and no one won yet (`R`).
    pub recache_before: Option<RelTime>,
    /// `R` comes after `T`: it compares the new exptime, else the one the item had.
    pub recache_after_touch: bool,
    /// The reply will be an error found after the lookup (memcached 1.6.18's `opaque token too
    /// long`): a hit then counts as nothing and wins nothing; a miss still counts.
    pub fails: bool,
}

/// An `mg` hit (or vivified miss).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaGetHit {
    /// The item as it was before this read (`h`, and `Z`/`X` from `item.meta`).
    pub item: Item,
    /// This client won the right to recache (`W`).
    pub won: bool,
    /// The item was created by `N` just now.
    pub created: bool,
    /// The exptime it had before `T` (that of a created item is 0, as memcached's is before
    /// its `N` and `T` apply).
    pub exptime_before: RelTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidateOutcome {
    Invalidated,
    NotFound,
    /// The compared CAS id did not match.
    Exists,
}

impl Store {
    /// `mg` with the meta states. Counts like `get` (a hit with `T` like `touch`); a vivified
    /// miss counts as a hit, as memcached's does.
    pub fn meta_get(&self, key: &[u8], request: &MetaGet, now: RelTime) -> Option<MetaGetHit> {
        let use_cas = self.config.use_cas;
        let (mut shard, index, hash, ctx) = self.locked(key, now);
        let shard = &mut *shard;
        let found = match shard.find_live(hash, key, &ctx) {
            Some(found) => Some((found, false)),
            None => request
                .vivify
                .and_then(|exptime| self.vivify(shard, index, hash, key, exptime, now))
                .map(|found| (found, true)),
        };
        let exptime_before = match found {
            Some(((_, header), false)) => header.exptime,
            _ => 0,
        };
        // `T`: a new exptime (which may move the item, or lose it to the eviction that made room).
        let found = found.and_then(|((e, header), created)| match request.touch {
            Some(exptime) if !created => self
                .set_exptime(shard, index, hash, e, header, exptime, &ctx)
                .map(|found| (found, created)),
            _ => Some(((e, header), created)),
        });
        let Some(((e, header), created)) = found else {
            // memcached 1.6.18 applies `T` only to an item it found: a miss is a get miss.
            shard.counters.get_misses += 1;
            return None;
        };
        match (request.fails, request.touch) {
            (true, _) => {}
            (false, Some(_)) => shard.counters.touch_hits += 1,
            (false, None) => shard.counters.get_hits += 1,
        }
        let item = shard.view(e, &header, use_cas).to_item();
        let recache = request.recache_before.is_some_and(|before| {
            let exptime = if request.recache_after_touch {
                header.exptime
            } else {
                exptime_before
            };
            !e.token_sent() && !created && exptime != 0 && exptime < before
        });
        // A stale item hands its first reader the win.
        let won = !request.fails && (created || recache || (e.stale() && !e.token_sent()));
        let mut state = e;
        if won {
            state = state.with_token_sent(true);
        }
        if request.bump {
            let shows_cas = request.shows_cas && use_cas;
            state = match request.touch {
                // As `gat`: a read that counts.
                Some(_) => state.read(shows_cas),
                None => shard.read_by_get(state, shows_cas, now),
            };
        } else if request.shows_cas && use_cas {
            state = state.with_cas_seen();
        }
        if state != e {
            shard.update_entry(hash, e, state);
        }
        Some(MetaGetHit {
            item,
            won,
            created,
            exptime_before,
        })
    }

    /// `mg N` on a miss: an empty item with `exptime`. None when there is no room.
    #[allow(clippy::too_many_arguments)]
    fn vivify(
        &self,
        shard: &mut Shard,
        index: usize,
        hash: u64,
        key: &[u8],
        exptime: RelTime,
        now: RelTime,
    ) -> Option<(crate::index::Entry, crate::layout::Header)> {
        let ctx = self.ctx(now);
        let evictions = self.config.evictions;
        let item = NewItem {
            key,
            value: b"",
            flags: 0,
            exptime,
            cas: (!evictions && self.config.use_cas).then(|| ctx.seq_range(0)),
            keep_exptime_field: !evictions,
            // memcached 1.6.18 marks a key binary only when `ms` stores it: an item `mg b N`
            // made shows its key as it is (`mg Zm9v b N100 k` answers `kfoo`).
            binary_key: false,
        };
        let queue = shard.queue_for(hash, key, item.len(), evictions);
        if !self.make_index_room(shard, index, hash, &ctx) {
            return None;
        }
        let place = self.place_for(
            shard,
            index,
            queue,
            &item,
            ctx.flush.marks_new_write(now),
            &ctx,
        )?;
        if !shard.put(place, queue, hash, &item, &ctx) {
            return None;
        }
        let e = shard.lookup(hash, key)?;
        Some((e, shard.header(e)))
    }

    /// `md I`: instead of deleting, give the item a new CAS id (and `exptime` if given, `md I T`)
    /// and mark it stale, so the next `mg` wins the recache (`X W`) and later ones see `X Z`.
    /// Counts a miss, or a CAS id that does not match, as a delete miss; a marked item counts as
    /// nothing.
    pub fn meta_invalidate(
        &self,
        key: &[u8],
        compare_cas: Option<u64>,
        exptime: Option<RelTime>,
        now: RelTime,
    ) -> InvalidateOutcome {
        let use_cas = self.config.use_cas;
        let (mut shard, index, hash, ctx) = self.locked(key, now);
        let shard = &mut *shard;
        let Some((e, header)) = shard.find_live(hash, key, &ctx) else {
            shard.counters.delete_misses += 1;
            return InvalidateOutcome::NotFound;
        };
        let current = shard.client_cas(e, &header, use_cas);
        if compare_cas.is_some_and(|cas| cas != current) {
            // memcached 1.6.18 counts a refused `md` as a delete miss.
            shard.counters.delete_misses += 1;
            return InvalidateOutcome::Exists;
        }
        // memcached 1.6.18 counts a marked item as no delete hit: it deleted nothing.
        let exptime = exptime.unwrap_or(header.exptime);
        let in_place = (header.bits & HAS_CAS != 0 || !use_cas)
            && (header.bits & HAS_EXPTIME != 0 || exptime == header.exptime);
        let e = if in_place {
            // Without evictions every item has both fields: no room is needed.
            let value = shard.value(e, &header).to_vec();
            shard.set_value_in_place(e, &header, &value, use_cas.then(|| ctx.seq_range(0)));
            if header.bits & HAS_EXPTIME != 0 {
                shard.set_exptime_in_place(e, &header, exptime);
            }
            e
        } else {
            // A new version (new place, new CAS id) with the same contents.
            let value = shard.value(e, &header).to_vec();
            let key = shard.lookup_key(e).to_vec();
            let queue = shard.seg(e.segment()).queue;
            let item = NewItem {
                key: &key,
                value: &value,
                flags: header.flags,
                exptime,
                cas: None,
                keep_exptime_field: header.bits & HAS_EXPTIME != 0 || exptime != 0,
                binary_key: header.bits & BINARY_KEY != 0,
            };
            let marked = ctx.flush.marks(shard.seg(e.segment()));
            let rewritten = self
                .place_for(shard, index, queue, &item, marked, &ctx)
                .and_then(|place| shard.rewrite(place, queue, hash, &item, &ctx));
            match rewritten {
                Some(new) => new,
                // No room (only with -M): it stays as it was, marked all the same.
                None => e,
            }
        };
        shard.update_entry(hash, e, e.with_stale(true).with_token_sent(false));
        InvalidateOutcome::Invalidated
    }
}
