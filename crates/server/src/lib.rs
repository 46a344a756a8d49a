//! ferrocached: a drop-in memcached server. This crate wires the sans-I/O text protocol
//! (`ferrocache-protocol`) and the cache engine (`ferrocache-store`) to TCP, UDP and unix sockets:
//! flags, listeners (plaintext or TLS), connections, dispatch and stats.

pub mod auth;
mod binary;
pub mod clock;
pub mod config;
mod conn;
mod crawler;
mod dispatch;
mod listen;
mod meta;
mod out;
mod restart;
mod stats;
pub mod tls;
mod udp;
mod watch;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};

use ferrocache_store::Store;
use tokio::sync::Notify;

pub use config::{parse_args, Command, ServerConfig, HELP};
pub use listen::run;

/// State shared by every connection.
pub struct Shared {
    pub config: ServerConfig,
    pub store: Store,
    pub clock: clock::Clock,
    stats: stats::ServerStats,
    auth: auth::AuthState,
    conns: stats::ConnRegistry,
    verbosity: AtomicU32,
    /// The LRU crawler is enabled (`-o no_lru_crawler`, `lru_crawler enable|disable`).
    lru_crawler: AtomicBool,
    /// `lru_crawler sleep` and `tocrawl`, shown in `stats settings`.
    lru_crawler_sleep: AtomicU32,
    lru_crawler_tocrawl: AtomicU32,
    /// Notified by the `shutdown` command (with `-A`).
    shutdown: Notify,
    /// `shutdown graceful`: stop as SIGUSR1 does (saving the cache with `-e`).
    shutdown_graceful: AtomicBool,
    /// The TLS configuration with `-Z`, reloadable (`SIGHUP`, `refresh_certs`).
    tls: Option<std::sync::Arc<tls::TlsState>>,
    /// Connections streaming the log (`watch`).
    watch: watch::Watchers,
}

impl Shared {
    pub fn new(config: ServerConfig) -> Shared {
        let store = Store::new(config.store.clone());
        let verbosity = AtomicU32::new(u32::from(config.verbosity));
        let auth = auth::AuthState::new(&config.auth);
        let lru_crawler = AtomicBool::new(config.lru_crawler);
        let lru_crawler_sleep = AtomicU32::new(config.lru_crawler_sleep);
        let lru_crawler_tocrawl = AtomicU32::new(config.lru_crawler_tocrawl);
        Shared {
            config,
            store,
            clock: clock::Clock::new(),
            stats: stats::ServerStats::default(),
            auth,
            conns: stats::ConnRegistry::default(),
            verbosity,
            lru_crawler,
            lru_crawler_sleep,
            lru_crawler_tocrawl,
            shutdown: Notify::new(),
            shutdown_graceful: AtomicBool::new(false),
            tls: None,
            watch: watch::Watchers::default(),
        }
    }

    /// The level set by `-v` or the `verbosity` command (shown in `stats settings`).
    pub fn verbosity(&self) -> u32 {
        self.verbosity.load(Relaxed)
    }

    fn set_verbosity(&self, level: u32) {
        // memcached caps it at MAX_VERBOSITY_LEVEL (2).
        self.verbosity.store(level.min(2), Relaxed);
    }
}
