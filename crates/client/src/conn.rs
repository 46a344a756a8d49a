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
    kind: ReplyKind,
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
            // Announced before the bytes leave, so the reader always knows what it is reading.
            if expect.send(Expect::Reply(job.kind, job.reply)).is_err() {
                return;
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
            let _ = expect.send(Expect::Broken(e));
            return;
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
            read = socket.read_buf(&mut buf), if !waiting.is_empty() => match read {
                Ok(0) => break std::io::ErrorKind::UnexpectedEof.into(),
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
