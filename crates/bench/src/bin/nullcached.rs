//! nullcached: a memcached-protocol server that stores nothing. Every get hits with the same
//! value, every storage command is STORED. It is what any server pays to move requests through
//! the kernel, which is the floor of the CPU-per-request targets in BENCHMARKS.md, measured two
//! ways:
//!
//! - by default, tokio's readiness model as ferrocached uses it (a multi-threaded runtime with `-t`
//!   workers, one task per connection, one `recv` and one `send` per batch of requests);
//! - with `--epoll`, readiness without a runtime, as memcached's libevent loop does it: `-t`
//!   threads, each with its own `SO_REUSEPORT` listener and its own `epoll` (through `mio`), the
//!   connections served in turn by one loop with no tasks, wakers or queues;
//! - with `--uring`, completion-based I/O through io_uring: `-t` threads, each with its own ring
//!   and its own `SO_REUSEPORT` listener, submitting every connection's receives and sends of a
//!   turn in one `io_uring_enter`.
//!
//! It takes memcached's flags as ferrobench passes them (`-p -1 -l ADDR -t N`, and ignores `-U
//! -m -u -c -I`) and writes `TCP INET: PORT` to `MEMCACHED_PORT_FILENAME`, so ferrobench starts it
//! like any other server: `ferrobench --server null=target/release/nullcached ...`.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};

use anyhow::{bail, Context};

/// Largest request line or value accepted; a connection sending more is closed, so one client
/// cannot make the server buffer without bound.
const MAX_REQUEST: usize = 1 << 20;
/// Read buffer per connection (grows up to `MAX_REQUEST` for a large value).
const READ_BUFFER: usize = 16 * 1024;

struct Args {
    addr: String,
    port: u16,
    threads: usize,
    uring: bool,
    epoll: bool,
    value: Vec<u8>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        addr: "127.0.0.1".into(),
        port: 11211,
        threads: 4,
        uring: false,
        epoll: false,
        value: vec![b'x'; 64],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "-p" => {
                let port: i32 = value()?.parse()?;
                args.port = u16::try_from(port.max(0))?;
            }
            "-l" => args.addr = value()?,
            "-t" => args.threads = value()?.parse::<usize>()?.max(1),
            "--value-size" => args.value = vec![b'x'; value()?.parse()?],
            "-U" | "-m" | "-u" | "-c" | "-I" => {
                value()?;
            }
            "--uring" => args.uring = true,
            "--epoll" => args.epoll = true,
            "-h" | "--help" => {
                println!(
                    "nullcached: a memcached-protocol server that stores nothing (gets always hit \
                     with --value-size bytes, default 64).\nUsage: nullcached [-p PORT] [-l ADDR] \
                     [-t THREADS] [--uring | --epoll] [--value-size N] (-U -m -u -c -I are ignored)"
                );
                std::process::exit(0);
            }
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(args)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let ip: std::net::IpAddr = args
        .addr
        .parse()
        .with_context(|| format!("-l {}", args.addr))?;
    let addr = SocketAddr::new(ip, args.port);
    let first = listener(addr)?;
    let port = first.local_addr()?.port();
    if let Ok(path) = std::env::var("MEMCACHED_PORT_FILENAME") {
        std::fs::write(path, format!("TCP INET: {port}\n"))?;
    }
    let value: &'static [u8] = args.value.leak();
    if args.uring || args.epoll {
        let mut listeners = vec![first];
        for _ in 1..args.threads {
            listeners.push(listener(SocketAddr::new(addr.ip(), port))?);
        }
        let serve = if args.uring {
            uring::serve
        } else {
            epoll::serve
        };
        let threads: Vec<_> = listeners
            .into_iter()
            .map(|l| std::thread::spawn(move || serve(l, value)))
            .collect();
        for thread in threads {
            thread.join().expect("ring thread panicked")?;
        }
        Ok(())
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
            .block_on(serve_tokio(first, value))
    }
}

/// A listening socket with `SO_REUSEPORT`, so that each ring thread can have its own on one port.
fn listener(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

async fn serve_tokio(listener: TcpListener, value: &'static [u8]) -> anyhow::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    loop {
        let (mut stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut conn = Conn::default();
            loop {
                let room = conn.room();
                match stream.read(room).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if !conn.received(n, value) {
                            return;
                        }
                    }
                }
                if stream.write_all(&conn.out).await.is_err() {
                    return;
                }
                conn.out.clear();
            }
        });
    }
}

/// A connection's buffers: what came in and is not answered yet, and the replies to send.
struct Conn {
    input: Vec<u8>,
    filled: usize,
    out: Vec<u8>,
}

