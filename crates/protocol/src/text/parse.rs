//! The text-protocol parser: one complete command (line, and data block for storage commands) out of
//! a buffer, or "need more bytes". Errors that memcached answers with a line are requests too
//! ([`Request::Error`]), because the connection goes on after them exactly as after a command.

use super::numbers::{parse_i32_like_strtol, parse_u32_like_strtoul, parse_u64_like_strtoull};
use super::reply;
use super::tokens::Tokens;
use super::{KEY_MAX_LENGTH, MAX_GET_LINE, MAX_LINE_WITHOUT_NEWLINE};

/// What the parser needs to know about the server to answer like memcached before the data arrives.
#[derive(Debug, Clone, Copy)]
pub struct ParseConfig {
    /// Would an item with (key length, flags, value length) fit? memcached refuses too large items
    /// as soon as it reads the command line and then swallows the data.
    pub item_fits: fn(&ParseConfig, usize, u32, usize) -> bool,
    /// `-I`, for `item_fits`.
    pub item_size_max: usize,
    /// CAS enabled (`-C` not given), for `item_fits`.
    pub use_cas: bool,
}

/// The storage commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreCommand {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
}

/// One parsed request. Keys and data borrow from the input buffer.
#[derive(Debug, Clone)]
pub enum Request<'a> {
    /// `get`/`gets`/`bget` (`cas`: reply with CAS ids).
    Get {
        cas: bool,
        keys: GetKeys<'a>,
    },
    /// `gat`/`gats`: get and touch.
    Gat {
        cas: bool,
        exptime: i32,
        keys: GetKeys<'a>,
    },
    /// `set add replace append prepend cas` with their data block (without the trailing `\r\n`).
    Store {
        command: StoreCommand,
        key: &'a [u8],
        flags: u32,
        exptime: i32,
        cas_unique: u64,
        data: &'a [u8],
        noreply: bool,
    },
    Delete {
        key: &'a [u8],
        noreply: bool,
    },
    /// `incr` (`incr: true`) / `decr`.
    Arith {
        incr: bool,
        key: &'a [u8],
        delta: u64,
        noreply: bool,
    },
    Touch {
        key: &'a [u8],
        exptime: i32,
        noreply: bool,
    },
    /// `flush_all [delay] [noreply]`; `delay` 0 when absent.
    FlushAll {
        delay: i32,
        noreply: bool,
    },
    Version,
    Verbosity {
        level: u32,
        noreply: bool,
    },
    Quit,
    /// `shutdown` / `shutdown graceful`.
    Shutdown {
        graceful: bool,
    },
    /// `shutdown` with another argument.
    ShutdownBadMode,
    /// `stats [args...]`: the line after `stats` (split it with [`GetKeys`]-like space splitting).
    Stats {
        args: &'a [u8],
    },
    /// `refresh_certs [noreply]`: reload the TLS certificates (memcached built with TLS).
    RefreshCerts {
        noreply: bool,
    },
    /// `cache_memlimit <MB> [noreply]`.
    CacheMemlimit {
        megabytes: Option<u32>,
        noreply: bool,
    },
    /// A line memcached answers with a fixed reply (an error, or a command we answer statically).
    /// With `noreply` memcached suppresses it.
    Error {
        reply: &'static str,
        noreply: bool,
    },
    /// A storage command whose item can never fit: answer `reply`, then discard the next `bytes`
    /// bytes of input (the data block) as they arrive.
    Swallow {
        reply: &'static str,
        noreply: bool,
        bytes: usize,
        /// memcached drops an existing item when a `set` or an `ms` fails this way.
        unlink_key: Option<&'a [u8]>,
        /// That key came with `b` (base64, decoded by the caller).
        unlink_base64: bool,
    },
    /// Junk memcached answers by closing the connection.
    Close,
    /// `watch [kinds...]` (see [`super::watch`]): the connection becomes a log stream.
    Watch {
        kinds: Result<u16, super::watch::UnknownKind>,
    },
    /// `lru_crawler ...` (see [`super::crawler::parse`]; a bad line is an [`Request::Error`]).
    LruCrawler(super::crawler::LruCrawler),
    /// `mn`: answered `MN`.
    MetaNoop,
    /// `mg ms md ma me` with their flags (and the data block of `ms`).
    Meta {
        command: super::meta::MetaCommand,
        key: &'a [u8],
        flags: super::meta::MetaFlags<'a>,
        data: &'a [u8],
    },
}

