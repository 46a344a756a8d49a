//! Hot paths of the store: a get that hits, a set that replaces (with a value of the same size or
//! a shorter one), gets from several threads at once (to see whether the shard locks serialise
//! readers), and 10-key gets with and without the prefetches the server's multi-key get makes.
//! Run: `cargo bench -p ferrocache-store`.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ferrocache_store::{Store, StoreConfig, StoreMode};

const KEYS: usize = 100_000;

fn filled() -> Store {
    filled_with(KEYS, 256 * 1024 * 1024)
}

/// A store of `max_bytes` holding `items` keys `key:00000000`... with 32-byte values.
fn filled_with(items: usize, max_bytes: usize) -> Store {
    let store = Store::new(StoreConfig {
        max_bytes,
        item_size_max: 1024 * 1024,
        evictions: true,
        use_cas: true,
    });
    for i in 0..items {
        let key = format!("key:{i:08}");
        store.store(StoreMode::Set, key.as_bytes(), 0, 0, &[b'v'; 32], 100);
    }
    store
}

fn keys() -> Vec<Vec<u8>> {
    (0..KEYS)
        .map(|i| format!("key:{:08}", (i * 7919) % KEYS).into_bytes())
        .collect()
}

fn get_hit(c: &mut Criterion) {
    let store = filled();
    let keys = keys();
    let mut i = 0;
    c.bench_function("get_hit_32B", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            store.get(&keys[i], true, 100).expect("filled")
        })
    });
}

fn set(c: &mut Criterion) {
    let store = filled();
    let keys = keys();
    let value = [b'w'; 32];
    let mut i = 0;
    c.bench_function("set_replace_32B", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            store.store(StoreMode::Set, &keys[i], 0, 0, &value, 100)
        })
    });
    // Values of 16 to 32 bytes over keys stored with 32: every set is a shorter (padded) or
    // same-size overwrite in place.
    c.bench_function("set_replace_shorter_16_to_32B", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            store.store(StoreMode::Set, &keys[i], 0, 0, &value[..16 + i % 17], 100)
        })
    });
    // Sets into a store at its limit: every set evicts.
    let full = Store::new(StoreConfig {
        max_bytes: 4 * 1024 * 1024,
        item_size_max: 1024 * 1024,
        evictions: true,
        use_cas: true,
    });
    c.bench_function("set_evicting_32B", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            full.store(StoreMode::Set, &keys[i], 0, 0, &value, 100)
        })
    });
    // Sets of keys never stored before into a store with room for all of them: the index grows
    // as they come, so each set pays its share of the tables' rehashes (a fresh store per
    // sample, made and dropped outside the timing).
    c.bench_function("set_new_key_32B", |b| {
        b.iter_custom(|iters| {
            let store = Store::new(StoreConfig {
                max_bytes: 64 * 1024 * 1024 + iters as usize * 128,
                item_size_max: 1024 * 1024,
                evictions: true,
                use_cas: true,
            });
            let mut key = *b"new:0000000000000000";
            let start = std::time::Instant::now();
            for n in 0..iters {
                for (at, byte) in key[4..].iter_mut().enumerate() {
                    *byte = b"0123456789abcdef"[(n >> (60 - 4 * at)) as usize & 15];
                }
                store.store(StoreMode::Set, &key, 0, 0, &value, 100);
            }
            let elapsed = start.elapsed();
            assert_eq!(store.stats().curr_items, iters, "no evictions");
            elapsed
        })
    });
}

/// A 10-key get as the server answers it (values copied out under the lock), four ways: no
/// prefetch; index buckets prefetched 8 keys ahead (from the second key); buckets 8 and items 4
/// keys ahead; and as the server does it now, the first keys too (all the first 9 buckets, then
/// the items of the first 4, before the first lookup). Keys in a scattered order, over 100k and
/// over 1M items (the latter well past the L2 and the TLB's reach).
fn multiget(c: &mut Criterion) {
    const WIDTH: usize = 10;
    const BUCKET_AHEAD: usize = 8;
    const ITEM_AHEAD: usize = 4;
    for items in [KEYS, 10 * KEYS] {
        let store = filled_with(items, 1024 * 1024 * 1024);
        let keys: Vec<Vec<u8>> = (0..items)
            .map(|i| format!("key:{:08}", (i * 7919) % items).into_bytes())
            .collect();
        let mut group = c.benchmark_group(format!("multiget_{WIDTH}_of_{items}"));
        group.throughput(Throughput::Elements(WIDTH as u64));
        for (name, buckets, items_too, first_keys) in [
            ("no_prefetch", false, false, false),
            ("buckets", true, false, false),
            ("buckets_and_items", true, true, false),
            ("first_keys_too", true, true, true),
        ] {
            let mut next = 0;
            let mut out = Vec::with_capacity(64 * 1024);
            group.bench_function(name, |b| {
                b.iter(|| {
                    out.clear();
                    let batch = &keys[next..next + WIDTH];
                    next = (next + WIDTH) % (items - WIDTH);
                    let hashes: Vec<_> = batch.iter().map(|k| store.hash_key(k)).collect();
                    for (i, key) in batch.iter().enumerate() {
                        if i == 0 && first_keys {
                            for hash in hashes.iter().take(BUCKET_AHEAD + 1) {
                                store.prefetch(*hash);
                            }
                            for hash in hashes.iter().take(ITEM_AHEAD) {
                                store.prefetch_item(*hash);
                            }
                        } else if i == 0 && buckets {
                            for hash in hashes.iter().skip(1).take(BUCKET_AHEAD) {
                                store.prefetch(*hash);
                            }
                        } else if buckets {
                            if let Some(hash) = hashes.get(i + BUCKET_AHEAD) {
                                store.prefetch(*hash);
                            }
                        }
                        if items_too {
                            if let Some(hash) = hashes.get(i + ITEM_AHEAD) {
                                store.prefetch_item(*hash);
                            }
                        }
                        store
                            .get_hashed_with(key, hashes[i], false, 100, |item| {
                                out.extend_from_slice(item.value)
                            })
                            .expect("stored");
                    }
                    out.len()
                })
            });
        }
        group.finish();
    }
}

fn parallel_gets(c: &mut Criterion) {
    let store = Arc::new(filled());
    let keys = Arc::new(keys());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per_thread = 10_000;
    let mut group = c.benchmark_group("parallel");
    group.throughput(Throughput::Elements((threads * per_thread) as u64));
    group.bench_function(format!("get_hit_{threads}_threads"), |b| {
        b.iter_batched(
            || (),
            |()| {
                std::thread::scope(|scope| {
                    for t in 0..threads {
                        let (store, keys) = (&store, &keys);
                        scope.spawn(move || {
                            for j in 0..per_thread {
                                let key = &keys[(t * 31 + j * 13) % KEYS];
                                store.get(key, true, 100).expect("filled");
                            }
                        });
                    }
                })
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, get_hit, set, multiget, parallel_gets);
criterion_main!(benches);
