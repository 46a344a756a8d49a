use super::*;
use crate::segment::Queue;

fn store(max_bytes: usize, evictions: bool, use_cas: bool) -> Store {
    Store::new(StoreConfig {
        max_bytes,
        item_size_max: 1024 * 1024,
        evictions,
        use_cas,
    })
}

fn small() -> Store {
    store(64 * 1024 * 1024, true, true)
}

#[test]
fn set_get_delete() {
    let s = small();
    assert_eq!(
        s.store(StoreMode::Set, b"k", 3, 0, b"v", 100),
        StoreOutcome::Stored
    );
    let item = s.get(b"k", true, 100).expect("hit");
    assert_eq!((&item.value[..], item.flags), (&b"v"[..], 3));
    assert_eq!(s.delete(b"k", 100), DeleteOutcome::Deleted);
    assert_eq!(s.delete(b"k", 100), DeleteOutcome::NotFound);
    assert!(s.get(b"k", true, 100).is_none());
    let st = s.stats();
    assert_eq!(
        (st.get_hits, st.get_misses, st.delete_hits, st.delete_misses),
        (1, 1, 1, 1)
    );
}

#[test]
fn prefetch_changes_nothing() {
    // A hint to the CPU: on an empty store, a missing key and a present one, the answers and the
    // counters stay those of plain gets.
    let s = small();
    let (k, missing) = (s.hash_key(b"k"), s.hash_key(b"missing"));
    s.prefetch(k);
    s.prefetch_item(k);
    assert_eq!(
        s.store(StoreMode::Set, b"k", 0, 0, b"v", 1),
        StoreOutcome::Stored
    );
    for hash in [k, missing] {
        s.prefetch(hash);
        s.prefetch_item(hash);
    }
    assert_eq!(&s.get(b"k", false, 1).expect("hit").value[..], b"v");
    assert!(s.get(b"missing", false, 1).is_none());
    let st = s.stats();
    assert_eq!((st.get_hits, st.get_misses, st.curr_items), (1, 1, 1));
    // The hashed lookups answer as the plain ones; with another key's hash a lookup searches
    // that key's place, so it misses (or, by a chance tag match there, still finds this key's
    // item: the key is always compared).
    let value = |item: &ItemRef<'_>| item.value.to_vec();
    assert_eq!(
        s.get_hashed_with(b"k", k, false, 1, value),
        Some(b"v".to_vec())
    );
    let wrong = s.get_hashed_with(b"k", missing, false, 1, value);
    assert!(wrong.is_none() || wrong == Some(b"v".to_vec()), "{wrong:?}");
    let hits = u64::from(wrong.is_some());
    assert_eq!(
        s.get_and_touch_hashed_with(b"k", k, 100, false, 1, value),
        Some(b"v".to_vec())
    );
    let st = s.stats();
    assert_eq!(
        (st.get_hits, st.get_misses, st.touch_hits),
        (2 + hits, 2 - hits, 1)
    );
}

#[test]
fn add_replace_append_prepend() {
    let s = small();
    assert_eq!(
        s.store(StoreMode::Replace, b"k", 0, 0, b"a", 1),
        StoreOutcome::NotStored
    );
    assert_eq!(
        s.store(StoreMode::Append, b"k", 0, 0, b"a", 1),
        StoreOutcome::NotStored
    );
    assert_eq!(
        s.store(StoreMode::Add, b"k", 7, 0, b"b", 1),
        StoreOutcome::Stored
    );
    assert_eq!(
        s.store(StoreMode::Add, b"k", 0, 0, b"c", 1),
        StoreOutcome::NotStored
    );
    assert_eq!(
        s.store(StoreMode::Append, b"k", 0, 0, b"z", 1),
        StoreOutcome::Stored
    );
    assert_eq!(
        s.store(StoreMode::Prepend, b"k", 0, 0, b"a", 1),
        StoreOutcome::Stored
    );
    let item = s.get(b"k", true, 1).expect("hit");
    assert_eq!(&item.value[..], b"abz");
    assert_eq!(item.flags, 7, "append keeps the flags");
}

#[test]
fn append_and_prepend_check_a_cas_id_when_given_one() {
    let s = small();
    let with = |compare_cas| WriteOptions {
        compare_cas,
        ..WriteOptions::default()
    };
    s.store(StoreMode::Set, b"k", 0, 0, b"m", 1);
    let cas = s.get(b"k", true, 1).expect("hit").cas;
    for mode in [StoreMode::Append, StoreMode::Prepend] {
        assert_eq!(
            s.store_with(mode, b"k", 0, 0, b"x", 1, with(cas + 1)),
            StoreOutcome::Exists
        );
    }
    assert_eq!(&s.get(b"k", true, 1).expect("hit").value[..], b"m");
    assert_eq!(s.stats_at(1).cas_badval, 0, "not a cas command");
    assert_eq!(
        s.store_with(StoreMode::Append, b"k", 0, 0, b">", 1, with(cas)),
        StoreOutcome::Stored
    );
    // 0 checks nothing; the id changed with the append.
    assert_eq!(
        s.store_with(StoreMode::Prepend, b"k", 0, 0, b"<", 1, with(0)),
        StoreOutcome::Stored
    );
    assert_eq!(&s.get(b"k", true, 1).expect("hit").value[..], b"<m>");
    assert_eq!(
        s.store_with(StoreMode::Append, b"gone", 0, 0, b"x", 1, with(cas)),
        StoreOutcome::NotStored
    );
}

#[test]
fn cas_ids_change_with_every_write() {
    let s = small();
    s.store(StoreMode::Set, b"k", 0, 0, b"a", 1);
    let first = s.get(b"k", true, 1).expect("hit").cas;
    assert_eq!(
        s.store(StoreMode::Cas(first + 1), b"k", 0, 0, b"b", 1),
        StoreOutcome::Exists
    );
    assert_eq!(
        s.store(StoreMode::Cas(first), b"k", 0, 0, b"b", 1),
        StoreOutcome::Stored
    );
    let second = s.get(b"k", true, 1).expect("hit").cas;
    assert_ne!(first, second);
    assert_eq!(
        s.store(StoreMode::Cas(first), b"k", 0, 0, b"c", 1),
        StoreOutcome::Exists
    );
    assert_eq!(
        s.store(StoreMode::Cas(1), b"nokey", 0, 0, b"c", 1),
        StoreOutcome::NotFound
    );
    s.touch(b"k", 100, 1);
    assert_eq!(
        s.get(b"k", true, 1).expect("hit").cas,
        second,
        "touch keeps the CAS id"
    );
    let st = s.stats();
    assert_eq!((st.cas_hits, st.cas_badval, st.cas_misses), (1, 2, 1));
}

#[test]
fn cas_ids_are_unique_across_threads() {
    let s = std::sync::Arc::new(small());
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                (0..1000)
                    .map(|i| {
                        let key = format!("{t}-{i}");
                        s.store(StoreMode::Set, key.as_bytes(), 0, 0, b"v", 1);
                        s.get(key.as_bytes(), true, 1).expect("hit").cas
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("thread"))
        .collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 4000);
}

#[test]
fn disabled_cas_is_zero_and_cas_never_matches() {
    let s = store(64 * 1024 * 1024, true, false);
    s.store(StoreMode::Set, b"k", 0, 0, b"a", 1);
    assert_eq!(s.get(b"k", true, 1).expect("hit").cas, 0);
    assert_eq!(
        s.store(StoreMode::Cas(12345), b"k", 0, 0, b"b", 1),
        StoreOutcome::Exists
    );
    assert_eq!(
        s.store(StoreMode::Cas(0), b"k", 0, 0, b"b", 1),
        StoreOutcome::Exists
    );
}

#[test]
fn expiry_boundary() {
    let s = small();
    s.store(StoreMode::Set, b"k", 0, 110, b"v", 100);
    assert!(s.get(b"k", true, 109).is_some());
    assert!(
        s.get(b"k", true, 110).is_none(),
        "expired when exptime <= now"
    );
    assert_eq!(s.stats().get_expired, 1);
    assert_eq!(s.touch(b"k", 0, 110), TouchOutcome::NotFound);
}

#[test]
fn gat_counts_touches_and_sets_exptime() {
    let s = small();
    s.store(StoreMode::Set, b"k", 0, 0, b"v", 100);
    assert!(s.get_and_touch(b"k", 105, true, 100).is_some());
    assert!(s.get_and_touch(b"x", 105, true, 100).is_none());
    assert!(s.get(b"k", true, 105).is_none());
    let st = s.stats();
    assert_eq!((st.touch_hits, st.touch_misses, st.get_hits), (1, 1, 0));
}

#[test]
fn flush_now_spares_later_writes_in_the_same_second() {
    let s = small();
    s.store(StoreMode::Set, b"old", 0, 0, b"v", 100);
    s.flush_all(100, 100);
    s.store(StoreMode::Set, b"new", 0, 0, b"v", 100);
    assert!(s.get(b"old", true, 100).is_none());
    assert!(s.get(b"new", true, 100).is_some());
    assert_eq!(s.stats().get_flushed, 1);
}

#[test]
fn delayed_flush() {
    let s = small();
    s.store(StoreMode::Set, b"a", 0, 0, b"v", 100);
    s.flush_all(110, 100);
    assert!(s.get(b"a", true, 105).is_some(), "not yet");
    s.store(StoreMode::Set, b"b", 0, 0, b"v", 111);
    assert!(s.get(b"a", true, 110).is_none(), "gone at the flush time");
    assert!(
        s.get(b"b", true, 111).is_some(),
        "stored after the flush time"
    );
}

#[test]
fn incr_decr_like_memcached() {
    let s = small();
    s.store(StoreMode::Set, b"n", 5, 0, b"10", 1);
    assert_eq!(s.delta(b"n", false, 1, 1), DeltaOutcome::Value(9));
    assert_eq!(
        &s.get(b"n", true, 1).expect("hit").value[..],
        b"9 ",
        "padded in place"
    );
    assert_eq!(s.delta(b"n", true, 991, 1), DeltaOutcome::Value(1000));
    assert_eq!(&s.get(b"n", true, 1).expect("hit").value[..], b"1000");
    assert_eq!(s.delta(b"n", false, 5000, 1), DeltaOutcome::Value(0));
    s.store(StoreMode::Set, b"n", 0, 0, b"18446744073709551615", 1);
    assert_eq!(s.delta(b"n", true, 2, 1), DeltaOutcome::Value(1));
    s.store(StoreMode::Set, b"t", 0, 0, b"abc", 1);
    assert_eq!(s.delta(b"t", true, 1, 1), DeltaOutcome::NonNumeric);
    assert_eq!(s.delta(b"none", true, 1, 1), DeltaOutcome::NotFound);
    assert_eq!(s.get(b"n", true, 1).expect("hit").flags, 0);
}

#[test]
fn append_over_the_item_limit_is_too_large() {
    let s = small();
    let half = vec![b'x'; 600 * 1024];
    s.store(StoreMode::Set, b"k", 0, 0, &half, 1);
    assert_eq!(
        s.store(StoreMode::Append, b"k", 0, 0, &half, 1),
        StoreOutcome::TooLarge
    );
    assert_eq!(
        s.get(b"k", true, 1).expect("old value stays").value.len(),
        half.len()
    );
}

