//! `lru_crawler metadump` and `stats cachedump`: the metadata of every live item, a segment at a
//! time, so that a dump of a large cache holds a shard's lock no longer than one segment's walk.

use crate::layout;
use crate::ops::store::Standing;
use crate::segment::Queue;
use crate::{RelTime, Store};

/// One live item, as the dumps show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpedItem<'a> {
    /// The key as stored (decoded, for a key a meta client sent base64-encoded).
    pub key: &'a [u8],
    /// 0: never expires.
    pub exptime: RelTime,
    /// When its segment opened: about when it was written (there is no per-item access time).
    pub time: RelTime,
    /// 0 with `-C`.
    pub cas: u64,
    pub fetched: bool,
    /// Bytes it takes in its segment: header, key and value.
    pub size: usize,
    pub flags: u32,
    pub value: &'a [u8],
    /// The key was sent base64-encoded by a meta client (it is stored decoded).
    pub binary_key: bool,
    /// Its CAS id was shown to a client, or is written out with it: a restart keeps it.
    pub cas_kept: bool,
    /// Its queue and reads, for a restart to give back ([`crate::WriteOptions::standing`]).
    pub standing: Standing,
}

/// Where a dump has got to: the segments still to visit, of every shard, oldest first (taken at
/// the first step, each shard locked in turn). Items written or moved while a dump runs may be
/// shown twice or not at all, as with memcached's crawler.
#[derive(Debug, Default)]
pub struct DumpCursor {
    /// (sequence base, shard, segment id), the oldest last.
    left: Option<Vec<(u64, usize, u32)>>,
}

impl Store {
    /// Hands `visit` the live items of the next segment `cursor` names, the segments of all
    /// shards in the order they opened (their sequence bases: oldest first, whatever the shard or
    /// queue), so a restart that stores items in this order gives each queue back its order
    /// and, into a smaller `-m`, keeps the newest. False once every segment has been walked. Skipped as memcached's metadump skips them: flushed items, and items whose
    /// exptime is before `now` (one that expires at `now` is still shown). With `shows_cas` (the
    /// dump reports CAS ids), an id shown is kept, as any reported CAS id is (`docs/storage.md`).
    pub fn dump_step(
        &self,
        cursor: &mut DumpCursor,
        now: RelTime,
        shows_cas: bool,
        mut visit: impl FnMut(&DumpedItem<'_>),
    ) -> bool {
        let use_cas = self.config.use_cas;
        let keeps_cas = shows_cas && use_cas;
        let ctx = self.ctx(now);
        let left = cursor.left.get_or_insert_with(|| {
            let mut left = Vec::new();
            for (number, shard) in self.shards.iter().enumerate() {
                let shard = shard.lock();
                for id in shard.segment_ids() {
                    left.push((shard.seg(id).seq_base, number, id));
                }
            }
            left.sort_unstable_by(|a, b| b.cmp(a));
            left
        });
        loop {
            let Some((seq_base, number, id)) = left.pop() else {
                return false;
            };
            let mut shard = self.shards[number].lock();
            // Gone since, or its id taken by a newer segment (written after the dump began).
            if !shard.holds(id)
                || shard.seg(id).seq_base != seq_base
                || ctx.flush.flushes(shard.seg(id), now)
            {
                continue;
            }
            let mut shown = Vec::new();
            let seg = shard.seg(id);
            for (offset, header) in layout::items(&seg.data, seg.len) {
                if header.exptime != 0 && header.exptime < now {
                    continue;
                }
                let item = &seg.data[offset..];
                let key = header.key(item);
                let hash = ctx.hash(key);
                let Some(e) = shard.entry_at(hash, id, offset) else {
                    continue;
                };
                visit(&DumpedItem {
                    key,
                    exptime: header.exptime,
                    time: seg.created,
                    cas: shard.client_cas(e, &header, use_cas),
                    fetched: e.fetched(),
                    size: header.total(),
                    flags: header.flags,
                    value: header.value(item),
                    binary_key: header.bits & layout::BINARY_KEY != 0,
                    cas_kept: use_cas && (e.cas_seen() || header.bits & layout::HAS_CAS != 0),
                    standing: Standing {
                        main: seg.queue == Queue::Main,
                        freq: e.freq(),
                    },
                });
                if keeps_cas && !e.cas_seen() {
                    shown.push((hash, e));
                }
            }
            for (hash, e) in shown {
                shard.mark_cas_seen(hash, e);
            }
            return true;
        }
    }
}
