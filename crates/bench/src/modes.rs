//! The three measurements and the report they produce.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};

use crate::servers::Target;
use crate::wire::{Op, Wire};

/// One target's results: metric name and value, in display order.
pub struct Row {
    pub target: String,
    pub metrics: Vec<(&'static str, f64)>,
}

/// All targets' results.
pub struct Report {
    pub rows: Vec<Row>,
}

impl Report {
    pub fn from_rows(rows: Vec<Row>) -> Report {
        Report { rows }
    }

    /// Metric names in order, each once: the first row's, then any only later rows have.
    pub fn metric_names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        for (name, _) in self.rows.iter().flat_map(|r| &r.metrics) {
            if !names.contains(name) {
                names.push(*name);
            }
        }
        names
    }

    pub fn value(&self, row: usize, metric: &str) -> Option<f64> {
        self.rows[row]
            .metrics
            .iter()
            .find(|(n, _)| *n == metric)
            .map(|(_, v)| *v)
    }

    /// One line per metric, one column per target, then `target/baseline` ratios.
    pub fn table(&self) -> String {
        let mut out = format!("{:<32}", "metric");
        for row in &self.rows {
            out.push_str(&format!("{:>16}", row.target));
        }
        for row in self.rows.iter().skip(1) {
            let name = format!("{}/{}", row.target, self.rows[0].target);
            out.push_str(&format!("{:>w$}", name, w = name.len().max(14) + 2));
        }
        out.push('\n');
        for metric in self.metric_names() {
            out.push_str(&format!("{metric:<32}"));
            for i in 0..self.rows.len() {
                out.push_str(&format!("{:>16}", format_value(self.value(i, metric))));
            }
            let base = self.value(0, metric);
            for i in 1..self.rows.len() {
                let ratio = match (self.value(i, metric), base) {
                    (Some(v), Some(b)) if b != 0.0 => format!("{:.2}x", v / b),
                    _ => "-".to_string(),
                };
                let w = self.rows[i].target.len() + self.rows[0].target.len() + 1;
                out.push_str(&format!("{ratio:>w$}", w = w.max(14) + 2));
            }
            out.push('\n');
        }
        out
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.rows
                .iter()
                .map(|r| {
                    let mut m = serde_json::Map::new();
                    m.insert("target".into(), r.target.clone().into());
                    for (name, value) in &r.metrics {
                        m.insert((*name).into(), (*value).into());
                    }
                    serde_json::Value::Object(m)
                })
                .collect(),
        )
    }
}

fn format_value(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.4}"),
    }
}

/// Fixed-width keys, so every server sees the same key sizes.
fn key(i: u64, size: usize) -> Vec<u8> {
    let mut k = format!("{i:0width$}", width = size).into_bytes();
    k.truncate(size.max(1));
    k
}

/// Picks key indices uniformly (`s == 0`) or by Zipf with exponent `s`; index 0 is the hottest.
pub struct KeyPicker {
    zipf: Option<Zipf<f64>>,
    n: u64,
}

impl KeyPicker {
    pub fn new(n: u64, s: f64) -> anyhow::Result<KeyPicker> {
        let zipf = if s > 0.0 {
            Some(Zipf::new(n, s).map_err(|e| anyhow::anyhow!("zipf: {e}"))?)
        } else {
            None
        };
        Ok(KeyPicker { zipf, n })
    }

    pub fn pick(&self, rng: &mut StdRng) -> u64 {
        match &self.zipf {
            Some(z) => (z.sample(rng) as u64).clamp(1, self.n) - 1,
            None => rng.gen_range(0..self.n),
        }
    }
}

async fn stat(wire: &mut Wire, name: &str) -> anyhow::Result<f64> {
    stat_if_any(wire, name)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no stat {name}"))
}

/// A numeric stat, or none when the server does not report it (`nullcached` stores nothing and
/// reports no `curr_items`).
async fn stat_if_any(wire: &mut Wire, name: &str) -> anyhow::Result<Option<f64>> {
    Ok(wire
        .stats()
        .await?
        .into_iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.parse().ok()))
}

