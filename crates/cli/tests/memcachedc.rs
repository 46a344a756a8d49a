//! memcachedc against real servers: the documented command shapes, output and exit codes
//! (0 hit/stored, 1 miss/not stored, 2 error). The servers are Debian's memcached, the
//! reference; `CLIENT_TEST_SERVER=ferrocached` runs the same tests against ours.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use ferrocache_testkit::{Flavor, Server};

/// A server to test against: memcached unless `CLIENT_TEST_SERVER=ferrocached`.
fn start_server() -> Server {
    Server::start(flavor(), &[])
}

fn flavor() -> Flavor {
    match std::env::var("CLIENT_TEST_SERVER").as_deref() {
        Err(_) | Ok("memcached") => Flavor::Memcached,
        Ok("ferrocached") => Flavor::Ferrocached,
        Ok(other) => panic!("CLIENT_TEST_SERVER must be memcached or ferrocached, not {other}"),
    }
}

fn memcachedc(servers: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_memcachedc"))
        .args(["-s", servers])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run memcachedc");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn addr(s: &Server) -> String {
    format!("127.0.0.1:{}", s.port())
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn set_from_stdin_lines_then_get() {
    let s = start_server();
    // The documented shape: -s host -p port.
    let port = s.port().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_memcachedc"))
        .args(["-s", "127.0.0.1", "-p", &port, "set"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"key value with spaces\nother 2\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "STORED\nSTORED\n");

    let out = memcachedc(&addr(&s), &["get", "key"], b"");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "value with spaces\n");
    let out = memcachedc(&addr(&s), &["get", "missing"], b"");
    assert_eq!(out.status.code(), Some(1));
    let out = memcachedc(&addr(&s), &["--json", "get", "key", "missing"], b"");
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["key"]["value"], "value with spaces");
    assert!(json["missing"].is_null());
}

#[test]
fn every_command_and_its_exit_code() {
    let s = start_server();
    let a = addr(&s);
    let code = |args: &[&str]| {
        let out = memcachedc(&a, args, b"");
        if out.status.code() == Some(2) {
            eprintln!("{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        out.status.code()
    };
    assert_eq!(
        code(&["--flags", "7", "--expire", "300", "set", "k", "v"]),
        Some(0)
    );
    assert_eq!(code(&["add", "k", "x"]), Some(1));
    assert_eq!(code(&["replace", "nope", "x"]), Some(1));
    assert_eq!(code(&["append", "k", "w"]), Some(0));
    assert_eq!(code(&["prepend", "k", "u"]), Some(0));
    let out = memcachedc(&a, &["--json", "gets", "k"], b"");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["k"]["value"], "uvw");
    assert_eq!(json["k"]["flags"], 7);
    let cas = json["k"]["cas"].as_u64().expect("cas").to_string();
    assert_eq!(code(&["cas", "k", "1", "new"]), Some(1), "stale cas");
    assert_eq!(code(&["cas", "k", &cas, "new"]), Some(0));
    assert_eq!(code(&["set", "n", "5"]), Some(0));
    assert_eq!(stdout(&memcachedc(&a, &["incr", "n", "10"], b"")), "15\n");
    assert_eq!(stdout(&memcachedc(&a, &["decr", "n"], b"")), "14\n");
    assert_eq!(code(&["incr", "nope"]), Some(1));
    assert_eq!(code(&["touch", "n", "100"]), Some(0));
    assert_eq!(code(&["gat", "100", "n"]), Some(0));
    assert_eq!(code(&["delete", "n"]), Some(0));
    assert_eq!(code(&["delete", "n"]), Some(1));
    assert!(stdout(&memcachedc(&a, &["version"], b"")).contains("1.6"));
    assert!(stdout(&memcachedc(&a, &["stats"], b"")).contains("\tcmd_get: "));
    let out = memcachedc(&a, &["--json", "stats", "settings"], b"");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json[&a]["maxbytes"], "67108864");
    assert_eq!(code(&["verbosity", "1"]), Some(0));
    assert_eq!(code(&["flush_all"]), Some(0));
    assert_eq!(code(&["get", "k"]), Some(1));
}

#[test]
fn binary_values_from_stdin_and_files() {
    let s = start_server();
    let a = addr(&s);
    let bytes: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    assert_eq!(
        memcachedc(&a, &["set", "bin"], &bytes).status.code(),
        Some(0)
    );
    let out = memcachedc(&a, &["get", "bin"], b"");
    assert_eq!(&out.stdout[..out.stdout.len() - 1], &bytes[..]);
    let path = std::env::temp_dir().join(format!("memcachedc-{}", std::process::id()));
    std::fs::write(&path, b"from a file\r\nwith crlf").expect("write file");
    let file = path.to_str().expect("utf-8");
    assert_eq!(
        memcachedc(&a, &["--file", file, "set", "f"], b"")
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        stdout(&memcachedc(&a, &["get", "f"], b"")),
        "from a file\r\nwith crlf\n"
    );
    let _ = std::fs::remove_file(path);
}

#[test]
fn json_keeps_binary_values_intact() {
    use base64::Engine;
    let s = start_server();
    let a = addr(&s);
    let bytes: Vec<u8> = vec![0xff, 0xfe, 0x00, b'a', 0x80, b'\n'];
    assert_eq!(
        memcachedc(&a, &["set", "bin"], &bytes).status.code(),
        Some(0)
    );
    assert_eq!(
        memcachedc(&a, &["set", "text", "h\u{e9}llo"], b"")
            .status
            .code(),
        Some(0)
    );
    let out = memcachedc(&a, &["--json", "get", "bin", "text"], b"");
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    // Not UTF-8: base64, never a lossy string that a script would take for the value.
    assert!(json["bin"].get("value").is_none(), "{json}");
    let encoded = json["bin"]["value_base64"].as_str().expect("value_base64");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("base64");
    assert_eq!(decoded, bytes);
    assert_eq!(json["text"]["value"], "h\u{e9}llo");
    assert!(json["text"].get("value_base64").is_none());
}

#[test]
fn errors_exit_2() {
    let s = start_server();
    let a = addr(&s);
    let out = memcachedc(&a, &["set", "bad key", "v"], b"");
    assert_eq!(out.status.code(), Some(2));
    let big = vec![b'x'; 2 * 1024 * 1024];
    assert_eq!(memcachedc(&a, &["set", "big"], &big).status.code(), Some(2));
    drop(s);
    let out = memcachedc(&a, &["get", "k"], b"");
    assert_eq!(
        out.status.code(),
        Some(2),
        "a dead server is an error, not a miss"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("Connection refused").count(),
        1,
        "the cause once: {stderr}"
    );
}

#[test]
fn many_servers_share_the_keys() {
    let servers: Vec<Server> = (0..3).map(|_| start_server()).collect();
    let list = servers.iter().map(addr).collect::<Vec<_>>().join(",");
    let lines: String = (0..90).map(|i| format!("key{i} value{i}\n")).collect();
    let out = memcachedc(&list, &["set"], lines.as_bytes());
    assert_eq!(out.status.code(), Some(0));
    for i in [0, 45, 89] {
        let out = memcachedc(&list, &["get", &format!("key{i}")], b"");
        assert_eq!(stdout(&out), format!("value{i}\n"));
    }
    let out = memcachedc(&list, &["--json", "stats"], b"");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let held: Vec<u64> = servers
        .iter()
        .map(|s| {
            json[addr(s)]["curr_items"]
                .as_str()
                .expect("curr_items")
                .parse()
                .expect("n")
        })
        .collect();
    assert_eq!(held.iter().sum::<u64>(), 90);
    assert!(held.iter().all(|&n| n > 0), "{held:?}");
}

#[test]
fn options_anywhere_and_several_keys_at_once() {
    let s = start_server();
    let a = addr(&s);
    assert_eq!(
        memcachedc(&a, &["set", "a", "1", "--flags", "3"], b"")
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        memcachedc(&a, &["set", "b", "2"], b"").status.code(),
        Some(0)
    );
    let out = memcachedc(&a, &["get", "a", "nope", "b"], b"");
    assert_eq!(out.status.code(), Some(1), "one key missing");
    assert_eq!(stdout(&out), "a 1\nb 2\n", "in the order asked");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "nope: not found\n");
    let out = memcachedc(&a, &["gats", "100", "a", "--json"], b"");
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["a"]["flags"], 3);
    assert!(json["a"]["cas"].as_u64().is_some());
    let out = memcachedc(&a, &["gets", "b"], b"");
    let line = stdout(&out);
    let (cas, value) = line.trim_end().split_once(' ').expect("cas value");
    assert!(cas.parse::<u64>().is_ok(), "{line:?}");
    assert_eq!(value, "2");
}

