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
    /// In the buckets a growth is emptying.
    old: bool,
}

/// A table of entries, looked up by hash with a predicate that checks the entry's key.
///
/// A growth of a table of [`SPREAD_FROM`] buckets or more does not place every entry again at
/// once: it allocates the larger buckets, adds there from then on, and each insert after it
/// moves the entries of [`MOVE_STEP`] of the old buckets, in order, until none are left.
/// Meanwhile a lookup that misses in the new buckets goes on to the old. So no insert waits for
/// more than about a thousand buckets' worth of rehashing, however large the table (moving all
/// at once held a shard for milliseconds at 16,000 entries a table, and would for seconds at a
/// few million).
#[derive(Default)]
pub(crate) struct BucketTable {
    /// Where entries are added: any number of buckets, none before the first insert.
    buckets: Box<[Bucket]>,
    /// Entries in `buckets`.
    len: usize,
    /// The buckets before the last growth while their entries are being moved; empty after.
    old: Box<[Bucket]>,
    /// Entries still in `old`.
    old_len: usize,
    /// Buckets of `old` emptied so far, from the first.
    moved: usize,
    /// Which of [`PHASES`] sizes this table takes when it first grows past [`PHASE_FROM`]
    /// buckets.
    phase: usize,
}

/// Bytes a table of this many buckets holds.
pub(crate) fn table_bytes(buckets: usize) -> usize {
    buckets * BUCKET_BYTES
}

/// The most a table is filled to before it grows, as a fraction of its slots.
const MAX_LOAD: (usize, usize) = (7, 8);
/// How much a full table grows by, as a fraction of its buckets.
const GROWTH: (usize, usize) = (5, 4);
/// Old buckets an insert empties while a growth is under way (about 500 entries, each a read
/// of its key: about 100 us on this host). One bucket would do: a growth leaves room for about
/// twice as many new entries as the old buckets' count before the next, and each insert moves
/// at least one bucket. More finishes sooner, which frees the old buckets sooner (they stay in
/// the budget while they are emptied) and spares misses their second probe; fewer makes the
/// inserts that move entries quicker, but more of them (with 16, in a scratch fill that spread
/// every growth, a set's p99 was 25 us instead of 10 us, its p99.9 45 us instead of 100 us).
pub(crate) const MOVE_STEP: usize = 64;
/// Tables of fewer buckets than this move all their entries when they grow: that takes about a
/// millisecond at most (8,000 entries at about 100 ns each on this host), and an entry costs
/// less moved in one go than a few buckets at a time (in process, 98-116 ns an entry on average
/// with every growth in one go, 150-170 ns with every growth spread; a `fill` of `ferrocached`
/// took 25% more CPU per item with every growth spread). The tests spread smaller tables, to
/// reach that path with fewer entries.
#[cfg(not(test))]
const SPREAD_FROM: usize = 1024;
#[cfg(test)]
const SPREAD_FROM: usize = 32;
/// Entries rehashed ahead of the one being placed when entries move: their items are being
/// loaded meanwhile.
const REHASH_AHEAD: usize = 16;

/// Tables of the same share of the key space, one in each shard, would grow at the same moments
/// and all hold their old buckets at once (at the first eviction of a `fill` at `-m 256`, 2 MB of
/// them, 1% fewer items). So when a table first grows past this many buckets it takes one of
/// [`PHASES`] sizes spread over one growth step, its shard's, and from there on they reach
/// their growth points at different sizes (growing by 5/4, rounded down, never brings two
/// different sizes together).
const PHASE_FROM: usize = 64;
pub(crate) const PHASES: usize = 16;

/// Entries a table of this many buckets takes before it grows: [`MAX_LOAD`] of its slots.
pub(crate) fn capacity_of_buckets(buckets: usize) -> usize {
    buckets * SLOTS * MAX_LOAD.0 / MAX_LOAD.1
}

