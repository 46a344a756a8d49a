//! ferrocached over real sockets: every text command's happy path and the connection-level
//! behaviour (pipelining, split values, big multi-gets, swallowing, junk).

use std::time::Duration;

use ferrocache_testkit::Server;

fn server() -> Server {
    Server::ferrocached(&[])
}

/// One `stats` reply: each STAT line's name and value, in the order sent.
fn stats(c: &mut ferrocache_testkit::Conn) -> Vec<(String, String)> {
    stats_of(c, "stats\r\n")
}

/// The reply to a `stats` command (`stats items\r\n`...), as [`stats`] gives it.
fn stats_of(c: &mut ferrocache_testkit::Conn, command: &str) -> Vec<(String, String)> {
    c.request(command, "END\r\n")
        .lines()
        .filter_map(|l| {
            let (name, value) = l.strip_prefix("STAT ")?.split_once(' ')?;
            Some((name.to_string(), value.to_string()))
        })
        .collect()
}

/// The value of `name` in a `stats` reply.
fn stat<'a>(stats: &'a [(String, String)], name: &str) -> &'a str {
    stats
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {name} in {stats:?}"))
        .1
        .as_str()
}

/// The value of `name` in a `stats` reply, a number.
fn stat_number(stats: &[(String, String)], name: &str) -> u64 {
    stat(stats, name).parse().expect("a number")
}

#[test]
fn set_get_gets_delete() {
    let s = server();
    let mut c = s.connect();
    assert_eq!(c.line("set k 5 0 3\r\nabc\r\n"), "STORED\r\n");
    assert_eq!(
        c.request("get k\r\n", "END\r\n"),
        "VALUE k 5 3\r\nabc\r\nEND\r\n"
    );
    let gets = c.request("gets k\r\n", "END\r\n");
    assert!(gets.starts_with("VALUE k 5 3 "), "{gets}");
    assert_eq!(c.line("delete k\r\n"), "DELETED\r\n");
    assert_eq!(c.line("delete k\r\n"), "NOT_FOUND\r\n");
    assert_eq!(c.request("get k\r\n", "END\r\n"), "END\r\n");
}

#[test]
fn add_replace_append_prepend_cas() {
    let s = server();
    let mut c = s.connect();
    assert_eq!(c.line("replace k 0 0 1\r\na\r\n"), "NOT_STORED\r\n");
    assert_eq!(c.line("add k 0 0 1\r\nb\r\n"), "STORED\r\n");
    assert_eq!(c.line("add k 0 0 1\r\nc\r\n"), "NOT_STORED\r\n");
    assert_eq!(c.line("append k 0 0 2\r\nyz\r\n"), "STORED\r\n");
    assert_eq!(c.line("prepend k 0 0 2\r\nwx\r\n"), "STORED\r\n");
    assert_eq!(
        c.request("get k\r\n", "END\r\n"),
        "VALUE k 0 5\r\nwxbyz\r\nEND\r\n"
    );
    let gets = c.request("gets k\r\n", "END\r\n");
    let cas: u64 = gets
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(4))
        .and_then(|c| c.parse().ok())
        .expect("cas id");
    assert_eq!(
        c.line(&format!("cas k 0 0 1 {}\r\nq\r\n", cas + 1000)),
        "EXISTS\r\n"
    );
    assert_eq!(c.line(&format!("cas k 0 0 1 {cas}\r\nq\r\n")), "STORED\r\n");
    assert_eq!(c.line(&format!("cas k 0 0 1 {cas}\r\nr\r\n")), "EXISTS\r\n");
    assert_eq!(c.line("cas nokey 0 0 1 1\r\nr\r\n"), "NOT_FOUND\r\n");
}

