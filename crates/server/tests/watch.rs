//! `watch` over real sockets: the lines memcached streams, compared with its own, the eviction
//! lines, the notice a slow watcher gets, and the watcher limit.

use std::time::{Duration, Instant};

use ferrocache_testkit::{Conn, Flavor, Server};

/// Reads a watcher's lines until `done` says so (or 10 s pass).
fn read_lines(watcher: &mut Conn, mut done: impl FnMut(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut text = String::new();
    loop {
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if done(&lines) || Instant::now() > deadline {
            return lines;
        }
        let (bytes, closed) = watcher.drain(Duration::from_millis(100));
        text.push_str(&String::from_utf8_lossy(&bytes));
        if closed {
            return text.lines().map(str::to_string).collect();
        }
    }
}

/// A line without what differs from run to run: the time, the line number, the connection's
/// number and port.
fn normalised(line: &str) -> String {
    line.split(' ')
        .filter(|f| !f.starts_with("ts=") && !f.starts_with("gid="))
        .map(|f| {
            if f.starts_with("cfd=") {
                "cfd=N"
            } else if f.starts_with("rport=") {
                "rport=P"
            } else {
                f
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn watch_streams_the_lines_memcached_streams() {
    let commands = [
        "set wk 5 100 3\r\nabc\r\n",
        "get wk nokey\r\n",
        "gets wk\r\n",
        "gat 50 wk\r\n",
        "touch wk 10\r\n",
        "delete wk\r\n",
        "add wk 0 0 1\r\nx\r\n",
        "add wk 0 0 1\r\nx\r\n",
        "incr wk 1\r\n",
        "mg wk v\r\n",
        "ms wk2 2\r\nhi\r\n",
        "md wk2\r\n",
        "append wk 0 0 1\r\ny\r\n",
        "prepend nope 0 0 1\r\ny\r\n",
        "cas wk 0 0 1 1\r\nz\r\n",
        "replace nope 0 0 1\r\nz\r\n",
        "get a%20b \u{e9}\r\n",
        "quit\r\n",
    ];
    let mut streams = Vec::new();
    for flavor in [Flavor::Memcached, Flavor::Ferrocached] {
        let server = Server::start(flavor, &[]);
        let mut watcher = server.connect();
        assert_eq!(
            watcher.line("watch fetchers mutations connevents\r\n"),
            "OK\r\n"
        );
        let mut client = server.connect();
        for command in commands {
            client.send(command);
            if command != "quit\r\n" {
                client.drain(Duration::from_millis(20));
            }
        }
        let lines = read_lines(&mut watcher, |lines| {
            lines.iter().any(|l| l.contains("type=conn_close"))
        });
        for line in &lines {
            let fields: Vec<&str> = line.split(' ').collect();
            assert!(
                fields[0].starts_with("ts=") && fields[1].starts_with("gid="),
                "{line}"
            );
        }
        streams.push(lines.iter().map(|l| normalised(l)).collect::<Vec<_>>());
    }
    assert_eq!(streams[1], streams[0]);
    assert_eq!(streams[1].len(), 29, "{:#?}", streams[1]);
}

#[test]
fn watch_evictions_names_each_evicted_item() {
    let server = Server::ferrocached(&["-m", "2"]);
    let mut watcher = server.connect();
    assert_eq!(watcher.line("watch evictions\r\n"), "OK\r\n");
    let mut client = server.connect();
    let value = "v".repeat(1000);
    let mut batch = String::new();
    for i in 0..4000u32 {
        let ttl = if i.is_multiple_of(2) { 0 } else { 3600 };
        batch.push_str(&format!("set k{i} 0 {ttl} 1000 noreply\r\n{value}\r\n"));
    }
    client.send(batch);
    client.line("mn\r\n");
    let evictions: usize = client
        .request("stats\r\n", "END\r\n")
        .lines()
        .find_map(|l| l.strip_prefix("STAT evictions "))
        .expect("evictions")
        .parse()
        .expect("a number");
    assert!(evictions > 1000, "{evictions}");
    let lines = read_lines(&mut watcher, |lines| lines.len() >= evictions);
    assert_eq!(lines.len(), evictions, "one line per eviction");
    for line in &lines {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f[2], "type=eviction", "{line}");
        let key: usize = f[3].strip_prefix("key=k").expect(line).parse().expect(line);
        assert_eq!(f[4], "fetch=no");
        let ttl: i64 = f[5].strip_prefix("ttl=").expect(line).parse().expect(line);
        if key.is_multiple_of(2) {
            assert_eq!(ttl, -1, "{line}");
        } else {
            assert!((3590..=3600).contains(&ttl), "{line}");
        }
        assert!(f[6].starts_with("la="), "{line}");
        assert_eq!(&f[7..], ["clsid=1", "size=1000"], "{line}");
    }
}

/// A watcher that does not read loses lines once its queue and the socket's buffers are full, and
/// the next line it gets says how many: what it got and what it was told it lost add up.
#[test]
fn a_slow_watcher_is_told_what_it_lost() {
    let server = Server::ferrocached(&[]);
    let mut watcher = server.connect();
    assert_eq!(watcher.line("watch fetchers\r\n"), "OK\r\n");
    let mut client = server.connect();
    let keys: Vec<String> = (0..100).map(|i| format!("missing{i}")).collect();
    let get = format!("get {}\r\n", keys.join(" "));
    let rounds = 1500;
    for _ in 0..rounds {
        client.request(&get, "END\r\n");
    }
    // Read what was queued (until the stream goes quiet), then one more lookup, whose line brings
    // the notice.
    let mut text = String::new();
    loop {
        let (bytes, _) = watcher.drain(Duration::from_millis(300));
        if bytes.is_empty() {
            break;
        }
        text.push_str(&String::from_utf8_lossy(&bytes));
    }
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    client.request("get last\r\n", "END\r\n");
    lines.extend(read_lines(&mut watcher, |l| {
        l.last().is_some_and(|l| l.contains("key=last "))
    }));
    let skipped: u64 = lines
        .iter()
        .filter_map(|l| l.strip_prefix("skipped="))
        .map(|n| n.parse::<u64>().expect("a count"))
        .sum();
    let logged = lines.iter().filter(|l| l.contains("type=item_get")).count() as u64;
    assert!(skipped > 0, "{logged} lines, none lost");
    assert_eq!(logged + skipped, rounds * 100 + 1);
    // The logger's stats say the same.
    let stats = client.request("stats\r\n", "END\r\n");
    let stat = |name: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("STAT {name} ")))
            .unwrap_or_else(|| panic!("no {name}"))
            .parse()
            .expect("a number")
    };
    assert_eq!(stat("log_worker_written"), rounds * 100 + 1);
    assert_eq!(stat("log_watcher_sent"), logged);
    assert_eq!(stat("log_watcher_skipped"), skipped);
    assert_eq!(stat("log_worker_dropped"), 0);
    assert_eq!(stat("log_watchers"), 1);
}

#[test]
fn twenty_watchers_at_most_as_in_memcached() {
    for flavor in [Flavor::Memcached, Flavor::Ferrocached] {
        let server = Server::start(flavor, &[]);
        let mut watchers: Vec<Conn> = (0..20).map(|_| server.connect()).collect();
        for w in &mut watchers {
            assert_eq!(w.line("watch\r\n"), "OK\r\n");
        }
        let mut one_more = server.connect();
        assert_eq!(
            one_more.line("watch\r\n"),
            "WATCHER_TOO_MANY log watcher limit reached\r\n",
            "{flavor:?}"
        );
        // The refused connection goes on as a normal one.
        assert!(one_more.line("version\r\n").starts_with("VERSION "));
        // A watcher that leaves makes room.
        drop(watchers.pop());
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut again = server.connect();
        loop {
            let reply = again.line("watch\r\n");
            if reply == "OK\r\n" {
                break;
            }
            assert!(Instant::now() < deadline, "{flavor:?}: {reply}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
