//! One pipelined connection to one server.
//!
//! Callers hand requests to a writer task through a channel; the writer takes every request that
//! is waiting, writes them in one go, and tells the reader task, in order, which kind of reply
//! each one expects. The reader parses replies as they arrive (the text protocol answers in
//! request order) and hands each to its caller. So many tasks can share one socket, and N
//! concurrent requests cost one write and as few reads as the kernel allows, not N round trips.
//!
//! Reading and writing are separate tasks so that a large pipelined write can never deadlock
//! against a server that is blocked writing replies we have not read yet.
//!
//! A connection that times out, fails, or reads bytes it cannot parse is closed, and every request
//! still waiting on it fails; the pool replaces it on next use. This module knows nothing of
//! rings or pools.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};

use crate::codec::{Progress, Reply, ReplyKind, ReplyReader};
use crate::error::{Error, Result};
use crate::tls::TlsConfig;

/// Requests queued on one connection before callers wait for room.
const QUEUE_DEPTH: usize = 1024;
/// Bytes the writer gathers into one write before sending.
const WRITE_BATCH: usize = 256 * 1024;
const READ_CHUNK: usize = 64 * 1024;

struct Job {
    request: Vec<u8>,
    /// `None` for a noreply request: it takes no place in the reader's queue, and its caller is
    /// answered [`Reply::Sent`] once its bytes are written.
    kind: Option<ReplyKind>,
    reply: oneshot::Sender<Result<Reply>>,
}

/// What the writer tells the reader.
enum Expect {
    Reply(ReplyKind, oneshot::Sender<Result<Reply>>),
    /// The write side broke: fail everything still waiting.
    Broken(std::io::Error),
}

/// State both tasks and every handle see.
struct Shared {
    server: String,
    /// Becomes true once, when the connection fails or a caller gives up on it (timeout); both
    /// tasks watch it, so a writer stuck on a stalled server stops too.
    closed: watch::Sender<bool>,
}

impl Shared {
    fn close(&self) {
        self.closed.send_replace(true);
    }

    fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    fn io_error(&self, source: std::io::Error) -> Error {
        Error::Io {
            server: self.server.clone(),
            source,
        }
    }
}

/// A handle to a pipelined connection. Dropping every handle closes the connection once the
/// requests already sent are answered.
pub struct Connection {
    jobs: mpsc::Sender<Job>,
    shared: Arc<Shared>,
    timeout: Duration,
}

impl Connection {
    /// Connects to `server` (`host:port`), with a TLS handshake when `tls` is given, and starts
    /// the connection's reader and writer tasks on the current tokio runtime. The connect
    /// timeout covers the handshake too.
    pub async fn connect(
        server: &str,
        connect_timeout: Duration,
        request_timeout: Duration,
        tls: Option<&TlsConfig>,
    ) -> Result<Connection> {
        let connect = async {
            let stream = TcpStream::connect(server)
                .await
                .map_err(|source| Error::Io {
                    server: server.to_string(),
                    source,
                })?;
            // Requests are batched by the writer already; Nagle would only add latency.
            let _ = stream.set_nodelay(true);
            match tls {
                None => Ok(Stream::Plain(stream)),
                Some(tls) => Ok(Stream::Tls(Box::new(tls.handshake(server, stream).await?))),
            }
        };
        let stream = tokio::time::timeout(connect_timeout, connect)
            .await
            .map_err(|_| Error::Timeout(server.to_string()))??;
        Ok(match stream {
            // Owned halves of a TCP stream need no lock between the reader and the writer.
            Stream::Plain(stream) => {
                let (read, write) = stream.into_split();
                Self::start(server, read, write, request_timeout)
            }
            Stream::Tls(stream) => {
                let (read, write) = tokio::io::split(*stream);
                Self::start(server, read, write, request_timeout)
            }
        })
    }

