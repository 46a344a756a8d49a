//! `lru_crawler`: memcached's crawler commands. There is no crawler thread here: the server's
//! once-a-second maintenance frees segments whose items have all expired
//! (`Store::reclaim_expired`). So `crawl` runs that at once, `sleep` and `tocrawl` are kept for
//! `stats settings` and change nothing else, and `enable`/`disable` switch whether `crawl` and
//! `metadump` are allowed, as they do in memcached. `metadump` writes a line per live item, a
//! segment at a time; `stats cachedump` lists them too, in memcached's older format.

use std::sync::atomic::Ordering::Relaxed;

use ferrocache_protocol::text::crawler::{
    cachedump_line, metadump_line, CrawlerClasses, LruCrawler,
};
use ferrocache_protocol::text::{reply, Request};
use ferrocache_store::DumpCursor;

use crate::dispatch::{Ctx, Next};
use crate::out::FLUSH_AT;
use crate::Shared;

/// The slab class every item is in, as `stats items` reports (there are no slab classes here).
const CLASS: u32 = 1;

/// An `lru_crawler metadump` being answered with [`Ctx::dump_more`].
pub struct PendingDump {
    cursor: DumpCursor,
    /// False when the classes named do not include [`CLASS`]: the dump is empty.
    any: bool,
}

impl PendingDump {
    fn new(classes: CrawlerClasses) -> PendingDump {
        PendingDump {
            cursor: DumpCursor::default(),
            any: classes.names(CLASS),
        }
    }
}

impl Ctx<'_> {
    /// An `lru_crawler metadump` that is allowed, to answer with [`Ctx::dump_more`]; `None` for
    /// any other request (a refused metadump is answered by [`Ctx::dispatch`]).
    pub(crate) fn begin_dump(&self, request: &Request<'_>) -> Option<PendingDump> {
        let Request::LruCrawler(LruCrawler::Metadump(classes)) = *request else {
            return None;
        };
        self.metadump_refusal(classes, self.out.holds_replies())
            .is_none()
            .then(|| PendingDump::new(classes))
    }

    /// Writes the lines of the next segments until the pending output reaches [`FLUSH_AT`]
    /// (false: write out and call again) or the dump is done (true, `END` written).
    pub fn dump_more(&mut self, dump: &mut PendingDump) -> bool {
        let shared = self.shared;
        let clock = &shared.clock;
        let now = clock.now();
        let out = self.out.text();
        while dump.any {
            let more = shared.store.dump_step(&mut dump.cursor, now, true, |item| {
                let exp = match item.exptime {
                    0 => -1,
                    exptime => clock.to_unix(exptime),
                };
                let last_access = clock.to_unix(item.time);
                metadump_line(
                    out,
                    item.key,
                    exp,
                    last_access,
                    item.cas,
                    item.fetched,
                    CLASS,
                    item.size,
                );
            });
            if !more {
                break;
            }
            if out.len() >= FLUSH_AT {
                return false;
            }
        }
        reply::line(out, reply::END);
        true
    }

    /// Why a metadump of `classes` is refused, checked in memcached's order; `held`: replies to
    /// earlier commands are still queued.
    fn metadump_refusal(&self, classes: CrawlerClasses, held: bool) -> Option<&'static str> {
        if !self.shared.lru_crawler.load(Relaxed) {
            Some(reply::CLIENT_ERROR_CRAWLER_DISABLED)
        } else if !self.shared.config.dump_enabled {
            Some(reply::ERROR_METADUMP_NOT_ALLOWED)
        } else if held {
            // memcached hands the connection to its crawler thread, which it cannot do with
            // replies still queued (it writes them out after a get or `mn`, so those pass).
            Some(reply::ERROR_METADUMP_PIPELINED)
        } else {
            classes_refusal(classes)
        }
    }

    /// `lru_crawler ...` other than an allowed metadump (see [`Ctx::begin_dump`]); `held`: replies
    /// to earlier commands are still queued.
    pub fn lru_crawler(&mut self, command: LruCrawler, held: bool) -> Next {
        let crawler = &self.shared.lru_crawler;
        let text = match command {
            LruCrawler::Metadump(classes) => match self.metadump_refusal(classes, held) {
                Some(text) => text,
                None => {
                    let mut dump = PendingDump::new(classes);
                    while !self.dump_more(&mut dump) {}
                    return Next::Continue;
                }
            },
            LruCrawler::Crawl(_) if !crawler.load(Relaxed) => reply::CLIENT_ERROR_CRAWLER_DISABLED,
            LruCrawler::Crawl(CrawlerClasses::Hash) => reply::ERROR_UNKNOWN,
            LruCrawler::Crawl(classes) => classes_refusal(classes).unwrap_or_else(|| {
                if classes.names(CLASS) {
                    let store = &self.shared.store;
                    store.reclaim_expired(self.shared.clock.now());
                }
                reply::OK
            }),
            LruCrawler::Enable => {
                if crawler.swap(true, Relaxed) {
                    reply::ERROR_CRAWLER_START
                } else {
                    reply::OK
                }
            }
            LruCrawler::Disable => {
                crawler.store(false, Relaxed);
                reply::OK
            }
            LruCrawler::Sleep(micros) => {
                self.shared.lru_crawler_sleep.store(micros, Relaxed);
                reply::OK
            }
            LruCrawler::ToCrawl(items) => {
                self.shared.lru_crawler_tocrawl.store(items, Relaxed);
                reply::OK
            }
        };
        reply::line(self.out.text(), text);
        Next::Continue
    }
}

/// Most bytes of a `stats cachedump` reply, as memcached's (it is built whole, not streamed).
const CACHEDUMP_LIMIT: usize = 2 * 1024 * 1024;

/// `stats cachedump <class> <limit>` (checked): a line per live item of `class` (all are in
/// [`CLASS`]), at most `limit` of them (0: no limit) and 2 MB, then `END`. memcached lists one of
/// its class's LRUs, expired items included; this lists live items only, in no particular order.
pub fn cachedump(out: &mut Vec<u8>, shared: &Shared, class: u32, limit: u32) {
    let clock = &shared.clock;
    let now = clock.now();
    let start = out.len();
    let mut cursor = DumpCursor::default();
    let mut shown = 0;
    let mut full = class != CLASS;
    while !full
        && shared.store.dump_step(&mut cursor, now, false, |item| {
            if full || (limit != 0 && shown >= limit) {
                full = true;
                return;
            }
            let exp = match item.exptime {
                0 => 0,
                exptime => clock.to_unix(exptime),
            };
            let before = out.len();
            cachedump_line(out, item.key, item.value.len(), exp);
            // memcached keeps room for "END\r\n" and a NUL.
            if out.len() - start + 6 > CACHEDUMP_LIMIT {
                out.truncate(before);
                full = true;
                return;
            }
            shown += 1;
        })
    {}
    reply::line(out, reply::END);
}

/// memcached's answer to a class list it cannot crawl.
fn classes_refusal(classes: CrawlerClasses) -> Option<&'static str> {
    match classes {
        CrawlerClasses::Bad => Some(reply::BADCLASS),
        CrawlerClasses::Ids(0) => Some(reply::NOTSTARTED),
        _ => None,
    }
}
