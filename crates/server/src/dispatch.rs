//! Executes one parsed request against the store and encodes its reply. One function per command
//! family; the reply strings come from `ferrocache_protocol::text::reply`.

use ferrocache_protocol::text::{reply, GetKeys, Request, StoreCommand};
use ferrocache_store::{
    DeleteOutcome, Delta, DeltaOutcome, ItemRef, KeyHash, RelTime, Store, StoreMode, StoreOutcome,
    TouchOutcome,
};

use crate::out::Output;
use crate::stats::{self, ConnCounters};
use crate::Shared;

/// How many keys ahead of the one answered a multi-key get starts loading index buckets.
const BUCKET_AHEAD: usize = 8;
/// How many keys ahead it starts loading items (their buckets are loaded by then).
const ITEM_AHEAD: usize = 4;

/// What the connection does after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Continue,
    /// Discard this many bytes of input (the data of a refused storage command).
    Swallow(usize),
    /// Write what is pending, then close.
    CloseAfterWrite,
    /// Close without writing anything more.
    CloseNow,
    /// `watch` with these kinds: write what is pending, then stream the log (see `watch.rs`).
    Watch(u16),
}

/// A `get`/`gets`/`gat`/`gats` being answered. Its replies can be far larger than its line (one
/// key may be named thousands of times, each a megabyte), so the connection answers it in steps
/// with [`Ctx::get_more`] and writes out in between: what one connection holds stays near
/// [`crate::out::FLUSH_AT`], whatever it asks for.
pub struct PendingGet<'a> {
    /// The keys not hashed yet.
    keys: GetKeys<'a>,
    /// The next keys to answer, hashed, their index buckets and items loading.
    ahead: Ahead<'a>,
    cas: bool,
    /// gat/gats: the new exptime.
    touch: Option<RelTime>,
    /// The line has been checked for a key over 250 bytes, and the first keys queued.
    checked: bool,
}

impl PendingGet<'_> {
    /// Hashes the next keys into `ahead` until it is full or the keys run out; with `prefetch`,
    /// each one's index bucket starts loading as it enters.
    fn queue_keys(&mut self, store: &Store, prefetch: bool) {
        while self.ahead.len <= BUCKET_AHEAD {
            let Some(Ok(key)) = self.keys.next() else {
                break;
            };
            let hash = store.hash_key(key);
            if prefetch {
                store.prefetch(hash);
            }
            self.ahead.push(key, hash);
        }
    }
}

/// A small queue of the next keys of a get, with their hashes.
struct Ahead<'a> {
    slots: [Option<(&'a [u8], KeyHash)>; BUCKET_AHEAD + 1],
    head: usize,
    len: usize,
}

impl Default for Ahead<'_> {
    fn default() -> Self {
        Ahead {
            slots: [None; BUCKET_AHEAD + 1],
            head: 0,
            len: 0,
        }
    }
}

impl<'a> Ahead<'a> {
    fn push(&mut self, key: &'a [u8], hash: KeyHash) {
        debug_assert!(self.len < self.slots.len());
        self.slots[(self.head + self.len) % self.slots.len()] = Some((key, hash));
        self.len += 1;
    }

    fn pop(&mut self) -> Option<(&'a [u8], KeyHash)> {
        let first = self.get(0)?;
        self.head = (self.head + 1) % self.slots.len();
        self.len -= 1;
        Some(first)
    }

    /// The key `i` places behind the first.
    fn get(&self, i: usize) -> Option<(&'a [u8], KeyHash)> {
        (i < self.len)
            .then(|| self.slots[(self.head + i) % self.slots.len()])
            .flatten()
    }
}

/// Per-connection context for dispatch.
pub struct Ctx<'s> {
    pub shared: &'s Shared,
    pub out: Output,
    pub counters: ConnCounters,
    /// Set by a reply after which memcached closes the connection (binary "Invalid arguments").
    pub close_after_reply: bool,
    /// Logged in or not (`-S`, `-Y`).
    pub auth: crate::auth::ConnAuth,
    /// The connection's id (`cfd=` in `watch` lines, as in `stats conns`); 0 over UDP.
    pub conn_id: u64,
}