#[test]
fn evicts_within_the_bound_and_m_refuses() {
    let s = store(2 * 1024 * 1024, true, true);
    let value = vec![b'v'; 1000];
    for i in 0..10_000 {
        let key = format!("key{i}");
        assert_eq!(
            s.store(StoreMode::Set, key.as_bytes(), 0, 0, &value, 1),
            StoreOutcome::Stored
        );
        assert!(s.stats().bytes <= 2 * 1024 * 1024);
    }
    let st = s.stats();
    assert!(st.evictions > 0 && st.evicted_unfetched > 0);
    assert!(
        s.get(b"key9999", true, 1).is_some(),
        "the newest item survives"
    );

    let s = store(2 * 1024 * 1024, false, true);
    let mut refused = false;
    for i in 0..10_000 {
        let key = format!("key{i}");
        match s.store(StoreMode::Set, key.as_bytes(), 0, 0, &value, 1) {
            StoreOutcome::Stored => {}
            StoreOutcome::OutOfMemory => {
                refused = true;
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(refused);
    assert_eq!(s.stats().evictions, 0);
    assert!(s.get(b"key0", true, 1).is_some(), "-M keeps what it has");
}

/// Sets `key0`, `key1`... with 1,000-byte values until `count`; how many were stored.
fn fill(s: &Store, count: usize) -> usize {
    let value = vec![b'v'; 1000];
    (0..count)
        .filter(|i| {
            let key = format!("key{i}");
            s.store(StoreMode::Set, key.as_bytes(), 0, 0, &value, 1) == StoreOutcome::Stored
        })
        .count()
}

#[test]
fn a_lower_bound_evicts_down_to_it_and_a_higher_one_lets_the_cache_grow() {
    const MB: usize = 1024 * 1024;
    let s = store(16 * MB, true, true);
    assert_eq!(fill(&s, 14_000), 14_000);
    let full = s.stats();
    assert!(full.bytes > 12 * MB as u64 && full.evictions == 0);
    assert_eq!(s.max_bytes(), 16 * MB);

    // Below two segments per shard and twice -I: refused, nothing changes.
    assert_eq!(s.min_max_bytes(), 2 * MB);
    assert!(!s.set_max_bytes(2 * MB - 1, 1));
    assert_eq!((s.max_bytes(), s.stats().evictions), (16 * MB, 0));

    assert!(s.set_max_bytes(4 * MB, 1));
    assert_eq!(s.max_bytes(), 4 * MB);
    let shrunk = s.stats();
    assert!(shrunk.bytes <= 4 * MB as u64, "{}", shrunk.bytes);
    assert!(shrunk.evictions > 0);
    assert!(shrunk.curr_items < 4_500 && shrunk.curr_items > 2_000);
    assert_eq!(
        u64::from(s.get(b"key13999", false, 1).is_some()),
        1,
        "the newest survives"
    );
    // Stores stay under the new bound.
    fill(&s, 14_000);
    assert!(s.stats().bytes <= 4 * MB as u64);

    // Raised again: the cache grows past the old bound without evicting.
    assert!(s.set_max_bytes(32 * MB, 1));
    let before = s.stats().evictions;
    assert_eq!(fill(&s, 20_000), 20_000);
    let grown = s.stats();
    assert_eq!(grown.evictions, before);
    assert!(grown.bytes > 16 * MB as u64 && grown.bytes <= 32 * MB as u64);
}

#[test]
fn a_lower_bound_shrinks_the_index_and_the_ghost() {
    // 1.2 million small items (the first evicted): their index alone takes more than the new
    // bound, so evicting without shrinking it would empty the cache and still not fit.
    const MB: usize = 1024 * 1024;
    let s = store(64 * MB, true, true);
    let value = [b'v'; 32];
    for i in 0..1_200_000 {
        let key = format!("key:{i:016}");
        s.store(StoreMode::Set, key.as_bytes(), 0, 0, &value, 1);
    }
    let full = s.stats();
    assert!(full.index_bytes > 8 * MB as u64 && full.ghost_bytes == MB as u64);
    // The same bound again changes nothing, and the ghost remembers what it did.
    let remembered = || -> usize { s.shards.iter().map(|sh| sh.lock().ghost.remembered()).sum() };
    let before = remembered();
    assert!(before > 0);
    assert!(s.set_max_bytes(64 * MB, 1));
    assert_eq!(
        (remembered(), s.stats().evictions),
        (before, full.evictions)
    );
    assert!(s.set_max_bytes(6 * MB, 1));
    let low = s.stats();
    assert!(low.bytes <= 6 * MB as u64, "{}", low.bytes);
    assert!(low.index_bytes < 2 * MB as u64, "{}", low.index_bytes);
    assert_eq!(low.ghost_bytes, 6 * MB as u64 / 64);
    assert!(low.curr_items > 20_000, "{}", low.curr_items);
    assert!(s.get(b"key:0000000001199999", false, 1).is_some());
    // Every item left is found, and the index grows again as the cache fills.
    let found = (0..1_200_000)
        .filter(|i| s.get(format!("key:{i:016}").as_bytes(), false, 1).is_some())
        .count();
    assert_eq!(found as u64, low.curr_items);
    assert!(s.set_max_bytes(64 * MB, 1));
    for i in 0..500_000 {
        let key = format!("again:{i:016}");
        s.store(StoreMode::Set, key.as_bytes(), 0, 0, &value, 1);
    }
    let again = s.stats();
    assert_eq!(again.evictions, low.evictions);
    assert!(again.index_bytes > 4 * MB as u64);
    assert_eq!(again.ghost_bytes, MB as u64);
}

#[test]
fn a_bound_larger_than_the_machine_allocates_a_capped_ghost() {
    // 2^50 bytes (a petabyte): everything but the ghost is allocated as the cache fills, and the
    // ghost stops at 512 MB (zeroed, so untouched pages cost nothing).
    let s = store(1 << 50, true, true);
    assert_eq!(s.stats().ghost_bytes, 512 << 20);
    assert_eq!(
        s.store(StoreMode::Set, b"k", 0, 0, b"v", 1),
        StoreOutcome::Stored
    );
    assert!(
        s.set_max_bytes(1_000_000_000 << 20, 1),
        "cache_memlimit's largest"
    );
    assert_eq!(s.stats().ghost_bytes, 512 << 20);
    assert!(s.get(b"k", false, 1).is_some());
}

#[test]
fn a_kept_cas_id_and_the_cas_floor() {
    // What a restart does: raise the floor past every id given before, then store items with the
    // ids clients were shown.
    let s = small();
    let floor = 1 << 40;
    s.raise_cas_floor(floor);
    assert!(s.cas_floor() >= floor);
    let kept = WriteOptions {
        cas: Some(77),
        ..WriteOptions::default()
    };
    let stored = s.store_with(StoreMode::Set, b"kept", 0, 0, b"v", 1, kept);
    assert_eq!(stored, StoreOutcome::Stored);
    assert_eq!(s.get(b"kept", true, 1).expect("hit").cas, 77);
    assert_eq!(
        s.store(StoreMode::Cas(77), b"kept", 0, 0, b"w", 1),
        StoreOutcome::Stored
    );
    // New versions, and new items, take ids above the floor.
    assert!(s.get(b"kept", true, 1).expect("hit").cas >= floor);
    set(&s, "new", b"v", 0, 1);
    assert!(s.get(b"new", true, 1).expect("hit").cas >= floor);
    // A lower floor changes nothing.
    s.raise_cas_floor(5);
    assert!(s.cas_floor() > floor);
    // With -C the id is not kept: every item's is 0.
    let s = store(64 << 20, true, false);
    s.store_with(StoreMode::Set, b"kept", 0, 0, b"v", 1, kept);
    assert_eq!(s.get(b"kept", true, 1).expect("hit").cas, 0);
}

#[test]
fn with_m_a_lower_bound_evicts_nothing_and_stores_are_refused() {
    const MB: usize = 1024 * 1024;
    let s = store(16 * MB, false, true);
    assert_eq!(fill(&s, 8_000), 8_000);
    assert!(s.set_max_bytes(4 * MB, 1));
    let st = s.stats();
    assert_eq!((st.evictions, st.curr_items), (0, 8_000));
    assert!(st.bytes > 4 * MB as u64);
    // Stores go on only into the room open segments have left: no segment is added.
    let value = [b'v'; 1000];
    let refused = (0..2_000).find(|i| {
        let key = format!("new{i}");
        s.store(StoreMode::Set, key.as_bytes(), 0, 0, &value, 1) == StoreOutcome::OutOfMemory
    });
    assert!(refused.is_some());
    assert_eq!(s.stats().bytes, st.bytes);
    // Deleting makes room again: compaction reclaims the deleted items' bytes.
    for i in 0..7_000 {
        s.delete(format!("key{i}").as_bytes(), 1);
    }
    assert_eq!(
        s.store(StoreMode::Set, b"again", 0, 0, &value, 1),
        StoreOutcome::Stored
    );
    assert!(s.stats().bytes <= 4 * MB as u64);
    assert_eq!(s.stats().evictions, 0);
}

#[test]
fn recently_read_items_survive_eviction() {
    let s = store(2 * 1024 * 1024, true, true);
    let value = vec![b'v'; 1000];
    s.store(StoreMode::Set, b"hot", 0, 0, &value, 1);
    for i in 0..10_000 {
        assert!(
            s.get(b"hot", true, 1).is_some(),
            "hot item evicted after {i} sets"
        );
        s.store(
            StoreMode::Set,
            format!("cold{i}").as_bytes(),
            0,
            0,
            &value,
            1,
        );
    }
}

#[test]
fn the_ghost_sends_only_items_of_about_the_usual_size_to_main() {
    // Keys stored once with 40-byte values and never read: the early ones are evicted from small
    // and their fingerprints go to the ghost.
    let s = store(2 * 1024 * 1024, true, true);
    for i in 0..60_000 {
        set(&s, &format!("key:{i}"), &[b'v'; 40], 0, 1);
    }
    assert!(s.stats().evictions > 0);
    let remembered = |key: &str| {
        let (shard, _, hash, _) = s.locked(key.as_bytes(), 1);
        shard.ghost.contains(hash) && shard.lookup(hash, key.as_bytes()).is_none()
    };
    let queue_of = |key: &str| placed(&s, key).expect("stored").1;
    // Keys the ghost remembers come back, in turn with a value of about the usual size and one
    // ten times as long. (Each store can evict and overwrite other fingerprints, so a key is
    // checked right before it comes back.)
    let (mut to_main, mut to_small) = (0, 0);
    for i in 0..60_000 {
        let key = format!("key:{i}");
        if !remembered(&key) {
            continue;
        }
        if i % 2 == 0 {
            set(&s, &key, &[b'w'; 44], 0, 1);
            assert_eq!(queue_of(&key), Queue::Main, "{key}");
            to_main += 1;
        } else {
            // Must be read while in small to stay.
            set(&s, &key, &[b'w'; 400], 0, 1);
            assert_eq!(queue_of(&key), Queue::Small, "{key}");
            to_small += 1;
        }
    }
    assert!(to_main > 100 && to_small > 100, "{to_main} {to_small}");
}

#[test]
fn small_is_emptied_into_main_before_main_evicts() {
    // S3-FIFO: while small holds more than its share, a small segment whose items were all read
    // moves them to main, and eviction goes on with small's next segment. (It used to evict
    // main's oldest next, where those items had just gone, unread since.) Keys each read once
    // (later than written: a read right after is not a reuse), then keys never read until all
    // of those have moved to main: only unread keys go.
    let s = store(2 << 20, true, true);
    let key = |i: usize| format!("read:{i}");
    let value = |i: usize| format!("{i:0200}");
    for i in 0..2000 {
        set(&s, &key(i), value(i).as_bytes(), 0, 1);
    }
    for i in 0..2000 {
        assert!(s.get(key(i).as_bytes(), false, 5).is_some());
    }
    let in_main = |key: &str| {
        let (_, queue, _) = placed(&s, key).unwrap_or_else(|| panic!("{key} evicted"));
        queue == Queue::Main
    };
    let mut unread = 0;
    while !(0..2000).all(|i| in_main(&key(i))) {
        for _ in 0..100 {
            set(&s, &format!("unread:{unread}"), &[b'u'; 200], 0, 5);
            unread += 1;
        }
        assert!(unread < 200_000, "read keys not all in main");
    }
    let st = s.stats();
    assert!(
        st.evictions > 100,
        "{unread} unread keys, {} evictions",
        st.evictions
    );
    assert_eq!(
        st.evicted_unfetched, st.evictions,
        "only unread keys evicted"
    );
    for i in 0..2000 {
        let got = s
            .get(key(i).as_bytes(), false, 5)
            .map(|item| item.value.to_vec());
        assert_eq!(got, Some(value(i).into_bytes()));
    }
}

#[test]
fn a_read_right_after_a_write_is_not_a_reuse() {
    // A read of an item in small's open segment, opened under two seconds before, leaves its
    // frequency alone (the item is still fetched); a later read, or one once the segment has
    // closed, counts.
    let s = store(2 << 20, true, true);
    let entry = |key: &str| {
        let (e, _, open) = placed(&s, key).expect("stored");
        (e.freq(), e.fetched(), open)
    };
    set(&s, "a", b"v", 0, 1);
    assert!(s.get(b"a", false, 1).is_some());
    assert_eq!(entry("a"), (0, true, true), "read as it was written");
    assert!(s.get(b"a", false, 2).is_some());
    assert_eq!(entry("a"), (0, true, true), "a second later");
    assert!(s.get(b"a", false, 3).is_some());
    assert_eq!(
        entry("a"),
        (1, true, true),
        "two seconds after its segment opened"
    );
    // The segment is still open: an item written into it now (a key of the same shard) is not
    // just written.
    let shard_of = |key: &str| Store::shard_of(s.hash_key(key.as_bytes()).0);
    let b = (0..)
        .map(|i| format!("b{i}"))
        .find(|b| shard_of(b) == shard_of("a"))
        .expect("a key");
    set(&s, &b, b"v", 0, 10);
    assert!(s.get(b.as_bytes(), false, 10).is_some());
    assert_eq!(entry(&b), (1, true, true));
    // Once closed, a read counts whenever it comes.
    set(&s, "c", b"v", 0, 10);
    let mut i = 0;
    while entry("c").2 {
        set(&s, &format!("filler:{i}"), &[b'f'; 100], 0, 10);
        i += 1;
    }
    assert!(s.get(b"c", false, 10).is_some());
    assert_eq!(entry("c"), (1, true, false));
    assert_eq!(s.stats().get_hits, 5);
}

#[test]
fn mg_reads_right_after_a_write_as_get_does() {
    // `mg` is not a reuse right after the write either; with `T` it counts, as `gat` does.
    use crate::MetaGet;
    let s = small();
    let freq = |key: &str| placed(&s, key).expect("stored").0.freq();
    let mg = MetaGet {
        bump: true,
        ..MetaGet::default()
    };
    set(&s, "m", b"v", 0, 1);
    assert!(s.meta_get(b"m", &mg, 1).is_some());
    assert_eq!(freq("m"), 0, "mg right after the write");
    let touching = MetaGet {
        touch: Some(100),
        ..mg
    };
    assert!(s.meta_get(b"m", &touching, 1).is_some());
    assert_eq!(freq("m"), 1, "mg with T");
    assert!(s.meta_get(b"m", &mg, 3).is_some());
    assert_eq!(freq("m"), 2, "mg two seconds later");
}

#[test]
fn largest_item_fits_in_small_memory() {
    let s = store(2 * 1024 * 1024, true, true);
    let big = vec![b'x'; 1024 * 1024 - 100];
    assert_eq!(
        s.store(StoreMode::Set, b"k", 0, 0, &big, 1),
        StoreOutcome::Stored
    );
}

proptest::proptest! {
    #[test]
    fn bytes_never_exceed_the_bound(ops in proptest::collection::vec((0u8..4, 0u16..300, 0usize..5000), 1..400)) {
        let s = store(1024 * 1024, true, true);
        for (op, key, len) in ops {
            let key = format!("k{key}");
            let value = vec![b'x'; len];
            match op {
                0 => { s.store(StoreMode::Set, key.as_bytes(), 0, 0, &value, 1); }
                1 => { s.store(StoreMode::Append, key.as_bytes(), 0, 0, &value, 1); }
                2 => { s.get(key.as_bytes(), true, 1); }
                _ => { s.delete(key.as_bytes(), 1); }
            }
            proptest::prop_assert!(s.stats().bytes <= 1024 * 1024);
        }
    }
}

fn with(max_bytes: usize, item_size_max: usize, evictions: bool) -> Store {
    Store::new(StoreConfig {
        max_bytes,
        item_size_max,
        evictions,
        use_cas: true,
    })
}

fn set(s: &Store, key: &str, value: &[u8], exptime: RelTime, now: RelTime) -> StoreOutcome {
    s.store(StoreMode::Set, key.as_bytes(), 0, exptime, value, now)
}

/// Where `key` is stored: its index entry, its segment's queue, and whether that segment is
/// open. None when it is not stored.
fn placed(s: &Store, key: &str) -> Option<(crate::index::Entry, Queue, bool)> {
    let (shard, _, hash, _) = s.locked(key.as_bytes(), 0);
    let e = shard.lookup(hash, key.as_bytes())?;
    Some((e, shard.seg(e.segment()).queue, shard.is_open(e.segment())))
}

/// Fills a `-M` store until it refuses 300 new keys in a row (every shard has had its chance to
/// use a free slot); returns how many keys were tried, stored or not.
/// The `i`th key [`fill_until_refused`] stores. All are as long, so that once every shard
/// refuses them no shard has room left for any of them.
fn fill_key(i: usize) -> String {
    format!("k{i:07}")
}

fn fill_until_refused(s: &Store, value: &[u8]) -> usize {
    let mut refused = 0;
    for i in 0..1_000_000 {
        match set(s, &fill_key(i), value, 0, 1) {
            StoreOutcome::Stored => refused = 0,
            StoreOutcome::OutOfMemory => refused += 1,
            other => panic!("{other:?}"),
        }
        if refused == 300 {
            return i + 1;
        }
    }
    panic!("never refused")
}

#[test]
fn is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Store>();
}

#[test]
fn sixteen_shards_even_for_tiny_memory() {
    assert_eq!(with(1024 * 1024, 512 * 1024, true).shard_count(), SHARDS);
}

#[test]
fn largest_item_fits_at_default_limits_and_tiny_memory() {
    // -m 64 -I 1m (64 shards of 1 MB each under per-shard budgets would not hold it).
    let s = with(64 << 20, 1 << 20, true);
    for i in 0..200 {
        set(&s, &format!("small{i}"), &[b'x'; 100], 0, 1);
    }
    let biggest = vec![b'x'; (1 << 20) - 48 - 4 - 2 - 8];
    assert!(item_size_ok(1 << 20, true, 3, 0, biggest.len()));
    assert_eq!(set(&s, "big", &biggest, 0, 1), StoreOutcome::Stored);
    assert_eq!(
        s.get(b"big", true, 1).expect("hit").value.len(),
        biggest.len()
    );
    // -m 1 -I 512k, the smallest pair memcached accepts, after filling with small items.
    let s = with(1 << 20, 512 << 10, true);
    for i in 0..20_000 {
        set(&s, &format!("small{i}"), &[b'x'; 50], 0, 1);
    }
    let biggest = vec![b'x'; (512 << 10) - 48 - 4 - 2 - 8];
    assert_eq!(set(&s, "big", &biggest, 0, 1), StoreOutcome::Stored);
    assert!(s.get(b"big", true, 1).is_some());
    assert!(s.stats().bytes <= 1 << 20);
    assert!(s.stats().evictions > 0);
}

#[test]
fn odd_inputs_do_not_panic() {
    let s = with(1 << 20, 1 << 20, true);
    assert_eq!(set(&s, "", b"", u32::MAX, 0), StoreOutcome::Stored);
    assert_eq!(s.get(b"", true, u32::MAX - 1).expect("hit").value.len(), 0);
    assert!(s.get(b"", true, u32::MAX).is_none(), "expired at u32::MAX");
    let long_key = "k".repeat(10_000);
    assert_eq!(set(&s, &long_key, b"v", 0, 0), StoreOutcome::Stored);
    assert_eq!(
        s.delta(long_key.as_bytes(), true, u64::MAX, 0),
        DeltaOutcome::NonNumeric
    );
    assert_eq!(
        s.store(StoreMode::Set, b"huge", 0, 0, &vec![0; 2 << 20], 0),
        StoreOutcome::TooLarge
    );
    // A store smaller than one item's overhead refuses, never panics.
    let s = with(10, 1 << 20, true);
    assert_eq!(set(&s, "k", b"v", 0, 0), StoreOutcome::OutOfMemory);
    let s = with(0, 1 << 20, false);
    assert_eq!(set(&s, "k", b"v", 0, 0), StoreOutcome::OutOfMemory);
    assert_eq!(s.delta(b"k", true, 1, 0), DeltaOutcome::NotFound);
    s.flush_all(0, 0);
    s.flush_all(u32::MAX, 0);
    s.stats();
}

#[test]
fn expired_items_are_reclaimed_by_eviction_not_evicted() {
    let s = with(1 << 20, 64 << 10, true);
    for i in 0..2000 {
        set(&s, &format!("old{i}"), &[b'x'; 400], 10, 1);
    }
    s.get(b"old1", true, 1);
    for i in 0..1000 {
        set(&s, &format!("new{i}"), &[b'x'; 400], 0, 20);
    }
    let st = s.stats();
    assert!(st.reclaimed > 0, "{st:?}");
    assert!(st.expired_unfetched > 0 && st.expired_unfetched <= st.reclaimed);
    // The hand reclaims dead items it meets and evicts live unvisited ones on its way.
    assert!(
        st.evictions * 10 < st.reclaimed,
        "dead items go first: {st:?}"
    );
    for i in 0..1000 {
        assert!(s.get(format!("new{i}").as_bytes(), true, 20).is_some());
    }
}

#[test]
fn without_evictions_expired_room_is_reused() {
    let s = with(1 << 20, 64 << 10, false);
    let n = fill_until_refused(&s, &[b'x'; 400]);
    assert!(n > 1000);
    // Expire everything: a -M store reclaims dead items rather than refusing.
    for i in 0..n {
        s.touch(fill_key(i).as_bytes(), 5, 1);
    }
    let refusals = s.stats().outofmemory;
    for i in 0..n / 2 {
        assert_eq!(
            set(&s, &format!("n{i}"), &[b'y'; 400], 0, 10),
            StoreOutcome::Stored
        );
    }
    let st = s.stats();
    assert!(st.reclaimed > 0);
    assert_eq!((st.evictions, st.outofmemory), (0, refusals));
}

#[test]
fn out_of_memory_comes_before_the_key_is_looked_at() {
    // memcached 1.6.18 -M -m 2, full of 1000-byte items: `add` of an existing key, and `replace`
    // and `cas` of a missing one, all answer SERVER_ERROR out of memory; a 1-byte `add` of an
    // existing key answers NOT_STORED; a refused `set` leaves no old value behind. (Every key
    // here is as long as the fill's, so no shard has room for any of them.)
    let s = with(1 << 20, 64 << 10, false);
    let value = [b'x'; 1000];
    fill_until_refused(&s, &value);
    let out = |mode, key: &str| s.store(mode, key.as_bytes(), 0, 0, &value, 1);
    assert_eq!(out(StoreMode::Add, "k0000000"), StoreOutcome::OutOfMemory);
    assert_eq!(
        out(StoreMode::Replace, "nokey000"),
        StoreOutcome::OutOfMemory
    );
    assert_eq!(
        out(StoreMode::Cas(1), "nokey000"),
        StoreOutcome::OutOfMemory
    );
    assert_eq!(s.stats().cas_misses, 0);
    assert!(s.get(b"k0000001", true, 1).is_some());
    assert_eq!(out(StoreMode::Set, "k0000001"), StoreOutcome::OutOfMemory);
    // The refused set must not have been a refusal for arena growth only.
    assert!(s.get(b"k0000000", true, 1).is_some());
    assert!(
        s.get(b"k0000001", true, 1).is_none(),
        "a refused set unlinks the old value"
    );
    // The unlink freed room for a small one (here room is per shard, so the same key: memcached
    // would take any key there).
    assert_eq!(
        s.store(StoreMode::Add, b"k0000001", 0, 0, b"x", 1),
        StoreOutcome::Stored
    );
}

#[test]
fn failed_add_keeps_the_item_warm() {
    let s = with(1 << 20, 64 << 10, true);
    set(&s, "hot", &[b'v'; 500], 0, 1);
    for i in 0..20_000 {
        assert_eq!(
            s.store(StoreMode::Add, b"hot", 0, 0, b"x", 1),
            StoreOutcome::NotStored,
            "hot evicted after {i} sets"
        );
        set(&s, &format!("cold{i}"), &[b'v'; 500], 0, 1);
    }
}

#[test]
fn append_prepend_keep_flags_exptime_and_take_a_new_cas() {
    let s = small();
    s.store(StoreMode::Set, b"k", 42, 50, b"mid", 1);
    let before = s.get(b"k", true, 1).expect("hit").cas;
    s.store(StoreMode::Append, b"k", 7, 0, b">", 1);
    s.store(StoreMode::Prepend, b"k", 7, 0, b"<", 1);
    let item = s.get(b"k", true, 1).expect("hit");
    assert_eq!((&item.value[..], item.flags), (&b"<mid>"[..], 42));
    assert!(item.cas > before);
    assert!(s.get(b"k", true, 50).is_none(), "kept the exptime");
    assert_eq!(s.stats().total_items, 3);
}

#[test]
fn append_exactly_to_the_limit() {
    // memcached 1.6.18 -I 1m: `set b` of 1000 bytes, `append b` to a 1048524-byte value is
    // STORED, one more byte is NOT_STORED.
    let s = small();
    s.store(StoreMode::Set, b"b", 0, 0, &[b'x'; 1000], 1);
    let rest = 1024 * 1024 - 48 - 2 - 2 - 8 - 1000;
    assert_eq!(
        s.store(StoreMode::Append, b"b", 0, 0, &vec![b'y'; rest], 1),
        StoreOutcome::Stored
    );
    assert_eq!(
        s.store(StoreMode::Append, b"b", 0, 0, b"z", 1),
        StoreOutcome::TooLarge
    );
}

#[test]
fn incr_counters_padding_and_growth() {
    let s = small();
    s.store(StoreMode::Set, b"n", 9, 30, b"99", 1);
    let cas = s.get(b"n", true, 1).expect("hit").cas;
    assert_eq!(s.delta(b"n", true, 1, 1), DeltaOutcome::Value(100));
    let item = s.get(b"n", true, 1).expect("hit");
    assert_eq!(
        (&item.value[..], item.flags),
        (&b"100"[..], 9),
        "new item, same flags"
    );
    assert!(item.cas > cas);
    assert!(s.get(b"n", true, 30).is_none(), "same exptime");
    s.store(StoreMode::Set, b"n", 0, 0, b"1000", 1);
    assert_eq!(s.delta(b"n", false, 995, 1), DeltaOutcome::Value(5));
    assert_eq!(&s.get(b"n", true, 1).expect("hit").value[..], b"5   ");
    assert_eq!(s.delta(b"n", false, 6, 1), DeltaOutcome::Value(0));
    assert_eq!(s.delta(b"none", false, 1, 1), DeltaOutcome::NotFound);
    s.store(StoreMode::Set, b"e", 0, 0, b"", 1);
    assert_eq!(s.delta(b"e", true, 1, 1), DeltaOutcome::NonNumeric);
    let st = s.stats();
    assert_eq!(
        (st.incr_hits, st.incr_misses, st.decr_hits, st.decr_misses),
        (1, 0, 2, 1)
    );
    // In-place rewrites link no new item (memcached's total_items does not move either):
    // set n, incr to a longer number, set n, set e.
    assert_eq!(st.total_items, 4);
}

#[test]
fn a_delta_told_not_to_pad_stores_the_number_at_its_length() {
    let s = small();
    s.store(StoreMode::Set, b"n", 3, 0, b"100", 1);
    let unpadded = crate::Delta {
        pad: false,
        ..crate::Delta::new(false, 95)
    };
    assert_eq!(s.delta_with(b"n", &unpadded, 1), DeltaOutcome::Value(5));
    let item = s.get(b"n", true, 1).expect("hit");
    assert_eq!((&item.value[..], item.flags), (&b"5"[..], 3));
    // A new item, as memcached makes one.
    assert_eq!(s.stats().total_items, 2);
    // Padded as usual otherwise.
    assert_eq!(s.delta(b"n", true, 5, 1), DeltaOutcome::Value(10));
    assert_eq!(s.delta(b"n", false, 9, 1), DeltaOutcome::Value(1));
    assert_eq!(&s.get(b"n", true, 1).expect("hit").value[..], b"1 ");
}

#[test]
fn incr_refuses_chunked_items() {
    // memcached 1.6.18: key "big", "1" padded with spaces to 524226 bytes increments; 524227
    // bytes is chunked and NON_NUMERIC.
    let s = small();
    let mut value = vec![b' '; 524_226];
    value[0] = b'1';
    s.store(StoreMode::Set, b"big", 0, 0, &value, 1);
    assert_eq!(s.delta(b"big", true, 1, 1), DeltaOutcome::Value(2));
    value.push(b' ');
    s.store(StoreMode::Set, b"big", 0, 0, &value, 1);
    assert_eq!(s.delta(b"big", true, 1, 1), DeltaOutcome::NonNumeric);
}

#[test]
fn incr_out_of_memory_keeps_the_old_value() {
    let s = with(1 << 20, 64 << 10, false);
    // A key longer than what can be left over once full of 1-byte items.
    let key = [b'n'; 100];
    s.store(StoreMode::Set, &key, 0, 0, b"9", 1);
    fill_until_refused(&s, b"x");
    assert_eq!(
        s.delta(&key, false, 1, 1),
        DeltaOutcome::Value(8),
        "in place"
    );
    assert_eq!(s.delta(&key, true, 2, 1), DeltaOutcome::OutOfMemory);
    assert_eq!(&s.get(&key, true, 1).expect("kept").value[..], b"8");
}

#[test]
fn touch_counts_and_keeps_cas() {
    let s = small();
    s.store(StoreMode::Set, b"k", 0, 10, b"v", 1);
    let cas = s.get(b"k", true, 1).expect("hit").cas;
    assert_eq!(s.touch(b"k", 0, 5), TouchOutcome::Touched);
    assert_eq!(s.touch(b"x", 0, 5), TouchOutcome::NotFound);
    assert_eq!(s.get(b"k", true, 100).expect("no longer expires").cas, cas);
    let item = s.get_and_touch(b"k", 200, true, 100).expect("hit");
    assert_eq!(item.cas, cas, "gat keeps the CAS id");
    assert!(s.get(b"k", true, 200).is_none());
    let st = s.stats();
    assert_eq!((st.touch_hits, st.touch_misses), (2, 1));
    assert_eq!((st.get_hits, st.get_misses, st.get_expired), (2, 1, 1));
}

#[test]
fn flush_at_time_zero_and_immediately() {
    for now in [0, 1, 2] {
        let s = small();
        s.store(StoreMode::Set, b"a", 0, 0, b"v", now);
        s.flush_all(0, now);
        assert!(s.get(b"a", true, now).is_none(), "flush_all at now={now}");
        s.store(StoreMode::Set, b"b", 0, 0, b"v", now);
        assert!(
            s.get(b"b", true, now).is_some(),
            "stored after the flush at now={now}"
        );
    }
}

#[test]
fn flush_at_a_past_absolute_time_flushes_nothing_and_cancels_a_pending_one() {
    // memcached 1.6.18: `set a`, `flush_all 2592001` (1970), `get a` still returns a.
    let s = small();
    s.store(StoreMode::Set, b"a", 0, 0, b"v", 100);
    s.flush_all(200, 100);
    s.flush_all(1, 100);
    assert!(s.get(b"a", true, 100).is_some());
    assert!(
        s.get(b"a", true, 300).is_some(),
        "the delayed flush is gone"
    );
    assert_eq!(s.stats().get_flushed, 0);
}

#[test]
fn flush_without_cas_takes_the_whole_second() {
    // memcached 1.6.18 -C: `set a`, `flush_all`, `set b`, `get a b` returns nothing.
    let s = store(64 << 20, true, false);
    s.store(StoreMode::Set, b"a", 0, 0, b"v", 100);
    s.flush_all(0, 100);
    s.store(StoreMode::Set, b"b", 0, 0, b"v", 100);
    assert!(s.get(b"a", true, 100).is_none());
    assert!(s.get(b"b", true, 100).is_none());
    s.store(StoreMode::Set, b"c", 0, 0, b"v", 101);
    assert!(s.get(b"c", true, 101).is_some());
    assert_eq!(s.stats().get_flushed, 2);
}

#[test]
fn flushed_items_count_when_met_and_leave_curr_items_at_stats() {
    let s = small();
    for i in 0..100 {
        set(&s, &format!("k{i}"), b"v", 0, 100);
    }
    s.flush_all(0, 100);
    assert!(s.get(b"k1", true, 100).is_none());
    let st = s.stats();
    assert_eq!((st.get_flushed, st.get_misses), (1, 1));
    assert_eq!(st.curr_items, 0, "swept");
    assert_eq!(st.bytes, st.index_bytes, "only the index is left");
    assert!(s.get(b"k2", true, 100).is_none());
    assert_eq!(s.stats().get_flushed, 1, "swept items are simply absent");
}

#[test]
fn delayed_flush_takes_effect_a_second_early_like_memcached() {
    // memcached sets oldest_live = when - 1 with CAS on: a flush for T is in force from T - 1
    // for items stored up to T - 1.
    let s = small();
    s.store(StoreMode::Set, b"a", 0, 0, b"v", 100);
    s.flush_all(110, 100);
    assert!(s.get(b"a", true, 108).is_some());
    assert_eq!(s.stats().curr_items, 1, "not swept before its time");
    s.store(StoreMode::Set, b"late", 0, 0, b"v", 110);
    assert!(s.get(b"a", true, 109).is_none());
    assert!(s.get(b"late", true, 110).is_some());
}

#[test]
fn a_pending_flush_is_reported_until_it_takes_effect() {
    for use_cas in [true, false] {
        let s = store(64 << 20, true, use_cas);
        assert_eq!(s.pending_flush(100), None);
        s.flush_all(110, 100);
        assert_eq!(s.pending_flush(100), Some(110), "cas {use_cas}");
        // In force from 109 with CAS on (memcached's when - 1), from 110 with -C.
        let in_force = if use_cas { 109 } else { 110 };
        assert_eq!(s.pending_flush(in_force - 1), Some(110));
        assert_eq!(s.pending_flush(in_force), None);
        // Scheduling it again from what it reports gives the same state.
        let again = store(64 << 20, true, use_cas);
        again.flush_all(s.pending_flush(100).expect("pending"), 100);
        assert_eq!(again.flush.load(), s.flush.load());
        s.flush_all(0, 100);
        assert_eq!(s.pending_flush(100), None, "one at once replaces it");
    }
    let s = small();
    s.flush_all(110, 100);
    s.flush_all(1, 100);
    assert_eq!(s.pending_flush(100), None, "cancelled");
}

#[test]
fn reset_zeroes_counters_not_contents() {
    let s = small();
    set(&s, "k", b"v", 0, 1);
    s.get(b"k", true, 1);
    s.get(b"x", true, 1);
    s.delete(b"x", 1);
    s.reset_stats();
    let st = s.stats();
    assert_eq!((st.curr_items, st.get_hits, st.get_misses), (1, 0, 0));
    assert_eq!((st.total_items, st.delete_misses), (0, 0));
    assert!(st.bytes > 0);
}

#[test]
fn bytes_account_items_and_index() {
    let s = small();
    let st = s.stats();
    assert_eq!(st.bytes, st.index_bytes, "only the ghost up front");
    assert!(st.bytes <= 64 * 1024 * 1024 / 64);
    set(&s, "key", b"value", 0, 1);
    let st = s.stats();
    assert_eq!(
        st.bytes - st.index_bytes,
        s.segment_bytes() as u64,
        "one segment"
    );
    assert!(
        st.index_bytes > s.stats().bytes / 1000,
        "the index is charged"
    );
    set(&s, "other", b"value", 0, 1);
    let now = s.stats();
    let grown = (now.bytes - now.index_bytes) - (st.bytes - st.index_bytes);
    assert!(
        grown == 0 || grown == s.segment_bytes() as u64,
        "same segment, or one more"
    );
    s.delete(b"key", 1);
    s.delete(b"other", 1);
    let st = s.stats();
    assert!(st.bytes - st.index_bytes <= 2 * s.segment_bytes() as u64);
}

#[test]
fn concurrent_writers_never_exceed_the_bound() {
    let max = 2 << 20;
    let s = std::sync::Arc::new(with(max, 256 << 10, true));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..20_000usize {
                    let len = (i * 7919 + t * 31) % 3000;
                    let key = format!("t{t}-{}", i % 5000);
                    let value = vec![b'x'; if i % 997 == 0 { 200_000 } else { len }];
                    let out = s.store(StoreMode::Set, key.as_bytes(), 0, 0, &value, 1);
                    assert_eq!(out, StoreOutcome::Stored);
                    if i % 3 == 0 {
                        s.get(key.as_bytes(), true, 1);
                    }
                    assert!(s.stats().bytes <= max as u64);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("writer");
    }
    let st = s.stats();
    assert!(st.bytes <= max as u64 && st.evictions > 0, "{st:?}");
}

#[test]
fn the_bound_moves_while_writers_store() {
    // Writers go on while the bound is lowered and raised again and again: no deadlock, every
    // store answered, and once the writers stop what is held is under the last bound.
    const MB: usize = 1 << 20;
    let s = std::sync::Arc::new(store(16 * MB, true, true));
    let writers: Vec<_> = (0..3)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..40_000usize {
                    let key = format!("t{t}-{i}");
                    let value = vec![b'x'; (i * 7919 + t) % 2000];
                    let out = s.store(StoreMode::Set, key.as_bytes(), 0, 0, &value, 1);
                    assert_eq!(out, StoreOutcome::Stored);
                    s.get(key.as_bytes(), false, 1);
                }
            })
        })
        .collect();
    let mut bound = 16 * MB;
    while !writers.iter().all(|w| w.is_finished()) {
        bound = if bound == 16 * MB { 3 * MB } else { 16 * MB };
        assert!(s.set_max_bytes(bound, 1));
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    for w in writers {
        w.join().expect("writer");
    }
    assert!(s.set_max_bytes(3 * MB, 1));
    let st = s.stats();
    assert!(st.bytes <= 3 * MB as u64 && st.evictions > 0, "{st:?}");
    assert!(st.curr_items > 0);
}

