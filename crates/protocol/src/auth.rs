//! Authentication on the wire, without I/O: the SASL `PLAIN` message (RFC 4616) carried by the
//! binary protocol's `SASL_AUTH`/`SASL_STEP`, and memcached's ASCII authentication token (`-Y`),
//! a `set` whose data block is `<user> <password>`.
//!
//! Only framing and splitting live here; checking a password and the per-connection state are the
//! server's.

/// The one SASL mechanism offered, as `SASL_LIST_MECHS` names it.
pub const MECH_PLAIN: &str = "PLAIN";

/// memcached refuses a mechanism name longer than this (`MAX_SASL_MECH_LEN`) with "Invalid
/// arguments".
pub const MAX_MECH_LEN: usize = 32;

/// The parts of a SASL `PLAIN` message: `[authzid] NUL authcid NUL passwd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlainMessage<'a> {
    /// The identity to act as; empty means "the same as `authcid`".
    pub authzid: &'a [u8],
    /// The user name whose password is checked.
    pub authcid: &'a [u8],
    pub password: &'a [u8],
}

/// Splits a `PLAIN` message. `None` unless it has exactly two NULs (Cyrus SASL, which memcached
/// uses, fails such a message the same way as a wrong password).
pub fn parse_plain(message: &[u8]) -> Option<PlainMessage<'_>> {
    let mut parts = message.split(|&b| b == 0);
    let authzid = parts.next()?;
    let authcid = parts.next()?;
    let password = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    Some(PlainMessage {
        authzid,
        authcid,
        password,
    })
}

/// Whether `name` is the `PLAIN` mechanism; Cyrus compares mechanism names without case.
pub fn is_plain(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(MECH_PLAIN.as_bytes())
}

/// memcached closes an unauthenticated ASCII connection that sends this much without a newline.
pub const ASCII_AUTH_MAX_LINE: usize = 1024;

/// Credentials longer than this cannot be in a password file memcached reads (its lines are at
/// most 256 bytes), so a larger token block is junk: the connection is closed instead of
/// buffering it (memcached would buffer any declared size).
pub const ASCII_AUTH_MAX_DATA: usize = 64 * 1024;

/// What the first request of an unauthenticated ASCII connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsciiAuth<'a> {
    /// Not `set <key> <flags> <exptime> <bytes>`: "CLIENT_ERROR unauthenticated", only the line is
    /// consumed.
    NotAuthCommand,
    /// The data block does not end in `\r\n`.
    BadTermination,
    /// The block has fewer than two space-separated tokens.
    BadFormat,
    /// `<user> <password>` (further tokens ignored, as memcached does).
    Credentials { user: &'a [u8], password: &'a [u8] },
}

/// What [`parse_ascii_auth`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsciiAuthParse<'a> {
    /// A complete request and the bytes it used.
    Done(AsciiAuth<'a>, usize),
    /// More bytes needed.
    Incomplete,
    /// Junk (a long line without newline, or an absurd block size): close the connection.
    Close,
}

fn split_spaces(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes.split(|&b| b == b' ').filter(|t| !t.is_empty())
}

