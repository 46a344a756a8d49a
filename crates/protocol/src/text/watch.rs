//! `watch`: memcached's log stream (its `logger.c`). A connection that sends `watch [kinds...]`
//! gets `OK`, then a line for each logged event of those kinds until it closes, and sends no more
//! commands. This module parses the command and writes the lines, in memcached 1.6.18's format:
//!
//! ```text
//! ts=1796643738.456853 gid=31 type=item_store key=a%20b status=stored cmd=set ttl=0 clsid=1 cfd=29 size=1
//! ```
//!
//! `ts` is the unix time with its microseconds unpadded (memcached prints `%d.%d`), `gid` counts
//! the lines logged since start, keys are URI-encoded and every line ends in a bare `\n`.

use super::crawler::uri_encode;
use super::Tokens;

/// Every item lookup, with whether it found the item (gets, and the lookups that `set`, `delete`,
/// `touch`, `incr` and the meta commands make first).
pub const FETCHERS: u16 = 1 << 0;
/// Every storage command's outcome.
pub const MUTATIONS: u16 = 1 << 1;
/// Every item evicted to make room.
pub const EVICTIONS: u16 = 1 << 2;
/// Connections opened and closed.
pub const CONNEVENTS: u16 = 1 << 3;
/// Kinds memcached accepts that log nothing here, as in a memcached without its proxy.
pub const SYSEVENTS: u16 = 1 << 4;
pub const RAWCMDS: u16 = 1 << 5;
pub const PROXYREQS: u16 = 1 << 6;
pub const PROXYEVENTS: u16 = 1 << 7;
pub const PROXYUSER: u16 = 1 << 8;

/// A `watch` line named a kind memcached does not know: it answers `ERROR`, suppressed when the
/// last token is `noreply`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownKind {
    pub noreply: bool,
}

/// The kinds named on a `watch` line: fetchers when none is.
pub fn parse(tokens: &Tokens<'_>) -> Result<u16, UnknownKind> {
    // The tokens of the line, `watch` first (`ntokens` counts memcached's terminal one too).
    let len = tokens.ntokens() - 1;
    if len < 2 {
        return Ok(FETCHERS);
    }
    let mut kinds = 0;
    for i in 1..len {
        kinds |= match tokens.get(i) {
            b"fetchers" => FETCHERS,
            b"mutations" => MUTATIONS,
            b"evictions" => EVICTIONS,
            b"connevents" => CONNEVENTS,
            b"sysevents" => SYSEVENTS,
            b"rawcmds" => RAWCMDS,
            b"proxyreqs" => PROXYREQS,
            b"proxyevents" => PROXYEVENTS,
            b"proxyuser" => PROXYUSER,
            _ => {
                return Err(UnknownKind {
                    noreply: tokens.last_is_noreply(),
                })
            }
        };
    }
    Ok(kinds)
}

/// The start of every line: when, and the line's number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub unix_secs: u64,
    pub micros: u32,
    pub gid: u64,
}

/// Appends formatted text (a `Vec` takes all of it).
fn put(out: &mut Vec<u8>, text: std::fmt::Arguments<'_>) {
    std::io::Write::write_fmt(out, text).expect("writing to a Vec cannot fail");
}

fn start(out: &mut Vec<u8>, stamp: Stamp, kind: &str) {
    let Stamp {
        unix_secs,
        micros,
        gid,
    } = stamp;
    put(
        out,
        format_args!("ts={unix_secs}.{micros} gid={gid} type={kind}"),
    );
}

fn key_field(out: &mut Vec<u8>, key: &[u8]) {
    out.extend_from_slice(b" key=");
    uri_encode(out, key);
}

/// A lookup: `size` is the value's length when the item was found.
pub fn item_get_line(out: &mut Vec<u8>, stamp: Stamp, key: &[u8], size: Option<usize>, cfd: u64) {
    start(out, stamp, "item_get");
    key_field(out, key);
    let (status, clsid, size) = match size {
        Some(size) => ("found", 1, size),
        None => ("not_found", 0, 0),
    };
    put(
        out,
        format_args!(" status={status} clsid={clsid} cfd={cfd} size={size}\n"),
    );
}

/// A storage command's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Store<'a> {
    pub key: &'a [u8],
    /// `stored`, `not_stored`, `exists` or `not_found`.
    pub status: &'a str,
    /// `set`, `add`, `replace`, `append`, `prepend` or `cas`.
    pub command: &'a str,
    /// Seconds the item has left (0: it never expires; memcached prints an unsigned difference,
    /// so a time already past wraps around).
    pub ttl: u32,
    pub cfd: u64,
    pub size: usize,
}

pub fn item_store_line(out: &mut Vec<u8>, stamp: Stamp, store: &Store<'_>) {
    start(out, stamp, "item_store");
    key_field(out, store.key);
    put(
        out,
        format_args!(
            " status={} cmd={} ttl={} clsid=1 cfd={} size={}\n",
            store.status, store.command, store.ttl, store.cfd, store.size
        ),
    );
}