#[derive(Args, Debug, Clone)]
pub struct ThroughputArgs {
    /// Client connections.
    #[arg(long, default_value_t = 50)]
    pub connections: usize,
    /// Requests sent per write on each connection (1 = one request at a time).
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// Keys per get request.
    #[arg(long, default_value_t = 1)]
    pub multiget: usize,
    /// Share of requests that are gets (the rest are sets).
    #[arg(long, default_value_t = 0.9)]
    pub get_ratio: f64,
    /// Distinct keys, all stored before the run.
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,
    #[arg(long, default_value_t = 20)]
    pub key_size: usize,
    #[arg(long, default_value_t = 64)]
    pub value_size: usize,
    /// When above `--value-size`: every set's value has a length drawn uniformly from
    /// `--value-size` to this (values whose size changes when they are written again).
    #[arg(long, default_value_t = 0)]
    pub value_size_max: usize,
    /// Zipf exponent of key popularity; 0 for uniform.
    #[arg(long, default_value_t = 0.0)]
    pub zipf: f64,
    /// Seconds of measured load per target.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
}

impl ThroughputArgs {
    /// The length of a set's value: `--value-size`, or drawn up to `--value-size-max`.
    fn value_len(&self, rng: &mut StdRng) -> usize {
        if self.value_size_max > self.value_size {
            rng.gen_range(self.value_size..=self.value_size_max)
        } else {
            self.value_size
        }
    }
}

