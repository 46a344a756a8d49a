//! Authentication against a real ferrocached: SASL PLAIN over the binary protocol (`-S` with
//! `MEMCACHED_SASL_PWDB`) and the ASCII token (`-Y`). The expected bytes are what Debian's
//! memcached 1.6.18 answers (recorded with `memcached -S` over Cyrus SASL and `memcached -Y`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ferrocache_testkit::{ferrocached_bin, Conn, Server};

/// A file in a fresh temporary directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(contents: &str) -> TempFile {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ferrocache-auth-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let path = dir.join("users");
        std::fs::write(&path, contents).expect("write password file");
        TempFile(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn path_str(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

const SASL_LIST_MECHS: u8 = 0x20;
const SASL_AUTH: u8 = 0x21;
const SASL_STEP: u8 = 0x22;
const GET: u8 = 0x00;
const SET: u8 = 0x01;
const VERSION: u8 = 0x0b;
const STAT: u8 = 0x10;

fn request(opcode: u8, extras: &[u8], key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80, opcode];
    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
    out.push(extras.len() as u8);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&((extras.len() + key.len() + value.len()) as u32).to_be_bytes());
    out.extend_from_slice(&0xdead_beef_u32.to_be_bytes());
    out.extend_from_slice(&0u64.to_be_bytes());
    out.extend_from_slice(extras);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    out
}

/// One binary response: (opcode, status, key, value).
fn response(conn: &mut Conn) -> (u8, u16, Vec<u8>, Vec<u8>) {
    let header = conn.read_exact(24);
    assert_eq!(header[0], 0x81, "response magic in {header:?}");
    let key_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let extras_len = usize::from(header[4]);
    let status = u16::from_be_bytes([header[6], header[7]]);
    let body = u32::from_be_bytes([header[8], header[9], header[10], header[11]]) as usize;
    assert_eq!(&header[12..16], &0xdead_beef_u32.to_be_bytes(), "opaque");
    let body = conn.read_exact(body);
    let key = body[extras_len..extras_len + key_len].to_vec();
    let value = body[extras_len + key_len..].to_vec();
    (header[1], status, key, value)
}

fn call(conn: &mut Conn, req: Vec<u8>) -> (u16, Vec<u8>) {
    conn.send(req);
    let (_, status, _, value) = response(conn);
    (status, value)
}

fn plain(user: &str, password: &str) -> Vec<u8> {
    format!("\0{user}\0{password}").into_bytes()
}

fn sasl_server(pwdb: &TempFile) -> Server {
    Server::ferrocached_env(&["-S"], &[("MEMCACHED_SASL_PWDB", pwdb.path())])
}

