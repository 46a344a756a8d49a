//! Listeners (TCP on each `-l` address, or a unix socket with `-s`), the accept loops with the
//! `-c` connection limit, the port file for `MEMCACHED_PORT_FILENAME`, TLS handshakes on `-Z`
//! listeners (all TCP ones but `-l notls:...`), certificate reload on SIGHUP, and shutdown on
//! SIGINT/SIGTERM or the `shutdown` command, or a graceful one on SIGUSR1 or `shutdown graceful`
//! (which saves the cache with `-e`, and restores it at the next start: `restart.rs`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use anyhow::{bail, Context};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, UnixListener};

use crate::config::Listen;
use crate::stats::{ConnInfo, ConnRole};
use crate::tls::{TlsState, NOTLS_PREFIX};
use crate::{conn, ServerConfig, Shared};

/// What memcached answers a connection over the `-c` limit before closing it.
const TOO_MANY_CONNECTIONS: &[u8] = b"ERROR Too many open connections\r\n";
/// A client that connects to a TLS port and does not finish its handshake in this time is
/// dropped, so half-open handshakes cannot pile up (they do not count against `-c` yet).
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Binds the listeners, then serves until SIGINT, SIGTERM or `shutdown`.
pub fn run(config: ServerConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.threads)
        .thread_name("ferrocached-worker")
        .enable_all()
        .build()
        .context("failed to start the worker threads")?;
    let (shared, stop) = runtime.block_on(serve(config))?;
    // The workers stop (connections mid-request are dropped, as on any stop) before the cache
    // is saved, so nothing changes it meanwhile.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    if let (Stop::Graceful, Some(path)) = (stop, &shared.config.memory_file) {
        let started = std::time::Instant::now();
        let count = crate::restart::save(&shared, path)
            .with_context(|| format!("failed to save the cache to {}", path.display()))?;
        tracing::warn!(
            "saved {count} items to {} in {:.1?} for the next start",
            path.display(),
            started.elapsed()
        );
    }
    Ok(())
}

/// How the server was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// SIGINT, SIGTERM, `shutdown`.
    Now,
    /// SIGUSR1, `shutdown graceful`: with `-e`, the cache is saved for the next start.
    Graceful,
}

async fn serve(config: ServerConfig) -> anyhow::Result<(Arc<Shared>, Stop)> {
    let mut shared = Shared::new(config);
    if shared.config.tls.enabled {
        let state = TlsState::new(shared.config.tls.clone(), shared.clock.now())?;
        shared.tls = Some(Arc::new(state));
    }
    if let Some(path) = &shared.config.memory_file {
        restore(&shared, path);
    }
    let shared = Arc::new(shared);
    // Registered before the port file is written, so that from then on SIGTERM and SIGUSR1 stop
    // the server as they should (their default action kills it on the spot).
    let stops = StopSignals::new()?;
    // Registered before the port file is written, so a SIGHUP from then on is never fatal.
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot handle SIGHUP")?;
    tokio::spawn(reload_on_sighup(hangup, shared.clone()));
    // -Y auth files reload on SIGHUP too (its own listener; tokio delivers to every one).
    crate::auth::spawn_reload_on_sighup(&shared)?;
    let next_id = Arc::new(AtomicU64::new(1));
    tokio::spawn(tick_clock(shared.clone()));
    tokio::spawn(maintain_store(shared.clone()));
    let mut unix_path = None;
    let udp = match &shared.config.udp {
        Some(udp) => crate::udp::bind(&udp.interfaces, udp.port, shared.config.threads).await?,
        None => Vec::new(),
    };
    // memcached counts a UDP "connection" per worker thread on each address: one socket each here.
    let udp_sockets: usize = udp.iter().map(|g| g.sockets.len()).sum();
    shared.stats.listening(udp_sockets as u64);
    // Listeners, then UDP sockets, take the first `stats conns` ids (memcached lists them first,
    // by file descriptor); the tasks that accept clients start once all are registered.
    let register = |addr: String, role| {
        let info = Arc::new(ConnInfo::new(addr, role, shared.clock.now(), None));
        shared
            .conns
            .insert(next_id.fetch_add(1, Relaxed), info.clone());
        info
    };
    let mut accepts: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> =
        Vec::new();
    match &shared.config.listen {
        Listen::Tcp { interfaces, port } => {
            let listeners = bind_tcp(interfaces, port.unwrap_or(0), shared.config.backlog).await?;
            write_port_file(&listeners, &udp)?;
            shared.stats.listening(listeners.len() as u64);
            for (listener, plaintext) in listeners {
                let local = listener.local_addr()?;
                register(format!("tcp:{local}"), ConnRole::Listener);
                let tls = shared.tls.clone().filter(|_| !plaintext);
                let kind = if tls.is_some() { "tls" } else { "tcp" };
                tracing::info!("listening on {kind} {local}");
                accepts.push(Box::pin(accept_tcp(
                    listener,
                    tls,
                    shared.clone(),
                    next_id.clone(),
                )));
            }
        }
        Listen::Unix { path, mask } => {
            let listener = bind_unix(path, *mask)?;
            shared.stats.listening(1);
            register(format!("unix:{path}"), ConnRole::Listener);
            tracing::info!("listening on unix socket {path}");
            unix_path = Some(path.clone());
            accepts.push(Box::pin(accept_unix(
                listener,
                shared.clone(),
                next_id.clone(),
                path.clone(),
            )));
        }
        Listen::Nothing if !udp.is_empty() => write_port_file(&[], &udp)?,
        Listen::Nothing => {
            tracing::warn!("-p 0 without -s: listening on nothing, as memcached does");
        }
    }
    for group in udp {
        tracing::info!("listening on udp {}", group.local_addr()?);
        for socket in group.sockets {
            let info = register(format!("udp:{}", socket.local_addr()?), ConnRole::Udp);
            tokio::spawn(crate::udp::serve(socket, shared.clone(), info));
        }
    }
    for accept in accepts {
        tokio::spawn(accept);
    }
    let stop = wait_for_shutdown(&shared, stops).await;
    if let Some(path) = unix_path {
        let _ = std::fs::remove_file(path);
    }
    Ok((shared, stop))
}

