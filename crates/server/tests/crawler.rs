//! `lru_crawler` over real sockets: `metadump`'s lines, a dump larger than one write, and the
//! switches that refuse it (`lru_crawler disable`, `-o no_lru_crawler`, `-X`); and `stats
//! cachedump`. The replies to every form of the commands are compared with memcached's by
//! `tests/differential`.

use std::collections::HashMap;

use ferrocache_testkit::{Conn, Server};

/// `lru_crawler metadump all`: each line's key and its other fields, in the order sent.
fn metadump(c: &mut Conn) -> Vec<(String, HashMap<String, String>)> {
    let reply = c.request("lru_crawler metadump all\r\n", "END\r\n");
    let body = reply.strip_suffix("END\r\n").expect("ends with END");
    assert!(!body.contains('\r'), "lines end with \\n alone: {body:?}");
    body.lines()
        .map(|line| {
            let mut fields: HashMap<String, String> = line
                .split(' ')
                .map(|f| {
                    let (name, value) = f.split_once('=').expect("name=value");
                    (name.to_string(), value.to_string())
                })
                .collect();
            let key = fields.remove("key").expect("a key field");
            (key, fields)
        })
        .collect()
}

fn unix_time(c: &mut Conn) -> i64 {
    let stats = c.request("stats\r\n", "END\r\n");
    let line = stats
        .lines()
        .find_map(|l| l.strip_prefix("STAT time "))
        .expect("STAT time");
    line.parse().expect("a number")
}

#[test]
fn metadump_shows_every_live_item() {
    let s = Server::ferrocached(&[]);
    let mut c = s.connect();
    let batch = "set alpha 3 0 5\r\nhello\r\nset beta 0 3600 3\r\nxyz\r\n\
                 set per%cent 0 0 1\r\np\r\nset gone 0 -1 1\r\ng\r\n\
                 set deleted 0 0 1\r\nd\r\ndelete deleted\r\n";
    assert_eq!(c.request(batch, "DELETED\r\n").matches("STORED").count(), 5);
    let gets = c.request("gets alpha\r\n", "END\r\n");
    let cas: u64 = gets
        .split_whitespace()
        .nth(4)
        .and_then(|t| t.parse().ok())
        .expect("a CAS id");
    let now = unix_time(&mut c);
    let dump = metadump(&mut c);
    let mut keys: Vec<&str> = dump.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["alpha", "beta", "per%25cent"], "{dump:?}");
    let fields = |key: &str| &dump.iter().find(|(k, _)| k == key).expect(key).1;
    let alpha = fields("alpha");
    assert_eq!(alpha["exp"], "-1");
    assert_eq!(alpha["fetch"], "yes");
    assert_eq!(alpha["cas"], cas.to_string());
    assert_eq!(alpha["cls"], "1");
    // Header, key and value: a few bytes more than the key and value.
    let size: usize = alpha["size"].parse().expect("a size");
    assert!((10..30).contains(&size), "{size}");
    let beta = fields("beta");
    assert_eq!(beta["fetch"], "no");
    let exp: i64 = beta["exp"].parse().expect("a unix time");
    assert!(
        (now + 3598..=now + 3601).contains(&exp),
        "{exp} against {now}"
    );
    let la: i64 = beta["la"].parse().expect("a unix time");
    assert!((now - 3..=now).contains(&la), "{la} against {now}");
    // The connection goes on as before.
    assert_eq!(
        c.request("get beta\r\n", "END\r\n"),
        "VALUE beta 0 3\r\nxyz\r\nEND\r\n"
    );
}

#[test]
fn a_dump_larger_than_one_write_shows_each_item_once() {
    let s = Server::ferrocached(&[]);
    let mut c = s.connect();
    let n = 30_000;
    let mut batch = String::new();
    for i in 0..n {
        batch.push_str(&format!("set key:{i:06} 0 0 1 noreply\r\nx\r\n"));
    }
    batch.push_str("version\r\n");
    assert!(c.request(batch, "\r\n").starts_with("VERSION "));
    let mut other = s.connect();
    let dump = metadump(&mut c);
    // Over a megabyte of lines: written in parts, each shard's lock held a segment at a time.
    assert_eq!(dump.len(), n);
    let mut keys: Vec<&str> = dump.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), n);
    assert_eq!(
        other.request("get key:000000\r\n", "END\r\n"),
        "VALUE key:000000 0 1\r\nx\r\nEND\r\n"
    );
}