#[test]
fn incr_decr_touch_gat() {
    let s = server();
    let mut c = s.connect();
    assert_eq!(c.line("set n 0 0 2\r\n10\r\n"), "STORED\r\n");
    assert_eq!(c.line("incr n 5\r\n"), "15\r\n");
    assert_eq!(c.line("decr n 100\r\n"), "0\r\n");
    assert_eq!(
        c.line("set n 0 0 20\r\n18446744073709551615\r\n"),
        "STORED\r\n"
    );
    assert_eq!(c.line("incr n 2\r\n"), "1\r\n");
    assert_eq!(c.line("incr missing 1\r\n"), "NOT_FOUND\r\n");
    assert_eq!(c.line("set t 0 0 1\r\nx\r\n"), "STORED\r\n");
    assert_eq!(
        c.line("incr t 1\r\n"),
        "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
    );
    assert_eq!(c.line("touch t 100\r\n"), "TOUCHED\r\n");
    assert_eq!(c.line("touch nope 100\r\n"), "NOT_FOUND\r\n");
    assert_eq!(
        c.request("gat 100 t nope\r\n", "END\r\n"),
        "VALUE t 0 1\r\nx\r\nEND\r\n"
    );
    assert!(c
        .request("gats 100 t\r\n", "END\r\n")
        .starts_with("VALUE t 0 1 "));
}

#[test]
fn noreply_suppresses_replies() {
    let s = server();
    let mut c = s.connect();
    c.send("set a 0 0 1 noreply\r\na\r\nadd a 0 0 1 noreply\r\nb\r\nincr a 1 noreply\r\ndelete b noreply\r\n");
    assert_eq!(
        c.request("get a\r\n", "END\r\n"),
        "VALUE a 0 1\r\na\r\nEND\r\n"
    );
}

#[test]
fn negative_exptime_is_already_expired() {
    let s = server();
    let mut c = s.connect();
    assert_eq!(c.line("set e 0 -1 1\r\nx\r\n"), "STORED\r\n");
    assert_eq!(c.request("get e\r\n", "END\r\n"), "END\r\n");
}

/// Items that expire in 2 s interleaved with items that never do: the expired ones are reclaimed
/// without any command touching them (segments are filled by lifetime), as memcached's LRU crawler
/// reclaims them.
#[test]
fn expired_items_are_reclaimed_without_being_read() {
    let s = server();
    let mut c = s.connect();
    let value = "x".repeat(200);
    let mut batch = String::new();
    for i in 0..4000 {
        let exptime = if i % 2 == 0 { 2 } else { 0 };
        batch.push_str(&format!("set k{i} 0 {exptime} 200 noreply\r\n{value}\r\n"));
    }
    batch.push_str("version\r\n");
    assert!(c.request(batch, "\r\n").starts_with("VERSION "));
    let number = |c: &mut ferrocache_testkit::Conn, name: &str| stat_number(&stats(c), name);
    // Not curr_items: on a slow machine the first short-lived items may be gone already.
    assert_eq!(number(&mut c, "total_items"), 4000);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while number(&mut c, "curr_items") > 2000 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} items left",
            number(&mut c, "curr_items")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(number(&mut c, "reclaimed"), 2000);
    assert_eq!(number(&mut c, "get_expired"), 0);
    assert_eq!(
        c.request("get k1 k3999\r\n", "END\r\n"),
        format!("VALUE k1 0 200\r\n{value}\r\nVALUE k3999 0 200\r\n{value}\r\nEND\r\n")
    );
}

#[test]
fn flush_all_empties_the_cache() {
    let s = server();
    let mut c = s.connect();
    assert_eq!(c.line("set a 0 0 1\r\nx\r\n"), "STORED\r\n");
    assert_eq!(c.line("flush_all\r\n"), "OK\r\n");
    assert_eq!(c.request("get a\r\n", "END\r\n"), "END\r\n");
    assert_eq!(c.line("set a 0 0 1\r\ny\r\n"), "STORED\r\n");
    assert_eq!(
        c.request("get a\r\n", "END\r\n"),
        "VALUE a 0 1\r\ny\r\nEND\r\n"
    );
}

#[test]
fn pipelined_commands_are_answered_in_order() {
    let s = server();
    let mut c = s.connect();
    let mut batch = String::new();
    for i in 0..200 {
        batch.push_str(&format!("set k{i} 0 0 {}\r\n{i}\r\n", i.to_string().len()));
    }
    for i in 0..200 {
        batch.push_str(&format!("get k{i}\r\n"));
    }
    c.send(&batch);
    let mut expected = "STORED\r\n".repeat(200);
    for i in 0..200 {
        expected.push_str(&format!(
            "VALUE k{i} 0 {}\r\n{i}\r\nEND\r\n",
            i.to_string().len()
        ));
    }
    let got = c.read_exact(expected.len());
    assert_eq!(String::from_utf8_lossy(&got), expected);
}

