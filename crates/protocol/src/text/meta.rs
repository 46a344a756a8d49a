//! The meta commands (`mn mg ms md ma me`), parsed as memcached 1.6.18's `_meta_flag_preparse`
//! does: one letter per flag token, each at most once, numeric arguments glued to the letter.
//! Errors here are never silenced by `q` (memcached's `out_errstring`).

use super::numbers::{parse_i32_like_strtol, parse_u32_like_strtoul, parse_u64_like_strtoull};
use super::parse::Request;
use super::reply;
use super::tokens::Tokens;
use super::KEY_MAX_LENGTH;

/// Which meta command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaCommand {
    Get,
    Set,
    Delete,
    Arith,
    Debug,
}

/// The flags of a meta request. `tokens` keeps them in request order: return flags are echoed in
/// that order.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetaFlags<'a> {
    pub tokens: &'a [u8],
    pub quiet: bool,
    pub value: bool,
    pub opaque: Option<&'a [u8]>,
    pub ttl: Option<i32>,
    pub vivify: Option<i32>,
    pub client_flags: Option<u32>,
    pub compare_cas: Option<u64>,
    pub mode: Option<u8>,
    pub delta: Option<u64>,
    pub initial: Option<u64>,
    /// `b`: the key is base64-encoded binary (decoded by the caller).
    pub base64_key: bool,
    /// `R`: win the recache when the item expires before this exptime.
    pub recache: Option<i32>,
    /// `u`: do not bump the item.
    pub no_bump: bool,
    /// `I`: invalidate (mark stale) instead of deleting / store an older CAS as stale.
    pub invalidate: bool,
}

impl<'a> MetaFlags<'a> {
    /// The flag tokens, in request order.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> {
        self.tokens.split(|&b| b == b' ').filter(|t| !t.is_empty())
    }

    /// Where, among the flag tokens, the first `O` longer than [`MAX_OPAQUE_LENGTH`] is:
    /// memcached 1.6.18 answers `CLIENT_ERROR opaque token too long` when it reaches it as it
    /// writes the reply, so for `mg` and `ma` after the flags before it took effect.
    pub fn long_opaque_at(&self) -> Option<usize> {
        self.iter()
            .position(|t| t[0] == b'O' && t.len() > MAX_OPAQUE_LENGTH)
    }

    /// Where, among the flag tokens, the first one starting with `letter` is.
    pub fn position(&self, letter: u8) -> Option<usize> {
        self.iter().position(|t| t[0] == letter)
    }
}

const BAD_TOKEN: &str = "CLIENT_ERROR bad token in command line format";

/// The longest `O` token (the `O` included) memcached 1.6.18 echoes back.
pub const MAX_OPAQUE_LENGTH: usize = 32;

/// memcached 1.6.18 refuses a meta request of more tokens than this (its `ntokens` counts the
/// command, the key and a terminal token).
const MAX_META_TOKENS: usize = 20;

