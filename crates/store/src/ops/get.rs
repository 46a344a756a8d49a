//! `get`/`gets`, `gat`/`gats` and `touch`.

use std::hash::BuildHasher;

use crate::index::Entry;
use crate::layout::{Header, NewItem, BINARY_KEY, HAS_EXPTIME};
use crate::shard::{Ctx, Shard};
use crate::{Item, ItemRef, KeyHash, RelTime, Store, TouchOutcome};

impl Store {
    /// `get`/`gets`: counts get_hits/get_misses (and get_expired/get_flushed when the item found
    /// is dead, which is then removed). `shows_cas`: the reply reports the CAS id (`gets`, the
    /// binary protocol, meta's `c`), which the store must then keep for the item (see `layout.rs`).
    pub fn get(&self, key: &[u8], shows_cas: bool, now: RelTime) -> Option<Item> {
        self.get_with(key, shows_cas, now, |item| item.to_item())
    }

    /// `get` that hands the item to `read` under the shard's lock, value borrowed from its
    /// segment: a reply is written straight from it, with no copy in between. `read` must be
    /// quick (the shard is locked).
    pub fn get_with<R>(
        &self,
        key: &[u8],
        shows_cas: bool,
        now: RelTime,
        read: impl FnOnce(&ItemRef<'_>) -> R,
    ) -> Option<R> {
        self.get_hashed_with(key, self.hash_key(key), shows_cas, now, read)
    }

    /// [`Store::get_with`] of a key whose [`Store::hash_key`] is at hand.
    pub fn get_hashed_with<R>(
        &self,
        key: &[u8],
        hash: KeyHash,
        shows_cas: bool,
        now: RelTime,
        read: impl FnOnce(&ItemRef<'_>) -> R,
    ) -> Option<R> {
        let (mut shard, _, hash, ctx) = self.locked_hashed(hash, now);
        let shows_cas = shows_cas && self.config.use_cas;
        let Some((e, header)) = shard.read_live(hash, key, shows_cas, &ctx) else {
            shard.counters.get_misses += 1;
            return None;
        };
        shard.counters.get_hits += 1;
        Some(read(&shard.view(e, &header, self.config.use_cas)))
    }

    /// A key's hash, to look it up with (`*_hashed_with`) and to prefetch for it without
    /// hashing it again. A lookup given the hash of another key searches that key's place: it
    /// misses (unless a tag matches there by chance), and never answers with another key's item.
    pub fn hash_key(&self, key: &[u8]) -> KeyHash {
        KeyHash(self.hasher.hash_one(key))
    }

    /// Starts loading what a lookup of the key reads first, its index bucket, so that the cache
    /// misses of the keys of a multi-key get overlap: call it for the keys well ahead of the one
    /// looked up.
    pub fn prefetch(&self, hash: KeyHash) {
        self.shards[Self::shard_of(hash.0)].lock().prefetch(hash.0);
    }

    /// Starts loading what a lookup of the key reads second, its item (the first one its index
    /// tag matches; the key is not compared): call it for a key whose bucket was prefetched a
    /// few keys ago, so that reading the bucket here does not wait.
    pub fn prefetch_item(&self, hash: KeyHash) {
        self.shards[Self::shard_of(hash.0)]
            .lock()
            .prefetch_item(hash.0);
    }

    /// Reads an item without counting a hit or marking it accessed: for protocol replies that
    /// report the state a write left (the binary protocol's CAS after a store, meta's `c` flag).
    pub fn peek(&self, key: &[u8], now: RelTime) -> Option<Item> {
        let (mut shard, _, hash, ctx) = self.locked(key, now);
        let (e, header) = shard.find_live(hash, key, &ctx)?;
        if self.config.use_cas {
            shard.mark_cas_seen(hash, e);
        }
        Some(shard.view(e, &header, self.config.use_cas).to_item())
    }

    /// The CAS id of the key's latest version, live or not (0 if there is none, or with `-C`),
    /// marked as shown to a client: what a storage reply shows right after its write. memcached
    /// shows it even for an item stored already expired (`ms k 1 T-1 c`), which `peek` misses.
    pub fn written_cas(&self, key: &[u8], now: RelTime) -> u64 {
        if !self.config.use_cas {
            return 0;
        }
        let (mut shard, _, hash, _) = self.locked(key, now);
        let Some(e) = shard.lookup(hash, key) else {
            return 0;
        };
        let header = shard.header(e);
        shard.mark_cas_seen(hash, e);
        shard.cas_of(e, &header)
    }

    /// `gat`/`gats`: get and set a new exptime; the CAS id stays. memcached 1.6.18 counts these
    /// as touches only: after `gat 100 k` on a hit, `stats` shows cmd_touch 1, touch_hits 1,
    /// get_hits 0, cmd_get 0; on a miss touch_misses 1 and get_misses 0 (cmd_* are the server's).
    pub fn get_and_touch(
        &self,
        key: &[u8],
        exptime: RelTime,
        shows_cas: bool,
        now: RelTime,
    ) -> Option<Item> {
        self.get_and_touch_with(key, exptime, shows_cas, now, |item| item.to_item())
    }

    /// `get_and_touch` that hands the item to `read` under the shard's lock (see `get_with`).
    pub fn get_and_touch_with<R>(
        &self,
        key: &[u8],
        exptime: RelTime,
        shows_cas: bool,
        now: RelTime,
        read: impl FnOnce(&ItemRef<'_>) -> R,
    ) -> Option<R> {
        let hash = self.hash_key(key);
        self.get_and_touch_hashed_with(key, hash, exptime, shows_cas, now, read)
    }

    /// [`Store::get_and_touch_with`] of a key whose [`Store::hash_key`] is at hand.
    pub fn get_and_touch_hashed_with<R>(
        &self,
        key: &[u8],
        hash: KeyHash,
        exptime: RelTime,
        shows_cas: bool,
        now: RelTime,
        read: impl FnOnce(&ItemRef<'_>) -> R,
    ) -> Option<R> {
        let (mut shard, index, hash, ctx) = self.locked_hashed(hash, now);
        let shard = &mut *shard;
        let Some((e, header)) = shard.find_live(hash, key, &ctx) else {
            shard.counters.touch_misses += 1;
            return None;
        };
        let Some((e, header)) = self.set_exptime(shard, index, hash, e, header, exptime, &ctx)
        else {
            shard.counters.touch_misses += 1;
            return None;
        };
        shard.counters.touch_hits += 1;
        shard.mark_read(hash, e, shows_cas && self.config.use_cas);
        Some(read(&shard.view(e, &header, self.config.use_cas)))
    }

    /// `touch`: a new exptime, CAS id unchanged. Counts touch_hits/touch_misses.
    pub fn touch(&self, key: &[u8], exptime: RelTime, now: RelTime) -> TouchOutcome {
        let (mut shard, index, hash, ctx) = self.locked(key, now);
        let shard = &mut *shard;
        let Some((e, header)) = shard.find_live(hash, key, &ctx) else {
            shard.counters.touch_misses += 1;
            return TouchOutcome::NotFound;
        };
        let Some((e, _)) = self.set_exptime(shard, index, hash, e, header, exptime, &ctx) else {
            shard.counters.touch_misses += 1;
            return TouchOutcome::NotFound;
        };
        shard.counters.touch_hits += 1;
        shard.mark_read(hash, e, false);
        TouchOutcome::Touched
    }

    /// Gives the live item `e` a new exptime: in place when it has the field, else by writing it
    /// again with the field (and its CAS id written out if a client may hold it). With evictions
    /// on, an item the new exptime would keep in its segment past the segment's lifetime class
    /// is written again too, in a segment of its new class ([`Shard::outlives_segment`]). Where
    /// it is now, or None if it was evicted while room was made for it. Should no room be found
    /// (with `-M` and a full cache, or when no shard has a segment to evict), it changes in
    /// place if it has the field, else it keeps its exptime.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn set_exptime(
        &self,
        shard: &mut Shard,
        index: usize,
        hash: u64,
        e: Entry,
        header: Header,
        exptime: RelTime,
        ctx: &Ctx<'_>,
    ) -> Option<(Entry, Header)> {
        let has_field = header.bits & HAS_EXPTIME != 0;
        if has_field && !(self.config.evictions && shard.outlives_segment(e, &header, exptime, ctx))
        {
            shard.set_exptime_in_place(e, &header, exptime);
            return Some((e, shard.header(e)));
        }
        if !has_field && exptime == 0 {
            return Some((e, header));
        }
        let cas = e.cas_seen().then(|| shard.cas_of(e, &header));
        let value = shard.value(e, &header).to_vec();
        let queue = shard.seg(e.segment()).queue;
        let key = shard.lookup_key(e).to_vec();
        let item = NewItem {
            key: &key,
            value: &value,
            flags: header.flags,
            exptime,
            cas,
            keep_exptime_field: true,
            binary_key: header.bits & BINARY_KEY != 0,
        };
        let marked = ctx.flush.marks(shard.seg(e.segment()));
        let rewritten = self
            .place_for(shard, index, queue, &item, marked, ctx)
            .and_then(|place| shard.rewrite(place, queue, hash, &item, ctx));
        let e = match rewritten {
            Some(new) => new,
            None => {
                // Making room may have moved the item (kept by eviction) or evicted it.
                let e = shard.lookup(hash, &key)?;
                let header = shard.header(e);
                if header.bits & HAS_EXPTIME != 0 {
                    shard.set_exptime_in_place(e, &header, exptime);
                }
                e
            }
        };
        Some((e, shard.header(e)))
    }
}
