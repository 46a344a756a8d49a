//! The index's hash table: buckets of one cache line, each holding 9 slots of 7 bytes (an
//! [`Entry`] and 10 bits of the key's hash, its tag) and one byte counting the entries that had
//! to pass this bucket to find room further on. A lookup reads its home bucket, compares the tags
//! of the 9 slots and reads an item's key only on a tag match: one cache miss for the index and
//! one for the item, where a table with a separate array of control bytes (hashbrown) takes two
//! for the index. The layout is Segcache's (tags and entries together in a cache-line bucket),
//! with open addressing to the next bucket instead of chained overflow buckets.
//!
//! A full bucket sends an insert on to the next one and counts it there (`passing`); a lookup goes
//! on to the next bucket only while that count is not zero, and a removal takes its count back
//! from each bucket it had passed. So a miss stops at the first bucket nothing passed, however
//! many inserts and removals came before (no tombstones to clean up).
//!
//! Slot values: bits 0-45 the entry, 46-55 the tag (never 0), all zero for an empty slot.

use crate::index::Entry;

/// Slots per bucket.
const SLOTS: usize = 9;
const SLOT_BYTES: usize = 7;
/// The byte after the slots: entries that passed this bucket (saturating; at 255 it stays).
const PASSING: usize = SLOTS * SLOT_BYTES;
const ENTRY_BITS: u32 = 46;
const ENTRY_MASK: u64 = (1 << ENTRY_BITS) - 1;
const TAG_BITS: u32 = 10;
const SLOT_MASK: u64 = (1 << (ENTRY_BITS + TAG_BITS)) - 1;
/// Bytes of one bucket.
const BUCKET_BYTES: usize = 64;

/// One cache line of the table.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Bucket([u8; BUCKET_BYTES]);

impl Bucket {
    const EMPTY: Bucket = Bucket([0; BUCKET_BYTES]);

    /// Slot `i`'s value (an 8-byte read masked to 7: the last slot's read takes in `PASSING`).
    fn slot(&self, i: usize) -> u64 {
        let at = i * SLOT_BYTES;
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&self.0[at..at + 8]);
        u64::from_le_bytes(bytes) & SLOT_MASK
    }

    fn set_slot(&mut self, i: usize, value: u64) {
        let at = i * SLOT_BYTES;
        self.0[at..at + SLOT_BYTES].copy_from_slice(&value.to_le_bytes()[..SLOT_BYTES]);
    }

    fn passing(&self) -> u8 {
        self.0[PASSING]
    }

    fn pass(&mut self) {
        self.0[PASSING] = self.0[PASSING].saturating_add(1);
    }

    /// Takes back one pass; a count that reached 255 no longer knows its true value and stays.
    fn unpass(&mut self) {
        if self.0[PASSING] != u8::MAX {
            self.0[PASSING] -= 1;
        }
    }

    fn free_slot(&self) -> Option<usize> {
        (0..SLOTS).find(|&i| self.slot(i) == 0)
    }
}

/// The tag of a hash: its top 10 bits, 0 made 1 (0 marks an empty slot). The low 32 bits pick the
/// bucket, bits 32-35 the shard and 40-49 the table of the shard (`index::route`).
fn tag_of(hash: u64) -> u64 {
    (hash >> (64 - TAG_BITS)).max(1)
}

/// The bucket a lookup of `hash` starts from in a table of `n` buckets: the low 32 bits of the
/// hash scaled to `n` (a multiply and a shift, for any `n`).
fn home(hash: u64, n: usize) -> usize {
    (((hash & 0xFFFF_FFFF) * n as u64) >> 32) as usize
}

/// The bucket after `b`, wrapping around.
fn next(b: usize, n: usize) -> usize {
    if b + 1 == n {
        0
    } else {
        b + 1
    }
}

/// Where an entry is in its table, valid until the table next changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    bucket: usize,
    slot: usize,
}

/// A table of entries, looked up by hash with a predicate that checks the entry's key.
#[derive(Default)]
pub(crate) struct BucketTable {
    /// Any number of buckets, none before the first insert.
    buckets: Box<[Bucket]>,
    len: usize,
}

/// Bytes a table of this many buckets holds.
pub(crate) fn table_bytes(buckets: usize) -> usize {
    buckets * BUCKET_BYTES
}

/// The most a table is filled to before it grows, as a fraction of its slots.
const MAX_LOAD: (usize, usize) = (7, 8);
/// How much a full table grows by, as a fraction of its buckets.
const GROWTH: (usize, usize) = (5, 4);
/// Entries rehashed ahead of the one being placed when a table grows: their items are being
/// loaded meanwhile.
const REHASH_AHEAD: usize = 16;

