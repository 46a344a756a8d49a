//! Server-level counters (connections, commands, bytes) with memcached's `stats` names, and the
//! rendering of `stats`, `stats settings`, `stats items`, `stats slabs`, `stats sizes` and
//! `stats conns`. Cache counters (hits, misses, evictions...) live in the store beside the code
//! that bumps them and are read from there.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use ferrocache_protocol::text::reply;
use parking_lot::Mutex;

use crate::config::{Listen, ServerConfig, MEMCACHED_VERSION};
use crate::Shared;

/// Counters a connection accumulates while it handles a batch of commands, added to the shared
/// [`ServerStats`] once per batch so that worker threads do not contend on every command.
#[derive(Debug, Default, Clone, Copy)]
pub struct ConnCounters {
    pub cmd_get: u64,
    pub cmd_set: u64,
    pub cmd_flush: u64,
    pub cmd_touch: u64,
    /// `me` commands that got as far as a lookup (memcached's `meta_cmds`).
    pub cmd_meta: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub store_too_large: u64,
    pub store_no_memory: u64,
    pub conn_yields: u64,
}

/// Shared server counters.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Client connections (what `-c` limits).
    pub curr_connections: AtomicU64,
    pub total_connections: AtomicU64,
    /// Listening sockets, which memcached counts as connections too (see [`ServerStats::listening`]).
    listeners: AtomicU64,
    pub rejected_connections: AtomicU64,
    cmd_get: AtomicU64,
    cmd_set: AtomicU64,
    cmd_flush: AtomicU64,
    cmd_touch: AtomicU64,
    cmd_meta: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    store_too_large: AtomicU64,
    store_no_memory: AtomicU64,
    conn_yields: AtomicU64,
}

impl ServerStats {
    /// Adds a connection's batch counters.
    pub fn add(&self, c: &ConnCounters) {
        let pairs = [
            (&self.cmd_get, c.cmd_get),
            (&self.cmd_set, c.cmd_set),
            (&self.cmd_flush, c.cmd_flush),
            (&self.cmd_touch, c.cmd_touch),
            (&self.cmd_meta, c.cmd_meta),
            (&self.bytes_read, c.bytes_read),
            (&self.bytes_written, c.bytes_written),
            (&self.store_too_large, c.store_too_large),
            (&self.store_no_memory, c.store_no_memory),
            (&self.conn_yields, c.conn_yields),
        ];
        for (counter, value) in pairs {
            if value != 0 {
                counter.fetch_add(value, Relaxed);
            }
        }
    }

    /// Counts `n` listening sockets. memcached makes a connection of each: `total_connections`
    /// starts at `n`, `connection_structures` counts them, and `curr_connections` shows all
    /// connections but one (memcached 1.6.18 with one listener and one client: 1, 2, 2).
    pub fn listening(&self, n: u64) {
        self.listeners.fetch_add(n, Relaxed);
        self.total_connections.fetch_add(n, Relaxed);
    }

    /// `stats reset`: the counters memcached zeroes.
    pub fn reset(&self) {
        for counter in [
            &self.total_connections,
            &self.rejected_connections,
            &self.cmd_get,
            &self.cmd_set,
            &self.cmd_flush,
            &self.cmd_touch,
            &self.cmd_meta,
            &self.bytes_read,
            &self.bytes_written,
            &self.store_too_large,
            &self.store_no_memory,
            &self.conn_yields,
        ] {
            counter.store(0, Relaxed);
        }
    }
}

/// What `stats conns` shows of one connection, or of a socket memcached counts as one.
#[derive(Debug)]
pub struct ConnInfo {
    /// `tcp:host:port`, `udp:host:port` or `unix:path`: the client's, or a listener's own.
    pub addr: String,
    pub role: ConnRole,
    pub last_cmd_time: AtomicU32,
    /// A client that has sent something (memcached shows one that has not as `conn_new_cmd`).
    pub spoke: AtomicBool,
    /// The client's address; None over a unix socket, and for a listener or a UDP socket.
    pub peer: Option<std::net::SocketAddr>,
}

/// What a `stats conns` entry stands for.
#[derive(Debug)]
pub enum ConnRole {
    /// A client connection, accepted on `listen_addr`.
    Client { listen_addr: String },
    /// A TCP or unix socket accepting connections (memcached's `conn_listening`).
    Listener,
    /// A UDP socket: one per worker thread and address, as memcached's UDP "connections".
    Udp,
}

impl ConnInfo {
    pub fn new(
        addr: String,
        role: ConnRole,
        now: u32,
        peer: Option<std::net::SocketAddr>,
    ) -> ConnInfo {
        ConnInfo {
            addr,
            role,
            last_cmd_time: AtomicU32::new(now),
            spoke: AtomicBool::new(false),
            peer,
        }
    }
}

