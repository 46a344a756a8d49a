//! The command line: memcached's flags, refusals of bad values, `-h`, limits and signals.

use std::process::Command;
use std::time::Duration;

use ferrocache_testkit::{ferrocached_bin, Server};

fn exit_code(args: &[&str]) -> (i32, String) {
    let out = Command::new(ferrocached_bin())
        .args(args)
        .output()
        .expect("run ferrocached");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

#[test]
fn bad_values_exit_non_zero_with_a_message() {
    for args in [
        &["-c", "0"][..],
        &["-t", "0"],
        &["-I", "1000"],
        &["-m", "64", "-I", "40m"],
        &["-l", "no-such-host.invalid", "-p", "-1"],
        &["-B", "nonsense"],
        &["--no-such-flag"],
    ] {
        let (code, message) = exit_code(args);
        assert_ne!(code, 0, "{args:?} must fail");
        assert!(!message.trim().is_empty(), "{args:?} must say why");
    }
}

/// memcached 1.6.18 exits 1 for some refusals and 64 (EX_USAGE) for others; scripts and service
/// managers that start it see the same status from ferrocached (checked against memcached with the
/// same flags).
#[test]
fn refusals_exit_with_memcacheds_status() {
    for (args, status, says) in [
        (
            &["-c", "0"][..],
            1,
            "Maximum connections must be greater than 0",
        ),
        (
            &["-c", "abc"],
            1,
            "Maximum connections must be greater than 0",
        ),
        (&["-t", "0"], 1, "Number of threads must be greater than 0"),
        (
            &["-R", "0"],
            1,
            "Number of requests per event must be greater than 0",
        ),
        (&["-f", "1"], 1, "Factor must be greater than 1"),
        (&["-f", "abc"], 1, "Factor must be greater than 1"),
        (&["-n", "0"], 1, "Chunk size must be greater than 0"),
        (&["-o", "bogus_opt"], 1, "Illegal suboption \"bogus_opt\""),
        (
            &["-o", "lru_crawler_sleep=2000000"],
            1,
            "LRU crawler sleep must be between 0 and 1 second",
        ),
        (
            &["-o", "lru_crawler_sleep=-1"],
            1,
            "LRU crawler sleep must be between 0 and 1 second",
        ),
        (
            &["-o", "lru_crawler_sleep"],
            1,
            "Missing lru_crawler_sleep value",
        ),
        (
            &["-o", "lru_crawler_tocrawl=-5"],
            1,
            "lru_crawler_tocrawl takes a numeric 32bit value",
        ),
        (&["-z"], 1, "-z"),
        (&["--bogus"], 1, "--bogus"),
        (&["-D"], 1, "-D"),
        (&["-S", "-p", "11290"], 1, "MEMCACHED_SASL_PWDB"),
        (
            &["-Y", "/nonexistent/authfile"],
            1,
            "Could not open authfile",
        ),
        (
            &["-Z", "-p", "11290", "-o", "ssl_verify_mode=9"],
            1,
            "Invalid ssl_verify_mode",
        ),
        (
            &["-I", "1000"],
            64,
            "Item max size cannot be less than 1024 bytes.",
        ),
        (
            &["-m", "64", "-I", "40m"],
            64,
            "Cannot set item size limit higher than 1/2 of memory max.",
        ),
        (
            &["-B", "nonsense"],
            64,
            "Invalid value for binding protocol",
        ),
        (&["-p", "99999"], 64, "ERROR: Invalid port number 99999."),
        // -I below memcached's default slab_chunk_max (512k) needs a smaller one, and the two
        // must divide each other and the 1 MB slab page.
        (
            &["-I", "1k"],
            64,
            "slab_chunk_max (bytes: 524288) cannot be larger than -I (item_size_max 1024)",
        ),
        (
            &["-I", "600k"],
            64,
            "-I (item_size_max: 614400) must be evenly divisible by slab_chunk_max (bytes: 524288)",
        ),
        (
            &["-I", "2m", "-o", "slab_chunk_max=2097152"],
            64,
            "slab_chunk_max (bytes: 2097152) must divide evenly into 1048576 (slab_page_size)",
        ),
        (
            &["-o", "slab_chunk_max=x"],
            64,
            "could not parse argument to slab_chunk_max",
        ),
        (
            &["-o", "slab_chunk_max"],
            64,
            "Missing slab_chunk_max argument",
        ),
        (
            &["-Z", "-p", "0"],
            64,
            "You cannot enable SSL without a TCP port",
        ),
        (
            &["-S", "-B", "ascii", "-p", "11290"],
            64,
            "You cannot allow the ASCII protocol while using SASL",
        ),
    ] {
        let out = Command::new(ferrocached_bin())
            .args(args)
            .env_remove("MEMCACHED_SASL_PWDB")
            .output()
            .expect("run ferrocached");
        let text = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(status), "{args:?}: {text}");
        assert!(text.contains(says), "{args:?}: {text}");
    }
    // Accepted and ignored (no slabs here), as memcached accepts them.
    let s = Server::ferrocached(&["-f", "1.25", "-n", "48"]);
    assert!(s.connect().line("version\r\n").starts_with("VERSION"));
    // A small -I with a chunk size that fits starts, and its limit holds.
    let s = Server::ferrocached(&["-I", "1k", "-o", "slab_chunk_max=1024"]);
    let mut c = s.connect();
    let big = format!("set k 0 0 1100\r\n{}\r\n", "v".repeat(1100));
    assert_eq!(c.line(&big), "SERVER_ERROR object too large for cache\r\n");
}

