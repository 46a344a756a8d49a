//! The text protocol as the client speaks it, without I/O: requests are encoded into byte
//! vectors, and replies are read out of a buffer by a [`ReplyReader`] that consumes what it
//! recognises and answers "not yet" when the rest has not arrived. The connection task feeds it
//! whatever the socket delivers, so pipelined replies and replies split across reads are the same
//! case.
//!
//! The client keeps its own small codec (not `ferrocache-protocol`) so that it never shares a
//! parsing bug with the server it talks to.

use bytes::{Buf, BytesMut};

use crate::error::{Error, Result};

/// Longest key memcached accepts (`KEY_MAX_LENGTH`).
pub const MAX_KEY_LEN: usize = 250;

/// A value as read from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    pub data: Vec<u8>,
    pub flags: u32,
    /// Present when read with `gets`/`gats`.
    pub cas: Option<u64>,
}

/// The storage commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreCommand {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    /// Compare-and-swap against this CAS id.
    Cas(u64),
}

impl StoreCommand {
    fn verb(self) -> &'static [u8] {
        match self {
            StoreCommand::Set => b"set",
            StoreCommand::Add => b"add",
            StoreCommand::Replace => b"replace",
            StoreCommand::Append => b"append",
            StoreCommand::Prepend => b"prepend",
            StoreCommand::Cas(_) => b"cas",
        }
    }
}

/// The outcome of a storage command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreStatus {
    Stored,
    NotStored,
    /// `cas`: the item changed since it was read.
    Exists,
    /// `cas`: there is no such item.
    NotFound,
}

impl StoreStatus {
    /// The reply line memcached sends for this outcome.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreStatus::Stored => "STORED",
            StoreStatus::NotStored => "NOT_STORED",
            StoreStatus::Exists => "EXISTS",
            StoreStatus::NotFound => "NOT_FOUND",
        }
    }
}

/// Refuses keys the server would refuse, before anything is sent: empty, longer than 250 bytes,
/// or containing whitespace or control characters (which would split or end the command line).
pub fn check_key(key: &[u8]) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN || key.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err(Error::InvalidKey);
    }
    Ok(())
}

/// The shape of the reply a request expects; it tells the reader where the reply ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// `VALUE ...` blocks up to `END` (get, gets, gat, gats).
    Values,
    /// `STORED`, `NOT_STORED`, `EXISTS`, `NOT_FOUND`.
    Store,
    /// `DELETED` or `NOT_FOUND`.
    Delete,
    /// A number or `NOT_FOUND` (incr, decr).
    Delta,
    /// `TOUCHED` or `NOT_FOUND`.
    Touch,
    /// `OK` (flush_all, verbosity).
    Ok,
    /// `VERSION x`.
    Version,
    /// `STAT name value` lines up to `END` (or `RESET` for `stats reset`).
    Stats,
    /// `shutdown`: the server closes the connection without a reply when it shuts down, and
    /// answers `ERROR: shutdown not enabled` when started without `-A`.
    Shutdown,
}

/// A complete reply, typed by its [`ReplyKind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Values(Vec<(Vec<u8>, Value)>),
    Store(StoreStatus),
    /// `true` when something was deleted/touched, `false` on `NOT_FOUND`.
    Found(bool),
    Delta(Option<u64>),
    Ok,
    Version(String),
    Stats(Vec<(String, String)>),
    /// The server closed the connection after `shutdown`: it is going down.
    ShutDown,
    /// A noreply request was written; no reply will come.
    Sent,
}

