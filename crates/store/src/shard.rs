//! One shard of the store: its segments (two S3-FIFO queues, see `segment.rs`), the hash index of
//! its items, its ghost, and the counters of the operations that ran here. Everything happens
//! under the shard's mutex.
//!
//! Memory held by segments, the index and the ghost is charged to the shared [`Budget`] by
//! capacity before it is allocated, so `-m` bounds all of it.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::budget::Budget;
use crate::index::{self, Entry, MAX_SEGMENTS};
use crate::item::{dead, Dead, FlushState, ItemRef, MetaState};
use crate::layout::{self, Header, NewItem, BINARY_KEY, HAS_CAS, HAS_EXPTIME};
use crate::ops::watch::EvictionLog;
use crate::segment::{ttl_class, Ghost, Queue, Segment, NEVER, TTL_CLASSES};
use crate::stats::{Counters, StoreStats};
use crate::table::{self, BucketTable};
use crate::{RelTime, StoreConfig};

/// What every shard operation needs from the store.
pub(crate) struct Ctx<'a> {
    pub now: RelTime,
    pub flush: FlushState,
    pub config: &'a StoreConfig,
    pub hasher: &'a std::collections::hash_map::RandomState,
    pub budget: &'a Budget,
    pub next_seq: &'a AtomicU64,
    /// Bytes of a normal segment; a larger item gets a segment of its own.
    pub segment_size: usize,
}

impl Ctx<'_> {
    pub fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// A fresh range of `len + 1` sequence numbers (CAS ids) for a segment of `len` bytes.
    pub fn seq_range(&self, len: usize) -> u64 {
        self.next_seq.fetch_add(len as u64 + 1, Ordering::Relaxed)
    }
}

/// Where the next item goes, found by `Store::place_for` (which may evict to find it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// At the end of this open segment, which has room.
    Open(u32),
    /// In a segment of its own, of exactly this many bytes (reserved from the budget).
    Large(usize),
}

/// One S3-FIFO queue of a shard.
#[derive(Default)]
pub(crate) struct QueueState {
    /// Closed segments, oldest first.
    pub closed: VecDeque<u32>,
    /// The segments new items are appended to, one per lifetime class (see
    /// [`crate::segment::TTL_CLASSES`]).
    pub open: [Option<u32>; TTL_CLASSES],
    /// Capacity of all its segments.
    pub bytes: usize,
}

/// A key the ghost remembers goes straight to main only if its item is at most 5/4 of the
/// average length of the items written lately (numerator, denominator). A ghost hit says a key is
/// wanted again soon, but not how much room it takes: main's room is best spent on the items
/// that bring the most hits per byte, and with values of mixed sizes a long item must show it is
/// wanted by a hit while in small. Items of about the same size all pass: on traces with one
/// value size nothing changes.
pub(crate) const GHOST_ADMITS: (u64, u64) = (5, 4);

/// Seconds after its segment opened in which a read of an item still in small's open segment
/// is taken for part of its writing, not a reuse (see [`get_read`]).
const CORRELATED: RelTime = 2;

/// `e`, in segment `seg`, after a get: [`Entry::read`], but a read of an item just written is not
/// counted as a reuse (it is still `fetched`). A client reading back what it stored, or a second
/// reader of a value just fetched, says nothing of how popular the key is, and counted it would
/// take every such item to main (2Q's "correlated references"). Just written: in small's open
/// segment, opened within [`CORRELATED`] (a segment that stays open longer, in a shard that
/// takes few writes, does not hide reads that come long after).
fn get_read(
    queues: &[QueueState; 2],
    seg: &Segment,
    e: Entry,
    shows_cas: bool,
    now: RelTime,
) -> Entry {
    let just_written = seg.queue == Queue::Small
        && queues[Queue::Small as usize].open[seg.class] == Some(e.segment())
        && now.saturating_sub(seg.created) < CORRELATED;
    let read = e.read(shows_cas);
    if just_written {
        read.with_freq(e.freq())
    } else {
        read
    }
}

