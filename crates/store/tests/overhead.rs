//! Checks the memory accounting against what the process really holds: fill a store with small
//! items (read once each, so every value's shared header exists), and compare the growth of the
//! resident set with `stats().bytes`. Its own test binary, so nothing else runs in the process.

use std::fmt::Write;

use ferrocache_store::{Store, StoreConfig, StoreMode};

/// Resident bytes of this process (Linux: /proc/self/statm, in pages).
fn resident_bytes() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[test]
fn accounting_matches_resident_memory() {
    let Some(before) = resident_bytes() else {
        panic!("/proc/self/statm is needed for this test (Linux)");
    };
    let store = Store::new(StoreConfig {
        max_bytes: 64 << 20,
        item_size_max: 1 << 20,
        evictions: true,
        use_cas: true,
    });
    const ITEMS: usize = 400_000;
    let value = [b'v'; 32];
    let mut key = String::with_capacity(32);
    for i in 0..ITEMS {
        key.clear();
        write!(key, "key:{i:016}").expect("write to a String");
        store.store(StoreMode::Set, key.as_bytes(), 0, 0, &value, 1);
        store.get(key.as_bytes(), true, 1).expect("just stored");
    }
    let after = resident_bytes().expect("read before");
    let stats = store.stats();
    assert_eq!(stats.curr_items, ITEMS as u64);
    let grown = after.saturating_sub(before) as f64;
    // The ghost is allocated zeroed up front and only written once evictions start: its pages
    // are not resident yet.
    let charged = (stats.bytes - stats.ghost_bytes) as f64;
    let per_item = |bytes: f64| bytes / ITEMS as f64;
    eprintln!(
        "20-byte keys, 32-byte values: resident +{:.0} B/item, charged {:.0} B/item \
         (index {:.0} B/item), ratio {:.2}",
        per_item(grown),
        per_item(charged),
        per_item((stats.index_bytes - stats.ghost_bytes) as f64),
        charged / grown
    );
    // Honest: the charge covers at least 90% of what the process really took...
    assert!(
        charged >= 0.9 * grown,
        "charged {charged} < resident growth {grown}"
    );
    // ...and does not overstate it by more than a third.
    assert!(
        charged <= 1.33 * grown,
        "charged {charged} >> resident growth {grown}"
    );
    drop(store);
}
