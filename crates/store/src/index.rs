//! The hash index's entries and how keys are split over a shard's tables. An [`Entry`] (46 bits)
//! names a place in a segment plus a few bits of state; the tables that hold them are
//! [`crate::table::BucketTable`]s, 7 bytes per slot (entry and a 10-bit tag) in 64-byte buckets,
//! at a load between 7/10 and 7/8.
//!
//! A table grows by a quarter when it is 7/8 full (it doubled before, which left it between 7/16
//! and 7/8 full: 11.7 bytes per item on average against about 9 now; the price is that an entry
//! is rehashed four times as it grows instead of once, with its key's read prefetched). Had a
//! shard one table, or several of equal share, the whole index would grow at once, and the bytes
//! per item would swing with the number of items (so would the items that fit in `-m`). Each
//! shard therefore splits its keys over [`SUBTABLES`] tables whose shares of the key space are
//! spread over one octave (table `k` takes a share proportional to `2^(k/SUBTABLES)`): they reach
//! their growth points at different sizes, so the index grows in small steps and costs about the
//! same per item whatever the count (64/9 bytes per slot at the mean load of a table growing
//! log-uniformly through a factor of 5/4, 7/8 / 1.12), and a growth rehashes a 256th of the index
//! (a large table's growth, a few buckets per insert: `table.rs`).

/// One index entry, 48 bits:
///
/// | bits  | field    | why |
/// |-------|----------|-----|
/// | 0-19  | offset   | where the item starts in its segment (segments are at most 1 MiB, or hold one item) |
/// | 20-39 | segment  | the segment's id in its shard (up to 2^20 segments per shard) |
/// | 40-41 | freq     | hits since written or last kept, capped at 3 (S3-FIFO) |
/// | 42    | fetched  | read at least once (`evicted_unfetched`, meta `h`) |
/// | 43    | cas_seen | the item's CAS id was reported to a client (see `layout.rs`) |
/// | 44    | stale    | marked stale by meta `md I` / `ms I` (meta `X`) |
/// | 45    | token    | a meta client was told it won the right to recache it (meta `W`, then `Z`) |
///
/// Held as three `u16` (6 bytes, 2-byte aligned); a table stores it in the low 46 bits of a
/// 7-byte slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry([u16; 3]);

const OFFSET_BITS: u32 = 20;
const SEGMENT_BITS: u32 = 20;
/// Offsets must be below this (an item at a larger offset would not fit an entry).
pub(crate) const MAX_OFFSET: usize = (1 << OFFSET_BITS) - 1;
/// Segment ids per shard.
pub(crate) const MAX_SEGMENTS: usize = 1 << SEGMENT_BITS;
const FREQ_SHIFT: u32 = OFFSET_BITS + SEGMENT_BITS;
const FETCHED: u64 = 1 << 42;
const CAS_SEEN: u64 = 1 << 43;
const STALE: u64 = 1 << 44;
const TOKEN_SENT: u64 = 1 << 45;
const PLACE_MASK: u64 = (1 << FREQ_SHIFT) - 1;

impl Entry {
    pub(crate) fn from_bits(v: u64) -> Entry {
        Entry([v as u16, (v >> 16) as u16, (v >> 32) as u16])
    }

    pub(crate) fn bits(self) -> u64 {
        u64::from(self.0[0]) | u64::from(self.0[1]) << 16 | u64::from(self.0[2]) << 32
    }

    /// A fresh entry: not fetched, frequency 0.
    pub fn new(segment: u32, offset: usize) -> Entry {
        debug_assert!(offset <= MAX_OFFSET && (segment as usize) < MAX_SEGMENTS);
        Entry::from_bits(offset as u64 | u64::from(segment) << OFFSET_BITS)
    }

    pub fn segment(self) -> u32 {
        ((self.bits() >> OFFSET_BITS) & ((1 << SEGMENT_BITS) - 1)) as u32
    }

    pub fn offset(self) -> usize {
        (self.bits() & ((1 << OFFSET_BITS) - 1)) as usize
    }

    /// Same item place (state bits aside).
    pub fn same_place(self, other: Entry) -> bool {
        self.bits() & PLACE_MASK == other.bits() & PLACE_MASK
    }

    /// This entry's state at another place.
    pub fn moved_to(self, segment: u32, offset: usize) -> Entry {
        Entry::from_bits(self.bits() & !PLACE_MASK | Entry::new(segment, offset).bits())
    }

    pub fn freq(self) -> u8 {
        ((self.bits() >> FREQ_SHIFT) & 3) as u8
    }

    pub fn with_freq(self, freq: u8) -> Entry {
        let freq = u64::from(freq.min(3));
        Entry::from_bits(self.bits() & !(3 << FREQ_SHIFT) | freq << FREQ_SHIFT)
    }

