//! `--random N`: sessions of text and meta commands drawn at random from memcached's grammar,
//! valid and not, against servers started with the same random flags (`-C`, `-R 2`, `-I 1k`, or
//! none), sent in a few writes each (so requests are pipelined and split at random
//! places). Each session is a [`Case`], run like the ones in `cases/`, and a difference is printed
//! in the case files' format, ready to be kept there.
//!
//! What depends on the moment a server reads its clock is left out: `stats` is drawn only at the
//! end of a text session, and only its counters are compared; the meta `l` and `h`-after-time
//! flags are not drawn, nor `t` but right after a `T100000` (see [`TTL_SHOWN`]), and every
//! exptime is 0, negative (already expired) or far enough ahead that no session outlives it.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::Case;

/// An opaque one byte longer than memcached 1.6.18 echoes.
const LONG_OPAQUE: &str = "Oxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";

/// `t` only right after a `T` that gives 100000 seconds: it then shows exactly that, however
/// the servers' clocks tick (any other `t` depends on when each server's second turned).
const TTL_SHOWN: &str = "T100000 t";

/// Keys most commands use: few, so commands meet each other's items.
const KEYS: [&str; 5] = ["a", "b", "c", "foo", "n"];

/// The `stats` a text session ends with, compared: the counters its requests move. Left out
/// are those memcached's background threads move at their own pace: `get_expired`,
/// `get_flushed`, `curr_items` and the like (its LRU maintainer reclaims an expired or flushed
/// item a few milliseconds after it could, or not), `total_items` (an incr rewrites in place
/// unless an asynchronous LRU bump still holds the item), and `conn_yields`, whose count around
/// a refused data block follows memcached's state machine. In text sessions `bytes_read` and
/// `bytes_written` are compared only when no CAS id other than 0 was shown (see `normalise`);
/// binary ones carry every id in 8 bytes.
const COUNTERS: [&str; 25] = [
    "curr_connections",
    "total_connections",
    "cmd_get",
    "cmd_set",
    "cmd_flush",
    "cmd_touch",
    "cmd_meta",
    "get_hits",
    "get_misses",
    "delete_misses",
    "delete_hits",
    "incr_misses",
    "incr_hits",
    "decr_misses",
    "decr_hits",
    "cas_misses",
    "cas_hits",
    "cas_badval",
    "touch_hits",
    "touch_misses",
    "store_too_large",
    "store_no_memory",
    "bytes_read",
    "bytes_written",
    "evictions",
];

/// [`COUNTERS`] as a case's `stats:` list.
fn counters() -> Vec<String> {
    COUNTERS.iter().map(|name| name.to_string()).collect()
}

/// A session of `commands` requests, reproducible from `seed`. It ends with three empty lines,
/// `mn` and `stats`: a data block left short by a wrong length is completed (memcached holds
/// every reply while it waits for one), `mn` makes memcached write what it holds, and the
/// [`COUNTERS`] of `stats` are compared.
pub fn session(seed: u64, commands: usize) -> Case {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut text = String::new();
    let mut cuts = Vec::new();
    for _ in 0..commands {
        let command = command(&mut rng);
        cuts.extend(cut_points(&command).map(|at| text.len() + at));
        text.push_str(&command);
    }
    text.push_str("\\r\\n\\r\\n\\r\\nmn\\r\\nstats\\r\\n");
    // Mostly the defaults; now and then no CAS, a small -R (replies written every 2 requests)
    // or a 1 KB item limit.
    let flags = pick(
        &mut rng,
        &["", "", "", "", "-C", "-R 2", "-I 1k -o slab_chunk_max=1024"],
    );
    Case {
        name: format!("random session {seed}"),
        flags: flags.split_whitespace().map(str::to_string).collect(),
        env: Vec::new(),
        stats: Some(counters()),
        writes: split(&mut rng, &text, &cuts),
    }
}