    fn start<R, W>(server: &str, read: R, write: W, request_timeout: Duration) -> Connection
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let shared = Arc::new(Shared {
            server: server.to_string(),
            closed: watch::channel(false).0,
        });
        let (jobs, job_rx) = mpsc::channel(QUEUE_DEPTH);
        let (expect_tx, expect_rx) = mpsc::unbounded_channel();
        tokio::spawn(write_requests(write, job_rx, expect_tx, shared.clone()));
        tokio::spawn(read_replies(read, expect_rx, shared.clone()));
        Connection {
            jobs,
            shared,
            timeout: request_timeout,
        }
    }

    /// True once the connection failed or was given up, or its tasks are gone (their runtime
    /// shut down); it will not carry requests again.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed() || self.jobs.is_closed()
    }

    /// Sends one encoded request and waits for its reply, under the request timeout. A timeout
    /// closes the connection: the reply, if it ever comes, can no longer be told from the next.
    pub async fn call(&self, request: Vec<u8>, kind: ReplyKind) -> Result<Reply> {
        self.exchange(request, Some(kind)).await
    }

    /// Sends one encoded noreply request and waits until it is written (not answered: the server
    /// sends nothing back), so the caller learns of a broken connection and feels back-pressure.
    /// It takes no place among the replies the reader waits for; see [`crate::codec`]'s
    /// `NOREPLY` for why the server cannot answer it anyway.
    pub async fn send_noreply(&self, request: Vec<u8>) -> Result<()> {
        self.exchange(request, None).await.map(|_| ())
    }

    async fn exchange(&self, request: Vec<u8>, kind: Option<ReplyKind>) -> Result<Reply> {
        let (tx, rx) = oneshot::channel();
        let job = Job {
            request,
            kind,
            reply: tx,
        };
        let exchange = async {
            self.jobs.send(job).await.map_err(|_| self.closed_error())?;
            rx.await.map_err(|_| self.closed_error())?
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => {
                self.shared.close();
                Err(Error::Timeout(self.shared.server.clone()))
            }
        }
    }

    fn closed_error(&self) -> Error {
        self.shared.io_error(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "connection closed",
        ))
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// Writes queued requests, as many per write as are waiting.
async fn write_requests<W: AsyncWrite + Unpin>(
    mut socket: W,
    mut jobs: mpsc::Receiver<Job>,
    expect: mpsc::UnboundedSender<Expect>,
    shared: Arc<Shared>,
) {
    let mut batch = Vec::new();
    // Callers of the noreply requests in the batch, answered once it is written.
    let mut sent = Vec::new();
    let mut closed = shared.closed.subscribe();
    loop {
        let job = tokio::select! {
            job = jobs.recv() => job,
            _ = closed.wait_for(|&c| c) => return,
        };
        let Some(job) = job else { break };
        let mut next = Some(job);
        while let Some(job) = next.take() {
            batch.extend_from_slice(&job.request);
            match job.kind {
                // Announced before the bytes leave, so the reader always knows what it is reading.
                Some(kind) => {
                    if expect.send(Expect::Reply(kind, job.reply)).is_err() {
                        return;
                    }
                }
                None => sent.push(job.reply),
            }
            if batch.len() < WRITE_BATCH {
                next = jobs.try_recv().ok();
            }
        }
        let written = tokio::select! {
            // The flush matters for TLS, which may hold encrypted bytes back; TCP's is a no-op.
            written = async {
                socket.write_all(&batch).await?;
                socket.flush().await
            } => written,
            _ = closed.wait_for(|&c| c) => return,
        };
        if let Err(e) = written {
            shared.close();
            for to in sent.drain(..) {
                let _ = to.send(Err(
                    shared.io_error(std::io::Error::new(e.kind(), e.to_string()))
                ));
            }
            let _ = expect.send(Expect::Broken(e));
            return;
        }
        for to in sent.drain(..) {
            let _ = to.send(Ok(Reply::Sent));
        }
        batch.clear();
    }
    // Every handle is gone: half-close so the server sees the end after the last request.
    let _ = socket.shutdown().await;
}