#[test]
fn noreply_commands_print_nothing_and_take_effect() {
    let s = start_server();
    let a = addr(&s);
    let out = memcachedc(&a, &["--noreply", "set"], b"k1 one\nk2 two\n");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stdout.is_empty(), "noreply prints nothing");
    let out = memcachedc(&a, &["--noreply", "add", "k1", "other"], b"");
    assert_eq!(
        out.status.code(),
        Some(0),
        "sent, so success: the outcome is unknown"
    );
    assert_eq!(stdout(&memcachedc(&a, &["get", "k1"], b"")), "one\n");
    memcachedc(&a, &["set", "n", "10"], b"");
    assert_eq!(
        memcachedc(&a, &["--noreply", "incr", "n", "5"], b"")
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        memcachedc(&a, &["--noreply", "decr", "n", "2"], b"")
            .status
            .code(),
        Some(0)
    );
    assert_eq!(stdout(&memcachedc(&a, &["get", "n"], b"")), "13\n");
    assert_eq!(
        memcachedc(&a, &["--noreply", "delete", "k2"], b"")
            .status
            .code(),
        Some(0)
    );
    assert_eq!(memcachedc(&a, &["get", "k2"], b"").status.code(), Some(1));
    assert_eq!(
        memcachedc(&a, &["--noreply", "flush_all"], b"")
            .status
            .code(),
        Some(0)
    );
    assert_eq!(memcachedc(&a, &["get", "k1"], b"").status.code(), Some(1));
    let out = memcachedc(&a, &["--noreply", "get", "k1"], b"");
    assert_eq!(out.status.code(), Some(2), "get has no noreply form");
}

#[test]
fn shutdown_is_refused_without_dash_a_and_stops_the_server_with_it() {
    let mut refusing = start_server();
    let out = memcachedc(&addr(&refusing), &["shutdown"], b"");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("shutdown not enabled"),
        "{out:?}"
    );
    assert_eq!(
        refusing.wait_exit(std::time::Duration::from_millis(200)),
        None
    );

    let mut willing = Server::start(flavor(), &["-A"]);
    let a = addr(&willing);
    let out = memcachedc(&a, &["shutdown"], b"");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(stdout(&out), format!("{a}: SHUTDOWN\n"));
    assert!(willing
        .wait_exit(std::time::Duration::from_secs(10))
        .is_some());
}
