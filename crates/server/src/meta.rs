//! The meta commands (`mn mg ms md ma me`) over the store, with memcached 1.6.18's replies:
//! `HD VA EN NS EX NF MN`, return flags echoed in request order, and `q` hiding the nominal
//! replies (HD, and EN for mg) but never errors.

use base64::Engine as _;
use ferrocache_protocol::text::{reply, MetaCommand, MetaFlags};
use ferrocache_store::{
    DeleteOutcome, Delta, DeltaOutcome, InvalidateOutcome, Item, MetaGet, StoreMode, StoreOutcome,
    WriteOptions,
};

use crate::dispatch::{Ctx, Next};

/// What the return flags can report about the item the command touched.
#[derive(Default)]
struct Known {
    flags: Option<u32>,
    size: Option<usize>,
    /// Seconds left, -1 for never, as `t` reports them: `ttl` until the flag token at
    /// `ttl_changes[i].0`, from which on `ttl_changes[i].1` (memcached 1.6.18 applies `T`, and
    /// `N` to a created item, in request order as it writes the reply).
    ttl: Option<i64>,
    ttl_changes: [Option<(usize, i64)>; 2],
    cas: Option<u64>,
    /// Read before this command (`h`).
    fetched: Option<bool>,
    /// Seconds since written (`l`: memcached's is since last access; we keep no access time).
    idle: Option<u32>,
    /// The key is binary: `k` returns it base64-encoded, followed by a `b` flag.
    binary_key: bool,
    /// The win/stale flags memcached appends after the return flags: Z, X, W.
    already_won: bool,
    stale: bool,
    won: bool,
}

impl Known {
    fn of(item: &Item, now: u32) -> Known {
        Known {
            flags: Some(item.flags),
            size: Some(item.value.len()),
            ttl: Some(ttl_left(item.exptime, now)),
            cas: Some(item.cas),
            fetched: Some(item.fetched),
            idle: Some(now.saturating_sub(item.time)),
            binary_key: item.meta.binary_key,
            ..Known::default()
        }
    }

    /// What a reply without an item can still say: the key as sent (`b` included).
    fn key_only(flags: &MetaFlags<'_>) -> Known {
        Known {
            binary_key: flags.base64_key,
            ..Known::default()
        }
    }
}

/// What `t` shows: -1 for never, else memcached's unsigned `exptime - current_time`, which wraps
/// for an item already dead (`mg k T-1 t` answers `t4294967235` there, 61 seconds after start).
fn ttl_left(exptime: u32, now: u32) -> i64 {
    if exptime == 0 {
        -1
    } else {
        i64::from(exptime.wrapping_sub(now))
    }
}