#[test]
fn help_lists_flags_and_exits_zero() {
    let (code, text) = exit_code(&["-h"]);
    assert_eq!(code, 0);
    for flag in [
        "-p, --port",
        "-m, --memory-limit",
        "-c, --conn-limit",
        "-I, --max-item-size",
    ] {
        assert!(text.contains(flag), "help lacks {flag}");
    }
    // -V and -i print and exit 0 too, as memcached's do (neither starts a server).
    for (flag, says) in [("-V", "memcached 1.6.18"), ("-i", "license")] {
        let (code, text) = exit_code(&[flag, "-p", "-1"]);
        assert_eq!(code, 0, "{flag}: {text}");
        assert!(text.contains(says), "{flag}: {text}");
    }
}

#[test]
fn unimplemented_flags_are_announced() {
    let s = Server::ferrocached(&["-d", "-o", "hashpower=20"]);
    let mut c = s.connect();
    assert!(c.line("version\r\n").starts_with("VERSION"));
    let stderr = s.stderr();
    assert!(stderr.contains("-d (daemon)"), "{stderr}");
    assert!(stderr.contains("hashpower"), "{stderr}");
}

#[test]
fn connection_limit_is_enforced() {
    let s = Server::ferrocached(&["-c", "2"]);
    let mut a = s.connect();
    let mut b = s.connect();
    assert!(a.line("version\r\n").starts_with("VERSION"));
    assert!(b.line("version\r\n").starts_with("VERSION"));
    let mut c = s.connect();
    let (reply, closed) = c.drain(Duration::from_secs(5));
    assert_eq!(
        String::from_utf8_lossy(&reply),
        "ERROR Too many open connections\r\n"
    );
    assert!(closed);
    drop(a);
    // Once a slot frees up, new clients get in again.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut d = s.connect();
        d.send("version\r\n");
        let (reply, _) = d.drain(Duration::from_millis(500));
        if reply.starts_with(b"VERSION") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "slot never freed");
    }
}