#[test]
fn a_cas_id_a_client_saw_survives_eviction_moves() {
    // A hot item is kept by eviction, which moves it: a CAS id reported by `gets` must still
    // match afterwards (it is written out with the item), so a client's `cas` still succeeds.
    let s = with(1 << 20, 64 << 10, true);
    set(&s, "hot", b"v1", 0, 1);
    let seen = s.get(b"hot", true, 1).expect("hit").cas;
    let mut moved = false;
    for i in 0..20_000 {
        set(&s, &format!("cold{i}"), &[b'x'; 100], 0, 1);
        // Read without showing the CAS: keeps it hot, and must not lose the seen id.
        let now = s.get(b"hot", false, 1).expect("hot stays");
        moved |= s.stats().evictions > 0;
        assert_eq!(now.cas, seen, "after {i} sets");
    }
    assert!(moved, "evictions happened");
    assert_eq!(
        s.store(StoreMode::Cas(seen), b"hot", 0, 0, b"v2", 1),
        StoreOutcome::Stored
    );
    assert_ne!(
        s.get(b"hot", true, 1).expect("hit").cas,
        seen,
        "a new version"
    );
}

#[test]
fn segments_whose_items_all_expired_are_reclaimed_without_being_met() {
    // 4 KiB segments: most items end up in closed ones.
    let s = with(2 << 20, 64 << 10, true);
    assert_eq!(s.segment_bytes(), 4096);
    for i in 0..5_000 {
        set(&s, &format!("short{i}"), &[b'x'; 100], 10, 1);
    }
    set(&s, "forever", b"v", 0, 1);
    let before = s.stats();
    assert_eq!(before.curr_items, 5_001);
    s.reclaim_expired(5);
    assert_eq!(s.stats().curr_items, 5_001, "nothing expired yet");
    // Items are dead at 10; segments holding only them are freed whole, open ones too ("forever"
    // is in segments of its own lifetime class).
    s.reclaim_expired(10);
    let after = s.stats();
    assert_eq!(after.reclaimed, 5_000, "{after:?}");
    assert!(
        after.curr_items == 1 && after.bytes < before.bytes,
        "{after:?}"
    );
    assert!(s.get(b"forever", true, 10).is_some());
    assert_eq!(after.get_expired, 0, "none was met by a command");
}

