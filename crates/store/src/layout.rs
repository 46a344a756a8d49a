//! How one item is laid out inside a segment. Only what an item needs is written:
//!
//! | field     | bytes | when |
//! |-----------|-------|------|
//! | key_len   | 1-2   | always, LEB128 (1 byte below 128) |
//! | bits      | 1     | always: [`HAS_FLAGS`], [`HAS_EXPTIME`], [`HAS_CAS`], [`BINARY_KEY`], [`HAS_PAD`] |
//! | value_len | 1-5   | always, LEB128 |
//! | pad       | 1-5   | when [`HAS_PAD`]: bytes after the value that belong to no field, LEB128 |
//! | flags     | 1-5   | client flags when not 0, LEB128 |
//! | exptime   | 4     | when not 0 (never expires), little-endian relative time |
//! | cas       | 8     | only when the CAS id cannot be derived from the item's place (see below) |
//! | key, value|       | the bytes |
//!
//! A 20-byte key with a 32-byte value, flags 0 and no exptime takes 55 bytes; memcached 1.6 puts
//! the same item in a 120-byte slab chunk.
//!
//! **Padding** lets a shorter new version of a key be written over its old one
//! ([`NewItem::write_padded`]): the item then keeps the old one's length, the bytes it does not
//! use following its value, so the items after it are still found where they were.
//!
//! **CAS ids** are not stored as a rule: a segment takes a fresh range of sequence numbers when it
//! is opened, and an item's CAS id is the start of that range plus its offset. A write at a new
//! place gets a new id, for free. A version is written over the old one (same place, so same id)
//! only when no client has seen that id, which is then as new to everyone as a fresh one
//! (`Shard::may_rewrite_in_place`). An item that is moved without being changed (kept by
//! eviction, or rewritten by a `touch` that adds an exptime) gets a new place; if a client may
//! hold its old id (one was reported since it was written), the id is written out with it
//! ([`HAS_CAS`]), else it silently takes the new one, which no one has seen.

use crate::RelTime;

/// The item's client flags are written (they are not 0).
pub(crate) const HAS_FLAGS: u8 = 1;
/// The item's exptime is written (it was set at some point; 0 there means never).
pub(crate) const HAS_EXPTIME: u8 = 2;
/// The item's CAS id is written, not derived from its place.
pub(crate) const HAS_CAS: u8 = 4;
/// The key was sent base64-encoded (meta `b`): it is binary, and returned encoded.
pub(crate) const BINARY_KEY: u8 = 8;
/// Unused bytes follow the value (their count is written after `value_len`).
pub(crate) const HAS_PAD: u8 = 16;

/// An item's header, read from its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub bits: u8,
    pub key_len: usize,
    pub value_len: usize,
    pub flags: u32,
    pub exptime: RelTime,
    /// Where the exptime field is, from the item's start (when [`HAS_EXPTIME`]).
    pub exptime_at: usize,
    /// The written CAS id (when [`HAS_CAS`]).
    pub cas: u64,
    pub header_len: usize,
    /// Unused bytes after the value (when [`HAS_PAD`]).
    pub pad: usize,
}

impl Header {
    /// Bytes the whole item takes.
    pub fn total(&self) -> usize {
        self.header_len + self.key_len + self.value_len + self.pad
    }

    pub fn key<'a>(&self, item: &'a [u8]) -> &'a [u8] {
        &item[self.header_len..self.header_len + self.key_len]
    }

    pub fn value<'a>(&self, item: &'a [u8]) -> &'a [u8] {
        let start = self.header_len + self.key_len;
        &item[start..start + self.value_len]
    }
}

fn varint_len(mut v: u32) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(buf: &mut [u8], mut at: usize, mut v: u32) -> usize {
    while v >= 0x80 {
        buf[at] = (v as u8) | 0x80;
        v >>= 7;
        at += 1;
    }
    buf[at] = v as u8;
    at + 1
}

/// Writes `v` in exactly `width` bytes of LEB128 (a longer encoding than needed reads the same).
fn put_varint_width(buf: &mut [u8], mut at: usize, mut v: u32, width: usize) -> usize {
    for left in (0..width).rev() {
        let more = if left > 0 { 0x80 } else { 0 };
        buf[at] = (v & 0x7f) as u8 | more;
        v >>= 7;
        at += 1;
    }
    debug_assert_eq!(v, 0, "the value fits the width");
    at
}

fn get_varint(buf: &[u8], mut at: usize) -> (u32, usize) {
    let mut v: u32 = 0;
    let mut shift = 0;
    loop {
        let b = buf[at];
        at += 1;
        v |= u32::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return (v, at);
        }
        shift += 7;
    }
}

/// What an item to be written looks like.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewItem<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub flags: u32,
    pub exptime: RelTime,
    /// Write this CAS id out (else it is derived from the place).
    pub cas: Option<u64>,
    /// Write the exptime field even when it is 0 (a touched item keeps its field).
    pub keep_exptime_field: bool,
    /// The key is binary ([`BINARY_KEY`]).
    pub binary_key: bool,
}