/// Appends `get`/`gets`/`gat`/`gats` for `keys` (checked by the caller).
pub fn encode_get(out: &mut Vec<u8>, keys: &[&[u8]], cas: bool, touch: Option<i64>) {
    out.extend_from_slice(match (cas, touch) {
        (false, None) => b"get".as_slice(),
        (true, None) => b"gets",
        (false, Some(_)) => b"gat",
        (true, Some(_)) => b"gats",
    });
    if let Some(exptime) = touch {
        push_number(out, exptime);
    }
    for key in keys {
        out.push(b' ');
        out.extend_from_slice(key);
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends a storage command with its data block; with `noreply`, the server sends no reply.
pub fn encode_store(
    out: &mut Vec<u8>,
    command: StoreCommand,
    key: &[u8],
    value: &[u8],
    flags: u32,
    exptime: i64,
    noreply: bool,
) {
    out.reserve(key.len() + value.len() + 64);
    out.extend_from_slice(command.verb());
    out.push(b' ');
    out.extend_from_slice(key);
    push_number(out, flags);
    push_number(out, exptime);
    push_number(out, value.len());
    if let StoreCommand::Cas(id) = command {
        push_number(out, id);
    }
    if noreply {
        out.extend_from_slice(NOREPLY);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends `verb key [argument] [noreply]`: delete, incr, decr, touch.
pub fn encode_keyed(
    out: &mut Vec<u8>,
    verb: &str,
    key: &[u8],
    argument: Option<i128>,
    noreply: bool,
) {
    out.extend_from_slice(verb.as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    if let Some(argument) = argument {
        push_number(out, argument);
    }
    if noreply {
        out.extend_from_slice(NOREPLY);
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `flush_all [delay] [noreply]`.
pub fn encode_flush_all(out: &mut Vec<u8>, delay: i64, noreply: bool) {
    out.extend_from_slice(b"flush_all");
    if delay != 0 {
        push_number(out, delay);
    }
    if noreply {
        out.extend_from_slice(NOREPLY);
    }
    out.extend_from_slice(b"\r\n");
}

/// The last token of a request the server must not answer. memcached (1.6.18) then stays silent
/// even when the command fails (NOT_STORED, a non-numeric incr, a value over `-I`); it only
/// answers `ERROR` when it cannot parse the line, and then it may read the data block as a
/// command too. The encoders here never produce such a line (keys are checked first, lengths
/// and numbers are computed), which is what keeps a noreply request from leaving an unclaimed
/// reply on a pipelined connection.
const NOREPLY: &[u8] = b" noreply";

fn push_number(out: &mut Vec<u8>, n: impl std::fmt::Display) {
    use std::io::Write;
    // Writing into a Vec cannot fail.
    let _ = write!(out, " {n}");
}

/// Reads one reply of a known kind out of a growing buffer, across as many calls as it takes.
///
/// Complete pieces (a line, a whole `VALUE` block) are taken out of the buffer as soon as they are
/// recognised, so a long multi-get reply is scanned once however it is split.
#[derive(Debug)]
pub struct ReplyReader {
    kind: ReplyKind,
    values: Vec<(Vec<u8>, Value)>,
    stats: Vec<(String, String)>,
    /// Bytes of payload still due for the `VALUE` header already consumed.
    pending_value: Option<(Vec<u8>, u32, usize, Option<u64>)>,
}

/// What one call to [`ReplyReader::read`] found.
#[derive(Debug)]
pub enum Progress {
    /// The reply is not complete; call again with more bytes.
    NeedMore,
    /// The reply is complete: a typed reply, or the error the server answered
    /// (`ERROR`, `CLIENT_ERROR`, `SERVER_ERROR`). The connection stays usable either way.
    Done(Result<Reply>),
}

impl ReplyReader {
    pub fn new(kind: ReplyKind) -> ReplyReader {
        ReplyReader {
            kind,
            values: Vec::new(),
            stats: Vec::new(),
            pending_value: None,
        }
    }

    /// Consumes what it can of `buf`. `Err` means the bytes cannot be a reply of this kind: the
    /// connection is out of step with the server and must be closed.
    pub fn read(&mut self, buf: &mut BytesMut) -> Result<Progress> {
        loop {
            if let Some((_, _, len, _)) = &self.pending_value {
                if buf.len() < len + 2 {
                    return Ok(Progress::NeedMore);
                }
                let (key, flags, len, cas) = self.pending_value.take().expect("checked above");
                if &buf[len..len + 2] != b"\r\n" {
                    return Err(Error::Protocol("value block not ended by CRLF".into()));
                }
                let data = buf[..len].to_vec();
                buf.advance(len + 2);
                self.values.push((key, Value { data, flags, cas }));
                continue;
            }
            let Some(end) = memchr::memmem::find(buf, b"\r\n") else {
                return Ok(Progress::NeedMore);
            };
            let line = buf.split_to(end + 2);
            let line = &line[..end];
            if self.kind == ReplyKind::Shutdown {
                // `ERROR: shutdown not enabled` is not the bare `ERROR` of an unknown command.
                return match line {
                    b"ERROR: shutdown not enabled" => {
                        Ok(Progress::Done(Err(Error::ShutdownNotEnabled)))
                    }
                    _ => match error_line(line) {
                        Some(error) => Ok(Progress::Done(Err(error))),
                        None => Err(Error::Protocol(String::from_utf8_lossy(line).into_owned())),
                    },
                };
            }
            if let Some(error) = error_line(line) {
                return Ok(Progress::Done(Err(error)));
            }
            if let Some(reply) = self.line(line)? {
                return Ok(Progress::Done(Ok(reply)));
            }
        }
    }

    /// Handles one line; `Some` when it ends the reply.
    fn line(&mut self, line: &[u8]) -> Result<Option<Reply>> {
        let unexpected = || Error::Protocol(String::from_utf8_lossy(line).into_owned());
        let reply = match self.kind {
            ReplyKind::Values => {
                if line == b"END" {
                    return Ok(Some(Reply::Values(std::mem::take(&mut self.values))));
                }
                let mut fields = line.split(|&b| b == b' ');
                if fields.next() != Some(b"VALUE") {
                    return Err(unexpected());
                }
                let key = fields.next().ok_or_else(unexpected)?.to_vec();
                let flags = number(fields.next()).ok_or_else(unexpected)?;
                let len = number(fields.next()).ok_or_else(unexpected)?;
                let cas = match fields.next() {
                    Some(field) => Some(number(Some(field)).ok_or_else(unexpected)?),
                    None => None,
                };
                self.pending_value = Some((key, flags, len, cas));
                return Ok(None);
            }
            ReplyKind::Stats => {
                if line == b"END" || line == b"RESET" {
                    return Ok(Some(Reply::Stats(std::mem::take(&mut self.stats))));
                }
                let rest = line.strip_prefix(b"STAT ").ok_or_else(unexpected)?;
                let text = String::from_utf8_lossy(rest);
                let (name, value) = text.split_once(' ').unwrap_or((&text, ""));
                self.stats.push((name.to_string(), value.to_string()));
                return Ok(None);
            }
            ReplyKind::Store => Reply::Store(match line {
                b"STORED" => StoreStatus::Stored,
                b"NOT_STORED" => StoreStatus::NotStored,
                b"EXISTS" => StoreStatus::Exists,
                b"NOT_FOUND" => StoreStatus::NotFound,
                _ => return Err(unexpected()),
            }),
            ReplyKind::Delete | ReplyKind::Touch => {
                let found: &[u8] = if self.kind == ReplyKind::Delete {
                    b"DELETED"
                } else {
                    b"TOUCHED"
                };
                match line {
                    b"NOT_FOUND" => Reply::Found(false),
                    _ if line == found => Reply::Found(true),
                    _ => return Err(unexpected()),
                }
            }
            ReplyKind::Delta => match line {
                b"NOT_FOUND" => Reply::Delta(None),
                // memcached pads the stored number with spaces when it shrinks; trim to be safe.
                _ => Reply::Delta(Some(
                    number(Some(line.trim_ascii_end())).ok_or_else(unexpected)?,
                )),
            },
            ReplyKind::Ok => match line {
                b"OK" => Reply::Ok,
                _ => return Err(unexpected()),
            },
            ReplyKind::Version => {
                let version = line.strip_prefix(b"VERSION ").ok_or_else(unexpected)?;
                Reply::Version(String::from_utf8_lossy(version).into_owned())
            }
            // Read in `read`, never line by line.
            ReplyKind::Shutdown => return Err(unexpected()),
        };
        Ok(Some(reply))
    }
}

/// The protocol's three error replies, which can answer any command.
fn error_line(line: &[u8]) -> Option<Error> {
    if line == b"ERROR" {
        return Some(Error::UnknownCommand);
    }
    let text = |rest: &[u8]| String::from_utf8_lossy(rest).into_owned();
    if let Some(rest) = line.strip_prefix(b"CLIENT_ERROR ") {
        return Some(Error::Client(text(rest)));
    }
    if let Some(rest) = line.strip_prefix(b"SERVER_ERROR ") {
        return Some(Error::Server(text(rest)));
    }
    None
}

fn number<T: std::str::FromStr>(field: Option<&[u8]>) -> Option<T> {
    std::str::from_utf8(field?).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(kind: ReplyKind, bytes: &[u8]) -> (Result<Reply>, usize) {
        let mut buf = BytesMut::from(bytes);
        let mut reader = ReplyReader::new(kind);
        match reader.read(&mut buf).expect("well-formed") {
            Progress::Done(reply) => (reply, bytes.len() - buf.len()),
            Progress::NeedMore => panic!("incomplete: {:?}", String::from_utf8_lossy(bytes)),
        }
    }

    #[test]
    fn encodes_requests_as_memcached_expects() {
        let mut out = Vec::new();
        encode_store(
            &mut out,
            StoreCommand::Cas(42),
            b"k",
            b"v\r\n",
            7,
            -1,
            false,
        );
        assert_eq!(out, b"cas k 7 -1 3 42\r\nv\r\n\r\n");
        out.clear();
        encode_store(&mut out, StoreCommand::Set, b"k", b"v", 0, 0, true);
        assert_eq!(out, b"set k 0 0 1 noreply\r\nv\r\n");
        out.clear();
        encode_keyed(&mut out, "touch", b"k", Some(-1), true);
        assert_eq!(out, b"touch k -1 noreply\r\n");
        out.clear();
        encode_flush_all(&mut out, 0, true);
        assert_eq!(out, b"flush_all noreply\r\n");
        out.clear();
        encode_flush_all(&mut out, 30, false);
        assert_eq!(out, b"flush_all 30\r\n");
        out.clear();
        encode_get(&mut out, &[b"a", b"b"], true, Some(100));
        assert_eq!(out, b"gats 100 a b\r\n");
        out.clear();
        encode_keyed(&mut out, "incr", b"n", Some(u64::MAX.into()), false);
        assert_eq!(out, b"incr n 18446744073709551615\r\n");
    }

    #[test]
    fn reads_values_with_and_without_cas() {
        let reply = b"VALUE a 5 3 99\r\nx\r\n\r\nVALUE b 0 0\r\n\r\nEND\r\nSTORED\r\n";
        let (got, used) = read_all(ReplyKind::Values, reply);
        assert_eq!(
            used,
            reply.len() - b"STORED\r\n".len(),
            "stops at the reply's end"
        );
        let Reply::Values(values) = got.expect("values") else {
            panic!("kind")
        };
        assert_eq!(values.len(), 2);
        assert_eq!(
            values[0].1,
            Value {
                data: b"x\r\n".to_vec(),
                flags: 5,
                cas: Some(99)
            }
        );
        assert_eq!(values[1].1.data, b"");
    }

    #[test]
    fn error_lines_are_typed_errors_not_desyncs() {
        let (got, _) = read_all(
            ReplyKind::Store,
            b"SERVER_ERROR object too large for cache\r\n",
        );
        assert!(matches!(got, Err(Error::Server(m)) if m == "object too large for cache"));
        let (got, _) = read_all(
            ReplyKind::Values,
            b"CLIENT_ERROR bad command line format\r\n",
        );
        assert!(matches!(got, Err(Error::Client(_))));
        let (got, _) = read_all(ReplyKind::Ok, b"ERROR\r\n");
        assert!(matches!(got, Err(Error::UnknownCommand)));
        // memcached 1.6.18 without -A, byte for byte.
        let (got, _) = read_all(ReplyKind::Shutdown, b"ERROR: shutdown not enabled\r\n");
        assert!(matches!(got, Err(Error::ShutdownNotEnabled)));
        let (got, _) = read_all(ReplyKind::Shutdown, b"ERROR\r\n");
        assert!(matches!(got, Err(Error::UnknownCommand)));
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        let mut reader = ReplyReader::new(ReplyKind::Delete);
        let mut buf = BytesMut::from(&b"STORED\r\n"[..]);
        assert!(matches!(reader.read(&mut buf), Err(Error::Protocol(_))));
        let mut reader = ReplyReader::new(ReplyKind::Values);
        let mut buf = BytesMut::from(&b"VALUE k 0 1\r\nxy\r\nEND\r\n"[..]);
        assert!(reader.read(&mut buf).is_err(), "length mismatch");
    }

    #[test]
    fn reads_other_replies() {
        assert_eq!(
            read_all(ReplyKind::Delta, b"15  \r\n").0.expect("delta"),
            Reply::Delta(Some(15))
        );
        assert_eq!(
            read_all(ReplyKind::Touch, b"NOT_FOUND\r\n")
                .0
                .expect("touch"),
            Reply::Found(false)
        );
        assert_eq!(
            read_all(ReplyKind::Version, b"VERSION 1.6.18\r\n")
                .0
                .expect("version"),
            Reply::Version("1.6.18".into())
        );
        assert_eq!(
            read_all(
                ReplyKind::Stats,
                b"STAT pid 12\r\nSTAT version 1.6.18\r\nEND\r\n"
            )
            .0
            .expect("stats"),
            Reply::Stats(vec![
                ("pid".into(), "12".into()),
                ("version".into(), "1.6.18".into())
            ])
        );
    }

    proptest::proptest! {
        /// However the socket splits a stream of pipelined replies, the reader sees the same
        /// replies.
        #[test]
        fn splitting_does_not_change_the_replies(cuts in proptest::collection::vec(0usize..200, 0..8)) {
            let stream: &[u8] = b"VALUE key 1 4\r\nab\r\n\r\nVALUE k2 2 0 7\r\n\r\nEND\r\nNOT_STORED\r\nSERVER_ERROR out of memory\r\nSTAT a b c\r\nEND\r\n";
            let kinds = [ReplyKind::Values, ReplyKind::Store, ReplyKind::Store, ReplyKind::Stats];
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % stream.len()).collect();
            cuts.push(stream.len());
            cuts.sort_unstable();
            let mut buf = BytesMut::new();
            let mut fed = 0;
            let mut replies = Vec::new();
            let mut reader = ReplyReader::new(kinds[0]);
            for cut in cuts {
                buf.extend_from_slice(&stream[fed..cut]);
                fed = cut;
                while replies.len() < kinds.len() {
                    match reader.read(&mut buf).expect("well-formed") {
                        Progress::NeedMore => break,
                        Progress::Done(reply) => {
                            replies.push(reply.map_err(|e| e.to_string()));
                            if let Some(&next) = kinds.get(replies.len()) {
                                reader = ReplyReader::new(next);
                            }
                        }
                    }
                }
            }
            proptest::prop_assert_eq!(replies.len(), 4);
            proptest::prop_assert!(buf.is_empty());
            let Ok(Reply::Values(values)) = &replies[0] else { panic!("values") };
            proptest::prop_assert_eq!(&values[0].1.data, b"ab\r\n");
            proptest::prop_assert_eq!(values[1].1.cas, Some(7));
            proptest::prop_assert_eq!(&replies[1], &Ok(Reply::Store(StoreStatus::NotStored)));
            proptest::prop_assert_eq!(&replies[2], &Err("SERVER_ERROR out of memory".to_string()));
            proptest::prop_assert_eq!(&replies[3], &Ok(Reply::Stats(vec![("a".into(), "b c".into())])));
        }
    }
}