/// The keys of a get-like command, split on spaces; yields `Err(KeyTooLong)` for a key over 250
/// bytes, where memcached stops and answers `CLIENT_ERROR bad command line format`.
#[derive(Debug, Clone, Copy)]
pub struct GetKeys<'a> {
    rest: &'a [u8],
}

/// A key in a get line was longer than 250 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyTooLong;

impl GetKeys<'_> {
    /// Could a key still to come be over 250 bytes? False when what is left of the line is not
    /// that long, so a caller can skip looking ahead for [`KeyTooLong`].
    pub fn may_hold_long_key(&self) -> bool {
        self.rest.len() > KEY_MAX_LENGTH
    }
}

impl<'a> Iterator for GetKeys<'a> {
    type Item = Result<&'a [u8], KeyTooLong>;

    fn next(&mut self) -> Option<Self::Item> {
        let start = self.rest.iter().position(|&b| b != b' ')?;
        let rest = &self.rest[start..];
        let end = memchr::memchr(b' ', rest).unwrap_or(rest.len());
        let key = &rest[..end];
        self.rest = &rest[end..];
        if key.len() > KEY_MAX_LENGTH {
            self.rest = &[];
            return Some(Err(KeyTooLong));
        }
        Some(Ok(key))
    }
}

/// What [`parse`] found.
#[derive(Debug, Clone)]
pub enum Parse<'a> {
    /// A request that used this many bytes of the buffer.
    Done(Request<'a>, usize),
    /// The buffer holds no complete request yet. When known, the total number of bytes the request
    /// will need (so the caller can reserve it once).
    Incomplete(Option<usize>),
}

/// A line answered with the fixed `reply` ([`Request::Error`], which also carries the static
/// answers of commands such as `slabs` and `lru`).
pub(super) fn error(reply: &'static str, noreply: bool) -> Request<'static> {
    Request::Error { reply, noreply }
}

/// Parses the first request in `buf`.
pub fn parse<'a>(buf: &'a [u8], config: &ParseConfig) -> Parse<'a> {
    let Some(newline) = memchr::memchr(b'\n', buf) else {
        return incomplete_line(buf);
    };
    let consumed = newline + 1;
    // memcached strips "\r" only when the line has something before it: "\r\n" alone is the
    // command "\r" (answered ERROR).
    let mut line = &buf[..newline];
    if newline > 1 && line[newline - 1] == b'\r' {
        line = &line[..newline - 1];
    }
    // memcached works on C strings: a NUL ends the command.
    if let Some(nul) = memchr::memchr(0, line) {
        line = &line[..nul];
    }
    let tokens = Tokens::new(line);
    match parse_line(&tokens, &buf[consumed..], config) {
        Some((request, data_used)) => Parse::Done(request, consumed + data_used),
        None => Parse::Incomplete(Some(consumed + data_len_hint(&tokens))),
    }
}

fn incomplete_line(buf: &[u8]) -> Parse<'_> {
    if buf.len() <= MAX_LINE_WITHOUT_NEWLINE {
        return Parse::Incomplete(None);
    }
    let spaces = buf.iter().take_while(|&&b| b == b' ').count();
    let rest = &buf[spaces..];
    let is_get = rest.starts_with(b"get ") || rest.starts_with(b"gets ");
    if spaces > 100 || !is_get || buf.len() > MAX_GET_LINE {
        return Parse::Done(Request::Close, buf.len());
    }
    Parse::Incomplete(None)
}

/// Bytes the data block of an incomplete storage command will take: its length is token 4 of
/// `set`-like commands and token 2 of `ms`.
fn data_len_hint(tokens: &Tokens<'_>) -> usize {
    let length_token = if tokens.get(0) == b"ms" { 2 } else { 4 };
    parse_i32_like_strtol(tokens.get(length_token))
        .and_then(|n| usize::try_from(n).ok())
        .map_or(0, |n| n + 2)
}