    pub fn fetched(self) -> bool {
        self.bits() & FETCHED != 0
    }

    pub fn cas_seen(self) -> bool {
        self.bits() & CAS_SEEN != 0
    }

    /// Marks a read: fetched, one more hit, and (when the reply shows it) the CAS id seen.
    pub fn read(self, shows_cas: bool) -> Entry {
        let e = self.with_freq(self.freq().saturating_add(1));
        let mut bits = e.bits() | FETCHED;
        if shows_cas {
            bits |= CAS_SEEN;
        }
        Entry::from_bits(bits)
    }

    pub fn with_cas_seen(self) -> Entry {
        Entry::from_bits(self.bits() | CAS_SEEN)
    }

    pub fn stale(self) -> bool {
        self.bits() & STALE != 0
    }

    pub fn token_sent(self) -> bool {
        self.bits() & TOKEN_SENT != 0
    }

    pub fn with_stale(self, stale: bool) -> Entry {
        Entry::from_bits(if stale {
            self.bits() | STALE
        } else {
            self.bits() & !STALE
        })
    }

    pub fn with_token_sent(self, sent: bool) -> Entry {
        let bits = self.bits();
        Entry::from_bits(if sent {
            bits | TOKEN_SENT
        } else {
            bits & !TOKEN_SENT
        })
    }
}

/// Tables per shard (see the module doc).
pub(crate) const SUBTABLES: usize = 16;
/// Hash bits that choose the table: bits 40-49 (not those that choose the shard, 32-35, nor the
/// table's: the low 32 for the bucket, the top 10 for the tag).
const ROUTE_BITS: u32 = 10;
const ROUTE_SHIFT: u32 = 40;

/// Which table of a shard each of the `2^ROUTE_BITS` route values goes to, shares spread over an
/// octave.
pub(crate) fn route_table() -> Box<[u8]> {
    let weights: Vec<f64> = (0..SUBTABLES)
        .map(|k| 2f64.powf(k as f64 / SUBTABLES as f64))
        .collect();
    let total: f64 = weights.iter().sum();
    let slots = 1usize << ROUTE_BITS;
    let mut route = Vec::with_capacity(slots);
    let mut cumulative = 0.0;
    for (k, w) in weights.iter().enumerate() {
        cumulative += w / total;
        let end = if k + 1 == SUBTABLES {
            slots
        } else {
            (cumulative * slots as f64).round() as usize
        };
        while route.len() < end {
            route.push(k as u8);
        }
    }
    route.into_boxed_slice()
}

/// The table of a shard a key with this hash belongs to.
pub(crate) fn route(route: &[u8], hash: u64) -> usize {
    usize::from(route[((hash >> ROUTE_SHIFT) as usize) & ((1 << ROUTE_BITS) - 1)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_pack_six_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 6);
        let e = Entry::new(MAX_SEGMENTS as u32 - 1, MAX_OFFSET);
        assert_eq!(e.segment(), MAX_SEGMENTS as u32 - 1);
        assert_eq!(e.offset(), MAX_OFFSET);
        assert_eq!(e.freq(), 0);
        assert!(!e.fetched() && !e.cas_seen());
        let r = e.read(false).read(true).read(false).read(false);
        assert_eq!(r.freq(), 3, "capped");
        assert!(r.fetched() && r.cas_seen());
        assert!(r.same_place(e));
        let m = r.moved_to(7, 100);
        assert_eq!((m.segment(), m.offset(), m.freq()), (7, 100, 3));
        assert!(m.fetched() && m.cas_seen() && !m.same_place(r));
        assert_eq!(m.with_freq(1).freq(), 1);
        let marked = m.with_stale(true).with_token_sent(true);
        assert!(marked.stale() && marked.token_sent() && marked.same_place(m));
        assert_eq!(marked.freq(), 3);
        assert!(
            !marked.with_token_sent(false).token_sent() && marked.with_token_sent(false).stale()
        );
    }

    #[test]
    fn route_shares_span_an_octave() {
        let table = route_table();
        assert_eq!(table.len(), 1 << ROUTE_BITS);
        let mut counts = [0usize; SUBTABLES];
        for &k in table.iter() {
            counts[usize::from(k)] += 1;
        }
        assert!(counts.windows(2).all(|w| w[0] <= w[1] + 1), "{counts:?}");
        let ratio = counts[SUBTABLES - 1] as f64 / counts[0] as f64;
        assert!((1.7..2.1).contains(&ratio), "{counts:?}");
        assert_eq!(route(&table, u64::MAX), SUBTABLES - 1);
        assert_eq!(route(&table, 0), 0);
    }
}