/// Open connections by id, for `stats conns`.
#[derive(Debug, Default)]
pub struct ConnRegistry {
    conns: Mutex<HashMap<u64, Arc<ConnInfo>>>,
}

impl ConnRegistry {
    pub fn insert(&self, id: u64, info: Arc<ConnInfo>) {
        self.conns.lock().insert(id, info);
    }

    pub fn remove(&self, id: u64) {
        self.conns.lock().remove(&id);
    }

    fn snapshot(&self) -> Vec<(u64, Arc<ConnInfo>)> {
        let mut all: Vec<_> = self
            .conns
            .lock()
            .iter()
            .map(|(id, info)| (*id, info.clone()))
            .collect();
        all.sort_by_key(|(id, _)| *id);
        all
    }
}

/// User and system CPU seconds of this process, from /proc/self/stat (fields 14 and 15, in clock
/// ticks of 1/100 s on Linux).
fn rusage() -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return (0.0, 0.0);
    };
    // The command name (field 2) may contain spaces; fields after it are split after its ')'.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After ')' the fields start at field 3, so field 14 is index 11.
    (ticks(11) / 100.0, ticks(12) / 100.0)
}

/// `stats`: the general statistics, in memcached's order.
pub fn general(out: &mut Vec<u8>, shared: &Shared) {
    let s = &shared.stats;
    let store = shared.store.stats_at(shared.clock.now());
    let config = &shared.config;
    let (user, system) = rusage();
    let st = |out: &mut Vec<u8>, name: &str, value: &dyn std::fmt::Display| {
        reply::stat(out, name, value)
    };
    st(out, "pid", &std::process::id());
    st(out, "uptime", &shared.clock.uptime());
    st(out, "time", &shared.clock.unix_now());
    st(out, "version", &MEMCACHED_VERSION);
    st(out, "libevent", &"tokio");
    st(out, "pointer_size", &(usize::BITS));
    st(out, "rusage_user", &format_args!("{user:.6}"));
    st(out, "rusage_system", &format_args!("{system:.6}"));
    st(out, "max_connections", &config.max_connections);
    let clients = s.curr_connections.load(Relaxed);
    let listeners = s.listeners.load(Relaxed);
    st(
        out,
        "curr_connections",
        &(clients + listeners).saturating_sub(1),
    );
    st(out, "total_connections", &s.total_connections.load(Relaxed));
    st(
        out,
        "rejected_connections",
        &s.rejected_connections.load(Relaxed),
    );
    st(out, "connection_structures", &(clients + listeners));
    st(out, "cmd_get", &s.cmd_get.load(Relaxed));
    st(out, "cmd_set", &s.cmd_set.load(Relaxed));
    st(out, "cmd_flush", &s.cmd_flush.load(Relaxed));
    st(out, "cmd_touch", &s.cmd_touch.load(Relaxed));
    st(out, "cmd_meta", &s.cmd_meta.load(Relaxed));
    st(out, "get_hits", &store.get_hits);
    st(out, "get_misses", &store.get_misses);
    st(out, "get_expired", &store.get_expired);
    st(out, "get_flushed", &store.get_flushed);
    st(out, "delete_misses", &store.delete_misses);
    st(out, "delete_hits", &store.delete_hits);
    st(out, "incr_misses", &store.incr_misses);
    st(out, "incr_hits", &store.incr_hits);
    st(out, "decr_misses", &store.decr_misses);
    st(out, "decr_hits", &store.decr_hits);
    st(out, "cas_misses", &store.cas_misses);
    st(out, "cas_hits", &store.cas_hits);
    st(out, "cas_badval", &store.cas_badval);
    st(out, "touch_hits", &store.touch_hits);
    st(out, "touch_misses", &store.touch_misses);
    st(out, "store_too_large", &s.store_too_large.load(Relaxed));
    st(out, "store_no_memory", &s.store_no_memory.load(Relaxed));
    st(out, "auth_cmds", &shared.auth.auth_cmds.load(Relaxed));
    st(out, "auth_errors", &shared.auth.auth_errors.load(Relaxed));
    if let Some(tls) = &shared.tls {
        // Only with -Z, where memcached prints them.
        st(
            out,
            "ssl_handshake_errors",
            &tls.handshake_errors.load(Relaxed),
        );
        let now = shared.clock.now();
        st(
            out,
            "time_since_server_cert_refresh",
            &tls.since_refresh(now),
        );
    }
    st(out, "bytes_read", &s.bytes_read.load(Relaxed));
    st(out, "bytes_written", &s.bytes_written.load(Relaxed));
    st(out, "limit_maxbytes", &shared.store.max_bytes());
    st(out, "accepting_conns", &1);
    st(out, "listen_disabled_num", &0);
    st(out, "threads", &config.threads);
    st(out, "conn_yields", &s.conn_yields.load(Relaxed));
    // memcached's hash table has 2^hash_power_level buckets; the index here is many tables of
    // any size, so: about 2^level entries fit before they next grow.
    let power = store.index_capacity.checked_ilog2().unwrap_or(0);
    st(out, "hash_power_level", &power);
    st(out, "hash_bytes", &(store.index_bytes - store.ghost_bytes));
    st(out, "hash_is_expanding", &u8::from(store.index_growths > 0));
    let log = shared.watch.stats();
    st(out, "log_worker_dropped", &log.worker_dropped);
    st(out, "log_worker_written", &log.worker_written);
    st(out, "log_watcher_skipped", &log.watcher_skipped);
    st(out, "log_watcher_sent", &log.watcher_sent);
    st(out, "log_watchers", &log.watchers);
    st(out, "bytes", &store.bytes);
    st(out, "curr_items", &store.curr_items);
    st(out, "total_items", &store.total_items);
    st(out, "expired_unfetched", &store.expired_unfetched);
    st(out, "evicted_unfetched", &store.evicted_unfetched);
    st(out, "evictions", &store.evictions);
    st(out, "reclaimed", &store.reclaimed);
    reply::line(out, reply::END);
}