/// Parses a command line; `after` is the input after the line (the data block of a storage
/// command). Returns the request and how many bytes of `after` it used, or `None` when the data
/// block is incomplete.
fn parse_line<'a>(
    tokens: &Tokens<'a>,
    after: &'a [u8],
    config: &ParseConfig,
) -> Option<(Request<'a>, usize)> {
    let ntokens = tokens.ntokens();
    let command = tokens.get(0);
    if ntokens < 2 || command.len() < 2 {
        return Some((error(reply::ERROR, false), 0));
    }
    let want = |ok: bool, request: Request<'a>| -> Option<(Request<'a>, usize)> {
        Some((
            if ok {
                request
            } else {
                error(reply::ERROR, false)
            },
            0,
        ))
    };
    let store = |command| parse_storage(command, tokens, after, config);
    if command.len() == 2 && command[0] == b'm' {
        let fits =
            |key_len, flags, value_len| (config.item_fits)(config, key_len, flags, value_len);
        return super::meta::parse_meta(tokens, after, fits);
    }
    match command {
        b"get" | b"bget" => want(ntokens >= 3, get(tokens, 1, false)),
        b"gets" => want(ntokens >= 3, get(tokens, 1, true)),
        b"gat" => want(ntokens >= 3, gat(tokens, false)),
        b"gats" => want(ntokens >= 3, gat(tokens, true)),
        b"set" => store(StoreCommand::Set),
        b"add" => store(StoreCommand::Add),
        b"replace" => store(StoreCommand::Replace),
        b"append" => store(StoreCommand::Append),
        b"prepend" => store(StoreCommand::Prepend),
        b"cas" => store(StoreCommand::Cas),
        b"delete" => want((3..=5).contains(&ntokens), delete(tokens)),
        b"incr" => want(ntokens == 4 || ntokens == 5, arith(tokens, true)),
        b"decr" => want(ntokens == 4 || ntokens == 5, arith(tokens, false)),
        b"touch" => want(ntokens == 4 || ntokens == 5, touch(tokens)),
        b"flush_all" => want((2..=4).contains(&ntokens), flush_all(tokens)),
        b"version" => want(true, Request::Version),
        b"quit" => want(true, Request::Quit),
        b"verbosity" => want(ntokens == 3 || ntokens == 4, verbosity(tokens)),
        b"stats" => want(
            true,
            Request::Stats {
                args: tokens.line_from(1),
            },
        ),
        b"shutdown" => want(true, shutdown(tokens)),
        b"refresh_certs" => want(
            true,
            Request::RefreshCerts {
                noreply: tokens.last_is_noreply(),
            },
        ),
        b"cache_memlimit" => want(ntokens == 3 || ntokens == 4, cache_memlimit(tokens)),
        b"watch" => want(
            true,
            Request::Watch {
                kinds: super::watch::parse(tokens),
            },
        ),
        b"slabs" => want(true, super::admin::slabs(tokens)),
        b"lru" => want(true, super::admin::lru(tokens)),
        b"lru_crawler" => want(
            true,
            super::crawler::parse(tokens).map_or_else(|e| error(e, false), Request::LruCrawler),
        ),
        _ => {
            // memcached closes connections that send an HTTP request line.
            if tokens.get(ntokens - 2).starts_with(b"HTTP/") {
                return want(true, Request::Close);
            }
            want(true, error(reply::ERROR, false))
        }
    }
}

fn get<'a>(tokens: &Tokens<'a>, first_key: usize, cas: bool) -> Request<'a> {
    Request::Get {
        cas,
        keys: keys_from(tokens, first_key),
    }
}

/// The keys start at token `first_key` and run to the end of the line, past the tokenizer's
/// 23-token pass (memcached re-tokenises the rest of a long get line).
fn keys_from<'a>(tokens: &Tokens<'a>, first_key: usize) -> GetKeys<'a> {
    GetKeys {
        rest: tokens.line_from(first_key),
    }
}

fn gat<'a>(tokens: &Tokens<'a>, cas: bool) -> Request<'a> {
    match parse_i32_like_strtol(tokens.get(1)) {
        Some(exptime) => Request::Gat {
            cas,
            exptime,
            keys: keys_from(tokens, 2),
        },
        None => error(reply::CLIENT_ERROR_INVALID_EXPTIME, false),
    }
}

