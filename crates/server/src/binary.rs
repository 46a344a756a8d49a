//! The binary protocol's opcodes over the store, as memcached 1.6.18 answers them: statuses and
//! error texts from `ferrocache_protocol::binary`, quiet variants silent on success (and `GETQ`
//! on a miss), errors always answered.

use ferrocache_protocol::binary::{opcode::*, response, status, BinaryRequest, Header};
use ferrocache_store::{DeleteOutcome, Delta, DeltaOutcome, StoreMode, StoreOutcome, WriteOptions};

use crate::dispatch::{Ctx, Next};

fn is_quiet(op: u8) -> bool {
    matches!(
        op,
        GETQ | GETKQ
            | SETQ
            | ADDQ
            | REPLACEQ
            | DELETEQ
            | INCREMENTQ
            | DECREMENTQ
            | QUITQ
            | FLUSHQ
            | APPENDQ
            | PREPENDQ
            | GATQ
            | GATKQ
    )
}

/// The non-quiet opcode a quiet one answers as.
fn loud(op: u8) -> u8 {
    match op {
        GETQ => GET,
        GETKQ => GETK,
        SETQ => SET,
        ADDQ => ADD,
        REPLACEQ => REPLACE,
        DELETEQ => DELETE,
        INCREMENTQ => INCREMENT,
        DECREMENTQ => DECREMENT,
        QUITQ => QUIT,
        FLUSHQ => FLUSH,
        APPENDQ => APPEND,
        PREPENDQ => PREPEND,
        GATQ => GAT,
        GATKQ => GATK,
        other => other,
    }
}

/// The response header for request `r`: same opcode and opaque.
fn header(r: &BinaryRequest<'_>, status: u16, cas: u64) -> Header {
    Header {
        opcode: r.opcode,
        status,
        opaque: r.opaque,
        cas,
    }
}