impl NewItem<'_> {
    fn bits(&self) -> u8 {
        let mut bits = 0;
        if self.flags != 0 {
            bits |= HAS_FLAGS;
        }
        if self.exptime != 0 || self.keep_exptime_field {
            bits |= HAS_EXPTIME;
        }
        if self.cas.is_some() {
            bits |= HAS_CAS;
        }
        if self.binary_key {
            bits |= BINARY_KEY;
        }
        bits
    }

    /// Bytes the item takes once written.
    pub fn len(&self) -> usize {
        let bits = self.bits();
        let mut n = 1 + varint_len(self.key.len() as u32) + varint_len(self.value.len() as u32);
        if bits & HAS_FLAGS != 0 {
            n += varint_len(self.flags);
        }
        if bits & HAS_EXPTIME != 0 {
            n += 4;
        }
        if bits & HAS_CAS != 0 {
            n += 8;
        }
        n + self.key.len() + self.value.len()
    }

    /// Writes the item at the start of `buf` (at least [`NewItem::len`] bytes); returns its length.
    pub fn write(&self, buf: &mut [u8]) -> usize {
        self.write_with(buf, None)
    }

    /// Writes the item so that it fills all of `slot`, which is longer than [`NewItem::len`]:
    /// the bytes it does not use become padding after its value.
    pub fn write_padded(&self, slot: &mut [u8]) {
        let spare = slot.len() - self.len();
        debug_assert!(spare > 0, "a padded item is shorter than its slot");
        // The pad count takes `width` bytes; the pad is what is left after it.
        let width = varint_len(spare as u32);
        let pad = spare - width;
        let written = self.write_with(slot, Some((pad as u32, width)));
        debug_assert_eq!(written + pad, slot.len());
    }

    /// Writes the item, with [`HAS_PAD`] and this pad count in this width when there is one;
    /// returns the bytes written (the pad not included).
    fn write_with(&self, buf: &mut [u8], pad: Option<(u32, usize)>) -> usize {
        let bits = self.bits() | if pad.is_some() { HAS_PAD } else { 0 };
        let mut at = put_varint(buf, 0, self.key.len() as u32);
        buf[at] = bits;
        at = put_varint(buf, at + 1, self.value.len() as u32);
        if let Some((pad, width)) = pad {
            at = put_varint_width(buf, at, pad, width);
        }
        if bits & HAS_FLAGS != 0 {
            at = put_varint(buf, at, self.flags);
        }
        if bits & HAS_EXPTIME != 0 {
            buf[at..at + 4].copy_from_slice(&self.exptime.to_le_bytes());
            at += 4;
        }
        if let Some(cas) = self.cas {
            buf[at..at + 8].copy_from_slice(&cas.to_le_bytes());
            at += 8;
        }
        buf[at..at + self.key.len()].copy_from_slice(self.key);
        at += self.key.len();
        buf[at..at + self.value.len()].copy_from_slice(self.value);
        at + self.value.len()
    }
}

/// Reads the header of the item starting at `item[0]` (which is not padding).
pub(crate) fn parse(item: &[u8]) -> Header {
    let (key_len, at) = get_varint(item, 0);
    let bits = item[at];
    let (value_len, mut at) = get_varint(item, at + 1);
    let mut pad = 0;
    if bits & HAS_PAD != 0 {
        (pad, at) = get_varint(item, at);
    }
    let mut flags = 0;
    if bits & HAS_FLAGS != 0 {
        (flags, at) = get_varint(item, at);
    }
    let mut exptime = 0;
    let exptime_at = at;
    if bits & HAS_EXPTIME != 0 {
        exptime = RelTime::from_le_bytes(item[at..at + 4].try_into().expect("4 bytes"));
        at += 4;
    }
    let mut cas = 0;
    if bits & HAS_CAS != 0 {
        cas = u64::from_le_bytes(item[at..at + 8].try_into().expect("8 bytes"));
        at += 8;
    }
    Header {
        bits,
        key_len: key_len as usize,
        value_len: value_len as usize,
        flags,
        exptime,
        exptime_at,
        cas,
        header_len: at,
        pad: pad as usize,
    }
}

/// Rewrites the exptime of an item that has the field, in place.
pub(crate) fn set_exptime(item: &mut [u8], header: &Header, exptime: RelTime) {
    debug_assert!(header.bits & HAS_EXPTIME != 0);
    item[header.exptime_at..header.exptime_at + 4].copy_from_slice(&exptime.to_le_bytes());
}