/// Reads replies in order and hands each to the request that expects it.
async fn read_replies<R: AsyncRead + Unpin>(
    mut socket: R,
    mut expect: mpsc::UnboundedReceiver<Expect>,
    shared: Arc<Shared>,
) {
    let mut waiting: VecDeque<(ReplyKind, oneshot::Sender<Result<Reply>>)> = VecDeque::new();
    let mut reader: Option<ReplyReader> = None;
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut writer_gone = false;
    let mut closed = shared.closed.subscribe();
    let failure: std::io::Error = 'connection: loop {
        // Take every request the writer has announced so far. The writer announces a request
        // before its bytes leave, so the replies in the buffer are all announced by now; but the
        // announcements may still sit in the channel (the read below can win the race against
        // them, on a multi-threaded runtime almost always), and a reply read before its
        // announcement is taken is not "a reply to no request".
        let mut broken = None;
        if !writer_gone {
            loop {
                match expect.try_recv() {
                    Ok(Expect::Reply(kind, to)) => waiting.push_back((kind, to)),
                    Ok(Expect::Broken(e)) => {
                        // Replies already read still go to their requests first.
                        broken = Some(e);
                        break;
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        writer_gone = true;
                        break;
                    }
                }
            }
        }
        // Hand out every reply the buffer already holds.
        while let Some((kind, _)) = waiting.front() {
            let current = reader.get_or_insert_with(|| ReplyReader::new(*kind));
            match current.read(&mut buf) {
                Ok(Progress::NeedMore) => break,
                Ok(Progress::Done(reply)) => {
                    reader = None;
                    let (_, to) = waiting.pop_front().expect("front checked");
                    // The caller may have given up (timeout); nothing to do then.
                    let _ = to.send(reply);
                }
                Err(e) => {
                    // Out of step with the server: the request at the front gets the protocol
                    // error, the others a closed connection.
                    let (_, to) = waiting.pop_front().expect("front checked");
                    let _ = to.send(Err(e));
                    break 'connection std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "unreadable reply",
                    );
                }
            }
        }
        if let Some(e) = broken {
            break e;
        }
        if shared.is_closed() {
            break std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "connection closed");
        }
        if waiting.is_empty() {
            if !buf.is_empty() {
                break std::io::Error::new(std::io::ErrorKind::InvalidData, "reply to no request");
            }
            if writer_gone {
                return;
            }
        }
        tokio::select! {
            next = expect.recv(), if !writer_gone => match next {
                Some(Expect::Reply(kind, to)) => waiting.push_back((kind, to)),
                Some(Expect::Broken(e)) => break e,
                None => writer_gone = true,
            },
            // Read even with nothing awaited: bytes then are a reply to no request (an error
            // line for a noreply request the server could not parse), and closing the
            // connection at once keeps them from being taken for the next request's reply.
            read = socket.read_buf(&mut buf) => match read {
                Ok(0) => {
                    // The one reply made of the end of the stream: a server going down after
                    // `shutdown` (memcached writes nothing first).
                    if buf.is_empty() && matches!(waiting.front(), Some((ReplyKind::Shutdown, _))) {
                        let (_, to) = waiting.pop_front().expect("front checked");
                        let _ = to.send(Ok(Reply::ShutDown));
                    }
                    break std::io::ErrorKind::UnexpectedEof.into();
                }
                Ok(_) => {}
                Err(e) => break e,
            },
            _ = closed.wait_for(|&c| c) => {}
        }
    };
    shared.close();
    let fail = |to: oneshot::Sender<Result<Reply>>| {
        let source = std::io::Error::new(failure.kind(), failure.to_string());
        let _ = to.send(Err(shared.io_error(source)));
    };
    for (_, to) in waiting.drain(..) {
        fail(to);
    }
    // Requests announced after the failure fail too, until the writer notices and stops.
    while let Some(next) = expect.recv().await {
        if let Expect::Reply(_, to) = next {
            fail(to);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line that arrives while no reply is awaited (the server answering a noreply request
    /// after all) closes the connection at once, so it cannot be taken for the next request's
    /// reply: that request fails as "connection closed" and goes to a new connection.
    #[tokio::test]
    async fn a_stray_reply_after_noreply_closes_the_connection() {
        let (client_side, mut server_side) = tokio::io::duplex(4096);
        let (read, write) = tokio::io::split(client_side);
        let conn = Connection::start("fake:1", read, write, Duration::from_secs(5));
        conn.send_noreply(b"set k 0 0 1 noreply\r\nv\r\n".to_vec())
            .await
            .expect("written");
        let mut got = vec![0u8; 24];
        server_side.read_exact(&mut got).await.expect("request");
        assert_eq!(got, b"set k 0 0 1 noreply\r\nv\r\n");
        server_side.write_all(b"ERROR\r\n").await.expect("write");
        let mut closed = conn.shared.closed.subscribe();
        tokio::time::timeout(Duration::from_secs(5), closed.wait_for(|&c| c))
            .await
            .expect("closed in time")
            .expect("watch");
        assert!(conn.is_closed());
        let next = conn.call(b"get k\r\n".to_vec(), ReplyKind::Values).await;
        assert!(matches!(next, Err(Error::Io { .. })), "{next:?}");
    }

    #[tokio::test]
    async fn a_noreply_request_takes_no_reply_slot() {
        let (client_side, mut server_side) = tokio::io::duplex(4096);
        let (read, write) = tokio::io::split(client_side);
        let conn = Connection::start("fake:1", read, write, Duration::from_secs(5));
        conn.send_noreply(b"delete a noreply\r\n".to_vec())
            .await
            .expect("written");
        let server = async {
            let mut got = vec![0u8; b"delete a noreply\r\ndelete b\r\n".len()];
            server_side.read_exact(&mut got).await.expect("requests");
            server_side.write_all(b"DELETED\r\n").await.expect("write");
        };
        let (reply, ()) = tokio::join!(
            conn.call(b"delete b\r\n".to_vec(), ReplyKind::Delete),
            server
        );
        assert_eq!(reply.expect("reply"), Reply::Found(true));
        assert!(!conn.is_closed());
    }
}
