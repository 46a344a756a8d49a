//! `-e <file>`: the cache survives a restart, as memcached's restartable cache does. memcached
//! keeps its items in a memory-mapped file and writes their metadata beside it when it is stopped
//! with SIGUSR1 (or `shutdown graceful`); started again with the same `-e`, it finds them there.
//! Here the items are written to the file when the server stops that way, after the workers have
//! stopped, and read back at the next start, before the listeners open; the file is then removed,
//! so a later start that follows a crash or a plain stop begins empty, as memcached's does.
//!
//! Exptimes are saved as unix times, so an item's lifetime goes on running while the server is
//! down (memcached's too). A CAS id a client was shown is kept, so a `cas` with it still
//! succeeds, as with memcached; the others are new, and every id given after the restart is
//! above every id given before, so an id from before never matches a newer version. The hit
//! statistics start again.
//!
//! A delayed `flush_all` still to come is kept too (memcached's is): the items come back, and go
//! at its time; if that time passed while the server was down, they do not come back.
//!
//! The file: a magic line, the CAS floor (8 bytes: every id given so far is below it), the unix
//! time of a pending `flush_all` (8 bytes, 0: none), then one record per item, then an end
//! record that counts them:
//!
//! | bytes | field |
//! |-------|-------|
//! | 1     | key length (1 to 250; 0 marks the end record) |
//! | 1     | bit 0: the key is binary (a meta client sent it base64-encoded); bits 1-3: its standing in eviction |
//! | 4     | client flags |
//! | 8     | exptime, unix seconds (0: never) |
//! | 8     | the CAS id to keep (0: none, a new one is given) |
//! | 4     | value length |
//! | ...   | key, then value |
//!
//! An item's standing in eviction (`Standing`): bit 1 set if it is in the main queue, bits 2-3
//! its reads since written or last kept. Items are written oldest first (in the order their
//! segments opened, across shards), so the restart gives each back to its queue in its order,
//! and eviction goes on from where it was: an item proven useful is not dropped as a new one
//! would be, and a start with a smaller `-m` keeps the newest. (Files written before bit 1
//! existed read as all new, as they were.)
//!
//! The end record is a 0 byte and the item count (8 bytes). Integers are little-endian. It is
//! written to `<file>.tmp` and renamed over `<file>`, so a save cut short leaves no file behind
//! that looks whole.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use ferrocache_store::{
    DumpCursor, DumpedItem, IndexPlan, RelTime, Standing, StoreMode, StoreOutcome, WriteOptions,
};

use crate::Shared;

const MAGIC: &[u8; 24] = b"ferrocache restart v2\r\n\0";