#[test]
fn shutdown_command_with_a_stops_the_server() {
    let mut s = Server::ferrocached(&["-A"]);
    let mut c = s.connect();
    c.send("shutdown\r\n");
    assert_eq!(s.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn sigterm_and_sigint_stop_cleanly() {
    for sig in ["TERM", "INT"] {
        let mut s = Server::ferrocached(&[]);
        s.signal(sig);
        assert_eq!(s.wait_exit(Duration::from_secs(10)), Some(0), "SIG{sig}");
    }
}

#[test]
fn memory_limit_evicts_and_m_refuses() {
    let s = Server::ferrocached(&["-m", "2"]);
    let mut c = s.connect();
    let value = "v".repeat(10_000);
    for i in 0..1000 {
        assert_eq!(
            c.line(&format!("set k{i} 0 0 10000\r\n{value}\r\n")),
            "STORED\r\n"
        );
    }
    let stats = c.request("stats\r\n", "END\r\n");
    let evictions: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("STAT evictions "))
        .and_then(|v| v.trim().parse().ok())
        .expect("evictions stat");
    assert!(evictions > 0, "10 MB into -m 2 must evict");

    let s = Server::ferrocached(&["-m", "2", "-M"]);
    let mut c = s.connect();
    let mut refused = false;
    for i in 0..1000 {
        let reply = c.line(&format!("set k{i} 0 0 10000\r\n{value}\r\n"));
        if reply == "SERVER_ERROR out of memory storing object\r\n" {
            refused = true;
            break;
        }
        assert_eq!(reply, "STORED\r\n");
    }
    assert!(refused, "-M must refuse instead of evicting");
}

#[test]
fn a_memory_limit_larger_than_the_machine_starts() {
    // memcached starts with any -m: it allocates as it fills. 95 TB here aborted at start (its
    // ghost, 1.5 TB, was allocated up front) before the ghost was capped.
    let s = Server::ferrocached(&["-m", "100000000"]);
    let mut c = s.connect();
    assert_eq!(c.line("set k 0 0 1\r\nv\r\n"), "STORED\r\n");
    assert_eq!(
        c.request("get k\r\n", "END\r\n"),
        "VALUE k 0 1\r\nv\r\nEND\r\n"
    );
    let stats = c.request("stats\r\n", "END\r\n");
    assert!(stats.contains("STAT limit_maxbytes 104857600000000\r\n"));
}

#[test]
fn disable_cas_reports_zero() {
    let s = Server::ferrocached(&["-C"]);
    let mut c = s.connect();
    c.line("set a 0 0 1\r\nx\r\n");
    assert_eq!(
        c.request("gets a\r\n", "END\r\n"),
        "VALUE a 0 1 0\r\nx\r\nEND\r\n"
    );
}

#[test]
fn unix_socket() {
    use std::io::{Read, Write};
    let dir = std::env::temp_dir().join(format!("ferrocache-unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join("sock");
    let mut child = Command::new(ferrocached_bin())
        .args(["-s", path.to_str().expect("utf-8 path"), "-a", "600"])
        .spawn()
        .expect("start ferrocached");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        if let Ok(s) = std::os::unix::net::UnixStream::connect(&path) {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "socket never appeared"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
        .write_all(b"set u 0 0 1\r\nx\r\nget u\r\n")
        .expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !got.ends_with(b"END\r\n") {
        let n = match stream.read(&mut buf) {
            // A read with a timeout is not restarted after SIGCHLD from another test's child.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => other.expect("read"),
        };
        assert!(n > 0, "closed early");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"STORED\r\nVALUE u 0 1\r\nx\r\nEND\r\n");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn verbose_levels_log_to_stderr() {
    let quiet = Server::ferrocached(&[]);
    quiet.connect().line("set a 0 0 1\r\nx\r\n");
    let loud = Server::ferrocached(&["-vv"]);
    loud.connect().line("set secret_key 0 0 1\r\nx\r\n");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !loud.stderr().contains("set secret_key") {
        assert!(
            std::time::Instant::now() < deadline,
            "-vv did not log the command: {}",
            loud.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!quiet.stderr().contains("set a"), "no -v: no command log");
    assert!(
        !loud.stderr().contains("\u{1b}["),
        "no colour codes when stderr is a file"
    );
}

#[test]
fn idle_timeout_closes_quiet_connections() {
    let s = Server::ferrocached(&["-o", "idle_timeout=1"]);
    let mut idle = s.connect();
    assert!(idle.line("version\r\n").starts_with("VERSION"));
    let (_, closed) = idle.drain(Duration::from_secs(5));
    assert!(closed, "an idle connection is closed after idle_timeout");
    let mut fresh = s.connect();
    assert!(fresh.line("version\r\n").starts_with("VERSION"));
}
