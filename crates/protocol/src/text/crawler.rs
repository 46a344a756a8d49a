//! `lru_crawler`: memcached's commands for its background crawler, and the lines of the item
//! dumps, `lru_crawler metadump` and `stats cachedump`.

use super::numbers::parse_u32_like_strtoul;
use super::reply;
use super::tokens::Tokens;

/// The slab classes an `lru_crawler crawl` or `metadump` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrawlerClasses {
    /// `all`.
    All,
    /// `hash`: walk the hash table instead of the LRUs (metadump only).
    Hash,
    /// Comma-separated class ids, bit `n` for class `n` (1 to 63). 0 when the list names none
    /// (`,`): memcached answers `NOTSTARTED no items to crawl`.
    Ids(u64),
    /// An id that is not a number from 1 to 63: `BADCLASS invalid class id`.
    Bad,
}

/// Classes are numbered 1 to 63 (memcached's `POWER_SMALLEST` to `MAX_NUMBER_OF_SLAB_CLASSES - 1`).
const LAST_CLASS: u32 = 63;

impl CrawlerClasses {
    fn parse(token: &[u8]) -> CrawlerClasses {
        match token {
            b"all" => return CrawlerClasses::All,
            b"hash" => return CrawlerClasses::Hash,
            _ => {}
        }
        let mut ids = 0u64;
        // strtok_r: empty pieces between commas are skipped.
        for piece in token.split(|&b| b == b',').filter(|p| !p.is_empty()) {
            match parse_u32_like_strtoul(piece) {
                Some(id @ 1..=LAST_CLASS) => ids |= 1 << id,
                _ => return CrawlerClasses::Bad,
            }
        }
        CrawlerClasses::Ids(ids)
    }

    /// Does it name class `id` (`all` and `hash` name every class)?
    pub fn names(self, id: u32) -> bool {
        match self {
            CrawlerClasses::All | CrawlerClasses::Hash => true,
            CrawlerClasses::Ids(ids) => id <= LAST_CLASS && ids & (1 << id) != 0,
            CrawlerClasses::Bad => false,
        }
    }
}

/// An `lru_crawler` command memcached accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LruCrawler {
    Enable,
    Disable,
    /// `crawl <classes>`: reclaim the expired items of these classes.
    Crawl(CrawlerClasses),
    /// `metadump <classes|all|hash>`: a line per live item, then `END`.
    Metadump(CrawlerClasses),
    /// `sleep <microseconds>` between items, at most a second.
    Sleep(u32),
    /// `tocrawl <items>` per class and run.
    ToCrawl(u32),
}

