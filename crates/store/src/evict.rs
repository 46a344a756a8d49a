//! Eviction: S3-FIFO (SOSP '23) over segments.
//!
//! A shard evicts the oldest closed segment of its small queue while that queue holds more than a
//! twentieth of the shard's segments ([`SMALL_SHARE`]), else of its main queue. Each live item of
//! the evicted segment is then dealt with on its own:
//! - dead (expired, or flushed): dropped, counted as memcached counts a reclaimed item
//!   (`reclaimed`, `expired_unfetched`);
//! - from the small queue, read while there (freq > 0): moved to main, freq reset;
//! - from the main queue, read since last kept: moved back into main, freq less one;
//! - otherwise: evicted (`evictions`, `evicted_unfetched`); evicted from small, its fingerprint
//!   goes to the ghost (a key stored again while the ghost remembers it goes straight to main,
//!   unless its item is much longer than most: `Shard::queue_for`).
//!
//! A segment whose items all stay frees nothing; the next one is tried, from the queue chosen
//! again by the same rule, as S3-FIFO goes on to its next item.
//!
//! A hit only bumps two bits in the index entry: no list to update, no lock but the shard's.
//! Kept items are appended to main's open segment of their lifetime class (by the time they have
//! left now) while it has room; the rest are compacted into the evicted segment's own buffer,
//! which becomes main's open segment of the class most of their bytes have (a segment was filled
//! by class, so its items mostly still share one). So eviction never needs memory it does not
//! already hold. With evictions off (`-M`) every live item is kept: only dead items and
//! overwritten versions go, and a store that finds nothing to reclaim is refused.

use std::sync::atomic::Ordering;

use crate::index::Entry;
use crate::layout::{self, Header, NewItem, BINARY_KEY, HAS_CAS, HAS_EXPTIME};
use crate::ops::watch::Evicted;
use crate::segment::{ttl_class, Queue, Segment, TTL_CLASSES};
use crate::shard::{Ctx, Place, Shard};
use crate::{RelTime, Store};

/// The small queue holds one part in `SMALL_SHARE` of a shard's segments before it is evicted
/// from first. S3-FIFO's paper uses a tenth; a twentieth was better or the same on every row of
/// `BENCHMARKS.md`'s hit-ratio tables (by up to 1.6% of the misses with values of mixed sizes,
/// 0.2%-0.5% under heavy scans over 30 to 300 million requests), and a fortieth by little more.
pub(crate) const SMALL_SHARE: usize = 20;

/// How many passes over the shards a store makes looking for something to evict; a pass skips
/// shards that are locked at that moment, so another pass follows only when one was busy.
const REMOTE_PASSES: usize = 3;

/// An item of a segment being evicted that stays.
struct Kept {
    hash: u64,
    entry: Entry,
    offset: usize,
    header: Header,
    /// The CAS id it must carry written out (see [`kept_cas`]).
    cas: Option<u64>,
}

impl Shard {
    /// Frees room by evicting one segment (see the module doc). False when there is nothing this
    /// shard may free.
    pub fn evict_one(&mut self, ctx: &Ctx<'_>) -> bool {
        if !ctx.config.evictions {
            // Nothing may be evicted: compact the segment with the most garbage first, an open
            // one too (sealed first), as the version a store just replaced may be there.
            let most = self
                .queues
                .iter()
                .flat_map(|q| q.closed.iter().chain(q.open.iter().flatten()).copied())
                .map(|id| (self.seg(id).garbage(), id))
                .max();
            if let Some((garbage, id)) = most {
                if garbage > 0 {
                    let (queue, class) = (self.seg(id).queue, self.seg(id).class);
                    if self.is_open(id) && self.seal(queue, class, ctx.budget) {
                        return true;
                    }
                    return self.evict_segment(queue, id, ctx);
                }
            }
        }
        // A segment whose items all stay (all read while in small, so moved to main; or all
        // read since last kept, in main) frees nothing: then the next is tried, from the queue
        // chosen again, as S3-FIFO moves on to the next item; main's oldest is not evicted while
        // small holds more than its share. Bounded: every try takes a closed segment, and one
        // kept whole comes back closed only with each item's frequency one lower. With `-M`,
        // where everything stays, more than one try in each queue would only copy.
        let order = self.eviction_order();
        if ctx.config.evictions {
            let mut tries = 4 * self.queues.iter().map(|q| q.closed.len()).sum::<usize>();
            while tries > 0 {
                let Some((queue, id)) = self
                    .eviction_order()
                    .iter()
                    .find_map(|&q| Some((q, *self.queues[q as usize].closed.front()?)))
                else {
                    break;
                };
                if self.evict_segment(queue, id, ctx) {
                    return true;
                }
                tries -= 1;
            }
        } else {
            for queue in order {
                if let Some(&id) = self.queues[queue as usize].closed.front() {
                    if self.evict_segment(queue, id, ctx) {
                        return true;
                    }
                }
            }
        }
        // Only open segments left: close one that holds something and evict it.
        for queue in order {
            for class in 0..TTL_CLASSES {
                let Some(id) = self.queues[queue as usize].open[class] else {
                    continue;
                };
                if self.seg(id).len == 0 {
                    continue;
                }
                if self.seal(queue, class, ctx.budget) || self.evict_segment(queue, id, ctx) {
                    return true;
                }
            }
        }
        false
    }