/// Stores again the items a graceful stop saved to `path` (`-e`), before the listeners open.
/// A file that cannot be read costs its items, never the start: memcached, too, starts with a
/// clean cache when its saved state does not validate.
fn restore(shared: &Shared, path: &std::path::Path) {
    let started = std::time::Instant::now();
    let loaded = crate::restart::load(shared, path);
    // Items stored and then evicted for others: the file held more than this `-m` does.
    let evicted = shared.store.stats().evictions;
    // Counters start at zero, as after any start; the items are there.
    shared.store.reset_stats();
    match loaded {
        Ok(None) => tracing::warn!(
            "no cache saved in {}: starting with a clean cache",
            path.display()
        ),
        Ok(Some(loaded)) => {
            tracing::warn!(
                "restored {} items from {} in {:.1?} ({} expired or flushed meanwhile, {} did not \
                 fit, {} evicted again to make room for later ones)",
                loaded.restored,
                path.display(),
                started.elapsed(),
                loaded.expired,
                loaded.refused,
                evicted
            );
        }
        Err(e) => tracing::warn!(
            "could not restore the cache from {} ({e}); what was read before stays",
            path.display()
        ),
    }
}

/// Sets the relative clock each time a second turns (memcached's `clock_handler`), so that
/// requests read the time from memory.
async fn tick_clock(shared: Arc<Shared>) {
    loop {
        let until_next = shared.clock.tick();
        // tokio's timer never fires early; the millisecond covers its rounding.
        tokio::time::sleep(until_next + std::time::Duration::from_millis(1)).await;
    }
}

/// Once a second, frees the segments whose items have all expired (memcached's LRU crawler does
/// this work in the background), so expired items do not hold memory until they are met. It
/// looks at each segment's latest exptime, never at items of segments still holding a live one.
/// Then it finishes the index growths under way, so that tables which take no new keys give
/// back their old buckets (as memcached's hash table expands in a thread of its own).
async fn maintain_store(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let shared = shared.clone();
        // Off the workers: it locks each shard in turn.
        let maintain = move || {
            let now = shared.clock.now();
            shared.store.reclaim_expired(now);
            shared.store.finish_index_growths();
            // Watchers that left stop costing anything; evictions no store command reported
            // (those making room for an index growth or a touch) are logged now.
            shared.watch.prune(&shared.store);
            shared.watch.log_evictions(&shared.store, now);
        };
        if tokio::task::spawn_blocking(maintain).await.is_err() {
            return;
        }
    }
}

/// SIGTERM and SIGUSR1, listened for from start (SIGINT is tokio's `ctrl_c`).
struct StopSignals {
    terminate: tokio::signal::unix::Signal,
    graceful: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn new() -> anyhow::Result<StopSignals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopSignals {
            terminate: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            graceful: signal(SignalKind::user_defined1()).context("cannot handle SIGUSR1")?,
        })
    }
}

