//! The public read view of an item ([`Item`]) and memcached's rules for when an item is dead
//! (expired or flushed), applied to whole segments where they can be.

use bytes::Bytes;

use crate::segment::Segment;
use crate::RelTime;

/// An item as read: the value bytes (a copy: segments are reused), client flags and CAS id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub value: Bytes,
    pub flags: u32,
    pub cas: u64,
    /// When it expires on the server's relative clock (0: never); the meta protocol's `t` flag
    /// reports the time left.
    pub exptime: RelTime,
    /// It had been read before this read (the meta protocol's `h` flag).
    pub fetched: bool,
    /// When this version was written, to within its segment's lifetime: the time its segment
    /// opened (the meta protocol's `l` flag; there is no per-item access time).
    pub time: RelTime,
    /// Meta protocol state: the key was sent base64-encoded, the item is marked stale, a client
    /// was told it won the right to recache it.
    pub meta: MetaState,
}

/// Meta protocol state of an item (see [`Item::meta`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetaState {
    pub binary_key: bool,
    pub stale: bool,
    pub token_sent: bool,
}

/// An item as read under its shard's lock: the value borrowed from its segment, so a reply can be
/// written from it without a copy in between (see `Store::get_with`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemRef<'a> {
    pub value: &'a [u8],
    pub flags: u32,
    pub cas: u64,
    pub exptime: RelTime,
    /// It had been read before this read.
    pub fetched: bool,
    /// See [`Item::time`].
    pub time: RelTime,
    /// See [`Item::meta`].
    pub meta: MetaState,
}

impl ItemRef<'_> {
    /// An owned copy.
    pub fn to_item(&self) -> Item {
        Item {
            value: Bytes::copy_from_slice(self.value),
            flags: self.flags,
            cas: self.cas,
            exptime: self.exptime,
            fetched: self.fetched,
            time: self.time,
            meta: self.meta,
        }
    }
}

/// memcached's `settings.oldest_live` and `settings.oldest_cas`, set by `flush_all`, held as an
/// exclusive bound so that a flush at relative time 0 needs no `0 - 1` (memcached keeps
/// `oldest_live` and uses 0 for "no flush", which would misread a flush in the first second).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FlushState {
    pub active: bool,
    /// In force once `now >= effective_at` (memcached: `oldest_live <= current_time`).
    pub effective_at: RelTime,
    /// Items stored before this time are flushed (memcached: `it->time <= oldest_live`).
    pub stored_before: u64,
    /// Items with a smaller sequence number are flushed too (0: no such rule).
    pub oldest_seq: u64,
}

/// Why an item is no longer visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dead {
    Expired,
    Flushed,
}

impl FlushState {
    /// Would the latest flush_all take this segment's items, once in force? Every item of a
    /// segment is on the same side: a segment opened before the flush's time (or before its
    /// sequence number) holds only items written before it, because a write after that time
    /// seals such a segment and opens a new one (see `Shard::place_for`).
    pub fn marks(&self, seg: &Segment) -> bool {
        self.active
            && (u64::from(seg.created) < self.stored_before
                || (self.oldest_seq != 0 && seg.seq_base < self.oldest_seq))
    }

    /// Would an item written at `now` be taken by this flush (memcached's `item_is_flushed` for an
    /// item whose time is `now` and whose CAS is new)?
    pub fn marks_new_write(&self, now: RelTime) -> bool {
        self.active && u64::from(now) < self.stored_before
    }

    /// memcached's `item_is_flushed`, for every item of the segment.
    pub fn flushes(&self, seg: &Segment, now: RelTime) -> bool {
        self.effective_at <= now && self.marks(seg)
    }
}

/// Is an item of `seg` with this exptime dead at `now`? Flushed is checked first, as memcached's
/// `do_item_get` does.
pub(crate) fn dead(
    seg: &Segment,
    exptime: RelTime,
    now: RelTime,
    flush: &FlushState,
) -> Option<Dead> {
    if flush.flushes(seg, now) {
        Some(Dead::Flushed)
    } else if exptime != 0 && exptime <= now {
        Some(Dead::Expired)
    } else {
        None
    }
}
