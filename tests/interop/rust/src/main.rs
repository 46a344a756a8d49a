//! The `memcache` crate (a third-party Rust client) against the servers in `INTEROP_ADDRS`
//! (comma-separated `host:port`, three of them): every operation on the text protocol and on the
//! binary one against the first server, then keys spread over all three. Prints `ok NAME` or
//! `not ok NAME: WHY` per check, like the other interop groups, and exits 1 if any failed.

use std::collections::HashMap;
use std::fmt::Debug;
use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use memcache::{Client, MemcacheError, ToMemcacheValue};

/// Counts checks and prints their lines.
#[derive(Default)]
struct Report {
    ran: usize,
    failed: usize,
}

impl Report {
    fn eq<T: PartialEq + Debug>(&mut self, name: &str, got: Result<T, MemcacheError>, want: T) {
        self.ran += 1;
        match got {
            Ok(got) if got == want => println!("ok {name}"),
            Ok(got) => {
                self.failed += 1;
                println!("not ok {name}: got {got:?}, want {want:?}");
            }
            Err(e) => {
                self.failed += 1;
                println!("not ok {name}: error {e}");
            }
        }
    }
}

/// A value with flags of our choosing: the crate sends its own types with flags 0.
struct Flagged<'a>(&'a [u8], u32);

impl<W: Write> ToMemcacheValue<W> for Flagged<'_> {
    fn get_flags(&self) -> u32 {
        self.1
    }
    fn get_length(&self) -> usize {
        self.0.len()
    }
    fn write_to(&self, stream: &mut W) -> io::Result<()> {
        stream.write_all(self.0)
    }
}

/// The exptime the server holds for `key` (meta `mg KEY t`), read outside the client under test.
fn server_ttl(addr: &str, key: &str) -> Result<i64, MemcacheError> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "mg {key} t\r\n")?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    line.split_whitespace()
        .find_map(|f| f.strip_prefix('t'))
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, line.clone()).into())
}

fn single_server(r: &mut Report, addr: &str, protocol: &str) -> Result<(), MemcacheError> {
    let ascii = if protocol == "ascii" {
        "&protocol=ascii"
    } else {
        ""
    };
    let c = Client::connect(format!("memcache://{addr}?timeout=5{ascii}"))?;
    c.flush()?;
    let p = |name: &str| format!("{protocol}: {name}");

    r.eq(&p("set"), c.set("greeting", "hello", 0), ());
    r.eq(
        &p("get"),
        c.get::<String>("greeting"),
        Some("hello".to_string()),
    );
    r.eq(&p("get miss"), c.get::<String>("never-set"), None);
    r.eq(
        &p("binary-safe value"),
        c.set("bin", &[0u8, 13, 10, 255][..], 0)
            .and_then(|_| c.get::<Vec<u8>>("bin")),
        Some(vec![0, 13, 10, 255]),
    );
    r.eq(
        &p("flags round-trip"),
        c.set("f", Flagged(b"x", 0xdead_beef), 0)
            .and_then(|_| c.get::<(Vec<u8>, u32)>("f")),
        Some((b"x".to_vec(), 0xdead_beef)),
    );
    r.eq(&p("set with exptime 300"), c.set("ttl", "x", 300), ());
    r.eq(
        &p("server holds exptime 300"),
        server_ttl(addr, "ttl").map(|t| (295..=300).contains(&t)),
        true,
    );
    r.eq(
        &p("number"),
        c.set("n", 41u64, 0).and_then(|_| c.get::<u64>("n")),
        Some(41),
    );
    r.eq(&p("increment"), c.increment("n", 1), 42);
    r.eq(&p("decrement floors at 0"), c.decrement("n", 50), 0);
    r.eq(
        &p("increment wraps at 2^64"),
        c.set("w", u64::MAX, 0).and_then(|_| c.increment("w", 2)),
        1,
    );
    // On the text protocol the crate drops NOT_STORED (add returns Ok either way), so only the
    // value can show the refusal there; on the binary one the refusal is an error.
    let add = c.add("greeting", "again", 0);
    if protocol == "binary" {
        r.eq(&p("add existing is an error"), Ok(add.is_err()), true);
    }
    r.eq(
        &p("value after the refused add"),
        c.get::<String>("greeting"),
        Some("hello".to_string()),
    );
    r.eq(&p("add new"), c.add("fresh", "1", 0), ());
    r.eq(
        &p("replace"),
        c.replace("fresh", "2", 0)
            .and_then(|_| c.get::<String>("fresh")),
        Some("2".to_string()),
    );
    r.eq(&p("append"), c.append("greeting", ", world"), ());
    r.eq(&p("prepend"), c.prepend("greeting", "oh "), ());
    r.eq(
        &p("value after append and prepend"),
        c.get::<String>("greeting"),
        Some("oh hello, world".to_string()),
    );

    let cas = c
        .get::<(String, u32, Option<u64>)>("greeting")
        .map(|v| v.and_then(|(_, _, cas)| cas));
    r.eq(
        &p("gets returns a cas id"),
        cas.as_ref()
            .map(|c| c.is_some())
            .map_err(|e| io::Error::other(e.to_string()).into()),
        true,
    );
    let cas = cas.ok().flatten().unwrap_or(0);
    r.eq(
        &p("cas with a fresh id"),
        c.cas("greeting", "swapped", 0, cas),
        true,
    );
    r.eq(
        &p("cas with a stale id is refused"),
        c.cas("greeting", "again", 0, cas),
        false,
    );
    r.eq(
        &p("value after cas"),
        c.get::<String>("greeting"),
        Some("swapped".to_string()),
    );

    let many: Result<HashMap<String, String>, _> = c.gets(&["greeting", "fresh", "missing"]);
    r.eq(
        &p("multi-get (one miss)"),
        many,
        HashMap::from([
            ("greeting".to_string(), "swapped".to_string()),
            ("fresh".to_string(), "2".to_string()),
        ]),
    );
    r.eq(&p("touch"), c.touch("fresh", 100), true);
    r.eq(&p("touch miss"), c.touch("missing", 100), false);
    r.eq(&p("delete"), c.delete("fresh"), true);
    r.eq(&p("delete miss"), c.delete("fresh"), false);
    r.eq(&p("deleted key is a miss"), c.get::<String>("fresh"), None);
    r.eq(&p("stats from one server"), c.stats().map(|s| s.len()), 1);
    r.eq(
        &p("version"),
        c.version()
            .map(|v| v.first().is_some_and(|(_, v)| v.starts_with("1."))),
        true,
    );
    r.eq(&p("flush"), c.flush(), ());
    r.eq(&p("flushed"), c.get::<String>("greeting"), None);
    Ok(())
}