/// Writes every live item to `path`. Returns how many.
pub fn save(shared: &Shared, path: &Path) -> io::Result<u64> {
    let tmp = tmp_path(path);
    let result = write_items(shared, &tmp).and_then(|count| {
        std::fs::rename(&tmp, path)?;
        Ok(count)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    PathBuf::from(tmp)
}

fn write_items(shared: &Shared, path: &Path) -> io::Result<u64> {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    out.write_all(MAGIC)?;
    out.write_all(&shared.store.cas_floor().to_le_bytes())?;
    let now = shared.clock.now();
    let pending = shared.store.pending_flush(now);
    let flush = pending.map_or(0, |when| shared.clock.to_unix(when));
    out.write_all(&flush.to_le_bytes())?;
    let mut cursor = DumpCursor::default();
    let mut count = 0u64;
    let mut failed = None;
    // The workers have stopped: nothing changes the store while it is walked.
    while shared.store.dump_step(&mut cursor, now, false, |item| {
        if failed.is_some() {
            return;
        }
        let exptime = match item.exptime {
            0 => 0,
            rel => shared.clock.to_unix(rel),
        };
        let record = write_record(&mut out, item, exptime);
        match record {
            Ok(()) => count += 1,
            Err(e) => failed = Some(e),
        }
    }) {}
    if let Some(e) = failed {
        return Err(e);
    }
    out.write_all(&[0])?;
    out.write_all(&count.to_le_bytes())?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(count)
}

fn write_record(out: &mut impl Write, item: &DumpedItem<'_>, exptime: i64) -> io::Result<()> {
    let key_len = u8::try_from(item.key.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
    let value_len = u32::try_from(item.value.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
    let cas = if item.cas_kept { item.cas } else { 0 };
    let standing = u8::from(item.standing.main) << 1 | item.standing.freq.min(3) << 2;
    out.write_all(&[key_len, u8::from(item.binary_key) | standing])?;
    out.write_all(&item.flags.to_le_bytes())?;
    out.write_all(&exptime.to_le_bytes())?;
    out.write_all(&cas.to_le_bytes())?;
    out.write_all(&value_len.to_le_bytes())?;
    out.write_all(item.key)?;
    out.write_all(item.value)
}

/// What a start found in the file.
#[derive(Debug, PartialEq, Eq)]
pub struct Loaded {
    /// Items stored again.
    pub restored: u64,
    /// Items whose exptime, or a pending `flush_all`, came while the server was down.
    pub expired: u64,
    /// Items that did not fit (-M and a smaller -m, or a smaller -I).
    pub refused: u64,
}

/// Stores the items saved in `path` again, then removes the file. Ok(None) when there is no
/// file. An error for a file that is not one of ours or was cut short; the items read before
/// the fault stay.
pub fn load(shared: &Shared, path: &Path) -> io::Result<Option<Loaded>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let result = read_items(shared, &mut BufReader::with_capacity(1 << 20, file));
    // Whatever it held, it is not read twice.
    std::fs::remove_file(path)?;
    result.map(Some)
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

fn cut_short(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => invalid("the file was cut short"),
        _ => e,
    }
}

fn read_items<R: Read + Seek>(shared: &Shared, input: &mut BufReader<R>) -> io::Result<Loaded> {
    let mut magic = [0u8; MAGIC.len()];
    input
        .read_exact(&mut magic)
        .map_err(|_| invalid("not a ferrocached restart file"))?;
    if &magic != MAGIC {
        return Err(invalid("not a ferrocached restart file"));
    }
    let mut header = [0u8; 16];
    input
        .read_exact(&mut header)
        .map_err(|_| invalid("the file was cut short"))?;
    // Before any store: new versions must take ids above every id given before the stop.
    let floor = u64::from_le_bytes(header[0..8].try_into().expect("8 bytes"));
    shared.store.raise_cas_floor(floor);
    let flush = i64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
    let unix_now = shared.clock.unix_now();
    let now = shared.clock.now();
    // A flush that came while the server was down takes every saved item.
    let flushed = flush != 0 && flush <= unix_now;
    if !flushed {
        // A first pass counts the items for the index, so that it takes its size at once
        // instead of growing through the load (`Store::index_plan`); then back to the records.
        let records = input.stream_position()?;
        if let Some(plan) = plan_index(shared, input, unix_now) {
            shared.store.presize_index(&plan);
        }
        input.seek(SeekFrom::Start(records))?;
    }
    let result = read_records(shared, input, (unix_now, now), flushed);
    if flush > unix_now {
        shared.store.flush_all(shared.clock.unix_to_rel(flush), now);
    }
    result
}

/// One record's fixed fields.
struct Record {
    key_len: u8,
    binary_key: bool,
    standing: Standing,
    flags: u32,
    /// Unix seconds, 0: never.
    exptime: i64,
    cas: u64,
    value_len: u32,
}

impl Record {
    /// Whether the item is gone by now (`flushed`: a flush came while the server was down).
    fn gone(&self, unix_now: i64, flushed: bool) -> bool {
        flushed || (self.exptime != 0 && self.exptime <= unix_now)
    }
}

/// The next record's fields, or `Err(count)` at the end record.
fn read_record(input: &mut impl Read) -> io::Result<Result<Record, u64>> {
    let mut key_len = [0u8; 1];
    input.read_exact(&mut key_len).map_err(cut_short)?;
    if key_len[0] == 0 {
        let mut count = [0u8; 8];
        input.read_exact(&mut count).map_err(cut_short)?;
        return Ok(Err(u64::from_le_bytes(count)));
    }
    let mut fields = [0u8; 25];
    input.read_exact(&mut fields).map_err(cut_short)?;
    Ok(Ok(Record {
        key_len: key_len[0],
        binary_key: fields[0] & 1 != 0,
        standing: Standing {
            main: fields[0] & 2 != 0,
            freq: fields[0] >> 2 & 3,
        },
        flags: u32::from_le_bytes(fields[1..5].try_into().expect("4 bytes")),
        exptime: i64::from_le_bytes(fields[5..13].try_into().expect("8 bytes")),
        cas: u64::from_le_bytes(fields[13..21].try_into().expect("8 bytes")),
        value_len: u32::from_le_bytes(fields[21..25].try_into().expect("4 bytes")),
    }))
}

/// The first pass: every item still alive counted by its key, values skipped. None when the
/// records do not end as they should (the second pass says how).
fn plan_index<R: Read + Seek>(
    shared: &Shared,
    input: &mut BufReader<R>,
    unix_now: i64,
) -> Option<IndexPlan> {
    let mut plan = shared.store.index_plan();
    let mut key = Vec::new();
    let mut read = 0u64;
    loop {
        match read_record(input).ok()? {
            Ok(record) => {
                key.resize(usize::from(record.key_len), 0);
                input.read_exact(&mut key).ok()?;
                input.seek_relative(i64::from(record.value_len)).ok()?;
                read += 1;
                if !record.gone(unix_now, false) {
                    shared
                        .store
                        .plan_key(&mut plan, &key, record.value_len as usize);
                }
            }
            Err(count) => return (count == read).then_some(plan),
        }
    }
}

/// Records read ahead of the one being stored: each one's index bucket is prefetched when it is
/// read, so that by its store the bucket is in cache (in a large cache nearly every bucket is a
/// cache miss, and without this the lookups took half a restart's time).
const READ_AHEAD: usize = 16;

/// A record read, waiting for its store.
#[derive(Default)]
struct Pending {
    record: Option<Record>,
    key: Vec<u8>,
    value: Vec<u8>,
}

/// The records after the header; `flushed`: every item saved is gone.
fn read_records(
    shared: &Shared,
    input: &mut impl Read,
    (unix_now, now): (i64, RelTime),
    flushed: bool,
) -> io::Result<Loaded> {
    let mut loaded = Loaded {
        restored: 0,
        expired: 0,
        refused: 0,
    };
    let mut ahead: VecDeque<Pending> = VecDeque::with_capacity(READ_AHEAD);
    // Buffers of records stored, for the next ones.
    let mut spare: Vec<Pending> = Vec::with_capacity(READ_AHEAD);
    // How the records ended: the end record's count, or a fault (the records read before it
    // are stored all the same).
    let mut end = None;
    loop {
        while end.is_none() && ahead.len() < READ_AHEAD {
            let mut pending = spare.pop().unwrap_or_default();
            match read_pending(input, &mut pending) {
                Ok(Ok(record)) if record.gone(unix_now, flushed) => {
                    loaded.expired += 1;
                    spare.push(pending);
                }
                Ok(Ok(record)) => {
                    shared.store.prefetch(shared.store.hash_key(&pending.key));
                    pending.record = Some(record);
                    ahead.push_back(pending);
                }
                Ok(Err(count)) => end = Some(Ok(count)),
                Err(e) => end = Some(Err(e)),
            }
        }
        let Some(mut pending) = ahead.pop_front() else {
            let count = end.expect("records run out only at their end")?;
            let read = loaded.restored + loaded.expired + loaded.refused;
            if count != read {
                return Err(invalid(&format!("{read} items where {count} were saved")));
            }
            return Ok(loaded);
        };
        let record = pending.record.take().expect("queued with its record");
        let options = WriteOptions {
            binary_key: record.binary_key,
            cas: (record.cas != 0).then_some(record.cas),
            standing: Some(record.standing),
            ..WriteOptions::default()
        };
        let outcome = shared.store.store_with(
            StoreMode::Set,
            &pending.key,
            record.flags,
            shared.clock.unix_to_rel(record.exptime),
            &pending.value,
            now,
            options,
        );
        match outcome {
            StoreOutcome::Stored => loaded.restored += 1,
            _ => loaded.refused += 1,
        }
        spare.push(pending);
    }
}

/// Reads the next record whole into `pending`'s buffers: its fields, or `Err(count)` at the end
/// record.
fn read_pending(input: &mut impl Read, pending: &mut Pending) -> io::Result<Result<Record, u64>> {
    let record = match read_record(input)? {
        Ok(record) => record,
        Err(count) => return Ok(Err(count)),
    };
    pending.key.resize(usize::from(record.key_len), 0);
    input.read_exact(&mut pending.key).map_err(cut_short)?;
    pending.value.clear();
    input
        .by_ref()
        .take(u64::from(record.value_len))
        .read_to_end(&mut pending.value)?;
    if pending.value.len() != record.value_len as usize {
        return Err(invalid("the file was cut short"));
    }
    Ok(Ok(record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_keeps_its_binary_key_and_its_standing() {
        for (binary_key, main, freq) in [
            (false, false, 0),
            (true, false, 0),
            (false, true, 0),
            (true, true, 3),
            (false, false, 2),
        ] {
            let item = DumpedItem {
                key: b"key",
                exptime: 0,
                time: 0,
                cas: 77,
                fetched: true,
                size: 0,
                flags: 5,
                value: b"value",
                binary_key,
                cas_kept: true,
                standing: Standing { main, freq },
            };
            let mut bytes = Vec::new();
            write_record(&mut bytes, &item, 1234).unwrap();
            let record = read_record(&mut &bytes[..]).unwrap().expect("a record");
            assert_eq!(record.key_len, 3);
            assert_eq!(record.binary_key, binary_key);
            assert_eq!(record.standing, Standing { main, freq });
            assert_eq!(
                (record.flags, record.exptime, record.cas, record.value_len),
                (5, 1234, 77, 5)
            );
            // The key length, 25 bytes of fields, then key and value.
            assert_eq!(&bytes[26..], b"keyvalue");
        }
        // A file from before bit 1: a key byte of 0 or 1 reads as an item that starts new.
        let mut old = vec![3u8, 1];
        old.extend_from_slice(&[0; 24]);
        let record = read_record(&mut &old[..]).unwrap().expect("a record");
        assert!(record.binary_key);
        assert_eq!(record.standing, Standing::default());
    }
}