async fn wait_for_shutdown(shared: &Shared, mut signals: StopSignals) -> Stop {
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("SIGINT: shutting down");
            Stop::Now
        }
        _ = signals.terminate.recv() => {
            tracing::info!("SIGTERM: shutting down");
            Stop::Now
        }
        _ = signals.graceful.recv() => {
            tracing::info!("SIGUSR1: stopping gracefully");
            Stop::Graceful
        }
        _ = shared.shutdown.notified() => {
            tracing::info!("shutdown command: shutting down");
            if shared.shutdown_graceful.load(Relaxed) {
                Stop::Graceful
            } else {
                Stop::Now
            }
        }
    }
}

/// memcached keeps running on SIGHUP; here it also reloads the TLS certificates, like the
/// `refresh_certs` command. A reload that fails keeps the old certificates and says why.
async fn reload_on_sighup(mut hangup: tokio::signal::unix::Signal, shared: Arc<Shared>) {
    while hangup.recv().await.is_some() {
        match &shared.tls {
            Some(tls) => match tls.reload(shared.clock.now()) {
                Ok(()) => tracing::warn!("SIGHUP: TLS certificates reloaded"),
                Err(e) => tracing::error!(
                    "SIGHUP: TLS reload failed, keeping the old: {}",
                    e.trim_end()
                ),
            },
            None => tracing::info!("SIGHUP: nothing to reload"),
        }
    }
}

/// Binds every `-l` interface; the flag says which listeners stay plaintext (`notls:` prefix).
async fn bind_tcp(
    interfaces: &[String],
    port: u16,
    backlog: u32,
) -> anyhow::Result<Vec<(TcpListener, bool)>> {
    let mut listeners = Vec::new();
    for interface in interfaces {
        let (interface, plaintext) = match interface.strip_prefix(NOTLS_PREFIX) {
            Some(rest) => (rest, true),
            None => (interface.as_str(), false),
        };
        // "-l host:port" overrides the port for that interface, as in memcached.
        let (host, port) = split_host_port(interface, port)?;
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .with_context(|| format!("getaddrinfo(): cannot resolve {host}"))?
            .collect();
        if addrs.is_empty() {
            bail!("getaddrinfo(): no address for {host}");
        }
        for addr in addrs {
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            }?;
            socket.set_reuseaddr(true)?;
            socket
                .bind(addr)
                .with_context(|| format!("failed to listen on TCP port {port} ({addr})"))?;
            listeners.push((socket.listen(backlog)?, plaintext));
        }
    }
    Ok(listeners)
}

pub(crate) fn split_host_port(interface: &str, default_port: u16) -> anyhow::Result<(&str, u16)> {
    // [v6]:port, v4:port, or a bare host.
    if let Some(rest) = interface.strip_prefix('[') {
        let (host, after) = rest.split_once(']').context("bad -l address")?;
        return match after.strip_prefix(':') {
            Some(port) => Ok((host, port.parse().context("bad port in -l")?)),
            None => Ok((host, default_port)),
        };
    }
    match interface.split_once(':') {
        Some((host, port)) if !port.contains(':') => {
            Ok((host, port.parse().context("bad port in -l")?))
        }
        _ => Ok((interface, default_port)),
    }
}

/// memcached's test harness protocol: with `MEMCACHED_PORT_FILENAME` set, write one
/// `TCP INET: <port>` (or `INET6`) line per listener, then a `UDP INET: <port>` line per UDP
/// socket, atomically via a rename.
fn write_port_file(
    listeners: &[(TcpListener, bool)],
    udp: &[crate::udp::Group],
) -> anyhow::Result<()> {
    let Some(path) = std::env::var_os("MEMCACHED_PORT_FILENAME") else {
        return Ok(());
    };
    let tcp = listeners.iter().map(|(l, _)| ("TCP", l.local_addr()));
    let udp = udp.iter().map(|s| ("UDP", s.local_addr()));
    let mut text = String::new();
    for (kind, addr) in tcp.chain(udp) {
        let addr = addr?;
        let family = if addr.is_ipv4() { "INET" } else { "INET6" };
        text.push_str(&format!("{kind} {family}: {}\n", addr.port()));
    }
    let path = std::path::PathBuf::from(path);
    let tmp = path.with_extension("lck");
    std::fs::write(&tmp, text).context("cannot write MEMCACHED_PORT_FILENAME")?;
    std::fs::rename(&tmp, &path).context("cannot rename the port file")?;
    Ok(())
}

