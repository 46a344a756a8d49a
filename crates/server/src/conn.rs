//! One client connection: read into a buffer, parse every complete request in it, dispatch each,
//! and write all replies of the batch at once. A partial request waits in the buffer; the data of a
//! refused storage command is discarded as it streams in, never buffered.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use ferrocache_protocol::binary::BinaryParse;
use ferrocache_protocol::text::{self, reply, Parse, ParseConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use crate::auth::LoginStep;
use crate::dispatch::{Began, Ctx, Next};
use crate::out::{Output, FLUSH_AT};
use crate::stats::{ConnCounters, ConnInfo};
use crate::Shared;

/// Initial read buffer size; it grows to fit a large value and shrinks back afterwards.
const READ_BUFFER: usize = 16 * 1024;

/// The text parser's limits for this server's flags (`-I`, `-C`).
pub(crate) fn parse_config(shared: &Shared) -> ParseConfig {
    ParseConfig {
        item_fits,
        item_size_max: shared.config.store.item_size_max,
        use_cas: shared.config.store.use_cas,
    }
}

fn item_fits(config: &ParseConfig, key_len: usize, flags: u32, value_len: usize) -> bool {
    ferrocache_store::item_size_ok(
        config.item_size_max,
        config.use_cas,
        key_len,
        flags,
        value_len,
    )
}

/// Serves one connection until the client leaves, sends junk, or the server stops (or, after
/// `watch`, streams the log until the client leaves). Returns why it ended, as `watch connevents`
/// says it: `normal`, `error` or `idle_timeout`.
pub async fn serve<S>(
    mut stream: S,
    shared: Arc<Shared>,
    id: u64,
    info: Arc<ConnInfo>,
) -> &'static str
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let parse_config = parse_config(&shared);
    let idle = match shared.config.idle_timeout {
        0 => None,
        secs => Some(Duration::from_secs(u64::from(secs))),
    };
    let mut rbuf = BytesMut::with_capacity(READ_BUFFER);
    let mut swallow = 0usize;
    let mut binary_mode: Option<bool> = None;
    // Key, extras and a value of the largest item: a bigger binary body cannot be valid.
    let max_binary_body = shared.config.store.item_size_max + 1024;
    let mut ctx = Ctx {
        shared: &shared,
        out: Output::default(),
        counters: ConnCounters::default(),
        close_after_reply: false,
        auth: crate::auth::ConnAuth::default(),
        conn_id: id,
    };
    // Why the loop ended, unless the client closed cleanly.
    let mut reason = "normal";
    let mut watching = None;
    // A data block that did not arrive with its command line: memcached reads the rest of it
    // straight from the socket, so once it is stored its read buffer is empty and it writes what
    // it holds, out of reach of a later cull (see `Output::discard_since_mark`).
    let mut value_split = false;
    'conn: loop {
        let read = match idle {
            None => stream.read_buf(&mut rbuf).await,
            Some(limit) => match tokio::time::timeout(limit, stream.read_buf(&mut rbuf)).await {
                Ok(read) => read,
                Err(_) => {
                    tracing::debug!(conn = id, "idle timeout");
                    reason = "idle_timeout";
                    break;
                }
            },
        };
        match read {
            Ok(0) => break,
            Err(_) => {
                reason = "error";
                break;
            }
            Ok(n) => {
                tracing::trace!(conn = id, "read {n} bytes");
                ctx.counters.bytes_read += n as u64;
            }
        }
        info.last_cmd_time.store(shared.clock.now(), Relaxed);
        if !info.spoke.load(Relaxed) {
            info.spoke.store(true, Relaxed);
        }
        let mut close_after_write = false;
        let mut handled = 0;
        // A data block that did not arrive with its command line was just completed (whether its
        // command queued a reply): see below.
        let mut value_done: Option<bool> = None;
        loop {
            if swallow > 0 {
                let n = swallow.min(rbuf.len());
                rbuf.advance(n);
                swallow -= n;
                if swallow > 0 {
                    break;
                }
            }
            if rbuf.is_empty() {
                break;
            }
            // The first byte of a connection picks its protocol, as memcached's -B auto does.
            let binary = *binary_mode.get_or_insert_with(|| {
                rbuf[0] == ferrocache_protocol::binary::REQUEST_MAGIC
                    && shared.config.protocol != "ascii"
            });
            if !binary && shared.config.protocol == "binary" {
                // memcached reads a whole header before it sees the bad magic and closes.
                if rbuf.len() < 24 {
                    break;
                }
                break 'conn;
            }
            let next = if binary {
                match ferrocache_protocol::binary::parse(&rbuf, max_binary_body) {
                    BinaryParse::Incomplete(hint) => {
                        if let Some(total) = hint {
                            value_split |= binary_value_split(&rbuf);
                            rbuf.reserve(total.saturating_sub(rbuf.len()));
                        }
                        break;
                    }
                    BinaryParse::Invalid => {
                        // memcached closes at once: what it had written went out, what it
                        // held is lost.
                        ctx.out.discard_since_mark();
                        write_out(&mut stream, &mut ctx).await;
                        break 'conn;
                    }
                    BinaryParse::TooLarge {
                        opcode,
                        opaque,
                        body,
                    } => {
                        rbuf.advance(24);
                        ctx.binary_too_large(opcode, opaque, body)
                    }
                    BinaryParse::Done(request, used) => {
                        let next = ctx.binary(request);
                        rbuf.advance(used);
                        if std::mem::take(&mut value_split) {
                            value_done = Some(ctx.out.holds_replies());
                            ctx.out.mark();
                        }
                        next
                    }
                }
            } else if ctx.ascii_login_pending() {
                match ctx.ascii_login(&rbuf) {
                    LoginStep::Incomplete => break,
                    LoginStep::Close => break 'conn,
                    LoginStep::Done(used) => {
                        rbuf.advance(used);
                        Next::Continue
                    }
                }
            } else {
                match text::parse(&rbuf, &parse_config) {
                    Parse::Incomplete(hint) => {
                        if let Some(total) = hint {
                            // The line is whole; its data block is not.
                            value_split = true;
                            rbuf.reserve(total.saturating_sub(rbuf.len()));
                        }
                        break;
                    }
                    Parse::Done(request, used) => {
                        if tracing::enabled!(tracing::Level::DEBUG) {
                            log_command(id, &rbuf[..used]);
                        }
                        let next = match ctx.begin(request) {
                            Began::Done(next) => next,
                            Began::Pending(mut pending) => {
                                while !ctx.more(&mut pending) {
                                    if !write_out(&mut stream, &mut ctx).await {
                                        break 'conn;
                                    }
                                }
                                Next::Continue
                            }
                        };
                        rbuf.advance(used);
                        if std::mem::take(&mut value_split) {
                            value_done = Some(ctx.out.holds_replies());
                            ctx.out.mark();
                        }
                        next
                    }
                }
            };
            match next {
                Next::Continue => {}
                Next::Swallow(bytes) => swallow = bytes,
                Next::CloseAfterWrite => {
                    close_after_write = true;
                    break;
                }
                Next::CloseNow => {
                    reason = "error";
                    break 'conn;
                }
                Next::Watch(kinds) => match shared.watch.add(kinds, &shared.store) {
                    Some(subscription) => {
                        reply::line(ctx.out.text(), reply::OK);
                        watching = Some(subscription);
                        break 'conn;
                    }
                    None => reply::line(ctx.out.text(), WATCHER_TOO_MANY),
                },
            }
            handled += 1;
            if let Some(replied) = value_done.take() {
                // memcached read that block straight from the socket, no further: it writes the
                // reply, finds its buffer empty and waits for the next event, which serves the
                // rest of this read afresh (R + 1 requests). With -R 1 the write used up the
                // event's count, so a yield came first.
                if replied && shared.config.reqs_per_event == 1 {
                    ctx.counters.conn_yields += 1;
                }
                handled = 0;
                continue;
            }
            // memcached writes what it queued after the first R + 1 requests of a read, then
            // after every R more (its per-event `nreqs`), out of reach of a later cull (see
            // `Output::discard_since_mark`).
            let event_ends = event_ends(handled, shared.config.reqs_per_event);
            if event_ends {
                ctx.out.mark();
            }
            if ctx.out.len() >= FLUSH_AT && !write_out(&mut stream, &mut ctx).await {
                break 'conn;
            }
            // -R: there memcached also lets other connections run (`conn_yields`).
            if event_ends {
                ctx.counters.conn_yields += 1;
                tokio::task::yield_now().await;
            }
        }
        // memcached's write of what it holds at the end of a read counts as one more request
        // of its event: when the last request had used up the event's count, a yield follows.
        let per_event = shared.config.reqs_per_event;
        if rbuf.is_empty()
            && swallow == 0
            && handled > 0
            && handled.is_multiple_of(per_event)
            && !event_ends(handled, per_event)
            && ctx.out.holds_replies()
        {
            ctx.counters.conn_yields += 1;
        }
        if !write_out(&mut stream, &mut ctx).await {
            reason = "error";
            break;
        }
        if close_after_write {
            break;
        }
        shared.stats.add(&ctx.counters);
        ctx.counters = ConnCounters::default();
        if rbuf.is_empty() && rbuf.capacity() > 4 * READ_BUFFER {
            rbuf = BytesMut::with_capacity(READ_BUFFER);
        }
    }
    shared.stats.add(&ctx.counters);
    if let Some(subscription) = watching {
        // `OK` and whatever came before it, then only the log.
        if write_out(&mut stream, &mut ctx).await {
            crate::watch::stream(stream, subscription).await;
        }
    }
    reason
}