/// Parses `lru_crawler ...` as memcached 1.6.18's `process_lru_crawler_command` does: a
/// subcommand and one argument (`enable`, `disable`: none), no `noreply`; anything else is
/// `ERROR`.
pub(super) fn parse(tokens: &Tokens<'_>) -> Result<LruCrawler, &'static str> {
    let subcommand = tokens.get(1);
    let arg = tokens.get(2);
    let number = || parse_u32_like_strtoul(arg).ok_or(reply::CLIENT_ERROR_BAD_FORMAT);
    match (tokens.ntokens(), subcommand) {
        (4, b"crawl") => Ok(LruCrawler::Crawl(CrawlerClasses::parse(arg))),
        (4, b"metadump") => Ok(LruCrawler::Metadump(CrawlerClasses::parse(arg))),
        (4, b"tocrawl") => number().map(LruCrawler::ToCrawl),
        (4, b"sleep") => match number()? {
            micros if micros > 1_000_000 => Err(reply::CLIENT_ERROR_SLEEP_TOO_LONG),
            micros => Ok(LruCrawler::Sleep(micros)),
        },
        (3, b"enable") => Ok(LruCrawler::Enable),
        (3, b"disable") => Ok(LruCrawler::Disable),
        _ => Err(reply::ERROR),
    }
}

/// Appends one line of `lru_crawler metadump` (ended by `\n` alone, as memcached's are): the key
/// URI-encoded, the exptime and last access as unix times (`exp=-1`: never expires).
#[allow(clippy::too_many_arguments)]
pub fn metadump_line(
    out: &mut Vec<u8>,
    key: &[u8],
    exp: i64,
    last_access: i64,
    cas: u64,
    fetched: bool,
    class: u32,
    size: usize,
) {
    out.extend_from_slice(b"key=");
    uri_encode(out, key);
    let mut field = |name: &[u8], value: &[u8]| {
        out.extend_from_slice(name);
        out.extend_from_slice(value);
    };
    let mut num = itoa::Buffer::new();
    field(b" exp=", num.format(exp).as_bytes());
    field(b" la=", num.format(last_access).as_bytes());
    field(b" cas=", num.format(cas).as_bytes());
    field(b" fetch=", if fetched { b"yes" } else { b"no" });
    field(b" cls=", num.format(class).as_bytes());
    field(b" size=", num.format(size).as_bytes());
    out.push(b'\n');
}

/// Appends one line of `stats cachedump`: `ITEM <key> [<value bytes> b; <exptime> s]`, the
/// exptime a unix time (0: never expires) and the key as it is.
pub fn cachedump_line(out: &mut Vec<u8>, key: &[u8], value_len: usize, exp: i64) {
    let mut num = itoa::Buffer::new();
    out.extend_from_slice(b"ITEM ");
    out.extend_from_slice(key);
    out.extend_from_slice(b" [");
    out.extend_from_slice(num.format(value_len).as_bytes());
    out.extend_from_slice(b" b; ");
    out.extend_from_slice(num.format(exp).as_bytes());
    out.extend_from_slice(b" s]\r\n");
}

/// memcached's `uriencode`: ASCII letters, digits and `-._~` as they are, every other byte as
/// `%XX` (upper-case hex).
pub(crate) fn uri_encode(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(line: &[u8]) -> Result<LruCrawler, &'static str> {
        parse(&Tokens::new(line))
    }

    #[test]
    fn parses_like_memcached() {
        // Each answer checked against memcached 1.6.18.
        use CrawlerClasses::*;
        use LruCrawler::*;
        let cases: &[(&[u8], Result<LruCrawler, &str>)] = &[
            (b"lru_crawler crawl all", Ok(Crawl(All))),
            (b"lru_crawler metadump hash", Ok(Metadump(Hash))),
            (b"lru_crawler metadump 1,,2", Ok(Metadump(Ids(0b110)))),
            (b"lru_crawler metadump ,1", Ok(Metadump(Ids(0b10)))),
            (b"lru_crawler metadump +1", Ok(Metadump(Ids(0b10)))),
            (b"lru_crawler metadump 01", Ok(Metadump(Ids(0b10)))),
            // strtoul's 64-bit result stored into a uint32_t.
            (b"lru_crawler metadump 4294967297", Ok(Metadump(Ids(0b10)))),
            (b"lru_crawler metadump 63", Ok(Metadump(Ids(1 << 63)))),
            (b"lru_crawler metadump ,", Ok(Metadump(Ids(0)))),
            (b"lru_crawler metadump 0", Ok(Metadump(Bad))),
            (b"lru_crawler metadump 64", Ok(Metadump(Bad))),
            (b"lru_crawler metadump 1,64", Ok(Metadump(Bad))),
            (b"lru_crawler metadump ALL", Ok(Metadump(Bad))),
            (b"lru_crawler crawl 1,x", Ok(Crawl(Bad))),
            (b"lru_crawler crawl hash", Ok(Crawl(Hash))),
            (b"lru_crawler metadump", Err(reply::ERROR)),
            (b"lru_crawler metadump all extra", Err(reply::ERROR)),
            (b"lru_crawler metadump\t1", Err(reply::ERROR)),
            (b"lru_crawler crawl all noreply", Err(reply::ERROR)),
            (b"lru_crawler", Err(reply::ERROR)),
            (b"lru_crawler bogus", Err(reply::ERROR)),
            (b"lru_crawler enable", Ok(Enable)),
            (b"lru_crawler disable", Ok(Disable)),
            (b"lru_crawler enable extra", Err(reply::ERROR)),
            (b"lru_crawler sleep 0", Ok(Sleep(0))),
            (b"lru_crawler sleep 1000000", Ok(Sleep(1_000_000))),
            (
                b"lru_crawler sleep 1000001",
                Err(reply::CLIENT_ERROR_SLEEP_TOO_LONG),
            ),
            (b"lru_crawler sleep 4294967296", Ok(Sleep(0))),
            (b"lru_crawler sleep -1", Err(reply::CLIENT_ERROR_BAD_FORMAT)),
            (
                b"lru_crawler sleep abc",
                Err(reply::CLIENT_ERROR_BAD_FORMAT),
            ),
            (b"lru_crawler tocrawl 10", Ok(ToCrawl(10))),
            (
                b"lru_crawler tocrawl x",
                Err(reply::CLIENT_ERROR_BAD_FORMAT),
            ),
            (b"lru_crawler   crawl all", Ok(Crawl(All))),
        ];
        for (line, want) in cases {
            assert_eq!(&parsed(line), want, "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn classes_named() {
        assert!(CrawlerClasses::All.names(1) && CrawlerClasses::Hash.names(1));
        assert!(CrawlerClasses::Ids(0b110).names(1) && CrawlerClasses::Ids(0b110).names(2));
        assert!(!CrawlerClasses::Ids(0b100).names(1));
        assert!(!CrawlerClasses::Ids(1 << 63).names(64) && !CrawlerClasses::Bad.names(1));
    }

    #[test]
    fn writes_metadump_lines_as_memcached() {
        // memcached 1.6.18 after `set sp%ce\xff 0 0 1`, `set a 5 0 1`, `get a`.
        let mut out = Vec::new();
        metadump_line(&mut out, b"sp%ce\xff", -1, 1796636943, 2, false, 1, 66);
        metadump_line(&mut out, b"a", 1796636977, 1796636876, 1, true, 1, 65);
        assert_eq!(
            out,
            b"key=sp%25ce%FF exp=-1 la=1796636943 cas=2 fetch=no cls=1 size=66\n\
              key=a exp=1796636977 la=1796636876 cas=1 fetch=yes cls=1 size=65\n"
        );
    }

    #[test]
    fn writes_cachedump_lines_as_memcached() {
        // memcached 1.6.18 after `set b 0 100 3`, `set a 5 0 1`: `stats cachedump 1 10`.
        let mut out = Vec::new();
        cachedump_line(&mut out, b"b", 3, 1796636977);
        cachedump_line(&mut out, b"a", 1, 0);
        assert_eq!(out, b"ITEM b [3 b; 1796636977 s]\r\nITEM a [1 b; 0 s]\r\n");
    }

    #[test]
    fn encodes_every_byte_but_the_unreserved() {
        let all: Vec<u8> = (0..=255).collect();
        let mut out = Vec::new();
        uri_encode(&mut out, &all);
        let kept = all
            .iter()
            .filter(|b| b.is_ascii_alphanumeric() || b"-._~".contains(b))
            .count();
        assert_eq!(kept, 66);
        assert_eq!(out.len(), kept + 3 * (256 - kept));
        assert!(out.starts_with(b"%00%01"));
        assert!(out.ends_with(b"%FE%FF"));
        let text = String::from_utf8(out).expect("ASCII");
        assert!(text.contains("%20") && text.contains("-.%2F0"));
    }
}