#[test]
fn meta_states_follow_an_item_through_eviction_moves() {
    use crate::{InvalidateOutcome, MetaGet};
    let s = with(1 << 20, 64 << 10, true);
    set(&s, "hot", b"v1", 0, 1);
    assert_eq!(
        s.meta_invalidate(b"hot", None, None, 1),
        InvalidateOutcome::Invalidated
    );
    let read = MetaGet {
        bump: true,
        ..MetaGet::default()
    };
    let first = s.meta_get(b"hot", &read, 1).expect("hit");
    assert!(first.won && first.item.meta.stale && !first.item.meta.token_sent);
    for i in 0..20_000 {
        set(&s, &format!("cold{i}"), &[b'x'; 100], 0, 1);
        s.get(b"hot", false, 1).expect("hot stays");
    }
    assert!(s.stats().evictions > 0);
    let later = s.meta_get(b"hot", &read, 1).expect("hit");
    assert!(!later.won && later.item.meta.stale && later.item.meta.token_sent);
    // A vivified miss wins once.
    let vivify = MetaGet {
        vivify: Some(100),
        bump: true,
        ..MetaGet::default()
    };
    let made = s.meta_get(b"new", &vivify, 1).expect("vivified");
    assert!(made.created && made.won && made.item.value.is_empty());
    let again = s.meta_get(b"new", &vivify, 1).expect("hit");
    assert!(!again.created && !again.won && again.item.meta.token_sent);
}