/// Where a write may end inside `command`: anywhere in its line (not inside an escape or a
/// `{cas}`), and after the line and after its data block. Never inside the data block: memcached
/// reads a value that arrives in three parts or more differently from one that arrives whole (it
/// then held back its later replies in a run here), which no client relies on.
fn cut_points(command: &str) -> impl Iterator<Item = usize> + '_ {
    let line_end = command.find("\\r\\n").map_or(command.len(), |at| at + 4);
    (1..=line_end)
        .filter(move |&i| {
            let before = &command[..i];
            // Not inside an escape: `\\r`, `\\n` or `\\xNN`.
            let open_escape = before.rfind('\\').is_some_and(|at| {
                before.len() - at
                    < if before[at..].starts_with("\\x") {
                        4
                    } else {
                        2
                    }
            });
            !open_escape
                && before
                    .rfind('{')
                    .is_none_or(|open| before[open..].contains('}'))
        })
        .chain(std::iter::once(command.len()))
}

/// Cuts a session into 1 to 4 writes at some of the `allowed` positions.
fn split(rng: &mut StdRng, text: &str, allowed: &[usize]) -> Vec<String> {
    let cuts = rng.gen_range(0..4);
    let allowed: Vec<usize> = allowed
        .iter()
        .copied()
        .filter(|&at| at > 0 && at < text.len())
        .collect();
    let mut at: Vec<usize> = allowed
        .choose_multiple(rng, cuts.min(allowed.len()))
        .copied()
        .collect();
    at.sort_unstable();
    at.dedup();
    let mut writes = Vec::new();
    let mut start = 0;
    for cut in at {
        writes.push(text[start..cut].to_string());
        start = cut;
    }
    writes.push(text[start..].to_string());
    writes
}

fn pick<'a>(rng: &mut StdRng, choices: &[&'a str]) -> &'a str {
    choices[rng.gen_range(0..choices.len())]
}

fn key(rng: &mut StdRng) -> String {
    match rng.gen_range(0..40) {
        0 => "k".repeat(250),
        1 => "k".repeat(251),
        // Bytes past ASCII and a control byte: a text key is any run of bytes without spaces.
        2 => pick(rng, &["\\xc3\\xa9", "k\\x7f", "\\x01"]).to_string(),
        _ => pick(rng, &KEYS).to_string(),
    }
}

/// A value: letters, or a number for `incr`/`decr` to meet.
fn value(rng: &mut StdRng) -> String {
    match rng.gen_range(0..10) {
        0..=3 => pick(
            rng,
            &["0", "7", "18446744073709551615", "12345678901234567890"],
        )
        .into(),
        4 => "v".repeat(rng.gen_range(100..300)),
        // Around the largest item of `-I 1k`, a session's flags now and then.
        5 if rng.gen_ratio(1, 3) => "w".repeat(rng.gen_range(950..1100)),
        _ => {
            let len = rng.gen_range(0..8);
            (0..len)
                .map(|_| rng.gen_range(b'a'..=b'z') as char)
                .collect()
        }
    }
}

fn noreply(rng: &mut StdRng) -> &'static str {
    if rng.gen_ratio(1, 8) {
        " noreply"
    } else {
        ""
    }
}

/// Exptimes that no session outlives or that are already past.
fn exptime(rng: &mut StdRng) -> &'static str {
    pick(rng, &["0", "0", "100000", "-1", "x", "2592000"])
}

/// One request, with its data block, in the case files' escaped form.
fn command(rng: &mut StdRng) -> String {
    match rng.gen_range(0..100) {
        0..=29 => storage(rng),
        30..=44 => {
            let cmd = pick(rng, &["get", "gets", "gat", "gats"]);
            let keys: Vec<String> = (0..rng.gen_range(0..4)).map(|_| key(rng)).collect();
            let ttl = if cmd.starts_with("gat") {
                format!(" {}", exptime(rng))
            } else {
                String::new()
            };
            format!("{cmd}{ttl} {}\\r\\n", keys.join(" "))
        }
        45..=52 => format!(
            "{} {} {}{}\\r\\n",
            pick(rng, &["incr", "decr"]),
            key(rng),
            pick(
                rng,
                &[
                    "1",
                    "5",
                    "0",
                    "18446744073709551615",
                    "18446744073709551616",
                    "-1",
                    "x"
                ]
            ),
            noreply(rng)
        ),
        53..=58 => format!(
            "delete {}{}{}\\r\\n",
            key(rng),
            pick(rng, &["", "", " 0", " 5"]),
            noreply(rng)
        ),
        59..=62 => format!("touch {} {}{}\\r\\n", key(rng), exptime(rng), noreply(rng)),
        63..=92 => meta(rng),
        _ => pick(
            rng,
            &[
                "version\\r\\n",
                "verbosity 1\\r\\n",
                "verbosity\\r\\n",
                "flush_all\\r\\n",
                "flush_all noreply\\r\\n",
                "flush_all 0\\r\\n",
                "bogus a b\\r\\n",
                "\\r\\n",
                "GET a\\r\\n",
                "get\\r\\n",
                "set a 0 0\\r\\n",
                "incr\\r\\n",
                "mn\\r\\n",
                "mg\\r\\n",
                "ms a\\r\\n",
                "stats reset\\r\\n",
                "cache_memlimit 100\\r\\n",
                "verbosity 1 noreply\\r\\n",
            ],
        )
        .to_string(),
    }
}