fn three_servers(r: &mut Report, addrs: &[&str]) -> Result<(), MemcacheError> {
    let urls: Vec<String> = addrs
        .iter()
        .map(|a| format!("memcache://{a}?timeout=5&protocol=ascii"))
        .collect();
    let c = Client::connect(urls)?;
    let keys: Vec<String> = (0..300).map(|i| format!("rust-{i}")).collect();
    let stored = keys
        .iter()
        .filter(|k| c.set(k, k.as_str(), 300).is_ok())
        .count();
    r.eq("three servers: set 300 keys", Ok(stored), 300);
    let back = keys
        .iter()
        .filter(|k| matches!(c.get::<String>(k), Ok(Some(v)) if &v == *k))
        .count();
    r.eq("three servers: every key reads back", Ok(back), 300);
    let mut held = Vec::new();
    for a in addrs {
        let one = Client::connect(format!("memcache://{a}?timeout=5&protocol=ascii"))?;
        held.push(
            keys.iter()
                .filter(|k| matches!(one.get::<String>(k), Ok(Some(_))))
                .count(),
        );
    }
    r.eq(
        "three servers: each key on one server, all used",
        Ok(held.iter().all(|&n| n > 0) && held.iter().sum::<usize>() == 300),
        true,
    );
    Ok(())
}

fn main() {
    let addrs = std::env::var("INTEROP_ADDRS").unwrap_or_default();
    let addrs: Vec<&str> = addrs.split(',').filter(|a| !a.is_empty()).collect();
    println!("client memcache-crate 0.21.0 (crates.io)");
    let mut r = Report::default();
    if addrs.len() != 3 {
        println!("not ok arguments: INTEROP_ADDRS must name three host:port, got {addrs:?}");
        std::process::exit(1);
    }
    for protocol in ["ascii", "binary"] {
        if let Err(e) = single_server(&mut r, addrs[0], protocol) {
            r.ran += 1;
            r.failed += 1;
            println!("not ok {protocol}: connect: {e}");
        }
    }
    if let Err(e) = three_servers(&mut r, &addrs) {
        r.ran += 1;
        r.failed += 1;
        println!("not ok three servers: connect: {e}");
    }
    std::process::exit(if r.failed > 0 || r.ran == 0 { 1 } else { 0 });
}