/// Appends `code`, the return flags in request order, and the line end.
fn status(out: &mut Vec<u8>, code: &str, flags: &MetaFlags<'_>, key: &[u8], known: &Known) {
    out.extend_from_slice(code.as_bytes());
    let mut ttl = known.ttl;
    for (at, token) in flags.iter().enumerate() {
        for (change_at, new) in known.ttl_changes.iter().flatten() {
            if *change_at == at {
                ttl = Some(*new);
            }
        }
        let text = match token[0] {
            b'O' => {
                out.push(b' ');
                out.extend_from_slice(token);
                continue;
            }
            b'k' => {
                out.extend_from_slice(b" k");
                if known.binary_key {
                    let encoded = base64::engine::general_purpose::STANDARD.encode(key);
                    out.extend_from_slice(encoded.as_bytes());
                    out.extend_from_slice(b" b");
                } else {
                    out.extend_from_slice(key);
                }
                continue;
            }
            b'f' => known.flags.map(|v| format!(" f{v}")),
            b's' => known.size.map(|v| format!(" s{v}")),
            b't' => ttl.map(|v| format!(" t{v}")),
            b'c' => known.cas.map(|v| format!(" c{v}")),
            b'h' => known.fetched.map(|v| format!(" h{}", u8::from(v))),
            b'l' => known.idle.map(|v| format!(" l{v}")),
            _ => None,
        };
        if let Some(text) = text {
            out.extend_from_slice(text.as_bytes());
        }
    }
    for (set, flag) in [
        (known.already_won, b" Z"),
        (known.stale, b" X"),
        (known.won, b" W"),
    ] {
        if set {
            out.extend_from_slice(flag);
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// How memcached 1.6.18 applies `T`, and `N` to an item it created: in request order as it
/// writes the reply, stopping at an opaque too long, where it answers an error; flags past that
/// point take no effect.
struct InOrder {
    /// Where the first opaque too long is, among the flag tokens.
    fails_at: Option<usize>,
    t_at: Option<usize>,
    n_at: Option<usize>,
    /// The exptimes `T` and `N` give, if they are reached.
    touch: Option<u32>,
    vivify: Option<u32>,
}

impl InOrder {
    fn of(flags: &MetaFlags<'_>, clock: &crate::clock::Clock) -> InOrder {
        let fails_at = flags.long_opaque_at();
        let t_at = reached(flags, fails_at, b'T');
        let n_at = reached(flags, fails_at, b'N');
        InOrder {
            fails_at,
            t_at,
            n_at,
            touch: t_at.and(flags.ttl).map(|ttl| clock.exptime_to_rel(ttl)),
            vivify: n_at.and(flags.vivify).map(|ttl| clock.exptime_to_rel(ttl)),
        }
    }

    /// The exptime of an item the request creates: none at first, then `N`'s and `T`'s in
    /// their order.
    fn created_exptime(&self) -> u32 {
        match (self.vivify, self.touch) {
            (Some(n), Some(t)) => {
                if self.n_at > self.t_at {
                    n
                } else {
                    t
                }
            }
            (n, t) => n.or(t).unwrap_or(0),
        }
    }

    /// Where `t` starts to see another exptime: at `T`, and at `N` for a created item.
    fn ttl_changes(&self, created: bool, now: u32) -> [Option<(usize, i64)>; 2] {
        let at = |place: Option<usize>, exptime: Option<u32>| {
            place.zip(exptime.map(|e| ttl_left(e, now)))
        };
        [
            if created {
                at(self.n_at, self.vivify)
            } else {
                None
            },
            at(self.t_at, self.touch),
        ]
    }
}

/// Where the flag `letter` is, if memcached reaches it before an opaque too long at `fails_at`.
fn reached(flags: &MetaFlags<'_>, fails_at: Option<usize>, letter: u8) -> Option<usize> {
    flags
        .position(letter)
        .filter(|&at| fails_at.is_none_or(|bad| at < bad))
}

/// An `ma` that changed nothing: its code, or the error of an opaque too long, which memcached
/// 1.6.18 meets as it writes the return flags of any reply.
fn refusal(out: &mut Vec<u8>, code: &str, flags: &MetaFlags<'_>, key: &[u8], fails: bool) {
    if fails {
        reply::line(out, reply::CLIENT_ERROR_OPAQUE_TOO_LONG);
    } else {
        status(out, code, flags, key, &Known::key_only(flags));
    }
}

impl Ctx<'_> {
    pub fn meta(
        &mut self,
        command: MetaCommand,
        key: &[u8],
        flags: MetaFlags<'_>,
        data: &[u8],
    ) -> Next {
        let decoded;
        let key = if flags.base64_key {
            match base64::engine::general_purpose::STANDARD.decode(key) {
                Ok(bytes) => {
                    decoded = bytes;
                    &decoded[..]
                }
                Err(_) => {
                    // Only `me` gets here: the parser refuses the other commands' keys that do
                    // not decode, among their flags' faults.
                    reply::line(self.out.text(), reply::CLIENT_ERROR_BAD_FORMAT);
                    return Next::Continue;
                }
            }
        } else {
            key
        };
        if matches!(command, MetaCommand::Delete | MetaCommand::Arith) {
            self.log_lookup(key);
        }
        match command {
            MetaCommand::Get => self.meta_get(key, &flags),
            MetaCommand::Set => self.meta_set(key, &flags, data),
            MetaCommand::Delete => self.meta_delete(key, &flags),
            MetaCommand::Arith => self.meta_arith(key, &flags),
            MetaCommand::Debug => self.meta_debug(key),
        }
        Next::Continue
    }

    fn meta_get(&mut self, key: &[u8], flags: &MetaFlags<'_>) {
        let clock = &self.shared.clock;
        let now = clock.now();
        let order = InOrder::of(flags, clock);
        let fails_at = order.fails_at;
        let r_at = reached(flags, fails_at, b'R');
        // Flags that make memcached take the item's lock and bump it only after the reply:
        // an error on the way skips that bump.
        let locked = flags
            .iter()
            .any(|t| matches!(t[0], b'T' | b'N' | b'R' | b'l' | b'h'));
        let bump_skipped = fails_at.is_some() && locked;
        let request = MetaGet {
            shows_cas: flags.iter().any(|t| t[0] == b'c'),
            bump: !flags.no_bump && !bump_skipped,
            touch: order.touch,
            vivify: flags.vivify.map(|_| order.created_exptime()),
            recache_before: r_at.and(flags.recache).map(|ttl| clock.exptime_to_rel(ttl)),
            recache_after_touch: matches!((order.t_at, r_at), (Some(t), Some(r)) if t < r),
            fails: fails_at.is_some(),
        };
        let hit = self.shared.store.meta_get(key, &request, now);
        // A miss is a get, even with `T` (memcached touches only an item it found); a hit that
        // fails counts as nothing.
        match (&hit, request.touch) {
            (Some(_), _) if request.fails => {}
            (Some(_), Some(_)) => self.counters.cmd_touch += 1,
            _ => self.counters.cmd_get += 1,
        }
        self.log_fetch(key, hit.as_ref().map(|h| h.item.value.len()));
        if request.fails {
            reply::line(self.out.text(), reply::CLIENT_ERROR_OPAQUE_TOO_LONG);
            return;
        }
        if hit.is_some() {
            // memcached keeps the item until it writes the reply, value or not.
            self.out.reference(key);
        }
        let out = self.out.text();
        match hit {
            None if flags.quiet => {}
            None => status(out, "EN", flags, key, &Known::key_only(flags)),
            Some(hit) => {
                let item = &hit.item;
                let known = Known {
                    already_won: item.meta.token_sent,
                    stale: item.meta.stale,
                    won: hit.won,
                    ttl: Some(ttl_left(hit.exptime_before, now)),
                    ttl_changes: order.ttl_changes(hit.created, now),
                    ..Known::of(item, now)
                };
                // q hides only EN: memcached 1.6.18 answers `mg k q` on a hit with HD.
                if flags.value {
                    status(out, &format!("VA {}", item.value.len()), flags, key, &known);
                    self.out.value(&item.value);
                } else {
                    status(out, "HD", flags, key, &known);
                }
            }
        }
    }

    fn meta_set(&mut self, key: &[u8], flags: &MetaFlags<'_>, data: &[u8]) {
        self.counters.cmd_set += 1;
        let mode = match (flags.mode, flags.compare_cas) {
            // memcached 1.6.18: a CAS id turns set and replace into compare-and-swap; add
            // ignores it; append and prepend check it (`compare_cas` below).
            (Some(b'E'), _) => StoreMode::Add,
            (Some(b'A'), _) => StoreMode::Append,
            (Some(b'P'), _) => StoreMode::Prepend,
            (_, Some(cas)) => StoreMode::Cas(cas),
            (Some(b'R'), None) => StoreMode::Replace,
            _ => StoreMode::Set,
        };
        let clock = &self.shared.clock;
        let exptime = clock.exptime_to_rel(flags.ttl.unwrap_or(0));
        let options = WriteOptions {
            binary_key: flags.base64_key,
            invalidate: flags.invalidate,
            compare_cas: flags.compare_cas.unwrap_or(0),
            ..WriteOptions::default()
        };
        let before = self.log_lookup(key);
        let outcome = self.shared.store.store_with(
            mode,
            key,
            flags.client_flags.unwrap_or(0),
            exptime,
            data,
            clock.now(),
            options,
        );
        self.log_store(key, (mode, exptime), (before, data.len()), outcome);
        // `c` reports the new CAS id, 0 when nothing was stored (memcached 1.6.18: `NS c0`).
        let known = Known {
            cas: Some(0),
            ..Known::key_only(flags)
        };
        let code = match outcome {
            StoreOutcome::Stored if flags.quiet => return,
            StoreOutcome::Stored => {
                // Looked up only for a `c` flag: a shown id must change on the next write.
                let shows_cas = flags.iter().any(|t| t[0] == b'c');
                let cas = if shows_cas {
                    self.shared.store.written_cas(key, clock.now())
                } else {
                    0
                };
                let known = Known {
                    cas: Some(cas),
                    ..Known::key_only(flags)
                };
                status(self.out.text(), "HD", flags, key, &known);
                return;
            }
            StoreOutcome::NotStored | StoreOutcome::TooLarge => "NS",
            StoreOutcome::Exists => "EX",
            StoreOutcome::NotFound => "NF",
            StoreOutcome::OutOfMemory => {
                self.counters.store_no_memory += 1;
                reply::line(self.out.text(), reply::SERVER_ERROR_OUT_OF_MEMORY_STORING);
                return;
            }
        };
        status(self.out.text(), code, flags, key, &known);
    }

    fn meta_delete(&mut self, key: &[u8], flags: &MetaFlags<'_>) {
        let store = &self.shared.store;
        let now = self.shared.clock.now();
        if flags.invalidate {
            let ttl = flags.ttl.map(|ttl| self.shared.clock.exptime_to_rel(ttl));
            let code = match store.meta_invalidate(key, flags.compare_cas, ttl, now) {
                InvalidateOutcome::Invalidated if flags.quiet => return,
                InvalidateOutcome::Invalidated => "HD",
                InvalidateOutcome::NotFound => "NF",
                InvalidateOutcome::Exists => "EX",
            };
            status(self.out.text(), code, flags, key, &Known::key_only(flags));
            return;
        }
        // memcached 1.6.18 counts a refused compare as a delete miss.
        let code = match store.delete_if(key, flags.compare_cas, true, now) {
            DeleteOutcome::Deleted if flags.quiet => return,
            DeleteOutcome::Deleted => "HD",
            DeleteOutcome::NotFound => "NF",
            DeleteOutcome::Exists => "EX",
        };
        status(self.out.text(), code, flags, key, &Known::key_only(flags));
    }

    fn meta_arith(&mut self, key: &[u8], flags: &MetaFlags<'_>) {
        let store = &self.shared.store;
        let clock = &self.shared.clock;
        let now = clock.now();
        let incr = !matches!(flags.mode, Some(b'D' | b'-'));
        // `T` and `N` apply in request order, after the change; an opaque too long fails the
        // request after the change too.
        let order = InOrder::of(flags, clock);
        let (fails_at, touch) = (order.fails_at, order.touch);
        // `t` before `T` reports the exptime the counter had.
        let t_before_touch =
            matches!((flags.position(b't'), order.t_at), (Some(a), Some(b)) if a < b);
        let exptime_before = if t_before_touch {
            store.peek(key, now).map(|item| item.exptime)
        } else {
            None
        };
        // The CAS is compared before the value is read (memcached 1.6.18: `ma k C1` on a
        // non-numeric value with another CAS answers EX; on an empty one, non-numeric). C0
        // compares nothing there. A miss that creates the counter counts as neither hit nor
        // miss.
        let delta = Delta {
            pad: !self.out.references(key),
            compare_cas: flags.compare_cas.filter(|&cas| cas != 0),
            count_miss: flags.vivify.is_none(),
            exptime: touch,
            ..Delta::new(incr, flags.delta.unwrap_or(1))
        };
        // memcached 1.6.18 drops the reply of a quiet `ma` (`VA` too) when it changed a value,
        // not when it created the counter.
        // Whether `N` created the counter.
        let mut vivified = false;
        let value = match store.delta_with(key, &delta, now) {
            DeltaOutcome::Value(v) => v,
            DeltaOutcome::NotFound => match flags.vivify {
                Some(_) => {
                    // Autovivify: create the counter with the initial value.
                    let initial = flags.initial.unwrap_or(0);
                    let text = initial.to_string();
                    let exptime = order.created_exptime();
                    match store.store(StoreMode::Add, key, 0, exptime, text.as_bytes(), now) {
                        StoreOutcome::Stored => {
                            vivified = true;
                            initial
                        }
                        _ => {
                            refusal(self.out.text(), "NS", flags, key, fails_at.is_some());
                            return;
                        }
                    }
                }
                None => {
                    refusal(self.out.text(), "NF", flags, key, fails_at.is_some());
                    return;
                }
            },
            DeltaOutcome::Exists => {
                refusal(self.out.text(), "EX", flags, key, fails_at.is_some());
                return;
            }
            DeltaOutcome::NonNumeric => {
                reply::line(self.out.text(), reply::CLIENT_ERROR_NON_NUMERIC);
                return;
            }
            DeltaOutcome::OutOfMemory => {
                reply::line(self.out.text(), reply::SERVER_ERROR_OUT_OF_MEMORY);
                return;
            }
        };
        if fails_at.is_some() {
            reply::line(self.out.text(), reply::CLIENT_ERROR_OPAQUE_TOO_LONG);
            return;
        }
        if flags.quiet && !vivified {
            return;
        }
        let wants_item = flags.iter().any(|t| matches!(t[0], b't' | b'c'));
        // The exptime and CAS id to report: of the counter just created even when it is dead
        // at once (`N-1`, or under -C in the second of a flush_all), as memcached reports the
        // item it made, so not through `peek`, which would reclaim a dead one.
        let reported = match (wants_item, vivified) {
            (false, _) => None,
            (true, true) => Some((0, store.written_cas(key, now))),
            // A counter `T` gave an exptime already past is dead, but memcached still reports
            // the item it holds.
            (true, false) => match touch {
                Some(exptime) => Some((
                    exptime_before.unwrap_or(exptime),
                    store.written_cas(key, now),
                )),
                None => store.peek(key, now).map(|item| (item.exptime, item.cas)),
            },
        };
        let known = match reported {
            Some((exptime, cas)) => Known {
                ttl: Some(ttl_left(exptime, now)),
                ttl_changes: order.ttl_changes(vivified, now),
                cas: Some(cas),
                ..Known::key_only(flags)
            },
            None => Known::key_only(flags),
        };
        let text = value.to_string();
        let out = self.out.text();
        if flags.value {
            status(out, &format!("VA {}", text.len()), flags, key, &known);
            out.extend_from_slice(text.as_bytes());
            out.extend_from_slice(b"\r\n");
        } else {
            status(out, "HD", flags, key, &known);
        }
    }

    /// `me`: memcached's debug line. `size` is what memcached's item would take (its
    /// `ITEM_ntotal`), `cls` is always 1 (no slab classes here), `la` the time since written.
    fn meta_debug(&mut self, key: &[u8]) {
        // memcached 1.6.18 counts only `me` in `cmd_meta` (not mg/ms/md/ma/mn).
        self.counters.cmd_meta += 1;
        let now = self.shared.clock.now();
        let out = self.out.text();
        // Looks without bumping, as memcached's `me` does (`fetch=` stays what it was).
        match self.shared.store.peek(key, now) {
            None => reply::line(out, "EN"),
            Some(item) => {
                out.extend_from_slice(b"ME ");
                // memcached shows a binary key base64-encoded, however `me` named it.
                if item.meta.binary_key {
                    let encoded = base64::engine::general_purpose::STANDARD.encode(key);
                    out.extend_from_slice(encoded.as_bytes());
                } else {
                    out.extend_from_slice(key);
                }
                let line = format!(
                    " exp={} la={} cas={} fetch={} cls=1 size={}",
                    // memcached prints `current_time - exptime`: negative while it lives.
                    if item.exptime == 0 {
                        -1
                    } else {
                        i64::from(now) - i64::from(item.exptime)
                    },
                    now.saturating_sub(item.time),
                    item.cas,
                    if item.fetched { "yes" } else { "no" },
                    ferrocache_store::memcached_item_size(
                        self.shared.config.store.use_cas,
                        key.len(),
                        item.flags,
                        item.value.len()
                    )
                );
                reply::line(out, &line);
            }
        }
    }
}