fn storage(rng: &mut StdRng) -> String {
    let cmd = pick(
        rng,
        &["set", "set", "add", "replace", "append", "prepend", "cas"],
    );
    let value = value(rng);
    let flags = pick(rng, &["0", "0", "1", "4294967295", "4294967296", "-1", "x"]);
    let bytes = match rng.gen_range(0..12) {
        0 => (value.len() + 1).to_string(),
        1 => value.len().saturating_sub(1).to_string(),
        2 => pick(rng, &["x", "-1"]).to_string(),
        _ => value.len().to_string(),
    };
    let cas = if cmd == "cas" {
        format!(" {}", pick(rng, &["{cas}", "{cas}", "0", "999999", "x"]))
    } else {
        String::new()
    };
    format!(
        "{cmd} {} {flags} {} {bytes}{cas}{}\\r\\n{value}\\r\\n",
        key(rng),
        exptime(rng),
        noreply(rng)
    )
}

/// A meta request with a handful of the flags its command takes (and now and then one it
/// does not).
fn meta(rng: &mut StdRng) -> String {
    // Now and then a base64 key with its `b` flag: most decode to the keys other commands use
    // ("a", "foo", "n", a byte past ASCII), some are not base64.
    let base64 = rng.gen_ratio(1, 6);
    let key = if base64 {
        pick(rng, &["YQ==", "Zm9v", "bg==", "w6k=", "YQ", "!!!!", "YWJj"]).to_string()
    } else {
        key(rng)
    };
    let flags = |rng: &mut StdRng, choices: &[&str]| -> String {
        let n = rng.gen_range(0..4);
        let mut out = String::new();
        if base64 {
            out.push_str(" b");
        }
        for _ in 0..n {
            out.push(' ');
            out.push_str(pick(rng, choices));
        }
        out
    };
    match rng.gen_range(0..10) {
        0..=3 => {
            let f = flags(
                rng,
                &[
                    "v",
                    "v",
                    "f",
                    "c",
                    "k",
                    "s",
                    "q",
                    "O12",
                    "N100000",
                    "T100000",
                    "E77",
                    "x",
                    "Oab",
                    "b",
                    "u",
                    "R30",
                    "R200000",
                    "Tx",
                    "M",
                    "MS",
                    "Dx",
                    LONG_OPAQUE,
                    TTL_SHOWN,
                ],
            );
            format!("mg {key}{f}\\r\\n")
        }
        4..=6 => {
            let value = value(rng);
            let len = if rng.gen_ratio(1, 10) {
                (value.len() + 1).to_string()
            } else {
                value.len().to_string()
            };
            let f = flags(
                rng,
                &[
                    "T100000",
                    "F5",
                    "I",
                    "c",
                    "k",
                    "q",
                    "O9",
                    "ME",
                    "MA",
                    "MP",
                    "MR",
                    "MS",
                    "Mx",
                    "C{cas}",
                    "C999999",
                    "E55",
                    "N100000",
                    "T-1",
                    "Fx",
                    "Ms",
                    "Mxx",
                    "Cx",
                    LONG_OPAQUE,
                ],
            );
            format!("ms {key} {len}{f}\\r\\n{value}\\r\\n")
        }
        7 => {
            let f = flags(
                rng,
                &[
                    "q",
                    "I",
                    "T100000",
                    "C{cas}",
                    "C999999",
                    "k",
                    "O3",
                    "x",
                    "Tx",
                    "M",
                    LONG_OPAQUE,
                ],
            );
            format!("md {key}{f}\\r\\n")
        }
        _ => {
            let f = flags(
                rng,
                &[
                    "N100000",
                    "J5",
                    "D3",
                    "MI",
                    "MD",
                    "M+",
                    "M-",
                    "q",
                    "v",
                    "c",
                    "k",
                    "O4",
                    "D18446744073709551616",
                    "Mx",
                    "T100000",
                    "C{cas}",
                    "C999999",
                    "T-1",
                    "N0",
                    "Jx",
                    "Mi",
                    LONG_OPAQUE,
                    TTL_SHOWN,
                ],
            );
            format!("ma {key}{f}\\r\\n")
        }
    }
}