/// `stats settings`: the settings memcached prints that mean something here.
pub fn settings(out: &mut Vec<u8>, shared: &Shared, verbosity: u32) {
    let c: &ServerConfig = &shared.config;
    let st = |out: &mut Vec<u8>, name: &str, value: &dyn std::fmt::Display| {
        reply::stat(out, name, value)
    };
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    st(out, "maxbytes", &shared.store.max_bytes());
    st(out, "maxconns", &c.max_connections);
    st(out, "tcpport", &c.tcp_port_setting);
    st(out, "udpport", &c.udp_port_setting);
    st(
        out,
        "inter",
        &c.interface_setting.as_deref().unwrap_or("NULL"),
    );
    st(out, "verbosity", &verbosity);
    st(out, "oldest", &0);
    st(
        out,
        "evictions",
        &if c.store.evictions { "on" } else { "off" },
    );
    let socket = match &c.listen {
        Listen::Unix { path, .. } => path.as_str(),
        _ => "NULL",
    };
    st(out, "domain_socket", &socket);
    st(out, "umask", &c.unix_mask_setting);
    st(out, "shutdown_command", &yes_no(c.enable_shutdown));
    st(out, "num_threads", &c.threads);
    st(out, "reqs_per_event", &c.reqs_per_event);
    st(out, "cas_enabled", &yes_no(c.store.use_cas));
    st(out, "tcp_backlog", &c.backlog);
    let binding = match c.protocol.as_str() {
        "ascii" => "ascii",
        "binary" => "binary",
        _ => "auto-negotiate",
    };
    st(out, "binding_protocol", &binding);
    st(out, "auth_enabled_sasl", &yes_no(c.auth.sasl));
    // memcached shows the -Y file's name here.
    match &c.auth.auth_file {
        Some((path, _)) => st(out, "auth_enabled_ascii", &path.display()),
        None => st(out, "auth_enabled_ascii", &"no"),
    }
    st(out, "item_size_max", &c.store.item_size_max);
    st(
        out,
        "lru_crawler",
        &yes_no(shared.lru_crawler.load(Relaxed)),
    );
    st(
        out,
        "lru_crawler_sleep",
        &shared.lru_crawler_sleep.load(Relaxed),
    );
    st(
        out,
        "lru_crawler_tocrawl",
        &shared.lru_crawler_tocrawl.load(Relaxed),
    );
    st(out, "flush_enabled", &yes_no(c.flush_enabled));
    st(out, "dump_enabled", &yes_no(c.dump_enabled));
    st(out, "idle_timeout", &c.idle_timeout);
    let tls = &c.tls;
    let or_null = |v: &Option<String>| v.clone().unwrap_or_else(|| "NULL".to_string());
    st(out, "ssl_enabled", &yes_no(tls.enabled));
    st(
        out,
        "ssl_chain_cert",
        &tls.chain_cert.as_deref().unwrap_or("(null)"),
    );
    st(out, "ssl_key", &tls.key.as_deref().unwrap_or("(null)"));
    st(out, "ssl_verify_mode", &tls.verify_mode);
    st(out, "ssl_keyformat", &tls.key_format);
    st(out, "ssl_ciphers", &or_null(&tls.ciphers));
    st(out, "ssl_ca_cert", &or_null(&tls.ca_cert));
    st(out, "ssl_wbuf_size", &(tls.wbuf_size_kb * 1024));
    st(out, "ssl_session_cache", &yes_no(tls.session_cache));
    st(out, "ssl_kernel_tls", &"no");
    let min = ["tlsv1.0", "tlsv1.1", "tlsv1.2", "tlsv1.3"];
    st(
        out,
        "ssl_min_version",
        &min[usize::from(tls.min_version.min(3))],
    );
    st(out, "num_napi_ids", &"(null)");
    let memory_file = c.memory_file.as_ref().map(|p| p.display().to_string());
    st(
        out,
        "memory_file",
        &memory_file.as_deref().unwrap_or("(null)"),
    );
    reply::line(out, reply::END);
}