    /// S3-FIFO's choice: small first while it holds more than its share of the shard's segments
    /// ([`SMALL_SHARE`]).
    fn eviction_order(&self) -> [Queue; 2] {
        let small = self.queues[Queue::Small as usize].bytes;
        let main = self.queues[Queue::Main as usize].bytes;
        if small * SMALL_SHARE > small + main {
            [Queue::Small, Queue::Main]
        } else {
            [Queue::Main, Queue::Small]
        }
    }

    /// Evicts closed segment `id` of `queue` (its oldest, but for `-M` compaction). True when
    /// room was made: the segment freed, or at least one item dropped from it.
    fn evict_segment(&mut self, queue: Queue, id: u32, ctx: &Ctx<'_>) -> bool {
        let closed = &mut self.queues[queue as usize].closed;
        let Some(at) = closed.iter().position(|&x| x == id) else {
            return false;
        };
        closed.remove(at);
        let seg = self.take_segment(id);
        self.queues[queue as usize].bytes -= seg.capacity();
        let flushed = ctx.flush.flushes(&seg, ctx.now);
        let evictions = ctx.config.evictions;
        // How long ago the evicted items were written, about (memcached's `evicted_time`).
        let age = ctx.now.saturating_sub(seg.created);
        let mut kept = Vec::new();
        let mut kept_bytes = 0;
        for (offset, header) in layout::items(&seg.data, seg.len) {
            let item = &seg.data[offset..];
            let hash = ctx.hash(header.key(item));
            let Some(entry) = self.entry_at(hash, id, offset) else {
                continue; // an overwritten or deleted version
            };
            let expired = header.exptime != 0 && header.exptime <= ctx.now;
            if flushed || expired {
                self.drop_entry(hash, entry);
                self.counters.reclaimed += 1;
                self.counters.expired_unfetched += u64::from(!entry.fetched());
            } else if !evictions || entry.freq() > 0 {
                kept_bytes += header.total();
                let cas = kept_cas(&seg, entry, offset, &header);
                kept.push(Kept {
                    hash,
                    entry,
                    offset,
                    header,
                    cas,
                });
            } else {
                self.evict_entry(hash, entry, queue, (&header, item), (ctx.now, age));
            }
        }
        let dropped_any = kept_bytes < seg.len;
        let freq = |k: &Kept| match (evictions, queue) {
            (false, _) => k.entry.freq(),
            (true, Queue::Small) => 0,
            (true, Queue::Main) => k.entry.freq() - 1,
        };
        let marked = ctx.flush.marks(&seg);
        // Into main's open segment of its lifetime class while that has room.
        let mut left = Vec::new();
        for k in kept {
            let item = kept_item(&seg.data[k.offset..], &k);
            let class = ttl_class(k.header.exptime, ctx.now);
            match self.open_fits((Queue::Main, class), item.len(), marked, &ctx.flush) {
                Some(dest) => self.place_kept(&k, dest, &item, freq(&k), ctx),
                None => left.push((k, class)),
            }
        }
        if left.is_empty() {
            self.forget_segment(id, seg.capacity(), ctx.budget);
            return true;
        }
        // The rest are compacted into this segment's own buffer, which becomes main's open
        // segment with a fresh range of CAS ids (ids derived from places must never repeat), for
        // the lifetime class most of their bytes have (the others share it until it closes).
        let mut class_bytes = [0usize; TTL_CLASSES];
        let mut rest = Vec::with_capacity(kept_bytes);
        let mut spans = Vec::with_capacity(left.len());
        for (k, class) in &left {
            class_bytes[*class] += k.header.total();
            spans.push(rest.len());
            rest.extend_from_slice(&seg.data[k.offset..k.offset + k.header.total()]);
        }
        let (_, new_class) = class_bytes
            .iter()
            .enumerate()
            .map(|(c, &bytes)| (bytes, c))
            .max()
            .expect("classes");
        let mut seg = seg;
        seg.len = 0;
        seg.live = 0;
        seg.live_bytes = 0;
        seg.queue = Queue::Main;
        seg.class = new_class;
        seg.max_exptime = 0;
        seg.seq_base = ctx.seq_range(seg.capacity());
        self.seal(Queue::Main, new_class, ctx.budget);
        let capacity = seg.capacity();
        self.put_back_segment(id, seg);
        let main = &mut self.queues[Queue::Main as usize];
        main.open[new_class] = Some(id);
        main.bytes += capacity;
        let mut dropped_any = dropped_any;
        for ((k, _), &span) in left.iter().zip(&spans) {
            let item = kept_item(&rest[span..], k);
            if self.seg(id).room() < item.len() {
                // Only when written-out CAS ids made the kept items outgrow the segment.
                let bytes = (&k.header, &rest[span..]);
                self.evict_entry(k.hash, k.entry, Queue::Main, bytes, (ctx.now, age));
                dropped_any = true;
                continue;
            }
            self.place_kept(k, id, &item, freq(k), ctx);
        }
        dropped_any
    }