/// A session of `requests` binary-protocol requests, reproducible from `seed`: storage, gets
/// (quiet and with keys), delete, incr/decr, append/prepend, touch and gat, flush, noop and
/// version, with now and then a CAS id no item has or an opcode memcached does not know, and in
/// one session of three a malformed request (a wrong extras length, a missing or too-long key).
/// It ends with a noop, which answers what quiet requests held back, and a STAT. Writes are cut
/// between requests only.
pub fn binary_session(seed: u64, requests: usize) -> Case {
    let mut rng = StdRng::seed_from_u64(seed);
    // A malformed request (memcached answers most with EINVAL and closes) in one session of
    // three, so that the others run to their end.
    let malformed = rng.gen_ratio(1, 3).then(|| rng.gen_range(0..requests));
    let mut packets: Vec<String> = (0..requests)
        .map(|at| escaped(&binary_request(&mut rng, at as u32, malformed == Some(at))))
        .collect();
    packets.push(escaped(&packet(0x0a, &[], b"", b"", 0, 0)));
    // STAT, whose answers are compared for the [`COUNTERS`] only.
    packets.push(escaped(&packet(0x10, &[], b"", b"", 0, 0)));
    let mut cuts = Vec::new();
    let mut text = String::new();
    for p in &packets {
        text.push_str(p);
        cuts.push(text.len());
    }
    Case {
        name: format!("random binary session {seed}"),
        flags: Vec::new(),
        env: Vec::new(),
        stats: Some(counters()),
        writes: split(&mut rng, &text, &cuts),
    }
}

/// The case files' escaped form of `bytes`.
fn escaped(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\x{b:02x}")).collect()
}

/// A binary request: header, extras, key, value.
fn packet(opcode: u8, extras: &[u8], key: &[u8], value: &[u8], opaque: u32, cas: u64) -> Vec<u8> {
    let body = extras.len() + key.len() + value.len();
    let mut p = vec![0x80, opcode];
    p.extend_from_slice(&(key.len() as u16).to_be_bytes());
    p.push(extras.len() as u8);
    p.extend_from_slice(&[0, 0, 0]);
    p.extend_from_slice(&(body as u32).to_be_bytes());
    p.extend_from_slice(&opaque.to_be_bytes());
    p.extend_from_slice(&cas.to_be_bytes());
    p.extend_from_slice(extras);
    p.extend_from_slice(key);
    p.extend_from_slice(value);
    p
}