impl Default for Conn {
    fn default() -> Self {
        Conn {
            input: vec![0; READ_BUFFER],
            filled: 0,
            out: Vec::new(),
        }
    }
}

impl Conn {
    /// Where the next read goes. Never empty.
    fn room(&mut self) -> &mut [u8] {
        if self.filled == self.input.len() {
            let bigger = (self.input.len() * 2).min(MAX_REQUEST + 2);
            self.input.resize(bigger, 0);
        }
        &mut self.input[self.filled..]
    }

    /// Takes `n` bytes just read into [`Conn::room`] and answers every complete request. False
    /// when the connection should close (`quit`, or a request too large).
    fn received(&mut self, n: usize, value: &[u8]) -> bool {
        self.filled += n;
        let (used, keep) = respond(&self.input[..self.filled], &mut self.out, value);
        self.input.copy_within(used..self.filled, 0);
        self.filled -= used;
        keep && self.filled <= MAX_REQUEST
    }
}

/// Answers the complete requests at the start of `input` into `out`. Returns the bytes used, and
/// false after `quit`.
fn respond(input: &[u8], out: &mut Vec<u8>, value: &[u8]) -> (usize, bool) {
    let mut at = 0;
    // What follows the key on every VALUE line: the same for all of them.
    let header_tail = format!(" 0 {}\r\n", value.len());
    while let Some(nl) = memchr::memchr(b'\n', &input[at..]) {
        let line_end = at + nl + 1;
        let line = input[at..at + nl]
            .strip_suffix(b"\r")
            .unwrap_or(&input[at..at + nl]);
        let mut words = line
            .split(|&b| b == b' ')
            .filter(|w| !w.is_empty())
            .peekable();
        match words.next().unwrap_or(b"") {
            b"get" | b"gets" => {
                for key in words {
                    out.extend_from_slice(b"VALUE ");
                    out.extend_from_slice(key);
                    out.extend_from_slice(header_tail.as_bytes());
                    out.extend_from_slice(value);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"END\r\n");
            }
            b"set" | b"add" | b"replace" | b"append" | b"prepend" => {
                let rest: Vec<&[u8]> = words.collect();
                let bytes = rest
                    .get(3)
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .and_then(|b| b.parse::<usize>().ok());
                let Some(bytes) = bytes.filter(|&b| b <= MAX_REQUEST) else {
                    out.extend_from_slice(b"CLIENT_ERROR bad command line format\r\n");
                    at = line_end;
                    continue;
                };
                if input.len() < line_end + bytes + 2 {
                    return (at, true);
                }
                if rest.get(4) != Some(&&b"noreply"[..]) {
                    out.extend_from_slice(b"STORED\r\n");
                }
                at = line_end + bytes + 2;
                continue;
            }
            b"stats" => out.extend_from_slice(b"END\r\n"),
            b"version" => out.extend_from_slice(b"VERSION 1.6.18-nullcached\r\n"),
            b"quit" => return (line_end, false),
            _ => out.extend_from_slice(b"ERROR\r\n"),
        }
        at = line_end;
    }
    (at, true)
}

mod uring {
    //! One ring per thread. Each connection has at most one operation in flight, a receive or a
    //! send, so its buffers stay put and unread by us until the kernel says it is done with them.

    use super::*;
    use io_uring::{cqueue, opcode, squeue, types, IoUring};

    const ACCEPT: u64 = u64::MAX;
    const SEND: u64 = 1;

    struct Slot {
        stream: TcpStream,
        conn: Conn,
        sent: usize,
    }

