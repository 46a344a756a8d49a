//! Hot paths of the store: a get that hits, a set that replaces, and gets from several threads
//! at once (to see whether the shard locks serialise readers).
//! Run: `cargo bench -p ferrocache-store`.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ferrocache_store::{Store, StoreConfig, StoreMode};

const KEYS: usize = 100_000;

fn filled() -> Store {
    let store = Store::new(StoreConfig {
        max_bytes: 256 * 1024 * 1024,
        item_size_max: 1024 * 1024,
        evictions: true,
        use_cas: true,
    });
    for i in 0..KEYS {
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

criterion_group!(benches, get_hit, set, parallel_gets);
criterion_main!(benches);