/// `stats items`: memcached reports per slab class; we have one class, "1", holding everything,
/// with the fields that have a meaning here, in memcached's order. memcached's per-LRU fields
/// (`number_hot`, `moves_to_cold`...) do not: there is no LRU.
pub fn items(out: &mut Vec<u8>, shared: &Shared) {
    let store = shared.store.stats_at(shared.clock.now());
    if store.curr_items > 0 {
        let fields = [
            ("number", store.curr_items),
            ("age", store.oldest_item_age),
            ("mem_requested", store.item_bytes),
            ("evicted", store.evictions),
            ("evicted_nonzero", store.evicted_nonzero),
            ("evicted_time", store.evicted_time),
            ("outofmemory", store.outofmemory),
            ("reclaimed", store.reclaimed),
            ("expired_unfetched", store.expired_unfetched),
            ("evicted_unfetched", store.evicted_unfetched),
        ];
        for (name, value) in fields {
            reply::stat(out, &format!("items:1:{name}"), value);
        }
    }
    reply::line(out, reply::END);
}

/// `stats slabs`: no slab allocator here. Class 1 stands for the whole cache, a segment for
/// both a page and a chunk (items are appended to segments; memcached cuts its 1 MB pages into
/// chunks of its class's size): `chunk_size` is the segment size, `total_pages` the segments
/// held, `used_chunks` those holding a live item. The hit counters are the cache's.
pub fn slabs(out: &mut Vec<u8>, shared: &Shared) {
    let store = shared.store.stats_at(shared.clock.now());
    if store.segments > 0 {
        let fields = [
            ("chunk_size", shared.store.segment_bytes() as u64),
            ("chunks_per_page", 1),
            ("total_pages", store.segments),
            ("total_chunks", store.segments),
            ("used_chunks", store.segments_in_use),
            ("free_chunks", store.segments - store.segments_in_use),
            ("free_chunks_end", 0),
            ("get_hits", store.get_hits),
            ("cmd_set", shared.stats.cmd_set.load(Relaxed)),
            ("delete_hits", store.delete_hits),
            ("incr_hits", store.incr_hits),
            ("decr_hits", store.decr_hits),
            ("cas_hits", store.cas_hits),
            ("cas_badval", store.cas_badval),
            ("touch_hits", store.touch_hits),
        ];
        for (name, value) in fields {
            reply::stat(out, &format!("1:{name}"), value);
        }
    }
    reply::stat(out, "active_slabs", u64::from(store.segments > 0));
    reply::stat(out, "total_malloced", store.bytes);
    reply::line(out, reply::END);
}

/// `stats sizes`: disabled, as in memcached without `-o track_sizes`.
pub fn sizes(out: &mut Vec<u8>) {
    reply::stat(out, "sizes_status", "disabled");
    reply::line(out, reply::END);
}

/// `stats conns`: one block per listener, UDP socket and client connection, keyed by id (where
/// memcached keys them by file descriptor), in memcached's fields and order. `asking`: the id of
/// the connection this answers (0 over UDP), the one memcached shows parsing a command.
pub fn conns(out: &mut Vec<u8>, shared: &Shared, asking: u64) {
    let now = shared.clock.now();
    for (id, info) in shared.conns.snapshot() {
        if let ConnRole::Udp = info.role {
            reply::stat(out, &format!("{id}:UDP"), "UDP");
        }
        reply::stat(out, &format!("{id}:addr"), &info.addr);
        let state = match &info.role {
            ConnRole::Client { listen_addr } => {
                reply::stat(out, &format!("{id}:listen_addr"), listen_addr);
                if id == asking {
                    "conn_parse_cmd"
                } else if info.spoke.load(Relaxed) {
                    "conn_read"
                } else {
                    "conn_new_cmd"
                }
            }
            ConnRole::Listener => "conn_listening",
            ConnRole::Udp => "conn_read",
        };
        reply::stat(out, &format!("{id}:state"), state);
        let last = info.last_cmd_time.load(Relaxed);
        reply::stat(
            out,
            &format!("{id}:secs_since_last_cmd"),
            now.saturating_sub(last),
        );
    }
    reply::line(out, reply::END);
}
