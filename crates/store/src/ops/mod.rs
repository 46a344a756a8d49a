//! One file per command family, each an `impl Store` block: `get.rs` (get, gat, touch),
//! `store.rs` (set/add/replace/append/prepend/cas), `delete.rs`, `delta.rs` (incr/decr),
//! `flush.rs` (flush_all), `dump.rs` (`lru_crawler metadump`), `watch.rs` (what `watch` logs),
//! `presize.rs` (the index sized for a restart's load).

mod delete;
mod delta;
pub(crate) mod dump;
pub(crate) mod flush;
mod get;
pub(crate) mod meta;
pub(crate) mod presize;
pub(crate) mod store;
pub(crate) mod watch;