/// Entries a table of this many buckets takes before it grows: [`MAX_LOAD`] of its slots.
pub(crate) fn capacity_of_buckets(buckets: usize) -> usize {
    buckets * SLOTS * MAX_LOAD.0 / MAX_LOAD.1
}

impl BucketTable {
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    pub fn capacity(&self) -> usize {
        capacity_of_buckets(self.buckets())
    }

    /// Bytes this table must grow by before it takes one more entry (0: it has room).
    pub fn growth(&self) -> usize {
        if self.len < self.capacity() {
            0
        } else {
            table_bytes(self.grown_buckets()) - table_bytes(self.buckets())
        }
    }

    fn grown_buckets(&self) -> usize {
        let n = self.buckets();
        (n * GROWTH.0 / GROWTH.1).max(n + 1)
    }

    /// The place of the entry with this hash that `eq` accepts (called only on a tag match).
    pub fn find_pos(&self, hash: u64, mut eq: impl FnMut(Entry) -> bool) -> Option<Pos> {
        if self.buckets.is_empty() {
            return None;
        }
        let tag = tag_of(hash);
        let n = self.buckets();
        let mut b = home(hash, n);
        // Every bucket at most once (a loop that found no bucket without passes would be a bug).
        for _ in 0..n {
            let bucket = &self.buckets[b];
            for slot in 0..SLOTS {
                let value = bucket.slot(slot);
                if value >> ENTRY_BITS == tag && eq(Entry::from_bits(value & ENTRY_MASK)) {
                    return Some(Pos { bucket: b, slot });
                }
            }
            if bucket.passing() == 0 {
                return None;
            }
            b = next(b, n);
        }
        None
    }

    /// Starts loading the bucket a lookup of `hash` reads first, so that several lookups' cache
    /// misses overlap instead of following one another.
    pub fn prefetch(&self, hash: u64) {
        if !self.buckets.is_empty() {
            prefetch(&self.buckets[home(hash, self.buckets())]);
        }
    }

    /// The entry in the first slot whose tag matches `hash`: the likeliest entry of its key,
    /// unchecked.
    pub fn first_match(&self, hash: u64) -> Option<Entry> {
        self.find(hash, |_| true)
    }

    pub fn find(&self, hash: u64, eq: impl FnMut(Entry) -> bool) -> Option<Entry> {
        self.find_pos(hash, eq).map(|pos| self.get(pos))
    }

    pub fn get(&self, pos: Pos) -> Entry {
        Entry::from_bits(self.buckets[pos.bucket].slot(pos.slot) & ENTRY_MASK)
    }

    /// Replaces the entry at `pos` (same key, so the tag stays).
    pub fn set(&mut self, pos: Pos, e: Entry) {
        let bucket = &mut self.buckets[pos.bucket];
        let tag = bucket.slot(pos.slot) & !ENTRY_MASK;
        debug_assert!(e.bits() <= ENTRY_MASK);
        bucket.set_slot(pos.slot, tag | e.bits());
    }

    /// Removes the entry with this hash that `eq` accepts.
    pub fn remove(&mut self, hash: u64, eq: impl FnMut(Entry) -> bool) -> Option<Entry> {
        let pos = self.find_pos(hash, eq)?;
        let e = self.get(pos);
        self.buckets[pos.bucket].set_slot(pos.slot, 0);
        let n = self.buckets();
        let mut b = home(hash, n);
        while b != pos.bucket {
            self.buckets[b].unpass();
            b = next(b, n);
        }
        self.len -= 1;
        Some(e)
    }

    /// Adds an entry for a key not in the table. A full table grows first (`rehash` gives an
    /// entry's hash, `load` starts loading what `rehash` reads); the store grows it beforehand,
    /// with the bytes reserved (`growth`).
    pub fn insert(
        &mut self,
        hash: u64,
        e: Entry,
        rehash: impl Fn(Entry) -> u64,
        load: impl Fn(Entry),
    ) {
        if self.len >= self.capacity() {
            self.grow(rehash, load);
        }
        debug_assert!(e.bits() <= ENTRY_MASK);
        place(
            &mut self.buckets,
            hash,
            tag_of(hash) << ENTRY_BITS | e.bits(),
        );
        self.len += 1;
    }