/// The flags after the key, checked as memcached 1.6.18's `_meta_flag_preparse` does: a
/// repeated or unknown flag stops at once; any other fault (a key that is not base64 under
/// `b`, a bad number, an `M` not one letter long) is remembered and the walk goes on, so the
/// last such fault names the error. A bad `F` names none, leaving `CLIENT_ERROR bad command line
/// format` if nothing else does.
fn parse_flags<'a>(line: &'a [u8], key: &[u8]) -> Result<MetaFlags<'a>, &'static str> {
    use base64::Engine as _;
    let mut flags = MetaFlags {
        tokens: line,
        ..MetaFlags::default()
    };
    let mut seen = [false; 128];
    let mut fault = None;
    let mut failed = false;
    for token in line.split(|&b| b == b' ').filter(|t| !t.is_empty()) {
        let letter = token[0];
        if letter >= 127 || seen[usize::from(letter)] {
            return Err("CLIENT_ERROR duplicate flag");
        }
        seen[usize::from(letter)] = true;
        let arg = &token[1..];
        // A fault that names its error, or (F) none.
        let mut bad = |error: Option<&'static str>| {
            failed = true;
            fault = error.or(fault);
        };
        match letter {
            b'b' => {
                flags.base64_key = true;
                // memcached decodes the key here; the caller decodes it again.
                if base64::engine::general_purpose::STANDARD
                    .decode(key)
                    .map_or(true, |k| k.is_empty())
                {
                    bad(Some("CLIENT_ERROR error decoding key"));
                }
            }
            b'N' => match parse_i32_like_strtol(arg) {
                Some(ttl) => flags.vivify = Some(ttl),
                None => bad(Some(BAD_TOKEN)),
            },
            b'T' => match parse_i32_like_strtol(arg) {
                Some(ttl) => flags.ttl = Some(ttl),
                None => bad(Some(BAD_TOKEN)),
            },
            b'R' => match parse_i32_like_strtol(arg) {
                Some(ttl) => flags.recache = Some(ttl),
                None => bad(Some(BAD_TOKEN)),
            },
            b'F' => match parse_u32_like_strtoul(arg) {
                Some(f) => flags.client_flags = Some(f),
                None => bad(None),
            },
            b'C' => match parse_u64_like_strtoull(arg) {
                Some(cas) => flags.compare_cas = Some(cas),
                None => bad(Some(BAD_TOKEN)),
            },
            b'M' => match arg {
                [mode] => flags.mode = Some(*mode),
                _ => bad(Some("CLIENT_ERROR incorrect length for M token")),
            },
            b'J' => match parse_u64_like_strtoull(arg) {
                Some(n) => flags.initial = Some(n),
                None => bad(Some("CLIENT_ERROR invalid numeric initial value")),
            },
            b'D' => match parse_u64_like_strtoull(arg) {
                Some(n) => flags.delta = Some(n),
                None => bad(Some("CLIENT_ERROR invalid numeric delta value")),
            },
            b'O' => flags.opaque = Some(token),
            b'q' => flags.quiet = true,
            b'v' => flags.value = true,
            // memcached 1.6.18 knows no E, x or S flag: `ms k 1 E5` is an invalid flag there.
            b'u' => flags.no_bump = true,
            b'I' => flags.invalidate = true,
            b'P' | b'L' | b'k' | b's' | b't' | b'c' | b'f' | b'h' | b'l' => {}
            _ => return Err("CLIENT_ERROR invalid flag"),
        }
    }
    if failed {
        return Err(fault.unwrap_or(reply::CLIENT_ERROR_BAD_FORMAT));
    }
    Ok(flags)
}

