//! Test support shared by the workspace's integration tests: start `ferrocached` or the reference
//! `memcached` on a free loopback port, talk raw bytes to it, and kill it when the test ends.
//!
//! Both servers are started with `-p -1` (an ephemeral port picked by the kernel) and
//! `MEMCACHED_PORT_FILENAME`, into which the server writes `TCP INET: <port>` once it listens. That
//! avoids the race of picking a free port first and binding it later.

pub mod certs;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Which server binary to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// This workspace's `ferrocached`.
    Ferrocached,
    /// The reference `memcached` (Debian package), found on `PATH` or through `MEMCACHED_BIN`.
    Memcached,
}

/// A running server process; killed when dropped.
pub struct Server {
    child: Child,
    port: u16,
    port_file: PathBuf,
    stderr_file: PathBuf,
}

impl Server {
    /// Starts `flavor` with the extra command-line `args`, listening on 127.0.0.1 and an ephemeral port.
    pub fn start(flavor: Flavor, args: &[&str]) -> Server {
        let bin = match flavor {
            Flavor::Ferrocached => ferrocached_bin(),
            Flavor::Memcached => memcached_bin(),
        };
        Self::start_bin(&bin, args)
    }

    /// Starts `ferrocached` with `args`.
    pub fn ferrocached(args: &[&str]) -> Server {
        Self::start(Flavor::Ferrocached, args)
    }

    /// Starts the reference `memcached` with `args`.
    pub fn memcached(args: &[&str]) -> Server {
        Self::start(Flavor::Memcached, args)
    }

    /// Starts `ferrocached` with `args` and extra environment variables (`MEMCACHED_SASL_PWDB`).
    pub fn ferrocached_env(args: &[&str], env: &[(&str, &Path)]) -> Server {
        Self::start_bin_env(&ferrocached_bin(), args, env)
    }

    /// Starts the server binary at `bin` with `args` added to `-p -1 -U 0 -l 127.0.0.1`.
    pub fn start_bin(bin: &Path, args: &[&str]) -> Server {
        Self::start_bin_env(bin, args, &[])
    }

    /// [`Server::start_bin`] with extra environment variables.
    pub fn start_bin_env(bin: &Path, args: &[&str], env: &[(&str, &Path)]) -> Server {
        let dir = scratch_dir();
        let port_file = dir.join("port");
        let stderr_file = dir.join("stderr");
        let stderr = std::fs::File::create(&stderr_file).expect("create stderr file");
        let mut cmd = Command::new(bin);
        cmd.args(["-p", "-1", "-U", "0", "-l", "127.0.0.1"]);
        if is_root() && bin.file_name().is_some_and(|n| n == "memcached") {
            cmd.args(["-u", "root"]);
        }
        cmd.args(args)
            .envs(env.iter().copied())
            .env("MEMCACHED_PORT_FILENAME", &port_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut server = Server {
            child,
            port: 0,
            port_file,
            stderr_file,
        };
        server.port = server.wait_for_port();
        server
    }

    fn wait_for_port(&mut self) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(&port) = ports_in(&self.port_file_text(), "TCP INET: ").first() {
                return port;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "server exited with {status} before listening; stderr:\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "server did not write its port file in time; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every TCP port in the port file, in the order of the `-l` flags (the first is [`Server::port`]).
    pub fn ports(&self) -> Vec<u16> {
        ports_in(&self.port_file_text(), "TCP INET: ")
    }

    /// The UDP port (`-U`) from the port file, if the server serves UDP.
    pub fn udp_port(&self) -> Option<u16> {
        ports_in(&self.port_file_text(), "UDP INET: ")
            .first()
            .copied()
    }

    fn port_file_text(&self) -> String {
        std::fs::read_to_string(&self.port_file).unwrap_or_default()
    }

    /// The server's loopback address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Everything the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_file).unwrap_or_default()
    }

    /// The process id of the server.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Opens a new connection with a read timeout, so a test that expects a reply never hangs.
    pub fn connect(&self) -> Conn {
        Conn::connect(self.addr())
    }

    /// Waits up to `timeout` for the process to exit by itself and returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Sends a signal (`libc`-free: through `kill(1)`) to the server; for `STOP`, returns once
    /// the server is stopped.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args(["-s", sig, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {sig} failed");
        if sig == "STOP" {
            self.wait_until_stopped();
        }
    }