    pub fn serve(listener: TcpListener, value: &'static [u8]) -> anyhow::Result<()> {
        let mut ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_coop_taskrun()
            .build(4096)
            .context("io_uring_setup")?;
        // Boxed, so a slot's buffers never move while the kernel holds a pointer into them.
        let mut slots: Vec<Option<Box<Slot>>> = Vec::new();
        let mut free: Vec<usize> = Vec::new();
        let mut pending: Vec<squeue::Entry> = Vec::new();
        let accept = opcode::AcceptMulti::new(types::Fd(listener.as_raw_fd()))
            .build()
            .user_data(ACCEPT);
        pending.push(accept.clone());
        let mut done: Vec<(u64, i32, u32)> = Vec::new();
        loop {
            for entry in pending.drain(..) {
                // SAFETY: every entry points at memory that outlives its operation: the accept at
                // nothing; a receive or send into a slot's buffers, which are boxed (they do not
                // move when `slots` grows), and the slot is neither dropped nor touched until that
                // operation's completion comes back (one operation per slot at a time, see
                // `recv`/`send`). The fd (the slot's stream, or the listener) is open as long.
                while unsafe { ring.submission().push(&entry) }.is_err() {
                    ring.submit().context("io_uring_enter")?;
                }
            }
            ring.submit_and_wait(1).context("io_uring_enter")?;
            done.extend(
                ring.completion()
                    .map(|c: cqueue::Entry| (c.user_data(), c.result(), c.flags())),
            );
            for (data, result, flags) in done.drain(..) {
                if data == ACCEPT {
                    if !cqueue::more(flags) {
                        pending.push(accept.clone());
                    }
                    if result < 0 {
                        continue;
                    }
                    // SAFETY: a successful accept's result is a new fd that nothing else owns.
                    let stream = unsafe { TcpStream::from_raw_fd(result) };
                    stream.set_nodelay(true)?;
                    let slot = Box::new(Slot {
                        stream,
                        conn: Conn::default(),
                        sent: 0,
                    });
                    let index = match free.pop() {
                        Some(index) => {
                            slots[index] = Some(slot);
                            index
                        }
                        None => {
                            slots.push(Some(slot));
                            slots.len() - 1
                        }
                    };
                    pending.push(recv(&mut slots[index], index));
                    continue;
                }
                let index = (data >> 1) as usize;
                let Some(slot) = slots[index].as_mut() else {
                    continue;
                };
                let alive = if data & SEND == 0 {
                    result > 0 && slot.conn.received(result as usize, value)
                } else {
                    result > 0 && {
                        slot.sent += result as usize;
                        true
                    }
                };
                if !alive {
                    slots[index] = None;
                    free.push(index);
                    continue;
                }
                if slot.sent == slot.conn.out.len() {
                    slot.conn.out.clear();
                    slot.sent = 0;
                }
                let next = if slot.conn.out.is_empty() {
                    recv(&mut slots[index], index)
                } else {
                    send(&mut slots[index], index)
                };
                pending.push(next);
            }
        }
    }

    fn recv(slot: &mut Option<Box<Slot>>, index: usize) -> squeue::Entry {
        let slot = slot.as_mut().expect("live slot");
        let fd = slot.stream.as_raw_fd();
        let room = slot.conn.room();
        opcode::Recv::new(types::Fd(fd), room.as_mut_ptr(), room.len() as u32)
            .build()
            .user_data((index as u64) << 1)
    }

    fn send(slot: &mut Option<Box<Slot>>, index: usize) -> squeue::Entry {
        let slot = slot.as_mut().expect("live slot");
        let fd = slot.stream.as_raw_fd();
        let rest = &slot.conn.out[slot.sent..];
        opcode::Send::new(types::Fd(fd), rest.as_ptr(), rest.len() as u32)
            .build()
            .user_data(((index as u64) << 1) | SEND)
    }
}

mod epoll {
    //! One `epoll` per thread, edge-triggered. A connection is read once per readiness event: a
    //! read that does not fill the buffer has drained the socket, and more data raises a new edge
    //! (tokio's rule too). Replies are written at once; what the socket does not take waits for
    //! the writable edge, and the connection reads nothing more until it is sent.

    use super::*;
    use mio::net::{TcpListener as MioListener, TcpStream as MioStream};
    use mio::{Events, Interest, Poll, Token};
    use std::io::{ErrorKind, Read, Write};

    const ACCEPT: Token = Token(usize::MAX);

    struct Slot {
        stream: MioStream,
        conn: Conn,
        sent: usize,
    }