/// Buckets a table of `n` buckets and growth phase `phase` has after a growth.
fn grown_buckets(n: usize, phase: usize) -> usize {
    let grown = (n * GROWTH.0 / GROWTH.1).max(n + 1);
    if n < PHASE_FROM && grown >= PHASE_FROM {
        // Up to a step further: 78 to 96 buckets from 63.
        let step = grown * (GROWTH.0 - GROWTH.1) / GROWTH.1;
        grown + step * phase / PHASES
    } else {
        grown
    }
}

impl BucketTable {
    /// An empty table; `phase` (below [`PHASES`]) sets where it grows past [`PHASE_FROM`].
    pub fn new(phase: usize) -> BucketTable {
        debug_assert!(phase < PHASES);
        BucketTable {
            phase,
            ..BucketTable::default()
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len + self.old_len
    }

    /// Whether a growth is moving entries out of the old buckets.
    pub fn growing(&self) -> bool {
        !self.old.is_empty()
    }

    /// Steps of [`BucketTable::move_step`] that finish the growth under way (0: none is).
    pub fn growth_steps_left(&self) -> usize {
        (self.old.len() - self.moved).div_ceil(MOVE_STEP)
    }

    /// Buckets entries are added to.
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    /// Bytes held: the buckets, and the old buckets while a growth empties them.
    pub fn bytes(&self) -> usize {
        table_bytes(self.buckets.len()) + table_bytes(self.old.len())
    }

    pub fn capacity(&self) -> usize {
        capacity_of_buckets(self.buckets())
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len + self.old_len == 0
    }

    /// Buckets this table would have after taking entries one by one until it holds `len`: its
    /// size now, grown as each growth would grow it until its capacity takes them.
    pub fn buckets_for(&self, len: usize) -> usize {
        let mut n = self.buckets();
        while capacity_of_buckets(n) < len {
            n = grown_buckets(n, self.phase);
        }
        n
    }

    /// Makes an empty table `n` buckets at once (a size [`BucketTable::buckets_for`] gave, so
    /// that it goes on growing as it would have). A table with entries stays as it is.
    pub fn presize(&mut self, n: usize) {
        if self.is_empty() && self.old.is_empty() && n > self.buckets() {
            self.buckets = vec![Bucket::EMPTY; n].into_boxed_slice();
        }
    }

    /// Bytes this table must grow by before it takes one more entry (0: it has room): the
    /// larger buckets, less what the growth frees at once: its buckets if it moves all their
    /// entries then ([`SPREAD_FROM`]; such a table has no old buckets), else the old buckets of
    /// an unfinished growth, which it finishes first.
    pub fn growth(&self) -> usize {
        if self.len + self.old_len < self.capacity() {
            return 0;
        }
        let freed = if self.buckets() < SPREAD_FROM {
            debug_assert!(self.old.is_empty());
            self.buckets()
        } else {
            self.old.len()
        };
        table_bytes(self.grown_buckets()) - table_bytes(freed)
    }

    fn grown_buckets(&self) -> usize {
        grown_buckets(self.buckets(), self.phase)
    }

    /// Buckets a shrink would leave: the smallest size this table passes through as it grows
    /// whose entries would sit at most at the load a growth leaves ([`MAX_LOAD`] less
    /// [`GROWTH`]: 7/10), so that it does not grow again at once. None when that is not fewer
    /// buckets than it has.
    fn shrunk_buckets(&self) -> Option<usize> {
        let len = self.len + self.old_len;
        let mut n = 0;
        while capacity_of_buckets(n) * GROWTH.1 < len * GROWTH.0 {
            n = grown_buckets(n, self.phase);
        }
        (n < self.buckets()).then_some(n)
    }

    /// Bytes a [`BucketTable::shrink`] would free (0 when it would not shrink).
    pub fn shrinkable(&self) -> usize {
        self.shrunk_buckets()
            .map_or(0, |n| self.bytes() - table_bytes(n))
    }

    /// Places every entry again in fewer buckets, if [`BucketTable::shrinkable`]: after
    /// evictions (a lower `cache_memlimit`), a table would otherwise keep the buckets of its
    /// largest size. Moves all at once (finishing a growth under way first), so the caller holds
    /// the table for one read of each entry's key; both bucket arrays are held meanwhile.
    pub fn shrink(&mut self, rehash: impl Fn(Entry) -> u64, load: impl Fn(Entry)) {
        self.move_entries(usize::MAX, &rehash, &load);
        let Some(n) = self.shrunk_buckets() else {
            return;
        };
        self.start_move_to(n);
        self.move_entries(usize::MAX, rehash, load);
    }

    /// The place of the entry with this hash that `eq` accepts (called only on a tag match).
    pub fn find_pos(&self, hash: u64, mut eq: impl FnMut(Entry) -> bool) -> Option<Pos> {
        if let Some((bucket, slot)) = probe(&self.buckets, hash, &mut eq) {
            return Some(Pos {
                bucket,
                slot,
                old: false,
            });
        }
        if self.old.is_empty() {
            return None;
        }
        let (bucket, slot) = probe(&self.old, hash, &mut eq)?;
        Some(Pos {
            bucket,
            slot,
            old: true,
        })
    }

    /// Starts loading the bucket a lookup of `hash` reads first (and, while a growth is under
    /// way, its bucket in the old buckets), so that several lookups' cache misses overlap
    /// instead of following one another.
    pub fn prefetch(&self, hash: u64) {
        for buckets in [&self.buckets, &self.old] {
            if !buckets.is_empty() {
                prefetch(&buckets[home(hash, buckets.len())]);
            }
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

    fn buckets_of(&self, pos: Pos) -> &[Bucket] {
        if pos.old {
            &self.old
        } else {
            &self.buckets
        }
    }

    pub fn get(&self, pos: Pos) -> Entry {
        Entry::from_bits(self.buckets_of(pos)[pos.bucket].slot(pos.slot) & ENTRY_MASK)
    }

    /// Replaces the entry at `pos` (same key, so the tag stays).
    pub fn set(&mut self, pos: Pos, e: Entry) {
        let buckets = if pos.old {
            &mut self.old
        } else {
            &mut self.buckets
        };
        let bucket = &mut buckets[pos.bucket];
        let tag = bucket.slot(pos.slot) & !ENTRY_MASK;
        debug_assert!(e.bits() <= ENTRY_MASK);
        bucket.set_slot(pos.slot, tag | e.bits());
    }

    /// Removes the entry with this hash that `eq` accepts.
    pub fn remove(&mut self, hash: u64, eq: impl FnMut(Entry) -> bool) -> Option<Entry> {
        let pos = self.find_pos(hash, eq)?;
        let e = self.get(pos);
        if pos.old {
            unplace(&mut self.old, hash, pos.bucket, pos.slot);
            self.old_len -= 1;
        } else {
            unplace(&mut self.buckets, hash, pos.bucket, pos.slot);
            self.len -= 1;
        }
        Some(e)
    }

    /// Adds an entry for a key not in the table, then moves [`MOVE_STEP`] old buckets' entries
    /// if a growth is under way (`rehash` gives an entry's hash, `load` starts loading what
    /// `rehash` reads). A full table grows first; the store grows it beforehand, with the bytes
    /// reserved (`growth`), and gives back what [`BucketTable::bytes`] loses.
    pub fn insert(
        &mut self,
        hash: u64,
        e: Entry,
        rehash: impl Fn(Entry) -> u64,
        load: impl Fn(Entry),
    ) {
        if self.len + self.old_len >= self.capacity() {
            self.grow(&rehash, &load);
        }
        debug_assert!(e.bits() <= ENTRY_MASK);
        place(
            &mut self.buckets,
            hash,
            tag_of(hash) << ENTRY_BITS | e.bits(),
        );
        self.len += 1;
        self.move_step(rehash, load);
    }

    /// Moves the entries of the next [`MOVE_STEP`] old buckets, if a growth is under way. Each
    /// insert does; so does the store's maintenance, for a table that takes no new keys (its old
    /// buckets, and their bytes, would otherwise stay until its next insert).
    pub fn move_step(&mut self, rehash: impl Fn(Entry) -> u64, load: impl Fn(Entry)) {
        self.move_entries(MOVE_STEP, rehash, load);
    }

    /// Starts a growth by [`GROWTH`]: entries are added to the larger buckets from now on, and
    /// the inserts that follow move the others there. An unfinished growth is finished first.
    pub fn grow(&mut self, rehash: impl Fn(Entry) -> u64, load: impl Fn(Entry)) {
        self.move_entries(usize::MAX, &rehash, &load);
        self.start_move_to(self.grown_buckets());
        if self.old.len() < SPREAD_FROM {
            self.move_entries(usize::MAX, rehash, load);
        }
    }

    /// Makes the buckets old (none moved yet) and adds to `n` new empty ones from now on. The
    /// caller has finished any move under way.
    fn start_move_to(&mut self, n: usize) {
        debug_assert!(self.old.is_empty(), "one move at a time");
        self.old = std::mem::replace(&mut self.buckets, vec![Bucket::EMPTY; n].into_boxed_slice());
        self.old_len = std::mem::take(&mut self.len);
        self.moved = 0;
    }

    /// Moves the entries of the next `count` old buckets into the buckets, [`MOVE_STEP`]
    /// buckets at a time. Each entry is placed by the hash `rehash` gives (reading its key, a
    /// cache miss for each entry); `load` is called [`REHASH_AHEAD`] entries earlier, to start
    /// that read, so the misses overlap. The old buckets go once empty.
    fn move_entries(&mut self, count: usize, rehash: impl Fn(Entry) -> u64, load: impl Fn(Entry)) {
        if self.old.is_empty() {
            return;
        }
        let end = self.moved.saturating_add(count).min(self.old.len());
        let mut batch = Vec::with_capacity((end - self.moved).min(MOVE_STEP) * SLOTS);
        while self.moved < end {
            let until = (self.moved + MOVE_STEP).min(end);
            batch.clear();
            for b in self.moved..until {
                for slot in 0..SLOTS {
                    let value = self.old[b].slot(slot);
                    if value != 0 {
                        batch.push((b, slot, value));
                    }
                }
            }
            let entry = |value: u64| Entry::from_bits(value & ENTRY_MASK);
            for i in 0..batch.len() + REHASH_AHEAD {
                if let Some(&(_, _, value)) = batch.get(i) {
                    load(entry(value));
                }
                if let Some(k) = i.checked_sub(REHASH_AHEAD).filter(|&k| k < batch.len()) {
                    let (b, slot, value) = batch[k];
                    let hash = rehash(entry(value));
                    unplace(&mut self.old, hash, b, slot);
                    place(&mut self.buckets, hash, value);
                }
            }
            self.old_len -= batch.len();
            self.len += batch.len();
            self.moved = until;
        }
        if self.moved == self.old.len() {
            debug_assert_eq!(self.old_len, 0, "every old bucket emptied");
            self.old = Box::default();
            self.moved = 0;
        }
    }
}

/// The bucket and slot of the entry with this hash that `eq` accepts, from its home bucket on
/// while entries passed.
fn probe(
    buckets: &[Bucket],
    hash: u64,
    eq: &mut impl FnMut(Entry) -> bool,
) -> Option<(usize, usize)> {
    if buckets.is_empty() {
        return None;
    }
    let tag = tag_of(hash);
    let n = buckets.len();
    let mut b = home(hash, n);
    // Every bucket at most once (a loop that found no bucket without passes would be a bug).
    for _ in 0..n {
        let bucket = &buckets[b];
        for slot in 0..SLOTS {
            let value = bucket.slot(slot);
            if value >> ENTRY_BITS == tag && eq(Entry::from_bits(value & ENTRY_MASK)) {
                return Some((b, slot));
            }
        }
        if bucket.passing() == 0 {
            return None;
        }
        b = next(b, n);
    }
    None
}

/// Empties a slot of the entry with this hash, taking back its passes from the buckets between
/// its home and it.
fn unplace(buckets: &mut [Bucket], hash: u64, bucket: usize, slot: usize) {
    buckets[bucket].set_slot(slot, 0);
    let n = buckets.len();
    let mut b = home(hash, n);
    while b != bucket {
        buckets[b].unpass();
        b = next(b, n);
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

    /// A hash for the tests that need no collisions: a key number times a large odd constant.
    fn hash_of(k: u32) -> u64 {
        u64::from(k).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    fn rehash(e: Entry) -> u64 {
        hash_of(key_of(e))
    }

    fn check_passing(table: &BucketTable, hash_of: &impl Fn(u32) -> u64) {
        for buckets in [&table.buckets, &table.old] {
            check_passes(buckets, hash_of);
        }
        let count = |buckets: &[Bucket]| {
            buckets
                .iter()
                .map(|b| (0..SLOTS).filter(|&i| b.slot(i) != 0).count())
                .sum::<usize>()
        };
        assert_eq!(count(&table.buckets), table.len);
        assert_eq!(count(&table.old), table.old_len);
        assert!(
            table.old[..table.moved.min(table.old.len())]
                .iter()
                .all(|b| (0..SLOTS).all(|i| b.slot(i) == 0)),
            "the old buckets a growth moved are empty"
        );
    }

    fn check_passes(buckets: &[Bucket], hash_of: &impl Fn(u32) -> u64) {
        // Recount the passes from where each entry sits.
        let n = buckets.len();
        let mut want = vec![0u32; n];
        for (b, bucket) in buckets.iter().enumerate() {
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
        for (b, bucket) in buckets.iter().enumerate() {
            assert_eq!(u32::from(bucket.passing()), want[b].min(255), "bucket {b}");
        }
    }

    fn run_against_model(hash_of: impl Fn(u32) -> u64, keys: u32, steps: u32) {
        let mut table = BucketTable::default();
        let mut model: HashMap<u32, Entry> = HashMap::new();
        let rehash = |e: Entry| hash_of(key_of(e));
        let mut x = 12345u64;
        let mut moving = 0;
        for step in 0..steps {
            if step % 1000 == 0 {
                check_passing(&table, &hash_of);
            }
            moving += usize::from(!table.old.is_empty());
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
        assert!(
            moving > 0 || keys < 1000,
            "no step found a growth under way"
        );
        for (&key, &e) in &model {
            assert_eq!(table.find(hash_of(key), |x| key_of(x) == key), Some(e));
        }
        for (key, e) in model.clone() {
            assert_eq!(table.remove(hash_of(key), |x| key_of(x) == key), Some(e));
        }
        assert_eq!(table.len(), 0);
        assert!(
            table
                .buckets
                .iter()
                .chain(&table.old[..])
                .all(|b| b.passing() == 0),
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
        let mut k = 0;
        while table.buckets() < 50 || table.len() < table.capacity() {
            table.insert(hash_of(k), entry(k), rehash, |_| {});
            k += 1;
        }
        let n = table.buckets();
        assert_eq!(
            n, 51,
            "1, 2, ..., 8, then a quarter more (rounded down) each time"
        );
        assert_eq!(k as usize, capacity_of_buckets(n));
        assert!(table.old.is_empty(), "the growth to {n} buckets is over");
        assert_eq!(table.growth(), table_bytes(63));
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
    fn a_growth_moves_its_entries_a_few_buckets_per_insert() {
        let mut table = BucketTable::default();
        let mut k = 0;
        // Full, with no growth under way.
        while table.buckets() < 200 || table.len() < table.capacity() || !table.old.is_empty() {
            table.insert(hash_of(k), entry(k), rehash, |_| {});
            k += 1;
        }
        let (n, len) = (table.buckets(), table.len());
        let loaded = std::cell::RefCell::new(Vec::new());
        // The keys hashed, in order.
        let placed = std::cell::RefCell::new(Vec::new());
        let rehash = |e: Entry| {
            placed.borrow_mut().push(key_of(e));
            hash_of(key_of(e))
        };
        let load = |e: Entry| loaded.borrow_mut().push((key_of(e), placed.borrow().len()));
        assert_eq!(table.growth(), table_bytes(n * 5 / 4));
        table.grow(rehash, load);
        assert_eq!(table.buckets(), n * 5 / 4);
        assert!(
            placed.borrow().is_empty(),
            "starting a growth moves nothing"
        );
        assert_eq!(table.bytes(), table_bytes(n) + table_bytes(n * 5 / 4));
        let mut inserts = 0;
        while !table.old.is_empty() {
            let before = placed.borrow().len();
            table.insert(hash_of(k), entry(k), rehash, load);
            k += 1;
            inserts += 1;
            let moved = placed.borrow().len() - before;
            assert!(
                moved <= MOVE_STEP * SLOTS,
                "{moved} entries moved by one insert"
            );
            check_passing(&table, &hash_of);
            for j in 0..k {
                assert_eq!(
                    table.find(hash_of(j), |e| key_of(e) == j),
                    Some(entry(j)),
                    "key {j} after {inserts} inserts"
                );
            }
        }
        assert_eq!(inserts, n.div_ceil(MOVE_STEP));
        assert_eq!(
            table.bytes(),
            table_bytes(n * 5 / 4),
            "the old buckets went"
        );
        let (loaded, placed) = (loaded.into_inner(), placed.into_inner());
        assert_eq!(placed.len(), len, "every old entry moved once");
        let mut keys: Vec<u32> = loaded.iter().map(|&(k, _)| k).collect();
        assert_eq!(keys, placed, "loaded in the order placed");
        keys.sort_unstable();
        assert_eq!(keys, (0..len as u32).collect::<Vec<_>>());
        // Each entry's key starts loading before it is hashed, REHASH_AHEAD entries before but
        // for the last few of each insert's batch.
        assert!(loaded.iter().enumerate().all(|(i, &(_, then))| then <= i));
        let ahead = loaded
            .iter()
            .enumerate()
            .filter(|&(i, &(_, then))| i - then == REHASH_AHEAD)
            .count();
        assert!(ahead >= len - inserts * REHASH_AHEAD, "{ahead} of {len}");
    }

    #[test]
    fn a_small_table_moves_everything_when_it_grows() {
        let mut table = BucketTable::default();
        let mut k = 0;
        while table.buckets() < SPREAD_FROM {
            let before = table.buckets();
            if table.len() == table.capacity() {
                let growth = table_bytes(table.grown_buckets()) - table_bytes(before);
                assert_eq!(
                    table.growth(),
                    growth,
                    "the net growth, at {before} buckets"
                );
            }
            table.insert(hash_of(k), entry(k), rehash, |_| {});
            k += 1;
            if table.buckets() != before {
                assert!(
                    !table.growing(),
                    "growth to {} buckets moved all",
                    table.buckets()
                );
                assert_eq!(table.bytes(), table_bytes(table.buckets()));
            }
        }
        table.grow(rehash, |_| {});
        assert!(
            table.growing(),
            "a growth from {SPREAD_FROM} buckets is spread"
        );
        check_passing(&table, &hash_of);
        for j in 0..k {
            assert_eq!(table.find(hash_of(j), |e| key_of(e) == j), Some(entry(j)));
        }
    }

    #[test]
    fn a_shrink_keeps_every_entry_in_fewer_buckets() {
        let mut table = BucketTable::new(5);
        for k in 0..5000 {
            table.insert(hash_of(k), entry(k), rehash, |_| {});
        }
        assert_eq!(
            table.shrinkable(),
            0,
            "a table that just grew keeps its size"
        );
        // Stop halfway through a spread growth, then remove most keys.
        let mut k = 5000;
        while !table.growing() {
            table.insert(hash_of(k), entry(k), rehash, |_| {});
            k += 1;
        }
        let removed = |j: u32| !j.is_multiple_of(10);
        for j in (0..k).filter(|&j| removed(j)) {
            assert_eq!(table.remove(hash_of(j), |e| key_of(e) == j), Some(entry(j)));
        }
        let (buckets, bytes) = (table.buckets(), table.bytes());
        let freed = table.shrinkable();
        assert!(freed > bytes / 2, "{freed} of {bytes}");
        table.shrink(rehash, |_| {});
        assert!(!table.growing());
        assert!(table.buckets() < buckets / 4);
        assert_eq!(table.bytes(), bytes - freed);
        assert_eq!(table.bytes(), table_bytes(table.buckets()));
        assert!(
            table.len() * 10 <= table.capacity() * 8,
            "at most 7/10 full"
        );
        assert!(
            table.len() * 10 > table.capacity() * 8 * 4 / 5,
            "no smaller size would do"
        );
        assert_eq!(table.shrinkable(), 0);
        check_passing(&table, &hash_of);
        for j in 0..k {
            let want = (!removed(j)).then(|| entry(j));
            assert_eq!(table.find(hash_of(j), |e| key_of(e) == j), want);
        }
        // It grows again as before.
        for j in (0..k).filter(|&j| removed(j)) {
            table.insert(hash_of(j), entry(j), rehash, |_| {});
        }
        check_passing(&table, &hash_of);
        assert_eq!(table.len(), k as usize);

        // Emptied, it keeps no bucket, and takes entries again.
        for j in 0..k {
            table.remove(hash_of(j), |e| key_of(e) == j);
        }
        table.shrink(rehash, |_| {});
        assert_eq!((table.buckets(), table.bytes()), (0, 0));
        assert_eq!(table.find(hash_of(1), |_| true), None);
        table.insert(hash_of(1), entry(1), rehash, |_| {});
        assert_eq!(table.find(hash_of(1), |e| key_of(e) == 1), Some(entry(1)));
    }

    #[test]
    fn a_growth_finishes_without_inserts_by_steps() {
        let mut table = BucketTable::default();
        for k in 0..5000 {
            table.insert(hash_of(k), entry(k), rehash, |_| {});
        }
        assert_eq!(table.growth_steps_left(), 0);
        table.move_step(|_| unreachable!("nothing to move"), |_| {});
        table.grow(rehash, |_| {});
        let n = table.old.len();
        assert!(n >= SPREAD_FROM);
        let steps = table.growth_steps_left();
        assert_eq!(steps, n.div_ceil(MOVE_STEP));
        let moves = std::cell::Cell::new(0);
        let counted = |e: Entry| {
            moves.set(moves.get() + 1);
            rehash(e)
        };
        for step in 1..=steps {
            moves.set(0);
            table.move_step(counted, |_| {});
            assert!(
                moves.get() <= MOVE_STEP * SLOTS,
                "{} in a step",
                moves.get()
            );
            assert_eq!(table.growth_steps_left(), steps - step);
            assert_eq!(table.growing(), step < steps);
            check_passing(&table, &hash_of);
            for k in 0..5000 {
                assert_eq!(table.find(hash_of(k), |e| key_of(e) == k), Some(entry(k)));
            }
        }
        assert_eq!((table.len(), table.old_len), (5000, 0));
        assert_eq!(
            table.bytes(),
            table_bytes(table.buckets()),
            "old buckets gone"
        );
    }

    #[test]
    fn a_growth_finishes_the_one_before() {
        let mut table = BucketTable::default();
        for k in 0..5000 {
            table.insert(hash_of(k), entry(k), rehash, |_| {});
        }
        table.grow(rehash, |_| {});
        let n = table.buckets();
        assert!(!table.old.is_empty());
        table.grow(rehash, |_| {});
        assert_eq!(table.buckets(), n * 5 / 4);
        assert_eq!(
            table.old.len(),
            n,
            "only the buckets of the last growth are left"
        );
        assert_eq!(table.len(), 5000);
        check_passing(&table, &hash_of);
        for k in 0..5000 {
            assert_eq!(table.find(hash_of(k), |e| key_of(e) == k), Some(entry(k)));
        }
    }

    #[test]
    fn tables_of_different_phases_never_grow_to_the_same_size() {
        let sizes = |phase| {
            let mut table = BucketTable::new(phase);
            let mut seen = Vec::new();
            while table.buckets() < 50_000 {
                table.buckets = vec![Bucket::EMPTY; table.grown_buckets()].into_boxed_slice();
                seen.push(table.buckets());
            }
            seen
        };
        let all: Vec<Vec<usize>> = (0..PHASES).map(sizes).collect();
        let past = |s: &[usize]| -> Vec<usize> {
            s.iter().copied().filter(|&n| n >= PHASE_FROM).collect()
        };
        for (p, s) in all.iter().enumerate() {
            assert!(s.windows(2).all(|w| w[1] > w[0]));
            let s = past(s);
            assert!(
                s.windows(2).all(|w| w[1] == w[0] * 5 / 4),
                "phase {p}: {s:?}"
            );
            for (q, other) in all.iter().enumerate().skip(p + 1) {
                let other = past(other);
                assert!(
                    s.iter().all(|n| !other.contains(n)),
                    "phases {p} and {q} share a size"
                );
            }
        }
        let firsts: Vec<usize> = all.iter().map(|s| past(s)[0]).collect();
        assert_eq!(firsts[0], 78, "phase 0 grows as any table would: 63 * 5/4");
        assert!(firsts.windows(2).all(|w| w[1] > w[0]), "{firsts:?}");
        assert!(
            firsts[PHASES - 1] < 78 * 5 / 4,
            "within one step: {firsts:?}"
        );
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

    #[test]
    fn a_presized_table_takes_its_entries_without_moving_one_and_ends_as_grown() {
        // Counts across the sizes where growth moves all at once, spreads, and takes a phase.
        for (count, phase) in [
            (0, 0),
            (1, 3),
            (500, 0),
            (4_000, 5),
            (30_000, 15),
            (100_000, 7),
        ] {
            let mut grown = BucketTable::new(phase);
            for k in 0..count {
                grown.insert(hash_of(k), entry(k), rehash, |_| {});
            }
            grown.move_entries(usize::MAX, rehash, |_| {});
            let mut sized = BucketTable::new(phase);
            let n = sized.buckets_for(count as usize);
            sized.presize(n);
            assert_eq!(sized.buckets(), n);
            let never = |_: Entry| -> u64 { unreachable!("a presized table moves no entry") };
            for k in 0..count {
                sized.insert(hash_of(k), entry(k), never, |_| {});
            }
            assert_eq!(
                (sized.buckets(), sized.bytes()),
                (grown.buckets(), grown.bytes()),
                "{count} entries, phase {phase}"
            );
            assert!(sized.old.is_empty());
            for k in 0..count {
                assert_eq!(sized.find(hash_of(k), |e| key_of(e) == k), Some(entry(k)));
            }
            // One more entry grows it as the other grows.
            let extra = count + 1_000_000;
            sized.insert(hash_of(extra), entry(extra), rehash, |_| {});
            grown.insert(hash_of(extra), entry(extra), rehash, |_| {});
            assert_eq!(sized.buckets(), grown.buckets());
            // A table that holds entries is not resized.
            sized.presize(sized.buckets() * 2);
            assert_eq!(sized.buckets(), grown.buckets());
        }
    }
}