/// Rewrites the value of an item in place (same length) and, when it has the field, its CAS id.
pub(crate) fn set_value(item: &mut [u8], header: &Header, value: &[u8], cas: Option<u64>) {
    debug_assert_eq!(value.len(), header.value_len);
    let start = header.header_len + header.key_len;
    item[start..start + value.len()].copy_from_slice(value);
    if let (Some(cas), true) = (cas, header.bits & HAS_CAS != 0) {
        let at = header.header_len - 8;
        item[at..at + 8].copy_from_slice(&cas.to_le_bytes());
    }
}

/// The items in `data[..len]`, as (offset, header).
pub(crate) fn items(data: &[u8], len: usize) -> impl Iterator<Item = (usize, Header)> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at >= len {
            return None;
        }
        let header = parse(&data[at..]);
        let item = (at, header);
        at += header.total();
        Some(item)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item<'a>(key: &'a [u8], value: &'a [u8], flags: u32, exptime: RelTime) -> NewItem<'a> {
        NewItem {
            key,
            value,
            flags,
            exptime,
            cas: None,
            keep_exptime_field: false,
            binary_key: false,
        }
    }

    #[test]
    fn a_small_item_takes_three_bytes_of_header() {
        let key = [b'k'; 20];
        let value = [b'v'; 32];
        assert_eq!(item(&key, &value, 0, 0).len(), 55);
        assert_eq!(item(&key, &value, 1, 0).len(), 56);
        assert_eq!(item(&key, &value, 1 << 31, 100).len(), 64);
    }

    #[test]
    fn a_padded_item_fills_its_slot_and_the_next_item_is_found() {
        // Every spare size around the pad count's width changes (1 to 3 bytes of count).
        let key = b"key";
        let value = [b'v'; 40];
        let next = item(b"next", b"after", 7, 0);
        for spare in [
            1, 2, 3, 127, 128, 129, 130, 131, 16_383, 16_384, 16_385, 16_386, 70_000,
        ] {
            for shorter in [item(key, &value, 0, 0), item(key, &value[..3], 9, 1234)] {
                let slot = shorter.len() + spare;
                let mut buf = vec![0xeeu8; slot + next.len()];
                shorter.write_padded(&mut buf[..slot]);
                assert_eq!(next.write(&mut buf[slot..]), next.len());
                let read: Vec<_> = items(&buf, buf.len()).collect();
                assert_eq!(read.len(), 2, "spare {spare}");
                let (at, header) = read[0];
                assert_eq!((at, header.total()), (0, slot), "spare {spare}");
                assert_eq!(header.bits & HAS_PAD, HAS_PAD);
                assert_eq!(header.key(&buf), key);
                assert_eq!(header.value(&buf), shorter.value);
                assert_eq!(
                    (header.flags, header.exptime),
                    (shorter.flags, shorter.exptime)
                );
                let (at, header) = read[1];
                assert_eq!(at, slot);
                assert_eq!(header.value(&buf[at..]), b"after");
                assert_eq!(header.pad, 0);
            }
        }
    }

    #[test]
    fn writes_and_reads_back() {
        let cases: Vec<NewItem<'_>> = vec![
            item(b"", b"", 0, 0),
            item(b"a", b"", 0, 0),
            item(b"key", b"value", 0xffff_ffff, 12345),
            item(&[b'L'; 300], b"long key", 0, 0),
            NewItem {
                cas: Some(u64::MAX - 3),
                ..item(b"k", &[7u8; 300], 5, 0)
            },
            NewItem {
                keep_exptime_field: true,
                ..item(b"t", b"x", 0, 0)
            },
        ];
        let mut buf = vec![0u8; 4096];
        let mut at = 0;
        let mut offsets = Vec::new();
        for case in &cases {
            offsets.push(at);
            let n = case.write(&mut buf[at..]);
            assert_eq!(n, case.len());
            at += n;
        }
        let read: Vec<_> = items(&buf, at).collect();
        assert_eq!(read.len(), cases.len());
        for ((off, header), case) in read.iter().zip(&cases) {
            let bytes = &buf[*off..];
            assert_eq!(header.key(bytes), case.key);
            assert_eq!(header.value(bytes), case.value);
            assert_eq!(header.flags, case.flags);
            assert_eq!(header.exptime, case.exptime);
            assert_eq!(header.bits & HAS_CAS != 0, case.cas.is_some());
            assert_eq!(header.cas, case.cas.unwrap_or(0));
            assert_eq!(header.total(), case.len());
        }
        assert_eq!(read.iter().map(|r| r.0).collect::<Vec<_>>(), offsets);
        // The touched item's field is rewritten in place.
        let (off, header) = read[5];
        set_exptime(&mut buf[off..], &header, 99);
        assert_eq!(parse(&buf[off..]).exptime, 99);
        // So is the value of the item with a CAS id, and the id.
        let (off, header) = read[4];
        set_value(&mut buf[off..], &header, &[8u8; 300], Some(42));
        let again = parse(&buf[off..]);
        assert_eq!((again.cas, again.value(&buf[off..])), (42, &[8u8; 300][..]));
    }
}