#[test]
fn a_batch_of_commands_is_answered_in_one_write_per_read() {
    // -vvv logs every read and every write of replies; 100 commands sent at once must not cost
    // 100 writes: one per read of the batch at most.
    let s = Server::ferrocached(&["-vvv"]);
    let mut c = s.connect();
    let batch: String = (0..100).map(|i| format!("get k{i}\r\n")).collect();
    c.send(&batch);
    assert_eq!(c.read_exact(100 * 5), "END\r\n".repeat(100).as_bytes());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let (reads, writes) = loop {
        let log = s.stderr();
        let count = |what: &str| log.lines().filter(|l| l.contains(what)).count();
        let (reads, writes) = (count(" read "), count(" wrote "));
        if writes > 0 || std::time::Instant::now() > deadline {
            break (reads, writes);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(
        writes >= 1 && writes <= reads,
        "{reads} reads, {writes} writes"
    );
}

#[test]
fn value_split_over_many_packets_is_assembled() {
    let s = server();
    let mut c = s.connect();
    let value = "v".repeat(100_000);
    let request = format!("set big 0 0 {}\r\n{value}\r\n", value.len());
    for chunk in request.as_bytes().chunks(7_001) {
        c.send(chunk);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(c.line(""), "STORED\r\n");
    let got = c.request("get big\r\n", "END\r\n");
    assert_eq!(got, format!("VALUE big 0 100000\r\n{value}\r\nEND\r\n"));
}

#[test]
fn multi_megabyte_multiget_streams() {
    let s = server();
    let mut c = s.connect();
    let value = "x".repeat(500_000);
    for i in 0..8 {
        assert_eq!(
            c.line(&format!("set m{i} 0 0 500000\r\n{value}\r\n")),
            "STORED\r\n"
        );
    }
    let keys: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
    let got = c.request(format!("get {}\r\n", keys.join(" ")), "END\r\n");
    assert_eq!(
        got.len(),
        8 * (500_000 + 2 + "VALUE m0 0 500000\r\n".len()) + 5
    );
}

#[test]
fn a_long_multiget_answers_every_key_in_order() {
    // More keys than the index prefetch looks ahead (8), hits and misses mixed, one key twice.
    let s = server();
    let mut c = s.connect();
    for i in (0..40).step_by(3) {
        let value = format!("v{i}");
        assert_eq!(
            c.line(&format!("set k{i} {i} 0 {}\r\n{value}\r\n", value.len())),
            "STORED\r\n"
        );
    }
    let mut keys: Vec<usize> = (0..40).collect();
    keys.push(3);
    let line: Vec<String> = keys.iter().map(|i| format!("k{i}")).collect();
    let mut want = String::new();
    for i in keys.iter().filter(|&&i| i % 3 == 0) {
        let value = format!("v{i}");
        want += &format!("VALUE k{i} {i} {}\r\n{value}\r\n", value.len());
    }
    want += "END\r\n";
    assert_eq!(
        c.request(format!("get {}\r\n", line.join(" ")), "END\r\n"),
        want
    );
}

#[test]
fn short_multigets_answer_every_key_in_order() {
    // Gets of 1 to 10 keys: all of a short get's buckets and its first items are prefetched
    // before its first lookup. Hits and misses mixed, a key named twice, `get` and `gets`.
    let s = server();
    let mut c = s.connect();
    let names = ["a", "b", "x", "c", "a", "y", "d", "e", "z", "f"];
    for (i, key) in ["a", "b", "c", "d", "e", "f"].iter().enumerate() {
        assert_eq!(
            c.line(&format!("set {key} {i} 0 2\r\n{key}{key}\r\n")),
            "STORED\r\n"
        );
    }
    let flags = |key: &str| {
        ["a", "b", "c", "d", "e", "f"]
            .iter()
            .position(|k| *k == key)
    };
    for n in 1..=names.len() {
        let keys = &names[..n];
        for command in ["get", "gets"] {
            let got = c.request(format!("{command} {}\r\n", keys.join(" ")), "END\r\n");
            let mut lines = got.split("\r\n");
            for key in keys {
                let Some(f) = flags(key) else { continue };
                let head: Vec<&str> = lines.next().expect("a VALUE line").split(' ').collect();
                assert_eq!(&head[..4], ["VALUE", key, &f.to_string(), "2"], "{got:?}");
                assert_eq!(head.len(), if command == "gets" { 5 } else { 4 }, "{got:?}");
                assert_eq!(
                    lines.next(),
                    Some(format!("{key}{key}").as_str()),
                    "{got:?}"
                );
            }
            assert_eq!(lines.next(), Some("END"), "{command} of {n} keys: {got:?}");
        }
    }
}

#[test]
fn a_multiget_written_out_in_parts_keeps_its_order() {
    // Values of 200 KB: the reply is written out every five or six keys (at 1 MB pending), while
    // the keys ahead are already hashed and prefetched; hits and misses mixed.
    let s = server();
    let mut c = s.connect();
    let value = |i: usize| format!("{i:02}-").repeat(200_000 / 3 + 1)[..200_000].to_string();
    for i in (0..30).filter(|i| i % 4 != 1) {
        assert_eq!(
            c.line(&format!("set p{i} {i} 0 200000\r\n{}\r\n", value(i))),
            "STORED\r\n"
        );
    }
    let keys: Vec<String> = (0..30).map(|i| format!("p{i}")).collect();
    let mut want = String::new();
    for i in (0..30).filter(|i| i % 4 != 1) {
        want += &format!("VALUE p{i} {i} 200000\r\n{}\r\n", value(i));
    }
    want += "END\r\n";
    c.send(format!("get {}\r\n", keys.join(" ")));
    let got = c.read_exact(want.len());
    assert!(got == want.as_bytes(), "replies out of order or altered");
}

/// Resident memory of a process, in MB.
fn rss_mb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .expect("VmRSS")
        / 1024
}

#[test]
fn get_naming_a_big_item_many_times_does_not_buffer_its_replies() {
    // One 8 KB line asks for 1 MB 300 times. memcached queues references to the item; a server
    // that copies each value before writing would hold 300 MB while the client does not read.
    let s = server();
    let mut c = s.connect();
    let value = "x".repeat(1_000_000);
    assert_eq!(
        c.line(&format!("set big 0 0 {}\r\n{value}\r\n", value.len())),
        "STORED\r\n"
    );
    let before = rss_mb(s.pid());
    c.send(format!("get {}\r\n", "big ".repeat(300)));
    std::thread::sleep(Duration::from_millis(1500));
    let grown = rss_mb(s.pid()).saturating_sub(before);
    assert!(grown < 64, "the server grew by {grown} MB for one get");
    // The replies all arrive once the client reads.
    let one = format!("VALUE big 0 1000000\r\n{value}\r\n");
    let got = c.read_exact(300 * one.len() + "END\r\n".len());
    assert!(got.ends_with(b"x\r\nEND\r\n"));
    assert_eq!(&got[..one.len()], one.as_bytes());
}

#[test]
fn too_large_value_is_refused_and_swallowed() {
    let s = server();
    let mut c = s.connect();
    let value = "z".repeat(2 * 1024 * 1024);
    c.send(format!(
        "set big 0 0 {}\r\n{value}\r\nget big\r\n",
        value.len()
    ));
    assert_eq!(
        String::from_utf8_lossy(&c.read_until(b"END\r\n")),
        "SERVER_ERROR object too large for cache\r\nEND\r\n"
    );
}

#[test]
fn bad_input_gets_memcached_errors() {
    let s = server();
    let mut c = s.connect();
    assert_eq!(c.line("bogus\r\n"), "ERROR\r\n");
    assert_eq!(
        c.line("set k 0 0 x\r\n"),
        "CLIENT_ERROR bad command line format\r\n"
    );
    // The "\r\n" left over from the bad chunk is a command of its own, answered ERROR.
    assert_eq!(
        c.request("set k 0 0 1\r\nabc\r\n", "ERROR\r\n"),
        "CLIENT_ERROR bad data chunk\r\nERROR\r\n"
    );
    let key = "k".repeat(251);
    assert_eq!(
        c.line(&format!("get {key}\r\n")),
        "CLIENT_ERROR bad command line format\r\n"
    );
    assert_eq!(
        c.line("incr k abc\r\n"),
        "CLIENT_ERROR invalid numeric delta argument\r\n"
    );
    assert_eq!(c.line("shutdown\r\n"), "ERROR: shutdown not enabled\r\n");
    assert!(c.line("version\r\n").starts_with("VERSION 1.6"));
}

#[test]
fn long_junk_line_closes_only_that_connection() {
    let s = server();
    let mut other = s.connect();
    let mut c = s.connect();
    c.send(vec![b'x'; 5000]);
    let (reply, closed) = c.drain(Duration::from_secs(5));
    assert!(reply.is_empty());
    assert!(
        closed,
        "a 5000-byte line without newline must close the connection"
    );
    assert_eq!(other.line("version\r\n").split(' ').next(), Some("VERSION"));
}

#[test]
fn long_get_line_is_kept() {
    let s = server();
    let mut c = s.connect();
    let keys: Vec<String> = (0..1000).map(|i| format!("key{i}")).collect();
    let line = format!("get {}\r\n", keys.join(" "));
    assert!(line.len() > 2048);
    assert_eq!(c.request(line, "END\r\n"), "END\r\n");
}

#[test]
fn quit_closes() {
    let s = server();
    let mut c = s.connect();
    c.send("quit\r\n");
    let (reply, closed) = c.drain(Duration::from_secs(5));
    assert!(reply.is_empty());
    assert!(closed);
}

#[test]
fn stats_report_commands() {
    let s = server();
    let mut c = s.connect();
    c.line("set a 0 0 1\r\nx\r\n");
    c.request("get a b\r\n", "END\r\n");
    let all = stats(&mut c);
    assert_eq!(stat(&all, "cmd_get"), "2");
    assert_eq!(stat(&all, "get_hits"), "1");
    assert_eq!(stat(&all, "get_misses"), "1");
    assert_eq!(stat(&all, "cmd_set"), "1");
    assert_eq!(stat(&all, "curr_items"), "1");
    assert_eq!(stat(&all, "limit_maxbytes"), "67108864");
    assert_eq!(stat(&all, "threads"), "4");
    assert_eq!(c.line("stats reset\r\n"), "RESET\r\n");
    for sub in ["settings", "items", "slabs", "sizes", "conns"] {
        let reply = c.request(format!("stats {sub}\r\n"), "END\r\n");
        assert!(reply.ends_with("END\r\n"), "{sub}: {reply}");
    }
    assert_eq!(c.line("stats nonsense\r\n"), "ERROR\r\n");
    // Unlike memcached (ERROR), `stats default` is plain stats: python-memcached asks for it.
    let default = c.request("stats default\r\n", "END\r\n");
    assert!(default.starts_with("STAT pid "), "{default}");
}

/// `stats items` and `stats slabs` describe the cache as one class, in memcached's names and
/// order, so that `memcached-tool display` has a row to show.
#[test]
fn stats_items_and_slabs_describe_the_cache_as_class_1() {
    let s = Server::ferrocached(&["-m", "2"]);
    let mut c = s.connect();
    let empty = stats_of(&mut c, "stats slabs\r\n");
    let names: Vec<&str> = empty.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["active_slabs", "total_malloced"]);
    assert_eq!(stat(&empty, "active_slabs"), "0");
    assert!(stats_of(&mut c, "stats items\r\n").is_empty());

    c.line("set first 0 0 1\r\nx\r\n");
    std::thread::sleep(Duration::from_millis(2100));
    let items = stats_of(&mut c, "stats items\r\n");
    let names: Vec<&str> = items.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "items:1:number",
            "items:1:age",
            "items:1:mem_requested",
            "items:1:evicted",
            "items:1:evicted_nonzero",
            "items:1:evicted_time",
            "items:1:outofmemory",
            "items:1:reclaimed",
            "items:1:expired_unfetched",
            "items:1:evicted_unfetched",
        ]
    );
    assert_eq!(stat(&items, "items:1:number"), "1");
    let age = stat_number(&items, "items:1:age");
    assert!((2..30).contains(&age), "age {age} of an item set 2.1 s ago");
    let one = stat_number(&items, "items:1:mem_requested");
    assert!(
        (6..64).contains(&one),
        "mem_requested {one}: key, value and header"
    );

    // 4,000 items of 1 KB with an exptime overflow `-m 2`.
    let value = "v".repeat(1000);
    let mut batch = String::new();
    for i in 0..4000 {
        batch.push_str(&format!("set k{i} 0 3600 1000 noreply\r\n{value}\r\n"));
    }
    c.send(batch);
    c.request("get k3999\r\n", "END\r\n");
    let items = stats_of(&mut c, "stats items\r\n");
    let general = stats(&mut c);
    let slabs = stats_of(&mut c, "stats slabs\r\n");
    let evicted = stat_number(&items, "items:1:evicted");
    assert!(evicted > 500, "{items:?}");
    assert_eq!(stat(&items, "items:1:evicted"), stat(&general, "evictions"));
    // Every item but `first` had an exptime (which stays, alone in its open segment).
    let first_gone = c.request("get first\r\n", "END\r\n") == "END\r\n";
    assert_eq!(
        stat_number(&items, "items:1:evicted_nonzero"),
        evicted - u64::from(first_gone)
    );
    assert!(stat_number(&items, "items:1:evicted_time") < 30);
    assert_eq!(stat(&items, "items:1:number"), stat(&general, "curr_items"));
    let held = stat_number(&items, "items:1:mem_requested");
    assert!(
        held > 1000 * stat_number(&items, "items:1:number") && held <= 2 * 1024 * 1024,
        "{items:?}"
    );

    let number = |name: &str| stat_number(&slabs, name);
    assert_eq!(number("1:chunk_size"), 4096, "the segment size at -m 2");
    assert_eq!(number("1:chunks_per_page"), 1);
    assert_eq!(number("1:total_pages"), number("1:total_chunks"));
    let pages = number("1:total_pages");
    assert!(
        pages * 4096 <= 2 * 1024 * 1024 && pages > 200,
        "{pages} segments"
    );
    assert_eq!(
        number("1:used_chunks") + number("1:free_chunks"),
        number("1:total_chunks")
    );
    assert_eq!(stat(&slabs, "1:get_hits"), stat(&general, "get_hits"));
    assert_eq!(stat(&slabs, "1:cmd_set"), stat(&general, "cmd_set"));
    assert_eq!(stat(&slabs, "active_slabs"), "1");
    assert_eq!(stat(&slabs, "total_malloced"), stat(&general, "bytes"));
}