fn parse_storage<'a>(
    command: StoreCommand,
    tokens: &Tokens<'a>,
    after: &'a [u8],
    config: &ParseConfig,
) -> Option<(Request<'a>, usize)> {
    let ntokens = tokens.ntokens();
    let has_cas = command == StoreCommand::Cas;
    let expected = if has_cas { 7 } else { 6 };
    if ntokens != expected && ntokens != expected + 1 {
        return Some((error(reply::ERROR, false), 0));
    }
    let noreply = tokens.last_is_noreply();
    let bad_format = Some((error(reply::CLIENT_ERROR_BAD_FORMAT, noreply), 0));
    let key = tokens.get(1);
    if key.len() > KEY_MAX_LENGTH {
        return bad_format;
    }
    let (Some(flags), Some(exptime), Some(vlen)) = (
        parse_u32_like_strtoul(tokens.get(2)),
        parse_i32_like_strtol(tokens.get(3)),
        parse_i32_like_strtol(tokens.get(4)),
    ) else {
        return bad_format;
    };
    let cas_unique = if has_cas {
        match parse_u64_like_strtoull(tokens.get(5)) {
            Some(cas) => cas,
            None => return bad_format,
        }
    } else {
        0
    };
    let Ok(vlen) = usize::try_from(vlen) else {
        return bad_format;
    };
    if vlen > i32::MAX as usize - 2 {
        return bad_format;
    }
    if !(config.item_fits)(config, key.len(), flags, vlen) {
        return Some((
            Request::Swallow {
                reply: reply::SERVER_ERROR_TOO_LARGE,
                noreply,
                bytes: vlen + 2,
                unlink_key: (command == StoreCommand::Set).then_some(key),
                unlink_base64: false,
            },
            0,
        ));
    }
    if after.len() < vlen + 2 {
        return None;
    }
    if &after[vlen..vlen + 2] != b"\r\n" {
        return Some((error(reply::CLIENT_ERROR_BAD_DATA_CHUNK, noreply), vlen + 2));
    }
    Some((
        Request::Store {
            command,
            key,
            flags,
            exptime,
            cas_unique,
            data: &after[..vlen],
            noreply,
        },
        vlen + 2,
    ))
}

fn delete<'a>(tokens: &Tokens<'a>) -> Request<'a> {
    let ntokens = tokens.ntokens();
    let noreply = tokens.last_is_noreply();
    if ntokens > 3 {
        let hold_is_zero = tokens.get(2) == b"0";
        let valid = (ntokens == 4 && (hold_is_zero || noreply))
            || (ntokens == 5 && hold_is_zero && noreply);
        if !valid {
            return error(reply::CLIENT_ERROR_DELETE_USAGE, noreply);
        }
    }
    let key = tokens.get(1);
    if key.len() > KEY_MAX_LENGTH {
        return error(reply::CLIENT_ERROR_BAD_FORMAT, noreply);
    }
    Request::Delete { key, noreply }
}

fn arith<'a>(tokens: &Tokens<'a>, incr: bool) -> Request<'a> {
    let noreply = tokens.last_is_noreply();
    let key = tokens.get(1);
    if key.len() > KEY_MAX_LENGTH {
        return error(reply::CLIENT_ERROR_BAD_FORMAT, noreply);
    }
    match parse_u64_like_strtoull(tokens.get(2)) {
        Some(delta) => Request::Arith {
            incr,
            key,
            delta,
            noreply,
        },
        None => error(reply::CLIENT_ERROR_INVALID_DELTA, noreply),
    }
}

fn touch<'a>(tokens: &Tokens<'a>) -> Request<'a> {
    let noreply = tokens.last_is_noreply();
    let key = tokens.get(1);
    if key.len() > KEY_MAX_LENGTH {
        return error(reply::CLIENT_ERROR_BAD_FORMAT, noreply);
    }
    match parse_i32_like_strtol(tokens.get(2)) {
        Some(exptime) => Request::Touch {
            key,
            exptime,
            noreply,
        },
        None => error(reply::CLIENT_ERROR_INVALID_EXPTIME, noreply),
    }
}

fn flush_all<'a>(tokens: &Tokens<'a>) -> Request<'a> {
    let noreply = tokens.last_is_noreply();
    let bare = if noreply { 3 } else { 2 };
    let mut delay = 0;
    if tokens.ntokens() != bare {
        match parse_i32_like_strtol(tokens.get(1)) {
            Some(d) => delay = d,
            None => return error(reply::CLIENT_ERROR_INVALID_EXPTIME, noreply),
        }
    }
    Request::FlushAll { delay, noreply }
}

