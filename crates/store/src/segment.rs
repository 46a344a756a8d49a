//! Segments: the large buffers items are appended to (see `layout.rs` for one item). A shard
//! keeps two FIFO queues of segments, S3-FIFO's small and main queues; the newest segment of each
//! is open for appends (one per lifetime class, see [`TTL_CLASSES`]), the others are closed and wait,
//! oldest first, for eviction.

use crate::RelTime;

/// Which S3-FIFO queue a segment belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Queue {
    /// New items: about a twentieth of the memory (`evict::SMALL_SHARE`). An item read while
    /// here moves to main when its segment is evicted; the others go (and are remembered by the
    /// ghost).
    Small = 0,
    /// Items that proved useful. An item read since it was last kept is kept again when its
    /// segment is evicted (once per hit, up to 3), the others go.
    Main = 1,
}

/// Lifetime classes of segments (Segcache's TTL buckets, coarser): class 0 holds items that never
/// expire, class `c` >= 1 items whose time left when written is below `64 * 8^(c-1)` seconds (the
/// last class: any longer). Each queue has an open segment per class in use, so a segment's items
/// expire within about a factor of 8 of each other and [`crate::Store::reclaim_expired`] frees it
/// whole soon after they do, instead of waiting for eviction to reach a segment where short-lived
/// items sit beside immortal ones. Both queues are split: items kept by eviction are compacted
/// into the evicted segment's own buffer, which stays one class only if its items were.
pub(crate) const TTL_CLASSES: usize = 6;

/// The lifetime class (see [`TTL_CLASSES`]) of an item with this exptime written at `now`.
pub(crate) fn ttl_class(exptime: RelTime, now: RelTime) -> usize {
    if exptime == 0 {
        return 0;
    }
    let left = exptime.saturating_sub(now).max(1);
    // 1 below 64 s, 2 below 512 s, 3 below 4096 s (68 min), 4 below 9 h, 5 beyond.
    let class = if left < 64 {
        1
    } else {
        2 + (left / 64).ilog2() as usize / 3
    };
    class.min(TTL_CLASSES - 1)
}

/// `max_exptime` of a segment holding an item that never expires.
pub(crate) const NEVER: RelTime = RelTime::MAX;

pub(crate) struct Segment {
    /// The buffer, allocated whole when the segment opens (zeroed, so untouched pages cost no
    /// resident memory), charged to the budget by its length.
    pub data: Box<[u8]>,
    /// Bytes written: the next item goes here.
    pub len: usize,
    /// Items whose index entry points here. A closed segment whose last item goes is freed.
    pub live: u32,
    /// Bytes of those items: the rest of `len` is garbage (overwritten or removed versions).
    pub live_bytes: usize,
    pub queue: Queue,
    /// Its lifetime class in its queue (see [`TTL_CLASSES`]).
    pub class: usize,
    /// When it opened: with `seq_base`, what `flush_all` compares (every item in a segment is on
    /// the same side of a flush; see `Shard::place_for`).
    pub created: RelTime,
    /// First sequence number of the range this segment took; an item's CAS id is this plus its
    /// offset, unless written out.
    pub seq_base: u64,
    /// The latest exptime of the items written here ([`NEVER`] if one never expires; 0 while
    /// empty): past it, the whole segment is dead.
    pub max_exptime: RelTime,
}

impl Segment {
    pub fn new(capacity: usize, queue: Queue, created: RelTime, seq_base: u64) -> Segment {
        Segment {
            data: vec![0u8; capacity].into_boxed_slice(),
            len: 0,
            live: 0,
            live_bytes: 0,
            queue,
            class: 0,
            created,
            seq_base,
            max_exptime: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.data.len()
    }

    /// Bytes of versions no longer in the index.
    pub fn garbage(&self) -> usize {
        self.len - self.live_bytes
    }

    pub fn room(&self) -> usize {
        self.data.len() - self.len
    }

    /// Notes an item with this exptime was written here.
    pub fn saw_exptime(&mut self, exptime: RelTime) {
        self.max_exptime = if exptime == 0 {
            NEVER
        } else {
            self.max_exptime.max(exptime)
        };
    }

    /// Every item here has expired by `now`.
    pub fn all_expired(&self, now: RelTime) -> bool {
        self.max_exptime != 0 && self.max_exptime != NEVER && self.max_exptime <= now
    }
}

/// S3-FIFO's ghost queue, made compact: a direct-mapped table of 16-bit key fingerprints. A key
/// evicted from the small queue leaves its fingerprint; a new item whose fingerprint is found
/// goes straight to the main queue (it was wanted again soon after it left). A slot is simply
/// overwritten by a later key, which ages the ghost out in about FIFO order.
pub(crate) struct Ghost {
    tags: Box<[u16]>,
}

impl Ghost {
    pub fn new(entries: usize) -> Ghost {
        Ghost {
            tags: vec![0u16; entries.max(1)].into_boxed_slice(),
        }
    }

    pub fn bytes(entries: usize) -> usize {
        entries.max(1) * std::mem::size_of::<u16>()
    }

    fn slot_and_tag(&self, hash: u64) -> (usize, u16) {
        let slot = (hash as u32 as usize) % self.tags.len();
        // Bits 40-55: not those that chose the shard (32-35) or the slot; never 0 (empty).
        let tag = ((hash >> 40) as u16) | 1;
        (slot, tag)
    }

    pub fn insert(&mut self, hash: u64) {
        let (slot, tag) = self.slot_and_tag(hash);
        self.tags[slot] = tag;
    }

    pub fn contains(&self, hash: u64) -> bool {
        let (slot, tag) = self.slot_and_tag(hash);
        self.tags[slot] == tag
    }

    /// Keys it remembers.
    #[cfg(test)]
    pub fn remembered(&self) -> usize {
        self.tags.iter().filter(|&&t| t != 0).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ghost_remembers_until_overwritten() {
        let mut ghost = Ghost::new(8);
        let a = 3u64 | 0xabcd << 40;
        let b = 3u64 | 0x1234 << 40; // same slot, another key
        assert!(!ghost.contains(a));
        ghost.insert(a);
        assert!(ghost.contains(a) && !ghost.contains(b));
        ghost.insert(b);
        assert!(ghost.contains(b) && !ghost.contains(a));
    }

    #[test]
    fn lifetime_classes() {
        let class = |left: RelTime| ttl_class(1000 + left, 1000);
        assert_eq!(ttl_class(0, 1000), 0, "never expires");
        assert_eq!(ttl_class(900, 1000), 1, "already past: the shortest");
        for (left, want) in [
            (1, 1),
            (63, 1),
            (64, 2),
            (511, 2),
            (512, 3),
            (4095, 3),
            (4096, 4),
            (32767, 4),
            (32768, 5),
            (30 * 86400, 5),
        ] {
            assert_eq!(class(left), want, "{left} s left");
        }
    }

    #[test]
    fn segment_expiry_needs_every_item_expired() {
        let mut seg = Segment::new(64, Queue::Small, 0, 1);
        assert!(!seg.all_expired(100), "empty");
        seg.saw_exptime(10);
        seg.saw_exptime(20);
        assert!(!seg.all_expired(19) && seg.all_expired(20));
        seg.saw_exptime(0);
        assert!(!seg.all_expired(1000));
    }
}