/// An item evicted to make room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eviction<'a> {
    pub key: &'a [u8],
    /// It was read since it was written.
    pub fetched: bool,
    /// Seconds it had left, -1 when it never expires.
    pub ttl: i64,
    /// Seconds since it was last accessed (here: since its segment opened).
    pub last_access: u32,
    pub size: usize,
}

pub fn eviction_line(out: &mut Vec<u8>, stamp: Stamp, eviction: &Eviction<'_>) {
    start(out, stamp, "eviction");
    key_field(out, eviction.key);
    let fetch = if eviction.fetched { "yes" } else { "no" };
    put(
        out,
        format_args!(
            " fetch={fetch} ttl={} la={} clsid=1 size={}\n",
            eviction.ttl, eviction.last_access, eviction.size
        ),
    );
}

/// Where a connection comes from: `unix` and port 0 over a unix socket (transport `local`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer<'a> {
    pub ip: &'a str,
    pub port: u16,
    /// `tcp` or `local`.
    pub transport: &'a str,
    pub cfd: u64,
}

pub fn conn_new_line(out: &mut Vec<u8>, stamp: Stamp, peer: &Peer<'_>) {
    start(out, stamp, "conn_new");
    put(
        out,
        format_args!(
            " rip={} rport={} transport={} cfd={}\n",
            peer.ip, peer.port, peer.transport, peer.cfd
        ),
    );
}

/// `reason`: `normal` (the client closed or quit), `error`, `idle_timeout` or `shutdown`.
pub fn conn_close_line(out: &mut Vec<u8>, stamp: Stamp, peer: &Peer<'_>, reason: &str) {
    start(out, stamp, "conn_close");
    put(
        out,
        format_args!(
            " rip={} rport={} transport={} reason={reason} cfd={}\n",
            peer.ip, peer.port, peer.transport, peer.cfd
        ),
    );
}

/// Written before the next line when a watcher fell behind and `n` lines were dropped for it.
pub fn skipped_line(out: &mut Vec<u8>, n: u64) {
    put(out, format_args!("skipped={n}\n"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(line: &[u8]) -> Result<u16, UnknownKind> {
        parse(&Tokens::new(line))
    }

    #[test]
    fn parses_the_kinds_as_memcached_does() {
        assert_eq!(kinds(b"watch"), Ok(FETCHERS));
        assert_eq!(kinds(b"watch fetchers"), Ok(FETCHERS));
        assert_eq!(kinds(b"watch  fetchers "), Ok(FETCHERS));
        assert_eq!(
            kinds(b"watch mutations evictions connevents"),
            Ok(MUTATIONS | EVICTIONS | CONNEVENTS)
        );
        assert_eq!(
            kinds(b"watch proxyuser sysevents"),
            Ok(PROXYUSER | SYSEVENTS)
        );
        let error = |noreply| Err(UnknownKind { noreply });
        assert_eq!(kinds(b"watch FETCHERS"), error(false));
        assert_eq!(kinds(b"watch deletions"), error(false));
        assert_eq!(kinds(b"watch fetchers noreply"), error(true));
        assert_eq!(kinds(b"watch noreply"), error(true));
    }

    /// Lines memcached 1.6.18 wrote, field for field.
    #[test]
    fn writes_memcacheds_lines() {
        let stamp = |gid| Stamp {
            unix_secs: 1796643738,
            micros: 65039,
            gid,
        };
        let mut out = Vec::new();
        item_get_line(&mut out, stamp(30), b"a%20b", None, 29);
        item_get_line(&mut out, stamp(32), b"\xff\xfe", Some(3), 29);
        item_store_line(
            &mut out,
            stamp(31),
            &Store {
                key: b"wk",
                status: "stored",
                command: "set",
                ttl: 100,
                cfd: 29,
                size: 3,
            },
        );
        eviction_line(
            &mut out,
            stamp(3),
            &Eviction {
                key: b"k0",
                fetched: false,
                ttl: -1,
                last_access: 0,
                size: 1000,
            },
        );
        let peer = Peer {
            ip: "unix",
            port: 0,
            transport: "local",
            cfd: 25,
        };
        conn_new_line(&mut out, stamp(2), &peer);
        conn_close_line(&mut out, stamp(3), &peer, "normal");
        skipped_line(&mut out, 7);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ts=1796643738.65039 gid=30 type=item_get key=a%2520b status=not_found clsid=0 cfd=29 size=0\n\
             ts=1796643738.65039 gid=32 type=item_get key=%FF%FE status=found clsid=1 cfd=29 size=3\n\
             ts=1796643738.65039 gid=31 type=item_store key=wk status=stored cmd=set ttl=100 clsid=1 cfd=29 size=3\n\
             ts=1796643738.65039 gid=3 type=eviction key=k0 fetch=no ttl=-1 la=0 clsid=1 size=1000\n\
             ts=1796643738.65039 gid=2 type=conn_new rip=unix rport=0 transport=local cfd=25\n\
             ts=1796643738.65039 gid=3 type=conn_close rip=unix rport=0 transport=local reason=normal cfd=25\n\
             skipped=7\n"
        );
    }
}