fn bind_unix(path: &str, mask: u32) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            std::fs::remove_file(path).with_context(|| format!("cannot remove stale {path}"))?;
        }
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("failed to listen on UNIX socket {path}"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mask & 0o777))
        .with_context(|| format!("cannot set the mode of {path}"))?;
    Ok(listener)
}

/// Admits a connection under the `-c` limit; `None` means refused.
fn admit(shared: &Shared) -> Option<()> {
    let stats = &shared.stats;
    let max = shared.config.max_connections as u64;
    let mut current = stats.curr_connections.load(Relaxed);
    loop {
        if current >= max {
            stats.rejected_connections.fetch_add(1, Relaxed);
            return None;
        }
        match stats
            .curr_connections
            .compare_exchange_weak(current, current + 1, Relaxed, Relaxed)
        {
            Ok(_) => break,
            Err(actual) => current = actual,
        }
    }
    stats.total_connections.fetch_add(1, Relaxed);
    Some(())
}

async fn accept_tcp(
    listener: TcpListener,
    tls: Option<Arc<TlsState>>,
    shared: Arc<Shared>,
    next_id: Arc<AtomicU64>,
) {
    let listen_addr = listener
        .local_addr()
        .map(|a| format!("tcp:{a}"))
        .unwrap_or_default();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and friends: back off a little instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let info = ConnInfo::new(
            format!("tcp:{peer}"),
            ConnRole::Client {
                listen_addr: listen_addr.clone(),
            },
            shared.clock.now(),
            Some(peer),
        );
        match &tls {
            None => start_connection(stream, shared.clone(), &next_id, info, false),
            Some(tls) => {
                // The handshake runs in its own task so that a slow client never holds up accept.
                let acceptor = tls.acceptor();
                let (tls, shared, next_id) = (tls.clone(), shared.clone(), next_id.clone());
                tokio::spawn(async move {
                    let failure = match tokio::time::timeout(
                        HANDSHAKE_TIMEOUT,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(stream)) => {
                            return start_connection(stream, shared, &next_id, info, true);
                        }
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => "timed out".to_string(),
                    };
                    tls.handshake_errors.fetch_add(1, Relaxed);
                    tracing::info!("TLS handshake with {peer} failed: {failure}");
                });
            }
        }
    }
}

async fn accept_unix(
    listener: UnixListener,
    shared: Arc<Shared>,
    next_id: Arc<AtomicU64>,
    path: String,
) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let info = ConnInfo::new(
            format!("unix:{path}"),
            ConnRole::Client {
                listen_addr: format!("unix:{path}"),
            },
            shared.clock.now(),
            None,
        );
        start_connection(stream, shared.clone(), &next_id, info, false);
    }
}

/// Serves an accepted stream under the `-c` limit. `close_notify`: end the session cleanly when
/// the connection ends (TLS sends its close_notify alert, which OpenSSL clients expect).
fn start_connection<S>(
    mut stream: S,
    shared: Arc<Shared>,
    next_id: &AtomicU64,
    info: ConnInfo,
    close_notify: bool,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if admit(&shared).is_none() {
        tracing::info!("connection from {} refused: -c limit reached", info.addr);
        tokio::spawn(async move {
            let _ = stream.write_all(TOO_MANY_CONNECTIONS).await;
            // Flushes what a TLS stream still holds and closes it cleanly.
            let _ = stream.shutdown().await;
        });
        return;
    }
    let id = next_id.fetch_add(1, Relaxed);
    let info = Arc::new(info);
    tracing::info!(conn = id, "new client connection from {}", info.addr);
    shared.conns.insert(id, info.clone());
    crate::watch::log_conn(&shared, &info, id, None);
    tokio::spawn(async move {
        let reason = conn::serve(&mut stream, shared.clone(), id, info.clone()).await;
        crate::watch::log_conn(&shared, &info, id, Some(reason));
        if close_notify {
            // Bounded: a client that stopped reading must not keep the task alive.
            let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.shutdown()).await;
        }
        shared.conns.remove(id);
        shared.stats.curr_connections.fetch_sub(1, Relaxed);
        tracing::info!(conn = id, "connection closed");
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_listen_addresses() {
        assert_eq!(
            split_host_port("127.0.0.1", 5).expect("ok"),
            ("127.0.0.1", 5)
        );
        assert_eq!(
            split_host_port("127.0.0.1:7", 5).expect("ok"),
            ("127.0.0.1", 7)
        );
        assert_eq!(split_host_port("[::1]:7", 5).expect("ok"), ("::1", 7));
        assert_eq!(split_host_port("::1", 5).expect("ok"), ("::1", 5));
        assert!(split_host_port("127.0.0.1:x", 5).is_err());
    }
}