/// The exact reply memcached sends an unauthenticated request: status 0x20, "Auth failure.".
fn auth_failure_bytes(opcode: u8) -> Vec<u8> {
    let mut out = vec![0x81, opcode, 0, 0, 0, 0, 0x00, 0x20, 0, 0, 0, 13];
    out.extend_from_slice(&0xdead_beef_u32.to_be_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(b"Auth failure.");
    out
}

#[test]
fn sasl_lists_plain_and_answers_version_before_login() {
    let pwdb = TempFile::new("alice:secret\n");
    let server = sasl_server(&pwdb);
    let mut conn = server.connect();
    assert_eq!(
        call(&mut conn, request(SASL_LIST_MECHS, &[], &[], &[])),
        (0, b"PLAIN".to_vec())
    );
    assert_eq!(
        call(&mut conn, request(VERSION, &[], &[], &[])),
        (0, b"1.6.18".to_vec())
    );
}

#[test]
fn sasl_plain_login_then_set_and_get() {
    let pwdb = TempFile::new("bob:other\nalice:secret\n");
    let server = sasl_server(&pwdb);
    let mut conn = server.connect();
    assert_eq!(
        call(
            &mut conn,
            request(SASL_AUTH, &[], b"PLAIN", &plain("alice", "secret"))
        ),
        (0, b"Authenticated".to_vec())
    );
    let (status, _) = call(
        &mut conn,
        request(SET, &[0, 0, 0, 7, 0, 0, 0, 0], b"k", b"v1"),
    );
    assert_eq!(status, 0);
    conn.send(request(GET, &[], b"k", &[]));
    let (_, status, _, value) = response(&mut conn);
    assert_eq!((status, value), (0, b"v1".to_vec()));
}

#[test]
fn sasl_wrong_password_is_refused_and_counted() {
    let pwdb = TempFile::new("alice:secret\n");
    let server = sasl_server(&pwdb);
    let mut conn = server.connect();
    for wrong in [
        plain("alice", "wrong"),
        plain("alice", "secre"),
        plain("alice", "secret\0"),
        plain("nobody", "secret"),
        b"alice\0secret".to_vec(),
        b"bob\0alice\0secret".to_vec(),
    ] {
        assert_eq!(
            call(&mut conn, request(SASL_AUTH, &[], b"PLAIN", &wrong)),
            (0x20, b"Auth failure.".to_vec()),
            "{wrong:?}"
        );
    }
    // Still open after a failed login, and still not logged in: a get is refused and closes.
    conn.send(request(GET, &[], b"k", &[]));
    let (bytes, closed) = conn.drain(Duration::from_secs(2));
    assert_eq!(bytes, auth_failure_bytes(GET));
    assert!(closed);

    let mut conn = server.connect();
    assert_eq!(
        call(
            &mut conn,
            request(SASL_AUTH, &[], b"plain", &plain("alice", "secret"))
        )
        .0,
        0
    );
    conn.send(request(STAT, &[], &[], &[]));
    let mut stats = Vec::new();
    loop {
        let (_, status, key, value) = response(&mut conn);
        assert_eq!(status, 0);
        if key.is_empty() {
            break;
        }
        stats.push((
            String::from_utf8(key).unwrap(),
            String::from_utf8(value).unwrap(),
        ));
    }
    let stat = |name: &str| {
        stats
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(stat("auth_cmds").as_deref(), Some("7"));
    assert_eq!(stat("auth_errors").as_deref(), Some("6"));
}

#[test]
fn sasl_unauthenticated_requests_are_refused_and_read_nothing() {
    let pwdb = TempFile::new("alice:secret\n");
    let server = sasl_server(&pwdb);
    let mut writer = server.connect();
    call(
        &mut writer,
        request(SASL_AUTH, &[], b"PLAIN", &plain("alice", "secret")),
    );
    let (status, _) = call(
        &mut writer,
        request(SET, &[0; 8], b"private", b"top-secret-value"),
    );
    assert_eq!(status, 0);

    for opcode in [
        GET, 0x09, /* GETQ */
        0x0a, /* NOOP */
        STAT, 0x07, /* QUIT */
    ] {
        let mut conn = server.connect();
        let key: &[u8] = if matches!(opcode, GET | 0x09) {
            b"private"
        } else {
            b""
        };
        conn.send(request(opcode, &[], key, &[]));
        let (bytes, closed) = conn.drain(Duration::from_secs(2));
        assert_eq!(bytes, auth_failure_bytes(opcode), "opcode {opcode:#x}");
        assert!(closed, "memcached closes after refusing opcode {opcode:#x}");
    }

    // An oversized set is refused for the login, not the size, as memcached checks the login first
    // (only the header is sent: the server decides on it and closes).
    let mut conn = server.connect();
    let mut header = request(SET, &[0; 8], b"big", &[]);
    header[8..12].copy_from_slice(&(2u32 * 1024 * 1024 + 11).to_be_bytes());
    conn.send(&header[..24]);
    let (bytes, closed) = conn.drain(Duration::from_secs(2));
    assert_eq!(bytes, auth_failure_bytes(SET));
    assert!(closed);

    // -S makes the server binary-only: a text request gets no answer and the connection closes.
    let mut conn = server.connect();
    conn.send("get private private private\r\n");
    let (bytes, closed) = conn.drain(Duration::from_secs(2));
    assert!(bytes.is_empty() && closed, "{bytes:?}");
}

#[test]
fn sasl_two_step_plain_and_password_file_edits_apply() {
    let pwdb = TempFile::new("alice:secret\n");
    let server = sasl_server(&pwdb);
    let mut conn = server.connect();
    assert_eq!(
        call(&mut conn, request(SASL_AUTH, &[], b"PLAIN", b"")),
        (0x21, Vec::new())
    );
    assert_eq!(
        call(
            &mut conn,
            request(SASL_STEP, &[], b"PLAIN", &plain("alice", "secret"))
        ),
        (0, b"Authenticated".to_vec())
    );
    // A step without a started exchange fails.
    let mut conn = server.connect();
    assert_eq!(
        call(
            &mut conn,
            request(SASL_STEP, &[], b"PLAIN", &plain("alice", "secret"))
        )
        .0,
        0x20
    );
    // As memcached, the file is read at each attempt: a new password works without a restart.
    std::fs::write(pwdb.path(), "alice:changed\n").expect("rewrite");
    let mut conn = server.connect();
    assert_eq!(
        call(
            &mut conn,
            request(SASL_AUTH, &[], b"PLAIN", &plain("alice", "secret"))
        )
        .0,
        0x20
    );
    assert_eq!(
        call(
            &mut conn,
            request(SASL_AUTH, &[], b"PLAIN", &plain("alice", "changed"))
        )
        .0,
        0
    );
}

fn exit_with(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(ferrocached_bin())
        .args(args)
        .env_remove("MEMCACHED_SASL_PWDB")
        .envs(env.iter().copied())
        .output()
        .expect("run ferrocached");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_auth_flag_combinations_refuse_to_start() {
    let users = TempFile::new("alice:secret\n");
    let malformed = TempFile::new("alice:secret\nbob\n");
    let pwdb = [("MEMCACHED_SASL_PWDB", users.path_str())];
    for (args, env, message) in [
        (&["-S"][..], &[][..], "MEMCACHED_SASL_PWDB"),
        (
            &["-S", "-B", "ascii"],
            &pwdb[..],
            "ASCII protocol while using SASL",
        ),
        (
            &["-S", "-U", "5000"],
            &pwdb[..],
            "UDP while using binary SASL",
        ),
        (
            &["-Y", users.path_str(), "-B", "binary"],
            &[],
            "BINARY protocol",
        ),
        (
            &["-Y", "/nonexistent/users"],
            &[],
            "Could not open authfile",
        ),
        (&["-Y", malformed.path_str()], &[], "malformed entry"),
    ] {
        let (code, stderr) = exit_with(args, env);
        assert_ne!(code, 0, "{args:?} must not start");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

fn login(conn: &mut Conn, user: &str, password: &str) -> String {
    let token = format!("{user} {password}");
    conn.line(&format!("set auth 0 0 {}\r\n{token}\r\n", token.len()))
}

#[test]
fn ascii_token_refuses_everything_before_login() {
    let users = TempFile::new("alice:secret\nbob:pa:ss\n");
    let server = Server::ferrocached(&["-Y", users.path_str()]);
    let mut conn = server.connect();
    for command in ["get foo\r\n", "version\r\n", "mn\r\n", "quit\r\n", "\r\n"] {
        assert_eq!(
            conn.line(command),
            "CLIENT_ERROR unauthenticated\r\n",
            "{command:?}"
        );
    }
    assert_eq!(
        login(&mut conn, "alice", "wrong"),
        "CLIENT_ERROR authentication failure\r\n"
    );
    assert_eq!(
        login(&mut conn, "bob", "pa"),
        "CLIENT_ERROR authentication failure\r\n"
    );
    assert_eq!(
        conn.line("set x 0 0 5\r\nalice\r\n"),
        "CLIENT_ERROR bad authentication token format\r\n"
    );
    assert_eq!(conn.line("get foo\r\n"), "CLIENT_ERROR unauthenticated\r\n");
    assert_eq!(login(&mut conn, "alice", "secret"), "STORED\r\n");
    assert_eq!(conn.line("set foo 0 0 3\r\nbar\r\n"), "STORED\r\n");
    assert_eq!(
        conn.request("get foo\r\n", "END\r\n"),
        "VALUE foo 0 3\r\nbar\r\nEND\r\n"
    );
    // The login set stored nothing.
    assert_eq!(conn.request("get auth\r\n", "END\r\n"), "END\r\n");
    let mut conn = server.connect();
    assert_eq!(login(&mut conn, "bob", "pa:ss"), "STORED\r\n");
    let settings = conn.request("stats settings\r\n", "END\r\n");
    assert!(settings.contains(&format!("STAT auth_enabled_ascii {}\r\n", users.path_str())));
    assert!(settings.contains("STAT binding_protocol ascii\r\n"));
}

#[test]
fn ascii_token_with_a_hundred_users() {
    let file: String = (0..100).map(|i| format!("user{i}:pass{i}\n")).collect();
    let users = TempFile::new(&file);
    let server = Server::ferrocached(&["-Y", users.path_str()]);
    for i in 0..100 {
        let mut conn = server.connect();
        assert_eq!(
            login(
                &mut conn,
                &format!("user{i}"),
                &format!("pass{}", (i + 1) % 100)
            ),
            "CLIENT_ERROR authentication failure\r\n"
        );
        assert_eq!(
            login(&mut conn, &format!("user{i}"), &format!("pass{i}")),
            "STORED\r\n",
            "user{i}"
        );
    }
    let mut conn = server.connect();
    login(&mut conn, "user99", "pass99");
    let stats = conn.request("stats\r\n", "END\r\n");
    assert!(stats.contains("STAT auth_cmds 201\r\n"), "{stats}");
    assert!(stats.contains("STAT auth_errors 100\r\n"), "{stats}");
}

#[test]
fn ascii_users_reload_on_sighup() {
    let users = TempFile::new("alice:secret\n");
    let server = Server::ferrocached(&["-Y", users.path_str()]);
    std::fs::write(users.path(), "carol:new\n").expect("rewrite");
    // A malformed file would keep the old users; this one is good and replaces them.
    server.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut conn = server.connect();
        if login(&mut conn, "carol", "new") == "STORED\r\n" {
            break;
        }
        assert!(Instant::now() < deadline, "SIGHUP did not reload the users");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut conn = server.connect();
    assert_eq!(
        login(&mut conn, "alice", "secret"),
        "CLIENT_ERROR authentication failure\r\n"
    );

    std::fs::write(users.path(), "no colon here\n").expect("rewrite");
    server.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.stderr().contains("keeping the previous users") {
        assert!(Instant::now() < deadline, "no word of the failed reload");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut conn = server.connect();
    assert_eq!(conn.line("version\r\n"), "CLIENT_ERROR unauthenticated\r\n");
    assert_eq!(login(&mut conn, "carol", "new"), "STORED\r\n");
}