#[test]
fn cache_memlimit_lowers_and_raises_the_bound() {
    const MB: u64 = 1024 * 1024;
    let s = Server::ferrocached(&["-m", "64"]);
    let mut c = s.connect();
    let value = "v".repeat(1000);
    let fill = |c: &mut ferrocache_testkit::Conn, prefix: &str| {
        let batch: String = (0..40_000)
            .map(|i| format!("set {prefix}{i} 0 0 1000 noreply\r\n{value}\r\n"))
            .collect();
        c.send(batch);
        assert_eq!(c.line("mn\r\n"), "MN\r\n");
    };
    fill(&mut c, "a");
    let full = stats(&mut c);
    assert!(stat_number(&full, "bytes") > 32 * MB);
    assert_eq!(stat(&full, "evictions"), "0");
    let full_rss = rss_mb(s.pid());

    // Lowered: evicted down to the new bound before the OK, and the memory given back.
    assert_eq!(c.line("cache_memlimit 16\r\n"), "OK\r\n");
    let low_rss = rss_mb(s.pid());
    assert!(
        low_rss + 16 < full_rss,
        "RSS {full_rss} MB, then {low_rss} MB"
    );
    let low = stats(&mut c);
    assert_eq!(stat_number(&low, "limit_maxbytes"), 16 * MB);
    assert!(stat_number(&low, "bytes") <= 16 * MB);
    assert!(stat_number(&low, "evictions") > 20_000);
    assert_eq!(
        stat_number(&stats_of(&mut c, "stats settings\r\n"), "maxbytes"),
        16 * MB
    );
    assert!(c
        .request("get a39999\r\n", "END\r\n")
        .starts_with("VALUE a39999 0 1000\r\n"));
    fill(&mut c, "b");
    assert!(stat_number(&stats(&mut c), "bytes") <= 16 * MB);

    // Raised: the cache grows past the old bound without evicting.
    assert_eq!(c.line("cache_memlimit 128\r\n"), "OK\r\n");
    let evicted = stat_number(&stats(&mut c), "evictions");
    fill(&mut c, "c");
    fill(&mut c, "d");
    let high = stats(&mut c);
    assert_eq!(stat_number(&high, "evictions"), evicted);
    assert!(stat_number(&high, "bytes") > 64 * MB);
    assert!(stat_number(&high, "bytes") <= 128 * MB);

    // Below two segments per shard (1 MB segments at -m 1024): refused, nothing changes.
    let big = Server::ferrocached(&["-m", "1024"]);
    let mut c = big.connect();
    assert_eq!(
        c.line("cache_memlimit 31\r\n"),
        "MEMLIMIT_ADJUST_FAILED out of bounds or unable to adjust\r\n"
    );
    assert_eq!(stat_number(&stats(&mut c), "limit_maxbytes"), 1024 * MB);
    assert_eq!(c.line("cache_memlimit 32\r\n"), "OK\r\n");
}