/// One step of the model test: which command, on which of a few keys, with what value length.
type Step = (u8, u8, u16);

/// Runs `steps` against a store and a `HashMap` model. With room for everything the store must
/// agree with the model on every reply; in a small store items may be evicted, but a hit must
/// still return exactly the model's latest value and flags (evictions move kept items, and a
/// misplaced entry would show here), and a CAS id a client saw must still work.
fn check_against_model(steps: &[Step], max_bytes: usize) -> Result<(), String> {
    use std::collections::HashMap;
    let roomy = max_bytes >= 64 << 20;
    let s = store(max_bytes, true, true);
    let mut model: HashMap<String, (Vec<u8>, u32)> = HashMap::new();
    for (i, &(op, k, len)) in steps.iter().enumerate() {
        let key = format!("key{k}");
        let value: Vec<u8> = (0..len)
            .map(|j| b'a' + ((i + j as usize) % 26) as u8)
            .collect();
        let flags = u32::from(len) * 3;
        let now = 1;
        let kb = key.as_bytes();
        match op % 6 {
            0 => {
                assert_eq!(
                    s.store(StoreMode::Set, kb, flags, 0, &value, now),
                    StoreOutcome::Stored
                );
                model.insert(key, (value, flags));
            }
            1 => {
                let out = s.store(StoreMode::Append, kb, 0, 0, &value, now);
                if let Some((old, _)) = model.get_mut(&key) {
                    if out == StoreOutcome::Stored {
                        old.extend_from_slice(&value);
                    } else if roomy {
                        return Err(format!("step {i}: append refused: {out:?}"));
                    } else {
                        model.remove(&key);
                    }
                } else if roomy && out != StoreOutcome::NotStored {
                    return Err(format!("step {i}: append to nothing: {out:?}"));
                }
            }
            2 => {
                let out = s.delete(kb, now);
                let had = model.remove(&key).is_some();
                if roomy && (out == DeleteOutcome::Deleted) != had {
                    return Err(format!("step {i}: delete {out:?}, model had {had}"));
                }
            }
            3 => {
                // gets, then a cas with the id seen: must succeed while the item is there.
                if let Some(item) = s.get(kb, true, now) {
                    let evictions = s.stats().evictions;
                    let out = s.store(StoreMode::Cas(item.cas), kb, flags, 0, &value, now);
                    // In a cache this small the room the cas needs can evict the item itself
                    // (kept once for its read, then met again): NOT_FOUND, as memcached answers
                    // for an item evicted between gets and cas. Only then.
                    let evicted_by_its_cas = !roomy
                        && out == StoreOutcome::NotFound
                        && s.stats().evictions > evictions
                        && s.peek(kb, now).is_none();
                    if evicted_by_its_cas {
                        model.remove(&key);
                    } else if out != StoreOutcome::Stored {
                        return Err(format!("step {i}: cas with a fresh id: {out:?}"));
                    } else {
                        model.insert(key, (value, flags));
                    }
                }
            }
            4 => {
                // Gives the item an exptime field: rewritten elsewhere, CAS id kept.
                let before = s.peek(kb, now).map(|item| item.cas);
                s.touch(kb, 1_000 + i as u32, now);
                let after = s.peek(kb, now).map(|item| item.cas);
                if before.is_some() && after.is_some() && before != after {
                    return Err(format!("step {i}: touch changed the CAS id"));
                }
            }
            _ => {
                if let (Some(item), Some((value, _))) =
                    (s.get_and_touch(kb, 0, true, now), model.get(&key))
                {
                    if item.value[..] != value[..] {
                        return Err(format!("step {i}: gat read a wrong value"));
                    }
                }
            }
        }
        // Every key: a hit is the model's value.
        for k in 0..32u8 {
            let key = format!("key{k}");
            match (s.get(key.as_bytes(), false, 1), model.get(&key)) {
                (Some(item), Some((value, flags))) => {
                    if item.value[..] != value[..] || item.flags != *flags {
                        return Err(format!("step {i}: {key} reads a wrong value"));
                    }
                }
                (Some(_), None) => return Err(format!("step {i}: {key} is back from the dead")),
                (None, Some(_)) if roomy => return Err(format!("step {i}: {key} lost")),
                (None, Some(_)) => {
                    model.remove(&key);
                }
                (None, None) => {}
            }
        }
    }
    Ok(())
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    #[test]
    fn agrees_with_a_model_when_everything_fits(
        steps in proptest::collection::vec((0u8..6, 0u8..8, 0u16..2000), 1..200)
    ) {
        proptest::prop_assert_eq!(check_against_model(&steps, 64 << 20), Ok(()));
    }

    #[test]
    fn hits_are_never_stale_or_misplaced_under_eviction(
        steps in proptest::collection::vec((0u8..6, 0u8..32, 0u16..1500), 1..400)
    ) {
        // 96 KiB: 4 KiB segments, fewer than the shards' open ones would take, so eviction and
        // compaction run all the time (every key is read each step, so kept items get moved).
        proptest::prop_assert_eq!(check_against_model(&steps, 96 << 10), Ok(()));
    }

    #[test]
    fn large_items_agree_with_the_model_under_eviction(
        steps in proptest::collection::vec((0u8..6, 0u8..8, 0u16..20_000), 1..300)
    ) {
        // Items above the 4 KiB segment size get segments of their own.
        proptest::prop_assert_eq!(check_against_model(&steps, 256 << 10), Ok(()));
    }
}

#[test]
fn segments_are_grouped_by_lifetime() {
    // -M (nothing evicted, every item in the main queue). Short-lived and immortal items
    // interleaved: each lifetime class has its own segments, so the short-lived ones' segments
    // are freed whole once they expire, though no run of writes was all short-lived.
    let s = with(2 << 20, 64 << 10, false);
    assert_eq!(s.segment_bytes(), 4096);
    for i in 0..4_000 {
        let exptime = if i % 2 == 0 { 30 } else { 0 };
        set(&s, &format!("k{i}"), &[b'x'; 100], exptime, 1);
    }
    s.reclaim_expired(29);
    assert_eq!(s.stats().curr_items, 4_000, "nothing expired yet");
    let before = s.stats().bytes;
    s.reclaim_expired(31);
    let after = s.stats();
    assert_eq!(after.reclaimed, 2_000, "{after:?}");
    assert_eq!(after.curr_items, 2_000, "{after:?}");
    assert!(after.bytes < before, "{after:?}");
    for i in (1..4_000).step_by(2) {
        assert!(
            s.get(format!("k{i}").as_bytes(), false, 31).is_some(),
            "k{i}"
        );
    }
}

#[test]
fn a_touch_past_its_segments_lifetime_moves_the_item() {
    // Evictions on, 4 KiB segments, a store that does not fill, items that live 30 s. A touch
    // gives k0 no end and a gat gives k1 an hour: both of other lifetime classes, so they move
    // to segments of those classes and do not keep their neighbours' bytes past their end. k2
    // gets 40 s, its own class: changed in place.
    let s = with(2 << 20, 64 << 10, true);
    assert_eq!(s.segment_bytes(), 4096);
    for i in 0..400 {
        set(&s, &format!("k{i}"), &[b'x'; 100], 30, 1);
    }
    let cas = s.get(b"k0", true, 2).expect("hit").cas;
    let at = |key: &str| placed(&s, key).expect("stored").0;
    let (k0, k2) = (at("k0"), at("k2"));
    assert_eq!(s.touch(b"k0", 0, 2), TouchOutcome::Touched);
    let k1 = s.get_and_touch(b"k1", 3_600, true, 2).expect("hit");
    assert_eq!(&k1.value[..], &[b'x'; 100]);
    assert_eq!(s.touch(b"k2", 40, 2), TouchOutcome::Touched);
    assert!(!at("k0").same_place(k0), "k0 moved");
    assert!(at("k2").same_place(k2), "k2 changed in place");
    let before = s.stats();
    assert_eq!((before.curr_items, before.total_items), (400, 400));
    assert_eq!((before.touch_hits, before.touch_misses), (3, 0));
    s.reclaim_expired(41);
    let after = s.stats();
    assert_eq!(after.reclaimed, 398, "all but k0 and k1: {after:?}");
    assert_eq!(after.curr_items, 2, "{after:?}");
    let k0 = s.get(b"k0", true, 4_000).expect("k0 never expires");
    assert_eq!(
        (&k0.value[..], k0.cas),
        (&[b'x'; 100][..], cas),
        "kept its CAS id"
    );
    assert_eq!(
        s.get(b"k1", true, 3_599).expect("k1 still lives").cas,
        k1.cas
    );
    assert!(
        s.get(b"k1", true, 3_600).is_none(),
        "k1 expires after an hour"
    );

    // Without evictions a touch must never need room: k stays where it is.
    let m = with(2 << 20, 64 << 10, false);
    set(&m, "k", &[b'x'; 100], 30, 1);
    let k = placed(&m, "k").expect("stored").0;
    assert_eq!(m.touch(b"k", 0, 2), TouchOutcome::Touched);
    assert!(placed(&m, "k").expect("stored").0.same_place(k));
    assert!(m.get(b"k", false, 4_000).is_some());
}

#[test]
fn items_kept_by_eviction_go_to_the_segments_of_their_lifetime() {
    // 4 KiB segments, a cache that overflows. Every item is read once while in small (written
    // at second 1, read at second 3: a read right after the write would not count), so eviction
    // from the small queue keeps it: it moves to the main queue with the others of its segment,
    // which are of its lifetime class.
    let s = with(1 << 20, 64 << 10, true);
    for i in 0..20_000 {
        let key = format!("k{i}");
        let exptime = if i % 2 == 0 { 100 } else { 0 };
        set(&s, &key, &[b'x'; 100], exptime, 1);
        s.get(key.as_bytes(), false, 3);
    }
    let before = s.stats();
    assert!(before.evictions > 0, "the cache overflowed: {before:?}");
    let in_main = |key: &str| placed(&s, key).is_some_and(|(_, queue, _)| queue == Queue::Main);
    let short_in_main = (0..20_000)
        .step_by(2)
        .filter(|i| in_main(&format!("k{i}")))
        .count();
    assert!(
        short_in_main > 1_000,
        "{short_in_main} short-lived items kept in main"
    );
    let short_alive = (0..20_000)
        .step_by(2)
        .filter(|i| s.get(format!("k{i}").as_bytes(), false, 3).is_some())
        .count();
    s.reclaim_expired(101);
    let after = s.stats();
    let reclaimed = after.reclaimed - before.reclaimed;
    assert_eq!(
        reclaimed as usize, short_alive,
        "every short-lived item is reclaimed without being met: {after:?}"
    );
    assert_eq!(
        after.get_expired, before.get_expired,
        "none met by a command"
    );
}

/// Bytes of index per item held (`index_bytes` counts the ghost too).
fn index_bytes_per_item(st: &StoreStats) -> f64 {
    (st.index_bytes - st.ghost_bytes) as f64 / st.curr_items as f64
}

#[test]
fn the_index_stays_small_under_eviction_churn() {
    // A cache at its bound removes an entry for every one it adds. An index that leaves
    // tombstones (hashbrown's, before) fills up with them and doubles early: on this trace it
    // used 22 bytes per item instead of 14, and the store held 11% fewer items.
    let s = store(4 << 20, true, true);
    let mut x = 1u64;
    for i in 0..600_000u64 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // Half the keys from a pool of a million, half seen once.
        let id = if i % 2 == 0 { x >> 44 } else { 1 << 40 | i };
        let key = format!("key:{id:016}");
        if s.get(key.as_bytes(), false, 1).is_none() {
            s.store(StoreMode::Set, key.as_bytes(), 0, 0, &[b'v'; 32], 1);
        }
    }
    let st = s.stats();
    assert!(st.evictions > 400_000, "{st:?}");
    let per_item = index_bytes_per_item(&st);
    // 10.5 since tables grow by a quarter (13.7 when they doubled).
    assert!(
        per_item < 12.0,
        "{per_item:.1} index bytes per item: {st:?}"
    );
}

