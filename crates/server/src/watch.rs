//! `watch`: connections that asked for memcached's log stream, and the logging the request path
//! does for them. Nobody watching costs the request path one relaxed load of a word that only
//! changes when a watcher comes or goes ([`Watchers::wants`]). A line is formatted once and queued
//! to each watcher of its kind without waiting: a watcher that reads too slowly loses lines, and is
//! told how many (`skipped=N`) before the next one it gets, as memcached's logger does.

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering::Relaxed};

use ferrocache_protocol::text::watch::{self as log, Stamp};
use ferrocache_protocol::text::watch::{CONNEVENTS, EVICTIONS, FETCHERS, MUTATIONS};
use ferrocache_store::{Store, StoreMode, StoreOutcome};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::dispatch::Ctx;

/// memcached's limit on watchers (`WATCHER_LIMIT`).
const MAX_WATCHERS: usize = 20;
/// Lines queued for one watcher before it starts losing them.
const QUEUE_LINES: usize = 4096;

struct Watcher {
    kinds: u16,
    lines: mpsc::Sender<Vec<u8>>,
    /// Lines lost since the last one queued.
    skipped: AtomicU64,
}

/// What a watching connection reads from.
pub struct Subscription {
    lines: mpsc::Receiver<Vec<u8>>,
}

#[derive(Default)]
pub struct Watchers {
    /// The kinds some watcher wants.
    kinds: AtomicU16,
    list: Mutex<Vec<Watcher>>,
    /// Lines logged since start (memcached's `gid`, and `stats` `log_worker_written`).
    gid: AtomicU64,
    /// Evictions the store could not keep for a line (`log_worker_dropped`).
    dropped: AtomicU64,
    /// Lines queued for a watcher, and lines a full queue lost (`log_watcher_sent`, `_skipped`).
    sent: AtomicU64,
    skipped: AtomicU64,
}

/// The `stats` lines memcached's logger keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogStats {
    pub worker_dropped: u64,
    pub worker_written: u64,
    pub watcher_skipped: u64,
    pub watcher_sent: u64,
    pub watchers: u64,
}

impl Watchers {
    /// What `stats` shows of the logger.
    pub fn stats(&self) -> LogStats {
        LogStats {
            worker_dropped: self.dropped.load(Relaxed),
            worker_written: self.gid.load(Relaxed),
            watcher_skipped: self.skipped.load(Relaxed),
            watcher_sent: self.sent.load(Relaxed),
            watchers: self
                .list
                .lock()
                .iter()
                .filter(|w| !w.lines.is_closed())
                .count() as u64,
        }
    }

    /// Does some watcher want lines of `kind`?
    #[inline]
    pub fn wants(&self, kind: u16) -> bool {
        self.kinds.load(Relaxed) & kind != 0
    }

    /// Adds a watcher of `kinds`; None when [`MAX_WATCHERS`] are watching already. Watching
    /// evictions turns on the store's eviction log.
    pub fn add(&self, kinds: u16, store: &Store) -> Option<Subscription> {
        let mut list = self.list.lock();
        list.retain(|w| !w.lines.is_closed());
        if list.len() >= MAX_WATCHERS {
            return None;
        }
        let (tx, rx) = mpsc::channel(QUEUE_LINES);
        list.push(Watcher {
            kinds,
            lines: tx,
            skipped: AtomicU64::new(0),
        });
        self.update(&list, store);
        Some(Subscription { lines: rx })
    }

    /// Forgets watchers that went away (the server's maintenance calls it once a second), and
    /// stops the eviction log when nobody watches evictions any more.
    pub fn prune(&self, store: &Store) {
        let mut list = self.list.lock();
        let before = list.len();
        list.retain(|w| !w.lines.is_closed());
        if list.len() != before {
            self.update(&list, store);
        }
    }

    fn update(&self, list: &[Watcher], store: &Store) {
        let kinds = list.iter().fold(0, |all, w| all | w.kinds);
        let before = self.kinds.swap(kinds, Relaxed);
        if (before ^ kinds) & EVICTIONS != 0 {
            store.log_evictions(kinds & EVICTIONS != 0);
        }
    }