    /// Grows the buckets by [`GROWTH`] and places every entry again. `rehash` gives an entry's
    /// hash (reading its key, a cache miss for each entry); `load` is called [`REHASH_AHEAD`]
    /// entries earlier, to start that read, so the misses overlap.
    pub fn grow(&mut self, rehash: impl Fn(Entry) -> u64, load: impl Fn(Entry)) {
        let mut grown = vec![Bucket::EMPTY; self.grown_buckets()].into_boxed_slice();
        let mut place_again = |value: u64| {
            let hash = rehash(Entry::from_bits(value & ENTRY_MASK));
            place(&mut grown, hash, value);
        };
        // The values loaded and not yet placed, oldest first.
        let mut ahead = std::collections::VecDeque::with_capacity(REHASH_AHEAD + 1);
        for bucket in self.buckets.iter() {
            for value in (0..SLOTS).map(|i| bucket.slot(i)).filter(|&v| v != 0) {
                load(Entry::from_bits(value & ENTRY_MASK));
                ahead.push_back(value);
                if ahead.len() > REHASH_AHEAD {
                    place_again(ahead.pop_front().expect("not empty"));
                }
            }
        }
        ahead.into_iter().for_each(place_again);
        self.buckets = grown;
    }
}

/// Asks the CPU to bring `x`'s first cache line into its caches, without waiting for it.
#[inline]
pub(crate) fn prefetch<T>(x: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` is `unsafe` only because it needs SSE, which every x86_64 CPU has
    // (it is in the target's baseline). The instruction is a hint: it reads no memory the program
    // sees, cannot fault, and the address comes from a live reference.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            (x as *const T).cast::<i8>(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = x;
}

/// Puts a slot value in the first free slot from the hash's home bucket on, counting a pass in
/// each full bucket on the way. The table has a free slot (its load is below [`MAX_LOAD`]).
fn place(buckets: &mut [Bucket], hash: u64, value: u64) {
    let n = buckets.len();
    let mut b = home(hash, n);
    loop {
        let bucket = &mut buckets[b];
        if let Some(slot) = bucket.free_slot() {
            bucket.set_slot(slot, value);
            return;
        }
        bucket.pass();
        b = next(b, n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Entries named by a key number: the entry's offset is the key, its hash is chosen by the
    /// test (to force collisions).
    fn entry(key: u32) -> Entry {
        Entry::new(key >> 20, (key & 0xF_FFFF) as usize)
    }

    fn key_of(e: Entry) -> u32 {
        e.segment() << 20 | e.offset() as u32
    }

    fn check_passing(table: &BucketTable, hash_of: &impl Fn(u32) -> u64) {
        // Recount the passes from where each entry sits.
        let n = table.buckets();
        let mut want = vec![0u32; n];
        for (b, bucket) in table.buckets.iter().enumerate() {
            for slot in 0..SLOTS {
                let value = bucket.slot(slot);
                if value == 0 {
                    continue;
                }
                let h = hash_of(key_of(Entry::from_bits(value & ENTRY_MASK)));
                assert_eq!(value >> ENTRY_BITS, tag_of(h), "tag of slot ({b}, {slot})");
                let mut at = home(h, n);
                while at != b {
                    want[at] += 1;
                    at = next(at, n);
                }
            }
        }
        for (b, bucket) in table.buckets.iter().enumerate() {
            assert_eq!(u32::from(bucket.passing()), want[b].min(255), "bucket {b}");
        }
    }

    fn run_against_model(hash_of: impl Fn(u32) -> u64, keys: u32, steps: u32) {
        let mut table = BucketTable::default();
        let mut model: HashMap<u32, Entry> = HashMap::new();
        let rehash = |e: Entry| hash_of(key_of(e));
        let mut x = 12345u64;
        for step in 0..steps {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let key = ((x >> 33) % u64::from(keys)) as u32;
            let h = hash_of(key);
            table.prefetch(h);
            let found = table.find(h, |e| key_of(e) == key);
            assert_eq!(found, model.get(&key).copied(), "step {step} key {key}");
            match (x >> 20) % 4 {
                0 | 1 if found.is_none() => {
                    table.insert(h, entry(key), rehash, |_| {});
                    model.insert(key, entry(key));
                }
                0 => {
                    let pos = table.find_pos(h, |e| key_of(e) == key).unwrap();
                    let bumped = table.get(pos).read(true);
                    table.set(pos, bumped);
                    model.insert(key, bumped);
                }
                _ => {
                    let removed = table.remove(h, |e| key_of(e) == key);
                    assert_eq!(removed, model.remove(&key));
                }
            }
            assert_eq!(table.len(), model.len());
            assert!(table.len() <= table.capacity());
        }
        check_passing(&table, &hash_of);
        for (&key, &e) in &model {
            assert_eq!(table.find(hash_of(key), |x| key_of(x) == key), Some(e));
        }
        for (key, e) in model.clone() {
            assert_eq!(table.remove(hash_of(key), |x| key_of(x) == key), Some(e));
        }
        assert_eq!(table.len(), 0);
        assert!(
            table.buckets.iter().all(|b| b.passing() == 0),
            "an empty table has no passes"
        );
    }

    #[test]
    fn matches_a_map_under_inserts_updates_and_removes() {
        let hasher = std::collections::hash_map::RandomState::new();
        use std::hash::BuildHasher;
        run_against_model(|k| hasher.hash_one(k), 5_000, 200_000);
    }

    #[test]
    fn colliding_hashes_chain_through_full_buckets() {
        // 4 home buckets for all keys (the top bits of the low 32 pick the home) and 64 tag
        // values: long runs of full buckets, many passes and false tag matches.
        run_against_model(
            |k| {
                let k = u64::from(k);
                (k % 4) << 30 | ((k * 0x9E37_79B9) % 64) << 54
            },
            200,
            100_000,
        );
    }

    #[test]
    fn a_miss_stops_at_the_first_bucket_nothing_passed() {
        let mut table = BucketTable::default();
        // One bucket first, then 2, 3, ..., 8, 10, 12, 15, 18, 22, 27, 33, 41, 51: fill a table
        // of at least 50 buckets to its most.
        let hash_of = |k: u32| u64::from(k).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut k = 0;
        while table.buckets() < 50 || table.len() < table.capacity() {
            table.insert(hash_of(k), entry(k), |e| hash_of(key_of(e)), |_| {});
            k += 1;
        }
        let n = table.buckets();
        assert_eq!(
            n, 51,
            "1, 2, ..., 8, then a quarter more (rounded down) each time"
        );
        assert_eq!(k as usize, capacity_of_buckets(n));
        assert_eq!(table.growth(), table_bytes(63) - table_bytes(n));
        let mut probed = 0;
        let missing = 1_000_000;
        assert_eq!(
            table.find(hash_of(missing), |_| {
                probed += 1;
                false
            }),
            None
        );
        assert!(probed <= SLOTS * 4, "{probed} tag matches");
    }

    #[test]
    fn growth_loads_each_entry_once_ahead_of_placing_it() {
        let hash_of = |k: u32| u64::from(k).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut table = BucketTable::default();
        for k in 0..1000 {
            table.insert(hash_of(k), entry(k), |e| hash_of(key_of(e)), |_| {});
        }
        let (before, len) = (table.buckets(), table.len());
        let loaded = std::cell::RefCell::new(Vec::new());
        let placed = std::cell::RefCell::new(Vec::new());
        table.grow(
            |e| {
                placed.borrow_mut().push(key_of(e));
                hash_of(key_of(e))
            },
            |e| loaded.borrow_mut().push((key_of(e), placed.borrow().len())),
        );
        assert_eq!(table.buckets(), before * 5 / 4);
        let (loaded, placed) = (loaded.into_inner(), placed.into_inner());
        assert_eq!(placed.len(), len);
        let mut keys: Vec<u32> = loaded.iter().map(|&(k, _)| k).collect();
        assert_eq!(keys, placed, "loaded in the order placed");
        keys.sort_unstable();
        assert_eq!(keys, (0..1000).collect::<Vec<_>>());
        for (i, &(_, placed_then)) in loaded.iter().enumerate() {
            assert_eq!(
                placed_then,
                i.saturating_sub(REHASH_AHEAD),
                "entry {i} loaded ahead"
            );
        }
        for k in 0..1000 {
            assert_eq!(table.find(hash_of(k), |e| key_of(e) == k), Some(entry(k)));
        }
        check_passing(&table, &hash_of);
    }

    #[test]
    fn bytes_and_capacity() {
        assert_eq!(std::mem::size_of::<Bucket>(), 64);
        assert_eq!(std::mem::align_of::<Bucket>(), 64);
        let table = BucketTable::default();
        table.prefetch(u64::MAX);
        assert_eq!(table.find(u64::MAX, |_| true), None);
        assert_eq!((table.capacity(), table.growth()), (0, 64));
        assert_eq!(capacity_of_buckets(1), 7);
        assert_eq!(capacity_of_buckets(1024), 8064);
        // 7 bytes per slot and a byte of passes per bucket: 64/63 of 7 bytes per slot.
        assert_eq!(table_bytes(1024), 1024 * 9 * 7 + 1024);
    }

    #[test]
    fn a_slot_keeps_its_tag_and_neighbours_when_set() {
        let mut b = Bucket::EMPTY;
        b.0[PASSING] = 3;
        for i in 0..SLOTS {
            b.set_slot(i, ((i as u64 + 1) << ENTRY_BITS) | (ENTRY_MASK - i as u64));
        }
        for i in 0..SLOTS {
            assert_eq!(
                b.slot(i),
                ((i as u64 + 1) << ENTRY_BITS) | (ENTRY_MASK - i as u64)
            );
        }
        assert_eq!(b.passing(), 3, "the last slot's write leaves the count");
        for _ in 0..300 {
            b.pass();
        }
        b.unpass();
        assert_eq!(b.passing(), 255, "saturated counts stay");
    }
}