#[test]
fn stats_report_the_index() {
    let s = server();
    let mut c = s.connect();
    let names = [
        "conn_yields",
        "hash_power_level",
        "hash_bytes",
        "hash_is_expanding",
    ];
    let index = |c: &mut ferrocache_testkit::Conn| {
        let all = stats(c);
        let order: Vec<&str> = all
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| names.contains(n))
            .collect();
        assert_eq!(order, names, "memcached's names, in its order");
        all
    };
    let empty = index(&mut c);
    let mut batch = String::new();
    for i in 0..20_000 {
        batch.push_str(&format!("set key:{i} 0 0 1 noreply\r\nx\r\n"));
    }
    c.send(batch);
    assert_eq!(
        c.request("get key:19999\r\n", "END\r\n"),
        "VALUE key:19999 0 1\r\nx\r\nEND\r\n"
    );
    let full = index(&mut c);
    let (bytes, empty_bytes) = (
        stat_number(&full, "hash_bytes"),
        stat_number(&empty, "hash_bytes"),
    );
    assert!(
        bytes > empty_bytes,
        "hash_bytes {bytes} after {empty_bytes}"
    );
    // The index takes at least the 20,000 items it holds.
    let power = stat_number(&full, "hash_power_level");
    assert!(power >= 14, "hash_power_level {power}");
    assert!(
        stat_number(&full, "hash_is_expanding") <= 1,
        "hash_is_expanding is 0 or 1"
    );
}