impl Ctx<'_> {
    fn bin_error(&mut self, r: &BinaryRequest<'_>, code: u16) {
        self.bin_error_held(r, code);
        // memcached writes out at every binary error (its write_bin_error goes to conn_mwrite):
        // what it held is sent even if the connection then closes on a bad request.
        self.out.mark();
    }

    /// An error reply that memcached holds (it swallows a body first).
    fn bin_error_held(&mut self, r: &BinaryRequest<'_>, code: u16) {
        // memcached closes a binary connection after answering "Invalid arguments".
        self.close_after_reply |= code == status::INVALID_ARGUMENTS;
        let text = status::text(code);
        let out = self.out.text();
        response(out, header(r, code, 0), &[], &[], text.len());
        out.extend_from_slice(text.as_bytes());
    }

    fn bin_ok(&mut self, r: &BinaryRequest<'_>, cas: u64, value: &[u8]) {
        if is_quiet(r.opcode) {
            return;
        }
        let out = self.out.text();
        response(out, header(r, status::OK, cas), &[], &[], value.len());
        out.extend_from_slice(value);
    }

    /// A request whose body (`body` bytes, to be swallowed) is over the item size limit.
    pub fn binary_too_large(&mut self, opcode: u8, opaque: u32, body: usize) -> Next {
        if let Some(next) = self.binary_auth_too_large(opcode, opaque) {
            return next;
        }
        self.counters.store_too_large += 1;
        let text = status::text(status::TOO_LARGE);
        let out = self.out.text();
        response(
            out,
            Header {
                opcode,
                status: status::TOO_LARGE,
                opaque,
                cas: 0,
            },
            &[],
            &[],
            text.len(),
        );
        out.extend_from_slice(text.as_bytes());
        Next::Swallow(body)
    }

    /// Handles one binary request.
    pub fn binary(&mut self, r: BinaryRequest<'_>) -> Next {
        if let Some(next) = self.binary_auth(&r) {
            return next;
        }
        let (ext, key) = (r.extras.len(), r.key.len());
        let body = ext + key + r.value.len();
        // memcached 1.6.18's dispatch_bin_command: a key over 250 bytes, whatever the opcode,
        // then each opcode's shape; a request of another shape gets "Invalid arguments" and the
        // connection closes.
        if key > 250 {
            self.bin_error(&r, status::INVALID_ARGUMENTS);
            return Next::CloseAfterWrite;
        }
        let shape_ok = match loud(r.opcode) {
            NOOP | VERSION | QUIT => body == 0,
            FLUSH => key == 0 && body == ext && (ext == 0 || ext == 4),
            STAT => ext == 0,
            GET | GETK => ext == 0 && key > 0 && body == key,
            DELETE => ext == 0 && key > 0 && body == key,
            INCREMENT | DECREMENT => ext == 20 && key > 0 && body == key + ext,
            SET | ADD | REPLACE => ext == 8 && key > 0,
            APPEND | PREPEND => ext == 0 && key > 0,
            TOUCH | GAT | GATK => ext == 4 && key > 0,
            // Not an opcode memcached serves (VERBOSITY neither): "Unknown command", and it
            // then skips the whole body again past the extras and key it has read, so a body
            // costs the client as many bytes of what follows.
            _ if body == 0 => {
                self.bin_error(&r, status::UNKNOWN_COMMAND);
                return Next::Continue;
            }
            _ => {
                self.bin_error_held(&r, status::UNKNOWN_COMMAND);
                return match ext + key {
                    0 => Next::Continue,
                    again => Next::Swallow(again),
                };
            }
        };
        if !shape_ok {
            self.bin_error(&r, status::INVALID_ARGUMENTS);
            return Next::CloseAfterWrite;
        }
        let next = self.binary_op(&r);
        if self.close_after_reply {
            return Next::CloseAfterWrite;
        }
        next
    }

    fn binary_op(&mut self, r: &BinaryRequest<'_>) -> Next {
        let r = *r;
        let clock = &self.shared.clock;
        let now = clock.now();
        match loud(r.opcode) {
            GET | GETK => self.bin_get(&r, None),
            // The four bytes of extras are there (`binary` checked each opcode's shape).
            GAT | GATK | TOUCH => match r.extra_u32(0) {
                Some(exptime) => self.bin_get(&r, Some(clock.binary_exptime_to_rel(exptime))),
                None => self.bin_error(&r, status::INVALID_ARGUMENTS),
            },
            SET | ADD | REPLACE => self.bin_store(&r),
            APPEND | PREPEND => self.bin_store(&r),
            DELETE => self.bin_delete(&r),
            INCREMENT | DECREMENT => self.bin_delta(&r),
            QUIT => {
                self.bin_ok(&r, 0, &[]);
                return Next::CloseAfterWrite;
            }
            FLUSH => {
                self.counters.cmd_flush += 1;
                let delay = i64::from(r.extra_u32(0).unwrap_or(0));
                self.shared.store.flush_all(clock.flush_point(delay), now);
                self.bin_ok(&r, 0, &[]);
            }
            NOOP => {
                self.bin_ok(&r, 0, &[]);
                // memcached: "NOOP forces pipeline flush".
                self.out.mark();
            }
            VERSION => {
                let version = crate::config::MEMCACHED_VERSION;
                self.bin_ok(&r, 0, version.as_bytes());
            }
            STAT => self.bin_stats(&r),
            _ => self.bin_error(&r, status::UNKNOWN_COMMAND),
        }
        Next::Continue
    }

    fn bin_get(&mut self, r: &BinaryRequest<'_>, touch: Option<u32>) {
        // The extras are checked by `binary`; a touch or gat may still bring a value.
        if !r.value.is_empty() {
            self.bin_error(r, status::INVALID_ARGUMENTS);
            return;
        }
        let now = self.shared.clock.now();
        let item = match touch {
            None => {
                self.counters.cmd_get += 1;
                self.shared.store.get(r.key, true, now)
            }
            Some(exptime) => {
                self.counters.cmd_touch += 1;
                self.shared.store.get_and_touch(r.key, exptime, true, now)
            }
        };
        self.log_fetch(r.key, item.as_ref().map(|i| i.value.len()));
        let with_key = matches!(loud(r.opcode), GETK | GATK);
        match item {
            Some(item) => {
                if r.opcode != TOUCH {
                    // memcached keeps the item until it writes the value.
                    self.out.reference(r.key);
                }
                let key: &[u8] = if with_key { r.key } else { &[] };
                let flags = item.flags.to_be_bytes();
                // TOUCH answers like a get without the value.
                let value_len = if r.opcode == TOUCH {
                    0
                } else {
                    item.value.len()
                };
                let out = self.out.text();
                response(out, header(r, status::OK, item.cas), &flags, key, value_len);
                if value_len > 0 {
                    self.out.value_raw(&item.value);
                }
            }
            None if is_quiet(r.opcode) => {}
            None if with_key => {
                let out = self.out.text();
                response(out, header(r, status::KEY_NOT_FOUND, 0), &[], r.key, 0);
            }
            None => self.bin_error(r, status::KEY_NOT_FOUND),
        }
    }

    fn bin_store(&mut self, r: &BinaryRequest<'_>) {
        let op = loud(r.opcode);
        let appending = matches!(op, APPEND | PREPEND);
        // `binary` checked the extras: none for append and prepend, 8 bytes for the others.
        let (flags, exptime) = if appending {
            (0, 0)
        } else {
            match (r.extra_u32(0), r.extra_u32(4)) {
                (Some(flags), Some(exptime)) => (flags, exptime),
                _ => {
                    self.bin_error(r, status::INVALID_ARGUMENTS);
                    return;
                }
            }
        };
        let config = &self.shared.config.store;
        if !ferrocache_store::item_size_ok(
            config.item_size_max,
            config.use_cas,
            r.key.len(),
            flags,
            r.value.len(),
        ) {
            self.counters.store_too_large += 1;
            self.bin_error(r, status::TOO_LARGE);
            return;
        }
        self.counters.cmd_set += 1;
        let mode = match (op, r.cas) {
            (SET, 0) => StoreMode::Set,
            (ADD, 0) => StoreMode::Add,
            // Append and prepend check a non-zero CAS (`compare_cas` below).
            (APPEND, _) => StoreMode::Append,
            (PREPEND, _) => StoreMode::Prepend,
            (REPLACE, 0) => StoreMode::Replace,
            // A non-zero CAS turns set, add and replace into compare-and-swap, as in memcached
            // 1.6.18 (an add with a CAS id stores over the item that has it).
            (_, cas) => StoreMode::Cas(cas),
        };
        let clock = &self.shared.clock;
        let now = clock.now();
        let before = self.log_lookup(r.key);
        let exptime = clock.binary_exptime_to_rel(exptime);
        let options = WriteOptions {
            compare_cas: r.cas,
            ..WriteOptions::default()
        };
        let outcome = self
            .shared
            .store
            .store_with(mode, r.key, flags, exptime, r.value, now, options);
        self.log_store(r.key, (mode, exptime), (before, r.value.len()), outcome);
        match outcome {
            StoreOutcome::Stored => {
                let cas = self.shared.store.written_cas(r.key, now);
                self.bin_ok(r, cas, &[]);
            }
            StoreOutcome::Exists => self.bin_error(r, status::KEY_EXISTS),
            StoreOutcome::NotFound => self.bin_error(r, status::KEY_NOT_FOUND),
            // memcached answers a failed add with EXISTS and a failed replace/append with
            // NOT_FOUND... in the binary protocol: NOT_STORED for append/prepend, EXISTS for add.
            StoreOutcome::NotStored => {
                let code = match op {
                    ADD => status::KEY_EXISTS,
                    REPLACE => status::KEY_NOT_FOUND,
                    _ => status::NOT_STORED,
                };
                self.bin_error(r, code);
            }
            StoreOutcome::TooLarge => self.bin_error(r, status::TOO_LARGE),
            StoreOutcome::OutOfMemory => {
                self.counters.store_no_memory += 1;
                self.bin_error(r, status::OUT_OF_MEMORY);
            }
        }
    }

    fn bin_delete(&mut self, r: &BinaryRequest<'_>) {
        self.log_lookup(r.key);
        let store = &self.shared.store;
        let now = self.shared.clock.now();
        let compare_cas = (r.cas != 0).then_some(r.cas);
        match store.delete_if(r.key, compare_cas, false, now) {
            DeleteOutcome::Deleted => self.bin_ok(r, 0, &[]),
            DeleteOutcome::NotFound => self.bin_error(r, status::KEY_NOT_FOUND),
            DeleteOutcome::Exists => self.bin_error(r, status::KEY_EXISTS),
        }
    }

    fn bin_delta(&mut self, r: &BinaryRequest<'_>) {
        let (Some(delta), Some(initial), Some(exptime)) =
            (r.extra_u64(0), r.extra_u64(8), r.extra_u32(16))
        else {
            self.bin_error(r, status::INVALID_ARGUMENTS);
            return;
        };
        let incr = loud(r.opcode) == INCREMENT;
        self.log_lookup(r.key);
        let store = &self.shared.store;
        let clock = &self.shared.clock;
        let now = clock.now();
        // memcached's do_add_delta compares a non-zero CAS before it reads the number (after
        // refusing an empty value); a missing key goes on to be created, counted as neither hit
        // nor miss.
        let delta = Delta {
            pad: !self.out.references(r.key),
            compare_cas: (r.cas != 0).then_some(r.cas),
            count_miss: exptime == u32::MAX,
            ..Delta::new(incr, delta)
        };
        let value = match store.delta_with(r.key, &delta, now) {
            DeltaOutcome::Value(v) => v,
            DeltaOutcome::Exists => {
                self.bin_error(r, status::KEY_EXISTS);
                return;
            }
            // 0xffffffff as exptime means "do not create".
            DeltaOutcome::NotFound if exptime != u32::MAX => {
                let text = initial.to_string();
                let rel = clock.binary_exptime_to_rel(exptime);
                match store.store(StoreMode::Add, r.key, 0, rel, text.as_bytes(), now) {
                    StoreOutcome::Stored => initial,
                    _ => {
                        self.bin_error(r, status::NOT_STORED);
                        return;
                    }
                }
            }
            DeltaOutcome::NotFound => {
                self.bin_error(r, status::KEY_NOT_FOUND);
                return;
            }
            DeltaOutcome::NonNumeric => {
                self.bin_error(r, status::NON_NUMERIC);
                return;
            }
            DeltaOutcome::OutOfMemory => {
                self.bin_error(r, status::OUT_OF_MEMORY);
                return;
            }
        };
        let cas = store.peek(r.key, now).map_or(0, |i| i.cas);
        self.bin_ok(r, cas, &value.to_be_bytes());
    }

    /// `STAT [group]`: one response per statistic, then an empty one.
    fn bin_stats(&mut self, r: &BinaryRequest<'_>) {
        let mut text = Vec::new();
        let group = String::from_utf8_lossy(r.key).into_owned();
        if !self.stats_text(&mut text, group.as_bytes()) {
            self.bin_error(r, status::KEY_NOT_FOUND);
            return;
        }
        let out = self.out.text();
        for line in text.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(stat) = line.strip_prefix(b"STAT ") else {
                continue;
            };
            let split = stat.iter().position(|&b| b == b' ').unwrap_or(stat.len());
            let (name, value) = (&stat[..split], stat.get(split + 1..).unwrap_or(&[]));
            response(out, header(r, status::OK, 0), &[], name, value.len());
            out.extend_from_slice(value);
        }
        response(out, header(r, status::OK, 0), &[], &[], 0);
    }
}
