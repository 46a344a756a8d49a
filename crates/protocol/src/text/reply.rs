//! Every reply line memcached's text protocol sends, in one place, and the encoders for the lines
//! that carry data. Constants include no line ending; [`line`] adds it.

pub const ERROR: &str = "ERROR";
pub const STORED: &str = "STORED";
pub const NOT_STORED: &str = "NOT_STORED";
pub const EXISTS: &str = "EXISTS";
pub const NOT_FOUND: &str = "NOT_FOUND";
pub const DELETED: &str = "DELETED";
pub const TOUCHED: &str = "TOUCHED";
pub const OK: &str = "OK";
pub const END: &str = "END";
pub const RESET: &str = "RESET";
/// `-Y`: any request but the authentication `set` before logging in.
pub const CLIENT_ERROR_UNAUTHENTICATED: &str = "CLIENT_ERROR unauthenticated";
/// `-Y`: wrong user or password.
pub const CLIENT_ERROR_AUTH_FAILURE: &str = "CLIENT_ERROR authentication failure";
/// `-Y`: the token block is not `<user> <password>`.
pub const CLIENT_ERROR_AUTH_TOKEN_FORMAT: &str = "CLIENT_ERROR bad authentication token format";
/// `-Y`: the token block does not end in `\r\n`.
pub const CLIENT_ERROR_BAD_TERMINATION: &str = "CLIENT_ERROR bad command line termination";
pub const CLIENT_ERROR_BAD_FORMAT: &str = "CLIENT_ERROR bad command line format";
pub const CLIENT_ERROR_BAD_COMMAND_LINE: &str = "CLIENT_ERROR bad command line";
pub const CLIENT_ERROR_BAD_DATA_CHUNK: &str = "CLIENT_ERROR bad data chunk";
/// A meta `O` token longer than memcached 1.6.18 echoes back.
pub const CLIENT_ERROR_OPAQUE_TOO_LONG: &str = "CLIENT_ERROR opaque token too long";
pub const CLIENT_ERROR_INVALID_EXPTIME: &str = "CLIENT_ERROR invalid exptime argument";
pub const CLIENT_ERROR_INVALID_DELTA: &str = "CLIENT_ERROR invalid numeric delta argument";
pub const CLIENT_ERROR_NON_NUMERIC: &str =
    "CLIENT_ERROR cannot increment or decrement non-numeric value";
pub const CLIENT_ERROR_DELETE_USAGE: &str =
    "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]";
pub const CLIENT_ERROR_STATS_DETAIL_USAGE: &str = "CLIENT_ERROR usage: stats detail on|off|dump";
pub const CLIENT_ERROR_ILLEGAL_SLAB_ID: &str = "CLIENT_ERROR Illegal slab id";
pub const CLIENT_ERROR_INVALID_SHUTDOWN_MODE: &str = "CLIENT_ERROR invalid shutdown mode";
/// `stats cachedump` with `-X`.
pub const CLIENT_ERROR_CACHEDUMP_NOT_ALLOWED: &str = "CLIENT_ERROR stats cachedump not allowed";
pub const CLIENT_ERROR_FLUSH_NOT_ALLOWED: &str = "CLIENT_ERROR flush_all not allowed";
pub const SERVER_ERROR_TOO_LARGE: &str = "SERVER_ERROR object too large for cache";
pub const SERVER_ERROR_OUT_OF_MEMORY_STORING: &str = "SERVER_ERROR out of memory storing object";
pub const SERVER_ERROR_OUT_OF_MEMORY: &str = "SERVER_ERROR out of memory";
pub const ERROR_SHUTDOWN_NOT_ENABLED: &str = "ERROR: shutdown not enabled";
/// `refresh_certs` on a server started without `-Z` (memcached 1.6.18 built with TLS).
pub const ERROR_TLS_NOT_ENABLED: &str = "Error TLS not enabled";
/// `lru_crawler crawl` or `metadump` naming a class that is not 1 to 63.
pub const BADCLASS: &str = "BADCLASS invalid class id";
/// `lru_crawler crawl` or `metadump` whose class list names no class (`,`).
pub const NOTSTARTED: &str = "NOTSTARTED no items to crawl";
/// `lru_crawler crawl hash` (memcached walks the hash table for metadump only).
pub const ERROR_UNKNOWN: &str = "ERROR an unknown error happened";
pub const CLIENT_ERROR_CRAWLER_DISABLED: &str = "CLIENT_ERROR lru crawler disabled";
/// `lru_crawler enable` while it is enabled.
pub const ERROR_CRAWLER_START: &str = "ERROR failed to start lru crawler thread";
/// `lru_crawler metadump` with `-X`.
pub const ERROR_METADUMP_NOT_ALLOWED: &str = "ERROR metadump not allowed";
/// `lru_crawler metadump` after other commands whose replies are not written yet.
pub const ERROR_METADUMP_PIPELINED: &str = "ERROR cannot pipeline other commands before metadump";
pub const ERROR_WATCH_PIPELINED: &str = "ERROR cannot pipeline other commands before watch";
pub const CLIENT_ERROR_SLEEP_TOO_LONG: &str = "CLIENT_ERROR sleep must be one second or less";
pub const MEMLIMIT_TOO_SMALL: &str = "MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m";
pub const MEMLIMIT_ADJUST_FAILED: &str = "MEMLIMIT_ADJUST_FAILED out of bounds or unable to adjust";
pub const MEMLIMIT_ADJUST_FAILED_UNITS: &str =
    "MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes";

/// Appends `text` and a line ending.
pub fn line(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `VALUE <key> <flags> <bytes>[ <cas>]\r\n`, the header before a value's data.
pub fn value_header(out: &mut Vec<u8>, key: &[u8], flags: u32, bytes: usize, cas: Option<u64>) {
    let mut num = itoa::Buffer::new();
    out.extend_from_slice(b"VALUE ");
    out.extend_from_slice(key);
    out.push(b' ');
    out.extend_from_slice(num.format(flags).as_bytes());
    out.push(b' ');
    out.extend_from_slice(num.format(bytes).as_bytes());
    if let Some(cas) = cas {
        out.push(b' ');
        out.extend_from_slice(num.format(cas).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends a decimal number and a line ending (the reply to `incr`/`decr`).
pub fn number(out: &mut Vec<u8>, value: u64) {
    let mut num = itoa::Buffer::new();
    out.extend_from_slice(num.format(value).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `STAT <name> <value>\r\n`.
pub fn stat(out: &mut Vec<u8>, name: &str, value: impl std::fmt::Display) {
    use std::io::Write;
    // Writing to a Vec cannot fail.
    let _ = write!(out, "STAT {name} {value}\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_value_header() {
        let mut out = Vec::new();
        value_header(&mut out, b"k", 5, 3, None);
        value_header(&mut out, b"k", 0, 0, Some(9));
        assert_eq!(out, b"VALUE k 5 3\r\nVALUE k 0 0 9\r\n");
    }

    #[test]
    fn encodes_stat_and_number() {
        let mut out = Vec::new();
        stat(&mut out, "pid", 42);
        number(&mut out, u64::MAX);
        assert_eq!(out, b"STAT pid 42\r\n18446744073709551615\r\n");
    }
}
