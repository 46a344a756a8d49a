//! The one memory budget all shards draw from. A store reserves its bytes here before it links an
//! item (compare-and-swap, so concurrent stores can never overshoot `max_bytes` together) and gives
//! them back when the item goes.

use std::sync::atomic::{AtomicUsize, Ordering};

pub(crate) struct Budget {
    /// `-m`, or what `cache_memlimit` last set.
    limit: AtomicUsize,
    used: AtomicUsize,
}

impl Budget {
    pub fn new(limit: usize) -> Budget {
        Budget {
            limit: AtomicUsize::new(limit),
            used: AtomicUsize::new(0),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// A new limit. Lowering it takes nothing back: what is held over it stays until it is
    /// evicted (see `Store::set_max_bytes`), and no reservation succeeds meanwhile.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `bytes` if they fit under the limit; never blocks, never evicts.
    pub fn try_reserve(&self, bytes: usize) -> bool {
        let limit = self.limit();
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(bytes).filter(|&total| total <= limit)
            })
            .is_ok()
    }

    pub fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }
}

impl Budget {
    /// Takes `bytes` even past the limit (only for a growth whose size was underestimated; the
    /// next reservation evicts back under the bound).
    pub fn force(&self, bytes: usize) {
        self.used.fetch_add(bytes, Ordering::Relaxed);
    }
}
