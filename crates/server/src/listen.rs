//! Listeners (TCP on each `-l` address, or a unix socket with `-s`), the accept loops with the
//! `-c` connection limit, the port file for `MEMCACHED_PORT_FILENAME`, and shutdown on
//! SIGINT/SIGTERM or the `shutdown` command.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use anyhow::{bail, Context};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, UnixListener};

use crate::config::Listen;
use crate::stats::ConnInfo;
use crate::{conn, ServerConfig, Shared};

/// What memcached answers a connection over the `-c` limit before closing it.
const TOO_MANY_CONNECTIONS: &[u8] = b"ERROR Too many open connections\r\n";

/// Binds the listeners, then serves until SIGINT, SIGTERM or `shutdown`.
pub fn run(config: ServerConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.threads)
        .thread_name("ferrocached-worker")
        .enable_all()
        .build()
        .context("failed to start the worker threads")?;
    runtime.block_on(serve(config))
}

async fn serve(config: ServerConfig) -> anyhow::Result<()> {
    let shared = Arc::new(Shared::new(config));
    crate::auth::spawn_reload_on_sighup(&shared)?;
    let next_id = Arc::new(AtomicU64::new(1));
    let mut unix_path = None;
    match &shared.config.listen {
        Listen::Tcp { interfaces, port } => {
            let listeners = bind_tcp(interfaces, port.unwrap_or(0), shared.config.backlog).await?;
            write_port_file(&listeners)?;
            for listener in listeners {
                let local = listener.local_addr()?;
                tracing::info!("listening on tcp {local}");
                tokio::spawn(accept_tcp(listener, shared.clone(), next_id.clone()));
            }
        }
        Listen::Unix { path, mask } => {
            let listener = bind_unix(path, *mask)?;
            tracing::info!("listening on unix socket {path}");
            unix_path = Some(path.clone());
            tokio::spawn(accept_unix(
                listener,
                shared.clone(),
                next_id.clone(),
                path.clone(),
            ));
        }
        Listen::Nothing => {
            tracing::warn!("-p 0 without -s: listening on nothing, as memcached does");
        }
    }
    wait_for_shutdown(&shared).await;
    if let Some(path) = unix_path {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

async fn wait_for_shutdown(shared: &Shared) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    let terminated = async {
        match term.as_mut() {
            Some(term) => {
                term.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        _ = terminated => tracing::info!("SIGTERM: shutting down"),
        _ = shared.shutdown.notified() => tracing::info!("shutdown command: shutting down"),
    }
}

async fn bind_tcp(
    interfaces: &[String],
    port: u16,
    backlog: u32,
) -> anyhow::Result<Vec<TcpListener>> {
    let mut listeners = Vec::new();
    for interface in interfaces {
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
            listeners.push(socket.listen(backlog)?);
        }
    }
    Ok(listeners)
}

fn split_host_port(interface: &str, default_port: u16) -> anyhow::Result<(&str, u16)> {
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
/// `TCP INET: <port>` (or `INET6`) line per listener, atomically via a rename.
fn write_port_file(listeners: &[TcpListener]) -> anyhow::Result<()> {
    let Some(path) = std::env::var_os("MEMCACHED_PORT_FILENAME") else {
        return Ok(());
    };
    let mut text = String::new();
    for listener in listeners {
        let addr = listener.local_addr()?;
        let family = if addr.is_ipv4() { "INET" } else { "INET6" };
        text.push_str(&format!("TCP {family}: {}\n", addr.port()));
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

async fn accept_tcp(listener: TcpListener, shared: Arc<Shared>, next_id: Arc<AtomicU64>) {
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
        let info = ConnInfo {
            addr: format!("tcp:{peer}"),
            listen_addr: listen_addr.clone(),
            last_cmd_time: AtomicU32::new(shared.clock.now()),
        };
        start_connection(stream, shared.clone(), &next_id, info);
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
        let info = ConnInfo {
            addr: format!("unix:{path}"),
            listen_addr: format!("unix:{path}"),
            last_cmd_time: AtomicU32::new(shared.clock.now()),
        };
        start_connection(stream, shared.clone(), &next_id, info);
    }
}

fn start_connection<S>(mut stream: S, shared: Arc<Shared>, next_id: &AtomicU64, info: ConnInfo)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if admit(&shared).is_none() {
        tracing::info!("connection from {} refused: -c limit reached", info.addr);
        tokio::spawn(async move {
            let _ = stream.write_all(TOO_MANY_CONNECTIONS).await;
        });
        return;
    }
    let id = next_id.fetch_add(1, Relaxed);
    let info = Arc::new(info);
    tracing::info!(conn = id, "new client connection from {}", info.addr);
    shared.conns.insert(id, info.clone());
    tokio::spawn(async move {
        conn::serve(stream, shared.clone(), id, info).await;
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