/// Parses an unauthenticated ASCII connection's next request the way memcached's
/// `try_read_command_asciiauth` does: the command line is tokenised on spaces (its `\r` stays in
/// the last token, as memcached cuts only at `\n`), it must be `set` with a numeric fifth token, and
/// that many bytes plus `\r\n` follow.
pub fn parse_ascii_auth(buf: &[u8]) -> AsciiAuthParse<'_> {
    if buf.len() < 2 {
        return AsciiAuthParse::Incomplete;
    }
    let Some(newline) = memchr::memchr(b'\n', buf) else {
        return if buf.len() > ASCII_AUTH_MAX_LINE {
            AsciiAuthParse::Close
        } else {
            AsciiAuthParse::Incomplete
        };
    };
    let line = &buf[..newline];
    // memcached tokenises a C string: a NUL ends the line.
    let line = &line[..memchr::memchr(0, line).unwrap_or(line.len())];
    let mut tokens = split_spaces(line);
    let is_set = tokens.next() == Some(b"set".as_slice());
    let size = tokens
        .nth(3)
        .and_then(crate::text::parse_u32_like_strtoul)
        .filter(|_| is_set);
    let line_used = newline + 1;
    let Some(size) = size else {
        return AsciiAuthParse::Done(AsciiAuth::NotAuthCommand, line_used);
    };
    let size = size as usize;
    if size > ASCII_AUTH_MAX_DATA {
        return AsciiAuthParse::Close;
    }
    let total = line_used + size + 2;
    if buf.len() < total {
        return AsciiAuthParse::Incomplete;
    }
    let block = &buf[line_used..total];
    if !block.ends_with(b"\r\n") {
        return AsciiAuthParse::Done(AsciiAuth::BadTermination, total);
    }
    let data = &block[..size];
    let data = &data[..memchr::memchr(0, data).unwrap_or(data.len())];
    let mut tokens = split_spaces(data);
    let auth = match (tokens.next(), tokens.next()) {
        (Some(user), Some(password)) => AsciiAuth::Credentials { user, password },
        _ => AsciiAuth::BadFormat,
    };
    AsciiAuthParse::Done(auth, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_needs_exactly_two_nuls() {
        assert_eq!(
            parse_plain(b"\0alice\0secret"),
            Some(PlainMessage {
                authzid: b"",
                authcid: b"alice",
                password: b"secret"
            })
        );
        assert_eq!(
            parse_plain(b"bob\0alice\0pw").map(|m| m.authzid),
            Some(&b"bob"[..])
        );
        assert_eq!(parse_plain(b"alice\0secret"), None);
        assert_eq!(parse_plain(b"alicesecret"), None);
        assert_eq!(parse_plain(b"\0alice\0secret\0"), None);
        assert!(is_plain(b"plain") && is_plain(b"PLAIN") && !is_plain(b"PLAINX"));
    }

    fn done(buf: &[u8]) -> (AsciiAuth<'_>, usize) {
        match parse_ascii_auth(buf) {
            AsciiAuthParse::Done(auth, used) => (auth, used),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ascii_token_like_memcached() {
        let buf = b"set x 0 0 12\r\nalice secret\r\nget k\r\n";
        assert_eq!(
            done(buf),
            (
                AsciiAuth::Credentials {
                    user: b"alice",
                    password: b"secret"
                },
                28
            )
        );
        // Runs of spaces and extra tokens are ignored; noreply does not matter.
        let (auth, _) = done(b"set x 0 0 16 noreply\r\nalice  secret xy\r\n");
        assert!(matches!(auth, AsciiAuth::Credentials { password, .. } if password == b"secret"));
        assert_eq!(done(b"get foo\r\n"), (AsciiAuth::NotAuthCommand, 9));
        assert_eq!(done(b"add x 0 0 1\r\n"), (AsciiAuth::NotAuthCommand, 13));
        assert_eq!(done(b"set x 0 0\r\n"), (AsciiAuth::NotAuthCommand, 11));
        assert_eq!(done(b"\r\n"), (AsciiAuth::NotAuthCommand, 2));
        assert_eq!(done(b"set x 0 0 5\r\nalice\r\n").0, AsciiAuth::BadFormat);
        assert_eq!(done(b"set x 0 0 6\r\nalice \r\n").0, AsciiAuth::BadFormat);
        assert_eq!(done(b"set x 0 0 3\r\na bXY").0, AsciiAuth::BadTermination);
        assert_eq!(
            parse_ascii_auth(b"set x 0 0 12\r\nalice"),
            AsciiAuthParse::Incomplete
        );
        assert_eq!(parse_ascii_auth(b"set x"), AsciiAuthParse::Incomplete);
        assert_eq!(parse_ascii_auth(&[b'a'; 2000]), AsciiAuthParse::Close);
        assert_eq!(
            parse_ascii_auth(b"set x 0 0 4000000000\r\n"),
            AsciiAuthParse::Close
        );
    }
}