/// Whether memcached, having served `handled` requests of one read, has used up an event's
/// `per_event` (-R) requests there: it writes what it holds and lets other connections run
/// (`conn_yields`). Its first event serves `per_event + 1` requests, each later one `per_event`:
/// a later event spends one count on its start.
fn event_ends(handled: usize, per_event: usize) -> bool {
    handled > per_event && (handled - 1).is_multiple_of(per_event)
}

/// Whether the binary request at the start of `buf` (its header read, its body not) is a storage
/// request whose extras and key are all here: memcached then reads its value straight from the
/// socket (its `conn_nread`), as it does a text data block.
fn binary_value_split(buf: &[u8]) -> bool {
    use ferrocache_protocol::binary::opcode::*;
    let stores = matches!(
        buf[1],
        SET | SETQ | ADD | ADDQ | REPLACE | REPLACEQ | APPEND | APPENDQ | PREPEND | PREPENDQ
    );
    let key_len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    stores && buf.len() >= 24 + usize::from(buf[4]) + key_len
}

/// memcached's answer to a `watch` past its 20 watchers.
const WATCHER_TOO_MANY: &str = "WATCHER_TOO_MANY log watcher limit reached";

async fn write_out<S: AsyncWrite + Unpin>(stream: &mut S, ctx: &mut Ctx<'_>) -> bool {
    if ctx.out.is_empty() {
        // Nothing to write (`noreply`): memcached has dropped what it held all the same.
        ctx.out.mark();
        return true;
    }
    match ctx.out.flush(stream).await {
        Ok(n) => {
            tracing::trace!("wrote {n} bytes");
            ctx.counters.bytes_written += n as u64;
            true
        }
        Err(_) => false,
    }
}

/// `-vv`: memcached prints each command line a client sends.
pub(crate) fn log_command(id: u64, request: &[u8]) {
    let line_end = memchr::memchr(b'\n', request).unwrap_or(request.len());
    let line = String::from_utf8_lossy(&request[..line_end]);
    tracing::debug!("<{id} {}", line.trim_end());
}
