//! What the server hands the store, and memcached's item size rules.

/// What the server hands the store at start.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `-m` in bytes: a hard bound on everything the store holds, index included.
    pub max_bytes: usize,
    /// `-I`: the largest item memcached would accept (see [`item_size_ok`]).
    pub item_size_max: usize,
    /// `false` with `-M`: answer out-of-memory instead of evicting.
    pub evictions: bool,
    /// `false` with `-C`: CAS ids are not kept (every item's cas is 0).
    pub use_cas: bool,
}

/// memcached's `ITEM_ntotal`: a 48-byte header, key + 1, 4 bytes of flags when non-zero, the value
/// plus "\r\n", and 8 bytes of CAS when CAS is on. (Also what memcached's `me` reports as `size`.)
pub fn memcached_item_size(use_cas: bool, key_len: usize, flags: u32, value_len: usize) -> usize {
    48usize
        .saturating_add(key_len)
        .saturating_add(1)
        .saturating_add(if flags != 0 { 4 } else { 0 })
        .saturating_add(value_len)
        .saturating_add(2)
        .saturating_add(if use_cas { 8 } else { 0 })
}

/// memcached's `item_size_ok`: would an item with this key length, flags and value length fit under
/// `item_size_max`? (Measured on memcached 1.6.18 -I 1m: with key "b" and CAS on, an append that
/// brings the value to exactly 1048524 bytes is STORED, one byte more is NOT_STORED.)
pub fn item_size_ok(
    item_size_max: usize,
    use_cas: bool,
    key_len: usize,
    flags: u32,
    value_len: usize,
) -> bool {
    memcached_item_size(use_cas, key_len, flags, value_len) <= item_size_max
}

/// memcached's default `slab_chunk_max` (half a 1 MiB slab page). Items larger than this are stored
/// "chunked", and memcached refuses to `incr`/`decr` a chunked item (NON_NUMERIC) whatever its
/// digits: on 1.6.18 with key "big", "1" padded with spaces to 524226 bytes increments, 524227 does
/// not. We reproduce the refusal by size.
pub(crate) const SLAB_CHUNK_MAX: usize = 512 * 1024;