    /// Waits until every thread of the server is stopped. `kill` returns once SIGSTOP is queued,
    /// but a multi-threaded process stops only when one of its threads takes the signal and
    /// stops the others; until then (milliseconds on a busy machine) the other threads still
    /// answer requests, which a test of a stalled server must not see.
    fn wait_until_stopped(&self) {
        let tasks = format!("/proc/{}/task", self.child.id());
        let state = |stat: &str| {
            // The state follows the command name, which is in parentheses.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_string))
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let all_stopped = std::fs::read_dir(&tasks)
                .expect("read the server's threads")
                .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("stat")).ok())
                .all(|stat| matches!(state(&stat).as_deref(), Some("T") | Some("t")));
            if all_stopped {
                return;
            }
            assert!(Instant::now() < deadline, "the server did not stop");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = self.port_file.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The ports of a port file's lines that start with `prefix` (`TCP INET: `, `UDP INET: `), in
/// its order.
fn ports_in(text: &str, prefix: &str) -> Vec<u16> {
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|p| p.trim().parse().ok())
        .collect()
}

/// A blocking client connection speaking raw bytes.
pub struct Conn {
    stream: TcpStream,
}

impl Conn {
    /// Connects to `addr` with a 10 s read timeout.
    pub fn connect(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect to server");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set read timeout");
        stream.set_nodelay(true).expect("set nodelay");
        Conn { stream }
    }

    /// Writes all of `bytes`.
    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream
            .write_all(bytes.as_ref())
            .expect("write to server");
    }

    /// Reads until the reply ends with `terminator` (or the connection closes) and returns it all.
    pub fn read_until(&mut self, terminator: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        while !out.ends_with(terminator) {
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                // A socket with a read timeout is not restarted after a signal handler runs
                // (signal(7)), whatever SA_RESTART says; the test process gets SIGCHLD whenever
                // another test's child exits.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => panic!(
                    "read failed ({e}) waiting for {:?}; got so far {:?}",
                    String::from_utf8_lossy(terminator),
                    String::from_utf8_lossy(&out)
                ),
            }
        }
        out
    }

    /// Reads exactly `n` bytes.
    pub fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut out = vec![0u8; n];
        self.stream.read_exact(&mut out).expect("read reply");
        out
    }

    /// Sends `request` and reads one line of reply (up to and including `\r\n`), as a string.
    pub fn line(&mut self, request: &str) -> String {
        self.send(request);
        String::from_utf8_lossy(&self.read_until(b"\r\n")).into_owned()
    }

    /// Sends `request` and reads until the reply ends with `terminator`, as a string.
    pub fn request(&mut self, request: impl AsRef<[u8]>, terminator: &str) -> String {
        self.send(request);
        String::from_utf8_lossy(&self.read_until(terminator.as_bytes())).into_owned()
    }

    /// Reads whatever arrives until the server goes quiet for `quiet` or closes the connection.
    /// Returns the bytes and whether the connection was closed.
    pub fn drain(&mut self, quiet: Duration) -> (Vec<u8>, bool) {
        self.stream
            .set_read_timeout(Some(quiet))
            .expect("set read timeout");
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        let closed = loop {
            match self.stream.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    break false
                }
                Err(_) => break true,
            }
        };
        self.stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set read timeout");
        (out, closed)
    }

    /// The underlying stream, for tests that need more control.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}

/// Path of the `ferrocached` binary built alongside the running test (`target/<profile>/ferrocached`),
/// or `FERROCACHED_BIN` when set. Builds it with cargo when it is missing.
pub fn ferrocached_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FERROCACHED_BIN") {
        return PathBuf::from(p);
    }
    // Integration tests run from target/<profile>/deps/<test>-<hash>.
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps");
    let bin = profile_dir.join("ferrocached");
    static BUILT: AtomicUsize = AtomicUsize::new(0);
    if !bin.exists() && BUILT.fetch_add(1, Ordering::SeqCst) == 0 {
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args(["build", "-p", "ferrocache-server", "--bin", "ferrocached"]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "cargo build --bin ferrocached failed");
    }
    bin
}

/// Path of the reference `memcached`: `MEMCACHED_BIN`, else the first `memcached` on `PATH`.
/// Panics with an install hint when there is none: a differential test must not pass without it.
pub fn memcached_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("MEMCACHED_BIN") {
        return PathBuf::from(p);
    }
    find_on_path("memcached").expect(
        "memcached not found: install it (apt-get install -y memcached) or set MEMCACHED_BIN",
    )
}

/// Whether the reference memcached can be found.
pub fn memcached_available() -> bool {
    std::env::var_os("MEMCACHED_BIN").is_some() || find_on_path("memcached").is_some()
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}

pub(crate) fn scratch_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ferrocache-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}
