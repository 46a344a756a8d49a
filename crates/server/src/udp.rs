//! UDP (`-U`, off by default as in memcached 1.6): each datagram is one request message in
//! memcached's framing (`ferrocache_protocol::udp`), holding one or more whole commands, text or
//! binary by its first byte. Each command's reply goes back to the sender as a message of its own,
//! cut into datagrams of at most 1,400 bytes; a get's reply is sent in messages of about 1 MB
//! (where a TCP connection would write out), so a get naming many big items never piles up its
//! reply. What memcached drops, we drop without a word: a datagram shorter than its header, a
//! request of more than one datagram, and a command left incomplete at the datagram's end.
//! `watch` is answered `ERROR`: a log stream needs a connection.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use anyhow::Context;
use ferrocache_protocol::binary::BinaryParse;
use ferrocache_protocol::text::{self, Parse};
use ferrocache_protocol::udp;
use tokio::net::UdpSocket;

use crate::dispatch::{Began, Ctx, Next};
use crate::out::Output;
use crate::stats::{ConnCounters, ConnInfo};
use crate::Shared;

/// The largest request datagram read (memcached's `UDP_READ_BUFFER_SIZE`).
const READ_BUFFER: usize = 64 * 1024;

/// The UDP sockets of one address: `-t` of them bound to the same port with `SO_REUSEPORT`, each
/// read by one task, so that the kernel spreads clients (by their address and port) over the
/// worker threads. One socket read by `-t` tasks, as memcached's threads each read it, wakes every
/// reader for each datagram (memcaslap ran at about half memcached's rate that way); one socket
/// read by one task leaves the other threads idle.
pub struct Group {
    pub sockets: Vec<UdpSocket>,
}

impl Group {
    /// The address the group serves (the port the kernel picked for `-U -1`).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.sockets[0].local_addr()
    }
}

/// Binds a group of `readers` sockets on every `-l` interface at `port` (0: the kernel picks
/// one, for `-U -1`), or at the interface's own port (`-l host:port`), which memcached uses for
/// UDP too.
pub async fn bind(interfaces: &[String], port: u16, readers: usize) -> anyhow::Result<Vec<Group>> {
    let mut groups = Vec::new();
    for interface in interfaces {
        let interface = interface
            .strip_prefix(crate::tls::NOTLS_PREFIX)
            .unwrap_or(interface);
        let (host, port) = crate::listen::split_host_port(interface, port)?;
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .with_context(|| format!("getaddrinfo(): cannot resolve {host}"))?
            .collect();
        for mut addr in addrs {
            if addr.port() != 0 {
                // SO_REUSEPORT would let us join a port another server of this user holds, and
                // share its datagrams; a plain bind first fails on it, as memcached's does.
                std::net::UdpSocket::bind(addr)
                    .with_context(|| format!("failed to listen on UDP port {port} ({addr})"))?;
            }
            let mut sockets = Vec::with_capacity(readers);
            for _ in 0..readers.max(1) {
                let socket = reuse_port_socket(addr)
                    .with_context(|| format!("failed to listen on UDP port {port} ({addr})"))?;
                // The others join the port the first one got.
                addr = socket.local_addr()?;
                sockets.push(socket);
            }
            groups.push(Group { sockets });
        }
    }
    Ok(groups)
}

fn reuse_port_socket(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// Answers datagrams on `socket` until the server stops.
pub async fn serve(socket: UdpSocket, shared: Arc<Shared>, info: Arc<ConnInfo>) {
    let mut buf = vec![0u8; READ_BUFFER];
    let mut datagrams = Vec::new();
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            // An ICMP error from an earlier send (the peer's port closed), or the like: it
            // concerns no request still waiting.
            continue;
        };
        let Some((frame, payload)) = udp::parse(&buf[..n]) else {
            continue;
        };
        if frame.total != 1 {
            continue;
        }
        // For `stats conns` (memcached's UDP "connection" notes each command's time too).
        info.last_cmd_time.store(shared.clock.now(), Relaxed);
        let mut ctx = Ctx {
            shared: &shared,
            out: Output::default(),
            counters: ConnCounters {
                bytes_read: n as u64,
                ..Default::default()
            },
            close_after_reply: false,
            auth: crate::auth::ConnAuth::default(),
            conn_id: 0,
        };
        let mut reply = Reply {
            socket: &socket,
            peer,
            request_id: frame.request_id,
            datagrams: &mut datagrams,
        };
        answer(payload, &mut ctx, &mut reply).await;
        shared.stats.add(&ctx.counters);
    }
}

/// Where one request's replies go.
struct Reply<'a> {
    socket: &'a UdpSocket,
    peer: SocketAddr,
    request_id: u16,
    datagrams: &'a mut Vec<Vec<u8>>,
}

impl Reply<'_> {
    /// Sends the pending output as one message (nothing when there is none).
    async fn send(&mut self, ctx: &mut Ctx<'_>) {
        if ctx.out.is_empty() {
            return;
        }
        let text = std::mem::take(&mut ctx.out).into_text();
        udp::frames(self.request_id, &text, self.datagrams);
        for datagram in self.datagrams.iter() {
            // A datagram the kernel cannot take now is lost, as UDP allows; the client retries.
            if self.socket.send_to(datagram, self.peer).await.is_ok() {
                ctx.counters.bytes_written += datagram.len() as u64;
            }
        }
    }
}

/// Runs every whole command of one request datagram, sending each one's reply.
async fn answer(mut payload: &[u8], ctx: &mut Ctx<'_>, reply: &mut Reply<'_>) {
    let parse_config = crate::conn::parse_config(ctx.shared);
    let max_binary_body = ctx.shared.config.store.item_size_max + 1024;
    let binary = payload.first() == Some(&ferrocache_protocol::binary::REQUEST_MAGIC)
        && ctx.shared.config.protocol != "ascii";
    while !payload.is_empty() {
        let (next, used) = if binary {
            match ferrocache_protocol::binary::parse(payload, max_binary_body) {
                BinaryParse::Incomplete(_) | BinaryParse::Invalid => return,
                BinaryParse::TooLarge {
                    opcode,
                    opaque,
                    body,
                } => (ctx.binary_too_large(opcode, opaque, body), 24),
                BinaryParse::Done(request, used) => (ctx.binary(request), used),
            }
        } else {
            match text::parse(payload, &parse_config) {
                Parse::Incomplete(_) => return,
                Parse::Done(request, used) => {
                    if tracing::enabled!(tracing::Level::DEBUG) {
                        crate::conn::log_command(0, &payload[..used]);
                    }
                    let next = match ctx.begin(request) {
                        Began::Done(next) => next,
                        Began::Pending(mut pending) => {
                            while !ctx.more(&mut pending) {
                                reply.send(ctx).await;
                                tokio::task::yield_now().await;
                            }
                            Next::Continue
                        }
                    };
                    (next, used)
                }
            }
        };
        reply.send(ctx).await;
        payload = &payload[used..];
        match next {
            Next::Continue => {}
            Next::Swallow(bytes) => payload = &payload[bytes.min(payload.len())..],
            Next::CloseAfterWrite | Next::CloseNow => return,
            Next::Watch(_) => {
                // A log stream needs a connection to stream to.
                text::reply::line(ctx.out.text(), text::reply::ERROR);
                reply.send(ctx).await;
                return;
            }
        }
    }
}