/// An index table that stops taking new keys mid-growth would keep its old buckets until its
/// next insert; the server's once-a-second maintenance finishes it. Growths are spread only in
/// tables of 1,024 buckets or more, which takes about two million keys.
#[test]
fn index_growths_finish_when_the_sets_stop() {
    let s = Server::ferrocached(&["-m", "512"]);
    let mut c = s.connect();
    let mut sent = 0;
    let mut send = |c: &mut ferrocache_testkit::Conn, n: usize| {
        let mut batch = String::new();
        for i in sent..sent + n {
            batch.push_str(&format!("set k{i} 0 0 1 noreply\r\nx\r\n"));
        }
        c.send(batch);
        sent += n;
        sent
    };
    for _ in 0..20 {
        send(&mut c, 100_000);
    }
    // Stop where a growth is under way (each lasts a few thousand sets). Each check reads one
    // reply, so that its numbers are of the same moment.
    let (sent, growing) = loop {
        let sent = send(&mut c, 20_000);
        let now = stats(&mut c);
        if stat(&now, "hash_is_expanding") == "1" {
            break (sent.to_string(), now);
        }
        assert!(sent < 4_000_000, "no growth seen under way");
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let done = loop {
        let now = stats(&mut c);
        if stat(&now, "hash_is_expanding") == "0" {
            break now;
        }
        assert!(std::time::Instant::now() < deadline, "still growing");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        stat_number(&done, "hash_bytes") < stat_number(&growing, "hash_bytes"),
        "old buckets freed"
    );
    assert_eq!(stat(&growing, "curr_items"), sent);
    assert_eq!(stat(&done, "curr_items"), sent);
    assert_eq!(stat(&done, "evictions"), "0");
}

#[test]
fn meta_commands() {
    let s = server();
    let mut c = s.connect();
    assert_eq!(c.line("mn\r\n"), "MN\r\n");
    assert_eq!(c.line("ms foo 3 T100 F5\r\nbar\r\n"), "HD\r\n");
    assert_eq!(
        c.request("mg foo v f s t k O123\r\n", "bar\r\n"),
        "VA 3 f5 s3 t100 kfoo O123\r\nbar\r\n"
    );
    assert_eq!(c.line("mg missing O5 k v\r\n"), "EN O5 kmissing\r\n");
    c.send("mg missing v q\r\nms q 1 q\r\nz\r\n");
    assert_eq!(c.line("mn\r\n"), "MN\r\n", "q hides EN and HD");
    assert_eq!(c.line("ms foo 1 ME\r\nx\r\n"), "NS\r\n");
    assert_eq!(
        c.line("ms x 2 MZ\r\nhi\r\n"),
        "CLIENT_ERROR invalid mode for ms M token\r\n"
    );
    assert_eq!(c.line("md foo O1 k\r\n"), "HD O1 kfoo\r\n");
    assert_eq!(c.line("md foo\r\n"), "NF\r\n");
    assert_eq!(c.request("ma n N0 J10 v\r\n", "10\r\n"), "VA 2\r\n10\r\n");
    assert_eq!(c.request("ma n MD D3 v\r\n", "7\r\n"), "VA 1\r\n7\r\n");
    assert_eq!(c.line("ma nope\r\n"), "NF\r\n");
    assert_eq!(c.line("mg foo f f\r\n"), "CLIENT_ERROR duplicate flag\r\n");
}

/// A binary-protocol frame: header, extras, key, value.
fn frame(opcode: u8, key: &[u8], extras: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80, opcode];
    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
    out.push(extras.len() as u8);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&((extras.len() + key.len() + value.len()) as u32).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 42]);
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(extras);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    out
}