fn verbosity<'a>(tokens: &Tokens<'a>) -> Request<'a> {
    let noreply = tokens.last_is_noreply();
    match parse_u32_like_strtoul(tokens.get(1)) {
        Some(level) => Request::Verbosity { level, noreply },
        None => error(reply::CLIENT_ERROR_BAD_FORMAT, noreply),
    }
}

fn shutdown<'a>(tokens: &Tokens<'a>) -> Request<'a> {
    match tokens.ntokens() {
        2 => Request::Shutdown { graceful: false },
        3 if tokens.get(1) == b"graceful" => Request::Shutdown { graceful: true },
        _ => Request::ShutdownBadMode,
    }
}

fn cache_memlimit<'a>(tokens: &Tokens<'a>) -> Request<'a> {
    Request::CacheMemlimit {
        megabytes: parse_u32_like_strtoul(tokens.get(1)),
        noreply: tokens.last_is_noreply(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fits(config: &ParseConfig, key_len: usize, flags: u32, value_len: usize) -> bool {
        let cas = if config.use_cas { 8 } else { 0 };
        let flags = if flags != 0 { 4 } else { 0 };
        48 + key_len + 1 + flags + value_len + 2 + cas <= config.item_size_max
    }

    const CONFIG: ParseConfig = ParseConfig {
        item_fits: fits,
        item_size_max: 1024,
        use_cas: true,
    };

    fn done(input: &[u8]) -> (Request<'_>, usize) {
        match parse(input, &CONFIG) {
            Parse::Done(request, used) => (request, used),
            Parse::Incomplete(_) => panic!("incomplete: {:?}", String::from_utf8_lossy(input)),
        }
    }

    fn error_of(input: &[u8]) -> &'static str {
        match done(input).0 {
            Request::Error { reply, .. } => reply,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn meta_flag_faults_are_named_as_memcached_names_them() {
        // Read in order: the last fault named wins; a repeated or unknown flag stops at once; a
        // bad F names nothing; a key that is not base64 is a fault like the others.
        for (line, error) in [
            (&b"mg a Tx Z\r\n"[..], "CLIENT_ERROR invalid flag"),
            (b"mg a Tx q q\r\n", "CLIENT_ERROR duplicate flag"),
            (b"mg a Fx\r\n", "CLIENT_ERROR bad command line format"),
            (
                b"mg a Tx Fx\r\n",
                "CLIENT_ERROR bad token in command line format",
            ),
            (b"mg a Tx b\r\n", "CLIENT_ERROR error decoding key"),
            (
                b"mg YQ b Tx\r\n",
                "CLIENT_ERROR bad token in command line format",
            ),
            (b"mg a Dx\r\n", "CLIENT_ERROR invalid numeric delta value"),
            (b"mg a Jx\r\n", "CLIENT_ERROR invalid numeric initial value"),
            (b"mg a M\r\n", "CLIENT_ERROR incorrect length for M token"),
            (b"ma a Mxx\r\n", "CLIENT_ERROR invalid or duplicate flag"),
            // The mode is checked after the flags, in capitals only.
            (b"ma YQ b Mx\r\n", "CLIENT_ERROR invalid or duplicate flag"),
            (b"ma a Mi\r\n", "CLIENT_ERROR invalid mode for ma M token"),
            (
                b"mg a v v v v v v v v v v v v v v v v v v\r\n",
                "CLIENT_ERROR options flags are too long",
            ),
            (
                b"ma a v v v v v v v v v v v v v v v v v v\r\n",
                "CLIENT_ERROR options flags too long",
            ),
            (
                b"md a Oxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n",
                "CLIENT_ERROR opaque token too long",
            ),
        ] {
            assert_eq!(error_of(line), error, "{}", String::from_utf8_lossy(line));
        }
        // ms swallows its data block after a fault in the flags.
        for (line, error) in [
            (
                &b"ms YQ 2 b Mx\r\nab\r\n"[..],
                "CLIENT_ERROR error decoding key",
            ),
            (
                b"ms a 2 Ms\r\nab\r\n",
                "CLIENT_ERROR invalid mode for ms M token",
            ),
            (
                b"ms a 2 Oxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx Mx\r\nab\r\n",
                "CLIENT_ERROR invalid mode for ms M token",
            ),
            (
                b"ms a 2 Oxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\nab\r\n",
                "CLIENT_ERROR opaque token too long",
            ),
        ] {
            match done(line).0 {
                Request::Swallow { reply, bytes, .. } => assert_eq!((reply, bytes), (error, 4)),
                other => panic!("{}: {other:?}", String::from_utf8_lossy(line)),
            }
        }
        // Accepted: 17 flags, a 32-byte opaque, M of one capital on mg (which ignores it).
        for line in [
            &b"mg a v k c s f t q h u P L O1 I T1 N1 R1 l\r\n"[..],
            b"mg a Oxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx MS\r\n",
            b"mg YQ== b v\r\n",
        ] {
            assert!(
                matches!(done(line).0, Request::Meta { .. }),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn parses_set_with_data() {
        let (request, used) = done(b"set k 5 0 3\r\nabc\r\nget k\r\n");
        assert_eq!(used, 18);
        match request {
            Request::Store {
                command,
                key,
                flags,
                data,
                noreply,
                ..
            } => {
                assert_eq!(command, StoreCommand::Set);
                assert_eq!(key, b"k");
                assert_eq!(flags, 5);
                assert_eq!(data, b"abc");
                assert!(!noreply);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn waits_for_data_and_for_newline() {
        assert!(matches!(
            parse(b"set k 0 0 10\r\nabc", &CONFIG),
            Parse::Incomplete(Some(26))
        ));
        assert!(matches!(parse(b"get k", &CONFIG), Parse::Incomplete(None)));
    }

    #[test]
    fn bad_data_chunk_consumes_the_block() {
        let (request, used) = done(b"set k 0 0 1\r\nxyz\r\n");
        assert!(
            matches!(request, Request::Error { reply, .. } if reply == reply::CLIENT_ERROR_BAD_DATA_CHUNK)
        );
        assert_eq!(used, 13 + 3);
    }

    #[test]
    fn too_large_swallows() {
        match done(b"set k 0 0 2000 noreply\r\n").0 {
            Request::Swallow {
                bytes,
                noreply,
                unlink_key,
                ..
            } => {
                assert_eq!(bytes, 2002);
                assert!(noreply);
                assert_eq!(unlink_key, Some(&b"k"[..]));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_like_memcached() {
        assert_eq!(error_of(b"\r\n"), reply::ERROR);
        assert_eq!(error_of(b"x\r\n"), reply::ERROR);
        assert_eq!(error_of(b"set a 0 0\r\n"), reply::ERROR);
        assert_eq!(
            error_of(b"set a -1 0 1\r\n"),
            reply::CLIENT_ERROR_BAD_FORMAT
        );
        assert_eq!(
            error_of(b"set a 0 0 -1\r\n"),
            reply::CLIENT_ERROR_BAD_FORMAT
        );
        assert_eq!(error_of(b"incr a x\r\n"), reply::CLIENT_ERROR_INVALID_DELTA);
        assert_eq!(
            error_of(b"touch a x\r\n"),
            reply::CLIENT_ERROR_INVALID_EXPTIME
        );
        assert_eq!(
            error_of(b"delete a 5\r\n"),
            reply::CLIENT_ERROR_DELETE_USAGE
        );
        assert_eq!(error_of(b"GET a\r\n"), reply::ERROR);
        let long_key = format!("set {} 0 0 1\r\n", "k".repeat(251));
        assert_eq!(
            error_of(long_key.as_bytes()),
            reply::CLIENT_ERROR_BAD_FORMAT
        );
    }

    #[test]
    fn get_keys_run_past_23_tokens() {
        let keys: Vec<String> = (0..40).map(|i| format!("key{i}")).collect();
        let line = format!("get {}\r\n", keys.join(" "));
        match done(line.as_bytes()).0 {
            Request::Get { keys: parsed, cas } => {
                assert!(!cas);
                let parsed: Vec<&[u8]> = parsed.map(|k| k.expect("short key")).collect();
                assert_eq!(parsed.len(), 40);
                assert_eq!(parsed[39], b"key39");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn may_hold_long_key_only_when_the_rest_of_the_line_is_long_enough() {
        fn keys_of(line: &[u8]) -> GetKeys<'_> {
            match done(line).0 {
                Request::Get { keys, .. } => keys,
                other => panic!("{other:?}"),
            }
        }
        assert!(!keys_of(b"get a b c\r\n").may_hold_long_key());
        let long = format!("get a {}\r\n", "k".repeat(251));
        let mut keys = keys_of(long.as_bytes());
        assert!(keys.may_hold_long_key());
        assert_eq!(keys.next(), Some(Ok(&b"a"[..])));
        assert!(keys.may_hold_long_key());
        assert_eq!(keys.next(), Some(Err(KeyTooLong)));
        // 250 bytes of keys and spaces cannot hold a key over 250 bytes.
        let exact = format!("get {}\r\n", "k".repeat(250));
        assert!(!keys_of(exact.as_bytes()).may_hold_long_key());
    }

    #[test]
    fn long_line_without_newline_closes_unless_get() {
        let junk = vec![b'x'; 3000];
        assert!(matches!(
            parse(&junk, &CONFIG),
            Parse::Done(Request::Close, _)
        ));
        let mut get = b"get ".to_vec();
        get.extend(std::iter::repeat_n(b'k', 3000));
        assert!(matches!(parse(&get, &CONFIG), Parse::Incomplete(None)));
    }

    #[test]
    fn nul_ends_the_command() {
        match done(b"get a\0b\r\n").0 {
            Request::Get { keys, .. } => {
                let keys: Vec<_> = keys.collect();
                assert_eq!(keys, vec![Ok(&b"a"[..])]);
            }
            other => panic!("{other:?}"),
        }
    }

    /// Found by `cargo fuzz` (fuzz/fuzz_targets/text_parser.rs): an incomplete `ms` got the hint
    /// of a `set` (its length is token 2, not 4), so the hint said the request already fit.
    #[test]
    fn incomplete_meta_set_hints_its_data_length() {
        let input =
            b"ms tfoo1\x14  300 F5 q O1 k\r\nbar\r\nmg foo v f s t c \xf5\r\nma n N0 mn\x14\n";
        match parse(input, &CONFIG) {
            Parse::Incomplete(Some(total)) => assert_eq!(total, 26 + 302),
            other => panic!("{other:?}"),
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_consumes_within_bounds(input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            if let Parse::Done(_, used) = parse(&input, &CONFIG) {
                proptest::prop_assert!(used > 0 && used <= input.len());
            }
        }

        #[test]
        fn meta_lines_of_any_flags_parse_without_panic(
            command in proptest::sample::select(vec!["mg", "ms", "md", "ma", "me", "mn"]),
            key in proptest::sample::select(vec!["a", "YQ==", "Zm9v", "!!", "w6k=", ""]),
            flags in proptest::collection::vec(proptest::sample::select(vec![
                "b", "v", "q", "k", "c", "t", "s", "f", "h", "l", "u", "I", "P", "L", "O1",
                "Oxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "T5", "T-1", "Tx", "N0", "Nx", "R9", "Rx",
                "F3", "Fx", "C7", "Cx", "M", "MS", "Ms", "Mxx", "M+", "J1", "Jx", "D2", "Dx",
                "E1", "x", "\x01",
            ]), 0..22),
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..6),
        ) {
            let mut input = format!("{command} {key}").into_bytes();
            if command == "ms" {
                input.extend_from_slice(format!(" {}", data.len()).as_bytes());
            }
            for flag in &flags {
                input.push(b' ');
                input.extend_from_slice(flag.as_bytes());
            }
            input.extend_from_slice(b"\r\n");
            input.extend_from_slice(&data);
            input.extend_from_slice(b"\r\n");
            match parse(&input, &CONFIG) {
                Parse::Done(request, used) => {
                    proptest::prop_assert!(used > 0 && used <= input.len());
                    if let Request::Meta { flags, .. } = request {
                        // What the server then reads of the flags stays in the line.
                        proptest::prop_assert!(flags.iter().count() <= 17);
                        if let Some(at) = flags.long_opaque_at() {
                            proptest::prop_assert!(at < flags.iter().count());
                        }
                    }
                }
                Parse::Incomplete(_) => proptest::prop_assert!(false, "a whole request waits"),
            }
        }
    }
}