    pub fn serve(listener: TcpListener, value: &'static [u8]) -> anyhow::Result<()> {
        listener.set_nonblocking(true)?;
        let mut listener = MioListener::from_std(listener);
        let mut poll = Poll::new().context("epoll_create")?;
        poll.registry()
            .register(&mut listener, ACCEPT, Interest::READABLE)?;
        let mut events = Events::with_capacity(1024);
        let mut slots: Vec<Option<Slot>> = Vec::new();
        let mut free: Vec<usize> = Vec::new();
        loop {
            if let Err(e) = poll.poll(&mut events, None) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(e).context("epoll_wait");
            }
            for event in events.iter() {
                if event.token() == ACCEPT {
                    while let Ok((mut stream, _)) = listener.accept() {
                        stream.set_nodelay(true)?;
                        let index = free.pop().unwrap_or_else(|| {
                            slots.push(None);
                            slots.len() - 1
                        });
                        poll.registry().register(
                            &mut stream,
                            Token(index),
                            Interest::READABLE | Interest::WRITABLE,
                        )?;
                        slots[index] = Some(Slot {
                            stream,
                            conn: Conn::default(),
                            sent: 0,
                        });
                    }
                    continue;
                }
                let index = event.token().0;
                let Some(slot) = slots[index].as_mut() else {
                    continue;
                };
                if !turn(slot, value) {
                    let mut slot = slots[index].take().expect("live slot");
                    poll.registry().deregister(&mut slot.stream)?;
                    free.push(index);
                }
            }
        }
    }

    /// Sends what is left to send, then reads and answers once. False when the connection ends.
    fn turn(slot: &mut Slot, value: &[u8]) -> bool {
        if !flush(slot) {
            return false;
        }
        if slot.sent < slot.conn.out.len() {
            return true;
        }
        let room = slot.conn.room();
        let room_len = room.len();
        match slot.stream.read(room) {
            Ok(0) => false,
            Ok(n) => {
                if !slot.conn.received(n, value) {
                    return false;
                }
                // A full buffer may have left data behind, which raises no new edge.
                flush(slot) && (n < room_len || turn(slot, value))
            }
            Err(e) => e.kind() == ErrorKind::WouldBlock,
        }
    }

    /// Writes the pending replies until done or the socket is full. False on an error.
    fn flush(slot: &mut Slot) -> bool {
        while slot.sent < slot.conn.out.len() {
            match slot.stream.write(&slot.conn.out[slot.sent..]) {
                Ok(n) => slot.sent += n,
                Err(e) => return e.kind() == ErrorKind::WouldBlock,
            }
        }
        slot.conn.out.clear();
        slot.sent = 0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn answers_like_a_cache_that_always_hits() {
        let mut out = Vec::new();
        let input = b"set a 0 0 3\r\nabc\r\nget a b\r\nset n 0 0 1 noreply\r\nx\r\nbogus\r\nset x 0 0 5\r\nab";
        let (used, keep) = respond(input, &mut out, b"vv");
        assert!(keep);
        assert_eq!(&input[used..], b"set x 0 0 5\r\nab");
        assert_eq!(
            out,
            b"STORED\r\nVALUE a 0 2\r\nvv\r\nVALUE b 0 2\r\nvv\r\nEND\r\nERROR\r\n"
        );
        out.clear();
        assert_eq!(
            respond(b"set a 0 0\r\nquit\r\nget a\r\n", &mut out, b""),
            (17, false)
        );
        assert_eq!(out, b"CLIENT_ERROR bad command line format\r\n");
    }

    #[test]
    fn a_connection_cannot_buffer_without_bound() {
        let mut conn = Conn::default();
        let mut alive = true;
        while alive {
            let n = conn.room().len();
            conn.room().fill(b'a');
            alive = conn.received(n, b"");
            assert!(conn.input.len() <= MAX_REQUEST + 2);
        }
        assert!(conn.filled > MAX_REQUEST);
    }

    /// Both modes over loopback: three connections, requests split across writes, in order.
    #[test]
    fn both_modes_answer_over_loopback() {
        for mode in ["tokio", "uring", "epoll"] {
            let listener = listener("127.0.0.1:0".parse().unwrap()).unwrap();
            let port = listener.local_addr().unwrap().port();
            let value: &'static [u8] = b"0123";
            std::thread::spawn(move || {
                if mode == "uring" {
                    uring::serve(listener, value)
                } else if mode == "epoll" {
                    epoll::serve(listener, value)
                } else {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?
                        .block_on(serve_tokio(listener, value))
                }
            });
            let mut conns: Vec<TcpStream> = (0..3)
                .map(|_| {
                    let conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
                    conn.set_nodelay(true).unwrap();
                    conn
                })
                .collect();
            for round in 0..50 {
                for (i, conn) in conns.iter_mut().enumerate() {
                    // A request split over two writes, then one whole.
                    conn.write_all(format!("get k{i}").as_bytes()).unwrap();
                    conn.write_all(format!(" r{round}\r\nset a 0 0 1\r\nz\r\n").as_bytes())
                        .unwrap();
                }
                for (i, conn) in conns.iter_mut().enumerate() {
                    let want = format!(
                        "VALUE k{i} 0 4\r\n0123\r\nVALUE r{round} 0 4\r\n0123\r\nEND\r\nSTORED\r\n"
                    );
                    let mut got = vec![0; want.len()];
                    conn.read_exact(&mut got).unwrap();
                    assert_eq!(String::from_utf8_lossy(&got), want, "{mode}");
                }
            }
            conns[0].write_all(b"quit\r\n").unwrap();
            assert_eq!(conns[0].read(&mut [0; 8]).unwrap(), 0, "closed after quit");
        }
    }
}