#[test]
fn binary_protocol_is_negotiated_per_connection() {
    let s = server();
    let mut c = s.connect();
    let mut request = frame(0x01, b"k", &[0, 0, 0, 9, 0, 0, 0, 0], b"value");
    request.extend(frame(0x00, b"k", &[], b""));
    request.extend(frame(0x00, b"missing", &[], b""));
    c.send(&request);
    let set = c.read_exact(24);
    assert_eq!(&set[..2], &[0x81, 0x01]);
    assert_eq!(&set[6..8], &[0, 0], "status OK");
    assert_eq!(&set[12..16], &[0, 0, 0, 42], "opaque echoed");
    let get = c.read_exact(24 + 4 + 5);
    assert_eq!(&get[6..8], &[0, 0]);
    assert_eq!(&get[24..28], &9u32.to_be_bytes(), "flags in the extras");
    assert_eq!(&get[28..], b"value");
    let miss = c.read_exact(24 + 9);
    assert_eq!(&miss[6..8], &[0, 1], "key not found");
    assert_eq!(&miss[24..], b"Not found");
    // The text protocol still works on other connections.
    let mut text = s.connect();
    assert_eq!(
        text.request("get k\r\n", "END\r\n"),
        "VALUE k 9 5\r\nvalue\r\nEND\r\n"
    );
}