#[test]
fn the_index_costs_about_nine_bytes_per_item_at_any_count() {
    // Tables that grow by a quarter at 7/8 full are between 7/10 and 7/8 full: 64/9 bytes per
    // slot at that load is 8.1 to 10.2 bytes per item (doubling tables took 8.1 to 16.3, 11.7
    // on average). Checked at every 50,000 items on the way to the first eviction, and there.
    let s = store(32 << 20, true, true);
    let per_item = |s: &Store| index_bytes_per_item(&s.stats());
    let mut seen = Vec::new();
    for i in 0u64.. {
        let key = format!("fill:{i:015}");
        s.store(StoreMode::Set, key.as_bytes(), 0, 0, &[b'v'; 32], 1);
        if i % 1000 == 999 && s.stats().evictions > 0 {
            break;
        }
        if i % 50_000 == 49_999 {
            seen.push(per_item(&s));
        }
    }
    seen.push(per_item(&s));
    assert!(seen.len() >= 9, "{seen:?}");
    for bytes in &seen {
        assert!(
            (8.0..10.3).contains(bytes),
            "{bytes:.2} index bytes per item: {seen:?}"
        );
    }
    let mean = seen.iter().sum::<f64>() / seen.len() as f64;
    assert!(mean < 9.6, "{mean:.2} on average: {seen:?}");
}

#[test]
fn keys_stay_found_while_index_tables_grow() {
    // A growing table moves its entries into its larger buckets a few buckets per insert, and a
    // lookup meanwhile finds the rest in the old buckets. Sets, overwrites (some in place, some
    // longer, so appended), deletes and gets, with every key checked as tables grow, and now
    // and then the maintenance that finishes growths.
    let s = store(64 << 20, true, true);
    let n = 300_000usize;
    let key = |i: usize| format!("grow:{i:012}");
    let mut model: Vec<Option<Vec<u8>>> = vec![None; n];
    let mut growing_seen = 0;
    for i in 0..n {
        let value = key(i).into_bytes();
        s.store(StoreMode::Set, key(i).as_bytes(), 0, 0, &value, 1);
        model[i] = Some(value);
        if i % 3 == 0 {
            let j = i / 2;
            let longer = format!("{}:{i}", key(j)).into_bytes();
            s.store(StoreMode::Set, key(j).as_bytes(), 0, 0, &longer, 1);
            model[j] = Some(longer);
        }
        if i % 5 == 0 {
            let j = i / 3;
            assert_eq!(
                s.delete(key(j).as_bytes(), 1) == DeleteOutcome::Deleted,
                model[j].is_some()
            );
            model[j] = None;
        }
        if i % 7919 == 0 {
            // The server's maintenance, between inserts.
            s.finish_index_growths();
            assert_eq!(s.stats().index_growths, 0);
        }
        if i % 1000 == 999 {
            growing_seen += s.stats().index_growths;
            for j in (i % 61..=i).step_by(61) {
                let got = s
                    .get(key(j).as_bytes(), false, 1)
                    .map(|item| item.value.to_vec());
                assert_eq!(got, model[j], "key {j} after {i} sets");
            }
        }
    }
    assert_eq!(s.stats().evictions, 0);
    assert!(growing_seen > 20, "{growing_seen} growths seen under way");
    for (j, want) in model.iter().enumerate() {
        let got = s
            .get(key(j).as_bytes(), false, 1)
            .map(|item| item.value.to_vec());
        assert_eq!(&got, want, "key {j}");
    }
    let st = s.stats();
    assert_eq!(st.curr_items as usize, model.iter().flatten().count());
}

#[test]
fn index_growths_finish_without_inserts() {
    // Tables left mid-growth when the sets stop keep their old buckets until
    // `finish_index_growths` (the server's once-a-second maintenance) moves the rest.
    let s = store(64 << 20, true, true);
    let key = |i: usize| format!("idle:{i:012}");
    let mut n = 0;
    // Until a shard has more than one step left: a growth from more than 128 buckets (tests
    // spread growths from 32 buckets, and the insert that starts one moves 64).
    while n < 400_000 || s.growth_steps_left().iter().all(|&steps| steps < 2) {
        assert!(n < 1_000_000, "no long growth under way after {n} sets");
        for i in n..n + 100 {
            set(&s, &key(i), key(i).as_bytes(), 0, 1);
        }
        n += 100;
    }
    let before = s.stats();
    s.finish_index_growths();
    let after = s.stats();
    assert_eq!(after.index_growths, 0);
    assert_eq!(after.curr_items, n as u64);
    let freed = before.index_bytes - after.index_bytes;
    assert!(freed > 0, "old buckets freed");
    assert_eq!(
        before.bytes - after.bytes,
        freed,
        "and given back to the budget"
    );
    assert_eq!(after.index_capacity, before.index_capacity);
    for i in 0..n {
        let got = s
            .get(key(i).as_bytes(), false, 1)
            .map(|item| item.value.to_vec());
        assert_eq!(got, Some(key(i).into_bytes()), "key {i}");
    }
    // Nothing left to do.
    let settled = s.stats();
    s.finish_index_growths();
    assert_eq!(s.stats(), settled);
}

#[test]
fn index_growths_finish_alongside_writers() {
    // The server's maintenance runs on a thread of its own while workers insert: every key is
    // found after, and the budget holds exactly the index once the cache is flushed.
    let s = std::sync::Arc::new(store(64 << 20, true, true));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let maintenance = {
        let (s, done) = (s.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                s.finish_index_growths();
            }
        })
    };
    let key = |t: usize, i: usize| format!("w{t}:{i:09}");
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..150_000 {
                    set(&s, &key(t, i), key(t, i).as_bytes(), 0, 1);
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    done.store(true, Ordering::Relaxed);
    maintenance.join().expect("maintenance");
    s.finish_index_growths();
    let st = s.stats();
    assert_eq!(
        (st.curr_items, st.evictions, st.index_growths),
        (300_000, 0, 0)
    );
    for t in 0..2 {
        for i in 0..150_000 {
            let got = s
                .get(key(t, i).as_bytes(), false, 1)
                .map(|item| item.value.to_vec());
            assert_eq!(got, Some(key(t, i).into_bytes()));
        }
    }
    s.flush_all(0, 2);
    let st = s.stats();
    assert_eq!(st.curr_items, 0);
    assert_eq!(st.bytes, st.index_bytes, "only the index is left");
}

#[test]
fn same_size_overwrites_leave_nothing_behind() {
    // A set of a key with a value of the same size writes over its old version, so a store whose
    // keys are overwritten over and over never fills: 200 rounds over 1,000 keys write about
    // 11 MB into a 1 MB store without an eviction, and every key reads its last value.
    let s = with(1 << 20, 64 << 10, true);
    let value = |round: usize, i: usize| format!("{round:08}-{i:023}");
    for i in 0..1_000 {
        set(&s, &format!("key:{i}"), value(0, i).as_bytes(), 0, 1);
    }
    let before = s.stats();
    for round in 1..=200 {
        for i in 0..1_000 {
            let outcome = if i % 2 == 0 {
                set(&s, &format!("key:{i}"), value(round, i).as_bytes(), 0, 1)
            } else {
                let key = format!("key:{i}");
                s.store(
                    StoreMode::Replace,
                    key.as_bytes(),
                    0,
                    0,
                    value(round, i).as_bytes(),
                    1,
                )
            };
            assert_eq!(outcome, StoreOutcome::Stored);
        }
    }
    let after = s.stats();
    assert_eq!(after.evictions, 0, "{after:?}");
    assert_eq!(after.bytes, before.bytes, "no segment was added");
    assert_eq!(after.total_items, before.total_items + 200_000);
    assert_eq!(after.curr_items, 1_000);
    for i in 0..1_000 {
        let item = s.get(format!("key:{i}").as_bytes(), false, 1).expect("hit");
        assert_eq!(item.value, value(200, i).as_bytes());
    }
    // A value of another size takes a new place, as before.
    set(
        &s,
        "key:0",
        b"longer than the others were, by a few bytes",
        0,
        1,
    );
    assert_eq!(
        &s.get(b"key:0", false, 1).expect("hit").value[..],
        b"longer than the others were, by a few bytes"
    );
    assert_eq!(s.stats().curr_items, 1_000);
}

#[test]
fn the_last_live_item_of_a_closed_segment_is_not_overwritten_in_place() {
    // A large item is alone in its segment: a shorter new version is appended, and the old
    // segment is freed at once instead of kept for its padding. One of the same size still takes
    // its place (appending it would take as much).
    let s = with(8 << 20, 1 << 20, true);
    let segment = s.segment_bytes() as u64;
    let big = vec![b'b'; 200_000];
    let held = |s: &Store| {
        let st = s.stats();
        st.bytes - st.index_bytes
    };
    set(&s, "big", &big, 0, 1);
    let total_items = s.stats().total_items;
    assert!(held(&s) >= 200_000);
    let other = vec![b'o'; 200_000];
    set(&s, "big", &other, 0, 1);
    assert!(held(&s) >= 200_000 && held(&s) < 200_000 + segment);
    assert_eq!(s.stats().total_items, total_items + 1);
    assert_eq!(&s.get(b"big", false, 1).expect("hit").value[..], &other[..]);
    set(&s, "big", b"small", 0, 1);
    assert!(
        held(&s) <= 2 * segment,
        "the large segment is gone: {} bytes held",
        held(&s)
    );
    assert_eq!(&s.get(b"big", false, 1).expect("hit").value[..], b"small");
    assert_eq!(s.stats().evictions, 0);
}

#[test]
fn an_overwrite_never_reuses_a_cas_id_a_client_saw() {
    let s = small();
    set(&s, "k", b"one", 0, 1);
    let seen = s.get(b"k", true, 1).expect("hit").cas;
    // Same size, but the old id was shown: the new version needs a new one.
    set(&s, "k", b"two", 0, 1);
    assert_eq!(
        s.store(StoreMode::Cas(seen), b"k", 0, 0, b"bad", 1),
        StoreOutcome::Exists
    );
    // Not shown since: written in place. Its id is still newer than any the client saw.
    set(&s, "k", b"six", 0, 1);
    let now_seen = s.get(b"k", true, 1).expect("hit");
    assert_eq!(&now_seen.value[..], b"six");
    assert!(now_seen.cas > seen);
    assert_eq!(
        s.store(StoreMode::Cas(now_seen.cas), b"k", 0, 0, b"ten", 1),
        StoreOutcome::Stored
    );
    assert_eq!(
        s.store(StoreMode::Cas(now_seen.cas), b"k", 0, 0, b"bad", 1),
        StoreOutcome::Exists
    );
    assert_eq!(&s.get(b"k", false, 1).expect("hit").value[..], b"ten");
}

#[test]
fn an_overwrite_with_another_lifetime_goes_to_that_lifetime_segments() {
    // An immortal item overwritten by one of the same length that expires (4 bytes less value,
    // 4 bytes of exptime field) must not stay in the immortal segment: there, reclaiming the
    // expired would have to wait for its neighbours.
    let s = with(2 << 20, 64 << 10, true);
    for i in 0..2_000 {
        set(&s, &format!("k{i}"), &[b'x'; 104], 0, 1);
    }
    for i in (0..2_000).step_by(2) {
        set(&s, &format!("k{i}"), &[b'y'; 100], 30, 1);
    }
    s.reclaim_expired(31);
    let after = s.stats();
    assert_eq!(after.reclaimed, 1_000, "{after:?}");
    assert_eq!(after.curr_items, 1_000, "{after:?}");
}

#[test]
fn without_evictions_an_overwrite_still_needs_room_first() {
    // -M keeps memcached's order: room for the new version is found before the key is looked
    // at, so a full store refuses a set even of an existing key with a value of the same size.
    let s = with(1 << 20, 64 << 10, false);
    fill_until_refused(&s, &[b'v'; 32]);
    assert_eq!(
        set(&s, &fill_key(0), &[b'w'; 32], 0, 1),
        StoreOutcome::OutOfMemory
    );
}

#[test]
fn an_overwrite_before_a_pending_flush_is_flushed_with_it() {
    // Written over in place before the flush's time: flushed as memcached flushes any item
    // stored before it. Stored after it: a new place, and kept.
    let s = small();
    set(&s, "a", b"old", 0, 100);
    s.flush_all(110, 100);
    set(&s, "a", b"new", 0, 105);
    assert_eq!(&s.get(b"a", false, 108).expect("hit").value[..], b"new");
    assert!(s.get(b"a", false, 109).is_none());
    set(&s, "a", b"end", 0, 110);
    assert_eq!(&s.get(b"a", false, 111).expect("hit").value[..], b"end");
}