/// A request answered in steps, the connection writing out between them (see [`Ctx::begin`]).
/// It lives on the stack for one request; boxing the get's key ring would cost an allocation
/// per get, so the enums are as large as it is.
#[allow(clippy::large_enum_variant)]
pub enum Pending<'a> {
    Get(PendingGet<'a>),
    Dump(crate::crawler::PendingDump),
}

/// What [`Ctx::begin`] made of a request.
#[allow(clippy::large_enum_variant)]
pub enum Began<'a> {
    /// Answered whole; what the connection does next.
    Done(Next),
    /// To answer with [`Ctx::more`].
    Pending(Pending<'a>),
}

impl Ctx<'_> {
    /// Starts answering a text request: a get and an allowed `lru_crawler metadump`, whose
    /// replies can be far larger than one write, are answered in steps ([`Ctx::more`]); anything
    /// else at once ([`Ctx::dispatch`]).
    pub fn begin<'a>(&mut self, request: Request<'a>) -> Began<'a> {
        if let Some(get) = self.begin_get(&request) {
            Began::Pending(Pending::Get(get))
        } else if let Some(dump) = self.begin_dump(&request) {
            Began::Pending(Pending::Dump(dump))
        } else {
            Began::Done(self.dispatch(request))
        }
    }

    /// The next step of a [`Pending`] request: true when it is answered, false when the pending
    /// output should be written out before the next step.
    pub fn more(&mut self, pending: &mut Pending<'_>) -> bool {
        match pending {
            Pending::Get(get) => self.get_more(get),
            Pending::Dump(dump) => self.dump_more(dump),
        }
    }

    fn reply(&mut self, text: &str, noreply: bool) {
        if !noreply {
            reply::line(self.out.text(), text);
        }
    }

    /// A get-like request, to answer with [`Ctx::get_more`]; `None` for any other request.
    fn begin_get<'a>(&self, request: &Request<'a>) -> Option<PendingGet<'a>> {
        let (keys, cas, touch) = match *request {
            Request::Get { cas, keys } => (keys, cas, None),
            Request::Gat { cas, exptime, keys } => {
                (keys, cas, Some(self.shared.clock.exptime_to_rel(exptime)))
            }
            _ => return None,
        };
        Some(PendingGet {
            keys,
            ahead: Ahead::default(),
            cas,
            touch,
            checked: false,
        })
    }

    /// Handles one request. A get-like request is answered whole here; the connection uses
    /// [`Ctx::begin`] instead, to write out while it is answered.
    pub fn dispatch(&mut self, request: Request<'_>) -> Next {
        let held = self.out.holds_replies();
        self.out.note_command();
        match request {
            Request::Get { .. } | Request::Gat { .. } => {
                if let Some(mut get) = self.begin_get(&request) {
                    while !self.get_more(&mut get) {}
                }
                Next::Continue
            }
            Request::Store {
                command,
                key,
                flags,
                exptime,
                cas_unique,
                data,
                noreply,
            } => self.store(command, key, flags, exptime, cas_unique, data, noreply),
            Request::Delete { key, noreply } => {
                self.log_lookup(key);
                let outcome = self.shared.store.delete(key, self.shared.clock.now());
                let text = match outcome {
                    DeleteOutcome::Deleted => reply::DELETED,
                    // Exists needs a compared CAS id, which a text delete never has.
                    DeleteOutcome::NotFound | DeleteOutcome::Exists => reply::NOT_FOUND,
                };
                self.reply(text, noreply);
                Next::Continue
            }
            Request::Arith {
                incr,
                key,
                delta,
                noreply,
            } => self.arith(incr, key, delta, noreply),
            Request::Touch {
                key,
                exptime,
                noreply,
            } => {
                self.counters.cmd_touch += 1;
                self.log_lookup(key);
                let clock = &self.shared.clock;
                let outcome =
                    self.shared
                        .store
                        .touch(key, clock.exptime_to_rel(exptime), clock.now());
                let text = match outcome {
                    TouchOutcome::Touched => reply::TOUCHED,
                    TouchOutcome::NotFound => reply::NOT_FOUND,
                };
                self.reply(text, noreply);
                Next::Continue
            }
            Request::FlushAll { delay, noreply } => {
                self.counters.cmd_flush += 1;
                if !self.shared.config.flush_enabled {
                    self.reply(reply::CLIENT_ERROR_FLUSH_NOT_ALLOWED, noreply);
                    return Next::Continue;
                }
                let clock = &self.shared.clock;
                self.shared
                    .store
                    .flush_all(clock.flush_point(i64::from(delay)), clock.now());
                self.reply(reply::OK, noreply);
                Next::Continue
            }
            Request::Version => {
                let text = format!("VERSION {}", crate::config::MEMCACHED_VERSION);
                self.reply(&text, false);
                Next::Continue
            }
            Request::Verbosity { level, noreply } => {
                self.shared.set_verbosity(level);
                self.reply(reply::OK, noreply);
                Next::Continue
            }
            Request::Quit => Next::CloseAfterWrite,
            Request::Shutdown { graceful } => {
                if !self.shared.config.enable_shutdown {
                    self.reply(reply::ERROR_SHUTDOWN_NOT_ENABLED, false);
                    return Next::Continue;
                }
                tracing::info!("shutdown requested by a client");
                if graceful {
                    (self.shared.shutdown_graceful)
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                }
                self.shared.shutdown.notify_one();
                Next::CloseNow
            }
            Request::ShutdownBadMode => {
                let text = if self.shared.config.enable_shutdown {
                    reply::CLIENT_ERROR_INVALID_SHUTDOWN_MODE
                } else {
                    reply::ERROR_SHUTDOWN_NOT_ENABLED
                };
                self.reply(text, false);
                Next::Continue
            }
            Request::Stats { args } => {
                self.stats(args);
                Next::Continue
            }
            Request::RefreshCerts { noreply } => {
                // As memcached: an error is sent even with noreply.
                match &self.shared.tls {
                    None => self.reply(reply::ERROR_TLS_NOT_ENABLED, false),
                    Some(tls) => match tls.reload(self.shared.clock.now()) {
                        Ok(()) => self.reply(reply::OK, noreply),
                        Err(line) => self.out.text().extend_from_slice(line.as_bytes()),
                    },
                }
                Next::Continue
            }
            Request::CacheMemlimit { megabytes, noreply } => {
                // memcached's checks and words; a bound the store cannot work in (below two
                // segments per shard, or twice -I) gets memcached's "unable to adjust".
                let text = match megabytes {
                    None => reply::ERROR,
                    Some(mb) if mb < 8 => reply::MEMLIMIT_TOO_SMALL,
                    Some(mb) if mb > 1_000_000_000 => reply::MEMLIMIT_ADJUST_FAILED_UNITS,
                    Some(mb) => {
                        let bytes = mb as usize * 1024 * 1024; // at most 10^15
                        let now = self.shared.clock.now();
                        // Lowering may evict for seconds (12 million small items: about 3 s
                        // here): the worker's other connections move to another thread
                        // meanwhile.
                        let store = &self.shared.store;
                        if blocking(|| {
                            let done = store.set_max_bytes(bytes, now);
                            release_freed_memory();
                            done
                        }) {
                            tracing::info!("maxbytes adjusted to {mb}m");
                            reply::OK
                        } else {
                            reply::MEMLIMIT_ADJUST_FAILED
                        }
                    }
                };
                self.reply(text, noreply);
                Next::Continue
            }
            Request::Error {
                reply: text,
                noreply,
            } => {
                if text == reply::CLIENT_ERROR_BAD_DATA_CHUNK {
                    // memcached counts the set once its data is read, before it checks the
                    // block's "\r\n" (`complete_nread_ascii`), for text and meta alike.
                    self.counters.cmd_set += 1;
                }
                self.reply(text, noreply);
                Next::Continue
            }
            Request::Swallow {
                reply: text,
                noreply,
                bytes,
                unlink_key,
                unlink_base64,
            } => {
                let decoded;
                let (text, unlink_key) = match unlink_key {
                    Some(key) if unlink_base64 => {
                        use base64::Engine as _;
                        match base64::engine::general_purpose::STANDARD.decode(key) {
                            Ok(bytes) => {
                                decoded = bytes;
                                (text, Some(&decoded[..]))
                            }
                            // memcached decodes the key before it sizes the item.
                            Err(_) => ("CLIENT_ERROR error decoding key", None),
                        }
                    }
                    other => (text, other),
                };
                if text == reply::SERVER_ERROR_TOO_LARGE {
                    self.counters.store_too_large += 1;
                }
                self.reply(text, noreply);
                if let Some(key) = unlink_key {
                    // memcached drops the old value so that a failed set never leaves stale data.
                    self.shared.store.unlink(key, self.shared.clock.now());
                }
                Next::Swallow(bytes)
            }
            Request::LruCrawler(command) => self.lru_crawler(command, held),
            Request::Watch { kinds } => {
                // Only a line ending in `noreply` (an unknown kind) is quiet about either error.
                let noreply = kinds.is_err_and(|bad| bad.noreply);
                match kinds {
                    _ if held => self.reply(reply::ERROR_WATCH_PIPELINED, noreply),
                    Ok(kinds) => return Next::Watch(kinds),
                    Err(_) => self.reply(reply::ERROR, noreply),
                }
                Next::Continue
            }
            Request::Close => Next::CloseNow,
            Request::MetaNoop => {
                reply::line(self.out.text(), "MN");
                // memcached writes out after `mn`, as after a get.
                self.out.mark();
                Next::Continue
            }
            Request::Meta {
                command,
                key,
                flags,
                data,
            } => self.meta(command, key, flags, data),
        }
    }

    /// Answers keys of `get` until the pending output reaches [`crate::out::FLUSH_AT`] (false:
    /// write out, then call again) or the last key is answered (true).
    pub fn get_more(&mut self, get: &mut PendingGet<'_>) -> bool {
        // One reading of the clock for every key of this step (memcached's clock ticks once a
        // second anyway).
        let now = self.shared.clock.now();
        if !get.checked {
            get.checked = true;
            let mut scan = get.keys;
            let bad = match get.keys.may_hold_long_key() {
                true => scan.position(|key| key.is_err()),
                false => None,
            };
            if let Some(bad) = bad {
                // memcached looks up the keys before a key over 250 bytes, then culls every
                // response not yet sent and answers the error. The lookups count and bump; their
                // values are never queued, so nothing of this get is written before the cull.
                for key in get.keys.take(bad).flatten() {
                    let hash = self.shared.store.hash_key(key);
                    self.look_up(key, hash, get.cas, get.touch, now, |_, _| {});
                }
                self.out.discard_since_mark();
                reply::line(self.out.text(), reply::CLIENT_ERROR_BAD_FORMAT);
                return true;
            }
            self.start_get(get);
        }
        let store = &self.shared.store;
        while self.out.len() < crate::out::FLUSH_AT {
            // After the start, a key enters `ahead` hashed, its index bucket starts loading then
            // (BUCKET_AHEAD keys before it is answered), and its item ITEM_AHEAD keys before.
            get.queue_keys(store, true);
            if let Some((_, hash)) = get.ahead.get(ITEM_AHEAD) {
                store.prefetch_item(hash);
            }
            let Some((key, hash)) = get.ahead.pop() else {
                reply::line(self.out.text(), reply::END);
                // memcached writes its replies out after every get; nothing before here can be
                // culled.
                self.out.mark();
                return true;
            };
            self.look_up(key, hash, get.cas, get.touch, now, |out, item| {
                let shown = get.cas.then_some(item.cas);
                reply::value_header(out.text(), key, item.flags, item.value.len(), shown);
                out.value_slice(item.value);
            });
        }
        false
    }

    /// Fills `ahead` with the first keys of a get. If there are several, it starts loading all
    /// their index buckets, then the items of the first ITEM_AHEAD (reading a bucket waits for
    /// the first only), so that the cache misses of the first keys overlap as those of the later
    /// ones do. A get of one key has nothing to overlap and prefetches nothing.
    fn start_get(&self, get: &mut PendingGet<'_>) {
        let store = &self.shared.store;
        get.queue_keys(store, false);
        if get.ahead.len > 1 {
            for i in 0..get.ahead.len {
                if let Some((_, hash)) = get.ahead.get(i) {
                    store.prefetch(hash);
                }
            }
            for i in 0..ITEM_AHEAD {
                if let Some((_, hash)) = get.ahead.get(i) {
                    store.prefetch_item(hash);
                }
            }
        }
    }

    /// One key of a get: counts it and hands a hit to `write`, under the shard's lock, straight
    /// from the segment.
    #[allow(clippy::too_many_arguments)]
    fn look_up(
        &mut self,
        key: &[u8],
        hash: KeyHash,
        cas: bool,
        touch: Option<RelTime>,
        now: RelTime,
        write: impl FnOnce(&mut Output, &ItemRef<'_>),
    ) {
        let store = &self.shared.store;
        let out = &mut self.out;
        let write = |item: &ItemRef<'_>| {
            write(out, item);
            item.value.len()
        };
        let size = match touch {
            None => {
                self.counters.cmd_get += 1;
                store.get_hashed_with(key, hash, cas, now, write)
            }
            Some(exptime) => {
                self.counters.cmd_touch += 1;
                store.get_and_touch_hashed_with(key, hash, exptime, cas, now, write)
            }
        };
        self.log_fetch(key, size);
    }

    #[allow(clippy::too_many_arguments)]
    fn store(
        &mut self,
        command: StoreCommand,
        key: &[u8],
        flags: u32,
        exptime: i32,
        cas_unique: u64,
        data: &[u8],
        noreply: bool,
    ) -> Next {
        self.counters.cmd_set += 1;
        let mode = match command {
            StoreCommand::Set => StoreMode::Set,
            StoreCommand::Add => StoreMode::Add,
            StoreCommand::Replace => StoreMode::Replace,
            StoreCommand::Append => StoreMode::Append,
            StoreCommand::Prepend => StoreMode::Prepend,
            StoreCommand::Cas => StoreMode::Cas(cas_unique),
        };
        let before = self.log_lookup(key);
        let clock = &self.shared.clock;
        let exptime = clock.exptime_to_rel(exptime);
        let outcome = self
            .shared
            .store
            .store(mode, key, flags, exptime, data, clock.now());
        self.log_store(key, (mode, exptime), (before, data.len()), outcome);
        let text = match outcome {
            StoreOutcome::Stored => reply::STORED,
            StoreOutcome::NotStored => reply::NOT_STORED,
            StoreOutcome::Exists => reply::EXISTS,
            StoreOutcome::NotFound => reply::NOT_FOUND,
            // Only append/prepend get here (the parser refuses too large items before their data):
            // memcached answers NOT_STORED when the combined item cannot be allocated.
            StoreOutcome::TooLarge => reply::NOT_STORED,
            StoreOutcome::OutOfMemory => {
                self.counters.store_no_memory += 1;
                reply::SERVER_ERROR_OUT_OF_MEMORY_STORING
            }
        };
        self.reply(text, noreply);
        Next::Continue
    }

    fn arith(&mut self, incr: bool, key: &[u8], delta: u64, noreply: bool) -> Next {
        self.log_lookup(key);
        let delta = Delta {
            pad: !self.out.references(key),
            ..Delta::new(incr, delta)
        };
        let outcome = self
            .shared
            .store
            .delta_with(key, &delta, self.shared.clock.now());
        match outcome {
            DeltaOutcome::Value(value) => {
                if !noreply {
                    reply::number(self.out.text(), value);
                }
            }
            // Exists needs a compared CAS id, which a text incr never has.
            DeltaOutcome::NotFound | DeltaOutcome::Exists => self.reply(reply::NOT_FOUND, noreply),
            DeltaOutcome::NonNumeric => self.reply(reply::CLIENT_ERROR_NON_NUMERIC, noreply),
            DeltaOutcome::OutOfMemory => self.reply(reply::SERVER_ERROR_OUT_OF_MEMORY, noreply),
        }
        Next::Continue
    }

    /// The text protocol's `stats <args>` reply, for the binary protocol to re-frame. False when
    /// the group is unknown.
    pub fn stats_text(&mut self, into: &mut Vec<u8>, args: &[u8]) -> bool {
        // What memcached wrote before this request (see `stats`), counted before it is set aside.
        self.counters.bytes_written += self.out.count_marked() as u64;
        let pending = std::mem::take(&mut self.out);
        self.stats(args);
        let reply = std::mem::replace(&mut self.out, pending).into_text();
        let known = !reply.starts_with(b"ERROR") && !reply.starts_with(b"CLIENT_ERROR");
        into.extend_from_slice(&reply);
        known
    }

    fn stats(&mut self, args: &[u8]) {
        let shared = self.shared;
        // Count this connection's commands so far, so that stats includes them, and the replies
        // memcached would have written by now.
        self.counters.bytes_written += self.out.count_marked() as u64;
        shared.stats.add(&self.counters);
        self.counters = ConnCounters::default();
        let out = self.out.text();
        let mut args = args.split(|&b| b == b' ').filter(|a| !a.is_empty());
        let subcommand = args.next();
        // memcached answers `stats default` with ERROR, which crashes python-memcached's
        // get_stats('default'); we answer it like a plain `stats` (see README, differences).
        let Some(subcommand) = subcommand.filter(|s| *s != b"default") else {
            stats::general(out, shared);
            return;
        };
        let argument = args.next();
        match subcommand {
            b"reset" => {
                shared.stats.reset();
                shared.auth.reset();
                shared.store.reset_stats();
                reply::line(out, reply::RESET);
            }
            b"detail" => {
                let text = match argument {
                    Some(b"on" | b"off") => reply::OK,
                    Some(b"dump") => reply::END,
                    _ => reply::CLIENT_ERROR_STATS_DETAIL_USAGE,
                };
                reply::line(out, text);
            }
            b"settings" => stats::settings(out, shared, shared.verbosity()),
            b"items" => stats::items(out, shared),
            b"slabs" => stats::slabs(out, shared),
            b"sizes" => stats::sizes(out),
            b"conns" => stats::conns(out, shared, self.conn_id),
            b"cachedump" => {
                // memcached's checks, in its order.
                let id = argument.and_then(ferrocache_protocol::text::parse_u32_like_strtoul);
                let limit = args
                    .next()
                    .map(ferrocache_protocol::text::parse_u32_like_strtoul);
                let text = match (argument, limit) {
                    _ if !shared.config.dump_enabled => reply::CLIENT_ERROR_CACHEDUMP_NOT_ALLOWED,
                    (Some(_), Some(limit)) => match (id, limit) {
                        (Some(id), Some(_)) if id >= 64 => reply::CLIENT_ERROR_ILLEGAL_SLAB_ID,
                        (Some(id), Some(limit)) => {
                            crate::crawler::cachedump(out, shared, id, limit);
                            return;
                        }
                        _ => reply::CLIENT_ERROR_BAD_FORMAT,
                    },
                    _ => reply::CLIENT_ERROR_BAD_COMMAND_LINE,
                };
                reply::line(out, text);
            }
            _ => reply::line(out, reply::ERROR),
        }
    }
}

/// Runs `f`, which may hold its thread for long, letting the runtime hand this worker's other
/// tasks to another thread first (`block_in_place`), where the runtime can (a multi-threaded one).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Gives the memory the allocator holds free back to the system, where the allocator is glibc's
/// (whose `free` keeps it for reuse): after `cache_memlimit` lowers the bound, the evicted
/// segments and the index's old buckets.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` takes a number and has no other precondition: it locks each arena
    // itself (so it is safe while other threads allocate) and only returns whole free pages
    // (madvise) or the heap's free top (sbrk) to the system, never memory still allocated.
    unsafe {
        libc::malloc_trim(0);
    }
}