    /// Logs a line of `kind`, written by `write` after the stamp it is given, to every watcher of
    /// that kind.
    pub fn log(&self, kind: u16, write: impl FnOnce(&mut Vec<u8>, Stamp)) {
        if !self.wants(kind) {
            return;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let stamp = Stamp {
            unix_secs: now.as_secs(),
            micros: now.subsec_micros(),
            gid: self.gid.fetch_add(1, Relaxed) + 1,
        };
        let mut line = Vec::with_capacity(128);
        write(&mut line, stamp);
        for w in self.list.lock().iter().filter(|w| w.kinds & kind != 0) {
            // Lines lost since the last one queued are announced before this one.
            let skipped = w.skipped.load(Relaxed);
            let queued = if skipped == 0 {
                w.lines.try_send(line.clone())
            } else {
                let mut with_notice = Vec::with_capacity(line.len() + 24);
                log::skipped_line(&mut with_notice, skipped);
                with_notice.extend_from_slice(&line);
                w.lines.try_send(with_notice)
            };
            match queued {
                Ok(()) => {
                    w.skipped.fetch_sub(skipped, Relaxed);
                    self.sent.fetch_add(1, Relaxed);
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    w.skipped.fetch_add(1, Relaxed);
                    self.skipped.fetch_add(1, Relaxed);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }

    /// Logs the store's evictions since the last call, their ages and times left from the
    /// server's relative clock `rel_now`. Evictions the store could not keep are announced to
    /// the watchers as lines lost.
    pub fn log_evictions(&self, store: &Store, rel_now: u32) {
        if !self.wants(EVICTIONS) {
            return;
        }
        let (evicted, dropped) = store.take_evictions();
        if dropped > 0 {
            self.dropped.fetch_add(dropped, Relaxed);
            for w in self.list.lock().iter().filter(|w| w.kinds & EVICTIONS != 0) {
                w.skipped.fetch_add(dropped, Relaxed);
            }
        }
        for e in evicted {
            self.log(EVICTIONS, |out, stamp| {
                let ttl = match e.exptime {
                    0 => -1,
                    exptime => i64::from(exptime) - i64::from(rel_now),
                };
                let eviction = log::Eviction {
                    key: &e.key,
                    fetched: e.fetched,
                    ttl,
                    last_access: rel_now.saturating_sub(e.written),
                    size: e.value_len,
                };
                log::eviction_line(out, stamp, &eviction);
            });
        }
    }
}

/// Streams a watcher's lines to its connection until the client closes it or a write fails.
/// What the client sends from now on is read and ignored, as memcached ignores it.
pub async fn stream<S>(stream: S, mut subscription: Subscription)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut discard = vec![0u8; 4096];
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            line = subscription.lines.recv() => {
                let Some(line) = line else { return };
                batch.clear();
                let mut next = Some(line);
                // Everything queued goes out in one write.
                while let Some(line) = next {
                    batch.extend_from_slice(&line);
                    next = subscription.lines.try_recv().ok();
                }
                if writer.write_all(&batch).await.is_err() {
                    return;
                }
            }
            read = reader.read(&mut discard) => {
                if !matches!(read, Ok(n) if n > 0) {
                    return;
                }
            }
        }
    }
}

impl Ctx<'_> {
    /// `watch fetchers`: a lookup of `key` found a value of `size` bytes, or nothing.
    #[inline]
    pub(crate) fn log_fetch(&self, key: &[u8], size: Option<usize>) {
        if !self.shared.watch.wants(FETCHERS) {
            return;
        }
        let cfd = self.conn_id;
        self.shared.watch.log(FETCHERS, |out, stamp| {
            log::item_get_line(out, stamp, key, size, cfd);
        });
    }

    /// `watch fetchers`, for a command that looks its key up before it acts (a store, delete,
    /// touch, incr or decr, as memcached's do): what the lookup finds, read without side effects
    /// and only while watched. Returns the value's length, for [`Ctx::log_store`].
    #[inline]
    pub(crate) fn log_lookup(&self, key: &[u8]) -> Option<usize> {
        if !self.shared.watch.wants(FETCHERS | MUTATIONS) {
            return None;
        }
        let size = self.shared.store.value_len(key, self.shared.clock.now());
        self.log_fetch(key, size);
        size
    }

    /// `watch mutations` (and `evictions`, which a store may have caused): a storage command's
    /// outcome for `data` bytes expiring at `exptime`, over a value of `before` bytes (what
    /// [`Ctx::log_lookup`] found: an append's item is the two together).
    pub(crate) fn log_store(
        &self,
        key: &[u8],
        (mode, exptime): (StoreMode, u32),
        (before, data): (Option<usize>, usize),
        outcome: StoreOutcome,
    ) {
        if !self.shared.watch.wants(MUTATIONS | EVICTIONS) {
            return;
        }
        let now = self.shared.clock.now();
        let cfd = self.conn_id;
        let size = match (mode, outcome, before) {
            (StoreMode::Append | StoreMode::Prepend, StoreOutcome::Stored, Some(before)) => {
                before + data
            }
            _ => data,
        };
        self.shared.watch.log(MUTATIONS, |out, stamp| {
            let status = match outcome {
                StoreOutcome::Stored => "stored",
                StoreOutcome::NotStored => "not_stored",
                StoreOutcome::Exists => "exists",
                StoreOutcome::NotFound => "not_found",
                StoreOutcome::TooLarge => "too_large",
                StoreOutcome::OutOfMemory => "no_memory",
            };
            let command = match mode {
                StoreMode::Set => "set",
                StoreMode::Add => "add",
                StoreMode::Replace => "replace",
                StoreMode::Append => "append",
                StoreMode::Prepend => "prepend",
                StoreMode::Cas(_) => "cas",
            };
            let store = log::Store {
                key,
                status,
                command,
                ttl: if exptime == 0 {
                    0
                } else {
                    exptime.wrapping_sub(now)
                },
                cfd,
                size,
            };
            log::item_store_line(out, stamp, &store);
        });
        self.shared.watch.log_evictions(&self.shared.store, now);
    }
}

/// `watch connevents`: a connection opened (`reason` None) or closed.
pub fn log_conn(
    shared: &crate::Shared,
    info: &crate::stats::ConnInfo,
    id: u64,
    reason: Option<&str>,
) {
    shared.watch.log(CONNEVENTS, |out, stamp| {
        // memcached's way of naming a unix socket's peer.
        let (ip, port, transport) = match info.peer {
            Some(addr) => (addr.ip().to_string(), addr.port(), "tcp"),
            None => ("unix".to_string(), 0, "local"),
        };
        let peer = log::Peer {
            ip: &ip,
            port,
            transport,
            cfd: id,
        };
        match reason {
            None => log::conn_new_line(out, stamp, &peer),
            Some(reason) => log::conn_close_line(out, stamp, &peer, reason),
        }
    });
}