#[test]
fn the_crawler_switches_refuse_metadump() {
    let off = Server::ferrocached(&["-o", "no_lru_crawler"]);
    let mut c = off.connect();
    assert_eq!(
        c.line("lru_crawler metadump all\r\n"),
        "CLIENT_ERROR lru crawler disabled\r\n"
    );
    assert_eq!(
        c.line("lru_crawler crawl all\r\n"),
        "CLIENT_ERROR lru crawler disabled\r\n"
    );
    assert_eq!(c.line("lru_crawler enable\r\n"), "OK\r\n");
    assert_eq!(
        c.line("lru_crawler enable\r\n"),
        "ERROR failed to start lru crawler thread\r\n"
    );
    assert_eq!(c.line("set a 0 0 1\r\nx\r\n"), "STORED\r\n");
    assert_eq!(metadump(&mut c).len(), 1);
    assert_eq!(c.line("lru_crawler crawl all\r\n"), "OK\r\n");
    // Another connection sees the switch.
    let mut other = off.connect();
    assert_eq!(other.line("lru_crawler disable\r\n"), "OK\r\n");
    assert_eq!(
        c.line("lru_crawler metadump all\r\n"),
        "CLIENT_ERROR lru crawler disabled\r\n"
    );

    let no_dumps = Server::ferrocached(&["-X"]);
    let mut c = no_dumps.connect();
    assert_eq!(
        c.line("lru_crawler metadump all\r\n"),
        "ERROR metadump not allowed\r\n"
    );
    assert_eq!(
        c.line("stats cachedump 1 0\r\n"),
        "CLIENT_ERROR stats cachedump not allowed\r\n"
    );
    assert_eq!(c.line("lru_crawler crawl all\r\n"), "OK\r\n");
    assert!(
        !no_dumps.stderr().contains("-X"),
        "-X is no longer announced as ignored: {}",
        no_dumps.stderr()
    );
}

#[test]
fn cachedump_lists_live_items_up_to_its_limits() {
    let s = Server::ferrocached(&[]);
    let mut c = s.connect();
    let batch = "set a 5 0 1\r\nx\r\nset b 0 3600 3\r\nxyz\r\nset gone 0 -1 1\r\ng\r\n";
    assert_eq!(c.request(batch, "STORED\r\nSTORED\r\nSTORED\r\n").len(), 24);
    let now = unix_time(&mut c);
    let mut lines: Vec<String> = c
        .request("stats cachedump 1 0\r\n", "END\r\n")
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.pop().as_deref(), Some("END"));
    lines.sort_unstable();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0], "ITEM a [1 b; 0 s]");
    let exp: i64 = lines[1]
        .strip_prefix("ITEM b [3 b; ")
        .and_then(|l| l.strip_suffix(" s]"))
        .and_then(|n| n.parse().ok())
        .expect("b's line");
    assert!(
        (now + 3598..=now + 3601).contains(&exp),
        "{exp} against {now}"
    );
    assert_eq!(
        c.request("stats cachedump 1 1\r\n", "END\r\n")
            .matches("ITEM ")
            .count(),
        1
    );
    assert_eq!(c.line("stats cachedump 2 0\r\n"), "END\r\n");

    // At most 2 MB, as memcached's: 20,000 lines of about 220 bytes would be 4.4 MB.
    let key = "k".repeat(200);
    let mut batch = String::new();
    for i in 0..20_000 {
        batch.push_str(&format!("set {key}{i:05} 0 0 1 noreply\r\nx\r\n"));
    }
    batch.push_str("version\r\n");
    assert!(c.request(batch, "\r\n").starts_with("VERSION "));
    let dump = c.request("stats cachedump 1 0\r\n", "END\r\n");
    assert!(dump.len() <= 2 * 1024 * 1024, "{} bytes", dump.len());
    let shown = dump.matches("ITEM ").count();
    assert!((9_000..20_000).contains(&shown), "{shown} lines");
    assert!(dump.ends_with(" s]\r\nEND\r\n"), "whole lines, then END");
}