fn binary_request(rng: &mut StdRng, opaque: u32, malformed: bool) -> Vec<u8> {
    // How a malformed request is wrong: a key too long or missing, extras of a wrong length, a
    // body where none belongs.
    let wrong = malformed.then(|| rng.gen_range(0..4));
    let key = match wrong {
        Some(0) => "k".repeat(251),
        Some(1) => String::new(),
        _ => pick(rng, &KEYS).to_string(),
    };
    let value = value(rng);
    let exptime: u32 = *[0, 0, 100_000, u32::MAX].choose(rng).expect("non-empty");
    let cas: u64 = if rng.gen_ratio(1, 8) { 999_999 } else { 0 };
    let opcode: u8 = *[
        0x00, 0x09, 0x0c, 0x0d, // get, getq, getk, getkq
        0x01, 0x11, 0x02, 0x12, 0x03, 0x13, // set, add, replace (and quiet)
        0x04, 0x14, // delete
        0x05, 0x15, 0x06, 0x16, // incr, decr
        0x0e, 0x19, 0x0f, 0x1a, // append, prepend
        0x1c, 0x1d, 0x1e, 0x23, 0x24, // touch, gat, gatq, gatk, gatkq
        0x08, 0x18, 0x0a, 0x0b, // flush, flushq, noop, version
        0x30, // unknown
    ]
    .choose(rng)
    .expect("non-empty");
    let mut extras: Vec<u8> = match opcode {
        0x01 | 0x11 | 0x02 | 0x12 | 0x03 | 0x13 => {
            let flags: u32 = *[0, 5, u32::MAX].choose(rng).expect("non-empty");
            [flags.to_be_bytes(), exptime.to_be_bytes()].concat()
        }
        0x05 | 0x15 | 0x06 | 0x16 => {
            let delta: u64 = *[1, 5, u64::MAX].choose(rng).expect("non-empty");
            let initial: u64 = *[0, 10].choose(rng).expect("non-empty");
            // All ones: no counter is created for a missing key.
            let create = if rng.gen_bool(0.5) { 0 } else { u32::MAX };
            [
                &delta.to_be_bytes()[..],
                &initial.to_be_bytes(),
                &create.to_be_bytes(),
            ]
            .concat()
        }
        0x1c | 0x1d | 0x1e | 0x23 | 0x24 => exptime.to_be_bytes().to_vec(),
        _ => Vec::new(),
    };
    if opcode != 0x30 && wrong == Some(2) {
        // A wrong extras length: one byte more or fewer.
        if extras.is_empty() || rng.gen_bool(0.5) {
            extras.push(0);
        } else {
            extras.pop();
        }
    }
    let value: &[u8] = match opcode {
        0x01 | 0x11 | 0x02 | 0x12 | 0x03 | 0x13 | 0x0e | 0x19 | 0x0f | 0x1a => value.as_bytes(),
        // memcached leaves a touch's or gat's body unread and parses it as the next request,
        // and skips an unknown opcode's body twice: neither is drawn (tests in cases/).
        0x1c | 0x1d | 0x1e | 0x23 | 0x24 | 0x30 => b"",
        _ if wrong == Some(3) => b"junk",
        _ => b"",
    };
    // Flush, noop, version and the unknown opcode take no key (memcached closes on one).
    let keyless = matches!(opcode, 0x08 | 0x18 | 0x0a | 0x0b | 0x30);
    let key = if keyless && wrong != Some(0) {
        String::new()
    } else {
        key
    };
    packet(opcode, &extras, key.as_bytes(), value, opaque, cas)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_session_and_its_writes_rejoin_it() {
        let a = session(7, 40);
        let b = session(7, 40);
        assert_eq!(a.writes, b.writes);
        assert_ne!(a.writes, session(8, 40).writes);
        assert!(!a.writes.is_empty() && a.writes.len() <= 4);
        let joined: String = a.writes.concat();
        // Every write expands on its own: no escape or {cas} is cut in two.
        for seed in 0..300 {
            for write in &session(seed, 40).writes {
                crate::expand(write, "1").expect("each write expands");
            }
        }
        let whole = crate::expand(&joined, "1").expect("expands");
        assert!(whole.ends_with(b"\r\n"));
        assert!(joined.matches("\\r\\n").count() >= 40);
    }

    #[test]
    fn a_binary_session_is_whole_requests_ending_with_a_noop_and_a_stat() {
        let mut malformed_sessions = 0;
        for seed in 0..100 {
            let case = binary_session(seed, 30);
            assert_eq!(case.writes, binary_session(seed, 30).writes);
            let bytes = crate::expand(&case.writes.concat(), "0").expect("expands");
            let (mut at, mut opcodes, mut bad_keys) = (0, Vec::new(), 0);
            while at < bytes.len() {
                assert_eq!(bytes[at], 0x80, "seed {seed}: a request starts at {at}");
                let body = u32::from_be_bytes(bytes[at + 8..at + 12].try_into().unwrap());
                let key_len = u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]);
                let opcode = bytes[at + 1];
                let keyless = matches!(opcode, 0x08 | 0x18 | 0x0a | 0x0b | 0x10 | 0x30);
                if key_len == 251 || (keyless != (key_len == 0)) {
                    bad_keys += 1;
                }
                opcodes.push(opcode);
                at += 24 + body as usize;
            }
            assert_eq!(at, bytes.len());
            assert_eq!(opcodes.len(), 32, "seed {seed}");
            assert_eq!(opcodes[30..], [0x0a, 0x10], "seed {seed}");
            // At most one malformed request, so most sessions run to their end.
            assert!(bad_keys <= 1, "seed {seed}");
            malformed_sessions += bad_keys;
        }
        assert!(malformed_sessions < 40, "{malformed_sessions}");
    }
}