pub async fn throughput(target: &Target, args: &ThroughputArgs) -> anyhow::Result<Row> {
    let keys: Arc<Vec<Vec<u8>>> = Arc::new((0..args.keys).map(|i| key(i, args.key_size)).collect());
    let value = Arc::new(vec![b'v'; args.value_size.max(args.value_size_max)]);
    let mut loader = Wire::connect(&target.addr).await?;
    let mut rng = StdRng::seed_from_u64(0);
    for chunk in keys.chunks(100) {
        let ops: Vec<Op<'_>> = chunk
            .iter()
            .map(|k| Op::Set(k, &value[..args.value_len(&mut rng)]))
            .collect();
        loader.batch(&ops).await?;
    }
    let cpu_before = target.cpu_seconds();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.duration);
    let mut tasks = Vec::new();
    for c in 0..args.connections {
        let (keys, value, args, addr) = (
            keys.clone(),
            value.clone(),
            args.clone(),
            target.addr.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut wire = Wire::connect(&addr).await?;
            let mut rng = StdRng::seed_from_u64(c as u64 + 1);
            let picker = KeyPicker::new(keys.len() as u64, args.zipf)?;
            let mut hist = Histogram::<u64>::new(3)?;
            let (mut requests, mut key_ops, mut hits, mut misses) = (0u64, 0u64, 0u64, 0u64);
            let mut get_keys: Vec<Vec<&[u8]>> = vec![Vec::new(); args.pipeline];
            while Instant::now() < deadline {
                let mut ops = Vec::with_capacity(args.pipeline);
                for slot in get_keys.iter_mut() {
                    slot.clear();
                    if rng.gen_bool(args.get_ratio) {
                        for _ in 0..args.multiget {
                            slot.push(&keys[picker.pick(&mut rng) as usize]);
                        }
                    }
                }
                for slot in &get_keys {
                    if slot.is_empty() {
                        let len = args.value_len(&mut rng);
                        ops.push(Op::Set(
                            &keys[picker.pick(&mut rng) as usize],
                            &value[..len],
                        ));
                        key_ops += 1;
                    } else {
                        ops.push(Op::Get(slot));
                        key_ops += slot.len() as u64;
                    }
                }
                let t = Instant::now();
                let replies = wire.batch(&ops).await?;
                let micros = t.elapsed().as_micros().max(1) as u64;
                hist.record_n(micros, ops.len() as u64)?;
                requests += ops.len() as u64;
                hits += replies.hits;
                misses += replies.misses;
                anyhow::ensure!(replies.errors == 0, "server answered with errors");
            }
            anyhow::Ok((hist, requests, key_ops, hits, misses))
        }));
    }
    let mut hist = Histogram::<u64>::new(3)?;
    let (mut requests, mut key_ops, mut hits, mut misses) = (0u64, 0u64, 0u64, 0u64);
    for task in tasks {
        let (h, r, k, hi, mi) = task.await??;
        hist.add(h)?;
        requests += r;
        key_ops += k;
        hits += hi;
        misses += mi;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = match (cpu_before, target.cpu_seconds()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let mut metrics = vec![
        ("requests/s", requests as f64 / elapsed),
        ("keys/s", key_ops as f64 / elapsed),
        ("latency p50 (us)", hist.value_at_quantile(0.5) as f64),
        ("latency p99 (us)", hist.value_at_quantile(0.99) as f64),
        ("latency p99.9 (us)", hist.value_at_quantile(0.999) as f64),
        ("hit ratio", hits as f64 / (hits + misses).max(1) as f64),
    ];
    if let Some(cpu) = cpu {
        metrics.push(("server CPU us/request", cpu * 1e6 / requests.max(1) as f64));
    }
    if let Some(held) = stat_if_any(&mut loader, "curr_items").await? {
        metrics.push(("items held at end", held));
    }
    Ok(Row {
        target: target.name.clone(),
        metrics,
    })
}

#[derive(Args, Debug, Clone)]
pub struct FillArgs {
    #[arg(long, default_value_t = 20)]
    pub key_size: usize,
    #[arg(long, default_value_t = 32)]
    pub value_size: usize,
    /// Give up after this many sets without an eviction.
    #[arg(long, default_value_t = 100_000_000)]
    pub max_items: u64,
}

pub async fn fill(target: &Target, args: &FillArgs) -> anyhow::Result<Row> {
    let mut wire = Wire::connect(&target.addr).await?;
    let limit = stat(&mut wire, "limit_maxbytes").await?;
    let value = vec![b'v'; args.value_size];
    let mut next = 0u64;
    let mut held = 0.0;
    while next < args.max_items {
        let keys: Vec<Vec<u8>> = (next..next + 1000).map(|i| key(i, args.key_size)).collect();
        next += 1000;
        let ops: Vec<Op<'_>> = keys.iter().map(|k| Op::Set(k, &value)).collect();
        let replies = wire.batch(&ops).await?;
        anyhow::ensure!(replies.errors == 0, "sets refused (is -M on?)");
        if next.is_multiple_of(10_000) && stat(&mut wire, "evictions").await? > 0.0 {
            held = stat(&mut wire, "curr_items").await?;
            break;
        }
    }
    anyhow::ensure!(held > 0.0, "no eviction after {} items", args.max_items);
    let mb = limit / (1024.0 * 1024.0);
    let mut metrics = vec![
        ("items at first eviction", held),
        ("items per MB of -m", held / mb),
        ("bytes of -m per item", limit / held),
    ];
    if let Some(rss) = target.rss_bytes() {
        metrics.push(("RSS (MB)", rss as f64 / (1024.0 * 1024.0)));
        metrics.push(("RSS / -m", rss as f64 / limit));
    }
    Ok(Row {
        target: target.name.clone(),
        metrics,
    })
}

#[derive(Args, Debug, Clone)]
pub struct HitRatioArgs {
    /// Zipf exponent of key popularity.
    #[arg(long, default_value_t = 0.9)]
    pub zipf: f64,
    /// Distinct keys in the trace.
    #[arg(long, default_value_t = 1_000_000)]
    pub working_set: u64,
    /// Requests replayed (the first fifth warms the cache and is not counted).
    #[arg(long, default_value_t = 3_000_000)]
    pub requests: u64,
    /// Every this many requests, a scan of `scan_length` keys never seen again (0: no scans).
    #[arg(long, default_value_t = 0)]
    pub scan_every: u64,
    #[arg(long, default_value_t = 0)]
    pub scan_length: u64,
    #[arg(long, default_value_t = 20)]
    pub key_size: usize,
    #[arg(long, default_value_t = 32)]
    pub value_size: usize,
    /// When above `--value-size`: each key's value has its own length, from `--value-size` to
    /// this (fixed per key by a hash of it, the same for every target).
    #[arg(long, default_value_t = 0)]
    pub value_size_max: usize,
    #[arg(long, default_value_t = 64)]
    pub pipeline: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Share of keys (chosen by key, the same for every target) stored with `--exptime`.
    #[arg(long, default_value_t = 0.0)]
    pub expiring_share: f64,
    /// Seconds the expiring keys live (relative exptime of their sets).
    #[arg(long, default_value_t = 0)]
    pub exptime: u32,
    /// Requests per second to replay at (0: as fast as the target answers). With expiring keys,
    /// a fixed rate makes every target see the same expiries at the same points of the trace.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// After each batch's sets, get each key just set once more (not counted): a client that
    /// reads back what it stored, or hands the value to a second reader right away.
    #[arg(long)]
    pub read_after_set: bool,
    /// `--in-process` only: at this fraction of the trace, restart the store as a graceful
    /// restart with `-e` does (every live item stored again into a new store, oldest first,
    /// with its standing in eviction).
    #[arg(long, value_name = "FRACTION")]
    pub restart_at: Option<f64>,
    /// With `--restart-at`: items come back as new ones (in the small queue, unread), as
    /// restarts did before items kept their standing.
    #[arg(long)]
    pub restart_forgets: bool,
}

impl HitRatioArgs {
    /// The length of key `i`'s value.
    fn value_len(&self, i: u64) -> usize {
        if self.value_size_max > self.value_size {
            let spread = i.wrapping_add(1).wrapping_mul(0xD6E8_FEB8_6659_FD93) >> 32;
            self.value_size + spread as usize % (self.value_size_max - self.value_size + 1)
        } else {
            self.value_size
        }
    }

    /// The relative exptime key `i` is stored with, if it is one of the expiring keys.
    fn exptime_of(&self, i: u64) -> Option<u32> {
        (self.exptime > 0 && expiring(i, self.expiring_share)).then_some(self.exptime)
    }
}

/// Is key `i` one of the `share` of keys stored with an exptime? A fixed hash of the key, so every
/// target and every run agrees.
pub fn expiring(i: u64, share: f64) -> bool {
    let spread = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
    (spread as f64) < share * (1u64 << 53) as f64
}

/// The request trace: Zipf-popular keys, with optional scans of one-time keys mixed in. The same
/// seed gives every target the same trace.
pub fn trace(args: &HitRatioArgs) -> anyhow::Result<Vec<u64>> {
    anyhow::ensure!(args.pipeline > 0, "--pipeline must be at least 1");
    let picker = KeyPicker::new(args.working_set, args.zipf)?;
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut out = Vec::with_capacity(args.requests as usize);
    let mut scan_key = args.working_set;
    while (out.len() as u64) < args.requests {
        if args.scan_every > 0
            && (out.len() as u64).is_multiple_of(args.scan_every)
            && !out.is_empty()
        {
            for _ in 0..args.scan_length {
                out.push(scan_key);
                scan_key += 1;
            }
        }
        out.push(picker.pick(&mut rng));
    }
    out.truncate(args.requests as usize);
    Ok(out)
}

const HELD_AT_END: &str = "items held at end";

/// A hit-ratio replay's misses past the warm-up (the first fifth of the trace), over all keys and
/// over working-set keys only (scan keys are one-time keys, a miss for any cache).
struct Tally {
    warm: usize,
    working_set: u64,
    counted: u64,
    missed: u64,
    counted_ws: u64,
    missed_ws: u64,
}

impl Tally {
    fn new(trace: &[u64], args: &HitRatioArgs) -> Tally {
        Tally {
            warm: trace.len() / 5,
            working_set: args.working_set,
            counted: 0,
            missed: 0,
            counted_ws: 0,
            missed_ws: 0,
        }
    }

    /// Request number `at` of the trace, for key number `key`.
    fn record(&mut self, at: usize, key: u64, hit: bool) {
        if at >= self.warm {
            self.counted += 1;
            self.missed += u64::from(!hit);
            if key < self.working_set {
                self.counted_ws += 1;
                self.missed_ws += u64::from(!hit);
            }
        }
    }

    /// `held`: a count of items and what it counts (the items held at the end of the replay, or
    /// for the optimum, which holds nothing by then, the most it held at once).
    fn row(&self, target: &str, (held_name, held): (&'static str, f64)) -> Row {
        Row {
            target: target.to_string(),
            metrics: vec![
                (
                    "miss ratio",
                    self.missed as f64 / self.counted.max(1) as f64,
                ),
                (
                    "miss ratio, working-set keys",
                    self.missed_ws as f64 / self.counted_ws.max(1) as f64,
                ),
                (held_name, held),
                ("cache / working set", held / self.working_set as f64),
            ],
        }
    }
}

pub async fn hit_ratio(target: &Target, args: &HitRatioArgs) -> anyhow::Result<Row> {
    let trace = trace(args)?;
    let mut tally = Tally::new(&trace, args);
    let mut wire = Wire::connect(&target.addr).await?;
    let value = vec![b'v'; args.value_size.max(args.value_size_max)];
    let mut per_op = Vec::with_capacity(args.pipeline);
    let started = tokio::time::Instant::now();
    for (chunk_index, chunk) in trace.chunks(args.pipeline).enumerate() {
        if args.rate > 0 {
            let due = (chunk_index * args.pipeline) as f64 / args.rate as f64;
            tokio::time::sleep_until(started + Duration::from_secs_f64(due)).await;
        }
        let keys: Vec<Vec<u8>> = chunk.iter().map(|&i| key(i, args.key_size)).collect();
        let singles: Vec<[&[u8]; 1]> = keys.iter().map(|k| [k.as_slice()]).collect();
        let gets: Vec<Op<'_>> = singles.iter().map(|k| Op::Get(k)).collect();
        per_op.clear();
        wire.batch_detailed(&gets, Some(&mut per_op)).await?;
        // The requests of this batch that missed: their keys are set (and read back).
        let missed: Vec<usize> = (0..chunk.len()).filter(|&j| per_op[j] == 0).collect();
        let sets: Vec<Op<'_>> = missed
            .iter()
            .map(|&j| {
                let (k, i) = (&keys[j], chunk[j]);
                let value = &value[..args.value_len(i)];
                match args.exptime_of(i) {
                    Some(exptime) => Op::SetExpiring(k, value, exptime),
                    None => Op::Set(k, value),
                }
            })
            .collect();
        let base = chunk_index * args.pipeline;
        for (i, &hits) in per_op.iter().enumerate() {
            tally.record(base + i, chunk[i], hits > 0);
        }
        if !sets.is_empty() {
            wire.batch(&sets).await?;
            if args.read_after_set {
                let again: Vec<Op<'_>> = missed.iter().map(|&j| Op::Get(&singles[j])).collect();
                wire.batch(&again).await?;
            }
        }
    }
    let held = stat(&mut wire, "curr_items").await?;
    Ok(tally.row(&target.name, (HELD_AT_END, held)))
}

/// [`hit_ratio`] on ferrocached's store itself, in this process: the same trace and the same
/// look-aside pattern (a batch of `--pipeline` gets, then a set for each miss) on a store made
/// as the server would make it, without sockets. Ten times quicker than through a server, for
/// trying eviction changes on long traces; the miss ratios agree with ferrocached's to about a
/// thousandth (the keys' spread over the shards is keyed anew in each process). Time is the trace's: with
/// `--rate`, request `i` is at second `i / rate`, and expired segments are reclaimed each second
/// as the server does.
pub fn hit_ratio_in_process(
    name: &str,
    config: ferrocache_store::StoreConfig,
    args: &HitRatioArgs,
) -> anyhow::Result<Row> {
    use ferrocache_store::{Store, StoreMode};
    anyhow::ensure!(
        args.exptime == 0 || args.rate > 0,
        "an in-process replay with --exptime needs --rate (its clock)"
    );
    let trace = trace(args)?;
    let mut tally = Tally::new(&trace, args);
    let mut store = Store::new(config.clone());
    // The first batch at or past the restart's place.
    let restart_batch = args
        .restart_at
        .map(|at| (at * trace.len() as f64) as usize)
        .map(|at| at.div_ceil(args.pipeline));
    let value = vec![b'v'; args.value_size.max(args.value_size_max)];
    let mut misses = Vec::with_capacity(args.pipeline);
    let mut now = 1;
    for (chunk_index, chunk) in trace.chunks(args.pipeline).enumerate() {
        let base = chunk_index * args.pipeline;
        if restart_batch == Some(chunk_index) {
            store = restarted(&store, config.clone(), now, !args.restart_forgets);
        }
        if let Some(elapsed) = (base as u64).checked_div(args.rate) {
            let second = 1 + u32::try_from(elapsed)?;
            if second != now {
                now = second;
                store.reclaim_expired(now);
            }
        }
        misses.clear();
        for (i, &k) in chunk.iter().enumerate() {
            let name = key(k, args.key_size);
            let hit = store.get_with(&name, false, now, |_| ()).is_some();
            tally.record(base + i, k, hit);
            if !hit {
                misses.push((k, name));
            }
        }
        for (k, name) in &misses {
            let exptime = args
                .exptime_of(*k)
                .map_or(0, |exptime| now.saturating_add(exptime));
            let value = &value[..args.value_len(*k)];
            store.store(StoreMode::Set, name, 0, exptime, value, now);
        }
        if args.read_after_set {
            for (_, name) in &misses {
                store.get_with(name, false, now, |_| ());
            }
        }
    }
    Ok(tally.row(name, (HELD_AT_END, store.stats().curr_items as f64)))
}

/// A new store holding `old`'s live items, as ferrocached's restart with `-e` gives them back
/// (`crates/server/src/restart.rs`, without the file): each stored again, in the order a dump
/// shows them (oldest first), with its standing in eviction if `standing`.
fn restarted(
    old: &ferrocache_store::Store,
    config: ferrocache_store::StoreConfig,
    now: u32,
    standing: bool,
) -> ferrocache_store::Store {
    use ferrocache_store::{DumpCursor, Store, StoreMode, WriteOptions};
    let mut items = Vec::new();
    let mut cursor = DumpCursor::default();
    while old.dump_step(&mut cursor, now, false, |item| {
        items.push((
            item.key.to_vec(),
            item.value.to_vec(),
            (item.flags, item.exptime),
            item.standing,
        ));
    }) {}
    let store = Store::new(config);
    let mut plan = store.index_plan();
    for (key, value, _, _) in &items {
        store.plan_key(&mut plan, key, value.len());
    }
    store.presize_index(&plan);
    for (key, value, (flags, exptime), kept) in items {
        let options = WriteOptions {
            standing: standing.then_some(kept),
            ..WriteOptions::default()
        };
        store.store_with(StoreMode::Set, &key, flags, exptime, &value, now, options);
    }
    store
}

/// [`crate::belady`]'s optimum on the same trace, holding at most `items` keys: the fewest misses
/// any cache of that many items could have (to within the replay's batching: a real target sets
/// a batch's misses after its gets, so a key asked for twice in one batch misses twice there).
pub fn hit_ratio_belady(items: usize, args: &HitRatioArgs) -> anyhow::Result<Row> {
    let trace = trace(args)?;
    let mut tally = Tally::new(&trace, args);
    let most = crate::belady::replay(&trace, items, |at, key, hit| tally.record(at, key, hit))?;
    Ok(tally.row(
        &format!("belady({items})"),
        ("items held at most", most as f64),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_values_vary_in_length_only_when_asked() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: ThroughputArgs,
        }
        use clap::Parser;
        let mut rng = StdRng::seed_from_u64(3);
        let fixed = Cli::parse_from(["t", "--value-size", "100"]).args;
        assert!((0..100).all(|_| fixed.value_len(&mut rng) == 100));
        let varied = Cli::parse_from(["t", "--value-size", "32", "--value-size-max", "40"]).args;
        let lens: Vec<usize> = (0..1000).map(|_| varied.value_len(&mut rng)).collect();
        assert!(lens.iter().all(|l| (32..=40).contains(l)));
        assert!(
            lens.contains(&32) && lens.contains(&40),
            "both ends are drawn"
        );
    }

    #[test]
    fn each_key_of_a_hit_ratio_trace_keeps_one_value_length() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: HitRatioArgs,
        }
        use clap::Parser;
        let fixed = Cli::parse_from(["t"]).args;
        assert!((0..1000).all(|i| fixed.value_len(i) == 32));
        let mixed = Cli::parse_from(["t", "--value-size", "32", "--value-size-max", "512"]).args;
        let lens: Vec<usize> = (0..10_000).map(|i| mixed.value_len(i)).collect();
        assert!(lens.iter().all(|l| (32..=512).contains(l)));
        assert_eq!(
            lens,
            (0..10_000).map(|i| mixed.value_len(i)).collect::<Vec<_>>()
        );
        let mean = lens.iter().sum::<usize>() as f64 / lens.len() as f64;
        assert!((mean - 272.0).abs() < 10.0, "spread evenly: mean {mean}");
        assert!(lens.iter().any(|&l| l < 40) && lens.iter().any(|&l| l > 500));
    }

    #[test]
    fn zipf_prefers_low_indices() {
        let picker = KeyPicker::new(10_000, 1.0).expect("zipf");
        let mut rng = StdRng::seed_from_u64(1);
        let picks: Vec<u64> = (0..20_000).map(|_| picker.pick(&mut rng)).collect();
        let hot = picks.iter().filter(|&&p| p < 10).count();
        assert!(
            hot > 20_000 / 5,
            "the 10 hottest keys get a large share: {hot}"
        );
        assert!(picks.iter().all(|&p| p < 10_000));
        let uniform = KeyPicker::new(10_000, 0.0).expect("uniform");
        let hot = (0..20_000).filter(|_| uniform.pick(&mut rng) < 10).count();
        assert!(hot < 100, "uniform: {hot}");
    }

    #[test]
    fn traces_are_reproducible_and_scans_are_one_time_keys() {
        let args = HitRatioArgs {
            zipf: 0.9,
            working_set: 1000,
            requests: 5000,
            scan_every: 1000,
            scan_length: 100,
            key_size: 20,
            value_size: 32,
            value_size_max: 0,
            pipeline: 64,
            seed: 7,
            expiring_share: 0.0,
            exptime: 0,
            rate: 0,
            read_after_set: false,
            restart_at: None,
            restart_forgets: false,
        };
        let a = trace(&args).expect("trace");
        assert_eq!(a, trace(&args).expect("trace"));
        let unbatched = HitRatioArgs {
            pipeline: 0,
            ..args.clone()
        };
        assert!(trace(&unbatched).is_err(), "a batch of no requests");
        assert_eq!(a.len(), 5000);
        let scans: Vec<u64> = a.iter().copied().filter(|&k| k >= 1000).collect();
        assert!(scans.len() >= 300);
        let mut unique = scans.clone();
        unique.dedup();
        assert_eq!(unique.len(), scans.len(), "scan keys never repeat");
    }

    #[test]
    fn expiring_keys_are_the_share_asked_for() {
        for share in [0.0, 0.25, 0.5, 1.0] {
            let n = (0..100_000).filter(|&i| expiring(i, share)).count();
            let want = share * 100_000.0;
            assert!((n as f64 - want).abs() <= 1_000.0, "{share}: {n}");
        }
        assert_eq!(expiring(12345, 0.5), expiring(12345, 0.5));
    }

    #[test]
    fn keys_have_the_requested_size() {
        assert_eq!(key(42, 20).len(), 20);
        assert_eq!(key(u64::MAX, 8).len(), 8);
    }

    #[test]
    fn table_has_ratio_columns() {
        let report = Report::from_rows(vec![
            Row {
                target: "a".into(),
                metrics: vec![("requests/s", 100.0)],
            },
            Row {
                target: "b".into(),
                metrics: vec![("requests/s", 150.0)],
            },
        ]);
        let table = report.table();
        assert!(table.contains("b/a"), "{table}");
        assert!(table.contains("1.50x"), "{table}");
    }
}