pub(crate) struct Shard {
    /// The index, split over tables that grow at different sizes (see `index.rs`).
    tables: Box<[BucketTable]>,
    /// Which table a hash goes to.
    route: Box<[u8]>,
    /// Bytes reserved for the tables (by capacity).
    index_bytes: usize,
    segs: Vec<Option<Segment>>,
    free_ids: Vec<u32>,
    pub(crate) queues: [QueueState; 2],
    pub(crate) ghost: Ghost,
    ghost_bytes: usize,
    live: usize,
    /// Moving average of the length of the items stores append, times 256 (0 before the first).
    written_avg: u64,
    pub counters: Counters,
    /// Evictions kept for `watch evictions` (None: not watched).
    pub(crate) eviction_log: Option<EvictionLog>,
}

/// The item an entry names: its bytes from its start to the end of the segment.
fn item_at(segs: &[Option<Segment>], e: Entry) -> &[u8] {
    let seg = segs[e.segment() as usize]
        .as_ref()
        .expect("an index entry names a held segment");
    &seg.data[e.offset()..]
}

fn key_at(segs: &[Option<Segment>], e: Entry) -> &[u8] {
    let item = item_at(segs, e);
    layout::parse(item).key(item)
}

/// Starts loading the header and key of `e`'s item: the line it starts in, and the next when
/// they may cross into it.
fn load_key(segs: &[Option<Segment>], e: Entry) {
    let item = item_at(segs, e);
    for at in [0, 63] {
        if let Some(byte) = item.get(at) {
            crate::table::prefetch(byte);
        }
    }
}

impl Shard {
    /// Shard `number` of the store (it sets its index tables' growth phase).
    pub fn new(number: usize, ghost_entries: usize) -> Shard {
        Shard {
            tables: (0..index::SUBTABLES)
                .map(|_| BucketTable::new(number % table::PHASES))
                .collect(),
            route: index::route_table(),
            index_bytes: 0,
            segs: Vec::new(),
            free_ids: Vec::new(),
            queues: Default::default(),
            ghost: Ghost::new(ghost_entries),
            ghost_bytes: Ghost::bytes(ghost_entries),
            live: 0,
            written_avg: 0,
            counters: Counters::default(),
            eviction_log: None,
        }
    }

    fn table(&self, hash: u64) -> &BucketTable {
        &self.tables[index::route(&self.route, hash)]
    }

    fn table_mut(&mut self, hash: u64) -> &mut BucketTable {
        &mut self.tables[index::route(&self.route, hash)]
    }

    /// Index tables with a growth under way.
    pub fn growths_under_way(&self) -> usize {
        self.tables.iter().filter(|t| t.growing()).count()
    }

    /// Entries the index's tables take before they next grow.
    pub fn index_capacity(&self) -> usize {
        self.tables.iter().map(|t| t.capacity()).sum()
    }

    pub fn live_items(&self) -> usize {
        self.live
    }

    /// Bytes of the index and the ghost.
    pub fn index_bytes(&self) -> usize {
        self.index_bytes + self.ghost_bytes
    }

    pub fn ghost_bytes(&self) -> usize {
        self.ghost_bytes
    }

    pub fn seg(&self, id: u32) -> &Segment {
        self.segs[id as usize]
            .as_ref()
            .expect("a segment id in use names a held segment")
    }

    pub fn seg_mut(&mut self, id: u32) -> &mut Segment {
        self.segs[id as usize]
            .as_mut()
            .expect("a segment id in use names a held segment")
    }

    pub fn header(&self, e: Entry) -> Header {
        layout::parse(item_at(&self.segs, e))
    }

    /// Starts loading the index bucket of `hash` (see [`BucketTable::prefetch`]).
    pub fn prefetch(&self, hash: u64) {
        self.table(hash).prefetch(hash);
    }

    /// Starts loading the first two cache lines from the start of the item of the first entry
    /// whose tag matches `hash`: header, key and value of a small item (which straddles a line
    /// boundary more often than not).
    pub fn prefetch_item(&self, hash: u64) {
        let Some(e) = self.table(hash).first_match(hash) else {
            return;
        };
        if let Some(Some(seg)) = self.segs.get(e.segment() as usize) {
            for at in [e.offset(), e.offset() + 64] {
                if let Some(byte) = seg.data.get(at) {
                    crate::table::prefetch(byte);
                }
            }
        }
    }

    /// The entry of `key`, dead or alive.
    pub fn lookup(&self, hash: u64, key: &[u8]) -> Option<Entry> {
        let segs = &self.segs;
        self.table(hash).find(hash, |e| key_at(segs, e) == key)
    }

