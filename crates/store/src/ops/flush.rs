//! `flush_all`, with memcached 1.6's rules (`process_flush_all_command` and `item_is_flushed`).
//!
//! With CAS on, the oldest live time is `when - 1`, and a flush that takes effect now also
//! records the next sequence number: items stored before the flush are gone, items stored after
//! it in the same second survive. With `-C` there is no sequence number to compare and the
//! oldest live time is `when` itself, so items stored in the flush's own second are flushed too:
//! memcached 1.6.18 -C answers `set a`, `flush_all`, `set b`, `get a b` with no value at all
//! (without -C it returns b). We reproduce both.
//!
//! A flush is judged per segment (`FlushState::marks`): a write that would land on the other side
//! of a flush than its open segment opens a new one. Flushed items are invisible at once and
//! removed lazily: the first command to meet one counts `get_flushed`, as memcached's does.
//! memcached's LRU crawler then empties the rest within about a second (`curr_items` drops to 0);
//! here `Store::stats` frees the flushed segments once, so `stats` after a flush shows what
//! memcached's shows a moment later.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::item::FlushState;
use crate::{RelTime, Store};

const ACTIVE: u64 = 1 << 32;

/// The flush state as atomics, read by every command without a lock.
#[derive(Default)]
pub(crate) struct FlushCell {
    /// `ACTIVE | effective_at`, or 0 before the first flush_all.
    effective: AtomicU64,
    stored_before: AtomicU64,
    oldest_seq: AtomicU64,
    /// A flush happened whose items have not been swept yet.
    unswept: AtomicBool,
}

impl FlushCell {
    pub fn load(&self) -> FlushState {
        let effective = self.effective.load(Ordering::Acquire);
        FlushState {
            active: effective & ACTIVE != 0,
            effective_at: effective as u32,
            stored_before: self.stored_before.load(Ordering::Relaxed),
            oldest_seq: self.oldest_seq.load(Ordering::Relaxed),
        }
    }
}

impl Store {
    /// `flush_all`: every item stored before `when` is invalid once `now >= when` (`when == 0`
    /// or `when <= now`: at once). Items stored later survive.
    ///
    /// `when == 1` is what memcached's `realtime()` gives for an absolute time in the past
    /// (`flush_all 2592001`). With CAS on, memcached's `oldest_live` is then 0, which its
    /// `item_is_flushed` reads as "no flush": nothing is flushed, and a delayed flush still pending
    /// is replaced, so cancelled. (With `-C`, `oldest_live` is 1 and flushes only items older than
    /// any the server holds: the same outcome by the general rule below.)
    pub fn flush_all(&self, when: RelTime, now: RelTime) {
        self.saw_time(now);
        let cancels = when == 1 && self.config.use_cas;
        let when = if when == 0 { now } else { when };
        let cell = &self.flush;
        // (effective_at, stored_before) = (oldest_live, oldest_live + 1) in memcached's terms.
        let (effective_at, stored_before) = if self.config.use_cas {
            let effective_at = when.saturating_sub(1);
            if effective_at <= now {
                // memcached's `settings.oldest_cas = get_cas_id()`.
                let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
                cell.oldest_seq.store(seq, Ordering::Relaxed);
            }
            (effective_at, u64::from(when))
        } else {
            (when, u64::from(when) + 1)
        };
        cell.stored_before.store(stored_before, Ordering::Relaxed);
        let active = if cancels { 0 } else { ACTIVE };
        cell.effective
            .store(active | u64::from(effective_at), Ordering::Release);
        cell.unswept.store(true, Ordering::Relaxed);
    }

    /// The `when` of a delayed `flush_all` that has not taken effect by `now` (what to give
    /// [`Store::flush_all`] to schedule it again: a restart keeps it, as memcached's does).
    pub fn pending_flush(&self, now: RelTime) -> Option<RelTime> {
        let flush = self.flush.load();
        if !flush.active || flush.effective_at <= now {
            return None;
        }
        // flush_all stored `when - 1` with CAS on, `when` with -C.
        Some(flush.effective_at + u32::from(self.config.use_cas))
    }

    /// Frees the segments of a flush that has taken effect by `now`, once per flush. Not counted.
    pub(crate) fn sweep_flushed(&self, now: RelTime) {
        let flush = self.flush.load();
        if !self.flush.unswept.load(Ordering::Relaxed) || !flush.active || flush.effective_at > now
        {
            return;
        }
        if !self.flush.unswept.swap(false, Ordering::Relaxed) {
            return;
        }
        for shard in self.shards.iter() {
            let ctx = self.ctx(now);
            let mut shard = shard.lock();
            for id in shard.segment_ids() {
                if ctx.flush.flushes(shard.seg(id), now) {
                    shard.drop_segment(id, &ctx, |_, _| {});
                }
            }
        }
    }
}
