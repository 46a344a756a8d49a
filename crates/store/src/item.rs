//! Items: the public read view ([`Item`]) and the stored form ([`Slot`]), with memcached's rules for
//! when an item is dead (expired or flushed).

use bytes::Bytes;

use crate::RelTime;

/// An item as read: the value bytes (shared, no copy), client flags and CAS id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub value: Bytes,
    pub flags: u32,
    pub cas: u64,
    /// When it expires on the server's relative clock (0: never); the meta protocol's `t` flag
    /// reports the time left.
    pub exptime: RelTime,
}

/// One stored item, 64 bytes:
///
/// | field    | bytes | why |
/// |----------|-------|-----|
/// | data     | 32    | key then value in one allocation; a `get` hands out a slice of it |
/// | seq      | 8     | sequence number of this version: the CAS id (when CAS is on) and what `flush_all` compares |
/// | key_len  | 4     | where the key ends in `data` |
/// | flags    | 4     | client flags |
/// | exptime  | 4     | 0 = never, else expired once `exptime <= now` |
/// | time     | 4     | when it was stored (memcached's `it->time`), for `flush_all` with a delay |
/// | state    | 1     | [`LIVE`], [`FETCHED`], [`VISITED`] bits (+7 padding) |
///
/// A free slot has `state == 0` and an empty `data` (no allocation).
pub(crate) struct Slot {
    pub data: Bytes,
    pub seq: u64,
    pub key_len: u32,
    pub flags: u32,
    pub exptime: RelTime,
    pub time: RelTime,
    pub state: u8,
}

/// The slot holds an item.
pub(crate) const LIVE: u8 = 1;
/// The item was read at least once (for `evicted_unfetched`/`expired_unfetched`).
pub(crate) const FETCHED: u8 = 2;
/// CLOCK bit: set on access, cleared when the eviction hand passes.
pub(crate) const VISITED: u8 = 4;

/// Heap bytes an item costs beyond its key and value, besides its [`Slot`] and index entry (which
/// the arena and index capacities account for):
/// - the data allocation's malloc header and rounding: glibc rounds `len + 8` up to 16, so 8 to 23
///   bytes, about 16 on average;
/// - the `bytes` crate's shared header (24 bytes, a 32-byte malloc chunk), allocated the first time
///   the value is handed out to a reader.
///
/// Together with the 64-byte slot and about 6-11 bytes of hash index per item (4-byte slot id plus a
/// control byte, at a 7/8 to 7/16 load factor) a small item costs about 120 bytes of overhead,
/// where memcached 1.6 spends a 56-byte header plus slab-class rounding. `tests/overhead.rs` checks
/// the accounting against the process's resident memory.
pub const ITEM_OVERHEAD: usize = 48;

impl Slot {
    pub const FREE: Slot = Slot {
        data: Bytes::new(),
        seq: 0,
        key_len: 0,
        flags: 0,
        exptime: 0,
        time: 0,
        state: 0,
    };

    pub fn key(&self) -> &[u8] {
        &self.data[..self.key_len as usize]
    }

    pub fn value(&self) -> &[u8] {
        &self.data[self.key_len as usize..]
    }

    pub fn is_live(&self) -> bool {
        self.state & LIVE != 0
    }

    pub fn was_fetched(&self) -> bool {
        self.state & FETCHED != 0
    }

    /// Bytes charged to the budget for this item.
    pub fn charge(&self) -> usize {
        charge(self.data.len())
    }

    /// The read view, sharing the value bytes.
    pub fn to_item(&self, use_cas: bool) -> Item {
        Item {
            value: self.data.slice(self.key_len as usize..),
            flags: self.flags,
            cas: if use_cas { self.seq } else { 0 },
            exptime: self.exptime,
        }
    }
}

/// Bytes charged for an item whose key and value together are `data_len` bytes.
pub(crate) fn charge(data_len: usize) -> usize {
    data_len.saturating_add(ITEM_OVERHEAD)
}

/// Key and value in one buffer, the way a [`Slot`] keeps them.
pub(crate) fn join(key: &[u8], first: &[u8], second: &[u8]) -> Bytes {
    let mut data = Vec::with_capacity(key.len() + first.len() + second.len());
    data.extend_from_slice(key);
    data.extend_from_slice(first);
    data.extend_from_slice(second);
    Bytes::from(data)
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
    /// memcached's `item_is_flushed`.
    pub fn flushes(&self, slot: &Slot, now: RelTime) -> bool {
        self.active
            && self.effective_at <= now
            && (u64::from(slot.time) < self.stored_before
                || (self.oldest_seq != 0 && slot.seq < self.oldest_seq))
    }
}

/// Is this live slot dead at `now`? Flushed is checked first, as memcached's `do_item_get` does.
pub(crate) fn dead(slot: &Slot, now: RelTime, flush: &FlushState) -> Option<Dead> {
    if flush.flushes(slot, now) {
        Some(Dead::Flushed)
    } else if slot.exptime != 0 && slot.exptime <= now {
        Some(Dead::Expired)
    } else {
        None
    }
}