    /// `key`'s entry and header, and why its item is dead if it is, changing nothing.
    pub fn probe(
        &self,
        hash: u64,
        key: &[u8],
        ctx: &Ctx<'_>,
    ) -> Option<(Entry, Header, Option<Dead>)> {
        let e = self.lookup(hash, key)?;
        let header = self.header(e);
        let dead = dead(self.seg(e.segment()), header.exptime, ctx.now, &ctx.flush);
        Some((e, header, dead))
    }

    /// The live entry of `key`, with its header. A dead item met here is removed and counted the
    /// way memcached's `do_item_get` counts it (`get_expired`/`get_flushed`, whatever the command).
    pub fn find_live(&mut self, hash: u64, key: &[u8], ctx: &Ctx<'_>) -> Option<(Entry, Header)> {
        let (e, header, dead) = self.probe(hash, key, ctx)?;
        match dead {
            None => Some((e, header)),
            Some(why) => {
                match why {
                    Dead::Expired => self.counters.get_expired += 1,
                    Dead::Flushed => self.counters.get_flushed += 1,
                }
                self.remove(hash, e, ctx.budget);
                None
            }
        }
    }

    /// `find_live` and a get's read ([`get_read`]) in one probe of the index, for the hot `get`
    /// path: the entry is updated where it is found. Returns the entry as it was before the
    /// read.
    pub fn read_live(
        &mut self,
        hash: u64,
        key: &[u8],
        shows_cas: bool,
        ctx: &Ctx<'_>,
    ) -> Option<(Entry, Header)> {
        let segs = &self.segs;
        let table = &mut self.tables[index::route(&self.route, hash)];
        let pos = table.find_pos(hash, |e| key_at(segs, e) == key)?;
        let e = table.get(pos);
        let seg = segs[e.segment() as usize]
            .as_ref()
            .expect("an index entry names a held segment");
        let header = layout::parse(&seg.data[e.offset()..]);
        if dead(seg, header.exptime, ctx.now, &ctx.flush).is_some() {
            // The slow path counts and removes it.
            return self.find_live(hash, key, ctx);
        }
        table.set(pos, get_read(&self.queues, seg, e, shows_cas, ctx.now));
        Some((e, header))
    }

    /// `e` after a get-like read of it (`get`, or `mg` without `T`): see [`get_read`].
    pub fn read_by_get(&self, e: Entry, shows_cas: bool, now: RelTime) -> Entry {
        get_read(&self.queues, self.seg(e.segment()), e, shows_cas, now)
    }

    /// Which queue a new version of `key`, `len` bytes long, goes to: main if the current one is
    /// there, or if the ghost remembers the key and the item is not much longer than the items
    /// written lately (see [`GHOST_ADMITS`]); else small.
    /// Without evictions (`-M`) there is nothing to choose between: everything goes to main.
    pub fn queue_for(&self, hash: u64, key: &[u8], len: usize, evictions: bool) -> Queue {
        if !evictions {
            return Queue::Main;
        }
        match self.lookup(hash, key) {
            Some(e) if self.seg(e.segment()).queue == Queue::Main => Queue::Main,
            _ if self.ghost.contains(hash) && self.ghost_admits(len) => Queue::Main,
            _ => Queue::Small,
        }
    }

    /// Whether an item of `len` bytes may go from the ghost to main: at most [`GHOST_ADMITS`]
    /// times the average length of the items written lately.
    fn ghost_admits(&self, len: usize) -> bool {
        let (times, over) = GHOST_ADMITS;
        self.written_avg == 0 || (len as u64) * 256 * over <= self.written_avg * times
    }

    /// Counts an item of `len` bytes that a store appends in the average [`Shard::queue_for`]
    /// compares with: each weighs 1/256, so it follows the last few hundred of the shard.
    pub fn note_written(&mut self, len: usize) {
        let len = len as u64 * 256;
        self.written_avg = match self.written_avg {
            0 => len,
            avg => avg - avg / 256 + len / 256,
        };
    }

    /// Replaces the index entry at `old`'s place with `new`.
    fn set_entry(&mut self, hash: u64, old: Entry, new: Entry) {
        let table = self.table_mut(hash);
        if let Some(pos) = table.find_pos(hash, |x| x.same_place(old)) {
            table.set(pos, new);
        }
    }