#[test]
fn counters_count_in_place_until_a_client_sees_their_cas_id() {
    // 100 counters of 10 digits, incremented 100,000 times in all in a 1 MB store, with a new
    // key stored after each round. Written in place, the counters take no more room, so the
    // 1,000 new keys all fit. Were each count a new version, the dead ones would share their
    // segments with the new keys, and eviction would have to make room.
    let s = with(1 << 20, 64 << 10, true);
    for i in 0..100 {
        set(&s, &format!("n{i}"), b"1000000000", 0, 1);
    }
    for round in 0..1_000 {
        for i in 0..100 {
            let key = format!("n{i}");
            assert_eq!(
                s.delta(key.as_bytes(), true, 1, 1),
                DeltaOutcome::Value(1_000_000_001 + round)
            );
        }
        set(&s, &format!("other{round}"), &[b'x'; 100], 0, 1);
    }
    let after = s.stats();
    assert_eq!(after.evictions, 0, "{after:?}");
    assert_eq!(after.curr_items, 1_100, "{after:?}");
    assert_eq!(after.total_items, 1_100);
    let seen = s.get(b"n0", true, 1).expect("hit").cas;
    assert_eq!(
        s.delta(b"n0", true, 1, 1),
        DeltaOutcome::Value(1_000_001_001)
    );
    assert_eq!(
        s.store(StoreMode::Cas(seen), b"n0", 0, 0, b"0", 1),
        StoreOutcome::Exists
    );
    let now_seen = s.get(b"n0", true, 1).expect("hit").cas;
    assert!(now_seen > seen);
    assert_eq!(
        s.store(StoreMode::Cas(now_seen), b"n0", 0, 0, b"0", 1),
        StoreOutcome::Stored
    );
}

#[test]
fn shorter_overwrites_keep_their_place_padded_until_eviction_moves_them() {
    // A set of a key with a shorter value writes over the old version, padded to its length:
    // 200 rounds of values of 1 to 40 bytes over 1,000 keys first stored with 40 bytes fit in a
    // 1 MB store without an eviction, and every key reads its last value.
    let s = with(1 << 20, 64 << 10, true);
    let value = |round: usize, i: usize| {
        let text = format!("{round:05}:{i:05}:{}", "v".repeat(40));
        text[..1 + (round * 7 + i) % 40].to_string()
    };
    for i in 0..1_000 {
        set(&s, &format!("key:{i}"), "x".repeat(40).as_bytes(), 0, 1);
    }
    let before = s.stats();
    for round in 1..=200 {
        for i in 0..1_000 {
            let mode = if i % 2 == 0 {
                StoreMode::Set
            } else {
                StoreMode::Replace
            };
            let key = format!("key:{i}");
            let v = value(round, i);
            let outcome = s.store(mode, key.as_bytes(), 0, 0, v.as_bytes(), 1);
            assert_eq!(outcome, StoreOutcome::Stored);
        }
    }
    let after = s.stats();
    assert_eq!(after.evictions, 0, "{after:?}");
    assert_eq!(after.bytes, before.bytes, "no segment was added");
    let pad_of = |key: &str| {
        let (shard, _, hash, _) = s.locked(key.as_bytes(), 1);
        shard
            .lookup(hash, key.as_bytes())
            .map(|e| shard.header(e).pad)
    };
    for i in 0..1_000 {
        let key = format!("key:{i}");
        // Read later than the writes (a read right after is not a reuse).
        let item = s.get(key.as_bytes(), false, 10).expect("hit");
        assert_eq!(item.value, value(200, i).as_bytes());
        // 40 - len spare bytes: one of them holds the pad count, unless there are none.
        let spare = 40 - item.value.len();
        assert_eq!(pad_of(&key), Some(spare.saturating_sub(1)), "{key}");
    }
    // The keys were read: eviction keeps them, moving them without their padding.
    for i in 0..20_000 {
        set(&s, &format!("other:{i}"), &[b'o'; 40], 0, 10);
    }
    assert!(s.stats().evictions > 0);
    let mut kept = 0;
    for i in 0..1_000 {
        let key = format!("key:{i}");
        if let Some(item) = s.get(key.as_bytes(), false, 10) {
            assert_eq!(item.value, value(200, i).as_bytes());
            assert_eq!(pad_of(&key), Some(0), "{key}");
            kept += 1;
        }
    }
    assert!(kept > 500, "{kept} of the read keys kept");
    // A longer value than the slot takes a new place.
    set(&s, "key:1", &[b'L'; 60], 0, 10);
    assert_eq!(
        &s.get(b"key:1", false, 10).expect("hit").value[..],
        &[b'L'; 60][..]
    );
}

/// Every item a full dump shows, by key: (exptime, CAS id, fetched, size).
fn dumped(
    s: &Store,
    now: RelTime,
) -> std::collections::HashMap<Vec<u8>, (RelTime, u64, bool, usize)> {
    let mut cursor = DumpCursor::default();
    let mut seen = std::collections::HashMap::new();
    let mut steps = 0;
    while s.dump_step(&mut cursor, now, true, |item| {
        let old = seen.insert(
            item.key.to_vec(),
            (item.exptime, item.cas, item.fetched, item.size),
        );
        assert!(old.is_none(), "{:?} shown twice", item.key);
    }) {
        steps += 1;
        assert!(steps < 100_000, "the dump ends");
    }
    seen
}

#[test]
fn a_dump_shows_each_live_item_once() {
    // 4 KiB segments: 5,000 items fill many in every shard.
    let s = with(4 << 20, 64 << 10, true);
    for i in 0..5_000 {
        set(&s, &format!("k{i}"), &[b'x'; 100], 0, 1);
    }
    // Overwritten in place and appended: shown once, as the version in the index.
    set(&s, "k0", b"short", 0, 1);
    set(&s, "k1", &[b'y'; 300], 0, 1);
    s.delete(b"k2", 1);
    // Expired before now, and expiring now: memcached's metadump shows the second.
    set(&s, "past", b"p", 9, 1);
    set(&s, "now", b"n", 10, 1);
    let cas = s.get(b"k3", true, 1).expect("hit").cas;
    // A dump that does not show CAS ids (`stats cachedump`) leaves them unmarked.
    let mut cursor = DumpCursor::default();
    while s.dump_step(&mut cursor, 10, false, |_| {}) {}
    assert!(!placed(&s, "k5").expect("stored").0.cas_seen());
    let all = dumped(&s, 10);
    assert_eq!(all.len(), 5_000, "k2 and past left out, now shown");
    assert!(!all.contains_key(&b"k2"[..]) && !all.contains_key(&b"past"[..]));
    assert_eq!(all[&b"now"[..]].0, 10);
    assert_eq!(all[&b"k3"[..]], (0, cas, true, 3 + 2 + 100));
    assert!(!all[&b"k4"[..]].2, "not fetched");
    assert!(all[&b"k1"[..]].3 > 300);
    // A CAS id shown is kept when the item moves (here: a touch that gives it an exptime).
    let k5 = all[&b"k5"[..]].1;
    assert!(placed(&s, "k5").expect("stored").0.cas_seen());
    s.touch(b"k5", 1_000, 10);
    assert_eq!(s.get(b"k5", true, 10).expect("hit").cas, k5);
    s.flush_all(10, 10);
    assert!(dumped(&s, 10).is_empty(), "flushed");
}

#[test]
fn dumps_run_alongside_evicting_writers() {
    // A small cache that evicts, overwrites and touches while another thread dumps it over and
    // over: every dump ends, and each item it shows is one a writer stored (key and size agree).
    let s = std::sync::Arc::new(with(2 << 20, 64 << 10, true));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..40_000usize {
                    let key = format!("w{t}:{:05}", i % 20_000);
                    let len = 20 + i % 50;
                    set(
                        &s,
                        &key,
                        &vec![b'v'; len],
                        if i % 3 == 0 { 0 } else { 100 },
                        1,
                    );
                    if i % 7 == 0 {
                        s.touch(key.as_bytes(), 0, 1);
                    }
                }
            })
        })
        .collect();
    let dumper = {
        let (s, done) = (s.clone(), done.clone());
        std::thread::spawn(move || {
            let mut dumps = 0;
            while !done.load(Ordering::Relaxed) || dumps == 0 {
                let mut cursor = DumpCursor::default();
                while s.dump_step(&mut cursor, 1, true, |item| {
                    let key = std::str::from_utf8(item.key).expect("a writer's key");
                    assert!(key.starts_with('w') && key.len() == 8, "{key}");
                    assert!((20..70).contains(&item.value.len()), "{item:?}");
                    assert!(item.size > item.value.len() + key.len());
                }) {}
                dumps += 1;
            }
            dumps
        })
    };
    for w in writers {
        w.join().expect("writer");
    }
    done.store(true, Ordering::Relaxed);
    let dumps = dumper.join().expect("dumper");
    assert!(dumps > 0);
    assert!(s.stats().evictions > 0, "the writers evicted");
}

#[test]
fn stats_describe_segments_items_and_the_latest_eviction() {
    let s = with(1 << 20, 64 << 10, true);
    let st = s.stats();
    assert_eq!((st.segments, st.segments_in_use, st.item_bytes), (0, 0, 0));
    set(&s, "a", &[b'x'; 100], 0, 5);
    s.get(b"a", true, 30);
    let st = s.stats();
    assert_eq!((st.segments, st.segments_in_use), (1, 1));
    assert!(st.item_bytes > 100, "{st:?}");
    assert_eq!(st.oldest_item_age, 25, "written at 5, asked at 30");
    let one = st.item_bytes;
    set(&s, "b", &[b'x'; 100], 0, 30);
    assert_eq!(s.stats().item_bytes, 2 * one, "two items of one size");
    s.delete(b"a", 30);
    s.delete(b"b", 30);
    let st = s.stats();
    assert_eq!(
        (st.segments_in_use, st.item_bytes, st.oldest_item_age),
        (0, 0, 0)
    );
    assert!(st.segments > 0, "open segments stay, empty");

    // Items with an exptime written at 40 fill most of a new cache; at 100, new ones that never
    // expire push the oldest out.
    let s = with(1 << 20, 64 << 10, true);
    for i in 0..1500 {
        set(&s, &format!("old{i}"), &[b'x'; 400], 10_000, 40);
    }
    assert_eq!(s.stats().evictions, 0);
    let mut i = 0;
    while s.stats().evictions == 0 {
        set(&s, &format!("new{i}"), &[b'x'; 400], 0, 100);
        i += 1;
    }
    let st = s.stats();
    assert_eq!(st.evicted_nonzero, st.evictions, "only old items went");
    assert_eq!(st.evicted_time, 60, "from a segment opened 60 s before");
    assert_eq!(st.oldest_item_age, 60);
    assert_eq!(st.segments_in_use, st.segments, "{st:?}");
}

#[test]
fn watching_reads_lengths_without_side_effects_and_logs_evictions_only_when_asked() {
    let s = with(1 << 20, 64 << 10, true);
    set(&s, "a", b"hello", 0, 5);
    assert_eq!(s.value_len(b"a", 5), Some(5));
    assert_eq!(s.value_len(b"b", 5), None);
    let st = s.stats();
    assert_eq!((st.get_hits, st.get_misses), (0, 0), "not counted");
    assert!(!placed(&s, "a").unwrap().0.fetched(), "not marked read");
    // A dead item reads as missing, and stays for the command that meets it to count.
    set(&s, "short", b"x", 7, 5);
    assert_eq!(s.value_len(b"short", 7), None);
    assert!(placed(&s, "short").is_some(), "not dropped");
    assert_eq!(s.stats().get_expired, 0);

    // Nothing is kept before a watcher asks.
    let fill = |prefix: &str, from: usize, now| {
        for i in from..from + 3000 {
            set(&s, &format!("{prefix}{i}"), &[b'x'; 400], 10_000, now);
        }
    };
    fill("early", 0, 5);
    assert!(s.stats().evictions > 0);
    assert_eq!(s.take_evictions(), (Vec::new(), 0));

    s.log_evictions(true);
    let before = s.stats().evictions;
    fill("old", 0, 40);
    let (logged, dropped) = s.take_evictions();
    assert_eq!(logged.len() as u64 + dropped, s.stats().evictions - before);
    assert_eq!(dropped, 0, "under each shard's limit");
    for e in &logged {
        assert!(
            e.key.starts_with(b"early") || e.key.starts_with(b"old"),
            "{e:?}"
        );
        assert_eq!((e.exptime, e.value_len, e.fetched), (10_000, 400, false));
        assert!(e.written == 5 || e.written == 40, "{e:?}");
    }
    assert_eq!(s.take_evictions(), (Vec::new(), 0), "taken once");

    // Past 1,024 a shard only counts them.
    let before = s.stats().evictions;
    for round in 0..12 {
        fill("many", round * 3000, 50);
    }
    let (logged, dropped) = s.take_evictions();
    assert!(
        dropped > 0 && logged.len() <= SHARDS * 1024,
        "{}",
        logged.len()
    );
    assert_eq!(logged.len() as u64 + dropped, s.stats().evictions - before);

    s.log_evictions(false);
    fill("late", 0, 60);
    assert_eq!(s.take_evictions(), (Vec::new(), 0));
}