/// Parses a meta command line (`tokens`); `after` is what follows the line (the data of `ms`).
/// `None` means the data block is incomplete.
pub(super) fn parse_meta<'a>(
    tokens: &Tokens<'a>,
    after: &'a [u8],
    fits: impl Fn(usize, u32, usize) -> bool,
) -> Option<(Request<'a>, usize)> {
    let error = |reply| {
        Some((
            Request::Error {
                reply,
                noreply: false,
            },
            0,
        ))
    };
    let command = match tokens.get(0)[1] {
        b'n' => return Some((Request::MetaNoop, 0)),
        b'g' => MetaCommand::Get,
        b's' => MetaCommand::Set,
        b'd' => MetaCommand::Delete,
        b'a' => MetaCommand::Arith,
        b'e' => MetaCommand::Debug,
        _ => return error(reply::ERROR),
    };
    let ntokens = tokens.ntokens();
    let key = tokens.get(1);
    if command == MetaCommand::Set {
        if ntokens < 4 || key.len() > KEY_MAX_LENGTH {
            return error(reply::CLIENT_ERROR_BAD_FORMAT);
        }
        if ntokens > MAX_META_TOKENS {
            return error("CLIENT_ERROR options flags too long");
        }
        let Some(vlen) = parse_i32_like_strtol(tokens.get(2)).and_then(|v| usize::try_from(v).ok())
        else {
            return error(reply::CLIENT_ERROR_BAD_FORMAT);
        };
        // From here on an error still swallows the data block, as memcached does.
        let swallow = |reply| {
            Some((
                Request::Swallow {
                    reply,
                    noreply: false,
                    bytes: vlen + 2,
                    unlink_key: None,
                    unlink_base64: false,
                },
                0,
            ))
        };
        let flags = match parse_flags(tokens.line_from(3), key) {
            Ok(flags) => flags,
            Err(e) => return swallow(e),
        };
        // memcached 1.6.18 knows the modes in capitals only (later versions take both).
        if flags.mode.is_some_and(|mode| !b"EAPRS".contains(&mode)) {
            return swallow("CLIENT_ERROR invalid mode for ms M token");
        }
        if flags.long_opaque_at().is_some() {
            return swallow(reply::CLIENT_ERROR_OPAQUE_TOO_LONG);
        }
        if !fits(key.len(), flags.client_flags.unwrap_or(0), vlen) {
            // memcached 1.6.18 then drops the key's item, whatever the mode.
            return Some((
                Request::Swallow {
                    reply: reply::SERVER_ERROR_TOO_LARGE,
                    noreply: false,
                    bytes: vlen + 2,
                    unlink_key: Some(key),
                    unlink_base64: flags.base64_key,
                },
                0,
            ));
        }
        if after.len() < vlen + 2 {
            return None;
        }
        if &after[vlen..vlen + 2] != b"\r\n" {
            return Some((
                Request::Error {
                    reply: reply::CLIENT_ERROR_BAD_DATA_CHUNK,
                    noreply: false,
                },
                vlen + 2,
            ));
        }
        return Some((
            Request::Meta {
                command,
                key,
                flags,
                data: &after[..vlen],
            },
            vlen + 2,
        ));
    }
    if command == MetaCommand::Debug {
        // memcached 1.6.18's `process_meta_command` takes no flags: only a `b` right after the key
        // (base64 key), any other token is ignored, and every error is one string.
        if ntokens < 3 || key.len() > KEY_MAX_LENGTH {
            return error(reply::CLIENT_ERROR_BAD_FORMAT);
        }
        let flags = MetaFlags {
            base64_key: ntokens >= 4 && tokens.get(2) == b"b",
            ..MetaFlags::default()
        };
        return Some((
            Request::Meta {
                command,
                key,
                flags,
                data: &[],
            },
            0,
        ));
    }
    if ntokens < 3 {
        return error(reply::ERROR);
    }
    if key.len() > KEY_MAX_LENGTH {
        return error(reply::CLIENT_ERROR_BAD_FORMAT);
    }
    if ntokens > MAX_META_TOKENS {
        return error(if command == MetaCommand::Get {
            "CLIENT_ERROR options flags are too long"
        } else {
            "CLIENT_ERROR options flags too long"
        });
    }
    let flags = match parse_flags(tokens.line_from(2), key) {
        Ok(flags) => flags,
        // md and ma answer every flag error with one string (memcached 1.6.18: `md k x`,
        // `ma k E1` and `md k b` with a key that is not base64 all give it).
        Err(_) if matches!(command, MetaCommand::Delete | MetaCommand::Arith) => {
            return error("CLIENT_ERROR invalid or duplicate flag")
        }
        Err(e) => return error(e),
    };
    // memcached 1.6.18 knows the modes in capitals only (later versions take both).
    if command == MetaCommand::Arith && flags.mode.is_some_and(|mode| !b"ID+-".contains(&mode)) {
        return error("CLIENT_ERROR invalid mode for ma M token");
    }
    // md checks its opaque before it looks the key up; mg and ma after (the server's part).
    if command == MetaCommand::Delete && flags.long_opaque_at().is_some() {
        return error(reply::CLIENT_ERROR_OPAQUE_TOO_LONG);
    }
    Some((
        Request::Meta {
            command,
            key,
            flags,
            data: &[],
        },
        0,
    ))
}
