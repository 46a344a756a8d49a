//! What the server's `watch` needs from the store: whether a key is there (without counting a hit
//! or marking the item read), and the items evicted since it last asked. The eviction log is off
//! (costing one branch per eviction) until a watcher asks for it.

use crate::{RelTime, Store};

/// The most evictions a shard keeps for the next [`Store::take_evictions`]; beyond it they are
/// only counted.
const LOG_LIMIT: usize = 1024;

/// An item evicted to make room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evicted {
    pub key: Box<[u8]>,
    /// Read since it was written.
    pub fetched: bool,
    /// Its exptime (0: never).
    pub exptime: RelTime,
    /// When its segment opened (about when it was written: there is no per-item access time).
    pub written: RelTime,
    pub value_len: usize,
}

/// A shard's eviction log, while one is kept.
#[derive(Debug, Default)]
pub(crate) struct EvictionLog {
    pub entries: Vec<Evicted>,
    /// Evictions past [`LOG_LIMIT`] since the last take.
    pub dropped: u64,
}

impl EvictionLog {
    pub fn push(&mut self, evicted: impl FnOnce() -> Evicted) {
        if self.entries.len() < LOG_LIMIT {
            self.entries.push(evicted());
        } else {
            self.dropped += 1;
        }
    }
}

impl Store {
    /// The length of a live item's value, or None: without counting a hit or a miss, marking
    /// the item read, touching its CAS id or dropping it if it is dead, so that watching changes
    /// nothing.
    pub fn value_len(&self, key: &[u8], now: RelTime) -> Option<usize> {
        let (shard, _, hash, ctx) = self.locked(key, now);
        match shard.probe(hash, key, &ctx)? {
            (_, header, None) => Some(header.value_len),
            (_, _, Some(_)) => None,
        }
    }

    /// Starts (or stops, dropping what was kept) logging evictions for [`Store::take_evictions`].
    pub fn log_evictions(&self, on: bool) {
        for shard in self.shards.iter() {
            shard.lock().eviction_log = on.then(EvictionLog::default);
        }
    }

    /// The evictions logged since the last call, oldest first within a shard, and how many more
    /// there were past each shard's limit.
    pub fn take_evictions(&self) -> (Vec<Evicted>, u64) {
        let mut all = Vec::new();
        let mut dropped = 0;
        for shard in self.shards.iter() {
            if let Some(log) = shard.lock().eviction_log.as_mut() {
                all.append(&mut log.entries);
                dropped += std::mem::take(&mut log.dropped);
            }
        }
        (all, dropped)
    }
}
