//! `-e <file>` (the restartable cache) and SIGUSR1, against memcached: stopped gracefully, the
//! server finds its items again at the next start with the same `-e`; stopped any other way, it
//! starts empty.

use std::path::PathBuf;
use std::time::Duration;

use ferrocache_testkit::{Flavor, Server};

/// A `-e` path in a directory of its own, removed with what the servers left there (memcached's
/// memory file is as large as its `-m`) when the test is done with it.
struct MemoryFile {
    dir: PathBuf,
    path: PathBuf,
}

impl Drop for MemoryFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn memory_file(name: &str) -> MemoryFile {
    let dir =
        std::env::temp_dir().join(format!("ferrocache-restart-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("cache");
    MemoryFile { dir, path }
}

/// Sends SIGUSR1 and waits for the clean exit a graceful stop makes.
fn stop_gracefully(s: &mut Server) {
    s.signal("USR1");
    assert_eq!(s.wait_exit(Duration::from_secs(10)), Some(0));
}

fn start(flavor: Flavor, file: &std::path::Path) -> Server {
    Server::start(flavor, &["-A", "-e", file.to_str().expect("utf-8 path")])
}

/// Sets items, stops the server with `stop`, waits `down`, starts it again with the same `-e` and
/// returns what a few reads answer then, with the TTL `mg` reports.
fn restarted(flavor: Flavor, file: &std::path::Path, stop: &str, down: Duration) -> (String, u32) {
    let mut s = start(flavor, file);
    let mut c = s.connect();
    for (line, reply) in [
        ("set a 5 0 3\r\nabc\r\n", "STORED\r\n"),
        ("set b 7 100 2\r\nxy\r\n", "STORED\r\n"),
        ("set c 0 2 1\r\nz\r\n", "STORED\r\n"),
        ("set big 1 0 100000\r\n", ""),
    ] {
        if reply.is_empty() {
            c.send(line);
            assert_eq!(
                c.line(&format!("{}\r\n", "v".repeat(100_000))),
                "STORED\r\n"
            );
        } else {
            assert_eq!(c.line(line), reply);
        }
    }
    // A key a meta client sent base64-encoded ("meta").
    assert_eq!(c.line("ms bWV0YQ== 2 b\r\nhi\r\n"), "HD\r\n");
    // A CAS id a client holds for a, and one for a version of d that was then replaced.
    let cas_of = |c: &mut ferrocache_testkit::Conn, key: &str| -> u64 {
        let reply = c.request(format!("gets {key}\r\n"), "END\r\n");
        let header = reply.lines().next().expect("VALUE line");
        header
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("cas")
    };
    let held = cas_of(&mut c, "a");
    assert_eq!(c.line("set d 0 0 1\r\n1\r\n"), "STORED\r\n");
    let stale = cas_of(&mut c, "d");
    assert_eq!(c.line("set d 0 0 1\r\n2\r\n"), "STORED\r\n");
    match stop {
        "shutdown graceful" => {
            c.send("shutdown graceful\r\n");
        }
        signal => s.signal(signal),
    }
    assert_eq!(s.wait_exit(Duration::from_secs(10)), Some(0), "{stop}");
    std::thread::sleep(down);
    let s = start(flavor, file);
    let mut c = s.connect();
    let mut seen = c.request("get a b c meta\r\n", "END\r\n");
    seen += &c.request("mg bWV0YQ== b k f v\r\nmn\r\n", "MN\r\n");
    let big = c.request("get big\r\n", "END\r\n");
    let whole = format!("VALUE big 1 100000\r\n{}\r\nEND\r\n", "v".repeat(100_000));
    seen += if big == whole {
        "big kept\r\n"
    } else {
        "big lost\r\n"
    };
    // The id held still works; the stale one matches no newer version.
    seen += &c.line(&format!("cas a 9 0 3 {held}\r\nnew\r\n"));
    seen += &c.line(&format!("cas d 0 0 1 {stale}\r\n3\r\n"));
    let ttl = c.line("mg b t\r\n");
    let ttl = ttl
        .strip_prefix("HD t")
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    (seen, ttl)
}

#[test]
fn a_graceful_stop_keeps_the_cache_across_a_restart_as_memcached() {
    // memcached refuses its saved state when restarted within about a second of the stop
    // ("restart incompatible due to setting for [stop_time]"), so both wait 3 s: c (2 s) expires
    // meanwhile, and b's TTL goes on running.
    let mut seen = Vec::new();
    for flavor in [Flavor::Memcached, Flavor::Ferrocached] {
        for stop in ["USR1", "shutdown graceful"] {
            let file = memory_file(&format!("{flavor:?}-{}", stop.replace(' ', "-")));
            let (got, ttl) = restarted(flavor, &file.path, stop, Duration::from_secs(3));
            assert!((90..=97).contains(&ttl), "{flavor:?} {stop}: b's TTL {ttl}");
            seen.push(got);
        }
    }
    let want = "VALUE a 5 3\r\nabc\r\nVALUE b 7 2\r\nxy\r\nVALUE meta 0 2\r\nhi\r\nEND\r\n\
                VA 2 kbWV0YQ== b f0\r\nhi\r\nMN\r\nbig kept\r\nSTORED\r\nEXISTS\r\n";
    for got in &seen {
        assert_eq!(got, want);
    }
}

#[test]
fn any_other_stop_starts_empty() {
    for flavor in [Flavor::Memcached, Flavor::Ferrocached] {
        let file = memory_file(&format!("{flavor:?}-term"));
        let (got, _) = restarted(flavor, &file.path, "TERM", Duration::from_millis(1100));
        assert_eq!(
            got, "END\r\nEN kbWV0YQ== b\r\nMN\r\nbig lost\r\nNOT_FOUND\r\nNOT_FOUND\r\n",
            "{flavor:?}"
        );
    }
    // Without -e, SIGUSR1 is a graceful stop too (its default action would kill the server).
    let mut s = Server::ferrocached(&[]);
    stop_gracefully(&mut s);
}

#[test]
fn a_file_that_is_not_a_saved_cache_is_dropped_and_the_server_starts() {
    let file = memory_file("junk");
    std::fs::write(&file.path, b"not a cache").expect("write");
    let s = start(Flavor::Ferrocached, &file.path);
    let mut c = s.connect();
    assert_eq!(c.request("get a\r\n", "END\r\n"), "END\r\n");
    assert!(!file.path.exists(), "the file is read once");
    assert!(
        s.stderr().contains("could not restore the cache"),
        "{}",
        s.stderr()
    );
    // stats settings names the file, as memcached's does; "(null)" without -e.
    let settings = c.request("stats settings\r\n", "END\r\n");
    let line = format!("STAT memory_file {}\r\n", file.path.display());
    assert!(settings.ends_with(&format!("STAT num_napi_ids (null)\r\n{line}END\r\n")));
    for flavor in [Flavor::Memcached, Flavor::Ferrocached] {
        let server = Server::start(flavor, &[]);
        let mut c = server.connect();
        let settings = c.request("stats settings\r\n", "END\r\n");
        let end = "STAT num_napi_ids (null)\r\nSTAT memory_file (null)\r\nEND\r\n";
        assert!(settings.ends_with(end), "{flavor:?}");
    }
}

#[test]
fn a_file_cut_short_gives_back_the_items_before_the_cut() {
    let file = memory_file("cut");
    let mut s = start(Flavor::Ferrocached, &file.path);
    let mut c = s.connect();
    for i in 0..100 {
        assert_eq!(
            c.line(&format!("set k{i} {i} 0 10\r\n0123456789\r\n")),
            "STORED\r\n"
        );
    }
    stop_gracefully(&mut s);
    // Cut the last item's value and the end record.
    let bytes = std::fs::read(&file.path).expect("saved");
    std::fs::write(&file.path, &bytes[..bytes.len() - 12]).expect("cut");
    let s = start(Flavor::Ferrocached, &file.path);
    let mut c = s.connect();
    let stats = c.request("stats\r\n", "END\r\n");
    assert!(stats.contains("STAT curr_items 99\r\n"), "{stats}");
    assert!(
        stats.contains("STAT total_items 0\r\n"),
        "counters start at zero"
    );
    assert!(
        s.stderr().contains("the file was cut short"),
        "{}",
        s.stderr()
    );
    assert!(!file.path.exists());
}

#[test]
fn a_pending_flush_all_survives_the_restart_as_memcached() {
    // flush_all 6: the item comes back after 3 s down, and goes at the flush's time.
    for flavor in [Flavor::Memcached, Flavor::Ferrocached] {
        let file = memory_file(&format!("{flavor:?}-flush"));
        let mut s = start(flavor, &file.path);
        let mut c = s.connect();
        let set_at = std::time::Instant::now();
        assert_eq!(c.line("set a 0 0 1\r\nx\r\n"), "STORED\r\n");
        assert_eq!(c.line("flush_all 6\r\n"), "OK\r\n");
        stop_gracefully(&mut s);
        std::thread::sleep(Duration::from_secs(3));
        let s = start(flavor, &file.path);
        let mut c = s.connect();
        assert_eq!(
            c.request("get a\r\n", "END\r\n"),
            "VALUE a 0 1\r\nx\r\nEND\r\n",
            "{flavor:?}: before the flush's time"
        );
        std::thread::sleep(Duration::from_secs(7).saturating_sub(set_at.elapsed()));
        assert_eq!(
            c.request("get a\r\n", "END\r\n"),
            "END\r\n",
            "{flavor:?}: after it"
        );
    }
    // A flush whose time came while the server was down takes the items with it.
    let file = memory_file("flushed-while-down");
    let mut s = start(Flavor::Ferrocached, &file.path);
    let mut c = s.connect();
    assert_eq!(c.line("set a 0 0 1\r\nx\r\n"), "STORED\r\n");
    assert_eq!(c.line("flush_all 2\r\n"), "OK\r\n");
    stop_gracefully(&mut s);
    std::thread::sleep(Duration::from_secs(3));
    let s = start(Flavor::Ferrocached, &file.path);
    let mut c = s.connect();
    assert_eq!(c.request("get a\r\n", "END\r\n"), "END\r\n");
    assert!(
        s.stderr().contains("1 expired or flushed meanwhile"),
        "{}",
        s.stderr()
    );
}

/// A file saved from a larger `-m` than the next start has: the restart keeps what fits, the
/// newest items (each queue comes back oldest first, so the oldest are evicted first), says how
/// many it evicted again, and stays within its `-m`.
#[test]
fn a_restart_into_a_smaller_memory_keeps_the_newest_items() {
    let file = memory_file("smaller");
    let path = file.path.to_str().expect("utf-8 path");
    let mut s = Server::start(Flavor::Ferrocached, &["-m", "64", "-e", path]);
    let mut c = s.connect();
    let value = "v".repeat(1000);
    let mut sets = String::new();
    for i in 0..40_000 {
        sets += &format!("set k{i} 0 0 1000 noreply\r\n{value}\r\n");
    }
    c.send(sets);
    assert_eq!(c.line("mn\r\n"), "MN\r\n");
    let stats = c.request("stats\r\n", "END\r\n");
    assert!(stats.contains("STAT curr_items 40000\r\n"), "{stats}");
    assert!(stats.contains("STAT evictions 0\r\n"), "{stats}");
    stop_gracefully(&mut s);

    let s = Server::start(Flavor::Ferrocached, &["-m", "16", "-e", path]);
    let mut c = s.connect();
    let stats = c.request("stats\r\n", "END\r\n");
    let stat = |name: &str| -> u64 {
        let line = stats
            .lines()
            .find(|l| l.starts_with(&format!("STAT {name} ")))
            .unwrap_or_else(|| panic!("no {name} in {stats}"));
        line.rsplit(' ')
            .next()
            .expect("value")
            .parse()
            .expect("number")
    };
    let held = stat("curr_items");
    // 16 MB of items of about a kilobyte.
    assert!((10_000..16_384).contains(&held), "{stats}");
    assert!(stat("bytes") <= 16 << 20, "{stats}");
    let log = s.stderr();
    assert!(log.contains("restored 40000 items"), "{log}");
    assert!(
        log.contains(&format!("{} evicted again", 40_000 - held)),
        "{log}"
    );
    // The items come back oldest first (in the order their segments opened, across shards), so
    // those evicted to make room are the oldest: the newest 10,000 are all there, the oldest
    // 20,000 all gone (`q`: a miss says nothing, a hit says HD).
    let reads = |range: std::ops::Range<usize>| {
        let gets: String = range.map(|i| format!("mg k{i} q\r\n")).collect();
        gets + "mn\r\n"
    };
    let newest = c.request(reads(30_000..40_000), "MN\r\n");
    assert_eq!(newest, "HD\r\n".repeat(10_000) + "MN\r\n");
    assert_eq!(c.request(reads(0..20_000), "MN\r\n"), "MN\r\n");
}