    /// Replaces the entry at `old`'s place with `new` (meta marks: stale, token sent).
    pub fn update_entry(&mut self, hash: u64, old: Entry, new: Entry) {
        self.set_entry(hash, old, new);
    }

    /// Records a read of `e`: a hit for S3-FIFO, fetched, and whether the reply shows the CAS id.
    pub fn mark_read(&mut self, hash: u64, e: Entry, shows_cas: bool) -> Entry {
        let read = e.read(shows_cas);
        self.set_entry(hash, e, read);
        read
    }

    /// Records that `e`'s CAS id was reported (without counting a read).
    pub fn mark_cas_seen(&mut self, hash: u64, e: Entry) -> Entry {
        let seen = e.with_cas_seen();
        self.set_entry(hash, e, seen);
        seen
    }

    /// The CAS id clients see and compare theirs with: [`Shard::cas_of`], or 0 for every item
    /// with `-C` (memcached 1.6.18: `md k C0` matches there).
    pub fn client_cas(&self, e: Entry, header: &Header, use_cas: bool) -> u64 {
        if use_cas {
            self.cas_of(e, header)
        } else {
            0
        }
    }

    /// The CAS id of the item `e` names.
    pub fn cas_of(&self, e: Entry, header: &Header) -> u64 {
        if header.bits & HAS_CAS != 0 {
            header.cas
        } else {
            self.seg(e.segment()).seq_base + e.offset() as u64
        }
    }