#[test]
fn compared_cas_ids_refuse_atomically_and_count_as_memcached_does() {
    use crate::{Delta, InvalidateOutcome, MetaGet};
    for use_cas in [true, false] {
        let s = store(64 * 1024 * 1024, true, use_cas);
        set(&s, "k", b"5", 0, 1);
        let cas = s.peek(b"k", 1).expect("hit").cas;
        let other = cas + 1;
        // delete: a refused compare keeps the item; counted as a miss only when asked (md).
        assert_eq!(
            s.delete_if(b"k", Some(other), false, 1),
            DeleteOutcome::Exists
        );
        assert_eq!(s.stats().delete_misses, 0, "use_cas {use_cas}");
        assert_eq!(
            s.delete_if(b"k", Some(other), true, 1),
            DeleteOutcome::Exists
        );
        assert_eq!(s.stats().delete_misses, 1);
        assert!(s.get(b"k", true, 1).is_some());
        // incr: a refused compare counts nothing and changes nothing.
        let refused = Delta {
            compare_cas: Some(other),
            ..Delta::new(true, 1)
        };
        assert_eq!(s.delta_with(b"k", &refused, 1), DeltaOutcome::Exists);
        // An empty value is refused before the compare, as memcached's do_add_delta does.
        set(&s, "empty", b"", 0, 1);
        assert_eq!(
            s.delta_with(b"empty", &refused, 1),
            DeltaOutcome::NonNumeric
        );
        let matching = Delta {
            compare_cas: Some(cas),
            ..refused
        };
        assert_eq!(s.delta_with(b"k", &matching, 1), DeltaOutcome::Value(6));
        let st = s.stats();
        assert_eq!((st.incr_hits, st.incr_misses), (1, 0));
        // A miss the caller fills (ma N, binary incr with an initial value) is not counted.
        let creating = Delta {
            count_miss: false,
            ..Delta::new(false, 1)
        };
        assert_eq!(s.delta_with(b"new", &creating, 1), DeltaOutcome::NotFound);
        assert_eq!(s.delta(b"new", false, 1, 1), DeltaOutcome::NotFound);
        assert_eq!(s.stats().decr_misses, 1);
        // md I: a refused compare is a delete miss, a marked item no delete hit.
        let current = s.peek(b"k", 1).expect("hit").cas;
        assert_eq!(
            s.meta_invalidate(b"k", Some(current + 1), None, 1),
            InvalidateOutcome::Exists
        );
        assert_eq!(
            s.meta_invalidate(b"k", Some(current), None, 1),
            InvalidateOutcome::Invalidated
        );
        let st = s.stats();
        assert_eq!((st.delete_hits, st.delete_misses), (0, 2));
        // mg with T: a miss is a get miss, a hit a touch hit.
        let touching = MetaGet {
            touch: Some(100),
            bump: true,
            ..MetaGet::default()
        };
        assert!(s.meta_get(b"none", &touching, 1).is_none());
        assert!(s.meta_get(b"k", &touching, 1).is_some());
        let st = s.stats();
        assert_eq!(
            (st.get_misses, st.touch_misses, st.touch_hits, st.get_hits),
            (1, 0, 1, 1)
        );
        // The compare that matches deletes.
        let cas = s.peek(b"k", 1).expect("hit").cas;
        assert_eq!(
            s.delete_if(b"k", Some(cas), true, 1),
            DeleteOutcome::Deleted
        );
        assert_eq!(s.stats().delete_hits, 1);
    }
}

#[test]
fn mg_compares_its_recache_before_or_after_its_touch_as_ordered_and_a_failing_read_counts_nothing()
{
    use crate::MetaGet;
    let s = small();
    set(&s, "a", b"v", 1000, 1);
    set(&s, "b", b"v", 1000, 1);
    // R before T compares the exptime the item had (1000, not before 500): no win; T after it
    // still applies, and the hit reports the exptime it had.
    let r_then_t = MetaGet {
        bump: true,
        touch: Some(100),
        recache_before: Some(500),
        ..MetaGet::default()
    };
    let hit = s.meta_get(b"a", &r_then_t, 1).expect("hit");
    assert!(!hit.won);
    assert_eq!((hit.exptime_before, hit.item.exptime), (1000, 100));
    // T before R compares the new exptime (100, before 500): a win.
    let t_then_r = MetaGet {
        recache_after_touch: true,
        ..r_then_t
    };
    assert!(s.meta_get(b"b", &t_then_r, 1).expect("hit").won);
    assert_eq!(s.stats().touch_hits, 2);
    // A read whose reply fails after the lookup (memcached's opaque too long): the touch it
    // reached applies, but the hit counts as nothing and wins nothing; a miss still counts.
    set(&s, "c", b"v", 1000, 1);
    let failing = MetaGet {
        fails: true,
        ..t_then_r
    };
    let before = s.stats();
    let hit = s.meta_get(b"c", &failing, 1).expect("hit");
    assert!(!hit.won && !hit.item.meta.token_sent);
    assert_eq!(s.peek(b"c", 1).expect("hit").exptime, 100);
    assert!(s.meta_get(b"none", &failing, 1).is_none());
    let after = s.stats();
    assert_eq!(
        (after.get_hits, after.touch_hits, after.get_misses),
        (before.get_hits, before.touch_hits, before.get_misses + 1)
    );
    // A created item takes the vivify exptime as it is, whatever the touch says.
    let vivify = MetaGet {
        vivify: Some(0),
        touch: Some(100),
        bump: true,
        ..MetaGet::default()
    };
    let made = s.meta_get(b"new", &vivify, 1).expect("created");
    assert!(made.created && made.won);
    assert_eq!((made.exptime_before, made.item.exptime), (0, 0));
}

#[test]
fn a_delta_with_an_exptime_sets_it_after_the_change_and_counts_no_touch() {
    let s = small();
    set(&s, "n", b"10", 0, 1);
    let retimed = Delta {
        exptime: Some(50),
        ..Delta::new(true, 5)
    };
    // In place, then as a longer number written anew.
    assert_eq!(s.delta_with(b"n", &retimed, 1), DeltaOutcome::Value(15));
    assert_eq!(s.peek(b"n", 1).expect("hit").exptime, 50);
    let longer = Delta {
        exptime: Some(70),
        ..Delta::new(true, 100)
    };
    assert_eq!(s.delta_with(b"n", &longer, 1), DeltaOutcome::Value(115));
    let item = s.peek(b"n", 1).expect("hit");
    assert_eq!((&item.value[..], item.exptime), (&b"115"[..], 70));
    // A refused change leaves the exptime as it was.
    set(&s, "text", b"abc", 0, 1);
    assert_eq!(s.delta_with(b"text", &retimed, 1), DeltaOutcome::NonNumeric);
    assert_eq!(s.peek(b"text", 1).expect("hit").exptime, 0);
    let st = s.stats();
    assert_eq!((st.touch_hits, st.incr_hits), (0, 2));
    // An exptime already past: the counter is gone.
    let expiring = Delta {
        exptime: Some(1),
        ..Delta::new(true, 1)
    };
    assert_eq!(s.delta_with(b"n", &expiring, 2), DeltaOutcome::Value(116));
    assert!(s.peek(b"n", 2).is_none());
}

#[test]
fn an_index_sized_for_a_load_takes_it_without_growing() {
    let s = store(64 << 20, true, true);
    let keys: Vec<String> = (0..200_000).map(|i| format!("restored:{i}")).collect();
    let mut plan = s.index_plan();
    for key in &keys {
        s.plan_key(&mut plan, key.as_bytes(), 5);
    }
    assert_eq!(plan.keys(), keys.len());
    let empty = s.stats();
    let reserved = s.presize_index(&plan);
    let sized = s.stats();
    assert_eq!(sized.index_bytes - empty.index_bytes, reserved as u64);
    assert_eq!(sized.bytes - empty.bytes, reserved as u64, "charged to -m");
    assert!(sized.index_capacity >= keys.len() as u64);
    for key in &keys {
        assert_eq!(
            s.store(StoreMode::Set, key.as_bytes(), 0, 0, b"value", 1),
            StoreOutcome::Stored
        );
    }
    let loaded = s.stats();
    assert_eq!(loaded.curr_items, keys.len() as u64);
    // No table grew: the same buckets, and no growth under way.
    assert_eq!(
        (
            loaded.index_bytes,
            loaded.index_capacity,
            loaded.index_growths
        ),
        (sized.index_bytes, sized.index_capacity, 0)
    );
    // The sizes growth would have reached: about nine bytes per item, as without a plan.
    let per_item = index_bytes_per_item(&loaded);
    assert!((8.0..10.5).contains(&per_item), "{per_item:.1}");
    assert!(keys.iter().all(|k| s.get(k.as_bytes(), false, 1).is_some()));
    // Sized once: a second plan leaves tables that hold entries as they are.
    assert_eq!(s.presize_index(&plan), 0);
}

#[test]
fn an_index_plan_for_more_than_fits_changes_nothing() {
    // A restart into a smaller -m: an index sized for every saved key would take the room of
    // the items that do fit.
    let s = store(16 << 20, true, true);
    let mut plan = s.index_plan();
    for i in 0..400_000 {
        s.plan_key(&mut plan, format!("k{i}").as_bytes(), 32);
    }
    let before = s.stats();
    assert_eq!(s.presize_index(&plan), 0);
    assert_eq!(s.stats().index_bytes, before.index_bytes);
    // Stores still find room (by eviction), and the whole stays within the bound.
    for i in 0..400_000 {
        let key = format!("k{i}");
        assert_eq!(
            s.store(StoreMode::Set, key.as_bytes(), 0, 0, &[b'v'; 32], 1),
            StoreOutcome::Stored,
            "{key}"
        );
    }
    let st = s.stats();
    assert!(st.evictions > 0 && st.bytes <= 16 << 20, "{st:?}");
    // Half as many fit: then it is sized.
    let s = store(16 << 20, true, true);
    let mut plan = s.index_plan();
    for i in 0..100_000 {
        s.plan_key(&mut plan, format!("k{i}").as_bytes(), 32);
    }
    assert!(s.presize_index(&plan) > 0);
}

#[test]
fn a_restart_gives_each_item_back_its_queue_its_reads_and_its_order() {
    // 4 KiB segments in 4 MB: the later sets evict, and keys read while in small go to main.
    let s = with(4 << 20, 64 << 10, true);
    for i in 0..20_000 {
        set(&s, &format!("k{i}"), &[b'x'; 60], 0, 1);
    }
    for i in (0..20_000).step_by(2) {
        for _ in 0..1 + usize::from(i % 4 == 0) {
            s.get(format!("k{i}").as_bytes(), false, 10);
        }
    }
    for i in 0..40_000 {
        set(&s, &format!("n{i}"), &[b'y'; 60], 0, 20);
    }
    for i in (0..20_000).step_by(3) {
        s.get(format!("k{i}").as_bytes(), false, 30);
    }
    let dump = |s: &Store| {
        let mut cursor = DumpCursor::default();
        let mut items = Vec::new();
        while s.dump_step(&mut cursor, 30, false, |item| {
            items.push((item.key.to_vec(), item.value.to_vec(), item.standing));
        }) {}
        items
    };
    let before = dump(&s);
    let mains = before.iter().filter(|i| i.2.main).count();
    assert!(
        mains > 1_000 && mains < before.len(),
        "{mains} of {}",
        before.len()
    );
    assert!(before.iter().any(|i| i.2.main && i.2.freq > 0));
    assert!(before.iter().any(|i| !i.2.main && i.2.freq > 0));
    // A little more memory: stored again in other shards (the hasher is keyed anew), the same
    // items can need a few more segments, and an eviction during the load would change standings.
    let restarted = with(5 << 20, 64 << 10, true);
    for (key, value, standing) in &before {
        let options = WriteOptions {
            standing: Some(*standing),
            ..WriteOptions::default()
        };
        let stored = restarted.store_with(StoreMode::Set, key, 0, 0, value, 30, options);
        assert_eq!(stored, StoreOutcome::Stored);
    }
    let after = dump(&restarted);
    assert_eq!(restarted.stats().evictions, 0);
    assert_eq!(after.len(), before.len());
    let standing_before: std::collections::HashMap<_, _> =
        before.iter().map(|(k, _, st)| (k.clone(), *st)).collect();
    for (key, _, standing) in &after {
        assert_eq!(standing_before[key], *standing, "{key:?}");
    }
    // Each queue of each shard holds its items in the order they had: a dump shows items oldest
    // first (by when their segments opened), and so did the one restored from.
    let rank: std::collections::HashMap<_, _> = before
        .iter()
        .enumerate()
        .map(|(i, (k, _, _))| (k.clone(), i))
        .collect();
    let mut last = std::collections::HashMap::new();
    for (key, _, standing) in &after {
        let shard = Store::shard_of(restarted.hash_key(key).0);
        let previous = last.insert((shard, standing.main), rank[key]);
        assert!(previous < Some(rank[key]), "{key:?} came back out of order");
    }
    // Without its standing, an item comes back new: in small, unread.
    let plain = with(4 << 20, 64 << 10, true);
    let (key, value, _) = before.iter().find(|i| i.2.main).expect("one in main");
    plain.store(StoreMode::Set, key, 0, 0, value, 30);
    let key = std::str::from_utf8(key).expect("utf-8");
    let (e, queue, _) = placed(&plain, key).expect("stored");
    assert_eq!((queue, e.freq()), (Queue::Small, 0));
}