    /// Evicts the item `entry` names (its header and bytes given; counted as memcached counts an
    /// eviction, `at` now from a segment of that age); one evicted from the small queue leaves its
    /// fingerprint in the ghost.
    fn evict_entry(
        &mut self,
        hash: u64,
        entry: Entry,
        from: Queue,
        (header, item): (&Header, &[u8]),
        at: (RelTime, RelTime),
    ) {
        self.drop_entry(hash, entry);
        self.counters.evictions += 1;
        self.counters.evicted_nonzero += u64::from(header.exptime != 0);
        self.counters.last_eviction = Some(at);
        if let Some(log) = self.eviction_log.as_mut() {
            log.push(|| Evicted {
                key: header.key(item).into(),
                fetched: entry.fetched(),
                exptime: header.exptime,
                written: at.0.saturating_sub(at.1),
                value_len: header.value_len,
            });
        }
        self.counters.evicted_unfetched += u64::from(!entry.fetched());
        if from == Queue::Small {
            self.ghost.insert(hash);
        }
    }

    /// Writes a kept item into open segment `dest` (which has room) and points its entry there.
    fn place_kept(&mut self, k: &Kept, dest: u32, item: &NewItem<'_>, freq: u8, ctx: &Ctx<'_>) {
        let (dest, offset) = self
            .write(Place::Open(dest), Queue::Main, item, ctx)
            .expect("an open segment takes what fits");
        let new = k.entry.moved_to(dest, offset).with_freq(freq);
        self.set_entry_at(k.hash, k.entry, new);
    }
}

/// The CAS id a kept item must carry written out: its written one, or the one derived from its
/// old place when a client may hold it. Otherwise the new place gives it a new one.
fn kept_cas(seg: &Segment, entry: Entry, offset: usize, header: &Header) -> Option<u64> {
    if header.bits & HAS_CAS != 0 {
        Some(header.cas)
    } else if entry.cas_seen() {
        Some(seg.seq_base + offset as u64)
    } else {
        None
    }
}