    /// The read view of `e`, borrowing the value.
    pub fn view(&self, e: Entry, header: &Header, use_cas: bool) -> ItemRef<'_> {
        let item = item_at(&self.segs, e);
        ItemRef {
            value: header.value(item),
            flags: header.flags,
            cas: self.client_cas(e, header, use_cas),
            exptime: header.exptime,
            fetched: e.fetched(),
            time: self.seg(e.segment()).created,
            meta: MetaState {
                binary_key: header.bits & BINARY_KEY != 0,
                stale: e.stale(),
                token_sent: e.token_sent(),
            },
        }
    }

    /// The key bytes of `e`.
    pub fn lookup_key(&self, e: Entry) -> &[u8] {
        key_at(&self.segs, e)
    }

    /// The value bytes of `e`.
    pub fn value(&self, e: Entry, header: &Header) -> &[u8] {
        header.value(item_at(&self.segs, e))
    }

    /// Removes the item `e` names (whose key hashes to `hash`) from the index; a closed segment
    /// left without items is freed at once.
    pub fn remove(&mut self, hash: u64, e: Entry, budget: &Budget) {
        self.table_mut(hash).remove(hash, |x| x.same_place(e));
        self.live -= 1;
        self.release_item(e, budget);
    }

    /// Whether segment `id` is the open one of its queue and lifetime class.
    pub(crate) fn is_open(&self, id: u32) -> bool {
        let seg = self.seg(id);
        self.queues[seg.queue as usize].open[seg.class] == Some(id)
    }

    /// The item `e` names left its segment (removed, or replaced by a newer version).
    fn release_item(&mut self, e: Entry, budget: &Budget) {
        let id = e.segment();
        let bytes = self.header(e).total();
        let seg = self.seg_mut(id);
        seg.live -= 1;
        seg.live_bytes -= bytes;
        if seg.live == 0 && !self.is_open(id) {
            self.free_segment(id, budget);
        }
    }

    /// Drops a held segment: out of its queue, its bytes back to the budget, its id reusable.
    fn free_segment(&mut self, id: u32, budget: &Budget) {
        let seg = self.segs[id as usize]
            .take()
            .expect("freeing a held segment");
        let queue = &mut self.queues[seg.queue as usize];
        if queue.open[seg.class] == Some(id) {
            queue.open[seg.class] = None;
        } else if let Some(at) = queue.closed.iter().position(|&x| x == id) {
            queue.closed.remove(at);
        }
        queue.bytes -= seg.capacity();
        budget.release(seg.capacity());
        self.free_ids.push(id);
    }

    /// A segment id for a new segment, or None when the shard has used them all.
    fn new_id(&mut self) -> Option<u32> {
        if let Some(id) = self.free_ids.pop() {
            return Some(id);
        }
        if self.segs.len() >= MAX_SEGMENTS {
            return None;
        }
        self.segs.push(None);
        Some((self.segs.len() - 1) as u32)
    }

    /// Closes `queue`'s open segment of lifetime class `class` (freed if nothing in it is live).
    /// True when that freed it.
    pub fn seal(&mut self, queue: Queue, class: usize, budget: &Budget) -> bool {
        let Some(id) = self.queues[queue as usize].open[class] else {
            return false;
        };
        if self.seg(id).live == 0 {
            self.free_segment(id, budget);
            return true;
        }
        let q = &mut self.queues[queue as usize];
        q.open[class] = None;
        q.closed.push_back(id);
        false
    }

    /// Opens a new segment of `capacity` bytes (reserved by the caller) for `queue` and lifetime
    /// class `class`, sealing the open one. None (and the bytes given back) when the shard is out
    /// of segment ids.
    pub fn open_segment(
        &mut self,
        queue: Queue,
        class: usize,
        capacity: usize,
        ctx: &Ctx<'_>,
    ) -> Option<u32> {
        let Some(id) = self.new_id() else {
            ctx.budget.release(capacity);
            return None;
        };
        self.seal(queue, class, ctx.budget);
        let mut seg = Segment::new(capacity, queue, ctx.now, ctx.seq_range(capacity));
        seg.class = class;
        self.segs[id as usize] = Some(seg);
        let q = &mut self.queues[queue as usize];
        q.open[class] = Some(id);
        q.bytes += capacity;
        Some(id)
    }

    /// Is `queue`'s open segment of lifetime class `class` one an item of `len` bytes, on this
    /// side of a pending flush (`marked`), can be appended to?
    pub fn open_fits(
        &self,
        (queue, class): (Queue, usize),
        len: usize,
        marked: bool,
        flush: &FlushState,
    ) -> Option<u32> {
        let id = self.queues[queue as usize].open[class]?;
        let seg = self.seg(id);
        (seg.room() >= len && len <= index::MAX_OFFSET && flush.marks(seg) == marked).then_some(id)
    }

    /// Writes `item` at `place` (found by `Store::place_for` for `queue`) and returns where it is,
    /// as an entry with `state`'s bits (a fresh entry for a new version). The index is not
    /// touched: see [`Shard::link`].
    pub fn write(
        &mut self,
        place: Place,
        queue: Queue,
        item: &NewItem<'_>,
        ctx: &Ctx<'_>,
    ) -> Option<(u32, usize)> {
        match place {
            Place::Open(id) => {
                let seg = self.seg_mut(id);
                let offset = seg.len;
                let written = item.write(&mut seg.data[offset..]);
                seg.len += written;
                seg.live_bytes += written;
                seg.live += 1;
                seg.saw_exptime(item.exptime);
                Some((id, offset))
            }
            Place::Large(bytes) => {
                let Some(id) = self.new_id() else {
                    ctx.budget.release(bytes);
                    return None;
                };
                let mut seg = Segment::new(bytes, queue, ctx.now, ctx.seq_range(bytes));
                seg.len = item.write(&mut seg.data);
                seg.live_bytes = seg.len;
                seg.live = 1;
                seg.saw_exptime(item.exptime);
                self.segs[id as usize] = Some(seg);
                let q = &mut self.queues[queue as usize];
                q.closed.push_back(id);
                q.bytes += bytes;
                Some((id, 0))
            }
        }
    }

    /// Makes `new` the index entry of the key hashing to `hash`, replacing `old` (the previous
    /// version's entry, looked up after any eviction) or inserting. The index has room (see
    /// `Store::make_index_room`).
    pub fn link(&mut self, hash: u64, new: Entry, old: Option<Entry>, ctx: &Ctx<'_>) {
        match old {
            Some(old) => {
                self.set_entry(hash, old, new);
                self.release_item(old, ctx.budget);
            }
            None => {
                let table = index::route(&self.route, hash);
                self.change_table(table, 0, ctx, |table, rehash, load| {
                    table.insert(hash, new, rehash, load);
                });
                self.live += 1;
            }
        }
    }

    /// Writes a new version of a key at `place` and links it (a store: counts `total_items`).
    pub fn put(
        &mut self,
        place: Place,
        queue: Queue,
        hash: u64,
        item: &NewItem<'_>,
        ctx: &Ctx<'_>,
    ) -> bool {
        let Some((id, offset)) = self.write(place, queue, item, ctx) else {
            return false;
        };
        let old = self.lookup(hash, item.key);
        self.link(hash, Entry::new(id, offset), old, ctx);
        self.counters.total_items += 1;
        true
    }

    /// Whether a new version of the item `e` names may take its place without a new CAS id: no
    /// client has seen its id (the place's id is then as new to everyone as a fresh place's, and
    /// newer than any earlier place of the key gave), and no pending flush lies between its
    /// segment and a write now.
    pub fn may_rewrite_in_place(&self, e: Entry, ctx: &Ctx<'_>) -> bool {
        !e.cas_seen()
            && ctx.flush.marks(self.seg(e.segment())) == ctx.flush.marks_new_write(ctx.now)
    }

    /// Writes a new version of a key over its live current one `e` (a set or replace) when
    /// [`Shard::may_rewrite_in_place`] allows it, the new item is no longer than the old and it
    /// belongs in the same lifetime class. Overwriting a key then leaves no dead version taking
    /// room until eviction reaches it. A shorter item is padded to the old one's length
    /// ([`NewItem::write_padded`]); the padding goes when eviction moves the item. Like
    /// [`Shard::put`], the entry is a fresh one, but it keeps the key's frequency. False when it
    /// does not apply.
    pub fn overwrite_in_place(
        &mut self,
        hash: u64,
        e: Entry,
        old: &Header,
        item: &NewItem<'_>,
        ctx: &Ctx<'_>,
    ) -> bool {
        let len = item.len();
        let seg = self.seg(e.segment());
        // The last live item of a closed segment is better appended when that takes less than
        // the segment, which is then freed whole (a large item's, or one with nothing else left).
        let last_of_closed = seg.live == 1 && !self.is_open(e.segment()) && len < seg.capacity();
        if !self.may_rewrite_in_place(e, ctx)
            || len > old.total()
            || seg.class != ttl_class(item.exptime, ctx.now)
            || last_of_closed
        {
            return false;
        }
        let seg = self.seg_mut(e.segment());
        let slot = &mut seg.data[e.offset()..e.offset() + old.total()];
        if len == slot.len() {
            item.write(slot);
        } else {
            item.write_padded(slot);
        }
        let at = e.offset();
        seg.saw_exptime(item.exptime);
        self.set_entry(hash, e, Entry::new(e.segment(), at).with_freq(e.freq()));
        self.counters.total_items += 1;
        true
    }

    /// Writes the same item again at `place` (a touch that adds an exptime): the entry keeps its
    /// state bits.
    pub fn rewrite(
        &mut self,
        place: Place,
        queue: Queue,
        hash: u64,
        item: &NewItem<'_>,
        ctx: &Ctx<'_>,
    ) -> Option<Entry> {
        let (id, offset) = self.write(place, queue, item, ctx)?;
        let old = self.lookup(hash, item.key);
        let new = match old {
            Some(old) => old.moved_to(id, offset),
            None => Entry::new(id, offset),
        };
        self.link(hash, new, old, ctx);
        Some(new)
    }

    /// Would this exptime keep `e`'s segment past its lifetime class? That is, is it of another
    /// class than the segment's, and later than any exptime written there (never, for 0)? Then a
    /// touch moves the item to a segment of its new class (`Store::set_exptime`): in place, one
    /// item would hold all its short-lived neighbours' bytes until eviction reached them. An item
    /// with a segment of its own stays: moving it would free nothing.
    pub fn outlives_segment(
        &self,
        e: Entry,
        header: &Header,
        exptime: RelTime,
        ctx: &Ctx<'_>,
    ) -> bool {
        let seg = self.seg(e.segment());
        let until = if exptime == 0 { NEVER } else { exptime };
        header.total() <= ctx.segment_size
            && until > seg.max_exptime
            && ttl_class(exptime, ctx.now) != seg.class
    }

    /// Sets the exptime of an item that has the field, in place.
    pub fn set_exptime_in_place(&mut self, e: Entry, header: &Header, exptime: RelTime) {
        debug_assert!(header.bits & HAS_EXPTIME != 0);
        let seg = self.seg_mut(e.segment());
        layout::set_exptime(&mut seg.data[e.offset()..], header, exptime);
        seg.saw_exptime(exptime);
    }

    /// Rewrites the value of `e` in place (same length), with a new CAS id if it has the field.
    pub fn set_value_in_place(
        &mut self,
        e: Entry,
        header: &Header,
        value: &[u8],
        cas: Option<u64>,
    ) {
        let seg = self.seg_mut(e.segment());
        layout::set_value(&mut seg.data[e.offset()..], header, value, cas);
    }

    /// Bytes the index must grow by before one more entry with this hash can be inserted (0:
    /// there is room).
    pub fn index_growth(&self, hash: u64) -> usize {
        self.table(hash).growth()
    }

    /// Makes room in the index for one more entry with this hash; the caller has reserved `bytes`.
    pub fn grow_index(&mut self, hash: u64, bytes: usize, ctx: &Ctx<'_>) {
        let table = index::route(&self.route, hash);
        self.change_table(table, bytes, ctx, |table, rehash, load| {
            if table.growth() > 0 {
                table.grow(rehash, load);
            }
        });
    }

    /// The buckets table `t` takes for `count` entries, and the bytes it grows by, if it is empty
    /// and would grow.
    fn presized(&self, t: usize, count: usize) -> Option<(usize, usize)> {
        let table = &self.tables[t];
        let buckets = table.buckets_for(count);
        (table.is_empty() && buckets > table.buckets())
            .then(|| (buckets, table::table_bytes(buckets) - table.bytes()))
    }

    /// Bytes [`Shard::presize_index`] would reserve for these counts.
    pub fn presize_bytes(&self, counts: &[usize]) -> usize {
        counts
            .iter()
            .enumerate()
            .filter_map(|(t, &count)| self.presized(t, count))
            .map(|(_, bytes)| bytes)
            .sum()
    }

    /// Gives each empty table of this shard the size it would reach by taking `counts[t]`
    /// entries one by one, reserving the bytes first ([`crate::IndexPlan`]). Returns the bytes
    /// reserved; a table the budget cannot pay for is left to grow as it fills.
    pub fn presize_index(&mut self, counts: &[usize], ctx: &Ctx<'_>) -> usize {
        let mut reserved = 0;
        for (t, &count) in counts.iter().enumerate() {
            let Some((buckets, bytes)) = self.presized(t, count) else {
                continue;
            };
            if !ctx.budget.try_reserve(bytes) {
                continue;
            }
            self.change_table(t, bytes, ctx, |table, _, _| table.presize(buckets));
            reserved += bytes;
        }
        reserved
    }

    /// Steps of [`Shard::move_growth_step`] that finish the index growths under way.
    pub fn growth_steps_left(&self) -> usize {
        self.tables.iter().map(|t| t.growth_steps_left()).sum()
    }

    /// Moves on the first unfinished growth of an index table by one
    /// [`BucketTable::move_step`], freeing its old buckets if that finishes it. False when no
    /// table is growing.
    pub fn move_growth_step(&mut self, ctx: &Ctx<'_>) -> bool {
        let Some(table) = self.tables.iter().position(|t| t.growing()) else {
            return false;
        };
        self.change_table(table, 0, ctx, |table, rehash, load| {
            table.move_step(rehash, load)
        });
        true
    }

    /// Replaces the ghost with an empty one of `entries` keys (a new `cache_memlimit`), charging
    /// the budget the difference. One of the same size stays, with what it remembers.
    pub fn resize_ghost(&mut self, entries: usize, budget: &Budget) {
        let bytes = Ghost::bytes(entries);
        if bytes == self.ghost_bytes {
            return;
        }
        self.ghost = Ghost::new(entries);
        if bytes < self.ghost_bytes {
            budget.release(self.ghost_bytes - bytes);
        } else {
            budget.force(bytes - self.ghost_bytes);
        }
        self.ghost_bytes = bytes;
    }

    /// Bytes [`Shard::shrink_index`] would free now.
    pub fn index_shrinkable(&self) -> usize {
        self.tables.iter().map(BucketTable::shrinkable).sum()
    }

    /// Places the entries of each index table that holds far fewer than it has room for again in
    /// fewer buckets ([`BucketTable::shrink`]), and gives the bytes back to the budget.
    pub fn shrink_index(&mut self, ctx: &Ctx<'_>) {
        for table in 0..self.tables.len() {
            if self.tables[table].shrinkable() > 0 {
                self.change_table(table, 0, ctx, |table, rehash, load| {
                    table.shrink(rehash, load)
                });
            }
        }
    }

    /// Runs `change` on table number `table`, giving it what a growth needs to place entries
    /// again (an entry's hash, read from its key, and a way to start loading that key), then
    /// charges the budget for the bytes the table gained or lost, of which the caller reserved
    /// `reserved`: what was not needed goes back, a shortfall is taken.
    fn change_table(
        &mut self,
        table: usize,
        reserved: usize,
        ctx: &Ctx<'_>,
        change: impl FnOnce(&mut BucketTable, &dyn Fn(Entry) -> u64, &dyn Fn(Entry)),
    ) {
        let segs = &self.segs;
        let hasher = ctx.hasher;
        let table = &mut self.tables[table];
        let before = table.bytes();
        change(table, &|e| hasher.hash_one(key_at(segs, e)), &|e| {
            load_key(segs, e)
        });
        let after = table.bytes();
        self.index_bytes = self.index_bytes - before + after;
        let held = before + reserved;
        if after <= held {
            ctx.budget.release(held - after);
        } else if !ctx.budget.try_reserve(after - held) {
            // Never expected (growth is reserved first, and exactly); the next store evicts back
            // under the bound.
            ctx.budget.force(after - held);
        }
    }

    /// Removes the index entry at `e`'s place without touching its segment (which the caller
    /// holds out of the table).
    pub(crate) fn drop_entry(&mut self, hash: u64, e: Entry) {
        if self
            .table_mut(hash)
            .remove(hash, |x| x.same_place(e))
            .is_some()
        {
            self.live -= 1;
        }
    }

    /// The live entry naming the item at (`id`, `offset`), whose key hashes to `hash`.
    pub(crate) fn entry_at(&self, hash: u64, id: u32, offset: usize) -> Option<Entry> {
        let here = Entry::new(id, offset);
        self.table(hash).find(hash, |x| x.same_place(here))
    }

    /// Is segment `id` held (not freed)?
    pub(crate) fn holds(&self, id: u32) -> bool {
        self.segs.get(id as usize).is_some_and(Option::is_some)
    }

    pub(crate) fn take_segment(&mut self, id: u32) -> Segment {
        self.segs[id as usize]
            .take()
            .expect("taking a held segment")
    }

    pub(crate) fn put_back_segment(&mut self, id: u32, seg: Segment) {
        self.segs[id as usize] = Some(seg);
    }

    pub(crate) fn forget_segment(&mut self, id: u32, capacity: usize, budget: &Budget) {
        budget.release(capacity);
        self.free_ids.push(id);
    }

    pub(crate) fn set_entry_at(&mut self, hash: u64, old: Entry, new: Entry) {
        self.set_entry(hash, old, new);
    }

    /// Removes every item of segment `id` from the index and frees it, counting each item with
    /// `count(fetched)` (used for segments that are dead whole: flushed or all expired).
    pub fn drop_segment(
        &mut self,
        id: u32,
        ctx: &Ctx<'_>,
        mut count: impl FnMut(&mut Counters, bool),
    ) {
        let seg = self.take_segment(id);
        for (offset, header) in layout::items(&seg.data, seg.len) {
            let item = &seg.data[offset..];
            let hash = ctx.hash(header.key(item));
            if let Some(e) = self.entry_at(hash, id, offset) {
                self.drop_entry(hash, e);
                count(&mut self.counters, e.fetched());
            }
        }
        self.put_back_segment(id, seg);
        self.free_segment(id, ctx.budget);
    }

    /// Adds to `total` this shard's segments held and in use, the bytes of its live items, and
    /// the age at `now` of its oldest segment holding one.
    pub fn census(&self, now: RelTime, total: &mut StoreStats) {
        for seg in self.segs.iter().flatten() {
            total.segments += 1;
            if seg.live > 0 {
                total.segments_in_use += 1;
                total.item_bytes += seg.live_bytes as u64;
                let age = u64::from(now.saturating_sub(seg.created));
                total.oldest_item_age = total.oldest_item_age.max(age);
            }
        }
    }

    /// All segment ids held, open or closed.
    pub fn segment_ids(&self) -> Vec<u32> {
        self.queues
            .iter()
            .flat_map(|q| {
                q.closed
                    .iter()
                    .copied()
                    .chain(q.open.iter().flatten().copied())
            })
            .collect()
    }
}
