use super::*;

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
    let item = s.get(b"k", 100).expect("hit");
    assert_eq!((&item.value[..], item.flags), (&b"v"[..], 3));
    assert_eq!(s.delete(b"k", 100), DeleteOutcome::Deleted);
    assert_eq!(s.delete(b"k", 100), DeleteOutcome::NotFound);
    assert!(s.get(b"k", 100).is_none());
    let st = s.stats();
    assert_eq!(
        (st.get_hits, st.get_misses, st.delete_hits, st.delete_misses),
        (1, 1, 1, 1)
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
    let item = s.get(b"k", 1).expect("hit");
    assert_eq!(&item.value[..], b"abz");
    assert_eq!(item.flags, 7, "append keeps the flags");
}

#[test]
fn cas_ids_change_with_every_write() {
    let s = small();
    s.store(StoreMode::Set, b"k", 0, 0, b"a", 1);
    let first = s.get(b"k", 1).expect("hit").cas;
    assert_eq!(
        s.store(StoreMode::Cas(first + 1), b"k", 0, 0, b"b", 1),
        StoreOutcome::Exists
    );
    assert_eq!(
        s.store(StoreMode::Cas(first), b"k", 0, 0, b"b", 1),
        StoreOutcome::Stored
    );
    let second = s.get(b"k", 1).expect("hit").cas;
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
        s.get(b"k", 1).expect("hit").cas,
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
                        s.get(key.as_bytes(), 1).expect("hit").cas
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
    assert_eq!(s.get(b"k", 1).expect("hit").cas, 0);
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
    assert!(s.get(b"k", 109).is_some());
    assert!(s.get(b"k", 110).is_none(), "expired when exptime <= now");
    assert_eq!(s.stats().get_expired, 1);
    assert_eq!(s.touch(b"k", 0, 110), TouchOutcome::NotFound);
}

#[test]
fn gat_counts_touches_and_sets_exptime() {
    let s = small();
    s.store(StoreMode::Set, b"k", 0, 0, b"v", 100);
    assert!(s.get_and_touch(b"k", 105, 100).is_some());
    assert!(s.get_and_touch(b"x", 105, 100).is_none());
    assert!(s.get(b"k", 105).is_none());
    let st = s.stats();
    assert_eq!((st.touch_hits, st.touch_misses, st.get_hits), (1, 1, 0));
}

#[test]
fn flush_now_spares_later_writes_in_the_same_second() {
    let s = small();
    s.store(StoreMode::Set, b"old", 0, 0, b"v", 100);
    s.flush_all(100, 100);
    s.store(StoreMode::Set, b"new", 0, 0, b"v", 100);
    assert!(s.get(b"old", 100).is_none());
    assert!(s.get(b"new", 100).is_some());
    assert_eq!(s.stats().get_flushed, 1);
}

#[test]
fn delayed_flush() {
    let s = small();
    s.store(StoreMode::Set, b"a", 0, 0, b"v", 100);
    s.flush_all(110, 100);
    assert!(s.get(b"a", 105).is_some(), "not yet");
    s.store(StoreMode::Set, b"b", 0, 0, b"v", 111);
    assert!(s.get(b"a", 110).is_none(), "gone at the flush time");
    assert!(s.get(b"b", 111).is_some(), "stored after the flush time");
}

#[test]
fn incr_decr_like_memcached() {
    let s = small();
    s.store(StoreMode::Set, b"n", 5, 0, b"10", 1);
    assert_eq!(s.delta(b"n", false, 1, 1), DeltaOutcome::Value(9));
    assert_eq!(
        &s.get(b"n", 1).expect("hit").value[..],
        b"9 ",
        "padded in place"
    );
    assert_eq!(s.delta(b"n", true, 991, 1), DeltaOutcome::Value(1000));
    assert_eq!(&s.get(b"n", 1).expect("hit").value[..], b"1000");
    assert_eq!(s.delta(b"n", false, 5000, 1), DeltaOutcome::Value(0));
    s.store(StoreMode::Set, b"n", 0, 0, b"18446744073709551615", 1);
    assert_eq!(s.delta(b"n", true, 2, 1), DeltaOutcome::Value(1));
    s.store(StoreMode::Set, b"t", 0, 0, b"abc", 1);
    assert_eq!(s.delta(b"t", true, 1, 1), DeltaOutcome::NonNumeric);
    assert_eq!(s.delta(b"none", true, 1, 1), DeltaOutcome::NotFound);
    assert_eq!(s.get(b"n", 1).expect("hit").flags, 0);
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
        s.get(b"k", 1).expect("old value stays").value.len(),
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
    assert!(s.get(b"key9999", 1).is_some(), "the newest item survives");

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
    assert!(s.get(b"key0", 1).is_some(), "-M keeps what it has");
}

#[test]
fn clock_keeps_recently_read_items() {
    let s = store(2 * 1024 * 1024, true, true);
    let value = vec![b'v'; 1000];
    s.store(StoreMode::Set, b"hot", 0, 0, &value, 1);
    for i in 0..10_000 {
        assert!(
            s.get(b"hot", 1).is_some(),
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
                2 => { s.get(key.as_bytes(), 1); }
                _ => { s.delete(key.as_bytes(), 1); }
            }
            proptest::prop_assert!(s.stats().bytes <= 1024 * 1024);
        }
    }
}