/// The item to write again for a kept one, whose bytes start at `bytes[0]`.
fn kept_item<'a>(bytes: &'a [u8], k: &Kept) -> NewItem<'a> {
    NewItem {
        key: k.header.key(bytes),
        value: k.header.value(bytes),
        flags: k.header.flags,
        exptime: k.header.exptime,
        cas: k.cas,
        keep_exptime_field: k.header.bits & HAS_EXPTIME != 0,
        binary_key: k.header.bits & BINARY_KEY != 0,
    }
}

impl Store {
    /// Reserves `bytes` from the budget, evicting as needed (see [`Store::evict_somewhere`]).
    pub(crate) fn make_room(
        &self,
        own: &mut Shard,
        own_index: usize,
        bytes: usize,
        ctx: &Ctx<'_>,
    ) -> bool {
        if bytes > self.budget.limit() {
            return false;
        }
        loop {
            if self.budget.try_reserve(bytes) {
                return true;
            }
            if !self.evict_somewhere(own, own_index, ctx) {
                return false;
            }
        }
    }

    /// Where `item` goes in `queue`, on the `marked` side of a pending flush: the open segment of
    /// its lifetime class if it has room, else a new segment (evicting to find its bytes); an
    /// item larger than a segment gets one of its own. None when no room can be made.
    pub(crate) fn place_for(
        &self,
        shard: &mut Shard,
        own_index: usize,
        queue: Queue,
        item: &NewItem<'_>,
        marked: bool,
        ctx: &Ctx<'_>,
    ) -> Option<Place> {
        let len = item.len();
        if len > ctx.segment_size {
            return self
                .make_room(shard, own_index, len, ctx)
                .then_some(Place::Large(len));
        }
        let class = ttl_class(item.exptime, ctx.now);
        loop {
            if let Some(id) = shard.open_fits((queue, class), len, marked, &ctx.flush) {
                return Some(Place::Open(id));
            }
            if self.budget.try_reserve(ctx.segment_size) {
                return shard
                    .open_segment(queue, class, ctx.segment_size, ctx)
                    .map(Place::Open);
            }
            if !self.evict_somewhere(shard, own_index, ctx) {
                return None;
            }
        }
    }

    /// Gives back what `place_for` reserved when the item is not written after all.
    pub(crate) fn abandon(&self, place: Place) {
        if let Place::Large(bytes) = place {
            self.budget.release(bytes);
        }
    }

    /// Evicts one segment from the next shard in turn that has one, following one cursor shared
    /// by all writers, so eviction pressure is spread evenly (an approximation of one FIFO over
    /// the whole cache). `own` is the caller's shard (number `own_index`, already locked); others
    /// are only `try_lock`ed, so two stores that both need room cannot deadlock, and a shard busy
    /// at that moment is skipped. False when a pass found nothing to evict, or [`REMOTE_PASSES`]
    /// passes met only busy shards.
    fn evict_somewhere(&self, own: &mut Shard, own_index: usize, ctx: &Ctx<'_>) -> bool {
        let count = self.shards.len();
        for pass in 0..REMOTE_PASSES {
            let mut busy = false;
            for _ in 0..count {
                let index = self.evict_cursor.fetch_add(1, Ordering::Relaxed) % count;
                if index == own_index {
                    if own.evict_one(ctx) {
                        return true;
                    }
                    continue;
                }
                match self.shards[index].try_lock() {
                    Some(mut shard) => {
                        if shard.evict_one(ctx) {
                            return true;
                        }
                    }
                    None => busy = true,
                }
            }
            if !busy {
                return false;
            }
            if pass + 1 < REMOTE_PASSES {
                std::thread::yield_now();
            }
        }
        false
    }

    /// Makes sure `shard`'s index can take one more entry with this hash, reserving its growth
    /// first. False when the bytes cannot be found.
    pub(crate) fn make_index_room(
        &self,
        shard: &mut Shard,
        own_index: usize,
        hash: u64,
        ctx: &Ctx<'_>,
    ) -> bool {
        let growth = shard.index_growth(hash);
        if growth == 0 {
            return true;
        }
        if !self.make_room(shard, own_index, growth, ctx) {
            return false;
        }
        // Making room may have emptied entries; then the reserved bytes go back.
        if shard.index_growth(hash) == 0 {
            self.budget.release(growth);
        } else {
            shard.grow_index(hash, growth, ctx);
        }
        true
    }
}
